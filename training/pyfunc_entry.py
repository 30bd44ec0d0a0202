"""Models-from-code entry point of the forecaster pyfunc (`training.registry.log_forecaster`).

MLflow stores this file's source with the model and runs it when the model is loaded; the
object handed to `set_model` is built here, so nothing is cloudpickled. Its weights come from
the model's `config.json` and `weights.pt` artifacts, read by `training.mlflow_model`
(`torch.load(weights_only=True)`). Input and output formats: see `training.mlflow_model`.
"""

import warnings
from collections.abc import Mapping
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel

from training.mlflow_model import ForecastInputError, ForecastPredictor


class ForecastRequestError(MlflowException, ForecastInputError):
    """A ForecastInputError as MLflow's scoring server (`mlflow models serve`) answers it: a
    400 carrying the message. Raised as the plain ValueError, it became a generic 400
    ("Encountered an unexpected error while evaluating the model") with the reason only in
    the stack trace. Callers in Python still catch it as ForecastInputError."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


with warnings.catch_warnings():
    # MLflow inspects predict's type hints when the class is created and warns that it cannot
    # use them as a schema; the logged signature is the schema, so the warning is noise.
    warnings.filterwarnings("ignore", message=".*[Tt]ype hint.*", category=UserWarning)

    class ForecastPyfunc(PythonModel):
        """Loads the `config` + `weights` artifacts; predict: history rows -> forecast rows."""

        predictor: ForecastPredictor

        def load_context(self, context: Any) -> None:
            artifacts: Mapping[str, str] = context.artifacts
            self.predictor = ForecastPredictor.from_files(artifacts["config"], artifacts["weights"])

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
        ) -> pd.DataFrame:
            if not isinstance(model_input, pd.DataFrame):
                model_input = pd.DataFrame(model_input)
            try:
                return self.predictor.predict_frame(model_input, params)
            except ForecastInputError as error:
                raise ForecastRequestError(str(error)) from None


mlflow.models.set_model(ForecastPyfunc())

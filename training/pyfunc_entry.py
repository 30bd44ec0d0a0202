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
from mlflow.pyfunc.model import PythonModel

from training.mlflow_model import ForecastPredictor

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
            return self.predictor.predict_frame(model_input)


mlflow.models.set_model(ForecastPyfunc())

"""The pyfunc's refusals through `mlflow.pyfunc.load_model(...).predict`, as a client meets
them: each names the series, the column and the position, and what the model takes, in the
words POST /forecast's 422 uses for the same history (service.validation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.forecaster import ForecasterConfig
from tests.training.synthetic import seasonal_frame
from tests.training.test_registry import HORIZON, LOOKBACK, csv, history_row, tiny_config
from training.mlflow_model import ForecastInputError, ForecastPredictor
from training.pipeline import train_pipeline
from training.registry import model_artifact_dir
from training.split import StandardScaler
from urnn_forecast.settings import Settings

__all__ = ["csv"]  # the fixture, used by name


def _refused(model: object, frame: pd.DataFrame) -> str:
    import mlflow

    with pytest.raises(mlflow.exceptions.MlflowException) as said:
        model.predict(frame)  # type: ignore[attr-defined]
    return str(said.value.message)


@pytest.mark.parametrize("column", ["values", "x"])
def test_a_sentinel_names_its_position_the_range_the_model_takes_and_a_remedy(
    csv: Path, tmp_path: Path, mlflow_settings: Settings, column: str
) -> None:
    """A logger's 1e308 for 'no reading' in a history: the pyfunc said only "'values' holds
    values too large for the model once scaled (beyond float32's range)" ('covariates' for a
    covariate, not which one), where POST /forecast names the value, its position in the list
    as sent, the range the model takes in the data's units and what to send instead."""
    import mlflow

    result = train_pipeline(tiny_config(csv, registered_name=None), mlflow_settings)
    model = mlflow.pyfunc.load_model(result.model_uri)
    row = history_row(seasonal_frame(600))
    cells = list(row[column].iloc[0])
    position = len(cells) - 3  # inside the look-back (its last 48 of 53)
    cells[position] = -1e308
    said = _refused(model, row.assign(**{column: pd.Series([cells], dtype=object)}))
    meta = model_artifact_dir(result.model_uri, tmp_path / "m") / "config.json"
    scaler = StandardScaler.from_dict(json.loads(meta.read_text())["scaler"])
    mean, scale = scaler.column_stats("pump-1", "y" if column == "values" else "x")
    largest = float(np.finfo(np.float32).max)
    low, high = (f"{mean + sign * largest * scale:.3g}" for sign in (-1, 1))
    assert said == (
        f"series 'pump-1': '{column}' holds values too large for the model once scaled "
        f"(beyond float32's range): -1e+308 at position {position}; the model takes {low} to "
        f"{high} here; send the series in the units it was trained on, and a missing reading "
        "as the training data had it filled, not as a sentinel number"
    )


def test_the_bad_inputs_a_client_sends_are_named_as_the_forecast_api_names_them(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """NaN, a covariate column missing, a short history and a horizon too large, each
    through mlflow.pyfunc: the column, the position and the allowed values, in /forecast's
    words ('holds NaN', 'the model reads [...]'); it said 'holds nan' and named no columns
    the model reads."""
    import mlflow

    result = train_pipeline(tiny_config(csv, registered_name=None), mlflow_settings)
    model = mlflow.pyfunc.load_model(result.model_uri)
    row = history_row(seasonal_frame(600))
    values = list(row["values"].iloc[0])
    gap = [*values[:10], float("nan"), *values[11:]]
    assert _refused(model, row.assign(values=pd.Series([gap], dtype=object))) == (
        "series 'pump-1': 'values' holds NaN at position 10; every value must be a finite number"
    )
    direct = ForecastPredictor.from_directory(model_artifact_dir(result.model_uri, tmp_path))
    with pytest.raises(ForecastInputError) as missing:  # MLflow's schema says it first; predict too
        direct.predict_frame(row.drop(columns=["x"]))
    assert str(missing.value) == "missing covariate column(s) ['x']; the model reads ['x']"
    assert _refused(model, row.assign(values=pd.Series([values[:10]], dtype=object))) == (
        f"series 'pump-1': 'values' has 10 values; the model needs at least lookback="
        f"{LOOKBACK} and reads the last {LOOKBACK}"
    )
    assert _refused(model, row.assign(horizon=[HORIZON + 1])) == (
        f"series 'pump-1': `horizon` must be a whole number of steps from 1 to the model's "
        f"{HORIZON}; got {HORIZON + 1}"
    )


def test_counts_of_one_are_said_in_the_singular(csv: Path, mlflow_settings: Settings) -> None:
    """'has 1 values', 'its 53 values and 1 forecast steps': a count of one in the plural,
    where the rest of the product says '1 value' (training.validation.plural)."""
    import mlflow

    one_step = ForecasterConfig(
        kind="urnn", lookback=LOOKBACK, horizon=1, hidden_size=8, segment_length=12
    )
    config = tiny_config(csv, registered_name=None, model=one_step, backtest_step=1)
    model = mlflow.pyfunc.load_model(train_pipeline(config, mlflow_settings).model_uri)
    row = history_row(seasonal_frame(600))
    one = row.assign(
        values=pd.Series([row["values"].iloc[0][:1]], dtype=object),
        x=pd.Series([row["x"].iloc[0][:1]], dtype=object),
    )
    assert "'values' has 1 value; the model needs at least" in _refused(model, one)
    late = _refused(model, row.assign(start=["2262-04-10T00:00:00"]))
    assert "its 53 values and 1 forecast step must lie between" in late, late

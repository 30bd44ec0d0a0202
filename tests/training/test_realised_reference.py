"""The backtest's error in the service's own realised units (training.realised_reference):
each window scored as service.realised scores a forecast, by the service's lead buckets, and
carried in config.json so that the service can export it beside the realised error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import training.realised_reference
from models.forecaster import ForecasterConfig
from tests.training.synthetic import loaded, seasonal_frame
from training.backtest import BacktestConfig, backtest
from training.data import LoadConfig
from training.fit import FitConfig
from training.mlflow_model import ForecastPredictor
from training.pipeline import TrainConfig, train_pipeline
from training.realised_reference import KEY, reference_line, reference_mase
from training.registry import model_artifact_dir
from training.split import SplitConfig
from urnn_forecast.settings import Settings

L, H = 24, 6
SPLIT = SplitConfig(lookback=L)
QUICK = FitConfig(max_epochs=1, max_train_batches=4, batch_size=32, device="cpu")


def _flat_in_the_test_span(n: int) -> pd.DataFrame:
    """A seasonal series whose values hold still for 40 hours near its end: the windows whose
    whole look-back lies in that stretch have no one-step change, no scale."""
    frame = seasonal_frame(n)
    frame.iloc[n - 60 : n - 20, 0] = 7.0
    return frame


def _by_hand(frame: pd.DataFrame, forecasts: pd.DataFrame) -> dict[str, tuple[float, int]]:
    """lead label -> (mean scaled error, points), computed from the data row by row."""
    values = frame["y"].to_numpy(dtype=np.float64)
    position = {stamp: i for i, stamp in enumerate(frame.index)}
    sums: dict[str, float] = {}
    points: dict[str, int] = {}
    buckets = {1: "1", 2: "2-3", 3: "2-3", 4: "4-7", 5: "4-7", 6: "4-7"}
    origins = forecasts["origin"].tolist()
    steps = forecasts["step"].to_numpy(dtype=int)
    errors = np.abs(forecasts["actual"].to_numpy(float) - forecasts["point"].to_numpy(float))
    for origin, step, error in zip(origins, steps, errors, strict=True):
        end = position[origin]  # the last look-back row
        scale = float(np.mean(np.abs(np.diff(values[end - L + 1 : end + 1]))))
        if scale == 0.0:
            continue
        lead = buckets[int(step)]
        sums[lead] = sums.get(lead, 0.0) + float(error) / scale
        points[lead] = points.get(lead, 0) + 1
    return {lead: (sums[lead] / points[lead], points[lead]) for lead in sums}


@pytest.mark.parametrize("chunk", [4096, 7])  # one chunk of windows; many, one part-filled
def test_the_reference_is_the_services_scaled_error_by_lead_computed_by_hand(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training.realised_reference, "CHUNK", chunk)
    frame = _flat_in_the_test_span(400)
    data = loaded({"s": frame})
    model = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H)
    result = backtest(data, SPLIT, model, QUICK, BacktestConfig())
    reference = result.realised_reference
    assert reference is not None
    expected = _by_hand(frame, result.forecasts)
    assert set(reference["mase_by_lead"]) == {"1", "2-3", "4-7"} == set(expected)
    for lead, (mase, points) in expected.items():
        assert reference["mase_by_lead"][lead] == pytest.approx(mase, rel=1e-9)
        assert reference["points_by_lead"][lead] == points
    windows = result.forecasts["origin"].nunique()
    flat = windows - reference["windows"]
    assert flat > 0  # the windows of the flat stretch are left out, as the service leaves them
    assert reference["points"] == sum(p for _, p in expected.values()) == H * (windows - flat)


def test_a_refit_backtest_scores_each_refit_window_by_its_own_look_back() -> None:
    frame = seasonal_frame(400)
    data = loaded({"s": frame})
    model = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H)
    result = backtest(data, SPLIT, model, QUICK, BacktestConfig(n_windows=3, step=5, refit=True))
    reference = result.realised_reference
    assert reference is not None and reference["windows"] == 3
    expected = _by_hand(frame, result.forecasts)
    for lead, (mase, _) in expected.items():
        assert reference["mase_by_lead"][lead] == pytest.approx(mase, rel=1e-9)


def test_a_backtest_in_scaled_units_has_no_reference() -> None:
    """The service scores original units: a z-score backtest is not its figure."""
    data = loaded({"s": seasonal_frame(400)})
    model = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H)
    result = backtest(data, SPLIT, model, QUICK, BacktestConfig(scale="scaled"))
    assert result.realised_reference is None


def test_a_streaming_backtest_has_its_reference_too() -> None:
    """urnn-stream models go through the same backtest (one fit, every origin)."""
    data = loaded({"s": seasonal_frame(500)})
    model = ForecasterConfig(
        kind="urnn-stream",
        lookback=L,
        horizon=H,
        hidden_size=4,
        segment_length=8,
        n_past_covariates=1,
    )
    stream_fit = FitConfig(
        max_epochs=1,
        device="cpu",
        stream_crop_length=96,
        stream_batch_crops=2,
        stream_batches_per_epoch=2,
        calibrate_intervals=False,
    )
    result = backtest(data, SPLIT, model, stream_fit, BacktestConfig(n_windows=4, step=H))
    reference = result.realised_reference
    assert reference is not None
    assert reference["windows"] == 4 and reference["points"] == 4 * H
    expected = _by_hand(data.series["s"], result.forecasts)
    for lead, (mase, _) in expected.items():
        assert reference["mase_by_lead"][lead] == pytest.approx(mase, rel=1e-9)


def test_config_json_carries_the_reference_and_a_config_without_it_loads(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    import mlflow

    csv = tmp_path / "plant.csv"
    seasonal_frame(600).to_csv(csv)
    config = TrainConfig(
        data=str(csv),
        load=LoadConfig(target="y", covariates=("x",)),
        model=ForecasterConfig(
            kind="urnn", lookback=48, horizon=12, hidden_size=8, segment_length=12
        ),
        fit=FitConfig(max_epochs=1, max_train_batches=4, device="cpu"),
        backtest_step=12,
    )
    result = train_pipeline(config, mlflow_settings)
    files = model_artifact_dir(f"models:/urnn-forecaster/{result.version}", tmp_path / "dl")
    stored = json.loads((files / "config.json").read_text())[KEY]
    assert set(stored["mase_by_lead"]) == {"1", "2-3", "4-7", "8-15"}
    assert stored["points"] == sum(stored["points_by_lead"].values()) > 0
    assert result.realised_reference == stored  # what urnn train prints is what was stored
    loaded_meta = ForecastPredictor.from_directory(files).meta
    assert reference_mase(loaded_meta) == stored["mase_by_lead"]
    run = mlflow.MlflowClient().get_run(result.run_id)
    for lead, value in stored["mase_by_lead"].items():
        assert run.data.metrics[f"realised_reference_mase_lead_{lead}"] == pytest.approx(value)
    assert "realised_reference_mase" in run.data.metrics
    logged = [f.path for f in mlflow.MlflowClient().list_artifacts(result.run_id, "metrics")]
    assert "metrics/realised_reference.json" in logged

    old = tmp_path / "old"
    shutil.copytree(files, old)
    meta = json.loads((old / "config.json").read_text())
    del meta[KEY]  # a model trained before the key
    (old / "config.json").write_text(json.dumps(meta))
    predictor = ForecastPredictor.from_directory(old)
    assert reference_mase(predictor.meta) is None
    assert predictor.model.config.horizon == 12  # loaded and built as before


def test_the_train_line_lists_every_lead_in_the_services_order_with_its_figure() -> None:
    reference = {
        "mase_by_lead": {"16-31": 2.185, "1": 0.5905, "4-7": 1.419, "2-3": 0.9211},
        "points_by_lead": {"16-31": 9, "1": 1, "4-7": 4, "2-3": 2},
    }
    line = reference_line(reference)
    assert line.endswith(": 1 0.591, 2-3 0.921, 4-7 1.42, 16-31 2.19")
    assert "UrnnRealisedErrorAboveBacktest" in line


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "0.5",
        {"mase_by_lead": {}},
        {"mase_by_lead": {"1": "0.5"}},
        {"mase_by_lead": {"1": float("nan")}},
        {"mase_by_lead": {"1": 0.0}},
        {"mase_by_lead": {"1": True}},
        {"mase_by_lead": {"step-1": 0.5}},
    ],
)
def test_a_reference_not_of_the_recorded_shape_is_none(stored: object) -> None:
    """A hand-edited config.json: no gauge rather than a wrong one, and no crash at load."""
    assert reference_mase({KEY: stored}) is None
    assert reference_mase({KEY: {"mase_by_lead": {"1": 0.5, "2-3": 2}}}) == {"1": 0.5, "2-3": 2.0}


def test_the_reference_is_read_in_lead_order_not_the_files() -> None:
    """config.json is written with sorted keys, so GET /model listed a 24-step model's
    leads as 1, 16-31, 2-3, 4-7, 8-15: the reader gives them in lead order."""
    stored = {"1": 0.47, "16-31": 2.29, "2-3": 0.84, "4-7": 1.42, "8-15": 2.06}
    read = reference_mase({KEY: {"mase_by_lead": stored}})
    assert read is not None
    assert list(read) == ["1", "2-3", "4-7", "8-15", "16-31"]
    assert read == stored

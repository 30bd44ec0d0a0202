"""Train -> log as a pyfunc -> register -> load in a fresh process -> predict; the promotion rule.

Everything runs in a temporary MLflow store (the `mlflow_settings` fixture) on a small synthetic
hourly series, with a tiny uRNN and one short epoch.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.forecaster import ForecasterConfig, ForecasterConfigError, n_calendar_features
from tests.training.synthetic import seasonal_frame
from training.data import LoadConfig
from training.fit import FitConfig
from training.mlflow_model import ForecastInputError, ForecastPredictor, reference_statistics
from training.pipeline import (
    Negatives,
    TrainConfig,
    TrainResult,
    flattened_window_lines,
    floors_at_zero,
    negative_targets,
    non_negative_lines,
    shared_levels,
    train_pipeline,
    window_lines,
)
from training.registry import (
    CHALLENGER,
    CHAMPION,
    MAX_COMPARISONS,
    PYFUNC_CODE_PACKAGES,
    PYFUNC_REQUIREMENTS,
    Comparison,
    _decide,
    min_improvement_problem,
    model_artifact_dir,
    promote_if_better,
)
from training.split import SeriesSplit, SplitConfig, StandardScaler, plan_split, split_series
from urnn_forecast.settings import Settings

NAME = "urnn-forecaster"
LOOKBACK, HORIZON = 48, 12


def tiny_config(csv: Path, **overrides: object) -> TrainConfig:
    fields: dict[str, object] = {
        "data": str(csv),
        "load": LoadConfig(target="y", covariates=("x",)),
        "model": ForecasterConfig(
            kind="urnn", lookback=LOOKBACK, horizon=HORIZON, hidden_size=8, segment_length=12
        ),
        "fit": FitConfig(max_epochs=1, max_train_batches=4, device="cpu"),
        "backtest_step": HORIZON,
    }
    fields.update(overrides)
    return TrainConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "plant.csv"
    seasonal_frame(600).to_csv(path)
    return path


def history_row(frame: pd.DataFrame, series_id: str = "pump-1") -> pd.DataFrame:
    tail = frame.iloc[-LOOKBACK - 5 :]  # longer than the lookback: only the last 48 are read
    return pd.DataFrame(
        [
            {
                "id": series_id,
                "values": tail["y"].tolist(),
                "x": tail["x"].tolist(),
                "start": tail.index[0].isoformat(),
            }
        ]
    )


def test_train_register_load_in_a_fresh_process_and_predict(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    import mlflow

    result = train_pipeline(tiny_config(csv), mlflow_settings)
    assert (result.version, result.promoted, result.reason) == ("1", True, "no champion yet")
    assert np.isfinite(result.challenger_score)
    assert result.challenger_score == pytest.approx(result.scores["mae"])

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias(NAME, CHALLENGER).version) == "1"
    tags = client.get_model_version(NAME, "1").tags
    assert tags["promotion.decision"] == "promoted"
    assert float(tags["backtest.challenger_score"]) == pytest.approx(result.challenger_score)
    assert tags["backtest.champion_score"] == "none"

    run = client.get_run(result.run_id)
    assert run.data.params["model.kind"] == "urnn"
    assert "backtest_mae" in run.data.metrics
    assert [m.step for m in client.get_metric_history(result.run_id, "train_loss")] == [1]
    # what the MLflow UI shows (a walk-through found random run names, no description, the
    # scaled val_mae named like backtest_mae, and the decision below the version page's fold)
    assert run.info.run_name == f"urnn-y-L{LOOKBACK}-H{HORIZON}"
    assert {"val_mae_scaled", "val_mse_scaled"} <= set(run.data.metrics)
    assert "val_mae" not in run.data.metrics
    assert run.data.tags["device"] == "cpu"
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("urnn forecaster of `y` with covariates x, from plant.csv (1 series")
    assert f"look-back {LOOKBACK}, horizon {HORIZON}" in note and "unitless" in note
    assert note.endswith(f"Promoted to champion (no champion yet); registered as {NAME} version 1.")
    described = client.get_model_version(NAME, "1").description or ""
    # the decision first, the summary below it (later moves go above both)
    assert described.startswith("Promoted to champion (no champion yet); registered as ")
    assert described.endswith(f"look-back {LOOKBACK}, horizon {HORIZON}, quantiles 0.1, 0.5, 0.9.")
    assert run.inputs is not None
    assert run.inputs.dataset_inputs[0].dataset.name == "plant.csv"
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"metrics", "plots", "data_report.txt"} <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(result.run_id, "plots")}
    assert plots == {"forecasts.png", "error_by_horizon.png"}
    # every forecast scored is logged: the backtest's figures can be recomputed from it
    logged = Path(
        mlflow.artifacts.download_artifacts(
            run_id=result.run_id, artifact_path="metrics/forecasts.parquet", dst_path=str(tmp_path)
        )
    )
    forecasts = pd.read_parquet(logged)
    observed = forecasts[~forecasts["filled"]]
    mae = float((observed["point"] - observed["actual"]).abs().mean())
    assert mae == pytest.approx(result.scores["mae"])

    # The model's files: JSON + a state dict, the model class as source code, no pickle.
    files = model_artifact_dir(f"models:/{NAME}/1", tmp_path / "download")
    model_root = files.parent
    assert sorted(p.name for p in files.iterdir()) == ["config.json", "weights.pt"]
    assert not list(model_root.rglob("*.pkl"))
    assert (model_root / "pyfunc_entry.py").exists()
    meta = json.loads((files / "config.json").read_text())
    assert meta["model"]["n_past_covariates"] == 1
    assert meta["model"]["non_negative"] is True  # y (10 +- 3) is never negative: floored
    assert (meta["target"], meta["covariates"], meta["freq"]) == ("y", ["x"], "h")
    assert meta["scaler"]["scope"] == "global"
    assert sum(meta["reference"]["y"]["proportions"]) == pytest.approx(1.0)
    assert len(meta["reference"]["x"]["edges"]) + 1 == len(meta["reference"]["x"]["proportions"])
    assert meta["package_version"]
    assert meta["calendar_clock"] == "local"  # naive timestamps: the clock as written
    # the fit settings travel with the model (urnn backtest --refit retrains by them)
    assert meta["fit"] == asdict(tiny_config(csv).fit)

    # The model carries the project's code and names only packages an index holds: the
    # environment `mlflow models serve` builds (virtualenv by default) can install them.
    requirements = (model_root / "requirements.txt").read_text().split()
    assert sorted(r.split("==")[0] for r in requirements) == sorted(PYFUNC_REQUIREMENTS)
    assert not [r for r in requirements if "+" in r or "urnn" in r], requirements
    code = model_root / "code"
    assert sorted(p.name for p in code.iterdir()) == sorted(PYFUNC_CODE_PACKAGES)
    assert (code / "training" / "mlflow_model.py").exists()
    assert not list(code.rglob("__pycache__"))

    # A fresh interpreter that cannot unpickle anything, and where this project is not
    # installed, loads the champion (with the code it carries) and predicts.
    frame = seasonal_frame(600)
    request = tmp_path / "request.json"
    history_row(frame).to_json(request, orient="records")
    repo = str(Path(__file__).resolve().parents[2])
    script = textwrap.dedent(
        f"""
        import importlib.util, pickle, sys
        sys.meta_path = [f for f in sys.meta_path if "__editable__" not in repr(f)]
        sys.path = [p for p in sys.path if p not in ("", {repo!r})]
        assert importlib.util.find_spec("training") is None, "the project is importable"
        def refuse(*args, **kwargs):
            raise AssertionError("pickle was used")
        pickle.load = pickle.loads = refuse
        import mlflow, pandas as pd
        model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
        import training
        assert training.__file__.endswith("/code/training/__init__.py"), training.__file__
        rows = pd.read_json({str(request)!r}, orient="records")
        out = model.predict(rows)
        # integer histories (demand in MW, counts) pass MLflow's schema enforcement too
        whole = rows.assign(values=[[int(round(v)) for v in rows["values"].iloc[0]]])
        counted = model.predict(whole)
        sys.stdout.write(out.to_json(orient="records") + "\\n")
        sys.stdout.write(counted.to_json(orient="records") + "\\n")
        # what `mlflow models serve` answers a bad row: a 400 that says why
        from fastapi.testclient import TestClient
        from mlflow.pyfunc import scoring_server
        short = rows.assign(values=[rows["values"].iloc[0][:10]])
        body = {{"dataframe_records": short.to_dict(orient="records")}}
        answer = TestClient(scoring_server.init(model)).post("/invocations", json=body)
        sys.stdout.write(str(answer.status_code) + " " + answer.text.replace("\\n", " "))
        """
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_settings.resolved_tracking_uri()}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first_line, second_line, served_400 = done.stdout.split("\n")
    status, _, answer = served_400.partition(" ")
    assert status == "400" and '"error_code": "INVALID_PARAMETER_VALUE"' in answer, answer[:500]
    assert "series 'pump-1': 'values' has 10 values; the model needs at least lookback=48" in answer
    served = pd.DataFrame(json.loads(first_line))
    counted = pd.DataFrame(json.loads(second_line))
    whole = history_row(frame)
    whole["values"] = [[float(round(v)) for v in whole["values"].iloc[0]]]
    expected_counted = ForecastPredictor.from_directory(files).predict_frame(whole)
    np.testing.assert_allclose(counted["mean"], expected_counted["mean"], rtol=1e-6)

    local = ForecastPredictor.from_directory(files).predict_frame(history_row(frame))
    assert list(served.columns) == ["id", "step", "timestamp", "mean", "q0.1", "q0.5", "q0.9"]
    assert served["step"].tolist() == list(range(1, HORIZON + 1))
    assert set(served["id"]) == {"pump-1"}
    expected_first = (frame.index[-1] + pd.Timedelta(hours=1)).isoformat()
    assert served["timestamp"].iloc[0] == expected_first
    np.testing.assert_allclose(served["mean"], local["mean"], rtol=1e-6)
    np.testing.assert_allclose(served["mean"], served["q0.5"])
    assert (served["q0.1"] <= served["q0.5"]).all() and (served["q0.5"] <= served["q0.9"]).all()
    # Original units: the synthetic series lives around 10 +- 3, not around 0.
    assert 0.0 < served["mean"].mean() < 20.0

    # The same config again: the champion is re-scored on the same backtest, ties are kept.
    again = train_pipeline(tiny_config(csv), mlflow_settings)
    assert_kept_on_tie(again, result)
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias(NAME, CHALLENGER).version) == "2"
    tags2 = client.get_model_version(NAME, "2").tags
    assert tags2["promotion.decision"] == "kept"
    assert tags2["backtest.champion_version"] == "1"


def test_a_model_trained_on_zoned_timestamps_reads_its_calendar_on_utc(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """The loader reads zoned timestamps as UTC, so the model learnt UTC hours: a zoned
    history must be read on UTC too, not on its own zone's clock (2 hours off in Paris)."""
    frame = seasonal_frame(600)
    zoned = frame.copy()
    zoned.index = (
        pd.DatetimeIndex(frame.index)
        .tz_localize("UTC")
        .tz_convert("Europe/Paris")
        .rename("timestamp")
    )
    csv = tmp_path / "zoned.csv"
    zoned.to_csv(csv)
    model = ForecasterConfig(
        kind="urnn",
        lookback=LOOKBACK,
        horizon=HORIZON,
        hidden_size=8,
        segment_length=12,
        n_calendar=n_calendar_features("h"),
    )
    result = train_pipeline(tiny_config(csv, model=model), mlflow_settings)
    files = model_artifact_dir(f"models:/{NAME}/{result.version}", tmp_path / "download")
    assert json.loads((files / "config.json").read_text())["calendar_clock"] == "utc"
    predictor = ForecastPredictor.from_directory(files)
    in_utc = history_row(frame)  # naive: the UTC clock the model learnt
    start = pd.Timestamp(in_utc["start"].iloc[0]).tz_localize("UTC")
    in_paris = in_utc.assign(start=[start.tz_convert("Europe/Paris").isoformat()])
    a, b = predictor.predict_frame(in_utc), predictor.predict_frame(in_paris)
    numbers = [c for c in a.columns if c.startswith("q") or c == "point"]
    assert numbers
    np.testing.assert_allclose(a[numbers].to_numpy(float), b[numbers].to_numpy(float))


def test_decoder_search_records_both_candidates_and_serves_the_winner(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """`--decoder auto`: one run holds each candidate's epoch curves and best val score, the
    chosen decoder as a tag, and the logged model is the winner's."""
    import mlflow

    config = tiny_config(csv, fit=FitConfig(max_epochs=1, max_train_batches=4, device="cpu",
                                            decoder_search=True), registered_name=None)  # fmt: skip
    result = train_pipeline(config, mlflow_settings)
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    scores = {d: run.data.metrics[f"decoder_score_{d}"] for d in ("direct", "pmf")}
    chosen = run.data.tags["decoder"]
    assert chosen == min(scores, key=scores.__getitem__)
    assert (result.decoder, dict(result.decoder_scores)) == (chosen, scores)
    for decoder in ("direct", "pmf"):
        history = client.get_metric_history(result.run_id, f"{decoder}/val_loss")
        assert [m.step for m in history] == [1]
        assert history[0].value == pytest.approx(scores[decoder])
    files = model_artifact_dir(result.model_uri, tmp_path / "m")
    meta = json.loads((files / "config.json").read_text())
    assert meta["model"]["decoder"] == chosen
    with pytest.raises(ValueError, match=r"decoder 'auto' \(fit.decoder_search\) applies to"):
        tiny_config(csv, model=ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON),
                    fit=config.fit)  # fmt: skip


def assert_kept_on_tie(again: TrainResult, first: TrainResult) -> None:
    assert again.version == "2"
    assert again.champion_version == "1"
    assert again.champion_score == pytest.approx(first.challenger_score, rel=1e-6)
    assert again.challenger_score == pytest.approx(first.challenger_score, rel=1e-6)
    assert not again.promoted


def test_predict_rejects_bad_rows_naming_series_and_field(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    result = train_pipeline(tiny_config(csv, registered_name=None), mlflow_settings)
    assert result.version is None and not result.promoted
    predictor = ForecastPredictor.from_directory(
        model_artifact_dir(result.model_uri, tmp_path / "m")
    )
    row = history_row(seasonal_frame(600))
    short = row.assign(values=[row["values"].iloc[0][-10:]])
    with pytest.raises(ForecastInputError, match=r"'pump-1'.*'values' has 10 values"):
        predictor.predict_frame(short)
    with_nan: list[float] = [*row["values"].iloc[0][:-1], float("nan")]
    nan = row.assign(values=pd.Series([with_nan], dtype=object))
    with pytest.raises(ForecastInputError, match=r"'values' holds NaN at position \d+; every"):
        predictor.predict_frame(nan)
    with pytest.raises(ForecastInputError, match=r"missing covariate column\(s\) \['x'\]"):
        predictor.predict_frame(row.drop(columns=["x"]))
    n = len(row["values"].iloc[0])
    words = row.assign(values=pd.Series([["warm"] * n], dtype=object))
    flags = row.assign(values=pd.Series([[True] * n], dtype=object))
    for bad in (words, flags):
        with pytest.raises(ForecastInputError, match="'values' must be a flat list of numbers"):
            predictor.predict_frame(bad)
    with pytest.raises(ForecastInputError, match="'pump-1': the id is given to more than one row"):
        predictor.predict_frame(pd.concat([row, row], ignore_index=True))
    # a row without an id is 'series-<row>': where another row gives that id, the message says
    # which row had none (it blamed the user's id as given twice)
    clash = pd.concat([row.assign(id="series-1"), row.assign(id=None)], ignore_index=True)
    with pytest.raises(ForecastInputError) as clashed:
        predictor.predict_frame(clash)
    assert str(clashed.value) == (
        "series 'series-1': row 1 has no id and is named 'series-1' by default, the id row 0 "
        "gives; give row 1 its own id"
    )
    # a number is not a time: pd.Timestamp read 1527811200 as nanoseconds after 1970
    for number in (1_527_811_200, "1527811200", 1.5e9):
        with pytest.raises(ForecastInputError, match=r"`start` .* is a number, not a date"):
            predictor.predict_frame(row.assign(start=[number]))
    # ISO 8601's basic form is a text of digits: refused as the service refuses it (it took
    # '20020101' as 2002-01-01 where POST /forecast answered 422)
    for basic in ("20020101", "200201", "2002"):
        with pytest.raises(ForecastInputError, match=r"`start` '\d+' is a number, not a date"):
            predictor.predict_frame(row.assign(start=[basic]))
    dated = predictor.predict_frame(row.assign(start=["2002-01-01"]))
    assert str(dated["timestamp"].iloc[0]).startswith("2002-01-03")  # 53 h of history later
    # From a fuzzing run of predict (2026-12-05): each was a crash inside numpy, pandas or
    # torch, a NaN forecast, or a silent change of the input.
    values = row["values"].iloc[0]
    refused = {
        "the input holds no rows": row.iloc[:0],
        "'values' must be a flat list of numbers": row.assign(
            values=pd.Series([[*values[:-1], 10**400]], dtype=object)
        ),
        "'values' must be a flat list": row.assign(
            values=pd.Series([[[v, v] for v in values]], dtype=object)
        ),
        "must be a flat list of numbers": row.assign(
            values=pd.Series([[*values[:-1], True]], dtype=object)
        ),
        "row 0: `id` must be a text such as 'pump-7'; got 7": row.assign(id=[7]),
        "row 0: `id` must be 1 to 256 characters; got 257": row.assign(id=["p" * 257]),
        "`start` must be an ISO 8601 date and time": row.assign(start=["now"]),
        "its 53 values and 12 forecast steps must lie between": row.assign(
            start=["2262-04-10T00:00:00"]
        ),
        "'x' holds values too large for the model once scaled": row.assign(
            x=pd.Series([[1e39] * len(values)], dtype=object)
        ),
        "the model's forecast from this history is not finite": row.assign(
            values=pd.Series([[1e38 * (i % 2) for i in range(len(values))]], dtype=object)
        ),
    }
    for said, bad in refused.items():
        with pytest.raises(ForecastInputError, match=re.escape(said)):
            predictor.predict_frame(bad)
    long_id = row.assign(id=["p" * 5_000], values=[values[:10]])
    with pytest.raises(ForecastInputError) as caught:
        predictor.predict_frame(long_id)
    assert len(str(caught.value)) < 200 and "(5,000 characters)" in str(caught.value)
    # an empty cell (pandas' NA too) is no start: forecasts without timestamps, as with none
    undated = predictor.predict_frame(row.assign(start=pd.array([pd.NA], dtype="string")))
    assert (undated["timestamp"] == "").all()

    # a calendar frequency: a start between its steps is refused, not moved to the next one
    predictor.meta["freq"] = "MS"
    with pytest.raises(ForecastInputError, match=r"2002-01-15T00:00:00 is not a step of the"):
        predictor.predict_frame(row.assign(start="2002-01-15"))


def test_a_bad_timezone_is_refused_with_or_without_a_start(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """POST /forecast answers 422 to an unknown `timezone` whether or not the series has a
    `start`; predict read the zone only to date the forecast, so a row without a start (no
    column, or an empty cell) passed 'Mars/Olympus' over and answered 200 (`mlflow models
    serve` against a tracking server, 2026-12-07)."""
    result = train_pipeline(tiny_config(csv, registered_name=None), mlflow_settings)
    predictor = ForecastPredictor.from_directory(
        model_artifact_dir(result.model_uri, tmp_path / "m")
    )
    row = history_row(seasonal_frame(600))
    undated = row.drop(columns=["start"])
    for bad in (
        undated.assign(timezone=["Mars/Olympus"]),
        row.assign(start=pd.Series([None], dtype=object), timezone=["Mars/Olympus"]),
        row.assign(timezone=["Mars/Olympus"]),
        undated.assign(timezone=[3]),
    ):
        with pytest.raises(ForecastInputError, match=r"'pump-1': `timezone` .*IANA time zone"):
            predictor.predict_frame(bad)
    # a zone that names one, without a start: accepted, as the service accepts it
    kept = predictor.predict_frame(undated.assign(timezone=["Europe/London"]))
    assert (kept["timestamp"] == "").all()


def test_forecasts_are_floored_at_zero_where_the_seen_target_is_never_negative() -> None:
    """auto reads the training and validation spans only: a negative value in the test span
    (not read) leaves the floor on, one in the validation span turns it off; on / off are
    taken as said, and the data report says which and why."""
    frame = seasonal_frame(200, level=4.0)  # 4 +- 3: never negative
    plan = plan_split(len(frame), "h", SplitConfig(lookback=LOOKBACK))
    test_start = plan.test.start

    def splits_of(values: pd.DataFrame) -> dict[str, SeriesSplit]:
        return {"s": split_series(values, plan)}

    data = SimpleNamespace(target="y", filled={})
    urnn = ForecasterConfig(lookback=LOOKBACK, horizon=HORIZON)
    later = frame.copy()
    later.iloc[test_start + 5, 0] = -1.0
    assert floors_at_zero("auto", urnn, splits_of(later), data)  # type: ignore[arg-type]
    in_val = frame.copy()
    in_val.iloc[plan.val.start + 2, 0] = -1.0
    assert not floors_at_zero("auto", urnn, splits_of(in_val), data)  # type: ignore[arg-type]
    assert floors_at_zero("on", urnn, splits_of(in_val), data)  # type: ignore[arg-type]
    assert not floors_at_zero("off", urnn, splits_of(frame), data)  # type: ignore[arg-type]
    # a value the loader filled in is not read; flags with nothing filled change nothing
    flags = pd.DataFrame({"y": False}, index=frame.index)
    nothing_filled = SimpleNamespace(target="y", filled={"s": flags})
    assert not floors_at_zero("auto", urnn, splits_of(in_val), nothing_filled)  # type: ignore[arg-type]
    assert floors_at_zero("auto", urnn, splits_of(frame), nothing_filled)  # type: ignore[arg-type]
    flags_negative = flags.copy()
    flags_negative.iloc[plan.val.start + 2, 0] = True
    negative_filled = SimpleNamespace(target="y", filled={"s": flags_negative})
    assert floors_at_zero("auto", urnn, splits_of(in_val), negative_filled)  # type: ignore[arg-type]
    floored = replace(urnn, non_negative=True)
    assert (
        "floored at 0: 'y' holds no negative value" in non_negative_lines("auto", floored, "y")[0]
    )
    assert "not floored at 0" in non_negative_lines("auto", urnn, "y")[0]
    assert non_negative_lines("off", urnn, "y") == []
    with pytest.raises(ValueError, match="non_negative must be one of 'auto', 'on', 'off'"):
        replace(tiny_config(Path("plant.csv")), non_negative="yes")
    with pytest.raises(ForecasterConfigError, match="non_negative must be true or false"):
        ForecasterConfig(non_negative="yes")  # type: ignore[arg-type]


def test_the_data_report_counts_the_windows_and_says_when_they_are_few() -> None:
    sets = SimpleNamespace(train=range(150), val=range(40))
    urnn = ForecasterConfig(lookback=LOOKBACK, horizon=HORIZON)
    (line,) = window_lines(sets, 4, urnn)  # type: ignore[arg-type]
    assert line.startswith(
        f"windows of {LOOKBACK} + {HORIZON} rows: 150 to train on (one every 4 rows, "
        "--train-stride), 40 to early-stop on; few to train on: a shorter look-back"
    )
    plenty = SimpleNamespace(train=range(5_000), val=range(900))
    (line,) = window_lines(plenty, 1, urnn)  # type: ignore[arg-type]
    assert line.endswith("5,000 to train on (every row), 900 to early-stop on")
    naive = replace(urnn, kind="seasonal_naive", season_length=24)
    assert window_lines(plenty, 1, naive) == []  # type: ignore[arg-type]


def test_auto_floor_reads_observed_values_only_not_the_test_span_through_a_fill() -> None:
    """A gap across the val/test border is interpolated towards the test span's first observed
    value: a negative one there made the filled val values negative, and "auto" (which must
    not read the test span) turned the floor off. Filled values are not read."""
    frame = seasonal_frame(200, level=4.0)  # 4 +- 3: never negative
    plan = plan_split(len(frame), "h", SplitConfig(lookback=LOOKBACK))
    border = plan.test.start
    frame.iloc[border + 2, 0] = -12.0  # observed, in the test span
    gap = slice(border - 3, border + 2)
    before = float(frame["y"].to_numpy()[border - 4])
    frame.iloc[gap, 0] = np.linspace(before, -12.0, 7)[1:-1]  # as the loader interpolates
    filled = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    filled.iloc[gap, 0] = True
    assert (frame.iloc[border - 3 : border, 0] < 0).any()  # the fill reaches into val
    splits = {"s": split_series(frame, plan)}
    urnn = ForecasterConfig(lookback=LOOKBACK, horizon=HORIZON)
    data = SimpleNamespace(target="y", filled={"s": filled})
    assert floors_at_zero("auto", urnn, splits, data)  # type: ignore[arg-type]
    observed = frame.copy()
    observed.iloc[plan.val.start + 2, 0] = -1.0  # an observed negative in val still counts
    data_val = SimpleNamespace(target="y", filled={"s": filled})
    splits_val = {"s": split_series(observed, plan)}
    assert not floors_at_zero("auto", urnn, splits_val, data_val)  # type: ignore[arg-type]


def test_the_report_names_the_negative_values_that_turned_the_floor_off() -> None:
    """One sensor glitch of -1e6 among 3,200 temperature readings turns "auto"'s floor off;
    the line said only "its training or validation span holds negative values", with nothing
    to find the value by. It now counts them, names the first, and for a few says what to do;
    a target that is negative throughout gets the count without the glitch hint."""
    frame = seasonal_frame(200, level=4.0)  # 4 +- 3: never negative
    plan = plan_split(len(frame), "h", SplitConfig(lookback=LOOKBACK))
    glitch = frame.copy()
    glitch.iloc[10, 0] = -1e6
    urnn = ForecasterConfig(lookback=LOOKBACK, horizon=HORIZON)
    data = SimpleNamespace(target="y", filled={})
    splits = {"s": split_series(glitch, plan)}
    assert not floors_at_zero("auto", urnn, splits, data)  # type: ignore[arg-type]
    negatives = negative_targets(splits, data)  # type: ignore[arg-type]
    observed = len(plan.train) + len(plan.val)
    (line,) = non_negative_lines("auto", urnn, "y", negatives=negatives)
    assert line == (
        "forecasts of 'y' are not floored at 0: its training and validation spans hold "
        f"1 negative value of {observed:,} observed (series 's' at {frame.index[10]}, -1e+06); "
        "if they are glitches, fix the data or pass --non-negative on"
    )
    below = negative_targets({"s": split_series(-frame, plan)}, data)  # type: ignore[arg-type]
    (line,) = non_negative_lines("auto", urnn, "y", negatives=below)
    assert line.endswith(
        f"hold {observed:,} negative values of {observed:,} observed (the first: series 's' "
        f"at {frame.index[0]}, {-float(frame['y'].iloc[0]):.6g})"
    )


def test_negative_targets_reads_each_row_once_skips_filled_ones_and_names_the_first() -> None:
    """The val span's context rows are train rows, counted once; a filled negative is not
    read; the first negative is named by its own timestamp, in the train rows or past them
    in the val span (looked up only once found)."""
    frame = seasonal_frame(200, level=4.0)  # 4 +- 3: never negative
    plan = plan_split(len(frame), "h", SplitConfig(lookback=LOOKBACK))
    last_train, in_val = plan.train.stop - 1, plan.val.start + 3
    assert plan.val.input_start <= last_train  # the last train row is val context too
    frame.iloc[[5, last_train], 0] = [-7.0, -5.0]
    frame.iloc[in_val, 0] = -2.0
    filled = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    filled.iloc[5, 0] = True  # an interpolated value: not an observation
    data = SimpleNamespace(target="y", filled={"s": filled})
    negatives = negative_targets({"s": split_series(frame, plan)}, data)  # type: ignore[arg-type]
    rows = len(plan.train) + len(plan.val)
    assert negatives == Negatives(2, rows - 1, ("s", frame.index[last_train], -5.0))
    frame.iloc[last_train, 0] = 5.0
    negatives = negative_targets({"s": split_series(frame, plan)}, data)  # type: ignore[arg-type]
    assert negatives == Negatives(1, rows - 1, ("s", frame.index[in_val], -2.0))


def test_the_report_names_windows_a_sentinel_value_flattens_once_scaled() -> None:
    """One logger error code of -999999999 among the training values inflated the scaler's
    std so far that every look-back window's scaled std fell under the model's flat-window
    clamp: validation loss read 0.0000 and every forecast was its window's level, with only
    the spike named. The report now says the windows are read as flat, and what to do; a
    series without the sentinel, and windows flat in the data (no sale all day), are not
    named."""
    frame = seasonal_frame(300, level=20.0)
    plan = plan_split(len(frame), "h", SplitConfig(lookback=LOOKBACK))
    urnn = ForecasterConfig(lookback=LOOKBACK, horizon=HORIZON)

    def lines(values: pd.DataFrame) -> list[str]:
        splits = {"s": split_series(values, plan)}
        return flattened_window_lines(splits, StandardScaler.fit(splits, scope="global"), "y", urnn)

    assert lines(frame) == []
    sentinel = frame.copy()
    sentinel.iloc[5, 0] = -999999999.0
    (line,) = lines(sentinel)
    windows = len(plan.train) - LOOKBACK + 1
    said = f"{windows - 6:,} of {windows:,} training look-back windows of 'y' ('s')"
    assert line.startswith(said)
    assert "read as flat and forecast as their level only" in line
    assert line.endswith("leave those cells empty (missing values are filled) and train again")
    quiet = frame.copy()
    quiet.iloc[100:200, 0] = 0.0  # flat in the data: forecast as its level by design
    assert lines(quiet) == []
    stream = replace(urnn, kind="urnn-stream")
    splits = {"s": split_series(sentinel, plan)}
    scaler = StandardScaler.fit(splits, scope="global")
    assert flattened_window_lines(splits, scaler, "y", stream) == []


def test_the_report_names_a_floor_the_model_config_asked_for_not_the_data() -> None:
    """Under "auto" a model config's own non_negative true is kept without reading the data;
    the line said "'OT' holds no negative value" of a target with negative values."""
    floored = ForecasterConfig(lookback=LOOKBACK, horizon=HORIZON, non_negative=True)
    (line,) = non_negative_lines("auto", floored, "OT", asked=True)
    assert "the model config says non_negative true" in line
    assert "holds no negative value" not in line
    (line,) = non_negative_lines("auto", floored, "OT")
    assert "'OT' holds no negative value" in line


def test_reference_statistics_bins_cover_the_training_values() -> None:
    frame = pd.DataFrame({"a": np.arange(100.0)})
    stats = reference_statistics([frame], bins=4)["a"]
    assert stats["mean"] == pytest.approx(49.5)
    assert len(stats["edges"]) == 3
    assert stats["proportions"] == pytest.approx([0.25, 0.25, 0.25, 0.25], abs=0.011)


def fresh_registry(mlflow_settings: Settings) -> Any:
    """An MLflow client on the temporary store, also made MLflow's process-wide one."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_settings.resolved_tracking_uri())
    mlflow_settings.var_dir.mkdir(parents=True)
    return mlflow.MlflowClient()


def _versions(client: Any, n: int, source: Path) -> list[str]:
    """`n` versions of NAME, each from a run of its own, as `urnn train` registers them."""
    client.create_registered_model(NAME)
    runs = [client.create_run("0").info.run_id for _ in range(n)]
    return [
        str(client.create_model_version(NAME, source=str(source), run_id=run).version)
        for run in runs
    ]


def test_promotion_rule_better_promoted_worse_kept_tags_recorded(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    client = fresh_registry(mlflow_settings)
    v1, v2, v3, v4 = _versions(client, 4, tmp_path)
    asked: list[str] = []

    def scores(table: dict[str, float]) -> Callable[[str], Comparison | None]:
        def score(version: str) -> Comparison | None:
            asked.append(version)
            return Comparison(table[version]) if version in table else None

        return score

    first = promote_if_better(client, NAME, v1, 1.0, scores({}))
    assert first.promoted and first.reason == "no champion yet" and asked == []

    better = promote_if_better(client, NAME, v2, 0.5, scores({v1: 1.0}))
    assert better.promoted and asked == [v1]
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v2
    tags = client.get_model_version(NAME, v2).tags
    assert tags["promotion.decision"] == "promoted"
    assert float(tags["backtest.challenger_score"]) == 0.5
    assert float(tags["backtest.champion_score"]) == 1.0
    assert tags["backtest.champion_version"] == v1
    assert tags["backtest.metric"] == "mae"
    # the one it replaced says by whom (its own tags still say it was promoted)
    replaced = client.get_model_version(NAME, v1).tags
    assert replaced["promotion.superseded_by"] == v2
    assert replaced["promotion.decision"] == "promoted"
    # and so does its training run, which the run list shows beside the run's decision
    run_tags = client.get_run(client.get_model_version(NAME, v1).run_id).data.tags
    assert run_tags["promotion.superseded_by"] == f"{NAME} version {v2}"
    assert "promotion.superseded_at" in run_tags

    worse = promote_if_better(client, NAME, v3, 0.7, scores({v2: 0.5}))
    assert not worse.promoted
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v2
    tags = client.get_model_version(NAME, v3).tags
    assert tags["promotion.decision"] == "kept"
    assert (float(tags["backtest.challenger_score"]), float(tags["backtest.champion_score"])) == (
        0.7,
        0.5,
    )

    # Better, but promotion switched off: scores recorded, alias untouched.
    skipped = promote_if_better(client, NAME, v4, 0.1, scores({v2: 0.5}), promote=False)
    assert not skipped.promoted
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v2
    assert client.get_model_version(NAME, v4).tags["promotion.decision"] == "skipped"


def test_a_promotion_margin_keeps_the_champion_against_a_barely_lower_score(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """min_improvement 0.05: 0.97 against 1.0 (3 % lower) is kept, saying what was asked;
    0.95 (5 % lower) is promoted; the margin is recorded on both versions."""
    client = fresh_registry(mlflow_settings)
    v1, v2, v3 = _versions(client, 3, tmp_path)
    promote_if_better(client, NAME, v1, 1.0, None)

    def champion(score: float) -> Callable[[str], Comparison | None]:
        return lambda version: Comparison(score)

    close = promote_if_better(client, NAME, v2, 0.97, champion(1.0), min_improvement=0.05)
    assert not close.promoted
    assert close.reason == (
        f"mae 0.97 is 3 % below champion v{v1} 1; min_improvement 5 % asks for <= 0.95"
    )
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v1
    tags = client.get_model_version(NAME, v2).tags
    assert tags["promotion.decision"] == "kept"
    assert float(tags["promotion.min_improvement"]) == 0.05

    enough = promote_if_better(client, NAME, v3, 0.95, champion(1.0), min_improvement=0.05)
    assert enough.promoted and "is 5 % below champion" in enough.reason
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v3
    worse = _decide(v3, "9", 1.2, champion(1.0), metric="mae", promote=True, min_improvement=0.05)
    assert not worse.promoted and worse.reason.startswith(f"mae 1.2 >= champion v{v3} 1;")


@pytest.mark.parametrize(("champion", "challenger"), [(0.7, 0.686), (1.1, 1.078), (50.0, 49.0)])
def test_a_challenger_exactly_the_margin_below_the_champion_is_promoted(
    champion: float, challenger: float
) -> None:
    """At least 2 % lower: 0.686 against 0.7 is exactly 2 % lower, but 0.7 x 0.98 rounds to
    0.6859999999999999 and the challenger was kept, the reason saying it was 2 % below and
    asked for <= 0.686. A hair above the bar is still kept."""

    def scored(version: str) -> Comparison:
        return Comparison(champion)

    at = _decide("1", "2", challenger, scored, metric="mae", promote=True, min_improvement=0.02)
    assert at.promoted, at.reason
    above = challenger * (1 + 1e-6)
    kept = _decide("1", "2", above, scored, metric="mae", promote=True, min_improvement=0.02)
    assert not kept.promoted and kept.tag == "kept"


@pytest.mark.parametrize("margin", [0.0, 0.02])
def test_a_challenger_not_finite_on_the_shared_rows_is_said_to_be(margin: float) -> None:
    """Its score on the rows both models forecast (the basis) is the one compared: a NaN there
    was reported as "mae nan >= champion v1 1" (and, with a margin, "asks for <= 0.98")."""
    basis = Comparison(1.0, challenger=float("nan"), basis="on 12 forecasts both models made")
    decided = _decide(
        "1", "2", 0.5, lambda v: basis, metric="mae", promote=True, min_improvement=margin
    )
    assert not decided.promoted and decided.tag == "kept"
    assert decided.reason == "challenger mae is not finite (nan) (on 12 forecasts both models made)"


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan"), True, "0.1"])
def test_a_promotion_margin_outside_zero_to_one_is_refused(bad: object) -> None:
    problem = min_improvement_problem(bad)
    assert problem is not None and "[0, 1)" in problem and repr(bad) in problem
    assert min_improvement_problem(0) is None and min_improvement_problem(0.02) is None


def test_unscorable_champion_is_kept(tmp_path: Path, mlflow_settings: Settings) -> None:
    client = fresh_registry(mlflow_settings)
    v1, v2 = _versions(client, 2, tmp_path)
    promote_if_better(client, NAME, v1, 1.0, None)
    decision = promote_if_better(client, NAME, v2, 0.1, lambda version: None)
    assert not decision.promoted and "could not be scored" in decision.reason
    assert client.get_model_version(NAME, v2).tags["backtest.champion_score"] == "none"


def test_a_champion_is_compared_on_the_forecasts_both_models_made(
    csv: Path, mlflow_settings: Settings
) -> None:
    """Horizon 12 champion; a horizon-6 challenger is refused whatever its score (requests
    for 7-12 steps would start failing); a horizon-24 one is scored against it on the rows
    both forecast (steps 1-12 of the shared origins), not on its own 24 steps."""
    import mlflow

    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    first = train_pipeline(tiny_config(csv, model=linear), mlflow_settings)
    assert first.promoted
    shorter = replace(linear, horizon=6)
    narrow = train_pipeline(tiny_config(csv, model=shorter, backtest_step=6), mlflow_settings)
    assert not narrow.promoted
    assert narrow.reason.startswith("the champion forecasts 12 steps and this model 6")
    longer = replace(linear, horizon=24)
    wide = train_pipeline(tiny_config(csv, model=longer), mlflow_settings)
    tags = mlflow.MlflowClient().get_model_version(NAME, str(wide.version)).tags
    assert tags["backtest.basis"].endswith("steps 1-12")
    on_basis = float(tags["backtest.challenger_score_on_basis"])
    assert on_basis != wide.challenger_score  # its own 24 steps score differently
    assert wide.champion_score is not None
    assert wide.promoted == (on_basis < wide.champion_score)
    assert f"({tags['backtest.basis']})" in wide.reason
    # the champion's own forecasts on this backtest are logged with the run: its score (a
    # tag) can be recomputed, on the rows both made (steps 1-12)
    path = mlflow.artifacts.download_artifacts(
        run_id=wide.run_id,
        artifact_path=f"metrics/champion_v{wide.champion_version}_forecasts.parquet",
        dst_path=str(csv.parent / "dl"),
    )
    theirs = pd.read_parquet(path)
    assert int(theirs["step"].max()) == 12
    observed = theirs[~theirs["filled"]]
    assert float((observed["point"] - observed["actual"]).abs().mean()) == pytest.approx(
        wide.champion_score
    )


def test_a_champion_of_another_horizon_is_compared_whatever_the_backtest_step(
    csv: Path, mlflow_settings: Settings
) -> None:
    """Origins are counted back from the test span's end by each model's horizon: at
    --backtest-step 24 a horizon-12 champion's origins lay 12 rows off a horizon-24
    challenger's, the two shared no forecast, and the challenger was kept as "champion v1
    could not be scored on this backtest" with no reason, however good it was. The champion
    is now backtested at a step that meets every challenger origin; where --backtest-windows
    still leaves none in common, the reason says so and what step would."""
    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    assert train_pipeline(tiny_config(csv, model=linear), mlflow_settings).promoted
    longer = replace(linear, horizon=24)
    few = train_pipeline(
        tiny_config(csv, model=longer, backtest_step=24, backtest_windows=2), mlflow_settings
    )
    assert not few.promoted and few.champion_score is None
    assert few.reason == (
        "champion v1 could not be scored on this backtest (the two backtests share no "
        "forecast: each model's origins are counted back from the test span's end by its own "
        "horizon (the champion's 12 steps, this model's 24), 24 rows apart, the last 2 per "
        "series (--backtest-windows); a --backtest-step dividing 12 compares them); kept"
    )
    wide = train_pipeline(tiny_config(csv, model=longer, backtest_step=24), mlflow_settings)
    assert wide.champion_version == "1" and wide.champion_score is not None, wide.reason
    assert "forecasts both models made" in wide.reason and "steps 1-12)" in wide.reason


def test_a_challenger_that_would_refuse_served_requests_is_not_promoted(
    csv: Path, mlflow_settings: Settings
) -> None:
    """Better scores, yet as champion it would answer 422 to requests served today: a longer
    look-back (shorter histories refused), calendar features (undated requests refused), a
    covariate it reads and the champion does not (requests without it refused), one the
    champion knows and it does not (requests carrying it refused). Such a version was promoted
    when its score was lower; it is kept, saying which requests, and can be promoted by hand.
    A linear model knows its data's covariates and reads none, as the service has it. Both
    scores are still taken and recorded where the data holds the champion's columns (a
    covariate added on purpose: the tags said champion_score "none", and the person told to
    promote by hand had no comparison to go on); not where the data lacks one (the last)."""
    import mlflow

    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    urnn = replace(linear, kind="urnn", hidden_size=8, segment_length=12)
    champion = train_pipeline(tiny_config(csv, model=linear), mlflow_settings)  # knows x
    assert champion.promoted
    cases = [
        (
            tiny_config(csv, model=replace(linear, lookback=2 * LOOKBACK)),
            f"the champion reads histories of {LOOKBACK} values and this model "
            f"{2 * LOOKBACK}: as champion it would refuse the histories of {LOOKBACK} to "
            f"{2 * LOOKBACK - 1} values that are served today; kept",
        ),
        (
            tiny_config(csv, model=urnn, calendar=True),
            "this model reads calendar features, so every series needs its dates",
        ),
        (
            tiny_config(csv, model=urnn),  # the linear champion knows x but reads none
            "this model reads covariate(s) 'x' that the champion does not: as champion it "
            "would refuse the requests without them that are served today",
        ),
        (
            tiny_config(csv, model=linear, load=LoadConfig(target="y")),
            "this model does not know the champion's covariate(s) 'x': as champion it would "
            "refuse the requests carrying them that are served today",
        ),
    ]
    for index, (config, reason) in enumerate(cases):
        result = train_pipeline(config, mlflow_settings)
        assert not result.promoted and reason in result.reason, result.reason
        assert result.champion_version == champion.version
        tags = mlflow.MlflowClient().get_model_version(NAME, str(result.version)).tags
        if index < len(cases) - 1:  # the data holds x: the champion is scored on it
            assert result.champion_score is not None and math.isfinite(result.champion_score)
            assert tags["backtest.champion_score"] == repr(result.champion_score)
            mine = float(tags.get("backtest.challenger_score_on_basis", result.challenger_score))
            assert result.reason.endswith(
                f"; kept (move the alias by hand if that is intended); on this backtest mae "
                f"{mine:.6g}, champion v{champion.version} {result.champion_score:.6g}"
                + (f" ({tags['backtest.basis']})" if "backtest.basis" in tags else "")
            ), result.reason
        else:  # the data lacks the champion's x: nothing to score it on
            assert result.champion_score is None and tags["backtest.champion_score"] == "none"
    # the other way round: a champion that knows no covariate (the last one); a linear
    # challenger that knows x serves every request it serves: compared, on the champion's
    # own columns
    mlflow.MlflowClient().set_registered_model_alias(NAME, CHAMPION, str(result.version))
    with_x = train_pipeline(tiny_config(csv, model=linear), mlflow_settings)
    assert with_x.champion_score is not None, with_x.reason
    assert with_x.promoted == (with_x.challenger_score < with_x.champion_score)
    other = train_pipeline(
        tiny_config(csv, model=linear, load=LoadConfig(target="x")), mlflow_settings
    )
    assert other.reason == (
        f"champion v{other.champion_version} could not be scored on this backtest (it "
        "forecasts 'y' and this model 'x'); kept"
    )


def test_a_refusal_beside_a_champion_that_cannot_be_backtested_here_stands_alone(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """The champion is scored beside a refusal where it can be; where its backtest cannot run
    on this data (a streaming champion, a windowed challenger on a file cut at a long gap,
    which a streaming model cannot be backtested on), the run must not fail after its
    version was registered: it is kept with the refusal, saying why there is no score."""
    stream = ForecasterConfig(kind="urnn-stream", lookback=LOOKBACK, horizon=HORIZON, hidden_size=8)
    champion = train_pipeline(tiny_config(csv, model=stream), mlflow_settings)
    assert champion.promoted
    frame = pd.read_csv(csv)
    gapped = tmp_path / "plant-gapped.csv"
    pd.concat([frame.iloc[:450], frame.iloc[480:]]).to_csv(gapped, index=False)
    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    load = LoadConfig(target="y", covariates=("x",), max_gap=4, on_long_gap="split")
    result = train_pipeline(tiny_config(gapped, model=linear, load=load), mlflow_settings)
    assert not result.promoted and result.champion_score is None
    assert "the champion is a streaming model ('urnn-stream')" in result.reason, result.reason
    assert "; the champion cannot be scored on this backtest (series " in result.reason


def test_a_champion_moved_during_the_comparison_is_compared_again(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    client = fresh_registry(mlflow_settings)
    v1, v2, v3 = _versions(client, 3, tmp_path)
    promote_if_better(client, NAME, v1, 1.0, None)
    asked: list[str] = []

    def slow_score(version: str) -> Comparison:
        asked.append(version)
        if version == v1:  # while v1 is scored, another worker promotes v2 (score 0.2)
            client.set_registered_model_alias(NAME, CHAMPION, v2)
            return Comparison(1.0)
        return Comparison(0.2)

    decision = promote_if_better(client, NAME, v3, 0.5, slow_score)
    assert asked == [v1, v2]
    assert not decision.promoted and decision.champion_version == v2
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v2


class _OverwrittenAfterUs:
    """An MLflow client on which, right after each alias write for `mine`, another promotion
    writes the next of `others` (MLflow moves an alias without a compare: the later wins)."""

    def __init__(self, client: Any, mine: str, others: list[str]) -> None:
        self._client, self._mine, self._others = client, mine, list(others)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._client.set_registered_model_alias(name, alias, version)
        if version == self._mine and self._others:
            self._client.set_registered_model_alias(name, alias, self._others.pop(0))


def test_an_alias_overwritten_just_after_ours_is_compared_again_not_reported_promoted(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """Two automatic promotions at once both said "promoted" and the later write won: the
    one that lost reported a champion it was not (no read-back, as `urnn models promote`
    had). Now it compares with the version that holds the alias, and tries again if better."""
    client = fresh_registry(mlflow_settings)
    v1, v2, v3, v4, v5 = _versions(client, 5, tmp_path)
    promote_if_better(client, NAME, v1, 1.0, None)
    table = {v1: 1.0, v2: 0.2, v4: 0.9}

    # v3 (0.5) beats v1, but v2 (0.2) lands just after its write: v3 is kept, and says so
    lost = promote_if_better(
        _OverwrittenAfterUs(client, v3, [v2]), NAME, v3, 0.5, lambda v: Comparison(table[v])
    )
    assert not lost.promoted and lost.champion_version == v2 and lost.champion_score == 0.2
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v2
    tags = client.get_model_version(NAME, v3).tags
    assert tags["promotion.decision"] == "kept" and tags["backtest.champion_version"] == v2
    assert client.get_model_version(NAME, v1).tags.get("promotion.superseded_by") != v3

    # v5 (0.1) beats v2; v4 (0.9) lands just after: v5 beats it too and takes the alias back
    won = promote_if_better(
        _OverwrittenAfterUs(client, v5, [v4]), NAME, v5, 0.1, lambda v: Comparison(table[v])
    )
    assert won.promoted and won.champion_version == v4
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v5
    assert client.get_model_version(NAME, v4).tags["promotion.superseded_by"] == v5


def test_a_read_back_that_fails_once_is_read_again_not_taken_for_a_lost_race(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """Any error reading the alias read as "no champion": one failed read-back after the
    write made a promoted model report "kept" (its tags too) while it held the alias."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(mlflow_settings.resolved_tracking_uri())
    mlflow_settings.var_dir.mkdir(parents=True)
    client = mlflow.MlflowClient()
    v1, v2 = _versions(client, 2, tmp_path)
    promote_if_better(client, NAME, v1, 1.0, None)

    class FlakyOnce(_OverwrittenAfterUs):
        failed = False

        def get_registered_model(self, name: str) -> Any:
            if not self.failed:
                self.failed = True
                raise MlflowException("503: temporarily unavailable")
            return self._client.get_registered_model(name)

    decision = promote_if_better(
        FlakyOnce(client, v2, []), NAME, v2, 0.5, lambda v: Comparison(1.0)
    )
    assert decision.promoted and decision.champion_version == v1
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v2
    assert client.get_model_version(NAME, v2).tags["promotion.decision"] == "promoted"
    assert client.get_model_version(NAME, v1).tags["promotion.superseded_by"] == v2


def test_an_alias_overwritten_on_every_try_is_not_reported_promoted(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    client = fresh_registry(mlflow_settings)
    v1, v2 = _versions(client, 2, tmp_path)
    promote_if_better(client, NAME, v1, 1.0, None)
    busy = _OverwrittenAfterUs(client, v2, [v1] * MAX_COMPARISONS)
    decision = promote_if_better(busy, NAME, v2, 0.1, lambda v: Comparison(1.0))
    assert not decision.promoted and decision.champion_version == v1
    assert decision.reason.startswith(
        f"the champion alias was moved by other promotions {MAX_COMPARISONS} times"
    )
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v1
    assert client.get_model_version(NAME, v2).tags["promotion.decision"] == "kept"


def test_a_champion_at_another_frequency_is_not_compared_and_is_kept(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """An hourly champion was scored on a 15-minute challenger's data as if the two were
    comparable, and replaced by it on that score."""
    import mlflow

    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    first = train_pipeline(tiny_config(csv, model=linear), mlflow_settings)
    assert first.promoted
    quarter = tmp_path / "quarter.csv"
    frame = seasonal_frame(600)
    frame.index = pd.date_range("2021-03-01", periods=600, freq="15min", name="timestamp")
    frame.to_csv(quarter)
    other = train_pipeline(tiny_config(quarter, model=linear), mlflow_settings)
    assert not other.promoted and other.champion_score is None
    assert other.reason == (
        "champion v1 could not be scored on this backtest (it was trained at frequency 'h' and "
        "this model at '15min': their scores are not comparable, and the clients of the "
        "champion would be answered in '15min' steps instead of 'h'; move the alias by hand "
        "(urnn models promote) if the switch is intended); kept"
    )
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == "1"
    tags = client.get_model_version(NAME, str(other.version)).tags
    assert tags["promotion.decision"] == "kept"
    assert tags["promotion.reason"] == other.reason
    assert tags["backtest.champion_score"] == "none"
    # the same step spelt otherwise is compared as before
    sixty = tiny_config(
        csv, model=linear, load=LoadConfig(target="y", covariates=("x",), freq="60min")
    )
    again = train_pipeline(sixty, mlflow_settings)
    assert again.champion_score is not None


def _weekly_csv(path: Path, start: str) -> Path:
    """`seasonal_frame`'s values a week apart from `start` (2000-01-02 is a Sunday)."""
    frame = seasonal_frame(600, period=52)
    frame.index = pd.date_range(start, periods=600, freq="7D", name="timestamp")
    frame.to_csv(path)
    return path


def test_the_pyfunc_takes_weeks_spelt_otherwise_from_the_anchor_weekday(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """A '7D' model (weekly data as `urnn train` infers it) through mlflow.pyfunc: a row with
    `freq` 'W-SUN' from a Sunday was refused as "not the model's frequency" where `urnn serve`
    answers it; now the same forecast as with '7D', and a 'W-SUN' row starting on a Monday is
    refused naming both weekdays, as the service refuses it."""
    import mlflow

    sundays = _weekly_csv(tmp_path / "sundays.csv", "2000-01-02")
    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    config = tiny_config(sundays, model=linear, registered_name=None)
    result = train_pipeline(config, mlflow_settings)
    model = mlflow.pyfunc.load_model(result.model_uri)
    frame = pd.read_csv(sundays, index_col="timestamp", parse_dates=True)
    row = history_row(frame)
    assert pd.Timestamp(row["start"].iloc[0]).weekday() == 6  # a Sunday
    as_days = model.predict(row.assign(freq=["7D"]))
    for weeks in ("W-SUN", "W"):
        pd.testing.assert_frame_equal(model.predict(row.assign(freq=[weeks])), as_days)
    monday = (pd.Timestamp(row["start"].iloc[0]) + pd.Timedelta(days=1)).isoformat()
    with pytest.raises(mlflow.exceptions.MlflowException) as said:
        model.predict(row.assign(freq=["W-SUN"], start=[monday]))
    assert (
        "`freq` 'W-SUN' names the model's '7D' steps only from a Sunday, and series "
        f"'pump-1' starts {monday}, a Monday" in str(said.value.message)
    ), said.value.message
    with pytest.raises(mlflow.exceptions.MlflowException, match="is not the model's frequency"):
        model.predict(row.assign(freq=["D"]))


def test_a_champion_at_weeks_spelt_otherwise_is_compared_from_the_anchor_weekday(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """`urnn train` infers weekly data as '7D'; retrained with --freq W-SUN on the same
    Sundays (or the reverse) the champion was kept as "trained at another frequency", not
    scored, where the service takes either spelling from the anchor's weekday. Now both are
    scored; a 'W-SUN' version in place of a '7D' champion is still kept, for the requests it
    would refuse (weeks from another weekday); '7D' data from a Monday is not a 'W-SUN'
    champion's weeks: not compared, naming both weekdays."""
    import mlflow

    sundays = _weekly_csv(tmp_path / "sundays.csv", "2000-01-02")
    mondays = _weekly_csv(tmp_path / "mondays.csv", "2000-01-03")
    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    days = tiny_config(sundays, model=linear)
    weeks = tiny_config(
        sundays, model=linear, load=LoadConfig(target="y", covariates=("x",), freq="W-SUN")
    )
    champion = train_pipeline(days, mlflow_settings)
    assert champion.promoted
    anchored = train_pipeline(weeks, mlflow_settings)
    assert anchored.champion_version == champion.version
    assert anchored.champion_score is not None, anchored.reason  # compared at last
    assert not anchored.promoted
    assert (
        "the champion steps '7D' from any weekday and this model 'W-SUN' only from a Sunday: "
        "as champion it would refuse the dated requests starting on another weekday that are "
        "served today; kept"
    ) in anchored.reason, anchored.reason
    # the other way round: a 'W-SUN' champion, '7D' data from a Sunday serves its requests
    mlflow.MlflowClient().set_registered_model_alias(NAME, CHAMPION, str(anchored.version))
    spelt_as_days = train_pipeline(days, mlflow_settings)
    assert spelt_as_days.champion_version == anchored.version
    assert spelt_as_days.champion_score is not None, spelt_as_days.reason
    assert "frequency" not in spelt_as_days.reason, spelt_as_days.reason
    better = spelt_as_days.challenger_score < spelt_as_days.champion_score
    assert spelt_as_days.promoted == better
    mlflow.MlflowClient().set_registered_model_alias(NAME, CHAMPION, str(anchored.version))
    from_monday = train_pipeline(tiny_config(mondays, model=linear), mlflow_settings)
    assert not from_monday.promoted and from_monday.champion_score is None
    assert from_monday.reason == (
        f"champion v{anchored.version} could not be scored on this backtest (it was trained "
        "at frequency 'W-SUN' and this model at '7D': '7D' names the model's 'W-SUN' steps "
        "only from a Sunday, and series 'mondays' starts 2000-01-03T00:00:00, a Monday: their "
        "scores are not comparable, and the clients of the champion would be answered in "
        "weeks from a Monday instead of a Sunday; move the alias by hand (urnn models "
        "promote) if the switch is intended); kept"
    )


def test_a_champion_that_does_not_load_is_kept_and_the_new_version_decided(
    csv: Path, mlflow_settings: Settings
) -> None:
    """A champion whose weights file was damaged stopped `urnn train` with the load error
    after the new version was registered: it stayed without scores or a decision. Now it is
    decided ("kept"), with the reason naming the load error and the way out."""
    import mlflow

    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    assert train_pipeline(tiny_config(csv, model=linear), mlflow_settings).promoted
    client = mlflow.MlflowClient()
    for weights in Path(mlflow_settings.var_dir).rglob("weights.pt"):  # v1's copies alone
        weights.write_bytes(b"not a state dict")
    other = train_pipeline(tiny_config(csv, model=linear), mlflow_settings)
    assert not other.promoted and other.champion_score is None
    assert other.reason.startswith("champion v1 could not be scored on this backtest (it cannot "
                                   "be loaded (CheckpointError: ")  # fmt: skip
    assert "move the alias to a version that loads (urnn models promote)); kept" in other.reason
    tags = client.get_model_version(NAME, str(other.version)).tags
    assert (tags["promotion.decision"], tags["promotion.reason"]) == ("kept", other.reason)
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == "1"


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda c: c.pop("target"), "('target' must be the forecast column's name; it has none)"),
        (lambda c: c.update(freq="bogus"), "('freq' must be a pandas frequency alias such as"),
        (lambda c: c["model"].update(horizon=24), "('model' section does not match weights.pt: "),
    ],
    ids=["no target", "bad freq", "another horizon"],
)
def test_a_champion_whose_config_json_was_edited_is_kept_and_the_new_version_decided(
    edit: Callable[[dict[str, Any]], object], said: str, csv: Path, mlflow_settings: Settings
) -> None:
    """A champion's config.json edited by hand (a key removed, the horizon changed) loaded
    and then failed in the comparison, or failed to build with torch's multi-line state-dict
    error: `urnn train` stopped in a traceback (KeyError: 'target', RuntimeError) after
    registering its version, which was left with neither scores nor a decision. The load now
    refuses such a config.json, named as stored, and the new version is decided ("kept")."""
    import mlflow

    from training.registry import load_registered

    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    assert train_pipeline(tiny_config(csv, model=linear), mlflow_settings).promoted
    for config in Path(mlflow_settings.var_dir).rglob("config.json"):  # v1's copies alone
        content = json.loads(config.read_text())
        edit(content)
        config.write_text(json.dumps(content))
    other = train_pipeline(tiny_config(csv, model=linear), mlflow_settings)
    assert not other.promoted and other.champion_score is None
    assert other.reason.startswith(
        f"champion v1 could not be scored on this backtest (it cannot be loaded "
        f"(ModelConfigError: config.json in models:/{NAME}/1 is not a model's config.json "
    ), other.reason
    assert said.replace("('model'", "(its 'model'") in other.reason
    tags = mlflow.MlflowClient().get_model_version(NAME, str(other.version)).tags
    assert (tags["promotion.decision"], tags["promotion.reason"]) == ("kept", other.reason)
    with pytest.raises(ValueError, match=re.escape(said.replace("('model'", "(its 'model'"))):
        load_registered(f"models:/{NAME}/1")


def test_pinball_mean_is_compared_on_the_quantile_levels_both_models_have(
    csv: Path, mlflow_settings: Settings
) -> None:
    """pinball_mean averages over a model's own levels, and wide ones score low whatever the
    model: a challenger with eight wide levels beside the champion's 0.45/0.5/0.55 and twice
    its error beat it. Both are now scored on the levels they share (the champion's three; a
    challenger without them is not compared at all: it could not answer requests for them)."""
    import mlflow

    def config(quantiles: tuple[float, ...], epochs: int) -> TrainConfig:
        model = ForecasterConfig(
            kind="linear", lookback=LOOKBACK, horizon=HORIZON, quantiles=quantiles
        )
        fit = FitConfig(max_epochs=epochs, device="cpu")
        return tiny_config(csv, model=model, fit=fit, metric="pinball_mean")

    champion = train_pipeline(config((0.45, 0.5, 0.55), 5), mlflow_settings)
    wide = (0.01, 0.02, 0.03, 0.04, 0.45, 0.5, 0.55, 0.96, 0.97, 0.98, 0.99)
    worse = train_pipeline(config(wide, 2), mlflow_settings)
    # the trap: worse on every shared measure, better on its own pinball_mean
    assert worse.scores["mae"] > champion.scores["mae"]
    assert worse.scores["pinball_mean"] < champion.scores["pinball_mean"]
    assert not worse.promoted
    assert worse.champion_score == pytest.approx(champion.scores["pinball_mean"])
    tags = mlflow.MlflowClient().get_model_version(NAME, str(worse.version)).tags
    assert tags["backtest.basis"] == (
        "pinball_mean on the quantile levels both models forecast: 0.45, 0.5, 0.55"
    )
    on_basis = float(tags["backtest.challenger_score_on_basis"])
    shared = ("pinball_q0.45", "pinball_q0.5", "pinball_q0.55")
    assert on_basis == pytest.approx(sum(worse.scores[k] for k in shared) / 3)
    assert worse.champion_score is not None and on_basis > worse.champion_score
    assert f"({tags['backtest.basis']})" in worse.reason


def test_quantile_levels_shared_by_two_models() -> None:
    assert shared_levels("mae", (0.1, 0.5), (0.2, 0.5)) == (None, "")
    assert shared_levels("pinball_mean", (0.1, 0.5, 0.9), (0.1, 0.5, 0.9)) == (None, "")
    assert shared_levels("pinball_mean", (0.1, 0.5, 0.9), (0.05, 0.1, 0.5, 0.9)) == (
        (0.1, 0.5, 0.9),
        "pinball_mean on the quantile levels both models forecast: 0.1, 0.5, 0.9",
    )
    assert shared_levels("pinball_mean", (0.1, 0.9), (0.2, 0.8)) == (
        (),
        "pinball_mean is taken over quantile levels, and the champion's (0.1, 0.9) and this "
        "model's (0.2, 0.8) share none",
    )


def _checkpoint_files(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "weights.pt").write_bytes(b"")
    return folder


def test_a_local_model_folder_is_read_where_it_lies(tmp_path: Path) -> None:
    saved = _checkpoint_files(tmp_path / "checkpoint")
    assert model_artifact_dir(str(saved), tmp_path / "copy") == saved
    logged = tmp_path / "store" / "models" / "m-1"
    _checkpoint_files(logged / "artifacts")
    (logged / "MLmodel").write_text("flavors: {}\n")
    assert model_artifact_dir(str(logged), tmp_path / "copy") == logged / "artifacts"
    assert model_artifact_dir(logged.as_uri(), tmp_path / "copy") == logged / "artifacts"
    assert not (tmp_path / "copy").exists()  # nothing was copied


def test_a_folder_holding_several_models_is_refused_not_searched(tmp_path: Path) -> None:
    """A whole store given as --model: each model lies below it; loading the first found
    scored an arbitrary version (and copying the store first cost its whole size)."""
    for model in ("m-1", "m-2"):
        _checkpoint_files(tmp_path / "store" / "models" / model / "artifacts")
    with pytest.raises(FileNotFoundError, match=r"store holds no config.json \+ weights.pt, "
                       r"neither at its top .* nor in its artifacts/"):  # fmt: skip
        model_artifact_dir(str(tmp_path / "store"), tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    with pytest.raises(FileNotFoundError, match=r"config\.json is a file; give the folder"):
        model_artifact_dir(str(tmp_path / "store/models/m-1/artifacts/config.json"), tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        model_artifact_dir(str(tmp_path / "nowhere"), tmp_path / "copy")


@pytest.mark.parametrize(
    "uri", ["runs:/0a1b2c", "runs:/0a1b2c/", "runs:///0a1b2c", "runs://0a1b2c"]
)
def test_a_whole_run_is_refused_naming_its_model_uri(uri: str, tmp_path: Path) -> None:
    """MLflow's own refusal of runs:/<id> ("Not a proper runs:/ URI: runs:/.") named neither
    the run nor its model; nothing is downloaded."""
    with pytest.raises(FileNotFoundError) as said:
        model_artifact_dir(uri, tmp_path / "copy")
    assert str(said.value) == (
        f"{uri} names a whole run, not a model in it; the pipeline logs a run's model as "
        "runs:/0a1b2c/model"
    )
    assert not (tmp_path / "copy").exists()


def test_a_runs_uri_is_read_from_the_store_passed_not_the_process_wide_one(
    csv: Path, tmp_path: Path, mlflow_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow resolves runs:/<id>/model (a LoggedModel in MLflow 3) in its process-wide store:
    with another store set, the model was not found; with none, ./mlflow.db appeared."""
    import mlflow

    result = train_pipeline(tiny_config(csv, registered_name=None), mlflow_settings)
    store = mlflow_settings.resolved_tracking_uri()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for process_wide in (f"sqlite:///{tmp_path / 'other.db'}", None):
        if process_wide is None:
            monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
            from mlflow.tracking._tracking_service import utils as tracking_utils

            monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
        else:
            mlflow.set_tracking_uri(process_wide)
        uri = f"runs:/{result.run_id}/model"
        files = model_artifact_dir(uri, tmp_path / f"m-{process_wide is None}", tracking_uri=store)
        assert (files / "config.json").is_file() and (files / "weights.pt").is_file()
    assert list(elsewhere.iterdir()) == []  # no mlflow.db made in the working folder


@pytest.fixture
def sqlite_store(tmp_path: Path, mlflow_settings: Settings) -> tuple[str, str]:
    """A SQLite MLflow store in tmp_path, made the process-wide one (put back after, by
    mlflow_settings), and the id of an experiment in it whose artifacts lie in tmp_path: a
    SQLite store's Default experiment keeps them in ./mlruns of the working folder, which these
    tests filled with logged models."""
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    artifacts = (tmp_path / "artifacts").as_uri()
    return store, mlflow.create_experiment("tests", artifact_location=artifacts)


def test_a_run_with_two_models_of_one_name_resolves_to_the_one_mlflow_finds(
    tmp_path: Path, sqlite_store: tuple[str, str]
) -> None:
    """runs:/<id>/model with two logged models named "model" in the run: the first logged was
    read, where MLflow's own resolution finds the latest (its search lists newest first)."""
    import time

    import mlflow
    from mlflow.pyfunc.model import PythonModel

    from training.registry import _run_model_location

    store, experiment = sqlite_store

    class Echo(PythonModel):
        def predict(
            self, context: Any, model_input: Any, params: dict[str, Any] | None = None
        ) -> Any:
            return model_input

    marker = tmp_path / "marker.txt"
    with mlflow.start_run(experiment_id=experiment) as run:
        for text in ("first", "second"):
            marker.write_text(text)
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), artifacts={"m": str(marker)})
            time.sleep(0.01)  # distinct creation times
    uri = f"runs:/{run.info.run_id}/model"
    ours = _run_model_location(uri, store)
    assert ours is not None
    theirs = mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "theirs"))
    read = Path(ours.removeprefix("file://")) / "artifacts" / "marker.txt"
    assert read.read_text() == "second"
    assert (Path(theirs) / "artifacts" / "marker.txt").read_text() == "second"


def test_the_pyfunc_judges_request_fields_and_empty_cells_by_row(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """Through mlflow.pyfunc (the signature's enforcement included): a `start` pandas would
    read by guessing day and month is refused; empty cells read as NaN are empty; the API's
    request fields are honoured (`horizon`), checked (`freq`) or refused (`timestamps`,
    `quantiles`), where MLflow dropped them with a log line."""
    import mlflow

    result = train_pipeline(tiny_config(csv, registered_name=None), mlflow_settings)
    model = mlflow.pyfunc.load_model(result.model_uri)
    row = history_row(seasonal_frame(600))
    steps = len(model.predict(row))

    def refused(**cells: object) -> str:
        with pytest.raises(mlflow.exceptions.MlflowException) as said:
            model.predict(row.assign(**{k: pd.Series([v], dtype=object) for k, v in cells.items()}))
        return str(said.value.message)

    assert "`start` '01.07.2016' is not an ISO 8601 date and time; write it as" in refused(
        start="01.07.2016"
    )
    assert "is not an ISO 8601" in refused(start="05/06/07")
    assert "timestamp" in model.predict(row.assign(start=["2016-07-01 00:00"])).columns
    empty = model.predict(row.assign(start=[float("nan")], timezone=[float("nan")]))
    assert list(empty["timestamp"]) == [""] * steps  # NaN cells: no start, no zone
    assert "row 0: `id` must be a text such as 'pump-7'; got 7" in refused(id=7)
    assert "`timestamps` is not read by the model's predict; give `start`" in refused(
        timestamps=["2016-07-01T00:00:00"] * 3
    )
    assert (
        "`quantiles` is not read from a row; give the levels once for every row as "
        "predict's params {'quantiles': [...]}, chosen from those the model was trained "
        "with (0.1, 0.5, 0.9)" in refused(quantiles=[0.5])
    )
    assert "`freq` 'D' is not the model's frequency 'h'" in refused(freq="D")
    assert len(model.predict(row.assign(freq=["h"]))) == steps
    cut = model.predict(row.assign(horizon=[2]))
    assert list(cut["step"]) == [1, 2]
    for bad in (0, steps + 1, 1.5, "3", True):
        assert "`horizon` must be a whole number of steps from 1" in refused(horizon=bad), bad
    assert "`freq` '99999999999999999999h' is not the model's" in refused(
        freq="99999999999999999999h"
    )
    with pytest.raises(ForecastInputError, match="'values' must be a flat list of numbers"):
        ForecastPredictor.from_directory(
            model_artifact_dir(result.model_uri, tmp_path / "m")
        ).predict_frame(row.assign(values=pd.Series([np.array(1.0)], dtype=object)))
    assert len(model.predict(row.assign(start=["2016-07-01t00:00:00 "]))) == steps
    columns = {"id": ["a"], "values": [row["values"].iloc[0]], "x": [row["x"].iloc[0]]}
    with pytest.raises(mlflow.exceptions.MlflowException, match="a dict of columns"):
        model.predict(columns)
    # what MLflow's scoring server makes of {"instances": [records]}: a dict of columns, so the
    # refusal names the keys that take records (it said "give a list of records")
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    records = {"instances": row.to_dict(orient="records")}
    parsed = infer_and_parse_data(records, model.metadata.get_input_schema())
    with pytest.raises(mlflow.exceptions.MlflowException) as raised:
        model.predict(parsed)
    assert 'over HTTP (mlflow models serve): {"dataframe_records": [...]}' in str(raised.value)
    assert "(MLflow turns instances into a dict of columns)" in str(raised.value)


def test_the_pyfunc_honours_predict_params_and_names_the_allowed_values(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """`predict(df, params={"horizon": 6})` answered every step and every level: the signature
    had no params schema, so MLflow dropped the params with a warning. They are the forecast
    API's request fields for every row: `horizon` cuts the steps (a row's own cell wins),
    `quantiles` picks the q-columns; a bad value is refused naming the allowed ones."""
    import mlflow

    result = train_pipeline(tiny_config(csv, registered_name=None), mlflow_settings)
    model = mlflow.pyfunc.load_model(result.model_uri)
    params = model.metadata.get_params_schema()
    assert {p.name: p.default for p in params.params} == {
        "horizon": HORIZON,
        "quantiles": [0.1, 0.5, 0.9],
    }
    row = history_row(seasonal_frame(600))
    full = model.predict(row)
    assert list(full.columns) == ["id", "step", "timestamp", "mean", "q0.1", "q0.5", "q0.9"]
    cut = model.predict(row, params={"horizon": 3, "quantiles": [0.9, 0.1]})
    assert list(cut.columns) == ["id", "step", "timestamp", "mean", "q0.9", "q0.1"]
    assert list(cut["step"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(cut, full[cut.columns].iloc[:3])
    both = pd.concat([row, row.assign(id="pump-2", horizon=[5])], ignore_index=True)
    answered = model.predict(both, params={"horizon": 2}).groupby("id")["step"].max()
    assert answered.to_dict() == {"pump-1": 2, "pump-2": 5}  # the row's own cell wins

    def refused(params: dict[str, Any]) -> str:
        with pytest.raises(mlflow.exceptions.MlflowException) as said:
            model.predict(row, params=params)
        return str(said.value.message)

    assert refused({"quantiles": [0.5, 0.33]}) == (
        "params 'quantiles'[1]: 0.33 is not a quantile the model was trained with; choose "
        "from 0.1, 0.5, 0.9"
    )
    assert "params 'quantiles'[1]: 0.9 repeats the level at position 0" in refused(
        {"quantiles": [0.9, 0.9]}
    )
    assert refused({"horizon": HORIZON + 1}) == (
        f"params 'horizon' must be a whole number of steps from 1 to the model's {HORIZON}; "
        f"got {HORIZON + 1}"
    )
    assert "params 'horizon' must be a whole number" in refused({"horizon": 0})
    assert "'horizon'" in refused({"horizon": "six"})  # MLflow's own type check names it too
    predictor = ForecastPredictor.from_directory(model_artifact_dir(result.model_uri, tmp_path))
    # levels as float32 (a numpy caller's array): 0.1 reads 0.10000000149, which a 1e-9
    # tolerance refused as "not a quantile the model was trained with"
    single = model.predict(row, params={"quantiles": np.array([0.9, 0.1], dtype=np.float32)})
    assert list(single.columns) == ["id", "step", "timestamp", "mean", "q0.9", "q0.1"]
    with pytest.raises(ForecastInputError, match="params 'quantiles' must be a list of levels"):
        predictor.predict_frame(row, {"quantiles": 0.5})
    with pytest.raises(ForecastInputError, match="params 'horizon' must be a whole number"):
        predictor.predict_frame(row, {"horizon": True})


def test_the_pyfunc_refuses_gaps_anywhere_in_a_history_naming_the_position(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """As the service does: a NaN before the look-back was accepted (only the values the model
    reads were checked) where a null there was 'not a flat list of numbers'."""
    result = train_pipeline(tiny_config(csv, registered_name=None), mlflow_settings)
    predictor = ForecastPredictor.from_directory(model_artifact_dir(result.model_uri, tmp_path))
    row = history_row(seasonal_frame(600))
    for gap, said in [(float("nan"), "NaN"), (None, "null"), (float("inf"), "inf")]:
        values = list(row["values"].iloc[0])
        values[3] = gap
        with pytest.raises(ForecastInputError) as caught:
            predictor.predict_frame(row.assign(values=pd.Series([values], dtype=object)))
        assert str(caught.value) == (
            f"series 'pump-1': 'values' holds {said} at position 3; every value must be a "
            "finite number"
        )


def test_a_covariate_named_like_a_request_field_stays_a_covariate() -> None:
    """A covariate called `freq` (or `horizon`, `quantiles`, `timestamps`) was read as the
    request field, and every row refused; the signature held two `freq` columns."""
    from training.mlflow_model import REQUEST_COLUMNS, signature_for

    for name in REQUEST_COLUMNS:
        inputs = signature_for([name], (0.1, 0.5, 0.9), 24).inputs.input_names()
        assert inputs.count(name) == 1, name
        predictor = ForecastPredictor.__new__(ForecastPredictor)
        predictor.meta = {"covariates": [name], "freq": "h"}
        assert name not in predictor._request_columns()


def test_versions_are_listed_for_names_holding_quotes_of_both_kinds(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """MLflow's filter has no literal that holds both ' and ": such a name listed no versions
    (and `urnn models list` said so). A name the LIKE pattern also matches is not mixed in."""
    import mlflow

    from training.registry_admin import list_versions

    mlflow_settings.var_dir.mkdir(parents=True)
    uri = mlflow_settings.resolved_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    counts = {'it\'s "x"': 2, "it_s _x_": 1, "o'brien": 1, 'say "hi"': 1, "back\\slash": 1}
    for name, n in counts.items():
        client.create_registered_model(name)
        for _ in range(n):
            client.create_model_version(name, source=str(tmp_path))
    for name, n in counts.items():
        assert [row.version for row in list_versions(client, name)] == [
            str(v) for v in range(n, 0, -1)
        ], name


@pytest.mark.parametrize(
    "start",
    [
        "2024-01-01",
        "2024-01-01T00:00",
        "2024-01-01 00:00:00",
        "2024-01-01T00:00:00+02",  # an offset without its minutes
        "2024-01-01T00:00:00+0200",
        "2024-01-01T00:00:00+02:00",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.123456Z",
        "2024-01-01T00:00:00.123456789Z",  # nanoseconds
        "2024-01-01T00:00:00.000000000",  # numpy's text of a datetime64[ns]: zeros past 6
        "2024-01-01T00:00:00.1234560+02:00",
        "2024-01-01T00:00:00+00:19:32",  # local mean time, as pandas writes it
        "20240101",
        "01.07.2016",
    ],
)
def test_the_pyfunc_takes_the_start_texts_the_service_takes(start: str) -> None:
    """The registered model's predict said "as the forecast API takes it" but took '+02' and
    nanoseconds, which POST /forecast refuses: one request, two answers."""
    from pydantic import TypeAdapter, ValidationError

    from service.schemas import Timestamp
    from training.mlflow_model import _ISO_DATE_TIME

    try:
        TypeAdapter(Timestamp).validate_python(start)
        service_takes = True
    except ValidationError:
        service_takes = False
    assert bool(_ISO_DATE_TIME.fullmatch(start)) == service_takes


@pytest.mark.parametrize(
    ("normalisation", "space"), [("instance", "window"), ("last", "window"), ("none", "values")]
)
def test_the_drift_reference_bins_the_target_as_the_network_reads_it(
    csv: Path, mlflow_settings: Settings, tmp_path: Path, normalisation: str, space: str
) -> None:
    """Per look-back window where the network normalises each window (its level is no input;
    "last" keeps the spread, but that less-the-last-value space read 'shifted' on ETTh1's own
    training span at 77 % of replayed origins, per window 5 %: bench.drift_calm), by value
    where it reads the level: such a model's inputs tripled in level and spread read as calm
    per window (PSI 0.002 against 8.3 by value), though it never saw them."""
    model = ForecasterConfig(
        kind="urnn",
        lookback=LOOKBACK,
        horizon=HORIZON,
        hidden_size=8,
        segment_length=12,
        normalisation=normalisation,  # type: ignore[arg-type]
    )
    result = train_pipeline(tiny_config(csv, model=model), mlflow_settings)
    files = model_artifact_dir(result.model_uri, tmp_path / "files")
    reference = json.loads((files / "config.json").read_text())["reference"]
    assert reference["y"]["space"] == space
    assert reference["x"]["space"] == "values"
    assert ("window" in reference["y"]) is (space == "window")


def _predictor(config: ForecasterConfig, **meta: object) -> Any:
    from models.forecaster import build_forecaster
    from training.mlflow_model import ForecastPredictor
    from training.split import StandardScaler

    scaler = StandardScaler.from_dict(  # unused by the check
        {
            "kind": "standard",
            "scope": "global",
            "columns": ["y"],
            "stats": {"*": {"y": {"mean": 0.0, "scale": 1.0}}},
        }
    )
    return ForecastPredictor(model=build_forecaster(config), meta=dict(meta), scaler=scaler)


@pytest.mark.parametrize(
    ("champion", "challenger", "clock", "reason"),
    [
        (
            {"quantiles": (0.05, 0.5, 0.95)},
            {"quantiles": (0.1, 0.5, 0.9)},
            "local",
            "the champion answers quantile level(s) 0.05, 0.95 and this model does not",
        ),
        (
            {"kind": "urnn-stream", "hidden_size": 8},
            {},
            "local",
            "the champion is a streaming model ('urnn-stream') and this one is not ('urnn')",
        ),
        (
            {"n_calendar": 6, "calendar_clock": "utc"},
            {"n_calendar": 6},
            "local",
            "the champion's calendar features read UTC hours and this model's the local clock",
        ),
        ({"n_calendar": 6, "calendar_clock": "utc"}, {"n_calendar": 6}, "utc", None),
        ({"n_calendar": 6}, {"n_calendar": 6}, "utc", None),  # local -> UTC serves them all
        ({"quantiles": (0.1, 0.5, 0.9)}, {"quantiles": (0.05, 0.1, 0.5, 0.9, 0.95)}, "local", None),
    ],
)
def test_requests_a_challenger_would_refuse_are_found_before_its_score(
    champion: dict[str, Any], challenger: dict[str, Any], clock: str, reason: str | None
) -> None:
    """Quantile levels the champion answers, its /series stream, its calendar clock: each a
    request the champion serves and the challenger would refuse (422, 409), found by a review
    after the first version of the check."""
    from training.pipeline import served_requests_refused

    base = {"kind": "urnn", "lookback": LOOKBACK, "horizon": HORIZON, "hidden_size": 8}
    meta: dict[str, Any] = {"target": "y", "covariates": []}
    if "calendar_clock" in champion:
        meta["calendar_clock"] = champion.pop("calendar_clock")
    theirs = _predictor(ForecasterConfig(**{**base, "segment_length": 12, **champion}), **meta)
    mine = ForecasterConfig(**{**base, "segment_length": 12, **challenger})
    refusal = served_requests_refused(theirs, mine, (), clock)
    if reason is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.startswith(reason), refusal


@pytest.mark.parametrize(
    ("their_freq", "freq", "reason"),
    [
        ("7D", "W-SUN", "the champion steps '7D' from any weekday and this model 'W-SUN' only "),
        ("14D", "2W-MON", "the champion steps '14D' from any weekday and this model '2W-MON' "),
        ("W-SUN", "7D", None),  # '7D' takes the champion's Sundays, spelt either way
        ("7D", "7D", None),
        ("h", "60min", None),
    ],
)
def test_weeks_anchored_on_a_day_refuse_the_requests_of_a_champion_stepping_days(
    their_freq: str, freq: str, reason: str | None
) -> None:
    """A '7D' champion dates histories from any weekday; a 'W-SUN' one only from a Sunday."""
    from training.pipeline import served_requests_refused

    config = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    theirs = _predictor(config, target="y", covariates=[], freq=their_freq)
    refusal = served_requests_refused(theirs, config, (), "local", freq)
    if reason is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.startswith(reason), refusal


def test_only_a_champion_that_cannot_load_is_kept_not_a_store_that_cannot_be_reached() -> None:
    """A tracking store unreachable for a moment must fail the training (a job retries it),
    not become a lasting "kept" decision with advice to move the alias."""
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    from models.forecaster import CheckpointError
    from training.pipeline import _unloadable

    assert _unloadable(CheckpointError("weights.pt in models:/m/1", "KeyError: 1"))
    assert _unloadable(MlflowException("gone", error_code=RESOURCE_DOES_NOT_EXIST))
    assert _unloadable(FileNotFoundError("config.json"))
    assert not _unloadable(MlflowException("API request failed"))  # INTERNAL_ERROR
    assert not _unloadable(requests.ConnectionError("connection refused"))
    assert not _unloadable(TimeoutError())


def test_a_named_run_kept_from_promotion_is_described_and_a_refused_description_fails_nothing(
    csv: Path, mlflow_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """--run-name reaches the run; a version registered with promote=False says so; and a
    store that refuses the words (a remote hiccup, a column limit) leaves the registered
    model and the run's result as they are (the description was written after the alias
    moved, and its failure failed the run: a review)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    named = tiny_config(csv, run_name="pump model, nightly", promote=False)
    result = train_pipeline(named, mlflow_settings)
    client = mlflow.MlflowClient()
    assert client.get_run(result.run_id).info.run_name == "pump model, nightly"
    assert result.version is not None
    described = client.get_model_version(NAME, result.version).description or ""
    assert described.startswith("Not promoted (promotion disabled")
    assert f"; registered as {NAME} version {result.version}." in described

    def refused(*args: object, **kwargs: object) -> None:
        raise MlflowException("value too long for type character varying(5000)")

    monkeypatch.setattr(mlflow.MlflowClient, "update_model_version", refused)
    with caplog.at_level("WARNING", logger="training.registry"):
        again = train_pipeline(tiny_config(csv), mlflow_settings)
    assert again.version is not None and again.promoted
    assert "not written: value too long" in caplog.text


def test_latest_and_stage_uris_are_pinned_to_the_version_mlflow_loads(
    sqlite_store: tuple[str, str],
) -> None:
    """models:/NAME/latest and models:/NAME/STAGE were recorded as given (no version, no run),
    so a saved backtest.json did not say which version it scored once a newer one landed."""
    import warnings

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.model import PythonModel

    from training.registry import resolve_model_source

    _, experiment = sqlite_store

    class Echo(PythonModel):
        def predict(
            self, context: Any, model_input: Any, params: dict[str, Any] | None = None
        ) -> Any:
            return model_input

    runs = []
    for _ in range(3):
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name="m")
        runs.append(run.info.run_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.MlflowClient().transition_model_version_stage("m", "2", "Production")
    latest = resolve_model_source("models:/m/latest")
    assert (latest.version, latest.run_id, latest.load_uri) == ("3", runs[2], "models:/m/3")
    assert latest.uri == "models:/m/latest" and latest.name == "m"
    for uri in ("models:/m/Production", "models:/m/production/"):
        production = resolve_model_source(uri)
        assert (production.version, production.run_id) == ("2", runs[1])
    with pytest.raises(MlflowException, match="has no version in stage 'Staging'"):
        resolve_model_source("models:/m/Staging")
    with pytest.raises(MlflowException):
        resolve_model_source("models:/nope/latest")
    # a version number is still a version, not a stage
    assert resolve_model_source("models:/m/1").version == "1"


def test_a_logged_model_uri_is_recorded_with_the_run_that_logged_it(
    sqlite_store: tuple[str, str],
) -> None:
    """MLflow 3 names a model by its id (models:/m-<id>: a version's Source in the UI and the
    REST views, what log_model returns): `urnn backtest --model models:/m-...` recorded
    no run in backtest.json and printed none, though the logged model knows its run."""
    import mlflow
    from mlflow.pyfunc.model import PythonModel

    from training.registry import resolve_model_source

    _, experiment = sqlite_store

    class Echo(PythonModel):
        def predict(
            self, context: Any, model_input: Any, params: dict[str, Any] | None = None
        ) -> Any:
            return model_input

    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    assert info.model_uri.startswith("models:/m-")
    for uri in (info.model_uri, info.model_uri + "/"):
        source = resolve_model_source(uri)
        assert (source.uri, source.load_uri, source.run_id) == (uri, uri, run.info.run_id)
        assert source.describe() == f"run {run.info.run_id}"
    with pytest.raises(mlflow.exceptions.MlflowException):
        resolve_model_source("models:/m-0123456789abcdef0123456789abcdef")


def test_the_champion_is_not_scored_on_values_it_trained_or_early_stopped_on(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """A challenger with a larger test share (or a shorter file) scored the champion partly or
    wholly on the champion's own training and validation rows, which flatters it: those values
    are left out, and saying so; none left: not compared, kept."""
    import mlflow

    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    first = train_pipeline(
        tiny_config(csv, model=linear, train_fraction=0.7, val_fraction=0.2), mlflow_settings
    )
    assert first.promoted
    client = mlflow.MlflowClient()
    folder = model_artifact_dir(f"models:/{NAME}/{first.version}", tmp_path / "champion")
    meta = json.loads((folder / "config.json").read_text())
    frame = pd.read_csv(csv, index_col=0, parse_dates=True)
    # rows 0-539 of 600 trained or validated on: the last is row 539
    assert meta["train"]["seen_until"] == {"plant": frame.index[539].isoformat()}

    wider = train_pipeline(
        tiny_config(csv, model=linear, train_fraction=0.5, val_fraction=0.1), mlflow_settings
    )
    tags = client.get_model_version(NAME, str(wider.version)).tags
    assert (
        "forecast values the champion trained or early-stopped on left out"
        in tags["backtest.basis"]
    )
    assert f"({tags['backtest.basis']})" in wider.reason
    path = mlflow.artifacts.download_artifacts(
        run_id=wider.run_id,
        artifact_path=f"metrics/champion_v{first.version}_forecasts.parquet",
        dst_path=str(tmp_path / "dl"),
    )
    theirs = pd.read_parquet(path)
    assert len(theirs) and (pd.to_datetime(theirs["timestamp"]) > frame.index[539]).all()
    on_basis = float(tags["backtest.challenger_score_on_basis"])
    assert wider.champion_score is not None
    assert wider.promoted == (on_basis < wider.champion_score)

    # a file that ends inside the champion's seen span (v1's to row 539, v2's to row 359,
    # whichever is champion now): nothing left to score it on
    short = tmp_path / "short" / "plant.csv"  # a one-series file's id is its name: "plant"
    short.parent.mkdir()
    frame.iloc[:320].to_csv(short)
    inside = train_pipeline(tiny_config(short, model=linear), mlflow_settings)
    assert not inside.promoted and inside.champion_score is None
    assert "it trained or early-stopped on every value both models forecast" in inside.reason
    assert inside.reason.endswith("; kept")


def test_a_champion_scored_on_series_it_recorded_none_of_says_so(
    csv: Path, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """A one-series file is named by its file: the champion's own data exported again under
    another name matched none of its `seen_until` units, so it was scored on its training
    rows and the decision read as a fair comparison (mae 275.4 >= champion 255.3 on a
    renamed copy; life simulation, 2026-12-06). The decision now says so; a file under the
    champion's name gets no such note."""
    linear = ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON)
    first = train_pipeline(tiny_config(csv, model=linear), mlflow_settings)
    assert first.promoted
    again = train_pipeline(tiny_config(csv, model=linear), mlflow_settings)
    assert "recorded training on" not in again.reason
    renamed = tmp_path / "export" / "plant-2026-12-06.csv"
    renamed.parent.mkdir()
    renamed.write_bytes(csv.read_bytes())
    copy = train_pipeline(tiny_config(renamed, model=linear), mlflow_settings)
    said = (
        "none of this data's series ('plant-2026-12-06') is one the champion recorded training "
        "on ('plant'), so none of its rows was left out"
    )
    assert said in copy.reason and copy.champion_score is not None


def test_a_mase_with_no_scale_says_why_and_what_to_promote_on() -> None:
    """An all-zero product (no sale in training): MASE is NaN for every series, and the first
    model of the name was refused as 'challenger mase is not finite (nan)', nothing to act on."""
    decided = _decide(None, "1", float("nan"), None, metric="mase", promote=True)
    assert not decided.promoted
    assert decided.reason.startswith("challenger mase is not finite (nan): no series scored")
    assert decided.reason.endswith("promote on --metric mae")
    other = _decide(None, "1", float("nan"), None, metric="mae", promote=True)
    assert other.reason == "challenger mae is not finite (nan)"


@pytest.mark.parametrize("name", ["id", "values", "start", "timezone"])
def test_a_covariate_named_like_a_predict_row_column_is_refused_before_the_fit(
    name: str, csv: Path
) -> None:
    """A predict row has `id`, `values`, `start` and `timezone` beside one column per
    covariate: a covariate `values` was registered and read as the target's history (its
    input example too, without a word), and one named `start` or `id` stopped `urnn train`
    after the whole fit, when the example was checked. Refused with the config now; a
    channel-independent model, whose columns are series, keeps them."""
    with pytest.raises(ValueError) as raised:
        tiny_config(csv, load=LoadConfig(target="y", covariates=("x", name)))
    assert str(raised.value) == (
        f"covariate {name!r} has the name of a column of the registered model's predict rows "
        "(id, values, start, timezone), where it could not be told apart: rename the column "
        "in the data"
    )
    tiny_config(
        csv,
        load=LoadConfig(target="y", covariates=("x", name)),
        channel_independent=True,
        model=ForecasterConfig(kind="linear", lookback=LOOKBACK, horizon=HORIZON),
    )


def test_repeated_ids_are_found_in_one_pass() -> None:
    """Each row's id was counted over every row (`ids.count`), quadratic in the batch: 5.7 s
    of a 30,000-series predict before any forecast, an hour at a million series."""
    import time

    from training.mlflow_model import repeated_ids

    ids = [f"pump-{i}" for i in range(300_000)] + ["pump-7", "pump-3", "pump-7"]
    started = time.perf_counter()
    assert repeated_ids(ids) == ["pump-3", "pump-7"]
    assert time.perf_counter() - started < 5.0  # quadratic: hours
    assert repeated_ids(["a"]) == [] and repeated_ids([]) == []


@pytest.mark.parametrize(
    ("champion_zoned", "learnt"),
    [(False, "learnt on the local wall clock"), (True, "learnt on UTC")],
    ids=["local champion, zoned data", "UTC champion, naive data"],
)
def test_a_calendar_champion_is_not_scored_on_another_clock_and_is_kept(
    champion_zoned: bool, learnt: str, tmp_path: Path, mlflow_settings: Settings
) -> None:
    """A --calendar champion learnt on one clock (naive local times, or zoned ones read as
    UTC), the challenger's history exported on the other: the champion was scored on the
    challenger's backtest with its hour-of-day features on a clock it never learnt, and the
    challenger promoted over it on that score. Not compared now: kept, saying why."""
    import mlflow

    frame = seasonal_frame(600)
    local = tmp_path / "local.csv"
    frame.to_csv(local)
    zoned = tmp_path / "zoned.csv"
    frame.set_axis(pd.DatetimeIndex(frame.index).tz_localize("Europe/Berlin")).to_csv(zoned)
    first, then = (zoned, local) if champion_zoned else (local, zoned)
    assert train_pipeline(tiny_config(first, calendar=True), mlflow_settings).promoted
    other = train_pipeline(tiny_config(then, calendar=True), mlflow_settings)
    assert not other.promoted and other.champion_score is None
    assert other.reason.startswith(
        "champion v1 could not be scored on this backtest (it reads calendar features on "
        f"another clock than this data's: the model's calendar features were {learnt}"
    ), other.reason
    assert other.reason.endswith("; kept"), other.reason
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == "1"
    tags = client.get_model_version(NAME, str(other.version)).tags
    assert (tags["promotion.decision"], tags["promotion.reason"]) == ("kept", other.reason)
    # the same clock is compared as before
    again = train_pipeline(tiny_config(first, calendar=True), mlflow_settings)
    assert again.champion_score is not None


def test_a_models_uri_that_names_nothing_is_told_what_the_registry_holds(
    tmp_path: Path, sqlite_store: tuple[str, str]
) -> None:
    """`urnn backtest --model models:/m@Champion` (a capital, a typo) ended in MLflow's bare
    "Registered model alias Champion not found.", a version past the last one in "Model
    Version (name=m, version=9) not found" and a misspelt name in "Registered Model with
    name=M not found": the error named the field but not the values it takes, which the
    service's loader and `urnn models promote` list. The aliases (with their versions), the
    versions or the registered names are said now, still as MLflow's error."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from training.registry import resolve_model_source

    client = mlflow.MlflowClient()
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", source=(tmp_path / "nowhere").as_uri())
    client.set_registered_model_alias("m", CHAMPION, "1")
    client.set_registered_model_alias("m", CHALLENGER, "3")
    client.create_registered_model("other")
    with pytest.raises(MlflowException) as alias:
        resolve_model_source("models:/m@Champion")
    assert "alias Champion not found" in str(alias.value)
    assert "m has alias(es) challenger (version 3), champion (version 1)" in str(alias.value)
    with pytest.raises(MlflowException) as version:
        resolve_model_source("models:/m/9")
    assert "m has version(s) 3, 2, 1" in str(version.value)
    with pytest.raises(MlflowException) as name:
        resolve_model_source("models:/M@champion")
    assert "registered models: 'm', 'other'" in str(name.value)
    client.delete_registered_model_alias("m", CHALLENGER)
    client.delete_registered_model_alias("m", CHAMPION)
    with pytest.raises(MlflowException) as none:
        resolve_model_source("models:/m@champion")
    assert "m has no alias (versions 3, 2, 1)" in str(none.value)
    # what resolves is unchanged
    client.set_registered_model_alias("m", CHAMPION, "2")
    assert resolve_model_source("models:/m@champion").version == "2"


def test_a_promotion_after_the_champion_was_deleted_does_not_say_there_never_was_one(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """A champion version deleted in the UI (MLflow drops its aliases with it), or its alias
    removed by hand: the next training was promoted with the reason "no champion yet",
    recorded in its tags and description as if the registered model had never had one. It
    says now that no version holds the alias, and which earlier versions are left."""
    client = fresh_registry(mlflow_settings)
    v1, v2, _v3, v4 = _versions(client, 4, tmp_path)
    assert promote_if_better(client, NAME, v1, 1.0, None).reason == "no champion yet"
    client.delete_model_version(NAME, v1)
    assert client.get_registered_model(NAME).aliases == {}
    after_delete = promote_if_better(client, NAME, v2, 2.0, None)
    assert after_delete.promoted
    assert after_delete.reason == (
        "no version holds the champion alias (none before version 2 is left: deleted)"
    )
    tags = client.get_model_version(NAME, v2).tags
    assert tags["promotion.reason"] == after_delete.reason
    client.delete_registered_model_alias(NAME, CHAMPION)
    unaliased = promote_if_better(client, NAME, v4, 3.0, None)
    assert unaliased.promoted
    assert unaliased.reason == (
        "no version holds the champion alias (earlier versions 3, 2 hold none)"
    )

"""Equipment logs whose time axis is a step counter (C-MAPSS engine cycles, sample numbers):
read only when the user says what a step is (`step_origin` + `freq`), never guessed."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.forecaster import ForecasterConfig
from tests.shared_data import SHARED_DATA, needs_shared
from training.data import LoadConfig, load_data
from training.fit import FitConfig
from training.pipeline import TrainConfig, train_pipeline
from training.validation import InvalidOptionError, SeriesTooShortError, TimestampParseError
from urnn_forecast.settings import Settings

CMAPSS = SHARED_DATA / "CMAPSS" / "train_FD001.txt"


def engines_csv(path: Path, cycles: int = 150, missing: int = 40, engines: int = 2) -> Path:
    """Engines as C-MAPSS lays them out (unit, cycle, sensor); engine 2 lacks one cycle."""
    rows = []
    for unit in range(1, engines + 1):
        for cycle in range(1, cycles + 1):
            if unit == 2 and cycle == missing:
                continue
            rows.append((unit, cycle, 640 + 0.01 * cycle + np.sin(cycle / 5.0) + unit))
    pd.DataFrame(rows, columns=["unit", "cycle", "s2"]).to_csv(path, index=False)
    return path


def config(**overrides: object) -> LoadConfig:
    fields: dict[str, object] = {
        "target": "s2",
        "series_col": "unit",
        "timestamp_col": "cycle",
        "step_origin": "2000-01-01",
        "freq": "D",
    }
    fields.update(overrides)
    return LoadConfig(**fields)  # type: ignore[arg-type]


def linear_on_engines(
    tmp_path: Path, *, cycles: int, engines: int, lookback: int, horizon: int, **train: object
) -> TrainConfig:
    """A linear model on `engines` engine logs of `cycles` cycles each, not registered."""
    return TrainConfig(
        data=str(engines_csv(tmp_path / "engines.csv", cycles=cycles, engines=engines)),
        load=config(),
        model=ForecasterConfig(kind="linear", lookback=lookback, horizon=horizon),
        registered_name=None,
        **train,  # type: ignore[arg-type]
    )


def test_step_k_is_the_origin_plus_k_steps_and_the_gap_is_filled_and_reported(
    tmp_path: Path,
) -> None:
    data = load_data(engines_csv(tmp_path / "engines.csv"), config())
    one, two = data.series["1"], data.series["2"]
    assert one.index[0] == pd.Timestamp("2000-01-02") and one.index[-1] == pd.Timestamp(
        "2000-05-30"
    )
    assert len(one) == len(two) == 150 and data.freq == "D"
    assert two.index[39] == pd.Timestamp("2000-01-01") + pd.Timedelta(days=40)
    assert bool(data.filled["2"]["s2"].iloc[39]) and not data.filled["1"].to_numpy().any()
    lines = "\n".join(data.report_lines())
    assert (
        "read column 'cycle' as step numbers 1..150: step k is 2000-01-01 00:00:00 + k x D" in lines
    )


def test_the_brief_report_keeps_what_changed_and_sums_up_the_routine_lines(
    tmp_path: Path,
) -> None:
    data = load_data(engines_csv(tmp_path / "engines.csv", engines=12), config())
    full, brief = data.report_lines(), data.brief_report_lines(max_series=10)
    assert sum("ready:" in line for line in full) == 12
    assert not any(": ready:" in line for line in brief)
    assert any(
        line.startswith("series '2': filled 1 missing value") for line in brief
    )  # the decision
    assert brief[-1].startswith(
        "engines.csv: 12 series ready at 'D': 1,800 rows in all, 150 to 150 each; 1 of 1,800 "
        "values filled (0.056%)"
    )
    assert brief[-1].endswith("every series' lines are in the full report (data_report.txt)")
    elsewhere = data.brief_report_lines(max_series=10, full_report="bt/data_report.txt")
    assert elsewhere[-1].endswith("every series' lines are in bt/data_report.txt")
    # a few series: every line, as in the full report
    few = load_data(engines_csv(tmp_path / "two.csv"), config())
    assert few.brief_report_lines() == few.report_lines()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"freq": None}, r"step_origin needs freq, a fixed step such as .*got freq=None"),
        ({"freq": "MS"}, r"step_origin needs freq, a fixed step .*got freq='MS'"),
        ({"step_origin": "someday"}, r"step_origin must be a timestamp .*got 'someday'"),
        ({"timestamp_col": ("unit", "cycle"), "series_col": None}, r"one column of step numbers"),
    ],
)
def test_step_options_that_cannot_work_are_refused(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        config(**overrides)


def test_a_step_that_is_not_a_whole_number_names_its_row(tmp_path: Path) -> None:
    path = tmp_path / "engines.csv"
    path.write_text("unit,cycle,s2\n1,1,640.1\n1,2.5,640.2\n1,x,640.3\n")
    with pytest.raises(TimestampParseError) as error:
        load_data(path, config())
    assert "column 'cycle', data row 2" in str(error.value)
    assert "'2.5' is not a whole step number" in str(error.value)
    assert "2 rows fail" in str(error.value)


def test_without_step_origin_a_counter_column_is_refused_with_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(TimestampParseError, match=r"cannot parse '1' as a timestamp") as error:
        load_data(engines_csv(tmp_path / "engines.csv"), config(step_origin=None, freq=None))
    assert "pass step_origin (--step-origin) and freq (--freq)" in str(error.value)


def test_trained_on_engine_cycles_with_a_non_seasonal_mase(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    train = TrainConfig(
        data=str(engines_csv(tmp_path / "engines.csv", cycles=300)),
        load=config(),
        model=ForecasterConfig(kind="linear", lookback=24, horizon=6),
        backtest_step=6,
        registered_name=None,
    )
    result = train_pipeline(train, mlflow_settings)
    assert result.mase_season.startswith("1 row (the time column counts steps")
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.params["load.step_origin"] == "2000-01-01"
    assert np.isfinite(result.scores["mase"])


@needs_shared("CMAPSS/train_FD001.txt")
def test_the_real_cmapss_engines_load_one_series_each(tmp_path: Path) -> None:
    names = ["unit", "cycle", "op1", "op2", "op3", *(f"s{i}" for i in range(1, 22))]
    raw = pd.read_csv(CMAPSS, sep=r"\s+", header=None, names=names)
    raw.to_csv(tmp_path / "fd001.csv", index=False)
    data = load_data(tmp_path / "fd001.csv", config(target="s11"))
    assert len(data.series) == 100  # FD001: 100 engines run to failure
    lengths = raw.groupby("unit").size()
    assert {int(k): len(v) for k, v in data.series.items()} == lengths.to_dict()
    assert not any(f.to_numpy().any() for f in data.filled.values())  # no cycle is missing


def test_a_fleet_split_by_unit_trains_on_whole_engines_and_scores_unseen_ones(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """`--split series`: engines 1-7 train on their whole lives, 8 validates, 9 and 10 are
    scored from their first look-back on, as units the model never saw."""
    reports: list[list[str]] = []
    train = TrainConfig(
        data=str(engines_csv(tmp_path / "engines.csv", cycles=120, engines=10)),
        load=config(),
        model=ForecasterConfig(kind="linear", lookback=24, horizon=6),
        fit=FitConfig(max_epochs=2, device="cpu"),
        split_method="series",
        registered_name=None,
    )
    result = train_pipeline(train, mlflow_settings, on_data_report=reports.append)
    assert set(result.tables["by_series"].index) == {"9", "10"}
    n_values = int(result.tables["overall"]["n"].iloc[0])
    assert n_values == 2 * (120 - 24 - 6 + 1) * 6  # every origin of both units
    assert (
        "split 'series': 7 series train on their whole history; 1 validates ('8'); 2 are the "
        "test units, never seen in training ('9', '10')" in reports[0]
    )
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.params["split.method"] == "series"
    with pytest.raises(ValueError, match="split 'unseen' scores every series and leaves none"):
        TrainConfig(data="x.csv", load=config(), split_method="unseen")
    with pytest.raises(ValueError, match="split 'series' holds out whole series, and kind"):
        TrainConfig(
            data="x.csv",
            load=config(),
            model=ForecasterConfig(kind="urnn-stream"),
            split_method="series",
        )


def test_engines_shorter_than_one_window_name_the_way_out(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    train = linear_on_engines(tmp_path, cycles=120, engines=3, lookback=200, horizon=12)
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(replace(train, split_method="series"), mlflow_settings)
    assert "every series is shorter than min_length=212 (the longest has 120 rows)" in str(
        error.value
    )
    assert "min_length is the look-back plus the horizon (200 + 12): a shorter" in str(error.value)
    # split by time, each part needs its own window: 0.7 of the rows must hold 212
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(train, mlflow_settings)
    assert "every series is shorter than min_length=303 (the longest has 120 rows)" in str(
        error.value
    )
    # one window (212 rows) is longer than every engine: no val fraction can help
    assert str(error.value).endswith(
        "one window alone (212 rows) is longer than the longest series, so no split option "
        "helps: a shorter look-back or horizon (--lookback 24 --horizon 12 fits the longest "
        "series; at --horizon 12 it holds a --lookback of up to 72) keeps more series"
    )
    assert "--val-fraction" not in str(error.value)
    # the pair it names does fit: the run gets past the length checks to its fit and backtest
    suggested = replace(train, model=replace(train.model, lookback=24, horizon=12))
    scored = train_pipeline(suggested, mlflow_settings)
    assert np.isfinite(scored.scores["mae"]) and int(scored.tables["overall"]["n"].iloc[0]) > 0


def test_a_larger_val_fraction_is_named_only_where_one_would_keep_a_series(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """100-cycle engines, horizon 12: val needs 12 rows, 0.1 of 120; 0.15 of 100 holds them,
    and so does the test share left (train, 0.7 of 100, holds its window of 24). With look-back
    72 the train share decides (84 rows > 0.7 of 100): no val fraction helps (one did: 'or a
    larger --val-fraction' was offered whenever the split decided), and none is named."""
    train = linear_on_engines(tmp_path, cycles=100, engines=3, lookback=12, horizon=12)
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(train, mlflow_settings)
    message = str(error.value)
    assert "every series is shorter than min_length=120 (the longest has 100 rows)" in message
    assert message.endswith(
        "a shorter look-back or horizon (--lookback 12 --horizon 6 fits the longest series), "
        "or a larger --val-fraction "
        "(0.15 needs 80 rows) keeps more series"
    )
    longer = replace(train, model=replace(train.model, lookback=72))
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(longer, mlflow_settings)
    assert "(the longest has 100 rows)" in str(error.value)
    assert "--val-fraction" not in str(error.value)
    assert str(error.value).endswith(
        "and test; the train and val shares decide: a shorter look-back or horizon "
        "(--lookback 12 --horizon 6 fits the longest series) keeps more series"
    )


def test_a_small_train_fraction_of_the_users_is_named_as_the_way_out(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """An audit's train_fraction of 0.001: the train share needs 1,000 windows' rows, and the
    message advised only a shorter look-back or horizon, which cannot help. It says that the
    train share decides and which train_fraction fits; a larger one of the user's that still
    decides is offered after the look-back."""
    from training.pipeline import too_short_fraction

    train = linear_on_engines(
        tmp_path, cycles=100, engines=3, lookback=12, horizon=6, train_fraction=0.001
    )
    assert too_short_fraction(train) == "train_fraction"
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(train, mlflow_settings)
    message = str(error.value)
    assert "every series is shorter than min_length=18,000 (the longest has 100 rows)" in message
    assert message.endswith(
        "train (0.001 of the rows), val (0.1 of the rows, with 12 rows of context) and test; "
        "the train share decides: a larger --train-fraction (0.2 needs 90 rows) keeps more "
        "series (no look-back or horizon would)"
    )
    somewhat = replace(train, train_fraction=0.25, model=replace(train.model, lookback=24))
    assert too_short_fraction(somewhat) == "train_fraction"
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(somewhat, mlflow_settings)
    assert str(error.value).endswith(
        "the train share decides: a larger --train-fraction (0.3 needs 100 rows), or a shorter "
        "look-back or horizon (--lookback 12 --horizon 6 fits the longest series; at --horizon 6 "
        "it holds a --lookback of up to 19) keeps more series"
    )
    # the default fractions: the look-back and horizon decide, none is the user's to blame
    assert too_short_fraction(replace(train, train_fraction=0.7)) is None


def test_a_series_too_short_for_its_val_window_is_dropped_by_name(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """min_length covers every part of the split: a series whose val share (10 %) cannot hold
    one horizon is left out with on_short="drop", named, rather than failing at the windows."""
    reports: list[list[str]] = []
    data = engines_csv(tmp_path / "engines.csv", cycles=150, engines=3)
    frame = pd.read_csv(data)
    short = frame[(frame["unit"] != 3) | (frame["cycle"] <= 100)]  # engine 3: 100 cycles
    short.to_csv(data, index=False)
    train = TrainConfig(
        data=str(data),
        load=config(on_short="drop"),
        model=ForecasterConfig(kind="repeat_last", lookback=24, horizon=12),
        registered_name=None,
    )
    result = train_pipeline(train, mlflow_settings, on_data_report=reports.append)
    assert set(result.tables["by_series"].index) == {"1", "2"}
    assert any("dropped: 100 rows, fewer than min_length=120" in line for line in reports[0])


def test_named_test_units_train_register_and_are_backtested_again_by_name(
    tmp_path: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--test-series 2,5`: the fleet's engines 2 and 5 are the test units (not 9 and 10 of id
    order), and `urnn backtest --split series` of the registered model scores the same two."""
    from urnn_forecast import cli

    data = engines_csv(tmp_path / "engines.csv", cycles=120, engines=10)
    load = ["--target", "s2", "--series-col", "unit", "--timestamp-col", "cycle"]
    load += ["--step-origin", "2000-01-01", "--freq", "D"]
    tiny = ["--model", "linear", "--lookback", "24", "--horizon", "6", "--segment-length", "6"]
    tiny += ["--epochs", "1", "--backtest-step", "6", "--device", "cpu"]
    argv = ["train", "--data", str(data), *load, *tiny, "--split", "series"]
    code = cli.main(
        [*argv, "--test-series", "2", "--test-series", "5", "--registered-name", "fleet"],
        settings=mlflow_settings,
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "7 series train on their whole history; 1 validates ('10'); 2 are the test units, "
        "never seen in training ('2', '5')" in out
    )
    run = mlflow.MlflowClient().get_run(
        mlflow.MlflowClient().get_registered_model("fleet").latest_versions[0].run_id
    )
    assert run.data.params["split.test_series"] == '["2", "5"]'

    code = cli.main(
        [
            "backtest",
            "--data",
            str(data),
            "--model",
            "models:/fleet@challenger",
            "--split",
            "series",
            "--output",
            str(tmp_path / "bt"),
        ],
        settings=mlflow_settings,
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"{2 * (120 - 24 - 6 + 1) * 6:,} forecast values" in out
    by_series = pd.read_csv(tmp_path / "bt" / "by_series.csv", index_col=0)
    assert sorted(by_series.index) == [2, 5]  # the units the model held out, not 9 and 10
    forecasts = pd.read_parquet(tmp_path / "bt" / "forecasts.parquet")  # the evidence itself
    assert len(forecasts) == 2 * (120 - 24 - 6 + 1) * 6
    assert sorted(forecasts["series"].unique()) == ["2", "5"]

    code = cli.main([*argv, "--test-series", "11"], settings=mlflow_settings)
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "--test-series names 1 series the data does not hold ('11'); its 10 series are '1', '2'"
        in err
    )


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "linear", "decomposition_kernel": 25},
        {"kind": "seasonal_naive", "season_length": 24},
        {"kind": "urnn", "segment_length": 24},
        {"kind": "linear"},
    ],
    ids=["dlinear-kernel", "seasonal-naive", "segments", "plain"],
)
@pytest.mark.parametrize("longest", [20, 60, 120, 198, 400])
def test_the_pair_a_too_short_error_names_is_one_the_model_takes(
    model: dict[str, object], longest: int
) -> None:
    """The named pair must build (a DLinear kernel and a seasonal naive season within the
    look-back, segments that divide it) and fit the longest series; with a DLinear kernel of
    25 it named a look-back of 18, which the model config then refused."""
    from training.pipeline import _window_that_fits
    from training.split import rows_for_one_window_each

    train = TrainConfig(
        data="x.csv",
        load=config(),
        model=ForecasterConfig(lookback=336, horizon=96, **model),  # type: ignore[arg-type]
        registered_name=None,
    )
    pair = _window_that_fits(train, longest)
    if pair is None:  # nothing fits: one row of look-back the model takes is already too long
        shortest = {"linear": 25, "seasonal_naive": 24, "urnn": 24}[str(model["kind"])]
        shortest = shortest if len(model) > 1 else 1
        assert rows_for_one_window_each(train.split(shortest), 1) > longest
        return
    lookback, horizon = pair
    ForecasterConfig(lookback=lookback, horizon=horizon, **model)  # type: ignore[arg-type]
    assert rows_for_one_window_each(train.split(lookback), horizon) <= longest
    assert horizon <= 96 and lookback <= max(2 * horizon, 25)


@pytest.mark.parametrize(
    ("season_length", "freq", "shortest"), [(48, "h", 48), (None, "7D", 52), (None, "h", 24)]
)
def test_the_pair_named_for_seasonal_naive_holds_the_season_it_will_get(
    season_length: int | None, freq: str, shortest: int
) -> None:
    """The season comes from --season-length (TrainConfig) or the frequency, not the model
    config: the pair named ignored both (a look-back of 24 for a season of 48, then refused)."""
    from training.pipeline import _window_that_fits
    from training.seasonality import model_season

    train = TrainConfig(
        data="x.csv",
        load=LoadConfig(target="y"),  # dates: the frequency's season
        model=ForecasterConfig(kind="seasonal_naive", lookback=336, horizon=96),
        registered_name=None,
        season_length=season_length,
    )
    pair = _window_that_fits(train, 300, freq)
    assert pair is not None
    lookback, _ = pair
    assert lookback >= shortest
    assert model_season(season_length, freq, lookback).rows == shortest


def test_the_window_that_fits_is_offered_as_options_that_parse(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """`--horizon 1,125` was offered (a thousands separator), which the option refuses."""
    train = linear_on_engines(tmp_path, cycles=30_000, engines=1, lookback=12, horizon=50_000)
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(train, mlflow_settings)
    offered = re.search(r"\(--lookback (\S+) --horizon (\S+) fits", str(error.value))
    assert offered is not None, str(error.value)
    assert int(offered[1]) == 12 and int(offered[2]) >= 1_000


def test_the_asked_window_is_not_named_as_the_one_that_fits(tmp_path: Path) -> None:
    """A fleet file with some short series (50 rows) beside long ones (1,344): the longest holds
    the asked window, and the message named it back ('--lookback 48 --horizon 24 fits the
    longest series' for a run with --lookback 48 --horizon 24), advice that changes nothing."""
    from training.pipeline import _too_short_way_out

    train = linear_on_engines(tmp_path, cycles=100, engines=2, lookback=12, horizon=6)
    fits_already = SeriesTooShortError("short", longest=1_344, freq="D")
    message = _too_short_way_out(train, 12, 6, 40, fits_already)
    assert "--lookback 12 --horizon 6" not in message
    assert "a shorter look-back or horizon (--lookback, --horizon)" in message
    too_long = SeriesTooShortError("short", longest=16, freq="D")  # 12 + 6 does not fit
    assert "fits the longest series" in _too_short_way_out(train, 12, 6, 40, too_long)


def test_the_way_out_of_a_short_series_beside_long_ones_fits_the_short_one(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """A fleet of 300-cycle engines and one of 30 (C-MAPSS-like, or a SKAB run cut short):
    the advice was computed for the file's longest series, which already holds the asked
    window, so it named a window (--lookback 24 --horizon 12) and a --val-fraction (0.15
    needs 172 rows) that still left the 30-cycle engine too short; a user who followed it
    got the same error again. The ways out are now sized for the short series they keep."""
    rows = [(u, c, 640 + np.sin(c / 5.0) + u) for u in (1, 2) for c in range(1, 301)]
    rows += [(3, c, 640 + np.sin(c / 5.0)) for c in range(1, 31)]
    path = tmp_path / "fleet.csv"
    pd.DataFrame(rows, columns=["unit", "cycle", "s2"]).to_csv(path, index=False)
    train = TrainConfig(
        data=str(path),
        load=config(),
        model=ForecasterConfig(kind="linear", lookback=96, horizon=24),
        registered_name=None,
    )
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(train, mlflow_settings)
    message = str(error.value)
    assert "series '3' has 30 rows after cleaning" in message
    offered = re.search(r"--lookback (\d+) --horizon (\d+) fits '3'", message)
    assert offered is not None, message
    named = re.search(r"--val-fraction \(([\d.]+) needs ([\d,]+) rows\)", message)
    assert named is None or int(named[2].replace(",", "")) <= 30, message
    # the window it names keeps engine 3: the run gets past the length checks
    lookback, horizon = int(offered[1]), int(offered[2])
    suggested = replace(train, model=replace(train.model, lookback=lookback, horizon=horizon))
    scored = train_pipeline(suggested, mlflow_settings)
    assert "3" in set(scored.tables["by_series"].index.astype(str))


def test_a_long_look_back_too_long_for_the_series_is_told_the_longest_that_fits(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    """A user who asks for a long look-back (ETTm1 at --lookback 57,600, 30 days more than its
    train part) was offered only a short window ('--lookback 192 --horizon 96 fits the longest
    series') while look-backs up to 48,672 fit: the message also names the longest look-back
    the series holds at the asked horizon. Here 100 cycles, horizon 6: train (0.7, 70 rows)
    holds a window of 64 + 6."""
    train = linear_on_engines(tmp_path, cycles=100, engines=3, lookback=96, horizon=6)
    with pytest.raises(SeriesTooShortError) as error:
        train_pipeline(train, mlflow_settings)
    message = str(error.value)
    assert "(--lookback 12 --horizon 6 fits the longest series" in message, message
    assert "at --horizon 6 it holds a --lookback of up to 64" in message, message
    # the named one trains: 64 + 6 fits the train part's 70 rows
    fits = replace(train, model=replace(train.model, lookback=64))
    assert train_pipeline(fits, mlflow_settings).scores

"""`urnn benchmark pjm`: the "tail" split, combining six files into one dataset (real PJM files
when the shared data is there, synthetic ones with PJM's quirks always), a tiny end-to-end run
on synthetic regions, the report's verdict, and the CLI's error paths."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.shared_data import SHARED_DATA, needs_shared
from training import pjm_benchmark as pjm
from training.data import IncompatibleFilesError, LoadConfig, load_many, merge_loaded
from training.metrics import seasonal_naive_scale
from training.pjm_benchmark import (
    OVERALL,
    PjmBenchmarkConfig,
    PjmBenchmarkError,
    PjmRow,
    beats_reference,
    load_pjm,
    markdown_report,
    run_pjm_benchmark,
    write_results,
)
from training.split import SplitConfig, SplitError, SplitPlan, plan_split, split_series
from training.validation import InvalidOptionError
from urnn_forecast import cli
from urnn_forecast.settings import Settings

SHARED_PJM = SHARED_DATA / "PJM_hourly"
END = pd.Timestamp("2018-08-03 00:00")  # where every PJM file ends


def tail(lookback: int = 10, **options: object) -> SplitConfig:
    values: dict[str, object] = {"val_rows": 100, "test_rows": 200, **options}
    return SplitConfig(lookback=lookback, method="tail", **values)  # type: ignore[arg-type]


# --- the "tail" split ------------------------------------------------------------------------


def test_tail_split_counts_back_from_the_end() -> None:
    plan = plan_split(1000, "h", tail())
    assert (plan.train.start, plan.train.stop) == (0, 700)
    assert (plan.val.start, plan.val.stop) == (700, 800)
    assert (plan.test.start, plan.test.stop) == (800, 1000)
    assert plan.val.context == plan.test.context == 10

    capped = plan_split(1000, "h", tail(max_train_rows=300))
    assert (capped.train.start, capped.train.stop) == (400, 700)  # the most recent 300 rows
    assert (capped.val, capped.test) == (plan.val, plan.test)
    assert SplitPlan.from_dict(json.loads(json.dumps(capped.to_dict()))) == capped
    # a cap larger than the history takes everything
    assert plan_split(1000, "h", tail(max_train_rows=5000)).train == plan.train


def test_tail_split_frames_never_overlap_and_series_of_any_length_end_together() -> None:
    for n in (600, 1500):  # two regions with different start dates, same end
        index = pd.date_range(end=END, periods=n, freq="h", name="timestamp")
        frame = pd.DataFrame({"MW": np.arange(n, dtype=float)}, index=index)
        split = split_series(frame, plan_split(n, "h", tail(max_train_rows=250)))
        val_own, test_own = split.val.iloc[10:], split.test.iloc[10:]
        assert len(split.train) == 250 and len(val_own) == 100 and len(test_own) == 200
        assert split.train.index[-1] < val_own.index[0] and val_own.index[-1] < test_own.index[0]
        assert split.val.iloc[:10].equals(split.train.iloc[-10:])
        assert test_own.index[-1] == END and test_own.index[0] == END - pd.Timedelta(hours=199)


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"val_rows": None}, InvalidOptionError, "val_rows is required for split method 'tail'"),
        ({"test_rows": None}, InvalidOptionError, "test_rows is required"),
        ({"test_rows": 0}, InvalidOptionError, "test_rows must be an integer >= 1, got 0"),
        ({"max_train_rows": -5}, InvalidOptionError, "max_train_rows must be an integer >= 1"),
        ({"val_rows": 2.5}, InvalidOptionError, "val_rows must be an integer >= 1"),
    ],
)
def test_tail_split_option_errors_name_the_field(
    options: dict[str, object], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        tail(**options)  # type: ignore[arg-type]  # deliberately bad values


def test_tail_fields_are_refused_by_the_other_methods() -> None:
    with pytest.raises(InvalidOptionError, match="val_rows, test_rows applies to split method"):
        SplitConfig(lookback=10, method="fractions", val_rows=5, test_rows=5)
    with pytest.raises(InvalidOptionError, match=r"max_train_rows applies to .* got method 'ett'"):
        SplitConfig(lookback=10, method="ett", max_train_rows=5)
    with pytest.raises(InvalidOptionError, match="'ett', 'fractions', 'tail'"):
        SplitConfig(lookback=10, method="last")  # type: ignore[arg-type]


def test_tail_split_refuses_series_too_short() -> None:
    with pytest.raises(SplitError, match=r"200 \+ 100 \+ 10 rows .* the series has 305"):
        plan_split(305, "h", tail())
    with pytest.raises(SplitError, match="max_train_rows=5 leaves a train span shorter"):
        plan_split(1000, "h", tail(max_train_rows=5))


# --- combining files -------------------------------------------------------------------------


def pjm_like_csv(folder: Path, region: str, n: int, *, seed: int) -> pd.Series:
    """`<region>_hourly.csv` as PJM ships it: hourly local time ending at END, rows shuffled,
    one daylight-saving fall-back hour twice, one spring-forward hour missing, one more hour
    lost. Returns the clean series the loader should recover (the duplicate averaged, the
    missing hours interpolated)."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(end=END, periods=n, freq="h")
    t = np.arange(n)
    level = 2000.0 + 1000.0 * seed
    values = (
        level
        + 0.2 * level * np.sin(2 * np.pi * t / 24)
        + 0.1 * level * np.sin(2 * np.pi * t / 168)
        + 0.01 * level * rng.normal(size=n)
    )
    clean = pd.Series(values, index=index)
    frame = pd.DataFrame({"Datetime": index.strftime("%Y-%m-%d %H:%M:%S"), f"{region}_MW": values})
    dup_at, gap_at, lost_at = n // 3, n // 2, 2 * n // 3
    duplicate = frame.iloc[[dup_at]].copy()
    duplicate[f"{region}_MW"] += 100.0  # the second reading of the repeated hour
    clean.iloc[dup_at] += 50.0  # "mean": the two readings averaged
    for position in (gap_at, lost_at):  # interpolated from the neighbours
        clean.iloc[position] = (clean.iloc[position - 1] + clean.iloc[position + 1]) / 2
    frame = pd.concat([frame.drop(index=[gap_at, lost_at]), duplicate])
    frame = frame.sample(frac=1.0, random_state=seed)  # out of time order
    frame.to_csv(folder / f"{region}_hourly.csv", index=False)
    return clean


@pytest.fixture
def synthetic_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "PJM_hourly"
    folder.mkdir()
    pjm_like_csv(folder, "PJME", 2400, seed=1)
    pjm_like_csv(folder, "DEOK", 2000, seed=2)  # starts later, ends together
    return folder


def test_load_many_repairs_each_file_and_combines_them(tmp_path: Path) -> None:
    clean = {r: pjm_like_csv(tmp_path, r, 500 + 100 * i, seed=i) for i, r in enumerate(("A", "B"))}
    sources = [
        (tmp_path / f"{r}_hourly.csv", LoadConfig(target=f"{r}_MW", series_id=r)) for r in clean
    ]
    data = load_many(sources, target="MW")

    assert list(data.series) == ["A", "B"] and data.target == "MW" and data.freq == "h"
    for region, expected in clean.items():
        frame = data.series[region]
        assert list(frame.columns) == ["MW"] and frame.index[-1] == END
        assert frame.index.is_monotonic_increasing and len(frame) == len(expected)
        np.testing.assert_allclose(frame["MW"].to_numpy(), expected.to_numpy())
        assert int(data.filled[region]["MW"].sum()) == 2  # the two missing hours
    lines = data.report_lines()
    for region in clean:
        own = [line for line in lines if line.startswith(f"series {region!r}:")]
        assert any("sorted" in line for line in own)
        assert any("merged 1 duplicated timestamp (" in line for line in own)
        assert any("inserted 2 missing timestamps" in line for line in own)
        assert any(
            line.startswith(f"{region}_hourly.csv: combined as series {region!r}") for line in lines
        )
    assert data.config.target == "MW" and data.config.series_id is None


def test_merge_refuses_what_one_model_cannot_train_on(tmp_path: Path) -> None:
    pjm_like_csv(tmp_path, "A", 300, seed=0)
    config = LoadConfig(target="A_MW", series_id="A")
    path = tmp_path / "A_hourly.csv"
    with pytest.raises(IncompatibleFilesError, match=r"series id\(s\) \['A'\] in both"):
        load_many([(path, config), (path, config)], target="MW")
    hourly = load_many([(path, config)])
    other = {"B": hourly.series["A"]}
    daily = replace(hourly, freq="D", series=other, filled=other, source="B.csv")
    with pytest.raises(IncompatibleFilesError, match="frequency 'D'"):
        merge_loaded([hourly, daily])
    with pytest.raises(InvalidOptionError, match="at least one"):
        load_many([])


@needs_shared("PJM_hourly")
def test_the_six_real_pjm_files_load_and_split_under_the_protocol() -> None:
    data = load_pjm(SHARED_PJM, pjm.REGIONS)
    config = PjmBenchmarkConfig()
    assert list(data.series) == list(pjm.REGIONS) and data.freq == "h"
    for frame in data.series.values():
        assert list(frame.columns) == ["MW"] and frame.index[-1] == END
        plan = plan_split(len(frame), "h", config.split_config())
        assert (len(plan.test), len(plan.val), len(plan.train)) == (8760, 8760, 4 * 8760)
        assert frame.index[plan.test.start] == END - pd.Timedelta(hours=8759)
    lines = data.report_lines()
    for region in pjm.REGIONS:  # the documented quirks, each with its decision
        assert any(line.startswith(f"series {region!r}: sorted") for line in lines)
        assert any(
            line.startswith(f"series {region!r}: merged 4 duplicated timestamps") for line in lines
        )
        assert any(line.startswith(f"series {region!r}: inserted") for line in lines)


# --- a run -----------------------------------------------------------------------------------


def tiny_config(data_dir: Path, **overrides: object) -> PjmBenchmarkConfig:
    values: dict[str, object] = {
        "data_dir": str(data_dir),
        "regions": ("PJME", "DEOK"),
        "horizons": (24,),
        "lookback": 168,
        "test_days": 14,
        "val_days": 14,
        "train_years": 0.1,  # 876 rows
        "max_epochs": 1,
        "max_train_batches": 2,
        "hidden_size": 8,
        "device": "cpu",
        **overrides,
    }
    return PjmBenchmarkConfig(**values)  # type: ignore[arg-type]  # test helper


def test_tiny_run_scores_every_model_and_region_with_weekly_mase(synthetic_dir: Path) -> None:
    config = tiny_config(synthetic_dir)
    rows = run_pjm_benchmark(config)
    assert [(r.model, r.region) for r in rows] == [
        (m, region) for m in pjm.MODELS for region in ("PJME", "DEOK", OVERALL)
    ]
    for r in rows:
        assert (r.dataset, r.horizon, r.lookback) == ("PJM", 24, 168)
        assert r.n_windows == (28 if r.region == OVERALL else 14)  # one origin a day
        for value in (r.mase, r.mse, r.mae, r.smape, r.val_mase):
            assert np.isfinite(value) and value > 0

    # seasonal naive 168 by hand: |y_t - y_{t-168}| over the test targets, divided by the
    # in-sample MAE of the same forecast over the (capped) train span's observed values (the
    # hour each spring's clock change skips is filled in, and left out of the scale)
    data = load_pjm(synthetic_dir, config.regions)
    by_key = {(r.model, r.region): r for r in rows}
    for region, frame in data.series.items():
        y = frame["MW"].to_numpy()
        plan = plan_split(len(y), "h", config.split_config())
        assert len(plan.train) == 876
        train = y[plan.train.start : plan.train.stop]
        filled = data.filled[region]["MW"].to_numpy()[plan.train.start : plan.train.stop]
        assert filled.any()
        pairs = ~(filled[168:] | filled[:-168])
        observed = np.mean(np.abs(train[168:] - train[:-168])[pairs])
        assert seasonal_naive_scale(train, 168, filled) == pytest.approx(observed)
        targets = np.arange(plan.test.start, plan.test.stop)
        mae = np.mean(np.abs(y[targets] - y[targets - 168]))
        expected = mae / observed
        assert by_key[("seasonal_naive_168", region)].mase == pytest.approx(expected, rel=1e-5)
        assert by_key[("seasonal_naive_168", region)].mae == pytest.approx(mae, rel=1e-5)
        assert expected != pytest.approx(mae / seasonal_naive_scale(train, 24, filled), rel=1e-3)
    assert by_key[("repeat_last", "PJME")].n_params == 0 and by_key[("urnn", "PJME")].n_params > 0


def test_report_states_the_verdict_per_horizon(tmp_path: Path) -> None:
    config = PjmBenchmarkConfig(regions=("PJME", "FE"), models=("urnn", "seasonal_naive_168"))

    def row(h: int, model: str, region: str, mase: float) -> PjmRow:
        return PjmRow("PJM", region, h, model, mase, 1.0, 1.0, 1.0, mase, 365, 3, 2, 1.0, 5, 336)

    rows = [
        row(24, "urnn", "PJME", 0.5), row(24, "urnn", "FE", 0.6), row(24, "urnn", OVERALL, 0.55),
        row(24, "seasonal_naive_168", "PJME", 1.0), row(24, "seasonal_naive_168", "FE", 1.1),
        row(24, "seasonal_naive_168", OVERALL, 1.05),
        row(168, "urnn", "PJME", 0.9), row(168, "urnn", "FE", 1.2), row(168, "urnn", OVERALL, 1.05),
        row(168, "seasonal_naive_168", "PJME", 1.0), row(168, "seasonal_naive_168", "FE", 1.1),
        row(168, "seasonal_naive_168", OVERALL, 1.05),
    ]  # fmt: skip
    assert beats_reference(rows, 24) == (True, [])
    assert beats_reference(rows, 168) == (False, ["FE"])
    report = markdown_report(rows, config)
    assert "| region | urnn | seasonal_naive_168 |" in report
    assert "| PJME | 0.500 | 1.000 |" in report and "| **overall** | 0.550 | 1.050 |" in report
    assert "H = 24: the uRNN beats weekly seasonal naive on every region (2/2): YES" in report
    assert "H = 168: the uRNN beats weekly seasonal naive on every region: NO (1/2; " in report
    assert "FE (1.200 vs 1.100)" in report
    json_path, md_path = write_results(rows, config, tmp_path / "out")
    payload = json.loads(json_path.read_text())
    assert payload["urnn_beats_weekly_seasonal_naive"]["168"] == {
        "beats_on_every_region": False,
        "misses": ["FE"],
    }
    assert payload["protocol"]["mase_season"] == 168
    assert payload["protocol"]["split"]["method"] == "tail"
    first = payload["rows"][0]
    assert {"dataset", "region", "horizon", "model", "mase", "mse", "mae", "smape"} <= set(first)
    assert md_path.read_text() == report


def test_default_config_is_the_protocol() -> None:
    config = PjmBenchmarkConfig()
    split = config.split_config()
    assert (split.method, split.val_rows, split.test_rows) == ("tail", 8760, 8760)
    assert split.max_train_rows == 4 * 8760 and split.lookback == 336
    bt = config.backtest_config()
    assert (bt.season_length, bt.step, bt.scale) == (168, 24, "original")
    assert config.model_config("seasonal_naive_168", 24).season_length == 168
    assert config.model_config("seasonal_naive_24", 168).season_length == 24
    assert PjmBenchmarkConfig(train_years=None).split_config().max_train_rows is None
    with pytest.raises(PjmBenchmarkError, match="multiple of the segment length"):
        PjmBenchmarkConfig(lookback=200)
    with pytest.raises(PjmBenchmarkError, match="lookback must be >= 168"):
        PjmBenchmarkConfig(lookback=120, models=("linear", "seasonal_naive_168"))
    with pytest.raises(PjmBenchmarkError, match="regions must be among"):
        PjmBenchmarkConfig(regions=("AEP",))


# --- the command line ------------------------------------------------------------------------


def run_cli(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = cli.main(["benchmark", "pjm", *argv], settings=Settings(var_dir=tmp_path / "var"))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_mirrors_match_the_module() -> None:
    from urnn_forecast import benchmark_commands as commands

    assert commands.PJM_REGIONS == pjm.REGIONS
    assert commands.PJM_MODELS == pjm.MODELS
    assert commands.PJM_HORIZONS == pjm.HORIZONS


def test_cli_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]
    code, _, err = run_cli(argv, tmp_path, capsys)
    assert code == 2 and err.startswith("urnn benchmark pjm: error: --data-dir")
    assert "no such directory" in err and "PJME_hourly.csv" not in err
    assert "<REGION>_hourly.csv" in err and not (tmp_path / "out").exists()


def test_cli_missing_region_file(
    synthetic_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["--data-dir", str(synthetic_dir)], tmp_path, capsys)
    assert code == 2 and "PJMW_hourly.csv is not in" in err and "there: DEOK, PJME" in err


def test_cli_default_data_dir_is_the_shared_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(cli.__file__).resolve().parents[1]
    expected = root.parent / "shared" / "data" / "PJM_hourly"
    assert expected == pjm.DEFAULT_DATA_DIR
    monkeypatch.setattr(pjm, "DEFAULT_DATA_DIR", tmp_path / "absent")
    code, _, err = run_cli(["--output", str(tmp_path / "out")], tmp_path, capsys)
    assert code == 2 and "the default data folder" in err and "pass --data-dir" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "urnn,prophet"], "unknown model 'prophet'"),
        (["--regions", "AEP"], "unknown region 'AEP'"),
        (["--horizons", "24,0"], "must be an integer from 1 to"),
        (["--train-years", "0"], "must be a finite number > 0"),
    ],
)
def test_cli_argument_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(argv, tmp_path, capsys)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

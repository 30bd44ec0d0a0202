"""`urnn benchmark ett`: the protocol's pieces, a tiny run on a truncated ETTh1, the report
beside the published rows, and the CLI's error paths (message, exit code 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.forecaster import ForecasterKind
from training import ett_benchmark as ett
from training.ett_benchmark import (
    ANCHORS,
    HORIZONS,
    EttBenchmarkConfig,
    EttBenchmarkError,
    EttRow,
    markdown_report,
    run_ett_benchmark,
)
from training.split import plan_split
from urnn_forecast import cli
from urnn_forecast.settings import Settings

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "ETT-small" / "ETTh1.csv"
ROWS = 1000  # ~6 weeks hourly: far short of the 20 months of the ETT preset
# Small but on the protocol's code path: fractions split (60/20/20), train-only scaler, stride-1
# test windows, early stopping on val, z-scale scoring.
TINY = ["--split", "fractions", "--lookback", "48", "--horizons", "24", "--epochs", "1"]
TINY += ["--device", "cpu"]
ROW_KEYS = {"dataset", "setting", "horizon", "model", "mse", "mae", "epochs", "wall_seconds"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A folder holding ETTh1.csv cut to its header and first ROWS rows."""
    folder = tmp_path / "ETT-small"
    folder.mkdir()
    with BUNDLED.open() as source:
        lines = [next(source) for _ in range(ROWS + 1)]
    (folder / "ETTh1.csv").write_text("".join(lines))
    return folder


def run_cli(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = cli.main(["benchmark", "ett", *argv], settings=Settings(var_dir=tmp_path / "var"))
    out, err = capsys.readouterr()
    return code, out, err


def tiny_config(data_dir: Path, **overrides: object) -> EttBenchmarkConfig:
    values: dict[str, object] = {
        "data_dir": str(data_dir),
        "split": "fractions",
        "lookback": 48,
        "horizons": (24,),
        "max_epochs": 1,
        "device": "cpu",
        **overrides,
    }
    return EttBenchmarkConfig(**values)  # type: ignore[arg-type]  # test helper, checked fields


# --- the protocol ----------------------------------------------------------------------------


def test_cli_mirrors_match_the_module() -> None:
    from urnn_forecast import benchmark_commands as commands

    assert commands.ETT_DATASETS == ett.DATASETS
    assert commands.ETT_MODELS == ett.MODELS + ett.OPTIONAL_MODELS
    assert commands.ETT_HORIZONS == ett.HORIZONS


def test_default_config_is_the_ett_protocol() -> None:
    config = EttBenchmarkConfig()
    assert config.split == "ett" and config.resolved_lookback == 336
    assert EttBenchmarkConfig(setting="M").resolved_lookback == 720
    plan = plan_split(17_420, "h", config.split_config())
    assert (len(plan.train), len(plan.val), len(plan.test)) == (8640, 2880, 2880)
    assert plan.val.context == plan.test.context == 336
    fit = config.fit_config()
    assert (fit.patience, fit.mse_weight) == (3, 1.0)
    urnn = config.model_config("urnn", 96, "h")
    assert (urnn.hidden_size, urnn.segment_length, urnn.normalisation) == (64, 24, "last")
    multivariate = ett.EttBenchmarkConfig(setting="M")
    assert multivariate.model_config("urnn", 96, "h").segment_length == 48
    assert multivariate.model_config("urnn", 96, "h").lookback == 720
    assert config.model_config("seasonal_naive", 96, "15min").season_length == 96
    assert config.model_config("seasonal_naive", 96, "h").season_length == 24


def test_config_rejects_what_cannot_run() -> None:
    with pytest.raises(EttBenchmarkError, match="ETTh1, ETTh2, ETTm1, ETTm2"):
        EttBenchmarkConfig(datasets=("ETTh3",))
    with pytest.raises(EttBenchmarkError, match="multiple of the segment length"):
        EttBenchmarkConfig(lookback=100, models=("urnn",))
    EttBenchmarkConfig(lookback=100, models=("linear",))  # no segments: any look-back
    # the streaming kind's training crops (8,192 rows) must hold a window of the longest
    # horizon: refused before the run's first model trains, not in the streaming kind's turn
    with pytest.raises(EttBenchmarkError, match=r"set fit.stream_crop_length to at least 8,544"):
        EttBenchmarkConfig(lookback=7_824, models=("linear", "urnn-stream"))
    EttBenchmarkConfig(lookback=7_464, models=("linear", "urnn-stream"))
    with pytest.raises(EttBenchmarkError, match="train_batches_per_epoch must be None or >= 1"):
        EttBenchmarkConfig(train_batches_per_epoch=0)
    assert EttBenchmarkConfig(train_batches_per_epoch=100).fit_config().max_train_batches == 100
    assert EttBenchmarkConfig().fit_config().max_train_batches is None


def test_anchor_tables_cover_every_horizon() -> None:
    for tables in ANCHORS.values():
        for table in tables:
            for values in table.mse.values():
                assert tuple(values) == HORIZONS
    assert ANCHORS[("ETTh1", "S")][0].mse["NLinear"][96] == 0.053
    assert ANCHORS[("ETTh1", "M")][1].mse["GRU"][720] == 1.089


# --- a run -----------------------------------------------------------------------------------


def test_tiny_univariate_run_scores_every_model(data_dir: Path) -> None:
    config = tiny_config(data_dir)
    rows = run_ett_benchmark(config)
    assert [r.model for r in rows] == list(ett.MODELS)
    for r in rows:
        assert (r.dataset, r.setting, r.horizon, r.lookback) == ("ETTh1", "S", 24, 48)
        assert 0 < r.mse < 5 and 0 < r.mae < 3 and r.epochs == 1
        # test span: the last 20 % of the rows, read with stride 1
        assert r.n_windows == ROWS - int(ROWS * 0.6) - int(ROWS * 0.2) - 24 + 1
        assert 0.0 <= r.coverage_80 <= 1.0
    by_model = {r.model: r for r in rows}
    assert by_model["repeat_last"].n_params == 0 and by_model["urnn"].n_params > 0
    # The uRNN's decoder is chosen on val (the default "auto"); the LSTM keeps the direct head.
    urnn = by_model["urnn"]
    scores = urnn.decoder_val_scores
    assert set(scores) == {"direct", "pmf"} and urnn.decoder == min(scores, key=scores.__getitem__)
    assert (by_model["lstm"].decoder, by_model["lstm"].decoder_val_scores) == ("direct", {})
    assert (by_model["linear"].decoder, by_model["linear"].decoder_val_scores) == ("", {})
    report = markdown_report(rows, config)
    assert (
        f"decoder chosen on val (each candidate's best val score): urnn H=24: {urnn.decoder}"
        in report
    )
    assert (
        "day of year as sin/cos pairs, for the look-back and the horizon) read by: urnn, lstm"
        in (report)
    )


def test_the_streaming_urnn_is_scored_on_the_same_test_windows(data_dir: Path) -> None:
    """urnn-stream (opt-in) trains on crops and reads each test origin's whole history, yet is
    scored on exactly the windows every other model is, channel-independently in M too."""
    crops = {"stream_crop_length": 200, "stream_batch_crops": 2, "stream_batches_per_epoch": 2}
    config = tiny_config(
        data_dir, models=("urnn-stream", "repeat_last"), segment_length=24, **crops
    )
    stream, naive = run_ett_benchmark(config)
    assert stream.model == "urnn-stream" and stream.n_windows == naive.n_windows
    assert 0 < stream.mse < 5 and stream.n_params > 0
    [m_row] = run_ett_benchmark(
        tiny_config(data_dir, setting="M", models=("urnn-stream",), **crops)
    )
    assert m_row.n_windows == 200 - 24 + 1  # per channel, as for the windowed models


def test_multivariate_run_is_channel_independent(data_dir: Path) -> None:
    rows = run_ett_benchmark(tiny_config(data_dir, setting="M", models=("repeat_last",)))
    [row] = rows
    assert row.setting == "M" and row.n_windows == 200 - 24 + 1  # windows per channel
    report = markdown_report(rows, tiny_config(data_dir, setting="M"))
    assert "SegRNN (L=96)" in report and "GRU (L=720)" in report


def test_missing_dataset_fails_before_training_and_lists_what_is_there(data_dir: Path) -> None:
    with pytest.raises(EttBenchmarkError, match=r"ETTm1\.csv is not in .*available there: ETTh1"):
        run_ett_benchmark(tiny_config(data_dir, datasets=("ETTh1", "ETTm1")))


def test_report_puts_ours_beside_the_published_rows() -> None:
    config = EttBenchmarkConfig(horizons=(96, 192), models=("urnn", "linear"))
    rows = [
        EttRow("ETTh1", "S", h, m, 0.05 + i / 100, 0.2, 5, 1.0, 336, 3)
        for i, (h, m) in enumerate((h, m) for h in (96, 192) for m in ("urnn", "linear"))
    ]
    report = markdown_report(rows, config)
    lines = report.splitlines()
    header = next(line for line in lines if line.startswith("| H |"))
    assert header.split(" | ")[1:3] == ["urnn (ours)", "linear (ours)"]
    for name in ("NLinear", "DLinear", "FEDformer", "Autoformer", "Informer"):
        assert name in header
    row96 = next(line for line in lines if line.startswith("| 96 |"))
    assert "0.050 / 0.200" in row96 and "0.053" in row96 and "0.193" in row96
    row192 = next(line for line in lines if line.startswith("| 192 |"))
    assert "0.069" in row192 and "0.217" in row192
    assert "Zeng et al." in report and "look-back 336" in report
    assert "NOT the ETT protocol" not in report


# --- the command line ------------------------------------------------------------------------


def test_cli_writes_json_and_markdown(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    argv = [*TINY, "--data-dir", str(data_dir), "--output", str(out_dir)]
    code, out, err = run_cli([*argv, "--models", "linear,repeat_last"], tmp_path, capsys)
    assert code == 0, err
    payload = json.loads((out_dir / "results.json").read_text())
    rows = payload["rows"]
    assert [r["model"] for r in rows] == ["linear", "repeat_last"]
    for r in rows:
        assert set(r) >= ROW_KEYS
        assert (r["dataset"], r["setting"], r["horizon"]) == ("ETTh1", "S", 24)
    assert payload["protocol"]["split"] == "fractions"
    markdown = (out_dir / "results.md").read_text()
    assert "| 24 |" in markdown and "linear (ours)" in markdown and "NLinear" in markdown
    assert "NOT the ETT protocol" in markdown  # a fractions run says it is not comparable
    assert markdown.strip() in out  # the table is printed too


def test_cli_decoder_option_reaches_the_recurrent_model(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    argv = [*TINY, "--data-dir", str(data_dir), "--output", str(out_dir), "--models", "urnn"]
    code, _, err = run_cli([*argv, "--decoder", "pmf"], tmp_path, capsys)
    assert code == 0, err
    payload = json.loads((out_dir / "results.json").read_text())
    assert payload["config"]["decoder"] == "pmf"
    assert [r["model"] for r in payload["rows"]] == ["urnn"]


def test_calendar_features_reach_the_recurrent_models_by_setting() -> None:
    """On by default in S, off in M (chosen on the validation splits); the linear model and the
    baselines never read them; the option overrides the setting's default either way."""
    univariate, multivariate = EttBenchmarkConfig(), EttBenchmarkConfig(setting="M")
    kinds: tuple[tuple[ForecasterKind, int], ...] = (
        ("urnn", 6),
        ("lstm", 6),
        ("linear", 0),
        ("seasonal_naive", 0),
    )
    for kind, expected in kinds:
        assert univariate.model_config(kind, 96, "h").n_calendar == expected
        assert multivariate.model_config(kind, 96, "h").n_calendar == 0
    assert EttBenchmarkConfig(calendar=False).model_config("urnn", 96, "h").n_calendar == 0
    forced = EttBenchmarkConfig(setting="M", calendar=True)
    assert forced.model_config("lstm", 96, "h").n_calendar == 6
    assert forced.model_config("urnn", 96, "15min").n_calendar == 6
    assert forced.model_config("linear", 96, "h").n_calendar == 0


def test_cli_calendar_option_reaches_the_config_and_the_results(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    argv = [*TINY, "--data-dir", str(data_dir), "--output", str(out_dir), "--models", "lstm"]
    code, out, err = run_cli([*argv, "--no-calendar"], tmp_path, capsys)
    assert code == 0, err
    payload = json.loads((out_dir / "results.json").read_text())
    assert payload["config"]["calendar"] is False
    assert payload["protocol"]["calendar_features"] == []
    assert "calendar features" not in out
    code, out, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    payload = json.loads((out_dir / "results.json").read_text())
    assert payload["config"]["calendar"] is None
    assert payload["protocol"]["calendar_features"] == ["lstm"]
    assert "read by: lstm" in out


def test_cli_segment_length_option_lets_a_power_of_two_look_back_run(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A look-back of 64 (as 1024 or 4096 would be) is no multiple of S's default segments of
    24; the benchmark had no option to change them. The refusal names segment lengths that
    divide it, and --segment-length 16 reaches the recurrent model."""
    out_dir = tmp_path / "out"
    tiny = [*TINY]
    tiny[tiny.index("--lookback") + 1] = "64"  # an option given once (a second is refused)
    argv = [*tiny, "--data-dir", str(data_dir), "--output", str(out_dir), "--models", "urnn"]
    code, _, err = run_cli(argv, tmp_path, capsys)
    assert code == 2
    assert "lookback 64 must be a multiple of the segment length 24 for urnn" in err
    assert "such as 16 (4 recurrent steps) or 32 (2 recurrent steps)" in err
    code, _, err = run_cli([*argv, "--segment-length", "16"], tmp_path, capsys)
    assert code == 0, err
    payload = json.loads((out_dir / "results.json").read_text())
    assert payload["config"]["segment_length"] == 16
    assert [(r["model"], r["lookback"]) for r in payload["rows"]] == [("urnn", 64)]


def test_cli_repeats_fit_trained_models_per_seed_and_report_mean_and_range(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    argv = [*TINY, "--data-dir", str(data_dir), "--output", str(out_dir)]
    argv += ["--models", "linear,repeat_last", "--repeats", "3", "--ensemble", "2", "--seed", "4"]
    code, out, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    payload = json.loads((out_dir / "results.json").read_text())
    # repeat r seeds 4 + 2r: the members of two repeats never share a seed
    assert [(r["model"], r["seed"]) for r in payload["rows"]] == [
        ("linear", 4), ("linear", 6), ("linear", 8), ("repeat_last", 4)
    ]  # fmt: skip
    linear = [r for r in payload["rows"] if r["model"] == "linear"]
    assert len({r["mse"] for r in linear}) == 3  # three different fits
    summary = {r["model"]: r for r in payload["summary"]}
    mean = sum(r["mse"] for r in linear) / 3
    assert summary["linear"]["mse"] == pytest.approx(mean)
    assert summary["linear"]["mse_min"] == min(r["mse"] for r in linear)
    assert summary["linear"]["seeds"] == [4, 6, 8] and summary["repeat_last"]["seeds"] == [4]
    markdown = (out_dir / "results.md").read_text()
    low, high = (min(r["mse"] for r in linear), max(r["mse"] for r in linear))
    assert f"[{low:.3f} - {high:.3f}]" in markdown
    assert "linear (ours, ensemble of 2)" in markdown and "repeat_last (ours)" in markdown
    assert "the mean over 3 fits (seeds 4, 6, 8)" in markdown
    assert "linear seed 6:" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--datasets", "ETTm2"], "ETTm2.csv is not in"),
        (["--split", "ett"], "the ETT split needs 14,400 rows"),
        (["--lookback", "50", "--models", "urnn"], "multiple of the segment length"),
    ],
)
def test_cli_input_errors_exit_2_with_a_message(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    base = ["--data-dir", str(data_dir), "--horizons", "24", "--output", str(tmp_path / "out")]
    if "--lookback" not in argv:  # an option given once: a second, other value is refused
        base += ["--lookback", "48"]
    code, _, err = run_cli([*base, *argv], tmp_path, capsys)
    assert code == 2
    assert err.startswith("urnn benchmark ett: error:") and message in err
    assert not (tmp_path / "out").exists()


def test_cli_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["--data-dir", str(tmp_path / "nope")], tmp_path, capsys)
    assert code == 2 and "no such directory" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "urnn,transformer"], "unknown model 'transformer'"),
        (["--datasets", "ETTh3"], "unknown dataset 'ETTh3'"),
        (["--horizons", "96,0"], "must be an integer from 1 to"),
        (["--setting", "X"], "invalid choice: 'X'"),
        (["--decoder", "rnn"], "invalid choice: 'rnn'"),
    ],
)
def test_cli_argument_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(argv, tmp_path, capsys)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_default_data_dir_falls_back_to_the_bundled_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ett, "DEFAULT_DATA_DIRS", (tmp_path / "absent", BUNDLED.parent))
    assert ett.resolve_data_dir(None) == BUNDLED.parent
    assert "ETTh1" in ett.available_datasets(BUNDLED.parent)
    monkeypatch.setattr(ett, "DEFAULT_DATA_DIRS", (tmp_path / "absent",))
    with pytest.raises(EttBenchmarkError, match="no ETT data folder found"):
        ett.resolve_data_dir(None)


def test_pmf_decoder_and_channel_embedding_reach_the_recurrent_configs_only() -> None:
    config = EttBenchmarkConfig(setting="M", decoder="pmf", channel_embedding=True)
    urnn = config.model_config("urnn", 96, "h")
    assert (urnn.decoder, urnn.n_channels) == ("pmf", 7)
    linear = config.model_config("linear", 96, "h")
    assert (linear.decoder, linear.n_channels) == ("direct", 0)
    plain = EttBenchmarkConfig(setting="M").model_config("urnn", 96, "h")
    assert (plain.decoder, plain.n_channels) == ("direct", 0)
    with pytest.raises(EttBenchmarkError, match=r"channel_embedding needs decoder='pmf'"):
        EttBenchmarkConfig(setting="M", channel_embedding=True)


def test_the_decoder_default_lets_validation_choose_for_the_urnn() -> None:
    from training.ett_benchmark import EttBenchmarkConfig

    for setting in ("S", "M"):
        config = EttBenchmarkConfig(setting=setting)
        for h in (96, 720):
            assert config.resolved_decoder("urnn", h) == "auto"
            assert config.fit_config_for("urnn", h).decoder_search
            assert config.model_config("urnn", h, "h").decoder == "direct"  # the search's base
            assert not config.fit_config_for("lstm", h).decoder_search
            assert config.model_config("lstm", h, "h").decoder == "direct"
            assert not config.fit_config_for("linear", h).decoder_search
    forced = EttBenchmarkConfig(setting="M", decoder="direct")
    assert forced.model_config("urnn", 720, "h").decoder == "direct"
    assert not forced.fit_config_for("urnn", 720).decoder_search
    assert EttBenchmarkConfig(decoder="pmf").model_config("urnn", 96, "h").decoder == "pmf"
    assert EttBenchmarkConfig(decoder="pmf").model_config("linear", 96, "h").decoder == "direct"
    lstm_auto = EttBenchmarkConfig(decoder="auto")
    assert lstm_auto.fit_config_for("lstm", 96).decoder_search
    embedded = EttBenchmarkConfig(setting="M", decoder="auto", channel_embedding=True)
    assert (embedded.model_config("urnn", 96, "h").decoder, embedded.n_channels) == ("pmf", 7)
    with pytest.raises(EttBenchmarkError, match="decoder must be one of 'direct', 'pmf', 'auto'"):
        EttBenchmarkConfig(decoder="best")  # type: ignore[arg-type]

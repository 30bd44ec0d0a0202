"""`urnn train` and `urnn backtest`: error paths (message, exit code 2, no traceback) and one
tiny end-to-end run against a temporary MLflow store."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from tests.e2e.processes import free_port
from tests.training.synthetic import seasonal_frame
from training.fit import FitConfig
from urnn_forecast import cli
from urnn_forecast.settings import Settings

TINY = ["--lookback", "48", "--horizon", "12", "--segment-length", "12", "--hidden-size", "8"]
TINY += ["--epochs", "1", "--backtest-step", "12", "--device", "cpu"]


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "plant.csv"
    seasonal_frame(600).to_csv(path)
    return path


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def settings(mlflow_settings: Settings, restore_threads: None) -> Settings:
    """The test's MLflow store, one torch thread (the CLI sets it; torch's count is restored)."""
    return mlflow_settings.model_copy(update={"torch_threads": 1})


def test_forecaster_choices_match_the_models_package() -> None:
    from models.forecaster import FORECASTER_KINDS

    assert cli.FORECASTER_CHOICES == FORECASTER_KINDS


def test_decoder_choices_match_the_models_package() -> None:
    from models.forecaster import DECODERS
    from training.ett_benchmark import DECODER_CHOICES
    from urnn_forecast.cli_support import DECODER_CHOICES as CLI_DECODER_CHOICES

    assert CLI_DECODER_CHOICES == (*DECODERS, "auto") == DECODER_CHOICES


def test_policy_choices_match_the_loader() -> None:
    from training.validation import (
        DUPLICATE_POLICIES,
        FILL_METHODS,
        LONG_GAP_POLICIES,
        SHORT_SERIES_POLICIES,
    )

    assert set(cli.DUPLICATE_CHOICES) == set(DUPLICATE_POLICIES)
    assert set(cli.FILL_CHOICES) == set(FILL_METHODS)
    assert set(cli.LONG_GAP_CHOICES) == set(LONG_GAP_POLICIES)
    assert set(cli.SHORT_CHOICES) == set(SHORT_SERIES_POLICIES)


SMALL = ["--lookback", "24", "--horizon", "6", "--segment-length", "6"]


def overall_score(printed: str, metric: str) -> float:
    """`metric` of the printed overall table (its "all" row, under the header naming it)."""
    lines = printed.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("all "))
    return float(lines[row].split()[lines[row - 1].split().index(metric) + 1])


def run_cli(
    argv: list[str], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = cli.main(argv, settings=settings)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--target", "nope"], "no column 'nope'; the file has: 'timestamp', 'y', 'x'"),
        (["--target", "y", "--covariates", "x,ghost"], "no column 'ghost'"),
        (["--target", "y", "--lookback", "50"], "lookback must be a multiple of segment_length"),
        (["--target", "y", "--freq", "fortnightly"], "not a pandas offset alias"),
        # a loader setting refused as typed: said in options, not LoadConfig's fields
        (
            ["--target", "y", "--decimal", ","],
            "--decimal ',' is also the field separator (--sep): a file with a decimal comma "
            "separates its fields with another character, ';' most often: pass --sep too",
        ),
        (
            ["--target", "y", "--lookback", "480", "--segment-length", "24"],
            "shorter than min_length=960 (the longest has 600 rows); min_length is what leaves "
            "one window of look-back + horizon (480 + 96) in each part of the split",
        ),
        (
            ["--target", "y", "--model", "linear", "--decoder", "pmf"],
            "decoder='pmf' applies to the recurrent kinds",
        ),
        (
            ["--target", "y", "--model", "linear", "--decoder", "auto"],
            "decoder 'auto' (fit.decoder_search) applies to the kinds urnn, urnn-full, lstm, gru",
        ),
        # found before the fit, not after it (they used to end a finished run in a traceback)
        (
            ["--target", "y", "--result-json", "/nonexistent/dir/r.json"],
            "--result-json /nonexistent/dir/r.json: the folder /nonexistent/dir does not exist",
        ),
        (["--target", "timestamp"], "column 'timestamp' is the timestamp and cannot also be the"),
        (["--target", "y", "--quantiles", "0.1,0.9"], "quantiles must include 0.5"),
        # member 2 of the ensemble would seed numpy with 2**32, after a run was created
        (
            ["--target", "y", "--seed", str(2**32 - 1), "--ensemble", "2"],
            "--seed: seed 4294967295 with an ensemble of 2 members seeds member 2 with "
            "4294967296, past 2**32 - 1 (4294967295); give a seed up to 4294967294",
        ),
        # an audit's two: both failed after a whole fit, without naming the option
        (
            ["--target", "y", *SMALL, "--backtest-windows", "1000"],
            "backtest_windows (--backtest-windows): series 'plant' has room in its test span for",
        ),
        (
            ["--target", "y", *SMALL, "--season-length", "10000"],
            "season_length: MASE's scale compares training values one season apart, and the "
            "season (10,000 rows, set by the user) is not shorter than the shortest training "
            "span",
        ),
    ],
)
def test_bad_train_input_is_a_message_and_exit_code_2(
    csv: Path,
    extra: list[str],
    expected: str,
    mlflow_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(["train", "--data", str(csv), *extra], mlflow_settings, capsys)
    assert code == 2
    assert err.startswith("urnn train: error: ")
    assert expected in err
    assert "Traceback" not in err
    assert "epoch 1/" not in out  # refused before any training


@pytest.mark.parametrize("option", ["--result-json", "--started-json"])
def test_an_outcome_file_that_is_the_data_or_config_file_is_refused_and_both_are_kept(
    csv: Path,
    tmp_path: Path,
    option: str,
    mlflow_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--result-json` naming the --data file replaced the history with the run's outcome
    once the run ended (`--started-json` before the fit); the --config file alike."""
    data_before = csv.read_bytes()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"fit": {"max_epochs": 1}}))
    base = ["train", "--data", str(csv), "--target", "y", "--config", str(config)]
    for target, named in ((csv, "--data"), (config, "--config")):
        code, out, err = run_cli([*base, option, str(target)], mlflow_settings, capsys)
        assert code == 2
        assert err == (
            f"urnn train: error: {option} {target}: is the {named} file, which writing the "
            "outcome would overwrite; give another file name\n"
        )
        assert "epoch 1/" not in out
    assert csv.read_bytes() == data_before
    assert json.loads(config.read_text()) == {"fit": {"max_epochs": 1}}


@pytest.mark.parametrize("name", ["forecasts.parquet", "overall.csv"])
def test_backtest_output_that_would_overwrite_the_data_file_is_refused(
    tmp_path: Path, name: str, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn backtest --data results/forecasts.parquet --output results` replaced the history
    with the backtest's own forecasts table (and overall.csv alike)."""
    data = tmp_path / name
    frame = seasonal_frame(200).reset_index()
    if name.endswith(".parquet"):
        frame.to_parquet(data, index=False)
    else:
        frame.to_csv(data, index=False)
    before = data.read_bytes()
    argv = ["backtest", "--data", str(data), "--output", str(tmp_path)]
    code, _, err = run_cli(argv, mlflow_settings, capsys)
    assert code == 2
    assert err == (
        f"urnn backtest: error: --output {tmp_path}: the backtest writes {name} there, which "
        "is the --data file; give another folder\n"
    )
    assert data.read_bytes() == before


def test_decoder_option_reaches_the_model_config(csv: Path) -> None:
    parser = cli.build_parser()
    base = ["train", "--data", str(csv), "--target", "y", "--device", "cpu"]
    chosen = parser.parse_args([*base, "--decoder", "pmf"])
    assert cli._train_config(chosen).model.decoder == "pmf"
    plain = parser.parse_args(base)
    assert cli._train_config(plain).model.decoder == "direct"
    assert not cli._train_config(plain).fit.decoder_search
    auto = cli._train_config(parser.parse_args([*base, "--decoder", "auto"]))
    assert auto.fit.decoder_search and auto.model.decoder == "direct"


def test_a_covariate_named_twice_is_refused_not_dropped(
    csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--covariates x,x` (a typo for another column?) was made `x` without a word; the
    config file's same list was refused. Both are now the one error naming the repeat."""
    base = ["train", "--data", str(csv), "--target", "y", *TINY]
    for repeated in (["--covariates", "x,x"], ["--covariates", "x", "--covariates", "x"]):
        code = cli.main([*base, *repeated])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "'x' is named more than once among the covariates" in err, err
    code = cli.main([*base, "--covariates", "y"])
    err = capsys.readouterr().err
    assert code == 2 and "'y' is the target and a covariate" in err, err


def test_a_fraction_with_the_ett_split_is_refused_not_ignored(
    csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ETT split's spans are fixed (12, 4 and 4 months): `--split ett --train-fraction
    0.5` trained on them without a word about the fraction."""
    base = ["train", "--data", str(csv), "--target", "y", *TINY, "--split", "ett"]
    code = cli.main([*base, "--train-fraction", "0.5"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "train_fraction is read by the splits 'fractions' and 'series' only" in err, err


def test_quantile_levels_reach_the_model_config(csv: Path) -> None:
    parser = cli.build_parser()
    base = ["train", "--data", str(csv), "--target", "y", "--device", "cpu"]
    chosen = cli._train_config(parser.parse_args([*base, "--quantiles", "0.05,0.5,0.95"]))
    assert chosen.model.quantiles == (0.05, 0.5, 0.95)
    assert cli._train_config(parser.parse_args(base)).model.quantiles == (0.1, 0.5, 0.9)


def test_calendar_features_are_asked_for_by_option_or_config(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--calendar`, a config's train.calendar or model.n_calendar "auto": the frequency sets
    n_calendar once the data is loaded. An explicit n_calendar still works; one beside
    calendar, a kind that reads no calendar or step numbers are refused before any fit."""
    parser = cli.build_parser()
    base = ["train", "--data", str(csv), "--target", "y", "--device", "cpu"]
    assert cli._train_config(parser.parse_args([*base, "--calendar"])).calendar
    assert not cli._train_config(parser.parse_args(base)).calendar
    auto = tmp_path / "auto.json"
    auto.write_text(json.dumps({"model": {"n_calendar": "auto"}}))
    chosen = cli._train_config(parser.parse_args([*base, "--config", str(auto)]))
    assert chosen.calendar and chosen.model.n_calendar == 0  # set from the data, later
    explicit = tmp_path / "six.json"
    explicit.write_text(json.dumps({"model": {"n_calendar": 6}}))
    old = cli._train_config(parser.parse_args([*base, "--config", str(explicit)]))
    assert not old.calendar and old.model.n_calendar == 6
    for extra, expected in (
        (["--config", str(explicit)], "the model config also gives n_calendar=6: give one"),
        (["--model", "linear"], "calendar features are read by the kinds urnn, urnn-full"),
        (["--step-origin", "2000-01-01", "--freq", "D"], "the timestamps of step numbers"),
    ):
        code = cli.main([*base, "--calendar", *extra])
        err = capsys.readouterr().err
        assert code == 2 and expected in err, err
    # a wrong explicit count names the right one and the way to let the data decide
    wrong = tmp_path / "four.json"
    wrong.write_text(json.dumps({"model": {"n_calendar": 4}}))
    code = cli.main([*base, "--config", str(wrong), "--lookback", "48", "--horizon", "12"])
    err = capsys.readouterr().err
    assert code == 2
    assert "n_calendar=4, but calendar_features at freq 'h' gives 6 features" in err
    assert "set n_calendar to 6, or let the data's frequency set it (urnn train --calendar" in err


@pytest.mark.parametrize(("freq", "n_calendar"), [("h", 6), ("D", 4), ("W-SUN", 2)])
def test_the_datas_frequency_sets_the_calendar_features(
    tmp_path: Path, freq: str, n_calendar: int
) -> None:
    from models.forecaster import ForecasterConfig
    from training.data import LoadConfig
    from training.pipeline import TrainConfig, calendar_lines, prepare_training

    frame = seasonal_frame(400)
    frame.index = pd.date_range("2020-01-05", periods=400, freq=freq, name="timestamp")
    path = tmp_path / f"{freq}.csv"
    frame.to_csv(path)
    config = TrainConfig(
        data=str(path),
        load=LoadConfig(target="y"),
        model=ForecasterConfig(lookback=24, horizon=6, segment_length=6, hidden_size=8),
        calendar=True,
    )
    prepared = prepare_training(config)
    assert prepared.model_config.n_calendar == n_calendar
    assert prepared.sets.train.batch(torch.arange(1)).past_calendar.shape[-1] == n_calendar
    (line,) = calendar_lines(prepared.data, prepared.model_config)
    assert line.startswith("calendar features: ") and f"(n_calendar={n_calendar} at " in line
    assert line.endswith("on the local wall clock the timestamps were written in "
                         "(calendar_clock 'local')")  # fmt: skip


def test_a_job_spec_asks_for_calendar_features_in_its_train_or_model_section(
    csv: Path,
) -> None:
    from jobs.spec import JobSpec, JobSpecError

    for config in ({"train": {"calendar": True}}, {"model": {"n_calendar": "auto"}}):
        spec = JobSpec(data=str(csv), target="y", config=config)
        assert spec.train_config().calendar
    spec = JobSpec(
        data=str(csv), target="y", config={"train": {"calendar": True}, "model": {"kind": "gru"}}
    )
    assert spec.train_config().calendar
    linear = JobSpec(
        data=str(csv), target="y", config={"train": {"calendar": True}, "model": {"kind": "linear"}}
    )
    with pytest.raises(JobSpecError) as refused:
        linear.train_config()
    assert refused.value.field == "config.train.calendar"
    assert "calendar features are read by the kinds" in refused.value.message
    both = JobSpec(
        data=str(csv),
        target="y",
        config={"train": {"calendar": False}, "model": {"n_calendar": "auto"}},
    )
    with pytest.raises(JobSpecError, match='n_calendar "auto" asks for calendar features'):
        both.train_config()


def test_the_series_split_option_reaches_the_train_config(
    csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = cli.build_parser()
    base = ["train", "--data", str(csv), "--target", "y", "--device", "cpu"]
    fleet = cli._train_config(parser.parse_args([*base, "--split", "series"]))
    assert fleet.split(48).method == "series"
    code = cli.main([*base, "--split", "series", "--model", "urnn-stream"])
    assert code == 2
    assert (
        "split 'series' holds out whole series, and kind 'urnn-stream'" in capsys.readouterr().err
    )


def test_a_streaming_look_back_as_long_as_the_training_crops_is_refused_before_loading(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """urnn-stream at --lookback 8192 (the default crop is 8,192 rows) is refused naming
    fit.stream_crop_length and the rows it needs, before the file is read (a short file here:
    its own too-short error would come first otherwise); the --config field is checked alike."""
    base = ["train", "--data", str(csv), "--target", "y", "--model", "urnn-stream"]
    code = cli.main([*base, "--lookback", "8192", "--segment-length", "64", "--horizon", "96"])
    err = capsys.readouterr().err
    assert code == 2
    assert "stream_crop_length=8,192 is shorter than lookback + horizon (8,192 + 96)" in err
    assert "set fit.stream_crop_length to at least 8,288" in err
    # the way to set it from the command line, which has no flag for it
    assert '--config with {"fit": {"stream_crop_length": 16384}}' in err
    config = tmp_path / "crop.json"
    config.write_text(json.dumps({"fit": {"stream_crop_length": 50}}))
    argv = [*base, "--lookback", "48", "--segment-length", "8", "--horizon", "12"]
    code = cli.main([*argv, "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and "stream_crop_length=50 is shorter than lookback + horizon (48 + 12)" in err


def test_a_train_stride_for_a_streaming_kind_is_refused_before_loading(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """urnn-stream trains on crops, not windows: --train-stride 5 was ignored without a word
    and recorded in config.json as if it had been used; the --config field alike."""
    base = ["train", "--data", str(csv), "--target", "y", "--model", "urnn-stream"]
    refusal = (
        "urnn train: error: train_stride (--train-stride) spaces training windows, and kind "
        "'urnn-stream' trains on crops of each series' history (fit.stream_crop_length), not "
        "windows: leave it at 1\n"
    )
    code = cli.main([*base, "--lookback", "48", "--segment-length", "8", "--train-stride", "5"])
    assert code == 2 and capsys.readouterr().err == refusal
    config = tmp_path / "stride.json"
    config.write_text(json.dumps({"train": {"train_stride": 5}}))
    code = cli.main([*base, "--lookback", "48", "--segment-length", "8", "--config", str(config)])
    named = refusal.replace("error: ", f"error: --config {config}: train.train_stride: ", 1)
    assert code == 2 and capsys.readouterr().err == named


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_a_folder_as_data_is_named_a_folder_and_a_parquet_dataset_told_to_write_one_file(
    command: str, tmp_path: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spark, Dask and pandas' partition_cols write a Parquet 'file' as a folder of part
    files: --data history.parquet was refused as "cannot read it as parquet: Cannot open for
    reading: path ... is a directory", and a plain folder as "unsupported file type
    '(no suffix)'", as if its name were the problem."""
    frame = seasonal_frame(48).reset_index().assign(site=["a", "b"] * 24)
    dataset = tmp_path / "history.parquet"
    frame.to_parquet(dataset, partition_cols=["site"])
    plain = tmp_path / "exports"
    plain.mkdir()
    target = ["--target", "y"] if command == "train" else []
    code, _, err = run_cli([command, "--data", str(dataset), *target], mlflow_settings, capsys)
    assert code == 2 and err == (
        f"urnn {command}: error: --data {dataset}: a folder, not a file: a partitioned "
        "Parquet dataset (Spark, Dask and pandas' partition_cols write one as a folder of "
        "part files)? write it as one file first, e.g. pandas.read_parquet(folder)"
        ".to_parquet('one-file.parquet')\n"
    )
    code, _, err = run_cli([command, "--data", str(plain), *target], mlflow_settings, capsys)
    assert code == 2 and err == (
        f"urnn {command}: error: --data {plain}: a folder, not a file; give the history "
        "file (.csv, .tsv, .txt, each also .gz, or .parquet)\n"
    )


def test_missing_file_and_bad_config_files(
    tmp_path: Path, csv: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["train", "--data", str(tmp_path / "missing.csv"), "--target", "y"], mlflow_settings, capsys
    )
    assert code == 2 and "missing.csv: no such file" in err

    cases = {
        "not json {": "not a readable JSON file",
        json.dumps({"modle": {}}): "unknown section(s) ['modle']",
        json.dumps({"model": {"hidden": 3}}): "model.hidden: unknown field(s) ['hidden']",
        json.dumps({"fit": {"lr": -1}}): "lr must be > 0",
        json.dumps({"fit": {"seed": -3}}): (
            "fit.seed: seed must be an integer from 0 to 2**32 - 1 (4294967295), got -3"
        ),
        json.dumps({"train": {"data": "x.csv"}}): "set 'data' with its option",
        # json.loads keeps the last of a key given twice: lr 5 trained without a word
        '{"fit": {"lr": 1e-3, "lr": 5}}': (
            "config.json: the key 'lr' is given twice in one object (JSON would keep the "
            "last one and drop the other without a word): give it once"
        ),
        '{"fit": {"lr": 1e-3}, "fit": {"seed": 1}}': "the key 'fit' is given twice",
    }
    for text, expected in cases.items():
        config = tmp_path / "config.json"
        config.write_text(text)
        argv = ["train", "--data", str(csv), "--target", "y", "--config", str(config)]
        code, _, err = run_cli(argv, mlflow_settings, capsys)
        assert code == 2, text
        assert expected in err, (text, err)
    code, _, err = run_cli(
        ["train", "--data", str(csv), "--target", "y", "--config", str(tmp_path / "no.json")],
        mlflow_settings,
        capsys,
    )
    assert code == 2 and "no.json: no such file" in err
    # a byte-order mark before the JSON (Notepad's UTF-8) is read past, as in a history file:
    # the file's own (bad) value is what is refused, not "Unexpected UTF-8 BOM"
    config = tmp_path / "config.json"
    config.write_bytes(b"\xef\xbb\xbf" + json.dumps({"fit": {"lr": -1}}).encode())
    argv = ["train", "--data", str(csv), "--target", "y", "--config", str(config)]
    code, _, err = run_cli(argv, mlflow_settings, capsys)
    assert code == 2 and "lr must be > 0" in err, err


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"fit": {"max_epochs": 0}}, "fit.max_epochs: max_epochs must be >= 1, got 0"),
        ({"fit": {"max_epochs": "ten"}}, "fit.max_epochs: must be an integer; got 'ten'"),
        (
            {"model": {"hidden_size": -1}},
            "model.hidden_size: hidden_size must be an integer from 1 to 8,192, got -1",
        ),
        ({"fit": {"max_epoch": 3}}, "fit.max_epoch: unknown field(s) ['max_epoch']; known: "),
        ({"load": {"max_gap": -1}}, "load.max_gap: max_gap must be an integer >= 0, got -1"),
        (
            {"train": {"train_fraction": 0.5, "val_fraction": 0.6}},
            "train.train_fraction: train_fraction and val_fraction must each lie in (0, 1)",
        ),
    ],
)
def test_a_bad_config_file_value_names_its_full_field(
    tmp_path: Path,
    csv: Path,
    mlflow_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    given: dict[str, dict[str, object]],
    expected: str,
) -> None:
    """`urnn train --config f.json` named no section for a config's own checks ("max_epochs
    must be >= 1, got 0") and the section alone ("fit config: ...") for a wrong type or an
    unknown key; now the file and the field, as a job's 422 does (`config.fit.max_epochs`)."""
    config = tmp_path / "f.json"
    config.write_text(json.dumps(given))
    argv = ["train", "--data", str(csv), "--target", "y", "--config", str(config)]
    code, _, err = run_cli(argv, mlflow_settings, capsys)
    assert code == 2
    assert err.startswith(f"urnn train: error: --config {config}: {expected}"), err


def test_a_bad_option_value_is_not_blamed_on_the_config_file(
    tmp_path: Path, csv: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value the command line overrides is the option's: the file is not named for it."""
    config = tmp_path / "f.json"
    config.write_text(json.dumps({"train": {"val_fraction": 0.2}}))
    argv = ["train", "--data", str(csv), "--target", "y", "--config", str(config)]
    code, _, err = run_cli(
        [*argv, "--train-fraction", "0.6", "--val-fraction", "0.5"], mlflow_settings, capsys
    )
    assert code == 2
    assert "train_fraction and val_fraction must each lie in (0, 1)" in err, err
    assert "--config" not in err, err


@pytest.mark.parametrize(
    ("decoder", "hint"),
    [
        (
            "auto",
            " ('auto' is not a decoder but a search that trains each one and keeps the better "
            "on validation: give --decoder auto (or fit.decoder_search true in the --config "
            "file) and leave model.decoder out)",
        ),
        ("seq2seq", ""),  # another unknown decoder: no hint
    ],
)
def test_a_config_file_decoder_auto_says_where_auto_lives(
    csv: Path,
    tmp_path: Path,
    mlflow_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    decoder: str,
    hint: str,
) -> None:
    """README and --help offer `--decoder auto`; in a --config file's model section the same
    word was refused without saying that it belongs to the fit (decoder_search)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": {"decoder": decoder}}))
    argv = ["train", "--data", str(csv), "--target", "y", "--config", str(config)]
    code, out, err = run_cli(argv, mlflow_settings, capsys)
    assert code == 2
    assert err == (
        f"urnn train: error: --config {config}: model.decoder: decoder must be one of "
        f"'direct', 'pmf'; got {decoder!r}{hint}\n"
    )
    assert "epoch 1/" not in out


def test_argument_errors_are_argparse_errors(csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in (
        (["train", "--data", str(csv), "--target", "y", "--model", "transformer"], "--model"),
        (["train", "--data", str(csv), "--target", "y", "--epochs", "0"], "--epochs"),
        (["train", "--data", str(csv)], "--target"),
        (["train", "--data", str(csv), "--target", "y", "--train-fraction", "1.5"], "fraction"),
        # names MLflow refuses are the option's error (they named the config field)
        (
            ["train", "--data", str(csv), "--target", "y", "--experiment", ""],
            "urnn train: error: argument --experiment: must be a non-empty name",
        ),
        (  # MLflow refused it only as the run was created: a traceback
            ["train", "--data", str(csv), "--target", "y", "--experiment", "e" * 600],
            "argument --experiment: must be a name of at most 500 characters (MLflow's limit)",
        ),
        (
            ["train", "--data", str(csv), "--target", "y", "--registered-name", "plant/a:b"],
            "argument --registered-name: 'plant/a:b' is not a name MLflow's registry accepts",
        ),
        (  # registered, then never loaded: models:/plant@a/1 is alias 'a/1' of 'plant', and
            # models:/x?y/1 the logged model 'x'; every later training kept the champion as
            # "cannot be loaded", and URNN_MODEL_URI could not name it
            ["train", "--data", str(csv), "--target", "y", "--registered-name", "plant@a"],
            "argument --registered-name: 'plant@a' cannot be read back from MLflow's registry: "
            "models:/<name>@<alias> and models:/<name>/<version> cannot name a model whose name "
            "holds an @ or a ?, so the service could not serve it, nor a later training compare "
            "with it",
        ),
        (
            ["train", "--data", str(csv), "--target", "y", "--registered-name", "x?y"],
            "argument --registered-name: 'x?y' cannot be read back from MLflow's registry",
        ),
        (
            ["train", "--data", str(csv), "--target", "y", "--registered-name", "..v2"],
            "argument --registered-name: '..v2' is not a name MLflow's registry accepts: it "
            "cannot be '.' nor start with '..'",
        ),
        (
            ["train", "--data", str(csv), "--target", "y", "--registered-name", " "],
            "argument --registered-name: must be a non-empty name; got ' '",
        ),
        (
            ["train", "--data", str(csv), "--target", "y", "--registered-name", "r" * 300],
            "argument --registered-name: must be a name of at most 256 characters",
        ),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv, settings=Settings())
        assert exit_info.value.code == 2
        assert expected in capsys.readouterr().err


def test_the_installed_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    urnn = Path(sys.executable).with_name("urnn")
    done = subprocess.run(
        [str(urnn), "train", "--data", str(tmp_path / "gone.csv"), "--target", "OT"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"URNN_VAR_DIR": str(tmp_path / "var"), "PATH": ""},
    )
    assert done.returncode == 2
    assert "urnn train: error: --data" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_train_and_backtest_option_has_help() -> None:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train", "backtest"):
        sub: argparse.ArgumentParser = commands.choices[name]
        for action in sub._actions:
            assert action.help, (name, action.dest)


def test_train_then_backtest_end_to_end(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    argv = ["train", "--data", str(csv), "--target", "y", "--covariates", "x", *TINY]
    code, out, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    assert torch.get_num_threads() == 1
    assert "registered urnn-forecaster version 1 (alias challenger)" in out
    assert "promoted to champion: no champion yet" in out
    assert "mae" in out
    assert f"on {csv}, target 'y', covariates 'x'\n" in out  # the headline says what it reads
    # hourly data: the daily season, said beside the table
    assert "MASE scaled by the seasonal naive forecast of 24 rows (one season of" in out
    # the loader's decisions come before the fit's output, not only in the run's artifacts
    assert out.index("Data:") < out.index("Backtest (test span")
    assert "plant.csv: read 600 rows" in out
    assert "MASE season: 24 rows" in out
    # the figures the served version's realised MASE is read against, beside the backtest's
    line = re.search(r"^served error to expect \(realised MASE by lead.*: (.*)$", out, re.M)
    assert line is not None and line.group(1).startswith("1 ")
    # one line per epoch, between the data report and the backtest (a long fit is not silent)
    epochs = re.findall(r"^  epoch (\d+)/(\d+): train loss [\d.]+, val loss ", out, re.M)
    assert epochs and epochs[0][0] == "1"
    assert out.index("Data:") < out.index("  epoch 1/") < out.index("Backtest (test span")

    code, out, err = run_cli(
        ["backtest", "--data", str(csv), "--output", str(tmp_path / "bt")], settings, capsys
    )
    assert code == 0, err
    assert "Data:\n  plant.csv: using column 'timestamp'" in out
    # the version the alias named, and the windows scored, are said and recorded
    import mlflow

    run_id = mlflow.MlflowClient().get_model_version_by_alias("urnn-forecaster", "champion").run_id
    assert (
        "Backtest of models:/urnn-forecaster@champion (version 1 of urnn-forecaster, "
        f"run {run_id}; urnn, lookback 48" in out
    )
    assert "origins (every origin, 1 row apart)" in out
    # in the service's units too, beside the figures the model's training stored
    said = re.search(
        r"^realised MASE by lead, .*: this backtest (.*); the model's training "
        r"backtest (.*)$",
        out,
        re.M,
    )
    assert said is not None and said.group(1).startswith("1 ") and said.group(2).startswith("1 ")
    stored = json.loads((tmp_path / "bt" / "realised_reference.json").read_text())
    assert set(stored["mase_by_lead"]) >= {"1", "2-3"}
    # the data report the printout points to (it named data_report.txt, which only urnn train
    # wrote, as a run artifact: a README walk-through)
    assert ": read 600 rows" in (tmp_path / "bt" / "data_report.txt").read_text()
    manifest = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    assert manifest["model"] == {
        "uri": "models:/urnn-forecaster@champion",
        "name": "urnn-forecaster",
        "version": "1",
        "run_id": run_id,
        "kind": "urnn",
        "lookback": 48,
        "horizon": 12,
        "quantiles": [0.1, 0.5, 0.9],
    }
    assert manifest["backtest"]["n_windows"] is None and manifest["backtest"]["step"] == 1
    assert manifest["backtest"]["refit"] is False and manifest["backtest"]["season_length"] == 24
    assert manifest["backtest"]["forecast_values"] == len(
        pd.read_parquet(tmp_path / "bt" / "forecasts.parquet")
    )
    assert manifest["data"]["path"] == str(csv.resolve())
    code, unseen, err = run_cli(
        ["backtest", "--data", str(csv), "--split", "unseen"], settings, capsys
    )
    assert code == 0, err
    # the whole series scored as a unit the model never saw: every origin after the look-back
    assert f"{(600 - 48 - 12 + 1) * 12:,} forecast values" in unseen
    # ... but it is the training file: the values on rows the model trained or early-stopped
    # on (its first 480) are said to be in-sample; the model's own split scores none such
    seen_until = pd.read_csv(csv)["timestamp"].iloc[479]
    assert re.search(
        r"^[\d,]+ of [\d,]+ forecast values lie on series ids and times the model trained or "
        rf"early-stopped on \('plant' up to {seen_until}: its train.seen_until, matched by id and "
        r"time, not by value\): where these are the rows it trained on \(its own training file\), "
        r"their scores are in-sample",
        unseen,
        re.M,
    ), unseen
    assert "in-sample" not in out
    short = tmp_path / "short.csv"
    seasonal_frame(50).to_csv(short)
    code, _, err = run_cli(["backtest", "--data", str(short)], settings, capsys)
    assert code == 2
    assert "every series is shorter than min_length=60" in err
    assert "the model reads 48 rows and forecasts 12 per window (--on-short drop" in err
    assert "By horizon step:" in out
    assert (tmp_path / "bt" / "by_step.csv").exists()
    assert (tmp_path / "bt" / "plots" / "forecasts.png").exists()

    code, _, err = run_cli(
        ["backtest", "--data", str(csv), "--model", "models:/urnn-forecaster/9"], settings, capsys
    )
    assert code == 2 and "--model models:/urnn-forecaster/9: cannot load it" in err
    code, _, err = run_cli(
        ["backtest", "--data", str(csv), "--target", "x", "--covariates", "y"], settings, capsys
    )
    assert code == 2 and "the model was trained on target 'y'" in err
    # the model's covariate as --target: refused as such, not as "target and covariates must
    # be distinct columns, got target='x', covariates=['x']" (covariates not given)
    code, _, err = run_cli(["backtest", "--data", str(csv), "--target", "x"], settings, capsys)
    assert code == 2
    assert err == (
        "urnn backtest: error: the model was trained on target 'y' with covariates ['x']; "
        "--target 'x' differs: the backtest reads the model's own columns (leave the option "
        "out; a file whose column has another name needs it renamed)\n"
    )


def test_train_and_backtest_a_log_cut_at_a_long_outage(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """One equipment log with one outage longer than --max-gap: `--on-long-gap split` cuts it
    in two, and the split by time draws its borders over both segments together (it used to
    refuse them): the first segment trains, the second validates and tests, and the series
    is trained, backtested and scored as the one series it is."""
    frame = seasonal_frame(700)
    path = tmp_path / "log.csv"
    frame.drop(frame.index[450:500]).to_csv(path)  # 50 hours missing: 650 observed rows
    argv = ["train", "--data", str(path), "--target", "y", "--on-long-gap", "split", *TINY]
    code, out, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    assert "split into 2 segments at 1 gap longer than 24 steps" in out
    # 454 / 65 / 131 of the 650 rows (as for a whole series of 650): log#1 is all train;
    # log#2's 4 train rows hold no window, and its first 48 rows (the look-back) are the
    # context of its val rows
    assert (
        "series 'log', cut at a long gap into 2 segments, is split by time as one series "
        "(borders drawn over their rows together; no window spans a gap); rows per segment: "
        "'log#1' 450 train; 'log#2' 21 val, 131 test"
    ) in out
    assert "Backtest (test span" in out and "all  120 " in out  # 10 origins, 12 apart
    assert "registered urnn-forecaster version 1 (alias challenger)" in out
    code, again, err = run_cli(["backtest", "--data", str(path)], settings, capsys)
    assert code == 0, err
    assert "Backtest of models:/urnn-forecaster@champion" in again


def test_train_a_streaming_model_whose_pyfunc_reads_the_whole_history(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`--model urnn-stream` trains on crops (training.stream_fit), backtests and registers; the
    registered pyfunc forecasts from the whole posted history, not its last `lookback` rows."""
    import mlflow
    import pandas as pd

    config = tmp_path / "stream.json"
    config.write_text(
        json.dumps(
            {
                "fit": {
                    "stream_crop_length": 200,
                    "stream_batch_crops": 2,
                    "stream_batches_per_epoch": 2,
                }
            }
        )
    )
    argv = ["train", "--data", str(csv), "--target", "y", "--model", "urnn-stream", *TINY]
    argv += ["--config", str(config), "--registered-name", "stream"]
    code, out, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    assert "registered stream version 1 (alias challenger)" in out

    mlflow.set_tracking_uri(settings.resolved_tracking_uri())
    model = mlflow.pyfunc.load_model("models:/stream@champion")
    history = seasonal_frame(600)["y"].to_numpy()
    start = str(seasonal_frame(600).index[0])

    def mean(values: list[float], first: str) -> list[float]:
        frame = pd.DataFrame({"id": ["a"], "start": [first], "values": [values]})
        return [float(v) for v in model.predict(frame)["mean"]]

    whole = mean(history.tolist(), start)
    assert len(whole) == 12
    later = str(seasonal_frame(600).index[600 - 48])
    window = mean(history[-48:].tolist(), later)
    assert whole != window  # more history, another state: the whole history was read

    code, _, err = run_cli([*argv, "--nproc", "2"], settings, capsys)
    assert code == 2 and "'urnn-stream' trains in one process" in err


@pytest.mark.parametrize("given", ["--model", "--config"])
def test_nproc_with_the_streaming_kind_is_refused_before_any_launch(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    """`--model urnn-stream --nproc 2` was refused up front; the same kind from the --config
    file's model section was launched under torchrun, each process failing after the data was
    loaded and split. Both are refused before any launch, in the words a job's nproc gets."""
    from training.fit import nproc_error

    launched: list[argparse.Namespace] = []

    def launch(args: argparse.Namespace, settings: Settings) -> int:
        launched.append(args)
        return 0

    monkeypatch.setattr(cli, "_launch_distributed", launch)
    config = tmp_path / "stream.json"
    model = {"kind": "urnn-stream"} if given == "--config" else {}
    config.write_text(json.dumps({"model": model, "fit": {"stream_crop_length": 200}}))
    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--config", str(config)]
    argv += ["--nproc", "2"] + (["--model", "urnn-stream"] if given == "--model" else [])
    code, _, err = run_cli(argv, settings, capsys)
    said = nproc_error("urnn-stream", 2)
    assert said is not None and "trains in one process" in said
    assert (code, err, launched) == (2, f"urnn train: error: --nproc: {said}\n", [])


def test_train_an_ensemble_that_registers_and_predicts_in_a_fresh_load(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--ensemble 2`: two members trained, one registered model whose pyfunc averages them;
    the members' curves are logged apart (member1/..., member2/...). Under `--decoder auto`
    member 1 also trained the decoder it did not keep, which the closing line counts apart
    (it said "2 epoch(s) in all" for the 3 run)."""
    import mlflow
    import pandas as pd

    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--ensemble", "2"]
    argv += ["--decoder", "auto"]
    code, out, err = run_cli([*argv, "--registered-name", "ens"], settings, capsys)
    assert code == 0, err
    assert "registered ens version 1 (alias challenger)" in out
    assert (
        ": an ensemble of 2 members, 2 epochs of theirs, and 1 epoch of the decoder not "
        "chosen (member 1's best epoch 1)\n"
    ) in out
    mlflow.set_tracking_uri(settings.resolved_tracking_uri())
    client = mlflow.MlflowClient()
    version = client.get_model_version("ens", "1")
    metrics = client.get_run(str(version.run_id)).data.metrics
    assert any(k.startswith("member1/") for k in metrics), sorted(metrics)
    assert any(k.startswith("member2/") for k in metrics), sorted(metrics)
    model = mlflow.pyfunc.load_model("models:/ens/1")
    frame = seasonal_frame(600)
    request = pd.DataFrame(
        {"id": ["a"], "start": [str(frame.index[-48])], "values": [frame["y"].iloc[-48:].tolist()]}
    )
    answer = model.predict(request)
    assert len(answer) == 12 and answer["mean"].notna().all()


def test_train_with_calendar_features_then_backtest_and_predict(
    csv: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn train --calendar` on hourly data: a model of 6 calendar inputs, said in the data
    report, registered with them and its clock; backtested and served with dates."""
    import mlflow

    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--calendar"]
    code, out, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    assert (
        "calendar features: hour of day, day of week, day of year as sin/cos pairs "
        "(n_calendar=6 at frequency 'h'), on the local wall clock"
    ) in out
    assert out.index("calendar features: ") < out.index("  epoch 1/")  # before the fit
    mlflow.set_tracking_uri(settings.resolved_tracking_uri())
    model = mlflow.pyfunc.load_model("models:/urnn-forecaster@champion")
    predictor = model.unwrap_python_model().predictor
    assert predictor.model.config.n_calendar == 6
    assert predictor.meta["calendar_clock"] == "local"
    frame = seasonal_frame(600)
    request = pd.DataFrame(
        {"id": ["a"], "start": [str(frame.index[-48])], "values": [frame["y"].iloc[-48:].tolist()]}
    )
    assert model.predict(request)["mean"].notna().all()
    code, out, err = run_cli(["backtest", "--data", str(csv), *REFIT, "--device", "cpu"],
                             settings, capsys)  # fmt: skip
    assert code == 0, err
    assert f"{2 * 12:,} forecast values" in out


def test_a_baselines_closing_line_says_nothing_was_trained(
    csv: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """seasonal_naive's one pass over the windows is no epoch of training: the line read
    "1 epoch(s), best epoch 1"."""
    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--model", "seasonal_naive"]
    argv.remove("--epochs")
    argv.remove("1")
    code, out, err = run_cli([*argv, "--no-promote"], settings, capsys)
    assert code == 0, err
    assert ": a parameter-free baseline: nothing trained\n" in out
    assert "epoch" not in out.split("\nrun ")[-1].splitlines()[0]


def test_ensemble_option_reaches_the_model_config(csv: Path) -> None:
    parser = cli.build_parser()
    base = ["train", "--data", str(csv), "--target", "y", "--device", "cpu"]
    assert cli._train_config(parser.parse_args([*base, "--ensemble", "3"])).model.ensemble == 3
    assert cli._train_config(parser.parse_args(base)).model.ensemble == 1


def test_backtest_against_a_dead_tracking_server_is_one_line(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=f"http://127.0.0.1:{port}")
    code, _, err = run_cli(["backtest", "--data", str(csv)], settings, capsys)
    assert code == 2
    assert err.startswith(
        f"urnn backtest: error: the MLflow tracking server at http://127.0.0.1:{port}"
    )


@pytest.mark.parametrize(
    "model", [None, "models:/urnn-forecaster/3", "runs:/0123456789abcdef/model"]
)
def test_backtest_of_a_registered_model_without_a_store_makes_none(
    model: str | None,
    csv: Path,
    mlflow_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`urnn backtest` run where no store is (another working folder: the default ./var/ is
    relative, or a mistyped URNN_VAR_DIR) made an empty 1 MB var/mlflow.db there, logged
    MLflow's table creation, then said "Registered Model ... not found" as if the store were
    the right one; `urnn models list` says the store is missing and makes nothing."""
    argv = ["backtest", "--data", str(csv), *(["--model", model] if model else [])]
    code, out, err = run_cli(argv, mlflow_settings, capsys)
    store = tmp_path / "var" / "mlflow.db"
    assert code == 2 and out == ""
    assert err == (
        f"urnn backtest: error: no MLflow store at {store} (nothing was registered there); "
        "set URNN_VAR_DIR or URNN_MLFLOW_TRACKING_URI to the store `urnn train` used\n"
    )
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("scheme", ["http", "postgresql+psycopg"])
def test_train_against_a_dead_tracking_server_stops_before_the_data_is_read(
    scheme: str, csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/configuration.md: a tracking server (or database server store) that does not
    answer stops the command when it starts; `urnn train` loaded, validated and split the
    whole file first, and only then found it down."""
    port = free_port()  # nothing listens there
    uri = f"{scheme}://nobody@127.0.0.1:{port}" + ("/mlflow" if scheme != "http" else "")
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=uri)
    argv = ["train", "--data", str(csv), "--target", "y", *TINY]
    code, out, err = run_cli(argv, settings, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("urnn train: error: the MLflow tracking "), err
    assert "Data:" not in out and "Training" not in out


def test_covariates_a_kind_does_not_read_are_said_to_be_unread(
    csv: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", str(csv), "--target", "y", "--covariates", "x", *TINY]
    code, out, err = run_cli([*argv, "--model", "linear", "--no-promote"], mlflow_settings, capsys)
    assert code == 0, err
    assert "covariates x: not read by kind 'linear', which forecasts from the target alone" in out
    import mlflow

    uri = mlflow_settings.resolved_tracking_uri()
    local = mlflow.artifacts.download_artifacts(
        "models:/urnn-forecaster@challenger", tracking_uri=uri, registry_uri=uri
    )
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert isinstance(example, pd.DataFrame)
    assert list(example.columns) == ["id", "values", "start"]  # no unread column: no warning


def test_an_unknown_option_is_said_by_the_commands_own_parser(
    csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--data", str(csv), "--target", "y", "--colour", "red"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "urnn train: error: unrecognized arguments: --colour red" in err
    assert err.startswith("usage: urnn train")


def test_epoch_lines_name_the_member_and_the_decoder(capsys: pytest.CaptureFixture[str]) -> None:
    from training.fit import EpochRecord
    from urnn_forecast.cli import _EpochPrinter

    record = EpochRecord(
        epoch=3, train_loss=0.5, val_loss=0.25, val_mse=0.1, val_mae=0.2, lr=3e-4, seconds=1.25,
        improved=True, candidate="member2/pmf",
    )  # fmt: skip
    _EpochPrinter(100)(record)
    assert capsys.readouterr().out == (
        "  member 2, pmf decoder, epoch 3/100: train loss 0.5000, val loss 0.2500, "
        "val MAE (scaled) 0.2000, lr 3.0e-04, 1.2 s  (best so far)\n"
    )


def test_a_smaller_min_length_does_not_lift_the_one_window_floor(
    tmp_path: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`"load": {"min_length": 5}` switched the floor off: a 20-row series went on to fail in
    the split, unnamed, and on_short='drop' dropped nothing (an audit's)."""
    import numpy as np

    index = pd.date_range("2021-01-01", periods=600, freq="h")
    frames = [
        pd.DataFrame({"unit": "a", "timestamp": index, "y": np.sin(np.arange(600) / 5)}),
        pd.DataFrame({"unit": "b", "timestamp": index[:20], "y": np.arange(20.0)}),
    ]
    data = tmp_path / "two.csv"
    pd.concat(frames).to_csv(data, index=False)
    config = tmp_path / "config.json"
    config.write_text('{"load": {"min_length": 5}}')
    argv = ["train", "--data", str(data), "--target", "y", "--series-col", "unit", *SMALL,
            "--config", str(config)]  # fmt: skip
    code, _, err = run_cli(argv, mlflow_settings, capsys)
    assert code == 2 and "series 'b' has 20 rows after cleaning, fewer than min_length=" in err
    assert "one window of look-back + horizon (24 + 6) in each part of the split" in err


def test_backtest_scores_mase_on_the_season_the_model_was_trained_with(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["train", "--data", str(csv), "--target", "y", "--covariates", "x", *TINY]
    code, trained, err = run_cli([*argv, "--season-length", "12"], settings, capsys)
    assert code == 0, err
    same = ["backtest", "--data", str(csv), "--backtest-step", "12"]
    code, out, err = run_cli(same, settings, capsys)
    assert code == 0, err
    assert "seasonal naive of 12 rows (set by --season-length when the model was trained)" in out

    # the same test span and scale: the training run's figure, not one on the daily 24
    assert overall_score(out, "mase") == pytest.approx(overall_score(trained, "mase"), rel=1e-6)
    code, daily, err = run_cli([*same, "--season-length", "24"], settings, capsys)
    assert code == 0, err
    assert "seasonal naive of 24 rows (set by the user)" in daily
    assert overall_score(daily, "mase") != pytest.approx(overall_score(out, "mase"), rel=1e-3)
    # an --output the system refuses is named before the work, not as a bare OS error after
    code, _, err = run_cli([*same, "--output", "/proc/no-such/out"], settings, capsys)
    assert code == 2
    assert "--output /proc/no-such/out: cannot be made as a folder" in err
    # a trained season too long for new data is refused as the model's, not the user's
    code, _, err = run_cli([*argv, "--season-length", "60"], settings, capsys)
    assert code == 0, err
    unseen = ["backtest", "--data", str(csv), "--model", "models:/urnn-forecaster@challenger",
              "--split", "unseen", "--backtest-windows", "1"]  # fmt: skip
    code, _, err = run_cli(unseen, settings, capsys)
    assert code == 2
    assert "(60 rows, set by --season-length when the model was trained)" in err, err


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_an_unusable_store_is_one_line_before_the_data_is_read(
    command: str,
    csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file-store URI ended `urnn train` in MLflow's MlflowException traceback after the
    data was loaded; a URNN_VAR_DIR that is a file, in a FileExistsError traceback."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    taken = tmp_path / "taken"
    became_a_file = Settings(var_dir=taken)  # settings refuse a file; it became one after
    taken.write_text("")
    argv = [command, "--data", str(csv), *(["--target", "y"] if command == "train" else [])]
    for settings, expected in (
        (
            Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=f"file://{tmp_path}/fs"),
            f"URNN_MLFLOW_TRACKING_URI=file://{tmp_path}/fs: a file store",
        ),
        (became_a_file, f"URNN_VAR_DIR={taken}: is a file, not a folder"),
    ):
        code, out, err = run_cli(argv, settings, capsys)
        assert code == 2 and err.startswith(f"urnn {command}: error: {expected}"), err
        assert "Traceback" not in err and "Data:" not in out and "Training" not in out


def test_backtest_of_a_fleet_model_on_a_file_without_its_series_column(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model trained with --series-col run, backtested on one pump's file: the recorded
    column was looked up (`no column 'run'`, no way out), and --series-id was refused as
    conflicting with a series_col the user never gave."""
    frames = [seasonal_frame(400, seed=i).reset_index().assign(run=f"r{i}") for i in range(3)]
    fleet = tmp_path / "fleet.csv"
    pd.concat(frames).to_csv(fleet, index=False, sep=";")
    one = tmp_path / "one.csv"
    seasonal_frame(400).to_csv(one, sep=";")
    argv = ["train", "--data", str(fleet), "--sep", ";", "--series-col", "run", "--target", "y"]
    code, _, err = run_cli([*argv, *TINY, "--backtest-windows", "2"], settings, capsys)
    assert code == 0, err
    backtest = ["backtest", "--data", str(one), "--sep", ";", "--backtest-windows", "2"]
    code, _, err = run_cli(backtest, settings, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] + "\n" == (
        "urnn backtest: error: the model was trained with --series-col 'run' (its column of "
        "series ids) and one.csv has no column 'run' (it has: timestamp, y, x); give "
        "--series-col NAME (this file's column of series ids) or --series-id NAME (the whole "
        "file is one series, named NAME)\n"
    )
    code, out, err = run_cli([*backtest, "--series-id", "pump"], settings, capsys)
    assert code == 0, err
    by_series = out.split("By series:")[1].split("By horizon step:")[0]
    assert re.search(r"^pump\s+\d", by_series, re.M), by_series
    # the fleet's own file still reads its series column without being told
    code, out, err = run_cli([*backtest[:2], str(fleet), *backtest[3:]], settings, capsys)
    assert code == 0, err
    assert re.search(r"^r2\s+\d", out, re.M)


def test_backtest_on_a_file_whose_timestamps_differ_from_the_models_says_they_are_its_own(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model trained on an export with --timestamp-col Zeit --timestamp-format
    '%d.%m.%Y %H:%M', backtested on the same history in another export (an ISO `timestamp`
    column): told "no column 'Zeit'" though no --timestamp-col was given; with
    --timestamp-col timestamp, the model's format was still applied to the new column
    ("cannot parse '2021-03-01 00:00:00' with timestamp_format='%d.%m.%Y %H:%M'"), a format
    the user never gave, for a column it never described, with no way back to inference."""
    frame = seasonal_frame(400)
    german = tmp_path / "de.csv"
    frame.set_axis(pd.DatetimeIndex(frame.index).strftime("%d.%m.%Y %H:%M").rename("Zeit")).to_csv(
        german
    )
    iso = tmp_path / "iso.csv"
    frame.to_csv(iso)
    argv = ["train", "--data", str(german), "--target", "y", "--timestamp-col", "Zeit"]
    argv += ["--timestamp-format", "%d.%m.%Y %H:%M"]
    code, _, err = run_cli([*argv, *TINY, "--backtest-windows", "2"], settings, capsys)
    assert code == 0, err
    backtest = ["backtest", "--backtest-windows", "2", "--data"]
    code, de_out, err = run_cli([*backtest, str(german)], settings, capsys)
    assert code == 0, err
    code, _, err = run_cli([*backtest, str(iso)], settings, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] + "\n" == (
        "urnn backtest: error: the model was trained with --timestamp-col 'Zeit' (its "
        "timestamp column) and iso.csv has no column 'Zeit' (it has: timestamp, y, x); give "
        "--timestamp-col NAME (this file's timestamp column)\n"
    )
    code, out, err = run_cli(
        [*backtest, str(iso), "--timestamp-col", "timestamp"], settings, capsys
    )
    assert code == 0, err
    overall = [o.split("Overall:")[1].split("By series:")[0] for o in (de_out, out)]
    assert overall[0] == overall[1]
    # the same column written another way: the format named as the model's own
    frame.set_axis(frame.index.rename("Zeit")).to_csv(iso)
    code, _, err = run_cli([*backtest, str(iso)], settings, capsys)
    assert code == 2 and "with --timestamp-format '%d.%m.%Y %H:%M'" in err, err
    assert err.rstrip().endswith(
        "--timestamp-format '%d.%m.%Y %H:%M' is the one the model was trained with: give "
        "--timestamp-format for this file's timestamps"
    ), err


def test_backtest_of_a_calendar_model_on_timestamps_of_another_clock_says_so(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A --calendar model learnt on a meter's local wall clock (naive timestamps), backtested
    on the same history exported with UTC offsets: the loader reads those as UTC, so every
    hour-of-day feature was an hour or two off the clock the model learnt (as the service,
    which reads such a model's features on the written clock, never feeds it), and the
    scores were worse with nothing said. The other way round likewise."""
    frame = seasonal_frame(400)
    local = tmp_path / "local.csv"
    frame.to_csv(local)
    zoned = tmp_path / "zoned.csv"
    frame.set_axis(pd.DatetimeIndex(frame.index).tz_localize("Europe/Berlin")).to_csv(zoned)
    for trained_on, scored_on, said in (
        (local, zoned, "learnt on the local wall clock"),
        (zoned, local, "learnt on UTC"),
    ):
        argv = ["train", "--data", str(trained_on), "--target", "y", "--calendar"]
        code, _, err = run_cli([*argv, *TINY, "--backtest-windows", "2"], settings, capsys)
        assert code == 0, err
        # the version just trained: on another clock than the champion's it is not promoted
        # over it (compare_registered), so @champion would be the first model
        backtest = ["backtest", "--model", "models:/urnn-forecaster@challenger"]
        backtest += ["--backtest-windows", "2", "--data"]
        code, out, err = run_cli([*backtest, str(scored_on)], settings, capsys)
        assert code == 0, err
        assert f"the model's calendar features were {said}" in out.split("Backtest")[0], out
        code, out, err = run_cli([*backtest, str(trained_on)], settings, capsys)
        assert code == 0, err
        assert "calendar features were" not in out


def test_backtest_of_a_decimal_comma_model_on_a_comma_separated_file_takes_sep_alone(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model trained on a European export (--sep ';' --decimal ,), backtested on the same
    history saved as a plain CSV: told "pass sep=','", then, with --sep ',', refused as
    "decimal ',' is also the field separator: pass sep too" (the decimal recorded with the
    model), advice that led back to itself. --sep ',' alone now reads it, with the same
    scores as the European file."""
    frame = seasonal_frame(400)
    european = tmp_path / "eu.csv"
    frame.to_csv(european, sep=";", decimal=",")
    plain = tmp_path / "plain.csv"
    frame.to_csv(plain)
    argv = ["train", "--data", str(european), "--sep", ";", "--decimal", ",", "--target", "y"]
    code, _, err = run_cli([*argv, *TINY, "--backtest-windows", "2"], settings, capsys)
    assert code == 0, err
    backtest = ["backtest", "--backtest-windows", "2", "--data"]
    code, eu_out, err = run_cli([*backtest, str(european)], settings, capsys)
    assert code == 0, err
    code, _, err = run_cli([*backtest, str(plain)], settings, capsys)
    assert code == 2 and "pass --sep ','" in err, err
    code, out, err = run_cli([*backtest, str(plain), "--sep", ","], settings, capsys)
    assert code == 0, err
    overall = [o.split("Overall:")[1].split("By series:")[0] for o in (eu_out, out)]
    assert overall[0] == overall[1]


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_an_empty_series_column_is_refused_by_name(
    command: str, csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--series-col ""` ended in `KeyError: ''` in the loader (LoadConfig read "" as a
    column, the loader as none)."""
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--data", str(csv), "--target", "y", "--series-col", ""])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"urnn {command}: error: argument --series-col: expected the name of the column" in err
    if command == "train":  # the same through --config, where argparse is not in the way
        config = tmp_path / "config.json"
        config.write_text('{"load": {"series_col": ""}}')
        argv = ["train", "--data", str(csv), "--target", "y", "--config", str(config)]
        code, _, err = run_cli(argv, Settings(var_dir=tmp_path / "var"), capsys)
        assert code == 2 and "series_col (--series-col) must name the column" in err, err


def test_a_covariate_whose_name_holds_a_comma_is_said_how_to_give(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--covariates "Temp, °C"` splits into 'Temp' and '°C'; the missing-column error that
    followed did not say why nor how to name such a column."""
    data = tmp_path / "comma.csv"
    seasonal_frame(600).rename(columns={"x": "Temp, °C"}).to_csv(data)
    argv = ["train", "--data", str(data), "--target", "y", *TINY]
    code, _, err = run_cli([*argv, "--covariates", "Temp, °C"], settings, capsys)
    assert code == 2
    assert err.endswith(
        "; --covariates splits on commas: it read 'Temp, °C' as 'Temp', '°C'; name such "
        'columns in a --config file instead: {"load": {"covariates": ["Temp, °C"]}}\n'
    ), err
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"load": {"covariates": ["Temp, °C"]}}))
    code, _, err = run_cli([*argv, "--config", str(config)], settings, capsys)
    assert code == 0, err  # the way the message gives works
    backtest = ["backtest", "--data", str(data), "--covariates", "Temp, °C"]
    code, _, err = run_cli(backtest, settings, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.endswith(
        "--covariates splits on commas: it read 'Temp, °C' as 'Temp', '°C'; leave --covariates "
        "out: the backtest reads the model's own covariates\n"
    ), err


def test_backtest_refuses_data_at_another_frequency_than_the_models(
    csv: Path,
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An hourly model backtested on daily data printed a full table of meaningless scores."""
    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--backtest-windows", "2"]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    daily = tmp_path / "daily.csv"
    frame = seasonal_frame(600)
    frame.index = pd.date_range("2000-01-01", periods=600, freq="D", name="timestamp")
    frame.to_csv(daily)
    code, out, err = run_cli(["backtest", "--data", str(daily)], settings, capsys)
    assert code == 2 and "Overall:" not in out
    assert err.splitlines()[-1] == (
        "urnn backtest: error: --model models:/urnn-forecaster@champion was trained at "
        "frequency 'h' and --data daily.csv is at 'D': a model forecasts steps of its own "
        "frequency; backtest it on 'h' data (--freq names the file's own step when the "
        "inferred one is wrong)"
    )
    # the same step spelt otherwise is the same frequency
    same = ["backtest", "--data", str(csv), "--freq", "60min", "--backtest-windows", "2"]
    code, out, err = run_cli(same, settings, capsys)
    assert code == 0, err
    assert "Overall:" in out


def _weekly_csv(path: Path, start: str) -> Path:
    """`seasonal_frame`'s values a week apart from `start` (2000-01-02 is a Sunday)."""
    frame = seasonal_frame(600, period=52)
    frame.index = pd.date_range(start, periods=600, freq="7D", name="timestamp")
    frame.to_csv(path)
    return path


def test_backtest_takes_weeks_written_as_days_and_as_weeks_from_the_anchor_weekday(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`urnn train` infers weekly data as '7D'; `urnn backtest --freq W-SUN` on the same
    Sundays was refused as another frequency (and '7D' for a model trained with --freq W-SUN),
    where the service takes either spelling from the anchor's weekday."""
    sundays = _weekly_csv(tmp_path / "sundays.csv", "2000-01-02")
    mondays = _weekly_csv(tmp_path / "mondays.csv", "2000-01-03")
    windows = ["--backtest-windows", "2"]
    train = ["train", "--data", str(sundays), "--target", "y", *TINY, *windows]
    code, out, err = run_cli(train, settings, capsys)
    assert code == 0, err
    assert "at '7D'" in out  # inferred as days
    code, out, err = run_cli(
        [*train, "--freq", "W-SUN", "--registered-name", "wk"], settings, capsys
    )
    assert code == 0, err
    days_model = ["--model", "models:/urnn-forecaster@champion"]
    weeks_model = ["--model", "models:/wk@champion"]
    for model, data, freq in (
        (days_model, sundays, "W-SUN"),  # a '7D' model on W-SUN data
        (weeks_model, sundays, "7D"),  # a 'W-SUN' model on 7D data from a Sunday
    ):
        argv = ["backtest", *model, "--data", str(data), "--freq", freq, *windows]
        code, out, err = run_cli(argv, settings, capsys)
        assert code == 0, (model, freq, err)
        assert "Overall:" in out
        assert f"ready: 600 rows at {freq!r}" in out  # the data's own alias, as given
    # weeks from a Monday are not the W-SUN model's steps: refused, naming both weekdays
    argv = ["backtest", *weeks_model, "--data", str(mondays), "--freq", "7D", *windows]
    code, out, err = run_cli(argv, settings, capsys)
    assert code == 2 and "Overall:" not in out
    assert err.splitlines()[-1] == (
        "urnn backtest: error: --model models:/wk@champion was trained at frequency 'W-SUN' "
        "and --data mondays.csv is at '7D': '7D' names the model's 'W-SUN' steps only from a "
        "Sunday, and series 'mondays' starts 2000-01-03T00:00:00, a Monday; backtest it on "
        "data whose series start on a Sunday"
    )


def test_score_tables_show_scores_of_series_in_small_units(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A series logged in micro-units (a temperature in MK, ETTh1 OT x 1e-6) printed every
    absolute score as 0.0000 in urnn train's and urnn backtest's tables (MAE 3.0e-6): a table
    that read as a perfect fit. Scores outside the usual range print significant digits."""
    path = tmp_path / "micro.csv"
    frame = seasonal_frame(600)
    frame["y"] = frame["y"] * 1e-6
    frame.to_csv(path)
    result = tmp_path / "result.json"
    argv = ["train", "--data", str(path), "--target", "y", *TINY, "--result-json", str(result)]
    code, out, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    mae = json.loads(result.read_text())["scores"]["mae"]
    assert 0 < mae < 1e-4
    header, row = out.split("Backtest (test span, original units):\n")[1].splitlines()[:2]
    shown_mae = row.split()[header.split().index("mae") + 1]  # + 1: the row's label
    assert shown_mae == f"{mae:.4g}"
    code, again, err = run_cli(["backtest", "--data", str(path)], settings, capsys)
    assert code == 0, err
    header, row = again.split("Overall:\n")[1].splitlines()[:2]
    shown_mae = row.split()[header.split().index("mae") + 1]  # its own origins: another MAE
    assert re.fullmatch(r"\d\.\d{3}e-0[56]", shown_mae), row


def test_backtest_names_a_spike_that_widens_the_mase_scale(
    csv: Path, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """urnn backtest of a model on a file with one glitch of 1e6 in its training span printed
    the same forecasts' MASE 300 times lower (ETTh1 OT: 0.0042 where it is 1.32) with nothing
    said; urnn train names such values, and the backtest now does too, beside the table."""
    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--backtest-windows", "2"]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    glitch = tmp_path / "glitch.csv"
    frame = seasonal_frame(600)
    frame.iloc[100, 0] = 1e6
    frame.to_csv(glitch)
    code, out, err = run_cli(["backtest", "--data", str(glitch)], settings, capsys)
    assert code == 0, err
    table_end = out.index("Overall:")
    note = (
        f"target 'y' has training values more than 15 robust standard deviations (1.4826 x MAD) "
        f"from its series' median: series 'glitch': 1 (first at {frame.index[100]}: 1e+06). "
        "The MASE scale is read from the training span, and spikes or unit errors widen it: "
        "every MASE reads better than it is; check the data, or compare models on MAE"
    )
    assert out.index(note) > table_end
    code, out, err = run_cli(["backtest", "--data", str(csv)], settings, capsys)
    assert code == 0, err
    assert "robust standard deviations" not in out


def test_backtest_refit_fits_a_fresh_model_at_each_origin(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Rolling-origin evaluation with retraining (Darts' retrain=True): the registered model's
    config fitted again on the data up to each origin."""
    argv = ["train", "--data", str(csv), "--target", "y", "--covariates", "x", *TINY]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    code, _, err = run_cli(["backtest", "--data", str(csv), "--refit"], settings, capsys)
    assert code == 2 and "--refit fits one model per origin: give --backtest-windows N" in err
    bare = ["backtest", "--data", str(csv), "--refit-epochs", "2"]
    code, _, err = run_cli(bare, settings, capsys)
    assert code == 2 and "--refit-epochs caps the fits of --refit, which was not given" in err
    refit = ["backtest", "--data", str(csv), "--refit", "--backtest-windows", "2"]
    code, out, err = run_cli([*refit, "--backtest-step", "12", "--refit-epochs", "1"], settings,
                             capsys)  # fmt: skip
    assert code == 0, err
    assert "; urnn, lookback 48, horizon 12, refitted at each origin)" in out
    assert f"{2 * 12:,} forecast values" in out
    code, same, err = run_cli(["backtest", "--data", str(csv), "--backtest-windows", "2",
                               "--backtest-step", "12"], settings, capsys)  # fmt: skip
    assert code == 0, err
    # other models than the registered one forecast these windows
    assert overall_score(out, "mae") != overall_score(same, "mae")


def test_backtest_refit_refuses_a_refit_whose_val_span_was_filled_in_whole(
    csv: Path,
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    refits: list[FitConfig],
) -> None:
    """A gap the loader filled over the 60 rows before the last origin (588 of 600): that
    refit early-stopped on nothing (val loss NaN at every epoch). Exit 2 before any refit
    trains, naming the refit, its origin and val span."""
    argv = ["train", "--data", str(csv), "--target", "y", *TINY]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    frame = seasonal_frame(600)
    frame.loc[frame.index[528:588], "y"] = float("nan")
    gappy = tmp_path / "gappy.csv"
    frame.to_csv(gappy)
    argv = ["backtest", "--data", str(gappy), "--max-gap", "60", *REFIT, "--refit-epochs", "1"]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 2, err
    assert (
        f"refit 2 of 2 of the backtest (origin {frame.index[588]}): every target value of its "
        f"validation span {frame.index[528]} to {frame.index[587]} (60 rows) was filled in"
    ) in err, err
    assert "--backtest-step" in err and refits == []


# Non-default fit settings of a trained model: the options of `urnn train` and a --config
# file's "fit" section (mse_weight, weight_decay, max_train_batches have no option).
RECIPE_OPTIONS = ["--lr", "0.0003", "--batch-size", "16", "--seed", "7"]
RECIPE_FILE = {"fit": {"mse_weight": 1.0, "weight_decay": 0.01, "max_train_batches": 3}}
# what a refit fits with: those, the epochs of TINY, the backtest's device
RECIPE = FitConfig(lr=0.0003, batch_size=16, seed=7, mse_weight=1.0, weight_decay=0.01,
                   max_train_batches=3, max_epochs=1, device="cpu")  # fmt: skip


@pytest.fixture
def refits(monkeypatch: pytest.MonkeyPatch) -> list[FitConfig]:
    """The FitConfig of every fit `urnn backtest --refit` makes (each then fitted for real)."""
    from training.fit import fit as real

    seen: list[FitConfig] = []

    def fit(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr("training.backtest.fit", fit)
    return seen


def train_with_recipe(
    csv: Path, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps(RECIPE_FILE))
    argv = ["train", "--data", str(csv), "--target", "y", *TINY, *RECIPE_OPTIONS]
    code, _, err = run_cli([*argv, "--config", str(config)], settings, capsys)
    assert code == 0, err


REFIT = ["--refit", "--backtest-windows", "2", "--backtest-step", "12"]


def test_backtest_refit_fits_with_the_settings_the_model_was_trained_with(
    csv: Path,
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    refits: list[FitConfig],
) -> None:
    """They were the default settings on the CPU: a backtest of another recipe than the one
    registered. The recorded ones (config.json's "fit") are used, the device and
    --refit-epochs aside."""
    train_with_recipe(csv, tmp_path, settings, capsys)
    backtest = ["backtest", "--data", str(csv), *REFIT, "--device", "cpu"]
    code, out, err = run_cli(backtest, settings, capsys)
    assert code == 0, err
    assert refits == [RECIPE, RECIPE]
    assert (
        "Refits: the fit settings the model was trained with (from its config.json): "
        "batch_size=16, lr=0.0003, weight_decay=0.01, mse_weight=1.0, seed=7, "
        "max_train_batches=3 (others at their defaults); max_epochs=1; device cpu"
    ) in out.splitlines()
    refits.clear()
    code, out, err = run_cli([*backtest, "--refit-epochs", "2"], settings, capsys)
    assert code == 0, err
    assert refits == [dataclasses.replace(RECIPE, max_epochs=2)] * 2
    assert "; max_epochs=2 (--refit-epochs); device cpu" in out


def test_backtest_refit_reads_an_older_models_settings_from_its_run(
    csv: Path,
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    refits: list[FitConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model registered before config.json recorded its fit settings: they are read back
    from its MLflow run's fit.* params. A model with neither (a bare folder without them) is
    refitted with the defaults, and a printed line says so."""
    import training.pipeline

    real_meta = training.pipeline.model_meta

    def older_meta(*args: Any, **kwargs: Any) -> dict[str, Any]:
        meta = real_meta(*args, **kwargs)
        del meta["fit"]
        return meta

    monkeypatch.setattr(training.pipeline, "model_meta", older_meta)
    train_with_recipe(csv, tmp_path, settings, capsys)
    backtest = ["backtest", "--data", str(csv), *REFIT, "--device", "cpu"]
    code, out, err = run_cli(backtest, settings, capsys)
    assert code == 0, err
    assert refits == [RECIPE, RECIPE]
    from_run = "Refits: the fit settings the model was trained with (from its MLflow run's "
    assert f"{from_run}fit.* params): batch_size=16, lr=0.0003" in out

    from training.registry import model_artifact_dir

    folder = model_artifact_dir("models:/urnn-forecaster@champion", tmp_path / "download")
    assert "fit" not in json.loads((folder / "config.json").read_text())
    refits.clear()
    bare = [*backtest, "--model", str(folder), "--refit-epochs", "1"]
    code, out, err = run_cli(bare, settings, capsys)
    assert code == 0, err
    assert refits == [FitConfig(device="cpu", max_epochs=1)] * 2
    assert (
        "Refits: the default fit settings (the model records none: not in its config.json, no "
        "MLflow run of it found); max_epochs=1 (--refit-epochs); device cpu"
    ) in out.splitlines()


@pytest.fixture
def refit_strides(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The stride of the training windows of every fit `urnn backtest --refit` makes."""
    from training.windows import make_windows as real

    seen: list[int] = []

    def make_windows(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[2].stride)  # (splits, scaler, window_config)
        return real(*args, **kwargs)

    monkeypatch.setattr("training.backtest.make_windows", make_windows)
    return seen


@pytest.mark.parametrize("older", [False, True], ids=["config.json", "run-params"])
def test_backtest_refit_trains_on_windows_of_the_models_train_stride(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    refit_strides: list[int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    older: bool,
) -> None:
    """An audit's: a model trained with --train-stride 24 was refitted on windows every row,
    24 times the windows per epoch. The stride is recorded in config.json ("train"), or, for
    a model from before that key, read from its run's backtest.train_stride param."""
    import training.pipeline

    if older:
        real_meta = training.pipeline.model_meta

        def older_meta(*args: Any, **kwargs: Any) -> dict[str, Any]:
            meta = real_meta(*args, **kwargs)
            del meta["train"]
            return meta

        monkeypatch.setattr(training.pipeline, "model_meta", older_meta)
    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--train-stride", "3"]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    backtest = ["backtest", "--data", str(csv), *REFIT, "--device", "cpu"]
    code, out, err = run_cli(backtest, settings, capsys)
    assert code == 0, err
    assert refit_strides == [3, 3]
    source = "its MLflow run's backtest.train_stride param" if older else "its config.json"
    line = next(line for line in out.splitlines() if line.startswith("Refits: "))
    assert line.endswith(
        f"; device cpu; training windows every 3 rows (the train stride the model was trained "
        f"with, from {source})"
    ), line
    if older:
        return
    # a copied folder whose config.json was edited: said, and every row's windows
    from training.registry import model_artifact_dir

    folder = model_artifact_dir("models:/urnn-forecaster@champion", tmp_path / "download")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["train"]["train_stride"] == 3  # beside seen_until (training.pipeline)
    for train, said in (
        ({"train_stride": "3"}, "the train stride its config.json records cannot be used: '3'"),
        ([3], 'no train stride recorded: not in its config.json, whose "train" is not a JSON'),
    ):
        (folder / "config.json").write_text(json.dumps({**meta, "train": train}))
        refit_strides.clear()
        code, out, err = run_cli([*backtest, "--model", str(folder)], settings, capsys)
        assert code == 0, err
        assert refit_strides == [1, 1]
        assert f"; device cpu; training windows every row ({said}" in out, out


def test_the_refits_train_stride_line() -> None:
    """What the Refits line says of the stride: nothing for a recorded 1; why for none or an
    unusable one (config.json can be edited)."""
    from training.backtest import refit_train_stride

    assert refit_train_stride(1, source="its config.json") == (1, "")
    assert refit_train_stride(None, source="not in its config.json, no MLflow run of it found") == (
        1,
        "training windows every row (no train stride recorded: not in its config.json, no "
        "MLflow run of it found)",
    )
    for bad in ("3", 0, True, 2.0, 2**63):  # 2**63 overflowed the window starts
        stride, said = refit_train_stride(bad, source="its config.json")
        assert stride == 1 and f"{bad!r} is not an integer from 1 to 2**31 - 1" in said


def test_a_channel_embedding_is_refused_before_the_fit(
    csv: Path, tmp_path: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was refused when the model was logged, after the whole fit (an audit's)."""
    config = tmp_path / "nch.json"
    config.write_text('{"model": {"n_channels": 3, "decoder": "pmf"}}')
    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--config", str(config)]
    code, out, err = run_cli(argv, mlflow_settings, capsys)
    assert code == 2 and "model n_channels=3: a channel embedding needs the channel id" in err
    assert "epoch" not in out


def _stopped_at_epoch(
    epoch: int,
    stop: Callable[[], None],
    code: int,
    said: str,
    argv: list[str],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, Path]:
    """`urnn train argv` (20 epochs) with `stop()` called once epoch `epoch` is printed: the
    exit code, one line saying `said` (no trace), the MLflow run KILLED; (stderr, the run's
    checkpoint folder)."""
    import mlflow

    printed = cli._EpochPrinter.__call__

    def stop_at_epoch(self: Any, record: Any) -> None:
        printed(self, record)
        if record.epoch == epoch:
            stop()

    monkeypatch.setattr(cli._EpochPrinter, "__call__", stop_at_epoch)
    exit_code, out, err = run_cli(argv, settings, capsys)
    assert exit_code == code, err
    assert "Traceback" not in err and f"  epoch {epoch}/20" in out
    assert f"epoch {epoch + 1}/20" not in out
    (run_id,) = re.findall(rf"{said}: MLflow run (\w+) ended KILLED; the best weights", err)
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "KILLED"
    # the run's description in the MLflow UI says it too, with the checkpoint's folder
    folder = settings.var_dir / "checkpoints" / run_id
    note = run.data.tags["mlflow.note.content"]
    assert f"\n\nInterrupted: MLflow run {run_id} ended KILLED; the best weights" in note
    assert str(folder) in note
    return err, folder


def test_ctrl_c_during_the_fit_ends_the_run_killed_and_names_the_best_weights_so_far(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Ctrl-C used to print a 40-line KeyboardInterrupt trace, mark the run FAILED and keep
    nothing. Now: one line naming the run (KILLED) and its best weights so far, which
    `urnn backtest --model` scores; a run that finishes leaves no checkpoint behind."""

    base = ["train", "--data", str(csv), "--target", "y", *SMALL]
    argv = [*base, "--epochs", "20"]
    code, _, err = run_cli([*base, "--epochs", "2"], settings, capsys)
    assert code == 0, err
    assert not list((settings.var_dir / "checkpoints").iterdir())  # removed once logged

    def interrupt() -> None:
        raise KeyboardInterrupt

    err, folder = _stopped_at_epoch(
        3, interrupt, 130, "interrupted", argv, settings, capsys, monkeypatch
    )
    assert f"are in {folder}: `urnn backtest --model {folder} --data ...`" in err
    monkeypatch.undo()
    saved = tmp_path / "scored"
    code, out, err = run_cli(
        ["backtest", "--data", str(csv), "--model", str(folder), "--output", str(saved)],
        settings,
        capsys,
    )
    assert code == 0, err
    assert f"Backtest of {folder} (urnn, lookback 24, horizon 6)" in out
    # its intervals were never calibrated (a fit calibrates them once it ends): said
    assert "this is a checkpoint of an interrupted fit (best epoch" in out
    assert "its intervals were never calibrated on validation" in out
    model = json.loads((saved / "backtest.json").read_text())["model"]
    assert model["folder"] == str(folder.resolve()) and model["complete"] is False
    assert model["best_epoch"] in (1, 2, 3)


def test_a_store_refusing_the_runs_artifacts_is_one_line_naming_the_kept_weights(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tracking server whose artifact store refused writes (`--artifacts-destination` on a
    path it could not create: HTTP 500 to every upload) ended `urnn train`, after the whole
    fit, with three chained tracebacks and exit 1; the best weights it had kept under
    checkpoints/ were named nowhere. Now: one line saying what the store refused, that the
    run failed, and where the trained model lies."""
    import mlflow
    from mlflow.exceptions import MlflowException

    def refused(*args: object, **kwargs: object) -> None:
        raise MlflowException(
            "API request to http://mlflow:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/"
            "artifacts/metrics/overall.csv failed with exception HTTPConnectionPool(host="
            "'mlflow', port=5000): Max retries exceeded (Caused by ResponseError('too many "
            "500 error responses'))"
        )

    monkeypatch.setattr("training.pipeline.log_forecaster", refused)
    argv = ["train", "--data", str(csv), "--target", "y", *SMALL, "--epochs", "2"]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 1, err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if not line.startswith("20")]  # MLflow's logs
    assert line.startswith("urnn train: error: the MLflow tracking store did not take the run's")
    assert "too many 500 error responses" in err
    (run_id,) = re.findall(r"MLflow run (\w+) ended FAILED; the fitted model", err)
    folder = settings.var_dir / "checkpoints" / run_id
    assert f"is in {folder}: `urnn backtest --model {folder} --data ...`" in err
    assert (folder / "config.json").is_file() and (folder / "weights.pt").is_file()
    assert mlflow.MlflowClient().get_run(run_id).info.status == "FAILED"


def test_sigterm_during_the_fit_ends_the_run_killed_as_ctrl_c_does(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`kill`, `timeout` or a scheduler's preemption killed the process where it stood: the
    run read RUNNING in the MLflow UI for ever and nothing was said. Now SIGTERM takes Ctrl-C's
    path (exit 143), and the command's own handler is put back afterwards."""
    import os
    import signal

    def terminate() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    argv = ["train", "--data", str(csv), "--target", "y", *SMALL, "--epochs", "20"]
    err, folder = _stopped_at_epoch(
        2, terminate, 143, "stopped by SIGTERM", argv, settings, capsys, monkeypatch
    )
    assert (folder / "config.json").exists()
    assert signal.getsignal(signal.SIGTERM) is before

    # urnn backtest of that folder, damaged: one line naming the file and why, not a traceback
    # (a contract walk-through)
    monkeypatch.undo()
    weights = (folder / "weights.pt").read_bytes()
    (folder / "weights.pt").write_bytes(weights[:3000])
    backtest = ["backtest", "--data", str(csv), "--model", str(folder)]
    code, _, err = run_cli(backtest, settings, capsys)
    assert code == 2 and "Traceback" not in err, err
    assert f"weights.pt in {folder} is not a readable state dict of tensors (truncated" in err
    (folder / "config.json").write_text('{"x": 1}')
    code, _, err = run_cli(backtest, settings, capsys)
    assert code == 2 and "Traceback" not in err, err
    assert f"{folder / 'config.json'} is not a model's config.json (no 'model' object)" in err


def test_a_parameter_free_baseline_says_it_trains_nothing(
    csv: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its epoch line read "train loss nan, lr 0.0e+00", which looks like a diverged fit."""
    argv = ["train", "--data", str(csv), "--target", "y", *SMALL, "--model", "repeat_last"]
    code, out, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    assert "  no training (a parameter-free baseline; its intervals calibrated on the train" in out
    assert "nan" not in out.split("Backtest")[0]


def test_ctrl_c_after_the_fit_names_the_fitted_model_and_a_streaming_kind_says_it_keeps_none(
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interrupted in the backtest (the fit ended), the run said only "interrupted" although
    the fitted model lay in its checkpoint folder; a streaming kind, which keeps none, was
    said to have stopped "before any epoch finished" (a review found both)."""
    import training.pipeline

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(training.pipeline, "backtest", interrupted)
    argv = ["train", "--data", str(csv), "--target", "y", *SMALL, "--epochs", "2"]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 130
    assert "ended KILLED; the fitted model (the fit had ended) is in " in err

    code, _, err = run_cli(
        ["train", "--data", str(csv), "--target", "y", "--model", "urnn-stream", *TINY],
        settings,
        capsys,
    )
    assert code == 130
    assert "ended KILLED; kind 'urnn-stream' keeps no checkpoints while it trains" in err


def test_channel_independent_training_forecasts_every_column_as_a_series(
    csv: Path, settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Multivariate data, channel-independent (the issue's option; before, only `urnn
    benchmark ett --setting M` had it): y and x of plant.csv are two series of one model
    without covariates, scored each; the registered model takes either channel, and `urnn
    backtest` reads the file the same way from what the model records."""
    import mlflow

    from training.registry import load_registered

    argv = ["train", "--data", str(csv), "--target", "y", "--covariates", "x", *TINY]
    code, out, err = run_cli([*argv, "--channel-independent"], settings, capsys)
    assert code == 0, err
    assert "target 'y', covariates 'x', each column a series of its own" in out
    assert (
        "plant.csv: channel-independent: the columns 'y', 'x' of each of the 1 series are 2 "
        "series '<id>/<column>' of one column 'value'"
    ) in out
    run_id = mlflow.MlflowClient().get_model_version("urnn-forecaster", "1").run_id
    scored = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="metrics/forecasts.parquet", dst_path=str(tmp_path)
        )
    )
    assert sorted(scored["series"].unique()) == ["plant/x", "plant/y"]
    predictor = load_registered("models:/urnn-forecaster/1")
    assert (predictor.target, predictor.covariates) == ("value", ())
    assert predictor.model.config.n_past_covariates == 0
    assert predictor.meta["train"]["channel_independent"] is True

    code, out, err = run_cli(["backtest", "--data", str(csv)], settings, capsys)
    assert code == 0, err
    assert "plant/x" in out.split("By series:")[1] and "plant/y" in out.split("By series:")[1]

    # a series cut at a long gap: its segments and its channels are not told apart
    gappy = tmp_path / "gappy.csv"
    frame = seasonal_frame(700)
    frame.drop(frame.index[450:500]).to_csv(gappy)
    cut = ["train", "--data", str(gappy), "--target", "y", "--covariates", "x", *TINY]
    code, _, err = run_cli(
        [*cut, "--on-long-gap", "split", "--channel-independent"], settings, capsys
    )
    assert code == 2
    assert "channel_independent (--channel-independent) takes whole series" in err


def test_run_names_are_checked_as_mlflow_checks_them(
    capsys: pytest.CaptureFixture[str], csv: Path
) -> None:
    """--run-name (the run list's name; default KIND-TARGET-L<lookback>-H<horizon>): a name
    MLflow refuses is the option's error, before anything loads."""
    with pytest.raises(SystemExit):
        cli.main(["train", "--data", str(csv), "--target", "y", "--run-name", " "])
    assert "argument --run-name: must be a non-empty name; got ' '" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--data", str(csv), "--target", "y", "--run-name", "r" * 251])
    said = "argument --run-name: must be a name of at most 250 characters (MLflow's limit)"
    assert said in capsys.readouterr().err


def _strict_json(text: str) -> Any:
    """JSON as RFC 8259 has it: NaN and Infinity are not numbers there (jq, JavaScript and
    MLflow's artifact preview refuse the file)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_mase_without_a_scale_is_null_in_the_json_files(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A product with no sale in its training span has no MASE (the table prints NaN and names
    the series). --result-json and urnn backtest's overall.json wrote it as a bare NaN, which
    is not JSON: `jq` and any strict parser refused the whole file. It is null there now."""
    path = tmp_path / "new_product.csv"
    frame = seasonal_frame(600)
    frame["y"] = 0.0
    frame.iloc[500:, 0] = 1.0 + frame.iloc[500:, 1] ** 2  # sales start in the test span
    frame.to_csv(path)
    result = tmp_path / "result.json"
    argv = ["train", "--data", str(path), "--target", "y", *TINY, "--model", "repeat_last"]
    code, out, err = run_cli([*argv, "--result-json", str(result)], settings, capsys)
    assert code == 0, err
    assert "MASE leaves out 1 series" in out
    scores = _strict_json(result.read_text())["scores"]
    assert scores["mase"] is None and scores["mae"] > 0
    code, _, err = run_cli(
        ["backtest", "--data", str(path), "--output", str(tmp_path / "bt")], settings, capsys
    )
    assert code == 0, err
    overall = _strict_json((tmp_path / "bt" / "overall.json").read_text())
    assert overall["mase"] is None and overall["mae"] > 0


@pytest.mark.parametrize(
    ("command", "option", "first", "second"),
    [
        ("train", "--data", "a.csv", "b.csv"),
        ("train", "--target", "Pressure", "Current"),
        ("train", "--lookback", "48", "96"),
        ("backtest", "--data", "a.csv", "b.csv"),
        ("backtest", "--model", "models:/m/1", "models:/m/2"),
    ],
)
def test_a_single_valued_option_given_twice_with_two_values_is_refused(
    command: str, option: str, first: str, second: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn train --data valve1/0.csv --data valve1/1.csv` trained on 1.csv alone, and
    `--target Pressure --target Current` on Current, without a word: argparse keeps the last
    value of a repeated option. A user who lists several files or targets meant them all."""
    argv = [command, option, first, option, second]
    if option != "--data":
        argv += ["--data", "a.csv"]
    if command == "train" and option != "--target":
        argv += ["--target", "y"]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"urnn {command}: error: argument {option}: given twice" in err
    assert first in err and second in err


def test_a_single_valued_option_repeated_with_the_same_value_is_accepted() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--data", "a.csv", "--target", "y", "--target", "y"])
    assert args.target == "y"


@pytest.mark.parametrize("command", ["train", "backtest"])
@pytest.mark.parametrize(("option", "value"), [("--sep", ";"), ("--decimal", ",")])
def test_csv_options_given_for_a_parquet_file_are_refused(
    command: str,
    option: str,
    value: str,
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Parquet copy of a SKAB file read with the CSV's `--sep ';' --decimal ,`: the options
    were dropped without a word, the user left believing they applied. Refused, naming the
    option and the file, before any model is loaded or any data read."""
    path = tmp_path / "pump.parquet"
    seasonal_frame(200).to_parquet(path)
    argv = [command, "--data", str(path), option, value, "--model", "models:/none/1"]
    if command == "train":
        argv = [command, "--data", str(path), "--target", "y", option, value, *TINY]
    assert cli.main(argv, settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn {command}: error: {option} {value!r}: pump.parquet is a Parquet")
    assert "Traceback" not in err


def test_a_misspelled_required_option_is_named_beside_the_missing_one(
    csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`urnn train --data pump.csv --tagret Pressure` answered only "the following arguments
    are required: --target", which the user believes they gave: argparse checks the required
    options before it says what it did not recognise. The misspelling is named, with the
    option it is closest to."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--data", str(csv), "--tagret", "y"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "urnn train: error: the following arguments are required: --target" in err
    assert "not recognized: --tagret (did you mean --target?)" in err


def test_an_unknown_option_close_to_one_is_said_with_it(
    csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["train", "--data", str(csv), "--target", "y", "--lookbak", "48"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --lookbak 48 (--lookbak: did you mean --lookback?)" in err


def test_model_options_a_kind_does_not_read_are_said_to_be_unread(
    csv: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--model repeat_last --hidden-size 8 --epochs 1 --lr 0.01` (a baseline run with the
    recurrent model's options, as one swaps --model to compare) read none of them and said
    nothing, as if they had shaped the model; they are said, as unread covariates are."""
    argv = ["train", "--data", str(csv), "--target", "y", *TINY, "--lr", "0.01"]
    code, out, err = run_cli([*argv, "--model", "repeat_last"], mlflow_settings, capsys)
    assert code == 0, err
    assert (
        "--hidden-size 8, --segment-length 12: not read by kind 'repeat_last' (the recurrent "
        "kinds read them: urnn, urnn-full, lstm, gru, urnn-stream)" in out
    )
    assert (
        "--epochs 1, --lr 0.01: not read by kind 'repeat_last', which is not trained "
        "(parameter-free)" in out
    )
    code, out, err = run_cli([*argv, "--model", "linear"], mlflow_settings, capsys)
    assert code == 0, err
    assert "--hidden-size 8, --segment-length 12: not read by kind 'linear'" in out
    assert "--lr 0.01: not read" not in out and "not trained" not in out
    code, out, err = run_cli([*argv, "--model", "gru"], mlflow_settings, capsys)
    assert code == 0, err
    assert "not read by kind" not in out


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_a_loader_error_names_the_options_the_user_types(
    command: str,
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The loader names its settings as LoadConfig's fields, the words of the jobs API
    (`config.load.decimal`) and of a --config file: `urnn train` said "a decimal comma? pass
    decimal=','" to a user who types `--decimal ,`, and "Raise max_gap to at least 30" to one
    who types `--max-gap 30`. The CLI says its options."""
    frame = seasonal_frame(400)
    european = tmp_path / "eu.csv"
    frame.to_csv(european, sep=";", decimal=",")
    gappy = tmp_path / "gappy.csv"
    frame.drop(frame.index[100:130]).to_csv(gappy)
    if command == "backtest":
        argv = ["train", "--data", str(gappy), "--target", "y", "--max-gap", "40", *TINY]
        code, _, err = run_cli(argv, settings, capsys)
        assert code == 0, err
    sizes = TINY[:4] if command == "train" else []
    base = [command, "--target", "y", "--data"]
    code, _, err = run_cli([*base, str(european), "--sep", ";", *sizes], settings, capsys)
    assert code == 2 and "a decimal comma? pass --decimal ','" in err, err
    assert "decimal=" not in err
    code, _, err = run_cli([*base, str(gappy), "--max-gap", "24", *sizes], settings, capsys)
    assert code == 2 and "longer than --max-gap 24" in err, err
    assert "Raise --max-gap to at least 30 to fill them, or set --on-long-gap to 'split'" in err
    assert "max_gap" not in err and "on_long_gap" not in err
    if command == "train":  # a job's run (the worker's --started-json): its config's fields
        config = tmp_path / "job.json"
        config.write_text(json.dumps({"load": {"sep": ";"}}))
        job = ["--config", str(config), "--started-json", str(tmp_path / "started.json")]
        code, _, err = run_cli([*base, str(european), *job, *sizes], settings, capsys)
        assert code == 2 and "a decimal comma? pass decimal=','" in err, err


@pytest.mark.parametrize(
    ("kind", "quantiles", "said"),
    [
        (
            "repeat_last",
            [],
            "Refits: repeat_last has no weights to refit (a parameter-free baseline): its "
            "forecasts (the median) are the ones the backtest without --refit scores; --refit "
            "recalibrates only its quantile intervals, on the data up to each origin; "
            "--refit-epochs is not read",
        ),
        (
            "seasonal_naive",
            ["--quantiles", "0.5"],
            "Refits: seasonal_naive has no weights to refit (a parameter-free baseline) and "
            "forecasts no intervals to recalibrate: --refit changes nothing; "
            "--refit-epochs is not read",
        ),
    ],
)
def test_a_refit_of_a_parameter_free_baseline_says_it_has_nothing_to_refit(
    kind: str,
    quantiles: list[str],
    said: str,
    csv: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`urnn backtest --refit` of repeat_last printed "Refits: the fit settings the model was
    trained with ...; max_epochs=100" and "refitted at each origin", as for a network: such a
    baseline has no weights, and its forecasts are the same with and without --refit (its
    quantile intervals alone are recalibrated). Said so; the flag is kept, as Darts'
    historical_forecasts(retrain=True) and NeuralForecast's cross-validation accept it for
    their baselines."""
    argv = ["train", "--data", str(csv), "--target", "y", "--model", kind, *SMALL, *quantiles]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    backtest = ["backtest", "--data", str(csv), "--backtest-windows", "2"]
    code, plain, err = run_cli(backtest, settings, capsys)
    assert code == 0, err
    refit = [*backtest, "--refit", "--refit-epochs", "3"]
    code, out, err = run_cli(refit, settings, capsys)
    assert code == 0, err
    assert said in out, out
    assert "max_epochs" not in out and "refitted at each origin" not in out, out
    mae = [overall_score(o, "mae") for o in (plain, out)]
    assert mae[0] == mae[1]  # the same forecasts: the median is the rule's, fitted or not


def test_backtest_output_into_an_earlier_backtests_folder_needs_overwrite(
    csv: Path,
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`urnn backtest --output DIR` into the folder of an earlier backtest replaced some of
    its files and kept the others (a realised_reference.json or plot this run writes not)
    beside the new ones, without a word. Refused, naming the files, before any work; with
    --overwrite the earlier backtest's files are removed, said, and the files it did not
    write are kept."""
    argv = ["train", "--data", str(csv), "--target", "y", "--model", "repeat_last", *SMALL]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    out_dir = tmp_path / "bt"
    backtest = ["backtest", "--data", str(csv), "--backtest-windows", "2", "--output"]
    code, _, err = run_cli([*backtest, str(out_dir)], settings, capsys)
    assert code == 0, err
    (out_dir / "notes.txt").write_text("mine")
    (out_dir / "plots" / "mine.png").write_bytes(b"png")
    before = (out_dir / "backtest.json").read_bytes()
    code, out, err = run_cli([*backtest, str(out_dir)], settings, capsys)
    assert code == 2 and out == "", out
    assert err.startswith(
        f"urnn backtest: error: --output {out_dir}: holds an earlier backtest's files "
        "(backtest.json, by_series.csv, by_step.csv, data_report.txt, forecasts.parquet and 5 "
        "more); give a new or empty folder, or --overwrite to remove them first (files "
        "urnn backtest does not write are kept)"
    ), err
    assert (out_dir / "backtest.json").read_bytes() == before
    stale = out_dir / "realised_reference.json"
    code, out, err = run_cli([*backtest, str(out_dir), "--overwrite"], settings, capsys)
    assert code == 0, err
    assert (
        f"--overwrite: removed the earlier backtest's 10 files from {out_dir} (backtest.json, "
        "by_series.csv, by_step.csv, data_report.txt, forecasts.parquet and 5 more); files "
        "urnn backtest does not write are kept"
    ) in out, out
    assert stale.exists()  # written again by this run
    assert (out_dir / "notes.txt").read_text() == "mine"
    assert (out_dir / "plots" / "mine.png").read_bytes() == b"png"
    assert json.loads((out_dir / "backtest.json").read_text())["backtest"]["n_windows"] == 2
    code, _, err = run_cli([*backtest[:-1], "--overwrite"], settings, capsys)
    assert code == 2 and err == (
        "urnn backtest: error: --overwrite replaces the files of --output DIR, which was not "
        "given\n"
    ), err


def test_backtest_of_a_fleet_counts_its_windows_not_only_the_distinct_origin_times(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The headline of a fleet's backtest said "45,816 forecast values from 1,684 origins":
    the distinct origin times over six regions that start and end on other days, neither
    the 3,818 forecasts made (values / horizon) nor any one series' count."""
    frames = [
        seasonal_frame(400, seed=i).iloc[5 * i :].reset_index().assign(site=f"s{i}")
        for i in range(3)
    ]
    fleet = tmp_path / "fleet.csv"
    pd.concat(frames).to_csv(fleet, index=False)
    argv = ["train", "--data", str(fleet), "--series-col", "site", "--target", "y", *TINY]
    code, _, err = run_cli(argv, settings, capsys)
    assert code == 0, err
    backtest = ["backtest", "--data", str(fleet), "--output", str(tmp_path / "bt")]
    code, out, err = run_cli(backtest, settings, capsys)
    assert code == 0, err
    scored = pd.read_parquet(tmp_path / "bt" / "forecasts.parquet")
    windows = scored[["series", "origin"]].drop_duplicates()
    times = scored["origin"].nunique()
    assert len(windows) > times  # the staggered series share only some origin times
    assert (
        f"{len(scored):,} forecast values from {len(windows):,} forecasts of 3 series at "
        f"{times:,} origin times (every origin, 1 row apart)" in out
    ), out
    one = tmp_path / "one.csv"
    frames[0].to_csv(one, index=False)
    backtest = ["backtest", "--data", str(one), "--output", str(tmp_path / "bt"), "--overwrite"]
    code, out, err = run_cli(backtest, settings, capsys)
    assert code == 0, err
    assert re.search(r"forecast values from [\d,]+ origins \(every origin", out), out


def test_test_series_naming_an_id_the_fleet_lacks_is_said_as_the_option_typed(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--test-series "北区2"` for a unit written '北区 2' was refused as "test_series names 1
    series the data does not hold": the TrainConfig field, not the option the user typed
    (the loader's own settings were said as options, the split's were not)."""
    frames = [
        seasonal_frame(300, seed=i).reset_index().assign(site=name)
        for i, name in enumerate(["北区 2", "Région Nord", " spaced", "d"])
    ]
    fleet = tmp_path / "fleet.csv"
    pd.concat(frames).to_csv(fleet, index=False)
    argv = ["train", "--data", str(fleet), "--series-col", "site", "--target", "y", *TINY]
    argv += ["--split", "series"]
    code, _, err = run_cli([*argv, "--test-series", "北区2"], settings, capsys)
    assert code == 2, err
    assert "error: --test-series names 1 series the data does not hold ('北区2')" in err, err
    code, _, err = run_cli([*argv, "--val-series", "nord"], settings, capsys)
    assert code == 2 and "error: --val-series needs --test-series: name the test" in err, err
    code, _, err = run_cli([*argv, "--test-series", "d", "--val-series", "nord"], settings, capsys)
    assert code == 2 and "error: --val-series names 1 series" in err, err
    # the way to name an id with a space at its end: a --config file's field, said as such
    code, _, err = run_cli([*argv, "--test-series", "spaced"], settings, capsys)
    assert code == 2, err
    assert 'a --config file, {"train": {"test_series": [...]}}, keeps it' in err, err


def test_backtest_on_a_file_without_the_models_covariate_says_the_model_reads_it(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """New SKAB runs exported without the Pressure column that the champion reads: `urnn
    backtest` answered "no column 'Pressure'; the file has: ...", a column the user never
    typed, with no word of where it came from or what to do."""
    frames = [seasonal_frame(400, seed=i).reset_index().assign(run=f"r{i}") for i in range(3)]
    fleet = tmp_path / "fleet.csv"
    pd.concat(frames).to_csv(fleet, index=False)
    argv = ["train", "--data", str(fleet), "--series-col", "run", "--target", "y"]
    code, _, err = run_cli([*argv, "--covariates", "x", *TINY], settings, capsys)
    assert code == 0, err
    new = tmp_path / "new.csv"
    pd.concat(frames).drop(columns="x").to_csv(new, index=False)
    code, _, err = run_cli(["backtest", "--data", str(new)], settings, capsys)
    assert code == 2, err
    assert err.rstrip().endswith(
        "new.csv: no column 'x'; the file has: 'timestamp', 'y', 'run'; the model reads "
        "covariate 'x' beside 'y', its target: backtest it on a file that holds each of them "
        "under its name"
    ), err


def test_backtest_of_a_unit_without_a_covariate_the_model_reads_gives_advice_that_works(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One SKAB run whose Pressure never came through, backtested on a model that reads it:
    the refusal advised to "leave 'x' out of --covariates", which urnn backtest does not
    allow (the model's covariates are the only choice)."""
    frames = [seasonal_frame(400, seed=i).reset_index().assign(run=f"r{i}") for i in range(3)]
    fleet = tmp_path / "fleet.csv"
    pd.concat(frames).to_csv(fleet, index=False)
    argv = ["train", "--data", str(fleet), "--series-col", "run", "--target", "y"]
    code, _, err = run_cli([*argv, "--covariates", "x", *TINY], settings, capsys)
    assert code == 0, err
    frames[1]["x"] = float("nan")
    new = tmp_path / "new.csv"
    pd.concat(frames).to_csv(new, index=False)
    code, _, err = run_cli(["backtest", "--data", str(new)], settings, capsys)
    assert code == 2, err
    assert "--covariates" not in err, err
    assert err.rstrip().endswith(
        "series 'r1': column 'x' has no value in any of its 400 rows (data rows 401 to 800, "
        "1-based, header not counted): every series needs values of each covariate: fill them "
        "in, or leave series 'r1' out of the file (the model reads covariate 'x': a backtest "
        "cannot leave it out)"
    ), err


def test_test_series_written_as_whole_number_floats_name_the_loaders_ids(csv: Path) -> None:
    """The loader reads a float id 1.0 as '1' (series_id_text): `--test-series 1.0,2` named
    a series the data did not hold; the names are read by the loader's rule."""
    parser = cli.build_parser()
    argv = ["train", "--data", str(csv), "--target", "y", "--device", "cpu", "--split", "series"]
    split = cli._train_config(parser.parse_args([*argv, "--test-series", "1.0,2,1.5"])).split(48)
    assert split.test_series == ("1", "2", "1.5")


def test_one_test_unit_and_one_validating_unit_are_said_in_the_singular() -> None:
    """ "1 are the test units": the held-out line of a fleet split by series."""
    from types import SimpleNamespace

    from training.pipeline import held_out_lines

    roles = {"a": "train", "b": "train", "c": "val", "d": "test"}
    splits = {sid: SimpleNamespace(plan=SimpleNamespace(role=role)) for sid, role in roles.items()}
    assert held_out_lines(splits) == [  # type: ignore[arg-type]
        "split 'series': 2 series train on their whole history; 1 validates ('c'); 1 is the "
        "test unit, never seen in training ('d')"
    ]

"""The `urnn` command line.

    urnn benchmark paper copy --seq-len 100 --iterations 1000 --model urnn,lstm
    urnn benchmark paper adding --seq-len 200 --model urnn --model lstm
    urnn benchmark ett --setting S --horizons 96,192 --models urnn,linear --output runs/ett
    urnn demo
    urnn train --data data/ETT-small/ETTh1.csv --target OT --lookback 96 --horizon 24
    urnn backtest --data data/ETT-small/ETTh1.csv --model models:/urnn-forecaster@champion
    urnn serve --port 8000

Heavy imports (torch, the models, mlflow) happen inside the handlers so `urnn --help` is quick;
argument errors are argparse errors that name the option and its allowed values.
"""

import argparse
import contextlib
import functools
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from urnn_forecast import LOG_FORMAT
from urnn_forecast.benchmark_commands import MIN_SEQ_LEN, add_benchmark_parser
from urnn_forecast.cli_support import (
    DECODER_CHOICES,
    SEED_MAX,
    UsageError,
    add_device_option,
    check_data_path,
    check_output_folder,
    command_failed,
    input_errors,
    int_from_1_to,
    make_output_folder,
    positive_float,
    positive_int,
    print_mlflow_location,
    seed_number,
)
from urnn_forecast.config_fields import field_in_section, in_flags
from urnn_forecast.field_types import check_fields, shown, shown_names
from urnn_forecast.models_command import add_models_parser, given_text
from urnn_forecast.settings import (
    SERVE_WORKERS_MAX,
    Settings,
    SettingsError,
    get_settings,
    mlflow_variable_note,
)
from urnn_forecast.tracking import experiment_problem, registered_name_problem, run_name_problem

if TYPE_CHECKING:
    import logging

    import pandas as pd

    from models.forecaster import ForecasterConfig
    from training.backtest import BacktestConfig
    from training.fit import EpochRecord, FitConfig
    from training.pipeline import TrainConfig, TrainResult

# `urnn train --model`: models.forecaster.FORECASTER_KINDS (checked by tests/test_cli_train.py).
FORECASTER_CHOICES: tuple[str, ...] = (
    "urnn",
    "urnn-full",
    "urnn-stream",
    "lstm",
    "gru",
    "linear",
    "repeat_last",
    "seasonal_naive",
)
# Mirrors of training.validation's policies, so that parsing does not import pandas.
DUPLICATE_CHOICES: tuple[str, ...] = ("mean", "first", "last", "error")
FILL_CHOICES: tuple[str, ...] = ("interpolate", "ffill", "none")
LONG_GAP_CHOICES: tuple[str, ...] = ("error", "split")
SHORT_CHOICES: tuple[str, ...] = ("error", "drop")
METRIC_CHOICES: tuple[str, ...] = ("mae", "mse", "rmse", "smape", "mase", "pinball_mean")
CONFIG_SECTIONS: tuple[str, ...] = ("model", "fit", "load", "train")


def _checked_name(problem: Callable[[object], str | None]) -> Callable[[str], str]:
    """An argparse type for a name MLflow must accept (`problem` says why not): refused as the
    option's error before anything loads, not as a config field's after the data is read."""

    def checked(text: str) -> str:
        if (why := problem(text)) is not None:
            raise argparse.ArgumentTypeError(why)
        return text

    return checked


def _port(text: str) -> int:
    return int_from_1_to(text, 65535, "must be a TCP port, 1 to 65535")


def _serve_workers(text: str) -> int:
    """As URNN_SERVE_WORKERS allows: the option took up to 2**32 - 1 processes, each loading
    the model."""
    return int_from_1_to(
        text,
        SERVE_WORKERS_MAX,
        f"must be an integer from 1 to {SERVE_WORKERS_MAX} (as URNN_SERVE_WORKERS)",
    )


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {value}")
    return value


def _share_up_to_one(text: str) -> float:
    """--max-filled-fraction: a share in (0, 1] (1 accepts any series), refused as the other
    shares are, naming the option and the range; LoadConfig's own check named its field
    (max_filled_fraction), and urnn backtest reached it only after loading the model."""
    allowed = "must lie in (0, 1] (1 accepts any)"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{allowed}, got {text!r}") from None
    if not 0.0 < value <= 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"{allowed}, got {value}")
    return value


def _share_below_one(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"must lie in [0, 1) (0.02: 2 %), got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _separator(text: str) -> str:
    """`--sep '\\t'` as typed in a shell is a backslash and a t: a tab is meant."""
    return "\t" if text == "\\t" else text


def _levels(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers in (0, 1) separated by commas, got {text!r}"
        ) from None
    if not levels:
        raise argparse.ArgumentTypeError("give at least one level, 0.5 among them")
    return levels


def _names(text: str) -> list[str]:
    """`HUFL,HULL` -> ["HUFL", "HULL"]; with action="extend" also repeatable."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _series_col(text: str) -> str:
    """An empty name is no column: LoadConfig reads "" as "a series column" and the loader as
    "none" (a KeyError: '' came of it)."""
    if not text:
        raise argparse.ArgumentTypeError(
            "expected the name of the column of series ids, got an empty name; leave the option "
            "out when the whole file is one series"
        )
    return text


def _add_load_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Options that map onto training.data.LoadConfig; `required` False: urnn backtest's, whose
    defaults are the model's own recorded load settings (the help said urnn train's)."""
    group = parser.add_argument_group(
        "data loading (training.data.LoadConfig)",
        description=None
        if required
        else "an option not given takes the value the model was trained with (the load "
        "settings its config.json records: its --max-gap, --timestamp-col, --sep, ...); the "
        "defaults named below are urnn train's, and so the model's where it was trained "
        "without the option",
    )
    group.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="history file: .csv, .tsv, .txt (each also .gz; fields split by --sep), .parquet, .pq",
    )
    group.add_argument(
        "--target",
        required=required,
        default=None,
        metavar="COL",
        help="the column to forecast"
        + (
            ""
            if required
            else "; default and only choice: the one the model was trained on (a file whose "
            "column has another name needs that column renamed)"
        ),
    )
    group.add_argument(
        "--covariates",
        action="extend",
        type=_names,
        default=None,
        metavar="COL[,COL...]",
        help="past covariate columns, repeatable or comma separated; default: none"
        + (
            ' (a name that holds a comma: --config with {"load": {"covariates": [...]}})'
            if required
            else " (backtest: the model's own, the only choice)"
        ),
    )
    group.add_argument(
        "--timestamp-col",
        action="append",
        default=None,
        metavar="COL",
        help="timestamp column; repeat to join several with a space before parsing (e.g. "
        "--timestamp-col dteday --timestamp-col hr); default: the column named like "
        "timestamp/datetime/date/time/ds (any case, spaces at either end)",
    )
    group.add_argument(
        "--timestamp-format",
        default=None,
        metavar="FMT",
        help="strptime format of the (joined) timestamps, or ISO8601 (each row read as "
        "written: '2020-01-02' beside '2020-01-02 01:00:00'); default: inferred from the first "
        "row"
        + (
            ""
            if required
            else " (backtest: the model's own, unless --timestamp-col names other columns than "
            "the model's)"
        ),
    )
    group.add_argument(
        "--step-origin",
        default=None,
        metavar="TIMESTAMP",
        help=(
            "the timestamp column counts steps (engine cycles, sample numbers): step k is read "
            "as TIMESTAMP + k x --freq (required with it), e.g. --step-origin 2000-01-01 "
            "--freq D; default: the column holds dates"
        ),
    )
    group.add_argument(
        "--series-col",
        type=_series_col,
        default=None,
        metavar="COL",
        help="long format: the column of series ids; default: "
        + (
            "the whole file is one series"
            if required
            else "the one the model was trained with (its file must have that column), or the "
            "whole file is one series if it was trained without one"
        ),
    )
    group.add_argument(
        "--series-id",
        default=None,
        metavar="ID",
        help="id of the file's one series (wide format); default: the file name"
        + ("" if required else "; given, it replaces the model's own --series-col"),
    )
    group.add_argument(
        "--freq",
        default=None,
        metavar="ALIAS",
        help=(
            "pandas offset alias such as h, 15min, D, MS, B; default: inferred, the modal "
            "step, or MS / ME (QS-..., YS-..., 2MS, ...) where every timestamp is on the "
            "first / last day of a month"
        ),
    )
    group.add_argument(
        "--duplicates",
        choices=DUPLICATE_CHOICES,
        default=None,
        help="what to do with repeated timestamps; default mean",
    )
    group.add_argument(
        "--fill",
        choices=FILL_CHOICES,
        default=None,
        help="how to fill missing steps up to --max-gap long; default interpolate",
    )
    group.add_argument(
        "--max-gap",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="longest run of missing steps that is filled; default 24",
    )
    group.add_argument(
        "--on-long-gap",
        choices=LONG_GAP_CHOICES,
        default=None,
        help=(
            "a gap longer than --max-gap: error, or split the series there into segments "
            "that no window spans (a split by time draws its borders over the segments "
            "together; --split series holds them out together); default error"
        ),
    )
    group.add_argument(
        "--on-short",
        choices=SHORT_CHOICES,
        default=None,
        help="a series too short for one window: error, or drop it; default error",
    )
    group.add_argument(
        "--max-filled-fraction",
        type=_share_up_to_one,
        default=None,
        metavar="SHARE",
        help="refuse a series with more than this share of filled values; default 0.25, "
        "1 accepts any",
    )
    group.add_argument(
        "--sep",
        type=_separator,
        default=None,
        metavar="CHAR",
        help="CSV field separator; default ','; '\\t' (typed as two characters) is a tab; "
        "refused for a Parquet file, which has none",
    )
    group.add_argument(
        "--decimal",
        choices=(".", ","),
        default=None,
        help="the decimal mark of the CSV file's numbers; default '.'; ',' for European "
        "exports (with --sep ';'); refused for a Parquet file, which has none"
        + (
            ""
            if required
            else "; backtest: the model's own, but '.' where --sep is given as the model's "
            "decimal mark (a comma-separated file has decimal points)"
        ),
    )


LOAD_OPTIONS: tuple[str, ...] = (
    "timestamp_format",
    "step_origin",
    "series_col",
    "series_id",
    "freq",
    "duplicates",
    "fill",
    "max_gap",
    "on_long_gap",
    "on_short",
    "sep",
    "decimal",
    "max_filled_fraction",
)
# LoadConfig's fields -> the options of `urnn train` / `urnn backtest` that set them: a loader
# message ("pass decimal=','") said in the options typed ("pass --decimal ','"), loader_error
LOAD_FLAGS: dict[str, str] = {
    field: "--" + field.replace("_", "-")
    for field in ("target", "covariates", "timestamp_col", *LOAD_OPTIONS)
}
# the split's settings a data error names (split.NamedSeriesError: "test_series names 1 series
# the data does not hold"): said as the options typed, as the loader's are
SPLIT_FLAGS: dict[str, str] = {"test_series": "--test-series", "val_series": "--val-series"}


def _check_text_options(args: argparse.Namespace, data: str) -> None:
    """UsageError where --sep or --decimal is given for a Parquet file, which has neither:
    the options were dropped without a word (a Parquet copy of a `;` CSV read "with" --sep
    ';' --decimal ,). Only the options typed here: a backtest's recorded CSV settings, and a
    --config file's, stay quiet defaults."""
    from training.data import file_format
    from training.validation import DataValidationError

    try:
        parquet = file_format(Path(data)) == "parquet"
    except DataValidationError:  # an unsupported suffix: the loader says so
        return
    for option, value in (("--sep", args.sep), ("--decimal", args.decimal)):
        if parquet and value is not None:
            raise UsageError(
                f"{option} {value!r}: {Path(data).name} is a Parquet file, whose columns are "
                f"typed: it has no field separator or decimal mark; leave {option} out (it "
                "applies to .csv, .tsv and .txt files)"
            )


def _load_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: getattr(args, k) for k in LOAD_OPTIONS if getattr(args, k) is not None
    }
    if args.timestamp_col:
        cols = args.timestamp_col
        out["timestamp_col"] = cols[0] if len(cols) == 1 else tuple(cols)
    if args.target is not None:
        out["target"] = args.target
    if args.covariates is not None:
        # as given: a name repeated (`--covariates HUFL,HUFL`, a typo for another column?) is
        # LoadConfig's error, not dropped here without a word
        out["covariates"] = tuple(args.covariates)
    return out


def _add_split_options(parser: argparse.ArgumentParser, *, backtest: bool = False) -> None:
    group = parser.add_argument_group("split and backtest")
    unseen = (
        "; unseen: every series of the file is a test unit the model never saw, scored from "
        "its first look-back on (new units of a fleet)"
    )
    group.add_argument(
        "--split",
        choices=("fractions", "ett", "series", *(("unseen",) if backtest else ())),
        default=None,
        help="fractions: first --train-fraction train, next --val-fraction val, rest test; "
        "ett: 12/4/4 months (Informer); series: hold out whole series (fleets of units: the "
        "first --train-fraction of the series in id order train, the next --val-fraction "
        "validate, the rest are scored as units the model never saw; "
        + (
            "or the units named by the model's --test-series)"
            if backtest
            else "or name them: --test-series)"
        )
        + (unseen if backtest else "")
        + ("; default: the model's own split" if backtest else "; default fractions"),
    )
    # a backtest reads the fractions the model was split with (config.json), not 0.7 / 0.1
    own = "the model's own, else " if backtest else ""
    group.add_argument(
        "--train-fraction",
        type=_fraction,
        default=None,
        help=f"default {own}0.7 (splits fractions and series)",
    )
    group.add_argument(
        "--val-fraction",
        type=_fraction,
        default=None,
        help=f"default {own}0.1 (splits fractions and series)",
    )
    if not backtest:  # a backtest re-applies the model's own held-out units
        group.add_argument(
            "--test-series",
            action="extend",
            type=_names,
            default=None,
            metavar="ID[,ID...]",
            help="split series: hold out these units for test instead of the last ones in id "
            "order (repeatable or comma separated); the others train, except the last "
            "--val-fraction of them in id order, or --val-series",
        )
        group.add_argument(
            "--val-series",
            action="extend",
            type=_names,
            default=None,
            metavar="ID[,ID...]",
            help="split series, with --test-series: the units that validate (early stopping)",
        )
    group.add_argument(
        "--backtest-step",
        type=positive_int,
        default=None,
        metavar="N",
        help="rows between backtest origins over the test span; default 1",
    )
    group.add_argument(
        "--backtest-windows",
        type=positive_int,
        default=None,
        metavar="N",
        help="origins per series counted back from the test span's end; default: all",
    )
    group.add_argument(
        "--season-length",
        type=positive_int,
        default=None,
        metavar="N",
        help=(
            "the data's season in rows: MASE's seasonal naive scale (and, for urnn train "
            "--model seasonal_naive, the model's season); default: for urnn backtest the one the "
            "model was trained with, else the frequency's (24 hourly, "
            "48 half-hourly, 96 at 15 min, 1440 at 1 min, 3600 at 1 s, 7 daily, 52 weekly, "
            "12 monthly, 4 quarterly, else 1)"
        ),
    )


def _add_train_parser(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="fit, backtest, log and register one forecaster",
        description=(
            "Load and validate a history file, split it by time, scale on train only, fit a "
            "forecaster, backtest it on the test span, log everything to MLflow, register the "
            "model (alias challenger) and promote it to champion if it beats the current "
            "champion on the same backtest. Precedence: defaults < --config < options."
        ),
    )
    _add_load_options(train, required=True)
    model = train.add_argument_group("model and fitting")
    model.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help='JSON overrides: {"model": {ForecasterConfig fields}, "fit": {FitConfig fields}, '
        '"load": {LoadConfig fields}, "train": {TrainConfig fields}}',
    )
    model.add_argument(
        "--model",
        dest="kind",
        choices=FORECASTER_CHOICES,
        default=None,
        help="forecaster kind; default urnn",
    )
    for flag, meta, text in (
        ("--lookback", "L", "input rows per window; default 336"),
        ("--horizon", "H", "steps forecast at once; default 96"),
        ("--hidden-size", "N", "hidden units of recurrent kinds; default 128 (urnn-stream: 64)"),
        ("--segment-length", "N", "rows per recurrent step; must divide --lookback; default 24"),
        ("--epochs", "N", "maximum training epochs (early stopping may end sooner); default 100"),
        ("--batch-size", "N", "training windows per batch; default 64"),
        (
            "--train-stride",
            "N",
            "rows between training windows (not urnn-stream: crops); default 1",
        ),
        (
            "--ensemble",
            "K",
            "train K members with seeds seed .. seed + K - 1 and serve their averaged "
            "quantiles (a deep ensemble: K times the training and forecasting cost); "
            "default 1",
        ),
    ):
        model.add_argument(flag, type=positive_int, default=None, metavar=meta, help=text)
    model.add_argument(
        "--calendar",
        action="store_true",
        help="give the model calendar features, known for the horizon too: hour of day, day of "
        "week and day of year as sin/cos pairs, those the data's frequency has (6 inputs "
        "sub-daily, 4 daily, 2 weekly or coarser), set once the data is loaded; the recurrent "
        "kinds read them (docs/model.md). The same as train.calendar in --config; default: "
        "none (a --config file's model.n_calendar, which must match the frequency)",
    )
    model.add_argument(
        "--channel-independent",
        action="store_true",
        help="multivariate data: every column given (--target and --covariates) of every "
        "series becomes a series of its own, '<id>/<column>', and one model forecasts each "
        "from its own history (SegRNN, PatchTST); it takes no covariates, and is served any "
        "channel as a series. The same as train.channel_independent in --config; default: "
        "off (covariates are inputs for forecasting the target)",
    )
    model.add_argument(
        "--non-negative",
        choices=("auto", "on", "off"),
        default=None,
        help="floor every forecast (each quantile) at 0: auto where the target has no negative "
        "value in the training and validation spans (demand, counts, energy); the data report "
        "says which; default auto",
    )
    model.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        metavar="N",
        help="train data-parallel in N processes under torchrun (DistributedDataParallel: gloo "
        "on CPU, nccl on GPU; rank 0 logs and registers); default 1",
    )
    model.add_argument(
        "--lr", type=positive_float, default=None, help="learning rate; default 1e-3"
    )
    model.add_argument("--seed", type=seed_number, default=None, help="random seed; default 0")
    model.add_argument(
        "--quantiles",
        type=_levels,
        default=None,
        metavar="Q[,Q...]",
        help="quantile levels to train (pinball loss), 0.5 among them (the point forecast); "
        "symmetric pairs give intervals: 0.05,0.5,0.95 for 90 %%; default 0.1,0.5,0.9",
    )
    model.add_argument(
        "--decoder",
        choices=DECODER_CHOICES,
        default=None,
        help="recurrent kinds: direct (one head maps the final state to all H steps), pmf "
        "(SegRNN's parallel decoder: one recurrent step per output segment, all at once) or "
        "auto (train both, keep the one with the better validation score: twice the training "
        "time); default direct",
    )
    add_device_option(model)
    model.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr over the epochs and each epoch's batches (the epoch lines "
        "on stdout either way); default: on when stderr is a terminal, off in logs and jobs",
    )
    _add_split_options(train)
    registry = train.add_argument_group("tracking and registry")
    registry.add_argument(
        "--metric",
        choices=METRIC_CHOICES,
        default=None,
        help="backtest metric (original units, lower is better) that decides promotion; "
        "default mae",
    )
    registry.add_argument(
        "--min-improvement",
        type=_share_below_one,
        default=None,
        metavar="SHARE",
        help="promote only if the backtest metric is at least this share below the champion's "
        "(0.02: 2 %% lower); default 0: any lower score",
    )
    registry.add_argument(
        "--registered-name",
        type=_checked_name(registered_name_problem),
        default=None,
        metavar="NAME",
        help="registered model name; default urnn-forecaster",
    )
    registry.add_argument(
        "--result-json",
        type=given_text,
        default=None,
        metavar="FILE",
        help="also write the outcome (run id, registered version, promoted, scores) to FILE as "
        "JSON; retraining jobs read it; default: none",
    )
    registry.add_argument(
        "--started-json",
        type=given_text,
        default=None,
        metavar="FILE",
        help="write the MLflow run id to FILE as JSON as soon as the run exists (before the "
        "fit); the job worker reads it to record the run of a running job; default: none",
    )
    registry.add_argument(
        "--no-promote",
        action="store_true",
        help="register as challenger and record the scores, but never move the champion alias",
    )
    registry.add_argument(
        "--experiment",
        type=_checked_name(experiment_problem),
        default=None,
        metavar="NAME",
        help="MLflow experiment; default forecast",
    )
    registry.add_argument(
        "--run-name",
        type=_checked_name(run_name_problem),
        default=None,
        metavar="NAME",
        help="the MLflow run's name; default KIND-TARGET-L<lookback>-H<horizon> (urnn-OT-L336-H96)",
    )
    train.set_defaults(handler=_run_train, subparser=train)


def _add_backtest_parser(commands: Any) -> None:
    bt = commands.add_parser(
        "backtest",
        help="rolling-origin evaluation of a registered model",
        description=(
            "Evaluate a logged or registered forecaster on a history file: rolling origins over "
            "the test span of the split, forecasts in original units, metric tables printed."
        ),
    )
    _add_load_options(bt, required=False)
    bt.add_argument(
        "--model",
        dest="model_uri",
        default="models:/urnn-forecaster@champion",
        metavar="MODEL_URI",
        help="MLflow model URI, e.g. models:/urnn-forecaster@champion (the default), "
        "models:/urnn-forecaster/3, runs:/<run id>/model; or a local folder, read in place: "
        "one saved by training (config.json + weights.pt) or an MLflow model folder "
        "(MLmodel, artifacts/config.json)",
    )
    _add_split_options(bt, backtest=True)
    bt.add_argument(
        "--refit",
        action="store_true",
        help=(
            "fit a fresh model of the registered model's config at each origin, on the data "
            "up to it (the last val-length rows before the origin early-stop it; a new "
            "train-only scaler each time, global or per series as the model's was), with the "
            "fit settings the model was trained with "
            "(lr, batch size, loss, schedule, seed, ... from its config.json, or its MLflow "
            "run's fit.* params for a model from before they were recorded there; the defaults, "
            "said in a printed line, when it records neither; a decoder search is not repeated: "
            "the registered decoder is refitted) and on training windows as many rows apart as "
            "its own (--train-stride): how retraining on schedule would have done. "
            "One fit per origin, so --backtest-windows is required. Default: score the model as "
            "it is"
        ),
    )
    bt.add_argument(
        "--refit-epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --refit: the epoch cap of each fit (early stopping ends it sooner); default: "
        "the cap the model was trained with",
    )
    bt.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where the refits train (--refit) and the model forecasts: auto picks cuda when "
        "available; default: URNN_DEVICE or auto, as for urnn train",
    )
    bt.add_argument(
        "--output",
        default=None,
        metavar="DIR",
        help="also write the tables (CSV), every forecast scored (forecasts.parquet), plots "
        "(PNG), the loader's full data report (data_report.txt) and backtest.json (the model "
        "version the URI named, the data, the windows and step, refit) into DIR; a DIR "
        "holding an earlier backtest's files is refused unless --overwrite",
    )
    bt.add_argument(
        "--overwrite",
        action="store_true",
        help="with --output DIR: remove the files an earlier backtest wrote there (the "
        "tables, forecasts, plots, reports) before writing this one's, saying which; files "
        "urnn backtest does not write are kept. Default: such a DIR is refused",
    )
    bt.set_defaults(handler=_run_backtest, subparser=bt)


def _add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="the FastAPI forecast service (uvicorn)",
        description=(
            "Serve URNN_MODEL_URI (default models:/urnn-forecaster@champion) over HTTP: "
            "POST /forecast, GET /model, POST /model/reload, /healthz, /readyz, /metrics, "
            "OpenAPI at /docs. Other settings come from URNN_* variables (docs/serving.md)."
        ),
    )
    serve.add_argument(
        "--host",
        type=given_text,
        default=None,
        help="bind address; default URNN_SERVE_HOST or 127.0.0.1",
    )
    serve.add_argument(
        "--port", type=_port, default=None, help="port; default URNN_SERVE_PORT or 8000"
    )
    serve.add_argument(
        "--workers",
        type=_serve_workers,
        default=None,
        help="worker processes, each with its own model copy and batcher; with more than one, "
        "settings come from the environment and metrics are merged through "
        "PROMETHEUS_MULTIPROC_DIR (a fresh temporary folder unless set); default "
        "URNN_SERVE_WORKERS or 1",
    )
    # The service places the model itself (URNN_DEVICE), so no --device option here.
    serve.set_defaults(handler=_run_serve, subparser=serve, device=None)


def _worker_id(text: str) -> str:
    """A name the job table can hold: PostgreSQL refused a longer one at the first claim, a
    traceback, where SQLite stored it."""
    from jobs.models import WORKER_ID_WIDTH

    text = given_text(text)
    if len(text) > WORKER_ID_WIDTH:
        raise argparse.ArgumentTypeError(
            f"must be at most {WORKER_ID_WIDTH} characters; got {len(text):,}"
        )
    return text


class _Terminated(BaseException):
    """SIGTERM after (or before) the server's graceful shutdown: a stop asked for, not an
    error. A BaseException, so that no `except Exception` on the way swallows it."""


@contextlib.contextmanager
def _sigterm_ends_cleanly() -> Iterator[None]:
    """Exit 0 on SIGTERM with one worker, as with several: uvicorn re-raises the SIGTERM it
    handled once it has shut down gracefully (so a process manager sees the signal), and the
    default action killed the process with 143 after every clean stop. The handler set here is
    the one uvicorn restores and re-raises to; a SIGTERM before uvicorn takes the signal (the
    model loading) ends the command the same way, with nothing in flight.

    SIGHUP (the terminal or ssh session closing; `kill -HUP`, on which --workers N restarts
    its workers) is passed on as SIGTERM: its default action killed the process outright,
    cutting requests in flight and losing the write-behind streaming states not yet flushed
    (points already acknowledged). A process that ignores SIGHUP (nohup) keeps ignoring it."""

    def terminated(signum: int, frame: object) -> None:
        raise _Terminated

    def hung_up(signum: int, frame: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # to whichever handler holds SIGTERM now

    previous = signal.signal(signal.SIGTERM, terminated)
    previous_hup = signal.getsignal(signal.SIGHUP)
    if previous_hup is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, hung_up)
    try:
        yield
    except _Terminated:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_hup is not signal.SIG_IGN:
            signal.signal(signal.SIGHUP, previous_hup)


def _address_problem(
    host: str, port: int, *, host_from: str = "--host", port_from: str = "--port"
) -> str | None:
    """Whether uvicorn will be able to listen on host:port. uvicorn finds out only after the
    app's lifespan has loaded the model, then exits 1 with its own message; a port in use is
    a user's matter, said here in one line before anything is loaded. `host_from` and
    `port_from` name where each came from: the option, or the setting (URNN_SERVE_HOST,
    URNN_SERVE_PORT)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:  # UnicodeError: a label IDNA cannot encode
        joiner = " " if host_from.startswith("--") else "="  # --host x, URNN_SERVE_HOST='x'
        given = f"{host_from}{joiner}{shown(host)}"
        return f"{given}: cannot resolve it ({error})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            why = error.strerror or error
            advice = _bind_advice(error.errno, host_from, port_from)
            return f"cannot listen on {host}:{port} ({why}); {advice}"
    return None


def _bind_advice(code: int | None, host_from: str = "--host", port_from: str = "--port") -> str:
    """What to change, by why the bind failed: only a port in use calls for another port."""
    import errno

    if code == errno.EADDRINUSE:
        return f"pick another {port_from}"
    if code == errno.EADDRNOTAVAIL:
        return (
            f"{host_from} must be an address of this machine: 127.0.0.1 (this machine only), "
            "0.0.0.0 (every interface) or one of its interfaces' addresses"
        )
    if code == errno.EACCES:
        return f"ports below 1024 need privileges: pick a {port_from} from 1024 to 65535"
    return f"check {host_from} and {port_from}"


def _run_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging
    import os

    host = args.host or settings.serve_host
    port = args.port or settings.serve_port
    workers = args.workers or settings.serve_workers
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # WS /series/stream answers a message above URNN_MAX_BODY_BYTES with 413 and stays open;
    # uvicorn closes the connection (1009) only past ws_max_size, kept well above that limit.
    ws_max_size = max(WS_MAX_SIZE_FLOOR, 2 * settings.max_body_bytes)
    # the setting is named only when it gave the value; a default is changed with the option
    host_set, port_set = (f in settings.model_fields_set for f in ("serve_host", "serve_port"))
    host_from = "URNN_SERVE_HOST" if not args.host and host_set else "--host"
    port_from = "URNN_SERVE_PORT" if not args.port and port_set else "--port"
    # Settings that contradict each other first: what the machine has (a free port, a
    # store) is no reason to come back with the other half of the error later.
    problem = None
    if workers > 1 and settings.adaptive_intervals != "off":
        problem = (
            f"--workers {workers} with URNN_ADAPTIVE_INTERVALS={settings.adaptive_intervals}: "
            "rolling intervals need one worker (each would learn from its own share of the "
            "realised scores and serve a different interval for the same request); use "
            "--workers 1 or URNN_ADAPTIVE_INTERVALS=off"
        )
    if problem is None:
        problem = _address_problem(host, port, host_from=host_from, port_from=port_from)
    if problem is None:  # the embedded store's folder (URNN_VAR_DIR), a store's path
        from urnn_forecast.tracking import TrackingStoreError, check_tracking_store

        try:
            check_tracking_store(settings, records=False)  # another model's: no outage
        except TrackingStoreError as error:
            problem = str(error)
    from service import settle_multiprocess_variable

    settle_multiprocess_variable()  # an empty value unset, the deprecated lower-case name read
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if problem is None and given:
        from service.metrics import multiprocess_folder_problem

        problem = multiprocess_folder_problem(given)
    if problem is not None:  # before loading any model
        print(f"urnn serve: error: {problem}", file=sys.stderr)
        return 2
    # A metrics folder given turns multiprocess mode on, with one worker or several: it must
    # be empty before the app creates its metrics, or an earlier run's files are added to the
    # new counts (an audit's restart read 100 requests after 50); and no other server's.
    from service.metrics import (
        FolderInUseError,
        clear_multiprocess_folder,
        hold_multiprocess_folder,
    )

    log = logging.getLogger("urnn.serve")
    try:
        held = hold_multiprocess_folder(given) if given else None
    except FolderInUseError:
        print(
            f"urnn serve: error: PROMETHEUS_MULTIPROC_DIR={given} is in use by another urnn "
            "serve (emptying it would drop that server's metrics, and each would report the "
            "other's counts as its own): give each server its own folder",
            file=sys.stderr,
        )
        return 2
    try:
        if given and (stale := clear_multiprocess_folder(given)):
            log.info("removed %d metric files of an earlier run from %s", stale, given)
        return _run_uvicorn(settings, host, port, workers, given, ws_max_size, log)
    finally:
        if held is not None:
            os.close(held)


def _run_uvicorn(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    given: str | None,
    ws_max_size: int,
    log: "logging.Logger",
) -> int:
    """uvicorn with one worker (the app built here) or several (each from the environment)."""
    import os
    import tempfile

    import uvicorn

    if workers == 1:
        from service.main import create_app

        with _sigterm_ends_cleanly():
            uvicorn.run(
                create_app(settings),
                host=host,
                port=port,
                log_config=serve_log_config(),
                access_log=settings.serve_access_log,
                ws_max_size=ws_max_size,
                http=BOUNDED_HEAD_PROTOCOL,
            )
        return 0
    # Several processes: each worker builds its app from the environment, and writes its
    # metrics into a shared folder (emptied above when given, else a fresh one).
    import shutil

    folder = given or tempfile.mkdtemp(prefix="urnn-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    if settings.stream_snapshot_seconds > 0:
        # A series' requests reach any of the workers (no sticky routing inside one server):
        # streaming state must be read from and written to the database on every request.
        log.warning(
            "--workers %d: streaming snapshots are written through on every request "
            "(URNN_STREAM_SNAPSHOT_SECONDS=0 instead of %s); each worker would otherwise keep "
            "its own state of a series and refuse the points another worker consumed",
            workers,
            settings.stream_snapshot_seconds,
        )
        os.environ["URNN_STREAM_SNAPSHOT_SECONDS"] = "0"
    from urnn_forecast.model_uri import parse_models_uri

    follows_alias = parse_models_uri(settings.model_uri)[1] is not None  # not a pinned version
    if settings.model_poll_seconds == 0 and follows_alias:
        # The workers follow a moved alias by their poll alone: a reload goes to one of them.
        log.warning(
            "--workers %d with URNN_MODEL_POLL_SECONDS=0: POST /model/reload switches only the "
            "worker that takes the request, and the others keep serving their version until "
            "a restart (urnn_model_info reads 1 for both); set URNN_MODEL_POLL_SECONDS above 0 "
            "so that every worker follows the alias",
            workers,
        )
    try:
        uvicorn.run(
            "service.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=serve_log_config(),
            access_log=settings.serve_access_log,
            ws_max_size=ws_max_size,
            http=BOUNDED_HEAD_PROTOCOL,
        )
    finally:
        if not given:  # the folder this command made: gone with it
            shutil.rmtree(folder, ignore_errors=True)
    return 0


WS_MAX_SIZE_FLOOR = 16 * 1024 * 1024  # uvicorn's own default


def serve_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration plus a root handler at INFO for the service's own
    loggers (service.*, jobs.*, urnn.*). uvicorn applies it in every process it runs, the
    workers of --workers included: they are spawned, so the command's basicConfig never
    reached them, and their INFO lines ("serving ... version N", a drain's start) were
    dropped while warnings came out bare, without time, level or logger (Python's last
    resort handler)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["urnn"] = {"format": LOG_FORMAT}
    config["handlers"]["urnn"] = {
        "class": "logging.StreamHandler",
        "formatter": "urnn",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["urnn"], "level": "INFO"}
    return config


# uvicorn's httptools protocol with a 431 for a request head above 64 KiB (service.http_head):
# uvicorn reads any head, at a cost quadratic in its size, on the event loop. By import path,
# which the worker processes of --workers resolve too.
BOUNDED_HEAD_PROTOCOL = "service.http_head:BoundedHeadProtocol"


class UrnnParser(argparse.ArgumentParser):
    """argparse's parser, its errors with long values shortened: argparse quotes what it
    refuses whole ("invalid choice: 'xxx...'"), 5,000 characters for a 5,000-character typo.
    Subcommands' parsers are of the same class (add_subparsers takes the parent's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # every single-valued option (add_argument's default action) refuses a second value
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # kept for error(): a subcommand's parser gets its own arguments here
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required"):
            # argparse says a missing required option before the ones it did not recognise:
            # `--tagret x` was answered "required: --target" alone
            unknown = [a for a in getattr(self, "_given", []) if _unknown_option(self, a)]
            if unknown:
                said = ", ".join(_with_suggestion(self, a) for a in unknown)
                message += f"; not recognized: {said}"
        super().error(_LONG_QUOTED.sub(lambda m: shown(m.group(1)), message))


_LONG_QUOTED = re.compile(r"'([^']{81,})'")


def _unknown_option(parser: argparse.ArgumentParser, arg: str) -> bool:
    """`arg` is written as a long option that `parser` has not (nor abbreviates)."""
    if not arg.startswith("--") or arg == "--":
        return False
    name = arg.partition("=")[0]
    return not any(option.startswith(name) for option in parser._option_string_actions)


def _suggestion(parser: argparse.ArgumentParser, arg: str) -> str | None:
    """The option of `parser` closest to the unknown option `arg` (`--target` for `--tagret`),
    or None when none is close."""
    import difflib

    options = [o for o in parser._option_string_actions if o.startswith("--")]
    close = difflib.get_close_matches(arg.partition("=")[0], options, n=1)
    return close[0] if close else None


def _with_suggestion(parser: argparse.ArgumentParser, arg: str) -> str:
    """'--tagret (did you mean --target?)', or the option alone when nothing is close."""
    name = arg.partition("=")[0]
    name = name if len(name) <= 80 else shown(name)
    close = _suggestion(parser, arg)
    return f"{name} (did you mean {close}?)" if close else name


# what a repeated option meant, where there is something more to say than "give it once"
_ONCE_HINTS = {
    "data": "one history file per run: put several series in one long-format file with a "
    "column of series ids (--series-col)",
    "target": "one target per model: train one model per column, or --channel-independent "
    "with the others as --covariates",
}


class _StoreOnce(argparse._StoreAction):
    """argparse's store, refusing a second, different value: argparse keeps the last value of
    a repeated option, so `--data a.csv --data b.csv` trained on b.csv alone and `--target x
    --target y` on y, without a word. The same value twice is harmless and accepted."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given: dict[str, Any] = namespace.__dict__.setdefault("_options_given", {})
        if self.dest in given and given[self.dest] != values:
            hint = _ONCE_HINTS.get(self.dest)

            def said(value: Any) -> str:
                return repr(value) if isinstance(value, str) else str(value)

            raise argparse.ArgumentError(
                self,
                f"given twice, {said(given[self.dest])} then {said(values)}; it takes one "
                "value: give it once" + (f" ({hint})" if hint else ""),
            )
        given[self.dest] = values
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    parser = UrnnParser(
        prog="urnn",
        description="urnn-forecast: train, backtest and register uRNN forecasters, serve "
        "them, and run retraining jobs (Unitary Evolution RNNs, Arjovsky et al. 2016).",
    )
    from urnn_forecast import __version__

    # the installed release, as runs (urnn.package_version) and config.json record it
    parser.add_argument(
        "--version",
        action="version",
        version=f"urnn-forecast {__version__}",
        help="print the installed release and exit",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to run"
    )

    add_benchmark_parser(commands)

    demo = commands.add_parser(
        "demo",
        help="end to end on the bundled ETTh1: train, backtest, register, serve, forecast",
        description=(
            "Train a uRNN forecaster on the bundled ETTh1 file, backtest it beside seasonal "
            "naive, log and register it in MLflow (champion if better), start the forecast "
            "service on a free loopback port, POST a forecast request and print the answer. "
            "10-25 s on two idle CPU cores; where other work keeps the cores busy, "
            "URNN_TORCH_THREADS=1 (131 s -> 28 s on two cores at load 5). The paper's copying "
            "task is `urnn benchmark paper copy`."
        ),
    )
    demo.add_argument(
        "--epochs",
        metavar="N",
        type=positive_int,
        default=None,
        help="maximum training epochs (early stopping may end sooner); default 6",
    )
    demo.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="PATH",
        help="the ETTh1.csv to run on; default: the repository's data/ETT-small/ETTh1.csv, "
        "which an installed wheel or sdist does not carry",
    )
    demo.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where to train; default: URNN_DEVICE or auto",
    )
    demo.add_argument(
        "--stay",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the forecast, keep the service up and start the MLflow UI and a worker "
        "until Ctrl-C; default: yes in a terminal, no otherwise (CI, scripts)",
    )
    demo.set_defaults(handler=_run_demo, subparser=demo)
    _add_train_parser(commands)
    _add_backtest_parser(commands)
    _add_serve_parser(commands)
    _add_worker_parser(commands)
    _add_db_parser(commands)
    add_models_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    """Entry point of the `urnn` script; `settings` lets tests point MLflow at a temp store."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to relaunch under torchrun
    subparser: argparse.ArgumentParser = args.subparser
    if extras:  # said by the command's parser (its usage, `urnn train: error:`), not the top's
        if (listed := _space_separated_list(subparser, args.argv, extras[0])) is not None:
            subparser.error(listed)
        said = " ".join(x if len(x) <= 80 else shown(x) for x in extras)
        close = []  # "--lookbak: did you mean --lookback?"
        for x in extras:
            if _unknown_option(subparser, x) and (option := _suggestion(subparser, x)):
                name = x.partition("=")[0]
                close.append(f"{name if len(name) <= 80 else shown(name)}: did you mean {option}?")
        subparser.error(
            f"unrecognized arguments: {said}" + (f" ({'; '.join(close)})" if close else "")
        )
    if hasattr(args, "seq_len") and args.seq_len < MIN_SEQ_LEN[args.task]:
        subparser.error(
            f"argument --seq-len: the {args.task} task needs T >= {MIN_SEQ_LEN[args.task]}, "
            f"got {args.seq_len}"
        )
    if settings is None:
        try:
            settings = get_settings()
        except SettingsError as error:
            print(f"urnn {args.command}: error: {error}", file=sys.stderr)
            return 2
    # A command line's own environment (the console script, argv None): within one process
    # mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI itself, so an earlier in-process
    # call (tests) would be read as the user's
    from_shell = argv is None and args.command != "db"
    if from_shell and (note := mlflow_variable_note(settings)) is not None:
        print(f"{subparser.prog}: note: {note}", file=sys.stderr)
    from_setting = args.device is None  # the command has no --device, or it was not given
    args.device_given = not from_setting
    if from_setting:
        args.device = settings.device
    # `urnn db` and `urnn models` run no model: a URNN_DEVICE=cuda shared by every container
    # (docker-compose.yml) or copied from a GPU host is no reason to refuse them
    if args.device == "cuda" and getattr(args, "runs_model", True):
        import torch

        if not torch.cuda.is_available():
            if not from_setting:
                subparser.error("argument --device: cuda is not available here; use auto or cpu")
            # the user never typed --device: name the setting that asked for cuda
            print(
                f"{subparser.prog}: error: URNN_DEVICE=cuda: cuda is not available here; set "
                "URNN_DEVICE to auto or cpu"
                + (" (or give --device auto or cpu)" if _has_device_option(subparser) else ""),
                file=sys.stderr,
            )
            return 2
    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
    if args.command in SIGTERM_INTERRUPTS and not sys.stderr.isatty():
        # MLflow's "Downloading artifacts" bars (50 updates a model) in a job's log or a
        # redirected file, where this command's own bars are off
        import os

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from urnn_forecast.tracking import DeletedExperimentError, TrackingServerError

    sigterm = _SigtermAsInterrupt(args.command in SIGTERM_INTERRUPTS)
    try:
        with sigterm:
            exit_code: int = args.handler(args, settings)
    except (TrackingServerError, DeletedExperimentError) as error:
        # what each command that catches them says (train, backtest, models); `urnn benchmark
        # paper` and `urnn demo` ended in a traceback, exit 1
        print(f"{subparser.prog}: error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        return _out_of_memory(args.command, "MemoryError")
    except RuntimeError as error:  # torch's allocator: "DefaultCPUAllocator: can't allocate"
        if "allocate" not in str(error):
            raise
        return _out_of_memory(args.command, str(error).splitlines()[0])
    except FloatingPointError as error:  # training.fit: "urnn diverged in epoch 1: loss nan"
        print(f"urnn {args.command}: error: {error}; try a lower --lr", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `urnn models list | head -1`: the reader has what it wanted
        if not _stdout_broken():
            raise  # a pipe of the command's own (a child, a socket): an error, said as one
        return _reader_left()
    except KeyboardInterrupt as stop:  # Ctrl-C: what stopped and what is kept, not a trace
        said = f": {stop}" if str(stop) else ""
        how = "stopped by SIGTERM" if sigterm.received else "interrupted"
        print(f"\nurnn {args.command}: {how}{said}", file=sys.stderr)
        return 128 + signal.SIGTERM if sigterm.received else 130
    return exit_code


# The commands that work for minutes on files and an MLflow run: the service, the worker and
# the demo handle SIGTERM themselves, and the short ones have nothing to end.
SIGTERM_INTERRUPTS = frozenset({"train", "backtest", "benchmark"})


class _SigtermAsInterrupt:
    """SIGTERM (`kill`, `timeout`, systemd, a batch scheduler's preemption) ends a training or
    backtest as Ctrl-C does: the MLflow run ends KILLED and the line says what is kept. By
    default SIGTERM killed the process where it stood, and the run read RUNNING in the MLflow
    UI for ever. A second SIGTERM kills outright, as the default would. Only the main thread
    can take signals; elsewhere (a test calling `main` from a thread) nothing changes."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.received = False
        self._previous: Any = None

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.received = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    def __enter__(self) -> None:
        if self.active and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        else:
            self.active = False

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGTERM, self._previous)


def _stdout_broken() -> bool:
    """Whether stdout is the pipe that broke (its reader gone: poll says POLLERR), not a
    pipe or socket of the command's own. Where that cannot be asked, assume stdout."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll, or stdout no real stream
        return True
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def _reader_left() -> int:
    """Stdout's reader closed it (`| head`): stop quietly, as a tool killed by SIGPIPE does
    (exit 141), instead of a BrokenPipeError trace or a message blaming the registry. Stdout
    goes to /dev/null so that the interpreter's last flush at exit raises nothing more."""
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _space_separated_list(
    parser: argparse.ArgumentParser, argv: list[str], extra: str
) -> str | None:
    """`--covariates HUFL HULL` (a list written as the usage line `[--covariates ...]` of
    ARCHITECTURE.md suggests) read as one column and a stray word, said as "unrecognized
    arguments: HULL". When the stray words follow a list option's one value, say how lists
    are written; None otherwise."""
    if extra.startswith("-") or extra not in argv:
        return None
    at = len(argv) - 1 - argv[::-1].index(extra)  # the stray word, not an earlier value
    option = argv[at - 2] if at >= 2 else ""
    actions = {flag: a for a in parser._actions for flag in a.option_strings}
    action = actions.get(option)
    if action is None or not str(action.metavar or "").endswith("...]"):
        return None
    words = [argv[at - 1]]
    for word in argv[at:]:
        if word.startswith("-"):
            break
        words.append(word)
    return (
        f"argument {option}: takes one value, {action.metavar}: write "
        f"{option} {','.join(words)} (or give {option} once per value); "
        f"got {' '.join(shown(w) if len(w) > 80 else w for w in words)}"
    )


def _out_of_memory(command: str, said: str) -> int:
    """The settings ask for more memory than the machine has: one line, not torch's trace."""
    print(
        f"urnn {command}: error: not enough memory for these settings ({shown(said)}); lower "
        "--hidden-size, --lookback, --horizon or --batch-size",
        file=sys.stderr,
    )
    return 1


def _has_device_option(parser: argparse.ArgumentParser) -> bool:
    return any("--device" in action.option_strings for action in parser._actions)


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from urnn_forecast.demo import DemoConfig, DemoError, DemoInputError, run_demo

    settings = settings.model_copy(update={"device": args.device})
    stay = sys.stdin.isatty() if args.stay is None else args.stay
    config = DemoConfig(stay=stay)
    if args.epochs is not None:
        config = replace(config, max_epochs=args.epochs)
    if args.data is not None:
        config = replace(config, data=args.data)
    start = time.perf_counter()
    try:
        run_demo(settings, config)
    except DemoError as error:  # bad input 2, as every command's; a step that failed 1
        print(f"urnn demo: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, DemoInputError) else 1
    print_mlflow_location(settings, config.experiment)
    if not stay:
        print("  the whole stack until Ctrl-C:  urnn demo --stay   (or make demo in a terminal)")
    print(f"wall time {time.perf_counter() - start:.1f} s")
    return 0


def _check_model_timestamp_columns(
    args: argparse.Namespace, recorded: dict[str, Any], load: dict[str, Any]
) -> None:
    """The timestamp column(s) and format a backtest takes from the model's training, checked
    against this file. A file whose time column has another name failed "no column 'Zeit'"
    though no --timestamp-col was given; naming its column then still applied the model's
    --timestamp-format, written for the model's column(s), not this one, with no way back
    to inference: a new --timestamp-col drops it (unless --timestamp-format is given too)."""
    from training.data import header_columns

    own = recorded.get("timestamp_col")
    if not own:
        return
    own_columns = [own] if isinstance(own, str) else list(own)
    if args.timestamp_col:
        if args.timestamp_format is None and list(args.timestamp_col) != own_columns:
            load.pop("timestamp_format", None)
        return
    columns = header_columns(args.data, load.get("sep") or ",")
    missing = [name for name in own_columns if name not in columns]
    if missing:
        named = " --timestamp-col ".join(map(repr, own_columns))
        raise UsageError(
            f"the model was trained with --timestamp-col {named} (its timestamp column"
            f"{'s' if len(own_columns) > 1 else ''}) and {Path(args.data).name} has no column "
            f"{missing[0]!r} (it has: {', '.join(columns)}); give --timestamp-col NAME (this "
            "file's timestamp column)"
        )


def _check_model_columns(
    overrides: dict[str, Any],
    recorded: dict[str, Any],
    target: str,
    covariates: tuple[str, ...],
) -> None:
    """UsageError where `urnn backtest --target/--covariates` name other columns than the
    model reads (the only choice), before the file is read: `--target HUFL` on a model of
    'OT' with covariate 'HUFL' was refused as "target and covariates must be distinct
    columns, got target='HUFL', covariates=['HUFL']", covariates the user never gave."""
    trained_target = str(recorded.get("target", target))
    trained_covariates = [str(c) for c in recorded.get("covariates", covariates)]
    given_target = str(overrides.get("target", trained_target))
    given_covariates = [str(c) for c in overrides.get("covariates", trained_covariates)]
    if given_target == trained_target and given_covariates == trained_covariates:
        return
    given = (
        f"--target {given_target!r}"
        if given_target != trained_target
        else f"--covariates {','.join(given_covariates) or '(none)'}"
    )
    said = (
        f"the model was trained on target {trained_target!r} with covariates "
        f"{trained_covariates}; {given} differs"
    )
    # the model's own "Temp, °C" given as --covariates, which split it at its comma
    cut = [c for c in trained_covariates if "," in c and set(_names(c)) <= set(given_covariates)]
    if given_target == trained_target and cut:
        pieces = ", ".join(repr(p) for c in cut for p in _names(c))
        raise UsageError(
            f"{said}; --covariates splits on commas: it read {', '.join(map(repr, cut))} as "
            f"{pieces}; leave --covariates out: the backtest reads the model's own covariates"
        )
    raise UsageError(
        f"{said}: the backtest reads the model's own columns (leave the option out; a file "
        "whose column has another name needs it renamed)"
    )


def loader_error(error: BaseException, args: argparse.Namespace) -> BaseException:
    """`error` as `urnn train` / `urnn backtest` print it: the data loader's own errors
    (DataValidationError, which names LoadConfig's fields, as the jobs API and a --config file
    read them) in the options the user types (config_fields.in_flags); others as they are,
    such as a --config file's refusal, which names the file's own fields. A job's run
    (`--started-json`, given by the job worker alone) keeps the fields: its user set them as
    `config.load.*` of POST /jobs, and typed no option."""
    from training.validation import DataValidationError

    if not isinstance(error, DataValidationError) or getattr(args, "started_json", None):
        return error
    return UsageError(in_flags(str(error), {**LOAD_FLAGS, **SPLIT_FLAGS}))


def _comma_note(args: argparse.Namespace, error: BaseException, *, backtest: bool) -> str:
    """What follows a missing column when --covariates cut a column's name at its commas
    ("Temp, °C" read as 'Temp' and '°C'): how such a name is given instead; "" otherwise.
    The option keeps splitting on commas (it is documented so, and repeatable), so the way
    out is said rather than guessed."""
    from training.data import header_columns
    from training.validation import DataValidationError, MissingColumnError

    if not isinstance(error, MissingColumnError) or not args.covariates:
        return ""
    try:
        columns = header_columns(args.data, args.sep or ",")
    except (DataValidationError, OSError):
        return ""
    given = set(args.covariates)
    cut = [c for c in columns if "," in c and set(_names(c)) <= given]
    if not cut:
        return ""
    pieces = ", ".join(repr(p) for c in cut for p in _names(c))
    note = f"; --covariates splits on commas: it read {', '.join(map(repr, cut))} as {pieces}"
    if backtest:
        return f"{note}; leave --covariates out: the backtest reads the model's own covariates"
    example = json.dumps({"load": {"covariates": cut}}, ensure_ascii=False)
    return f"{note}; name such columns in a --config file instead: {example}"


class _DuplicateKeyError(ValueError):
    """A JSON object that names one key twice (json.loads keeps the last one silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: `{"fit": {"lr": 1e-3, "lr": 5}}` trained at lr 5 without a
    word, and a second "fit" section replaced the first whole; refused, naming the key."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(
                f"the key {key!r} is given twice in one object (JSON would keep the last one "
                "and drop the other without a word): give it once"
            )
        out[key] = value
    return out


def _read_config_file(path: str) -> dict[str, dict[str, Any]]:
    try:
        # utf-8-sig: a byte-order mark (Windows Notepad's UTF-8) is no JSON error, as it is
        # none in a history file; json.loads refused it ("Unexpected UTF-8 BOM")
        text = Path(path).read_text(encoding="utf-8-sig")
        raw = json.loads(text, object_pairs_hook=_unique_keys)
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except _DuplicateKeyError as error:
        raise UsageError(f"--config {path}: {error}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"--config {path}: not a readable JSON file ({error})") from None
    except RecursionError:
        raise UsageError(f"--config {path}: its JSON is nested too deeply to read") from None
    if not isinstance(raw, dict):
        raise UsageError(f"--config {path}: expected a JSON object with keys {CONFIG_SECTIONS}")
    unknown = sorted(set(raw) - set(CONFIG_SECTIONS))
    if unknown:
        raise UsageError(
            f"--config {path}: unknown section(s) {unknown}; allowed: {', '.join(CONFIG_SECTIONS)}"
        )
    for key, value in raw.items():
        if not isinstance(value, dict):
            raise UsageError(f"--config {path}: section {key!r} must be a JSON object")
    return raw


def _build(cls: Any, values: dict[str, Any], what: str) -> Any:
    """cls(**values), an unknown or mistyped field as a UsageError naming `what`."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        said = f"unknown field(s) {shown_names(unknown)}; known: {', '.join(sorted(known))}"
        raise UsageError(f"{what}: {said}")
    if (problem := check_fields(cls, values)) is not None:
        raise UsageError(f"{what}: {problem}")
    try:
        return cls(**values)
    except TypeError as error:
        raise UsageError(f"{what}: {error}") from None


def _train_config(args: argparse.Namespace) -> "TrainConfig":
    from models.forecaster import ForecasterConfig, new_model_problem
    from training.data import LoadConfig
    from training.fit import FitConfig
    from training.pipeline import TrainConfig

    file = _read_config_file(args.config) if args.config else {}
    model = dict(file.get("model", {}))
    for option, key in (
        ("kind", "kind"),
        ("lookback", "lookback"),
        ("horizon", "horizon"),
        ("hidden_size", "hidden_size"),
        ("segment_length", "segment_length"),
        ("ensemble", "ensemble"),
        ("quantiles", "quantiles"),
    ):
        if getattr(args, option) is not None:
            model[key] = getattr(args, option)
    fit = dict(file.get("fit", {}))
    if args.decoder == "auto":  # a training choice: the search fits each decoder in turn
        fit["decoder_search"] = True
    elif args.decoder is not None:
        model["decoder"] = args.decoder
    for option, key in (
        ("epochs", "max_epochs"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("seed", "seed"),
    ):
        if getattr(args, option) is not None:
            fit[key] = getattr(args, option)
    if getattr(args, "device_given", True) or "device" not in fit:
        # --device, else the config file's fit.device, else URNN_DEVICE: a file's own choice
        # was overwritten by the setting's default ('tpu' in it went unnoticed)
        fit["device"] = args.device
    load = {**file.get("load", {}), **_load_overrides(args)}
    train = dict(file.get("train", {}))
    for option, key in (
        ("split", "split_method"),
        ("train_fraction", "train_fraction"),
        ("val_fraction", "val_fraction"),
        ("test_series", "test_series"),
        ("val_series", "val_series"),
        ("train_stride", "train_stride"),
        ("backtest_step", "backtest_step"),
        ("backtest_windows", "backtest_windows"),
        ("season_length", "season_length"),
        ("metric", "metric"),
        ("non_negative", "non_negative"),
        ("min_improvement", "min_improvement"),
        ("registered_name", "registered_name"),
        ("experiment", "experiment"),
        ("run_name", "run_name"),
    ):
        if getattr(args, option) is not None:
            train[key] = getattr(args, option)
    if args.no_promote:
        train["promote"] = False
    if args.progress is not None:
        train["progress"] = args.progress
    elif "progress" not in train:
        train["progress"] = sys.stderr.isatty()
    if args.calendar:
        train["calendar"] = True
    if args.channel_independent:
        train["channel_independent"] = True
    for reserved in ("data", "load", "model", "fit"):
        if reserved in train:
            raise UsageError(f"--config: set {reserved!r} with its option or section, not 'train'")
    _calendar_auto(model, train)
    # the file's values no option replaced: a refusal of one names `--config FILE: fit.x`
    merged = {"load": load, "model": model, "fit": fit, "train": train}
    from_file = {
        section: {
            key: value
            for key, value in file.get(section, {}).items()
            if key in merged[section] and merged[section][key] is value
        }
        for section in merged
    }

    def refused(section: str, said: str) -> UsageError:
        return _config_file_error(args.config, from_file, section, said)

    try:
        model_config = _build(ForecasterConfig, model, "model config")
    except ValueError as error:
        hint = auto_decoder_hint(
            error,
            model,
            "give --decoder auto (or fit.decoder_search true in the --config file) and leave "
            "model.decoder out",
        )
        raise refused("model", f"{error}{hint}") from None
    if (problem := new_model_problem(model_config)) is not None:
        raise refused("model", f"model config: {problem}")
    try:
        fit_config = _build(FitConfig, fit, "fit config")
    except ValueError as error:
        raise refused("fit", str(error)) from None
    if (problem := seed_problem(fit_config.seed, model_config.ensemble)) is not None:
        if args.seed is not None:
            raise UsageError(f"--seed: {problem}")
        raise refused("fit", f"fit config: {problem}")
    try:
        load_config = _build(LoadConfig, load, "load config")
    except ValueError as error:
        raise refused("load", str(error)) from None
    try:
        return TrainConfig(
            data=args.data,
            load=load_config,
            model=model_config,
            fit=fit_config,
            **_build_train_fields(train),
        )
    except ValueError as error:
        raise refused("train", str(error)) from None


def _config_file_error(
    path: str | None, from_file: Mapping[str, Mapping[str, Any]], section: str, said: str
) -> UsageError:
    """A refusal of `section`'s values: `--config PATH: fit.max_epochs: ...` when it is about a
    field the file gives (config_fields.field_in_section, as a job's 422), else `said` as it
    is (an option's value, a default, the whole)."""
    plain = said.removeprefix(f"{section} config: ")
    field, message = field_in_section(from_file, section, plain)
    # not the file's: the load section's values are options typed (`--decimal ,`), said so,
    # as are the split's (`--val-series` without `--test-series`)
    flags = {"load": LOAD_FLAGS, "train": SPLIT_FLAGS}.get(section)
    typed = UsageError(said if flags is None else in_flags(said, flags))
    if path is None or "." not in field:
        return typed
    given, _, key = field.partition(".")
    if key not in from_file.get(given, {}):
        return typed
    return UsageError(f"--config {path}: {field}: {message}")


def auto_decoder_hint(error: Exception, model: Mapping[str, Any], instead: str) -> str:
    """For a model section's "decoder": "auto" (refused: no model has that decoder), where
    "auto" lives instead (`urnn train --decoder auto`, FitConfig.decoder_search), in the
    caller's terms; "" for any other error."""
    if model.get("decoder") != "auto" or getattr(error, "field", None) != "decoder":
        return ""
    return (
        " ('auto' is not a decoder but a search that trains each one and keeps the better on "
        f"validation: {instead})"
    )


def _calendar_auto(model: dict[str, Any], train: dict[str, Any]) -> None:
    """A model section's "n_calendar": "auto" is train.calendar (`--calendar`): the number is
    the data's frequency's, set once it is loaded. In place."""
    if model.get("n_calendar") == "auto":
        if train.get("calendar") is False:
            raise UsageError(
                'model.n_calendar "auto" asks for calendar features and train.calendar false '
                "for none: give one of them"
            )
        del model["n_calendar"]
        train["calendar"] = True


def seed_problem(seed: object, members: int = 1) -> str | None:
    """Why `seed` (an ensemble's first member's; member i trains with seed + i) is not one
    numpy's RNG takes, or None: found before a run exists, not when the fit seeds numpy."""
    if type(seed) is not int or not 0 <= seed <= SEED_MAX:
        return f"seed must be an integer from 0 to 2**32 - 1 ({SEED_MAX}), got {seed!r}"
    if seed + members - 1 > SEED_MAX:
        return (
            f"seed {seed} with an ensemble of {members} members seeds member {members} with "
            f"{seed + members - 1}, past 2**32 - 1 ({SEED_MAX}); give a seed up to "
            f"{SEED_MAX - members + 1}"
        )
    return None


def _build_train_fields(train: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    from training.pipeline import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "load", "model", "fit"}
    unknown = sorted(set(train) - known)
    if unknown:
        raise UsageError(
            f"train config: unknown field(s) {shown_names(unknown)}; known: {sorted(known)}"
        )

    if (problem := check_fields(TrainConfig, train)) is not None:
        raise UsageError(f"train config: {problem}")
    if (problem := _unread_fraction(train)) is not None:  # it was ignored without a word
        raise UsageError(f"train config: {problem}")
    return train


def _unread_fraction(train: Mapping[str, Any]) -> str | None:
    """Why a train_fraction or val_fraction given in `train` would be read by nothing: the
    ETT split's spans are fixed, named test_series make every other series train (but the
    validating ones), named val_series are the validating ones. None when each is read."""
    method = train.get("split_method")
    for name in ("train_fraction", "val_fraction"):
        if name not in train:
            continue
        if method == "ett":
            return (
                f"{name} is read by the splits 'fractions' and 'series' only; split 'ett' has "
                "fixed spans (the first 12 months train, the next 4 validate, the next 4 "
                f"test, a month being 30 days): leave {name} out, or set split_method "
                "'fractions'"
            )
        names = "val_series" if name == "val_fraction" else "test_series"
        if method == "series" and train.get(names):
            said = "validate" if name == "val_fraction" else "are held out for test"
            rest = (
                "the others train"
                if name == "val_fraction"
                else "every other series trains, but the last val_fraction of them (or "
                "val_series), which validate"
            )
            return (
                f"{name} is not read when {names} names the series that {said}: {rest}; "
                f"leave {name} out, or {names}"
            )
    return None


def train_config_from_sections(
    data: str, sections: Mapping[str, Any], *, what: str = "config"
) -> "TrainConfig":
    """A TrainConfig from `--config`-style sections (`{"model": {...}, "fit": {...}, "load":
    {...}, "train": {...}}`) with the same checks as `urnn train --config`; retraining jobs
    (jobs/spec.py) validate their parameters with it. Errors are UsageErrors naming
    `<what>.<section>` and the field."""
    from models.forecaster import ForecasterConfig, new_model_problem
    from training.data import LoadConfig
    from training.fit import FitConfig, decoder_search_error, stream_crop_error
    from training.pipeline import CHANNEL_EMBEDDING_REFUSAL, TrainConfig

    unknown = sorted(set(sections) - set(CONFIG_SECTIONS))
    if unknown:
        raise UsageError(
            f"{what}: unknown section(s) {shown_names(unknown)}; allowed: "
            f"{', '.join(CONFIG_SECTIONS)}"
        )
    for key, value in sections.items():
        if not isinstance(value, Mapping):
            raise UsageError(f"{what}.{key}: must be a JSON object")
    train = dict(sections.get("train", {}))
    for reserved in ("data", "load", "model", "fit"):
        if reserved in train:
            raise UsageError(f"{what}.train: set {reserved!r} in its own section, not 'train'")
    given = {section: dict(sections.get(section, {})) for section in ("load", "model", "fit")}
    _calendar_auto(given["model"], train)
    built: dict[str, Any] = {}
    for section, cls in (("load", LoadConfig), ("model", ForecasterConfig), ("fit", FitConfig)):
        try:
            built[section] = _build(cls, given[section], f"{what}.{section}")
        except UsageError:
            raise
        except ValueError as error:  # the config's own __post_init__ checks
            hint = auto_decoder_hint(
                error,
                given["model"] if section == "model" else {},
                f"set {what}.fit.decoder_search to true and leave {what}.model.decoder out",
            )
            raise UsageError(f"{what}.{section}: {error}{hint}") from None
    if (problem := new_model_problem(built["model"])) is not None:
        raise UsageError(f"{what}.model: {problem}")
    if (problem := decoder_search_error(built["model"], built["fit"])) is not None:
        raise UsageError(f"{what}.fit: {problem}")
    if (problem := stream_crop_error(built["model"], built["fit"])) is not None:
        raise UsageError(f"{what}.fit: {problem}")
    if (problem := seed_problem(built["fit"].seed, built["model"].ensemble)) is not None:
        raise UsageError(f"{what}.fit: {problem}")
    if (channels := built["model"].n_channels) > 0:  # named as the model's, not train's
        raise UsageError(f"{what}.model: {CHANNEL_EMBEDDING_REFUSAL.format(n=channels)}")
    try:
        return TrainConfig(data=data, **built, **_build_train_fields(train))
    except UsageError as error:
        raise UsageError(f"{what}.train: {str(error).removeprefix('train config: ')}") from None
    except (TypeError, ValueError) as error:
        raise UsageError(f"{what}.train: {error}") from None


def _unread_option_lines(args: argparse.Namespace, kind: str) -> list[str]:
    """The model options typed that `kind` does not read, said as unread covariates are
    (training.pipeline.unread_covariate_lines): `--model linear --hidden-size 64` or
    `--model repeat_last --epochs 50 --lr 0.01` ran without a word, as if they had shaped the
    model. Not refused: swapping --model on one command line compares a baseline."""
    from models.forecaster import FORECASTERS

    cls = FORECASTERS[kind]
    lines = []
    if not cls.RECURRENT:
        given = [
            f"{option} {value}"
            for option, value in (
                ("--hidden-size", args.hidden_size),
                ("--segment-length", args.segment_length),
            )
            if value is not None
        ]
        if given:
            readers = ", ".join(k for k, c in FORECASTERS.items() if c.RECURRENT)
            lines.append(
                f"{', '.join(given)}: not read by kind {kind!r} (the recurrent kinds read "
                f"them: {readers})"
            )
    if not cls.TRAINABLE:
        given = [
            f"{option} {value:g}" if isinstance(value, float) else f"{option} {value}"
            for option, value in (("--epochs", args.epochs), ("--lr", args.lr))
            if value is not None
        ]
        if given:
            lines.append(
                f"{', '.join(given)}: not read by kind {kind!r}, which is not trained "
                "(parameter-free)"
            )
    return lines


def _run_train(args: argparse.Namespace, settings: Settings) -> int:
    import os

    errors = input_errors()
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from training.fit import nproc_error

        # the kind is the config's (--model or the --config file's model.kind): checked here,
        # not by each torchrun process once the data is loaded
        try:
            kind = _train_config(args).model.kind
        except errors as error:
            return command_failed(
                "train", loader_error(error, args), _comma_note(args, error, backtest=False)
            )
        except ValueError as error:
            return command_failed("train", error)
        if (problem := nproc_error(kind, args.nproc)) is not None:
            return command_failed("train", UsageError(f"--nproc: {problem}"))
        return _launch_distributed(args, settings)
    from training.pipeline import TrainingStoreError

    start = time.perf_counter()
    started: str | None = args.started_json
    markers = None if started is None else _JobMarkers(Path(started))
    try:
        # before the config: LoadConfig's CSV checks (a decimal mark that is also the
        # separator) do not apply to a Parquet file
        check_data_path(args.data)
        _check_text_options(args, args.data)
        config = _train_config(args)
        check_data_path(config.data)
        if config.fit.device == "cuda" and not getattr(args, "device_given", True):
            import torch

            if not torch.cuda.is_available():
                raise UsageError("--config fit.device: cuda is not available here; use auto or cpu")
        inputs = {"--data": config.data, "--config": args.config}
        for option, path in (("--result-json", args.result_json), ("--started-json", started)):
            if path:  # checked before the fit, not found out after it
                _check_writable_file(path, option, inputs)
        from training import distributed
        from training.pipeline import train_pipeline, train_replica
        from urnn_forecast.tracking import check_tracking_server, check_tracking_store

        check_tracking_store(settings, logs_runs=True)  # before the data is read
        check_tracking_server(settings)  # a dead server: seconds, not after the data's load

        ranks = distributed.init(config.fit.device)
        if ranks is not None and ranks.rank != 0:
            train_replica(config)
            distributed.finish()
            return 0

        print(
            f"Training {config.model.kind} (lookback {config.model.lookback}, horizon "
            f"{config.model.horizon}) on {config.data}, target {config.load.target!r}"
            + (
                f", covariates {', '.join(map(repr, config.load.covariates))}"
                if config.load.covariates
                else ""
            )
            + (", each column a series of its own" if config.channel_independent else ""),
            flush=True,
        )
        for line in _unread_option_lines(args, config.model.kind):
            print(f"  {line}", flush=True)
        result = train_pipeline(
            config,
            settings,
            on_data_report=_print_data_report,
            on_run_started=None if markers is None else markers.started,
            on_registering=None if markers is None else markers.registering,
            on_epoch=_EpochPrinter(config.fit.max_epochs),
        )
        distributed.finish()
    except errors as error:
        return command_failed(
            "train", loader_error(error, args), _comma_note(args, error, backtest=False)
        )
    except ValueError as error:  # e.g. TrainConfig's own checks
        return command_failed("train", error)
    except TrainingStoreError as error:  # not the input's fault: exit 1, in one line
        print(f"urnn train: error: {error}", file=sys.stderr)
        return 1
    import pandas as pd

    from training.metrics import json_scores, score_text
    from training.realised_reference import reference_line

    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print("\nBacktest (test span, original units):")
        print(result.tables["overall"].to_string(float_format=score_text))
    print(f"MASE scaled by the seasonal naive forecast of {result.mase_season}")
    if result.mase_note:
        print(result.mase_note)
    if result.realised_reference is not None:
        print(reference_line(result.realised_reference))
    print(f"\nrun {result.run_id}: {fit_summary(result)}")
    if result.decoder_scores:
        scores = ", ".join(f"{k} {score_text(v)}" for k, v in result.decoder_scores.items())
        print(f"decoder {result.decoder}, chosen on validation (best val score of each: {scores})")
    if result.version is not None:
        print(f"registered {result.registered_name} version {result.version} (alias challenger)")
        verdict = "promoted to champion" if result.promoted else "not promoted"
        print(f"{verdict}: {result.reason}")
    else:
        print(f"logged model {result.model_uri} (not registered)")
    print_mlflow_location(settings, config.experiment)
    print(f"wall time {time.perf_counter() - start:.1f} s")
    if args.result_json:
        outcome = {
            "run_id": result.run_id,
            "registered_name": result.registered_name,
            "version": result.version,
            "promoted": result.promoted,
            "reason": result.reason,
            "scores": json_scores(result.scores),  # a MASE with no scale: null, not NaN
        }
        Path(args.result_json).write_text(json.dumps(outcome, indent=2, allow_nan=False))
    return 0


def fit_summary(result: "TrainResult") -> str:
    """What `urnn train`'s fit ran, for its closing line: a baseline's single pass is not an
    epoch of training, and a decoder search or an ensemble ran more epochs than the kept model
    shows (the candidate it did not keep; every member's), which the line counted as if not."""
    from training.validation import plural

    if not result.trained:
        return "a parameter-free baseline: nothing trained"
    extra = result.epochs_trained - result.epochs
    discarded = f", and {plural(extra, 'epoch')} of the decoder not chosen" if extra > 0 else ""
    if result.ensemble > 1:
        return (
            f"an ensemble of {result.ensemble} members, {plural(result.epochs, 'epoch')} of "
            f"theirs{discarded} (member 1's best epoch {result.best_epoch})"
        )
    return f"{plural(result.epochs, 'epoch')}{discarded}, best epoch {result.best_epoch}"


def _served_error_said(measured: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> str:
    """`urnn backtest`'s line in the service's realised units (training.realised_reference):
    this backtest's figures beside the ones the model's own training backtest stored, the
    reference UrnnRealisedErrorAboveBacktest reads, so that a model erring more on newer data
    shows in the units the alert will use."""
    from training.realised_reference import lead_figures, reference_mase

    here = (
        "none (no step could be scored)"
        if measured is None
        else lead_figures(measured["mase_by_lead"])
    )
    stored = reference_mase(meta)
    trained = (
        "none (a model trained before urnn train stored it)"
        if stored is None
        else lead_figures(stored)
    )
    return (
        "realised MASE by lead, as the service scores a served forecast (|actual - median| over "
        f"the look-back's mean one-step change): this backtest {here}; the model's training "
        f"backtest {trained}"
    )


class _EpochPrinter:
    """One line per epoch of `urnn train` (and so of a job's log): a fit of up to 100 epochs is
    not silent for minutes, and the line says whether validation still improves."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs

    def __call__(self, record: "EpochRecord") -> None:
        which = "".join(
            f"{_fit_part(part)}, " for part in (record.candidate or "").split("/") if part
        )
        from tqdm import tqdm

        best = "  (best so far)" if record.improved else ""
        if math.isnan(record.train_loss):  # a parameter-free baseline: nothing was trained
            line = (
                f"  {which}no training (a parameter-free baseline; its intervals calibrated on "
                f"the train windows): val loss {record.val_loss:.4f}, val MAE (scaled) "
                f"{record.val_mae:.4f}, {record.seconds:.1f} s"
            )
        else:
            line = (
                f"  {which}epoch {record.epoch}/{self.max_epochs}: train loss "
                f"{record.train_loss:.4f}, val loss {record.val_loss:.4f}, val MAE (scaled) "
                f"{record.val_mae:.4f}, lr {record.lr:.1e}, {record.seconds:.1f} s{best}"
            )
        # through tqdm: printed above the progress bars (--progress), not through them
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


def _fit_part(tag: str) -> str:
    """An epoch record's candidate tag in words: "member2" -> "member 2", "pmf" -> "pmf
    decoder" (training.fit tags ensemble members and the decoders of --decoder auto)."""
    if tag.startswith("member") and tag[len("member") :].isdigit():
        return f"member {tag[len('member') :]}"
    return f"{tag} decoder"


class _JobMarkers:
    """`--started-json`: what the job worker reads while `urnn train` runs, written whole (a
    reader polling the file never sees half of it: written beside it, then renamed over it):
    the run id once the run exists, then `registering: true` just before the model is logged
    and registered (the worker no longer stops the run from there: docs/jobs.md)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id: str | None = None

    def started(self, run_id: str) -> None:
        self.run_id = run_id
        self._write(registering=False)

    def registering(self) -> None:
        self._write(registering=True)

    def _write(self, *, registering: bool) -> None:
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text(json.dumps({"run_id": self.run_id, "registering": registering}))
        partial.replace(self.path)


def _print_data_report(lines: Sequence[str]) -> None:
    """The loader's decisions (sorted, duplicates merged, gaps filled...) belong on the terminal
    before a long fit: a user should not have to open the run's artifacts to learn that 5 % of
    the values were interpolated."""
    print("Data:")
    for line in lines:
        print(f"  {line}")
    print(flush=True)


def _model_columns_note(error: BaseException, target: str, covariates: Sequence[str]) -> str:
    """After "no column 'Pressure'" where the model's recorded columns were read: that the
    model reads it, a column the user of `urnn backtest` never typed. "" for another column
    (a --timestamp-col or --series-col typed wrong), which the error names well enough."""
    if not any(f"no column {name!r}" in str(error) for name in (target, *covariates)):
        return ""
    said = ", ".join(map(repr, covariates))
    reads = f"covariate {said}" if len(covariates) == 1 else f"covariates {said}"
    return (
        f"; the model reads {reads} beside {target!r}, its target: backtest it on a file that "
        "holds each of them under its name"
        if covariates
        else f"; the model forecasts {target!r}: backtest it on a file that holds it"
    )


def _run_backtest(args: argparse.Namespace, settings: Settings) -> int:
    errors = input_errors()
    try:
        return _backtest(args, settings)
    except errors as error:
        return command_failed(
            "backtest", loader_error(error, args), _comma_note(args, error, backtest=True)
        )


# What `urnn backtest --output DIR` writes at DIR's top (training.backtest
# write_backtest_tables, and the manifest and report written beside them)
BACKTEST_OUTPUT_FILES = (
    "overall.csv",
    "by_step.csv",
    "by_series.csv",
    "overall.json",
    "forecasts.parquet",
    "backtest.json",
    "data_report.txt",
    "realised_reference.json",  # where a score in the service's units could be made
)
# ... and under DIR/plots (training.backtest.save_plots)
BACKTEST_PLOT_FILES = ("forecasts.png", "error_by_horizon.png")
FILES_LISTED = 5  # the files an --output message names; the rest are counted


def _earlier_backtest_files(output: str) -> list[Path]:
    """The files under `--output DIR` that `urnn backtest` writes (BACKTEST_OUTPUT_FILES, the
    plots), left by an earlier backtest: each of them is written again or, where this run
    writes none (no plot, no realised reference), would stay beside the new ones as if this
    run's. Files (links included), not folders: a folder of that name is no earlier output."""
    folder = Path(output)
    names = [*BACKTEST_OUTPUT_FILES, *(f"plots/{name}" for name in BACKTEST_PLOT_FILES)]
    found = [folder / name for name in names]
    return sorted(
        (path for path in found if path.is_symlink() or path.is_file()),
        key=lambda path: path.relative_to(folder).as_posix(),
    )


def _files_said(output: str, paths: Sequence[Path]) -> str:
    names = [path.relative_to(output).as_posix() for path in paths]
    more = f" and {len(names) - FILES_LISTED:,} more" if len(names) > FILES_LISTED else ""
    return ", ".join(names[:FILES_LISTED]) + more


def _check_output_is_new(output: str | None, overwrite: bool) -> None:
    """UsageError where `--output DIR` holds an earlier backtest's files and --overwrite is not
    given: some of them were replaced and others kept, the folder then mixing two backtests
    without a word. Checked before any work."""
    if not output or overwrite or not (earlier := _earlier_backtest_files(output)):
        return
    raise UsageError(
        f"--output {output}: holds an earlier backtest's files ({_files_said(output, earlier)}); "
        "give a new or empty folder, or --overwrite to remove them first (files urnn backtest "
        "does not write are kept)"
    )


def _remove_earlier_backtest(output: str) -> None:
    """--overwrite: the earlier backtest's files removed before this one writes its own (none
    of it left to pass for this run's), and said; files it does not write are kept, and
    DIR/plots too where such a file is left there."""
    from training.validation import plural

    earlier = _earlier_backtest_files(output)
    if not earlier:
        return
    for path in earlier:
        try:
            path.unlink()
        except OSError as error:
            raise UsageError(
                f"--output {output}: cannot remove the earlier backtest's {path.name} "
                f"({error.strerror or error}); remove it, or give another folder"
            ) from None
    plots = Path(output) / "plots"
    if plots.is_dir() and not any(plots.iterdir()):
        plots.rmdir()
    print(
        f"--overwrite: removed the earlier backtest's {plural(len(earlier), 'file')} from "
        f"{output} "
        f"({_files_said(output, earlier)}); files urnn backtest does not write are kept",
        flush=True,
    )


def _check_output_spares_data(output: str | None, data: str) -> None:
    """UsageError where `--output DIR` would write over the --data file: a history kept as
    DIR/forecasts.parquet (or overall.csv, ...) was replaced by the backtest's own tables."""
    if not output or not Path(data).exists():
        return
    for name in BACKTEST_OUTPUT_FILES:
        written = Path(output) / name
        if written.exists() and written.samefile(data):
            raise UsageError(
                f"--output {output}: the backtest writes {name} there, which is the --data "
                "file; give another folder"
            )


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    check_data_path(args.data)
    _check_text_options(args, args.data)
    check_output_folder(args.output)
    _check_output_spares_data(args.output, args.data)
    if args.overwrite and not args.output:
        raise UsageError("--overwrite replaces the files of --output DIR, which was not given")
    _check_output_is_new(args.output, args.overwrite)
    if args.refit and args.backtest_windows is None:
        raise UsageError(
            "--refit fits one model per origin: give --backtest-windows N (a handful: each is "
            "a whole training run)"
        )
    if args.refit_epochs is not None and not args.refit:
        raise UsageError("--refit-epochs caps the fits of --refit, which was not given")
    import dataclasses

    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from models.forecaster import FORECASTERS
    from training.backtest import (
        BacktestConfig,
        backtest,
        uncalibrated_note,
        write_backtest_tables,
    )
    from training.data import LoadConfig, channels_as_series, header_columns, load_data
    from training.fit import FitConfig
    from training.metrics import filled_note, score_text, unscaled_note, zero_width_note
    from training.mlflow_model import calendar_clock
    from training.paper_benchmark import resolve_device
    from training.pipeline import (
        calendar_clock_note,
        seen_rows_note,
        spike_lines,
        stuck_run_lines,
    )
    from training.registry import load_registered, resolve_model_source
    from training.seasonality import mase_season
    from training.split import SplitConfig, shortest_train_span, split_data
    from training.validation import (
        WEEKDAYS,
        ColumnWithoutValuesError,
        MissingColumnError,
        SeriesTooShortError,
        TimestampParseError,
        same_frequency,
        week_anchor,
        week_start_problem,
    )
    from urnn_forecast import __version__
    from urnn_forecast.tracking import check_tracking_server, check_tracking_store, missing_store

    check_tracking_store(settings, create=False)  # a file store, a URNN_VAR_DIR that is a file
    if args.model_uri.startswith(("models:", "runs:")) and (missing := missing_store(settings)):
        raise UsageError(missing)  # a local folder's model needs no store
    check_tracking_store(settings)
    check_tracking_server(settings)  # seconds, not MLflow's minutes of retries
    mlflow.set_tracking_uri(settings.resolved_tracking_uri())
    try:
        # an alias is read once: the version it names is the one loaded, printed and recorded
        source = resolve_model_source(args.model_uri)
        predictor = load_registered(source.load_uri)
    except (MlflowException, OSError, ValueError, KeyError, TypeError) as error:
        # ValueError: a damaged weights.pt or config.json (CheckpointError, ModelConfigError),
        # a config this release cannot build; KeyError/TypeError: a config missing a field
        said = str(error) if isinstance(error, (MlflowException, OSError, ValueError)) else ""
        said = said or f"{type(error).__name__}: {error}"
        reason = " ".join(said.split())  # MLflow's multi-line artifact listing, one line
        raise UsageError(
            f"--model {args.model_uri}: cannot load it ({reason}); give a registered model "
            "(models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME/latest), a run's model "
            "(runs:/RUN_ID/model) or a folder holding config.json + weights.pt"
        ) from None
    meta = predictor.meta
    recorded = dict(meta.get("load", {}))
    recorded.pop("min_length", None)
    recorded.pop("series_id", None)  # the training file's name; a new file names itself
    if args.series_id is not None and args.series_col is None:
        recorded.pop("series_col", None)  # the user says this file is one series
    overrides = _load_overrides(args)
    _check_model_columns(overrides, recorded, predictor.target, predictor.covariates)
    load = {**recorded, **overrides}
    if "decimal" not in overrides and load.get("decimal") == load.get("sep", ","):
        # a model trained on a ';' file with decimal commas, scored on a ',' file: --sep ','
        # alone left the recorded decimal=',' in place, refused as "decimal ',' is also the
        # field separator: pass sep too", the advice just followed. A comma-separated file
        # has decimal points.
        load["decimal"] = "."
    if args.series_col is None and (column := recorded.get("series_col")):
        # the model's own series column, looked for before the file is read: a file without it
        # used to fail "no column 'run'" although no --series-col was given
        columns = header_columns(args.data, load.get("sep") or ",")
        if column not in columns:
            raise UsageError(
                f"the model was trained with --series-col {column!r} (its column of series ids) "
                f"and {Path(args.data).name} has no column {column!r} (it has: "
                f"{', '.join(columns)}); give --series-col NAME (this file's column of series "
                "ids) or --series-id NAME (the whole file is one series, named NAME)"
            )
    _check_model_timestamp_columns(args, recorded, load)
    load.setdefault("target", predictor.target)
    load.setdefault("covariates", list(predictor.covariates))
    model = predictor.model
    c = model.config
    load["min_length"] = c.lookback + c.horizon
    try:
        data = load_data(args.data, _build(LoadConfig, load, "load config"))
    except TimestampParseError as error:
        inherited = load.get("timestamp_format")
        if inherited is None or "timestamp_format" in overrides:
            raise
        raise TimestampParseError(
            f"{error}; timestamp_format {inherited!r} is the one the model was trained with: "
            "give --timestamp-format for this file's timestamps"
        ) from None
    except SeriesTooShortError as error:
        raise SeriesTooShortError(
            f"{error}; the model reads {c.lookback:,} rows and forecasts {c.horizon:,} per "
            "window (--on-short drop leaves shorter series out)"
        ) from None
    except MissingColumnError as error:
        raise MissingColumnError(
            f"{error}{_model_columns_note(error, predictor.target, predictor.covariates)}"
        ) from None
    except ColumnWithoutValuesError as error:
        if not predictor.covariates or error.kept == str(error):
            raise
        # "leave it out of --covariates" is no way out here: the model reads its covariates
        said = ", ".join(map(repr, predictor.covariates))
        reads = "covariate" if len(predictor.covariates) == 1 else "covariates"
        raise ColumnWithoutValuesError(
            f"{error.kept} (the model reads {reads} {said}: a backtest cannot leave it out)",
            kept=error.kept,
        ) from None
    trained = meta.get("train")
    if isinstance(trained, dict) and trained.get("channel_independent") is True:
        data = channels_as_series(data)  # each column a series, as the model was trained
    if data.target != predictor.target or tuple(data.covariates) != predictor.covariates:
        raise UsageError(
            f"the model was trained on target {predictor.target!r} with covariates "
            f"{list(predictor.covariates)}; the data has {data.target!r}, {list(data.covariates)}"
        )
    model_freq = str(meta.get("freq"))
    anchor = week_anchor(data.freq, model_freq)
    if not same_frequency(model_freq, data.freq) and anchor is None:
        # its H steps are H of its own steps: scored against another grid, the table would be
        # a full one of meaningless numbers (an hourly model on daily data printed one). Weeks
        # written as days and as weeks ('7D', 'W-SUN') are one frequency from the anchor's
        # weekday, as the service takes them; the data keeps its own alias in the report.
        raise UsageError(
            f"--model {args.model_uri} was trained at frequency {model_freq!r} and --data "
            f"{Path(args.data).name} is at {data.freq!r}: a model forecasts steps of its own "
            f"frequency; backtest it on {model_freq!r} data (--freq names the file's own step "
            "when the inferred one is wrong)"
        )
    starts = {sid: frame.index[0] for sid, frame in data.series.items() if len(frame)}
    if anchor is not None and (problem := week_start_problem(data.freq, model_freq, starts)):
        raise UsageError(
            f"--model {args.model_uri} was trained at frequency {model_freq!r} and --data "
            f"{Path(args.data).name} is at {data.freq!r}: {problem}; backtest it on data whose "
            f"series start on a {WEEKDAYS[anchor]}"
        )
    split_meta = dict(meta.get("split", {}))
    method = args.split or split_meta.get("method", "fractions")
    # the units the model held out by name, when it is scored the same way again
    same = method == split_meta.get("method") == "series"
    split = SplitConfig(
        lookback=c.lookback,
        horizon=c.horizon,
        method=method,
        train_fraction=args.train_fraction or split_meta.get("train_fraction", 0.7),
        val_fraction=args.val_fraction or split_meta.get("val_fraction", 0.1),
        test_series=tuple(split_meta.get("test_series", ())) if same else (),
        val_series=tuple(split_meta.get("val_series", ())) if same else (),
    )
    shortest, shortest_series = shortest_train_span(data, split)
    # the season the model was scored with at training, unless the user names another: a
    # model trained with --season-length 168 is not rescored on the frequency's 24
    trained_season = dict(meta.get("evaluation") or {}).get("season_length")
    explicit = args.season_length if args.season_length is not None else trained_season
    from_training = args.season_length is None and trained_season is not None
    season = mase_season(
        explicit,
        data.freq,
        shortest,
        steps=load.get("step_origin") is not None,
        shortest_series=shortest_series,
        explicit_from=(
            "set by --season-length when the model was trained"
            if from_training
            else "set by the user"
        ),
    )
    # urnn train logs the full report with its run; a backtest writes it only with --output
    where = (
        f"the full report ({Path(args.output) / 'data_report.txt'})"
        if args.output
        else "the full report (`--output DIR` writes it as data_report.txt)"
    )
    report = data.brief_report_lines(full_report=where)
    clock_note = calendar_clock_note(calendar_clock(meta), data)
    if c.n_calendar and not args.refit and clock_note:  # a refit learns this file's clock
        report.append(clock_note)
    _print_data_report(report)
    config = BacktestConfig(
        n_windows=args.backtest_windows,
        step=args.backtest_step or 1,
        season_length=season.rows,
        drop_short=load.get("on_short") == "drop",
        refit=args.refit,
    )
    fit_config = FitConfig(device=args.device)  # read only by refits
    trainable = FORECASTERS[c.kind].TRAINABLE
    if args.refit:
        fit_config, train_stride = _refit_config(args, meta, source.load_uri, c)
        config = dataclasses.replace(config, train_stride=train_stride)
    else:
        model.to(resolve_device(args.device))  # loaded on the CPU
    if args.output:
        make_output_folder(args.output)
        if args.overwrite:
            _remove_earlier_backtest(args.output)
    result = backtest(
        data,
        split,
        c,
        fit_config,
        config,
        model=None if args.refit else model,
        scaler=None if args.refit else predictor.scaler,
        plot_dir=Path(args.output) / "plots" if args.output else None,
        progress=args.refit and sys.stderr.isatty(),  # bars on a terminal, not in a log
        refit_scope=predictor.scaler.scope,  # the refits scale as the model was scaled
        on_note=functools.partial(print, flush=True),  # before the scoring, not after it
    )
    for line in result.dropped:
        print(line)
    # a spike in the training span widens the MASE scale the table divides by: said beside it
    splits = split_data(data, dataclasses.replace(split, horizon=c.horizon))
    spikes = spike_lines(splits, data.target, learnt=args.refit)
    spikes += stuck_run_lines(data, splits, data.target, learnt=args.refit)
    fmt = score_text
    with pd.option_context("display.width", 140, "display.max_columns", 20):
        pinned = f"{said}; " if (said := source.describe()) else ""
        print(
            f"Backtest of {args.model_uri} ({pinned}{c.kind}, lookback {c.lookback}, horizon "
            f"{c.horizon}{_refit_said(args.refit, trainable)}) on "
            f"{args.data}: {len(result.forecasts):,} forecast values from "
            f"{_origins_said(result.forecasts)} ({_windows_said(config)}); MASE "
            "scaled by the seasonal naive of "
            f"{season.describe()}"
        )
        if not args.refit and (note := uncalibrated_note(meta, c.quantiles)):
            print(note)
        print("\nOverall:")
        print(result.tables.overall.to_string(float_format=fmt))
        # a refit's models train only on rows before each origin: nothing in-sample
        seen = "" if args.refit else seen_rows_note(meta, data, result.forecasts)
        notes = (
            unscaled_note(result.forecasts),
            filled_note(result.forecasts),
            zero_width_note(result.forecasts, c.quantiles),
            seen,
            *spikes,
        )
        for note in notes:
            if note:
                print(note)
        print(_served_error_said(result.realised_reference, meta))
        heading, shown_series = series_table_shown(result.tables.by_series, bool(args.output))
        print(f"\n{heading}")
        print(shown_series.to_string(float_format=fmt))
        print("\nBy horizon step:")
        print(result.tables.by_step.to_string(float_format=fmt))
    if args.output:
        out = Path(args.output)
        write_backtest_tables(result, out)
        manifest: dict[str, Any] = {
            "model": {
                **source.as_json(),
                "kind": c.kind,
                "lookback": c.lookback,
                "horizon": c.horizon,
                "quantiles": list(c.quantiles),
                # a checkpoint of an interrupted fit says so ("complete": false)
                **{k: meta[k] for k in ("complete", "best_epoch") if k in meta},
            },
            "data": {"path": str(Path(args.data).resolve()), "freq": data.freq},
            "split": {
                "method": split.method,
                "train_fraction": split.train_fraction,
                "val_fraction": split.val_fraction,
                **(
                    {"test_series": list(split.test_series), "val_series": list(split.val_series)}
                    if split.test_series or split.val_series
                    else {}
                ),
            },
            "backtest": {
                "n_windows": config.n_windows,
                "step": config.step,
                "refit": config.refit,
                "season_length": season.rows,
                "forecast_values": len(result.forecasts),
            },
            "created": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
            "package_version": __version__,
        }
        (out / "backtest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (out / "data_report.txt").write_text("\n".join([*data.report_lines(), *spikes]) + "\n")
        print(
            f"\ntables, forecasts, plots, data_report.txt and backtest.json (what was scored) "
            f"written to {out}"
        )
    return 0


SERIES_LINES = 20  # by-series rows printed by `urnn backtest`; all are in by_series.csv


def series_table_shown(by_series: "pd.DataFrame", written: bool) -> "tuple[str, pd.DataFrame]":
    """The heading and rows of the by-series table to print: all of them up to SERIES_LINES
    series, else the SERIES_LINES worst by MASE (scale-free; MAE mixes the series' units),
    sMAPE breaking ties and ranking series without a MASE last. A fleet's 4,000 series printed
    4,000 lines that buried the overall table."""
    n = len(by_series)
    if n <= SERIES_LINES:
        return "By series:", by_series
    # Rank by the metrics some series have: with every MASE NaN (no series with a MASE scale)
    # the rows were ordered by sMAPE under a heading that said MASE (the plot's
    # `plotted_series` falls back the same way).
    keys = [c for c in ("mase", "smape") if c in by_series.columns and by_series[c].notna().any()]
    worst = (
        by_series.sort_values(keys, ascending=False, na_position="last", kind="stable")
        if keys
        else by_series
    ).head(SERIES_LINES)
    if keys:
        chosen = f"the {SERIES_LINES} of {n:,} with the highest {keys[0].upper()}"
    else:
        chosen = f"the first {SERIES_LINES} of {n:,} in id order (none has a MASE or sMAPE)"
    where = (
        "by_series.csv in the --output folder"
        if written
        else "by_series.csv when --output DIR is given"
    )
    return (
        f"By series: {chosen} (every series: {where}):",
        worst,
    )


def _origins_said(forecasts: "pd.DataFrame") -> str:
    """The forecasts a backtest made: one per origin of a series, and for a fleet both counts,
    since its series start and end on other days: the distinct origin times alone (1,684 over
    six PJM regions) are neither the forecasts made (3,818) nor any one series' count."""
    times = forecasts["origin"].nunique()
    series = forecasts["series"].nunique()
    if series <= 1:
        return f"{times:,} origins"
    windows = len(forecasts[["series", "origin"]].drop_duplicates())
    return f"{windows:,} forecasts of {series:,} series at {times:,} origin times"


def _windows_said(config: "BacktestConfig") -> str:
    every = "every origin" if config.n_windows is None else f"the last {config.n_windows:,}"
    return f"{every}, {config.step:,} row{'' if config.step == 1 else 's'} apart"


def _refit_said(refit: bool, trainable: bool) -> str:
    """What the backtest's heading says of --refit: a parameter-free baseline is not refitted,
    its intervals alone are recalibrated (_parameter_free_refit_line)."""
    if not refit:
        return ""
    return ", refitted at each origin" if trainable else ", intervals recalibrated at each origin"


def _parameter_free_refit_line(args: argparse.Namespace, config: "ForecasterConfig") -> str:
    """The Refits line of a parameter-free baseline (repeat_last, seasonal_naive): no weights,
    so its forecasts are those of the backtest without --refit; its quantile offsets, fitted on
    the train windows (NaiveForecaster.calibrate_offsets), are what a refit recalibrates.
    Not refused: Darts' historical_forecasts(retrain=True) and NeuralForecast's
    cross-validation refit their baselines too, and a table of refitted networks beside the
    baseline's is one command line with --model swapped."""
    head = f"Refits: {config.kind} has no weights to refit (a parameter-free baseline)"
    if len(config.quantiles) > 1:
        said = (
            f"{head}: its forecasts (the median) are the ones the backtest without --refit "
            "scores; --refit recalibrates only its quantile intervals, on the data up to each "
            "origin"
        )
    else:
        said = f"{head} and forecasts no intervals to recalibrate: --refit changes nothing"
    return said + ("; --refit-epochs is not read" if args.refit_epochs is not None else "")


def _refit_config(
    args: argparse.Namespace, meta: dict[str, Any], model_uri: str, model: "ForecasterConfig"
) -> tuple["FitConfig", int]:
    """The fit settings of `urnn backtest --refit`, and the stride of its training windows:
    the ones the model was trained with, from its config.json ("fit", "train.train_stride"),
    or, for a model trained before those keys, its MLflow run's `fit.*` and
    `backtest.train_stride` params; neither: the defaults. What is kept and what replaced:
    training.backtest's REFIT_REPLACED. One printed line says which, before the fits; for a
    parameter-free `model`, that it has nothing to refit."""
    from models.forecaster import FORECASTERS
    from training.backtest import refit_fit_config, refit_train_stride
    from training.fit import fit_fields_from_params
    from training.registry import training_run_params

    @functools.cache  # the run's params, looked up once, and only if needed
    def run_params() -> dict[str, str] | None:
        return training_run_params(model_uri)  # the version loaded, not the alias again

    recorded: object = meta.get("fit")  # present but not an object: refit_fit_config says so
    source = "its config.json"
    if recorded is None:
        params = run_params()
        source = "its MLflow run's fit.* params"
        why = "no MLflow run of it found" if params is None else "nor its MLflow run's params"
        if params is not None:
            try:
                recorded = fit_fields_from_params(params) or None
            except ValueError as error:
                why = f"its MLflow run's cannot be read ({error})"
        if recorded is None:
            source = f"the model records none: not in its config.json, {why}"
    fit_config, line = refit_fit_config(
        recorded, source=source, device=args.device, max_epochs=args.refit_epochs
    )
    train = meta.get("train")
    stride: object = None
    stride_source = "its config.json"
    if isinstance(train, dict) and "train_stride" in train:
        stride = train["train_stride"]  # not an integer >= 1: refit_train_stride says so
    elif train is not None and not isinstance(train, dict):
        stride_source = 'not in its config.json, whose "train" is not a JSON object'
    else:
        params = run_params()
        text = None if params is None else params.get("backtest.train_stride")
        stride_source = "its MLflow run's backtest.train_stride param"
        if text is not None:
            stride = int(text) if text.isascii() and text.isdigit() else text  # not "²"
        else:
            stride_source = "not in its config.json, " + (
                "no MLflow run of it found" if params is None else "nor in its run's params"
            )
    train_stride, said = refit_train_stride(stride, source=stride_source)
    if not FORECASTERS[model.kind].TRAINABLE:  # no fit settings to speak of: max_epochs, lr
        line, said = _parameter_free_refit_line(args, model), ""
    print(f"{line}; {said}" if said else line, flush=True)
    return fit_config, train_stride


def _check_writable_file(
    path: str, option: str, inputs: Mapping[str, str | None] | None = None
) -> None:
    """A file `option` may write, or UsageError; `inputs` (option -> path) are files the
    command reads, which it must not overwrite: `--result-json` naming the --data file
    replaced a history file with the run's outcome (and `--started-json` did so before the
    fit had read it)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    for source, read in (inputs or {}).items():
        if read and target.exists() and Path(read).exists() and target.samefile(read):
            raise UsageError(
                f"{option} {path}: is the {source} file, which writing the outcome would "
                "overwrite; give another file name"
            )
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    import os

    if not os.access(target if target.exists() else folder, os.W_OK):
        raise UsageError(f"{option} {path}: not writable")


def _launch_distributed(args: argparse.Namespace, settings: Settings) -> int:
    """Run this same `urnn train` command under torchrun with --nproc processes."""
    import os
    import subprocess

    from training.distributed import launch_command

    # The ranks build their settings from the environment: hand over the ones given here.
    env = {**os.environ, **settings.environment()}
    print(f"urnn train: launching {args.nproc} processes under torchrun", flush=True)
    process = subprocess.Popen(launch_command(args.nproc, args.argv), env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # SIGTERM or Ctrl-C here: torchrun passes a SIGTERM on to its ranks, which end their
        # run KILLED as this process would; subprocess.run SIGKILLed torchrun at once, and the
        # ranks trained on, orphaned, their run RUNNING
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=DISTRIBUTED_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise


# How long torchrun's ranks get to end their run after a SIGTERM before torchrun is killed.
DISTRIBUTED_STOP_SECONDS = 60.0


def _add_worker_parser(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="executes queued retraining jobs",
        description=(
            "Claim queued jobs from the job database (URNN_DATABASE_URL) one at a time and run "
            "them through the training pipeline; also enqueue due schedule runs and retry jobs "
            "whose worker died. Run any number of workers against one database. SIGTERM or "
            "Ctrl-C stops the running job's process group wherever it is, puts the job back in "
            "the queue (no attempt spent) and exits. See docs/jobs.md."
        ),
    )
    worker.add_argument(
        "--max-jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help="exit after N jobs; default: run until stopped",
    )
    worker.add_argument(
        "--until-idle",
        action="store_true",
        help="exit as soon as the queue is empty instead of waiting for more jobs",
    )
    worker.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not enqueue due schedule runs from this worker (others still may)",
    )
    worker.add_argument(
        "--worker-id",
        type=_worker_id,
        default=None,
        metavar="ID",
        help="name shown in GET /jobs/{id}; default host:pid:random",
    )
    # Jobs say where they train (config.fit.device), so no --device option here.
    worker.set_defaults(handler=_run_worker, subparser=worker, device=None)


def _run_worker(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from sqlalchemy.exc import DBAPIError

    from jobs.db import Database, SchemaError, check_schema, shown_url
    from jobs.worker import Worker

    url = settings.resolved_database_url()
    try:
        check_schema(url)
    except SchemaError as error:
        print(f"urnn worker: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    db = Database.from_settings(settings)
    worker = Worker(db, settings, worker_id=args.worker_id, scheduler=not args.no_scheduler)
    worker.install_signal_handlers()
    try:
        worker.run(max_jobs=args.max_jobs, until_idle=args.until_idle)
    except DBAPIError as error:
        # what Worker.run does not wait out: a file it may not write (a read-only SQLite
        # file), a schema moved under it, or any outage under --until-idle; the driver's
        # first line, as `urnn db` says it, not a traceback with the SQL and its parameters
        lines = str(error.orig or error).strip().splitlines()
        reason = lines[0] if lines else type(error.orig or error).__name__
        print(
            f"urnn worker: error: the job database at {shown_url(url)} failed: {reason}",
            file=sys.stderr,
        )
        return 2
    finally:
        db.dispose()
    return 0


def _add_db_parser(commands: Any) -> None:
    db = commands.add_parser(
        "db",
        help="the job database's schema (Alembic): upgrade, downgrade, current",
        description=(
            "Create or migrate the job database at URNN_DATABASE_URL (default: a SQLite file "
            "under ./var/) with the Alembic scripts in migrations/."
        ),
    )
    actions = db.add_subparsers(
        dest="db_action", metavar="ACTION", required=True, help="upgrade, downgrade or current"
    )
    up = actions.add_parser("upgrade", help="migrate to a revision (default head)")
    up.add_argument("revision", nargs="?", default="head", help="target revision; default head")
    down = actions.add_parser("downgrade", help="migrate back to a revision")
    down.add_argument("revision", help="target revision, e.g. base (drops every table) or -1")
    actions.add_parser("current", help="print the database's revision")
    db.set_defaults(handler=_run_db, subparser=db, device=None, runs_model=False)


def _warn_paused_schedules_resume(paused: list[Any], revision: str) -> None:
    """Revisions below 0004 (and releases older than 2026-12-04, which never read the flag)
    have no pause: each paused schedule runs again, at once where its stored due time has
    passed. Said per schedule, on stderr, so the operator can delete the ones that must not."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).replace(tzinfo=None)
    for schedule in paused:
        due = schedule.next_due_at
        if isinstance(due, str):  # SQLite hands raw text to a text() query
            due = datetime.fromisoformat(due)
        when = (
            f"at the next worker tick (its stored due time {due:%Y-%m-%dT%H:%M}Z has passed)"
            if due <= now
            else f"at {due:%Y-%m-%dT%H:%M}Z"
        )
        print(
            f"urnn db downgrade: warning: schedule {schedule.id} ({schedule.cron!r}, "
            f"{schedule.timezone}) was paused; revision {revision} has no pause, so it runs "
            f"again {when}: DELETE /schedules/{schedule.id} if it must not run",
            file=sys.stderr,
        )


def _run_db(args: argparse.Namespace, settings: Settings) -> int:
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    from jobs.db import (
        PAUSE_REVISION,
        SchemaError,
        current_revision,
        downgrade,
        missing_sqlite_file,
        paused_schedules,
        reaching,
        revision_step,
        shown_url,
        upgrade,
    )

    url = settings.resolved_database_url()
    shown = shown_url(url)
    try:
        if args.db_action != "upgrade" and missing_sqlite_file(url):  # reading creates nothing
            said = f"{shown}: no database file yet (run `urnn db upgrade` to create it)"
            if args.db_action == "current":
                print(said)
                return 0
            print(f"urnn db {args.db_action}: error: {said}", file=sys.stderr)
            return 2
        # only the first connection is read as "unreachable"; a failing migration is its own
        with reaching(url):
            current = current_revision(url)
    except SchemaError as error:
        print(f"urnn db: error: {error}", file=sys.stderr)
        return 2
    if args.db_action in ("upgrade", "downgrade"):
        step = revision_step(current, args.revision)
        at = current or "base (no schema)"
        if step == "same":
            print(f"{shown}: already at {at}; nothing to do")
            return 0
        wrong = "down" if args.db_action == "upgrade" else "up"
        if step == wrong:  # a revision Alembic knows: its name is short
            other = "downgrade" if args.db_action == "upgrade" else "upgrade"
            where, moves = ("past", "forwards") if wrong == "down" else ("below", "back")
            print(
                f"urnn db {args.db_action}: error: the database is at {at}, {where} "
                f"{args.revision!r}; {args.db_action} only moves {moves}, "
                f"`urnn db {other} {args.revision}` goes there",
                file=sys.stderr,
            )
            return 2
    try:
        if args.db_action == "upgrade":
            upgrade(url, args.revision)
            print(f"{shown}: upgraded to {current_revision(url)}")
        elif args.db_action == "downgrade":
            # read before the flag goes: a schedule paused now runs again below PAUSE_REVISION
            had_pause = revision_step(current, PAUSE_REVISION) in ("same", "down")
            paused = paused_schedules(url) if had_pause else []
            downgrade(url, args.revision)
            now_at = current_revision(url)
            print(f"{shown}: downgraded to {now_at or 'base (no schema)'}")
            if now_at is not None and revision_step(now_at, PAUSE_REVISION) == "up":
                _warn_paused_schedules_resume(paused, now_at)
        else:
            print(f"{shown}: {current or 'empty (run `urnn db upgrade`)'}")
    except CommandError as error:  # an unknown revision: Alembic's own sentence says which
        print(
            f"urnn db {args.db_action}: error: {error} ('head' is the latest revision; "
            f"`urnn db current` shows the database's; migrations/versions/ holds them all)",
            file=sys.stderr,
        )
        return 2
    except DBAPIError as error:
        # a migration the database refused (a read-only SQLite file, a table of that name
        # already there from another application): the driver's first line and where the
        # database stands, not a traceback ending in the SQL
        lines = str(error.orig or error).strip().splitlines()
        reason = lines[0] if lines else type(error.orig or error).__name__
        try:
            at = current_revision(url) or "base (no schema)"
        except DBAPIError:
            at = "unknown (`urnn db current` reads it)"
        print(
            f"urnn db {args.db_action}: error: {shown}: the database refused the migration: "
            f"{reason}; it is at {at}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

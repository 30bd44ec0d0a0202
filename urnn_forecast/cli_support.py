"""What the `urnn` commands share: argparse types that name the option's allowed values,
the exit-2 error for bad input, and the checks of --data and --output done before the work.

Kept apart from `urnn_forecast.cli` so that each command's module (the benchmarks in
`urnn_forecast.benchmark_commands`) takes them without importing the whole command line;
nothing here imports torch, pandas or mlflow at import time (`urnn --help` stays quick).
"""

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from urnn_forecast.field_types import INT_MAX, shown
from urnn_forecast.folders import folder_problem
from urnn_forecast.settings import Settings

# `--decoder`: models.forecaster.DECODERS and "auto" (fit each, keep the better on val), as
# training.ett_benchmark.DECODER_CHOICES (checked by tests/test_cli_train.py).
DECODER_CHOICES: tuple[str, ...] = ("direct", "pmf", "auto")


# The largest count an option takes, as a config file's (field_types.INT_MAX): sizes and
# steps beyond it overflowed inside numpy and torch ("cannot fit 'int' into an index-sized
# integer") instead of being refused here.
INT_OPTION_MAX = INT_MAX


def add_device_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--device` of a command that trains (left None: main() reads URNN_DEVICE)."""
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where to train: auto picks cuda when available; default: URNN_DEVICE or auto",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {shown(text)}") from None
    if not 1 <= value <= INT_OPTION_MAX:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 1 to {INT_OPTION_MAX:,}, got {shown(str(value))}"
        )
    return value


# = training.fit.SEED_MAX (numpy's RNG takes seeds 0 .. 2**32 - 1), not imported: `--help` and
# argument errors do not load torch
SEED_MAX = 2**32 - 1


def seed_number(text: str) -> int:
    """A seed numpy accepts; a run created first and refused by numpy after was the old way."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to 2**32 - 1 ({SEED_MAX}), got {text!r}"
        ) from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to 2**32 - 1 ({SEED_MAX}), got {value}"
        )
    return value


def int_from_1_to(text: str, high: int, allowed: str) -> int:
    """An integer from 1 to `high`, refused in one message saying `allowed` whatever is wrong
    with it: through `positive_int`, `--port 0` was told "from 1 to 4,294,967,295" and
    `--port x` "an integer >= 1", bounds that were not the option's."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{allowed}, got {shown(text)}") from None
    if not 1 <= value <= high:
        raise argparse.ArgumentTypeError(f"{allowed}, got {value:,}")
    return value


def choice_list(allowed: Sequence[str], what: str) -> Any:
    """A parser of `a,b` into a list of names from `allowed` (argparse type)."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"expected {what}, choose from {', '.join(allowed)}")
        for name in names:
            if name not in allowed:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {name!r}; choose from {', '.join(allowed)}"
                )
        return names

    return parse


def int_list(text: str) -> list[int]:
    values = [positive_int(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def check_data_path(data: str) -> None:
    """--data names an existing file; a name the system refuses (too long) is said so."""
    named = data if len(data) <= 500 else shown(data)  # as written, but a 5,000-char name
    try:
        exists = Path(data).exists()
    except OSError as error:  # [Errno 36] File name too long
        raise UsageError(f"--data {named}: cannot be used as a path ({error.strerror})") from None
    if not exists:
        raise UsageError(f"--data {named}: no such file")
    path = Path(data)
    if path.is_dir():
        # Spark, Dask and pandas' partition_cols write "x.parquet" as a folder of part files:
        # refused as "cannot read it as parquet: ... is a directory", and a plain folder as an
        # "unsupported file type '(no suffix)'", as if the name were the problem
        parquet = next(path.rglob("*.parquet"), None) is not None
        raise UsageError(
            f"--data {named}: a folder, not a file"
            + (
                ": a partitioned Parquet dataset (Spark, Dask and pandas' partition_cols write "
                "one as a folder of part files)? write it as one file first, e.g. "
                "pandas.read_parquet(folder).to_parquet('one-file.parquet')"
                if parquet
                else "; give the history file (.csv, .tsv, .txt, each also .gz, or .parquet)"
            )
        )


def check_output_folder(output: str | None) -> None:
    """--output names a folder (made if missing): a file there, or a path below a file or a
    folder this user cannot write to, failed only after the whole run (a benchmark's hours),
    as it came to write its results. Checked without making anything."""
    if not output:
        return
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output {output}: is a file; give a folder (it is made if missing)")
    if (problem := folder_problem(path)) is not None:
        raise UsageError(
            f"--output {output}: cannot be made as a folder ({problem}); give a folder you "
            "can write to"
        )


def make_output_folder(output: str) -> None:
    """--output made once the inputs are checked, before the work: a folder the system
    refuses (/proc/x) failed after the whole run, with an error naming no option."""
    try:
        Path(output).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"--output {output}: cannot be made as a folder ({error.strerror or error}); "
            "give a folder you can write to"
        ) from None


def probe_output_folder(output: str) -> None:
    """--output made and the folders this made removed again, before a benchmark's work:
    `check_output_folder` asks whether the folder could be made, which /proc (or a read-only
    mount, for root) answers yes, and the benchmark then ran for hours to end in a mkdir
    traceback with its results lost. Nothing is left behind, so that an input error the run
    finds later leaves no empty folder."""
    made = []
    folder = Path(output).absolute()
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    make_output_folder(output)
    for folder in made:  # the deepest first
        folder.rmdir()


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {shown(text)}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return value


def print_mlflow_location(settings: Settings, experiment: str) -> None:
    """Where the runs went, passwords as *** (`shown_uri`): a job's output is its log tail,
    which GET /jobs answers (to anyone, unless URNN_API_KEY_FOR_READS is on)."""
    from urnn_forecast.tracking import shown_uri

    uri = shown_uri(settings.resolved_tracking_uri())
    print(f"\nMLflow: runs logged to experiment {experiment!r} in {uri}")
    root = settings.resolved_artifact_root()
    if root is None:  # the experiment's location is the tracking server's choice
        print("  artifacts where the tracking server keeps them (its default artifact root)")
    else:
        print(f"  artifacts under {shown_uri(root)}")
    if uri.startswith(("http://", "https://")):  # a tracking server is its own UI
        print(f"  open the UI:  {uri}")
    else:
        print(f"  open the UI:  mlflow ui --backend-store-uri {uri}")


class UsageError(ValueError):
    """Bad input found by a handler (a config file, a column); printed, exit code 2."""


def input_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean "the input is wrong", not "the program is": message, exit 2."""
    from models.forecaster import CalendarFrequencyError, ForecasterConfigError
    from training.backtest import BacktestConfigError
    from training.fit import FitConfigError
    from training.metrics import MetricError
    from training.mlflow_model import ForecastInputError
    from training.split import ScalerError
    from training.validation import DataValidationError
    from training.windows import IncompatibleWindowsError, WindowError
    from urnn_forecast.tracking import TrackingServerError

    return (
        UsageError,
        TrackingServerError,
        DataValidationError,
        ForecasterConfigError,
        CalendarFrequencyError,
        FitConfigError,
        WindowError,
        IncompatibleWindowsError,
        BacktestConfigError,
        ScalerError,
        MetricError,
        ForecastInputError,
        FileNotFoundError,
    )


def command_failed(command: str, error: BaseException, note: str = "") -> int:
    print(f"urnn {command}: error: {error}{note}", file=sys.stderr)
    return 2

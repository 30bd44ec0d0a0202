"""A job's parameters (`JobSpec`), checked at submission so a bad spec is a 422, not a failed run.

    spec = JobSpec(data="data/ETT-small/ETTh1.csv", target="OT",
                   config={"model": {"lookback": 96, "horizon": 24}, "fit": {"max_epochs": 5}})
    spec, warnings = check_job(spec, data_folders=None, max_bytes=64 << 20)  # or JobSpecError
    config = spec.train_config(run_name="job-<id>")   # what the worker hands train_pipeline

`check_job` runs both checks: `validate_spec` (the spec and the file's header: fast, no data
read), then `check_job_data`, which loads, validates and splits the whole file as the worker
will (training.pipeline.prepare_training), so a spec this data cannot train is refused at
submission with the loader's or splitter's message; files above URNN_JOB_DATA_CHECK_MAX_BYTES
are left to the worker, which checks every run again in any case (the file may change in
between).

`config` has the sections of `urnn train --config` (model, fit, load, train) and goes through
the same checks (urnn_forecast.cli.train_config_from_sections); `target` and `covariates` are
the load section's and may not be repeated there.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobs.models import REGISTERED_NAME_WIDTH, can_be_stored
from urnn_forecast.config_fields import field_in_section
from urnn_forecast.field_types import NOT_UNICODE, shown, shown_names

if TYPE_CHECKING:
    from training.pipeline import TrainConfig

logger = logging.getLogger(__name__)


class JobSpecError(ValueError):
    """A job spec that cannot run; `field` is its dotted path (`data`, `config.model`, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"field {field!r}: {message}")
        self.field = field
        self.message = message

    def within(self, parent: str) -> JobSpecError:
        """The same error where the spec is a field of a larger body (a schedule's `job`)."""
        return JobSpecError(f"{parent}.{self.field}", self.message)


# The body OpenAPI shows for POST /jobs (and a schedule's `job`): ETTh1, a week of hours ahead.
JOB_EXAMPLE: dict[str, Any] = {
    "data": "data/ETT-small/ETTh1.csv",
    "target": "OT",
    "covariates": ["HUFL", "HULL"],
    "config": {
        "model": {"lookback": 336, "horizon": 168},
        "fit": {"max_epochs": 20},
        "load": {"max_gap": 24},
    },
    "promote": True,
}


class JobSpec(BaseModel):
    """What one retraining job trains on and how; stored as JSON in jobs.spec."""

    # strict: "promote": "yes" or "nproc": "2" are refused, not read as true and 2
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [JOB_EXAMPLE]},
    )

    data: str = Field(
        # "" is the working directory (Path("") == Path(".")), refused as "': not a regular
        # file (a folder, pipe or device)", quoting nothing
        min_length=1,
        description="History file readable by workers: .csv, .tsv, .txt (each also .gz; "
        "fields split by config.load.sep), .parquet or .pq.",
    )
    target: str = Field(min_length=1, description="The column to forecast.")
    covariates: list[str] = Field(default_factory=list, description="Past covariate columns.")
    config: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            'Sections as in `urnn train --config`: {"model": {ForecasterConfig fields}, '
            '"fit": {FitConfig fields}, "load": {LoadConfig fields}, "train": {TrainConfig '
            "fields}}."
        ),
    )
    promote: bool = Field(
        default=True,
        description="Move the champion alias if the new version beats it on the same backtest.",
    )
    nproc: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Processes to train in, data-parallel under torchrun (DistributedDataParallel: "
            "gloo on CPU, nccl on GPU) on the worker's machine; 1: one training process (a child "
            "of the worker, as every job)."
        ),
    )

    @field_validator("config", mode="before")
    @classmethod
    def _top_level_fields_stay_there(cls, value: Any) -> Any:
        """`{"config": {"target": "OT"}}` (the job's own fields put among the sections, as a
        reader of `urnn train --config` might) was told "must be a JSON object" at
        config.target, which never said where `target` goes."""
        if isinstance(value, dict):
            misplaced = [key for key in value if key in cls.model_fields and key != "config"]
            if misplaced:
                key = misplaced[0]
                raise ValueError(
                    f"holds {key!r}, a field of the job itself: give it at the top level "
                    "beside 'data'; config's keys are sections (load, model, fit, train, ...)"
                )
        return value

    def _field_in_section(self, field: str, message: str) -> tuple[str, str]:
        """The field a config check's message is about, within the section it names
        (`config.fit` -> `config.fit.max_epochs`), and the message: a 422 named the section
        alone. See urnn_forecast.config_fields.field_in_section, shared with `urnn train
        --config`."""
        section = field.removeprefix("config.")
        if "." in section or not field.startswith("config."):
            return field, message
        path, said = field_in_section(self.config, section, message)
        return f"config.{path}", said

    def train_config(self, *, run_name: str | None = None) -> TrainConfig:
        """The TrainConfig this spec means; JobSpecError naming the field when it has none."""
        from training.fit import nproc_error
        from urnn_forecast.cli import train_config_from_sections
        from urnn_forecast.cli_support import UsageError

        load = dict(self.config.get("load", {}))
        for key in ("target", "covariates"):
            if key in load:
                raise JobSpecError(f"config.load.{key}", f"give {key!r} at the top level")
        load["target"] = self.target
        load["covariates"] = list(dict.fromkeys(self.covariates))
        train = dict(self.config.get("train", {}))
        if "promote" in train:
            raise JobSpecError("config.train.promote", "give 'promote' at the top level")
        if "run_name" in train:  # the worker's, so that the MLflow UI names the job
            raise JobSpecError(
                "config.train.run_name",
                "the worker names each job's MLflow run job-<first 8 characters of its id>-"
                "KIND-TARGET-L<lookback>-H<horizon> (GET /jobs/{id} gives the run's id); leave "
                "run_name out",
            )
        train["promote"] = self.promote
        if run_name is not None:
            train.setdefault("run_name", run_name)
        sections = {**self.config, "load": load, "train": train}
        try:
            config = train_config_from_sections(self.data, sections, what="config")
        except UsageError as error:
            message = str(error)
            field, _, rest = message.partition(": ")
            raise JobSpecError(*self._field_in_section(field, rest or message)) from None
        # here, not at submission only: the worker checks a stored spec again before a run
        if (problem := separator_problem(config.load.sep)) is not None:
            raise JobSpecError("config.load.sep", problem)
        if (problem := nproc_error(config.model.kind, self.nproc)) is not None:
            raise JobSpecError("nproc", problem)  # as `urnn train --nproc`, before a launch
        return config


# A multi-character `sep` is a regular expression (pandas' python reader splits each line by
# it), and Python's `re` holds the GIL while it matches: "(.+)+z" on ETTh1's header froze the
# whole service, /healthz and /forecast included, from one POST /jobs. A job's pattern is
# therefore one of a small grammar that cannot backtrack without end: single characters and
# sets of them (no '.', no negated set, no range: each repeat runs over the separator's own
# characters only), each optionally repeated, at most two repeats and never side by side.
_SEP_CHAR = r"\\[tnrfvsd]|\\[^A-Za-z0-9]"  # \t, \s, \d ...; an escaped punctuation mark
_SEP_TOKEN = rf"(?:{_SEP_CHAR}|\[(?!\^)(?:{_SEP_CHAR}|[^\\\[\]\-])+\]|[^\\.^$*+?{{}}\[\]()|])"
_SEP_ITEM = re.compile(rf"(?P<token>{_SEP_TOKEN})(?P<repeat>[*+?]|\{{\d{{1,3}}(?:,\d{{0,3}})?\}})?")
SEP_REPEATS_MAX = 2


def separator_problem(sep: str) -> str | None:
    """Why a job may not split its file by `sep` (config.load.sep), or None: one character
    always passes; a longer one must be a plain pattern (see _SEP_ITEM above). `urnn train
    --sep` on one's own machine takes any regular expression."""
    if len(sep) <= 1:
        return None
    repeats, position, last_repeated = 0, 0, False
    while position < len(sep):
        item = _SEP_ITEM.match(sep, position)
        repeated = item is not None and item["repeat"] is not None
        if item is None or (repeated and last_repeated):
            break
        repeats += repeated
        position, last_repeated = item.end(), repeated
    else:
        if repeats <= SEP_REPEATS_MAX:
            return None
    return (
        f"{shown(sep)} is a regular expression a job may not split its file by: a job's "
        "multi-character sep is a plain separator pattern, made of characters, escapes (\\t, "
        "\\s, \\d, \\|, ...) and [...] sets of them (no '.', no [^...], no range), each "
        f"optionally followed by *, +, ? or {{m,n}}, at most {SEP_REPEATS_MAX} of those and not "
        "side by side, e.g. '\\s+', '\\s*;\\s*', '::'. Some patterns (such as (.+)+) make "
        "Python's regular expressions run for hours, holding the service meanwhile"
    )


def inside_data_folders(path: Path, named: str, folders: Sequence[Path]) -> Path:
    """`path` resolved, or JobSpecError when it does not lie in `folders` (URNN_JOB_DATA_DIRS),
    saying nothing else of it: not whether it exists, nor what it links to."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a link loop: not inside, whatever it is
        real = None
    if real is None or not any(real.is_relative_to(folder) for folder in folders):
        raise JobSpecError(
            "data",
            f"{named}: outside the folders jobs may read (URNN_JOB_DATA_DIRS: "
            f"{', '.join(str(folder) for folder in folders)})",
        )
    return real


def validate_spec(spec: JobSpec, *, data_folders: Sequence[Path] | None = None) -> JobSpec:
    """Check what can be checked before a worker runs it: the file lies in `data_folders`
    (when given: URNN_JOB_DATA_DIRS), exists and is readable, the target and covariates are
    columns of it, and the config builds a TrainConfig. Returns the spec with `data` made
    absolute (workers need not share the API's working directory), links not followed."""
    check_storable(spec)
    repeated = sorted(c for c, n in Counter(spec.covariates).items() if n > 1)
    if repeated:
        said = f"{shown_names(repeated)} listed more than once; name each once"
        raise JobSpecError("covariates", said)
    if spec.target in spec.covariates:  # the loader's check named 'config.load', not sent
        raise JobSpecError(
            "covariates",
            f"{shown(spec.target)} is the target; a column is the target or a covariate, not "
            "both: leave it out of covariates",
        )
    data_shown = _shown(spec.data)
    try:
        named = Path(spec.data).expanduser()  # '~nobody/x.csv': RuntimeError, no such user
        path = named
        if data_folders is not None:  # before any look at the file: nothing said about it
            # the file checked is the file read, not a link that could be re-pointed (the
            # worker checks the link again before each run)
            path = inside_data_folders(path, data_shown, data_folders)
        if path.exists() and not path.is_file():
            said = f"{data_shown}: not a regular file (a folder, pipe or device)"
            raise JobSpecError("data", said)
        if not path.is_file():
            raise JobSpecError("data", _no_such_file(spec.data, data_shown))
        if not os.access(path, os.R_OK):
            raise JobSpecError("data", f"{data_shown}: not readable")
        # absolute, links kept: a schedule on `current.csv`, a link re-pointed at each new
        # export, reads the file it points at when each run starts (resolved here, every
        # run retrained on the export it named at submission, however old)
        stored = str(named.absolute())
    except (OSError, RuntimeError) as error:  # a name too long, a home that does not exist
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise JobSpecError("data", f"{data_shown}: cannot be used as a path ({reason})") from None
    spec = spec.model_copy(update={"data": stored})
    config = spec.train_config()
    if config.registered_name is not None and len(config.registered_name) > REGISTERED_NAME_WIDTH:
        raise JobSpecError(  # MLflow takes 256; the job's row records the name
            "config.train.registered_name",
            f"must be a name of at most {REGISTERED_NAME_WIDTH} characters for a job; got "
            f"{shown(config.registered_name)}",
        )
    from training.data import (
        ColumnRoleError,
        DuplicateColumnError,
        WrongSeparatorError,
        columns_shown,
        has_data_rows,
        header_columns,
        near_names,
        resolve_columns,
    )
    from training.validation import DataValidationError, MissingColumnError

    try:
        _check_gzip_start(path)
        columns = header_columns(path, sep=config.load.sep)
        empty = not has_data_rows(path, sep=config.load.sep)
    except CostlyGzipError as error:
        raise JobSpecError("data", f"{data_shown}: {error}") from None
    except WrongSeparatorError as error:
        raise JobSpecError("config.load.sep", str(error)) from None
    except DataValidationError as error:  # suffix, unreadable or empty header
        raise JobSpecError("data", str(error)) from None
    except Exception as error:  # any other parse failure: not a history file we can read
        raise JobSpecError("data", f"{spec.data}: cannot read its header ({error})") from None
    if empty:  # load_data refuses it too, but only once a worker runs the job
        raise JobSpecError("data", f"{path.name}: the file has a header and no data rows")
    if spec.target not in columns:
        raise JobSpecError(
            "target",
            f"{shown(spec.target)} is not a column of {path.name}: {columns_shown(columns)}"
            f"{near_names([spec.target], columns)}",
        )
    missing = [c for c in spec.covariates if c not in columns]
    if missing:
        raise JobSpecError(
            "covariates",
            f"{shown_names(missing)} are not columns of {path.name}: {columns_shown(columns)}"
            f"{near_names(missing, columns)}",
        )
    if config.load.series_col is not None and config.load.series_col not in columns:
        raise JobSpecError(
            "config.load.series_col",
            f"{shown(config.load.series_col)} is not a column of {path.name}",
        )
    try:  # the timestamp column(s), and every column in one part only
        resolve_columns(columns, config.load, path.name)
    except MissingColumnError as error:
        raise JobSpecError("config.load.timestamp_col", str(error)) from None
    except ColumnRoleError as error:
        fields = {spec.target: "target", config.load.series_col: "config.load.series_col"}
        raise JobSpecError(fields.get(error.column, "covariates"), str(error)) from None
    except DuplicateColumnError as error:  # a column it reads named twice in the header
        raise JobSpecError("data", str(error)) from None
    return spec


def check_job(
    spec: JobSpec, *, data_folders: Sequence[Path] | None, max_bytes: int
) -> tuple[JobSpec, list[str]]:
    """What a submission (POST /jobs, a schedule's job) checks: the spec and its file's header
    (`validate_spec`), then its data (`check_job_data`); the checked spec and the warnings."""
    checked = validate_spec(spec, data_folders=data_folders)
    return checked, check_job_data(checked, data_folders=data_folders, max_bytes=max_bytes)


def _no_such_file(data: str, data_shown: str) -> str:
    """ "no such file", quoted and said where the path has whitespace around it (a pasted
    path): unquoted, its spaces were invisible in the message. Not stripped: a file's name
    may have them."""
    if data == data.strip():
        return f"{data_shown}: no such file"
    if not data.strip():
        why = "the path is only whitespace: give the history file's path"
    else:
        ends = (data[0].isspace(), data[-1].isspace())
        where = {(True, True): "begins and ends", (True, False): "begins"}.get(ends, "ends")
        why = f"the path {where} with whitespace, and is read as given: give it without"
    return f"{shown(data)}: no such file ({why})"


def _shown(data: str) -> str:
    return data if len(data) <= 200 else f"{data[:200]}... ({len(data)} chars)"


# Full checks at once in one API process: each holds the file's series in memory, as a worker
# does, so a burst of submissions must not multiply that without bound.
FULL_CHECKS_AT_ONCE = 2
# How long a submission waits for one of them before it is accepted on its header check alone.
FULL_CHECK_WAIT_SECONDS = 10.0
_full_checks = threading.BoundedSemaphore(FULL_CHECKS_AT_ONCE)
WORKER_CHECKS = (
    "the worker loads and splits the whole file when the job runs, and fails the job with the "
    "reason if the data cannot train it (a series the file lacks, series too short, a "
    "timestamp that does not parse)"
)


def check_job_data(
    spec: JobSpec, *, data_folders: Sequence[Path] | None = None, max_bytes: int
) -> list[str]:
    """Load, validate and split the data of a spec that `validate_spec` passed, as the worker
    will (training.pipeline.prepare_training: the loader, the split plan, the scaler, the
    windows and the backtest's room), so that a spec this data cannot train is a JobSpecError
    naming the field, with the loader's or splitter's own message (the one the job would
    have failed with).

    Returns warnings for the client: the data report's cautions when the whole file was
    checked (a guess of the reader's that may have misread values, such as a '.' that may
    group thousands: read only after the run otherwise); one saying the worker checks the
    rest when only the header was, because the file is larger than
    `max_bytes` (URNN_JOB_DATA_CHECK_MAX_BYTES; 0: always) or FULL_CHECKS_AT_ONCE checks stayed
    busy for FULL_CHECK_WAIT_SECONDS. `data_folders` (URNN_JOB_DATA_DIRS) are checked again
    before the file is read. Blocking (seconds for a 64 MiB CSV): call it from a worker
    thread (a plain route runs in FastAPI's threadpool), never on the event loop."""
    data_shown = _shown(spec.data)
    path = Path(spec.data)
    try:
        if data_folders is not None:  # before any read: the file could have been re-pointed
            path = inside_data_folders(path, data_shown, data_folders)
        size = path.stat().st_size
        if size <= max_bytes:  # what loading it takes: a small file may unpack to gigabytes
            size = unpacked_size(path, limit=max_bytes)
    except CostlyGzipError as error:
        raise JobSpecError("data", f"{data_shown}: {error}") from None
    except OSError as error:
        raise JobSpecError(
            "data", f"{data_shown}: cannot be read ({error.strerror or type(error).__name__})"
        ) from None
    if max_bytes == 0:
        return [
            "data: only the header was checked at submission (URNN_JOB_DATA_CHECK_MAX_BYTES=0); "
            + WORKER_CHECKS
        ]
    if size > max_bytes:
        from training.data import gzipped

        packed = gzipped(path) or path.suffix.lower() in (".parquet", ".pq")
        unpacked = " unpacked" if packed else ""
        return [
            f"data: only the header was checked at submission: the file is larger{unpacked} "
            f"than URNN_JOB_DATA_CHECK_MAX_BYTES ({max_bytes:,} bytes); " + WORKER_CHECKS
        ]
    config = dataclasses.replace(spec.train_config(), data=str(path))
    if not _full_checks.acquire(timeout=FULL_CHECK_WAIT_SECONDS):
        return [
            "data: only the header was checked at submission: the service was busy checking "
            f"other submissions' data for {FULL_CHECK_WAIT_SECONDS:g} s; " + WORKER_CHECKS
        ]
    try:
        from training.pipeline import prepare_training

        prepared = prepare_training(config)
    except Exception as error:
        refused = _data_error(error, config, path)
        if refused is None:  # not a verdict on the data: a bug here must not refuse the job
            logger.exception("the data check of a submitted job failed; left to the worker")
            return [
                "data: only the header was checked at submission: the full check failed "
                f"unexpectedly ({type(error).__name__}, logged by the service); " + WORKER_CHECKS
            ]
        raise refused from None
    finally:
        _full_checks.release()
    return [
        f"data: {decision.message} (the data check at submission; the run reads the file again)"
        for decision in prepared.data.report
        if decision.caution
    ]


# A cell of a Parquet file takes at least a float64's 8 bytes once loaded, however well the
# file's encoding packed it (a column of one repeated value is a few bytes on disk).
PARQUET_CELL_BYTES = 8
_GZIP_READ = 1 << 20

# What a .gz file may hold that costs Python's gzip reader (pandas', in the API's full check
# and in every run) CPU however little it unpacks to. Each member (a gzip stream; `cat a.gz
# b.gz` makes a file of two, bgzip one per 64 KiB of data) is a few microseconds of Python:
# 500,000 empty ones, a 10 MB file, took 3.2 s to measure and as long again to load. So
# GZIP_MEMBERS_FREE members, and past those one per GZIP_BYTES_PER_MEMBER bytes unpacked.
GZIP_MEMBERS_FREE = 10_000
GZIP_BYTES_PER_MEMBER = 1024
# The header's name and comment fields and the zero bytes padding a member are read one byte
# at a time: a 10 MB name took 0.8 s. All members' together, at most this many bytes.
GZIP_BYTEWISE_MAX = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b\x08"
# The compressed bytes read at a time: what follows a member's end in the bytes read is copied
# once per member (zlib's unused_data), so reads are small.
_GZIP_FEED = 16 << 10
_FEXTRA, _FNAME, _FCOMMENT = 4, 8, 16


class CostlyGzipError(ValueError):
    """A .gz file refused unread: reading it costs more than what it unpacks to warrants."""


# The unpacked bytes of a .gz file's start walked before its header is read (the header and
# the first rows are read through Python's gzip, a member and a name byte by byte).
GZIP_HEADER_WALK = 1 << 20


def _check_gzip_start(path: Path) -> None:
    """CostlyGzipError for a .gz file whose first GZIP_HEADER_WALK unpacked bytes come with
    more members or header text than `_GzipWalk` allows; a damaged one is left to the header
    check, which says what is wrong with it."""
    from training.data import gzipped, open_regular

    if not gzipped(path):
        return
    try:
        with open_regular(path) as raw:
            _GzipWalk(raw).unpacked(GZIP_HEADER_WALK)
    except CostlyGzipError:
        raise
    except Exception:  # not readable as gzip: the header check says why
        return


class _GzipWalk:
    """The bytes a .gz file unpacks to, counted member by member with zlib (the headers'
    variable fields found with bytes.find, not a byte at a time), up to just past a limit;
    CostlyGzipError past GZIP_MEMBERS_FREE + one member per GZIP_BYTES_PER_MEMBER unpacked,
    or past GZIP_BYTEWISE_MAX bytes of header names, comments and zero padding. A damaged
    file raises zlib's or EOFError (the caller's full check then says what is wrong)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._pending = b""  # read from the file, not yet given to zlib
        self._bytewise = 0

    def _more(self) -> bool:
        chunk = self._raw.read(_GZIP_FEED)
        self._pending += chunk
        return bool(chunk)

    def _count_bytewise(self, count: int) -> None:
        self._bytewise += count
        if self._bytewise > GZIP_BYTEWISE_MAX:
            raise CostlyGzipError(
                f"its gzip headers' names and comments and the zero bytes between its members "
                f"take more than {GZIP_BYTEWISE_MAX:,} bytes, each read one at a time (limit "
                "GZIP_BYTEWISE_MAX); recompress it without them: gunzip -c FILE | gzip -n"
            )

    def _skip_padding(self) -> bool:
        """Past the zero bytes after a member (Python's gzip skips them); False at the end."""
        while True:
            rest = self._pending.lstrip(b"\0")
            self._count_bytewise(len(self._pending) - len(rest))
            self._pending = rest
            if rest or not self._more():
                return bool(rest)

    def _check_header(self) -> None:
        """The bytes of this member's name and comment fields counted (GZIP_BYTEWISE_MAX);
        a header that is not gzip's is left to zlib to refuse."""
        while len(self._pending) < 12 and self._more():
            pass
        if not self._pending.startswith(_GZIP_MAGIC) or len(self._pending) < 10:
            return
        flags, position = self._pending[3], 10
        if flags & _FEXTRA:
            if len(self._pending) < 12:
                return
            position += 2 + int.from_bytes(self._pending[10:12], "little")
        for field in (_FNAME, _FCOMMENT):
            if not flags & field:
                continue
            while (end := self._pending.find(b"\0", position)) < 0:
                searched = len(self._pending) - position
                if searched > 0:
                    self._count_bytewise(searched)
                    self._bytewise -= searched  # counted whole once its end is found
                if not self._more():
                    return
            self._count_bytewise(end + 1 - position)
            position = end + 1

    def unpacked(self, limit: int) -> int:
        unpacked = members = 0
        while unpacked <= limit and self._skip_padding():
            members += 1
            allowed = GZIP_MEMBERS_FREE + unpacked // GZIP_BYTES_PER_MEMBER
            if members > allowed:
                raise CostlyGzipError(
                    f"more than {allowed:,} gzip members (streams one after another) in its "
                    f"first {unpacked:,} unpacked bytes: the check reads {GZIP_MEMBERS_FREE:,} "
                    f"and one more per {GZIP_BYTES_PER_MEMBER:,} bytes unpacked (limits "
                    "GZIP_MEMBERS_FREE, GZIP_BYTES_PER_MEMBER); recompress it as one: "
                    "gunzip -c FILE | gzip"
                )
            self._check_header()
            stream = zlib.decompressobj(wbits=31)  # a gzip member, its header parsed in C
            data, self._pending = self._pending, b""
            while True:
                unpacked += len(stream.decompress(data, _GZIP_READ))
                if stream.eof:
                    self._pending = stream.unused_data
                    break
                if unpacked > limit:
                    return unpacked
                data = stream.unconsumed_tail or self._raw.read(_GZIP_FEED)
                if not data:
                    raise EOFError("the file ends inside a gzip member")
        return unpacked


def unpacked_size(path: Path, *, limit: int) -> int:
    """The bytes a data file holds once unpacked, counted up to just past `limit`: a .gz file
    decompressed (in 1 MiB reads, stopping past `limit`), a Parquet file's uncompressed size
    (its metadata), at least PARQUET_CELL_BYTES per cell; any other file, its size on disk.
    A .gz file whose members or byte-at-a-time header bytes cost more than their share
    (`_GzipWalk`) is refused (CostlyGzipError).
    The size on disk alone let a 534 KB .csv.gz of 10 million rows be loaded in full by the
    API process at submission: 25 s and 2.5 GB more memory, kept after the answer. A file
    that does not unpack (a damaged .gz, a file that is not Parquet) answers its size on disk,
    and the full check then says what is wrong with it."""
    from training.data import file_format, gzipped, open_regular

    size = path.stat().st_size
    try:
        if file_format(path) == "parquet":
            import pyarrow.parquet as pq

            with open_regular(path) as raw:  # not a pipe it would wait on for ever
                meta = pq.read_metadata(raw)
            groups = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            cells = int(meta.num_rows) * int(meta.num_columns)
            return max(size, int(groups), cells * PARQUET_CELL_BYTES)
        if gzipped(path):
            with open_regular(path) as raw:
                return _GzipWalk(raw).unpacked(limit)
    except CostlyGzipError:
        raise
    except Exception:  # not readable as what it is named: the full check says why
        return size
    return size


def _data_error(error: Exception, config: TrainConfig, path: Path) -> JobSpecError | None:
    """The JobSpecError for what `prepare_training` refused, naming the spec field the user
    changes to fix it (the data itself where no option can), with the error's own message;
    None for an exception that says nothing about the data or the spec."""
    from models.forecaster import CalendarFrequencyError, ForecasterConfigError
    from training.backtest import BacktestConfigError
    from training.data import MostlyFilledError
    from training.pipeline import too_short_fraction
    from training.seasonality import SeasonError
    from training.split import (
        CutSeriesError,
        NamedSeriesError,
        ScalerError,
        SplitError,
        rows_for_one_window_each,
    )
    from training.validation import (
        DataValidationError,
        DuplicateTimestampError,
        FrequencyError,
        GapTooLongError,
        InvalidOptionError,
        SeriesTooShortError,
        SeveralSeriesError,
        TimestampParseError,
    )
    from training.windows import IncompatibleWindowsError, WindowError

    load, model = config.load, config.model
    field = "data"
    if isinstance(error, NamedSeriesError):
        field = f"config.train.{error.option}"
    elif isinstance(error, CutSeriesError):
        field = "config.load.on_long_gap"
    elif isinstance(error, SplitError):
        field = "config.train.split_method"
    elif isinstance(error, SeriesTooShortError):
        # the run raises min_length to one window per part of the split (lookback + horizon
        # and the split's shares): the user's own min_length decides only when larger
        # a train_fraction or val_fraction of the user's below its default (0.001) decides
        # when it sizes the part that needs the most rows (training.pipeline), as do the two
        # when they leave the longest series a test span shorter than the horizon
        floor = rows_for_one_window_each(config.split(model.lookback), model.horizon)
        fraction = too_short_fraction(config, error.longest)
        field = (
            "config.load.min_length"
            if load.min_length >= floor
            else f"config.train.{fraction}"
            if fraction is not None
            else "config.model.lookback"
        )
    elif isinstance(error, TimestampParseError):
        field = "config.load.timestamp_format" if load.timestamp_format else "data"
    elif isinstance(error, (FrequencyError, MostlyFilledError)):
        field = "config.load.freq"
    elif isinstance(error, GapTooLongError):
        field = "config.load.max_gap"
    elif isinstance(error, SeveralSeriesError) and load.series_col is None:
        # "Does the file hold several series? Name their id column with series_col": the
        # remedy is that field; no duplicates policy reads a fleet right
        field = "config.load.series_col"
    elif isinstance(error, DuplicateTimestampError):
        field = "config.load.duplicates"
    elif isinstance(error, InvalidOptionError):
        field = "config.load"
    elif isinstance(error, (DataValidationError, ScalerError)):
        field = "data"
    elif isinstance(error, SeasonError):
        field = (
            "config.model.season_length"
            if model.season_length is not None
            else "config.train.season_length"
            if config.season_length is not None
            else "config.model.lookback"
        )
    elif isinstance(error, BacktestConfigError):
        field = "config.train.backtest_windows"
    elif isinstance(
        error, (ForecasterConfigError, CalendarFrequencyError, IncompatibleWindowsError)
    ):
        field = "config.model"
    elif isinstance(error, WindowError):
        field = "config.model.lookback"
    elif isinstance(error, OSError):  # gone or unreadable since the header was read
        reason = error.strerror or type(error).__name__
        return JobSpecError("data", f"{path.name}: cannot be read ({reason})")
    else:
        return None
    return JobSpecError(field, str(error))


# The integers JSON carries exactly to every client (I-JSON, RFC 7493): no count, size or seed
# of a job is larger, and a larger one overflowed the data check (an index of 2**63).
MAX_JSON_INTEGER = 2**53 - 1
# Arrays and objects inside one another, counted from the spec's top (`config.train.test_series`
# is 3 deep, its ids 4): no setting nests further than a list. pydantic's JSON serialiser stops
# at about 255 levels, so a config nested deeper (the body parser takes about 990) was a 500
# from POST /jobs and /schedules under an Idempotency-Key (the body's digest), not a 422.
MAX_SPEC_DEPTH = 32


def check_storable(spec: JobSpec) -> None:
    """JobSpecError naming the first text or number in `spec` (keys and values, at any depth)
    that no stored job could hold or answer as it was sent: a NUL (PostgreSQL's text refuses
    it), a lone UTF-16 surrogate (not UTF-8: a stored one made every listing that showed it
    fail), NaN or an infinity (JSON has no such number: SQLite stored null, PostgreSQL refused
    the row), an integer beyond +-MAX_JSON_INTEGER, or arrays and objects nested deeper than
    MAX_SPEC_DEPTH. The first check of every submission (POST /jobs, a schedule's job), before
    anything else reads the spec."""
    if (found := _unstorable_at(spec.model_dump(), "")) is not None:
        raise JobSpecError(*found)


def answerable(value: Any) -> Any:
    """A stored spec as it can be answered: any text no UTF-8 can hold (a lone surrogate, in a
    row stored before check_storable refused them) written as its backslash escape, so that one
    such row cannot make GET /jobs or GET /schedules fail for everyone."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {answerable(str(key)): answerable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [answerable(item) for item in value]
    return value


def _unstorable_at(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    """(dotted path, what is wrong) of the first value or key in `value` that cannot be stored;
    `depth`: the arrays and objects `value` lies in."""
    if isinstance(value, (dict, list)) and depth >= MAX_SPEC_DEPTH:
        return (
            path,
            f"arrays and objects nested more than {MAX_SPEC_DEPTH} levels deep in the job; no "
            "setting of a job takes more than a list",
        )
    if isinstance(value, str):
        problem = _text_problem(value)
        return None if problem is None else (path, problem)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if -MAX_JSON_INTEGER <= value <= MAX_JSON_INTEGER:
            return None
        return (
            path,
            f"must be an integer from {-MAX_JSON_INTEGER:,} to {MAX_JSON_INTEGER:,} (2**53 - 1, "
            f"the integers JSON carries exactly); got {shown(value)}",
        )
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        said = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return (
            path,
            f"must be a finite number; got {said} (NaN and Infinity are not JSON numbers, and "
            "a number beyond +-1.8e308 reads as Infinity)",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{_key_shown(str(key))}" if path else _key_shown(str(key))
            if (problem := _text_problem(str(key))) is not None:
                return inner, f"the key {problem}"
            if (found := _unstorable_at(item, inner, depth + 1)) is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _unstorable_at(item, f"{path}[{i}]", depth + 1)) is not None:
                return found
    return None


def _text_problem(text: str) -> str | None:
    if not can_be_stored(text):
        # PostgreSQL's text cannot hold it, and no file name, column or experiment has one
        return "holds a NUL character (\\u0000); remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"holds a lone UTF-16 surrogate ({text[error.start]!r} at character {error.start:,}), "
            + NOT_UNICODE
        )
    return None


def _key_shown(key: str) -> str:
    """A key as it can be shown in a path: a NUL or a lone surrogate as its escape."""
    text = answerable(key.replace("\x00", "\\u0000"))
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"

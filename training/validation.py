"""The rules that turn one raw history into a clean regular series, and the report of each change.

A file becomes training data only through decisions: sort it by time, merge duplicated
timestamps, put it on a regular grid, fill short gaps, refuse (or split at) long ones, refuse
(or drop) short series. Each decision is taken here by a stated, configurable policy and recorded
as a `Decision` with counts, so a run's report says exactly how the data that trained a model
differs from the file the user brought. Nothing is fixed silently: what no stated policy covers
stops with a `DataValidationError` that names the file, the column and the row (or the series and
the timestamps) and, where there is a choice, the allowed values.

`training/data.py` reads files and calls these functions on one series at a time: a pandas frame
with a DatetimeIndex and float64 value columns, plus the 1-based data-row number of each row in
the source file so that errors can point back at it.
"""

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import numpy as np
import pandas as pd
from pandas.tseries.offsets import BaseOffset

from urnn_forecast.field_types import shown

# --- errors ----------------------------------------------------------------------------------


class DataValidationError(ValueError):
    """Base class: the data (or an option about it) cannot become training data as asked."""


class UnobservedValidationError(DataValidationError):
    """Every target value the validation span's scores would read was filled in by the loader
    (training.fit.check_val_observed, training.stream_fit.stream_val_problem)."""


class InvalidOptionError(DataValidationError):
    """A loading option outside its allowed values; raised before any file is read."""


class UnsupportedFormatError(DataValidationError):
    """A file whose suffix is not one of the supported formats."""


class UnreadableFileError(DataValidationError):
    """The CSV or Parquet reader itself failed (malformed file); the reader's message is kept."""


class MissingColumnError(DataValidationError):
    """A timestamp, series, target or covariate column that the file does not have."""


class EmptyDataError(DataValidationError):
    """No data rows, or a column with no values at all."""


class ColumnWithoutValuesError(EmptyDataError):
    """A column read with no value in any row of a series. `kept`: the message without the
    remedy of leaving a covariate out, for `urnn backtest`, where the model's covariates are
    not the user's to choose."""

    def __init__(self, message: str, *, kept: str) -> None:
        super().__init__(message)
        self.kept = kept


class TimestampParseError(DataValidationError):
    """A timestamp cell that is empty or cannot be parsed."""


class MissingSeriesIdError(DataValidationError):
    """An empty cell in the series-id column of a long-format file."""


class NonNumericValueError(DataValidationError):
    """A target or covariate cell that is not a number."""


class NonFiniteValueError(DataValidationError):
    """An infinite target or covariate value (NaN is a missing value; inf is an error)."""


class DuplicateTimestampError(DataValidationError):
    """Duplicated timestamps while the duplicate policy is "error"."""


class SeveralSeriesError(DuplicateTimestampError):
    """Duplicated timestamps under most of a series' times: the look of a long file's several
    series read as one, whose first remedy is `series_col` (a job's 422 names that field where
    it is not set), not a duplicates policy."""


class SeriesDuplicatesError(DuplicateTimestampError):
    """One series' duplicated timestamps under duplicates="error", with what a fleet's refusal
    names of it: the loader gathers these over a long file's series, so that a fleet where
    every region repeats the daylight-saving hour is told so at once, not one region a run."""

    def __init__(
        self, message: str, *, series: str, stamps: int, rows: int, first: str, first_rows: str
    ) -> None:
        super().__init__(message)
        self.series = series
        self.stamps = stamps
        self.rows = rows
        self.first = first
        self.first_rows = first_rows


class SeveralSeriesDuplicatesError(SeriesDuplicatesError, SeveralSeriesError):
    """duplicates="error" refusing a file read as one series that looks like several (an
    unread column named like an id, or most timestamps repeated): its first remedy is
    `series_col`, as `SeveralSeriesError`'s, so a job's 422 names that field."""


class FrequencyError(DataValidationError):
    """The frequency cannot be inferred, or timestamps are not on the frequency's grid."""


class GapTooLongError(DataValidationError):
    """A run of missing steps longer than the fill policy allows, with on_long_gap="error"."""


class SeriesTooShortError(DataValidationError):
    """A series shorter than min_length, with on_short="error". `longest`: the rows of the
    longest series the error is about, when known, so a caller can say which way out can
    keep it (no split option keeps a series shorter than one window): the file's longest
    where every series is short, else the longest of the short ones, `series` its id (a way
    out sized for the file's longest series, which already held the window, kept none of
    them); `freq`: the data's frequency, when known (a seasonal naive season that a shorter
    look-back must still hold follows it)."""

    def __init__(
        self,
        message: str,
        *,
        longest: int | None = None,
        freq: str | None = None,
        series: str | None = None,
    ) -> None:
        super().__init__(message)
        self.longest = longest
        self.freq = freq
        self.series = series


# --- policies --------------------------------------------------------------------------------

DuplicatePolicy = Literal["mean", "first", "last", "error"]
DUPLICATE_POLICIES: tuple[DuplicatePolicy, ...] = ("mean", "first", "last", "error")
FillMethod = Literal["interpolate", "ffill", "none"]
FILL_METHODS: tuple[FillMethod, ...] = ("interpolate", "ffill", "none")
LongGapPolicy = Literal["error", "split"]
LONG_GAP_POLICIES: tuple[LongGapPolicy, ...] = ("error", "split")
ShortSeriesPolicy = Literal["error", "drop"]
SHORT_SERIES_POLICIES: tuple[ShortSeriesPolicy, ...] = ("error", "drop")

_FILL_WORDS: dict[FillMethod, str] = {
    "interpolate": "linear interpolation between the neighbouring observed values",
    "ffill": "carrying the last observed value forward",
    "none": "nothing",
}

# A regular grid this many times longer than the data means the frequency is wrong (e.g. freq="s"
# for hourly data), not that the data has gaps; refuse before allocating it.
MAX_GRID_GROWTH = 50
# The longest series id a forecast request may carry (POST /forecast's SeriesIn.id and the
# registered model's predict): ids are echoed and kept as metric and cache keys.
FORECAST_ID_MAX = 256


_NUMBER_TEXT = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def is_number_text(value: object) -> bool:
    """A JSON number, or a text of one ("1527811200", "1.5e9"): never a time here. Parsers
    read such values as a Unix time guessed in seconds or milliseconds by its size (pydantic)
    or as nanoseconds (pandas), a silent misreading of the caller's start."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) or (
        isinstance(value, str) and _NUMBER_TEXT.fullmatch(value) is not None
    )


# A UTC offset with seconds (+00:19:32): local mean time, which zones kept until about 1900
# (Amsterdam until 1937). Python writes such offsets (the service's and the pyfunc's answers
# carry them for those years), ISO 8601 has no place for them, and pydantic's and pandas'
# parsers refuse them. Python's reader is laxer than its writer (+00:19:99 reads as
# +00:20:39), so the form is checked here first.
_OFFSET_WITH_SECONDS = re.compile(r"[+-](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?\Z")


def with_seconds_offset(value: object) -> datetime | None:
    """`value` read as a date and time when it is a text ending in a UTC offset with seconds
    that Python's reader takes; None for anything else (left to the caller's parser, whose
    error names the field)."""
    if not isinstance(value, str) or _OFFSET_WITH_SECONDS.search(value) is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# Files of the zone database that name no place's clock: "localtime" is each machine's own
# setting (one request would be read differently on two machines), the others are the
# database's own. jobs.schedules refuses them as schedule zones too. The posix/ and right/
# copies are a system database's (right/ counts leap seconds), not names of the tzdata package.
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_NOT_ZONE_FOLDERS = ("posix/", "right/")
ZONE_RULE = "must be an IANA time zone name such as 'Europe/London'"


def zone_named(name: str) -> ZoneInfo:
    """The IANA time zone `name` (the forecast API's and the pyfunc's `timezone`), from the
    system's zone database or else the tzdata package; ValueError saying what a name must be
    when it names none."""
    try:
        if name in NOT_ZONES or name.startswith(_NOT_ZONE_FOLDERS):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
        shown = repr(name) if len(name) <= 80 else f"{name[:60]!r}... ({len(name):,} characters)"
        hint = _zone_written(name)
        raise ValueError(f"{shown} is not a time zone; it {ZONE_RULE}{hint}") from None


@functools.cache
def _zones_folded() -> dict[str, str]:
    """The zone database's names by their case-folded form (read once: a few ms), for the
    names no other name folds to."""
    folded: dict[str, list[str]] = {}
    for zone in available_timezones():
        if zone not in NOT_ZONES and not zone.startswith(_NOT_ZONE_FOLDERS):
            folded.setdefault(zone.casefold(), []).append(zone)
    return {key: names[0] for key, names in folded.items() if len(names) == 1}


def _zone_written(name: str) -> str:
    """': it is written 'Europe/Paris' (...)' where `name` is a zone's name in another case or
    with spaces around it ('europe/paris', ' UTC '); "" otherwise. Case and spaces are the
    user's to fix (a name is case-sensitive on most systems), so it is said, not corrected."""
    if len(name) > 80:
        return ""
    written = _zones_folded().get(name.strip().casefold())
    if written is None:
        return ""
    why = []
    if name.strip() != written:
        why.append("names are case-sensitive")
    if name != name.strip():
        why.append("without the spaces around it")
    return f": it is written {written!r} ({', '.join(why)})"


def local_time_problem(naive: pd.DatetimeIndex, zone: ZoneInfo) -> tuple[int, str] | None:
    """The first of the wall-clock times `naive` that does not name one instant in `zone`, as
    (position, why), or None when each names one: a time that a daylight-saving change skips
    (02:30 when the clocks go from 02:00 to 03:00) or repeats (01:30 when they go back from
    02:00 to 01:00). No guess is made for either: the caller gives the UTC offset."""
    n = len(naive)
    earlier = naive.tz_localize(zone, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    later = naive.tz_localize(zone, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    skipped = np.asarray(earlier.isna())
    bad = skipped | (earlier.asi8 != later.asi8)
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    if skipped[k]:
        # with the offset before the change, as Python writes it (PEP 495): for a skipped
        # midnight, that day's midnight step (written_at_skipped_midnight)
        written = naive[k].to_pydatetime(warn=False).replace(tzinfo=zone).isoformat()
        return k, (
            f"{naive[k].isoformat()} does not exist in {zone.key}: a daylight-saving change "
            "skips it on the clocks there; give a time that does, or the time with its UTC "
            f"offset, the one before the change: {written}"
        )
    return k, (
        f"{naive[k].isoformat()} is ambiguous in {zone.key}: a daylight-saving change shows it "
        f"twice on the clocks there ({earlier[k].isoformat()} and {later[k].isoformat()}); "
        "give it with its UTC offset"
    )


def in_zone(stamps: pd.DatetimeIndex, zone: ZoneInfo) -> pd.DatetimeIndex:
    """`stamps` on `zone`'s clock: zoned ones converted, naive ones read as its local times
    (each naming one instant there: `local_time_problem` first)."""
    if stamps.tz is not None:
        return stamps.tz_convert(zone)
    return stamps.tz_localize(zone, ambiguous="raise", nonexistent="raise")


def place_local(wall: pd.DatetimeIndex, zone: tzinfo) -> pd.DatetimeIndex:
    """Naive wall-clock times `wall` placed in `zone` by the stated policy for times this
    project lays out itself (generated steps, never a caller's own naive times: those go
    through `local_time_problem`): a time that a daylight-saving change skips is the first
    instant after the gap (Santiago's 2024-09-08 00:00 is 01:00 -03:00; pandas'
    nonexistent="shift_forward"), a time that a change repeats is the first of its two
    instants (Havana's 2024-11-03 00:00 is 00:00 -04:00, before the clocks go back)."""
    n = len(wall)
    one = wall.tz_localize(zone, ambiguous=np.ones(n, dtype=bool), nonexistent="shift_forward")
    other = wall.tz_localize(zone, ambiguous=np.zeros(n, dtype=bool), nonexistent="shift_forward")
    first = np.minimum(one.asi8, other.asi8)  # the earlier of the two, whichever flag is DST
    utc = pd.DatetimeIndex(first.view(f"datetime64[{wall.unit}]"))
    return utc.tz_localize("UTC").tz_convert(zone)


def local_steps(
    first: pd.Timestamp, periods: int, offset: BaseOffset, *, skipped_midnight: bool = False
) -> pd.DatetimeIndex:
    """`periods` steps of `offset` from `first`, `first` itself the first of them: what
    pd.date_range gives, except that a calendar offset (D, W, MS, B, ...) from a zoned `first`
    never raises where a daylight-saving change skips or repeats a step's local time (pandas'
    "... is a nonexistent time", "Cannot infer dst time"; zones whose change falls at midnight,
    Santiago, Havana, Asuncion, Beirut, Cairo, hit it every year with daily steps).

    Fixed-length steps ("h", "15min") are real durations, as pd.date_range lays them. Calendar
    steps are the zone's local calendar dates and times, placed by `place_local`: a daily
    model's local midnights are 23 or 25 hours apart across a change, and the midnight a
    change skips is the first instant of that day. The steps are laid from `first`'s wall
    time as given. A `first` at the end of a gap that skipped its day's midnight (01:00 -03:00
    in Santiago on 2024-09-08, a step this function gives) is ambiguous: a series read at
    01:00, or that day's midnight step of a series read at midnight. `skipped_midnight=True`
    reads it as the latter (callers that hold the following timestamps: `steps_along`; a
    start the caller wrote as that midnight: `written_at_skipped_midnight`)."""
    if first.tz is None or isinstance(offset, pd.offsets.Tick):
        return pd.date_range(first, periods=periods, freq=offset)
    wall = first.tz_localize(None)
    if skipped_midnight and at_skipped_midnight(first):
        wall = wall.normalize()
    steps = place_local(pd.date_range(wall, periods=periods, freq=offset), first.tz)
    if steps[0] != first and steps[0].tz_localize(None) == wall:
        steps = steps[1:].insert(0, first)  # the later instant of a repeated time: the caller's
    return steps


def steps_along(given: pd.DatetimeIndex, periods: int, offset: BaseOffset) -> pd.DatetimeIndex:
    """`periods` steps of `offset` from `given[0]` (local_steps), laid along the timestamps
    `given` where they decide what local_steps cannot from one instant alone: a `given[0]` at
    the first instant of a day whose midnight was skipped starts a midnight series when the
    timestamps after it are midnights, else a series at its own wall time."""
    steps = local_steps(given[0], periods, offset)
    if not at_skipped_midnight(given[0]):
        return steps
    m = min(len(given), periods)
    wanted = given[:m].as_unit("ns").asi8
    if (steps[:m].as_unit("ns").asi8 == wanted).all():
        return steps
    snapped = local_steps(given[0], periods, offset, skipped_midnight=True)
    return snapped if (snapped[:m].as_unit("ns").asi8 == wanted).all() else steps


def written_at_skipped_midnight(written: datetime, zoned: pd.Timestamp) -> bool:
    """Whether a `start` the caller wrote with a UTC offset (`written`, as written; `zoned`:
    it on its zone's clock) is the midnight a daylight-saving change skipped, written as that
    midnight with the offset the zone had before the change: Santiago's
    2024-09-08T00:00:00-04:00, which is what Python writes for that day's midnight
    (`datetime(2024, 9, 8, tzinfo=ZoneInfo("America/Santiago")).isoformat()`, PEP 495).

    On the zone's clock that instant is 01:00 -03:00, which names that day's midnight step
    or a series read at 01:00 alike (`local_steps`); written at 00:00 it names the midnight
    only: no clock shows a 01:00 reading as 00:00 -04:00. Such a start is the midnight step
    (`local_steps(skipped_midnight=True)`); the same instant written as 01:00 (naive, or
    -03:00) is read as written."""
    if written.tzinfo is None or not at_skipped_midnight(zoned):
        return False
    wall = written.replace(tzinfo=None)
    return bool(wall == zoned.tz_localize(None).normalize())


def at_skipped_midnight(stamp: pd.Timestamp) -> bool:
    """`stamp` (zoned) is the first instant of a day whose midnight a daylight-saving change
    skipped (the clocks jumped at it, from a time before that day's midnight)."""
    if stamp.tz is None:
        return False
    now, before = stamp.utcoffset(), (stamp - pd.Timedelta(1, unit="ns")).utcoffset()
    gap = now - before if now is not None and before is not None else timedelta(0)
    wall = stamp.tz_localize(None)
    return bool(gap > timedelta(0) and wall - gap <= wall.normalize())


def fixed_step(freq: str) -> pd.Timedelta | None:
    """The length of one step of `freq` if it is fixed ("h", "15min", "D" on naive timestamps);
    None for calendar frequencies whose steps vary ("MS", "B", "W-SUN")."""
    offset = pd.tseries.frequencies.to_offset(freq)
    if isinstance(offset, pd.offsets.Tick):
        return pd.Timedelta(offset)
    if isinstance(offset, pd.offsets.Day):  # not a Tick since pandas 3; 24 h on naive stamps
        return pd.Timedelta(days=offset.n)
    return None


def step_alias(step: pd.Timedelta) -> str:
    """A fixed step as the alias users write: whole days as "D", not pandas 3's "24h" (the same
    step on naive timestamps), so that a message never shows one step as two."""
    day = pd.Timedelta(days=1)
    offset = pd.offsets.Day(step // day) if step % day == pd.Timedelta(0) else step
    return str(pd.tseries.frequencies.to_offset(offset).freqstr)


def plural(n: int, word: str) -> str:
    """`3 steps`, `1 step`: report lines are read by people."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def plural_says(n: int, word: str, one: str, many: str) -> str:
    """`plural` with its verb: `1 row fails`, `3 rows fail` (`one`, `many`: the verb's forms)."""
    return f"{plural(n, word)} {one if n == 1 else many}"


# A whole number written as a float ("7.0", "-3.00"): how pandas writes the ids of a column it
# read as floats, and how a Parquet float id column reads as text.
_WHOLE_FLOAT_ID = re.compile(r"(-?[0-9]+)\.0+")


def series_id_text(series_id: str) -> str:
    """The one rule for a series id that is a whole-number float: its integer text ("7.0" ->
    "7"); every other id as written ("1.5", "007", "pump 7"). The same fleet saved with its ids
    as floats (Parquet float64, or a CSV pandas wrote from floats) and as integers then holds
    the same series, and a model trained on one file knows the series of the other. The
    loader, `test_series`/`val_series` and the service's per-series scaler lookup all read
    ids by it."""
    whole = _WHOLE_FLOAT_ID.fullmatch(series_id)
    return series_id if whole is None else whole.group(1)


def matching_id(known: Iterable[str], series_id: str) -> str | None:
    """The id of `known` (a model's scaler statistics, its seen_until) that names `series_id`
    by `series_id_text`'s rule: itself, its integer text ('1.0' asked of a model that knows
    '1'), or an id a model trained before that rule recorded as written ('1.0', asked as '1').
    None: no such id."""
    canonical = series_id_text(series_id)
    return next((key for key in known if series_id_text(key) == canonical), None)


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers: unit 9 before unit 10, as people number them
    (string order puts 10 and 100 before 9)."""
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def series_named(series_id: str) -> str:
    """How report lines and refusals name a series: `series 'North East'`, the id quoted by
    `shown` (cut when very long). An id with spaces, quote characters or nothing visible read
    unquoted ("North East: filled 3 values", "series : ready") as if its words were the
    message's."""
    return f"series {shown(series_id)}"


def row_label(row: int) -> str:
    """How errors name a row: the 1-based data row, header not counted (not the line number:
    a CSV with blank or multi-line rows would make line numbers wrong, and Parquet has none)."""
    return f"data row {row} (1-based, header not counted)"


# --- the report ------------------------------------------------------------------------------

Step = Literal[
    "read",
    "timezone",
    "steps",
    "cast",
    "missing",
    "sort",
    "duplicates",
    "frequency",
    "regularise",
    "trim",
    "split",
    "fill",
    "drop",
    "summary",
]


@dataclass(frozen=True)
class Decision:
    """One thing the loader did to the data (or found about it), with how many rows/values."""

    subject: str  # series id, or the file name for decisions about the whole file
    step: Step
    count: int  # rows or values the decision touched; 0 where it changed nothing
    message: str  # the full sentence, starting with the subject
    # A guess the reader made that may have misread the data (a '.' read as a decimal mark
    # where it may group thousands): job submission answers these as warnings, since a job's
    # report is otherwise read only once the run is over.
    caution: bool = False

    def __str__(self) -> str:
        return self.message


@dataclass
class Report:
    """Collects decisions in the order they were taken."""

    decisions: list[Decision] = field(default_factory=list)

    def add(
        self, subject: str, step: Step, count: int, text: str, *, caution: bool = False
    ) -> None:
        self.decisions.append(Decision(subject, step, count, f"{subject}: {text}", caution))

    def add_series(
        self, series_id: str, step: Step, count: int, text: str, *, caution: bool = False
    ) -> None:
        """`add` for a decision about one series: its line names the series by `series_named`
        (the subject stays the bare id, as the report's readers look series up by)."""
        line = f"{series_named(series_id)}: {text}"
        self.decisions.append(Decision(series_id, step, count, line, caution))


# --- per-series rules ------------------------------------------------------------------------


def sort_by_time(
    frame: pd.DataFrame, rows: np.ndarray, series: str, report: Report
) -> tuple[pd.DataFrame, np.ndarray]:
    """Put rows in time order (a stable sort, so duplicates keep their file order)."""
    stamps = frame.index.to_numpy()
    backwards = int(np.count_nonzero(stamps[1:] < stamps[:-1]))
    if backwards == 0:
        return frame, rows
    order = np.argsort(stamps, kind="stable")
    report.add_series(
        series,
        "sort",
        len(frame),
        f"sorted {len(frame):,} rows by time (input was not in time order: "
        f"time went backwards at {plural(backwards, 'place')})",
    )
    return frame.iloc[order], rows[order]


def merge_duplicates(
    frame: pd.DataFrame,
    rows: np.ndarray,
    series: str,
    policy: DuplicatePolicy,
    source: str,
    report: Report,
    *,
    wall_clock: bool = True,
    id_columns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per timestamp. Expects time order. `wall_clock` as `regularise`'s: False, no
    guess that the duplicates are an hour a daylight-saving change repeats. `id_columns`: for
    a file read as one series (no series_col), its unread columns named like an id; the
    refusal under "error" then asks first whether the file holds several series, where one
    is named so or most timestamps repeat (a long file's series, one row each per time):
    merging them, its only remedy before, would average the series into one.

    "mean" averages the duplicates column by column, ignoring missing cells: right for the
    daylight-saving fall-back hour of local-time logs (PJM), where two real hours share one label
    and their mean keeps the scale of one hour. "first"/"last" keep one row as it is in the file.
    """
    duplicated = frame.index.duplicated(keep=False)
    n_rows = int(np.count_nonzero(duplicated))
    if n_rows == 0:
        return frame, rows
    stamps = frame.index[duplicated]
    n_stamps = int(stamps.nunique())
    first = stamps[0]
    first_rows = ", ".join(str(r) for r in rows[frame.index == first])
    if policy == "error":
        merging = ", ".join(p for p in DUPLICATE_POLICIES if p != "error")
        several = ""
        if id_columns is not None and (id_columns or n_stamps * 2 > frame.index.nunique()):
            named = f"; column {id_columns[0]!r} looks like one" if id_columns else ""
            several = (
                " Does the file hold several series (one row per series and time)? Name their "
                f"id column with series_col (--series-col){named}: without it the file is read "
                "as one series. Otherwise"
            )
        refusal = SeveralSeriesDuplicatesError if several else SeriesDuplicatesError
        raise refusal(
            f"{source}: {series_named(series)} has {plural(n_stamps, 'duplicated timestamp')} "
            f"({n_rows:,} rows); the first is {first} at data rows {first_rows} (1-based, header "
            f"not counted).{several} {'s' if several else 'S'}et duplicates to one of {merging} "
            "to merge them",
            series=series,
            stamps=n_stamps,
            rows=n_rows,
            first=str(first),
            first_rows=first_rows,
        )
    keep_first = ~frame.index.duplicated(keep="first")
    if policy == "mean":
        _refuse_many_readings(frame, rows, series, source)
        with np.errstate(over="ignore"):  # near float64's limit: inf, refused by the loader
            merged = frame.groupby(level=0, sort=False).mean()
        kept_rows = rows[keep_first]
        how = "averaging their values column by column, leaving missing cells out"
    else:
        keep = keep_first if policy == "first" else ~frame.index.duplicated(keep="last")
        merged, kept_rows = frame[keep], rows[keep]
        how = f"keeping the {policy} row of each in file order"
    report.add_series(
        series,
        "duplicates",
        n_rows - n_stamps,
        f"merged {plural(n_stamps, 'duplicated timestamp')} ({n_rows:,} rows -> {n_stamps:,}, "
        f"{plural(n_rows - n_stamps, 'row')} removed) by {how} (duplicates={policy!r}); "
        f"first: {first} at data rows {first_rows}; {_duplicates_agree(frame[duplicated])}"
        + (_repeated_hours(stamps.unique(), pd.DatetimeIndex(merged.index)) if wall_clock else ""),
    )
    return merged, kept_rows


def _duplicates_agree(rows: pd.DataFrame) -> str:
    """Whether the rows under each duplicated timestamp hold the same values: an export that
    overlaps another repeats them, a revised one does not, and merging then decides which
    value (or their mean) stands. The largest difference is named."""
    groups = rows.groupby(level=0, sort=False)
    spread = (groups.max() - groups.min()).max()
    differing = spread[spread > 0]
    if differing.empty:
        return "their values agree"
    column = str(differing.idxmax())
    return f"their values differ, by up to {float(differing.max()):g} in {column!r}"


def _repeated_hours(stamps: pd.Index, series: pd.DatetimeIndex) -> str:
    """Where the duplicates of data logged hourly or faster fill at most an hour on at most one
    day a year, the clause saying what they likely are: the hour a daylight-saving change
    writes twice on local times. Merging pairs readings taken an hour apart there (one pair
    for hourly data, thousands for a 1-second log); timestamps with UTC offsets keep both
    hours. Daily data, or duplicates on many days (an overlapping export), get no such guess.
    An hourly log of one autumn repeats one timestamp (Europe/Berlin's 2016-10-30 02:00): one
    on a Sunday counts, as the one hour a change leaves out does (`_skipped_hours`); one on
    another day is no such hint."""
    index = pd.DatetimeIndex(stamps)
    if len(index) < 1 or len(series) < 2 or (len(index) == 1 and index[0].day_of_week != 6):
        return ""
    if np.median(np.diff(series.asi8)) > pd.Timedelta(hours=1) / pd.Timedelta(1, series.unit):
        return ""
    days = pd.Series(index, index=index.normalize()).groupby(level=0)
    spans = days.max() - days.min()
    years = pd.Series(pd.DatetimeIndex(spans.index).year).value_counts()
    if (spans >= pd.Timedelta(hours=1)).any() or (years > 1).any():
        return ""
    return (
        f"; they lie within one hour on {plural(len(spans), 'day')} (first {index[0]} to "
        f"{days.max().iloc[0]}): the hour a daylight-saving change repeats on local times? "
        "Merging pairs readings taken an hour apart; timestamps with UTC offsets (or in UTC) "
        "keep both hours"
    )


def _refuse_many_readings(frame: pd.DataFrame, rows: np.ndarray, series: str, source: str) -> None:
    """ "mean" is for the two hours a daylight-saving change writes under one label (PJM), and
    for rows a file repeats (overlapping exports: equal rows). More than two different rows
    under one time are something else: a time column left out (bike-sharing's `hr`: 24 hours
    of a day averaged into one row) or readings finer than the timestamps; averaging them
    changed the data's frequency with one report line."""
    shared = frame[frame.index.duplicated(keep=False)]  # the rows under a repeated time only
    stamp = "time"
    while stamp in shared.columns:  # a value column may be named "timestamp", or "time"
        stamp = f"_{stamp}"
    distinct = shared.reset_index(names=stamp).drop_duplicates()
    counts = distinct.groupby(stamp, sort=False).size()
    many = counts[counts > 2]
    if many.empty:
        _refuse_interleaved_series(counts, frame, rows, series, source)
        return
    first = many.index[0]
    at_rows = rows[frame.index == first]
    at = ", ".join(str(r) for r in at_rows[:5])
    more = " ..." if len(at_rows) > 5 else ""
    # most timestamps several rows: a long file of three or more series read without its id
    # column looks so too (a fleet of six regions), as does a time column left out
    fleet = (
        " Does the file hold several series? Name their id column with series_col (--series-col)."
        if int((counts >= 2).sum()) * 2 > frame.index.nunique()
        else ""
    )
    refusal = SeveralSeriesError if fleet else DuplicateTimestampError
    raise refusal(
        f"{source}: {series_named(series)}: {int(counts[first]):,} different rows share the "
        f"timestamp {first} (data rows {at}{more}, 1-based, header not counted), and "
        f"{plural(len(many), 'timestamp')} in all have more than two; duplicates='mean' "
        f"averages the two hours a daylight-saving change repeats, not this.{fleet} Is a time "
        "column left out (timestamp_col takes several, e.g. a date and an hour)? If these are "
        "readings to combine, aggregate them before loading, or keep one with duplicates="
        "'first' or 'last'"
    )


def _refuse_interleaved_series(
    counts: pd.Series, frame: pd.DataFrame, rows: np.ndarray, series: str, source: str
) -> None:
    """Two different rows under most timestamps are two series in one file, not the hour a
    daylight-saving change repeats (one a year) nor an overlapping export (equal rows): a long
    file of two series read without its id column was averaged into one series, with one
    report line (three were refused, by `_refuse_many_readings`). `counts`: distinct rows per
    repeated timestamp."""
    differing = counts[counts >= 2]
    n_stamps = frame.index.nunique()
    if len(differing) * 2 <= n_stamps:
        return
    first = differing.index[0]
    at = ", ".join(str(r) for r in rows[frame.index == first][:5])
    raise SeveralSeriesError(
        f"{source}: {series_named(series)}: {len(differing):,} of its {n_stamps:,} timestamps "
        f"({len(differing) / n_stamps:.0%}) hold different rows (the first, {first}, at data "
        f"rows {at}, 1-based, header not counted); duplicates='mean' would average them into "
        "one series. Does the file hold several series? Name their id column with series_col "
        "(--series-col). Readings finer than the timestamps (a time column left out: "
        "timestamp_col takes several)? Revised readings of one series: keep one of each with "
        "duplicates='first' or 'last'"
    )


def infer_frequency(indexes: Sequence[pd.Index], source: str, report: Report) -> str:
    """The modal step between consecutive timestamps, pooled over all series, as a pandas alias;
    month starts or month ends as their calendar alias ("MS", "QS-JAN", "YE-DEC", "2MS").

    The mode, not the minimum or `pd.infer_freq`: it survives gaps (which make steps longer) and
    a stray early reading (one short step), and needs no complete stretch of data. Steps of a
    month or more have no fixed length (28 to 31 days), so there the timestamps' calendar is read
    instead (`month_grid`). Other calendar frequencies ("B", "W-SUN") must be declared: whether
    weekday-only data is recorded on business days or misses its weekends is the user's to say,
    and the checks in `regularise` and the filled-share check say so.
    """
    values, counts = _distinct_steps(indexes)  # sorted: ties go to the shorter step
    if values.size == 0:
        raise FrequencyError(
            f"{source}: cannot infer the frequency: every series has fewer than 2 distinct "
            "timestamps; pass freq (a pandas offset alias such as 'h', '15min', 'D', 'MS')"
        )
    n_steps = int(counts.sum())
    modal = pd.Timedelta(values[int(np.argmax(counts))])
    if modal >= _SHORTEST_MONTH:
        months = month_grid(indexes)
        if months is not None:
            report.add(
                source,
                "frequency",
                0,
                f"frequency {months.alias!r} inferred from the timestamps: every one falls on "
                f"the {months.day} of a month, at one time of day, in steps of "
                f"{plural(months.step, 'month')} (a longer step is a gap)",
            )
            return months.alias
        if values.size > 1:  # no fixed step fits either
            _refuse_month_day(indexes, source)
    freq = step_alias(modal)
    n_modal = int(counts.max())
    report.add(
        source,
        "frequency",
        0,
        f"frequency {freq!r} inferred from the timestamps: the modal step, "
        f"{n_modal:,} of {n_steps:,} steps ({100 * n_modal / n_steps:.2f}%)",
    )
    return freq


# Steps between timestamps counted at once by `_distinct_steps`.
STEP_CHUNK = 1 << 20


def _distinct_steps(indexes: Sequence[pd.Index]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct steps between consecutive timestamps of each index, in order, and how
    often each occurs: `np.unique(np.concatenate([np.diff(i) for i in indexes]),
    return_counts=True)`, counted STEP_CHUNK steps at a time. Pooling and sorting every step
    at once took 2.2 s and 0.4 GB for one series of 16 M rows, to find a handful of values."""
    found: list[np.ndarray] = []
    tallies: list[np.ndarray] = []
    for index in indexes:
        stamps = index.to_numpy()
        for start in range(1, len(stamps), STEP_CHUNK):
            steps = np.diff(stamps[start - 1 : start + STEP_CHUNK])
            distinct, counts = np.unique(steps, return_counts=True)
            found.append(distinct)
            tallies.append(counts)
    if not found:
        return np.array([], dtype="timedelta64[us]"), np.array([], dtype=np.int64)
    # the few distinct steps of every chunk, merged (in one unit, as concatenating them all was)
    merged, at = np.unique(np.concatenate(found), return_inverse=True)
    counts = np.zeros(len(merged), dtype=np.int64)
    np.add.at(counts, at, np.concatenate(tallies))
    return merged, counts


_SHORTEST_MONTH = pd.Timedelta(days=28)
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class MonthGrid:
    """Timestamps read as whole months: the alias and, for the report, what was seen."""

    alias: str
    day: str  # "first day" or "last day"
    step: int  # months between timestamps (the greatest common divisor of the steps)


def month_grid(indexes: Sequence[pd.Index]) -> MonthGrid | None:
    """The month-start or month-end grid all `indexes` lie on, or None.

    Every timestamp on the 1st of its month (or every one on its month's last day), all at one
    time of day: then the step is the months' greatest common divisor (a missing month is a gap
    to fill, not a two-month frequency). Quarterly and yearly steps take pandas' anchored names
    when every series is in the same phase ("QS-JAN": January, April, ...); otherwise "3MS",
    which each series' grid anchors at its own first timestamp. The alias is checked against
    every series before it is answered, so a wrong reading is None, never a silent misfit."""
    ends: set[bool] = set()
    clocks: set[pd.Timedelta] = set()
    diffs: list[np.ndarray] = []
    phases: list[int] = []
    for index in indexes:
        stamps = pd.DatetimeIndex(index)
        if not len(stamps):
            continue
        if bool((stamps.day == 1).all()):
            ends.add(False)
        elif bool(stamps.is_month_end.all()):
            ends.add(True)
        else:
            return None
        clocks.update(set(stamps - stamps.normalize()))
        months = np.asarray(stamps.year * 12 + stamps.month - 1, dtype=np.int64)
        diffs.append(np.diff(months))
        phases.append(int(months[0]))
    pooled = np.concatenate(diffs) if diffs else np.array([], dtype=np.int64)
    if len(ends) != 1 or len(clocks) != 1 or not pooled.size or (pooled <= 0).any():
        return None
    step = int(np.gcd.reduce(pooled))
    end = ends.pop()
    alias = _month_alias(step, end, {phase % step for phase in phases})
    for index in indexes:
        stamps = pd.DatetimeIndex(index)
        if len(stamps) and not stamps.isin(pd.date_range(stamps[0], stamps[-1], freq=alias)).all():
            return None
    return MonthGrid(alias, "last day" if end else "first day", step)


def _month_alias(step: int, end: bool, phases: set[int]) -> str:
    """pandas' name for a grid of `step` months on month starts or ends (see `month_grid`)."""
    kind = "E" if end else "S"
    if step == 1:
        return f"M{kind}"
    if step in (3, 12) and len(phases) == 1:
        phase = phases.pop()  # the first month of the cycle, 0 = January
        # a quarter's anchor names its starting month (the first in the year) or its ending
        # month (the last in the year: 'QE-DEC' ends in March, June, September and December)
        anchor = phase if step == 12 or not end else phase + 9
        return f"{'Q' if step == 3 else 'Y'}{kind}-{_MONTH_NAMES[anchor]}"
    return f"{step}M{kind}"


def _refuse_month_day(indexes: Sequence[pd.Index], source: str) -> None:
    """Month-long steps on one day of the month other than the first or the last: pandas names
    no such frequency, so no grid can hold them; say so instead of the modal step's misfit."""
    stamps = [pd.DatetimeIndex(index) for index in indexes if len(index)]
    days = {int(day) for index in stamps for day in np.unique(index.day)}
    clocks = {clock for index in stamps for clock in set(index - index.normalize())}
    if len(days) != 1 or len(clocks) != 1:
        return
    day = days.pop()
    raise FrequencyError(
        f"{source}: every timestamp falls on day {day} of its month: months differ in length, "
        "so no fixed step fits them, and pandas has monthly frequencies only for the first "
        "('MS') and the last day ('ME'). Stamp each reading with the first day of its month "
        "(its month, as pandas' to_period('M').to_timestamp() writes it) and load the file "
        "again: the month-start frequency ('MS', or 'QS-...', 'YS-...' for longer steps) is then "
        "inferred"
    )


def regularise(
    frame: pd.DataFrame,
    rows: np.ndarray,
    series: str,
    freq: str,
    source: str,
    report: Report,
    *,
    wall_clock: bool = True,
) -> pd.DataFrame:
    """Reindex onto the regular grid from the first to the last timestamp; inserted steps are NaN.

    Timestamps off the grid are an error, not rounded: snapping or resampling would change what
    the data says, and usually means `freq` is wrong. `wall_clock`: the timestamps are times
    as written on a clock with no zone, where a daylight-saving change can leave an hour out
    (`_skipped_hours` guesses it); False for instants (the file's offsets or zone, converted
    to UTC) and counted steps, which have no such gap.
    """
    start, end = frame.index[0], frame.index[-1]
    offset = pd.tseries.frequencies.to_offset(freq)
    step = fixed_step(freq)
    n_steps = (end - start) // (step if step is not None else _mean_step(start, offset)) + 1
    # a calendar step's mean is an estimate ('bh' from a morning over-counts by up to 1.4x)
    slack = 1 if step is not None else 2
    if n_steps > slack * (MAX_GRID_GROWTH * len(frame) + 100):
        about = "" if step is not None else "about "
        raise FrequencyError(
            f"{source}: {series_named(series)}: a regular {freq!r} grid from {start} to {end} "
            f"would have {about}{n_steps:,} steps for {len(frame):,} rows; is freq right?"
        )
    unit = pd.DatetimeIndex(frame.index).unit
    try:
        grid = pd.date_range(start, end, freq=offset, unit=unit, name="timestamp")
    except ValueError:  # '500ns' on timestamps read in microseconds
        raise FrequencyError(
            f"{source}: {series_named(series)}: freq {freq!r} is finer than the timestamps' "
            f"resolution ({unit}); pass the step the data is recorded at"
        ) from None
    # a series already on its grid (most of a fleet) is the grid: equals is 2 us, isin 35
    on_grid = (
        np.ones(len(frame), dtype=bool) if frame.index.equals(grid) else frame.index.isin(grid)
    )
    if not on_grid.all():
        first = int(np.flatnonzero(~on_grid)[0])
        raise FrequencyError(
            f"{source}: {series_named(series)}: timestamp {frame.index[first]} at "
            f"{row_label(int(rows[first]))} is not on the {freq!r} grid that starts at {start} "
            f"({plural_says(int(np.count_nonzero(~on_grid)), 'timestamp', 'is', 'are')} off "
            "it). The loader does not "
            "resample: pass the freq the data is recorded at (a calendar frequency other than "
            "month starts or ends, such as 'B' or 'W-MON', must be passed explicitly), or "
            "resample the file first"
            + (
                _finer_step_hint(pd.DatetimeIndex(frame.index), series, freq)
                or _hour_shift_hint(pd.DatetimeIndex(frame.index), rows)
                or _jitter_hint(pd.DatetimeIndex(frame.index))
            )
        )
    n_missing = len(grid) - len(frame)
    # on the grid with no step missing (every timestamp is on it, no duplicates by now): the
    # grid as the index, without reindex's lookup (a quarter of a ms per series of a fleet)
    if n_missing:
        inserted = grid.difference(pd.DatetimeIndex(frame.index))
    frame = frame.set_axis(grid) if not n_missing else frame.reindex(grid)
    if n_missing:
        report.add_series(
            series,
            "regularise",
            n_missing,
            f"inserted {plural(n_missing, 'missing timestamp')} to make the series regular at "
            f"{freq!r} "
            f"({len(grid):,} steps from {start} to {end}); their values are missing and go to "
            f"the fill policy; {_inserted_where(inserted)}"
            + (_skipped_hours(inserted, grid) if wall_clock else ""),
        )
    return frame


def _inserted_where(inserted: pd.DatetimeIndex) -> str:
    """The timestamps inserted, named: up to five, then how many more."""
    shown_ = ", ".join(str(t) for t in inserted[:5])
    more = f" and {len(inserted) - 5:,} more" if len(inserted) > 5 else ""
    return f"at {shown_}{more}"


def _skipped_hours(inserted: pd.DatetimeIndex, grid: pd.DatetimeIndex) -> str:
    """For data logged hourly or faster, the clause saying how many inserted steps are the
    only gap of their day, at most an hour long, on a Sunday: where daylight-saving changes
    (North America's, Europe's, most others') leave an hour out of local times, and filling
    makes values up for an hour that never was (PJM's files: 29 of PJME's 30, each spring's
    03:00 and, before 2014, an autumn 02:00). As `_repeated_hours` guesses the duplicates."""
    if len(grid) < 2 or grid[1] - grid[0] > pd.Timedelta(hours=1):
        return ""
    step = int(grid.asi8[1] - grid.asi8[0])
    ns = inserted.asi8  # sorted
    _, first, counts = np.unique(inserted.normalize().asi8, return_index=True, return_counts=True)
    spans = ns[first + counts - 1] - ns[first] + step
    sunday = inserted[first].day_of_week == 6
    hour = pd.Timedelta(hours=1) // pd.Timedelta(1, unit=grid.unit)  # asi8 counts grid.unit
    lone = (spans <= hour) & sunday
    if not lone.any():
        return ""
    n = int(counts[lone].sum())
    return (
        f"; {n:,} of them ({plural(int(lone.sum()), 'Sunday')}) are the only gap of their day, at "
        "most an hour long, on a Sunday: the hour a daylight-saving change leaves out of local "
        "times? Filling makes up values for it; timestamps with UTC offsets (or in UTC) have "
        "no such gap"
    )


def _hour_shift_hint(index: pd.DatetimeIndex, rows: np.ndarray) -> str:
    """Where timestamps days apart keep one time of day but for a shift of one hour a few
    times (a meter read at 08:00 local time every day, exported in UTC: 07:00Z in winter,
    06:00Z in summer), what they likely are and how to write them: they were refused as off
    the 'D' grid, with the advice to pass a freq or resample, neither the problem. "" else."""
    if len(index) < 3:
        return ""
    day = pd.Timedelta(days=1) // pd.Timedelta(1, unit=index.unit)
    hour = day // 24
    stamps = index.asi8
    clock = stamps % day
    if len(np.unique(clock)) != 2 or abs(int(np.ptp(clock))) != hour:
        return ""
    steps = np.diff(stamps) % day
    if not np.isin(steps, (0, hour, day - hour)).all():
        return ""
    changes = np.flatnonzero(np.diff(clock)) + 1
    years = (stamps[-1] - stamps[0]) / (365 * day)
    if len(changes) > 2 * (years + 1):
        return ""
    k = int(changes[0])
    return (
        f". The timestamps keep one time of day but for an hour's shift "
        f"({index[k - 1]:%H:%M:%S} and {index[k]:%H:%M:%S}, first changing at {index[k]}, data "
        f"row {int(rows[k])}): readings at one local time across a daylight-saving change, "
        "written in UTC? Write them with their UTC offsets (e.g. "
        "'2018-03-25T08:00:00+02:00'), read as the dates they name, or on the local clock"
    )


def _finer_step_hint(index: pd.DatetimeIndex, series: str, freq: str) -> str:
    """Where a series steps, most often, by a whole fraction of `freq` (one meter at 15 min in
    a fleet whose modal step is 'h'): its own step, and the ways out for a fleet. "Pass the
    freq the data is recorded at" alone led to --freq 15min, which refuses every hourly series
    as 75 % filled. "" where its steps have no such common step."""
    frequency = fixed_step(freq)
    steps = np.diff(index.asi8)
    if frequency is None or not len(steps):
        return ""
    values, counts = np.unique(steps, return_counts=True)
    own = pd.Timedelta(int(values[np.argmax(counts)]), unit=index.unit)
    common = int(counts.max())
    if common < 0.5 * len(steps) or own <= pd.Timedelta(0) or own >= frequency:
        return ""
    if frequency % own != pd.Timedelta(0):
        return ""
    return (
        f". Series {shown(series)} steps by {step_alias(own)!r} ({common:,} of its "
        f"{len(steps):,} steps), finer than the file's {freq!r}: resample it to {freq!r} "
        f"(pandas: resample({freq!r}).mean()), leave it out of this file, or load the series "
        "of each frequency from a file of their own"
    )


def _jitter_hint(index: pd.DatetimeIndex) -> str:
    """Where the steps scatter around one rate (a logger stamping each reading a few hundred
    ms early or late), what they are and how to put them on the grid: the modal step of such a
    file ('837ms') names a grid nobody logs at. "" where the steps are regular or have no rate."""
    steps = np.diff(index.asi8)
    if len(steps) < 10:
        return ""
    business = _business_month_hint(index)
    if business is not None:  # whole months apart: no jitter to round away
        return business
    median = float(np.median(steps))
    _, counts = np.unique(steps, return_counts=True)
    near = np.abs(steps - median) <= 0.5 * median
    if median <= 0 or counts.max() >= 0.5 * len(steps) or near.mean() < 0.9:
        return ""
    as_step = pd.Timedelta(int(median), unit=index.unit)
    # the nearest whole unit: a median of 0.998 s is a 1-second logger, not a '998ms' one
    rate = next(
        (
            as_step.round(u)
            for u in ("D", "h", "min", "s", "ms")
            if as_step >= pd.Timedelta(1, u) / 2
        ),
        as_step,
    )
    alias = step_alias(rate)
    return (
        f". The steps scatter around {alias!r} (median {as_step.total_seconds():g} s), none of "
        f"them common (the most common is {100 * counts.max() / len(steps):.1f}% of "
        f"{len(steps):,}): readings stamped early or late around that rate? Round the "
        "timestamps to it (pandas: "
        f"timestamps.dt.round({alias!r})) and load the file again"
    )


def _business_month_hint(index: pd.DatetimeIndex) -> str | None:
    """Where the timestamps are whole months apart (one a month, at one time of day): the
    business-month frequency that holds them (month-end closes on each month's last business
    day, 2005-04-29 a Friday), else how to put them on a monthly grid. Their steps of 28 to 31
    days looked like a logger's jitter around '31D', and the advice to round the timestamps
    to '31D' moved every date off its month. None where they are not months apart."""
    months = np.asarray(index.year * 12 + index.month)
    gaps = np.diff(months)
    days = index.normalize()
    if not len(gaps) or (gaps <= 0).any() or len(np.unique(index - days)) != 1:
        return None
    every = int(np.gcd.reduce(gaps))
    for offset, alias, which in (
        (pd.offsets.BMonthEnd(), "BME", "last"),
        (pd.offsets.BMonthBegin(), "BMS", "first"),
    ):
        if all(offset.is_on_offset(day) for day in days):
            name = alias if every == 1 else f"{every}{alias}"
            return (
                f". Every timestamp is the {which} business day (Monday to Friday) of its "
                f"month: pass freq {name!r} (--freq {name})"
            )
    return (
        ". The timestamps are whole months apart, on varying days of the month, and pandas' "
        "monthly grids are the first or last (business) day ('MS', 'ME', 'BMS', 'BME'): stamp "
        "each reading with the first day of its month (pandas: to_period('M').to_timestamp()) "
        "and load the file again"
    )


def check_has_values(
    frame: pd.DataFrame,
    rows: np.ndarray,
    series: str,
    target: str,
    source: str,
    *,
    long: bool,
) -> None:
    """EmptyDataError where a column read holds no value in any row of a series: a fleet
    unit whose target never came through, a covariate logged for some units only. Said before
    the grid is made, while the series' data rows are known, so that the refusal names them,
    and with what to do: there is nothing to fill such a column from."""
    empty = frame.columns[np.logical_not(frame.notna().to_numpy().any(axis=0))]
    if not len(empty) or not len(rows):
        return
    column = str(empty[0])
    whose = f"{series_named(series)}: " if long else ""
    leave = [f"leave {series_named(series)} out of the file"] if long else []
    needs = "the target" if column == target else "each covariate"
    said = (
        f"{source}: {whose}column {column!r} has no value in any of its "
        f"{plural(len(frame), 'row')} (data rows {int(rows.min())} to {int(rows.max())}, "
        f"1-based, header not counted): every series needs values of {needs}: "
    )
    kept = said + _either(["fill them in", *leave])
    if column != target:
        leave.append(f"leave {column!r} out of covariates (--covariates)")
    raise ColumnWithoutValuesError(said + _either(["fill them in", *leave]), kept=kept)


def _either(remedies: list[str]) -> str:
    """'a', 'a, or b', 'a, b, or c'."""
    return ", ".join(remedies[:-1]) + (", or " if len(remedies) > 1 else "") + remedies[-1]


def trim_edges(frame: pd.DataFrame, series: str, source: str, report: Report) -> pd.DataFrame:
    """Drop leading/trailing rows that miss a value: nothing on one side to fill them from."""
    # numpy's any: 28 us for 300 rows where notna().all(axis=1) took 238
    complete = np.logical_not(frame.isna().to_numpy().any(axis=1))
    if not complete.any():
        empty = [str(c) for c in frame.columns if frame[c].isna().all()]
        detail = (
            f"column(s) {', '.join(map(repr, empty))} have no values"
            if empty
            else "no row is complete"
        )
        raise EmptyDataError(f"{source}: {series_named(series)}: {detail}")
    head = int(np.argmax(complete))
    tail = int(np.argmax(complete[::-1]))
    if head == 0 and tail == 0:
        return frame
    report.add_series(
        series,
        "trim",
        head + tail,
        f"trimmed {head:,} leading and {tail:,} trailing rows that miss a value "
        "(there is no observed value on one side to fill from)",
    )
    return frame.iloc[head : len(frame) - tail]


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@dataclass(frozen=True)
class Segment:
    """A stretch of one series with no missing value left, and where values were filled."""

    series_id: str
    frame: pd.DataFrame
    filled: pd.DataFrame  # bool, same shape: True where the value was filled, not observed
    unit: str = ""  # the series it was cut from (on_long_gap="split"); "": series_id itself


def fill_gaps(
    frame: pd.DataFrame,
    series: str,
    *,
    fill: FillMethod,
    max_gap: int,
    on_long_gap: LongGapPolicy,
    freq: str,
    source: str,
    report: Report,
) -> list[Segment]:
    """Fill runs of at most `max_gap` missing steps per column; refuse or split at longer runs.

    Expects a regular frame with no missing value in its first and last row. With fill="none"
    nothing is filled, so every missing value counts as a long gap. Splitting removes the rows of
    each long gap (in any column) and returns the pieces as separate series `<id>#1`, `<id>#2`...
    so that no training window ever spans a gap.
    """
    limit = 0 if fill == "none" else max_gap
    missing = frame.isna().to_numpy()
    if not missing.any():
        # nothing to fill or cut (most series of a fleet): the frame as it is, with its mask of
        # no filled value, without the per-column gap scan and a second isna (95 us of 165)
        return [Segment(series, frame, pd.DataFrame(missing, frame.index, frame.columns))]
    long_rows = np.zeros(len(frame), dtype=bool)
    long_gaps: list[tuple[int, int, int]] = []  # (start, column position, stop)
    for c in range(len(frame.columns)):
        for start, stop in runs(missing[:, c]):
            if stop - start > limit:
                long_rows[start:stop] = True
                long_gaps.append((start, c, stop))
    pieces = [frame]
    if long_gaps:
        # the earliest gap, the target's first (its column leads the frame)
        start, c, stop = min(long_gaps)
        where = f"column {str(frame.columns[c])!r}"
        if len(frame.columns) > 1 and missing[start:stop].all():  # whole rows missing
            where = f"every column ({', '.join(repr(str(n)) for n in frame.columns)})"
        longest = max(b - a for a, _, b in long_gaps)
        regions = runs(long_rows)  # a gap shared by several columns counts once
        if on_long_gap == "error":
            why = (
                "fill='none' fills nothing, so every gap is too long"
                if fill == "none"
                else f"longer than max_gap={max_gap}"
            )
            raise GapTooLongError(
                f"{source}: {series_named(series)}, {where}: {stop - start:,} missing steps "
                f"at {freq!r} from {frame.index[start]} to {frame.index[stop - 1]}, {why} "
                f"({plural(len(regions), 'such gap')} in this series, the longest {longest:,}). "
                + (
                    f"Choose fill 'interpolate' or 'ffill' with max_gap at least {longest:,} "
                    "to fill them"
                    if fill == "none"
                    else f"Raise max_gap to at least {longest:,} to fill them"
                )
                + f", or set on_long_gap to 'split' to cut the series there (allowed: "
                f"{', '.join(LONG_GAP_POLICIES)}; no window then spans the gap, and a split "
                "by time draws its borders over the pieces together)"
            )
        kept = runs(~long_rows)
        pieces = [frame.iloc[a:b] for a, b in kept]
        n_dropped = int(np.count_nonzero(long_rows))
        n_observed = int(np.count_nonzero((~missing[long_rows]).any(axis=1)))
        first_a, first_b = regions[0]
        report.add_series(
            series,
            "split",
            n_dropped,
            f"split into {len(pieces)} segments at {plural(len(regions), 'gap')} longer than "
            f"{plural(limit, 'step')} (the longest {longest:,}; the first from "
            f"{frame.index[first_a]} to {frame.index[first_b - 1]}); dropped the "
            f"{n_dropped:,} rows inside them ({n_observed:,} of which had some observed value)",
        )

    segments: list[Segment] = []
    filled_per_column = dict.fromkeys((str(c) for c in frame.columns), 0)
    # interpolated values that are not whole numbers, in columns whose observed values all are
    fractional_per_column = dict.fromkeys((str(c) for c in frame.columns), 0)
    observed_whole: dict[str, bool] = {}  # read where something is filled: most series none
    for k, piece in enumerate(pieces, start=1):
        segment_id = series if len(pieces) == 1 else f"{series}#{k}"
        if len(pieces) > 1:
            if not piece.notna().all(axis=1).any():  # only short gaps of different columns
                report.add_series(
                    segment_id,
                    "drop",
                    len(piece),
                    f"dropped this {len(piece):,}-row segment: no row has every value",
                )
                continue
            piece = trim_edges(piece, segment_id, source, report)
        mask = piece.isna()
        if mask.to_numpy().any():
            if fill == "interpolate":
                piece = piece.interpolate(method="linear", limit_area="inside")
            else:  # "ffill"; "none" never gets here: with limit 0 every gap was long
                piece = piece.ffill()
            for name, n in mask.sum().items():
                filled_per_column[str(name)] += int(n)
                if str(name) not in observed_whole:
                    observed_whole[str(name)] = _whole_numbers(frame[name])
                if observed_whole[str(name)]:
                    values = piece[name].to_numpy(dtype=np.float64)[mask[name].to_numpy()]
                    fractional_per_column[str(name)] += int(np.count_nonzero(np.mod(values, 1)))
        segments.append(Segment(segment_id, piece, mask, unit=series if len(pieces) > 1 else ""))

    n_filled = sum(filled_per_column.values())
    if n_filled:
        by_column = ", ".join(f"{c} {n:,}" for c, n in filled_per_column.items() if n)
        short = [b - a for c in range(missing.shape[1]) for a, b in runs(missing[:, c])]
        longest_filled = max((n for n in short if n <= limit), default=0)
        fractional = ", ".join(f"{c} {n:,}" for c, n in fractional_per_column.items() if n)
        whole = (
            f"; of these, values between whole numbers in columns that hold only a few whole "
            f"numbers (at most {MAX_CODES} distinct) ({fractional}): a flag or category code "
            "filled so reads as an in-between value "
            "(fill 'ffill' keeps observed values)"
            if fractional
            else ""
        )
        report.add_series(
            series,
            "fill",
            n_filled,
            f"filled {plural(n_filled, 'missing value')} by {_FILL_WORDS[fill]} (fill={fill!r}, "
            f"max_gap={max_gap}): {by_column}; longest filled gap "
            f"{plural(longest_filled, 'step')}{whole}",
        )
    return segments


def _whole_numbers(column: pd.Series) -> bool:
    """Every observed value of `column` is a whole number, and there are few of them (at most
    `MAX_CODES`): flags and category codes, which an interpolated in-between value misreads.
    A measurement recorded in whole units takes many values (PJM's load in whole MW: 17,000 in
    PJME), and its interpolated 1523.5 MW is an ordinary estimate: such a column was said to
    be "a flag or category code" with ffill advised, on every PJM slice without duplicates."""
    values = column.dropna().to_numpy(dtype=np.float64)
    if len(values) == 0 or not bool(np.all(np.mod(values, 1) == 0)):
        return False
    return len(np.unique(values)) <= MAX_CODES


# Distinct values a whole-number column may hold and still be read as codes: hours of a day
# (24), days of a month (31), weekdays, months, weather or state codes, 0/1 flags.
MAX_CODES = 32


# Aliases pandas 2.2 deprecated and pandas 3 removed, with what replaced them: the spellings
# most tutorials and older code still use.
RENAMED_ALIASES = {
    "M": "ME",
    "BM": "BME",
    "SM": "SME",
    "CBM": "CBME",
    "Q": "QE",
    "BQ": "BQE",
    "A": "YE",
    "Y": "YE",
    "BA": "BYE",
    "BY": "BYE",
    "H": "h",
    "BH": "bh",
    "CBH": "cbh",
    "T": "min",
    "S": "s",
    "L": "ms",
    "U": "us",
    "N": "ns",
}


class OffsetRangeError(ValueError):
    """A pandas alias whose step no timestamp arithmetic can hold; the message says so."""


def checked_offset(alias: str) -> BaseOffset:
    """pandas' offset for a user's `alias`, or ValueError; never OverflowError. pandas parses
    '99999999999999999h' and overflows only when the step is used (and fails to parse
    '100000000000000000000h' with an OverflowError): an alias whose one step cannot be added
    to a timestamp is refused here, where the caller names the field."""
    try:
        offset = pd.tseries.frequencies.to_offset(alias)
    except OverflowError:
        said = f"{shown(alias)} has a multiple too large for any timestamp"
        raise OffsetRangeError(said) from None
    start = pd.Timestamp("2000-01-01")
    try:
        later = start + offset
    except (OverflowError, ValueError):
        raise OffsetRangeError(f"{shown(alias)} is a step too long for any timestamp") from None
    if later <= start:  # '0h' (a grid of one instant: a division by zero) or '-1h'
        raise OffsetRangeError(f"{shown(alias)} is not a step forward in time")
    return offset


def _mean_step(start: pd.Timestamp, offset: BaseOffset, steps: int = 16) -> pd.Timedelta:
    """A calendar step's mean length over its first `steps` from `start` (a business hour
    skips nights, a month is 28 to 31 days): enough to size a grid before building it, which
    for 'bh' over a thousand years took minutes."""
    for k in (steps, 1):
        try:
            return (start + k * offset - start) / k
        except (OverflowError, ValueError):  # near 2262: fewer steps fit than k
            continue
    return pd.Timedelta.max  # not one step fits: the grid is the start alone


def same_frequency(a: str, b: str) -> bool:
    """Whether two pandas aliases are one step, as the service compares a request's freq with
    the model's: 'h' and '60min' are, 'W' and 'W-SUN' are; 'D' (a calendar day) and '24h'
    are not. An alias pandas cannot read equals only itself."""
    try:
        return bool(pd.tseries.frequencies.to_offset(a) == pd.tseries.frequencies.to_offset(b))
    except ValueError:
        return a == b


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@functools.lru_cache(maxsize=256)
def week_anchor(alias: str, model_freq: str) -> int | None:
    """The weekday (0 = Monday) from which `alias` and `model_freq`, two offsets to pandas,
    step the same instants: weeks anchored on a day and as many times 7 calendar days
    ('W-SUN' and '7D', '2W-SUN' and '14D': weekly data is inferred as '7D', and clients call
    its Sundays 'W-SUN'). None for any other pair, equal ones included. Where a day is a fixed
    24 h (pandas before 3) '7D' is no calendar week on a zoned clock: not paired there. The
    service (a request's freq) and the offline side (a backtest's data, a champion's) both
    pair frequencies by this rule."""
    try:
        pair = (
            pd.tseries.frequencies.to_offset(alias),
            pd.tseries.frequencies.to_offset(model_freq),
        )
    except (ValueError, OverflowError):
        return None
    for week, days in (pair, pair[::-1]):
        weekday = getattr(week, "weekday", None)  # pandas-stubs leave Week's attributes out
        if (
            isinstance(week, pd.offsets.Week)
            and weekday is not None
            and isinstance(days, pd.offsets.Day)
            and not isinstance(days, pd.offsets.Tick)
            and week.n > 0
            and days.n == 7 * week.n
        ):
            return int(weekday)
    return None


def week_start_problem(
    data_freq: str, model_freq: str, starts: Mapping[str, pd.Timestamp]
) -> str | None:
    """Why data at `data_freq` whose series start at `starts` (id -> first timestamp, on the
    data's own clock) is not at the steps of a model trained at `model_freq`, another spelling
    of the same weeks (`week_anchor`: '7D' data for a 'W-SUN' model, 'W-SUN' data for a '7D'
    one): a series starts on another weekday than the anchor's. None where every series
    starts on it, or where the two are not so paired (`same_frequency` judges those)."""
    weekday = week_anchor(data_freq, model_freq)
    if weekday is None:
        return None
    for series_id, first in starts.items():
        if first.weekday() != weekday:
            return (
                f"{shown(data_freq)} names the model's {model_freq!r} steps only from a "
                f"{WEEKDAYS[weekday]}, and {series_named(series_id)} starts "
                f"{first.isoformat()}, a {WEEKDAYS[first.weekday()]}"
            )
    return None


def renamed_alias_hint(alias: str) -> str:
    """ "; pandas now spells 'M' as 'ME'" (with the multiple kept: '2H' -> '2h'), or ""."""
    digits = len(alias) - len(alias.lstrip("0123456789"))
    count, base = alias[:digits], alias[digits:]
    head, _, anchor = base.partition("-")
    if head not in RENAMED_ALIASES:
        return ""
    new = count + RENAMED_ALIASES[head] + (f"-{anchor}" if anchor else "")
    return f"; pandas now spells {shown(alias)} as {shown(new)}"

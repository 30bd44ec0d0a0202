"""Stage 1 of the training pipeline: read a history file and validate it into regular series.

    from training.data import LoadConfig, load_data

    data = load_data("data/ETT-small/ETTh1.csv", LoadConfig(target="OT", covariates=("HUFL",)))
    data.series["ETTh1"]  # DataFrame: DatetimeIndex at data.freq, float64 columns OT, HUFL
    print("\\n".join(data.report_lines()))

Users bring long equipment logs and demand histories as CSV (`.csv`, `.csv.gz`) or Parquet
(`.parquet`, `.pq`) in one of two layouts:

- wide: one timestamp column and value columns, the whole file one series (named after the file,
  or `series_id`). ETT `date,HUFL,...,OT`; PJM `Datetime,PJME_MW`.
- long: `series_col` names a column of series ids; each id is one series
  (`series_id,timestamp,target,covariates...`).

The result, `LoadedData`, is what the later stages (split by time, scale on train only, windows,
fit) consume: per series a frame on a regular DatetimeIndex with no missing or infinite value,
the target first and the covariates after it, all float64; a mask of which values were filled;
and a report of every decision taken (`training/validation.py` holds the rules and the errors).

Recipes for the bundled and shared real data:

- ETT: `LoadConfig(target="OT", covariates=("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"))`
  (the `date` column is found by name). Clean: the report only says what was read.
- PJM: `LoadConfig(target="PJME_MW")`. Local time, so the report shows the decisions: rows
  sorted (the file is out of order), 4 daylight-saving fall-back hours averaged, the missing
  spring-forward hours inserted and interpolated.
- Bike sharing `hour.csv`: the date and the hour are separate columns; name both and the
  format of the joined text: `LoadConfig(target="cnt", timestamp_col=("dteday", "hr"),
  timestamp_format="%Y-%m-%d %H", ...)` (columns are joined with a space before parsing;
  on the command line `--timestamp-col dteday --timestamp-col hr`). Its 165 missing hours
  include a 36-hour outage (Hurricane Sandy, 2012-10-29/30), longer than the default
  `max_gap`: choose `max_gap=36` to interpolate across it, or `on_long_gap="split"` to cut the
  series there into segments `hour#1`, `hour#2` that no window spans (a split by time then
  draws its borders over the segments together, training.split.plan_cut_series). Most of
  the other missing hours fall at 2-5 am and `cnt` is never 0 in the file, so they are likely
  hours with no rentals left out rather than lost; interpolation overstates those.
- C-MAPSS engines (`train_FD001.txt`, space separated, no header: write it as a CSV with
  column names first): the time axis is the engine's cycle counter, not a date. Nothing guesses
  what a cycle is: `LoadConfig(target="s11", series_col="unit", timestamp_col="cycle",
  step_origin="2000-01-01", freq="D")` reads cycle k as 2000-01-01 + k days (any fixed
  `freq`; the report says so), one series per engine. Forecast timestamps follow the same
  mapping, and MASE's default scale is the one-step naive (step numbers carry no calendar
  season). Without `step_origin` such a column is refused with that advice.

Several files, one dataset (`load_many`): one global model over many series kept in separate
files, each read by its own config and cleaned by its own policies, then combined: e.g. the six
PJM regions, `load_many([(f"{r}_hourly.csv", LoadConfig(target=f"{r}_MW", series_id=r)) for r
in regions], target="MW")`. The target columns are renamed to one name (every series of a
LoadedData has the same columns); the report keeps every file's decisions, in file order.
"""

import calendar
import codecs
import csv
import ctypes
import ctypes.util
import functools
import gzip
import io
import os
import re
import stat
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO, cast

import numpy as np
import pandas as pd

from training.validation import (
    DUPLICATE_POLICIES,
    FILL_METHODS,
    LONG_GAP_POLICIES,
    SHORT_SERIES_POLICIES,
    DataValidationError,
    Decision,
    DuplicatePolicy,
    DuplicateTimestampError,
    EmptyDataError,
    FillMethod,
    InvalidOptionError,
    LongGapPolicy,
    MissingColumnError,
    MissingSeriesIdError,
    NonFiniteValueError,
    NonNumericValueError,
    OffsetRangeError,
    Report,
    Segment,
    SeriesDuplicatesError,
    SeriesTooShortError,
    SeveralSeriesError,
    ShortSeriesPolicy,
    TimestampParseError,
    UnreadableFileError,
    UnsupportedFormatError,
    check_has_values,
    checked_offset,
    fill_gaps,
    fixed_step,
    infer_frequency,
    merge_duplicates,
    natural_key,
    plural,
    plural_says,
    regularise,
    renamed_alias_hint,
    row_label,
    series_id_text,
    series_named,
    sort_by_time,
    step_alias,
    trim_edges,
    with_seconds_offset,
)
from urnn_forecast.field_types import not_one_of, shown

# Delimited text of any of these names is read alike: `sep` says what splits its fields
# (',' unless given; a .tsv read with ',' is refused with the tab named, _check_separator).
SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "csv",
    ".tsv.gz": "csv",
    ".txt": "csv",
    ".txt.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Files people export that the loader does not read, and what to do instead.
_EXPORT_ADVICE: dict[str, str] = {
    ".xlsx": "an Excel workbook: save the sheet as 'CSV UTF-8' in Excel",
    ".xls": "an Excel workbook: save the sheet as 'CSV UTF-8' in Excel",
    ".xlsm": "an Excel workbook: save the sheet as 'CSV UTF-8' in Excel",
    ".xlsb": "an Excel workbook: save the sheet as 'CSV UTF-8' in Excel",
    ".numbers": "a Numbers spreadsheet: export the table as CSV",
    ".ods": "a spreadsheet: save the sheet as CSV (UTF-8)",
    ".json": "JSON: write the table as CSV or Parquet (pandas: DataFrame.to_csv, to_parquet)",
    ".feather": "Arrow IPC: write it as Parquet (pyarrow.parquet.write_table)",
    # compressed exports: gzip is the one compression read (.csv.gz)
    ".zip": "a zip archive: unzip it, or compress the CSV with gzip as .csv.gz",
    ".bz2": "bzip2-compressed: decompress it, or compress the CSV with gzip as .csv.gz",
    ".xz": "xz-compressed: decompress it, or compress the CSV with gzip as .csv.gz",
    ".zst": "zstd-compressed: decompress it, or compress the CSV with gzip as .csv.gz",
    ".7z": "a 7-Zip archive: extract it, or compress the CSV with gzip as .csv.gz",
}
# Looked for, case-insensitively, when timestamp_col is not given; exactly one must be present.
TIMESTAMP_NAMES: tuple[str, ...] = ("timestamp", "datetime", "date", "time", "ds")


@dataclass(frozen=True)
class LoadConfig:
    """What to read from a history file and the policy for each repair. JSON-serialisable
    (`to_dict`), so a run logs exactly how its data was loaded."""

    target: str
    covariates: tuple[str, ...] = ()
    # One column, or several joined with a space before parsing (bike: ("dteday", "hr")).
    # None: the one column named like TIMESTAMP_NAMES; the choice is reported.
    timestamp_col: str | tuple[str, ...] | None = None
    timestamp_format: str | None = None  # strptime format; None: pandas infers it from row 1
    series_col: str | None = None  # long format; None: the whole file is one series
    series_id: str | None = None  # that one series' id; None: the file name without suffix
    freq: str | None = None  # pandas alias ("h", "15min", "MS"); None: inferred (infer_frequency)
    duplicates: DuplicatePolicy = "mean"
    fill: FillMethod = "interpolate"
    max_gap: int = 24  # longest run of missing steps filled, per column; longer ones: on_long_gap
    on_long_gap: LongGapPolicy = "error"  # "split": cut the series there into <id>#1, <id>#2...
    min_length: int = 2  # rows per series after cleaning; training passes lookback + horizon
    # Rows per segment of a series cut at a long gap into several (on_long_gap="split"); None:
    # min_length. Training passes one window (lookback + horizon): a split by time draws a cut
    # series' borders over its segments together (training.split.plan_cut_series), so one
    # segment need not hold a window of every part, as a whole series must. A series left with
    # one segment is one stretch again, and min_length applies to it.
    min_segment_length: int | None = None
    on_short: ShortSeriesPolicy = "error"  # "drop": leave such series out, with a report line
    sep: str = ","  # CSV field separator (SKAB uses ";")
    # The decimal mark of a CSV file's numbers: "," for European exports (1,5 with sep ";"),
    # where a "." can then only group thousands (1.034,5).
    decimal: str = "."
    # A series whose values are more than this share filled (not observed) is refused: mostly
    # synthetic history (a frequency finer than the series' own step, a sensor mostly offline)
    # is no history to train on. 1.0 accepts any.
    max_filled_fraction: float = 0.25
    # The time column counts steps (engine cycles, sample numbers), not dates: step k is read
    # as the timestamp step_origin + k x freq (freq required). None: the column holds dates.
    step_origin: str | None = None

    def __post_init__(self) -> None:
        # JSON configs and argparse hand over lists; store tuples so the config stays hashable.
        object.__setattr__(self, "covariates", tuple(self.covariates))
        if isinstance(self.timestamp_col, list):
            object.__setattr__(self, "timestamp_col", tuple(self.timestamp_col))
        if self.timestamp_col is not None and not self.timestamp_columns:  # [] read as "find it"
            raise InvalidOptionError(
                "timestamp_col must name one column or several (joined in order), or be left "
                "out to find the column by name; got an empty list"
            )
        _check_separator_option(self.sep)
        _check_choice("decimal", self.decimal, DECIMAL_MARKS)
        if self.decimal == self.sep:
            raise InvalidOptionError(
                f"decimal {self.decimal!r} is also the field separator (sep): a file with a "
                "decimal comma separates its fields with another character, ';' most often: "
                "pass sep too"
            )
        _check_timestamp_format(self.timestamp_format)
        _check_choice("duplicates", self.duplicates, DUPLICATE_POLICIES)
        _check_choice("fill", self.fill, FILL_METHODS)
        _check_choice("on_long_gap", self.on_long_gap, LONG_GAP_POLICIES)
        _check_choice("on_short", self.on_short, SHORT_SERIES_POLICIES)
        if self.max_gap < 0:
            raise InvalidOptionError(f"max_gap must be an integer >= 0, got {self.max_gap}")
        if self.min_length < 1:
            raise InvalidOptionError(f"min_length must be an integer >= 1, got {self.min_length}")
        if self.min_segment_length is not None and self.min_segment_length < 1:
            raise InvalidOptionError(
                f"min_segment_length must be an integer >= 1 or None, got {self.min_segment_length}"
            )
        if not 0.0 < self.max_filled_fraction <= 1.0:
            raise InvalidOptionError(
                f"max_filled_fraction must lie in (0, 1], got {self.max_filled_fraction}"
            )
        if self.freq is not None:
            try:
                checked_offset(self.freq)
            except OffsetRangeError as error:
                raise InvalidOptionError(f"freq {error}") from None
            except ValueError:
                raise InvalidOptionError(
                    f"freq {shown(self.freq)} is not a pandas offset alias"
                    f"{renamed_alias_hint(self.freq)}; "
                    "use e.g. 'h', '15min', '30min', 'D', 'W-SUN', 'MS', 'B'"
                ) from None
        if self.step_origin is not None:
            self._check_step_origin()
        values = (self.target, *self.covariates)
        if len(set(values)) != len(values):
            repeated = next(v for i, v in enumerate(values) if v in values[:i])
            where = (
                "is the target and a covariate"
                if repeated == self.target
                else "is named more than once among the covariates"
            )
            raise InvalidOptionError(
                f"target and covariates must be distinct columns: {repeated!r} {where} "
                f"(target={self.target!r}, covariates={list(self.covariates)})"
            )
        if self.series_col == "":  # "" is no column; the loader would look one up by that name
            raise InvalidOptionError(
                "series_col (--series-col) must name the column of series ids, or be None when "
                "the whole file is one series; got ''"
            )
        if self.series_id is not None and not str(self.series_id).strip():
            # '' fell back to the file's name without a word, and '  ' named the series with
            # spaces, an id the loader refuses in a series column ("is only spaces")
            raise InvalidOptionError(
                f"series_id (--series-id) must be an id with more than spaces, or be left out "
                f"to name the one series after the file; got {shown(self.series_id)}"
            )
        if self.series_col is not None and self.series_id is not None:
            raise InvalidOptionError(
                f"series_id (--series-id) names the one series of a file without a series "
                f"column; with series_col={self.series_col!r} the ids are that column's values: "
                "give one or the other"
            )
        keys = {c: "the timestamp (timestamp_col, --timestamp-col)" for c in self.timestamp_columns}
        if self.series_col:
            keys[self.series_col] = "the series column (series_col, --series-col)"
        for column in [self.target, *self.covariates]:
            if column in keys:
                part = (
                    "the target (target, --target)"
                    if column == self.target
                    else "a covariate (covariates, --covariates)"
                )
                raise InvalidOptionError(
                    f"column {column!r} is {keys[column]} and {part}; each column plays one part"
                )

    def fill_said(self) -> str:
        """How the loader fills the target's gaps, as the messages about filled values say it:
        " (fill 'interpolate' across a gap of up to max_gap=24 rows of 'y')"."""
        return (
            f" (fill {self.fill!r} across a gap of up to max_gap={self.max_gap:,} rows of "
            f"{self.target!r})"
        )

    def _check_step_origin(self) -> None:
        if self.freq is None or fixed_step(self.freq) is None:
            raise InvalidOptionError(
                f"step_origin needs freq, a fixed step such as 's', 'min', 'h' or 'D' (the time "
                f"one step stands for); got freq={self.freq!r}"
            )
        if len(self.timestamp_columns) > 1:
            raise InvalidOptionError(
                "step_origin reads one column of step numbers; got timestamp_col="
                f"{list(self.timestamp_columns)}"
            )
        try:  # 'now' and a time alone ('13:00') are the day pandas runs on: not an origin
            origin = naive_utc(pd.Timestamp(str(self.step_origin)))
            valid = not pd.isna(origin) and not NO_DATE.fullmatch(str(self.step_origin))
            valid = valid and pd.Timestamp.min <= origin <= pd.Timestamp.max
        except (ValueError, TypeError, OverflowError):
            valid = False
        if not valid:
            raise InvalidOptionError(
                f"step_origin must be a timestamp such as '2000-01-01' or '2000-01-01 00:00', "
                f"between {pd.Timestamp.min} and {pd.Timestamp.max}; got "
                f"{shown(self.step_origin)}"
            )

    @property
    def timestamp_columns(self) -> tuple[str, ...]:
        """The declared timestamp column(s); empty when they are to be found by name."""
        if self.timestamp_col is None:
            return ()
        if isinstance(self.timestamp_col, str):
            return (self.timestamp_col,)
        return self.timestamp_col

    @property
    def value_columns(self) -> tuple[str, ...]:
        return (self.target, *self.covariates)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["covariates"] = list(self.covariates)
        if isinstance(self.timestamp_col, tuple):
            out["timestamp_col"] = list(self.timestamp_col)
        return out


@dataclass(frozen=True)
class LoadedData:
    """Clean regular series and the record of how they were made."""

    # id -> DatetimeIndex named "timestamp" at `freq`, no gaps; float64 columns
    # [target, *covariates], no NaN or inf.
    series: Mapping[str, pd.DataFrame]
    # id -> bool frame of the same shape: True where the value was filled, not observed (so
    # metrics can leave imputed targets out).
    filled: Mapping[str, pd.DataFrame]
    target: str
    covariates: tuple[str, ...]
    freq: str
    source: str
    config: LoadConfig
    report: tuple[Decision, ...] = field(default=())
    # segment id -> the series it was cut from at a long gap (on_long_gap="split": "<id>#1",
    # "<id>#2"...); ids not here are units of their own. Splits that hold out whole units keep
    # a unit's segments together, so no part of a held-out unit trains.
    units: Mapping[str, str] = field(default_factory=dict)

    def unit_of(self, series_id: str) -> str:
        return self.units.get(series_id, series_id)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.target, *self.covariates)

    def report_lines(self) -> list[str]:
        return [d.message for d in self.report]

    def brief_report_lines(
        self, max_series: int = 10, *, full_report: str = "the full report (data_report.txt)"
    ) -> list[str]:
        """The report as a terminal should show it. A file of 100 engines makes 200 routine
        "ready" lines that would bury the decisions that matter, so past `max_series` series
        the per-series decisions that changed something are kept (up to `max_series` of them,
        then a count) and the routine lines become one line of totals; `report_lines` keeps
        every line for the run's data_report.txt."""
        files = [Path(part).name for part in self.source.split(", ")]  # merged files: several
        subjects = {d.subject for d in self.report} - set(files)
        if len(subjects) <= max_series:
            return self.report_lines()
        lines = [d.message for d in self.report if d.subject in files]
        notable = [d.message for d in self.report if d.subject not in files and d.step != "summary"]
        lines += notable[:max_series]
        if len(notable) > max_series:
            lines.append(f"... and {len(notable) - max_series:,} more decisions on single series")
        rows = [len(frame) for frame in self.series.values()]
        filled = sum(int(mask.to_numpy().sum()) for mask in self.filled.values())
        values = sum(frame.size for frame in self.series.values())
        if rows:
            lines.append(
                f"{', '.join(files)}: {len(rows):,} series ready at {self.freq!r}: "
                f"{sum(rows):,} rows in all, {min(rows):,} to {max(rows):,} each; {filled:,} of "
                f"{values:,} values filled ({100 * filled / values:.3f}%); every series' lines "
                f"are in {full_report}"
            )
        return lines


def load_data(path: str | Path, config: LoadConfig) -> LoadedData:
    """Read `path` and return its series cleaned by the policies in `config`.

    Order of the rules: parse every timestamp and value (errors name file, column, data row);
    per series sort, merge duplicates; infer or check the frequency; regularise; trim rows
    missing a value at either end; fill or refuse/split at gaps; refuse/drop short series.
    Raises a `training.validation.DataValidationError` subclass on anything no policy covers.
    """
    path = Path(path)
    kind = file_format(path)
    source = path.name
    report = Report()

    available = _columns_in_file(path, kind, config.sep)
    _check_separator(available, kind, config.sep, source)
    time_columns = resolve_columns(available, config, source, report)
    wanted = [*time_columns, *([config.series_col] if config.series_col else [])]
    wanted += list(config.value_columns)
    raw, cut = _read_settled(path, kind, wanted, time_columns, config, report)
    if cut is not None:  # a line is a row once its newline is written
        raw = raw.iloc[:-1]
        report.add(
            source,
            "read",
            1,
            f"left out the file's last line {shown(cut)}: it does not end with a newline, as "
            "a line still being written does (an export or log read mid-write, which a value "
            "cut short would read as another number); it is read once its newline is there: "
            "end the file with a newline, or write the file under another name and rename it",
            caution=True,
        )
        if raw.empty:
            raise EmptyDataError(
                f"{source}: the file has a header but no complete data rows: its one data line "
                f"{shown(cut)} does not end with a newline (a line still being written); end "
                "the file with a newline"
            )
    if raw.empty:
        raise EmptyDataError(f"{source}: the file has a header but no data rows")

    if kind == "csv":
        _report_blank_lines(path, source, report)
        _refuse_blank_rows(raw, source)
        _refuse_units_row(raw, time_columns, config.value_columns, source)
        _refuse_repeated_header(raw, time_columns, source)
    groups = _group_rows(raw, config, path, report)
    report.add(
        source,
        "read",
        len(raw),
        f"read {len(raw):,} rows, columns {', '.join(map(repr, wanted))}: {len(groups):,} series",
    )
    if config.step_origin is not None:
        stamps = _steps_as_timestamps(raw, time_columns[0], config, source, report)
    else:
        ids = None if config.series_col is None else raw.get(config.series_col)
        stamps = _parse_timestamps(
            raw, time_columns, config.timestamp_format, source, report, ids=ids
        )
        del ids  # the id column is let go with the rest of the text below, not held on
    # the timestamp and id text is parsed and grouped: only the value columns are read on
    raw = raw[list(config.value_columns)]
    _release_arrow_memory()
    values = _numeric_values(
        raw,
        config.value_columns,
        source,
        report,
        config.decimal,
        config.sep if kind == "csv" else None,
        groups=None if config.series_col is None else groups,
    )
    if config.sep != "," and config.decimal == ".":
        _note_thousands(values, source, report)
    _check_finite(values, source, groups=None if config.series_col is None else groups)
    del raw  # the cells as read (text, where decimal=','): converted to values
    _release_arrow_memory()
    _report_missing_cells(
        values, source, report, lambda missing: _cells_as_written(path, missing, config)
    )

    # zoned timestamps were converted to UTC (a "timezone" decision), counted steps name no
    # clock: neither skips nor repeats an hour where a daylight-saving change does on a local
    # clock, and the report makes no such guess of their gaps and duplicates
    wall_clock = config.step_origin is None and not any(
        d.step == "timezone" and d.subject == source for d in report.decisions
    )
    # Sort and merge duplicates first: the frequency is inferred from the cleaned timestamps.
    prepared: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
    numbers = None if len(groups) == 1 else values.to_numpy()
    # the duplicates refused in each series, then one refusal: a fleet's regions may all
    # repeat the daylight-saving hour, and naming one a run had a user fix them one at a time
    repeated: list[tuple[str, DuplicateTimestampError]] = []
    for series_id, positions in groups.items():
        frame = _rows_at(values, numbers, stamps, positions, config.value_columns)
        rows = positions + 1  # 1-based data rows
        frame, rows = sort_by_time(frame, rows, series_id, report)
        try:
            frame, rows = merge_duplicates(
                frame,
                rows,
                series_id,
                config.duplicates,
                source,
                report,
                wall_clock=wall_clock,
                id_columns=None if config.series_col else _id_like_columns(available, wanted),
            )
        except DuplicateTimestampError as error:
            repeated.append((series_id, error))
        if repeated:  # refused below: the other series are read for their duplicates only
            continue
        check_has_values(
            frame, rows, series_id, config.target, source, long=config.series_col is not None
        )
        prepared[series_id] = (frame, rows)
    if repeated:
        _refuse_repeated_timestamps(repeated, len(groups), source)
    del values, numbers, stamps, groups  # each series holds its own rows now

    if config.freq is None:
        freq = infer_frequency([f.index for f, _ in prepared.values()], source, report)
    else:
        freq = config.freq
        report.add(source, "frequency", 0, f"frequency {freq!r} as declared")

    segments: list[Segment] = []
    while prepared:  # each series' sorted rows are let go once it is regularised
        series_id, (frame, rows) = _pop_first(prepared)
        observed = frame.index
        frame = regularise(frame, rows, series_id, freq, source, report, wall_clock=wall_clock)
        frame = trim_edges(frame, series_id, source, report)
        pieces = fill_gaps(
            frame,
            series_id,
            fill=config.fill,
            max_gap=config.max_gap,
            on_long_gap=config.on_long_gap,
            freq=freq,
            source=source,
            report=report,
        )
        _check_filled_share(pieces, observed, freq, config, source)
        segments += pieces

    _check_segment_ids(segments, source)
    kept = _apply_min_length(segments, config, source, report, freq)
    for segment in kept:
        _check_finite_result(segment, source)
        n_filled = int(segment.filled.to_numpy().sum())
        report.add_series(
            segment.series_id,
            "summary",
            len(segment.frame),
            f"ready: {len(segment.frame):,} rows at {freq!r} from {segment.frame.index[0]} "
            f"to {segment.frame.index[-1]}; {n_filled:,} of {segment.frame.size:,} values filled "
            f"({100 * n_filled / segment.frame.size:.3f}%)",
        )
    return LoadedData(
        series={s.series_id: s.frame for s in kept},
        filled={s.series_id: s.filled for s in kept},
        target=config.target,
        covariates=config.covariates,
        freq=freq,
        source=str(path),
        config=config,
        report=tuple(report.decisions),
        units={s.series_id: s.unit for s in kept if s.unit},
    )


def _rows_at(
    values: pd.DataFrame,
    numbers: np.ndarray | None,
    stamps: pd.DatetimeIndex,
    positions: np.ndarray,
    columns: Sequence[str],
) -> pd.DataFrame:
    """One series' rows of the file's `values` (`numbers`: them as one array, where the file
    holds several series), indexed by their timestamps. The whole file in its order (one
    series, positions 0..n-1) is `values` itself, not a copy of it: a 16 M-row file held
    each column twice, three times with the copy of the rows made per series."""
    if len(positions) == len(stamps) and (len(positions) == 0 or positions[-1] == len(stamps) - 1):
        # positions are ascending and distinct: n of them ending at n - 1 are 0..n-1
        return values.set_axis(stamps, axis=0)
    if numbers is None:
        numbers = values.to_numpy()
    return pd.DataFrame(numbers[positions], columns=list(columns), index=stamps[positions])


# Column names that read as a series id ("region", "unit_id", "Station", "deviceId")
_ID_WORDS = re.compile(
    r"(?:^|[^a-z])(?:id|ids|series|unit|region|zone|station|site|sensor|device|machine|meter"
    r"|asset|engine|pump|node|store|item|sku|customer|client|name|key|channel|turbine"
    r"|building|location|country|city|state|well|plant|line)(?:$|[^a-z])|[a-z]id$"
)


def _id_like_columns(available: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The columns of a file the run does not read whose names read as a series id: where a
    file read as one series repeats its timestamps, the likely id column of a long file."""
    return [c for c in available if c not in wanted and _ID_WORDS.search(c.lower())]


def _refuse_repeated_timestamps(
    repeated: list[tuple[str, DuplicateTimestampError]], n_series: int, source: str
) -> None:
    """The duplicates refused in a long file's series, as one refusal: under duplicates=
    "error", how many series repeat a timestamp and the first few, each with its first;
    refused otherwise (more than two rows under one time), the first series' refusal and
    which others are refused so too. One series: its own message."""
    first = repeated[0][1]
    if len(repeated) == 1:
        raise first
    errors = [error for _, error in repeated]
    if not all(isinstance(error, SeriesDuplicatesError) for error in errors):
        others = _some_names([series_id for series_id, _ in repeated[1:]])
        refusal = (
            SeveralSeriesError if isinstance(first, SeveralSeriesError) else DuplicateTimestampError
        )
        raise refusal(f"{first} ({len(repeated) - 1:,} more series are refused so too: {others})")
    named = [error for error in errors if isinstance(error, SeriesDuplicatesError)]
    listed = ", ".join(
        f"{shown(e.series)} (first {e.first} at data rows {e.first_rows})" for e in named[:5]
    ) + (f" and {len(named) - 5:,} more" if len(named) > 5 else "")
    merging = ", ".join(p for p in DUPLICATE_POLICIES if p != "error")
    how_many = (
        f"all {n_series:,} series"
        if len(named) == n_series
        else f"{len(named):,} of the {n_series:,} series"
    )
    raise DuplicateTimestampError(
        f"{source}: {how_many} have duplicated timestamps "
        f"({sum(e.stamps for e in named):,} timestamps, {sum(e.rows for e in named):,} "
        f"rows in all): series {listed} (data rows 1-based, header not counted). "
        f"Set duplicates to one of {merging} to merge them"
    )


@functools.cache
def _libc() -> Any:
    """The C library, for malloc_trim; None where there is none to load."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _release_freed_memory() -> None:
    """Hand memory freed in small blocks back to the system where the C library can (glibc's
    malloc_trim): the chunks a big file is read in are ~0.5 MB each, below the size the
    allocator maps on its own, and stay in the process once freed, while each column joined
    from them is a fresh mapping; 7 float columns of 16 M rows held 0.9 GB of freed chunks.
    Then Arrow's (`_release_arrow_memory`)."""
    trim = getattr(_libc(), "malloc_trim", None)  # glibc's; others (macOS, musl) lack it
    if trim is not None:
        trim(0)
    _release_arrow_memory()


def _release_arrow_memory() -> None:
    """Hand the memory of freed Arrow buffers (the text columns pandas reads into Arrow
    strings) back to the system: pyarrow's allocator keeps it for Arrow's own later use, which
    the float arrays built after the read are not, so a 16 M-row file's 430 MB of timestamp
    text stayed in the process's peak after it was parsed."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _pop_first(items: dict[str, Any]) -> tuple[str, Any]:
    """The first (key, value) of `items`, removed from it: insertion order, as iterating it."""
    key = next(iter(items))
    return key, items.pop(key)


# The one column of each channel series (`channels_as_series`): the model forecasts whichever
# channel it is sent, so its target is named for none of them.
CHANNEL_TARGET = "value"


def channels_as_series(data: LoadedData) -> LoadedData:
    """Channel independence for a multivariate file (SegRNN, PatchTST): every column of every
    series, target and covariates alike, becomes a univariate series `<id>/<column>` whose
    one column is `CHANNEL_TARGET`; one model then forecasts each channel from its own
    history. The data report says so. A series cut at a long gap is refused: its segments
    and its channels would both be parts of one unit, which the splits do not tell apart."""
    if data.units:
        segment, unit = next(iter(data.units.items()))
        raise InvalidOptionError(
            f"{data.source}: {series_named(unit)} was cut at a long gap (segment {segment!r}); "
            "channel_independent (--channel-independent) takes whole series: fill the gap "
            "(max_gap, --max-gap) or leave channel_independent off"
        )
    series: dict[str, pd.DataFrame] = {}
    filled: dict[str, pd.DataFrame] = {}
    for series_id, frame in data.series.items():
        for column in data.columns:
            channel = f"{series_id}/{column}"
            series[channel] = frame[[column]].set_axis([CHANNEL_TARGET], axis=1)
            filled[channel] = data.filled[series_id][[column]].set_axis([CHANNEL_TARGET], axis=1)
    file = Path(data.source.split(", ")[0]).name
    said = ", ".join(repr(c) for c in data.columns)
    decision = Decision(
        file,
        "summary",
        len(series),
        f"{file}: channel-independent: the columns {said} of each of the {len(data.series):,} "
        f"series are {len(series):,} series '<id>/<column>' of one column {CHANNEL_TARGET!r}; "
        "one model forecasts each from its own history (no covariates)",
    )
    return replace(
        data,
        series=series,
        filled=filled,
        target=CHANNEL_TARGET,
        covariates=(),
        report=(*data.report, decision),
    )


class IncompatibleFilesError(DataValidationError):
    """Files that cannot be combined into one dataset: different frequencies or covariates, or
    a series id that two files both hold."""


def load_many(
    sources: Sequence[tuple[str | Path, LoadConfig]], *, target: str | None = None
) -> LoadedData:
    """Read every (path, config) with `load_data` and combine the results (`merge_loaded`).
    Each file is validated and repaired by its own config; the first error stops the load."""
    if not sources:
        raise InvalidOptionError("load_many needs at least one (path, config) pair")
    return merge_loaded([load_data(path, config) for path, config in sources], target=target)


def merge_loaded(parts: Sequence[LoadedData], *, target: str | None = None) -> LoadedData:
    """One LoadedData holding every series of `parts`, for one global model.

    `target`: the name every part's target column is renamed to (files may name it
    differently: PJM's `PJME_MW`, `DEOK_MW`, ...); None keeps the first part's name. The parts
    must share the frequency, the covariate names and no series id. The result's report is
    every part's decisions in order plus one line per part naming the series it gave and the
    rename; its `config` is the first part's with the common target and no series_id; its
    `source` lists every part's source.
    """
    if not parts:
        raise InvalidOptionError("merge_loaded needs at least one LoadedData")
    first = parts[0]
    name = first.target if target is None else target
    if name in first.covariates:
        raise InvalidOptionError(
            f"target name {name!r} is also a covariate column "
            f"({', '.join(map(repr, first.covariates))})"
        )
    series: dict[str, pd.DataFrame] = {}
    filled: dict[str, pd.DataFrame] = {}
    owner: dict[str, str] = {}
    report: list[Decision] = []
    for part in parts:
        if part.freq != first.freq:
            raise IncompatibleFilesError(
                f"{part.source} is at frequency {part.freq!r}, {first.source} at "
                f"{first.freq!r}; combined series must share one frequency"
            )
        if part.covariates != first.covariates:
            raise IncompatibleFilesError(
                f"{part.source} has covariates {list(part.covariates)}, {first.source} "
                f"{list(first.covariates)}; combined series must have the same covariates"
            )
        clash = sorted(set(part.series) & set(series))
        if clash:
            raise IncompatibleFilesError(
                f"series id(s) {clash} in both {owner[clash[0]]} and {part.source}; give each "
                "file its own series_id"
            )
        rename = {part.target: name}
        for series_id, frame in part.series.items():
            series[series_id] = frame.rename(columns=rename)
            filled[series_id] = part.filled[series_id].rename(columns=rename)
            owner[series_id] = part.source
        report += part.report
        renamed = f", target {part.target!r} renamed to {name!r}" if part.target != name else ""
        report.append(
            Decision(
                Path(part.source).name,
                "read",
                len(part.series),
                f"{Path(part.source).name}: combined as series "
                f"{', '.join(map(shown, part.series))}{renamed}",
            )
        )
    return LoadedData(
        series=series,
        filled=filled,
        target=name,
        covariates=first.covariates,
        freq=first.freq,
        source=", ".join(part.source for part in parts),
        config=replace(first.config, target=name, series_id=None),
        report=tuple(report),
        units={sid: unit for part in parts for sid, unit in part.units.items()},
    )


def file_format(path: Path) -> str:
    """The reader to use, from the file name's suffix: `csv` or `parquet`."""
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    advice = _EXPORT_ADVICE.get(path.suffix.lower())
    raise UnsupportedFormatError(
        f"{path.name}: unsupported file type {''.join(path.suffixes) or '(no suffix)'!r}"
        + (f" ({advice})" if advice else "")
        + f"; allowed suffixes: {', '.join(SUFFIXES)}"
    )


# --- reading ---------------------------------------------------------------------------------


def _columns_in_file(path: Path, kind: str, sep: str) -> list[str]:
    """The header alone, so a missing column is reported before the whole file is parsed."""
    try:
        if kind == "csv" and len(sep) == 1:
            names = _csv_header(path, sep)
        elif kind == "csv":  # the names as written: pandas would rename a repeated one "OT.1"
            with open_regular(path) as raw:
                header = pd.read_csv(
                    raw,
                    compression=_compression(path),
                    sep=sep,
                    nrows=1,
                    header=None,
                    dtype=str,
                    engine="python",
                )
            names = ["" if pd.isna(c) else str(c) for c in header.iloc[0]]
        else:
            import pyarrow.parquet as pq

            with open_regular(path) as raw:
                names = [str(c) for c in pq.read_schema(raw).names]
        if kind == "csv":
            _refuse_not_utf8_header(names, path.name)
            _refuse_preamble(path, sep)
            _refuse_number_header(names, path.name)
        if kind == "csv":  # as pandas names them when it reads the file: "Unnamed: 3"
            return [name or f"Unnamed: {i}" for i, name in enumerate(names)]
        return names
    except pd.errors.EmptyDataError:
        raise EmptyDataError(f"{path.name}: the file is empty (no header line)") from None
    except (FileNotFoundError, DataValidationError):
        raise
    except READ_ERRORS as error:
        raise _unreadable(path, kind, error) from error


def gzipped(path: Path) -> bool:
    """Whether the file is named as gzip-compressed (.csv.gz, .tsv.gz, .txt.gz)."""
    return path.name.lower().endswith(".gz")


def _compression(path: Path) -> Literal["gzip"] | None:
    """pandas' `compression` for the file opened by `open_regular`, as it infers it from a
    name: gzip for a .csv.gz."""
    return "gzip" if gzipped(path) else None


# What a path that is not a regular file is, by its mode (stat.S_IFMT)
_NOT_REGULAR = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
    stat.S_IFSOCK: "a socket",
}


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading (binary), refused unless it is a regular file. Every read of
    a data file opens it here: without waiting (O_NONBLOCK; the open of a named pipe waits for
    a writer for ever) and checked on the descriptor opened (fstat), not by name, so a file
    swapped for a pipe or a device after a check by name is refused (UnreadableFileError)
    instead of waited on or read without end. Before, a job's training (or the API's check
    of a submission) whose file became a named pipe never ended."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            what = _NOT_REGULAR.get(stat.S_IFMT(mode), "not a file")
            raise UnreadableFileError(
                f"{path.name}: not a regular file ({what}); the data must be a regular file"
            )
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


@contextmanager
def _open_bytes(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, a .csv.gz's decompressed (`open_regular`)."""
    with open_regular(path) as raw:
        if not gzipped(path):
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as unpacked:
            yield cast(BinaryIO, unpacked)


# The longest line the header checks read (the header, the lines before it, the first data
# rows): a header of a million columns is 11 MB. A line read whole without a bound made a
# 291 KB .csv.gz of zeros (one 300 MB "line") cost the API 4 s and 680 MB at submission, and
# a few MB of such a file would take gigabytes.
MAX_LINE_CHARS = 64 * 2**20
# The blank lines `has_data_rows` skips before it finds the first data row: a 97 KB .csv.gz
# of a header and 100 million newlines took 31 s of CPU in a job's submission check.
BLANK_LINES_MAX = 1_000_000


def _bounded_lines(text: Any, source: str) -> Iterator[str]:
    """`text`'s lines, as iterating it gives them, refusing one longer than MAX_LINE_CHARS
    (UnreadableFileError naming the file) before it is read in full."""
    while line := text.readline(MAX_LINE_CHARS + 1):
        if len(line) > MAX_LINE_CHARS:
            raise UnreadableFileError(
                f"{source}: a line longer than {MAX_LINE_CHARS:,} characters among its first "
                "lines: not a CSV file of a time series (a file of one long line, or binary "
                "data named .csv)"
            )
        yield line


@contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    """A CSV file (or .csv.gz) as text the way pandas reads it: UTF-8, a byte-order mark
    skipped, newlines left to the csv module."""
    with (
        _open_bytes(path) as binary,
        io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as text,
    ):
        yield text


# Files named .csv (or .txt, .tsv) that are another format, by their first four bytes, and
# what to do: read as text they were "in another encoding (Windows-1252 or Latin-1)", advice
# that leads nowhere for an Excel workbook saved under a .csv name or a zip of the export.
_TO_CSV = "save the sheet as 'CSV UTF-8' in Excel"
_GZIP_IT = "decompress it (gzip, as .csv.gz, is the compression read)"
_BINARY_FORMATS: tuple[tuple[bytes, str, str], ...] = (
    (
        b"PK\x03\x04",
        "a zip archive (an Excel .xlsx workbook is one)",
        f"a workbook: {_TO_CSV}; an archive: {_GZIP_IT}",
    ),
    (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (.xls)", _TO_CSV),
    *((b"BZh%d" % level, "bzip2-compressed", _GZIP_IT) for level in range(1, 10)),
    (b"\xfd7zXZ", "xz-compressed", _GZIP_IT),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", _GZIP_IT),
    (b"7z\xbc\xaf", "a 7-Zip archive", _GZIP_IT),
    (b"PAR1", "a Parquet file", "name it with the suffix .parquet"),
)


def _unreadable(path: Path, kind: str, error: Exception) -> UnreadableFileError:
    """The error for a file the readers failed on; for text that is not UTF-8, where and what
    to do, which the decoder's own words ("can't decode byte 0xd6 in position 36") do not
    say: the position is in a chunk of the file, and no line is named."""
    if isinstance(error, gzip.BadGzipFile) and gzipped(path):
        with open_regular(path) as raw:
            if raw.read(2) != b"\x1f\x8b":  # not a damaged archive: no archive at all
                return UnreadableFileError(
                    f"{path.name}: the file is named .gz but is not gzip-compressed; name it "
                    f"{path.name[: -len('.gz')]} (without .gz)"
                )
    if not isinstance(error, UnicodeDecodeError):
        return UnreadableFileError(f"{path.name}: cannot read it as {kind}: {error}")
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with _open_bytes(path) as raw:
        while chunk := raw.read(1 << 20):  # a chunk at a time: the file may be large
            if line == 1 and chunk.startswith(b"\x1f\x8b") and not gzipped(path):
                return UnreadableFileError(
                    f"{path.name}: the file is gzip-compressed; name it with the suffix "
                    f"{_suffix(path)}.gz (or decompress it)"
                )
            binary = [f for f in _BINARY_FORMATS if chunk.startswith(f[0])] if line == 1 else []
            if binary:
                _, what, advice = binary[0]
                return UnreadableFileError(
                    f"{path.name}: the file is {what}, not delimited text (its first bytes say "
                    f"so); {advice}"
                )
            if line == 1 and chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                return UnreadableFileError(
                    f"{path.name}: the file is UTF-16 text (it starts with a UTF-16 "
                    "byte-order mark); the loader reads UTF-8: save it as UTF-8 ('CSV UTF-8' "
                    "in Excel)"
                )
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as bad:
                line += bad.object.count(b"\n", 0, bad.start)
                return UnreadableFileError(
                    f"{path.name}: line {line:,} (1-based, header included) holds byte "
                    f"0x{bad.object[bad.start]:02x}, which is not UTF-8 text: the file is in "
                    "another encoding (Windows-1252 or Latin-1, as some tools save 'CSV'); "
                    "save it as UTF-8 ('CSV UTF-8' in Excel)"
                )
            line += chunk.count(b"\n")
    return UnreadableFileError(f"{path.name}: cannot read it as {kind}: {error}")


def _csv_header(path: Path, sep: str) -> list[str]:
    """The first non-blank line's fields, read as pandas' C reader reads them (quotes, a
    UTF-8 byte-order mark, blank lines skipped), without pandas: its header reading is
    quadratic in the number of columns (26 s for a 200,000-column header, which an API
    request waited on)."""
    with _open_text(path) as text:
        for row in csv.reader(_bounded_lines(text, path.name), delimiter=sep):
            if any(cell.strip() for cell in row):
                return row
    raise pd.errors.EmptyDataError("no header line")


def _refuse_not_utf8_header(names: list[str], source: str) -> None:
    """NUL characters in the header: UTF-16 text without a byte-order mark ('d\\x00a\\x00t...'
    decodes as UTF-8 without an error), which was reported as a file without the timestamp
    column, listing names full of '\\x00'."""
    if any("\x00" in name for name in names):
        raise UnreadableFileError(
            f"{source}: the header holds NUL characters ({shown(''.join(names)[:24])}): the "
            "file is UTF-16 text without a byte-order mark (or not text at all); the loader "
            "reads UTF-8: save it as UTF-8 ('CSV UTF-8' in Excel)"
        )


# Lines before the header that some exports write: Excel's separator hint ("sep=;"), and
# comments ("# exported by ...", "// site A").
_SEP_HINT = re.compile(r"\s*sep=(.)\s*", re.IGNORECASE)
_COMMENT = ("#", "//")
PREAMBLE_LINES = 50  # comment lines looked through for the header after them


def _preamble_line(line: str) -> bool:
    return bool(_SEP_HINT.fullmatch(line)) or line.lstrip().startswith(_COMMENT)


def _refuse_preamble(path: Path, sep: str) -> None:
    """A first line that is not the header: Excel's "sep=;" (read as the header, it answered
    "no timestamp column, the file has 'sep='" even with the right sep), or comment lines
    (a '# exported by SCADA v2' header was taken for a whitespace-separated file). Refused
    with the lines named: the loader skips no lines, so the header must come first. A first
    line starting with '#' that splits into as many fields as the line after the comments
    is a header whose first name starts with '#', and is left alone."""
    lines: list[str] = []
    with _open_text(path) as text:
        for line in _bounded_lines(text, path.name):
            if line.strip():
                lines.append(line.rstrip("\r\n"))
            if len(lines) == 1 and not _preamble_line(lines[0]):
                return  # an ordinary header: nothing more to read (a wide file's is long)
            if len(lines) > PREAMBLE_LINES:
                break
    if not lines:
        return
    hint = _SEP_HINT.fullmatch(lines[0])
    if hint:
        given = hint.group(1)
        shown_sep = "'\\t'" if given == "\t" else repr(given)
        raise MissingHeaderError(
            f"{path.name}: line 1 {shown(lines[0])} is Excel's separator hint, not the header: "
            f"the loader reads the column names from the first line; delete that line and pass "
            f"sep={shown_sep} (--sep {shown_sep})"
        )
    if not lines[0].lstrip().startswith(_COMMENT):
        return
    comments = 0
    while comments < len(lines) and lines[comments].lstrip().startswith(_COMMENT):
        comments += 1

    def width(line: str) -> int:
        if len(sep) == 1:
            return len(next(csv.reader([line], delimiter=sep), []))
        return len(re.split(sep, line.strip()))  # pandas' regex separators skip the margins

    if comments < len(lines) and width(lines[0]) == width(lines[comments]):
        return  # a header whose first column name starts with '#'
    if comments == len(lines) and len({width(line) for line in lines}) == 1 and width(lines[0]) > 1:
        return  # every line starts with '#' and splits alike: a '#' header over '#' ids
    many = comments > 1
    raise MissingHeaderError(
        f"{path.name}: the file starts with {'comment lines' if many else 'a comment line'} "
        f"({shown(lines[0][:60])}{', ...' if many else ''}), not with the header: the loader "
        f"skips no lines and reads the column names from the first one; delete the "
        f"{plural(comments, 'comment line')} before the header"
        + (f" (and any past line {PREAMBLE_LINES})" if comments >= len(lines) else "")
    )


class MissingHeaderError(DataValidationError):
    """A delimited file whose first line is data: the loader names columns by the header."""


def _refuse_number_header(names: list[str], source: str) -> None:
    """A first line of numbers only, one of them not a whole number, is data, not a header
    (C-MAPSS's .txt files have none: read as names, it reported a column named '1' twice, or
    the target missing among '-0.0007', '518.67', ...). Whole numbers alone may be names:
    DataFrame.to_csv writes integer column names as '0,1' (or '-1,0,1'). Empty names (an
    unnamed index, a separator ending the line) are left out. A date among the numbers
    (ETTh1 saved without its header: '2016-07-01 00:00:00,5.827,...') is data too: read as
    names, the file was refused as having no timestamp column, listing its first row's
    values as the columns."""
    filled = [name.strip() for name in names if name.strip()]
    dates = [name for name in filled if _DATE_CELL.fullmatch(name)]
    numbers = [name for name in filled if name not in dates]
    if len(filled) < 2 or (not dates and all(re.fullmatch(r"-?[0-9]+", name) for name in filled)):
        return
    if not numbers:  # dates alone: a transposed file's header, refused later as no time column
        return
    for name in numbers:
        try:
            float(name)
        except ValueError:
            return
    what = "numbers and dates" if dates else "numbers"
    raise MissingHeaderError(
        f"{source}: the first line holds only {what} ({', '.join(filled[:4])}, ...), not "
        "column names: the file has no header line; add one naming the columns, as the "
        "first line"
    )


# A cell that is a date, with or without a time of day and a UTC offset, as exports write one
# (2016-07-01 00:00:00, 01/07/2016 00:00, 2016-07-01T00:00:00+02:00): a header-less file's
# first line holds one beside its numbers. No column is named so.
_DATE_CELL = re.compile(
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
    r"\s*(?:Z|[+-]\d{2}:?\d{2})?"
)


class DuplicateColumnError(DataValidationError):
    """Two columns of a file share a name: which one is the target (or a covariate) is not
    for the loader to guess (pandas would read the second as "<name>.1")."""


def _check_unique_names(names: list[str], wanted: Sequence[str], source: str) -> None:
    """A column the loader reads (`wanted`) named twice is refused; names repeated among the
    columns it does not read are left alone: a SCADA or historian export repeats 'Status' or
    'Quality' after every tag ('OT,Status,HUFL,Status'), and refusing it made a file whose
    target and covariates are each named once unusable without editing it."""
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen and name != "" and name in wanted:
            raise DuplicateColumnError(
                f"{source}: the header names column {shown(name)} twice (columns {seen[name]} and "
                f"{position}); rename one so each column is read for what it is"
            )
        seen[name] = position


SEPARATORS = (",", ";", "\t", "|")  # what a one-column header most likely means instead


class WrongSeparatorError(InvalidOptionError):
    """A CSV header that reads as one column holding another separator: `sep` is wrong."""


def header_columns(path: str | Path, sep: str = ",") -> list[str]:
    """The column names of a history file (the CSV header or the Parquet schema), with the same
    checks `load_data` starts with: a supported suffix, a readable header, the separator."""
    path = Path(path)
    kind = file_format(path)
    columns = _columns_in_file(path, kind, sep)
    _check_separator(columns, kind, sep, path.name)
    return columns


def has_data_rows(path: str | Path, sep: str = ",") -> bool:
    """Whether a history file holds a row after its header (Parquet: its row count), read
    without parsing the file: a header-only file is refused where it is submitted, not only
    where a worker loads it."""
    path = Path(path)
    if file_format(path) == "parquet":
        import pyarrow.parquet as pq

        with open_regular(path) as raw:
            return int(pq.read_metadata(raw).num_rows) > 0
    if len(sep) != 1:  # a separator pandas reads as a pattern: let it count the rows
        with open_regular(path) as raw:
            read = pd.read_csv(
                raw, compression=_compression(path), sep=sep, nrows=1, engine="python"
            )
        return len(read) > 0
    with _open_text(path) as text:
        lines = _bounded_lines(text, path.name)
        rows = _rows_with_text(csv.reader(lines, delimiter=sep), path.name)
        return next(rows, None) is not None and next(rows, None) is not None


def _rows_with_text(rows: Iterator[list[str]], source: str) -> Iterator[list[str]]:
    """The rows that hold something, refusing a file once BLANK_LINES_MAX blank ones were
    skipped (UnreadableFileError naming it): skipped one by one without a bound, a small
    compressed file of newlines held a submission's check for half a minute."""
    blank = 0
    for row in rows:
        if any(cell.strip() for cell in row):
            yield row
            continue
        blank += 1
        if blank > BLANK_LINES_MAX:
            raise UnreadableFileError(
                f"{source}: more than {BLANK_LINES_MAX:,} blank lines among its first rows: "
                "not a CSV file of a time series; remove the blank lines"
            )


def _check_separator(columns: list[str], kind: str, sep: str, source: str) -> None:
    """A time series file has a time column and a value column at least: a header read as one
    column that holds ';' (SKAB), a tab, '|' or spaces was split with the wrong separator; so
    was a .tsv file's header when a tab remains inside a column."""
    if kind != "csv":
        return
    tab_named = source.lower().endswith((".tsv", ".tsv.gz"))
    if tab_named and sep != "\t" and any("\t" in column for column in columns):
        found = ["\t"]  # whatever else the header holds: the file says it is tab-separated
    elif len(columns) == 1:
        found = [s for s in SEPARATORS if s != sep and s in columns[0]]
        if not found and len(columns[0].split()) > 1 and sep.strip():
            found = [r"\s+"]  # fields lined up with spaces (fixed-width text, C-MAPSS)
    else:
        return
    if found:
        # (name, the option as Python writes it, as a shell takes it)
        name, value, option = {
            "\t": ("tab", "'\\t'", "$'\\t'"),
            r"\s+": ("whitespace", "r'\\s+'", "'\\s+'"),
        }.get(found[0], (repr(found[0]), repr(found[0]), repr(found[0])))
        raise WrongSeparatorError(
            f"{source}: the header reads as "
            f"{'one column' if len(columns) == 1 else f'{len(columns)} columns'} "
            f"{sep.join(columns)[:80]!r} with "
            f"sep={shown(sep)}; the file looks {name}-separated: pass sep={value} "
            f"(--sep {option})"
            + (
                "; a time written with a space ('2024-07-01 00:00') then splits in two: "
                "write it with a T ('2024-07-01T00:00')"
                if found[0] == r"\s+"
                else ""
            )
        )


# What reading a damaged file raises: pandas' ParserError and pyarrow's ArrowInvalid
# (ValueErrors), OSError, a cut or corrupted .csv.gz (EOFError, zlib.error), a field past the
# csv module's size limit (csv.Error).
READ_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError, EOFError, zlib.error, csv.Error)

# Text pandas reads as a time on the day it runs: a time of day alone, 'now', 'today'.
NO_DATE = re.compile(
    r"\s*(?:now|today|T?\d{1,2}(?:(?::\d{2}){1,2}(?:[.,]\d*)?)?\s*(?:[ap]\.?m\.?|h)?"
    r"\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?)\s*",
    re.IGNORECASE,
)

# A zone name followed by a signed offset (GMT+1, UTC-5, CEST+2, UTC+5:30, GMT+01:00,
# UTC+0100): pandas reads the sign the POSIX way (GMT+1 as one hour behind UTC), most writers
# mean the other (one ahead); "GMT +01:00" it reads as GMT, the offset dropped.
# ("10:00 PM -05" is a 12-hour time and an offset, which pandas reads right.)
# A zero offset (UTC+00:00) reads the same either way and is left alone.
# Where the zone name before such an offset starts: a whole word, not the AM/PM of a 12-hour
# clock (the name itself is `[A-Za-z]+`, then spaces).
_ZONE_START = r"(?<![A-Za-z])(?![AaPp][Mm]\s*[+-])"
_SIGNED_HOURS = re.compile(_ZONE_START + r"[A-Za-z]+\s*[+-](?=[0:]*[1-9])\d{1,2}(?::?\d{2})?\s*$")

# A zone name before an ISO offset with two-digit hours and minutes (CEST+0200, GMT +01:00):
# the span removed, name and spaces, up to the sign.
_NAMED_ISO_OFFSET = _ZONE_START + r"[A-Za-z]+\s*(?=[+-]\d{2}:?\d{2}\s*$)"

# Such a text in parts: the local time, the zone name, and the offset's sign, hours, minutes.
_SIGNED_PARTS = (
    r"^(?P<local>.*?)\s*" + _ZONE_START + r"(?P<name>[A-Za-z]+)\s*(?P<sign>[+-])"
    r"(?P<hours>\d{1,2})(?::?(?P<minutes>\d{2}))?\s*$"
)

HEADER_SHOWN = 30  # a missing column's message lists this many of the file's columns


def columns_shown(available: Sequence[str]) -> str:
    """A file's columns for a message: HEADER_SHOWN of them, each `shown`, then a count. A
    header of a million columns was quoted whole: a 10.9 MB answer to one POST /jobs."""
    more = len(available) - HEADER_SHOWN
    listed = ", ".join(map(shown, available[:HEADER_SHOWN]))
    return listed + (f" and {more:,} more" if more > 0 else "")


# The name pandas gives an unnamed index level in a Parquet schema.
PANDAS_INDEX = re.compile(r"__index_level_(\d+)__")


def _read_columns(
    path: Path,
    kind: str,
    columns: list[str],
    time_columns: tuple[str, ...],
    config: LoadConfig,
    report: Report,
) -> pd.DataFrame:
    """Only the needed columns; timestamp and series-id columns as text, so that joining
    columns (date + hour) and series ids like "007" keep what the file says.

    A Parquet file written by pandas from a frame indexed by its timestamp (or by series id and
    timestamp) lists the index among its columns (the schema), but pandas reads it back as the
    index, not as a column: such levels are moved back into columns, so the file reads like any
    other (the rest of the loader looks columns up by name), and the report says so."""
    try:
        if kind == "csv":
            return _read_csv_columns(path, columns, time_columns, config)
        _check_parquet_text(path, columns)
        with open_regular(path) as raw:
            frame = pd.read_parquet(raw, columns=columns)
    except DataValidationError:  # said already, naming the row
        raise
    except READ_ERRORS as error:
        raise _unreadable(path, kind, error) from error
    positional = [c for c in columns if PANDAS_INDEX.fullmatch(c) and c not in frame.columns]
    if positional:  # unnamed levels, stored by pandas as __index_level_<k>__
        levels_frame = frame.index.to_frame(index=False)
        for name in positional:
            match = PANDAS_INDEX.fullmatch(name)
            assert match is not None
            frame[name] = levels_frame.iloc[:, int(match.group(1))].to_numpy()
    levels = [n for n in frame.index.names if n in columns and n not in frame.columns]
    if levels:
        frame = frame.reset_index(level=levels)
        report.add(
            path.name,
            "read",
            0,
            f"read the file's pandas index {', '.join(map(repr, levels))} as ordinary "
            f"column{'s' if len(levels) > 1 else ''}",
        )
    # Positions, not index labels, name rows from here on (errors say "data row N").
    return frame[columns].reset_index(drop=True)


def _check_parquet_text(path: Path, columns: list[str]) -> None:
    """Parquet text that is not UTF-8 passes pyarrow's reader and pandas' conversion, and
    fails later inside pandas with pyarrow's "Wrapping ... failed": checked here, where the
    file is named. A second read of the needed text columns only (a few ms)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_regular(path) as raw:
        schema = pq.read_schema(raw)
    text = [
        c
        for c in columns
        if c in schema.names
        and (
            pa.types.is_string(schema.field(c).type)
            or pa.types.is_large_string(schema.field(c).type)
        )
    ]
    if not text:  # numbers and timestamps only: nothing to validate, no second read
        return
    try:
        with open_regular(path) as raw:
            pq.read_table(raw, columns=text).validate(full=True)
    except pa.ArrowInvalid as error:
        raise UnreadableFileError(
            f"{path.name}: a text column holds bytes that are not UTF-8 ({shown(str(error))})"
        ) from None


def _read_csv_columns(
    path: Path, columns: list[str], time_columns: tuple[str, ...], config: LoadConfig
) -> pd.DataFrame:
    """`columns` of a CSV file, every row's fields counted against the header. pandas drops
    the fields past the header's silently when told which columns to read (`usecols`), and
    reads a first row one field longer as an index, shifting every column by one: so the
    whole rows are read (the tokenizer's work is the same; ETTm1 loads in 40 ms either way),
    and a row with a value past the header's columns is an error naming it. Empty fields past
    them (a separator at the end of every line, as some exports write) are no values: such a
    file reads as before."""
    # with a decimal comma the values too: _numeric_values reads them (pandas' thousands
    # option strips every '.', so 1.5 read as 15, and one bad cell left a whole column text)
    as_text = dict.fromkeys(
        [
            *time_columns,
            *([config.series_col] if config.series_col else []),
            *(config.value_columns if config.decimal == "," else ()),
        ],
        str,
    )
    # pandas' missing-value words ("NA", "null", "None", ...) for every column read but the
    # series ids: "NA" names a region (Namibia, North America), and was refused as an empty id
    missing_words: dict[str, list[str]] | None = None
    if config.series_col is not None:
        missing_words = {c: list(_PANDAS_NA) for c in columns if c != config.series_col}
        missing_words[config.series_col] = [""]
    # a separator longer than one character is a pattern only pandas' python reader splits by
    engine: Literal["c", "python"] = "c" if len(config.sep) == 1 else "python"

    def read(usecols: list[str] | None = None) -> pd.DataFrame:
        options: dict[str, Any] = {
            "sep": config.sep,
            "keep_default_na": missing_words is None,
            "na_values": missing_words,
            "index_col": False,
            "dtype": as_text,
            "engine": engine,
            "usecols": usecols,
        }
        if engine == "python":  # the python reader infers types over the whole column
            return _read_csv_whole(path, columns, options)
        return _read_csv_chunked(path, columns, options)

    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            frame = read()
    except pd.errors.ParserError as error:  # "Expected 3 fields in line 7, saw 4"
        if "Expected" not in str(error):
            raise
        _refuse_long_row(path, config.sep)
        return read(usecols=columns)  # index_col=False: no column read as the index
    if any(_LONGER_ROW in str(w.message) for w in seen):
        # a first data row longer than the header: index_col=False cut it, with a warning
        _refuse_long_row(path, config.sep)
    return frame


def _csv_buffer_lines(width: int) -> int:
    """The rows pandas' C reader (low_memory, its default) types at a time in a file of
    `width` columns: the largest power of two below 2**20 // width (pandas' TextReader).
    A whole-file read infers each column's type per such block and then joins the blocks
    (an int block and a float one make float64, a block with text makes the column text):
    chunks of exactly this many rows are typed block by block in the same way."""
    heuristic = 2**20 // max(width, 1)
    lines = 1
    while lines * 2 < heuristic:
        lines *= 2
    return lines


def _read_csv_whole(path: Path, columns: list[str], options: dict[str, Any]) -> pd.DataFrame:
    """`columns` of a CSV file read in one `pd.read_csv`."""
    with open_regular(path) as raw:
        return cast(
            pd.DataFrame, pd.read_csv(raw, compression=_compression(path), **options)[columns]
        )


def _table_width(reader: object) -> int | None:
    """The width pandas' C reader sizes its typing blocks by (the header's fields), from a
    private attribute of its TextFileReader; None where a pandas version has no such thing."""
    engine_reader = getattr(getattr(reader, "_engine", None), "_reader", None)
    width = getattr(engine_reader, "table_width", None)
    return width if isinstance(width, int) else None


def _read_csv_chunked(path: Path, columns: list[str], options: dict[str, Any]) -> pd.DataFrame:
    """`columns` of a CSV file as one whole-file `pd.read_csv(path, **options)[columns]` reads
    them, holding only those columns: every row is still tokenized whole (so a row longer than
    the header still fails, naming its line), but the other columns are dropped chunk by chunk
    instead of all being held at once. A 1 GB ETTh1-like file of 16 M rows read for its target
    alone held all eight columns (2.7 GB at the read's peak); read so it holds the two it uses.
    The chunks are pandas' own typing blocks (`_csv_buffer_lines`), so each column's type
    (and a bad cell's text) is what the whole-file read gives."""
    pieces: dict[str, list[pd.Series]] = {c: [] for c in columns}
    with (
        open_regular(path) as raw,
        pd.read_csv(raw, compression=_compression(path), iterator=True, **options) as reader,
    ):
        width = _table_width(reader)
        if width is None:  # a pandas without it: the file read whole, as before
            return _read_csv_whole(path, columns, options)
        chunk_rows = _csv_buffer_lines(width)
        while True:
            try:
                chunk = reader.get_chunk(chunk_rows)
            except StopIteration:
                break
            for c in columns:  # copies: a column of the chunk would keep all of its columns
                pieces[c].append(chunk[c].copy())
            del chunk
    if not pieces[columns[0]]:  # no data rows: the empty frame a whole-file read gives
        return _read_csv_whole(path, columns, options)
    joined: dict[str, pd.Series] = {}
    several = len(pieces[columns[0]]) > 1
    for c in columns:  # one column's chunks at a time: they are let go once it is joined
        joined[c] = pd.concat(pieces.pop(c), ignore_index=True)
        if several:  # a file of one chunk (most) frees too little to be worth handing back
            _release_freed_memory()
    return pd.DataFrame(joined, columns=columns, copy=False)


def _read_settled(
    path: Path,
    kind: str,
    columns: list[str],
    time_columns: tuple[str, ...],
    config: LoadConfig,
    report: Report,
) -> tuple[pd.DataFrame, str | None]:
    """`_read_columns` of a file that did not change size while it was read, and for a plain
    CSV its unterminated last line (`_unterminated_last_line`), read from the same bytes. A
    file appended to during the read may have been read up to a line cut short that was
    completed before the tail was looked at (a cut value read as another number), or the
    other way round; such a read is done again, up to three times."""
    for _ in range(3):
        before = path.stat().st_size
        raw = _read_columns(path, kind, columns, time_columns, config, report)
        cut = _unterminated_last_line(path) if kind == "csv" and not raw.empty else None
        if path.stat().st_size == before:
            return raw, cut
    raise UnreadableFileError(
        f"{path.name}: the file changed size during each of 3 reads: it is being written; "
        "read it once the writer is done (or write it under another name and rename it)"
    )


# A line of blanks alone, after the newline that ends the line before it: no row to pandas'
# C reader (skip_blank_lines), '\r' included (a '\r\n' file's empty line).
_BLANK_LINE = re.compile(rb"\n[ \t\r]*(?=\n)")
# The blank lines a report names by number; the rest are counted.
BLANK_LINES_SHOWN = 5


def _blank_lines(path: Path) -> tuple[list[int], int]:
    """The file's blank lines that some line of data follows: the first BLANK_LINES_SHOWN line
    numbers (1-based, the header's line 1) and how many there are in all. Those ending the
    file are no gap in the data (an editor's or exporter's last newlines) and are left out.
    Read a block at a time, the newlines counted in C (a regex and bytes.count): one pass."""
    shown: list[int] = []
    count = 0
    run = (0, 0)  # the last run of blank lines: its first line and how many
    base = -1  # newlines before data[0]; the b"\n" put first makes line 1 one like any other
    carry = b"\n"
    with _open_bytes(path) as raw:
        while block := raw.read(1 << 20):
            data = carry + block
            counted, at = 0, 0
            for found in _BLANK_LINE.finditer(data):
                counted += data.count(b"\n", at, found.start())
                at = found.start()
                line = base + counted + 2  # the line after the (base + counted + 1)-th newline
                count += 1
                if len(shown) < BLANK_LINES_SHOWN:
                    shown.append(line)
                run = (run[0], run[1] + 1) if line == run[0] + run[1] else (line, 1)
            last = data.rfind(b"\n")
            base += data.count(b"\n", 0, last)
            carry = data[last:]
    lines = base + 1  # every newline counted: a file ending in one has this many lines
    if run[1] and run[0] + run[1] - 1 == lines and not carry[1:].strip():
        count -= run[1]  # the blank lines ending the file
        shown = [line for line in shown if line < run[0]]
    return shown, count


def _report_blank_lines(path: Path, source: str, report: Report) -> None:
    """A "read" decision for the blank lines pandas skipped in the file (skip_blank_lines):
    no silent fix of the data, and a blank line amid the rows may be a row deleted by hand or
    a paste gone wrong. A blank line inside a quoted field is counted too (the loader reads no
    such multi-line fields in a time series' columns)."""
    shown, count = _blank_lines(path)
    if not count:
        return
    more = f" and {count - len(shown):,} more" if count > len(shown) else ""
    where = f"line{'s' if count > 1 else ''} {', '.join(map(str, shown))}{more}"
    report.add(
        source,
        "read",
        count,
        f"skipped {plural(count, 'blank line')} ({where}; a blank line is no row: the rows "
        "around it are read as neighbours, and a step it leaves out is a missing step)",
    )


def _unterminated_last_line(path: Path) -> str | None:
    """The text of a plain CSV file's last line when it holds more than blanks and does not
    end with a newline, else None. An appended export or log read while it is being written
    ends in a line cut short: `2014-06-13 01:00:00,1733.0` read as `...,17` is another number,
    which nothing after the read could tell. A .gz file cut short fails to decompress, and a
    file of one line is its header."""
    if gzipped(path):
        return None
    with open_regular(path) as raw:
        size = raw.seek(0, 2)
        back = min(size, 1 << 16)
        raw.seek(size - back)
        tail = raw.read(back)
    if not tail or tail.endswith((b"\n", b"\r")):
        return None
    if b"\n" not in tail and b"\r" not in tail and back == size:
        return None  # the header alone
    line = re.split(rb"[\r\n]", tail)[-1].decode("utf-8", errors="replace")
    return line if line.strip() else None


def _cells_as_written(
    path: Path, missing: Mapping[str, np.ndarray], config: LoadConfig
) -> dict[str, np.ndarray]:
    """The text of the cells read as missing, as the file writes them (no missing-value
    words), column -> the cells where `missing[column]` (one flag per data row read) is True;
    nothing for Parquet (nulls, no words). Read a chunk of rows at a time, keeping those cells
    alone: the columns' whole text was held (~13 bytes a cell; 1.4 GB for 7 columns of 16 M
    rows) to look at a few of them. Rows past the flags (a last line cut short, left out of the
    data) are not looked at."""
    if file_format(path) != "csv":
        return {}
    columns = list(missing)
    found: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    start = 0
    with (
        open_regular(path) as raw,
        pd.read_csv(
            raw,
            compression=_compression(path),
            sep=config.sep,
            na_filter=False,
            dtype=str,
            index_col=False,
            engine="c" if len(config.sep) == 1 else "python",
            usecols=columns,
            chunksize=PARSE_CHUNK_ROWS,
        ) as chunks,
    ):
        for chunk in chunks:
            for column in columns:
                flags = missing[column][start : start + len(chunk)]
                cells = chunk[column].to_numpy()[: len(flags)]
                found[column].append(cells[flags])
            start += len(chunk)
    return {
        c: np.concatenate(parts) if parts else np.array([], dtype=object)
        for c, parts in found.items()
    }


# The texts pandas' CSV reader reads as missing by default (read_csv's na_values documentation).
_PANDAS_NA = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
     "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip


# pandas' warning when index_col=False cuts a first data row longer than the header
_LONGER_ROW = "Length of header or names does not match length of data"


def _refuse_long_row(path: Path, sep: str) -> None:
    """UnreadableFileError naming the first row with a value past the header's columns;
    nothing when every field past them is empty. Rows are split as pandas splits them: by the
    csv module for one character, by the pattern otherwise (which quotes do not shield)."""
    with _open_text(path) as text:
        if len(sep) == 1:
            split: Any = csv.reader(text, delimiter=sep)
        else:
            pattern = re.compile(sep)
            split = (pattern.split(line.rstrip("\r\n")) for line in text)
        # blank lines are no rows to pandas; a line of separators alone is one
        rows = (row for row in split if row and (len(row) > 1 or row[0].strip()))
        width = len(next(rows, []))
        for number, row in enumerate(rows, start=1):
            extra = [cell for cell in row[width:] if cell.strip()]
            if extra:
                raise UnreadableFileError(
                    f"{path.name}: {row_label(number)} has {len(row):,} fields, the header "
                    f"{width:,} columns; {shown(extra[0])} lies past them. Fix that row (a "
                    "separator inside an unquoted value?) or the header"
                )


def resolve_columns(
    available: list[str], config: LoadConfig, source: str, report: Report | None = None
) -> tuple[str, ...]:
    """The time column(s) `config` reads from a file with columns `available`, once every
    column it names is known to be there and each plays one part: a timestamp column read
    as the target (or a covariate, or the series id) would be read twice. From the header
    alone, so job submission checks what the worker will read (jobs.spec.validate_spec)."""
    time_columns = _resolve_timestamp_columns(available, config, source, report)
    wanted = [*time_columns, *([config.series_col] if config.series_col else [])]
    wanted += list(config.value_columns)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise MissingColumnError(
            f"{source}: no column {', '.join(map(shown, missing))}; "
            f"the file has: {columns_shown(available)}{near_names(missing, available)}"
        )
    _check_unique_names(available, wanted, source)
    roles = [(c, "the timestamp") for c in time_columns]
    if config.series_col:
        roles.append((config.series_col, "the series id (series_col)"))
    roles.append((config.target, "the target"))
    roles += [(c, "a covariate") for c in config.covariates]
    seen: dict[str, str] = {}
    for column, role in roles:
        if column in seen and role == seen[column] == "the timestamp":
            # "is the timestamp and cannot also be the timestamp" said nothing of the mistake
            raise ColumnRoleError(
                f"{source}: column {column!r} is named twice among the timestamp columns "
                f"(timestamp_col, --timestamp-col: {', '.join(map(repr, time_columns))}); "
                "name each column once",
                column=column,
            )
        if column in seen:
            raise ColumnRoleError(
                f"{source}: column {column!r} is {seen[column]} and cannot also be {role}; "
                "each column plays one part",
                column=column,
            )
        seen[column] = role
    return time_columns


def near_names(missing: Sequence[str], available: Sequence[str]) -> str:
    """For a column asked for that the header writes with spaces around it or in another case
    ('OT ' or 'ot' for 'OT', as spreadsheets export headers): the name as written, which the
    list of columns alone shows only as a quote mark apart. "" where none is so near."""
    near = []
    for name in missing:
        key = name.strip().casefold()
        found = [c for c in available if c != name and c.strip().casefold() == key]
        if found:
            near.append(f"{shown(name)} is written {shown(found[0])}")
    if not near:
        return ""
    return f"; {', '.join(near)} in the file: give the name as written, or fix the header"


class ColumnRoleError(InvalidOptionError):
    """One column named for two parts (the timestamp and the target, say); `column` names it."""

    def __init__(self, message: str, *, column: str) -> None:
        super().__init__(message)
        self.column = column


def _resolve_timestamp_columns(
    available: list[str], config: LoadConfig, source: str, report: Report | None
) -> tuple[str, ...]:
    if config.timestamp_columns:
        return config.timestamp_columns
    # one name twice ('date', 'date') is one candidate, refused as a name read twice
    found = list(dict.fromkeys(c for c in available if c.strip().lower() in TIMESTAMP_NAMES))
    unnamed = [c for c in available if PANDAS_INDEX.fullmatch(c)]
    if not found and len(unnamed) == 1:
        # pandas wrote an unnamed index (the usual DatetimeIndex of a time series) under this
        # name: the time axis, said in the report, not guessed silently
        if report is not None:
            report.add(
                source,
                "read",
                0,
                f"using the file's unnamed pandas index ({unnamed[0]!r}) as the timestamp",
            )
        return (unnamed[0],)
    if len(found) != 1:
        what = f"several candidates ({', '.join(map(repr, found))})" if found else "none of them"
        raise MissingColumnError(
            f"{source}: timestamp_col not given and {what} among the columns named like "
            f"{', '.join(TIMESTAMP_NAMES)}; pass timestamp_col (one column, or several to be "
            f"joined with a space, e.g. date and hour). The file has: {columns_shown(available)}"
        )
    if report is not None:
        report.add(source, "read", 0, f"using column {found[0]!r} as the timestamp (found by name)")
    return (found[0],)


def _steps_as_timestamps(
    raw: pd.DataFrame, column: str, config: LoadConfig, source: str, report: Report
) -> pd.DatetimeIndex:
    """Step numbers (whole numbers, any sign) as step_origin + k x freq; every row must be one."""
    _refuse_durations(raw, (column,), source)
    cells = pd.to_numeric(raw[column], errors="coerce")
    numbers = cells.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        row = int(np.argmax(bad)) + 1
        raise TimestampParseError(
            f"{source}: column {column!r}, {row_label(row)}: {shown(raw[column].iloc[row - 1])} is "
            f"not a whole step number (step_origin is set, so this column counts steps); "
            f"{plural_says(int(bad.sum()), 'row', 'fails', 'fail')}"
        )
    assert config.freq is not None and config.step_origin is not None  # LoadConfig checks
    step = fixed_step(config.freq)
    assert step is not None
    zoned = pd.Timestamp(config.step_origin).tz is not None
    origin = naive_utc(pd.Timestamp(config.step_origin))
    for row in (int(np.argmin(numbers)), int(np.argmax(numbers))):
        # exact integers: the int64 product would wrap (a step of 1e20 hours read as step 0);
        # the whole offset must fit int64 nanoseconds too (292 years), and the number itself
        # float64's exact integers (steps above 2**53 would merge with their neighbours)
        k = int(numbers[row])
        at = origin.value + k * step.value
        inside = pd.Timestamp.min.value <= at <= pd.Timestamp.max.value
        if not inside or abs(k) >= 2**53 or abs(k * step.value) > np.iinfo(np.int64).max:
            number = f"{k:,}" if abs(k) < 10**24 else f"{k:.3e}"
            raise TimestampParseError(
                f"{source}: column {column!r}, {row_label(row + 1)}: step {number} of "
                f"{config.freq!r} from step_origin {origin} lies too far from it: steps must "
                f"stay within 292 years of step_origin and between {pd.Timestamp.min} and "
                f"{pd.Timestamp.max}"
            )
    stamps = origin + pd.to_timedelta(numbers.astype(np.int64) * step.value, unit="ns")
    report.add(
        source,
        "steps",
        len(stamps),
        f"read column {column!r} as step numbers {int(numbers.min()):,}..{int(numbers.max()):,}: "
        f"step k is {origin} + k x {config.freq}"
        + (f" (step_origin {config.step_origin} as UTC, without its zone)" if zoned else ""),
    )
    return pd.DatetimeIndex(stamps, name="timestamp")


def _excel_serials(text: pd.Series) -> bool:
    """Numbers that read as Excel serial dates of 1970-2050 (25569-55153 days after
    1899-12-30), as exports write date cells saved without their format."""
    if not text.str.fullmatch(r"\s*\d{5}(\.\d*)?\s*").all():
        return False
    days = pd.to_numeric(text, errors="coerce")
    return bool(days.between(25_569, 55_153).all())


def _refuse_durations(raw: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """A Parquet duration column (timedelta64) as the time: its text ('0 days 01:00:00') was
    refused with advice about timestamp formats, and as step numbers it reads nanoseconds."""
    for column in columns:
        if pd.api.types.is_timedelta64_dtype(raw[column]):
            raise TimestampParseError(
                f"{source}: column {column!r} holds durations (time elapsed, such as "
                f"{shown(str(raw[column].iloc[0]))} in data row 1), not timestamps: write it as "
                "dates (a start plus each duration) before loading"
            )


def _parse_timestamps(
    raw: pd.DataFrame,
    columns: tuple[str, ...],
    fmt: str | None,
    source: str,
    report: Report,
    *,
    ids: pd.Series | None = None,
) -> pd.DatetimeIndex:
    """Every row must parse. Zone-aware timestamps become UTC without a zone, which is also what
    removes daylight-saving duplicates and holes from logs that carry their offsets. `ids`: a
    long file's series ids, row by row, for refusals that name the series to fix."""
    for column in columns:
        empty = raw[column].isna().to_numpy()
        if empty.any():
            row = int(np.argmax(empty)) + 1
            raise TimestampParseError(
                f"{source}: column {column!r}, {row_label(row)}{_series_at(ids, row)}: empty "
                "timestamp, or a "
                f"missing-value word (NA, NULL, None, #N/A, ...) "
                f"({plural(int(empty.sum()), 'such cell')} in this column): every row needs its "
                "time"
            )
    label = " + ".join(repr(c) for c in columns)
    several_offsets = False
    text: pd.Series | None = None  # the column as written, where it was text
    _refuse_durations(raw, columns, source)
    if len(columns) == 1 and pd.api.types.is_datetime64_any_dtype(raw[columns[0]]):
        parsed = raw[columns[0]]  # Parquet timestamp column: already parsed
    else:
        text = raw[columns[0]].astype(str)
        for column in columns[1:]:
            text = text + " " + raw[column].astype(str)
        text = _offsets_without_zone_names(text, fmt, label, source, report)
        text, end_of_day = _end_of_day_as_midnight(text, source, report)
        with warnings.catch_warnings():
            # "could not infer format": the rows that fail are reported below, by row number
            warnings.filterwarnings("ignore", message="Could not infer format")
            # "parsing dates in %d/%m/%Y format when dayfirst=False": _day_month_order settles
            # the order below (or refuses the column), so pandas' guess is not the user's news
            warnings.filterwarnings("ignore", message="Parsing dates in")
            try:
                parsed = to_datetime_in_chunks(text, fmt=fmt)
            except ValueError:  # several UTC offsets in one column
                try:
                    parsed = to_datetime_in_chunks(text, fmt=fmt, utc=True)
                except ValueError as error:  # a format strptime cannot use ('%Q', '%')
                    raise InvalidOptionError(
                        f"timestamp_format {shown(fmt)} is not a format pandas can read "
                        f"timestamps with ({error}); e.g. '%Y-%m-%d %H:%M:%S'"
                    ) from None
                several_offsets = True
        if _local_mean_time(text, parsed, fmt):
            parsed, several_offsets = _with_seconds_offsets(text)
        parsed = _next_day_at(parsed, end_of_day)
        if fmt is None:
            parsed = _day_month_order(
                text, parsed, label, source, report, utc=several_offsets, end_of_day=end_of_day
            )
        bad = parsed.isna().to_numpy()
        if bad.any():
            _refuse_offsets_in_some_rows(text, label, source, ids)
            row = int(np.argmax(bad)) + 1
            inferred = (
                "pandas could not infer a format from the first row"
                if row == 1
                else "the format was inferred from the first row"
            )
            zone = _zone_abbreviation(str(text.iloc[row - 1]))
            lacking = _date_the_calendar_lacks(str(text.iloc[row - 1]))
            cell = str(text.iloc[row - 1])
            if len(text) > 1 and row == len(text) and bad.sum() == 1 and not re.search(r"\d", cell):
                # 'Total,300,552' under an Excel or ERP report: no format reads a word
                raise TimestampParseError(
                    f"{source}: column {label}, {row_label(row)}{_series_at(ids, row)}: cannot "
                    f"parse {shown(cell)} as a timestamp: the file's last row holds no time, a "
                    "totals or summary row under the data (as a spreadsheet or report export "
                    "adds)? Delete it; every other row parses"
                )
            if _HOUR_24.search(cell):
                hint = (
                    "(the hour 24 is read only as 24:00, the end of a day, which is read as "
                    "00:00 of the next day): no timestamp_format reads it; fix the cell"
                )
            elif lacking:  # no format reads a 30th of February: the cell is what to fix
                hint = (
                    f"(it is no date of the calendar: {lacking}): no timestamp_format reads it; "
                    "fix the cell"
                )
            elif zone:  # no timestamp_format reads it: the hint says what to write instead
                advice = (
                    f"the text holds the time-zone abbreviation {zone!r}, which is not "
                    "read: an abbreviation does not name one offset (CST is US Central or China "
                    "Standard time, IST India, Ireland or Israel); write the times with their "
                    "UTC offsets ('2024-03-31T03:00:00+02:00', as pandas' Timestamp.isoformat "
                    "writes them) or in UTC"
                )
                hint = f"with timestamp_format={shown(fmt)}: {advice}" if fmt else f"({advice})"
            elif fmt:
                hint = f"with timestamp_format={shown(fmt)}"
            else:
                hint = (
                    f"(no timestamp_format given, and {inferred}; pass a timestamp_format "
                    "that matches the text shown, e.g. '%Y-%m-%d %H:%M:%S' for "
                    "'2016-07-01 02:00:00' or '%Y-%m-%d %H' for '2016-07-01 2')"
                )
            ten_digits = len(columns) == 1 and bool(text.str.fullmatch(r"\s*\d{10}\s*").all())
            # every row, not the first alone: Unix seconds such as 1700010100 read as
            # 1700-01-01 00h in the first row and as no date a few rows on
            compact = (
                pd.to_datetime(text.str.strip(), format="%Y%m%d%H", errors="coerce")
                if ten_digits
                else None
            )
            if fmt not in ("ISO8601", "mixed") and _iso_rows(text):
                hint += (  # no strptime format reads '2020-01-02' beside '2020-01-02 01:00:00'
                    "; every row reads as an ISO 8601 date or time, written with more or less "
                    "of the time of day (a date alone at midnight?): pass timestamp_format "
                    "'ISO8601' to read each as written"
                )
            elif compact is not None and compact.notna().all():
                hint += (  # 2016070100: a date and an hour, which also reads as Unix seconds
                    "; the column holds 10 digits that read as a date and an hour: pass "
                    "timestamp_format '%Y%m%d%H'"
                )
            elif len(columns) == 1 and text.str.fullmatch(r"\s*\d{10}(\d{3})?(\.\d*)?\s*").all():
                unit = (
                    "milliseconds"
                    if len(str(text.iloc[0]).strip().partition(".")[0]) == 13
                    else "seconds"
                )
                hint += (
                    f"; the column holds numbers like Unix times in {unit} since 1970: write "
                    "them as dates first (pandas.to_datetime(column, unit="
                    f"{'ms' if unit == 'milliseconds' else 's'!r})); step_origin counts steps "
                    "of the data's frequency, not seconds"
                )
            elif len(columns) == 1 and _excel_serials(text):
                hint += (  # Excel's date cells saved without their date format
                    "; the column holds numbers like Excel serial dates (days since 1899-12-30, "
                    "with the time of day as the fraction): format the column as dates in Excel "
                    "before saving, or convert it (pandas.to_datetime(column, unit='D', "
                    "origin='1899-12-30'))"
                )
                if text.str.fullmatch(r"\s*\d+\s*").all():  # or a count of steps
                    hint += (
                        "; if they count steps (cycles, samples), pass step_origin "
                        "(--step-origin) and freq (--freq)"
                    )
            elif len(columns) == 1 and text.str.fullmatch(r"\s*[+-]?\d+\s*").all():
                hint += (
                    "; the column holds whole numbers: if they count steps (cycles, samples), "
                    "pass step_origin (--step-origin) and freq (--freq)"
                )
            raise TimestampParseError(
                f"{source}: column {label}, {row_label(row)}{_series_at(ids, row)}: cannot parse "
                f"{shown(text.iloc[row - 1])} as a timestamp {hint}; "
                f"{plural_says(int(bad.sum()), 'row', 'fails', 'fail')}"
            )
        _refuse_dateless(text, parsed, label, source)
        if parsed.dt.tz is not None:
            _refuse_signed_hours(text, parsed, label, source)
    _refuse_sub_microsecond(parsed, text, label, source)
    if parsed.dt.tz is not None:
        written = _dates_as_written(parsed, text, several_offsets)
        if written is not None:
            report.add(source, "read", len(parsed), _dates_note(parsed, written))
            return pd.DatetimeIndex(written, name="timestamp")
        report.add(
            source,
            "timezone",
            len(parsed),
            (
                f"converted {len(parsed):,} timestamps with several UTC offsets (a "
                "daylight-saving change, or mixed zones) to UTC and dropped the zone"
                if several_offsets
                # 'Z' / +00:00 / a Parquet column zoned UTC: "from time zone UTC to UTC" said
                # a conversion that changed nothing
                else f"read {len(parsed):,} timestamps written in UTC and dropped the zone"
                if _is_utc(parsed.dt.tz)
                else f"converted {len(parsed):,} timestamps from time zone {parsed.dt.tz} to "
                "UTC and dropped the zone"
            ),
        )
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return pd.DatetimeIndex(parsed, name="timestamp")


_END_OF_DAY = re.compile(
    r"^(?P<date>.*\d[ T])24:00(?P<seconds>:00(?:\.0+)?)?(?P<zone>\s*(?:Z|[+-]\d\d:?\d\d)?\s*)$"
)
_HOUR_24 = re.compile(r"(?:^|[ T])24:\d\d")
_HOUR_24_AT_ZERO = re.compile(r"(?:^|[ T])24:00")


def _end_of_day_as_midnight(
    text: pd.Series, source: str, report: Report
) -> tuple[pd.Series, pd.Series | None]:
    """'2016-06-30 24:00' (ISO 8601's end of a day; hour ending 24 in SCADA and utility
    exports) is the next day's 00:00, which no strptime format reads. Such cells are rewritten
    as that day's 00:00, for the parse and its day/month order as written, and the mask returned
    moves them on a day once parsed; the report says so, naming the first."""
    # The hour 24 only (not '00:24:00', a minute of every hour): the regex runs in Arrow on
    # an Arrow column, and only its rows are extracted, since an extract of every row (three
    # Python strings a row) more than doubled a long file's peak memory
    hour_24 = text.str.contains(_HOUR_24_AT_ZERO.pattern, regex=True).to_numpy(dtype=bool)
    if not hour_24.any():
        return text, None
    at = np.flatnonzero(hour_24)
    parts = text.iloc[at].str.extract(_END_OF_DAY)
    found = parts["date"].notna().to_numpy()
    if not found.any():
        return text, None
    at = at[found]
    parts = parts[found]
    midnight = parts["date"] + "00:00" + parts["seconds"].fillna("") + parts["zone"].fillna("")
    mask_values = np.zeros(len(text), dtype=bool)
    mask_values[at] = True
    mask = pd.Series(mask_values, index=text.index)
    row = int(at[0]) + 1
    report.add(
        source,
        "read",
        len(at),
        f"read {len(at):,} timestamps written at 24:00 (the end of a day) as 00:00 of "
        f"the next day: the first {shown(text.iloc[row - 1])}, {row_label(row)}",
    )
    rewritten = text.copy()
    rewritten.iloc[at] = midnight.to_numpy()
    return rewritten, mask


def _next_day_at(parsed: pd.Series, end_of_day: pd.Series | None) -> pd.Series:
    """`parsed` with the rows written at 24:00 (read as that day's 00:00) moved on a day."""
    if end_of_day is None:
        return parsed
    return parsed.where(~end_of_day.to_numpy(), parsed + pd.Timedelta(days=1))


def _iso_rows(text: pd.Series) -> bool:
    """Whether every row is an ISO 8601 date or date and time, however much of the time of
    day each writes: an export that leaves midnight's time out (R's as.character of times)
    fails the one format pandas infers from the first row, and any single strptime format."""
    if not text.str.contains(r"^\s*\d{4}-\d{2}-\d{2}", regex=True).all():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(text.str.strip(), format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):  # several UTC offsets, out of range
        return False
    return bool(parsed.notna().all())


def _is_utc(zone: Any) -> bool:
    """Whether a parsed column's zone is UTC itself (by name or a zero offset all year)."""
    if str(zone) in ("UTC", "UTC+00:00", "Etc/UTC", "Z"):
        return True
    probes = (pd.Timestamp("2021-01-15"), pd.Timestamp("2021-07-15"))
    try:
        return all(zone.utcoffset(t.to_pydatetime()) == pd.Timedelta(0) for t in probes)
    except (AttributeError, TypeError, ValueError):
        return False


def _dates_as_written(
    parsed: pd.Series, text: pd.Series | None, several_offsets: bool
) -> pd.Series | None:
    """Zoned timestamps that name calendar dates (days, weeks, months) on the clock they were
    written in, as that clock (naive), or None. '2020-01-01T00:00:00+01:00' names 1 January;
    in UTC it is 23:00 on 31 December, and with daylight saving the UTC times alternate 23:00
    and 22:00, which no daily or monthly grid holds (such files were refused). So where every
    written timestamp is at one time of day (so whole days apart), the written dates are kept;
    at +00:00 they are UTC's anyway. Decided on the written clock, not on the instants: stores
    in Delhi and Tokyo write the same midnights, which in UTC lie 3.5 hours apart.

    The written clock is the parsed instant plus the offset each row writes (read from its
    end), not a second parse: that would lose the day-first order the parse settled on. A
    sample of rows is looked at first, so hourly data is left at once."""
    step = max(1, len(parsed) // 2000)
    sample = _written_clock(parsed.iloc[::step], None if text is None else text.iloc[::step],
                            several_offsets)  # fmt: skip
    if sample is None or not _one_time_of_day(sample):
        return None
    wall = sample if step == 1 else _written_clock(parsed, text, several_offsets)
    if wall is None or not _one_time_of_day(wall):
        return None
    utc_clock = pd.DatetimeIndex(parsed).tz_convert("UTC").tz_localize(None)
    return None if (pd.DatetimeIndex(wall) == utc_clock).all() else wall


def _written_clock(
    parsed: pd.Series, text: pd.Series | None, several_offsets: bool
) -> pd.Series | None:
    """The naive wall clock each zoned timestamp was written on, or None where a row's offset
    cannot be read from its text."""
    if not several_offsets:
        naive: pd.Series = parsed.dt.tz_localize(None)
        return naive
    if text is None:
        return None
    offsets = _written_offsets(text)
    if offsets is None:
        return None
    wall: pd.Series = parsed.dt.tz_convert("UTC").dt.tz_localize(None) + offsets
    return wall


def _one_time_of_day(wall: pd.Series) -> bool:
    clock = pd.DatetimeIndex(wall)
    times_of_day = clock.asi8 - clock.normalize().asi8
    return bool(len(times_of_day)) and bool((times_of_day == times_of_day[0]).all())


# A UTC offset at the end of a timestamp's text: 'Z', '+01:00', '+0100', '-05'.
_END_OFFSET = re.compile(r"(?:(?P<z>Z)|(?P<sign>[+-])(?P<h>\d{2}):?(?P<m>\d{2})?)\s*$")


def _written_offsets(text: pd.Series) -> pd.Series | None:
    """Each row's UTC offset as written at the end of its text, as a Timedelta; None where a
    row writes none there (a format that puts it elsewhere: those keep the UTC reading). Read
    once per distinct text: a long file of daily rows repeats each date once per series."""
    codes, distinct = pd.factorize(text)
    parts = pd.Series(distinct).str.extract(_END_OFFSET)
    if (parts["z"].isna() & parts["sign"].isna()).any():
        return None
    hours = pd.to_numeric(parts["h"], errors="coerce").fillna(0).to_numpy()
    minutes = pd.to_numeric(parts["m"], errors="coerce").fillna(0).to_numpy()
    sign = np.where((parts["sign"] == "-").to_numpy(), -1, 1)
    per_text = (sign * (hours * 60 + minutes)).astype(np.int64)
    return pd.Series(pd.to_timedelta(per_text[codes], unit="min"), index=text.index)


def _dates_note(parsed: pd.Series, written: pd.Series) -> str:
    first = pd.DatetimeIndex(written).min()
    utc = pd.Timestamp(pd.DatetimeIndex(parsed).min()).tz_convert("UTC").tz_localize(None)
    return (
        f"kept {len(written):,} timestamps on the clock they were written in and dropped their "
        f"UTC offsets: a day or more apart and all at {first.time()} there, they name calendar "
        f"dates, read as written rather than in UTC ({first} is {utc} UTC); the calendar "
        "reads the dates as written"
    )


# A time of day followed by a UTC offset ('10:14:33 +01:00', '10:00Z', '10:00:00.5-0500'): the
# time comes first, so a date's own '-09' is never read as an offset.
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
_TIME_ALONE = re.compile(_CLOCK + r"\s*$")
_TIME_WITH_OFFSET = re.compile(_CLOCK + r"\s*(?:Z|[+-]\d{2}(?::?\d{2})?)\s*$")


def _some_names(names: list[str], shown_at_most: int = 5) -> str:
    """The first names of a list, quoted, and how many more: a fleet may hold thousands."""
    said = ", ".join(shown(name) for name in names[:shown_at_most])
    more = len(names) - shown_at_most
    return said + (f" and {more:,} more" if more > 0 else "")


def _series_at(ids: pd.Series | None, row: int) -> str:
    """ ", series 'b'" for 1-based data `row` of a long file (`ids`: its id column), so that a
    timestamp refused names the unit whose rows to look at; "" for a one-series file."""
    return "" if ids is None else f", series {shown(str(ids.iloc[row - 1]))}"


# A date written year first ('2018-02-30', '2018/2/30 01:00'), as ISO 8601 and most exports do
_YEAR_FIRST = re.compile(r"\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")


def _date_the_calendar_lacks(cell: str) -> str | None:
    """Why a year-first date is on no calendar ('2018-02 has 28 days'): a logger's or a
    spreadsheet's 30th of February fails to parse like text of another format, and the advice
    to pass a timestamp_format sent the user to the format the cell is already written in.
    None where the cell is no such date, or a real one."""
    found = _YEAR_FIRST.match(cell)
    if found is None:
        return None
    year, month, day = (int(part) for part in found.groups())
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    days = calendar.monthrange(year, month)[1] if year >= 1 else 31
    return f"{year}-{month:02d} has {days} days" if day > days else None


def _refuse_offsets_in_some_rows(
    text: pd.Series, label: str, source: str, ids: pd.Series | None = None
) -> None:
    """A column where some rows carry a UTC offset and others none (one unit's logger set to
    write its zone) fails to parse at the first row of the other kind, and the message advised
    a timestamp_format, which no format fixes: the naive rows' instants are unknown. Named,
    with the series of each kind in a long file (`ids`): the units whose loggers to look at."""
    zoned = text.str.contains(_TIME_WITH_OFFSET).to_numpy(dtype=bool)
    naive = text.str.contains(_TIME_ALONE).to_numpy(dtype=bool)
    # only where every row is one kind or the other: a typo ('+01:00x') or a zone name
    # ('... UTC', '... CET') is the parse error's to name, with its own advice
    if zoned.all() or not zoned.any() or not (zoned | naive).all():
        return
    first_zoned, first_naive = int(np.argmax(zoned)) + 1, int(np.argmax(~zoned)) + 1

    def of_series(row: int) -> str:
        return "" if ids is None else f", series {shown(str(ids.iloc[row - 1]))}"

    by_series = ""
    if ids is not None:
        names = ids.astype(str)
        with_offsets, without = (
            sorted(set(names[kind]), key=natural_key) for kind in (zoned, ~zoned)
        )
        by_series = (
            f"; series with offsets: {_some_names(with_offsets)}; without: {_some_names(without)}"
        )
    raise TimestampParseError(
        f"{source}: column {label}: "
        f"{plural_says(int(zoned.sum()), 'row', 'carries', 'carry')} a UTC offset (first "
        f"{row_label(first_zoned)}{of_series(first_zoned)}: "
        f"{shown(text.iloc[first_zoned - 1])}) and {int((~zoned).sum()):,} carry none (first "
        f"{row_label(first_naive)}{of_series(first_naive)}: "
        f"{shown(text.iloc[first_naive - 1])}){by_series}: the instant of a time without an "
        "offset is not known beside ones with it. Write every timestamp with its offset "
        "('2024-03-31T03:00:00+02:00', as pandas' Timestamp.isoformat writes it), or every "
        "one in UTC without one"
    )


# A UTC offset with seconds, written loosely: what _with_seconds_offsets must read itself.
_SECONDS_OFFSET = re.compile(r"[+-]\d\d:\d\d:\d\d(?:\.\d+)?\s*\Z")


def _local_mean_time(text: pd.Series, parsed: pd.Series, fmt: str | None) -> bool:
    """Whether the column writes UTC offsets with seconds (+00:19:32, local mean time before
    ~1900), as pandas itself writes them. pandas cannot read them without a format, and with
    '%z' keeps the minutes only: every instant 32 s off, silently. Only a column that failed
    to parse, or parsed with a '%z' format, is searched, so most files pay nothing."""
    bad = parsed.isna().to_numpy()
    if bad.any():
        return _SECONDS_OFFSET.search(str(text.iloc[int(np.argmax(bad))])) is not None
    zoned = isinstance(parsed.dtype, pd.DatetimeTZDtype) if fmt is None else "%z" in fmt
    if not zoned:
        return False  # naive times: no offsets to cut
    # a first row at a plain offset (+00:00), later rows at +00:34:39: read, and cut
    return bool(text.str.contains(_SECONDS_OFFSET, regex=True).any())


def _with_seconds_offsets(text: pd.Series) -> tuple[pd.Series, bool]:
    """A column of ISO 8601 texts, some with offsets carrying seconds, as instants at their
    offset (in UTC where they carry several), and whether they do. A row Python cannot read,
    or whose offset is malformed (+00:19:99), is NaT, reported by row."""

    def read(value: str) -> datetime | None:
        value = value.strip()
        if _SECONDS_OFFSET.search(value):
            return with_seconds_offset(value)  # None for a malformed offset
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        return stamp if stamp.tzinfo is not None else None  # naive beside zoned: refused

    stamps = [read(v) for v in text]
    offsets = {stamp.utcoffset() for stamp in stamps if stamp is not None}
    parsed = pd.to_datetime(pd.Series(stamps, index=text.index, dtype=object), utc=True)
    if len(offsets) == 1:
        (offset,) = offsets
        if offset is not None:
            parsed = parsed.dt.tz_convert(timezone(offset))
    return parsed, len(offsets) > 1


# A date written with its day and month as the first two numbers and the year last
# (01/07/2016, 1.7.16 23:00, 07-01-2016 12:00 AM): the orders that are ambiguous.
_NUMERIC_DATE = r"^\s*(\d{1,2})[./-](\d{1,2})[./-]\d{2,4}(?!\d)"


def _day_month_order(
    text: pd.Series,
    parsed: pd.Series,
    label: str,
    source: str,
    report: Report,
    *,
    utc: bool,
    end_of_day: pd.Series | None = None,
) -> pd.Series:
    """Without a timestamp_format, read dates such as 01/07/2016 in the one order of day and
    month that every row allows, and refuse them where both orders read every row.

    pandas guesses a format from the first row, month first where it can ('01.07.2016' as
    %m.%d.%Y: a monthly file became twelve January days; a day-first file failed at its 13th
    day), and where it finds none reads each row alone, month first where that row allows it
    and day first where not: a year of '%d-%m-%y %H:%M' hours loaded with a third of its rows
    on other dates, and no gap to show it. The order is found from the numbers themselves: a
    first number above 12 rules month first out, a second one day first. `end_of_day`: the
    rows written at 24:00, which each reading moves on a day (as `parsed` is)."""
    if re.match(_NUMERIC_DATE, str(text.iloc[0])) is None:
        return parsed  # the common case (ISO 8601) pays one match
    fields = text.str.extract(_NUMERIC_DATE)
    if fields.isna().to_numpy().any():
        return parsed  # a month by name, year first (ISO 8601), or not dates: one reading
    first, second = fields[0].astype(int), fields[1].astype(int)
    month_first, day_first = bool((first <= 12).all()), bool((second <= 12).all())
    if month_first and day_first:
        differs = (first != second).to_numpy()
        if not differs.any():
            return parsed  # day and month equal everywhere: one reading
        readings = {
            order: _next_day_at(_read_in_order(text, day_first=order == "day", utc=utc), end_of_day)
            for order in ("month", "day")
        }
        grids = {order: _grid(read) for order, read in readings.items()}
        regular = [order for order, grid in grids.items() if grid is not None]
        if len(regular) == 1:  # monthly data on the 1st reads day first as Jan 1-12 of a year
            (order,) = regular
            other = "day" if order == "month" else "month"
            report.add(
                source,
                "read",
                len(text),
                f"read the dates of column {label} {order} first: every row reads both ways "
                f"(no day above 12), and only {order} first puts them on a regular grid "
                f"({grids[order]!r}); {other} first they lie on none",
            )
            return readings[order]
        row = int(np.argmax(differs)) + 1
        raise TimestampParseError(
            f"{source}: column {label}, {row_label(row)}: {shown(str(text.iloc[row - 1]))} "
            "reads day first and month first, and so does every row of the column (none has "
            "a day above 12), "
            + ("both on a regular grid" if regular else "neither on a regular grid")
            + ": pass a timestamp_format that says which, e.g. "
            f"{_order_example(text.iloc[0], day_first=True)!r} for day first or "
            f"{_order_example(text.iloc[0], day_first=False)!r} for month first"
        )
    if not day_first:  # month first, the reading of pandas' guess and of its row-by-row parse
        if month_first and parsed.notna().all():  # said as day first is below
            row = int(np.argmax((second > 12).to_numpy())) + 1
            report.add(
                source,
                "read",
                len(text),
                f"read the dates of column {label} month first, the one order every row "
                f"allows: {shown(str(text.iloc[row - 1]))}, {row_label(row)}, has no month "
                f"{int(second.iloc[row - 1])}",
            )
        return parsed
    # day first: the only order every row allows
    reread = _next_day_at(_read_in_order(text, day_first=True, utc=utc), end_of_day)
    if reread.isna().to_numpy().any() or (reread == parsed).all():
        return parsed  # nothing to change, or the rows the other reading misses say why
    row = int(np.argmax((first > 12).to_numpy())) + 1
    report.add(
        source,
        "read",
        len(text),
        f"read the dates of column {label} day first, the one order every row allows: "
        f"{shown(str(text.iloc[row - 1]))}, {row_label(row)}, has no month "
        f"{int(first.iloc[row - 1])}",
    )
    return reread


def _read_in_order(text: pd.Series, *, day_first: bool, utc: bool) -> pd.Series:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not infer format")
        warnings.filterwarnings("ignore", message="Parsing dates in")
        return to_datetime_in_chunks(text, fmt=None, utc=utc, day_first=day_first)


# Rows parsed at once by `to_datetime_in_chunks`: pandas turns the text it parses into Python
# strings first (~70 bytes a row), so a whole 16 M-row column took 1.35 GB more for a moment.
PARSE_CHUNK_ROWS = 1 << 20


def to_datetime_in_chunks(
    text: pd.Series, *, fmt: str | None, utc: bool = False, day_first: bool = False
) -> pd.Series:
    """`pd.to_datetime(text, format=fmt, errors="coerce", utc=utc, dayfirst=day_first)`,
    PARSE_CHUNK_ROWS rows at a time, so that the Python strings pandas makes of the text are
    one chunk's, not the column's. The same result: without a format, pandas infers one from
    the column's first timestamp (or, finding none, reads each row alone), so that format is
    inferred once from the whole column and given to every chunk; where the chunks disagree
    on the type (time zones: several UTC offsets, which one whole parse refuses or reads
    apart), or one raises, the column is parsed whole, as before, to say or do what it did."""

    def whole() -> pd.Series:
        return pd.to_datetime(text, format=fmt, errors="coerce", utc=utc, dayfirst=day_first)

    if len(text) <= PARSE_CHUNK_ROWS:
        return whole()
    try:
        chunk_format = fmt if fmt is not None else _inferred_format(text, day_first) or "mixed"
    except ImportError:  # a pandas without its private guesser: the whole column, as before
        return whole()
    parts: list[pd.Series] = []
    try:
        for start in range(0, len(text), PARSE_CHUNK_ROWS):
            parts.append(
                pd.to_datetime(
                    text.iloc[start : start + PARSE_CHUNK_ROWS],
                    format=chunk_format,
                    errors="coerce",
                    utc=utc,
                    dayfirst=day_first,
                )
            )
    except ValueError:  # what pandas says of the whole column (several offsets, a bad format)
        return whole()
    # a chunk of NaT alone (every row failed) has the naive type whatever its neighbours'
    typed = {part.dtype for part in parts if part.notna().any()}
    if len(typed) != 1:
        return whole()
    (dtype,) = typed
    return cast(pd.Series, pd.concat([part.astype(dtype) for part in parts]))


def _inferred_format(text: pd.Series, day_first: bool) -> str | None:
    """The format pandas' to_datetime infers for the column `text` when given none: from its
    first timestamp that is not empty or NaT (pandas' `_guess_datetime_format_for_array`,
    which reads no further than that row: a prefix is handed over where it holds one)."""
    from pandas.core.tools.datetimes import (  # type: ignore[attr-defined]
        _guess_datetime_format_for_array,
    )

    for rows in (1024, len(text)):
        head = np.asarray(text.iloc[:rows], dtype=object)
        missing = pd.isna(head) | np.isin(head, list(_NAT_TEXTS))
        if not missing.all() or rows >= len(text):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Could not infer format")
                guessed: str | None = _guess_datetime_format_for_array(head, dayfirst=day_first)
            return guessed
    return None


# Cells pandas' to_datetime reads as NaT, skipped when it looks for the row to infer from.
_NAT_TEXTS = frozenset(("", "NaT", "nat", "NAT", "nan", "NaN", "NAN", "now", "today"))


def _grid(stamps: pd.Series) -> str | None:
    """The frequency pandas finds for the distinct times, in order; None when they lie on no
    regular grid (or are too few to tell)."""
    distinct = pd.DatetimeIndex(stamps.dropna().unique()).sort_values()
    if len(distinct) < 3:
        return None
    try:
        with warnings.catch_warnings():  # pandas 4 will answer an offset, not its text
            warnings.simplefilter("ignore")
            found = pd.infer_freq(distinct)
    except (TypeError, ValueError):
        return None
    if found is None:
        # pandas names no grid for months on one day other than the 1st or the last (the 5th
        # of each month): read day first, twelve such dates are twelve days of one month,
        # which pandas does name, and that reading won
        days = distinct.day
        months = distinct.year * 12 + distinct.month
        steps = np.diff(np.asarray(months))
        clock = np.asarray(distinct - distinct.normalize())  # time of day: the same in each
        one_time = bool((clock == clock[0]).all())
        if (days == days[0]).all() and one_time and (steps == steps[0]).all() and steps[0] > 0:
            return f"every {steps[0]} month(s) on day {days[0]}"
        return None
    return str(getattr(found, "freqstr", found))


def _order_example(sample: object, *, day_first: bool) -> str:
    """A timestamp_format for `sample`'s layout in one order ('%d-%m-%y %H:%M' for
    '01-01-17 00:00'); a generic one where the layout is more than a date and a clock time."""
    generic = "%d/%m/%Y %H:%M" if day_first else "%m/%d/%Y %H:%M"
    layout = re.fullmatch(
        r"\s*\d{1,2}([./-])\d{1,2}\1(\d{2,4})"
        r"(?:(\s+|T)\d{1,2}:\d{2}(:\d{2})?(\.\d+)?(\s*[AaPp][Mm])?(\s*)((?:Z|[+-]\d{2}:?\d{2}))?)?"
        r"\s*",
        str(sample),
    )
    if layout is None:
        return generic
    sep, year, gap, seconds, fraction, meridian, space, offset = layout.groups()
    date = sep.join(("%d", "%m") if day_first else ("%m", "%d")) + sep
    date += "%Y" if len(year) == 4 else "%y"
    if gap is None:
        return date
    hour = "%I" if meridian else "%H"
    clock = f"{hour}:%M" + (":%S" if seconds else "") + (".%f" if fraction else "")
    am_pm = "" if not meridian else (" %p" if meridian[0].isspace() else "%p")
    zone = "" if not offset else (space or "") + "%z"  # strptime's %z reads +02:00 and Z
    return date + gap + clock + am_pm + zone


def _zone_abbreviation(text: str) -> str | None:
    """The first word of `text` that is a time-zone abbreviation of the tz database (CET,
    CEST, EDT, IST, AEST: any case, anywhere in the text), as written; None if none is. UTC and
    GMT, which pandas reads, are not counted."""
    words: list[str] = re.findall(r"[A-Za-z]+", text)
    return next((word for word in words if word.upper() in _zone_abbreviations()), None)


@functools.cache
def _zone_abbreviations() -> frozenset[str]:
    """What the tz database's zones call themselves in winter and summer of 2000 and 2024,
    alphabetic names only ("+03" is an offset), UTC and GMT left out: 0.1 s, once, on the
    path of a timestamp that failed to parse."""
    from zoneinfo import ZoneInfo, available_timezones

    names = set()
    for key in available_timezones():
        zone = ZoneInfo(key)
        for year, month in ((2000, 1), (2000, 7), (2024, 1), (2024, 7)):
            name = datetime(year, month, 1, 12, tzinfo=zone).tzname()
            if name and name.isalpha():
                names.add(name.upper())
    return frozenset(names - {"UTC", "GMT"})


def _offsets_without_zone_names(
    text: pd.Series, fmt: str | None, label: str, source: str, report: Report
) -> pd.Series:
    """'2024-03-31 03:00:00 CEST+0200', as strftime('%Z%z') writes: the offset (two-digit
    hours and minutes, ISO 8601's form) says the instant, the name only repeats it. pandas
    inferred the name as a fixed text from the first row, so a file crossing a daylight-saving
    change failed at its first CEST row, and read some forms with the POSIX sign row by row;
    the name is left out before parsing. Hour-only forms (GMT+1) stay for
    `_refuse_signed_hours`: those are read two ways by their writers too. With a
    timestamp_format, only where the format reads the rows without the names and not with
    them ('%Y-%m-%d %H:%M:%S %z'; '... UTC%z' names the text itself)."""
    ends = (str(text.iloc[0]), str(text.iloc[-1])) if len(text) else ()
    if not any(re.search(_NAMED_ISO_OFFSET, end) for end in ends):
        return text  # a file writes its times one way: its first or last row shows it
    if fmt is not None:
        sample = pd.Series(ends)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            as_written = pd.to_datetime(sample, format=fmt, errors="coerce", utc=True)
            stripped = sample.str.replace(_NAMED_ISO_OFFSET, "", regex=True)
            without = pd.to_datetime(stripped, format=fmt, errors="coerce", utc=True)
        if as_written.notna().all() or without.isna().any():
            return text
    unnamed = text.str.replace(_NAMED_ISO_OFFSET, "", regex=True)
    named = (unnamed != text).to_numpy(dtype=bool)
    report.add(
        source,
        "read",
        int(named.sum()),
        f"read the UTC offsets of column {label} written after a zone name (e.g. "
        f"{shown(text[named].iloc[0])}) and left the name out",
    )
    return unnamed


def _refuse_signed_hours(text: pd.Series, parsed: pd.Series, label: str, source: str) -> None:
    """Offsets written as a zone name and a signed offset (GMT+1, UTC+5:30) are read by pandas
    with the POSIX sign (GMT+1 as one hour behind UTC) on some paths (row by row) and with the
    ISO sign on others (a format: CEST+0200 as two hours ahead); most writers mean ahead. A
    whole-hours form (GMT+1) is refused; one with minutes is compared with its reading as an
    ISO offset (`local +05:30`), once per distinct zone-and-offset text (a file holds one or
    two): where pandas' reading differs, every instant would be off without a word. Refused,
    with the unambiguous way to write them."""
    signed = text.str.contains(_SIGNED_HOURS).to_numpy(dtype=bool)
    if not signed.any():
        return
    parts = text[signed].str.extract(_SIGNED_PARTS)
    wrong = np.zeros(len(text), dtype=bool)
    wrong[signed] = parts["minutes"].isna().to_numpy(dtype=bool)  # GMT+1, UTC-05: two ways
    # the zone-and-offset text, as one key per distinct way the file writes it
    suffix = parts["name"] + parts["sign"] + parts["hours"] + parts["minutes"].fillna("")
    firsts = suffix[~wrong[signed]].drop_duplicates().index  # one row per zone-and-offset text
    if len(firsts):
        sample = parts.loc[firsts]
        iso = (
            sample["local"] + " " + sample["sign"] + sample["hours"].str.zfill(2) + ":"
            + sample["minutes"]
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meant = pd.to_datetime(iso, format="mixed", utc=True, errors="coerce")
        read = parsed.loc[firsts]
        read = read.dt.tz_convert("UTC") if read.dt.tz is not None else read.dt.tz_localize("UTC")
        misread = set(suffix.loc[firsts][(meant.isna() | (meant != read)).to_numpy()])
        wrong[signed] |= suffix.isin(misread).to_numpy(dtype=bool)
    if wrong.any():
        row = int(np.argmax(wrong)) + 1
        raise TimestampParseError(
            f"{source}: column {label}, {row_label(row)}: {shown(text.iloc[row - 1])} ends in "
            "a zone name and a signed offset, which is read two ways (pandas, as POSIX, "
            "reads GMT+1 as one hour behind UTC; most writers mean one hour ahead): write the "
            "offset as +01:00 or -01:00 (as pandas' Timestamp.isoformat writes it); "
            f"{plural_says(int(wrong.sum()), 'row', 'holds', 'hold')} one"
        )


def _refuse_dateless(text: pd.Series, parsed: pd.Series, label: str, source: str) -> None:
    """A time of day alone ('13:00', '10:00Z', '1pm', a Parquet time column) and 'now' /
    'today' parse as times on the day pandas runs (or in year 1): refused, not dated silently.
    Only rows dated next to today or before the years a timestamp holds are matched against
    the pattern (vectorised), so a file of dated rows pays two comparisons."""
    today = pd.Timestamp.now().normalize()
    days = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
    near = (days >= today - pd.Timedelta(days=1)) & (days < today + pd.Timedelta(days=2))
    suspects = (near | (days < pd.Timestamp.min)).to_numpy()
    if suspects.any():
        dateless = text[suspects].str.fullmatch(NO_DATE)
        if dateless.any():
            position = int(np.flatnonzero(suspects)[int(np.argmax(dateless.to_numpy()))])
            raise TimestampParseError(
                f"{source}: column {label}, {row_label(position + 1)}: "
                f"{shown(text.iloc[position])} has no date (pandas would date it to the day it "
                "runs); timestamps must carry their date"
            )
    outside = ((days < pd.Timestamp.min) | (days > pd.Timestamp.max)).to_numpy()
    if outside.any():  # 'Dec 5 10:00' (no year) reads as year 1
        position = int(np.argmax(outside))
        raise TimestampParseError(
            f"{source}: column {label}, {row_label(position + 1)}: {shown(text.iloc[position])} "
            f"reads as {days.iloc[position]}, outside the times the service can date "
            f"({pd.Timestamp.min} to {pd.Timestamp.max}); "
            f"{plural_says(int(outside.sum()), 'row', 'is', 'are')}"
        )


def _refuse_sub_microsecond(
    parsed: pd.Series, text: pd.Series | None, label: str, source: str
) -> None:
    """Timestamps with digits past the microsecond ('00:00:00.123456789'): the forecast API
    and the model's `start` date to the microsecond, so such a model could not be sent its own
    times, and the run failed after its fit, on the input example it logs ("`start` ... is not
    an ISO 8601 date and time"), naming neither the file nor the column."""
    index = pd.DatetimeIndex(parsed)
    if index.unit != "ns":  # a Parquet column in us, ms or s holds nothing finer
        return
    finer = index.nanosecond.to_numpy() != 0  # 16 M rows: 0.13 s (asi8 % 1000: 0.26 s)
    if not finer.any():
        return
    position = int(np.argmax(finer))
    cell = text.iloc[position] if text is not None else parsed.iloc[position]
    raise TimestampParseError(
        f"{source}: column {label}, {row_label(position + 1)}: {shown(str(cell))} is dated "
        f"finer than the microsecond ({plural_says(int(finer.sum()), 'row', 'is', 'are')}), "
        "which the forecast API "
        "and a model's `start` do not take: round the timestamps to the microsecond (or a "
        "coarser step) before training"
    )


def _numeric_values(
    raw: pd.DataFrame,
    columns: tuple[str, ...],
    source: str,
    report: Report,
    decimal: str = ".",
    sep: str | None = ",",
    *,
    groups: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """float64 columns; empty cells (and the CSV reader's NA spellings) become NaN = missing.
    `sep`: the CSV file's field separator, None for Parquet (what a refusal advises).
    `groups`: a long file's rows by series, for a refusal that names the cell's series."""
    out: dict[str, pd.Series] = {}
    cast: list[str] = []
    for column in columns:
        cells = raw[column]
        if pd.api.types.is_datetime64_any_dtype(cells) or pd.api.types.is_timedelta64_dtype(cells):
            raise NonNumericValueError(
                f"{source}: column {column!r} holds dates or durations, not numbers"
            )
        if pd.api.types.is_bool_dtype(cells) or pd.api.types.is_numeric_dtype(cells):
            if not pd.api.types.is_float_dtype(cells):
                cast.append(f"{column} ({cells.dtype})")
            out[column] = cells.astype("float64")
            rounded = _rounded_integers(cells, out[column])
            if rounded:
                report.add(source, "cast", rounded[0], f"column {column!r}: {rounded[1]}")
            continue
        if decimal == ",":
            flags = _true_false(cells)
            if flags is not None:  # read as text here, where pandas would have read bools
                cast.append(f"{column} (bool)")
                out[column] = flags
                continue
            cells, grouped = _comma_numbers(cells)
        numbers = pd.to_numeric(cells, errors="coerce")
        bad = (numbers.isna() & cells.notna()).to_numpy()
        if bad.any():
            row = int(np.argmax(bad)) + 1
            cell = raw[column].iloc[row - 1]
            hint = _number_hint(cell, decimal, sep)
            raise NonNumericValueError(
                f"{source}: column {column!r}, {row_label(row)}{_series_of_row(groups, row)}: "
                f"{shown(cell)} is not a number "
                f"({plural(int(bad.sum()), 'such cell')} in this column); values must be "
                f"numbers, with empty cells for missing values{hint}"
            )
        out[column] = numbers.astype("float64")
        if sep is None:  # Parquet: a column typed other than as numbers, which is news
            cast.append(f"{column} ({_parquet_kind(raw[column])})")
        if decimal == "," and grouped.any():
            row = int(np.argmax(grouped.to_numpy())) + 1
            report.add(
                source,
                "read",
                int(grouped.sum()),
                f"column {column!r}: {plural(int(grouped.sum()), 'number')} with '.' "
                "between groups of digits, read with '.' as the thousands separator "
                f"(decimal=','): {shown(raw[column].iloc[row - 1])} at {row_label(row)} "
                f"as {numbers.iloc[row - 1]:.10g}",
            )
    if cast:
        report.add(source, "cast", len(cast), f"converted to float64: {', '.join(cast)}")
    return pd.DataFrame(out, copy=False)  # not copied again: 128 MB a column at 16 M rows


# float64 holds every integer up to 2**53 exactly; above it, only every 2nd, 4th, ... one.
EXACT_INTEGERS = 2**53


def _rounded_integers(cells: pd.Series, floats: pd.Series) -> tuple[int, str] | None:
    """An integer column whose values float64 cannot hold exactly (beyond 2**53: a cumulative
    counter in nanojoules, a meter's raw reading on a large offset), as (count, what the data
    report says); None when every value converted exactly. Such values are rounded to
    float64's nearest, which moves the last digits the series varies by: the report names
    it, with the way to keep them (the file's values are not changed further)."""
    if not pd.api.types.is_integer_dtype(cells) or cells.empty:
        return None
    given = cells.dropna()
    numbers = given.to_numpy()
    converted = floats.loc[given.index].to_numpy(dtype=np.float64)
    big = np.abs(converted) >= EXACT_INTEGERS  # below it, every integer converts exactly
    if not big.any():
        return None
    held = np.abs(converted) < 2.0**63  # float64 -> int64 is exact there
    back = np.where(held, converted, 0.0).astype(np.int64)
    exact = held & (back.astype(object) == numbers.astype(object))
    changed = big & ~exact
    if not changed.any():
        return None
    first = int(np.argmax(changed))
    read_as = str(int(back[first])) if held[first] else f"{converted[first]:.17g}"
    step = int(np.spacing(np.abs(converted[first])))
    return int(changed.sum()), (
        f"{int(changed.sum()):,} of {len(numbers):,} integers lie beyond 2**53 "
        f"({EXACT_INTEGERS:.3g}), where float64 holds integers only in steps of {step:,}, "
        f"and were rounded to the nearest it holds (e.g. {numbers[first]} read as "
        f"{read_as}); if the series varies in those last digits, subtract an offset (its "
        "first value, say) from the column before training"
    )


def _number_hint(cell: object, decimal: str, sep: str | None) -> str:
    """What a text cell that is no number most likely holds, and the way to read it: "" when
    nothing is recognised. A decimal comma is read with decimal=',' only where the fields are
    split by another character (a quoted '"30,5"' in a comma-separated file, and Parquet text,
    were told to pass decimal=',', which sep=',' then refused); a thousands separator is read
    only as the '.' of decimal=',' (1.034,5)."""
    if not isinstance(cell, str):
        return ""
    if decimal == "," and "." in cell:
        return "; with decimal=',' a '.' may only group thousands (1.034,5)"
    if decimal == "." and re.fullmatch(r"\s*[-+]?[\d.]*,\d+\s*", cell):
        # '22,262': a US export's thousands separator as likely as a decimal comma; advice
        # for the decimal comma alone (re-save with decimal=',', or replace ',' by '.') read
        # 22.262 for 22262, a thousand times off and silently
        both = re.fullmatch(r"\s*[-+]?\d{1,3},\d{3}\s*", cell)
        if both and sep in (None, ","):
            number = cell.strip()
            return (
                f"; a thousands separator ({number} meaning {number.replace(',', '')}: write "
                f"the numbers without it) or a decimal comma ({number} meaning "
                f"{number.replace(',', '.')}: "
                + (
                    "write the column as numbers (float64) with '.' as the decimal mark"
                    if sep is None
                    else "save the file with ';' between fields and pass sep=';' and "
                    "decimal=',', or write the numbers with '.'"
                )
                + ")? the loader cannot tell from this cell"
            )
        if sep is None:
            return (
                "; a decimal comma? the column is text in the Parquet file: write it as a "
                "number column (float64), e.g. pandas: df[col].str.replace(',', '.')"
                ".astype(float) before to_parquet"
            )
        if sep == ",":
            return (
                "; a decimal comma? in a comma-separated file the loader reads no decimal "
                "comma (decimal=',' needs another field separator): save the file with ';' "
                "between fields and pass sep=';' and decimal=',', or write the numbers with '.'"
            )
        if re.fullmatch(r"\s*[-+]?\d{1,3},\d{3}\s*", cell):  # '1,034': 1.034 or 1034?
            return (
                "; a decimal comma (pass decimal=',': 1,034 reads 1.034) or a thousands "
                "separator (1,034 meaning 1034: write the numbers without it)? the loader "
                "cannot tell from this cell"
            )
        return "; a decimal comma? pass decimal=','"
    percent = re.fullmatch(r"\s*([-+]?[\d.,]*\d)\s*%\s*", cell)
    if percent:  # Excel's percent format saved as shown: '81%' is 0.81 in the sheet
        return (
            f"; a percent sign is not read: write the number without it ({shown(cell)} as "
            f"{percent.group(1)}, or as a fraction)"
        )
    grouped = re.fullmatch(
        r"\s*[-+]?\d{1,3}(?:([,'\u00a0\u202f ])\d{3})(?:\1\d{3})*(?:[.,]\d*)?\s*", cell
    )
    if grouped:
        mark = {",": "','", "'": '"\'"', " ": "a space"}.get(grouped.group(1), "a no-break space")
        return (
            f"; {mark} between groups of digits (a thousands separator?) is not read: write "
            "the numbers without it"
        )
    return ""


# A number written with a decimal comma: '.' only between groups of three digits (1.034,5).
_COMMA_NUMBER = r"\s*[-+]?(?:\d{1,3}(?:\.\d{3})+|\d*)(?:,\d*)?(?:[eE][-+]?\d+)?\s*"
_NON_FINITE_WORDS = r"\s*[-+]?(?:inf|infinity|nan)\s*"


# The words pandas' CSV reader takes as booleans (its default true_values/false_values).
_TRUE_FALSE = {"True": 1.0, "TRUE": 1.0, "true": 1.0, "False": 0.0, "FALSE": 0.0, "false": 0.0}


def _true_false(cells: pd.Series) -> pd.Series | None:
    """A column of true/false words as 1.0/0.0, as pandas reads one when it parses the values
    itself (decimal '.'); None when any cell is something else."""
    given = cells.dropna()
    if given.empty or not given.isin(list(_TRUE_FALSE)).all():
        return None
    return cells.map(_TRUE_FALSE).astype("float64")


def _parquet_kind(cells: pd.Series) -> str:
    """How a Parquet value column that pandas reads as no number type is typed: decimal
    (objects of decimal.Decimal), text, or its pandas type (category)."""
    given = cells.dropna()
    if isinstance(cells.dtype, pd.CategoricalDtype):
        return "category"
    if len(given) and isinstance(given.iloc[0], Decimal):
        return "decimal"
    if len(given) and isinstance(given.iloc[0], str):
        return "text"
    return str(cells.dtype)


def _comma_numbers(cells: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Text cells of numbers with a decimal comma as text pandas reads ('1.034,5' ->
    '1034.5'); a cell that is no such number (1.5: a '.' that groups no thousands) becomes
    unreadable text, which the caller names by its row. Second: which cells hold a '.' read
    as a thousands separator, for the report ('30.531' from a tool that writes decimal points
    reads as 30531, and every such cell passes: a column of three-decimal numbers has no
    refused cell to say so)."""
    text = cells.astype("string")
    plain = (text.str.fullmatch(_COMMA_NUMBER) & text.str.contains(r"\d", regex=True)).fillna(False)
    words = text.str.fullmatch(_NON_FINITE_WORDS, case=False)
    converted = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    out = converted.where(plain, text.where(words.fillna(False), "\x00"))
    grouped = (plain & text.str.contains(".", regex=False)).fillna(False)
    return out.where(cells.notna(), None).astype(object), grouped


def _note_thousands(values: pd.DataFrame, source: str, report: Report) -> None:
    """A report line where a column of a file whose fields are not comma-separated (European
    exports) looks written with '.' separating thousands: no value has more than three
    decimals, and most of those with decimals have exactly three (1.606 for 1,606 MW, beside
    982). They are read as decimals; not refused, as three decimals can be the data's own."""
    for column in values.columns:
        x = values[column].to_numpy(dtype=np.float64)
        x = x[np.isfinite(x)]
        milli = np.round(x * 1000)
        if not len(x) or (np.abs(x * 1000 - milli) > 1e-6 * np.maximum(1, np.abs(x))).any():
            continue  # a fourth decimal somewhere: '.' is the decimal mark
        fractional = milli % 1000 != 0
        three = fractional & (milli % 10 != 0)
        if three.sum() == 0 or three.sum() * 2 < fractional.sum():
            continue
        sample = float(x[np.argmax(three)])
        report.add(
            source,
            "read",
            int(three.sum()),
            f"column {column!r}: {int(three.sum()):,} of its numbers have exactly three "
            f"decimals (such as {sample:.3f}) and none has more, read with '.' as the decimal "
            "mark: if '.' separates thousands in this file (1.606 for 1,606), remove those "
            "marks first",
            caution=True,
        )


def _refuse_blank_rows(raw: pd.DataFrame, source: str) -> None:
    """Rows empty in every column read: the ';;' lines Excel writes for the blank rows under a
    table. They were refused as an "empty timestamp, or a missing-value word" (or an "empty
    series id"), which sent the user looking for a bad date or id."""
    blank = raw.isna().all(axis=1).to_numpy()
    if blank.any():
        row = int(np.argmax(blank)) + 1
        raise TimestampParseError(
            f"{source}: {row_label(row)} is empty in every column read "
            f"({', '.join(map(repr, raw.columns))}) ({plural(int(blank.sum()), 'such row')}): "
            "a line of separators alone, as a spreadsheet writes the blank rows under a "
            "table; delete those lines"
        )


def _units_cell(cell: object) -> bool:
    """A cell of text that is no number in either decimal mark: 'kW', 'degC', '[m3/h]'."""
    if not isinstance(cell, str) or not cell.strip():
        return False
    try:
        float(cell.strip().replace(",", "."))
    except ValueError:
        return True
    return False


def _numeric_cell(cell: object) -> bool:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return True  # a missing value below a units row still leaves the row a units row
    if isinstance(cell, int | float | np.integer | np.floating):
        return True
    return isinstance(cell, str) and not _units_cell(cell)


def _refuse_units_row(
    raw: pd.DataFrame, time_columns: Sequence[str], columns: Sequence[str], source: str
) -> None:
    """A row of units under the header (SCADA and Excel exports: ',kW,kVAr,...,degC'): no
    time in data row 1 (an empty cell, or text without a digit: '[UTC]'), text in every value
    column and numbers below it. Read as data it was refused at its empty time cell ('empty
    timestamp ... every row needs its time'), or at '[UTC]' as no timestamp, neither saying
    what the row is; refused here naming it and what to do."""
    if len(raw) < 2 or not columns:
        return
    first, second = raw.iloc[0], raw.iloc[1]
    if any(isinstance(first[c], str) and re.search(r"[0-9]", first[c]) for c in time_columns):
        return  # a time: a data row with a bad value, named where the values are read
    if not all(_units_cell(first[c]) and _numeric_cell(second[c]) for c in columns):
        return
    units = ", ".join(f"{shown(first[c])} under {c!r}" for c in columns[:4])
    more = f" and {len(columns) - 4:,} more" if len(columns) > 4 else ""
    raise NonNumericValueError(
        f"{source}: {row_label(1)} holds text in every value column "
        f"({units}{more}) and numbers below it: a row of units under the header? The loader "
        "reads one header line and every row after it as data: delete that row (a unit can go "
        "into the column name, such as 'OT [degC]')"
    )


def _refuse_repeated_header(raw: pd.DataFrame, time_columns: Sequence[str], source: str) -> None:
    """Rows whose time cells hold the time columns' own names: the header line again, as
    files joined with their headers leave it (`cat 0.csv 1.csv > all.csv`, SKAB's runs). It
    was refused as a timestamp that does not parse, with advice on timestamp_format that no
    format follows (or, with step_origin, as "'cycle' is not a whole step number")."""
    repeated: np.ndarray | None = None
    for column in time_columns:
        cells = raw[column]
        if cells.dtype != object and not pd.api.types.is_string_dtype(cells):
            return  # numbers or parsed times (Parquet): no header text among them
        # compared as read: no copy of the column's text (a file of 100 million rows)
        same = (cells == column).to_numpy(dtype=bool, na_value=False)
        repeated = same if repeated is None else repeated & same
    if repeated is None or not repeated.any():
        return
    row = int(np.argmax(repeated)) + 1
    raise TimestampParseError(
        f"{source}: {row_label(row)} repeats the header line "
        f"({plural(int(repeated.sum()), 'such row')}): files joined with their header lines? "
        "The loader reads one header line and every line after it as data: delete the "
        "repeated header lines (join the files with the header of the first only: "
        "pandas.concat of each file read, or `tail -n +2` of each file after the first)"
    )


def _series_of_row(groups: Mapping[str, np.ndarray] | None, row: int) -> str:
    """ ", series 'b'" for 1-based data `row` of a long file (`groups`: each series' 0-based
    positions), so that a bad cell names the unit whose logger wrote it; "" for a one-series
    file. Looked up only for a refusal: the id column is not held after the rows are
    grouped (a long log's largest text column)."""
    if groups is None:
        return ""
    for series, positions in groups.items():
        if (positions == row - 1).any():
            return f", {series_named(series)}"
    return ""


def _check_finite(
    values: pd.DataFrame, source: str, *, groups: Mapping[str, np.ndarray] | None = None
) -> None:
    """inf is an error: unlike NaN it is no honest "missing", and it would poison the scaler.
    `groups`: a long file's rows by series, for the refusal to name the cell's series."""
    first: tuple[int, int] | None = None  # (row, column position): the first in row order
    count = 0
    for col, column in enumerate(values.columns):  # a column at a time: no copy of them all
        infinite = np.isinf(values[column].to_numpy(dtype=np.float64))
        if infinite.any():
            count += int(infinite.sum())
            at = (int(np.argmax(infinite)), col)
            first = at if first is None else min(first, at)
    if first is not None:
        row, col = first
        column = values.columns[col]
        raise NonFiniteValueError(
            f"{source}: column {column!r}, {row_label(row + 1)}"
            f"{_series_of_row(groups, row + 1)}: value is "
            f"{float(values[column].iloc[row])} ({count:,} infinite cells in the file); "
            "infinite values are errors, not missing values: fix the cell or leave it empty"
        )


def _check_segment_ids(segments: list[Segment], source: str) -> None:
    """A series cut at a long gap names its parts '<id>#1', '<id>#2': a series of the file
    already called so would be overwritten by one of them."""
    seen: dict[str, Segment] = {}
    for segment in segments:
        other = seen.setdefault(segment.series_id, segment)
        if other is not segment:
            cut = segment.unit or other.unit  # the part of a cut series, met first or second
            raise DataValidationError(
                f"{source}: {series_named(cut)} is cut at a long gap into parts named like "
                f"{shown(segment.series_id)}, which is also the id of another series of the "
                "file; rename that series, or fill the gap (max_gap)"
            )


def _check_finite_result(segment: Segment, source: str) -> None:
    """Averaging duplicates or filling gaps between values near float64's limit (1.8e308)
    can overflow to inf; the input check saw only finite cells."""
    frame = segment.frame  # a column at a time: a copy of them all was 0.9 GB at 16 M rows
    if not all(np.isfinite(frame[c].to_numpy(dtype=np.float64)).all() for c in frame.columns):
        raise NonFiniteValueError(
            f"{source}: {series_named(segment.series_id)}: averaging duplicated timestamps or "
            "filling gaps gave values beyond float64's range; values this large (near 1.8e308) "
            "cannot be trained on: rescale the column"
        )


def _report_missing_cells(
    values: pd.DataFrame,
    source: str,
    report: Report,
    written: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
) -> None:
    """One line for the cells read as missing, with how the file writes them: pandas' words
    ('#N/A', 'NULL', 'None', 'NA', ...) are missing values as much as an empty cell, but a
    user should see which words were read so, and where the first one is."""
    counts = values.isna().sum()
    total = int(counts.sum())
    if not total:
        return
    columns = [str(c) for c, n in counts.items() if n]
    flags = {c: values[c].isna().to_numpy() for c in columns}
    text = written(flags)
    parts = []
    for column in columns:
        missing = flags[column]
        part = f"{column} {int(missing.sum()):,}"
        if column in text:
            cells = text[column]
            rows = np.flatnonzero(missing) + 1
            spelled = pd.Series(cells).astype(str).str.strip()
            words = [
                f"{'empty' if word == '' else shown(word)} x{int(n):,} (first at data row "
                f"{int(rows[int(np.argmax((spelled == word).to_numpy()))]):,})"
                for word, n in spelled.value_counts(sort=True).head(5).items()
            ]
            more = spelled.nunique() - len(words)
            part += ": " + ", ".join(words) + (f" and {more:,} more spellings" if more > 0 else "")
        parts.append(part)
    report.add(
        source,
        "missing",
        total,
        f"{total:,} empty/NaN cells in the file ({'; '.join(parts)}); treated as missing values "
        "and handed to the fill policy",
    )


def _group_rows(
    raw: pd.DataFrame, config: LoadConfig, path: Path, report: Report
) -> dict[str, np.ndarray]:
    """Series id -> positions of its rows in the file, ids in sorted order (deterministic)."""
    if config.series_col is None:
        # the name without its suffix; the whole name where that leaves "", "." or ".."
        stem = path.name[: -len(_suffix(path))]
        name = config.series_id or (stem if stem.strip(".") else path.name)
        return {name: np.arange(len(raw))}
    ids = raw[config.series_col]
    empty = ids.isna().to_numpy()
    if empty.any():
        raise MissingSeriesIdError(  # how many, and the way out, not the first row alone
            f"{path.name}: column {config.series_col!r}, "
            f"{row_label(int(np.argmax(empty)) + 1)}: empty series id "
            f"({plural(int(empty.sum()), 'such row')}): every row needs the id of its series: "
            "fill the ids in, or leave those rows out of the file"
        )
    text = ids.astype(str)
    indices = {
        str(k): np.asarray(v) for k, v in text.groupby(text.to_numpy(), sort=True).indices.items()
    }
    blank = [int(rows[0]) for series_id, rows in indices.items() if not series_id.strip()]
    if blank:
        row = min(blank) + 1
        raise MissingSeriesIdError(
            f"{path.name}: column {config.series_col!r}, {row_label(row)}: series id "
            f"{shown(text.iloc[row - 1])} is only spaces: every row needs the id of its series"
        )
    _refuse_ids_written_two_ways(indices, config.series_col, path.name)
    _refuse_inexact_float_ids(indices, ids.dtype, config.series_col, path.name)
    return _whole_number_ids(indices, path.name, report)


# A whole number as a float is written: "7.0", and past 1e16 with an exponent ("1e+16",
# "1.2345678901234567e+19"), as Python, pandas and a Parquet float id column read as text.
_FLOAT_WRITTEN = re.compile(r"-?[0-9]+\.0+|-?[0-9](?:\.[0-9]+)?e\+[0-9]+")


def _refuse_inexact_float_ids(
    indices: Mapping[str, np.ndarray], dtype: Any, column: str, source: str
) -> None:
    """Ids written as whole-number floats past what a float holds exactly (2**53 for float64)
    are refused, in a CSV and a Parquet file alike: a float id column rounds such ids (the
    id 12345678901234567890 stored as float64 is 12345678901234567168, and 2**53 + 1 is
    2**53), so the id read may not be the one first written and two series may have become
    one. Reading it as integer text would pass off the rounded number as the id; only the
    file's writer can store the ids exactly (as integers or text)."""
    floats = pd.api.types.is_float_dtype(dtype)  # float32 too, exact to 2**24 only
    bits = np.finfo(getattr(dtype, "numpy_dtype", dtype)).nmant + 1 if floats else 53
    limit = 1 << int(bits)

    def beyond(series_id: str) -> bool:
        if not _FLOAT_WRITTEN.fullmatch(series_id):
            return False
        whole = int(float(series_id)) if "e" in series_id else int(series_id.split(".")[0])
        return abs(whole) > limit

    inexact = [series_id for series_id in indices if beyond(series_id)]
    if not inexact:
        return
    first = min(inexact, key=lambda series_id: int(indices[series_id][0]))
    held = f" (as a float: {int(float(first))})" if "e" in first else ""
    raise MissingSeriesIdError(
        f"{source}: column {column!r}, {row_label(int(indices[first][0]) + 1)}: series id "
        f"{shown(first)}{held} is a whole number past 2**{bits} = {limit:,} written as a "
        f"decimal ({plural(len(inexact), 'such id')}): a float holds whole numbers that "
        "large only approximately, so the id may differ from the one first written and two "
        "series may have become one; store the ids as integers or text (an integer or "
        "string column in Parquet, digits without '.0' or an exponent in a CSV)"
    )


def _whole_number_ids(
    indices: dict[str, np.ndarray], source: str, report: Report
) -> dict[str, np.ndarray]:
    """Ids renamed by `series_id_text` (a Parquet float id column reads '1.0' as a CSV pandas
    wrote from floats does; both become '1'). Ids that would meet another id so ('1' and
    '1.0') were refused above as written two ways, so no two series merge here."""
    renamed = [series_id for series_id in indices if series_id_text(series_id) != series_id]
    if not renamed:
        return indices
    example = renamed[0]
    report.add(
        source,
        "cast",
        len(renamed),
        f"{plural(len(renamed), 'series id')} written as whole-number decimals (such as "
        f"{shown(example)}, as pandas writes the ids of a column it read as floats) are read as "
        f"their integer text (such as {shown(series_id_text(example))}), in a CSV and a Parquet "
        "file alike; other ids are kept as written",
    )
    return {series_id_text(k): indices[k] for k in sorted(indices, key=series_id_text)}


def _refuse_ids_written_two_ways(
    indices: Mapping[str, np.ndarray], column: str, source: str
) -> None:
    """Two ids that differ only by spaces at either end ('pump 1' and 'pump 1 ', as an export
    pads some cells), by leading zeros ('007' and '7': a spreadsheet reads ids as numbers
    and drops the zeros of the rows it rewrote) or by a '.0' ('7' and '7.0': pandas writes
    ids it read as floats so) were two series, each with part of one unit's history and gaps
    that filling made up. Which is meant is not for the loader to guess:
    refused, both named with the first row of each."""
    spaces = (
        "differ only by spaces at either end, so they would be read as two series; write "
        "each id one way (remove the spaces)"
    )
    zeros = (
        "differ only by leading zeros (a spreadsheet drops them from ids it reads as "
        "numbers), so they would be read as two series; write each id one way"
    )
    point = (
        "differ only by a '.0' (ids written as decimals: pandas writes '7.0' for an id column "
        "it read as floats, e.g. one with an empty cell), so they would be read as two "
        "series; write each id one way"
    )
    for key_of, how in (
        (str.strip, spaces),
        (lambda i: (i.lstrip("0") or "0") if _DIGITS.fullmatch(i) else None, zeros),
        (lambda i: (i.split(".")[0].lstrip("0") or "0") if _WHOLE.fullmatch(i) else None, point),
    ):
        seen: dict[str, str] = {}
        for series_id in indices:
            key = key_of(series_id)
            if key is None:
                continue
            if key in seen:
                first, second = seen[key], series_id
                raise MissingSeriesIdError(
                    f"{source}: column {column!r}: series ids {shown(first)} (first at data "
                    f"row {int(indices[first][0]) + 1}) and {shown(second)} (first at "
                    f"{row_label(int(indices[second][0]) + 1)}) {how}"
                )
            seen[key] = series_id


_DIGITS = re.compile(r"[0-9]+")
_WHOLE = re.compile(r"[0-9]+(?:\.0+)?")  # a whole number, as an int or a float writes it


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next(s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s))


class MostlyFilledError(DataValidationError):
    """A series whose history would be mostly filled values rather than observed ones."""


def _check_filled_share(
    pieces: list[Segment],
    observed: pd.Index,
    freq: str,
    config: LoadConfig,
    source: str,
) -> None:
    """Refuse a series that would be mostly filled values, saying what the timestamps show: the
    step they take most often (in the terms `freq` is written in: 'D', never '24h' beside 'D'),
    and business-day data (weekdays only) whose weekends 'D' fills, for which 'B' is the
    frequency. Nothing is decided for the user: which frequency the data is recorded at, or
    whether to train on it anyway, is theirs."""
    for piece in pieces:
        total = piece.filled.size
        share = int(piece.filled.to_numpy().sum()) / total if total else 0.0
        if share <= config.max_filled_fraction:
            continue
        raise MostlyFilledError(
            f"{source}: {series_named(piece.series_id)} would be {100 * share:.1f}% filled "
            f"values at {freq!r} (max_filled_fraction={config.max_filled_fraction:g})"
            f"{_own_step(observed, freq)}. Give the frequency the data is recorded at (freq, "
            "--freq), load series recorded at different frequencies from separate files, or "
            "raise max_filled_fraction (--max-filled-fraction) to train on it anyway"
        )


def _own_step(observed: pd.Index, freq: str) -> str:
    """What a series' own timestamps say about its frequency, for `_check_filled_share`."""
    steps = pd.Series(observed).diff().dropna()
    if not len(steps):
        return ""
    modal = pd.Timedelta(steps.mode().iloc[0])
    stamps = pd.DatetimeIndex(observed)
    business = isinstance(pd.tseries.frequencies.to_offset(freq), pd.offsets.BusinessDay)
    if (
        modal == pd.Timedelta(days=1)
        and not business
        and stamps[-1] - stamps[0] >= pd.Timedelta(days=7)  # a weekend lies between them
        and bool((stamps.day_of_week < 5).all())
    ):
        return (
            "; its timestamps step by one day most often and fall on weekdays only (no "
            "Saturday or Sunday), so every weekend would be filled: for data recorded on "
            "business days give freq 'B' (--freq B)"
        )
    if modal == fixed_step(freq):
        return (
            f"; its own timestamps also step by {freq!r} most often: the filled values are "
            "gaps in its record"
        )
    return f"; its own timestamps step by {step_alias(modal)!r} most often"


def _apply_min_length(
    segments: list[Segment], config: LoadConfig, source: str, report: Report, freq: str
) -> list[Segment]:
    floors = _row_floors(segments, config)
    short = [s for s in segments if len(s.frame) < floors[s.series_id]]
    longest = max((len(s.frame) for s in segments), default=0)
    if short and len(short) == len(segments):
        raise SeriesTooShortError(
            f"{source}: every series is shorter than min_length={config.min_length:,} (the "
            f"longest has {plural(longest, 'row')})",
            longest=longest,
            freq=freq,
        )
    if short and config.on_short != "drop":
        first = short[0]
        # the ways out a caller names are sized for the short series, not the file's longest,
        # which already holds the window
        kept = max(short, key=lambda s: len(s.frame))
        raise SeriesTooShortError(
            f"{source}: {series_named(first.series_id)} has "
            f"{plural(len(first.frame), 'row')} after cleaning, fewer than "
            f"{_floor_name(first, floors, config)} ({len(short):,} of "
            f"{len(segments):,} series are; the longest has {plural(longest, 'row')}); set "
            f"on_short='drop' to leave such series out (allowed: "
            f"{', '.join(SHORT_SERIES_POLICIES)})",
            longest=len(kept.frame),
            freq=freq,
            series=kept.series_id,
        )
    for segment in short:
        n = len(segment.frame)
        report.add_series(
            segment.series_id,
            "drop",
            n,
            f"dropped: {plural(n, 'row')}, fewer than {_floor_name(segment, floors, config)} "
            "(on_short='drop')",
        )
    if short:  # a terminal's brief report keeps file lines: the count is said past 10 series
        most = max(short, key=lambda s: len(s.frame))
        what = "series or segments" if any(s.unit for s in short) else "series"
        report.add(  # "summary": the "drop" decisions are one per series or segment
            source,
            "summary",
            len(short),
            f"dropped {len(short):,} of {len(segments):,} {what} as too short "
            f"(on_short='drop'): {plural(len(most.frame), 'row')} at most, fewer than "
            f"{_floor_name(most, floors, config)}; every one is named in the data report",
        )
    return [s for s in segments if len(s.frame) >= floors[s.series_id]]


def _row_floors(segments: list[Segment], config: LoadConfig) -> dict[str, int]:
    """Each segment's least number of rows: min_segment_length for a segment of a series cut
    into several, when set; min_length otherwise, and for the one segment of a cut series that
    is long enough alone (its others too short): a stretch of one series, like any other."""
    floors = {s.series_id: config.min_length for s in segments}
    if config.min_segment_length is None:
        return floors
    by_unit: dict[str, list[Segment]] = {}
    for segment in segments:
        if segment.unit:
            by_unit.setdefault(segment.unit, []).append(segment)
    for pieces in by_unit.values():
        if len(pieces) < 2:
            continue
        long_enough = [s for s in pieces if len(s.frame) >= config.min_segment_length]
        if len(long_enough) >= 2:
            for segment in pieces:
                floors[segment.series_id] = config.min_segment_length
    return floors


def _floor_name(segment: Segment, floors: dict[str, int], config: LoadConfig) -> str:
    floor = floors[segment.series_id]
    if floor == config.min_length:
        return f"min_length={floor:,}"
    return (
        f"min_segment_length={floor:,} (a segment of {series_named(segment.unit)}, cut at a "
        "long gap)"
    )


def naive_utc(stamp: pd.Timestamp) -> pd.Timestamp:
    """A zoned timestamp as zoned file timestamps are read: the instant in UTC, no zone."""
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tz is not None else stamp


def _check_timestamp_format(fmt: str | None) -> None:
    """A strptime format without a year reads every row in 1900 ('%H:%M', '%m-%d %H'), which
    pandas does without a word; pandas' own 'ISO8601' and 'mixed' carry their dates."""
    if fmt is None or fmt in ("ISO8601", "mixed"):
        return
    if "%s" in fmt.replace("%%", ""):  # `date +%s`'s directive: refused for no year, wrongly
        raise InvalidOptionError(
            f"timestamp_format {shown(fmt)}: '%s' (Unix seconds since 1970) is not a directive "
            "pandas reads timestamps with; write the column as dates first "
            "(pandas.to_datetime(column, unit='s'))"
        )
    if not any(year in fmt for year in ("%Y", "%y", "%G", "%c", "%x")):
        raise InvalidOptionError(
            f"timestamp_format {shown(fmt)} has no year (%Y or %y): pandas would date every "
            "row in 1900; timestamps must carry their date, e.g. '%Y-%m-%d %H:%M'"
        )


DECIMAL_MARKS = (".", ",")


def _check_separator_option(sep: str) -> None:
    """One character, or a regular expression pandas splits by (its python reader)."""
    if not sep:
        raise InvalidOptionError("sep (--sep) must be the CSV field separator, e.g. ',' or ';'")
    if len(sep) > 1:
        try:
            with warnings.catch_warnings():  # "possible nested set": a warning, not a verdict
                warnings.simplefilter("ignore", FutureWarning)
                re.compile(sep)
        except re.error as error:
            raise InvalidOptionError(
                f"sep {shown(sep)} is longer than one character, so it is read as a regular "
                f"expression, and it is not one ({error}); a one-character separator is read "
                "as it is"
            ) from None


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidOptionError(not_one_of(name, value, allowed))

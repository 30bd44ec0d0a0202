"""Large files read in chunks: the same data, decisions and errors as a whole-file read, in
memory proportionate to the columns used.

The loader reads a CSV file in pandas' own typing blocks, keeping only the columns it uses,
parses timestamps `PARSE_CHUNK_ROWS` rows at a time and counts the steps between them
`STEP_CHUNK` at a time (docs/performance.md, Large files). Here the chunks are made small, so
that files of a few thousand rows cross many of them, and every result is compared with the
whole-file reading (`whole_file_reading`, the loader as it read before), on the real quirky
files and on errors deep in a file, where the row named is the classic thing chunks get wrong.
"""

from __future__ import annotations

import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import training.data as loader
import training.validation as validation
from tests.shared_data import SHARED_DATA, needs_shared
from training.data import LoadConfig, LoadedData, load_data
from training.validation import UnreadableFileError

# rows per chunk where the tests make chunks small (every chunk size the loader uses)
SMALL = 1_000


@contextmanager
def whole_file_reading() -> Iterator[None]:
    """The loader as it read before: the CSV file in one `pd.read_csv`, the timestamps in one
    `pd.to_datetime`, every step pooled at once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "_read_csv_chunked", loader._read_csv_whole)
        patch.setattr(loader, "PARSE_CHUNK_ROWS", 10**12)
        patch.setattr(validation, "STEP_CHUNK", 10**12)
        yield


@contextmanager
def small_chunks(rows: int = SMALL) -> Iterator[None]:
    """Every chunk the loader reads, parses or counts in holds `rows` rows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "_csv_buffer_lines", lambda width: rows)
        patch.setattr(loader, "PARSE_CHUNK_ROWS", rows)
        patch.setattr(validation, "STEP_CHUNK", rows)
        yield


Outcome = LoadedData | tuple[type[Exception], str]


def outcome(path: Path, config: LoadConfig) -> Outcome:
    """What loading gives: the data, or the error's type and message."""
    try:
        return load_data(path, config)
    except Exception as error:  # compared, not hidden: the test asserts it is the same one
        return type(error), str(error)


def assert_same(chunked: Outcome, whole: Outcome) -> None:
    """The same series, filled flags, frequency, report and units; or the same error."""
    if isinstance(whole, tuple) or isinstance(chunked, tuple):
        assert chunked == whole
        return
    assert list(chunked.series) == list(whole.series)
    for series_id, frame in whole.series.items():
        pd.testing.assert_frame_equal(chunked.series[series_id], frame, check_exact=True)
        pd.testing.assert_frame_equal(chunked.filled[series_id], whole.filled[series_id])
    assert chunked.freq == whole.freq
    assert chunked.report == whole.report
    assert chunked.units == whole.units


def both_ways(path: Path, config: LoadConfig) -> tuple[Outcome, Outcome]:
    with small_chunks():
        chunked = outcome(path, config)
    with whole_file_reading():
        whole = outcome(path, config)
    return chunked, whole


REAL_FILES: list[tuple[str, dict[str, Any]]] = [
    # not in time order, daylight-saving duplicates and missing hours
    ("PJM_hourly/PJME_hourly.csv", {"target": "PJME_MW"}),
    ("ETT-small/ETTh1.csv", {"target": "OT", "covariates": ("HUFL", "HULL", "MUFL", "LULL")}),
    ("ETT-small/ETTm1.csv", {"target": "OT"}),
    # ';' separated, second steps with gaps
    (
        "SKAB/anomaly-free/anomaly-free.csv",
        {"target": "Temperature", "covariates": ("Pressure", "Current"), "sep": ";"},
    ),
    # date and hour in two columns, 165 missing hours, gaps past max_gap cut into segments
    (
        "Bike-Sharing-Dataset/hour.csv",
        {
            "target": "cnt",
            "covariates": ("temp", "hum"),
            "timestamp_col": ("dteday", "hr"),
            "timestamp_format": "%Y-%m-%d %H",
            "on_long_gap": "split",
        },
    ),
    ("pmdarima_taylor/taylor.csv", {"target": "load"}),
]


@needs_shared()
@pytest.mark.parametrize(("name", "recipe"), REAL_FILES, ids=[n for n, _ in REAL_FILES])
def test_real_files_load_in_small_chunks_as_read_whole(name: str, recipe: dict[str, Any]) -> None:
    path = SHARED_DATA / name
    if "taylor" in name:
        recipe = {**recipe, "target": pd.read_csv(path, nrows=0).columns[-1]}
    chunked, whole = both_ways(path, LoadConfig(**recipe))
    assert not isinstance(whole, tuple), whole  # each recipe loads
    assert_same(chunked, whole)


@needs_shared()
def test_a_long_file_of_several_series_loads_in_small_chunks_as_read_whole(
    tmp_path: Path,
) -> None:
    """The six PJM regions in one long file, series interleaved by time: each series' rows are
    picked from every chunk."""
    frames = []
    for csv_path in sorted((SHARED_DATA / "PJM_hourly").glob("*_hourly.csv")):
        frame = pd.read_csv(csv_path).set_axis(["Datetime", "MW"], axis=1)
        frames.append(frame.assign(region=csv_path.stem.removesuffix("_hourly")))
    long = pd.concat(frames).sort_values("Datetime", kind="stable")
    path = tmp_path / "pjm_long.csv"
    long.to_csv(path, index=False)
    chunked, whole = both_ways(path, LoadConfig(target="MW", series_col="region"))
    assert not isinstance(whole, tuple), whole
    assert len(whole.series) == 6
    assert_same(chunked, whole)


def pjme_with(tmp_path: Path, change: Callable[[list[str]], None]) -> Path:
    """PJME_hourly.csv with its lines (header first) changed by `change`."""
    lines = (SHARED_DATA / "PJM_hourly" / "PJME_hourly.csv").read_text().splitlines()
    change(lines)
    path = tmp_path / "PJME_hourly.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# a data row far past many chunks of SMALL rows (PJME has 145,366)
DEEP = 123_457


def set_cell(row: int, column: int, text: str) -> Callable[[list[str]], None]:
    def change(lines: list[str]) -> None:
        cells = lines[row].split(",")
        cells[column] = text
        lines[row] = ",".join(cells)

    return change


@needs_shared()
@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (set_cell(DEEP, 1, "n/a?"), "NonNumericValueError", "'n/a?' is not a number"),
        (set_cell(DEEP, 1, "inf"), "NonFiniteValueError", "value is inf"),
        (set_cell(DEEP, 0, "2010-13-45 01:00:00"), "TimestampParseError", "cannot parse"),
        (set_cell(DEEP, 0, ""), "TimestampParseError", "empty timestamp"),
        (
            lambda lines: lines.__setitem__(DEEP, lines[DEEP] + ",7"),
            "UnreadableFileError",
            "has 3 fields, the header 2 columns",
        ),
    ],
    ids=["not-a-number", "infinite", "bad-timestamp", "empty-timestamp", "long-row"],
)
def test_errors_deep_in_a_file_name_the_row_when_read_in_chunks(
    tmp_path: Path, change: Callable[[list[str]], None], error: str, words: str
) -> None:
    """A bad cell at data row 123,457 of the real PJME file, read in chunks of 1,000 rows:
    the error names that row (not its row within a chunk), as the whole-file read does."""
    path = pjme_with(tmp_path, change)
    chunked, whole = both_ways(path, LoadConfig(target="PJME_MW"))
    assert isinstance(chunked, tuple), "the bad cell was not found"
    assert chunked[0].__name__ == error
    assert words in chunked[1]
    assert f"data row {DEEP} (1-based" in chunked[1] or "long-row" in error
    assert_same(chunked, whole)


@needs_shared()
def test_a_long_row_deep_in_a_file_is_named_by_its_data_row(tmp_path: Path) -> None:
    path = pjme_with(tmp_path, lambda lines: lines.__setitem__(DEEP, lines[DEEP] + ",7"))
    with small_chunks(), pytest.raises(UnreadableFileError, match=f"data row {DEEP} \\(1-based"):
        load_data(path, LoadConfig(target="PJME_MW"))


@needs_shared()
def test_missing_cells_deep_in_a_file_are_reported_at_their_rows(tmp_path: Path) -> None:
    """Cells read as missing, spelled three ways, across chunks: the report counts them and
    names the first row of each spelling, as from the whole-file read."""

    def change(lines: list[str]) -> None:
        for row, word in [(70_001, "NA"), (DEEP, ""), (DEEP + 3, "NULL"), (140_000, "NA")]:
            set_cell(row, 1, word)(lines)

    path = pjme_with(tmp_path, change)
    chunked, whole = both_ways(path, LoadConfig(target="PJME_MW"))
    assert not isinstance(chunked, tuple), chunked
    (missing,) = [d for d in chunked.report if d.step == "missing"]
    assert "'NA' x2 (first at data row 70,001)" in missing.message
    assert f"empty x1 (first at data row {DEEP:,})" in missing.message
    assert f"'NULL' x1 (first at data row {DEEP + 3:,})" in missing.message
    assert_same(chunked, whole)


def mixed_column_file(path: Path, width: int, rows: int) -> None:
    """A file of `width` columns whose column c0 is whole numbers, then a float, then a word,
    each in a different block of pandas' reader: its type and cells depend on the blocks."""
    columns: dict[str, Any] = {
        "date": pd.date_range("2000-01-01", periods=rows, freq="min").astype(str)
    }
    for k in range(width - 1):
        columns[f"c{k}"] = np.arange(rows).astype(str)
    frame = pd.DataFrame(columns)
    frame.loc[rows // 2, "c0"] = "1.5"  # rows: 2 blocks and a bit; this in the second
    frame.loc[rows - 10, "c0"] = "x"  # the third
    frame.loc[5, f"c{width - 2}"] = ""
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("width", [2, 8])
def test_chunks_type_a_mixed_column_as_the_whole_file_read(tmp_path: Path, width: int) -> None:
    """pandas types a column per block of rows and joins the blocks (an int block and a float
    one make floats; a block with a word keeps its cells as text, the others' as numbers): the
    chunks are those blocks, so the column and each cell's type are the whole-file read's."""
    path = tmp_path / "mixed.csv"
    rows = 2 * loader._csv_buffer_lines(width) + 123
    mixed_column_file(path, width, rows)
    options: dict[str, Any] = {
        "sep": ",",
        "keep_default_na": True,
        "na_values": None,
        "index_col": False,
        "dtype": {"date": str},
        "engine": "c",
        "usecols": None,
    }
    with pytest.warns(pd.errors.DtypeWarning):  # the mixed column, as the loader reads it
        whole = pd.read_csv(path, **options)[["date", "c0"]]
    chunked = loader._read_csv_chunked(path, ["date", "c0"], options)
    pd.testing.assert_frame_equal(chunked, whole)
    assert [type(c) for c in chunked["c0"]] == [type(c) for c in whole["c0"]]
    kinds = {type(c) for c in whole["c0"]}
    assert str in kinds and kinds - {str}  # numbers and text: the blocks decided the cells


def test_parse_in_chunks_equals_one_parse() -> None:
    """`to_datetime_in_chunks` against one `pd.to_datetime` of the column: formats inferred
    from the first row (none inferable there, one NaT-like row first), day first, fractional
    seconds late in the column, one UTC offset, two (refused without utc, as one parse
    refuses), naive beside zoned, and a chunk of nothing but unreadable rows."""
    n = 5 * SMALL
    hours = pd.date_range("2020-01-01", periods=n, freq="h")
    iso = list(hours.strftime("%Y-%m-%d %H:%M:%S"))
    columns = {
        "iso": iso,
        "fractions late": iso[: 4 * SMALL]
        + list(hours.strftime("%Y-%m-%d %H:%M:%S.%f"))[4 * SMALL :],
        "bad deep": [*iso[:4500], "garbage", *iso[4501:]],
        "two offsets": list(hours.strftime("%Y-%m-%dT%H:%M:%S+01:00"))[:2500]
        + list(hours.strftime("%Y-%m-%dT%H:%M:%S+02:00"))[2500:],
        "one offset": list(hours.strftime("%Y-%m-%dT%H:%M:%S+01:00")),
        "naive then zoned": iso[:2500] + list(hours.strftime("%Y-%m-%dT%H:%M:%SZ"))[2500:],
        "day first": list(hours.strftime("%d/%m/%Y %H:%M")),
        "month names": list(hours.strftime("%b %d %Y %H:%M")),
        "no format in row 1": ["1st of Jan", *iso[1:]],
        "NaT first": ["NaT"] * 1500 + iso[1500:],
        "unreadable chunk": ["xx"] * SMALL + iso[SMALL:],
    }
    ways: list[dict[str, Any]] = [
        {"fmt": None},
        {"fmt": None, "utc": True},
        {"fmt": None, "day_first": True},
        {"fmt": "%Y-%m-%d %H:%M:%S"},
    ]
    for name, cells in columns.items():
        text = pd.Series(cells, dtype=str, name="t")
        for way in ways:
            once: pd.Series | str
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "could not infer format": the rows say so
                try:
                    once = pd.to_datetime(
                        text,
                        format=way["fmt"],
                        errors="coerce",
                        utc=way.get("utc", False),
                        dayfirst=way.get("day_first", False),
                    )
                except ValueError as error:
                    once = str(error)
            with small_chunks(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    chunked: pd.Series | str = loader.to_datetime_in_chunks(text, **way)
                except ValueError as error:
                    chunked = str(error)
            if isinstance(once, str) or isinstance(chunked, str):
                assert chunked == once, (name, way)
            else:
                pd.testing.assert_series_equal(chunked, once, obj=f"{name} {way}")


def wide_log(path: Path, rows: int, sensors: int) -> None:
    """An equipment log of `rows` minutes and `sensors` value columns: ETTh1's values repeated
    (the shared file where present), as three decimals."""
    ett = SHARED_DATA / "ETT-small" / "ETTh1.csv"
    source = (
        pd.read_csv(ett).iloc[:, 1:].to_numpy()
        if ett.exists()
        else np.random.default_rng(0).normal(size=(17_420, 7))
    )
    values = np.resize(source.round(3), (rows, source.shape[1]))
    frame = pd.DataFrame(
        {f"s{k}": values[:, k % source.shape[1]] for k in range(sensors)},
        index=pd.Index(
            pd.date_range("2000-01-01", periods=rows, freq="min").astype(str), name="date"
        ),
    )
    frame.to_csv(path)


def test_a_wide_file_read_for_one_column_holds_that_column_not_all(tmp_path: Path) -> None:
    """A 20-sensor log read for one sensor: the read held every column of every row (the other
    19 as float64 arrays, 152 bytes a row) and, while it parsed the timestamps, pandas' Python
    strings of all of them: 169 bytes a row at the peak traced by Python (numpy's arrays and
    Python's objects; Arrow's text is not traced). Chunked, it holds the timestamps and the one
    column it uses, and a chunk of the rest: 43 bytes a row. The bound lies between the two."""
    rows = 200_000
    path = tmp_path / "wide.csv"
    wide_log(path, rows, sensors=20)
    with pytest.MonkeyPatch.context() as patch:
        # chunks well below the file's rows, as at the defaults on a file of millions of rows
        patch.setattr(loader, "PARSE_CHUNK_ROWS", 1 << 14, raising=False)
        patch.setattr(validation, "STEP_CHUNK", 1 << 14, raising=False)
        tracemalloc.start()
        try:
            data = load_data(path, LoadConfig(target="s0"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(data.series["wide"]) == rows
    assert peak < 100 * rows, f"{peak / rows:.0f} bytes a row at the peak"


@needs_shared()
def test_a_pandas_without_the_private_helpers_reads_as_before(tmp_path: Path) -> None:
    """The chunked read leans on two private pieces of pandas (the C reader's `table_width`,
    `_guess_datetime_format_for_array`). A pandas version without them must read the file as
    the whole-file read does, not fail every run: pyproject pins no upper bound."""
    path = SHARED_DATA / "PJM_hourly" / "PJME_hourly.csv"
    config = LoadConfig(target="PJME_MW")
    with whole_file_reading():
        whole = outcome(path, config)
    assert loader._table_width(object()) is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "_table_width", lambda reader: None)
        patch.setattr(loader, "_inferred_format", no_private_guesser)
        patch.setattr(loader, "PARSE_CHUNK_ROWS", SMALL)
        assert_same(outcome(path, config), whole)


def no_private_guesser(text: pd.Series, day_first: bool) -> str | None:
    """`_inferred_format` where pandas has no `_guess_datetime_format_for_array` to import
    (deleting pandas' own would break its to_datetime, which calls it)."""
    raise ImportError("cannot import name '_guess_datetime_format_for_array'")

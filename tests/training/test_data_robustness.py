"""Damaged files and odd options stop with a DataValidationError naming the file (and the
column and row where there is one), never another exception, a silent repair or a message
that echoes a huge cell. Each case is a reproducer from a fuzzing run of the loader
(2026-12-05: ~18,700 mutated CSV, .csv.gz and Parquet files and configs)."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data import ColumnRoleError, LoadConfig, load_data
from training.validation import (
    DataValidationError,
    DuplicateTimestampError,
    EmptyDataError,
    FrequencyError,
    InvalidOptionError,
    MissingSeriesIdError,
    NonFiniteValueError,
    NonNumericValueError,
    SeveralSeriesError,
    TimestampParseError,
    UnreadableFileError,
)

HOURLY = "date,HUFL,OT\n" + "".join(f"2020-01-01 {h:02d}:00:00,{h}.5,{h * 2}\n" for h in range(24))


def write(tmp_path: Path, text: str | bytes, name: str = "log.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, newline="")
    return path


def refused(path: Path, config: LoadConfig, kind: type[DataValidationError]) -> str:
    with pytest.raises(DataValidationError) as caught:
        load_data(path, config)
    assert type(caught.value) is kind, (type(caught.value), str(caught.value))
    return str(caught.value)


@pytest.mark.parametrize("freq", ["0h", "0D", "-1h"])
def test_a_step_of_zero_or_backwards_is_refused_as_an_option(freq: str) -> None:
    with pytest.raises(InvalidOptionError, match=f"freq '{freq}' is not a step forward in time"):
        LoadConfig(target="OT", freq=freq)


@pytest.mark.parametrize("fmt", ["%Y-%Q", "%Y-%m-%d %"])
def test_a_timestamp_format_strptime_cannot_use_names_the_option(tmp_path: Path, fmt: str) -> None:
    said = refused(
        write(tmp_path, HOURLY), LoadConfig(target="OT", timestamp_format=fmt), InvalidOptionError
    )
    assert said.startswith(f"timestamp_format {fmt!r} is not a format pandas can read"), said


@pytest.mark.parametrize("fmt", ["%H:%M", "%m-%d %H", "%Q"])
def test_a_timestamp_format_without_a_year_is_refused(fmt: str) -> None:
    """'%H:%M' read every row as 1900-01-01 without a word."""
    with pytest.raises(InvalidOptionError, match="has no year"):
        LoadConfig(target="OT", timestamp_format=fmt)
    LoadConfig(target="OT", timestamp_format="ISO8601")  # pandas' own: dated


@pytest.mark.parametrize("fmt", ["%s", "%s.%f"])
def test_the_unix_seconds_directive_is_named_not_refused_for_lacking_a_year(fmt: str) -> None:
    """'%s' (seconds since 1970, as `date +%s` writes them) was refused as "has no year:
    pandas would date every row in 1900", a reason that is not the problem: pandas' strptime
    has no '%s'. The refusal now says how to turn Unix seconds into dates."""
    with pytest.raises(InvalidOptionError) as caught:
        LoadConfig(target="OT", timestamp_format=fmt)
    said = str(caught.value)
    assert "has no year" not in said
    assert said == (
        f"timestamp_format {fmt!r}: '%s' (Unix seconds since 1970) is not a directive "
        "pandas reads timestamps with; write the column as dates first "
        "(pandas.to_datetime(column, unit='s'))"
    )


@pytest.mark.parametrize(("sep", "joiner"), [(";;", ";;"), (r"\s*;\s*", " ; "), (r"\t", "\t")])
def test_a_separator_pattern_reads_as_before(tmp_path: Path, sep: str, joiner: str) -> None:
    """A first version of the row check refused every separator longer than one character
    (pandas warns when it switches to its python reader)."""
    text = HOURLY.replace(",", joiner)
    data = load_data(write(tmp_path, text), LoadConfig(target="OT", sep=sep))
    assert data.series["log"]["OT"].tolist() == [float(2 * h) for h in range(24)]


def test_a_separator_that_is_no_regular_expression_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match=r"sep '\[\[' is longer than one character"):
        LoadConfig(target="OT", sep="[[")
    with pytest.raises(InvalidOptionError, match=r"sep .* must be the CSV field separator"):
        LoadConfig(target="OT", sep="")


def test_damaged_gzip_and_oversized_fields_are_unreadable_files(tmp_path: Path) -> None:
    packed = gzip.compress(HOURLY.encode())
    cut = write(tmp_path, packed[: len(packed) // 2], "cut.csv.gz")
    said = refused(cut, LoadConfig(target="OT"), UnreadableFileError)
    assert said.startswith("cut.csv.gz: cannot read it as csv"), said
    corrupt = bytearray(packed)
    corrupt[20:40] = bytes(range(20))  # inside the deflate stream: zlib.error or a CRC error
    bad = write(tmp_path, bytes(corrupt), "bad.csv.gz")
    refused(bad, LoadConfig(target="OT"), UnreadableFileError)
    huge = write(tmp_path, "date,OT," + "h" * 200_000 + "\n2020-01-01,1,2\n", "huge.csv")
    said = refused(huge, LoadConfig(target="OT"), UnreadableFileError)
    assert "field larger than field limit" in said and len(said) < 300, said


@pytest.mark.parametrize("row", [1, 5])
def test_a_row_longer_than_the_header_is_refused_naming_it(tmp_path: Path, row: int) -> None:
    """pandas dropped the extra field silently (usecols), or, on the first row, read the
    first column as an index and shifted the others by one."""
    lines = HOURLY.splitlines()
    lines[row] += ",999"
    path = write(tmp_path, "\n".join(lines) + "\n")
    said = refused(path, LoadConfig(target="OT"), UnreadableFileError)
    assert said.startswith(
        f"log.csv: data row {row} (1-based, header not counted) has 4 fields, the header 3 "
        "columns; '999' lies past them"
    ), said


@pytest.mark.parametrize("rows", ["all", "one"])
def test_empty_fields_past_the_header_are_no_values(tmp_path: Path, rows: str) -> None:
    """A separator at the end of every data line (some exports write one), or of one."""
    lines = HOURLY.splitlines()
    chosen = range(1, len(lines)) if rows == "all" else [7]
    for k in chosen:
        lines[k] += ","
    trailing = load_data(write(tmp_path, "\n".join(lines) + "\n"), LoadConfig(target="OT"))
    plain = load_data(write(tmp_path, HOURLY, "plain.csv"), LoadConfig(target="OT"))
    pd.testing.assert_frame_equal(trailing.series["log"], plain.series["plain"])


def test_parquet_text_that_is_not_utf8_in_a_value_column_is_an_unreadable_file(
    tmp_path: Path,
) -> None:
    data = b"1.0" + b"2\xff0" + b"3.0"  # the middle cell is not UTF-8
    offsets = np.array([0, 3, 6, 9], dtype=np.int32)
    values = pa.Array.from_buffers(
        pa.string(), 3, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)]
    )
    path = tmp_path / "u.parquet"
    dates = pa.array(["2020-01-01", "2020-01-02", "2020-01-03"])
    pq.write_table(pa.table({"date": dates, "OT": values}), path)
    said = refused(path, LoadConfig(target="OT"), UnreadableFileError)
    assert said.startswith("u.parquet: a text column holds bytes that are not UTF-8"), said


def test_a_step_finer_than_the_timestamps_resolution_is_a_frequency_error(
    tmp_path: Path,
) -> None:
    text = "date,OT\n" + "".join(f"2020-01-01 00:00:00.{k:06d},{k}\n" for k in range(3))
    said = refused(write(tmp_path, text), LoadConfig(target="OT", freq="500ns"), FrequencyError)
    assert "is finer than the timestamps' resolution" in said, said


@pytest.mark.parametrize(
    ("origin", "last"),
    [("2262-01-01", 20_000), ("2000-01-01", 10**20), ("2000-01-01", 10**12)],
    ids=["past 2262", "wraps int64", "far past 2262"],
)
def test_step_numbers_past_the_timestamp_range_are_refused_naming_the_row(
    tmp_path: Path, origin: str, last: int
) -> None:
    """A step of 1e20 hours wrapped to step 0 and was merged with it as a duplicate."""
    path = write(tmp_path, f"cycle,OT\n0,1\n1,2\n{last},3\n")
    config = LoadConfig(target="OT", timestamp_col="cycle", step_origin=origin, freq="h")
    said = refused(path, config, TimestampParseError)
    assert f"data row 3 (1-based, header not counted): step {last:,} of 'h'" in said, said


def test_a_zoned_step_origin_reads_as_utc_without_the_zone(tmp_path: Path) -> None:
    path = write(tmp_path, "cycle,OT\n0,1\n1,2\n2,3\n")
    config = LoadConfig(
        target="OT", timestamp_col="cycle", step_origin="2000-01-01T00:00+05:00", freq="h"
    )
    data = load_data(path, config)
    index = pd.DatetimeIndex(next(iter(data.series.values())).index)
    assert index.tz is None and index[0] == pd.Timestamp("1999-12-31 19:00")
    assert any("as UTC, without its zone" in line for line in data.report_lines())


@pytest.mark.parametrize(
    ("cells", "shown"), [(["13:00", "14:00", "15:00"], "'13:00'"), (["now"] * 3, "'now'")]
)
def test_times_without_a_date_are_refused_not_dated_today(
    tmp_path: Path, cells: list[str], shown: str
) -> None:
    path = write(tmp_path, "date,OT\n" + "".join(f"{c},{k}\n" for k, c in enumerate(cells)))
    said = refused(path, LoadConfig(target="OT"), TimestampParseError)
    assert f"data row 1 (1-based, header not counted): {shown} has no date" in said, said


def test_a_parquet_time_column_is_refused_not_dated_today(tmp_path: Path) -> None:
    import datetime as dt

    times = pa.array([dt.time(h) for h in range(3)], pa.time64("us"))
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"date": times, "OT": [1.0, 2.0, 3.0]}), path)
    refused(path, LoadConfig(target="OT"), TimestampParseError)


@pytest.mark.parametrize("origin", ["now", "today", "13:00"])
def test_a_step_origin_without_a_date_is_refused(origin: str) -> None:
    with pytest.raises(InvalidOptionError, match="step_origin must be a timestamp"):
        LoadConfig(target="OT", timestamp_col="cycle", step_origin=origin, freq="h")


@pytest.mark.parametrize(
    ("rows", "config"),
    [
        (
            ["2020-01-01 00:00,1.7e308", "2020-01-01 02:00,-1.7e308"],
            {"max_gap": 2, "max_filled_fraction": 1.0},
        ),
        (["2020-01-01 00:00,1.7e308", "2020-01-01 00:00,1.7e308", "2020-01-01 01:00,1"], {}),
    ],
    ids=["interpolated", "averaged"],
)
def test_values_that_overflow_when_repaired_are_refused(
    tmp_path: Path, rows: list[str], config: dict[str, Any]
) -> None:
    path = write(tmp_path, "date,OT\n" + "\n".join(rows) + "\n")
    said = refused(path, LoadConfig(target="OT", freq="h", **config), NonFiniteValueError)
    assert "beyond float64's range" in said, said


def test_a_split_series_whose_part_name_is_taken_is_refused(tmp_path: Path) -> None:
    """Series 'a' cut at a gap names its parts 'a#1' and 'a#2'; the file's own series 'a#1'
    was overwritten by one of them, with the report still counting three series."""
    stamps = [*pd.date_range("2020-01-01", periods=5, freq="h")]
    later = [*pd.date_range("2020-01-01 09:00", periods=5, freq="h")]
    rows = [f"a,{t},{k}" for k, t in enumerate(stamps + later)]
    rows += [f"a#1,{t},{k}" for k, t in enumerate(stamps)]
    path = write(tmp_path, "series_id,timestamp,target\n" + "\n".join(rows) + "\n")
    config = LoadConfig(target="target", series_col="series_id", max_gap=2, on_long_gap="split")
    said = refused(path, config, DataValidationError)
    assert "is also the id of another series of the file" in said, said


def test_a_calendar_frequency_over_centuries_is_refused_before_the_grid_is_built(
    tmp_path: Path,
) -> None:
    """freq 'bh' over 2,000 years built a grid of millions of steps for 27 s first."""
    text = "date,OT\n1700-01-01 09:00,1\n1700-01-01 10:00,2\n2250-01-01 10:00,3\n"
    said = refused(write(tmp_path, text), LoadConfig(target="OT", freq="bh"), FrequencyError)
    assert "would have about" in said, said


@pytest.mark.parametrize(
    ("text", "config"),
    [
        (f"date,OT\n2020-01-01,1\n{'x' * 100_000},2\n", {}),
        (f"date,OT\n2020-01-01,1\n2020-01-02,{'x' * 100_000}\n", {}),
        ("date,OT," + ",".join(f"c{i}" for i in range(3000)) + "\n2020-01-01,1\n", {"target": "Z"}),
        ("date," + "y" * 5000 + "," + "y" * 5000 + "\n2020-01-01,1,1\n", {"target": "Z"}),
        (
            f"sid,date,OT\n{'x' * 100_000},2020-01-01,1\nb,2020-01-01,1\nb,2020-01-02,1\n",
            {"series_col": "sid"},
        ),
        ("date,OT\n2020-01-01,1\n2020-01-02,2\n", {"timestamp_format": "%Y" + "x" * 5000}),
    ],
    ids=["timestamp", "value", "3,000 columns", "column name", "series id", "format"],
)
def test_messages_do_not_echo_huge_cells_names_or_options(
    tmp_path: Path, text: str, config: dict[str, Any]
) -> None:
    with pytest.raises(DataValidationError) as caught:
        load_data(write(tmp_path, text), LoadConfig(**{"target": "OT", **config}))
    assert len(str(caught.value)) < 600, str(caught.value)[:300]
    assert "characters)" in str(caught.value) or "more" in str(caught.value)


def test_rows_padded_unevenly_with_empty_fields_keep_their_columns(tmp_path: Path) -> None:
    """The first row one empty field longer, a later one two: pandas' fallback read took the
    first column as the index and shifted every column (y read from c)."""
    text = "cycle,y,c,note\n1,1,100,n,\n2,2,200,n\n3,3,300,n,,\n"
    config = LoadConfig(target="y", timestamp_col="cycle", step_origin="2000-01-01", freq="D")
    data = load_data(write(tmp_path, text), config)
    assert data.series["log"]["y"].tolist() == [1.0, 2.0, 3.0]


def test_the_long_row_is_named_counting_rows_of_separators_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "date,y\n2021-03-01 00:00,0\n,\n2021-03-01 02:00,2,9\n")
    said = refused(path, LoadConfig(target="y"), UnreadableFileError)
    assert said.startswith("log.csv: data row 3 (1-based"), said


@pytest.mark.parametrize("cell", ["10:00Z", "10:00+01:00", "10:00 UTC", "1pm", "T13:00"])
def test_zoned_and_spelled_times_without_a_date_are_refused(tmp_path: Path, cell: str) -> None:
    path = write(tmp_path, "date,OT\n" + "".join(f"{cell},{k}\n" for k in range(3)))
    said = refused(path, LoadConfig(target="OT"), TimestampParseError)
    assert "has no date" in said, said


def test_a_date_without_a_year_is_refused_as_out_of_range(tmp_path: Path) -> None:
    """'Dec 5 10:00' read as year 1."""
    path = write(tmp_path, "date,OT\nDec 5 10:00,1\nDec 5 11:00,2\n")
    said = refused(path, LoadConfig(target="OT"), TimestampParseError)
    assert "outside the times the service can date" in said, said


def test_todays_timestamps_with_their_date_are_read(tmp_path: Path) -> None:
    today = pd.Timestamp.now().normalize()
    stamps = pd.date_range(today - pd.Timedelta(hours=6), periods=12, freq="h")
    text = "date,OT\n" + "".join(f"{t.isoformat()},{k}\n" for k, t in enumerate(stamps))
    data = load_data(write(tmp_path, text), LoadConfig(target="OT"))
    assert data.series["log"].index[0] == stamps[0]


@pytest.mark.parametrize("column", ["date", "sid"])
def test_parquet_text_that_is_not_utf8_in_a_key_column_is_an_unreadable_file(
    tmp_path: Path, column: str
) -> None:
    def text(items: list[bytes]) -> pa.Array:
        return pa.array(items, pa.binary()).view(pa.string())

    dates = [b"2021-03-01 00:00", b"2021-03-01 01:00", b"2021-03-01 02:00"]
    ids = [b"a", b"a", b"a"]
    if column == "date":
        dates[2] = b"2021-03-01 0\xff:00"
    else:
        ids[2] = b"\xffb"
    table = pa.table({"sid": text(ids), "date": text(dates), "y": [1.0, 2.0, 3.0]})
    path = tmp_path / "k.parquet"
    pq.write_table(table, path)
    said = refused(path, LoadConfig(target="y", series_col="sid"), UnreadableFileError)
    assert "not UTF-8" in said, said


@pytest.mark.parametrize(
    ("origin", "freq", "steps"),
    [
        ("1970-01-01", "ns", [2**53, 2**53 + 1]),
        ("1677-09-22", "ns", [2**63, 2**63 + 1]),
        ("2200-01-01", "D", [0, -180_000]),
    ],
    ids=["past 2**53", "past 2**63", "493 years back"],
)
def test_step_numbers_that_cannot_be_read_exactly_are_refused(
    tmp_path: Path, origin: str, freq: str, steps: list[int]
) -> None:
    """Steps above 2**53 merged with their neighbours; 2**63 and 493 years of days crashed."""
    path = write(tmp_path, "cycle,y\n" + "".join(f"{k},{j}\n" for j, k in enumerate(steps)))
    config = LoadConfig(
        target="y", timestamp_col="cycle", step_origin=origin, freq=freq, min_length=1
    )
    said = refused(path, config, TimestampParseError)
    assert "lies too far from it" in said, said


@pytest.mark.parametrize("origin", ["1500-01-01", "2300-01-01"])
def test_a_step_origin_outside_the_timestamp_range_is_refused(origin: str) -> None:
    with pytest.raises(InvalidOptionError, match="step_origin must be a timestamp"):
        LoadConfig(target="y", timestamp_col="cycle", step_origin=origin, freq="h")


def test_business_hours_in_two_clusters_years_apart_are_split_not_refused(
    tmp_path: Path,
) -> None:
    """The grid's size estimate from the first 16 business hours over-counted a 'bh' grid
    2.1x, refusing a series whose grid was within the limit."""
    first = pd.date_range("2020-01-06 09:00", periods=50, freq="bh")
    second = pd.date_range("2022-01-03 09:00", periods=50, freq="bh")
    stamps = first.append(second)
    text = "date,y\n" + "".join(f"{t},{k % 7}\n" for k, t in enumerate(stamps))
    config = LoadConfig(target="y", freq="bh", on_long_gap="split")
    data = load_data(write(tmp_path, text), config)
    assert {k: len(v) for k, v in data.series.items()} == {"log#1": 50, "log#2": 50}


def _local_mean_time_csv(tmp_path: Path, zone: str, start: str, rows: int = 48) -> Path:
    """A log as pandas writes one: offsets with seconds before ~1900 (+00:19:32)."""
    stamps = pd.date_range(start, periods=rows, freq="h", tz=zone)
    frame = pd.DataFrame({"date": stamps, "y": np.arange(rows, dtype=float)})
    path = tmp_path / "lmt.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fmt", [None, "%Y-%m-%d %H:%M:%S%z"])
def test_utc_offsets_with_seconds_are_read_whole(tmp_path: Path, fmt: str | None) -> None:
    """pandas wrote them and refused to read them back; with '%z' it dropped the 32 seconds
    and moved every instant, silently."""
    path = _local_mean_time_csv(tmp_path, "Europe/Amsterdam", "1850-01-01")
    assert "1850-01-01 00:00:00+00:19:32" in path.read_text()
    data = load_data(path, LoadConfig(target="y", timestamp_format=fmt))
    (frame,) = data.series.values()
    assert frame.index[0] == pd.Timestamp("1849-12-31 23:40:28")  # 00:00 at +00:19:32, in UTC
    assert len(frame) == 48
    said = " ".join(d.message for d in data.report)
    assert "from time zone UTC+00:19:32 to UTC" in said


def test_offsets_that_change_in_a_local_mean_time_log_are_read_as_several(tmp_path: Path) -> None:
    """New York's clocks moved from -04:56:02 to -05:00 at noon on 18 November 1883."""
    path = _local_mean_time_csv(tmp_path, "America/New_York", "1883-11-18")
    data = load_data(path, LoadConfig(target="y"))
    (frame,) = data.series.values()
    assert frame.index[0] == pd.Timestamp("1883-11-18 04:56:02")
    assert (frame.index[1:] - frame.index[:-1] == pd.Timedelta(hours=1)).all()
    assert "several UTC offsets" in " ".join(d.message for d in data.report)


@pytest.mark.parametrize("fmt", [None, "%Y-%m-%d %H:%M:%S%z"])
def test_a_malformed_seconds_offset_is_refused_by_row(tmp_path: Path, fmt: str | None) -> None:
    """Python's reader took +00:19:99 as +00:20:39."""
    path = _local_mean_time_csv(tmp_path, "Europe/Amsterdam", "1850-01-01")
    lines = path.read_text().splitlines()
    lines[5] = lines[5].replace("+00:19:32", "+00:19:99")
    path.write_text("\n".join(lines) + "\n")
    said = refused(path, LoadConfig(target="y", timestamp_format=fmt), TimestampParseError)
    assert "data row 5" in said and "'1850-01-01 04:00:00+00:19:99'" in said


def _dated(tmp_path: Path, stamps: pd.DatetimeIndex, layout: str, name: str = "d.csv") -> Path:
    """A log whose dates are written in `layout` (strftime), values 0, 1, 2, ..."""
    lines = [f"{t.strftime(layout)},{k}" for k, t in enumerate(stamps)]
    return write(tmp_path, "date,OT\n" + "\n".join(lines) + "\n", name)


@pytest.mark.parametrize(
    "layout", ["%d-%m-%y %H:%M", "%d/%m/%Y %I:%M:%S %p", "%d.%m.%Y %H:%M", "%d/%m/%Y"]
)
def test_day_first_dates_are_read_day_first_in_every_row(tmp_path: Path, layout: str) -> None:
    """pandas read each row alone, month first where a row allowed it: a year of day-first
    hours loaded with a third of its rows on other dates (7 January for 1 July), no gap to
    show it; or it guessed month first from the first row and failed at the 13th day."""
    freq = "D" if layout == "%d/%m/%Y" else "h"
    stamps = pd.date_range("2017-01-01", "2017-12-31 23:00", freq=freq)
    data = load_data(_dated(tmp_path, stamps, layout), LoadConfig(target="OT"))
    (frame,) = data.series.values()
    assert (frame.index == stamps).all()
    np.testing.assert_array_equal(frame["OT"].to_numpy(), np.arange(len(stamps)))
    said = " ".join(d.message for d in data.report)
    assert "read the dates of column 'date' day first, the one order every row allows" in said


@pytest.mark.parametrize("layout", ["%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M %p", "%m-%d-%y"])
def test_month_first_dates_are_read_as_before(tmp_path: Path, layout: str) -> None:
    stamps = pd.date_range(
        "2016-07-01", periods=1000, freq="h" if "%H" in layout or "%I" in layout else "D"
    )
    data = load_data(_dated(tmp_path, stamps, layout), LoadConfig(target="OT"))
    (frame,) = data.series.values()
    assert (frame.index == stamps).all()
    assert "day first" not in " ".join(d.message for d in data.report)


@pytest.mark.parametrize(
    ("stamps", "layout", "named", "formats"),
    [
        (  # a monthly file: pandas guessed %m.%d.%Y and read twelve January days
            pd.date_range("2016-01-01", periods=12, freq="MS"),
            "%d.%m.%Y",
            "data row 2 (1-based, header not counted): '01.02.2016'",
            "'%d.%m.%Y' for day first or '%m.%d.%Y' for month first",
        ),
        (  # a layout pandas cannot guess (two-digit year): the example follows it still
            pd.date_range("2016-01-01", periods=12, freq="D"),
            "%d/%m/%y",
            "data row 2 (1-based, header not counted): '02/01/16'",
            "'%d/%m/%y' for day first or '%m/%d/%y' for month first",
        ),
    ],
)
def test_dates_that_read_both_ways_in_every_row_are_refused(
    tmp_path: Path, stamps: pd.DatetimeIndex, layout: str, named: str, formats: str
) -> None:
    said = refused(_dated(tmp_path, stamps, layout), LoadConfig(target="OT"), TimestampParseError)
    assert named in said
    assert "reads day first and month first, and so does every row of the column" in said
    assert "both on a regular grid" in said
    assert said.endswith(f"pass a timestamp_format that says which, e.g. {formats}")
    given = LoadConfig(target="OT", timestamp_format=layout, freq=stamps.freqstr)  # settled
    (frame,) = load_data(_dated(tmp_path, stamps, layout), given).series.values()
    assert (frame.index == stamps).all()


def test_the_format_suggested_for_ambiguous_dates_keeps_their_offset(tmp_path: Path) -> None:
    """'01/10/2024 00:00+02:00' read both ways; the advice was '%d/%m/%Y %H:%M', which then
    failed on the offset. It ends in %z now, and following it loads the written dates."""
    written = pd.date_range("2024-10-01", periods=12, freq="D", tz="Europe/Berlin")
    path = _dated(tmp_path, written, "%d/%m/%Y %H:%M%z")
    said = refused(path, LoadConfig(target="OT"), TimestampParseError)
    assert said.endswith(
        "e.g. '%d/%m/%Y %H:%M%z' for day first or '%m/%d/%Y %H:%M%z' for month first"
    )
    (frame,) = load_data(
        path, LoadConfig(target="OT", timestamp_format="%d/%m/%Y %H:%M%z")
    ).series.values()
    assert frame.index.equals(pd.DatetimeIndex(written.tz_localize(None), name="timestamp"))


@pytest.mark.parametrize("layout", ["%d/%m/%Y", "%m/%d/%Y"])
def test_monthly_dates_on_a_day_below_13_are_refused_not_read_as_days(
    tmp_path: Path, layout: str
) -> None:
    """Twelve months on the 5th: pandas names no grid for them, so the other reading (twelve
    days of one month, a daily grid) was taken as the only regular one, without a word."""
    stamps = pd.DatetimeIndex([pd.Timestamp(2024, month, 5) for month in range(1, 13)])
    said = refused(_dated(tmp_path, stamps, layout), LoadConfig(target="OT"), TimestampParseError)
    assert "reads day first and month first, and so does every row" in said
    assert "both on a regular grid" in said


EUROPEAN = "Datetime;MW\n" + "".join(
    f"2016-07-01 {h:02d}:00;{v}\n" for h, v in enumerate(["982,5", "1.034,25", "1.210", "999"])
)


def test_a_decimal_comma_is_read_with_decimal_comma(tmp_path: Path) -> None:
    """European exports: ';' between fields, ',' before the decimals, '.' between thousands.
    There was no way to read them."""
    path = write(tmp_path, EUROPEAN)
    data = load_data(path, LoadConfig(target="MW", sep=";", decimal=","))
    (frame,) = data.series.values()
    np.testing.assert_array_equal(frame["MW"].to_numpy(), [982.5, 1034.25, 1210.0, 999.0])
    said = refused(path, LoadConfig(target="MW", sep=";"), NonNumericValueError)
    assert said.endswith("a decimal comma? pass decimal=','")
    with pytest.raises(InvalidOptionError, match="decimal ',' is also the field separator"):
        LoadConfig(target="MW", decimal=",")
    with pytest.raises(InvalidOptionError, match=r"decimal must be one of '\.', ','; got ';'"):
        LoadConfig(target="MW", sep="\t", decimal=";")


def test_numbers_that_look_grouped_in_thousands_are_reported(tmp_path: Path) -> None:
    """1.606 for 1,606 MW, in a ';' file: read as 1.606 without a word."""
    rows = "".join(f"2017-04-01 {h:02d}:00;{v}\n" for h, v in enumerate(["1.606", "1.536", "982"]))
    data = load_data(write(tmp_path, "Datetime;MW\n" + rows), LoadConfig(target="MW", sep=";"))
    said = " ".join(d.message for d in data.report)
    assert "column 'MW': 2 of its numbers have exactly three decimals (such as 1.606)" in said
    assert "if '.' separates thousands in this file (1.606 for 1,606), remove those marks" in said
    # the data's own decimals: a fourth one somewhere, or a comma-separated file: no line
    rows = rows.replace("982", "982.1234")
    data = load_data(write(tmp_path, "Datetime;MW\n" + rows), LoadConfig(target="MW", sep=";"))
    assert "three decimals" not in " ".join(d.message for d in data.report)


def test_a_series_named_na_is_a_series_and_na_values_stay_missing(tmp_path: Path) -> None:
    """'NA' (North America, Namibia) was read as a missing id and refused as "empty series
    id"; in the value columns it still reads as missing."""
    rows = "".join(
        f"{region},2020-01-01 {h:02d}:00,{'NA' if (region, h) == ('US', 3) else h}\n"
        for region in ("NA", "US")
        for h in range(24)
    )
    path = write(tmp_path, "region,date,load\n" + rows)
    data = load_data(path, LoadConfig(target="load", series_col="region"))
    assert sorted(data.series) == ["NA", "US"]
    assert bool(data.filled["US"]["load"].iloc[3])  # missing, filled
    assert not data.filled["NA"]["load"].any()
    blank = write(tmp_path, "region,date,load\n,2020-01-01 00:00,1\n", "blank.csv")
    assert "empty series id" in refused(blank, LoadConfig(target="load", series_col="region"),
                                        MissingSeriesIdError)  # fmt: skip


def test_text_that_is_not_utf8_names_its_line_and_what_to_do(tmp_path: Path) -> None:
    """The decoder's words ("can't decode byte 0xd6 in position 36") named neither the line
    nor the fix."""
    latin = write(tmp_path, HOURLY.replace("2020-01-01 05:00:00,5.5", "2020-01-01 05:00:00,5.5")
                  .encode("utf-8").replace(b"5.5,10", b"5.5,1\xfc"), "latin.csv")  # fmt: skip
    said = refused(latin, LoadConfig(target="OT"), UnreadableFileError)
    assert said.startswith("latin.csv: line 7 (1-based, header included) holds byte 0xfc")
    assert said.endswith("save it as UTF-8 ('CSV UTF-8' in Excel)")
    utf16 = write(tmp_path, HOURLY.encode("utf-16"), "utf16.csv")
    said = refused(utf16, LoadConfig(target="OT"), UnreadableFileError)
    assert said.startswith("utf16.csv: the file is UTF-16 text")


@pytest.mark.parametrize(("scale", "unit"), [(1, "seconds"), (1000, "milliseconds")])
def test_unix_times_are_named_and_step_origin_is_not_offered(
    tmp_path: Path, scale: int, unit: str
) -> None:
    rows = "".join(f"{(1467331200 + 3600 * h) * scale},{h}\n" for h in range(24))
    said = refused(write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"),
                   TimestampParseError)  # fmt: skip
    assert f"the column holds numbers like Unix times in {unit} since 1970" in said
    assert "pass step_origin" not in said


def test_zone_abbreviations_are_named_with_what_to_write_instead(tmp_path: Path) -> None:
    """Times ending in CET/CEST (as strftime's %Z writes a zoned time) were refused with the
    advice to pass a timestamp_format, which cannot read them either; UTC and 12-hour times are
    not taken for zones."""
    zoned = pd.date_range("2024-03-31 00:00", periods=6, freq="h", tz="Europe/Berlin")
    rows = "".join(f"{t.strftime('%Y-%m-%d %H:%M:%S %Z')},{k}\n" for k, t in enumerate(zoned))
    path = write(tmp_path, "date,OT\n" + rows)
    said = refused(path, LoadConfig(target="OT"), TimestampParseError)
    assert "cannot parse '2024-03-31 00:00:00 CET' as a timestamp (the text holds the " in said
    assert "time-zone abbreviation 'CET', which is not read" in said
    assert "pass a timestamp_format" not in said
    # with %Z, pandas reads 'CET' (an IANA zone name) and stops at 'CEST' (none)
    config = LoadConfig(target="OT", timestamp_format="%Y-%m-%d %H:%M:%S %Z")
    said = refused(path, config, TimestampParseError)
    assert "data row 3 (1-based, header not counted): cannot parse '2024-03-31 03:00:00 " in said
    assert "timestamp_format='%Y-%m-%d %H:%M:%S %Z': the text holds the time-zone " in said
    in_utc = "".join(
        f"{t.tz_convert('UTC'):%Y-%m-%d %H:%M:%S} UTC,{k}\n" for k, t in enumerate(zoned)
    )
    utc = load_data(write(tmp_path, "date,OT\n" + in_utc, "u.csv"), LoadConfig(target="OT"))
    assert list(utc.series["u"]["OT"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for not_a_zone in ("2024-03-31 13:00 PM", "2024-03-31 ERR", "2024-W01 MON", "2024-03-31 NA"):
        said = refused(write(tmp_path, f"date,OT\n{not_a_zone},1\n", "no.csv"),
                       LoadConfig(target="OT"), TimestampParseError)  # fmt: skip
        assert "abbreviation" not in said, not_a_zone
    for written, named in [("2024-03-31 01:00:00 cest", "cest"), ("CEST 2024-03-31 01:00", "CEST"),
                           ("2024-03-31 01:00:00 AM (CET)", "CET")]:  # fmt: skip
        said = refused(write(tmp_path, f"date,OT\n{written},1\n", "any.csv"),
                       LoadConfig(target="OT"), TimestampParseError)  # fmt: skip
        assert f"the text holds the time-zone abbreviation {named!r}" in said, written


@pytest.mark.parametrize(
    "offset",
    # with minutes too: 'UTC+5:30' was read as 05:30 behind UTC
    [
        "GMT+1",
        "UTC+1",
        "UTC-05",
        "CEST+2",
        "Z+1",
        "UTC+5:30",
    ],
)
def test_a_zone_name_with_signed_hours_is_refused_not_read_with_the_posix_sign(
    tmp_path: Path, offset: str
) -> None:
    """pandas read '10:00 GMT+1' as 11:00 UTC (GMT+1 as one hour behind UTC, the POSIX way),
    where the writer most likely meant 09:00: every instant two hours off, without a word."""
    rows = "".join(f"2024-03-30 {h:02d}:00:00 {offset},{h}\n" for h in range(6))
    said = refused(write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"),
                   TimestampParseError)  # fmt: skip
    assert said.startswith(
        f"log.csv: column 'date', data row 1 (1-based, header not counted): '2024-03-30 "
        f"00:00:00 {offset}' ends in a zone name and a signed offset, which is read two ways"
    )
    assert said.endswith("write the offset as +01:00 or -01:00 (as pandas' Timestamp.isoformat "
                         "writes it); 6 rows hold one")  # fmt: skip
    twelve = "".join(f"2024-07-01 {h}:00 PM -05,{h}\n" for h in range(1, 7))
    read = load_data(write(tmp_path, "date,OT\n" + twelve, "pm.csv"), LoadConfig(target="OT"))
    assert read.series["pm"].index[0] == pd.Timestamp("2024-07-01 18:00")  # 13:00 at -05
    zero = rows.replace(offset, "UTC+00:00")  # a zero offset reads the same either way
    read = load_data(write(tmp_path, "date,OT\n" + zero, "zero.csv"), LoadConfig(target="OT"))
    assert read.series["zero"].index[0] == pd.Timestamp("2024-03-30 00:00")
    written = rows.replace(f" {offset}", "+01:00")  # what the message says to write
    data = load_data(write(tmp_path, "date,OT\n" + written, "ok.csv"), LoadConfig(target="OT"))
    assert data.series["ok"].index[0] == pd.Timestamp("2024-03-29 23:00")


@pytest.mark.parametrize("offset", ["GMT+01:00", "UTC+0100", "GMT +01:00", "CEST+0100"])
def test_a_zone_name_with_an_offset_pandas_reads_the_iso_way_is_read(
    tmp_path: Path, offset: str
) -> None:
    """What strftime('%Z%z') writes (CEST+0200): pandas reads these forms with the ISO sign,
    so they load; only rows that pandas reads otherwise are refused (the test above)."""
    rows = "".join(f"2024-03-30 {h:02d}:00:00 {offset},{h}\n" for h in range(6))
    read = load_data(write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"))
    assert read.series["log"].index[0] == pd.Timestamp("2024-03-29 23:00")  # 00:00 at +01:00


def test_times_written_with_zone_name_and_offset_across_a_daylight_saving_change_load(
    tmp_path: Path,
) -> None:
    """strftime('%Z%z') across the spring change (CET+0100, then CEST+0200): pandas took the
    first row's name as fixed text, and the first CEST row failed to parse, though every row
    says its offset."""
    zoned = pd.date_range("2024-03-30 22:00", periods=8, freq="h", tz="UTC").tz_convert(
        "Europe/Berlin"
    )
    rows = "".join(f"{t:%Y-%m-%d %H:%M:%S %Z%z},{k}\n" for k, t in enumerate(zoned))
    data = load_data(write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"))
    (frame,) = data.series.values()
    assert (frame.index == zoned.tz_convert("UTC").tz_localize(None)).all()
    said = " ".join(d.message for d in data.report)
    assert "read the UTC offsets of column 'date' written after a zone name" in said
    # a timestamp_format with %z alone reads the rows once the names are left out
    config = LoadConfig(target="OT", timestamp_format="%Y-%m-%d %H:%M:%S %z")
    (frame,) = load_data(write(tmp_path, "date,OT\n" + rows, "z.csv"), config).series.values()
    assert (frame.index == zoned.tz_convert("UTC").tz_localize(None)).all()
    # a timestamp_format that names the zone text itself keeps it (no name is left out)
    kolkata = pd.date_range("2024-03-30", periods=6, freq="h", tz="Asia/Kolkata")
    named = "".join(f"{t:%Y-%m-%d %H:%M:%S IST%z},{k}\n" for k, t in enumerate(kolkata))
    config = LoadConfig(target="OT", timestamp_format="%Y-%m-%d %H:%M:%S IST%z")
    (frame,) = load_data(write(tmp_path, "date,OT\n" + named, "ist.csv"), config).series.values()
    assert (frame.index == kolkata.tz_convert("UTC").tz_localize(None)).all()


def test_with_a_decimal_comma_the_bad_cell_is_named_and_a_stray_dot_refused(
    tmp_path: Path,
) -> None:
    """pandas' thousands option stripped every '.', so 1.5 read as 15; and one bad cell left
    the whole column text, each number then named "not a number" from the first row."""
    rows = ["1,5", "2,25", "n.a.", "1.034,5"]
    text = "date;v\n" + "".join(f"2016-07-01 {h:02d}:00;{v}\n" for h, v in enumerate(rows))
    config = LoadConfig(target="v", sep=";", decimal=",")
    said = refused(write(tmp_path, text), config, NonNumericValueError)
    assert "data row 3 (1-based, header not counted): 'n.a.' is not a number (1 such" in said
    stray = text.replace("n.a.", "1.5")
    said = refused(write(tmp_path, stray, "stray.csv"), config, NonNumericValueError)
    assert "'1.5' is not a number" in said
    assert said.endswith("with decimal=',' a '.' may only group thousands (1.034,5)")
    word = text.replace("n.a.", "abc")  # no '.' in it: no word about thousands
    said = refused(write(tmp_path, word, "word.csv"), config, NonNumericValueError)
    assert "'abc' is not a number" in said and "thousands" not in said


def test_with_a_decimal_comma_true_false_columns_and_a_trailing_comma_read_as_with_a_dot(
    tmp_path: Path,
) -> None:
    """The values read as text for the decimal comma refused a holiday flag ('False' is not
    a number) and '12,' that pandas reads with decimal '.' as 0/1 and 12.0."""
    rows = [("1,5", "False"), ("12,", "True"), ("2,25", "false")]
    text = "date;v;holiday\n" + "".join(
        f"2016-07-01 {h:02d}:00;{v};{flag}\n" for h, (v, flag) in enumerate(rows)
    )
    config = LoadConfig(target="v", covariates=("holiday",), sep=";", decimal=",")
    data = load_data(write(tmp_path, text), config)
    (frame,) = data.series.values()
    assert list(frame["v"]) == [1.5, 12.0, 2.25]
    assert frame["holiday"].tolist() == [0.0, 1.0, 0.0]
    dotted = text.replace(",", ".").replace(";", ",")  # the same file with a decimal dot
    plain = load_data(
        write(tmp_path, dotted, "dot.csv"), LoadConfig(target="v", covariates=("holiday",))
    )
    (again,) = plain.series.values()
    assert again["holiday"].tolist() == [0.0, 1.0, 0.0]


def test_ten_digits_that_read_as_a_date_and_hour_are_not_called_unix_times(
    tmp_path: Path,
) -> None:
    rows = "".join(f"20160701{h:02d},{h}\n" for h in range(24))
    said = refused(write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"),
                   TimestampParseError)  # fmt: skip
    assert "10 digits that read as a date and an hour: pass timestamp_format '%Y%m%d%H'" in said
    assert "Unix" not in said
    # Unix seconds whose first row happens to read as one (1700-01-01 00h): the rest do not
    unix = "".join(f"{1_700_010_100 + 3600 * h},{h}\n" for h in range(24))
    said = refused(write(tmp_path, "date,OT\n" + unix, "unix.csv"), LoadConfig(target="OT"),
                   TimestampParseError)  # fmt: skip
    assert "numbers like Unix times in seconds since 1970" in said and "%Y%m%d%H" not in said


def test_a_seconds_offset_after_a_plain_one_is_read_whole(tmp_path: Path) -> None:
    """Dublin left its mean time (+00:34:39 in summer 1916) for +00:00: newest first, the
    plain offset came first and pandas cut the seconds of the rows after it."""
    stamps = pd.date_range("1916-09-29", periods=96, freq="h", tz="Europe/Dublin")
    assert stamps[0].isoformat().endswith("+00:34:39")
    frame = pd.DataFrame({"date": [t.isoformat() for t in stamps[::-1]], "y": np.arange(96.0)})
    path = tmp_path / "dublin.csv"
    frame.to_csv(path, index=False)
    (series,) = load_data(path, LoadConfig(target="y")).series.values()
    expected = stamps.tz_convert("UTC").tz_localize(None)
    assert (series.index == expected).all()


@pytest.mark.parametrize(
    ("stamps", "layout", "order", "grid"),
    [
        # twelve days of hours, each day 12 or below: month first they jump a month a day
        (pd.date_range("2016-07-01", "2016-07-12 23:00", freq="h"), "%d/%m/%Y %H:%M", "day", "h"),
        (pd.date_range("2016-07-01", "2016-07-12 23:00", freq="h"), "%m/%d/%Y %H:%M", "month", "h"),
        # three years of months on the 1st: day first, January 1-12 of each year
        (pd.date_range("2016-01-01", periods=36, freq="MS"), "%m/%d/%Y", "month", "MS"),
    ],
)
def test_dates_that_read_both_ways_take_the_order_of_the_one_regular_grid(
    tmp_path: Path, stamps: pd.DatetimeIndex, layout: str, order: str, grid: str
) -> None:
    """Refused before this rule, though one reading was plainly right."""
    config = LoadConfig(target="OT", freq=None if grid == "h" else grid)
    data = load_data(_dated(tmp_path, stamps, layout), config)
    (frame,) = data.series.values()
    assert (frame.index == stamps).all()
    said = " ".join(d.message for d in data.report)
    assert f"read the dates of column 'date' {order} first: every row reads both ways" in said
    assert f"only {order} first puts them on a regular grid ({grid!r})" in said


def test_a_left_out_time_column_is_refused_not_averaged_into_days(tmp_path: Path) -> None:
    """Bike-sharing's hour.csv read by its date alone: 24 different hours under each date were
    averaged into one daily row, with one report line."""
    rows = "".join(f"2011-01-0{d},{h},{d * 100 + h}\n" for d in (1, 2, 3) for h in range(24))
    path = write(tmp_path, "dteday,hr,cnt\n" + rows)
    said = refused(path, LoadConfig(target="cnt", timestamp_col="dteday"),
                   SeveralSeriesError)  # fmt: skip
    assert "24 different rows share the timestamp 2011-01-01 00:00:00" in said
    assert "Is a time column left out" in said
    both = LoadConfig(target="cnt", timestamp_col=("dteday", "hr"), timestamp_format="%Y-%m-%d %H")
    assert len(next(iter(load_data(path, both).series.values()))) == 72
    # two different rows under one time (a daylight-saving repeat), or equal rows: merged
    pair = (
        "date,OT\n2020-01-01 00:00,1\n2020-01-01 01:00,2\n2020-01-01 01:00,4\n2020-01-01 02:00,5\n"
    )
    (frame,) = load_data(write(tmp_path, pair, "pair.csv"), LoadConfig(target="OT")).series.values()
    assert frame["OT"].tolist() == [1.0, 3.0, 5.0]
    same = "date,OT\n2020-01-01 00:00,1\n" + "2020-01-01 01:00,2\n" * 4 + "2020-01-01 02:00,5\n"
    (frame,) = load_data(write(tmp_path, same, "same.csv"), LoadConfig(target="OT")).series.values()
    assert frame["OT"].tolist() == [1.0, 2.0, 5.0]
    # a value column named "timestamp" (the time in "date"): a ValueError traceback
    named = pair.replace("date,OT", "date,timestamp")
    config = LoadConfig(target="timestamp", timestamp_col="date")
    (frame,) = load_data(write(tmp_path, named, "named.csv"), config).series.values()
    assert frame["timestamp"].tolist() == [1.0, 3.0, 5.0]
    # seven rows under one time, three of them different: the list of rows says there are more
    seven = "date,OT\n2020-01-01 00:00,1\n" + "".join(
        f"2020-01-01 01:00,{v}\n" for v in (2, 2, 3, 3, 4, 4, 4)
    )
    said = refused(write(tmp_path, seven, "seven.csv"), LoadConfig(target="OT"),
                   DuplicateTimestampError)  # fmt: skip
    assert (
        "3 different rows share the timestamp 2020-01-01 01:00:00 (data rows 2, 3, 4, 5, 6 ..."
        in said
    )


def test_two_series_in_a_long_file_read_without_their_ids_are_refused_not_averaged(
    tmp_path: Path,
) -> None:
    """Two pumps' readings in one long file, read without --series-col: every timestamp held
    two different rows, and duplicates='mean' averaged the two pumps into one series with
    one report line (three series were refused)."""
    hours = pd.date_range("2020-01-01", periods=48, freq="h")
    text = "series_id,timestamp,y\n" + "".join(
        f"{pump},{t:%Y-%m-%d %H:%M},{level + i % 5}\n"
        for pump, level in (("p1", 10), ("p2", 50))
        for i, t in enumerate(hours)
    )
    path = write(tmp_path, text, "pumps.csv")
    said = refused(path, LoadConfig(target="y"), SeveralSeriesError)
    assert "series 'pumps': 48 of its 48 timestamps (100%) hold different rows" in said
    assert "at data rows 1, 49" in said
    assert "Name their id column with series_col (--series-col)" in said
    by_pump = load_data(path, LoadConfig(target="y", series_col="series_id")).series
    assert sorted(by_pump) == ["p1", "p2"]
    # revised readings of one series, kept as asked: no refusal
    (kept,) = load_data(path, LoadConfig(target="y", duplicates="last")).series.values()
    assert kept["y"].iloc[0] == 50.0


def test_a_fleet_of_three_or_more_read_without_its_ids_is_asked_for_its_id_column(
    tmp_path: Path,
) -> None:
    """Six PJM regions in one long file read without --series-col: 6 different rows under
    each hour were refused with the question of a time column left out only, the advice for
    two series (name the id column) missing from the one for three and more."""
    hours = pd.date_range("2020-01-01", periods=48, freq="h")
    text = "site,timestamp,y\n" + "".join(
        f"{site},{t:%Y-%m-%d %H:%M},{level + i % 5}\n"
        for site, level in (("a", 10), ("b", 50), ("c", 90))
        for i, t in enumerate(hours)
    )
    said = refused(write(tmp_path, text, "fleet.csv"), LoadConfig(target="y"),
                   SeveralSeriesError)  # fmt: skip
    assert "3 different rows share the timestamp 2020-01-01 00:00:00" in said
    assert "Does the file hold several series? Name their id column with series_col" in said
    assert "Is a time column left out" in said


def test_a_gzip_file_named_csv_is_told_to_be_named_csv_gz(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(HOURLY.encode()), "log.csv")
    said = refused(path, LoadConfig(target="OT"), UnreadableFileError)
    assert said.startswith("log.csv: the file is gzip-compressed; name it with the suffix")
    assert said.endswith(".csv.gz (or decompress it)")


@pytest.mark.parametrize(
    ("tail", "cut"),
    [
        ("2020-01-02 00:00:00,0.5,1", "2020-01-02 00:00:00,0.5,1"),  # a value cut short: 1 of 10
        ("2020-01-02 00:0", "2020-01-02 00:0"),  # a timestamp cut short: did not parse
        ("2020-01-02 00:00:00,0.5,", "2020-01-02 00:00:00,0.5,"),  # the last field not written
    ],
)
def test_a_last_line_without_its_newline_is_left_out_as_one_still_being_written(
    tmp_path: Path, tail: str, cut: str
) -> None:
    # An export appended to while a job reads it ends in a line cut mid-write: the cut value
    # ("10" written as "1") was read as another number, silently, and a cut timestamp was
    # refused with advice to pass a timestamp_format (life simulation, 2026-12-06).
    data = load_data(write(tmp_path, HOURLY + tail), LoadConfig(target="OT"))
    frame = data.series["log"]
    assert len(frame) == 24 and frame.index[-1] == pd.Timestamp("2020-01-01 23:00")
    assert frame["OT"].iloc[-1] == 46
    said = [line for line in data.report_lines() if "last line" in line]
    assert len(said) == 1 and repr(cut) in said[0] and "does not end with a newline" in said[0]


def test_a_file_ending_with_its_newline_keeps_its_last_row(tmp_path: Path) -> None:
    for text in (HOURLY, HOURLY.replace("\n", "\r\n")):
        data = load_data(write(tmp_path, text), LoadConfig(target="OT"))
        assert len(data.series["log"]) == 24
        assert not [line for line in data.report_lines() if "last line" in line]


def test_a_missing_cell_report_still_reads_with_a_cut_last_line(tmp_path: Path) -> None:
    text = HOURLY.replace("2020-01-01 05:00:00,5.5,10", "2020-01-01 05:00:00,5.5,n/a")
    data = load_data(write(tmp_path, text + "2020-01-02 00:00:00,0.5,4"), LoadConfig(target="OT"))
    assert any("'n/a' x1 (first at data row 6)" in line for line in data.report_lines())
    assert data.series["log"].index[-1] == pd.Timestamp("2020-01-01 23:00")


def test_a_single_data_line_without_its_newline_is_refused_naming_it(tmp_path: Path) -> None:
    said = refused(
        write(tmp_path, "date,HUFL,OT\n2020-01-01 00:00:00,0.5,1"),
        LoadConfig(target="OT"),
        EmptyDataError,
    )
    assert "no complete data rows" in said and "'2020-01-01 00:00:00,0.5,1'" in said


def test_a_file_appended_to_while_it_is_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read and the look at the last line are two reads of the file: a cut line read by
    pandas and completed by the writer before the tail was looked at passed as a value. A
    read during which the file changed size is done again; a file that never settles is
    refused naming why."""
    import training.data as loader

    path = write(tmp_path, HOURLY + "2020-01-02 00:00:00,0.5,1")
    original = loader._read_columns
    calls = []

    def read_then_write(*args: Any, **kwargs: Any) -> pd.DataFrame:
        frame = original(*args, **kwargs)
        calls.append(len(frame))
        if len(calls) == 1:  # the writer finishes the line while the loader reads
            with open(path, "a", newline="") as out:
                out.write("0\n")
        return frame

    monkeypatch.setattr(loader, "_read_columns", read_then_write)
    data = load_data(path, LoadConfig(target="OT"))
    assert calls == [25, 25]
    assert data.series["log"]["OT"].iloc[-1] == 10  # the completed line, read whole
    assert not [line for line in data.report_lines() if "last line" in line]

    def always_growing(*args: Any, **kwargs: Any) -> pd.DataFrame:
        frame = original(*args, **kwargs)
        with open(path, "a", newline="") as out:
            out.write("2020-01-02 01:00:00,0.5,3\n")
        return frame

    monkeypatch.setattr(loader, "_read_columns", always_growing)
    said = refused(path, LoadConfig(target="OT"), UnreadableFileError)
    assert "changed size during each of 3 reads: it is being written" in said


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_timestamps_finer_than_the_microsecond_are_refused_before_the_fit(
    tmp_path: Path, kind: str
) -> None:
    """'00:00:00.123456789' loaded and trained, and the run failed after its fit on the input
    example it logs: the forecast API's `start` dates to the microsecond."""
    stamps = pd.date_range("2020-01-01 00:00:00.123456789", periods=24, freq="h")
    frame = pd.DataFrame({"date": stamps, "OT": np.arange(24.0)})
    if kind == "csv":
        path = write(tmp_path, frame.to_csv(index=False))
    else:
        path = tmp_path / "log.parquet"
        frame.to_parquet(path, index=False)
    said = refused(path, LoadConfig(target="OT"), TimestampParseError)
    assert said == (
        f"log.{kind}: column 'date', data row 1 (1-based, header not counted): "
        "'2020-01-01 00:00:00.123456789' is dated finer than the microsecond (24 rows are), "
        "which the forecast API and a model's `start` do not take: round the timestamps to "
        "the microsecond (or a coarser step) before training"
    ), said
    to_micro = frame.assign(date=stamps.floor("us"))  # what the message asks for is read
    path.unlink()
    if kind == "csv":
        write(tmp_path, to_micro.to_csv(index=False))
    else:
        to_micro.to_parquet(path, index=False)
    assert load_data(path, LoadConfig(target="OT")).series["log"].index[0] == stamps[0].floor("us")


@pytest.mark.parametrize("series_id", ["", "  "])
def test_a_blank_series_id_option_is_refused(tmp_path: Path, series_id: str) -> None:
    """--series-id '' fell back to the file's name without a word; '  ' named the series with
    spaces, an id a series column may not hold. A real id is used as given."""
    with pytest.raises(InvalidOptionError, match=r"series_id \(--series-id\) must be an id"):
        LoadConfig(target="OT", series_id=series_id)
    data = load_data(write(tmp_path, HOURLY), LoadConfig(target="OT", series_id="pump 1"))
    assert list(data.series) == ["pump 1"]


def test_a_timestamp_column_named_twice_is_said_so(tmp_path: Path) -> None:
    """--timestamp-col dteday --timestamp-col dteday was refused as "column 'dteday' is the
    timestamp and cannot also be the timestamp"."""
    path = write(tmp_path, "dteday,hr,cnt\n2011-01-01,0,16\n2011-01-01,1,40\n")
    config = LoadConfig(target="cnt", timestamp_col=("dteday", "hr", "dteday"))
    said = refused(path, config, ColumnRoleError)
    assert said == (
        "log.csv: column 'dteday' is named twice among the timestamp columns (timestamp_col, "
        "--timestamp-col: 'dteday', 'hr', 'dteday'); name each column once"
    ), said


def _blank_lines_said(report: Sequence[Any]) -> list[str]:
    return [str(d) for d in report if "blank line" in str(d)]


@pytest.mark.parametrize("packed", [False, True])
def test_blank_lines_inside_a_csv_are_a_stated_decision_with_their_line_numbers(
    tmp_path: Path, packed: bool
) -> None:
    """pandas skips blank lines (skip_blank_lines): a line emptied in the middle of a history
    (a paste gone wrong, a row deleted in an editor) vanished without a word. The loader says
    it skipped them, in the report beside its other decisions, with the file's line numbers
    (the first few, then a count); the blank lines ending a file are no data and stay
    unsaid."""
    stamps = pd.date_range("2020-01-01", periods=12, freq="h")
    lines = ["date,OT", *(f"{t},{i}" for i, t in enumerate(stamps))]
    # blank lines 4, 7 and 8 (two in a row), 11, 13, 16 and 18: one of spaces, one a '\r'
    for at, blank in ((11, ""), (10, " "), (8, ""), (7, "\r"), (5, ""), (5, ""), (3, "")):
        lines.insert(at, blank)
    text = "\n".join(lines) + "\n\n\n"  # trailing blank lines: normal, unsaid
    path = tmp_path / ("gaps.csv.gz" if packed else "gaps.csv")
    if packed:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    data = load_data(path, LoadConfig(target="OT"))
    assert sum(len(f) for f in data.series.values()) == 12  # the rows, as before
    assert _blank_lines_said(data.report) == [
        f"{path.name}: skipped 7 blank lines (lines 4, 7, 8, 11, 13 and 2 more; a blank line "
        "is no row: the rows around it are read as neighbours, and a step it leaves out is "
        "a missing step)"
    ]


def test_blank_lines_only_at_the_end_of_a_csv_are_unsaid(tmp_path: Path) -> None:
    path = tmp_path / "end.csv"
    stamps = pd.date_range("2020-01-01", periods=6, freq="h")
    path.write_text("date,OT\n" + "".join(f"{t},{i}\n" for i, t in enumerate(stamps)) + "\n \n")
    assert _blank_lines_said(load_data(path, LoadConfig(target="OT")).report) == []

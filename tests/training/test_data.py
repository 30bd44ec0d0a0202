"""Loading and validating history files: layouts, formats, every repair policy, every error,
and the real quirky files (PJM, bike sharing, ETT) with counts computed independently here."""

import gzip
import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.shared_data import SHARED_DATA, needs_shared
from training.data import LoadConfig, LoadedData, WrongSeparatorError, header_columns, load_data
from training.validation import (
    DataValidationError,
    Decision,
    DuplicateTimestampError,
    EmptyDataError,
    FrequencyError,
    GapTooLongError,
    InvalidOptionError,
    MissingColumnError,
    NonFiniteValueError,
    NonNumericValueError,
    SeriesDuplicatesError,
    SeriesTooShortError,
    SeveralSeriesError,
    TimestampParseError,
    UnreadableFileError,
    UnsupportedFormatError,
)

REPO = Path(__file__).resolve().parents[2]
BUNDLED_ETT = REPO / "data" / "ETT-small" / "ETTh1.csv"
ETT_COVARIATES = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL")


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path


def steps(data: LoadedData, step: str) -> list[Decision]:
    return [d for d in data.report if d.step == step]


def hourly(n: int, start: str = "2020-01-01") -> list[str]:
    return [str(t) for t in pd.date_range(start, periods=n, freq="h")]


def csv_of(stamps: list[str], ys: list[str], xs: list[str] | None = None) -> str:
    xs = xs if xs is not None else [str(i) for i in range(len(stamps))]
    return "timestamp,y,x\n" + "\n".join(
        f"{t},{y},{x}" for t, y, x in zip(stamps, ys, xs, strict=True)
    )


# --- layouts and formats ---------------------------------------------------------------------


def test_clean_wide_csv_is_read_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path, csv_of(hourly(5), ["1.5", "2", "3", "4", "5"]))
    data = load_data(path, LoadConfig(target="y", covariates=("x",)))

    frame = data.series["log"]
    assert list(frame.columns) == ["y", "x"]
    assert (frame.dtypes == np.float64).all()
    assert frame.index.name == "timestamp"
    assert list(frame.index) == list(pd.date_range("2020-01-01", periods=5, freq="h"))
    assert frame["y"].tolist() == [1.5, 2, 3, 4, 5]
    assert data.freq == "h"
    assert not data.filled["log"].to_numpy().any()
    changed = {d.step for d in data.report} & {"sort", "duplicates", "regularise", "fill", "trim"}
    assert changed == set()
    assert any("converted to float64: x (int64)" in line for line in data.report_lines())


def test_integers_beyond_float64s_exact_range_are_named_where_they_are_rounded(
    tmp_path: Path,
) -> None:
    """A counter on a large offset (1e17 + PJM load in MW, int64 in Parquet or CSV) became
    float64 multiples of 16 with only "converted to float64" said; the report now says
    how many values were rounded, by what step, and what to do. Integers float64 holds
    exactly (below 2**53, or multiples of 16 near 1e17) are read without the line."""
    offset = 10**17
    counts = pd.DataFrame(
        {
            "timestamp": pd.date_range("2020-01-01", periods=5, freq="h"),
            "y": np.array([1596, 1517, 1490, 1600, 1544], dtype=np.int64) + offset,
            "x": np.arange(5, dtype=np.int64) * 16 + offset,  # float64 holds these
        }
    )
    path = tmp_path / "meter.parquet"
    counts.to_parquet(path)
    data = load_data(path, LoadConfig(target="y", covariates=("x",)))
    (line,) = [line for line in data.report_lines() if "2**53" in line]
    assert line == (
        "meter.parquet: column 'y': 4 of 5 integers lie beyond 2**53 (9.01e+15), where float64 "
        "holds integers only in steps of 16, and were rounded to the nearest it holds (e.g. "
        "100000000000001596 read as 100000000000001600); if the series varies in those last "
        "digits, subtract an offset (its first value, say) from the column before training"
    )
    csv = tmp_path / "meter.csv"
    counts.to_csv(csv, index=False)
    said = load_data(csv, LoadConfig(target="y", covariates=("x",))).report_lines()
    assert [line.split(": ", 1)[1] for line in said if "2**53" in line] == [line.split(": ", 1)[1]]
    small = counts.assign(y=counts["y"] - offset)
    small.to_parquet(path)
    assert not any(
        "2**53" in line for line in load_data(path, LoadConfig(target="y")).report_lines()
    )


def test_parquet_reads_like_csv_and_zones_become_utc(tmp_path: Path) -> None:
    stamps = pd.date_range("2020-03-01", periods=4, freq="15min", tz="Europe/Berlin")
    frame = pd.DataFrame({"ts": stamps, "load": [1.0, 2.0, np.nan, 4.0]})
    frame.to_parquet(tmp_path / "m.parquet")
    data = load_data(tmp_path / "m.parquet", LoadConfig(target="load", timestamp_col="ts"))

    series = data.series["m"]
    assert data.freq == "15min"
    assert series.index[0] == pd.Timestamp("2020-03-01 00:00") - pd.Timedelta(hours=1)  # UTC
    assert pd.DatetimeIndex(series.index).tz is None
    assert series["load"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert data.filled["m"]["load"].tolist() == [False, False, True, False]
    assert [d.count for d in steps(data, "timezone")] == [4]
    assert [d.count for d in steps(data, "missing")] == [1]


@pytest.mark.parametrize("index", [["timestamp"], ["region", "timestamp"]])
def test_parquet_indexed_by_timestamp_or_series_reads_like_columns(
    tmp_path: Path, index: list[str]
) -> None:
    """`frame.set_index("timestamp").to_parquet(...)`: the schema lists the index as a
    column, pandas reads it back as the index; it crashed with KeyError: 'timestamp'."""
    stamps = pd.date_range("2020-01-01", periods=6, freq="h")
    frame = pd.DataFrame({"region": ["a"] * 6, "timestamp": stamps, "y": np.arange(6.0)})
    frame.set_index(index).to_parquet(tmp_path / "indexed.parquet")
    config = LoadConfig(target="y", series_col="region" if len(index) == 2 else None)
    data = load_data(tmp_path / "indexed.parquet", config)

    series = data.series["a" if len(index) == 2 else "indexed"]
    assert list(series.index) == list(stamps) and series["y"].tolist() == list(range(6))
    assert data.freq == "h"
    levels = ", ".join(map(repr, index))
    assert any(f"pandas index {levels} as ordinary column" in line for line in data.report_lines())


def test_parquet_with_an_unnamed_time_index_reads_it_as_the_timestamp(tmp_path: Path) -> None:
    """A frame whose DatetimeIndex has no name is stored as `__index_level_0__`: found by no
    timestamp name, and not readable by that name either."""
    stamps = pd.date_range("2020-01-01", periods=6, freq="h")
    pd.DataFrame({"y": np.arange(6.0)}, index=stamps).to_parquet(tmp_path / "bare.parquet")
    for config in (
        LoadConfig(target="y"),
        LoadConfig(target="y", timestamp_col="__index_level_0__"),
    ):
        data = load_data(tmp_path / "bare.parquet", config)
        assert list(data.series["bare"].index) == list(stamps) and data.freq == "h"
    said = load_data(tmp_path / "bare.parquet", LoadConfig(target="y")).report_lines()
    assert (
        "bare.parquet: using the file's unnamed pandas index ('__index_level_0__') as the "
        "timestamp" in said
    )


def test_a_long_gap_of_whole_rows_names_every_column_and_one_of_the_target_names_it(
    tmp_path: Path,
) -> None:
    """Whole rows missing were reported under the alphabetically first covariate (an
    audit's 'Current' for a 'Pressure' target)."""
    stamps = hourly(12)
    kept = [0, 1, 2, 3, 9, 10, 11]
    rows = "\n".join(f"{stamps[i]},{i},{i * 2}" for i in kept)
    path = write(tmp_path, f"timestamp,Pressure,Current\n{rows}")
    config = LoadConfig(target="Pressure", covariates=("Current",), max_gap=4)
    with pytest.raises(
        GapTooLongError, match=r"series 'log', every column \('Pressure', 'Current'\): 5 missing"
    ):
        load_data(path, config)
    holes = "\n".join(f"{stamps[i]},{'' if 4 <= i <= 8 else i},{i * 2}" for i in range(12))
    with pytest.raises(GapTooLongError, match=r"series 'log', column 'Pressure': 5 missing"):
        load_data(write(tmp_path, f"timestamp,Pressure,Current\n{holes}"), config)


@pytest.mark.parametrize(("zoned", "naive"), [(" +01:00", ""), ("", "Z"), ("+0100", "")])
def test_offsets_in_some_rows_only_are_refused_naming_both_kinds(
    tmp_path: Path, zoned: str, naive: str
) -> None:
    """One unit's logger writes its offset, the others none: the parse failed at the first
    row of the other kind with advice to pass a timestamp_format, which no format fixes."""
    stamps = [t + (zoned if i < 3 else naive) for i, t in enumerate(hourly(6))]
    path = write(tmp_path, csv_of(stamps, ["1"] * 6))
    first_zoned, first_naive = (1, 4) if zoned else (4, 1)
    pattern = (
        rf"3 rows carry a UTC offset \(first data row {first_zoned} .*\) and 3 carry none "
        rf"\(first data row {first_naive} .*Write every timestamp with its offset"
    )
    with pytest.raises(TimestampParseError, match=pattern):
        load_data(path, LoadConfig(target="y", covariates=("x",)))


@pytest.mark.parametrize(
    "last", ["2020-01-01 05:00:00+01:00x", "2020-01-01 05:00:00 CET"], ids=["typo", "zone name"]
)
def test_a_row_of_another_form_is_not_called_one_without_an_offset(
    tmp_path: Path, last: str
) -> None:
    """A typo or a zone name is the parse error's to name (with its advice on abbreviations),
    not a row 'carrying no offset'."""
    stamps = [t + "+01:00" for t in hourly(5)] + [last]
    path = write(tmp_path, csv_of(stamps, ["1"] * 6))
    with pytest.raises(TimestampParseError) as refused:
        load_data(path, LoadConfig(target="y", covariates=("x",)))
    assert "carry none" not in str(refused.value)
    assert "data row 6" in str(refused.value)


def test_text_with_several_utc_offsets_is_reported_as_such(tmp_path: Path) -> None:
    """Local time across the spring change: +01:00, then +02:00. The report said "from time
    zone UTC to UTC" (the audit's); the instants were right and stay right."""
    text = """timestamp,y
2016-03-27T00:00:00+01:00,1
2016-03-27T01:00:00+01:00,2
2016-03-27T03:00:00+02:00,3
2016-03-27T04:00:00+02:00,4
"""
    data = load_data(write(tmp_path, text), LoadConfig(target="y"))
    (decision,) = steps(data, "timezone")
    assert "with several UTC offsets" in decision.message
    assert "from time zone" not in decision.message
    index = pd.DatetimeIndex(data.series[next(iter(data.series))].index)
    assert list(index.hour) == [23, 0, 1, 2]  # UTC


@pytest.mark.parametrize("suffix", ["Z", "+00:00"])
def test_timestamps_written_in_utc_are_not_said_to_be_converted_to_it(
    tmp_path: Path, suffix: str
) -> None:
    """ETTh1 written with 'Z': the report said "converted 800 timestamps from time zone UTC
    to UTC", a conversion that changed nothing."""
    text = "timestamp,y\n" + "".join(f"2016-03-27T{h:02d}:00:00{suffix},{h}\n" for h in range(4))
    data = load_data(write(tmp_path, text), LoadConfig(target="y"))
    (decision,) = steps(data, "timezone")
    assert decision.message == "log.csv: read 4 timestamps written in UTC and dropped the zone"
    index = pd.DatetimeIndex(data.series[next(iter(data.series))].index)
    assert list(index.hour) == [0, 1, 2, 3]
    offset = text.replace(suffix, "+02:00")
    (decision,) = steps(load_data(write(tmp_path, offset), LoadConfig(target="y")), "timezone")
    assert decision.message == (
        "log.csv: converted 4 timestamps from time zone UTC+02:00 to UTC and dropped the zone"
    )


def test_a_first_row_that_does_not_parse_is_not_said_to_be_the_inferred_format(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "day,hr,y\n2011-01-01,0,1\n2011-01-01,1,2\n")
    with pytest.raises(TimestampParseError) as error:
        load_data(path, LoadConfig(target="y", timestamp_col=("day", "hr")))
    message = str(error.value)
    assert "pandas could not infer a format from the first row" in message
    assert "'%Y-%m-%d %H' for '2016-07-01 2'" in message
    data = load_data(
        path, LoadConfig(target="y", timestamp_col=("day", "hr"), timestamp_format="%Y-%m-%d %H")
    )
    assert len(data.series[next(iter(data.series))]) == 2


def test_long_format_gives_one_series_per_id(tmp_path: Path) -> None:
    text = """
series_id,timestamp,target,temp
b,2020-01-01 02:00,30,0.3
a,2020-01-01 00:00,1,0.1
b,2020-01-01 00:00,10,0.1
a,2020-01-01 01:00,2,0.2
b,2020-01-01 01:00,20,0.2
a,2020-01-01 02:00,3,0.3
"""
    cfg = LoadConfig(target="target", covariates=("temp",), series_col="series_id")
    data = load_data(write(tmp_path, text), cfg)

    assert list(data.series) == ["a", "b"]
    assert data.series["b"]["target"].tolist() == [10, 20, 30]
    assert data.series["a"]["temp"].tolist() == [0.1, 0.2, 0.3]
    assert [d.subject for d in steps(data, "sort")] == ["b"]  # only b was out of order


def test_date_and_hour_columns_are_joined(tmp_path: Path) -> None:
    """The bike-sharing recipe: `dteday` + `hr`, joined with a space, parsed with a format."""
    text = "dteday,hr,cnt\n2011-01-01,0,16\n2011-01-01,1,40\n2011-01-01,2,32\n2011-01-02,0,5\n"
    cfg = LoadConfig(
        target="cnt",
        timestamp_col=("dteday", "hr"),
        timestamp_format="%Y-%m-%d %H",
        max_gap=21,
        max_filled_fraction=1.0,  # four rows spanning 25 hours: most of it filled, on purpose
    )
    data = load_data(write(tmp_path, text, "hour.csv"), cfg)

    frame = data.series["hour"]
    assert frame.index[0] == pd.Timestamp("2011-01-01 00:00")
    assert frame.index[-1] == pd.Timestamp("2011-01-02 00:00")
    assert len(frame) == 25
    assert [d.count for d in steps(data, "regularise")] == [21]


def test_timestamp_column_is_found_by_name_and_the_choice_reported(tmp_path: Path) -> None:
    data = load_data(write(tmp_path, "Date,v\n2020-01-01,1\n2020-01-02,2\n"), LoadConfig("v"))
    assert data.freq == "D"
    assert "using column 'Date' as the timestamp" in data.report_lines()[0]

    ambiguous = write(tmp_path, "date,time,v\n2020-01-01,00:00,1\n", "two.csv")
    with pytest.raises(MissingColumnError, match=r"several candidates \('date', 'time'\)"):
        load_data(ambiguous, LoadConfig("v"))


# --- repair policies -------------------------------------------------------------------------


def test_unsorted_rows_are_sorted_and_counted(tmp_path: Path) -> None:
    stamps = hourly(4)
    path = write(tmp_path, csv_of([stamps[i] for i in (2, 0, 3, 1)], ["3", "1", "4", "2"]))
    data = load_data(path, LoadConfig(target="y"))

    assert data.series["log"]["y"].tolist() == [1, 2, 3, 4]
    (sort,) = steps(data, "sort")
    assert sort.count == 4
    assert "time went backwards at 2 places" in sort.message


@pytest.mark.parametrize(
    ("policy", "expected"), [("mean", 3.0), ("first", 2.0), ("last", 4.0)], ids=str
)
def test_duplicate_timestamps_follow_the_policy(
    tmp_path: Path, policy: str, expected: float
) -> None:
    stamps = hourly(3)
    path = write(tmp_path, csv_of([stamps[0], stamps[1], stamps[1], stamps[2]], list("1245")))
    data = load_data(path, LoadConfig(target="y", duplicates=policy))  # type: ignore[arg-type]

    assert data.series["log"]["y"].tolist() == [1.0, expected, 5.0]
    (dup,) = steps(data, "duplicates")
    assert dup.count == 1
    assert "merged 1 duplicated timestamp (2 rows -> 1, 1 row removed)" in dup.message
    assert "data rows 2, 3; their values differ, by up to 2 in 'y'" in dup.message


def test_duplicates_filling_an_hour_a_day_are_pointed_to_as_a_clock_change(
    tmp_path: Path,
) -> None:
    """A 1-minute log on local time writes 02:00-02:59 twice on the autumn change day: merging
    pairs readings an hour apart, 60 of them; the report says what the duplicates likely are
    and how to keep both hours. Duplicates spread over the day get no such guess."""
    first = pd.date_range("2020-10-25 01:00", "2020-10-25 02:59", freq="min")
    again = pd.date_range("2020-10-25 02:00", "2020-10-25 03:30", freq="min")
    stamps = [str(t) for t in first.append(again)]
    path = write(tmp_path, csv_of(stamps, ["1"] * len(stamps)))
    (dup,) = steps(load_data(path, LoadConfig(target="y")), "duplicates")
    assert dup.message.endswith(
        "; they lie within one hour on 1 day (first 2020-10-25 02:00:00 to 2020-10-25 "
        "02:59:00): the hour a daylight-saving change repeats on local times? Merging pairs "
        "readings taken an hour apart; timestamps with UTC offsets (or in UTC) keep both hours"
    )
    days = [str(t) for t in pd.date_range("2020-01-01", periods=60, freq="D")]
    overlap = sorted([*days, *days[50:]])  # an overlapping export repeats 10 days
    path = write(tmp_path, csv_of(overlap, ["1"] * len(overlap), ["0"] * len(overlap)), "daily.csv")
    (dup,) = steps(load_data(path, LoadConfig(target="y")), "duplicates")
    assert "daylight-saving" not in dup.message
    assert "their values agree" in dup.message  # an overlapping export, not a revised one
    spread = [*hourly(6), *hourly(6)[::5]]  # 00:00 and 05:00 twice
    path = write(tmp_path, csv_of(sorted(spread), ["1"] * len(spread)), "spread.csv")
    (dup,) = steps(load_data(path, LoadConfig(target="y")), "duplicates")
    assert "daylight-saving" not in dup.message


def test_the_one_hour_an_autumn_change_repeats_in_an_hourly_log_is_pointed_to(
    tmp_path: Path,
) -> None:
    """ETTh1's rows from 2016-10-25 written on Europe/Berlin's wall clock (one autumn, so one
    repeated hour, 02:00 on Sunday 2016-10-30): the two hours were averaged with no word of
    the clock change, which PJM's files (4 repeated hours) got and the README promises. One
    repeated hour on a weekday is no such hint."""
    utc = pd.date_range("2016-10-29 18:00", periods=16, freq="h", tz="UTC")
    wall = [str(t) for t in utc.tz_convert("Europe/Berlin").tz_localize(None)]
    assert wall.count("2016-10-30 02:00:00") == 2
    path = write(tmp_path, csv_of(wall, [str(v) for v in range(16)]))
    (dup,) = steps(load_data(path, LoadConfig(target="y")), "duplicates")
    assert dup.message.endswith(
        "; they lie within one hour on 1 day (first 2016-10-30 02:00:00 to 2016-10-30 "
        "02:00:00): the hour a daylight-saving change repeats on local times? Merging pairs "
        "readings taken an hour apart; timestamps with UTC offsets (or in UTC) keep both hours"
    )
    weekday = [str(t) for t in pd.date_range("2016-10-26", periods=8, freq="h")]
    weekday.insert(3, weekday[2])  # Wednesday 02:00 twice
    path = write(tmp_path, csv_of(weekday, [str(v) for v in range(9)]), "weekday.csv")
    (dup,) = steps(load_data(path, LoadConfig(target="y")), "duplicates")
    assert "daylight-saving" not in dup.message


def test_jittered_timestamps_are_refused_naming_the_rate_to_round_to(tmp_path: Path) -> None:
    """A logger stamping each 1-second reading up to 150 ms early or late: the modal step
    ('878ms') named a grid nobody logs at. The error says the steps scatter around 's' and how
    to round them; the rounded file loads."""
    rng = np.random.default_rng(0)
    jitter = pd.to_timedelta(rng.integers(-150, 150, 400), unit="ms")
    stamps = pd.date_range("2020-01-01", periods=400, freq="s") + jitter
    path = tmp_path / "jitter.csv"
    pd.DataFrame({"timestamp": stamps.astype(str), "y": 1.0}).to_csv(path, index=False)
    for freq in (None, "s"):
        with pytest.raises(
            FrequencyError, match=r"The steps scatter around 's' \(median 1\.0\d* s\)"
        ):
            load_data(path, LoadConfig(target="y", freq=freq))
    # a median just under the rate (0.998 s) is still a 1-second logger, not a '998ms' one
    late = pd.date_range("2020-01-01", periods=400, freq="s") + pd.to_timedelta(
        np.random.default_rng(3).integers(100, 300, 400), unit="ms"
    )
    assert np.median(np.diff(late.asi8)) < 1e9
    path = tmp_path / "late.csv"
    pd.DataFrame({"timestamp": late.astype(str), "y": 1.0}).to_csv(path, index=False)
    with pytest.raises(FrequencyError, match=r"round\('s'\)"):
        load_data(path, LoadConfig(target="y"))
    rounded = tmp_path / "rounded.csv"
    pd.DataFrame({"timestamp": stamps.round("s").astype(str), "y": 1.0}).to_csv(
        rounded, index=False
    )
    assert load_data(rounded, LoadConfig(target="y")).freq == "s"


def test_duplicates_can_be_refused(tmp_path: Path) -> None:
    stamps = hourly(2)
    path = write(tmp_path, csv_of([stamps[0], stamps[1], stamps[1]], list("123")))
    with pytest.raises(DuplicateTimestampError, match=r"data rows 2, 3 .*mean, first, last"):
        load_data(path, LoadConfig(target="y", duplicates="error"))


@pytest.mark.parametrize(
    ("fill", "expected"), [("interpolate", [0, 1, 2, 3, 4]), ("ffill", [0, 1, 1, 1, 4])]
)
def test_missing_steps_are_inserted_and_filled(
    tmp_path: Path, fill: str, expected: list[float]
) -> None:
    stamps = hourly(5)
    path = write(tmp_path, csv_of([stamps[i] for i in (0, 1, 4)], ["0", "1", "4"], ["9"] * 3))
    config = LoadConfig(
        target="y",
        covariates=("x",),
        fill=fill,  # type: ignore[arg-type]
        max_gap=2,
        max_filled_fraction=1.0,  # a few rows with gaps: a large share filled, on purpose
    )
    data = load_data(path, config)

    assert data.series["log"]["y"].tolist() == expected
    assert data.series["log"]["x"].tolist() == [9.0] * 5
    assert data.filled["log"]["y"].tolist() == [False, False, True, True, False]
    assert [d.count for d in steps(data, "regularise")] == [2]
    (filled,) = steps(data, "fill")
    assert filled.count == 4
    assert "y 2, x 2" in filled.message
    assert "longest filled gap 2 steps" in filled.message


def test_interpolated_flags_and_codes_between_whole_numbers_are_said(tmp_path: Path) -> None:
    """Bike sharing's `holiday` (0/1) and `weathersit` (1-4) came out of interpolation as 0.29
    or 1.43 with only "filled by linear interpolation" in the report: a flag or a category
    code read as an in-between value. The fill line now counts them per column; a column
    with fractions of its own (a temperature) is not counted, and ffill makes none."""
    stamps = hourly(6)
    rows = [stamps[i] for i in (0, 1, 5)]
    text = "timestamp,y,flag,temp\n" + "\n".join(
        f"{t},{y},{f},{x}"
        for t, y, f, x in zip(rows, ["1", "2", "5"], ["0", "0", "1"], ["0.5"] * 3, strict=True)
    )
    path = write(tmp_path, text + "\n")
    config = LoadConfig(target="y", covariates=("flag", "temp"), max_filled_fraction=1.0)
    (filled,) = steps(load_data(path, config), "fill")
    assert filled.message.endswith(
        "longest filled gap 3 steps; of these, values between whole numbers in columns that "
        "hold only a few whole numbers (at most 32 distinct) (y 3, flag 3): a flag or category "
        "code filled so reads as an in-between value (fill 'ffill' keeps observed values)"
    )
    carried = load_data(path, replace(config, fill="ffill"))
    (filled,) = steps(carried, "fill")
    assert filled.message.endswith("longest filled gap 3 steps")
    assert set(carried.series["log"]["flag"]) == {0.0, 1.0}


def test_a_measurement_in_whole_units_is_not_called_a_flag_when_filled(tmp_path: Path) -> None:
    """PJM's load in whole MW, a DST hour missing: the fill line said "a flag or category
    code filled so reads as an in-between value (fill 'ffill' keeps observed values)" of the
    grid load itself. A column of many whole values is a measurement, not a code."""
    stamps = hourly(40)
    loads = [str(1500 + 7 * k) for k in range(40)]  # 40 distinct whole MW values
    kept = [k for k in range(40) if k != 20]
    path = write(tmp_path, csv_of([stamps[k] for k in kept], [loads[k] for k in kept]))
    (filled,) = steps(load_data(path, LoadConfig(target="y")), "fill")
    assert filled.message.endswith("longest filled gap 1 step")
    assert load_data(path, LoadConfig(target="y")).series["log"]["y"].iloc[20] == 1640.0
    odd = [str(1500 + 7 * k + (k == 19)) for k in range(40)]  # 1634 and 1641 around the gap
    path = write(tmp_path, csv_of([stamps[k] for k in kept], [odd[k] for k in kept]), "odd.csv")
    (filled,) = steps(load_data(path, LoadConfig(target="y")), "fill")
    assert "flag or category code" not in filled.message  # 1640.5 MW is an estimate


def test_nan_in_the_file_is_a_missing_value_reported_and_filled(tmp_path: Path) -> None:
    path = write(tmp_path, csv_of(hourly(4), ["1", "", "NaN", "4"], ["0", "1", "", "3"]))
    data = load_data(path, LoadConfig(target="y", covariates=("x",), max_filled_fraction=1.0))

    assert data.series["log"]["y"].tolist() == [1, 2, 3, 4]
    assert data.series["log"]["x"].tolist() == [0, 1, 2, 3]
    (missing,) = steps(data, "missing")
    assert missing.count == 3
    assert (
        "(y 2: empty x1 (first at data row 2), 'NaN' x1 (first at data row 3); x 1: empty x1 "
        "(first at data row 3))" in missing.message
    )
    assert [d.count for d in steps(data, "fill")] == [3]


def test_the_report_says_which_words_were_read_as_missing_and_where(tmp_path: Path) -> None:
    """'#N/A' (a spreadsheet's formula error), 'NULL', 'None' are pandas' missing-value words:
    read as gaps like an empty cell, but the report quotes them and their first row, so a
    user sees what was read so; other text ('-', 'ERR') is refused as before."""
    ys = ["1", "#N/A", "3", "NULL", "#N/A", "6", "7", "None", "9", "10"]
    path = write(tmp_path, csv_of(hourly(10), ys))
    data = load_data(path, LoadConfig(target="y", covariates=("x",), max_filled_fraction=1.0))
    (missing,) = steps(data, "missing")
    assert (
        "(y 4: '#N/A' x2 (first at data row 2), 'NULL' x1 (first at data row 4), 'None' x1 "
        "(first at data row 8))" in missing.message
    )
    ys[5] = "ERR"
    with pytest.raises(NonNumericValueError, match=r"data row 6 .*'ERR' is not a number"):
        load_data(write(tmp_path, csv_of(hourly(10), ys)), LoadConfig(target="y"))


def test_rows_missing_a_value_at_either_end_are_trimmed(tmp_path: Path) -> None:
    path = write(tmp_path, csv_of(hourly(5), ["", "1", "2", "3", "4"], ["0", "1", "2", "3", ""]))
    data = load_data(path, LoadConfig(target="y", covariates=("x",)))

    assert len(data.series["log"]) == 3
    (trim,) = steps(data, "trim")
    assert trim.count == 2
    assert "trimmed 1 leading and 1 trailing rows" in trim.message


def long_gap_file(tmp_path: Path) -> Path:
    stamps = hourly(12)
    kept = [0, 1, 2, 3, 9, 10, 11]  # 5 missing steps (4..8)
    return write(tmp_path, csv_of([stamps[i] for i in kept], [str(i) for i in kept]))


def test_a_gap_longer_than_max_gap_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(GapTooLongError) as caught:
        load_data(long_gap_file(tmp_path), LoadConfig(target="y", max_gap=4))
    message = str(caught.value)
    assert "series 'log', column 'y': 5 missing steps" in message
    assert "from 2020-01-01 04:00:00 to 2020-01-01 08:00:00" in message
    assert "at least 5" in message and "'split'" in message


def test_a_long_gap_can_split_the_series(tmp_path: Path) -> None:
    cfg = LoadConfig(target="y", max_gap=4, on_long_gap="split", min_length=3)
    data = load_data(long_gap_file(tmp_path), cfg)

    assert list(data.series) == ["log#1", "log#2"]
    assert data.unit_of("log#1") == data.unit_of("log#2") == "log"  # one unit, two segments
    assert data.series["log#1"]["y"].tolist() == [0, 1, 2, 3]
    assert data.series["log#2"]["y"].tolist() == [9, 10, 11]
    (split,) = steps(data, "split")
    assert split.count == 5
    assert steps(data, "fill") == []


def test_segments_of_a_cut_series_are_held_to_their_own_floor(tmp_path: Path) -> None:
    """min_segment_length is the floor of each of a series' segments while two or more of them
    reach it; a series left with one is one stretch again, held to min_length."""
    path = long_gap_file(tmp_path)  # log#1: 4 rows, log#2: 3 rows
    base = LoadConfig(target="y", max_gap=4, on_long_gap="split", on_short="drop", min_length=4)
    both = load_data(path, replace(base, min_segment_length=3))
    assert list(both.series) == ["log#1", "log#2"] and steps(both, "drop") == []
    alone = load_data(path, replace(base, min_segment_length=4))
    assert list(alone.series) == ["log#1"]
    (dropped,) = steps(alone, "drop")
    assert dropped.message == (
        "series 'log#2': dropped: 3 rows, fewer than min_length=4 (on_short='drop')"
    )
    stamps = hourly(20)
    kept = [0, 1, 2, 3, 9, 10, 11, 12, 18, 19]  # segments of 4, 4 and 2 rows
    three = write(tmp_path, csv_of([stamps[k] for k in kept], list("0123456789")), "three.csv")
    with pytest.raises(SeriesTooShortError) as caught:
        load_data(three, replace(base, min_segment_length=3, on_short="error"))
    assert "series 'three#3' has 2 rows after cleaning, fewer than min_segment_length=3 (a " in (
        str(caught.value)
    )
    # the floor of whole series is min_length, whatever min_segment_length says
    stamps = hourly(6)
    whole = write(tmp_path, csv_of(stamps, list("123456")), name="whole.csv")
    with pytest.raises(SeriesTooShortError, match="every series is shorter than min_length=9"):
        load_data(whole, replace(base, min_length=9, min_segment_length=2))
    with pytest.raises(InvalidOptionError, match="min_segment_length must be an integer >= 1"):
        LoadConfig(target="y", min_segment_length=0)


def test_fill_none_treats_every_gap_as_long(tmp_path: Path) -> None:
    with pytest.raises(GapTooLongError, match="fill='none' fills nothing") as caught:
        load_data(long_gap_file(tmp_path), LoadConfig(target="y", fill="none"))
    assert "Choose fill 'interpolate' or 'ffill' with max_gap at least 5" in str(caught.value)
    assert "Raise max_gap" not in str(caught.value)  # it fills nothing under fill='none'
    with pytest.raises(GapTooLongError):  # max_gap does not apply: nothing is filled
        load_data(long_gap_file(tmp_path), LoadConfig(target="y", fill="none", max_gap=99))
    cfg = LoadConfig(target="y", fill="none", on_long_gap="split", min_length=3)
    assert len(load_data(long_gap_file(tmp_path), cfg).series) == 2


def test_declared_freq_must_fit_the_timestamps(tmp_path: Path) -> None:
    stamps = [str(t) for t in pd.date_range("2020-01-01", periods=4, freq="15min")]
    path = write(tmp_path, csv_of(stamps, list("1234")))
    assert load_data(path, LoadConfig(target="y")).freq == "15min"
    with pytest.raises(FrequencyError, match=r"00:15:00 at data row 2 .* not on the 'h' grid"):
        load_data(path, LoadConfig(target="y", freq="h"))


@pytest.mark.parametrize(
    ("freq", "start", "inferred"),
    [
        ("MS", "2020-01-01", "MS"),
        ("ME", "2020-01-31", "ME"),
        ("QS-JAN", "2020-04-01", "QS-JAN"),
        ("QS-FEB", "2020-02-01", "QS-FEB"),
        ("QE-DEC", "2020-03-31", "QE-DEC"),
        ("QE-NOV", "2020-02-29", "QE-NOV"),
        ("YS-JAN", "2001-01-01", "YS-JAN"),
        ("YE-JUN", "2001-06-30", "YE-JUN"),
        ("2MS", "2020-03-01", "2MS"),
        ("MS", "2020-01-01 06:00", "MS"),  # one time of day, not midnight
    ],
)
def test_month_grids_are_inferred(tmp_path: Path, freq: str, start: str, inferred: str) -> None:
    """Month starts, month ends, quarters and years have no fixed step (the modal step of month
    starts, 31 days, fits none of them): they were refused unless freq was declared, so a
    monthly demand file needed --freq MS. Their calendar is read instead, and reported."""
    stamps = pd.date_range(start, periods=30, freq=freq)
    path = tmp_path / "monthly.csv.gz"  # also: gzipped CSV is read by suffix
    pd.DataFrame({"date": stamps, "v": range(30)}).to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="v"))
    assert data.freq == inferred
    assert data.series["monthly"].index.equals(pd.DatetimeIndex(stamps, name="timestamp"))
    (line,) = [d.message for d in steps(data, "frequency")]
    day = "last" if freq[-1] == "E" or "E-" in freq else "first"
    assert f"frequency {inferred!r} inferred from the timestamps: every one falls on" in line
    assert f"the {day} day of a month" in line
    declared = load_data(path, LoadConfig(target="v", freq=freq))
    assert declared.series["monthly"].equals(data.series["monthly"])


def test_a_missing_month_is_a_gap_not_a_two_month_step(tmp_path: Path) -> None:
    stamps = pd.date_range("2020-01-01", periods=24, freq="MS").delete([5, 6])
    path = tmp_path / "gappy.csv"
    pd.DataFrame({"date": stamps.strftime("%Y-%m-%d"), "v": range(22)}).to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="v"))
    assert data.freq == "MS" and len(data.series["gappy"]) == 24
    assert data.filled["gappy"].to_numpy().sum() == 2


def test_quarters_in_different_phases_get_one_grid_that_anchors_per_series(
    tmp_path: Path,
) -> None:
    """One series in January, April, ... and one in February, May, ...: no 'QS-...' name fits
    both, '3MS' does (each grid starts at its series' first timestamp)."""
    a = pd.date_range("2020-01-01", periods=12, freq="QS-JAN")
    b = pd.date_range("2020-02-01", periods=12, freq="QS-FEB")
    frame = pd.DataFrame(
        {
            "id": ["a"] * 12 + ["b"] * 12,
            "date": [*a.strftime("%Y-%m-%d"), *b.strftime("%Y-%m-%d")],
            "v": 1.0,
        }
    )
    path = tmp_path / "quarters.csv"
    frame.to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="v", series_col="id"))
    assert data.freq == "3MS"
    assert data.series["a"].index.equals(pd.DatetimeIndex(a, name="timestamp"))
    assert data.series["b"].index.equals(pd.DatetimeIndex(b, name="timestamp"))


@pytest.mark.parametrize(
    ("dates", "fmt"),
    [
        (pd.date_range("2020-01-01", periods=24, freq="MS") + pd.Timedelta(days=4), "%Y-%m-%d"),
        (pd.date_range("2020-01-01", periods=24, freq="MS") + pd.Timedelta(days=4), "%d/%m/%Y"),
        (pd.date_range("2000-01-01", periods=24, freq="YS") + pd.Timedelta(days=14), "%Y-%m-%d"),
    ],
)
def test_months_on_another_day_are_refused_with_how_to_stamp_them(
    tmp_path: Path, dates: pd.DatetimeIndex, fmt: str
) -> None:
    """pandas has no frequency for 'the 5th of every month'; the modal step's '31D' misfit
    was the message, with advice to pass a calendar frequency that does not exist."""
    path = tmp_path / "fifth.csv"
    pd.DataFrame({"date": dates.strftime(fmt), "v": range(24)}).to_csv(path, index=False)
    day = dates[0].day
    with pytest.raises(FrequencyError, match=rf"every timestamp falls on day {day} of its month"):
        load_data(path, LoadConfig(target="v"))
    restamped = tmp_path / "first.csv"
    first = dates.to_period("M").to_timestamp()  # what the message advises
    pd.DataFrame({"date": first.strftime(fmt), "v": range(24)}).to_csv(restamped, index=False)
    assert load_data(restamped, LoadConfig(target="v")).freq in {"MS", "YS-JAN"}


@pytest.mark.parametrize(
    ("zone", "freq", "parquet"),
    [
        ("Europe/Berlin", "MS", False),  # +01:00 and +02:00: UTC clocks 23:00 and 22:00
        ("Europe/Berlin", "MS", True),  # a zoned Parquet column
        ("+01:00", "MS", False),  # one offset: UTC would read the last day, 23:00
        ("America/New_York", "QS-JAN", False),  # UTC: day 1 at 05:00 or 04:00
        ("Asia/Tokyo", "ME", False),  # UTC: 15:00 the day before a month's end
        ("Europe/Berlin", "D", False),  # daily sales at local midnight
        ("Europe/Berlin", "D", True),
        ("Australia/Sydney", "7D", False),  # weekly, southern daylight saving
    ],
)
def test_dates_written_with_utc_offsets_keep_their_written_dates(
    tmp_path: Path, zone: str, freq: str, parquet: bool
) -> None:
    """'2020-01-01T00:00:00+01:00' names 1 January; in UTC it was 23:00 on 31 December, and a
    file that follows daylight saving was refused (its UTC clocks alternate, no daily or
    monthly grid held them). Dates are read on the clock they were written in; the calendar
    reads them so."""
    periods = 400 if freq in ("D", "7D") else 40
    written = pd.date_range("2005-01-01" if freq != "ME" else "2005-01-31", periods=periods,
                            freq=freq, tz=zone)  # fmt: skip
    frame = pd.DataFrame({"date": written, "v": np.arange(float(periods))})
    if parquet:
        path = tmp_path / "zoned.parquet"
        frame.to_parquet(path)
    else:
        path = tmp_path / "zoned.csv"
        frame.assign(date=[t.isoformat() for t in written]).to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="v"))
    assert data.freq == freq
    assert data.series["zoned"].index.equals(
        pd.DatetimeIndex(written.tz_localize(None), name="timestamp")
    )
    assert steps(data, "timezone") == []  # so the model's calendar is on the written clock
    (kept,) = [d for d in steps(data, "read") if "on the clock they were written in" in d.message]
    assert kept.count == periods
    utc = written[0].tz_convert("UTC").tz_localize(None)
    assert f"({written[0].tz_localize(None)} is {utc} UTC)" in kept.message


def test_day_first_dates_with_offsets_keep_the_order_the_file_was_read_in(
    tmp_path: Path,
) -> None:
    """The written clock was first taken from a second parse of each row, which read
    '01/04/2021' month first (4 January) where the file's own parse had settled on day first:
    the file was refused with gaps it does not have. It is now the parsed instant plus each
    row's written offset."""
    written = pd.date_range("2021-03-20", "2021-04-20", freq="D", tz="Europe/Paris")
    offsets = [t.strftime("%z") for t in written]
    path = tmp_path / "paris.csv"
    dates = [
        t.strftime("%d/%m/%Y %H:%M") + z[:3] + ":" + z[3:]
        for t, z in zip(written, offsets, strict=True)
    ]
    pd.DataFrame({"date": dates, "v": np.arange(float(len(written)))}).to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="v"))
    assert data.freq == "D"
    assert data.series["paris"].index.equals(
        pd.DatetimeIndex(written.tz_localize(None), name="timestamp")
    )


@pytest.mark.parametrize(
    "zones", [("Asia/Kolkata", "Asia/Tokyo"), ("Europe/Berlin", "America/New_York")]
)
def test_stores_in_different_zones_keep_their_written_dates(
    tmp_path: Path, zones: tuple[str, str]
) -> None:
    """The rule was decided on the file's instants: stores in Delhi and Tokyo write the same
    midnights 3.5 hours apart in UTC, so every date came out a day early (Berlin beside New
    York was refused). It is decided on the written clock now."""
    frames = [
        pd.DataFrame(
            {
                "store": zone,
                "date": [t.isoformat() for t in pd.date_range("2024-01-01", periods=100,
                                                                 freq="D", tz=zone)],
                "y": np.arange(100.0),
            }
        )
        for zone in zones
    ]  # fmt: skip
    path = tmp_path / "stores.csv"
    pd.concat(frames).to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="y", series_col="store"))
    assert data.freq == "D"
    expected = pd.date_range("2024-01-01", periods=100, freq="D", name="timestamp")
    for zone in zones:
        assert data.series[zone].index.equals(expected), zone


def test_dates_in_utc_and_hours_with_offsets_are_read_in_utc(tmp_path: Path) -> None:
    """Only dates written off UTC keep their written clock: at +00:00 they are UTC's, and
    hourly data with offsets is converted to UTC as before."""
    months = pd.date_range("2005-01-01", periods=30, freq="MS", tz="UTC")
    path = tmp_path / "utc.csv"
    pd.DataFrame({"date": [t.isoformat() for t in months], "v": 1.0}).to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="v"))
    assert data.freq == "MS" and [d.count for d in steps(data, "timezone")] == [30]
    hours = pd.date_range("2020-03-28", periods=72, freq="h", tz="Europe/Berlin")
    path = tmp_path / "hours.csv"
    pd.DataFrame({"time": [t.isoformat() for t in hours], "v": 1.0}).to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="v"))
    assert data.freq == "h" and [d.count for d in steps(data, "timezone")] == [72]
    assert data.series["hours"].index[0] == pd.Timestamp("2020-03-27 23:00")


def test_month_long_fixed_steps_and_mixed_month_days_keep_the_modal_step(tmp_path: Path) -> None:
    """Every 30 days is a fixed step (its days of the month drift); month starts at two times
    of day are no month grid: the modal step's misfit is reported as before."""
    path = tmp_path / "thirty.csv"
    stamps = pd.date_range("2020-01-05", periods=20, freq="30D")
    pd.DataFrame({"date": stamps.strftime("%Y-%m-%d"), "v": range(20)}).to_csv(path, index=False)
    assert load_data(path, LoadConfig(target="v")).freq == "30D"
    starts = pd.date_range("2020-01-01", periods=12, freq="MS")
    mixed = starts + pd.to_timedelta([0, 6] * 6, unit="h")
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"date": mixed.strftime("%Y-%m-%d %H:%M"), "v": range(12)}).to_csv(
        path, index=False
    )
    with pytest.raises(FrequencyError, match=r"not on the '750h' grid"):
        load_data(path, LoadConfig(target="v"))


def test_short_series_are_refused_or_dropped_on_request(tmp_path: Path) -> None:
    text = "id,timestamp,y\na,2020-01-01 00:00,1\na,2020-01-01 01:00,2\nb,2020-01-01 00:00,3\n"
    path = write(tmp_path, text)
    with pytest.raises(SeriesTooShortError, match=r"'b' has 1 row after .* min_length=2") as e:
        load_data(path, LoadConfig(target="y", series_col="id"))
    assert "(1 of 2 series are; the longest has 2 rows)" in str(e.value)
    with pytest.raises(SeriesTooShortError, match=r"every series is shorter than min_length=3"):
        load_data(path, LoadConfig(target="y", series_col="id", min_length=3, on_short="drop"))
    data = load_data(path, LoadConfig(target="y", series_col="id", on_short="drop"))
    assert list(data.series) == ["a"]
    assert [d.subject for d in steps(data, "drop")] == ["b"]
    # one row is said in the singular ("1 rows" read as a slip)
    assert [d.message for d in steps(data, "drop")] == [
        "series 'b': dropped: 1 row, fewer than min_length=2 (on_short='drop')"
    ]
    summary = [d.message for d in steps(data, "summary")]
    assert any("1 row at most, fewer than min_length=2" in line for line in summary)


# --- errors ----------------------------------------------------------------------------------


def test_unknown_suffix_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError) as said:
        load_data(write(tmp_path, "a,b", "log.xlsx"), LoadConfig(target="b"))
    assert str(said.value) == (
        "log.xlsx: unsupported file type '.xlsx' (an Excel workbook: save the sheet as "
        "'CSV UTF-8' in Excel); allowed suffixes: .csv, .csv.gz, .tsv, .tsv.gz, .txt, .txt.gz, "
        ".parquet, .pq"
    )
    with pytest.raises(UnsupportedFormatError, match=r"^log\.dat: unsupported file type '\.dat';"):
        load_data(write(tmp_path, "a,b", "log.dat"), LoadConfig(target="b"))


def test_tab_separated_and_text_files_read_as_csv_with_their_separator(tmp_path: Path) -> None:
    """A .tsv, .txt or their .gz read as delimited text: the same series as the CSV, with
    `sep` saying what splits them; a .tsv read with the default ',' names the tab."""
    rows = csv_of(hourly(30), [str(float(k % 7)) for k in range(30)])
    expected = load_data(write(tmp_path, rows, "log.csv"), LoadConfig(target="y"))
    tabbed = rows.replace(",", "\t")
    for name in ("log.tsv", "log.txt"):
        path = write(tmp_path, tabbed, name)
        data = load_data(path, LoadConfig(target="y", sep="\t"))
        pd.testing.assert_series_equal(data.series["log"]["y"], expected.series["log"]["y"])
    gz = tmp_path / "log.txt.gz"
    gz.write_bytes(gzip.compress(rows.encode()))
    data = load_data(gz, LoadConfig(target="y"))
    assert list(data.series) == ["log"]  # the suffix, .txt.gz, is cut off whole
    pd.testing.assert_series_equal(data.series["log"]["y"], expected.series["log"]["y"])
    with pytest.raises(WrongSeparatorError, match=r"the file looks tab-separated: pass sep='\\t'"):
        load_data(tmp_path / "log.tsv", LoadConfig(target="y"))


def test_missing_column_lists_the_columns_the_file_has(tmp_path: Path) -> None:
    path = write(tmp_path, csv_of(hourly(3), list("123")))
    with pytest.raises(
        MissingColumnError, match=r"no column 'temp'; the file has: 'timestamp', 'y', 'x'"
    ):
        load_data(path, LoadConfig(target="y", covariates=("temp",)))


def test_column_lists_in_errors_are_quoted_so_spaces_and_commas_show(tmp_path: Path) -> None:
    """A header `date, OT` was listed as `date,  OT`: the space that makes 'OT' missing, and a
    comma inside a quoted name, could not be seen."""
    path = write(tmp_path, 'date, OT,"a,b"\n2020-01-01,1,2\n2020-01-02,2,3\n')
    with pytest.raises(MissingColumnError) as caught:
        load_data(path, LoadConfig(target="OT"))
    assert str(caught.value).endswith(
        "no column 'OT'; the file has: 'date', ' OT', 'a,b'; 'OT' is written ' OT' in the file: "
        "give the name as written, or fix the header"
    )
    with pytest.raises(MissingColumnError) as caught:
        load_data(write(tmp_path, "when, v\n1,2\n", "other.csv"), LoadConfig(target=" v"))
    assert str(caught.value).endswith("The file has: 'when', ' v'")
    empty = write(tmp_path, "timestamp,y, x\n2020-01-01,1,\n2020-01-02,2,\n", "empty.csv")
    said = r"column ' x' has no value in any of its 2 rows .*or leave ' x' out of covariates"
    with pytest.raises(EmptyDataError, match=said):
        load_data(empty, LoadConfig(target="y", covariates=(" x",)))


def test_bad_and_empty_timestamps_name_the_row(tmp_path: Path) -> None:
    stamps = hourly(4)
    stamps[2] = "2020-13-45 00:00:00"
    with pytest.raises(TimestampParseError, match=r"data row 3 .*'2020-13-45 00:00:00'"):
        load_data(write(tmp_path, csv_of(stamps, list("1234"))), LoadConfig(target="y"))
    stamps[2] = ""
    with pytest.raises(TimestampParseError, match=r"'timestamp', data row 3 .*empty"):
        load_data(write(tmp_path, csv_of(stamps, list("1234"))), LoadConfig(target="y"))


def test_non_numeric_cell_names_file_column_row_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, csv_of(hourly(4), ["1", "2", "n/a?", "4"]))
    with pytest.raises(NonNumericValueError, match=r"log\.csv: column 'y', data row 3 .*'n/a\?'"):
        load_data(path, LoadConfig(target="y"))


def test_inf_is_an_error_not_a_missing_value(tmp_path: Path) -> None:
    path = write(tmp_path, csv_of(hourly(4), ["1", "2", "3", "4"], ["0", "inf", "2", "3"]))
    with pytest.raises(NonFiniteValueError, match=r"column 'x', data row 2 .*inf"):
        load_data(path, LoadConfig(target="y", covariates=("x",)))


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(EmptyDataError, match="no header"):
        load_data(tmp_path / "empty.csv", LoadConfig(target="y"))
    with pytest.raises(EmptyDataError, match="no data rows"):
        load_data(write(tmp_path, "timestamp,y"), LoadConfig(target="y"))


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"fill": "zero"}, r"fill must be one of 'interpolate', 'ffill', 'none'"),
        ({"duplicates": "sum"}, r"'mean', 'first', 'last', 'error'"),
        ({"on_long_gap": "skip"}, r"'error', 'split'"),
        ({"on_short": "pad"}, r"'error', 'drop'"),
        ({"max_gap": -1}, r"max_gap must be an integer >= 0"),
        ({"freq": "hourly"}, r"not a pandas offset alias"),
        ({"covariates": ("y",)}, r"distinct"),
        ({"timestamp_col": "y"}, r"'y' is the timestamp .* and the target .*one part"),
        (  # was ignored without a word
            {"series_col": "unit", "series_id": "pump-7"},
            r"with series_col='unit' the ids are that column's values: give one or the other",
        ),
        ({"freq": "99999999999999999h"}, r"is a step too long for any timestamp"),
    ],
)
def test_invalid_options_list_the_allowed_values(options: dict[str, object], pattern: str) -> None:
    with pytest.raises(InvalidOptionError, match=pattern):
        LoadConfig(target="y", **options)  # type: ignore[arg-type]


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = LoadConfig(target="cnt", covariates=("temp",), timestamp_col=("dteday", "hr"))
    state = cfg.to_dict()
    assert state["timestamp_col"] == ["dteday", "hr"]
    assert LoadConfig(**state) == cfg


# --- real data -------------------------------------------------------------------------------


def test_bundled_ett_is_the_unmodified_upstream_file() -> None:
    """data/README.md states the md5; CC BY-ND allows only unmodified copies."""
    digest = hashlib.md5(BUNDLED_ETT.read_bytes()).hexdigest()
    assert f"`{digest}  ETT-small/ETTh1.csv`" in (REPO / "data" / "README.md").read_text()
    if SHARED_DATA.is_dir():
        sums = (SHARED_DATA / "MD5SUMS").read_text()
        assert f"{digest}  ./ETT-small/ETTh1.csv" in sums


def test_bundled_ett_loads_clean() -> None:
    data = load_data(BUNDLED_ETT, LoadConfig(target="OT", covariates=ETT_COVARIATES))
    raw = pd.read_csv(BUNDLED_ETT)

    frame = data.series["ETTh1"]
    assert frame.shape == (len(raw), 7)
    assert data.freq == "h"
    np.testing.assert_array_equal(frame["OT"].to_numpy(), raw["OT"].to_numpy())
    assert {d.step for d in data.report} == {"read", "frequency", "summary"}


@pytest.fixture(scope="module")
def pjme() -> tuple[LoadedData, pd.DataFrame]:
    path = SHARED_DATA / "PJM_hourly" / "PJME_hourly.csv"
    return load_data(path, LoadConfig(target="PJME_MW")), pd.read_csv(path)


@needs_shared()
def test_pjm_report_matches_the_file(pjme: tuple[LoadedData, pd.DataFrame]) -> None:
    data, raw = pjme
    stamps = pd.to_datetime(raw["Datetime"])
    n_backwards = int((stamps.diff() < pd.Timedelta(0)).sum())
    n_duplicated_rows = int(stamps.duplicated(keep=False).sum())
    n_extra_rows = int(stamps.duplicated().sum())
    grid = pd.date_range(stamps.min(), stamps.max(), freq="h")
    n_missing = len(grid) - stamps.nunique()
    assert n_backwards > 0 and n_extra_rows > 0 and n_missing > 0  # the quirks are really there

    (sort,) = steps(data, "sort")
    assert sort.count == len(raw)
    assert f"time went backwards at {n_backwards:,} places" in sort.message
    (dup,) = steps(data, "duplicates")
    assert dup.count == n_extra_rows
    assert f"({n_duplicated_rows:,} rows -> {n_duplicated_rows - n_extra_rows:,}" in dup.message
    assert [d.count for d in steps(data, "regularise")] == [n_missing]
    assert [d.count for d in steps(data, "fill")] == [n_missing]

    frame = data.series["PJME_hourly"]
    assert frame.index.equals(pd.DatetimeIndex(grid, name="timestamp"))
    assert int(data.filled["PJME_hourly"]["PJME_MW"].sum()) == n_missing
    first_dup = stamps[stamps.duplicated()].min()
    expected = raw.loc[stamps == first_dup, "PJME_MW"].mean()
    assert frame.loc[first_dup, "PJME_MW"] == pytest.approx(expected)


@needs_shared()
def test_pjm_inserted_hours_are_named_and_the_clock_change_ones_pointed_to(
    pjme: tuple[LoadedData, pd.DataFrame],
) -> None:
    """The report said "inserted 30 missing timestamps" and nothing of where: which hours were
    made up by the fill, and that 29 of them are the hour PJM's local times lack on the
    spring (and, before 2014, autumn) change Sundays, went unsaid."""
    data, raw = pjme
    stamps = pd.DatetimeIndex(pd.to_datetime(raw["Datetime"]).drop_duplicates().sort_values())
    missing = pd.date_range(stamps.min(), stamps.max(), freq="h").difference(stamps)
    per_day = pd.Series(missing, index=missing.normalize()).groupby(level=0).size()
    sundays = int((pd.DatetimeIndex(per_day.index).day_of_week == 6).sum())
    assert (len(missing), sundays) == (30, 29)  # 2010-12-10 00:00, a Friday, is the other
    (regularise,) = steps(data, "regularise")
    named = ", ".join(str(t) for t in missing[:5])
    assert f"; at {named} and 25 more; 29 of them (29 Sundays) are the only gap" in (
        regularise.message
    )
    assert "the hour a daylight-saving change leaves out of local times?" in regularise.message


@pytest.mark.filterwarnings("error::DeprecationWarning")  # pandas 4 removes .dayofweek
def test_a_lone_sunday_hour_of_quarter_hours_is_pointed_to_as_a_clock_change(
    tmp_path: Path,
) -> None:
    """Without the shared data: a quarter-hourly log missing 02:00 to 02:45 of Sunday 29 March
    2020 (Europe's spring change) is pointed to; the guess read `.dayofweek`, which pandas 3
    deprecates (a warning on every such report) and pandas 4 removes."""
    grid = pd.date_range("2020-03-28", periods=4 * 48, freq="15min")
    skipped = (grid >= pd.Timestamp("2020-03-29 02:00")) & (grid < pd.Timestamp("2020-03-29 03:00"))
    stamps = [str(t) for t in grid[~skipped]]
    path = write(tmp_path, csv_of(stamps, ["1"] * len(stamps)))
    (regularise,) = steps(load_data(path, LoadConfig(target="y")), "regularise")
    assert regularise.message.endswith(
        "; at 2020-03-29 02:00:00, 2020-03-29 02:15:00, 2020-03-29 02:30:00, "
        "2020-03-29 02:45:00; 4 of them (1 Sunday) are the only gap of their day, at most an "
        "hour long, on a Sunday: the hour a daylight-saving change leaves out of local times? "
        "Filling makes up values for it; timestamps with UTC offsets (or in UTC) have no such gap"
    )


def test_a_missing_sunday_hour_of_instants_or_counted_steps_gets_no_clock_change_guess(
    tmp_path: Path,
) -> None:
    """Timestamps in UTC (or with offsets, converted to UTC) and counted steps have no hour a
    daylight-saving change leaves out: the report asked of a UTC log's missing Sunday hour
    "the hour a daylight-saving change leaves out of local times? ... timestamps with UTC
    offsets (or in UTC) have no such gap", of timestamps in UTC."""
    grid = pd.date_range("2020-03-27", periods=96, freq="h")
    kept = [k for k, t in enumerate(grid) if t != pd.Timestamp("2020-03-29 01:00")]
    lines = [f"{grid[k].isoformat()}+00:00,{k}" for k in kept]
    path = write(tmp_path, "timestamp,y\n" + "\n".join(lines) + "\n", "utc.csv")
    (regularise,) = steps(load_data(path, LoadConfig(target="y")), "regularise")
    assert regularise.message.endswith("; at 2020-03-29 01:00:00")
    naive = write(tmp_path, "timestamp,y\n" + "\n".join(x[:19] + x[25:] for x in lines) + "\n")
    (regularise,) = steps(load_data(naive, LoadConfig(target="y")), "regularise")
    assert "daylight-saving" in regularise.message  # the same hours, naive: the guess stands
    counted = write(
        tmp_path, "cycle,y\n" + "\n".join(f"{k},{k}" for k in kept) + "\n", "cycles.csv"
    )
    config = LoadConfig(target="y", timestamp_col="cycle", step_origin="2020-03-27", freq="h")
    (regularise,) = steps(load_data(counted, config), "regularise")
    assert regularise.message.endswith("; at 2020-03-29 01:00:00")
    # nor of an hour written twice: in UTC both rows of a time name one instant
    quarters = [
        f"{t.isoformat()}+00:00,1" for t in pd.date_range("2020-10-24", periods=200, freq="15min")
    ]
    twice = [*quarters[:108], *quarters[104:]]  # 2020-10-25 02:00 to 02:45 twice
    path = write(tmp_path, "timestamp,y\n" + "\n".join(twice) + "\n", "twice.csv")
    (merged,) = steps(load_data(path, LoadConfig(target="y", duplicates="mean")), "duplicates")
    assert merged.message.endswith("their values agree")
    naive = write(tmp_path, "timestamp,y\n" + "\n".join(x[:19] + x[25:] for x in twice) + "\n")
    (merged,) = steps(load_data(naive, LoadConfig(target="y", duplicates="mean")), "duplicates")
    assert "daylight-saving change repeats" in merged.message  # naive: the guess stands


def test_missing_hours_off_sundays_get_no_clock_change_guess(tmp_path: Path) -> None:
    stamps = [t for k, t in enumerate(hourly(100)) if k not in (30, 31, 60)]  # Thu, Fri
    path = write(tmp_path, csv_of(stamps, ["1"] * len(stamps)))
    (regularise,) = steps(load_data(path, LoadConfig(target="y")), "regularise")
    assert regularise.message.endswith(
        "; at 2020-01-02 06:00:00, 2020-01-02 07:00:00, 2020-01-03 12:00:00"
    )


@needs_shared()
def test_bike_sharing_missing_hours_are_counted_and_the_long_gap_refused(tmp_path: Path) -> None:
    path = SHARED_DATA / "Bike-Sharing-Dataset" / "hour.csv"
    raw = pd.read_csv(path)
    stamps = pd.to_datetime(raw["dteday"]) + pd.to_timedelta(raw["hr"], unit="h")
    n_missing = len(pd.date_range(stamps.min(), stamps.max(), freq="h")) - len(stamps)
    gaps = (stamps.diff().dropna() / pd.Timedelta(hours=1)).astype(int) - 1
    longest = int(gaps.max())
    recipe = {
        "target": "cnt",
        "covariates": ("temp", "hum"),
        "timestamp_col": ("dteday", "hr"),
        "timestamp_format": "%Y-%m-%d %H",
    }

    n_long = int((gaps > 24).sum())
    with pytest.raises(GapTooLongError, match=f"{n_long} such gap.*at least {longest}"):
        load_data(path, LoadConfig(**recipe))  # type: ignore[arg-type]

    data = load_data(path, LoadConfig(**recipe, max_gap=longest))  # type: ignore[arg-type]
    assert [d.count for d in steps(data, "regularise")] == [n_missing]
    assert [d.count for d in steps(data, "fill")] == [3 * n_missing]
    assert len(data.series["hour"]) == len(stamps) + n_missing

    split = load_data(path, LoadConfig(**recipe, on_long_gap="split"))  # type: ignore[arg-type]
    assert len(split.series) == 1 + int((gaps > 24).sum())
    n_rows = sum(len(f) for f in split.series.values())
    assert n_rows == len(stamps) + n_missing - int(gaps[gaps > 24].sum())


def test_report_lines_are_sentences_naming_their_subject(tmp_path: Path) -> None:
    path = write(tmp_path, csv_of(hourly(3), list("123")))
    lines = load_data(path, LoadConfig(target="y")).report_lines()
    assert all(re.match(r"^(series 'log'|log\.csv): ", line) for line in lines)


def test_series_ids_are_quoted_in_report_lines(tmp_path: Path) -> None:
    """ "North East: filled 1 missing value" read as if "North East" were words of the
    message, and an id with a quote or a trailing space showed neither: every per-series
    line names its series as the refusals do, `series 'North East': ...`."""
    rows = [("North East", t, str(i)) for i, t in enumerate(hourly(6)) if i != 3]
    rows += [('say "hi"', t, str(i)) for i, t in enumerate(hourly(6))]
    text = "id,timestamp,y\n" + "".join(f"{i},{t},{v}\n" for i, t, v in rows)
    path = write(tmp_path, text.replace('say "hi"', '"say ""hi"""'))
    data = load_data(path, LoadConfig(target="y", series_col="id"))
    lines = [line for line in data.report_lines() if not line.startswith("log.csv: ")]
    assert lines and all(re.match(r"^series '(North East|say \"hi\")': ", s) for s in lines)
    assert "series 'North East': filled 1 missing value by linear interpolation" in "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "advice"),
    [
        (
            "datetime;Temperature\n2020-02-08 13:30:47;90.6\n2020-02-08 13:30:48;90.7\n",
            "';'-separated: pass sep=';'",
        ),
        (
            "timestamp\ty\n2020-01-01 00:00\t1\n2020-01-01 01:00\t2\n",
            "tab-separated: pass sep='\\t' (--sep $'\\t')",
        ),
    ],
)
def test_a_header_read_as_one_column_names_the_separator_to_pass(
    tmp_path: Path, text: str, advice: str
) -> None:
    path = write(tmp_path, text, "pump.csv")
    with pytest.raises(InvalidOptionError, match="the header reads as one column") as error:
        load_data(path, LoadConfig(target="Temperature"))
    assert advice in str(error.value)
    sep = ";" if ";" in text else "\t"
    target = "Temperature" if sep == ";" else "y"
    assert load_data(path, LoadConfig(target=target, sep=sep)).target == target


def test_a_comma_file_read_with_another_separator_names_the_comma(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,y\n2020-01-01 00:00,1\n2020-01-01 01:00,2\n", "plant.csv")
    with pytest.raises(InvalidOptionError, match="','-separated: pass sep=','"):
        load_data(path, LoadConfig(target="y", sep=";"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_column_named_twice_is_refused_not_guessed(tmp_path: Path, suffix: str) -> None:
    text = "timestamp,y,y\n2020-01-01 00:00,1,5\n2020-01-01 01:00,2,6\n"
    path = write(tmp_path, text, "twice.csv")
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            [pa.array(["2020-01-01 00:00"]), pa.array([1.0]), pa.array([5.0])],
            names=["timestamp", "y", "y"],
        )
        path = tmp_path / "twice.parquet"
        pq.write_table(table, path)
    with pytest.raises(DataValidationError, match=r"names column 'y' twice \(columns 2 and 3\)"):
        load_data(path, LoadConfig(target="y"))


def test_a_series_that_would_be_mostly_filled_is_refused(tmp_path: Path) -> None:
    """One region logged every 2 h in a file of hourly ones: at 'h' half its history would be
    interpolated; refused with the step it is recorded at, unless the cap is raised."""
    hourly = pd.date_range("2020-01-01", periods=200, freq="h")
    rows = [("A", t, float(k)) for k, t in enumerate(hourly)]
    rows += [("B", t, float(k)) for k, t in enumerate(hourly[::2])]
    path = tmp_path / "regions.csv"
    pd.DataFrame(rows, columns=["region", "timestamp", "y"]).to_csv(path, index=False)
    config = LoadConfig(target="y", series_col="region", freq="h")
    with pytest.raises(DataValidationError) as caught:
        load_data(path, config)
    message = str(caught.value)
    assert "series 'B' would be 49.7% filled values at 'h' (max_filled_fraction=0.25)" in message
    assert "its own timestamps step by '2h' most often" in message
    accepted = load_data(path, replace(config, max_filled_fraction=1.0))
    assert accepted.filled["B"].to_numpy().mean() == pytest.approx(99 / 199)
    with pytest.raises(InvalidOptionError, match=r"max_filled_fraction must lie in \(0, 1\]"):
        LoadConfig(target="y", max_filled_fraction=0.0)


@pytest.mark.parametrize("freq", [None, "D", "24h"])
def test_business_day_data_that_would_be_mostly_filled_is_pointed_to_freq_b(
    tmp_path: Path, freq: str | None
) -> None:
    """Weekday-only data at 'D' fills every weekend (26.8%); the advice was to give the
    frequency the data is recorded at, whose own step was shown as '24h' (the same as 'D'),
    and never 'B'."""
    days = pd.bdate_range("2021-01-04", periods=60)
    path = tmp_path / "weekdays.csv"
    pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "y": np.arange(60.0)}).to_csv(
        path, index=False
    )
    config = LoadConfig(target="y", timestamp_col="date", freq=freq)
    with pytest.raises(DataValidationError) as caught:
        load_data(path, config)
    message = str(caught.value)
    assert f"would be 26.8% filled values at {freq or 'D'!r}" in message
    assert "fall on weekdays only (no Saturday or Sunday)" in message
    assert "give freq 'B' (--freq B)" in message and "(freq, --freq)" in message
    assert "'24h' most often" not in message
    data = load_data(path, replace(config, freq="B"))
    assert len(data.series["weekdays"]) == 60 and not data.filled["weekdays"].to_numpy().any()


def test_a_mostly_filled_series_at_its_own_step_is_not_told_its_step_differs(
    tmp_path: Path,
) -> None:
    """Daily data with many missing days: its own modal step is the frequency it is read at,
    so the message says the filled values are gaps, not that it steps by something else."""
    days = pd.date_range("2021-01-01", periods=40, freq="D")
    kept = days[[k for k in range(40) if k % 10 < 3 or k == 39]]  # long holes, 1-day steps
    path = tmp_path / "holes.csv"
    pd.DataFrame({"timestamp": kept, "y": np.arange(float(len(kept)))}).to_csv(path, index=False)
    with pytest.raises(DataValidationError) as caught:
        load_data(path, LoadConfig(target="y"))
    message = str(caught.value)
    assert "its own timestamps also step by 'D' most often: the filled values are gaps" in message
    assert "weekdays" not in message and "'24h'" not in message


@pytest.mark.parametrize(
    "text",
    [
        "a,b,c\n1,2,3\n",
        "\ufeffdate,OT\n1,2\n",  # a byte-order mark
        '"da,te","O""T",x\n1,2,3\n',  # quoted names
        "a,,b\n1,2,3\n",  # an empty name: pandas' "Unnamed: 1"
        "\n\na,b\n1,2\n",  # blank lines first
        " a , b\n1,2\n",
        "a,b\r\n1,2\r\n",
    ],
)
def test_the_header_is_read_as_pandas_names_its_columns(tmp_path: Path, text: str) -> None:
    """header_columns reads the first line itself (pandas' header reading is quadratic in the
    columns: 26 s for 200,000, which POST /jobs waited on); the names must be pandas' own."""
    path = tmp_path / "h.csv"
    path.write_text(text, encoding="utf-8")
    assert header_columns(path) == [str(c) for c in pd.read_csv(path, nrows=0).columns]


def test_has_data_rows_bounds_the_blank_lines_it_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 97 KB .csv.gz of a header and 100 million newlines took 31 s of CPU in a job's
    submission check, skipping blank lines one by one: past BLANK_LINES_MAX blank lines the
    file is refused, naming it; blank lines within the bound are skipped as before."""
    import gzip

    from training import data as data_module
    from training.data import has_data_rows
    from training.validation import UnreadableFileError

    monkeypatch.setattr(data_module, "BLANK_LINES_MAX", 1_000)
    packed = tmp_path / "blank.csv.gz"
    with gzip.open(packed, "wb") as out:
        out.write(b"timestamp,y\n" + b"\n" * 5_000 + b"2020-01-01,1\n")
    with pytest.raises(UnreadableFileError, match=r"blank\.csv\.gz: more than 1,000 blank lines"):
        has_data_rows(packed)
    spaced = write(tmp_path, "timestamp,y\n" + "\n" * 900 + "2020-01-01,1\n", name="spaced.csv")
    assert has_data_rows(spaced)


def test_has_data_rows_reads_past_the_header_only(tmp_path: Path) -> None:
    from training.data import has_data_rows

    assert has_data_rows(write(tmp_path, "timestamp,y\n2020-01-01,1\n"))
    assert not has_data_rows(write(tmp_path, "timestamp,y\n\n\n", name="empty.csv"))
    frame = pd.DataFrame({"y": [1.0]}, index=pd.date_range("2020", periods=1, name="t"))
    frame.to_parquet(tmp_path / "one.parquet")
    frame.iloc[:0].to_parquet(tmp_path / "none.parquet")
    assert has_data_rows(tmp_path / "one.parquet") and not has_data_rows(tmp_path / "none.parquet")
    # a separator of two characters (pandas reads it as a pattern)
    assert has_data_rows(write(tmp_path, "t;;y\n2020-01-01;;1\n", name="w.csv"), sep=";;")
    assert not has_data_rows(write(tmp_path, "t;;y\n", name="h.csv"), sep=";;")


def test_separator_messages_for_tab_and_whitespace_files_and_a_false_gz(tmp_path: Path) -> None:
    """A .tsv whose header also holds ';' or ', ' was told to use ';' or met a missing column;
    a whitespace-aligned .txt got "timestamp_col not given"; plain text named .gz got gzip's
    "Not a gzipped file (b'ti')"; a file named '.tsv' loaded as the series ''."""
    rows = "timestamp,load,temp\n" + "".join(
        f"2024-01-01 {h:02d}:00:00,{h},{2 * h}\n" for h in range(24)
    )
    tabbed = rows.replace(",", "\t")
    for name, header in [("semi.tsv", "load;raw"), ("comma.tsv", "Load, MW")]:
        path = write(tmp_path, tabbed.replace("load", header), name)
        with pytest.raises(WrongSeparatorError, match=r"looks tab-separated: pass sep='\\t'"):
            load_data(path, LoadConfig(target=header))
        assert len(load_data(path, LoadConfig(target=header, sep="\t")).series) == 1
    aligned = write(tmp_path, "cycle  load  temp\n" + "1  2.0  3.0\n2  2.5  3.5\n", "fd.txt")
    with pytest.raises(WrongSeparatorError) as said:
        load_data(aligned, LoadConfig(target="load"))
    assert str(said.value) == (
        "fd.txt: the header reads as one column 'cycle  load  temp' with sep=','; the file "
        r"looks whitespace-separated: pass sep=r'\s+' (--sep '\s+'); a time written with a "
        "space ('2024-07-01 00:00') then splits in two: write it with a T ('2024-07-01T00:00')"
    )
    false_gz = write(tmp_path, rows, "log.txt.gz")
    with pytest.raises(UnreadableFileError) as unread:
        load_data(false_gz, LoadConfig(target="load"))
    assert str(unread.value) == (
        "log.txt.gz: the file is named .gz but is not gzip-compressed; name it log.txt "
        "(without .gz)"
    )
    no_stem = write(tmp_path, tabbed, ".tsv")
    assert list(load_data(no_stem, LoadConfig(target="load", sep="\t")).series) == [".tsv"]


def test_a_first_line_of_numbers_is_refused_as_no_header(tmp_path: Path) -> None:
    """C-MAPSS's train_FD001.txt (space-separated, no header) read with sep='\\s+' reported a
    column named '1' twice; an unnamed index over integer column names (",0,1", as
    DataFrame.to_csv writes one) is a header and still reads."""
    data = "1 1 -0.0007 518.67\n1 2 0.0019 518.67\n1 3 -0.0043 518.67\n"
    with pytest.raises(DataValidationError) as said:
        load_data(write(tmp_path, data, "train_FD001.txt"), LoadConfig(target="s1", sep=r"\s+"))
    assert str(said.value) == (
        "train_FD001.txt: the first line holds only numbers (1, 1, -0.0007, 518.67, ...), not "
        "column names: the file has no header line; add one naming the columns, as the first "
        "line"
    )
    frame = pd.DataFrame({0: [1.0, 2.0, 3.0], 1: [4.0, 5.0, 6.0]}, index=hourly(3))
    path = tmp_path / "indexed.csv"
    frame.to_csv(path)
    loaded = load_data(path, LoadConfig(target="1", timestamp_col="Unnamed: 0"))
    assert list(loaded.series["indexed"]["1"]) == [4.0, 5.0, 6.0]
    # integer names without the index ('0,1'): names, not data
    dated = pd.DataFrame({0: hourly(3), 1: [4.0, 5.0, 6.0]})
    dated.to_csv(tmp_path / "named.csv", index=False)
    loaded = load_data(tmp_path / "named.csv", LoadConfig(target="1", timestamp_col="0"))
    assert list(loaded.series["named"]["1"]) == [4.0, 5.0, 6.0]
    negative = pd.DataFrame({-1: hourly(3), 0: [4.0, 5.0, 6.0]})  # '-1,0': names too
    negative.to_csv(tmp_path / "negative.csv", index=False)
    loaded = load_data(tmp_path / "negative.csv", LoadConfig(target="0", timestamp_col="-1"))
    assert list(loaded.series["negative"]["0"]) == [4.0, 5.0, 6.0]
    # a separator ending the line leaves an empty last name: still a line of numbers
    trailing = write(tmp_path, data.replace("\n", " \n"), "trailing.txt")
    with pytest.raises(DataValidationError, match="the first line holds only numbers"):
        load_data(trailing, LoadConfig(target="s1", sep=" "))


@pytest.mark.parametrize("order", ["cut first", "cut second"])
def test_a_cut_series_whose_part_name_is_taken_is_the_one_named(tmp_path: Path, order: str) -> None:
    """'DEOK' cut at a long gap into 'DEOK#1', 'DEOK#2' beside a series of the file called
    'DEOK#1': the message named the uncut 'DEOK#1' as the series cut, when it came second."""
    stamps = hourly(40)
    cut = [("DEOK", t, "" if 10 <= k < 20 else "1") for k, t in enumerate(stamps)]
    other = [("DEOK#1", t, "2") for t in stamps]
    rows = cut + other if order == "cut first" else other + cut
    text = "id,timestamp,y\n" + "".join(f"{i},{t},{y}\n" for i, t, y in rows)
    config = LoadConfig(target="y", series_col="id", on_long_gap="split", max_gap=3, min_length=3)
    with pytest.raises(DataValidationError) as caught:
        load_data(write(tmp_path, text), config)
    assert str(caught.value).startswith(
        "log.csv: series 'DEOK' is cut at a long gap into parts named like 'DEOK#1', which is "
        "also the id of another series of the file"
    )


def test_a_first_line_past_the_line_bound_is_refused_before_it_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 291 KB .csv.gz of zeros (one 300 MB line) was read whole by the header check: 4 s
    and 680 MB in the API process for one POST /jobs, and a few MB of it took gigabytes."""
    import gzip

    from training import data as data_module
    from training.data import has_data_rows
    from training.validation import UnreadableFileError

    monkeypatch.setattr(data_module, "MAX_LINE_CHARS", 1_000)
    packed = tmp_path / "zeros.csv.gz"
    with gzip.open(packed, "wb") as out:
        out.write(b"\x00" * 5_000)  # no newline: one line
    with pytest.raises(UnreadableFileError, match=r"zeros\.csv\.gz: a line longer than 1,000 "):
        header_columns(packed)
    # a data row past the bound is refused where the header checks read it
    long_row = write(tmp_path, "timestamp,y\n" + "2020-01-01," + "1" * 2_000 + "\n")
    with pytest.raises(UnreadableFileError, match="a line longer than 1,000 characters"):
        has_data_rows(long_row)
    # lines within it read as before
    fine = write(tmp_path, "timestamp,y\n2020-01-01,1\n2020-01-02,2\n", "fine.csv")
    assert header_columns(fine) == ["timestamp", "y"]
    assert has_data_rows(fine)


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        (
            {"series_col": "Pressure"},
            "column 'Pressure' is the series column (series_col, --series-col) and the target "
            "(target, --target)",
        ),
        (
            {"covariates": ("Current",), "series_col": "Current"},
            "column 'Current' is the series column (series_col, --series-col) and a covariate "
            "(covariates, --covariates)",
        ),
        (
            {"covariates": ("Current",), "timestamp_col": "Current"},
            "column 'Current' is the timestamp (timestamp_col, --timestamp-col) and a covariate "
            "(covariates, --covariates)",
        ),
    ],
)
def test_a_column_given_two_parts_is_named_with_both_options(
    fields: dict[str, object], said: str
) -> None:
    """`urnn train --target Pressure --series-col Pressure` (SKAB) was answered "column(s)
    ['Pressure'] cannot be both a timestamp/series column and a value column": neither the
    parts nor the options that gave them named."""
    with pytest.raises(InvalidOptionError) as error:
        LoadConfig(target="Pressure", **fields)  # type: ignore[arg-type]
    assert str(error.value).startswith(said), str(error.value)
    assert str(error.value).endswith("each column plays one part")


@pytest.mark.parametrize(
    "fields",
    [
        {},  # the timestamp column found by name
        {"timestamp_format": "%Y-%m-%d %H:%M:%S"},
        {"series_col": "run"},
        {"timestamp_col": "step", "step_origin": "2020-01-01", "freq": "s"},  # C-MAPSS cycles
    ],
)
def test_a_header_line_repeated_among_the_rows_is_named_as_such(
    tmp_path: Path, fields: dict[str, object]
) -> None:
    """SKAB's runs joined with `cat 0.csv 1.csv > all.csv` keep the second file's header as
    a data row. It was refused as "cannot parse 'datetime' as a timestamp ... pass a
    timestamp_format that matches the text shown", advice about a format that no format
    helps; or, with step numbers, "'step' is not a whole step number"."""
    header = "datetime;step;run;Pressure"
    rows = [f"2020-03-09 10:14:3{i};{i + 1};a;0.{i}" for i in range(4)]
    text = "\n".join([header, *rows[:2], header, *rows[2:], header, *rows[2:]])
    path = write(tmp_path, text, "joined.csv")
    with pytest.raises(TimestampParseError) as error:
        load_data(path, LoadConfig(target="Pressure", sep=";", **fields))  # type: ignore[arg-type]
    message = str(error.value)
    assert message.startswith(
        "joined.csv: data row 3 (1-based, header not counted) repeats the header line (2 such "
        "rows): files joined with their header lines?"
    ), message
    assert "delete the repeated header lines" in message


def test_a_fleet_series_without_one_value_of_a_column_names_its_rows_and_the_remedy(
    tmp_path: Path,
) -> None:
    """A fleet where one unit's target never came through (all cells empty), or a covariate
    is logged for some units only: the refusal said "series 'b': column(s) 'y' have no
    values", no rows to look at and nothing to do about it."""
    rows = [
        f"{s},2020-01-01 0{h}:00,{'' if s == 'b' else h},{'' if s == 'b' else 1}"
        for h in range(4)
        for s in "ab"
    ]
    path = write(tmp_path, "id,timestamp,y,x\n" + "\n".join(rows) + "\n", "fleet.csv")
    with pytest.raises(EmptyDataError) as caught:
        load_data(path, LoadConfig(target="y", series_col="id"))
    assert str(caught.value) == (
        "fleet.csv: series 'b': column 'y' has no value in any of its 4 rows (data rows 2 to 8, "
        "1-based, header not counted): every series needs values of the target: fill them in, "
        "or leave series 'b' out of the file"
    )
    half = path.read_text().replace(",,\n", ",3,\n")  # b has its target, not the covariate
    path.write_text(half)
    with pytest.raises(EmptyDataError) as caught:
        load_data(path, LoadConfig(target="y", covariates=("x",), series_col="id"))
    assert str(caught.value).endswith(
        "series 'b': column 'x' has no value in any of its 4 rows (data rows 2 to 8, 1-based, "
        "header not counted): every series needs values of each covariate: fill them in, "
        "leave series 'b' out of the file, or leave 'x' out of covariates (--covariates)"
    )


def test_offsets_in_some_series_of_a_fleet_only_name_the_series_of_each_kind(
    tmp_path: Path,
) -> None:
    """A fleet whose units' loggers differ, some writing their UTC offset and some none: the
    refusal named two data rows only, and a user of a file of many interleaved series had to
    look up which units to fix."""
    rows = ["site,timestamp,y"]
    for hour, stamp in enumerate(hourly(4)):
        rows += [f"north,{stamp}+01:00,{hour}", f"south,{stamp},{hour}", f"east,{stamp}Z,{hour}"]
    path = write(tmp_path, "\n".join(rows) + "\n", "fleet.csv")
    with pytest.raises(TimestampParseError) as refused:
        load_data(path, LoadConfig(target="y", series_col="site"))
    said = str(refused.value)
    assert "8 rows carry a UTC offset (first data row 1 (1-based, header not counted), " in said
    assert "series 'north': " in said and "series 'south': " in said, said
    assert "series with offsets: 'east', 'north'; without: 'south'" in said, said


def test_a_fleet_series_at_a_finer_step_than_the_others_is_named_with_its_own_step(
    tmp_path: Path,
) -> None:
    """One meter at 15 min among hourly ones: the refusal advised "pass the freq the data is
    recorded at", and --freq 15min then refused every hourly series as 75 % filled. It says
    the series' own step beside the file's, and the ways out that work for a fleet."""
    rows = ["site,timestamp,y"]
    for site in ("a", "b", "c"):
        rows += [f"{site},{t},{i}" for i, t in enumerate(hourly(48))]
    quarter = pd.date_range("2020-01-01", periods=48, freq="15min")
    rows += [f"q,{t},{i}" for i, t in enumerate(quarter)]
    path = write(tmp_path, "\n".join(rows) + "\n", "fleet.csv")
    with pytest.raises(FrequencyError) as refused:
        load_data(path, LoadConfig(target="y", series_col="site"))
    said = str(refused.value)
    assert "series 'q': timestamp 2020-01-01 00:15:00 at data row 146" in said, said
    assert said.endswith(
        ". Series 'q' steps by '15min' (47 of its 47 steps), finer than the file's 'h': "
        "resample it to 'h' (pandas: resample('h').mean()), leave it out of this file, or "
        "load the series of each frequency from a file of their own"
    ), said


@pytest.mark.parametrize(
    ("cell", "said"),
    [("n/a?", "'n/a?' is not a number"), ("inf", "value is inf")],
)
def test_a_bad_cell_of_a_fleet_names_its_series(tmp_path: Path, cell: str, said: str) -> None:
    """A cell of a long file that is not a number, or is infinite, was named by column and
    data row only: in a file of interleaved units the user had to count rows to learn which
    unit's logger wrote it."""
    rows = [f"{s},2020-01-01 0{h}:00,{h}" for h in range(4) for s in "ab"]
    rows[5] = f"b,2020-01-01 02:00,{cell}"
    path = write(tmp_path, "id,timestamp,y\n" + "\n".join(rows) + "\n", "fleet.csv")
    with pytest.raises((NonNumericValueError, NonFiniteValueError)) as caught:
        load_data(path, LoadConfig(target="y", series_col="id"))
    assert str(caught.value).startswith(
        f"fleet.csv: column 'y', data row 6 (1-based, header not counted), series 'b': {said}"
    ), caught.value


def test_a_date_the_calendar_lacks_is_refused_as_such_not_as_a_format_to_give(
    tmp_path: Path,
) -> None:
    """'2018-02-30 01:00:00' in one unit's rows was refused with the advice to pass a
    timestamp_format matching the text, e.g. '%Y-%m-%d %H:%M:%S': the very format the row is
    written in, which refuses the cell again. No format reads a 30th of February."""
    rows = [f"{s},2018-02-2{h} 01:00:00,{h}" for h in range(4) for s in "ab"]
    rows[5] = "b,2018-02-30 01:00:00,2"
    path = write(tmp_path, "id,timestamp,y\n" + "\n".join(rows) + "\n", "fleet.csv")
    for fmt in (None, "%Y-%m-%d %H:%M:%S"):
        with pytest.raises(TimestampParseError) as caught:
            load_data(path, LoadConfig(target="y", series_col="id", timestamp_format=fmt))
        said = str(caught.value)
        assert (
            "data row 6 (1-based, header not counted), series 'b': cannot parse "
            "'2018-02-30 01:00:00' as a timestamp (it is no date of the calendar: 2018-02 has "
            "28 days): no timestamp_format reads it; fix the cell"
        ) in said, said
        assert "pass a timestamp_format" not in said, said
    # an empty time cell of a fleet names its unit too
    path.write_text(path.read_text().replace("b,2018-02-30 01:00:00", "b,"))
    with pytest.raises(TimestampParseError) as caught:
        load_data(path, LoadConfig(target="y", series_col="id"))
    assert "data row 6 (1-based, header not counted), series 'b': empty timestamp" in str(
        caught.value
    )


def test_duplicates_error_in_a_fleet_names_how_many_series_repeat_a_timestamp(
    tmp_path: Path,
) -> None:
    """PJM's six regions each repeat the daylight-saving hour: duplicates='error' named
    region 'COMED' alone, so a user fixed one series and met the next refusal five times. The
    refusal counts the series with duplicates and names a few, each with its first."""
    rows = []
    for unit in range(1, 9):
        hours = [0, 1, 2, 3, 3, 4, 5] if unit <= 7 else [0, 1, 2, 3, 4, 5]
        rows += [f"s{unit},2020-01-01 {h:02d}:00,{h}\n" for h in hours]
    path = write(tmp_path, "unit,time,y\n" + "".join(rows))
    with pytest.raises(DuplicateTimestampError) as refused:
        load_data(path, LoadConfig(target="y", series_col="unit", duplicates="error"))
    assert str(refused.value) == (
        "log.csv: 7 of the 8 series have duplicated timestamps (7 timestamps, 14 rows in all): "
        "series 's1' (first 2020-01-01 03:00:00 at data rows 4, 5), 's2' (first 2020-01-01 "
        "03:00:00 at data rows 11, 12), 's3' (first 2020-01-01 03:00:00 at data rows 18, 19), "
        "'s4' (first 2020-01-01 03:00:00 at data rows 25, 26), 's5' (first 2020-01-01 03:00:00 "
        "at data rows 32, 33) and 2 more (data rows 1-based, header not counted). Set "
        "duplicates to one of mean, first, last to merge them"
    )
    # one series of a fleet: as before, that series and its count
    one = write(tmp_path, "unit,time,y\n" + "".join(rows[:7]) + "".join(rows[-6:]), "one.csv")
    with pytest.raises(DuplicateTimestampError, match=r"^one.csv: series 's1' has 1 dup"):
        load_data(one, LoadConfig(target="y", series_col="unit", duplicates="error"))
    # every series of the fleet: said so
    every = write(tmp_path, "unit,time,y\n" + "".join(rows[:14]), "every.csv")
    with pytest.raises(DuplicateTimestampError, match=r"^every.csv: all 2 series have dup"):
        load_data(every, LoadConfig(target="y", series_col="unit", duplicates="error"))
    # more than two rows under one time (duplicates='mean'): the others refused so are named
    triple = "".join(f"s{u},2020-01-01 0{h}:00,{h + k}\n" for u in range(1, 4) for h in range(4)
                     for k in (range(3) if h == 2 else range(1)))  # fmt: skip
    with pytest.raises(DuplicateTimestampError, match=r"\(2 more series are refused so too: "
                       r"'s2', 's3'\)$"):  # fmt: skip
        load_data(write(tmp_path, "unit,time,y\n" + triple, "triple.csv"),
                  LoadConfig(target="y", series_col="unit"))  # fmt: skip


_ONE_BAD: list[tuple[str, str, dict[str, str], str]] = [
    # (what, the one bad timestamp cell, LoadConfig extras, the singular said)
    ("unparseable", "not a time", {}, "; 1 row fails"),
    ("empty", "", {}, "(1 such cell in this column)"),
    ("step number", "2.5", {"step_origin": "2000-01-01", "freq": "h"}, "; 1 row fails"),
    ("offset in one row", "2020-01-01 05:00:00+01:00", {}, "1 row carries a UTC offset"),
    ("off the grid", "2020-01-01 05:30:00", {"freq": "h"}, "(1 timestamp is off it)"),
]


@pytest.mark.parametrize(("what", "cell", "extra", "said"), _ONE_BAD, ids=[c[0] for c in _ONE_BAD])
def test_a_refusal_of_one_row_says_it_in_the_singular(
    tmp_path: Path, what: str, cell: str, extra: dict[str, str], said: str
) -> None:
    """ "1 rows fail", "1 such cells", "1 timestamps are off it": the counts of refusals are
    read by people, and one bad row is the commonest count there is."""
    stamps = [str(i) for i in range(8)] if "step_origin" in extra else hourly(8)
    stamps[5] = cell
    path = write(tmp_path, csv_of(stamps, [str(i) for i in range(8)]))
    with pytest.raises(DataValidationError) as refused:
        load_data(path, LoadConfig(target="y", **extra))  # type: ignore[arg-type]
    assert said in str(refused.value), str(refused.value)


def test_duplicates_error_on_a_fleet_read_as_one_series_names_series_col(tmp_path: Path) -> None:
    """duplicates='error' on a long file read without series_col said only "Set duplicates to
    one of mean, first, last", which would average the fleet into one series: the refusal now
    asks first whether the file holds several series, names series_col (--series-col) and the
    column that looks like the id; a timestamp or two repeated (a daylight-saving hour) is
    not taken for a fleet."""
    stamps = hourly(24)
    rows = [f"{region},{t},{i}" for region in ("North East", "West") for i, t in enumerate(stamps)]
    path = write(tmp_path, "region,timestamp,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(SeriesDuplicatesError) as refused:
        load_data(path, LoadConfig(target="y", duplicates="error"))
    assert str(refused.value) == (
        "log.csv: series 'log' has 24 duplicated timestamps (48 rows); the first is "
        "2020-01-01 00:00:00 at data rows 1, 25 (1-based, header not counted). Does the file "
        "hold several series (one row per series and time)? Name their id column with "
        "series_col (--series-col); column 'region' looks like one: without it the file is "
        "read as one series. Otherwise set duplicates to one of mean, first, last to merge them"
    )
    assert isinstance(refused.value, SeveralSeriesError)  # a job's 422 names series_col
    unnamed = write(tmp_path, "k,timestamp,y\n" + "\n".join(rows) + "\n", "unnamed.csv")
    with pytest.raises(SeriesDuplicatesError) as refused:  # no column named like an id
        load_data(unnamed, LoadConfig(target="y", duplicates="error"))
    assert "Name their id column with series_col (--series-col): without it" in str(refused.value)
    once = write(
        tmp_path, csv_of([*stamps[:3], stamps[2], *stamps[3:]], [str(i) for i in range(25)])
    )
    with pytest.raises(SeriesDuplicatesError) as refused:
        load_data(once, LoadConfig(target="y", duplicates="error"))
    assert "series_col" not in str(refused.value)
    assert "Set duplicates to one of mean, first, last" in str(refused.value)


def test_one_duplicated_timestamp_refused_is_said_in_the_singular(tmp_path: Path) -> None:
    stamps = hourly(4)
    path = write(tmp_path, csv_of([*stamps[:2], stamps[1], *stamps[2:]], list("12345")))
    with pytest.raises(DuplicateTimestampError, match=r"has 1 duplicated timestamp \(2 rows\)"):
        load_data(path, LoadConfig(target="y", duplicates="error"))

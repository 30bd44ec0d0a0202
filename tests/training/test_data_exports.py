"""Files the way real systems export them (European CSV, Excel, SCADA, pyarrow/pandas
Parquet): each either loads with its decisions in the report or stops with a
DataValidationError naming the file, the column or line, and what to do. Each case is a
reproducer from a walk through variants of the shared data sets (ETT, PJM)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.training.test_data_robustness import HOURLY, refused, write
from training.data import DuplicateColumnError, LoadConfig, MissingHeaderError, load_data
from training.validation import (
    FrequencyError,
    MissingColumnError,
    MissingSeriesIdError,
    NonNumericValueError,
    TimestampParseError,
    UnreadableFileError,
)


def test_comment_lines_before_the_header_are_named_not_taken_for_whitespace_fields(
    tmp_path: Path,
) -> None:
    """'# exported by SCADA v2' first was read as a one-column header, and the advice was
    sep='\\s+' (a whitespace-separated file), which reads nothing right."""
    path = write(tmp_path, "# exported by SCADA v2\n# site: A, B\n" + HOURLY)
    said = refused(path, LoadConfig(target="OT"), MissingHeaderError)
    assert said.startswith("log.csv: the file starts with comment lines ('# exported by SCADA")
    assert said.endswith("delete the 2 comment lines before the header")
    assert "\\s+" not in said
    slashes = write(tmp_path, "// site A\n" + HOURLY, "slashes.csv")
    said = refused(slashes, LoadConfig(target="OT"), MissingHeaderError)
    assert "delete the 1 comment line before the header" in said


def test_a_header_whose_first_name_starts_with_a_hash_is_still_a_header(tmp_path: Path) -> None:
    path = write(
        tmp_path, "#,date,OT\n" + "".join(f"{h},2020-01-01 {h:02d}:00,{h}\n" for h in range(6))
    )
    assert len(load_data(path, LoadConfig(target="OT")).series["log"]) == 6


@pytest.mark.parametrize("sep", [",", ";"])
def test_excels_separator_hint_line_is_named_with_the_sep_to_pass(tmp_path: Path, sep: str) -> None:
    """'sep=;' first (Excel writes and reads it): with sep=',' the advice was sep=';', and
    with sep=';' the error listed columns 'sep=', 'Unnamed: 1': a loop with no way out."""
    path = write(tmp_path, "sep=;\n" + HOURLY.replace(",", ";"))
    said = refused(path, LoadConfig(target="OT", sep=sep), MissingHeaderError)
    assert said == (
        "log.csv: line 1 'sep=;' is Excel's separator hint, not the header: the loader reads "
        "the column names from the first line; delete that line and pass sep=';' (--sep ';')"
    )


def test_utf16_without_a_byte_order_mark_is_named(tmp_path: Path) -> None:
    """Decoded as UTF-8 without an error, its header listed names like 'd\\x00a\\x00t\\x00e'
    under "no timestamp column"."""
    path = write(tmp_path, HOURLY.encode("utf-16-le"))
    said = refused(path, LoadConfig(target="OT"), UnreadableFileError)
    assert "the file is UTF-16 text without a byte-order mark" in said
    assert said.endswith("save it as UTF-8 ('CSV UTF-8' in Excel)")


def test_a_quoted_decimal_comma_in_a_comma_separated_file_is_not_told_to_pass_decimal(
    tmp_path: Path,
) -> None:
    """'"30,5"' quoted in a comma-separated file was told "pass decimal=','", which sep=','
    then refused ("pass sep too"): advice that led nowhere. Parquet text likewise."""
    rows = "".join(f'2020-01-01 {h:02d}:00,"{h},5"\n' for h in range(6))
    said = refused(
        write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"), NonNumericValueError
    )
    assert "'0,5' is not a number" in said
    assert said.endswith(
        "a decimal comma? in a comma-separated file the loader reads no decimal comma "
        "(decimal=',' needs another field separator): save the file with ';' between fields "
        "and pass sep=';' and decimal=',', or write the numbers with '.'"
    )
    frame = pd.DataFrame(
        {"date": pd.date_range("2020-01-01", periods=6, freq="h"), "OT": ["1,5"] * 6}
    )
    frame.to_parquet(tmp_path / "text.parquet")
    said = refused(tmp_path / "text.parquet", LoadConfig(target="OT"), NonNumericValueError)
    assert "the column is text in the Parquet file: write it as a number column" in said
    assert "pass decimal" not in said


@pytest.mark.parametrize(
    ("cell", "mark"),
    [('"5,827.0"', "','"), ("5'827.5", "\"'\""), ("5\u00a0827,5", "a no-break space"),
     ("5 827", "a space"), ("-1,234,567", "','")],
)  # fmt: skip
def test_thousands_separators_are_named_in_the_refusal(
    tmp_path: Path, cell: str, mark: str
) -> None:
    rows = "".join(f"2020-01-01 {h:02d}:00;{cell}\n" for h in range(6))
    said = refused(
        write(tmp_path, "date;MW\n" + rows), LoadConfig(target="MW", sep=";"), NonNumericValueError
    )
    assert said.endswith(
        f"{mark} between groups of digits (a thousands separator?) is not read: write the "
        "numbers without it"
    )


def test_series_ids_apart_only_by_spaces_are_refused_not_read_as_two_series(
    tmp_path: Path,
) -> None:
    """'a' and 'a ' (an export that pads some cells) were two series, each with part of one
    pump's history, and the report said only "2 series"."""
    rows = "".join(f"{'a' if h < 12 else 'a '},2020-01-01 {h:02d}:00,{h}\n" for h in range(24))
    path = write(tmp_path, "id,date,OT\n" + rows)
    said = refused(path, LoadConfig(target="OT", series_col="id"), MissingSeriesIdError)
    assert said == (
        "log.csv: column 'id': series ids 'a' (first at data row 1) and 'a ' (first at data row "
        "13 (1-based, header not counted)) differ only by spaces at either end, so they would "
        "be read as two series; write each id one way (remove the spaces)"
    )
    blank = write(tmp_path, "id,date,OT\n  ,2020-01-01,1\n", "blank.csv")
    said = refused(blank, LoadConfig(target="OT", series_col="id"), MissingSeriesIdError)
    assert said == (
        "blank.csv: column 'id', data row 1 (1-based, header not counted): series id '  ' is "
        "only spaces: every row needs the id of its series"
    )
    # ids that differ otherwise (case, inner spaces, slashes, unicode) stay as written
    rows = "".join(
        f"{sid},2020-01-01 {h:02d}:00,{h}\n"
        for sid in ("Pump 1", "pump 1", "P/Ü 1")
        for h in range(3)
    )
    data = load_data(
        write(tmp_path, "id,date,OT\n" + rows, "ok.csv"), LoadConfig(target="OT", series_col="id")
    )
    assert sorted(data.series) == ["P/Ü 1", "Pump 1", "pump 1"]


def test_with_a_decimal_comma_dots_read_as_thousands_separators_are_reported(
    tmp_path: Path,
) -> None:
    """A column written by a tool with decimal points, three decimals each ('30.531'), in a
    file read with decimal=',': every cell passed as 30531, and the report said nothing."""
    rows = "".join(f"2020-01-01 {h:02d}:00;3{h}.531;5,5\n" for h in range(6))
    path = write(tmp_path, "date;OT;HUFL\n" + rows)
    data = load_data(path, LoadConfig(target="OT", covariates=("HUFL",), sep=";", decimal=","))
    assert data.series["log"]["OT"].iloc[0] == 30531.0
    said = [d.message for d in data.report]
    assert (
        "log.csv: column 'OT': 6 numbers with '.' between groups of digits, read with '.' as the "
        "thousands separator (decimal=','): '30.531' at data row 1 (1-based, header not "
        "counted) as 30531"
    ) in said
    assert not any("column 'HUFL'" in line for line in said)  # no '.' in it: nothing to say


def test_excel_serial_dates_and_fractional_unix_seconds_are_named(tmp_path: Path) -> None:
    """'42552.0' (Excel's date cell saved as a number) and '1467331200.0' got only the
    generic advice to pass a timestamp_format, which reads neither."""
    excel = "".join(f"{42552 + h / 24:.6f},{h}\n" for h in range(6))
    said = refused(
        write(tmp_path, "date,OT\n" + excel), LoadConfig(target="OT"), TimestampParseError
    )
    assert "the column holds numbers like Excel serial dates (days since 1899-12-30" in said
    unix = "".join(f"{1467331200 + 3600 * h}.0,{h}\n" for h in range(6))
    said = refused(
        write(tmp_path, "date,OT\n" + unix), LoadConfig(target="OT"), TimestampParseError
    )
    assert "numbers like Unix times in seconds since 1970" in said


def test_a_parquet_duration_column_as_the_time_is_refused_as_durations(tmp_path: Path) -> None:
    """Its text ('0 days 00:00:00') was refused with advice about timestamp formats, and
    read as step numbers (step_origin) it counted nanoseconds."""
    frame = pd.DataFrame({"elapsed": pd.to_timedelta(range(6), unit="h"), "OT": range(6)})
    path = tmp_path / "run.parquet"
    frame.to_parquet(path)
    expected = (
        "run.parquet: column 'elapsed' holds durations (time elapsed, such as '0 days 00:00:00' "
        "in data row 1), not timestamps: write it as dates (a start plus each duration) before "
        "loading"
    )
    said = refused(path, LoadConfig(target="OT", timestamp_col="elapsed"), TimestampParseError)
    assert said == expected
    steps = LoadConfig(target="OT", timestamp_col="elapsed", step_origin="2000-01-01", freq="h")
    assert refused(path, steps, TimestampParseError) == expected


def test_parquet_value_columns_typed_as_decimal_text_or_category_are_reported_as_cast(
    tmp_path: Path,
) -> None:
    """decimal128, string and dictionary-of-string columns were read as numbers without a
    word, where int32 or bool columns are reported as converted."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    hours = pd.date_range("2020-01-01", periods=6, freq="h").to_numpy()
    table = pa.table(
        {
            "date": pa.array(hours.astype("datetime64[us]")),
            "OT": pa.array([decimal.Decimal(f"{h}.125") for h in range(6)], pa.decimal128(10, 3)),
            "a": pa.array([f"{h}.5" for h in range(6)]),
            "b": pa.array([f"{h % 2}.5" for h in range(6)]).dictionary_encode(),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    data = load_data(tmp_path / "typed.parquet", LoadConfig(target="OT", covariates=("a", "b")))
    assert data.series["typed"]["OT"].iloc[1] == 1.125
    said = [d.message for d in data.report]
    assert "typed.parquet: converted to float64: OT (decimal), a (text), b (category)" in said


def test_a_hash_header_over_hash_ids_and_a_whitespace_file_with_margins_still_load(
    tmp_path: Path,
) -> None:
    """Files the preamble check refused although they loaded before it (review): a header
    whose first name starts with '#' over ids that do too, and a '#' header of a
    whitespace-separated file whose data lines start with spaces (pandas' '\\s+' skips them)."""
    rows = "".join(
        f"#{unit},2020-01-01 {h:02d}:00:00,{h}.5\n" for unit in (1, 2) for h in range(24)
    )
    data = load_data(
        write(tmp_path, "#unit,time,value\n" + rows),
        LoadConfig(target="value", series_col="#unit", timestamp_col="time"),
    )
    assert sorted(data.series) == ["#1", "#2"]
    spaced = "#time value\n" + "".join(f"  2020-01-01T{h:02d}:00  {h}.5\n" for h in range(24))
    data = load_data(
        write(tmp_path, spaced, "spaced.txt"),
        LoadConfig(target="value", timestamp_col="#time", sep=r"\s+"),
    )
    assert len(next(iter(data.series.values()))) == 24


def test_step_counts_in_excel_serial_range_get_both_hints(tmp_path: Path) -> None:
    """Whole numbers 10000-79999 were taken for Excel serial dates only: a cycle counter
    starting at 10000 lost the step_origin hint; now outside 1970-2050 serials it keeps it, and
    inside both are given."""
    cycles = "cycle,OT\n" + "".join(f"{10_000 + k},{k}.5\n" for k in range(24))
    config = LoadConfig(target="OT", timestamp_col="cycle")
    said = refused(write(tmp_path, cycles), config, TimestampParseError)
    assert "pass step_origin (--step-origin) and freq" in said and "Excel" not in said
    serials = "cycle,OT\n" + "".join(f"{44_000 + k},{k}.5\n" for k in range(24))
    said = refused(write(tmp_path, serials, "s.csv"), config, TimestampParseError)
    assert "Excel serial dates" in said and "pass step_origin (--step-origin)" in said


def test_one_comma_and_three_digits_names_both_readings(tmp_path: Path) -> None:
    """'1,034' in a ';'-separated file was told to pass decimal=',', which reads 1.034 where
    the export may mean 1034."""
    text = "date;OT\n" + "".join(f"2020-01-01 {h:02d}:00:00;1,0{h:02d}\n" for h in range(24))
    said = refused(write(tmp_path, text), LoadConfig(target="OT", sep=";"), NonNumericValueError)
    assert "1,034 reads 1.034" in said and "1,034 meaning 1034" in said


@pytest.mark.parametrize(
    ("first_line", "shown_cells"),
    [
        ("2016-07-01 00:00:00,5.827,30.531", "2016-07-01 00:00:00, 5.827, 30.531"),
        ("01/07/2016 00:00,5.827,30", "01/07/2016 00:00, 5.827, 30"),
        ("2016-07-01T00:00:00+02:00,5,30", "2016-07-01T00:00:00+02:00, 5, 30"),
    ],
)
def test_a_file_without_header_whose_first_cell_is_a_date_is_refused_as_no_header(
    tmp_path: Path, first_line: str, shown_cells: str
) -> None:
    """ETTh1 saved without its header line (to_csv(header=False), or a logger's export): the
    first row was read as the column names, and the file refused as having no timestamp
    column, listing '2016-07-01 00:00:00', '5.827', ... as 'the columns the file has'; a
    first line of numbers alone was already named as no header."""
    rows = "".join(f"2016-07-01 {h:02d}:00:00,{h}.5,{h}\n" for h in range(1, 24))
    path = write(tmp_path, first_line + "\n" + rows)
    said = refused(path, LoadConfig(target="OT"), MissingHeaderError)
    assert said == (
        f"log.csv: the first line holds only numbers and dates ({shown_cells}, ...), not "
        "column names: the file has no header line; add one naming the columns, as the "
        "first line"
    )


def test_series_ids_apart_only_by_leading_zeros_are_refused_naming_both(tmp_path: Path) -> None:
    """C-MAPSS engines as '001', '002' with five of engine 1's rows written '1' (a sheet that
    read the ids as numbers rewrote them): the loader made two series, '001' with those five
    days filled by interpolation and '1' holding them. Ids of digits that differ otherwise
    ('01' and '10') stay two series."""
    rows = [
        f"{unit},2000-01-{day:02d},{day}.5\n" for unit in ("001", "002") for day in range(1, 11)
    ]
    rows[4:7] = [row.replace("001,", "1,", 1) for row in rows[4:7]]
    path = write(tmp_path, "unit,ts,s11\n" + "".join(rows))
    config = LoadConfig(target="s11", series_col="unit", timestamp_col="ts")
    said = refused(path, config, MissingSeriesIdError)
    assert said == (
        "log.csv: column 'unit': series ids '001' (first at data row 1) and '1' (first at data "
        "row 5 (1-based, header not counted)) differ only by leading zeros (a spreadsheet drops "
        "them from ids it reads as numbers), so they would be read as two series; write each id "
        "one way"
    )
    apart = "".join(f"{unit},2000-01-{day:02d},{day}\n" for unit in ("01", "10") for day in (1, 2))
    loaded = load_data(write(tmp_path, "unit,ts,s11\n" + apart, "apart.csv"), config)
    assert sorted(loaded.series) == ["01", "10"]


def test_series_ids_apart_only_by_a_decimal_zero_are_refused_naming_both(tmp_path: Path) -> None:
    """Engine ids '1', '2' with engine 1's later rows appended from a pandas export that read
    the id column as floats ('1.0'): two series, '1' and '1.0', each with part of one engine's
    history, and nothing said. Ids that are other numbers ('1.5', '10') stay apart."""
    rows = [f"{unit},2000-01-{day:02d},{day}.5\n" for unit in ("1", "2") for day in range(1, 11)]
    rows[5:10] = [row.replace("1,", "1.0,", 1) for row in rows[5:10]]
    path = write(tmp_path, "unit,ts,s11\n" + "".join(rows))
    config = LoadConfig(target="s11", series_col="unit", timestamp_col="ts")
    said = refused(path, config, MissingSeriesIdError)
    assert said == (
        "log.csv: column 'unit': series ids '1' (first at data row 1) and '1.0' (first at data "
        "row 6 (1-based, header not counted)) differ only by a '.0' (ids written as decimals: "
        "pandas writes '7.0' for an id column it read as floats, e.g. one with an empty cell), "
        "so they would be read as two series; write each id one way"
    )
    apart = "".join(
        f"{unit},2000-01-{day:02d},{day}\n" for unit in ("1", "1.5", "10") for day in (1, 2)
    )
    loaded = load_data(write(tmp_path, "unit,ts,s11\n" + apart, "apart.csv"), config)
    assert sorted(loaded.series) == ["1", "1.5", "10"]


@pytest.mark.parametrize(
    ("text", "config"),
    [
        (HOURLY.replace("\n", "\n,kW,degC\n", 1), LoadConfig(target="OT", covariates=("HUFL",))),
        (
            HOURLY.replace("\n", "\n[UTC],kW,degC\n", 1),
            LoadConfig(target="OT", covariates=("HUFL",)),
        ),
        (
            HOURLY.replace(",", ";").replace(".", ",").replace("\n", "\n;kW;degC\n", 1),
            LoadConfig(target="OT", covariates=("HUFL",), sep=";", decimal=","),
        ),
    ],
)
def test_a_units_row_under_the_header_is_refused_as_such(
    tmp_path: Path, text: str, config: LoadConfig
) -> None:
    """ETTh1 exported with a units row (',kW,...,degC'): it was refused as 'empty timestamp
    ... every row needs its time' at data row 1 (or a time cell '[UTC]' that does not parse),
    which does not say the row is a units row nor to delete it."""
    said = refused(write(tmp_path, text), config, NonNumericValueError)
    assert said == (
        "log.csv: data row 1 (1-based, header not counted) holds text in every value column "
        "('degC' under 'OT', 'kW' under 'HUFL') and numbers below it: a row of units under the "
        "header? The loader reads one header line and every row after it as data: delete that "
        "row (a unit can go into the column name, such as 'OT [degC]')"
    )


def test_a_first_row_with_a_number_in_a_value_column_is_no_units_row(tmp_path: Path) -> None:
    """Text in one value column of row 1 beside a number is a bad cell, named as before."""
    text = HOURLY.replace("\n", "\n2019-12-31 23:00:00,1.5,degC\n", 1)
    said = refused(write(tmp_path, text), LoadConfig(target="OT"), NonNumericValueError)
    assert said.startswith("log.csv: column 'OT', data row 1 (1-based, header not counted): 'degC'")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_name_repeated_among_columns_not_read_is_left_alone(tmp_path: Path, suffix: str) -> None:
    """A historian export repeats 'Status' after every tag ('date,HUFL,Status,OT,Status'):
    training on OT and HUFL was refused as "the header names column 'Status' twice", a
    column the run never reads. A column it reads named twice is still refused."""
    names = ["date", "HUFL", "Status", "OT", "Status"]
    cells = [[f"2020-01-01 {h:02d}:00:00", f"{h}.5", "ok", f"{2 * h}", "ok"] for h in range(24)]
    if suffix == ".csv":
        path = write(tmp_path, ",".join(names) + "\n" + "".join(",".join(r) + "\n" for r in cells))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(zip(*cells, strict=True))
        arrays = [pa.array(list(c)) for c in columns[:1] + columns[2:3] + columns[4:]]
        numbers = [
            pa.array([float(v) for v in columns[1]]),
            pa.array([float(v) for v in columns[3]]),
        ]
        path = tmp_path / "log.parquet"
        pq.write_table(
            pa.Table.from_arrays(
                [arrays[0], numbers[0], arrays[1], numbers[1], arrays[2]], names=names
            ),
            path,
        )
    loaded = load_data(path, LoadConfig(target="OT", covariates=("HUFL",)))
    assert loaded.series["log"]["OT"].tolist() == [2.0 * h for h in range(24)]
    assert loaded.series["log"]["HUFL"].tolist() == [h + 0.5 for h in range(24)]
    said = refused(path, LoadConfig(target="Status"), DuplicateColumnError)
    assert said == (
        f"log{suffix}: the header names column 'Status' twice (columns 3 and 5); rename one so "
        "each column is read for what it is"
    )


@pytest.mark.parametrize(("header", "written"), [("date,OT \n", "'OT '"), ("date,ot\n", "'ot'")])
def test_a_column_written_with_spaces_or_in_another_case_is_named_as_written(
    tmp_path: Path, header: str, written: str
) -> None:
    """Spreadsheets export 'OT ' (a trailing space) or 'ot': --target OT was refused listing
    the columns, the name as written a quote mark apart from the one given."""
    rows = "".join(f"2020-01-01 {h:02d}:00,{h}.5\n" for h in range(24))
    said = refused(write(tmp_path, header + rows), LoadConfig(target="OT"), MissingColumnError)
    assert said == (
        f"log.csv: no column 'OT'; the file has: 'date', {written}; 'OT' is written {written} "
        "in the file: give the name as written, or fix the header"
    )


@pytest.mark.parametrize(
    ("packed", "said"),
    [
        ("zip", "a zip archive (an Excel .xlsx workbook is one), not delimited text"),
        ("bz2", "bzip2-compressed, not delimited text"),
        ("xz", "xz-compressed, not delimited text"),
        ("parquet", "a Parquet file, not delimited text"),
    ],
)
def test_a_binary_file_named_csv_is_named_for_what_it_is_not_an_encoding(
    tmp_path: Path, packed: str, said: str
) -> None:
    """An Excel workbook or a zip of the export saved under a .csv name (and bzip2, xz or
    Parquet bytes) was refused as "in another encoding (Windows-1252 or Latin-1): save it
    as UTF-8", which no re-encoding fixes."""
    import bz2
    import io
    import lzma
    import zipfile

    text = HOURLY.encode()
    if packed == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("log.csv", text)
        data = buffer.getvalue()
    elif packed == "parquet":
        buffer = io.BytesIO()
        pd.read_csv(io.BytesIO(text)).to_parquet(buffer)
        data = buffer.getvalue()
    else:
        data = bz2.compress(text) if packed == "bz2" else lzma.compress(text)
    message = refused(write(tmp_path, data), LoadConfig(target="OT"), UnreadableFileError)
    assert message.startswith(f"log.csv: the file is {said} (its first bytes say so); ")
    assert "encoding" not in message


@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("log.zip", "a zip archive: unzip it, or compress the CSV with gzip as .csv.gz"),
        (
            "log.csv.bz2",
            "bzip2-compressed: decompress it, or compress the CSV with gzip as .csv.gz",
        ),
    ],
)
def test_a_compression_other_than_gzip_is_refused_saying_what_to_do(
    tmp_path: Path, name: str, advice: str
) -> None:
    """'.csv.bz2' and '.zip' exports were refused with the allowed suffixes alone."""
    from training.validation import UnsupportedFormatError

    said = refused(write(tmp_path, b"x", name), LoadConfig(target="OT"), UnsupportedFormatError)
    assert said.startswith(f"{name}: unsupported file type '{name[3:]}' ({advice}); allowed")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_one_comma_and_three_digits_in_a_comma_file_or_parquet_text_names_thousands_too(
    tmp_path: Path, suffix: str
) -> None:
    """A US export's '"22,262"' (22262 MW, Excel's number format with a thousands separator)
    was told only "a decimal comma?" and to re-save with sep=';' and decimal=',', which then
    reads 22.262: a thousand times too small, and silently. Parquet text was told to replace
    ',' with '.' the same way. Both readings are named, as in a ';'-separated file."""
    cells = [f"22,{262 + h}" for h in range(6)]
    if suffix == ".csv":
        rows = "".join(f'2020-01-01 {h:02d}:00,"{cell}"\n' for h, cell in enumerate(cells))
        path = write(tmp_path, "date,MW\n" + rows)
    else:
        frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=6, freq="h")})
        frame.assign(MW=cells).to_parquet(path := tmp_path / "text.parquet")
    said = refused(path, LoadConfig(target="MW"), NonNumericValueError)
    assert "'22,262' is not a number" in said
    assert "a thousands separator (22,262 meaning 22262: write the numbers without it)" in said
    assert "or a decimal comma (22,262 meaning 22.262" in said


def test_iso_times_that_leave_out_midnights_time_are_told_to_pass_iso8601(tmp_path: Path) -> None:
    """R's as.character() of times and some SCADA exports write midnight as the date alone
    ('2020-01-02' between '2020-01-01 23:00:00' and '2020-01-02 01:00:00'). The refusal said
    to pass a timestamp_format matching the text shown, yet no strptime format reads both
    forms; pandas' 'ISO8601', which the loader takes, reads each row as written."""
    stamps = pd.date_range("2020-01-01", periods=48, freq="h")
    text = [str(t.date()) if t.hour == 0 else str(t) for t in stamps]
    rows = "".join(f"{t},{i}.5\n" for i, t in enumerate(text))
    path = write(tmp_path, "timestamp,y\n" + rows)
    said = refused(path, LoadConfig(target="y"), TimestampParseError)
    assert said.endswith(
        "every row reads as an ISO 8601 date or time, written with more or less of the "
        "time of day (a date alone at midnight?): pass timestamp_format 'ISO8601' to read "
        "each as written; 46 rows fail"
    ), said
    data = load_data(path, LoadConfig(target="y", timestamp_format="ISO8601"))
    assert data.series["log"].index.equals(pd.DatetimeIndex(stamps, name="timestamp"))


@pytest.mark.parametrize(("freq", "alias"), [("BME", "BME"), ("BMS", "BMS"), ("BQE", "3BME")])
def test_month_steps_on_business_days_are_told_their_frequency_not_to_round(
    tmp_path: Path, freq: str, alias: str
) -> None:
    """Month-end closes stamped on each month's last business day (2005-04-29, a Friday):
    the steps of 28 to 31 days were taken for a logger's jitter around '31D', and the refusal
    said to round the timestamps to '31D' (pandas: dt.round('31D')), which moves every date
    off its month. The business-month frequency that holds them is named instead."""
    stamps = pd.date_range("2005-01-01", periods=60, freq=freq)
    rows = "".join(f"{t.date()},{i}.5\n" for i, t in enumerate(stamps))
    said = refused(write(tmp_path, "date,y\n" + rows), LoadConfig(target="y"), FrequencyError)
    assert "round" not in said, said
    assert said.endswith(
        f"Every timestamp is the {'first' if freq == 'BMS' else 'last'} business day (Monday "
        f"to Friday) of its month: pass freq {alias!r} (--freq {alias})"
    ), said
    assert len(load_data(tmp_path / "log.csv", LoadConfig(target="y", freq=alias)).series["log"])


def test_month_steps_on_varying_days_are_not_told_to_round_to_31_days(tmp_path: Path) -> None:
    """Mid-month readings moved off weekends (the 15th, or the Monday after): no pandas grid
    holds them, and rounding them to '31D', the advice given, moves them off their months."""
    starts = pd.date_range("2005-01-01", periods=60, freq="MS")
    stamps = [t + pd.Timedelta(days=14) + pd.offsets.BDay(0) for t in starts]
    rows = "".join(f"{t.date()},{i}.5\n" for i, t in enumerate(stamps))
    said = refused(write(tmp_path, "date,y\n" + rows), LoadConfig(target="y"), FrequencyError)
    assert "round" not in said and "stamp each reading with the first day of its month" in said


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_rows_without_a_series_id_are_counted_and_told_what_to_do(
    tmp_path: Path, suffix: str
) -> None:
    """Rows of a long file with an empty id (a join that found no unit, a Parquet category
    left null) were refused naming only the first row: not how many, nor what would do."""
    stamps = pd.date_range("2020-01-01", periods=30, freq="h")
    frame = pd.DataFrame({"timestamp": list(stamps) * 2, "unit": ["a"] * 30 + ["b"] * 30})
    frame["y"] = range(60)
    frame.loc[[35, 40, 41], "unit"] = None
    path = tmp_path / f"fleet{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.astype({"unit": "category"}).to_parquet(path)
    said = refused(path, LoadConfig(target="y", series_col="unit"), MissingSeriesIdError)
    assert said == (
        f"fleet{suffix}: column 'unit', data row 36 (1-based, header not counted): empty series "
        "id (3 such rows): every row needs the id of its series: fill the ids in, or leave "
        "those rows out of the file"
    )


@pytest.mark.parametrize("freq", ["D", "7D"])
def test_daily_readings_at_a_local_time_written_in_utc_are_told_the_shift(
    tmp_path: Path, freq: str
) -> None:
    """A meter read every day at 08:00 Berlin time, exported in UTC: 07:00Z in winter, 06:00Z
    from the daylight-saving change on. Refused as off the 'D' grid, with the advice to pass
    a freq or resample, neither of which is the problem; the hour's shift and the way to
    write such readings (with their offsets, read as the dates they name) are now said."""
    local = pd.date_range("2018-03-01 08:00", periods=60, freq=freq, tz="Europe/Berlin")
    text = local.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = "".join(f"{t},{i}.5\n" for i, t in enumerate(text))
    said = refused(write(tmp_path, "timestamp,y\n" + rows), LoadConfig(target="y"), FrequencyError)
    assert said.endswith(
        "readings at one local time across a daylight-saving change, written in UTC? Write them "
        "with their UTC offsets (e.g. '2018-03-25T08:00:00+02:00'), read as the dates they "
        "name, or on the local clock"
    ), said
    if freq == "D":
        shift = "an hour's shift (07:00:00 and 06:00:00, first changing at 2018-03-25 06:00:00"
        assert f"{shift}, data row 25)" in said
    # written with their offsets instead, they load as the local readings they are
    offsets = "".join(f"{t.isoformat()},{i}.5\n" for i, t in enumerate(local))
    data = load_data(write(tmp_path, "timestamp,y\n" + offsets), LoadConfig(target="y"))
    expected = pd.DatetimeIndex(local.tz_localize(None), name="timestamp", freq=freq)
    pd.testing.assert_index_equal(data.series["log"].index, expected)


def test_series_dropped_as_short_are_counted_in_the_brief_report(tmp_path: Path) -> None:
    """A fleet of 30 stores, 20 of them too short for a window, loaded with on_short='drop':
    the terminal's brief report showed 10 "dropped" lines and "... and 10 more decisions on
    single series", so how many series were left out was nowhere said. A file line counts
    them."""
    frames = [
        pd.DataFrame(
            {"date": pd.date_range("2021-01-01", periods=n, freq="D"), "store": f"s{i:02d}"}
        ).assign(sales=1.0)
        for i, n in enumerate([10] * 20 + [40] * 10)
    ]
    path = tmp_path / "stores.csv"
    pd.concat(frames).to_csv(path, index=False)
    config = LoadConfig(target="sales", series_col="store", min_length=30, on_short="drop")
    data = load_data(path, config)
    assert len(data.series) == 10
    assert (
        "stores.csv: dropped 20 of 30 series as too short (on_short='drop'): 10 rows at most, "
        "fewer than min_length=30; every one is named in the data report"
    ) in data.brief_report_lines()


def test_month_end_closes_at_a_time_of_day_are_told_their_business_frequency(
    tmp_path: Path,
) -> None:
    """Closing prices stamped 16:00 on each month's last business day: the same '31D' jitter
    advice as at midnight, until the check took any one time of day."""
    stamps = pd.date_range("2005-01-01", periods=60, freq="BME") + pd.Timedelta(hours=16)
    rows = "".join(f"{t},{i}.5\n" for i, t in enumerate(stamps))
    said = refused(write(tmp_path, "date,y\n" + rows), LoadConfig(target="y"), FrequencyError)
    assert said.endswith("of its month: pass freq 'BME' (--freq BME)"), said
    assert len(load_data(tmp_path / "log.csv", LoadConfig(target="y", freq="BME")).series["log"])


def test_rows_of_separators_alone_are_named_as_empty_rows(tmp_path: Path) -> None:
    """Excel writes the blank rows under a table as ';;' lines: refused as "empty timestamp,
    or a missing-value word", which sent the user looking for a bad date. The rows are now
    named for what they are: empty in every column read."""
    rows = "".join(f"2020-01-01 {h:02d}:00;{h},5;1\n" for h in range(24))
    path = write(tmp_path, "Zeit;Last;Flag\n" + rows + ";;\n;;\n")
    config = LoadConfig(
        target="Last", covariates=("Flag",), timestamp_col="Zeit", sep=";", decimal=","
    )
    said = refused(path, config, TimestampParseError)
    assert said == (
        "log.csv: data row 25 (1-based, header not counted) is empty in every column read "
        "('Zeit', 'Last', 'Flag') (2 such rows): a line of separators alone, as a spreadsheet "
        "writes the blank rows under a table; delete those lines"
    )
    # in a long file they were "empty series id" first: the same refusal now
    rows = "".join(f"p1;2020-01-01 {h:02d}:00;{h},5\n" for h in range(24))
    path = write(tmp_path, "Pumpe;Zeit;Last\n" + rows + ";;\n")
    config = LoadConfig(
        target="Last", timestamp_col="Zeit", series_col="Pumpe", sep=";", decimal=","
    )
    said = refused(path, config, TimestampParseError)
    assert "data row 25 (1-based, header not counted) is empty in every column read" in said


def test_whole_number_float_ids_read_the_same_from_csv_and_parquet(tmp_path: Path) -> None:
    """A fleet whose ids pandas held as floats (an id column with an empty cell somewhere
    upstream) wrote 1.0, 2.0: the ids were '1.0', '2.0', and the same fleet written with
    integer ids read '1', '2', so a model trained on one file did not know the series of the
    other (per-series scalers, seen-until checks). A whole-number float id reads as its
    integer text, in either format, said once in the report; other numbers stay as written."""
    frame = pd.DataFrame(
        {
            "unit": [float(u) for u in (1, 2, 1.5) for _ in range(4)],
            "ts": [f"2000-01-0{d}" for _ in range(3) for d in range(1, 5)],
            "s11": [float(v) for v in range(12)],
        }
    )
    config = LoadConfig(target="s11", series_col="unit", timestamp_col="ts")
    as_csv = tmp_path / "fleet.csv"
    frame.to_csv(as_csv, index=False)
    as_parquet = tmp_path / "fleet.parquet"
    frame.to_parquet(as_parquet, index=False)
    as_ints = tmp_path / "ints.csv"
    frame.assign(unit=["1"] * 4 + ["2"] * 4 + ["1.5"] * 4).to_csv(as_ints, index=False)
    for path in (as_csv, as_parquet, as_ints):
        loaded = load_data(path, config)
        assert sorted(loaded.series) == ["1", "1.5", "2"], path.name
        said = [d.message for d in loaded.report if "integer text" in d.message]
        if path is as_ints:
            assert said == []
        else:
            assert said == [
                f"{path.name}: 2 series ids written as whole-number decimals (such as '1.0', as "
                "pandas writes the ids of a column it read as floats) are read as their integer "
                "text (such as '1'), in a CSV and a Parquet file alike; other ids are kept as "
                "written"
            ]


@pytest.mark.parametrize(
    ("big", "written"),
    [
        (12345678901234567890.0, "'1.2345678901234567e+19' (as a float: 12345678901234567168)"),
        (1e16, "'1e+16' (as a float: 10000000000000000)"),
        (2.0**53 + 2, "'9007199254740994.0'"),
    ],
)
def test_float_ids_past_2_53_are_refused_in_csv_and_parquet_alike(
    tmp_path: Path, big: float, written: str
) -> None:
    """A float id column holds whole numbers past 2**53 only approximately: the id
    12345678901234567890 stored as float64 is 12345678901234567168. Such ids read as
    '1.2345678901234567e+19' text (not the whole-number rule's integer text), and read as
    integer text they would pass off the rounded number as the id: refused with the column,
    the row and the way out, the same from a CSV and a Parquet file. 2**53 itself is exact."""
    frame = pd.DataFrame(
        {
            "unit": [7.0] * 4 + [big] * 4,
            "ts": [f"2000-01-0{d}" for _ in range(2) for d in range(1, 5)],
            "s11": [float(v) for v in range(8)],
        }
    )
    config = LoadConfig(target="s11", series_col="unit", timestamp_col="ts")
    as_csv = tmp_path / "fleet.csv"
    frame.to_csv(as_csv, index=False)
    as_parquet = tmp_path / "fleet.parquet"
    frame.to_parquet(as_parquet, index=False)
    for path in (as_csv, as_parquet):
        said = refused(path, config, MissingSeriesIdError)
        assert said == (
            f"{path.name}: column 'unit', data row 5 (1-based, header not counted): series id "
            f"{written} is a whole number past 2**53 = 9,007,199,254,740,992 written as a "
            "decimal (1 such id): a float holds whole numbers that large only approximately, "
            "so the id may differ from the one first written and two series may have become "
            "one; store the ids as integers or text (an integer or string column in Parquet, "
            "digits without '.0' or an exponent in a CSV)"
        )
    exact = frame.assign(unit=[7.0] * 4 + [2.0**53] * 4)
    exact.to_parquet(as_parquet, index=False)
    assert sorted(load_data(as_parquet, config).series) == ["7", "9007199254740992"]
    as_ints = frame.assign(unit=["7"] * 4 + ["12345678901234567890"] * 4)  # text: exact
    as_ints.to_parquet(as_parquet, index=False)
    assert sorted(load_data(as_parquet, config).series) == ["12345678901234567890", "7"]


@pytest.mark.parametrize(
    ("written", "other"),
    [
        ("{d} 24:00", "%Y-%m-%d %H:%M"),
        ("{d} 24:00:00", "%Y-%m-%d %H:%M:%S"),
        ("{d}T24:00", "%Y-%m-%dT%H:%M"),
    ],
)
def test_the_hour_24_00_is_read_as_the_next_days_midnight_and_reported(
    tmp_path: Path, written: str, other: str
) -> None:
    """SCADA and utility exports close a day at '2016-06-30 24:00' (hour ending 24, ISO 8601's
    end of day). It was refused with the advice to pass a timestamp_format, which no strptime
    format can follow (hour 24 is none of '%H')."""
    stamps = pd.date_range("2016-07-01", periods=72, freq="h")
    text = [
        written.format(d=(t - pd.Timedelta(days=1)).date()) if t.hour == 0 else t.strftime(other)
        for t in stamps
    ]
    rows = "".join(f"{t},{i}.5\n" for i, t in enumerate(text))
    data = load_data(write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"))
    assert data.series["log"].index.equals(pd.DatetimeIndex(stamps, name="timestamp"))
    assert data.series["log"]["OT"].iloc[0] == 0.5
    said = [d.message for d in data.report]
    first = written.format(d="2016-06-30")
    assert (
        f"log.csv: read 3 timestamps written at 24:00 (the end of a day) as 00:00 of the next day: "
        f"the first {first!r}, data row 1 (1-based, header not counted)"
    ) in said, said


def test_hour_24_past_its_minute_zero_is_refused_as_no_time(tmp_path: Path) -> None:
    """'24:30' is no end of day: it stays refused, and no timestamp_format is offered."""
    rows = "2016-07-01 23:00,1\n2016-07-01 24:30,2\n2016-07-02 01:00,3\n"
    said = refused(
        write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"), TimestampParseError
    )
    assert "cannot parse '2016-07-01 24:30' as a timestamp" in said
    assert "the hour 24 is read only as 24:00, the end of a day" in said, said


@pytest.mark.parametrize("word", ["Total", "Average", "Sum:"])
def test_a_totals_row_under_the_data_is_named_as_a_footer_not_a_format(
    tmp_path: Path, word: str
) -> None:
    """A report exported from Excel or an ERP ends with 'Total,<sum>,<sum>'. The refusal told
    to pass a timestamp_format matching 'Total', which none does: the row is to be deleted."""
    rows = HOURLY + f"{word},300,552\n"
    said = refused(write(tmp_path, rows), LoadConfig(target="OT"), TimestampParseError)
    assert said.startswith(
        f"log.csv: column 'date', data row 25 (1-based, header not counted): cannot parse "
        f"{word!r} as a timestamp: the file's last row holds no time, a totals or summary row "
        "under the data (as a spreadsheet or report export adds)? Delete it; "
    ), said
    assert "timestamp_format" not in said


def test_the_hour_24_00_counts_in_the_day_month_order_of_ambiguous_dates(tmp_path: Path) -> None:
    """Day-first hours of 1-10 July closed by '01/07/2016 24:00' read both ways (no day above
    12); only day first, with 24:00 as the next midnight, is on a grid. The midnights were left
    a day early in that search, so neither order was regular and the file refused."""
    stamps = pd.date_range("2016-07-01 01:00", "2016-07-10 23:00", freq="h")
    text = [
        f"{t - pd.Timedelta(days=1):%d/%m/%Y} 24:00" if t.hour == 0 else f"{t:%d/%m/%Y %H:%M}"
        for t in stamps
    ]
    rows = "".join(f"{t},{i}\n" for i, t in enumerate(text))
    data = load_data(write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"))
    assert data.series["log"].index.equals(pd.DatetimeIndex(stamps, name="timestamp"))
    said = [d.message for d in data.report]
    assert any("read the dates of column 'date' day first: every row reads both" in m for m in said)
    assert any("read 9 timestamps written at 24:00 (the end of a day)" in m for m in said), said


@pytest.mark.parametrize(("cell", "meaning"), [("81%", "81"), ("1.6 %", "1.6")])
def test_a_percent_sign_is_named_with_the_number_to_write(
    tmp_path: Path, cell: str, meaning: str
) -> None:
    """A humidity or load-factor column formatted as percent in Excel saves '81%'. The refusal
    said only that it was not a number, as for any word."""
    rows = HOURLY.replace("2020-01-01 05:00:00,5.5", f"2020-01-01 05:00:00,{cell}")
    said = refused(write(tmp_path, rows), LoadConfig(target="OT", covariates=("HUFL",)),
                   NonNumericValueError)  # fmt: skip
    assert (
        f"; a percent sign is not read: write the number without it ({cell!r} as {meaning}, "
        "or as a fraction)" in said
    ), said


def test_dates_read_month_first_as_the_one_order_allowed_are_reported_like_day_first(
    tmp_path: Path,
) -> None:
    """A US export ('07/13/2016 00:00') loaded month first without a word, where a day-first
    file got 'read the dates ... day first, the one order every row allows'; a planner checking
    which order was taken saw nothing for the one order and a line for the other."""
    stamps = pd.date_range("2016-07-10", periods=96, freq="h")
    rows = "".join(f"{t:%m/%d/%Y %H:%M},{i}\n" for i, t in enumerate(stamps))
    data = load_data(write(tmp_path, "date,OT\n" + rows), LoadConfig(target="OT"))
    assert data.series["log"].index.equals(pd.DatetimeIndex(stamps, name="timestamp"))
    said = [d.message for d in data.report]
    assert (
        "log.csv: read the dates of column 'date' month first, the one order every row "
        "allows: '07/13/2016 00:00', data row 73 (1-based, header not counted), has no month 13"
    ) in said, said


def test_a_timestamp_column_named_with_spaces_at_its_ends_is_found_by_name(tmp_path: Path) -> None:
    """Excel headers keep a typed trailing space ('Date '): the column named like a date was
    not found, and the refusal asked for a timestamp_col as if the file had none."""
    path = write(tmp_path, HOURLY.replace("date,", "Date ,", 1))
    data = load_data(path, LoadConfig(target="OT"))
    assert len(data.series["log"]) == 24
    said = [d.message for d in data.report]
    assert "log.csv: using column 'Date ' as the timestamp (found by name)" in said, said

"""config_fields.in_flags: the data loader's messages, which name LoadConfig's fields (as the
jobs API's `config.load.*` and a `--config` file's load section read them), said in the
options of `urnn train` / `urnn backtest`."""

from __future__ import annotations

import pytest

from urnn_forecast.cli import LOAD_FLAGS
from urnn_forecast.config_fields import in_flags


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("'0,5' is not a number; a decimal comma? pass decimal=','", "pass --decimal ','"),
        (
            "save the file with ';' between fields and pass sep=';' and decimal=',', or write",
            "pass --sep ';' and --decimal ',', or write",
        ),
        ("the file looks ';'-separated: pass sep=';' (--sep ';')", "pass --sep ';'"),
        ("give freq 'B' (--freq B) for business days", "give --freq B for business days"),
        (
            "longer than max_gap=24 (...). Raise max_gap to at least 30 to fill them, or set "
            "on_long_gap to 'split' to cut the series there",
            "longer than --max-gap 24 (...). Raise --max-gap to at least 30 to fill them, or "
            "set --on-long-gap to 'split' to cut the series there",
        ),
        (
            "Choose fill 'interpolate' or 'ffill' with max_gap at least 9 to fill them",
            "Choose --fill 'interpolate' or 'ffill' with --max-gap at least 9 to fill them",
        ),
        ("Set duplicates to one of mean, first, last", "Set --duplicates to one of mean"),
        ("keep one with duplicates='first' or 'last'", "keep one with --duplicates 'first'"),
        ("series_col (--series-col) must name the column", "--series-col must name the column"),
        ("(timestamp_col, --timestamp-col: 'a', 'b')", "(--timestamp-col: 'a', 'b')"),
        ("decimal ',' is also the field separator (sep): pass sep too", "--decimal ','"),
        ("decimal ',' is also the field separator (sep): pass sep too", "(--sep): pass --sep"),
        ("set on_short='drop' to leave such series out", "set --on-short 'drop' to leave"),
        ("pass timestamp_format '%Y%m%d%H'", "pass --timestamp-format '%Y%m%d%H'"),
        ("or raise max_filled_fraction (--max-filled-fraction)", "raise --max-filled-fraction"),
        ("pass step_origin (--step-origin) and freq (--freq)", "pass --step-origin and --freq"),
    ],
)
def test_a_loader_message_names_the_options_a_cli_user_types(said: str, expected: str) -> None:
    assert expected in in_flags(said, LOAD_FLAGS)


@pytest.mark.parametrize(
    "said",
    [
        # words of prose that are field names too, with no value after them
        "a decimal comma (1,5) read as text; fill the gap, or leave it to the fill policy",
        "the target and covariates of the model; duplicates were merged",
        # a field the command has no option for (a --config file's load.min_length)
        "every series is shorter than min_length=960 (the longest has 600 rows)",
        # the options already said
        "--max-gap 24 and --freq h",
    ],
)
def test_prose_and_fields_without_an_option_are_left_as_they_are(said: str) -> None:
    assert in_flags(said, LOAD_FLAGS) == said


@pytest.mark.parametrize(
    "said",
    [
        # a fleet file's id column named like the --series-id setting: `urnn train
        # --series-col series_id` said "column '--series-id', data row 101: empty series id"
        "fleet.csv: column 'series_id', data row 101 (1-based, header not counted): empty "
        "series id (1 such row): every row needs the id of its series",
        # a column, a series id or a value that is, or holds, a setting's name is data
        "no column 'freq' in fleet.csv (columns: 'site', 'freq', 'sep')",
        "series 'max_gap': column(s) 'Sensor freq' have no values",
    ],
)
def test_quoted_names_of_columns_and_series_are_left_as_they_are(said: str) -> None:
    assert in_flags(said, LOAD_FLAGS) == said


def test_a_setting_beside_a_quoted_column_of_its_name_is_still_said_as_the_option() -> None:
    said = "column 'sep' looks ';'-separated: pass sep=';' (--sep ';')"
    assert in_flags(said, LOAD_FLAGS) == "column 'sep' looks ';'-separated: pass --sep ';'"

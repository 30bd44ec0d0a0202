"""Frequency aliases that pandas renamed: the error says the new spelling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from service.served import freq_problem
from training.data import LoadConfig
from training.validation import (
    FrequencyError,
    InvalidOptionError,
    Report,
    fill_gaps,
    regularise,
    renamed_alias_hint,
)


@pytest.mark.parametrize(
    ("alias", "now"),
    [("M", "ME"), ("2H", "2h"), ("15T", "15min"), ("A-DEC", "YE-DEC"), ("Q", "QE")],
)
def test_a_renamed_alias_names_its_new_spelling(alias: str, now: str) -> None:
    assert renamed_alias_hint(alias) == f"; pandas now spells {alias!r} as {now!r}"
    with pytest.raises(InvalidOptionError, match=f"pandas now spells {alias!r} as {now!r}"):
        LoadConfig(target="y", freq=alias)
    assert f"pandas now spells {alias!r} as {now!r}" in (freq_problem(alias, "h") or "")


def test_an_unknown_alias_gets_examples_instead() -> None:
    assert renamed_alias_hint("fortnightly") == "" and renamed_alias_hint("W-SUN") == ""
    assert freq_problem("fortnightly", "h") == (
        "'fortnightly' is not a pandas offset alias (e.g. 'h', '15min', 'D')"
    )


@pytest.mark.parametrize("gap", [False, True])
def test_fill_gaps_marks_exactly_the_filled_values(gap: bool) -> None:
    """A series with nothing missing (most of a fleet) comes back as it is, with a mask of no
    filled value that is the frame's isna(), and no report line; one short gap is filled,
    marked and reported."""
    index = pd.date_range("2023-01-01", periods=8, freq="D", name="timestamp")
    frame = pd.DataFrame({"y": np.arange(8.0), "x": np.arange(8.0) * 2}, index=index)
    if gap:
        frame.iloc[3, 0] = np.nan
    report = Report()
    (segment,) = fill_gaps(
        frame,
        "s",
        fill="interpolate",
        max_gap=2,
        on_long_gap="error",
        freq="D",
        source="f.csv",
        report=report,
    )
    pd.testing.assert_frame_equal(segment.filled, frame.isna())
    assert getattr(segment.filled.index, "freq", None) == index.freq and segment.unit == ""
    np.testing.assert_array_equal(
        segment.frame.to_numpy(), np.c_[np.arange(8.0), np.arange(8.0) * 2]
    )
    assert [d.step for d in report.decisions] == (["fill"] if gap else [])


def test_regularise_keeps_a_series_on_its_grid_and_names_a_stamp_off_it() -> None:
    """A series already on its grid becomes the grid itself (its freq set, nothing inserted or
    reported); one as long whose timestamp is 15 minutes off is refused at that row."""
    grid = pd.date_range("2023-01-01", periods=6, freq="h", name="timestamp")
    frame = pd.DataFrame({"y": np.arange(6.0)}, index=pd.DatetimeIndex(list(grid)))
    report = Report()
    regular = regularise(frame, np.arange(6) + 1, "s", "h", "f.csv", report)
    assert regular.index.equals(grid) and getattr(regular.index, "freq", None) == grid.freq
    np.testing.assert_array_equal(regular["y"].to_numpy(), np.arange(6.0))
    assert report.decisions == []
    off = frame.set_axis(grid.insert(3, grid[3] - pd.Timedelta("45min")).delete(4))
    with pytest.raises(FrequencyError, match=r"series 's': timestamp 2023-01-01 02:15:00 at"):
        regularise(off, np.arange(6) + 1, "s", "h", "f.csv", Report())

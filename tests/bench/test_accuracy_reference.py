"""bench.accuracy_reference's helpers for equipment logs: 1-second rows read as hours, and which
forecast rounds of a replay fall on a labelled anomaly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.accuracy_reference import anomalous_days, as_hours
from training.data import LoadConfig, LoadedData


def seconds_data() -> LoadedData:
    index = pd.date_range("2020-02-08 13:30:47", periods=5, freq="s")
    frame = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0, 5.0]}, index=index)
    mask = pd.DataFrame({"y": [False, True, False, False, False]}, index=index)
    return LoadedData(
        series={"a": frame},
        filled={"a": mask},
        target="y",
        covariates=(),
        freq="s",
        source="x.csv",
        config=LoadConfig(target="y"),
    )


def test_as_hours_stamps_row_k_at_origin_plus_k_hours_keeping_values_and_mask() -> None:
    out = as_hours(seconds_data())
    frame = out.series["a"]
    assert list(frame.index) == list(pd.date_range("2000-01-01", periods=5, freq="h"))
    assert frame["y"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert out.filled["a"]["y"].tolist() == [False, True, False, False, False]
    assert out.freq == "h"


def test_as_hours_pads_with_the_first_row_marked_filled() -> None:
    out = as_hours(seconds_data(), pad=3)
    frame = out.series["a"]
    assert frame.index[0] == pd.Timestamp("2000-01-01")
    assert frame.index[3] == pd.Timestamp("2000-01-01 03:00")
    assert frame["y"].tolist() == [1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert out.filled["a"]["y"].tolist() == [True] * 3 + [False, True, False, False, False]


def test_anomalous_days_reads_the_labels_of_the_day_after_the_origin() -> None:
    # origins at 23:00 of day d: the round's 24 steps are day d + 1's hours
    index = pd.date_range("2000-01-01", periods=24 * 4, freq="h")
    label = pd.Series(0.0, index=index)
    label.iloc[24 * 2 + 5] = 1.0  # one labelled step on 2000-01-03
    label.iloc[24 * 3 + 23] = 0.4  # interpolated across a gap: still labelled
    days = pd.DatetimeIndex(["1999-12-31", "2000-01-01", "2000-01-02", "2000-01-03"])
    flags = anomalous_days(label, days)
    assert isinstance(flags, np.ndarray)
    assert flags.tolist() == [False, False, True, True]

"""Every metric on an example small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.metrics import (
    MetricError,
    coverage,
    mae,
    mase,
    metric_tables,
    mse,
    pinball,
    rmse,
    seasonal_naive_scale,
    smape,
    symmetric_pairs,
    unscaled_note,
)

ACTUAL = np.array([1.0, 2.0, 3.0, 4.0])
FORECAST = np.array([2.0, 2.0, 1.0, 4.0])  # errors 1, 0, -2, 0


def test_point_metrics_by_hand() -> None:
    assert mae(ACTUAL, FORECAST) == 0.75
    assert mse(ACTUAL, FORECAST) == 1.25
    assert rmse(ACTUAL, FORECAST) == math.sqrt(1.25)
    # 200 |e| / (|y| + |f|): 200/3, 0, 400/4, 0
    assert smape(ACTUAL, FORECAST) == pytest.approx((200 / 3 + 100) / 4)
    assert smape(np.zeros(2), np.zeros(2)) == 0.0


def test_mase_uses_the_seasonal_naive_mae_of_the_history() -> None:
    history = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    assert seasonal_naive_scale(history, 2) == pytest.approx(5 / 3)  # |2-1|, |5-3|, |4-2|
    assert seasonal_naive_scale(history, 1) == pytest.approx((2 + 1 + 3 + 1) / 4)
    assert mase(ACTUAL, FORECAST, 5 / 3) == pytest.approx(0.45)
    assert math.isnan(mase(ACTUAL, FORECAST, 0.0))
    with pytest.raises(MetricError, match="history longer than it"):
        seasonal_naive_scale(history, 5)


def test_the_mase_scale_leaves_out_differences_with_a_filled_end() -> None:
    """A filled value is a straight line through a gap, smoother than the data: a difference
    touching one would shrink the scale. At season 2 the pairs are (2, 1), (5, 3), (4, 2); 5
    was filled, so |2-1| and |4-2| remain. With every pair touched, no scale (NaN)."""
    history = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    filled = np.array([False, False, False, True, False])
    assert seasonal_naive_scale(history, 2, filled) == pytest.approx((1 + 2) / 2)
    assert seasonal_naive_scale(history, 2, np.zeros(5, dtype=bool)) == pytest.approx(5 / 3)
    assert math.isnan(seasonal_naive_scale(history, 1, np.array([0, 1, 0, 1, 0], dtype=bool)))


def test_pinball_and_coverage_by_hand() -> None:
    # q = 0.9, e = y - f = -1 and 1: max(-0.9, 0.1) = 0.1, max(0.9, -0.1) = 0.9
    assert pinball(np.array([1.0, 3.0]), np.array([2.0, 2.0]), 0.9) == pytest.approx(0.5)
    assert pinball(np.array([1.0, 3.0]), np.array([2.0, 2.0]), 0.5) == pytest.approx(0.5)
    inside = coverage(np.array([1.0, 2.0, 3.0]), np.array([0, 2.5, 2]), np.array([2, 3, 2.5]))
    assert inside == pytest.approx(1 / 3)
    assert symmetric_pairs((0.05, 0.1, 0.5, 0.9, 0.95)) == [(0.05, 0.95), (0.1, 0.9)]
    with pytest.raises(MetricError, match="same shape"):
        mae(np.zeros(2), np.zeros(3))


def test_tables_by_step_and_by_series() -> None:
    # two series, one origin each, H = 2
    frame = pd.DataFrame(
        {
            "series": ["a", "a", "b", "b"],
            "step": [1, 2, 1, 2],
            "actual": [1.0, 2.0, 3.0, 4.0],
            "point": [2.0, 2.0, 1.0, 4.0],
            "q0.1": [0.0, 1.0, 0.0, 3.0],
            "q0.5": [2.0, 2.0, 1.0, 4.0],
            "q0.9": [3.0, 3.0, 2.0, 5.0],
            "mase_scale": [1.0, 1.0, 2.0, 2.0],
        }
    )
    tables = metric_tables(frame, (0.1, 0.5, 0.9))
    by_step, by_series, overall = tables.by_step, tables.by_series, tables.overall
    assert by_step.loc[1, "mae"] == 1.5 and by_step.loc[2, "mae"] == 0.0
    assert by_step.loc[1, "mse"] == 2.5 and by_step.loc[1, "rmse"] == math.sqrt(2.5)
    assert by_series.loc["a", "mase"] == 0.5  # |e| / 1: 1, 0
    assert by_series.loc["b", "mase"] == 0.5  # |e| / 2: 1, 0
    assert by_series.loc["b", "coverage_0.1_0.9"] == 0.5  # 3 outside [0, 2], 4 inside [3, 5]
    assert overall.loc["all", "n"] == 4
    assert overall.loc["all", "mse"] == 1.25
    # pinball at 0.5 is half the absolute error
    assert overall.loc["all", "pinball_q0.5"] == pytest.approx(0.75 / 2)
    assert list(by_step.columns[:4]) == ["n", "mae", "mse", "rmse"]


def test_each_quantile_level_is_measured_by_the_share_of_actuals_below_it() -> None:
    """An asymmetric set (0.5, 0.9, 0.99) has no symmetric pair, so no coverage column: the
    tables gave its user no calibration figure at all. `below_q<level>` is the share of
    actuals at or below that quantile's forecast, per step, per series and overall."""
    frame = pd.DataFrame(
        {
            "series": ["a"] * 4 + ["b"] * 4,
            "step": [1, 2, 1, 2] * 2,
            "actual": [1.0, 5.0, 2.0, 9.0, 0.0, 0.0, 3.0, 1.0],
            "point": [2.0, 2.0, 2.0, 2.0, 0.0, 1.0, 1.0, 1.0],
            "q0.5": [2.0, 2.0, 2.0, 2.0, 0.0, 1.0, 1.0, 1.0],
            "q0.9": [4.0, 4.0, 4.0, 4.0, 1.0, 2.0, 2.0, 2.0],
            "q0.99": [6.0, 6.0, 6.0, 6.0, 2.0, 3.0, 3.0, 3.0],
            "mase_scale": [1.0] * 8,
        }
    )
    tables = metric_tables(frame, (0.5, 0.9, 0.99))
    overall = tables.overall.loc["all"]
    assert not [c for c in tables.overall.columns if c.startswith("coverage")]
    # actual <= q0.5: 1<=2, 2<=2 (a); 0<=0, 0<=1, 1<=1 (b); 5, 9, 3 above: 5 of 8
    assert overall["below_q0.5"] == 5 / 8
    assert overall["below_q0.9"] == 5 / 8  # 5 > 4, 9 > 4 and 3 > 2 above
    assert overall["below_q0.99"] == 7 / 8  # only 9 > 6
    assert tables.by_series.loc["a", "below_q0.9"] == 2 / 4
    assert tables.by_series.loc["b", "below_q0.9"] == 3 / 4
    assert tables.by_step.loc[2, "below_q0.99"] == 3 / 4  # step 2: 5, 9, 0, 1 vs 6, 6, 3, 3


def test_the_overall_mase_says_which_series_it_leaves_out() -> None:
    """A constant training span has no seasonal-naive error: its MASE is NaN, and the overall
    MASE is a mean over the other series, said rather than silent."""
    frame = pd.DataFrame(
        {
            "series": ["a", "a", "b", "b"],
            "step": [1, 2, 1, 2],
            "actual": [1.0, 2.0, 5.0, 5.0],
            "point": [1.5, 2.5, 6.0, 6.0],
            "q0.5": [1.5, 2.5, 6.0, 6.0],
            "mase_scale": [1.0, 1.0, 0.0, 0.0],
        }
    )
    tables = metric_tables(frame, [0.5])
    assert tables.overall["mase"].iloc[0] == pytest.approx(0.5)
    assert tables.by_series["mase"].isna().tolist() == [False, True]
    assert unscaled_note(frame) == (
        "MASE leaves out 1 series with no seasonal-naive error to scale by (a constant "
        "training span, or no two observed values a season apart): b"
    )
    assert unscaled_note(frame.assign(mase_scale=1.0)) == ""


def test_filled_actuals_are_left_out_and_all_filled_is_refused() -> None:
    frame = pd.DataFrame(
        {
            "series": ["a"] * 4,
            "step": [1, 2, 1, 2],
            "actual": ACTUAL,
            "point": FORECAST,
            "q0.5": FORECAST,
            "mase_scale": 1.0,
            "filled": [False, False, True, False],  # the -2 error falls on a filled value
        }
    )
    tables = metric_tables(frame, [0.5])
    assert tables.overall["n"].iloc[0] == 3
    assert tables.overall["mae"].iloc[0] == pytest.approx(1 / 3)
    with pytest.raises(MetricError, match="all 4 forecast values fall on target values"):
        metric_tables(frame.assign(filled=True), [0.5])


def test_a_perfect_forecast_of_zero_sales_has_a_positive_zero_pinball_loss() -> None:
    """max(0.0, -0.0) is -0.0 in numpy: the backtest printed 'pinball_q0.1 -0.0000'."""
    zeros = np.zeros(4)
    assert math.copysign(1.0, pinball(zeros, zeros, 0.1)) == 1.0
    frame = pd.DataFrame(
        {"series": ["a"] * 4, "step": [1, 2, 3, 4], "actual": zeros, "point": zeros}
        | {"q0.1": zeros, "q0.5": zeros, "q0.9": zeros, "mase_scale": np.ones(4)}
    )
    overall = metric_tables(frame, (0.1, 0.5, 0.9)).overall
    for column in ("pinball_q0.1", "pinball_q0.5", "pinball_q0.9", "pinball_mean"):
        value = float(overall[column].iloc[0])
        assert value == 0.0 and math.copysign(1.0, value) == 1.0, column

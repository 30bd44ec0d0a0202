"""Forecast metrics, defined once for training reports, backtests and (later) the service.

Point metrics score the point forecast (the 0.5 quantile); the probabilistic ones score the
quantiles. Definitions (e = forecast - actual, means over every scored value):

- MAE = mean |e|; MSE = mean e^2; RMSE = sqrt(MSE) of the group (not a mean of RMSEs).
- sMAPE = mean 200 |e| / (|actual| + |forecast|), in percent (0..200, the M4 definition);
  a term with actual = forecast = 0 counts 0. Meaningful in original units only: on z-scores
  values near 0 make it explode.
- MASE = mean |e| / s, s = the in-sample MAE of the seasonal naive forecast y_t = y_{t-m} over
  the series' training span (Hyndman & Koehler 2006), per series, from observed values only
  (a difference with a value the loader filled in is left out). NaN for a series with
  s = 0 (a constant training span) or none; the overall and per-step MASE are then means over the
  values of the series that have a scale, and the backtest says which series were left out of
  it (`unscaled_series`).
- Aggregation: every table's figure is a mean over the values its group holds (pooled), not a
  mean of per-series scores, so overall a series with more scored values weighs more (a fleet
  whose series all have test spans of one length: the same as the mean over series).
- pinball loss at quantile q = mean max(q (y - f_q), (q - 1) (y - f_q)).
- coverage of each symmetric pair (q, 1 - q), q < 0.5: the share of actuals inside
  [f_q, f_{1-q}], to compare with the nominal 1 - 2q.
- below of each quantile q (`below_q<level>`): the share of actuals at or below f_q, to compare
  with q itself. It says which side an interval misses on, and it is the only calibration
  figure of a set with no symmetric pair (0.5, 0.9, 0.99: a user who plans stock on q0.9
  had no way to see whether 90 % of the actuals fell below it).

Tables (`metric_tables`) take a tidy frame of forecasts, one row per (series, origin, step),
with columns `series`, `step`, `actual`, `point`, one `q<level>` column per quantile and
`mase_scale`, and group it by horizon step and by series.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.validation import natural_key, plural

PAIR_TOLERANCE = 1e-9  # q and 1 - q from floats: 0.1 and 0.9 sum to 0.9999999999999999 + ...


class MetricError(ValueError):
    """Arrays that cannot be scored together (shapes differ, too short a history)."""


def score_text(value: float) -> str:
    """A score as the report tables print it: four decimals in the usual range, significant
    digits outside it. Scores are in the data's units, and a fixed '.4f' printed every
    absolute score of a series logged in kilo- or micro-units (ETTh1 OT x 1e-6: MAE 3.0e-6)
    as 0.0000, and the sMAPE of a series on a large level (OT + 1e7: 3.0e-5 %) too, so a
    table read as a perfect fit; values of 1e7 and more (MSE in watts) as long digit runs."""
    if not math.isfinite(value) or value == 0 or 1e-3 <= abs(value) < 1e7:
        return f"{value:.4f}"
    return f"{value:.4g}"


def json_scores(scores: Mapping[str, float]) -> dict[str, float | None]:
    """Scores for a JSON file: a figure that is not a number (the MASE of series with no
    seasonal-naive error to scale by) as null. json.dumps wrote it as a bare NaN, which is not
    JSON (RFC 8259): `jq`, JavaScript and MLflow's artifact preview refused the whole file."""
    return {str(k): float(v) if math.isfinite(float(v)) else None for k, v in scores.items()}


def _pair(actual: np.ndarray, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, f = np.asarray(actual, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise MetricError(f"actual and forecast must have the same shape; got {a.shape}, {f.shape}")
    if a.size == 0:
        raise MetricError("nothing to score: empty arrays")
    return a, f


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    a, f = _pair(actual, forecast)
    return float(np.mean(np.abs(f - a)))


def mse(actual: np.ndarray, forecast: np.ndarray) -> float:
    a, f = _pair(actual, forecast)
    return float(np.mean((f - a) ** 2))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    return math.sqrt(mse(actual, forecast))


def smape_terms(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    a, f = _pair(actual, forecast)
    denominator = np.abs(a) + np.abs(f)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, 200.0 * np.abs(f - a) / safe, 0.0)


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(smape_terms(actual, forecast)))


def seasonal_naive_scale(
    history: np.ndarray, season: int, filled: np.ndarray | None = None
) -> float:
    """In-sample MAE of y_t = y_{t-season} over `history` (the training span).

    `filled` marks values the loader filled in: a difference with a filled end is left out, as
    the scores leave out filled actuals. A straight line drawn through a gap is smoother than
    the data, so counting it made the scale smaller and every MASE larger. NaN when no pair of
    observed values lies a season apart (the MASE of such a series is left out and named)."""
    errors = seasonal_naive_errors(history, season, filled)
    return float(np.mean(errors)) if len(errors) else math.nan


def seasonal_naive_errors(
    history: np.ndarray, season: int, filled: np.ndarray | None = None
) -> np.ndarray:
    """|y_t - y_{t-season}| over `history`, for the pairs whose two values were observed."""
    h = np.asarray(history, dtype=np.float64)
    if season < 1 or len(h) <= season:
        raise MetricError(
            f"the MASE scale needs season >= 1 and a history longer than it; got season="
            f"{season}, {plural(len(h), 'value')}"
        )
    errors: np.ndarray = np.abs(h[season:] - h[:-season])
    if filled is None:
        return errors
    gone = np.asarray(filled, dtype=bool)
    kept: np.ndarray = errors[~(gone[season:] | gone[:-season])]
    return kept


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    return mae(actual, forecast) / scale if scale > 0 else math.nan


def pinball(actual: np.ndarray, forecast: np.ndarray, quantile: float) -> float:
    a, f = _pair(actual, forecast)
    e = a - f
    return float(np.mean(np.maximum(quantile * e, (quantile - 1.0) * e))) + 0.0  # not -0.0


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    a, lo = _pair(actual, lower)
    _, hi = _pair(actual, upper)
    return float(np.mean((lo <= a) & (a <= hi)))


def symmetric_pairs(quantiles: Sequence[float]) -> list[tuple[float, float]]:
    """(q, 1 - q) pairs among `quantiles`, q < 0.5, outermost first."""
    pairs = []
    for lo in quantiles:
        if lo >= 0.5:
            continue
        for hi in quantiles:
            if abs(lo + hi - 1.0) < PAIR_TOLERANCE:
                pairs.append((lo, hi))
    return pairs


def quantile_column(q: float) -> str:
    """The tidy frame's column for quantile q: `q0.1`, `q0.5`, `q0.975`."""
    return f"q{q:g}"


def coverage_column(lo: float, hi: float) -> str:
    return f"coverage_{lo:g}_{hi:g}"


def below_column(q: float) -> str:
    """The tables' column of the share of actuals at or below quantile q: `below_q0.9`."""
    return f"below_{quantile_column(q)}"


@dataclass(frozen=True)
class MetricTables:
    overall: pd.DataFrame  # one row, index ["all"]
    by_step: pd.DataFrame  # index: horizon step 1..H
    by_series: pd.DataFrame  # index: series


def unscaled_note(forecasts: pd.DataFrame) -> str:
    """ "" or the sentence saying which series the overall MASE leaves out."""
    left_out = unscaled_series(forecasts)
    if not left_out:
        return ""
    return (
        f"MASE leaves out {len(left_out):,} series with no seasonal-naive error to scale by "
        f"(a constant training span, or no two observed values a season apart): "
        f"{_first_ten(left_out)}"
    )


def _first_ten(series: list[str]) -> str:
    more = f" and {len(series) - 10:,} more" if len(series) > 10 else ""
    return ", ".join(series[:10]) + more


def filled_note(forecasts: pd.DataFrame) -> str:
    """ "" or the sentence saying how many forecast values the scores leave out because their
    actual was filled in by the loader (a gap interpolated), not observed."""
    if "filled" not in forecasts.columns:
        return ""
    flags = forecasts["filled"].to_numpy(dtype=bool)
    if not flags.any():
        return ""
    series = sorted({str(s) for s in forecasts.loc[flags, "series"]}, key=natural_key)
    return (
        f"the scores leave out {int(flags.sum()):,} of {len(flags):,} forecast values whose "
        f"actual the loader filled in (a gap interpolated, not observed), in series "
        f"{_first_ten(series)}"
    )


def zero_width_note(forecasts: pd.DataFrame, quantiles: Sequence[float]) -> str:
    """ "" or the sentence saying which series' coverage reads intervals of zero width: a
    flat look-back (a sensor stuck at one value, a demand series at 0) is forecast as its
    level, every quantile, so its interval covers an actual at that level exactly and
    misses any other. Said, so that a coverage of 1 (or 0 where the series left its level)
    is read as that, not as a calibrated interval. Observed actuals only, as scored."""
    pairs = symmetric_pairs(quantiles)
    if not pairs or forecasts.empty:
        return ""
    lo, hi = (quantile_column(q) for q in pairs[0])
    rows = forecasts
    if "filled" in forecasts.columns:
        rows = forecasts[~forecasts["filled"].to_numpy(dtype=bool)]
    zero = rows[hi].to_numpy(dtype=np.float64) == rows[lo].to_numpy(dtype=np.float64)
    if not zero.any():
        return ""
    series = sorted({str(s) for s in rows["series"].to_numpy()[zero]}, key=natural_key)
    return (
        f"{int(zero.sum()):,} of {len(zero):,} forecast values have a {pairs[0][0]:g}..."
        f"{pairs[0][1]:g} interval of zero width (a flat look-back, forecast as its level), "
        f"in {len(series):,} series: {_first_ten(series)}; such an interval covers an actual "
        "at that level and misses any other, so their coverage is the share of actuals that "
        "stayed at the level"
    )


def unscaled_series(forecasts: pd.DataFrame) -> list[str]:
    """Series whose MASE scale is 0 or NaN (a constant training span, or no observed pair a
    season apart): NaN in the by-series table, and not in the overall MASE, which is a mean
    over the others."""
    scale = forecasts.groupby("series")["mase_scale"].max()
    return sorted((str(s) for s in scale.index[~(scale > 0)]), key=natural_key)


def metric_tables(forecasts: pd.DataFrame, quantiles: Sequence[float]) -> MetricTables:
    """Every metric overall, per horizon step and per series from a tidy forecast frame, on
    observed values only: rows flagged `filled` (an interpolated target, `LoadedData.filled`)
    are left out, and `n` counts what was scored. Scoring a straight line drawn through a gap
    flattered every model (an audit's 200 filled values: MAE 26 % lower)."""
    needed = ["series", "step", "actual", "point", "mase_scale"]
    needed += [quantile_column(q) for q in quantiles]
    missing = [c for c in needed if c not in forecasts.columns]
    if missing:
        raise MetricError(f"the forecast frame lacks column(s) {missing}")
    if forecasts.empty:
        raise MetricError("nothing to score: the forecast frame is empty")
    observed: np.ndarray | None = None  # None: every row
    if "filled" in forecasts.columns:  # values the loader filled in: not observations
        flags = forecasts["filled"].to_numpy(dtype=bool)
        if flags.all():
            raise MetricError(
                f"nothing to score: all {len(forecasts):,} forecast values fall on target "
                "values the loader filled in (interpolated gaps), none on observed ones"
            )
        observed = ~flags if flags.any() else None

    def column(name: str) -> np.ndarray:
        values = forecasts[name].to_numpy(dtype=np.float64)
        return values if observed is None else values[observed]

    # One term column at a time, each averaged by group on its own: pandas' grouped mean
    # (compensated sums, row order) of a column does not depend on the columns beside it, so
    # the figures are those of one frame of every term, which held 14 columns of the
    # forecasts' length and a copy of it per table (DAYTON's default backtest: 1.4 GB).
    # The series ids are factorized as the column holds them: `.to_numpy()` of a text column
    # made a Python string per row (six PJM regions' 20 M rows: over 1 GB).
    rows = forecasts if observed is None else forecasts[["series", "step"]][observed]
    groups = {
        "all": _Groups(np.zeros(len(rows), dtype=np.int8), pd.Index(["all"])),
        "step": _Groups.of(rows["step"], "step"),
        "series": _Groups.of(rows["series"], "series"),
    }
    del rows
    a, f = column("actual"), column("point")
    scale = column("mase_scale")
    means: dict[str, dict[str, np.ndarray]] = {key: {} for key in groups}

    def add(name: str, term: np.ndarray) -> None:
        for key, grouped in groups.items():
            means[key][name] = grouped.mean(term)

    add("mae", _rowwise(lambda a, f: np.abs(f - a), a, f))
    add("mse", _rowwise(lambda a, f: (f - a) ** 2, a, f))
    add("smape", _rowwise(smape_terms, a, f))
    add("mase", _rowwise(lambda a, f, s: np.abs(f - a) / np.where(s > 0, s, np.nan), a, f, scale))
    del scale
    for q in quantiles:
        forecast = column(quantile_column(q))
        add(
            f"pinball_{quantile_column(q)}",
            _rowwise(lambda a, f, q=q: _pinball_terms(a, f, q), a, forecast),
        )
    add(
        "pinball_mean", _pinball_mean(a, [column(quantile_column(q)) for q in quantiles], quantiles)
    )
    for lo, hi in symmetric_pairs(quantiles):
        lower, upper = column(quantile_column(lo)), column(quantile_column(hi))
        add(
            coverage_column(lo, hi),
            _rowwise(lambda a, lo, hi: ((lo <= a) & (a <= hi)).astype(np.float64), a, lower, upper),
        )
    for q in quantiles:
        forecast = column(quantile_column(q))
        add(below_column(q), _rowwise(lambda a, f: (a <= f).astype(np.float64), a, forecast))
    del forecast

    overall = _table(means["all"], groups["all"])
    by_step = _table(means["step"], groups["step"])
    by_series = _table(means["series"], groups["series"])
    order = sorted(by_series.index, key=lambda sid: natural_key(str(sid)))
    by_series = by_series.loc[order]
    return MetricTables(overall=overall, by_step=by_step, by_series=by_series)


def _pinball_terms(actual: np.ndarray, forecast: np.ndarray, q: float) -> np.ndarray:
    e = actual - forecast
    # + 0.0: a forecast equal to its actual (0 sales forecast 0) gives max(0.0, -0.0), which
    # numpy answers -0.0: the backtest printed 'pinball_q0.1 -0.0000' for a perfect forecast,
    # and the tags and JSON a negative zero, of a loss that is never negative.
    terms: np.ndarray = np.maximum(q * e, (q - 1.0) * e) + 0.0
    return terms


# Rows whose per-value terms are computed at once: each term's temporaries (sMAPE's take
# five) are a block's, not the forecasts' length.
TERM_ROWS = 1_000_000


def _rowwise(term: Callable[..., np.ndarray], *columns: np.ndarray) -> np.ndarray:
    """`term` of the columns (elementwise), TERM_ROWS rows at a time: the same values."""
    out = np.empty(len(columns[0]))
    for start in range(0, len(out), TERM_ROWS):
        rows = slice(start, start + TERM_ROWS)
        out[rows] = term(*(c[rows] for c in columns))
    return out


def _pinball_mean(
    actual: np.ndarray, forecasts: Sequence[np.ndarray], quantiles: Sequence[float]
) -> np.ndarray:
    """Each value's mean pinball loss over the quantiles, as a frame of the quantiles' terms
    averages it across a row (the same reduction, so the same last bit), TERM_ROWS rows
    at a time: a row's mean reads that row alone."""
    out = np.empty(len(actual))
    for start in range(0, len(actual), TERM_ROWS):
        rows = slice(start, start + TERM_ROWS)
        block = pd.DataFrame(
            {
                f"pinball_{quantile_column(q)}": _pinball_terms(actual[rows], f[rows], q)
                for q, f in zip(quantiles, forecasts, strict=True)
            }
        )
        out[rows] = block.mean(axis=1).to_numpy()
    return out


@dataclass(frozen=True)
class _Groups:
    """Rows' group numbers 0..k-1 (in the order of `index`, the groups' sorted keys)."""

    codes: np.ndarray
    index: pd.Index

    @classmethod
    def of(cls, keys: pd.Series, name: str) -> _Groups:
        codes, uniques = pd.factorize(keys, sort=True)
        small = codes.astype(np.min_scalar_type(max(len(uniques) - 1, 0)))  # 1..4 bytes a row
        return cls(small, pd.Index(uniques, name=name))

    def mean(self, term: np.ndarray) -> np.ndarray:
        """The term's mean in each group, as pandas' groupby mean computes it."""
        means: np.ndarray = pd.Series(term).groupby(self.codes, sort=True).mean().to_numpy()
        return means

    def sizes(self) -> np.ndarray:
        return np.bincount(self.codes, minlength=len(self.index)).astype(np.int64)


def _table(means: Mapping[str, np.ndarray], groups: _Groups) -> pd.DataFrame:
    """Group means of the per-value terms; RMSE from the group's MSE; n values per group."""
    table = pd.DataFrame(dict(means), index=groups.index)
    table.insert(2, "rmse", np.sqrt(table["mse"]))
    table.insert(0, "n", groups.sizes())
    return table

"""The backtest's error in the service's own realised units: the absolute reference that
`UrnnRealisedErrorAboveBacktest` compares a served version's realised MASE with.

The backtest's MASE divides by the seasonal naive error of the training span
(training.metrics), the service's realised MASE by the mean absolute one-step change of the
look-back each forecast was made from (`service.realised.lookback_scale`): on PJM load the
first is 2.35 to 3 times the second, on hourly bike rentals 0.65 times, so the backtest's
figure says nothing about what the service will read. Here every backtest window is scored
as the service scores a forecast: its scale is `lookback_scale` of that window's look-back
(the model's last `lookback` values, original units; the same function, not a copy), each
step's |actual - median| is divided by it, and the steps are pooled by the service's `lead`
buckets (`service.metrics.lead_bucket`). A flat look-back (scale 0) is left out, as the
service leaves it out; so are steps whose actual the loader filled in (the backtest's own
metrics leave them out: the service never sees a filled value as an actual) and steps out of
the service's range (REALISED_ERROR_LIMIT, REALISED_SCALED_LIMIT), which it does not score.

Stored in config.json as `realised_reference` (training.mlflow_model.EXTRA):
`{"definition": DEFINITION, "mase_by_lead": {"1": .., "2-3": ..}, "points_by_lead": {..},
"points": n, "windows": n}`. A model from before the key has none: the service then exports
no reference gauge for it, GET /model says null, and the alert stays silent for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from service.metrics import (
    LEAD_LABELS,
    REALISED_ERROR_LIMIT,
    REALISED_SCALED_LIMIT,
    lead_bucket,
)
from service.realised import lookback_scale
from training.windows import WindowDataset

KEY = "realised_reference"
DEFINITION = (
    "mean over backtest steps of |actual - median| / mean |one-step change| of the window's "
    "last lookback values (service.realised.lookback_scale), by lead bucket; flat look-backs, "
    "filled actuals and out-of-range steps left out"
)


def window_lookback_scales(
    dataset: WindowDataset, series: Mapping[str, pd.DataFrame], lookback: int
) -> np.ndarray:
    """(N,) `lookback_scale` of each window's look-back: the target's last `lookback` values
    before the window's first forecast step, read from `series` (LoadedData.series: the data's
    own values in original units, not the windows' float32 z-scores). NaN where a look-back
    holds a missing value (the service refuses such a history)."""
    scales = np.full(len(dataset), np.nan)
    owners = dataset.window_entry.numpy()
    starts = dataset.starts.numpy()
    for e, entry in enumerate(dataset.entries):
        windows = np.flatnonzero(owners == e)
        if not len(windows):
            continue
        frame = series.get(entry.source)
        column = entry.columns[0]
        if frame is None or column not in frame.columns:
            continue
        values = frame[column].reindex(entry.index).to_numpy(dtype=np.float64)
        # a chunk of windows at a time: DAYTON's default backtest has ~170,000 windows, whose
        # look-backs at once (168 values each) would be 0.2 GB
        for begin in range(0, len(windows), CHUNK):
            chunk = windows[begin : begin + CHUNK]
            first = starts[chunk] - entry.offset + dataset.lookback  # first forecast rows
            rows = first[:, None] - lookback + np.arange(lookback)
            scales[chunk] = lookback_scale(values[rows], lookback)
    return scales


CHUNK = 4096  # windows whose look-backs window_lookback_scales reads at once


def realised_reference(
    forecasts: pd.DataFrame, window_scales: np.ndarray, horizon: int
) -> dict[str, Any] | None:
    """The `realised_reference` of a backtest: `forecasts` (tidy, `horizon` rows per window,
    window-major, as training.backtest.tidy_forecasts builds them; columns step, actual,
    point, filled) and (N,) `window_scales` (window_lookback_scales, one per window). None when
    no step can be scored (every look-back flat, say)."""
    n = len(window_scales)
    if n == 0 or len(forecasts) != n * horizon:
        return None
    actual = forecasts["actual"].to_numpy(dtype=np.float64).reshape(n, horizon)
    point = forecasts["point"].to_numpy(dtype=np.float64).reshape(n, horizon)
    steps = forecasts["step"].to_numpy().reshape(n, horizon)
    errors = np.abs(actual - point)
    scale = np.broadcast_to(window_scales[:, None], errors.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = errors / scale
    kept = (scale > 0) & np.isfinite(scaled) & (errors <= REALISED_ERROR_LIMIT)
    kept &= scaled <= REALISED_SCALED_LIMIT
    if "filled" in forecasts.columns:
        kept &= ~forecasts["filled"].to_numpy(dtype=bool).reshape(n, horizon)
    if not kept.any():
        return None
    bucket_of = np.array([lead_bucket(s) for s in range(1, int(steps.max()) + 1)], dtype=np.intp)
    buckets = bucket_of[steps[kept] - 1]
    points = np.bincount(buckets, minlength=len(LEAD_LABELS))
    sums = np.bincount(buckets, weights=scaled[kept], minlength=len(LEAD_LABELS))
    present = np.flatnonzero(points).tolist()
    return {
        "definition": DEFINITION,
        "mase_by_lead": {LEAD_LABELS[b]: float(sums[b] / points[b]) for b in present},
        "points_by_lead": {LEAD_LABELS[b]: int(points[b]) for b in present},
        "points": int(points.sum()),
        "windows": int(kept.any(axis=1).sum()),
    }


def reference_mase(meta: Mapping[str, Any]) -> dict[str, float] | None:
    """A config.json's `mase_by_lead`, checked: lead labels the service uses, finite values
    above 0; None when the key is absent (a model from before it) or not of that shape."""
    found = meta.get(KEY)
    if not isinstance(found, Mapping):
        return None
    by_lead = found.get("mase_by_lead")
    if not isinstance(by_lead, Mapping) or not by_lead:
        return None
    out: dict[str, float] = {}
    for lead, value in by_lead.items():
        if lead not in LEAD_LABELS or isinstance(value, bool):
            return None
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            return None
        out[str(lead)] = float(value)
    # in lead order: config.json sorts its keys, and '16-31' came before '2-3'
    return {lead: out[lead] for lead in LEAD_LABELS if lead in out}


def reference_metrics(reference: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics of a reference: `realised_reference_mase_lead_<lead>` per bucket and
    `realised_reference_mase` over every step."""
    by_lead: Mapping[str, float] = reference["mase_by_lead"]
    points: Mapping[str, int] = reference["points_by_lead"]
    total = sum(points.values())
    out = {f"realised_reference_mase_lead_{lead}": v for lead, v in by_lead.items()}
    out["realised_reference_mase"] = sum(by_lead[k] * points[k] for k in by_lead) / total
    return out


def reference_line(reference: Mapping[str, Any]) -> str:
    """`urnn train`'s line for a reference: the figures a served version's realised MASE will
    be read against, printed where the backtest's own MASE (another scale) is, so that nobody
    compares the two."""
    return (
        "served error to expect (realised MASE by lead: |actual - median| over the look-back's "
        "mean one-step change, as the service scores it; what UrnnRealisedErrorAboveBacktest "
        f"compares with): {lead_figures(reference['mase_by_lead'])}"
    )


def lead_figures(by_lead: Mapping[str, float]) -> str:
    """`1 0.59, 2-3 0.92, ...`: a reference's figures in the service's lead order."""
    ordered = sorted(by_lead, key=LEAD_LABELS.index)
    return ", ".join(f"{lead} {by_lead[lead]:.3g}" for lead in ordered)

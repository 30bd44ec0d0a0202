"""Input drift: PSI of recent inputs against the histogram of the training inputs.

The reference is `meta["reference"]` of the model (training.mlflow_model.reference_statistics):
per column, interior bin `edges` (training quantiles) and the training `proportions` per bin.
Recent values go through the same binning (`searchsorted(edges, side="left")`, computed as one
comparison per edge) into a sliding window of the last `window` values per column, kept as a
ring of bin indices plus running counts, so adding values costs a few vectorised passes over
them and no rescan of the window. The runner feeds it once per batch.

    PSI = sum_i (p_i - q_i) ln(p_i / q_i),  p = recent proportions, q = training proportions,

both floored at EPSILON so an empty bin does not make it infinite. Each column is binned in
its reference's space (`reference[column]["space"]`, training.mlflow_model.DRIFT_SPACES): the
target's look-back windows as z-scores of each window's own mean and std ("window", for a
windowed model that normalises each window: a level that moves with the seasons is no drift),
covariates (and the target of a model that reads its level) as their values
("values": a global scaler is affine and increasing, so binning raw values against raw edges
is the same as binning scaled values against scaled edges). A model registered before the key
has "values" everywhere, and is monitored as it was.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.metrics import ServiceMetrics, multiprocess_mode
from training.mlflow_model import window_scores

EPSILON = 1e-4
# A worker's PSI is exported once its window holds this many values (or is full, when
# URNN_DRIFT_WINDOW is smaller); until then the gauge reads 0 and the window's size says why.
# A PSI over one request's few hundred values is noise, and with several workers the gauges
# merge by their max: a worker just (re)started would otherwise set the merged PSI from its
# first request beside another worker's full window (the alert's 1,000-value guard read that
# other worker's size).
MIN_PSI_VALUES = 1_000


@dataclass
class RollingHistogram:
    """Bin counts of the last `capacity` values, against fixed edges."""

    edges: np.ndarray  # (K - 1,) interior edges
    capacity: int
    bins: np.ndarray = field(init=False)  # ring of bin indices
    counts: np.ndarray = field(init=False)  # (K,)
    position: int = 0
    size: int = 0

    def __post_init__(self) -> None:
        self.bins = np.zeros(self.capacity, dtype=np.int32)
        self.counts = np.zeros(len(self.edges) + 1, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        new = self.bin_of(values[-self.capacity :])
        counts, size, k = self.counts, self.size, len(new)
        # The ring slots written, as at most two slices: [position, ...) then, wrapping, [0, ...)
        first = min(k, self.capacity - self.position)
        for lo, hi, offset in ((self.position, self.position + first, 0), (0, k - first, first)):
            if hi <= lo:
                continue
            if lo < size:  # slots still holding older values: they leave the window
                counts -= np.bincount(self.bins[lo : min(hi, size)], minlength=len(counts))
            self.bins[lo:hi] = new[offset : offset + hi - lo]
        counts += np.bincount(new, minlength=len(counts))
        self.position = int((self.position + k) % self.capacity)
        self.size = min(self.capacity, size + k)

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """`searchsorted(edges, values, side="left")` (the number of edges below each value),
        as one vectorised comparison per edge: several times faster than a binary search per
        value for the handful of edges a reference has (values are finite: validated)."""
        if len(self.edges) > 64:
            return np.searchsorted(self.edges, values, side="left").astype(np.int32)
        out = np.zeros(len(values), dtype=np.int32)
        for edge in self.edges:
            out += values > edge
        return out

    def proportions(self) -> np.ndarray:
        return self.counts / max(1, self.size)


def newest(parts: Sequence[np.ndarray], count: int, *, per_window: bool = False) -> np.ndarray:
    """The last `count` values of `parts` joined in order (all of them if fewer). A 2-D part
    is its rows in order; only the rows that hold the values kept are copied. `per_window`:
    each look-back window (a 2-D part's row, or a 1-D part whole) is first scored against its
    own mean and std (`window_scores`, the "window" space), so a window cut short by `count`
    keeps the scores its whole window gives."""
    kept: list[np.ndarray] = []
    for part in reversed(parts):
        if count <= 0:
            break
        if per_window and part.ndim == 1:
            part = part.reshape(1, -1)
        if part.ndim == 2:
            if not part.shape[1]:
                continue
            part = part[-count // part.shape[1] :]  # the last ceil(count / width) rows
            part = (window_scores(part) if per_window else part).reshape(-1)
        kept.append(part[-count:])
        count -= len(kept[-1])
    if len(kept) == 1:
        return kept[0]
    return np.concatenate(kept[::-1]) if kept else np.empty(0)


def psi(recent: np.ndarray, reference: np.ndarray) -> float:
    p = np.clip(recent, EPSILON, None)
    q = np.clip(reference, EPSILON, None)
    return float(np.sum((p - q) * np.log(p / q)))


class DriftMonitor:
    """Sliding-window PSI per column of one model version's reference, exported as gauges.

    Fed from the inference thread after each batch; `reset_for` starts afresh (new windows,
    old columns' gauges removed) when a different model version serves.
    """

    def __init__(self, metrics: ServiceMetrics, window: int) -> None:
        self.metrics = metrics
        self.window = window
        self.version: str | None = None
        # column -> (its window, the training proportions, whether it is binned per window)
        self.columns: dict[str, tuple[RollingHistogram, np.ndarray, bool]] = {}
        self._lock = threading.Lock()

    def reset_for(self, version: str, reference: Mapping[str, Mapping[str, Any]]) -> None:
        with self._lock:
            for name in self.columns:
                if name not in reference:
                    self._remove_gauges(name)
                else:  # the window restarts: its size and PSI too, until the first batch
                    self.metrics.drift_psi.labels(column=name).set(0.0)
                    self.metrics.drift_values.labels(column=name).set(0)
            self.version = version
            self.columns = {}
            for name, stats in reference.items():
                edges = np.asarray(stats.get("edges", []), dtype=np.float64)
                proportions = np.asarray(stats.get("proportions", []), dtype=np.float64)
                if len(proportions) != len(edges) + 1:
                    continue  # no usable histogram for this column
                per_window = stats.get("space", "values") == "window"
                self.columns[name] = (RollingHistogram(edges, self.window), proportions, per_window)

    def observe(self, version: str, inputs: Mapping[str, Sequence[np.ndarray]]) -> None:
        """Add a batch's inputs (column -> its series' raw look-back windows, oldest first: a
        (S, L) block or one series' L values per part) and update
        those columns' gauges. Only the newest `window` values of a column can stay in its
        window, so only those are joined and binned (a batch of 256 series of 512 values
        holds 131,072 of them; the default window is 20,000)."""
        with self._lock:
            if version != self.version:
                return  # a batch of a version that is no longer (or not yet) monitored
            for name, parts in inputs.items():
                entry = self.columns.get(name)
                if entry is None:
                    continue
                histogram, reference, per_window = entry
                histogram.add(newest(parts, histogram.capacity, per_window=per_window))
                enough = histogram.size >= min(MIN_PSI_VALUES, histogram.capacity)
                self.metrics.drift_psi.labels(column=name).set(
                    psi(histogram.proportions(), reference) if enough else 0.0
                )
                self.metrics.drift_values.labels(column=name).set(histogram.size)

    def _remove_gauges(self, name: str) -> None:
        """A column the new version does not read. prometheus_client cannot remove a labelled
        value in multiprocess mode (the file keeps it): there it is set to 0: a PSI of 0 is
        below the drift alert's threshold, and the window's size of 0 says the column is idle."""
        for gauge in (self.metrics.drift_psi, self.metrics.drift_values):
            if multiprocess_mode():
                gauge.labels(column=name).set(0)
                continue
            with contextlib.suppress(KeyError):
                gauge.remove(name)

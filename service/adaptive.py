"""Rolling recalibration of the served interval from the realised scores of earlier forecasts.

The interval a model serves was calibrated on its validation span, and its coverage after
deployment follows the season of that span, not the nominal level: measured on PJM and Bike
sharing (docs/benchmarks.md, "Online adaptive width after deployment"), val-calibrated 80 %
intervals covered 0.60-0.92 of the ten weeks after training. With `URNN_ADAPTIVE_INTERVALS=
rolling` the service moves every quantile's distance from the median, step by step, by one
multiplier m per horizon step, [med - m (med - lo), med + m (hi - med)] for the outermost pair
and likewise for the quantiles inside it (one factor keeps their order). m is the split-
conformal quantile, at the outermost pair's level, of the last `window` *scores* of that step:
a scored forecast's score is the smallest m whose interval would have held the actual, taken
against the interval before adaptation. The realised-error cache (`service.realised`)
produces the scores as later histories reveal each step.

The window starts full of scores of 1 (the val-calibrated interval itself): m stays 1 until
about a fifth of the window's scores fall outside it (it widens: at level 0.8 and a window of
336, the 67th) or about four fifths inside it (it narrows: the 270th).
Checkpoints keep no validation scores to seed it with; over the 14 deployments of the
benchmark this start scored as the val-seeded rule did (the table in docs/benchmarks.md).

State per served version, pooled over every series that version serves (`URNN_ADAPTIVE_SCOPE=
version`), or one window per series id (`series`: on four PJM regions a pooled multiplier left
the under-covered one at 0.69 and took the over-covered one to 0.88, where windows of their
own served 0.76 and 0.82 at the same total width; docs/serving.md); a reload starts the new
version at m = 1 and forgets the old one's windows. One process only: with several
workers each would see a random part of the scores and serve a different interval for the
same request, so `urnn serve` refuses the setting with --workers above 1.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

M_MIN, M_MAX = 0.05, 20.0  # the multiplier's clamp: the gap multipliers' (GAP_SCALE_MIN, _MAX)


@dataclass(slots=True)
class _Window:
    """One version's last `size` scores per horizon step, as a ring per step."""

    scores: np.ndarray  # (H, size) float64
    written: np.ndarray  # (H,) int64: scores written per step, ever (next slot: written % size)
    level: float  # the outermost pair's nominal coverage, e.g. 0.8
    current: np.ndarray = field(init=False)  # (H,) the multipliers served now
    stale: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.current = np.ones(self.scores.shape[0])

    def add(self, steps: np.ndarray, scores: np.ndarray) -> None:
        """Write scores (n,) of steps (n,) (0-based; any order, repeats allowed), each
        step's in the order given."""
        horizon, size = self.scores.shape
        keep = steps < horizon
        steps, scores = steps[keep], scores[keep]
        if not len(steps):
            return
        order = np.argsort(steps, kind="stable")
        steps, scores = steps[order], scores[order]
        counts = np.bincount(steps, minlength=horizon)
        starts = np.cumsum(counts) - counts  # where each step's run begins in `steps`
        rank = np.arange(len(steps)) - starts[steps]  # position within its step's run
        last = rank >= counts[steps] - size  # a run longer than the window: its last `size`
        slots = (self.written[steps] + rank) % size
        self.scores[steps[last], slots[last]] = scores[last]
        self.written += counts
        self.stale = True

    def multipliers(self) -> np.ndarray:
        """(H,) the conformal quantile at `level` of each step's window, clamped.

        A window shorter than level / (1 - level) scores (20 at level 0.96, 67 at 0.99) has
        no ceil((size + 1) x level)-th smallest: it takes its largest. Read as infinite, it
        served the 20x clamp at every step from the first score on, while every score in the
        window was still the 1 it starts with."""
        if self.stale:
            size = self.scores.shape[1]
            k = min(math.ceil((size + 1) * self.level), size)  # the k-th smallest of `size`
            kth = np.partition(self.scores, k - 1, axis=1)[:, k - 1]
            self.current = np.clip(kth, M_MIN, M_MAX)
            self.stale = False
        return self.current


class AdaptiveIntervals:
    """The rolling multipliers of the served version (see the module docstring): one window
    for every series the version serves (`scope="version"`), or one per series id
    (`scope="series"`: a mixed fleet's over-covered series no longer widen with its
    under-covered ones), at most `capacity` ids, the least recently scored dropped first (an
    id dropped, or never scored, is served at 1)."""

    def __init__(
        self, window: int, cache_depth: int = 1, scope: str = "version", capacity: int = 10_000
    ) -> None:
        self.window = window
        self.cache_depth = cache_depth  # URNN_FORECAST_CACHE_DEPTH: how often scores come
        self.scope = scope
        self.capacity = capacity
        self._version: str | None = None
        self._state: _Window | None = None  # scope "version"
        self._series: OrderedDict[str, _Window] = OrderedDict()  # scope "series"
        # scope "series": the sum of every held window's multipliers, kept as windows change,
        # so that the pooled mean (the gauge, after every scored batch) costs O(horizon), not
        # O(series): 30 ms a batch over 10,000 series when it was summed afresh
        self._series_sum = np.zeros(0)
        self._horizon, self._level = 0, 0.8
        self._lock = threading.Lock()

    def multipliers(self, version: str, horizon: int, level: float) -> np.ndarray:
        """(horizon,) the multipliers `version` serves now (a new version starts at 1); by
        series, their mean over the series it has scores of (1 before any)."""
        with self._lock:
            self._start(version, horizon, level)
            return self._pooled(horizon)

    def for_series(
        self, version: str, horizon: int, level: float, ids: Sequence[str]
    ) -> np.ndarray:
        """(len(ids), horizon) the multipliers each of these series is served with."""
        with self._lock:
            self._start(version, horizon, level)
            if self.scope == "version":
                return np.broadcast_to(self._pooled(horizon), (len(ids), horizon))
            ones = np.ones(horizon)
            windows = self._series
            return (
                np.stack(
                    [windows[i].multipliers()[:horizon] if i in windows else ones for i in ids]
                )
                if ids
                else np.ones((0, horizon))
            )

    def add(
        self,
        version: str,
        steps: np.ndarray,
        scores: np.ndarray,
        series_id: str | None = None,
    ) -> None:
        """Scores of the served version's forecasts (of `series_id`, which scope "series"
        needs); those of another version are dropped (forecasts made before a reload, scored
        after it)."""
        with self._lock:
            if self._version != version:
                return
            if self.scope == "version":
                if self._state is not None:
                    self._state.add(steps, scores)
                return
            if series_id is None:
                return
            window = self._series.pop(series_id, None)
            if window is None:
                window = self._new_window()
                while len(self._series) >= self.capacity:
                    _, dropped = self._series.popitem(last=False)
                    self._series_sum -= dropped.multipliers()
            else:
                self._series_sum -= window.multipliers()
            window.add(steps, scores)
            self._series_sum += window.multipliers()
            self._series[series_id] = window  # the most recently scored last

    def current(self, version: str) -> np.ndarray | None:
        """The multipliers `version` serves now (by series: their mean), or None before it
        has served with them."""
        with self._lock:
            if self._version != version:
                return None
            return self._pooled(self._horizon)

    def scored(self, version: str) -> int:
        """Scores taken for `version` since it was first served, over all steps (by series:
        of the series it still holds)."""
        with self._lock:
            if self._version != version:
                return 0
            if self.scope == "version":
                return 0 if self._state is None else int(self._state.written.sum())
            return sum(int(w.written.sum()) for w in self._series.values())

    def series(self, version: str) -> int:
        """Series ids with a window of their own (scope "series"; 0 otherwise)."""
        with self._lock:
            return len(self._series) if self._version == version else 0

    def _start(self, version: str, horizon: int, level: float) -> None:
        """A new version (or a longer horizon) starts every window afresh, at 1."""
        if self._version == version and self._horizon >= horizon:
            return
        self._version, self._horizon, self._level = version, horizon, level
        self._series.clear()
        self._series_sum = np.zeros(horizon)
        self._state = self._new_window() if self.scope == "version" else None

    def _new_window(self) -> _Window:
        return _Window(
            np.ones(
                (self._horizon, self.window),
                dtype=np.float32 if self.scope == "series" else np.float64,
            ),
            np.zeros(self._horizon, np.int64),
            self._level,
        )

    def _pooled(self, horizon: int) -> np.ndarray:
        if self.scope == "version":
            assert self._state is not None
            return self._state.multipliers()[:horizon].copy()
        if not self._series:
            return np.ones(horizon)
        mean: np.ndarray = self._series_sum[:horizon] / len(self._series)
        return mean


def outer_pair(quantiles: tuple[float, ...], median_index: int) -> tuple[int, int, float] | None:
    """(lowest index, highest index, nominal coverage) of the quantiles around the median, or
    None when the model has no quantile on both sides of it (nothing to adapt)."""
    if median_index <= 0 or median_index >= len(quantiles) - 1:
        return None
    return 0, len(quantiles) - 1, quantiles[-1] - quantiles[0]


def apply(forecasts: np.ndarray, m: np.ndarray, median_index: int) -> None:
    """Move every quantile of forecasts (B, H, Q) to m (H,) or (B, H) times its distance from
    the median, in place (the median itself does not move)."""
    horizon = forecasts.shape[1]
    med = forecasts[:, :, median_index : median_index + 1].copy()  # a view would move with it
    forecasts -= med
    forecasts *= m[..., :horizon, None]
    forecasts += med


def scores(actual: np.ndarray, med: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The smallest multiplier of both gaps about the median whose interval holds each
    actual: (y - med) / (high - med) above the median, (med - y) / (med - low) below. A zero
    gap covers only the median itself: 0 there, else infinite (held at M_MAX's next
    power of ten, past any multiplier served)."""
    above = actual >= med
    gap = np.where(above, high - med, med - low)
    off = np.abs(actual - med)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(gap > 0, off / np.where(gap > 0, gap, 1.0), np.where(off > 0, np.inf, 0.0))
    return np.minimum(out, 10 * M_MAX)

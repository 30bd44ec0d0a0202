"""Realised forecast error: score earlier forecasts once later histories reveal the truth.

For each series id up to `depth` forecasts are kept pending (their step timestamps, the median
and the outermost trained quantiles) in an LRU cache of at most `capacity` ids. When a later
request for the same id carries dates, the steps of its pending forecasts that its history now
holds are scored, each step once: their absolute errors and their coverage by the
lowest..highest quantile interval go to counters labelled by the version that made the
forecast and the step's lead (1, 2-3, 4-7, ... steps ahead), and their MAE to a histogram. A
forecast stays pending until a history reaches its last step. A new forecast is kept when the
id has none pending, or when it starts after the newest pending one's first horizon / depth
steps (with depth 1: after its last step); otherwise it is not scored. A client that asks
more often than that spacing (an earlier history revealed part of the oldest pending forecast)
has the next forecast kept one step later: kept at a fixed spacing, a client asking every hour
with horizon 24 had every kept forecast made at the hour of its first request, so lead 1 was
always the same hour of day and "error by lead" was error by hour of day (2026-12-07, PJM
DAYTON, horizon 24, 21 days hourly: realised lead-1 MAE 61 MW, always 01:00, where the client's
lead-1 forecasts erred 99 MW; now 102). So a client that asks at every step (hourly, horizon
24 h) has one forecast every 25 hours scored at all 24 leads, each lead at every hour of the
day within 25 days, not the first step of each forecast: before 2026-12-07 each forecast was
scored once, by the first later history, and replaced, and such a client's realised MAE and
coverage were one-step-ahead figures read beside the backtest's all-steps ones. A history on
the other kind of time axis, or a new forecast that starts before the newest pending one (the
client went back in time), replaces what is pending. Series without dates are not tracked.

Stamps are epoch nanoseconds of instants (UTC) for zoned series (a `timezone`, offsets, Arrow's
zoned type) and of the wall clock as written for naive ones, which name no instant: a forecast
and a history on different kinds of axis are not compared (2026-12-06: a forecast asked with
`timezone` 'Europe/Berlin' in January, scored by the same naive times sent without it, paired
each step with the actual an hour later, 24 of 24 points, MAE 26.6 where the true one was 0).

The cache holds, per pending forecast, a reference to its request's forecasts and a row
number: a batch of 256 series costs one dict pop and one small list per series, and arrays are
only sliced for the series whose history reveals a pending step (2026-12-04: the per-series
objects this replaced were ~40 % of the event loop's monitoring time). Each request's rows
count the pending forecasts that still point at them; once fewer than a quarter do, the live
rows are copied into a smaller block and the forecasts re-pointed, so the memory held stays
in proportion to the forecasts pending: clients that resend most of a request's ids each time
and add a new one left every request's arrays alive for that one id, `capacity` requests in
all (2026-12-06: 0.22 MB a request at 256 series, horizon 24, ~2 GB at the default capacity).
The scored steps of a batch reach the counters together, one increment per (version, lead).

Each step is also counted scale-free, its error over the mean absolute one-step change of the
look-back its forecast was made from (MASE; `lookback_scale`, taken when the forecast is
kept): the target-unit MAE of a fleet is that of its largest-unit series. A step whose error is over
REALISED_ERROR_LIMIT target units or REALISED_SCALED_LIMIT scales is counted out of range and
scored nowhere else: one 1e19 in a float64 sum kept every later error from adding (1e19 + 2.3
== 1e19), and the realised MAE of every series read 0 until a restart (2026-12-07).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.adaptive import AdaptiveIntervals
from service.adaptive import scores as interval_scores
from service.metrics import (
    LEAD_LABELS,
    REALISED_ERROR_LIMIT,
    REALISED_SCALED_LIMIT,
    ServiceMetrics,
    lead_bucket,
)


@dataclass(slots=True)
class ForecastRows:
    """One request's forecasts of its dated series, row i for its series i."""

    version: str
    stamps: np.ndarray  # (S, h) int64 epoch ns, each row increasing
    mean: np.ndarray  # (S, h) target units
    low: np.ndarray  # (S, h) the lowest trained quantile
    high: np.ndarray  # (S, h) the highest trained quantile
    first: list[int] = field(init=False)  # stamps[:, 0], as ints for the per-series check
    last: list[int] = field(init=False)  # stamps[:, -1]
    ids: Sequence[str] = ()  # row i's series id, set when the rows are cached
    zoned: Sequence[bool] | None = None  # row i's stamps are instants (UTC); None: all naive
    live: int = field(init=False, default=0)  # cache entries that point at these rows
    # rolling intervals (service.adaptive): the outermost pair and the median before
    # adaptation and the non-negative floor, (S, h) each
    unadapted_low: np.ndarray | None = None
    unadapted_high: np.ndarray | None = None
    unadapted_mean: np.ndarray | None = None
    # (S,) the mean absolute one-step change of the look-back each forecast was made from
    # (`lookback_scale`): the scaled error's denominator; 0 for a flat one; None: unknown.
    # Taken by `observe_batch` from the request's histories once a row is kept, over the last
    # `lookback` values (0: not taken): a forecast never kept (a client resending its last
    # history) costs no pass over its look-back.
    scale: np.ndarray | None = None
    lookback: int = 0

    def __post_init__(self) -> None:
        self.first = self.stamps[:, 0].tolist()
        self.last = self.stamps[:, -1].tolist()

    def __len__(self) -> int:
        return len(self.first)

    def take(self, rows: list[int]) -> ForecastRows:
        """These rows only, copied (the new block holds no reference to this one's arrays)."""
        index = np.asarray(rows, dtype=np.intp)
        return ForecastRows(
            self.version,
            self.stamps[index],
            self.mean[index],
            self.low[index],
            self.high[index],
            ids=[self.ids[row] for row in rows],
            zoned=None if self.zoned is None else [self.zoned[row] for row in rows],
            unadapted_low=None if self.unadapted_low is None else self.unadapted_low[index],
            unadapted_high=None if self.unadapted_high is None else self.unadapted_high[index],
            unadapted_mean=None if self.unadapted_mean is None else self.unadapted_mean[index],
            scale=None if self.scale is None else self.scale[index],
            lookback=self.lookback,
        )


@dataclass(slots=True)
class Pending:
    """A forecast kept for scoring: row `row` of `rows`, scored up to step `step` (the next
    to score), whose timestamp is `stamp`."""

    rows: ForecastRows
    row: int
    step: int
    stamp: int


class Histories(Protocol):
    """The histories of one request's dated series, row i for its series i: where each
    starts and ends (epoch ns), and for one row its values at given stamps."""

    first: list[int]
    last: list[int]
    zoned: Sequence[bool] | None  # row i's stamps are instants (UTC); None: all naive

    @property
    def values(self) -> np.ndarray | Sequence[np.ndarray]:
        """(S, N) or S arrays: each history's values, oldest first."""
        ...

    def values_at(self, row: int, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the history's values at those of `stamps` it holds, their positions in stamps)."""
        ...


class RegularHistories:
    """Histories of one length on one step (a block of series prepared together): row i's
    stamps are `first_ns[i] + step_ns * arange(N)`, never built as an array; naive (a block
    dates no series in a zone)."""

    zoned: Sequence[bool] | None = None

    def __init__(self, first_ns: np.ndarray, step_ns: int, values: np.ndarray) -> None:
        self.step, self.values = step_ns, values  # values: (S, N)
        self.first = first_ns.tolist()
        self.last = (first_ns + step_ns * (values.shape[1] - 1)).tolist()

    def values_at(self, row: int, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        offset = stamps - self.first[row]
        n = self.values.shape[1]
        on_axis = (offset >= 0) & (offset < self.step * n) & (offset % self.step == 0)
        (in_stamps,) = np.nonzero(on_axis)
        return self.values[row, offset[in_stamps] // self.step], in_stamps


class ListedHistories:
    """Histories given one by one: row i's stamps (increasing, unique) and values."""

    def __init__(
        self,
        stamps: list[np.ndarray],
        values: list[np.ndarray],
        zoned: Sequence[bool] | None = None,
    ) -> None:
        self.stamps, self.values, self.zoned = stamps, values, zoned
        self.first = [int(s[0]) for s in stamps]
        self.last = [int(s[-1]) for s in stamps]

    def values_at(self, row: int, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, in_history, in_stamps = np.intersect1d(
            self.stamps[row], stamps, assume_unique=True, return_indices=True
        )
        return self.values[row][in_history], in_stamps


class RealisedErrorTracker:
    """Bounded LRU of series ids, each with up to `depth` pending forecasts (oldest first),
    scored step by step as later histories reveal them."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        capacity: int,
        depth: int = 1,
        adaptive: AdaptiveIntervals | None = None,
    ) -> None:
        self.metrics = metrics
        self.adaptive = adaptive  # rolling intervals: each scored step's score goes there
        self.capacity = capacity
        self.depth = max(depth, 1)
        self._cache: OrderedDict[str, list[Pending]] = OrderedDict()  # id -> oldest first
        # id -> the start of the forecast passed over for the one step more: a repeat of that
        # request (a retry, a second consumer of the series) must not keep it either
        self._passed: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def observe_batch(
        self, requests: Sequence[tuple[Sequence[str], Histories, ForecastRows]]
    ) -> None:
        """For each request's (series ids, their histories, their new forecasts), in order:
        score the steps of each id's pending forecasts that its history reveals, drop those
        revealed to the end, then keep the new forecast if it starts far enough after the
        newest pending one; under one lock, with one update of each counter."""
        if self.capacity <= 0 or not requests:
            return
        cache = self._cache
        sparse: dict[int, ForecastRows] = {}  # blocks that lost entries, by id()
        tally = _Tally()
        with self._lock:
            for ids, histories, forecasts in requests:
                first, last, zoned = histories.first, histories.last, histories.zoned
                forecasts.ids = ids
                new_firsts = forecasts.first
                for row, series_id in enumerate(ids):
                    pending = cache.pop(series_id, None)
                    new_first = new_firsts[row]
                    shift = False  # keep the next forecast one step later than the spacing
                    if pending is not None:
                        newest, j = pending[-1].rows, pending[-1].row
                        if new_first < newest.first[j] or (zoned is not None and zoned[row]) != (
                            newest.zoned is not None and newest.zoned[j]
                        ):  # the client went back in time, or to the other kind of axis
                            self._release(pending, sparse)
                            pending = None
                        else:
                            # an earlier history revealed part of the oldest: the client asks
                            # more often than the spacing, and the forecasts kept would
                            # otherwise start at one hour of the day for ever (module doc)
                            # (not when this history starts after its end: a jump, no cadence)
                            oldest = pending[0]
                            shift = oldest.step > 0 and first[row] <= oldest.rows.last[oldest.row]
                            if last[row] >= (  # reveals a step still pending
                                oldest.stamp if len(pending) == 1 else min(p.stamp for p in pending)
                            ):
                                pending = self._reveal(
                                    pending, histories, row, first[row], last[row], sparse, tally
                                )
                    if not pending:
                        if shift:  # the one right after the spacing is passed over
                            self._pass_over(series_id, new_first)
                            continue
                        if pending is None and self._passed:
                            passed = self._passed.pop(series_id, None)
                            if passed is not None and new_first <= passed:
                                self._pass_over(series_id, passed)  # the same request again
                                continue
                        pending = [Pending(forecasts, row, 0, new_first)]
                        forecasts.live += 1
                    elif new_first > self._spacing_stamp(pending[-1], shift):
                        pending.append(Pending(forecasts, row, 0, new_first))
                        forecasts.live += 1
                        if len(pending) > self.depth:
                            self._release([pending.pop(0)], sparse)
                    cache[series_id] = pending
                if forecasts.live and forecasts.scale is None and forecasts.lookback:
                    forecasts.scale = lookback_scale(histories.values, forecasts.lookback)
            evictions = 0
            while len(cache) > self.capacity:
                evicted = cache.popitem(last=False)[1]
                self._release(evicted, sparse)
                evictions += len(evicted)
            if evictions > 0:
                self.metrics.realised_evicted.inc(evictions)
            for block in sparse.values():
                if block.live > 0 and 4 * block.live < len(block):
                    self._compact(block)
            tally.publish(self.metrics, self.adaptive)
            self.metrics.realised_cache.set(len(cache))

    def _pass_over(self, series_id: str, first: int) -> None:
        """Remember that forecasts of `series_id` starting at or before `first` are not kept,
        for at most `capacity` ids (the oldest forgotten first)."""
        self._passed[series_id] = first
        self._passed.move_to_end(series_id)
        if len(self._passed) > self.capacity:
            self._passed.popitem(last=False)

    def _release(self, items: list[Pending], sparse: dict[int, ForecastRows]) -> None:
        """Forget these pending forecasts (their blocks may compact)."""
        for item in items:
            block = item.rows
            block.live -= 1
            sparse[id(block)] = block

    def _reveal(
        self,
        pending: list[Pending],
        histories: Histories,
        row: int,
        history_first: int,
        history_last: int,
        sparse: dict[int, ForecastRows],
        tally: _Tally,
    ) -> list[Pending]:
        """Score what this history reveals of an id's pending forecasts; the ones still
        pending (those whose last step it has not reached)."""
        kept = []
        for item in pending:
            block, j, step = item.rows, item.row, item.step
            if history_last >= item.stamp:
                width = block.stamps.shape[1]
                if history_first <= block.last[j]:
                    step = self._score(block, j, step, histories, row, history_last, tally)
                else:  # the history starts after the forecast's end: nothing of it to score
                    step = width
                if step >= width:
                    self._release([item], sparse)
                    continue
                item.step, item.stamp = step, int(block.stamps[j, step])
            kept.append(item)
        return kept

    def _spacing_stamp(self, item: Pending, shift: bool = False) -> int:
        """The step of a pending forecast after which the next one is kept: its last with one
        forecast an id (depth 1), else its (horizon / depth)-th; with `shift`, one step
        later (the client asks more often than the spacing: the kept forecasts' origins move
        round the day instead of staying at one hour)."""
        block, j = item.rows, item.row
        if self.depth == 1:  # what the general case below finds, without indexing an array
            return block.last[j]
        return int(block.stamps[j, spacing_steps(block.stamps.shape[1], self.depth, shift) - 1])

    def _compact(self, block: ForecastRows) -> None:
        """Copy the rows of `block` that pending forecasts still point at into a block of their
        own and re-point them (their places in the LRU order unchanged)."""
        items = [
            item
            for row, series_id in enumerate(block.ids)
            for item in self._cache.get(series_id, ())
            if item.rows is block and item.row == row
        ]
        kept = block.take([item.row for item in items])
        for new_row, item in enumerate(items):
            item.rows, item.row = kept, new_row
        kept.live = len(items)
        block.live = 0

    def held_rows(self) -> int:
        """Forecast rows the cache keeps alive (distinct blocks' rows summed): at most about
        four times the pending forecasts."""
        blocks = {id(i.rows): len(i.rows) for items in self._cache.values() for i in items}
        return sum(blocks.values())

    def pending(self) -> int:
        """Forecasts waiting for the rest of their steps, over all ids."""
        return sum(len(items) for items in self._cache.values())

    def _score(
        self,
        shown: ForecastRows,
        j: int,
        step: int,
        histories: Histories,
        row: int,
        history_last: int,
        tally: _Tally,
    ) -> int:
        """Score steps `step`.. of forecast row j that the history holds; the first step after
        the history's end (the next to score)."""
        tail = shown.stamps[j, step:]
        actual, steps = histories.values_at(row, tail)
        after = step + int(np.searchsorted(tail, history_last, side="right"))
        if not len(actual):
            return after
        steps = steps + step
        errors = np.abs(actual - shown.mean[j, steps])
        scale = 0.0 if shown.scale is None else float(shown.scale[j])
        scaled = errors / scale if scale > 0.0 else None
        in_range = errors <= REALISED_ERROR_LIMIT  # (NaN is not)
        if scaled is not None:
            in_range &= scaled <= REALISED_SCALED_LIMIT
        if not in_range.all():  # kept out of the sums, which could never take another error
            tally.out_of_range[shown.version] = tally.out_of_range.get(shown.version, 0) + int(
                len(in_range) - in_range.sum()
            )
            steps, actual, errors = steps[in_range], actual[in_range], errors[in_range]
            scaled = None if scaled is None else scaled[in_range]
            if not len(steps):
                return after
        inside = (shown.low[j, steps] <= actual) & (actual <= shown.high[j, steps])
        self.metrics.realised_mae.labels(model_version=shown.version).observe(
            float(errors.sum()) / len(errors)
        )
        if scaled is not None:
            self.metrics.realised_mase.labels(model_version=shown.version).observe(
                float(scaled.sum()) / len(scaled)
            )
        scored = informative = None
        if shown.unadapted_low is not None and shown.unadapted_high is not None:
            centre = shown.mean if shown.unadapted_mean is None else shown.unadapted_mean
            med = centre[j, steps]
            low, high = shown.unadapted_low[j, steps], shown.unadapted_high[j, steps]
            scored = interval_scores(actual, med, low, high)
            # A zero gap on the actual's side (a flat look-back forecast as its level, [0, 0]
            # after 48 quiet hours) stays zero whatever the multiplier: its score (0, or the cap
            # after a sale) says nothing about it, and a fleet's quiet series filled the pooled
            # window with zeros and narrowed every other interval to the 0.05 clamp. It counts
            # for the coverage, not for the window (calibrate_gaps leaves such windows out too).
            informative = np.where(actual >= med, high - med, med - low) > 0
        series_id = shown.ids[j] if shown.ids else None
        if scaled is None:  # a flat (or unknown) look-back: no scaled error
            scaled = np.full(len(errors), np.nan)
        tally.add(shown.version, steps, errors, scaled, inside, scored, series_id, informative)
        return after


def lookback_scale(values: np.ndarray | Sequence[np.ndarray], lookback: int) -> np.ndarray:
    """(S,) the mean absolute one-step change of the last `lookback` values of each history
    (the in-sample error of the naive forecast, MASE's denominator): the unit a scaled realised
    error is counted in. `values`: (S, N), or S arrays; 0 for a flat look-back or one value."""
    if isinstance(values, np.ndarray):
        window = values[:, -max(lookback, 2) :]
        if window.shape[1] < 2:
            return np.zeros(window.shape[0])
        return np.abs(np.diff(window, axis=1)).mean(axis=1)  # type: ignore[no-any-return]
    return np.array(
        [
            float(np.abs(np.diff(v[-max(lookback, 2) :])).mean()) if len(v) > 1 else 0.0
            for v in values
        ],
        dtype=np.float64,
    )


def spacing_steps(horizon: int, depth: int, shift: bool) -> int:
    """Steps from a pending forecast's start to the one after which the next is kept:
    horizon / depth (rounded up; a forecast kept every step covers every phase), and with
    `shift` (the client asks more often than that) the first spacing past it that shares no
    factor with the horizon: 9 steps at horizon 24 (depth 3) kept origins at 8 hours of the
    day only, 11 reaches all. At most the horizon."""
    spacing = -(-horizon // depth)
    if shift and spacing > 1:
        spacing += 1
        while math.gcd(spacing, horizon) > 1 and spacing < horizon:
            spacing += 1
    return min(spacing, horizon)


def kept_spacing(horizon: int, depth: int) -> int:
    """Steps between the forecasts the cache keeps of one series asked every step (what
    `RealisedErrorTracker` does for such a client): the shifted `spacing_steps`, or horizon
    + 1 when that reaches the horizon (the one right after a completed forecast is passed
    over); 1 when depth >= horizon. Each kept forecast adds one score to each of its steps:
    rolling intervals (service.adaptive) get one score a step every `kept_spacing` steps per
    series."""
    if depth >= horizon:
        return 1
    spacing = spacing_steps(horizon, depth, shift=True)
    return spacing if spacing < horizon else horizon + 1


class _Tally:
    """One batch's scored steps, sent to the counters by (version, lead bucket) at its end:
    a handful of increments a batch rather than three a scored forecast."""

    def __init__(self) -> None:
        # (steps, errors, scaled errors (NaN: no scale), inside) of each scored forecast
        self.parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.out_of_range: dict[str, int] = {}  # steps not scored, their error out of range
        # rolling intervals: (steps, scores, series id) of each scored forecast
        self.scores: dict[str, list[tuple[np.ndarray, np.ndarray, str | None]]] = {}
        # and of those the window learns from (`informative`: a gap to multiply)
        self.window: dict[str, list[tuple[np.ndarray, np.ndarray, str | None]]] = {}

    def add(
        self,
        version: str,
        steps: np.ndarray,
        errors: np.ndarray,
        scaled: np.ndarray,
        inside: np.ndarray,
        scores: np.ndarray | None = None,
        series_id: str | None = None,
        informative: np.ndarray | None = None,
    ) -> None:
        self.parts.setdefault(version, []).append((steps, errors, scaled, inside))
        if scores is not None:
            self.scores.setdefault(version, []).append((steps, scores, series_id))
            if informative is not None and not informative.all():
                steps, scores = steps[informative], scores[informative]
            self.window.setdefault(version, []).append((steps, scores, series_id))

    def publish(self, metrics: ServiceMetrics, adaptive: AdaptiveIntervals | None = None) -> None:
        n = len(LEAD_LABELS)
        for version, count in self.out_of_range.items():
            metrics.realised_out_of_range.labels(model_version=version).inc(count)
        for version, parts in self.parts.items():
            steps, errors, scaled, inside = (
                np.concatenate(column) for column in zip(*parts, strict=True)
            )
            buckets = _LEAD_BUCKETS[np.minimum(steps, len(_LEAD_BUCKETS) - 1)]
            points = np.bincount(buckets, minlength=n)
            hits = np.bincount(buckets, weights=inside, minlength=n)
            sums = np.bincount(buckets, weights=errors, minlength=n)
            has_scale = ~np.isnan(scaled)
            scaled_points = np.bincount(buckets[has_scale], minlength=n)
            scaled_sums = np.bincount(buckets[has_scale], weights=scaled[has_scale], minlength=n)
            for b in np.flatnonzero(points).tolist():
                lead = LEAD_LABELS[b]
                metrics.realised_points.labels(model_version=version, lead=lead).inc(points[b])
                metrics.realised_hits.labels(model_version=version, lead=lead).inc(hits[b])
                metrics.realised_abs_error.labels(model_version=version, lead=lead).inc(sums[b])
                if scaled_points[b]:
                    labels = {"model_version": version, "lead": lead}
                    metrics.realised_scaled_points.labels(**labels).inc(scaled_points[b])
                    metrics.realised_scaled_abs_error.labels(**labels).inc(scaled_sums[b])
        for version, scored in self.scores.items():
            steps = np.concatenate([part[0] for part in scored])
            scores = np.concatenate([part[1] for part in scored])
            buckets = _LEAD_BUCKETS[np.minimum(steps, len(_LEAD_BUCKETS) - 1)]
            held = np.bincount(buckets, weights=scores <= 1.0, minlength=n)
            for b in np.flatnonzero(np.bincount(buckets, minlength=n)).tolist():
                metrics.realised_unadapted_hits.labels(
                    model_version=version, lead=LEAD_LABELS[b]
                ).inc(held[b])
            if adaptive is not None:
                learnt = self.window[version]
                if adaptive.scope == "series":  # each series' scores to its own window
                    for part_steps, part_scores, series_id in learnt:
                        if len(part_steps):  # not a window for a series with nothing to learn
                            adaptive.add(version, part_steps, part_scores, series_id)
                else:
                    adaptive.add(
                        version,
                        np.concatenate([part[0] for part in learnt]),
                        np.concatenate([part[1] for part in learnt]),
                    )
                multipliers = adaptive.current(version)
                if multipliers is not None:
                    metrics.show_multipliers(version, multipliers.tolist())


# Lead bucket of step index i (0-based), for steps up to 2 ** 11; later steps share the last.
_LEAD_BUCKETS = np.array([lead_bucket(i + 1) for i in range(2**11)], dtype=np.intp)

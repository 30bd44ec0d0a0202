"""What one batch goes through: stacked on the event loop, the forward on the worker thread,
un-scaled, answered and monitored back on the event loop.

The batcher hands over requests that were all validated against the same model version, so
their arrays stack into one (B, L) target, (B, L, C) covariates, ... and go through one forward
pass (in chunks of at most `max_batch_series`). Each series is un-scaled with its own scaler
statistics, then the result is split back per request. Drift and realised error are fed after
the answers are on their way.

Why the split: the worker thread and the event loop share one interpreter lock. Every call
that hands the lock back (a torch op, a numpy operation on a large array, a socket write)
must win it again before the next line of Python runs, and while the event loop is busy that
wait lasts until the loop blocks or the switch interval (5 ms) runs out. Measured on the 2-core
box with a pure-Python thread spinning beside it, a batch of 16 requests x 16 series (hidden
128) handed the lock back ~185 times when the whole batch ran on the thread: 12 ms of work
took 600 ms. So the thread runs only the forward (`infer`: a handful of hand-backs per
batch), and everything else is ordinary event-loop work between requests (`stage`, `finish`,
`monitor`), where waiting for the lock costs nobody a forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.forecaster import floor_at_zero, snap_zeros, unscale_from_last
from service.adaptive import AdaptiveIntervals, outer_pair
from service.adaptive import apply as adapt_quantiles
from service.drift import DriftMonitor
from service.metrics import ServiceMetrics
from service.realised import (
    ForecastRows,
    Histories,
    ListedHistories,
    RealisedErrorTracker,
    RegularHistories,
)
from service.served import ServedModel
from service.validation import Adapted, PreparedRequest, PreparedSeries


@dataclass(slots=True)
class StagedBatch:
    """One batch's model inputs, stacked on the event loop (windowed models), or its series
    as they are (streaming models, which the thread feeds series by series)."""

    model: ServedModel
    n_series: int
    series: list[PreparedSeries] | None = None  # streaming models only
    target: np.ndarray | None = None  # (B, L) float32, scaled
    covariates: np.ndarray | None = None  # (B, L, C) float32, scaled, model order
    past_calendar: np.ndarray | None = None  # (B, L, K) float32
    future_calendar: np.ndarray | None = None  # (B, H_max, K) float32
    target_mean: np.ndarray | None = None  # (B,) float64: each series' un-scaling
    target_scale: np.ndarray | None = None  # (B,) float64
    target_last: np.ndarray | None = None  # (B,) float64: each history's last value, raw


@dataclass(slots=True)
class Inferred:
    """The worker thread's answer: forecasts still scaled (windowed models, float32) or in
    the data's units (streaming models, float64), (B, H_max, Q), and the forward's seconds."""

    forecasts: np.ndarray
    seconds: float


class BatchRunner:
    """The batcher's phases for one batch (one model version); `__call__` runs them in order,
    in one thread (benchmarks and tests that do not batch)."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        drift: DriftMonitor,
        realised: RealisedErrorTracker,
        *,
        max_batch_series: int,
        adaptive: AdaptiveIntervals | None = None,
    ) -> None:
        self.metrics = metrics
        self.drift = drift
        self.realised = realised
        self.max_batch_series = max_batch_series
        self.adaptive = adaptive  # rolling intervals (service.adaptive), None when off

    def __call__(self, requests: Sequence[PreparedRequest]) -> list[np.ndarray]:
        staged = self.stage(requests)
        results = self.finish(requests, staged, self.infer(staged))
        self.monitor(requests, results)
        return results

    def stage(self, requests: Sequence[PreparedRequest]) -> StagedBatch:
        """Event loop: the batch's inputs as stacked arrays (nothing for a streaming model)."""
        model = requests[0].model
        if any(r.model is not model for r in requests):
            raise ValueError("a batch must hold requests validated against one model version")
        staged = StagedBatch(model, sum(r.n_series for r in requests))
        if model.streaming:
            staged.series = [s for r in requests for s in r.series]
            return staged
        blocks = [r.block for r in requests if r.block is not None]
        if len(blocks) == len(requests):  # every request a block: its arrays, concatenated
            staged.target = np.concatenate([b.target for b in blocks])  # (S, L)
            if model.covariates:  # (S, L, C)
                staged.covariates = np.concatenate([_present(b.covariates) for b in blocks])
            if model.needs_dates:  # (S, L, K), (S, H_max, K)
                staged.past_calendar = np.concatenate([_present(b.past_calendar) for b in blocks])
                staged.future_calendar = np.concatenate(
                    [_present(b.future_calendar) for b in blocks]
                )
        else:
            series = _series(requests)
            staged.target = np.stack([s.target for s in series])
            if model.covariates:
                staged.covariates = np.stack([_present(s.covariates) for s in series])
            if model.needs_dates:
                staged.past_calendar = np.stack([_present(s.past_calendar) for s in series])
                staged.future_calendar = np.stack([_present(s.future_calendar) for s in series])
        stats = [r.unit_stats() for r in requests]
        staged.target_mean = np.concatenate([mean for mean, _ in stats])
        staged.target_scale = np.concatenate([scale for _, scale in stats])
        staged.target_last = np.concatenate([r.last_values() for r in requests])
        return staged

    def infer(self, staged: StagedBatch) -> Inferred:
        """Worker thread: the forward passes, in chunks of at most max_batch_series."""
        model = staged.model
        start = time.perf_counter()
        if model.streaming:  # each whole history from a fresh state, series by series
            forecasts = np.stack([forecast_stream(model, s) for s in staged.series or ()])
            return Inferred(forecasts, time.perf_counter() - start)
        target = _present(staged.target)
        step = self.max_batch_series
        chunks = [
            model.forward(
                target[i : i + step],
                _rows(staged.covariates, i, step),
                _rows(staged.past_calendar, i, step),
                _rows(staged.future_calendar, i, step),
            )
            for i in range(0, len(target), step)
        ]
        forecasts = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return Inferred(forecasts, time.perf_counter() - start)

    def finish(
        self, requests: Sequence[PreparedRequest], staged: StagedBatch, inferred: Inferred
    ) -> list[np.ndarray]:
        """Event loop: un-scaled (n_series, H_max, Q) float64 per request; batch metrics."""
        model = staged.model
        forecasts = inferred.forecasts
        if not model.streaming:
            forecasts = unscale(
                forecasts,
                _present(staged.target_mean),
                _present(staged.target_scale),
                staged.target_last,
            )
        unadapted, multipliers = self._adapt(model, forecasts, requests)
        if not model.streaming or multipliers is not None:  # streaming: floored unadapted
            floor_at_zero(forecasts, model.model.config.non_negative)
        self.metrics.inference_latency.observe(inferred.seconds)
        self.metrics.batch_series.observe(staged.n_series)
        self.metrics.batch_requests.observe(len(requests))
        out, offset = [], 0
        for request in requests:
            n = request.n_series
            out.append(forecasts[offset : offset + n])
            if unadapted is not None and multipliers is not None:
                rows = multipliers if multipliers.ndim == 1 else multipliers[offset : offset + n]
                request.adapted = Adapted(unadapted[offset : offset + n], rows)
            offset += n
        return out

    def _adapt(
        self, model: ServedModel, forecasts: np.ndarray, requests: Sequence[PreparedRequest]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """With rolling intervals: move the quantiles of forecasts (B, H_max, Q) by the
        version's multipliers in place; (the outermost pair and the median as they were, before
        the floor too, (B, H_max, 3): low, median, high; and the multipliers, (H_max,) or by
        series (B, H_max)), or (None, None) when there is nothing to adapt."""
        config = model.model.config
        pair = None if self.adaptive is None else outer_pair(config.quantiles, config.median_index)
        if self.adaptive is None or pair is None:
            return None, None
        low, high, level = pair
        horizon = forecasts.shape[1]
        version = model.ref.version
        if self.adaptive.scope == "series":  # (B, H): each series its own window's
            ids = [
                i
                for r in requests
                for i in (r.block.ids if r.block is not None else [s.id for s in r.series])
            ]
            multipliers = self.adaptive.for_series(version, horizon, level, ids)
        else:  # (H,): one for every series
            multipliers = self.adaptive.multipliers(version, horizon, level)
        # a copy (fancy index); the median too, which the multipliers move the pair about: a
        # non-negative model serves a median of -5 as 0, and scores taken about that 0 were
        # not the multiplier that would have held the actual
        unadapted = forecasts[..., [low, config.median_index, high]]
        adapt_quantiles(forecasts, multipliers, config.median_index)
        return unadapted, multipliers

    def monitor(self, requests: Sequence[PreparedRequest], results: list[np.ndarray]) -> None:
        """The series forecast, realised error per series; drift once for the whole batch
        (one version). `requests` are the answered ones: a forecast refused as not finite
        (422, no forecast) was counted in urnn_forecast_series_total when `finish` counted."""
        version = requests[0].model.ref.version
        self.metrics.forecast_series.labels(model_version=version).inc(
            sum(r.n_series for r in requests)
        )
        median = requests[0].model.model.config.median_index
        lookback = requests[0].model.lookback
        columns: dict[str, list[np.ndarray]] = {}
        dated: list[tuple[Sequence[str], Histories, ForecastRows]] = []
        for request, forecasts in zip(requests, results, strict=True):
            h = request.horizon
            block = request.block
            adapted = request.adapted
            if block is not None:  # the same, from the block's arrays
                for name, windows in block.drift_inputs().items():
                    columns.setdefault(name, []).append(windows)  # (S, L): newest reads rows
                if block.first_ns is not None:
                    histories = RegularHistories(block.first_ns, block.step_ns, block.values)
                    unadapted = None if adapted is None else adapted.unadapted[:, :h]
                    shown = _shown(version, block.future_ns(h), forecasts[:, :h], median, unadapted)
                    shown.lookback = block.lookback  # its scale taken if it is kept
                    dated.append((block.ids, histories, shown))
                continue
            ids, history_ns, values, future_ns, rows, zoned = [], [], [], [], [], []
            for i, s in enumerate(request.series):
                for name, inputs in s.drift_inputs.items():
                    columns.setdefault(name, []).append(inputs)
                if s.dates is not None:
                    ids.append(s.id)
                    history_ns.append(s.dates.history_ns)
                    values.append(s.values)
                    future_ns.append(s.dates.future_ns[:h])
                    rows.append(i)
                    zoned.append(s.dates.tz is not None)
            if rows:
                unadapted = None if adapted is None else adapted.unadapted[rows, :h]
                shown = _shown(version, np.stack(future_ns), forecasts[rows, :h], median, unadapted)
                shown.zoned = zoned if any(zoned) else None
                shown.lookback = lookback
                dated.append((ids, ListedHistories(history_ns, values, shown.zoned), shown))
        self.realised.observe_batch(dated)
        self.drift.observe(version, columns)


def _shown(
    version: str,
    stamps: np.ndarray,
    forecasts: np.ndarray,
    median: int,
    unadapted: np.ndarray | None = None,
) -> ForecastRows:
    """What the realised-error cache keeps of (S, h, Q) forecasts: mean and outermost levels,
    copied (slices of them would keep the whole micro-batch's (B, H_max, Q) output alive for as
    long as any one of its series stays cached); with rolling intervals also the outermost
    pair and the median before adaptation (and the floor), (S, h, 3), which the scores are
    taken against."""
    rows = ForecastRows(
        version,
        stamps,
        np.ascontiguousarray(forecasts[..., median]),
        np.ascontiguousarray(forecasts[..., 0]),
        np.ascontiguousarray(forecasts[..., -1]),
    )
    if unadapted is not None:
        rows.unadapted_low = np.ascontiguousarray(unadapted[..., 0])
        rows.unadapted_mean = np.ascontiguousarray(unadapted[..., 1])
        rows.unadapted_high = np.ascontiguousarray(unadapted[..., 2])
    return rows


def unscale(
    scaled: np.ndarray,
    target_mean: np.ndarray,
    target_scale: np.ndarray,
    last: np.ndarray | None = None,
) -> np.ndarray:
    """(B, H, Q) scaled model output -> float64 in each series' original units, from their
    (B,) means and scales, measured from each history's (B,) `last` value where given
    (`unscale_from_last`, as `ForecastPredictor.predict_frame` and the backtest do: a flat
    look-back of 5000.0 is answered 5000.0, not 5000.0000449, and its realised coverage
    counts the actuals at 5000.0 as inside), the float32 round-off about 0 set to 0
    (`snap_zeros`: a flat look-back of zeros answered 4e-6, where the backtest scores 0)."""
    mean, scale = target_mean[:, None, None], target_scale[:, None, None]
    anchor = np.nan if last is None else last[:, None, None]
    return snap_zeros(unscale_from_last(scaled, mean, scale, anchor), mean, scale)


def forecast_stream(model: ServedModel, series: PreparedSeries) -> np.ndarray:
    """A streaming model: the series' whole history into a fresh state, then its forecast,
    (H_max, Q) float64 in the data's original units (what the /series endpoints compute)."""
    history = series.history
    if history is None:
        raise ValueError("a series prepared for a streaming model lacks its history")
    stream = model.stream_serving
    state = stream.advance(stream.new_state(), history.target, history.covariates, history.calendar)
    future = None
    if model.needs_dates:
        future = history.future_calendar
        if future is None:
            future = _present(series.future_calendar).astype(np.float64)
    out = stream.forecast(
        state,
        future,
        unit_scale=series.target_scale,
        unit_loc=series.target_mean,
        last=float(series.values[-1]),  # a flat history: its level exactly, as `unscale`
    )
    out = snap_zeros(out, series.target_mean, series.target_scale)  # as `unscale`
    return floor_at_zero(out, model.model.config.non_negative)


def _series(requests: Sequence[PreparedRequest]) -> list[PreparedSeries]:
    return [s for r in requests for s in r.series]


def _rows(array: np.ndarray | None, start: int, count: int) -> np.ndarray | None:
    return None if array is None else array[start : start + count]


def _present(array: np.ndarray | None) -> np.ndarray:
    if array is None:  # validation guarantees it for this model; a bug otherwise
        raise ValueError("a prepared series lacks an input its model reads")
    return array

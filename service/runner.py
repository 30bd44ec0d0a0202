"""What the inference thread runs for one batch: stack, forward, un-scale, then the monitors.

The batcher hands over requests that were all validated against the same model version, so
their arrays stack into one (B, L) target, (B, L, C) covariates, ... and go through one forward
pass (in chunks of at most `max_batch_series`). Each series is un-scaled with its own scaler
statistics, then the result is split back per request. Drift and realised error are fed here,
off the event loop, after the forecasts are known.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from service.drift import DriftMonitor
from service.metrics import ServiceMetrics
from service.realised import CachedForecast, RealisedErrorTracker
from service.served import ServedModel
from service.validation import PreparedRequest, PreparedSeries


class BatchRunner:
    """Callable run by the batcher's worker thread: requests -> (n_series, H_max, Q) each."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        drift: DriftMonitor,
        realised: RealisedErrorTracker,
        *,
        max_batch_series: int,
    ) -> None:
        self.metrics = metrics
        self.drift = drift
        self.realised = realised
        self.max_batch_series = max_batch_series

    def __call__(self, requests: Sequence[PreparedRequest]) -> list[np.ndarray]:
        model = requests[0].model
        if any(r.model is not model for r in requests):
            raise ValueError("a batch must hold requests validated against one model version")
        series = [s for r in requests for s in r.series]
        start = time.perf_counter()
        target = None
        if all(r.target is not None for r in requests):  # the bulk path's (S, L) blocks
            target = np.concatenate([r.target for r in requests if r.target is not None])
        if model.streaming:  # each whole history from a fresh state, series by series
            forecasts = np.stack([forecast_stream(model, s) for s in series])
        else:
            forecasts = self._windowed(model, series, target)
        self.metrics.inference_latency.observe(time.perf_counter() - start)
        self.metrics.batch_series.observe(len(series))
        self.metrics.batch_requests.observe(len(requests))
        self.metrics.forecast_series.labels(model_version=model.ref.version).inc(len(series))
        out, offset = [], 0
        for request in requests:
            n = len(request.series)
            out.append(forecasts[offset : offset + n])
            offset += n
        self._monitor(requests, out)
        return out

    def _windowed(
        self, model: ServedModel, series: list[PreparedSeries], target: np.ndarray | None
    ) -> np.ndarray:
        """Batched forward passes of at most max_batch_series: (B, H_max, Q), original units."""
        step = self.max_batch_series
        return np.concatenate(
            [
                forecast_series(
                    model, series[i : i + step], None if target is None else target[i : i + step]
                )
                for i in range(0, len(series), step)
            ]
        )

    def _monitor(self, requests: Sequence[PreparedRequest], results: list[np.ndarray]) -> None:
        """Realised error per series; drift once for the whole batch (one version)."""
        version = requests[0].model.ref.version
        median = requests[0].model.model.config.median_index
        columns: dict[str, list[np.ndarray]] = {}
        dated: list[tuple[str, np.ndarray, np.ndarray, CachedForecast]] = []
        for request, forecasts in zip(requests, results, strict=True):
            h = request.horizon
            for s, forecast in zip(request.series, forecasts, strict=True):
                for name, values in s.drift_inputs.items():
                    columns.setdefault(name, []).append(values)
                if s.dates is None:
                    continue
                cached = CachedForecast(
                    version=version,
                    stamps=s.dates.future_ns[:h],
                    mean=forecast[:h, median],
                    low=forecast[:h, 0],
                    high=forecast[:h, -1],
                )
                dated.append((s.id, s.dates.history_ns, s.values, cached))
        self.realised.observe_batch(dated)
        self.drift.observe(version, {k: np.concatenate(v) for k, v in columns.items()})


def forecast_series(
    model: ServedModel, series: Sequence[PreparedSeries], target: np.ndarray | None = None
) -> np.ndarray:
    """One forward pass over `series`: (B, H_max, Q) float64 in the data's original units.
    `target`: their (B, L) targets already stacked, if the caller has them."""
    if target is None:
        target = np.stack([s.target for s in series])  # (B, L)
    covariates = past_calendar = future_calendar = None
    if model.covariates:
        covariates = np.stack([_present(s.covariates) for s in series])  # (B, L, C)
    if model.needs_dates:
        past_calendar = np.stack([_present(s.past_calendar) for s in series])  # (B, L, K)
        future_calendar = np.stack([_present(s.future_calendar) for s in series])  # (B, H, K)
    scaled = model.forward(target, covariates, past_calendar, future_calendar)  # (B, H, Q)
    mean = np.array([s.target_mean for s in series])[:, None, None]
    scale = np.array([s.target_scale for s in series])[:, None, None]
    return scaled * scale + mean  # type: ignore[no-any-return]


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
        future = _present(series.future_calendar).astype(np.float64)
    return stream.forecast(
        state, future, unit_scale=series.target_scale, unit_loc=series.target_mean
    )


def _present(array: np.ndarray | None) -> np.ndarray:
    if array is None:  # validation guarantees it for this model; a bug otherwise
        raise ValueError("a prepared series lacks an input its model reads")
    return array

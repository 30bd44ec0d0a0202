"""The realised-error cache keeps memory in proportion to the ids it caches, and scores
forecasts the same after it compacts a request's rows."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from service.metrics import ServiceMetrics
from service.realised import ForecastRows, ListedHistories, RealisedErrorTracker, RegularHistories

STEP = 3_600_000_000_000  # 1 h in ns
H, N = 4, 8  # horizon, history rows


def _request(
    ids: list[str], start_step: int, level: float
) -> tuple[list[str], RegularHistories, ForecastRows]:
    """Histories of N rows ending at step start_step + N - 1, forecasts of the next H steps
    at `level` (interval level +- 1)."""
    s = len(ids)
    first_ns = np.full(s, start_step * STEP, dtype=np.int64)
    values = np.full((s, N), level)
    future = (start_step + N + np.arange(H, dtype=np.int64)) * STEP
    stamps = np.tile(future, (s, 1))
    mean = np.full((s, H), level)
    rows = ForecastRows("1", stamps, mean, mean - 1.0, mean + 1.0)
    return ids, RegularHistories(first_ns, STEP, values), rows


def _points(metrics: ServiceMetrics) -> float:
    return metrics.realised_points.labels(model_version="1")._value.get()  # type: ignore[no-any-return]


def test_resent_ids_with_one_new_id_a_request_hold_rows_in_proportion_to_the_ids() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    capacity, per_request = 50, 64
    tracker = RealisedErrorTracker(metrics, capacity)
    fixed = [f"fixed-{i}" for i in range(per_request - 1)]
    for r in range(200):  # the fixed ids resent every time, one new id each request
        tracker.observe_batch([_request([*fixed, f"new-{r}"], start_step=r, level=float(r))])
    assert len(tracker) == capacity
    # without compaction every cached "new-r" kept its whole request: ~capacity x 64 rows
    assert tracker.held_rows() <= 4 * capacity
    assert tracker.held_rows() >= capacity - len(fixed)


def test_compacted_rows_score_as_the_original_ones() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=100)
    ids = [f"s{i}" for i in range(16)]
    tracker.observe_batch([_request(ids, start_step=0, level=5.0)])
    # 15 of the 16 ids come back with unrelated dates: the block compacts to s0's row
    tracker.observe_batch([_request(ids[1:], start_step=1000, level=0.0)])
    assert tracker.held_rows() == 1 + 15
    before = _points(metrics)
    # s0's history now covers its cached forecast's H steps, at the forecast's level
    tracker.observe_batch([_request(["s0"], start_step=N + H - N, level=5.0)])
    assert _points(metrics) - before == H
    hits = metrics.realised_hits.labels(model_version="1")._value.get()
    assert hits == H


def test_ids_cycling_through_a_full_cache_are_counted_as_evicted_unscored() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=10)
    fleet = [f"meter-{i}" for i in range(30)]
    for hour in range(3):  # the whole fleet, 6 ids a request, every hour
        for k in range(0, len(fleet), 6):
            tracker.observe_batch([_request(fleet[k : k + 6], start_step=hour, level=1.0)])
    evicted = metrics.realised_evicted._value.get()
    assert evicted == 3 * len(fleet) - 10  # every forecast but the last 10 dropped unscored
    assert _points(metrics) == 0.0  # so nothing was ever scored


def test_a_zoned_forecast_is_scored_by_zoned_histories_only_after_compaction_too() -> None:
    """Naive stamps are a wall clock, zoned ones instants: equal integers are not the same
    time, so a row is compared only with a history of its own kind, and `take` (compaction)
    keeps each row's kind."""
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=100)
    ids = [f"s{i}" for i in range(16)]
    first = _request(ids, start_step=0, level=5.0)
    first[2].zoned = [i % 2 == 0 for i in range(16)]  # s0, s2, ... zoned
    tracker.observe_batch([first])
    tracker.observe_batch([_request(ids[2:], start_step=1000, level=0.0)])  # compacts to s0, s1
    assert tracker.held_rows() == 2 + 14
    for series_id, zoned, points in (("s0", True, H), ("s1", True, 0.0)):
        before = _points(metrics)
        ids_, histories, rows = _request([series_id], start_step=H, level=5.0)
        stamps = [np.arange(N, dtype=np.int64) * STEP + H * STEP]
        listed = ListedHistories(stamps, [histories.values[0]], [zoned])
        rows.zoned = [zoned]
        tracker.observe_batch([(ids_, listed, rows)])
        assert _points(metrics) - before == points, series_id

"""The realised-error cache keeps memory in proportion to the ids it caches, and scores
forecasts the same after it compacts a request's rows."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.adaptive import AdaptiveIntervals
from service.metrics import ServiceMetrics
from service.realised import (
    ForecastRows,
    ListedHistories,
    RealisedErrorTracker,
    RegularHistories,
    kept_spacing,
    lookback_scale,
)

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


def _total(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    """The sum of a counter's samples over the labels not given (the leads, by default)."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _points(metrics: ServiceMetrics, **labels: str) -> float:
    return _total(metrics, "urnn_realised_points_total", model_version="1", **labels)


def test_resent_ids_with_one_new_id_a_request_hold_rows_in_proportion_to_the_ids() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    capacity, per_request = 50, 64
    tracker = RealisedErrorTracker(metrics, capacity)
    fixed = [f"fixed-{i}" for i in range(per_request - 1)]
    for r in range(200):  # the fixed ids resent every time, one new id each request
        tracker.observe_batch([_request([*fixed, f"new-{r}"], start_step=r, level=float(r))])
    # at most capacity: an id whose forecast completed at the request that passes over the
    # next one (a client asking every step, the phase moves on) holds none until its next
    assert 0 < len(tracker) <= capacity
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
    assert _total(metrics, "urnn_realised_interval_hits_total") == H


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


def _hourly(
    series_id: str, hour: int, horizon: int = 8
) -> tuple[list[str], RegularHistories, ForecastRows]:
    """A client asking at `hour` with the N hours up to it (each hour's value is its number)
    for the next `horizon` hours: the forecast at lead k is off by k, its interval +- 2.5, so
    leads 1 and 2 fall inside it and later ones outside."""
    first_ns = np.array([(hour - N + 1) * STEP], dtype=np.int64)
    values = np.arange(hour - N + 1, hour + 1, dtype=np.float64)[None, :]
    leads = np.arange(1, horizon + 1, dtype=np.int64)
    stamps = ((hour + leads) * STEP)[None, :]
    mean = (hour + 2 * leads).astype(np.float64)[None, :]  # truth hour + k, off by k
    return (
        [series_id],
        RegularHistories(first_ns, STEP, values),
        ForecastRows("1", stamps, mean, mean - 2.5, mean + 2.5),
    )


def test_a_client_asking_every_hour_has_every_lead_of_its_forecasts_scored() -> None:
    """Each forecast was scored once, by the next history, and replaced: a client asking
    every step had only lead 1 ever scored (its realised MAE and coverage were one-step
    figures). Now one forecast a horizon stays pending until all its steps are revealed, and
    the one right after it is passed over (the next kept one starts an hour later in the day)."""
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=10)
    for hour in range(26):  # kept at hours 0, 9 (scored), 18 (revealed up to lead 7)
        tracker.observe_batch([_hourly("pump", hour)])
    by_lead = {"1": 3.0, "2-3": 6.0, "4-7": 12.0, "8-15": 2.0}
    for lead, points in by_lead.items():
        assert _points(metrics, lead=lead) == points, lead
    assert _points(metrics) == 2 * 8 + 7
    errors = {k: _total(metrics, "urnn_realised_abs_error_total", lead=k) for k in by_lead}
    assert errors == {"1": 3.0, "2-3": 3 * (2.0 + 3.0), "4-7": 3 * 22.0, "8-15": 2 * 8.0}
    hits = {k: _total(metrics, "urnn_realised_interval_hits_total", lead=k) for k in by_lead}
    assert hits == {"1": 3.0, "2-3": 3.0, "4-7": 0.0, "8-15": 0.0}  # leads 1 and 2 inside
    assert tracker.pending() == 1


def test_depth_keeps_forecasts_horizon_over_depth_apart_and_scores_each_step_once() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=10, depth=2)
    # kept 8 / 2 steps apart, plus the one step that moves a client asking every hour round
    # the day: at 0, 5, 10, 15 (fully scored), 20 (up to lead 4)
    for hour in range(3 * 8 + 1):
        tracker.observe_batch([_hourly("pump", hour)])
        tracker.observe_batch([_hourly("pump", hour)])  # the same history again: nothing new
    assert _points(metrics) == 4 * 8 + 4
    assert tracker.pending() == 1
    assert _points(metrics, lead="8-15") == 4.0


def test_a_client_going_back_in_time_replaces_what_is_pending() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=10)
    tracker.observe_batch([_hourly("pump", 100)])
    tracker.observe_batch([_hourly("pump", 50)])  # a replay from earlier data
    assert _points(metrics) == 0.0 and tracker.pending() == 1
    tracker.observe_batch([_hourly("pump", 58)])  # reveals the hour-50 forecast's 8 steps
    assert _points(metrics) == 8.0


def test_evicting_an_id_counts_each_of_its_pending_forecasts() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=1, depth=2)
    for hour in (0, 4):
        tracker.observe_batch([_hourly("pump", hour)])
    assert tracker.pending() == 2
    assert _points(metrics) == 4.0  # hour 4's history scored the first forecast's first 4 steps
    tracker.observe_batch([_hourly("fan", 0)])
    # both count, the partly scored one too (its last 4 steps never will be): "dropped before
    # their last step was scored", where the help said "dropped unscored"
    assert metrics.realised_evicted._value.get() == 2.0
    (family,) = [m for m in metrics.registry.collect() if m.name == "urnn_realised_evicted"]
    assert "before their last step was scored" in family.documentation
    assert tracker.held_rows() == 1


def _daily_cycle(hour: int, horizon: int = 24) -> tuple[list[str], RegularHistories, ForecastRows]:
    """A client asking at `hour` for the next `horizon` hours of a series that is 0 at every
    hour, forecast as the step's hour of day: each step's error is its hour of day (0-23)."""
    first_ns = np.array([(hour - N + 1) * STEP], dtype=np.int64)
    future = hour + np.arange(1, horizon + 1, dtype=np.int64)
    return (
        ["meter"],
        RegularHistories(first_ns, STEP, np.zeros((1, N))),
        ForecastRows(
            "1",
            (future * STEP)[None, :],
            (future % 24).astype(np.float64)[None, :],
            np.full((1, horizon), -1e9),
            np.full((1, horizon), 1e9),
        ),
    )


def test_a_client_asking_every_hour_has_its_leads_scored_at_every_hour_of_the_day() -> None:
    """Walked on PJM DAYTON (2026-12-07): an hourly client had one forecast a day scored, always
    the one made at the hour of its first request, so lead 1 was always the same hour of day
    (01:00: realised lead-1 MAE 61 MW where the client's lead-1 forecasts erred 99 MW) and
    'error by lead' was error by hour of day. The kept forecasts' origins now move round the
    day: over 24 cycles each lead is scored at every hour, as the client's forecasts are."""
    for depth in (1, 4):
        metrics = ServiceMetrics(CollectorRegistry())
        tracker = RealisedErrorTracker(metrics, capacity=10, depth=depth)
        for hour in range(30 * 24):
            tracker.observe_batch([_daily_cycle(hour)])
        for lead in ("1", "16-31"):
            points = _points(metrics, lead=lead)
            mae = _total(metrics, "urnn_realised_abs_error_total", lead=lead) / points
            # every hour of day alike: mean hour 11.5 (phase-locked at hour 0: lead 1 read 1.0)
            assert abs(mae - 11.5) < 1.5, (depth, lead, mae, points)


def test_a_depth_of_the_horizon_keeps_a_forecast_every_step() -> None:
    """Depth >= horizon keeps one forecast a step, every phase already: the one step more
    that moves sparser kept forecasts round the day would halve its points."""
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=10, depth=8)
    for hour in range(3 * 8 + 1):
        tracker.observe_batch([_hourly("pump", hour)])
    assert _points(metrics, lead="1") == 24.0  # forecasts of hours 0..23, each at lead 1
    assert tracker.pending() == 8


def test_a_client_jumping_forward_past_its_pending_forecast_has_the_new_one_kept() -> None:
    """Walked on PJM (a replay that jumped from 2016 to 2017): the pending forecast, partly
    revealed, was dropped unscored by the jump (its steps are not in the new history), and
    the new forecast was passed over as if the client asked every step; it is kept."""
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=10)
    for hour in range(12):  # kept at 0 (scored), 9 (revealed up to lead 3)
        tracker.observe_batch([_hourly("pump", hour)])
    before = _points(metrics)
    tracker.observe_batch([_hourly("pump", 100)])  # history 93..100: after hour 17
    assert tracker.pending() == 1
    tracker.observe_batch([_hourly("pump", 108)])  # reveals all 8 steps of the hour-100 one
    assert _points(metrics) - before == 8.0


def test_kept_forecasts_of_a_frequent_client_start_at_every_hour_whatever_the_depth() -> None:
    """Walked on PJM (2026-12-07): kept horizon / depth + 1 steps apart, depth 3 at horizon 24
    kept forecasts 9 hours apart, which start at 8 hours of the day only (the 9-hour cycle
    shares the factor 3 with the day); the spacing is now the next one coprime with the
    horizon, and the origins of the kept forecasts reach every hour."""
    for depth in (1, 2, 3, 4, 5, 6, 8):
        tracker = RealisedErrorTracker(ServiceMetrics(CollectorRegistry()), 10, depth=depth)
        origins = set()
        for hour in range(40 * 24):
            tracker.observe_batch([_daily_cycle(hour)])
            for item in tracker._cache.get("meter", ()):
                origins.add(int(item.rows.stamps[item.row, 0] // STEP - 1) % 24)
        assert len(origins) == 24, (depth, sorted(origins))


def test_a_request_sent_twice_does_not_undo_the_step_that_moves_kept_forecasts() -> None:
    """Walked on PJM (2026-12-07): the forecast right after a revealed one is passed over so
    that the kept ones move round the day, but the same request sent again (a retry, a second
    consumer of the series) was kept, and a client that always sent twice had its kept
    forecasts start at one hour of the day again."""
    tracker = RealisedErrorTracker(ServiceMetrics(CollectorRegistry()), 10)
    origins = set()
    for hour in range(40 * 24):
        for _ in range(2):
            tracker.observe_batch([_daily_cycle(hour)])
            for item in tracker._cache.get("meter", ()):
                origins.add(int(item.rows.stamps[item.row, 0] // STEP - 1) % 24)
    assert len(origins) == 24, sorted(origins)


def test_kept_spacing_is_the_cadence_the_cache_keeps_for_a_client_asking_every_step() -> None:
    """Rolling intervals get one score a step per kept forecast, so the window's span in time
    is window x kept_spacing / series (the setting said 336 scores were two weeks of one
    hourly series: true only if every forecast were scored; walked on PJM DAYTON at horizon
    96, depth 64 kept one every 5 hours, depth 1 one every 97)."""
    for horizon, depth in ((8, 1), (8, 2), (8, 3), (12, 5), (24, 3), (24, 64), (96, 1), (96, 64)):
        tracker = RealisedErrorTracker(ServiceMetrics(CollectorRegistry()), 10, depth=depth)
        kept: list[int] = []
        for hour in range(N, N + 6 * horizon + 40):
            tracker.observe_batch([_hourly("meter", hour, horizon)])
            newest = tracker._cache.get("meter", ())
            if newest and int(newest[-1].rows.stamps[newest[-1].row, 0] // STEP) == hour + 1:
                kept.append(hour)
        gaps = set(np.diff(kept[2:]).tolist())
        assert gaps == {kept_spacing(horizon, depth)}, (horizon, depth, sorted(gaps))
    assert (kept_spacing(96, 1), kept_spacing(96, 64), kept_spacing(24, 3)) == (97, 5, 11)


def test_flat_forecasts_zero_width_intervals_leave_the_rolling_window_alone() -> None:
    """A flat look-back (48 quiet hours) is forecast as its level, a [0, 0] interval that no
    multiplier moves: its score (0 when the hour stays quiet, the 200 cap after a sale) says
    nothing about the multiplier. Taken into the pooled window, a fleet's quiet series filled
    it with zeros and narrowed every other series' interval to the 0.05 clamp (or widened it
    to 20x after sales), the pathology the val calibration leaves such windows out for."""
    step_ns, h, n = 3_600_000_000_000, 4, 8
    metrics = ServiceMetrics(CollectorRegistry())
    adaptive = AdaptiveIntervals(window=20)
    adaptive.multipliers("1", h, 0.8)
    tracker = RealisedErrorTracker(metrics, capacity=100, adaptive=adaptive)
    ids = [f"quiet-{i}" for i in range(10)]

    def request(start: int) -> tuple[list[str], RegularHistories, ForecastRows]:
        stamps = np.tile((start + n + np.arange(h, dtype=np.int64)) * step_ns, (len(ids), 1))
        zero = np.zeros((len(ids), h))
        rows = ForecastRows("1", stamps, zero, zero.copy(), zero.copy())
        rows.unadapted_low, rows.unadapted_high = zero.copy(), zero.copy()
        first = np.full(len(ids), start * step_ns, dtype=np.int64)
        return ids, RegularHistories(first, step_ns, np.zeros((len(ids), n))), rows

    for r in range(8):  # each request reveals the last one's steps: every hour stayed at 0
        tracker.observe_batch([request(r * (h + 1))])
    assert _points(metrics) >= 3 * 20 * h  # more scores than the window holds, at each step
    assert adaptive.multipliers("1", h, 0.8).tolist() == [1.0] * h
    # and the intervals before adaptation held each of those actuals
    assert _total(metrics, "urnn_realised_unadapted_interval_hits_total") == _points(metrics)


def test_scores_are_taken_about_the_median_before_the_floor_that_the_multiplier_moves() -> None:
    """A non-negative model's median of -5 is served as 0, but rolling intervals move the
    quantiles about the -5 (the floor comes after): the score of an actual of 2 against the
    unadapted [-10, 3] is (2 + 5) / (3 + 5) = 0.875, the smallest multiplier that holds it.
    Taken about the served 0 it was 2 / 3, and the window learnt multipliers too small."""
    from service.runner import _shown

    step_ns, h, n, s = 3_600_000_000_000, 2, 4, 20
    metrics = ServiceMetrics(CollectorRegistry())
    adaptive = AdaptiveIntervals(window=20)
    adaptive.multipliers("1", h, 0.8)
    tracker = RealisedErrorTracker(metrics, capacity=100, adaptive=adaptive)
    ids = [f"s{i}" for i in range(s)]
    unadapted = np.tile(np.array([-10.0, -5.0, 3.0]), (s, h, 1))  # low, median, high
    served = np.tile(np.array([0.0, 0.0, 3.0]), (s, h, 1))  # floored (m = 1)
    stamps = np.tile((n + np.arange(h, dtype=np.int64)) * step_ns, (s, 1))
    rows = _shown("1", stamps, served, 1, unadapted)
    first = np.zeros(s, dtype=np.int64)
    tracker.observe_batch([(ids, RegularHistories(first, step_ns, np.zeros((s, n))), rows)])
    actual = np.full((s, n + h), 2.0)
    tracker.observe_batch([(ids, RegularHistories(first, step_ns, actual), rows)])
    assert adaptive.multipliers("1", h, 0.8).tolist() == [0.875] * h


def _wave_request(
    series_id: str, start_step: int, unit: float, error: float
) -> tuple[list[str], RegularHistories, ForecastRows]:
    """One series alternating 0 and `unit` (N rows from start_step, mean one-step change
    `unit`), forecast for the next H steps `error` units above what follows."""
    first_ns = np.array([start_step * STEP], dtype=np.int64)
    values = unit * (np.arange(start_step, start_step + N) % 2)[None, :].astype(np.float64)
    future = start_step + N + np.arange(H, dtype=np.int64)
    mean = (unit * (future % 2) + error)[None, :].astype(np.float64)
    rows = ForecastRows("1", (future * STEP)[None, :], mean, mean - 1.0, mean + 1.0)
    rows.lookback = N  # its scale taken from these values if the tracker keeps it
    return [series_id], RegularHistories(first_ns, STEP, values), rows


def test_the_scaled_error_weighs_a_series_in_mw_and_one_in_rentals_alike() -> None:
    """urnn_realised_abs_error_total sums target units: a fleet's realised MAE was the MAE of
    its largest-unit series. The scaled counters divide each step's error by its look-back's
    mean one-step change (MASE), so two series that err half a step each read 0.5 together."""
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=10)
    tracker.observe_batch([_wave_request("rentals", 0, 20.0, 10.0)])
    tracker.observe_batch([_wave_request("mw", 0, 2000.0, 1000.0)])
    tracker.observe_batch([_wave_request("rentals", H, 20.0, 0.0)])
    tracker.observe_batch([_wave_request("mw", H, 2000.0, 0.0)])
    assert _points(metrics) == 2 * H
    assert _total(metrics, "urnn_realised_abs_error_total") == H * (10.0 + 1000.0)
    assert _total(metrics, "urnn_realised_scaled_points_total") == 2 * H
    assert _total(metrics, "urnn_realised_scaled_abs_error_total") == 2 * H * 0.5
    mase = metrics.registry.get_sample_value("urnn_realised_mase_sum", {"model_version": "1"})
    assert mase == 2 * 0.5
    # a flat look-back has no scale: its steps are in the points, not in the scaled ones
    tracker.observe_batch([_wave_request("flat", 100, 0.0, 3.0)])
    tracker.observe_batch([_wave_request("flat", 100 + H, 0.0, 0.0)])
    assert _points(metrics) == 3 * H
    assert _total(metrics, "urnn_realised_scaled_points_total") == 2 * H
    assert _total(metrics, "urnn_realised_abs_error_total") == H * (10.0 + 1000.0 + 3.0)


def test_the_scale_is_taken_once_a_forecast_is_kept_and_not_for_one_passed_over() -> None:
    """The scale is a pass over each look-back on the event loop: taken for the forecasts the
    tracker keeps, from the histories they were made from, and not for a client's repeat of
    the request whose forecast is pending (most of the 16-series Arrow request's event-loop
    work it added, 2026-12-07)."""
    tracker = RealisedErrorTracker(ServiceMetrics(CollectorRegistry()), capacity=10)
    kept = _wave_request("pump", 0, 20.0, 1.0)
    tracker.observe_batch([kept])
    assert kept[2].scale is not None
    assert kept[2].scale.tolist() == lookback_scale(kept[1].values, N).tolist() == [20.0]
    again = _wave_request("pump", 0, 20.0, 1.0)
    tracker.observe_batch([again])
    assert again[2].live == 0 and again[2].scale is None


def test_a_series_counted_in_units_of_1e19_stays_out_of_the_sums_of_the_others() -> None:
    """A series whose whole history is ~1e19 (its errors ~1e17, however good the forecast)
    held the target-unit sum where a later error of 2.3 no longer added; its steps, and those
    of a glitch 1e9 times a series' own step, are counted out of range instead."""
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=10)
    tracker.observe_batch([_wave_request("huge", 0, 1e19, 1e17)])
    tracker.observe_batch([_wave_request("glitch", 0, 1e-3, 1e6)])  # 1e9 steps off
    tracker.observe_batch([_wave_request("pump", 0, 20.0, 2.3)])
    for series_id, unit in (("huge", 1e19), ("glitch", 1e-3), ("pump", 20.0)):
        tracker.observe_batch([_wave_request(series_id, H, unit, 0.0)])
    out = metrics.registry.get_sample_value(
        "urnn_realised_out_of_range_points_total", {"model_version": "1"}
    )
    assert out == 2 * H
    assert _points(metrics) == H
    assert _total(metrics, "urnn_realised_abs_error_total") == pytest.approx(H * 2.3, rel=1e-12)
    assert _total(metrics, "urnn_realised_scaled_abs_error_total") == pytest.approx(
        H * 2.3 / 20.0, rel=1e-12
    )
    assert (
        metrics.registry.get_sample_value("urnn_realised_mae_count", {"model_version": "1"}) == 1.0
    )


def _load_request(
    ids: list[str], start_step: int, factor: float
) -> tuple[list[str], RegularHistories, ForecastRows]:
    """Loads of 1,000 +- 20 MW (mean one-step change 20), the history `factor` times that
    (1e6: sent in W), forecast exactly in MW for the next H steps."""
    s = len(ids)
    first_ns = np.full(s, start_step * STEP, dtype=np.int64)
    mw = 1000.0 + 20.0 * (np.arange(start_step, start_step + N) % 2)
    values = np.tile(factor * mw, (s, 1))
    future = start_step + N + np.arange(H, dtype=np.int64)
    mean = np.tile(1000.0 + 20.0 * (future % 2), (s, 1)).astype(np.float64)
    rows = ForecastRows("1", np.tile(future * STEP, (s, 1)), mean, mean - 1.0, mean + 1.0)
    rows.lookback = N
    return ids, RegularHistories(first_ns, STEP, values), rows


def test_actuals_revealed_in_w_after_a_history_in_mw_are_all_out_of_range_and_none_evicted() -> (
    None
):
    """A fleet that sends its history in MW and then reveals the actuals in W: every forecast is
    scored (none evicted, so UrnnRealisedErrorUnmeasured stays silent) and every step is out of
    range (errors ~1e9, 5e7 look-back steps), so no point, no MAE: what
    UrnnRealisedErrorOutOfRange (deploy/prometheus/alerts.yml) fires on. kW then W (errors ~1e6,
    5e4 steps) is in range: scored, a realised MAE a thousand times the level."""
    ids = [f"meter-{i}" for i in range(20)]
    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=len(ids))
    tracker.observe_batch([_load_request(ids, 0, 1.0)])
    tracker.observe_batch([_load_request(ids, H, 1e6)])  # W: reveals all H steps
    out = metrics.registry.get_sample_value(
        "urnn_realised_out_of_range_points_total", {"model_version": "1"}
    )
    assert out == len(ids) * H
    assert _points(metrics) == 0
    assert metrics.registry.get_sample_value("urnn_realised_mae_count", {"model_version": "1"}) in (
        None,
        0.0,
    )
    assert metrics.realised_evicted._value.get() == 0.0

    metrics = ServiceMetrics(CollectorRegistry())
    tracker = RealisedErrorTracker(metrics, capacity=len(ids))
    tracker.observe_batch([_load_request(ids, 0, 1.0)])
    tracker.observe_batch([_load_request(ids, H, 1e3)])  # kW then W
    assert _points(metrics) == len(ids) * H
    assert metrics.registry.get_sample_value(
        "urnn_realised_out_of_range_points_total", {"model_version": "1"}
    ) in (None, 0.0)

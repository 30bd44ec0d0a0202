"""The service's parts on their own: the micro-batcher's queue bound and grouping, the rolling
drift histogram against a brute-force window, PSI, and the model URI parser."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from service.batcher import MicroBatcher
from service.drift import RollingHistogram, newest, psi
from service.errors import ModelUnavailableError, QueueFullError
from service.metrics import ServiceMetrics
from service.realised import ListedHistories, RegularHistories
from service.validation import PreparedRequest
from tests.service.conftest import Registry, history, metric_value
from training.mlflow_model import window_scores
from urnn_forecast.model_uri import ModelUriError, parse_models_uri


class FakeRequest:
    """Stands in for a PreparedRequest: the batcher reads only `.n_series` and `.model`."""

    def __init__(self, n_series: int, model: object) -> None:
        self.series = tuple(range(n_series))
        self.n_series = n_series
        self.model = model


def fake(n_series: int, model: object = "m1") -> PreparedRequest:
    return cast(PreparedRequest, FakeRequest(n_series, model))


def test_batcher_groups_bounds_and_sheds_load() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def runner(requests: Sequence[PreparedRequest]) -> list[np.ndarray]:
        release.wait(timeout=10)
        batches.append([len(r.series) for r in requests])
        return [np.full((len(r.series), 1, 1), float(len(r.series))) for r in requests]

    async def scenario() -> None:
        metrics = ServiceMetrics()
        batcher = MicroBatcher(
            runner, max_batch_series=4, max_wait_s=0.0, max_queue=3, metrics=metrics
        )
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(fake(1)))
        await asyncio.sleep(0.05)  # taken: now blocked in the runner
        queued = [asyncio.ensure_future(batcher.submit(fake(n))) for n in (2, 2)]
        await asyncio.sleep(0.05)  # 2 + 2: the next batch, queued behind the running one
        queued += [asyncio.ensure_future(batcher.submit(fake(n))) for n in (3, 1, 1)]
        await asyncio.sleep(0.05)
        # Two batches are with the thread (pipeline depth 2): the rest wait for a free slot,
        # and the queue they wait in is full.
        assert batcher.depth == 3
        with pytest.raises(QueueFullError, match="queue is full"):
            await batcher.submit(fake(1))
        release.set()
        results = await asyncio.gather(first, *queued)
        assert [r.shape[0] for r in results] == [1, 2, 2, 3, 1, 1]
        assert [float(r[0, 0, 0]) for r in results] == [1.0, 2.0, 2.0, 3.0, 1.0, 1.0]
        # 3 + 1 fill a batch of 4 series; the last 1 would exceed it and runs next.
        assert batches == [[1], [2, 2], [3, 1], [1]]
        rejected = metrics.rejected.labels(reason="queue_full")._value.get()
        assert rejected == 1.0
        await batcher.stop()

    asyncio.run(scenario())


class GatedPhases:
    """BatchPhases whose first forward waits for `release`; notes stacking and forward starts."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.staged: list[list[int]] = []
        self.started: list[list[int]] = []

    def stage(self, requests: Sequence[PreparedRequest]) -> list[int]:
        self.staged.append([len(r.series) for r in requests])
        return self.staged[-1]

    def infer(self, staged: list[int]) -> list[int]:
        self.started.append(staged)
        if len(self.started) == 1:
            self.release.wait(timeout=10)
        return staged

    def finish(
        self, requests: Sequence[PreparedRequest], staged: list[int], inferred: list[int]
    ) -> list[np.ndarray]:
        return [np.full((n, 1, 1), float(n)) for n in inferred]

    def monitor(self, requests: Sequence[PreparedRequest], results: list[np.ndarray]) -> None:
        return None


@pytest.mark.parametrize("depth", [1, 2])
def test_the_next_batch_starts_on_the_thread_while_the_event_loop_is_busy(depth: int) -> None:
    """With pipeline depth 2 the next batch is stacked and queued while one runs, so the
    thread starts it as soon as the running one ends, even while the event loop is blocked
    (service.batcher says why); with depth 1 it waits for the loop, as batches used to."""
    phases = GatedPhases()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(
            phases,
            max_batch_series=2,
            max_wait_s=0.0,
            max_queue=10,
            metrics=ServiceMetrics(),
            pipeline_depth=depth,
        )
        await batcher.start()
        futures = [asyncio.ensure_future(batcher.submit(fake(2)))]
        await asyncio.sleep(0.05)  # the first batch is on the thread, held there
        futures += [asyncio.ensure_future(batcher.submit(fake(2))) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert phases.staged == [[2], [2]][:depth]
        assert batcher.depth == 3 - depth  # the rest wait for a free slot
        phases.release.set()
        time.sleep(0.3)  # the event loop is blocked: it can hand nothing to the thread
        assert len(phases.started) == depth
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [float(r[0, 0, 0]) for r in results] == [2.0, 2.0, 2.0]
    assert phases.staged == [[2], [2], [2]]


def test_stop_answers_every_request_of_both_batches_in_flight_and_the_queue() -> None:
    """Stopping with one batch running, one queued behind it and one request waiting: all
    three answer 'shutting down' (503), and the queued batch's forward never runs."""
    phases = GatedPhases()

    async def scenario() -> list[BaseException | np.ndarray]:
        batcher = MicroBatcher(
            phases, max_batch_series=2, max_wait_s=0.0, max_queue=10, metrics=ServiceMetrics()
        )
        await batcher.start()
        futures = [asyncio.ensure_future(batcher.submit(fake(2)))]
        await asyncio.sleep(0.05)  # running, held
        futures += [asyncio.ensure_future(batcher.submit(fake(2))) for _ in range(2)]
        await asyncio.sleep(0.05)  # the second queued behind it, the third waiting
        threading.Timer(0.2, phases.release.set).start()  # stop waits for the running forward
        await batcher.stop()
        return await asyncio.gather(*futures, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ModelUnavailableError) for o in outcomes), outcomes
    assert all("shutting down" in str(o) for o in outcomes)
    assert len(phases.started) == 1


def test_requests_that_queued_while_the_thread_was_busy_go_once_it_is_idle() -> None:
    """A batch being filled while the thread runs another is handed over as soon as the
    thread is done, not after the rest of max_wait_s (5 s here)."""
    phases = GatedPhases()

    async def scenario() -> float:
        batcher = MicroBatcher(
            phases, max_batch_series=2, max_wait_s=5.0, max_queue=10, metrics=ServiceMetrics()
        )
        await batcher.start()
        # Two requests at once: a full batch of several, so later batches wait for company.
        first = [asyncio.ensure_future(batcher.submit(fake(1))) for _ in range(2)]
        await asyncio.sleep(0.05)  # that batch is on the thread, held
        late = asyncio.ensure_future(batcher.submit(fake(1)))
        await asyncio.sleep(0.05)  # being filled: waits for company or the thread
        assert batcher.depth == 1
        start = time.perf_counter()
        phases.release.set()
        await asyncio.gather(*first, late)
        took = time.perf_counter() - start
        await batcher.stop()
        return took

    assert asyncio.run(scenario()) < 1.0  # not the 5 s max_wait
    assert phases.staged == [[1, 1], [1]]


def test_pipeline_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="pipeline_depth must be at least 1"):
        MicroBatcher(
            GatedPhases(),
            max_batch_series=2,
            max_wait_s=0.0,
            max_queue=1,
            metrics=ServiceMetrics(),
            pipeline_depth=0,
        )


def test_batcher_runs_each_model_version_separately() -> None:
    seen: list[set[object]] = []

    def runner(requests: Sequence[PreparedRequest]) -> list[np.ndarray]:
        seen.append({r.model for r in requests})
        return [np.zeros((len(r.series), 1, 1)) for r in requests]

    async def scenario() -> None:
        batcher = MicroBatcher(
            runner, max_batch_series=64, max_wait_s=0.05, max_queue=10, metrics=ServiceMetrics()
        )
        await batcher.start()
        await asyncio.gather(*(batcher.submit(fake(1, m)) for m in ("v1", "v2", "v1", "v2")))
        await batcher.stop()

    asyncio.run(scenario())
    assert sorted(map(sorted, seen)) == [["v1"], ["v2"]]  # type: ignore[arg-type]


def test_a_lone_request_does_not_wait_for_company() -> None:
    def runner(requests: Sequence[PreparedRequest]) -> list[np.ndarray]:
        return [np.zeros((len(r.series), 1, 1)) for r in requests]

    async def scenario() -> float:
        batcher = MicroBatcher(
            runner, max_batch_series=64, max_wait_s=5.0, max_queue=10, metrics=ServiceMetrics()
        )
        await batcher.start()
        start = time.perf_counter()
        await batcher.submit(fake(1))
        took = time.perf_counter() - start
        await batcher.stop()
        return took

    assert asyncio.run(scenario()) < 1.0  # not the 5 s max_wait


class RecordingPhases:
    """BatchPhases that note which thread ran each phase, and what was answered by then."""

    def __init__(self, fail_monitor: bool = False) -> None:
        self.threads: dict[str, int] = {}
        self.answered_before_monitor: list[bool] = []
        self.futures: list[asyncio.Future[np.ndarray]] = []
        self.fail_monitor = fail_monitor

    def stage(self, requests: Sequence[PreparedRequest]) -> list[int]:
        self.threads["stage"] = threading.get_ident()
        return [len(r.series) for r in requests]

    def infer(self, staged: list[int]) -> list[int]:
        self.threads["infer"] = threading.get_ident()
        return [n * 10 for n in staged]

    def finish(
        self, requests: Sequence[PreparedRequest], staged: list[int], inferred: list[int]
    ) -> list[np.ndarray]:
        self.threads["finish"] = threading.get_ident()
        return [np.full((n, 1, 1), float(v)) for n, v in zip(staged, inferred, strict=True)]

    def monitor(self, requests: Sequence[PreparedRequest], results: list[np.ndarray]) -> None:
        self.threads["monitor"] = threading.get_ident()
        self.answered_before_monitor.append(all(f.done() for f in self.futures))
        if self.fail_monitor:
            raise RuntimeError("a broken monitor")


def test_batch_phases_run_the_forward_on_the_thread_and_the_rest_on_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only `infer` runs on the worker thread (the lock hand-backs of everything else would
    stall the forward: service.runner); the monitors run after every request is answered, and
    a failing monitor leaves the answers alone (logged)."""
    for fail in (False, True):
        phases = RecordingPhases(fail_monitor=fail)

        async def scenario(phases: RecordingPhases = phases) -> list[np.ndarray]:
            batcher = MicroBatcher(
                phases, max_batch_series=8, max_wait_s=0.05, max_queue=10, metrics=ServiceMetrics()
            )
            await batcher.start()
            phases.futures = [asyncio.ensure_future(batcher.submit(fake(n))) for n in (1, 2, 3)]
            results = await asyncio.gather(*phases.futures)
            await asyncio.sleep(0.01)  # the monitors' turn
            await batcher.stop()
            assert phases.threads["stage"] == threading.get_ident()
            return results

        with caplog.at_level("ERROR", logger="service.batcher"):
            results = asyncio.run(scenario())
        assert [float(r[0, 0, 0]) for r in results] == [10.0, 20.0, 30.0]
        loop_thread = phases.threads["stage"]
        assert phases.threads["finish"] == phases.threads["monitor"] == loop_thread
        assert phases.threads["infer"] != loop_thread
        assert phases.answered_before_monitor == [True]
        assert ("batch monitors failed" in caplog.text) is fail


def test_full_queue_answers_503_with_retry_after(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = client_for()
    batcher = client.app.state.service.batcher  # type: ignore[attr-defined]
    batcher.max_queue = 0  # every request finds the queue full
    response = client.post("/forecast", json={"series": [history(registry.frame)]})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "queue is full" in response.json()["detail"]
    assert metric_value(client, "urnn_forecast_rejected_total", reason="queue_full") == 1.0


def test_rolling_histogram_equals_a_brute_force_window() -> None:
    rng = np.random.default_rng(0)
    edges = np.array([-1.0, 0.0, 0.5, 1.0])
    for capacity in (5, 17, 100):
        rolling = RollingHistogram(edges, capacity)
        window: deque[float] = deque(maxlen=capacity)
        for _ in range(100):
            values = rng.normal(size=int(rng.integers(1, 3 * capacity)))
            rolling.add(values)
            window.extend(values.tolist())
            expected = np.bincount(
                np.searchsorted(edges, np.array(window), side="left"), minlength=len(edges) + 1
            )
            np.testing.assert_array_equal(rolling.counts, expected)
            assert rolling.size == len(window)


def test_regular_histories_find_the_values_listed_ones_find() -> None:
    """The arithmetic lookup on an evenly spaced axis against np.intersect1d on the stamps."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        step = int(rng.integers(1, 5)) * 3_600
        n = int(rng.integers(1, 40))
        first_ns = np.array([int(rng.integers(-50, 50)) * 1_800], dtype=np.int64)
        values = rng.normal(size=(1, n))
        listed = ListedHistories([first_ns[0] + step * np.arange(n, dtype=np.int64)], [values[0]])
        regular = RegularHistories(first_ns, step, values)
        assert (regular.first, regular.last) == (listed.first, listed.last)
        # forecast steps on the grid, off it by half a step, before or after the history
        start = int(rng.integers(-60, 60)) * (step // 2)
        stamps = start + step * np.arange(int(rng.integers(1, 30)), dtype=np.int64)
        mine, theirs = regular.values_at(0, stamps), listed.values_at(0, stamps)
        np.testing.assert_array_equal(mine[0], theirs[0])
        np.testing.assert_array_equal(mine[1], theirs[1])


def test_psi_is_zero_for_equal_and_large_for_disjoint_histograms() -> None:
    reference = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(reference, reference) == 0.0
    assert psi(np.array([0.0, 0.0, 0.0, 1.0]), reference) > 2.0


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/urnn-forecaster@champion", ("urnn-forecaster", "champion", None)),
        ("models:/urnn-forecaster/3", ("urnn-forecaster", None, "3")),
    ],
)
def test_models_uri(uri: str, expected: tuple[Any, ...]) -> None:
    assert parse_models_uri(uri) == expected


@pytest.mark.parametrize("uri", ["runs:/abc/model", "models:/x/latest", "models:/", "champion"])
def test_models_uri_rejects_other_forms(uri: str) -> None:
    with pytest.raises(ModelUriError, match="models:/<name>@<alias>"):
        parse_models_uri(uri)


def test_drift_joins_only_the_newest_values_a_window_keeps() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        parts: list[np.ndarray] = []
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.5:
                parts.append(rng.normal(size=int(rng.integers(0, 30))))
            else:
                wide = rng.normal(size=(int(rng.integers(1, 6)), int(rng.integers(2, 12))))
                parts.append(wide[:, -int(rng.integers(1, wide.shape[1] + 1)) :])  # a view
        count = int(rng.integers(1, 80))
        everything = np.concatenate([p.reshape(-1) for p in parts])
        np.testing.assert_array_equal(newest(parts, count), everything[-count:])


def test_drift_scores_each_window_whole_before_keeping_the_newest_values() -> None:
    """A (S, L) block's rows and a 1-D part are each one look-back window: scored against its
    own mean and std, then cut to the newest `count` values (a window cut short keeps the
    scores its whole window gives)."""
    rng = np.random.default_rng(2)
    for _ in range(200):
        parts: list[np.ndarray] = []
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.5:
                parts.append(rng.normal(3.0, 2.0, size=int(rng.integers(1, 30))))
            else:
                parts.append(rng.normal(size=(int(rng.integers(1, 6)), int(rng.integers(2, 12)))))
        count = int(rng.integers(1, 80))
        scored = [window_scores(p.reshape(1, -1) if p.ndim == 1 else p).reshape(-1) for p in parts]
        expected = np.concatenate(scored)[-count:]
        np.testing.assert_allclose(
            newest(parts, count, per_window=True), expected, rtol=0, atol=1e-12
        )
    np.testing.assert_array_equal(window_scores(np.full((2, 5), 7.3)), np.zeros((2, 5)))


@pytest.mark.parametrize("unit", [1e-13, 1e-20])
def test_drift_scores_windows_of_tiny_units_as_in_usual_ones(unit: float) -> None:
    """A window's spread was judged against 1e-12 x (1 + |mean|): in tiny units (a current in
    amperes) every window was "flat", scored all zeros, and the drift gauge read 0 whatever
    came in. A window is scored the same in any unit; one repeated value is still flat."""
    rows = np.random.default_rng(3).normal(27.0, 7.0, size=(4, 96))
    np.testing.assert_allclose(window_scores(rows * unit), window_scores(rows), atol=1e-9)
    np.testing.assert_array_equal(window_scores(np.full((2, 5), 2.7e-11)), np.zeros((2, 5)))
    np.testing.assert_array_equal(window_scores(np.zeros((2, 5))), np.zeros((2, 5)))


def test_the_target_is_binned_per_window_and_an_older_models_reference_by_value() -> None:
    """A reference in the "window" space (the target of a model registered since the key)
    sees a daily cycle at any level as the training one; an older model's reference (no
    "space": its values) still reads the level, as it did."""
    from prometheus_client import CollectorRegistry

    from service.drift import DriftMonitor
    from training.mlflow_model import reference_statistics

    t = np.arange(2_000)
    rng = np.random.default_rng(0)
    y = 10.0 + 3.0 * np.sin(2 * np.pi * t / 24) + 0.2 * rng.normal(size=len(t))
    frame = pd.DataFrame({"y": y})
    windowed = reference_statistics([frame], window=("y", 48))["y"]
    by_value = {k: v for k, v in reference_statistics([frame])["y"].items() if k != "space"}
    assert windowed["space"] == "window" and windowed["window"] == 48
    blocks = np.lib.stride_tricks.sliding_window_view(y[-600:], 48)[::24]  # (S, 48) requests
    for shift, windowed_calm, value_calm in ((0.0, True, True), (8.0, True, False)):
        registry = CollectorRegistry()
        monitor = DriftMonitor(ServiceMetrics(registry), window=1_000)
        monitor.reset_for("1", {"y": windowed, "old": by_value})
        monitor.observe("1", {"y": [blocks + shift], "old": [blocks + shift]})
        windowed_psi = registry.get_sample_value("urnn_input_drift_psi", {"column": "y"})
        value_psi = registry.get_sample_value("urnn_input_drift_psi", {"column": "old"})
        assert windowed_psi is not None and value_psi is not None
        assert (windowed_psi < 0.1) is windowed_calm and (value_psi < 0.1) is value_calm


def test_a_new_version_restarts_the_drift_window_and_its_gauges() -> None:
    """The drift alert waits for 1,000 values in the window: after a swap the old version's
    window size must not stand in for the new, empty one."""
    from prometheus_client import CollectorRegistry

    from service.drift import DriftMonitor

    registry = CollectorRegistry()
    monitor = DriftMonitor(ServiceMetrics(registry), window=5_000)
    reference = {"y": {"edges": [0.0], "proportions": [0.5, 0.5]}}
    monitor.reset_for("1", reference)
    monitor.observe("1", {"y": [np.full(3_000, 5.0)]})
    assert registry.get_sample_value("urnn_input_drift_window_values", {"column": "y"}) == 3_000
    assert (registry.get_sample_value("urnn_input_drift_psi", {"column": "y"}) or 0.0) > 0.2
    monitor.reset_for("2", {**reference, "x": reference["y"]})
    assert registry.get_sample_value("urnn_input_drift_window_values", {"column": "y"}) == 0
    assert registry.get_sample_value("urnn_input_drift_psi", {"column": "y"}) == 0.0
    monitor.reset_for("3", {"x": reference["y"]})  # y no longer read: its gauges go
    assert registry.get_sample_value("urnn_input_drift_psi", {"column": "y"}) is None


def test_a_window_too_small_for_a_psi_exports_zero_until_it_holds_enough() -> None:
    """With several workers the drift gauges merge by their max: a worker that has seen one
    odd request must not set the merged PSI (6.8 from 384 values, beside another worker's full
    window, in a walk-through). A worker's PSI counts from MIN_PSI_VALUES values, or from a
    full window smaller than that."""
    from prometheus_client import CollectorRegistry

    from service.drift import MIN_PSI_VALUES, DriftMonitor

    reference = {"y": {"edges": [0.0], "proportions": [0.5, 0.5]}}
    odd = np.full(400, 5.0)  # every value in one bin: PSI ~3.7 once counted

    def psi_after(window: int, batches: int) -> tuple[float | None, float | None]:
        registry = CollectorRegistry()
        monitor = DriftMonitor(ServiceMetrics(registry), window=window)
        monitor.reset_for("1", reference)
        for _ in range(batches):
            monitor.observe("1", {"y": [odd]})
        sample = registry.get_sample_value
        return (
            sample("urnn_input_drift_psi", {"column": "y"}),
            sample("urnn_input_drift_window_values", {"column": "y"}),
        )

    assert MIN_PSI_VALUES == 1_000
    assert psi_after(20_000, 1) == (0.0, 400)
    assert psi_after(20_000, 2) == (0.0, 800)
    counted, size = psi_after(20_000, 3)
    assert size == 1_200 and counted is not None and counted > 3.0
    small, size = psi_after(500, 1)  # URNN_DRIFT_WINDOW below the floor: counted once full
    assert size == 400 and small == 0.0
    small, size = psi_after(500, 2)
    assert size == 500 and small is not None and small > 3.0


def test_an_answer_before_routing_takes_the_template_the_router_would_take() -> None:
    """A route matching the path and the method wins over an earlier one matching the path
    only (the router's rule), as for a 413 on POST /a/{id} beside GET /a/{name}."""
    from prometheus_client import CollectorRegistry
    from starlette.routing import Route

    from service.middleware import RequestMetricsMiddleware

    async def endpoint(request: object) -> None:  # never called: only matched
        raise AssertionError

    routes = [
        Route("/a/{name}", endpoint, methods=["GET"]),
        Route("/a/{id}", endpoint, methods=["POST"]),
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never called either
        raise AssertionError

    metrics = RequestMetricsMiddleware(
        app, metrics=ServiceMetrics(CollectorRegistry()), routes=routes
    )

    def scope(method: str, path: str) -> dict[str, object]:
        return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}

    assert metrics._template(scope("POST", "/a/1")) == "/a/{id}"
    assert metrics._template(scope("PUT", "/a/1")) == "/a/{name}"  # a 405: the first path
    assert metrics._template(scope("POST", "/b")) == "unmatched"


def test_a_per_series_scaler_finds_a_float_written_id_by_the_loaders_rule() -> None:
    """A fleet trained with ids 1, 2 (or 1.0, 2.0 from a Parquet float column: the loader reads
    both as '1', '2') is asked for series '1.0' by a client whose ids went through floats: it
    was refused as unknown to the per-series scaler."""
    from types import SimpleNamespace

    from service.served import ServedModel

    one, two = object(), object()
    model = SimpleNamespace(global_scales=None, scales={"1": one, "2": two})
    assert ServedModel.scales_for(cast(Any, model), "1.0") is one
    assert ServedModel.scales_for(cast(Any, model), "2") is two
    assert ServedModel.scales_for(cast(Any, model), "1.5") is None


def test_a_model_trained_before_the_float_id_rule_keeps_its_series() -> None:
    """A model trained on a float id file before the loader read 1.0 as '1' holds scaler
    statistics (and train.seen_until) under '1.0': its fleet, now loaded as '1', '2', must
    still find them, in the service, in the pyfunc (urnn backtest) and in the seen rows."""
    from types import SimpleNamespace

    from service.served import ServedModel
    from training.mlflow_model import ForecastPredictor
    from training.pipeline import recorded_seen_until

    one, two = object(), object()
    model = SimpleNamespace(global_scales=None, scales={"1.0": one, "2.0": two})
    assert ServedModel.scales_for(cast(Any, model), "1") is one
    assert ServedModel.scales_for(cast(Any, model), "2.0") is two
    assert ServedModel.scales_for(cast(Any, model), "3") is None
    scaler = SimpleNamespace(scope="series", stats={"1.0": {}, "2.0": {}})
    predictor = SimpleNamespace(scaler=scaler)
    assert ForecastPredictor._scaler_id(cast(Any, predictor), "2") == "2.0"
    assert ForecastPredictor._scaler_id(cast(Any, predictor), "1.0") == "1.0"
    meta = {"train": {"seen_until": {"1.0": "2020-01-02 00:00:00", "b": "2020-01-03"}}}
    assert recorded_seen_until(meta) == {
        "1": pd.Timestamp("2020-01-02"),
        "b": pd.Timestamp("2020-01-03"),
    }

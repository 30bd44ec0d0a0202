"""Micro-batching: concurrent requests share one forward pass, on one worker thread.

    batcher = MicroBatcher(runner, max_batch_series=256, max_wait_s=0.002, max_queue=1024, ...)
    await batcher.start()
    result = await batcher.submit(prepared)   # (n_series, H_max, Q) for this request

Requests wait in a bounded queue; a full queue raises `QueueFullError` at once (503 with
Retry-After) instead of letting latency grow without bound. One task takes requests off the
queue: it waits at most `max_wait_s` after the *oldest* waiting request arrived for the batch
to fill up to `max_batch_series` series (so requests that queued while the previous batch ran
do not wait again, and a client sending one request at a time never waits), then runs the
batch's forward on a single-thread executor: the event loop never blocks on the model, and the
model never runs two batches at once. The rest of a batch (stacking its inputs, un-scaling
and splitting the answers, the drift and realised-error monitors) runs on the event loop, in
the phases of `BatchPhases` (service.runner says why); the monitors after the answers are
handed to their requests. Requests validated against different model versions (during a
reload) are run as separate groups, each on its own version.

Batches are pipelined: up to `pipeline_depth` (2) batches are with the worker thread at once,
the one it runs and the next, already stacked and queued behind it. When a forward ends the
thread starts the next one at once, without waiting for the event loop to take the answers,
form the next batch and stack it. Measured under load (16 series x 32 clients, Arrow bodies, 2
cores; docs/serving.md), with one batch at a time the thread sat idle 1.7 ms between forwards
of 8.4 ms, because the forward's completion waited its turn behind the answers and requests
already queued on the loop: a sixth of the model's time lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np

from service.errors import ModelUnavailableError, QueueFullError, ServiceInputError, series_where
from service.metrics import ServiceMetrics
from service.validation import PreparedRequest

logger = logging.getLogger(__name__)

Runner = Callable[[Sequence[PreparedRequest]], list[np.ndarray]]


@runtime_checkable
class BatchPhases(Protocol):
    """One batch in four steps: `infer` on the worker thread, the others on the event loop."""

    def stage(self, requests: Sequence[PreparedRequest]) -> Any: ...

    def infer(self, staged: Any) -> Any: ...

    def finish(
        self, requests: Sequence[PreparedRequest], staged: Any, inferred: Any
    ) -> list[np.ndarray]: ...

    def monitor(self, requests: Sequence[PreparedRequest], results: list[np.ndarray]) -> None: ...


class ThreadOnly:
    """A plain runner function as `BatchPhases`: all of it on the worker thread."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def stage(self, requests: Sequence[PreparedRequest]) -> Sequence[PreparedRequest]:
        return requests

    def infer(self, staged: Sequence[PreparedRequest]) -> list[np.ndarray]:
        return self.runner(staged)

    def finish(
        self, requests: Sequence[PreparedRequest], staged: Any, inferred: list[np.ndarray]
    ) -> list[np.ndarray]:
        return inferred

    def monitor(self, requests: Sequence[PreparedRequest], results: list[np.ndarray]) -> None:
        return None


@dataclass
class _Job:
    request: PreparedRequest
    future: asyncio.Future[np.ndarray]
    arrived: float = field(default_factory=time.monotonic)

    @property
    def n_series(self) -> int:
        return self.request.n_series


class MicroBatcher:
    def __init__(
        self,
        runner: BatchPhases | Runner,
        *,
        max_batch_series: int,
        max_wait_s: float,
        max_queue: int,
        metrics: ServiceMetrics,
        pipeline_depth: int = 2,
    ) -> None:
        if pipeline_depth < 1:
            raise ValueError(f"pipeline_depth must be at least 1, got {pipeline_depth}")
        self.phases: BatchPhases = runner if isinstance(runner, BatchPhases) else ThreadOnly(runner)
        self.max_batch_series = max_batch_series
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self.pipeline_depth = pipeline_depth
        self._pending: deque[_Job] = deque()
        self._queued = 0  # series in _pending
        self._arrival = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[list[_Job]] = []  # batches with the worker thread, oldest first
        self._slot = asyncio.Event()  # set when a batch leaves the worker thread
        self._last_batch_requests = 0  # > 1: requests come concurrently, worth waiting for

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._arrival = asyncio.Event()  # bound to this loop (a TestClient may start a new one)
        self._slot = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="urnn-inference")
        self._task = asyncio.create_task(self._run_forever(), name="urnn-batcher")

    async def stop(self) -> None:
        """Stop taking batches; requests still queued (or in the batch on the thread) answer 503."""
        stranded = [job for jobs in self._in_flight for job in jobs]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        _fail([*stranded, *self._pending], _shutting_down())
        self._pending.clear()
        self._queued = 0
        self._in_flight = []
        self.metrics.queue_depth.set(0)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)  # the queued batch: 503
            self._executor = None

    async def submit(self, request: PreparedRequest) -> np.ndarray:
        if self._task is None:
            raise ModelUnavailableError("the service is not running (starting or shutting down)")
        if len(self._pending) >= self.max_queue:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise QueueFullError(
                f"the inference queue is full ({self.max_queue} requests waiting); retry shortly"
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        job = _Job(request, future)
        self._pending.append(job)
        self._queued += job.n_series
        self.metrics.queue_depth.set(len(self._pending))
        # Wake the batcher when it waits for work, or when the batch it fills is full; not on
        # every arrival in between (each wake-up is a task switch and a new timeout).
        if len(self._pending) == 1 or self._queued >= self.max_batch_series:
            self._arrival.set()
        return await future

    async def _run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # A batch is formed only once the thread can take it soon: the later it is taken
            # off the queue, the more of the waiting requests it holds.
            await self._free_slot()
            if not self._pending:
                self._arrival.clear()
                await self._arrival.wait()
                continue
            await self._fill()
            batch = self._take()
            self._last_batch_requests = len(batch)
            self.metrics.queue_depth.set(len(self._pending))
            for group in _by_model([job for job in batch if not job.future.done()]):
                await self._free_slot()
                self._launch(loop, group)

    async def _free_slot(self) -> None:
        """Until fewer than pipeline_depth batches are with the worker thread."""
        while len(self._in_flight) >= self.pipeline_depth:
            self._slot.clear()
            await self._slot.wait()

    async def _fill(self) -> None:
        """Wait until max_batch_series series are queued or the oldest waited max_wait_s.

        Only when the previous batch held several requests: a lone client (one request at a
        time) would otherwise pay max_wait_s on every request for nothing to batch with. And
        only while the thread is busy, if it was when the wait began: requests that queued
        while a batch ran do not wait again once it is done.
        """
        if self._last_batch_requests <= 1 and len(self._pending) == 1:
            return
        deadline = self._pending[0].arrived + self.max_wait_s
        thread_busy = bool(self._in_flight)
        while self._queued < self.max_batch_series:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (thread_busy and not self._in_flight):
                return
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        """Jobs off the front up to max_batch_series series (always at least one)."""
        batch = [self._pending.popleft()]
        total = batch[0].n_series
        while self._pending and total + self._pending[0].n_series <= self.max_batch_series:
            job = self._pending.popleft()
            batch.append(job)
            total += job.n_series
        self._queued -= total
        return batch

    def _launch(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        """Stack the batch here and queue its forward on the worker thread; `_landed` answers."""
        requests = [job.request for job in jobs]
        try:
            staged = self.phases.stage(requests)
        except Exception as error:  # delivered to each waiting request, which answers 500
            _fail(jobs, error)
            return
        self._in_flight.append(jobs)
        inferred = loop.run_in_executor(self._executor, self.phases.infer, staged)
        inferred.add_done_callback(partial(self._landed, jobs, requests, staged))

    def _landed(
        self,
        jobs: list[_Job],
        requests: list[PreparedRequest],
        staged: Any,
        inferred: asyncio.Future[Any],
    ) -> None:
        """Event loop, once a batch's forward is done: un-scale, answer, then monitor."""
        self._in_flight = [batch for batch in self._in_flight if batch is not jobs]
        self._slot.set()
        if not self._in_flight:
            self._arrival.set()  # a batch being filled goes now: the thread is idle
        if inferred.cancelled():  # stop() dropped this queued batch (its requests already 503)
            _fail(jobs, _shutting_down())
            return
        try:
            results = self.phases.finish(requests, staged, inferred.result())
        except Exception as error:  # delivered to each waiting request, which answers 500
            _fail(jobs, error)
            return
        answered: list[PreparedRequest] = []
        forecasts: list[np.ndarray] = []
        for job, request, result in zip(jobs, requests, results, strict=True):
            refused = not_finite(request, result)
            if job.future.done():  # the client may have gone away
                pass
            elif refused is not None:
                job.future.set_exception(refused)
            else:
                job.future.set_result(result)
            if refused is None:  # a refused forecast is neither answered nor monitored
                answered.append(request)
                forecasts.append(result)
        # After the answers: their requests resume first, the monitors run once they have.
        if answered:
            inferred.get_loop().call_soon(self._monitor, answered, forecasts)

    def _monitor(self, requests: list[PreparedRequest], results: list[np.ndarray]) -> None:
        try:
            self.phases.monitor(requests, results)
        except Exception:  # the answers went out; a monitor's bug must not stop the batcher
            logger.exception("the batch monitors failed (drift / realised error not updated)")


def not_finite(request: PreparedRequest, result: np.ndarray) -> ServiceInputError | None:
    """The 422 for a request whose forecast overflowed (None when every value is finite).
    Inputs are refused beyond float32's range once scaled (service.validation), but the
    model's own arithmetic overflows sooner: a covariate of 1e30 in a history of ordinary
    values gives inf inside the forward, and the answer would carry nulls."""
    if np.isfinite(result).all():
        return None
    finite = np.isfinite(result).all(axis=(1, 2))
    index = int(np.argmin(finite))
    series = request.series[index]
    return ServiceInputError(
        series_where(index, series.id, _largest_input(series, request.model.covariates)),
        "the model's forecast from this history is not finite: its values or covariates are "
        "too large for the model's float32 arithmetic once scaled; send them in units where "
        "they stay within a few orders of magnitude of the training data",
    )


def _largest_input(series: Any, covariates: Sequence[str]) -> str:
    """The field whose scaled inputs hold the largest |value|: the likely cause. The look-back
    for a windowed model; a streaming model's whole history (`history`), which it reads
    every point of: a covariate far out before the window was blamed on `values`."""
    history = getattr(series, "history", None)
    target = series.target if history is None else history.target
    inputs = series.covariates if history is None else history.covariates
    field, largest = "values", float(np.abs(target).max())
    if inputs is not None and len(covariates):
        column = np.abs(inputs).max(axis=0)
        c = int(np.argmax(column))
        if float(column[c]) > largest:
            field = f"covariates.{covariates[c]}"
    return field


def _shutting_down() -> ModelUnavailableError:
    return ModelUnavailableError("the service is shutting down")


def _fail(jobs: list[_Job], error: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


def _by_model(jobs: list[_Job]) -> list[list[_Job]]:
    groups: dict[int, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(id(job.request.model), []).append(job)
    return list(groups.values())

"""Everything one app instance holds, built by `create_app`, started and stopped by its lifespan.

Routes reach it through the `StateDep` dependency (never a module global), so two apps in one
process (tests) never share a model, a queue or a metrics registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from service.adaptive import AdaptiveIntervals
from service.batcher import MicroBatcher
from service.drain import Drain
from service.drift import DriftMonitor
from service.errors import GUARDED, GUARDED_READS
from service.job_status import JobStatusReader
from service.loader import ModelLoader
from service.manager import ModelManager
from service.metrics import ServiceMetrics
from service.realised import RealisedErrorTracker, kept_spacing
from service.runner import BatchRunner
from service.served import ServedModel
from service.streaming import StreamEngine
from urnn_forecast.settings import Settings

logger = logging.getLogger(__name__)

# A shorter URNN_API_KEY is warned about at start: the docs' example `change-me`, copied as it
# is, opened the jobs API (which reads files) to anyone who had read the README.
MIN_API_KEY_LENGTH = 16


def log_adaptive_span(model: ServedModel, settings: Settings) -> None:
    """Rolling intervals: say how many steps of one series the window spans with this model's
    horizon and the cache depth, since the cache scores only the forecasts it keeps (at the
    default depth 1 and horizon 96, one an id every 97 steps: 336 scores of one hourly
    series are 3.7 years, and the multiplier does not move in a season)."""
    horizon, depth, window = (
        model.max_horizon,
        settings.forecast_cache_depth,
        settings.adaptive_window,
    )
    spacing = kept_spacing(horizon, depth)
    span = window * spacing
    message = (
        f"rolling intervals (version {model.ref.version}): URNN_ADAPTIVE_WINDOW={window} scores "
        f"a horizon step; with horizon {horizon} and URNN_FORECAST_CACHE_DEPTH={depth} a series "
        f"asked every step adds one every {spacing} steps, so the window spans {span} steps of "
        + (
            "each series (URNN_ADAPTIVE_SCOPE=series: a window per series)"
            if settings.adaptive_scope == "series"
            else f"one series ({span} / the series served)"
        )
    )
    if depth == 1 and horizon > 1:
        logger.warning(
            message + f"; raise URNN_FORECAST_CACHE_DEPTH (64: one every "
            f"{kept_spacing(horizon, 64)} steps) or lower the window"
        )
    else:
        logger.info(message)


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics
    manager: ModelManager
    batcher: MicroBatcher
    drift: DriftMonitor
    realised: RealisedErrorTracker
    streams: StreamEngine
    drain: Drain
    jobs: JobStatusReader | None = None
    adaptive: AdaptiveIntervals | None = None  # URNN_ADAPTIVE_INTERVALS=rolling
    _poll: asyncio.Task[None] | None = field(default=None, repr=False)
    _jobs_fresh: asyncio.Task[None] | None = field(default=None, repr=False)
    _initial: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings, loader: ModelLoader) -> ServiceState:
        metrics = ServiceMetrics()
        jobs = JobStatusReader(
            settings.resolved_database_url(), configured=bool(settings.database_url)
        )
        metrics.watch_jobs(jobs.latest)
        drift = DriftMonitor(metrics, settings.drift_window)
        adaptive = (
            AdaptiveIntervals(
                settings.adaptive_window,
                settings.forecast_cache_depth,
                scope=settings.adaptive_scope,
                capacity=settings.forecast_cache_size,
            )
            if settings.adaptive_intervals == "rolling"
            else None
        )
        realised = RealisedErrorTracker(
            metrics, settings.forecast_cache_size, settings.forecast_cache_depth, adaptive
        )

        def on_swap(model: ServedModel) -> None:
            drift.reset_for(model.ref.version, model.reference)
            if adaptive is not None:
                log_adaptive_span(model, settings)

        runner = BatchRunner(
            metrics,
            drift,
            realised,
            max_batch_series=settings.batch_max_series,
            adaptive=adaptive,
        )
        manager = ModelManager(settings, loader, metrics, on_swap=on_swap)
        return cls(
            settings=settings,
            metrics=metrics,
            manager=manager,
            batcher=MicroBatcher(
                runner,
                max_batch_series=settings.batch_max_series,
                max_wait_s=settings.batch_max_wait_ms / 1000.0,
                max_queue=settings.queue_max_requests,
                metrics=metrics,
            ),
            drift=drift,
            realised=realised,
            streams=StreamEngine(settings, metrics, manager),
            drain=Drain(settings.shutdown_drain_seconds),
            jobs=jobs,
            adaptive=adaptive,
        )

    async def start(self) -> None:
        """Load the model (a failure leaves the service up, not ready; a load longer than
        URNN_STARTUP_LOAD_WAIT_SECONDS goes on after start-up), start batching and polling.

        The drain takes SIGTERM first: a worker signalled while it loads drains like the others
        (/readyz 503) instead of opening its socket to the balancer on its way out."""
        self.drain.install()  # uvicorn has taken SIGTERM by now; its lifespan runs inside
        if self.settings.torch_threads is not None:
            import torch

            torch.set_num_threads(self.settings.torch_threads)
        if self.settings.api_key is None:
            if self.settings.env == "development":
                logger.warning(
                    "URNN_API_KEY is not set and URNN_ENV=development: mutating endpoints "
                    f"({GUARDED}) are open to anyone who can reach this service"
                )
            else:
                logger.warning(
                    f"URNN_API_KEY is not set: mutating endpoints ({GUARDED}) are "
                    "disabled and answer 403; set URNN_API_KEY to enable them"
                )
        elif len(self.settings.api_key.get_secret_value()) < MIN_API_KEY_LENGTH:
            # the length only: the log is no place for the key, nor for how short it is
            logger.warning(
                f"URNN_API_KEY is shorter than {MIN_API_KEY_LENGTH} characters: it can be "
                f"guessed, and whoever has it reaches {GUARDED} (jobs read the files this "
                "service can read); set a random one, e.g. `openssl rand -hex 32`"
            )
        jobs_open = self.settings.api_key is not None or self.settings.env == "development"
        if jobs_open and self.settings.job_data_dirs is None:
            logger.warning(
                "URNN_JOB_DATA_DIRS is not set: POST /jobs and /schedules accept any history "
                "file (.csv, .tsv, .txt, .parquet, ...) this service can read, and their answers "
                "quote from it (its "
                "header, up to 10 series ids, a cell that does not parse); set it to the data "
                "folders"
            )
        folders = self.settings.job_data_folders() or () if jobs_open else ()
        missing = [str(d) for d in folders if not d.is_dir()]
        if missing:
            logger.warning(
                f"URNN_JOB_DATA_DIRS names folders that are not folders here: "
                f"{', '.join(missing)}; jobs and schedules naming files there are refused (no "
                "such file) until they exist (a volume not mounted?)"
            )
        if self.settings.api_key_for_reads and self.settings.api_key is not None:
            logger.info(f"URNN_API_KEY_FOR_READS: {GUARDED_READS} need the API key too")
        elif self.settings.api_key_for_reads and self.settings.env == "development":
            logger.warning(
                f"URNN_API_KEY_FOR_READS is set but no URNN_API_KEY (development mode): "
                f"{GUARDED_READS} are open"
            )
        self._initial = asyncio.create_task(self.manager.load_initial(), name="urnn-first-load")
        wait = self.settings.startup_load_wait_seconds
        done, _ = await asyncio.wait({self._initial}, timeout=wait)
        if done:
            _freeze_what_lives()
        else:  # answer now (/healthz; /readyz 503 "starting"); the load goes on
            logger.warning(
                "the model is still loading after %g s (URNN_STARTUP_LOAD_WAIT_SECONDS): the "
                "service answers now, /readyz and /forecast 503 until it is loaded",
                wait,
            )
            self._initial.add_done_callback(lambda _: _freeze_what_lives())
        await self.batcher.start()
        await self.streams.start()
        if self.settings.model_poll_seconds > 0:
            self._poll = asyncio.create_task(
                self.manager.poll(self.settings.model_poll_seconds), name="urnn-model-poll"
            )
        if self.jobs is not None:
            self._jobs_fresh = asyncio.create_task(_keep_fresh(self.jobs), name="urnn-job-status")

    async def stop(self) -> None:
        if self._initial is not None and not self._initial.done():
            self._initial.cancel()  # its thread is a daemon: it does not hold the exit
            with contextlib.suppress(asyncio.CancelledError):
                await self._initial
        for task in (self._poll, self._jobs_fresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._poll = self._jobs_fresh = None
        await self.streams.stop()  # flushes changed streaming states to the database
        await self.batcher.stop()
        if self.jobs is not None:
            await asyncio.to_thread(self.jobs.close)


async def _keep_fresh(jobs: JobStatusReader) -> None:
    """Look at the job gauges' reading every third of its ttl, scraped or not: a scrape
    answers the last reading and only then starts a read, so a process scraped seldom showed
    an old one. With --workers each process has its own reading and a scrape (a new
    connection each time, past uvicorn's 5 s keep-alive) reaches any of them: two workers
    answered `urnn_jobs{status="succeeded"}` 4, 2, 4 a second apart, the 2 read a minute
    earlier, and the other job gauges went back and forth alike. `latest` never waits: it
    starts a read in a thread when the reading is older than its ttl. An error of a look is
    logged (once until a look succeeds) and the next look goes on: the loop ending with it
    would raise again at shutdown, in `stop`, before the streaming states were flushed."""
    failing = False
    while True:
        try:
            jobs.latest()
            failing = False
        except Exception:
            if not failing:
                logger.exception("job metrics: looking at the job database's reading failed")
            failing = True
        await asyncio.sleep(jobs.ttl / 3)


def _freeze_what_lives() -> None:
    """Everything loaded so far (torch, mlflow, pandas, the model) lives as long as the
    process: moved out of the collector's sight, so a full collection triggered by request
    garbage does not rescan it (that pause showed as a p99 of ~300 ms)."""
    gc.collect()
    gc.freeze()


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]

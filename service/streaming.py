"""Stateful streaming forecasts: each series' uRNN state, advanced only by its new points.

    engine = StreamEngine(settings, metrics, manager)
    await engine.start()
    response = await engine.observe("meter-17", body)   # POST /series/{id}/observations
    response = await engine.forecast("meter-17", horizon=24, quantiles=None)
    await engine.stop()                                   # flushes every changed state

Where states live. Hot states are in memory, in an LRU bounded by URNN_STREAM_MAX_STATES; each
has its own asyncio lock, so one series' requests run one at a time while other series run
beside them. Durable copies are snapshots in the job database (`service.stream_snapshots`):
the model state bytes (normalisation statistics inside), the first/last timestamps, the
points seen, the model version and a bounded raw tail of the last URNN_STREAM_TAIL_POINTS
points (`service.stream_validation.Tail`). A cache miss loads the snapshot ("restore").

Write-behind (URNN_STREAM_SNAPSHOT_SECONDS > 0, default 1 s): a POST changes the memory copy
and answers; changed states are written by a background task every that many seconds, when
the LRU evicts them, and at shutdown. This assumes sticky routing by series id: one replica
serves a series at a time. Every write is conditional on the snapshot revision it started
from; a conflict means another replica wrote the series, so the memory copy is stale: it is
dropped (counted in urnn_stream_snapshot_conflicts_total, logged) and the next request
restores the other replica's snapshot. Write-through (0): each POST commits its snapshot
before answering, and every request re-reads the snapshot's revision first, so any replica
may serve any series; on a conflict the request reloads the snapshot and re-applies its
points (whose duplicate/409 rules then apply).

Model versions. A state records the version that produced it. When the served version
differs at the next access, the state is rebuilt from a fresh one by replaying the stored raw
tail through the served model (counted in urnn_stream_rebuilds_total); the forecast says which
version made it. A series longer than the tail is then summarised by its tail only.

Busy polling. After each successful streaming answer the event loop keeps polling its
sockets for URNN_STREAM_BUSY_POLL_US (200 us by default) instead of going to sleep
(`service.busy_poll`; the routes call `keep_awake` once the answer is on its way): a client
streaming points back to back finds it awake, which cut the update p50 by about a quarter in
`make bench-stream`. 0 turns it off.

Model work runs on one worker thread: initial loads, big updates, states finishing their
warm-up, rebuilds. A small update of a ready state (at most INLINE_POINTS points: a fraction
of a millisecond of numpy) and a lone forecast run on the event loop, where the hop to the thread
and back would cost more than the work (`_inline`); the model is pure (`advance` returns a
new state), so they may run beside the thread's work on another series. The database runs on
asyncio's default thread pool.

Answers. `observe` builds the ObservationsResponse schema (FastAPI's path); `observe_json`
writes the same answer straight to JSON bytes (the route's fast path, `service.routes.series`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any, TypeVar

import numpy as np
import orjson
from sqlalchemy.exc import SQLAlchemyError

from jobs.db import Database, driver_line
from models.forecaster import floor_at_zero, snap_zeros
from models.streaming import StreamState
from service.busy_poll import BusyPoll
from service.errors import ReloadError, ServiceInputError
from service.manager import ModelManager
from service.metrics import ServiceMetrics
from service.schemas import ModelRefOut
from service.served import ColumnScales, ServedModel, parse_offset
from service.stream_fast_path import FastObservations
from service.stream_schemas import (
    ObservationsRequest,
    ObservationsResponse,
    SeriesForecastResponse,
    SeriesStatus,
    StreamForecast,
)
from service.stream_snapshots import Snapshot, SnapshotRepository
from service.stream_validation import (
    Observations,
    ObservationsIn,
    Plan,
    SeriesNotFoundError,
    Stored,
    StreamConflictError,
    Tail,
    before_last,
    check_series_zone,
    grid_after,
    iso,
    on_series_zone,
    parse_observations,
    plan_update,
    request_zone,
    series_zone,
    stamps_after,
    tz_from,
    tz_name,
    zone_shown,
)
from service.validation import (
    calendar_on_clock,
    checked_horizon,
    quantile_indices,
    quantile_key,
)
from urnn_forecast.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Write-through: how often one request reloads and re-applies after conflicting snapshots.
MAX_ATTEMPTS = 3
# Updates of at most this many points into a ready state run on the event loop (`_inline`).
INLINE_POINTS = 64
# Write-behind: series per snapshot transaction (`_write`), which bounds the bytes built at once.
FLUSH_CHUNK = 256
# After a failed eviction flush, how long the LRU keeps its over-limit states before it tries
# the store again: with the database down every request past the limit tried a write (a
# connection attempt, under the flush lock) and logged a traceback.
EVICT_RETRY_SECONDS = 5.0
# A state written by a newer version of the served model (another replica or worker switched
# first) asks the registry at once rather than at the next alias poll, at most this often:
# until then each side rebuilt the series to its own version at every request (a walk with
# `--workers 2` and a 30 s poll: 7 rebuilds of one series in 18 s, answers alternating).
NEWER_STATE_CHECK_SECONDS = 5.0


class _Reloaded(Exception):  # noqa: N818 (control flow, never leaves this module)
    """A write-through conflict reloaded the series: start the request over."""


class SnapshotStoreError(RuntimeError):
    """The snapshot database cannot be read or written (503); the message says why, in words
    fit for anyone who reaches the service. `detail`: the whole reason (what the reader said
    of the stored bytes), answered only to a request carrying the API key, as a failed model
    load's (`service.errors.ModelUnavailableError`)."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class SeriesData:
    """One series' committed state (replaced as a whole: a failed request leaves it intact)."""

    model_version: str
    model_key: str | None  # model_key(): whose weights the state was made with
    state: StreamState
    freq: str
    tz: tzinfo | None
    first_ns: int
    last_ns: int
    points_seen: int
    tail: Tail
    forecast: np.ndarray | None = None  # (H_max, Q) original units; a cache, not persisted


@dataclass(eq=False)
class Entry:
    """A series' slot in memory: its lock and its committed data (None: nothing stored)."""

    series_id: str
    lock: asyncio.Lock
    data: SeriesData | None = None
    revision: int | None = None  # the snapshot's revision in the database; None: no row
    loaded: bool = False  # the snapshot has been looked up
    dirty: bool = False  # changed since the last write (write-behind)
    gone: bool = False  # evicted or dropped: whoever waited for its lock looks again


class _Locked:
    """`StreamEngine._locked`'s context: a class rather than an @asynccontextmanager, whose
    generator machinery cost ~5 us of a ~300 us streaming update."""

    __slots__ = ("engine", "entry", "load", "series_id")

    def __init__(self, engine: StreamEngine, series_id: str, load: bool) -> None:
        self.engine, self.series_id, self.load = engine, series_id, load
        self.entry: Entry | None = None

    async def __aenter__(self) -> Entry:
        self.entry = await self.engine._acquire(self.series_id, self.load)
        return self.entry

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self.entry is not None
        self.engine._release(self.entry)
        if kind is None and len(self.engine._entries) > self.engine.settings.stream_max_states:
            await self.engine._evict_over_limit()


class StreamEngine:
    def __init__(self, settings: Settings, metrics: ServiceMetrics, manager: ModelManager) -> None:
        self.settings = settings
        self.metrics = metrics
        self.manager = manager
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._db: Database | None = None
        self._repo: SnapshotRepository | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._busy_poll = BusyPoll(settings.stream_busy_poll_us * 1e-6)
        self._evict_retry_at = 0.0  # monotonic time before which eviction does not write
        self._newer_check_at = 0.0  # monotonic time before which a newer state asks nothing
        self._newer_check: asyncio.Task[None] | None = None

    def keep_awake(self) -> None:
        """Keep the event loop polling for URNN_STREAM_BUSY_POLL_US from now (after an answer)."""
        self._busy_poll.touch()

    @property
    def write_through(self) -> bool:
        return self.settings.stream_snapshot_seconds == 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._flush_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="urnn-stream")
        if not self.write_through:
            self._flush_task = asyncio.create_task(
                self._flush_forever(self.settings.stream_snapshot_seconds), name="urnn-stream-flush"
            )

    async def stop(self) -> None:
        """Stop the flush task, write every changed state, let go of threads and the database."""
        await self._busy_poll.stop()
        if self._newer_check is not None:
            self._newer_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._newer_check
            self._newer_check = None
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
            self._flush_task = None
        try:
            await self.flush()
        except SnapshotStoreError as error:  # `_io` logged the driver's text: not once more
            logger.error("streaming states could not be flushed at shutdown: %s", error)
        except Exception:
            logger.exception("streaming states could not be flushed at shutdown")
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._entries.clear()
        self.metrics.stream_series_live.set(0)
        if self._db is not None:
            self._db.dispose()
            self._db = self._repo = None

    async def _flush_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except SnapshotStoreError as error:  # the states stay dirty: the next round retries
                # `_io` logged the driver's text; its traceback (chained here) would repeat it
                logger.warning(
                    "streaming snapshot flush failed; retrying in %ss: %s", interval_s, error
                )
            except Exception:
                logger.exception("streaming snapshot flush failed; retrying in %ss", interval_s)

    # --- the endpoints ------------------------------------------------------------------------

    async def observe(self, series_id: str, body: ObservationsRequest) -> ObservationsResponse:
        """Consume the body's points and forecast; everything checked before anything changes."""
        return observations_response(await self._observe(series_id, body))

    async def observe_json(self, series_id: str, body: FastObservations) -> bytes:
        """`observe` answered as the ObservationsResponse's JSON bytes (the route's fast path)."""
        return observations_json(await self._observe(series_id, body))

    async def _observe(self, series_id: str, body: ObservationsIn) -> Observed:
        model = self._model()
        scales = self._scales(series_id, model)
        zone = request_zone(body)
        parsed = parse_observations(
            body,
            model,
            scales,
            max_scaled=self.settings.stream_max_scaled,
            zone=zone,
            defer_axis=True,  # the series' zone has its say first (on_series_zone)
        )
        max_gap = self.settings.stream_max_gap
        async with self._locked(series_id) as entry:
            for _ in range(MAX_ATTEMPTS):
                try:
                    data = await self._current(entry, model)
                except _Reloaded:
                    continue
                stored = (
                    None
                    if data is None
                    else Stored(
                        data.last_ns, data.tz, data.tail.select(model.covariates), data.first_ns
                    )
                )
                obs = on_series_zone(parsed, body, model, stored)
                plan = plan_update(obs, stored, model, max_gap=max_gap)
                new = data
                if len(plan.ns):
                    tz = obs.tz if data is None else data.tz
                    start = time.perf_counter()
                    if _inline(data, plan):
                        new = self._advance(data, plan, tz, model, scales)
                    else:
                        new = await self._compute(self._advance, data, plan, tz, model, scales)
                    self.metrics.stream_update_seconds.observe(time.perf_counter() - start)
                    if not await self._commit(entry, new):
                        continue
                    self.metrics.stream_points.inc(len(plan.ns))
                assert new is not None  # a first request has points: plan_update keeps them all
                if new.forecast is None and new.state.ready:
                    new = await self._cache_forecast(entry, new, model, scales)
                return Observed(model, series_id, new, plan, obs)
        raise self._too_many_conflicts(series_id)

    async def forecast(
        self,
        series_id: str,
        horizon: int | None,
        quantiles: Sequence[float] | None,
        timezone: str | None = None,
    ) -> SeriesForecastResponse:
        """The stored state's forecast. `timezone` (checked by the route), when given, must
        be the series' zone (`check_series_zone`): the answer is on the series' clock."""
        model = self._model()
        h = checked_horizon(horizon, model)
        indices = quantile_indices(quantiles, model.quantiles)
        keys = tuple(quantile_key(model.quantiles[j]) for j in indices)
        zone = None if timezone is None else series_zone(timezone)
        scales = self._scales(series_id, model)
        async with self._locked(series_id) as entry:
            for _ in range(MAX_ATTEMPTS):
                try:
                    data = await self._current(entry, model)
                except _Reloaded:
                    continue
                if data is None:
                    raise _not_found(series_id)
                if zone is not None:
                    check_series_zone(zone, data.tz)
                if not data.state.ready:
                    raise StreamConflictError(
                        f"series {series_id!r} is warming up: it has consumed "
                        f"{data.state.seen} point(s) and needs {data.state.points_needed} more "
                        f"(the model's lookback is {model.lookback}) before its first forecast"
                    )
                if data.forecast is None:
                    data = await self._cache_forecast(entry, data, model, scales)
                out = _forecast_out(data, h, indices, keys, model)
                assert out is not None
                return SeriesForecastResponse(
                    model=_ref(model), series=_status(series_id, data), forecast=out
                )
        raise self._too_many_conflicts(series_id)

    async def status(self, series_id: str) -> SeriesStatus:
        model = self._model()  # 409 under a windowed model, as every /series endpoint answers
        async with self._locked(series_id) as entry:
            data = entry.data
            if data is None:
                raise _not_found(series_id)
            fields = _status_fields(series_id, data)
            if not _made_by(data, model):
                # Another version's state is rebuilt from the raw tail at the next forecast or
                # update (lazily: this read stays cheap and names the state's version), so its
                # readiness is the tail's for the served look-back, as that forecast answers:
                # the old state's said `ready` where the forecast was a 409 "warming up".
                needed = max(0, model.lookback - len(data.tail))
                fields.update(ready=needed == 0, points_needed=needed)
            return SeriesStatus(**fields)

    async def delete(self, series_id: str) -> None:
        """Forget the series in memory and in the database; SeriesNotFoundError if unknown."""
        self._model()  # 409 under a windowed model, as every /series endpoint answers
        async with self._locked(series_id, load=False) as entry, self._flush_lock:
            # The row first: a store that refuses it (503) must leave the memory copy, whose
            # points since the last write would otherwise be lost and the older snapshot
            # come back at the next request.
            deleted = await self._io(self._repository().delete, series_id)
            had = entry.data is not None
            entry.data, entry.dirty, entry.revision, entry.loaded = None, False, None, True
            if not (had or deleted):
                raise _not_found(series_id)

    async def flush(self) -> None:
        """Write every changed state now (the periodic task, and shutdown)."""
        dirty = [e for e in self._entries.values() if e.dirty and not e.gone]
        if dirty:
            await self._write(dirty)

    # --- memory: slots, locks, the LRU --------------------------------------------------------

    def _locked(self, series_id: str, *, load: bool = True) -> _Locked:
        """The series' slot, its lock held, its snapshot loaded (refreshed in write-through):
        `async with engine._locked(series_id) as entry: ...`."""
        return _Locked(self, series_id, load)

    async def _acquire(self, series_id: str, load: bool) -> Entry:
        while True:
            entry = self._entries.get(series_id)
            if entry is None:
                entry = Entry(series_id, asyncio.Lock())
                self._entries[series_id] = entry
                self._set_live()
            else:
                self._entries.move_to_end(series_id)
            await entry.lock.acquire()
            if not entry.gone:
                break
            entry.lock.release()
        try:
            if load and (not entry.loaded or self.write_through):
                await self._refresh(entry)
        except BaseException:
            self._release(entry)
            raise
        return entry

    def _release(self, entry: Entry) -> None:
        if entry.data is None and not entry.dirty:  # unknown or deleted: keep no slot
            self._forget(entry)
        entry.lock.release()

    def _forget(self, entry: Entry) -> None:
        entry.gone = True
        if self._entries.get(entry.series_id) is entry:
            del self._entries[entry.series_id]
        self._set_live()

    def _set_live(self) -> None:
        self.metrics.stream_series_live.set(len(self._entries))

    async def _evict_over_limit(self) -> None:
        if time.monotonic() < self._evict_retry_at:  # the store failed lately: states kept
            return
        while len(self._entries) > self.settings.stream_max_states:
            victim = next((e for e in self._entries.values() if not e.lock.locked()), None)
            if victim is None:
                return
            async with victim.lock:
                if victim.gone:
                    continue
                if victim.dirty:
                    try:
                        await self._write([victim])
                    except Exception as error:
                        self._evict_retry_at = time.monotonic() + EVICT_RETRY_SECONDS
                        said = (
                            "could not flush a streaming state to evict it; kept it (%d states "
                            "held, URNN_STREAM_MAX_STATES=%d); eviction tries again in %g s"
                        )
                        held = len(self._entries), self.settings.stream_max_states
                        if isinstance(error, SnapshotStoreError):  # `_io` logged the driver's
                            logger.warning(said + ": %s", *held, EVICT_RETRY_SECONDS, error)
                        else:
                            logger.exception(said, *held, EVICT_RETRY_SECONDS)
                        return
                if victim.dirty:  # changed again while it was written: keep it for now
                    return
                self._forget(victim)
                self.metrics.stream_evictions.inc()

    # --- the database -------------------------------------------------------------------------

    def _repository(self) -> SnapshotRepository:
        if self._repo is None:
            self._db = Database.from_settings(self.settings)
            self._repo = SnapshotRepository(self._db)
        return self._repo

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except SQLAlchemyError as error:
            # The driver's text can name hosts, ports and users: the log keeps its first line
            # for the operator (not SQLAlchemy's SQL and parameters after it: a series' saved
            # state), the client is told the kind of failure and what to check (as the job
            # API's 503 does).
            logger.error(
                "streaming snapshot store failed in %s: %s", fn.__name__, driver_line(error)
            )
            raise SnapshotStoreError(
                "the streaming snapshot store (URNN_DATABASE_URL) is unavailable or not "
                f"migrated (run `urnn db upgrade`): {type(error).__name__}; the server log "
                "has the details"
            ) from error

    async def _refresh(self, entry: Entry) -> None:
        """Load the series' snapshot unless memory already holds its revision."""
        snapshot = await self._io(self._repository().load, entry.series_id)
        if snapshot is None:
            entry.loaded = True
            if entry.revision is not None or entry.data is None:  # deleted elsewhere, or new
                entry.data, entry.revision, entry.dirty = None, None, False
            return
        if entry.data is not None and snapshot.revision == entry.revision:
            entry.loaded = True
            return
        entry.data = _readable(snapshot)
        entry.loaded = True
        entry.revision, entry.dirty = snapshot.revision, False
        self.metrics.stream_restores.inc()

    async def _commit(self, entry: Entry, data: SeriesData) -> bool:
        """Make `data` the series' state; False after a write-through conflict (reloaded)."""
        if not self.write_through:
            entry.data, entry.dirty = data, True
            return True
        snapshot = _to_snapshot(entry.series_id, data, entry.revision)
        async with self._flush_lock:
            start = time.perf_counter()
            result = await self._io(self._repository().save_many, [(snapshot, entry.revision)])
            self.metrics.stream_flush_seconds.observe(time.perf_counter() - start)
        if entry.series_id in result.revisions:
            entry.data, entry.revision = data, result.revisions[entry.series_id]
            return True
        self.metrics.stream_snapshot_conflicts.inc()
        logger.warning(
            "stream snapshot conflict (write-through): another replica wrote this series; "
            "reloading it and re-applying the request"
        )
        await self._refresh(entry)
        return False

    async def _write(self, entries: Sequence[Entry]) -> None:
        """Conditional saves of the entries' current data (write-behind), FLUSH_CHUNK series
        per transaction: each snapshot is the series' whole state and tail (~130 KiB at the
        default tail with two covariates), and one save of every dirty series built them all
        at once (2,000 series: +168 MiB of RSS that stayed)."""
        async with self._flush_lock:
            pending = [e for e in entries if e.dirty and not e.gone and e.data]
            for start in range(0, len(pending), FLUSH_CHUNK):
                await self._write_chunk(pending[start : start + FLUSH_CHUNK])

    async def _write_chunk(self, entries: Sequence[Entry]) -> None:
        """One save of the entries' data as it is now (the flush lock held)."""
        batch = [(e, e.data, e.revision) for e in entries if e.dirty and not e.gone and e.data]
        if not batch:
            return
        for e, _, _ in batch:
            e.dirty = False
        snapshots = [(_to_snapshot(e.series_id, d, r), r) for e, d, r in batch if d]
        start = time.perf_counter()
        try:
            result = await self._io(self._repository().save_many, snapshots)
        except Exception:
            for e, _, _ in batch:
                e.dirty = True
            self.metrics.stream_snapshot_failures.inc()
            raise
        finally:
            self.metrics.stream_flush_seconds.observe(time.perf_counter() - start)
        del snapshots
        for e, _, _ in batch:
            if e.series_id in result.revisions:
                e.revision = result.revisions[e.series_id]
                continue
            self.metrics.stream_snapshot_conflicts.inc()
            logger.warning(
                "stream snapshot conflict: another replica wrote a series this one holds "
                "(write-behind assumes sticky routing by series id); dropped the memory copy"
            )
            e.data, e.dirty, e.revision, e.loaded = None, False, None, False
            self._forget(e)

    # --- the model ----------------------------------------------------------------------------

    def _model(self) -> ServedModel:
        model = self.manager.require()
        if not model.streaming:
            raise StreamConflictError(
                f"the served model (version {model.ref.version}, kind "
                f"{model.model.config.kind!r}) is not a streaming model; the /series endpoints "
                "need a model of kind 'urnn-stream'; send the history to POST /forecast (this "
                f"model reads its last {model.lookback} values), or serve a model trained with "
                "`urnn train --model urnn-stream`"
            )
        return model

    def _scales(self, series_id: str, model: ServedModel) -> ColumnScales:
        scales = model.scales_for(series_id)
        if scales is None:
            raise ServiceInputError(
                "field 'series_id'",
                "the model's scaler is per series and has no statistics for this id",
            )
        return scales

    async def _compute(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _current(self, entry: Entry, model: ServedModel) -> SeriesData | None:
        """The entry's data for `model`: rebuilt from its tail when another version made it.
        _Reloaded: a write-through conflict reloaded the entry (the caller starts over)."""
        data = entry.data
        if data is None or _made_by(data, model):
            return data
        if _newer_than(data, model):
            self._check_registry_now(data, model)
        scales = self._scales(entry.series_id, model)
        rebuilt = await self._compute(self._rebuild, entry.series_id, data, model, scales)
        self.metrics.stream_rebuilds.inc()
        logger.info(
            "rebuilt a streaming state made by %s for %s from %d points",
            data.model_key or f"model version {data.model_version}",
            model_key(model),
            len(data.tail),
        )
        if not await self._commit(entry, rebuilt):
            raise _Reloaded
        return rebuilt

    def _check_registry_now(self, data: SeriesData, model: ServedModel) -> None:
        """Re-resolve the served alias in the background (this request is answered by the
        served version, as before): a newer version's state means the alias has likely moved."""
        now = time.monotonic()
        if now < self._newer_check_at or (
            self._newer_check is not None and not self._newer_check.done()
        ):
            return
        self._newer_check_at = now + NEWER_STATE_CHECK_SECONDS
        logger.info(
            "a streaming state made by %s met while serving %s: asking the registry now "
            "rather than at the next alias poll",
            data.model_key or f"model version {data.model_version}",
            model_key(model),
        )
        self._newer_check = asyncio.create_task(self._reload_quietly(), name="urnn-stream-newer")

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ReloadError):  # the manager has logged and counted it
            await self.manager.reload(retry_failed=False)

    async def _cache_forecast(
        self, entry: Entry, data: SeriesData, model: ServedModel, scales: ColumnScales
    ) -> SeriesData:
        # One forecast is a few small matrix-vector products: not worth the worker thread's hop.
        forecast = _forecast(data.state, data.last_ns, data.tz, model, scales, data.tail)
        cached = replace(data, forecast=forecast)
        if entry.data is data:  # a cache: no write, no dirty flag
            entry.data = cached
        return cached

    def _advance(
        self,
        data: SeriesData | None,
        plan: Plan,
        tz: tzinfo | None,
        model: ServedModel,
        scales: ColumnScales,
    ) -> SeriesData:
        """(worker thread) The state after the plan's points, and its forecast."""
        stream = model.stream_serving
        state = stream.new_state() if data is None else data.state
        state = stream.advance(
            state, *_inputs(plan.ns, plan.values, plan.covariates, tz, model, scales)
        )
        tail = Tail.empty(model.covariates) if data is None else data.tail
        covariates = tail.columns_for(model.covariates, plan.covariates)
        limit = self.settings.stream_tail_points
        tail = tail.extend(plan.ns, plan.values, covariates, limit, filled=plan.filled)
        last_ns = int(plan.ns[-1])
        return SeriesData(
            model_version=model.ref.version,
            model_key=model_key(model),
            state=state,
            freq=model.freq,
            tz=tz,
            first_ns=int(plan.ns[0]) if data is None else data.first_ns,
            last_ns=last_ns,
            points_seen=len(plan.ns) + (0 if data is None else data.points_seen),
            tail=tail,
            forecast=_forecast(state, last_ns, tz, model, scales, tail),
        )

    def _rebuild(
        self, series_id: str, data: SeriesData, model: ServedModel, scales: ColumnScales
    ) -> SeriesData:
        """(worker thread) A fresh state of `model` fed the stored raw tail."""
        tail = data.tail
        made_by = data.model_key or f"model version {data.model_version}"
        if parse_offset(data.freq) != model.offset:
            # The tail's points are steps of the series' frequency: replayed into a model of
            # another, hourly points were read as 15-minute steps and forecast on that grid.
            raise StreamConflictError(
                f"series {series_id!r} was stored at frequency {data.freq!r} by {made_by}; "
                f"{model_key(model)} reads steps of {model.freq!r}: its points cannot be "
                f"replayed as that model's steps; DELETE the series and send its history "
                f"again at {model.freq!r}"
            )
        # A column the tail keeps for covariates its last model did not read holds NaN for
        # the points that model took: those points lack the covariate as much as a tail
        # without the column.
        missing = [
            name
            for name in model.covariates
            if name not in tail.names or np.isnan(tail.covariates[:, tail.names.index(name)]).any()
        ]
        if missing:
            raise StreamConflictError(
                f"series {series_id!r} was stored by {made_by}, whose points lack "
                f"covariate(s) {missing} that {model_key(model)} reads: its state cannot be "
                "rebuilt; DELETE the series and send its history again"
            )
        # The state reads the model's covariates; the tail keeps the others too (after the
        # model's, in their order), so that a version reading fewer covariates does not strip
        # the stored history of the rest: before, a mere GET of its forecast did, and a
        # rollback to the version reading them could no longer rebuild the series.
        kept = tuple(model.covariates) + tuple(n for n in tail.names if n not in model.covariates)
        tail = tail.select(kept)
        covariates = tail.covariates[:, : len(model.covariates)]
        stream = model.stream_serving
        state = stream.new_state()
        if len(tail):
            state = stream.advance(
                state, *_inputs(tail.ns, tail.values, covariates, data.tz, model, scales)
            )
        return replace(
            data,
            model_version=model.ref.version,
            model_key=model_key(model),
            state=state,
            freq=model.freq,
            tail=tail,
            forecast=_forecast(state, data.last_ns, data.tz, model, scales, tail),
        )

    # --- answers ------------------------------------------------------------------------------

    def _too_many_conflicts(self, series_id: str) -> StreamConflictError:
        return StreamConflictError(
            f"series {series_id!r} kept changing under this request (another replica wrote it "
            f"{MAX_ATTEMPTS} times); retry"
        )


def _not_found(series_id: str) -> SeriesNotFoundError:
    return SeriesNotFoundError(
        f"no streaming series {series_id!r}; POST its points to /series/{{series_id}}/observations"
    )


def _inline(data: SeriesData | None, plan: Plan) -> bool:
    """Whether an update runs on the event loop rather than the worker thread: a few points
    into a state past its warm-up cost less than the hop to the thread and back (a state that
    becomes ready encodes its whole warm-up, and initial loads and rebuilds are big: those
    stay on the thread). The model is pure (`advance` returns a new state), so an inline
    update may run beside the worker thread's work on another series."""
    return data is not None and data.state.ready and len(plan.ns) <= INLINE_POINTS


@dataclass(frozen=True)
class Observed:
    """What an observations request did: rendered by `observations_response` (the schema's
    path) or `observations_json` (the fast path), which give the same answer."""

    model: ServedModel
    series_id: str
    data: SeriesData
    plan: Plan
    obs: Observations


def observations_response(result: Observed) -> ObservationsResponse:
    obs, plan, data = result.obs, result.plan, result.data
    return ObservationsResponse(
        model=_ref(result.model),
        series=_status(result.series_id, data),
        accepted=plan.accepted,
        duplicates=plan.duplicates,
        filled=plan.filled,
        forecast=_forecast_out(
            data, obs.horizon, obs.quantile_index, obs.quantile_keys, result.model
        ),
    )


def observations_json(result: Observed) -> bytes:
    """The ObservationsResponse body as JSON bytes, field for field as pydantic writes it
    (orjson writes floats as pydantic does: shortest round-trip text, NaN/inf as null)."""
    obs, plan, data, model = result.obs, result.plan, result.data, result.model
    ref = model.ref
    forecast = b"null"
    if data.forecast is not None:
        # Assembled from each row's JSON, so that the median's row (the "mean" and, usually,
        # one of the quantiles) is formatted once: float formatting is most of this answer.
        stamps, rows, median = _forecast_rows(data, obs.horizon, model)
        texts: dict[int, bytes] = {}

        def row(j: int) -> bytes:
            text = texts.get(j)
            if text is None:
                text = texts[j] = orjson.dumps(rows[j], option=orjson.OPT_SERIALIZE_NUMPY)
            return text

        quantiles = b",".join(
            orjson.dumps(key) + b":" + row(j)
            for key, j in zip(obs.quantile_keys, obs.quantile_index, strict=True)
        )
        forecast = b"".join(
            (
                b'{"timestamps":',
                orjson.dumps(stamps),
                b',"mean":',
                row(median),
                b',"quantiles":{',
                quantiles,
                b"}}",
            )
        )
    body = {
        "model": {"name": ref.name, "version": ref.version, "run_id": ref.run_id},
        "series": _status_fields(result.series_id, data),
        "accepted": plan.accepted,
        "duplicates": plan.duplicates,
        "filled": plan.filled,
    }
    return orjson.dumps(body)[:-1] + b',"forecast":' + forecast + b"}"


def _status(series_id: str, data: SeriesData) -> SeriesStatus:
    return SeriesStatus(**_status_fields(series_id, data))


def _status_fields(series_id: str, data: SeriesData) -> dict[str, Any]:
    """SeriesStatus's fields, in its order: the schema's answer and the fast JSON's one list."""
    return {
        "id": series_id,
        "first_timestamp": iso(data.first_ns, data.tz),
        "last_timestamp": iso(data.last_ns, data.tz),
        "timezone": zone_shown(data.tz),
        "points_seen": data.points_seen,
        "model_version": data.model_version,
        "ready": data.state.ready,
        "points_needed": data.state.points_needed,
        "tail_length": len(data.tail),
    }


def _ref(model: ServedModel) -> ModelRefOut:
    ref = model.ref
    return ModelRefOut(name=ref.name, version=ref.version, run_id=ref.run_id)


def _inputs(
    ns: np.ndarray,
    values: np.ndarray,
    covariates: np.ndarray,
    tz: tzinfo | None,
    model: ServedModel,
    scales: ColumnScales,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Raw points -> the model's scaled target (T,), covariates (T, C) and calendar (T, K)."""
    target = (values - scales.target_mean) / scales.target_scale
    scaled = None
    if model.covariates:
        scaled = (covariates - scales.covariate_mean) / scales.covariate_scale
    calendar = None
    if model.needs_dates:
        calendar = calendar_on_clock(ns, tz, model, "field 'timestamps'")
    return target, scaled, calendar


def _forecast(
    state: StreamState,
    last_ns: int,
    tz: tzinfo | None,
    model: ServedModel,
    scales: ColumnScales,
    tail: Tail,
) -> np.ndarray | None:
    """(H_max, Q) in original units after `last_ns`; None while the state warms up. `tail`:
    the raw points the state consumed last: the point before `last_ns` (`before_last`, for
    `grid_after`), and the last value as sent, which a flat series is forecast as exactly
    (`StreamServing.forecast`'s `last`, as the windowed kinds un-scale from it)."""
    if not state.ready:
        return None
    future = None
    if model.needs_dates:
        steps = grid_after(last_ns, model.max_horizon, tz, model, before_last(tail, tz, model))
        future = calendar_on_clock(steps, tz, model, "field 'timestamps'")
    out = model.stream_serving.forecast(
        state,
        future,
        unit_scale=scales.target_scale,
        unit_loc=scales.target_mean,
        last=float(tail.values[-1]) if len(tail) else math.nan,
    )
    # the un-scaling's round-off about 0 as 0, as the windowed kinds answer (runner.unscale)
    out = snap_zeros(out, scales.target_mean, scales.target_scale)
    return floor_at_zero(out, model.model.config.non_negative)


def _forecast_out(
    data: SeriesData,
    horizon: int,
    indices: Sequence[int],
    keys: Sequence[str],
    model: ServedModel,
) -> StreamForecast | None:
    if data.forecast is None:
        return None
    stamps, rows, median = _forecast_rows(data, horizon, model)
    return StreamForecast(
        timestamps=list(stamps),
        mean=rows[median].tolist(),
        quantiles={key: rows[j].tolist() for key, j in zip(keys, indices, strict=True)},
    )


def _forecast_rows(
    data: SeriesData, horizon: int, model: ServedModel
) -> tuple[Sequence[str], np.ndarray, int]:
    """The cached forecast's first `horizon` steps: their ISO timestamps, the (Q, h) float64
    rows (C-contiguous: orjson writes them) and the median's row."""
    assert data.forecast is not None
    before = before_last(data.tail, data.tz, model)
    stamps = stamps_after(data.last_ns, horizon, data.tz, model, before)
    rows = np.ascontiguousarray(data.forecast[:horizon].T, dtype=np.float64)  # (Q, h)
    return stamps, rows, model.model.config.median_index


def _made_by(data: SeriesData, model: ServedModel) -> bool:
    """Whether `model` made the state. Both the key and the version: a replica of the code
    before the key (a rolling deploy) updates a row's version and state and leaves the key it
    does not know. A row saved before the key (NULL) is taken as made by the model of its
    version, as it always was: rebuilt, a series longer than the tail would lose the rest."""
    if data.model_version != model.ref.version:
        return False
    return data.model_key is None or data.model_key == model_key(model)


def _newer_than(data: SeriesData, model: ServedModel) -> bool:
    """Whether a later version of the served model's registered name made the state."""
    version = data.model_version
    if data.model_key is not None:
        name, _, version = data.model_key.rpartition("@")[0].rpartition("/")
        if name != model.ref.name:
            return False
    return (
        version.isdigit() and model.ref.version.isdigit() and int(version) > int(model.ref.version)
    )


def model_key(model: ServedModel) -> str:
    """Whose weights a streaming state was made with: the registered name, version and run.
    The version alone matched `meters-a` version 1's states to `meters-b` version 1 (an
    audit's: a forecast 6 % off, a false 409, a 500 where their sizes differed)."""
    ref = model.ref
    return f"{ref.name}/{ref.version}@{ref.run_id}"


def _to_snapshot(series_id: str, data: SeriesData, revision: int | None) -> Snapshot:
    return Snapshot(
        series_id=series_id,
        model_version=data.model_version,
        model_key=data.model_key,
        freq=data.freq,
        tz=tz_name(data.tz),
        first_ns=data.first_ns,
        last_ns=data.last_ns,
        points_seen=data.points_seen,
        state=data.state.to_bytes(),
        tail=data.tail.to_bytes(),
        revision=revision or 0,
    )


def _readable(snapshot: Snapshot) -> SeriesData:
    """The snapshot's series, or a 503 that leaves the stored row alone.

    Why: bytes this code cannot read were written by a newer release (a rolling deploy or a
    rollback beside replicas that write a newer tail or state format) or damaged. Read as a
    new series, the next point would overwrite the stored history; raised as it comes, it was
    a 500 naming nothing. The entry stays unloaded, so every request reads the row again."""
    try:
        return _from_snapshot(snapshot)
    except (ValueError, struct.error, UnicodeDecodeError) as error:
        logger.error(
            "streaming snapshot of series %r unreadable by this release: %s",
            snapshot.series_id,
            error,
        )
        # What the reader said (formats, byte counts, Python's codec, struct and JSON texts)
        # is the operator's: GET /series/{id} answers anyone, and quoted it to them.
        cannot = f"the stored state of series {snapshot.series_id!r} cannot be read by this server"
        rest = (
            ": a newer urnn-forecast release wrote it, or it is damaged. It is kept as stored: "
            "serve it from replicas of the release that wrote it (upgrade this one), or DELETE "
            f"/series/{snapshot.series_id} to start the series afresh"
        )
        raise SnapshotStoreError(
            f"{cannot}{rest}; the server log, or this request sent with the X-API-Key header, "
            "says what could not be read",
            detail=f"{cannot} ({error}){rest}",
        ) from error


def _from_snapshot(snapshot: Snapshot) -> SeriesData:
    return SeriesData(
        model_version=snapshot.model_version,
        model_key=snapshot.model_key,
        state=StreamState.from_bytes(snapshot.state),
        freq=snapshot.freq,
        tz=tz_from(snapshot.tz),
        first_ns=snapshot.first_ns,
        last_ns=snapshot.last_ns,
        points_seen=snapshot.points_seen,
        tail=Tail.from_bytes(snapshot.tail),
    )

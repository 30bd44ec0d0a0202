"""The one reference to the served model, and the reloads that replace it.

`ModelManager.current` is the served `ServedModel` or None. A reload resolves the configured
URI to a concrete version; if it differs from the served one (or `force`), the new version is
downloaded, built, moved to its device and warmed up on a worker thread, and only then swapped
in by assigning `current`, one reference. Requests already validated against the old version
keep it (they hold their own reference) and finish on it; nothing is dropped. A version that
fails to build leaves the old one serving; the failure is logged, counted
(`urnn_model_reloads{outcome="failure"}`) and shown by GET /model, and that same version is
not retried by the poll until the alias moves (or a forced reload asks for it).

A swap to a version of another forecasting contract than the one it replaces (another
target, frequency or covariates: training.contract; the alias moved with `urnn models promote
--allow-contract-change`) is made, since the alias is the operator's decision, and said: a
warning in the log and `last_reload_contract_change` in GET /model.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from service.errors import ModelUnavailableError, ReloadError
from service.loader import ModelLoader, NoModelError
from service.metrics import ServiceMetrics
from service.served import ModelRef, ServedModel, pick_device
from training.contract import ForecastContract
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import TrackingServerError, check_tracking_server
from urnn_forecast.url_text import secret_masker

T = TypeVar("T")

logger = logging.getLogger(__name__)

# The one last-served record releases before 2026-12-07 kept for every URI (read on upgrade).
LEGACY_LAST_SERVED = Path("serving") / "last-served.json"
STARTING = "the model has not been loaded yet (the service is starting)"
# Where the whole reason of a failed load is: the answers anyone may read say this instead of
# the store's paths, hosts and MLflow's own text.
SEE_THE_LOG = "the server log, GET /model or /readyz with the X-API-Key header say why"


class ServerSettingError(ValueError):
    """A version that loads but does not fit one of this server's settings: the operator, not
    a new version or another alias, is the remedy a public answer names."""


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a daemon thread, awaited. Not asyncio.to_thread: a registry call
    that hangs (a server that accepts and never answers) would hold the loop's executor, and
    the process could not exit on SIGTERM until MLflow's retries gave up, minutes later."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = function(*args)
        except BaseException as error:  # handed to the awaiting task, as to_thread does
            failure = error
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody awaits
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(failure))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=run, name="urnn-model-load", daemon=True).start()
    return await future


@dataclass(frozen=True)
class ReloadOutcome:
    status: Literal["reloaded", "unchanged"]
    previous_version: str | None
    model: ServedModel


class ModelManager:
    def __init__(
        self,
        settings: Settings,
        loader: ModelLoader,
        metrics: ServiceMetrics,
        *,
        on_swap: Callable[[ServedModel], None] = lambda model: None,
    ) -> None:
        self.settings = settings
        self.loader = loader
        self.metrics = metrics
        self.on_swap = on_swap
        self.current: ServedModel | None = None
        # why no model serves, in words for anyone (public) and whole (for the operator)
        self.unavailable_reason = STARTING
        self.unavailable_detail = STARTING
        self.last_error: str | None = None
        self.last_public_error: str | None = None  # last_error without the store's details
        self.last_error_at: datetime | None = None
        # how the version the latest swap loaded forecasts otherwise than the one it replaced
        self.last_contract_change: str | None = None
        self._failed_ref: ModelRef | None = None
        # the settings' passwords and API key as *** (the jobs' log tails' masker)
        self._mask_secrets = secret_masker(settings)
        self._lock: asyncio.Lock | None = None
        self._not_registered_said: str | None = None

    def require(self) -> ServedModel:
        """The served model, or ModelUnavailableError saying why there is none."""
        model = self.current
        if model is None:
            self.metrics.rejected.labels(reason="no_model").inc()
            raise self.unavailable()
        return model

    def unavailable(self) -> ModelUnavailableError:
        """Why no model serves, with Retry-After while the first load is still running: a
        worker of --workers restarted by uvicorn (after SIGKILL, OOM) answers its share of
        requests with this 503 when its load outlasts URNN_STARTUP_LOAD_WAIT_SECONDS, beside
        workers that serve (343 of 8,117 requests of a walk, over 4.7 s), and a client that
        honours Retry-After retries them."""
        starting = self.unavailable_reason == STARTING
        return ModelUnavailableError(
            self.unavailable_reason,
            retry_after=1 if starting else None,
            detail=self.unavailable_detail,
        )

    async def load_initial(self) -> None:
        """The lifespan's load: a failure leaves the service up and not ready, with the reason;
        a version that does not load falls back to the one this host served last."""
        self.metrics.model_loaded.set(0)
        try:
            await self.reload(force=True)
        except ReloadError:  # logged, counted, kept as unavailable_reason
            with contextlib.suppress(ReloadError):
                await self._fall_back()

    async def _fall_back(self) -> None:
        """After the alias's version failed to build at start-up: the version this host last
        served under the same URI (`_last_served_path`, in `$URNN_VAR_DIR/serving/`). A worker
        restarted while the alias pointed at a broken version served nothing, where its
        siblings kept the old version (an audit's: 162 of 200 requests answered 503). The
        failure stays reported, and the poll keeps skipping the broken version until the
        alias moves."""
        failed, record = self._failed_ref, self._last_served()
        if failed is None or record is None or self.current is not None:
            return  # nothing failed to build (nothing registered, no server), or no record
        if record.get("uri") != self.settings.model_uri or record.get("name") != failed.name:
            return
        version = str(record.get("version", ""))
        if not version or version == failed.version:
            return
        error, public = self.last_error or "", self.last_public_error or ""
        async with self._guard():
            if self.current is not None or self._failed_ref != failed:
                return  # a reload that waited on the lock loaded what the alias names now
            try:
                ref = await off_loop(self.loader.resolve, f"models:/{failed.name}/{version}")
                served = await off_loop(self._build, replace(ref, uri=self.settings.model_uri))
            except Exception as fallback_error:
                either = f"the version this host served last ({version}) does not load either"
                raise self._failed(
                    f"{error}; {either}: {type(fallback_error).__name__}: {fallback_error}",
                    public=f"{public}; {either} ({type(fallback_error).__name__})",
                ) from fallback_error
            self.current = served
            self._record_swap(None, served)
            serving = (
                f"serving version {version}, the one this host served last, until "
                f"{self.settings.model_uri} names a version that loads"
            )
            self._report(  # the URI still names the broken version: still failing
                f"{error}; {serving}", public=f"{public}; {serving}", failing=True
            )
            logger.warning("model fallback: %s", self.last_error)

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _last_served_path(self) -> Path:
        """One record per registry and URI: services of several models on one host (one var
        dir, the default `./var`) each keep their own. A single file was overwritten by
        whichever service loaded last, and the other one, restarted while its alias named a
        broken version, had nothing to fall back to (a user journey's: ETTh1 and PJM
        services). The registry is in the key because a version number names another model
        in another store (staging and production registries served from one host)."""
        key = f"{self.settings.resolved_tracking_uri()}\n{self.settings.model_uri}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.settings.var_dir / "serving" / f"last-served-{digest}.json"

    def _last_served(self) -> dict[str, Any] | None:
        """This URI's record; else the one file releases before 2026-12-07 wrote for every
        URI (its `uri` is checked by the fallback), so an upgrade keeps the fallback."""
        for path in (self._last_served_path(), self.settings.var_dir / LEGACY_LAST_SERVED):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                return record
        return None

    def _remember(self, ref: ModelRef) -> None:
        """Best effort: a var dir that cannot be written only loses the fallback."""
        path = self._last_served_path()
        record = {"uri": ref.uri, "name": ref.name, "version": ref.version}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            partial.write_text(json.dumps(record))
            partial.replace(path)
        except OSError as error:
            logger.debug("last served version not recorded in %s: %s", path, error)

    async def poll(self, interval_s: float) -> None:
        """Re-resolve the alias every `interval_s` seconds; runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(ReloadError):
                await self.reload(retry_failed=False)

    async def reload(self, *, force: bool = False, retry_failed: bool = True) -> ReloadOutcome:
        """Re-resolve the URI and swap in a new version. A version that failed to load is
        tried again when asked (`POST /model/reload`), so its error is answered again rather
        than "unchanged" while the alias points at it; the poll (`retry_failed=False`) skips
        it, so a broken version is not rebuilt and logged every interval."""
        async with self._guard():  # one reload at a time; the forward path never takes it
            previous = self.current
            uri = self.settings.model_uri
            try:  # a dead server answers here in seconds; MLflow's client retries for minutes
                await off_loop(check_tracking_server, self.settings)
            except TrackingServerError as error:
                raise self._failed(
                    str(error),
                    public=f"the model registry cannot be read to resolve {uri}: it does not "
                    f"answer or refuses the connection; {SEE_THE_LOG}",
                ) from error
            try:
                ref = await off_loop(self.loader.resolve, uri)
            except NoModelError as error:
                if previous is None:  # not registered yet: expected before the first train
                    raise self._failed(
                        str(error),
                        public=error.public,
                        level=self._not_registered_level(str(error)),
                        outcome="not_registered",
                    ) from error
                # the alias or name gone while a version serves: it keeps serving, said as a
                # failure (UrnnModelReloadFailed), since no version is there to follow
                raise self._failed(str(error), public=error.public) from error
            except Exception as error:
                raise self._failed(
                    f"cannot resolve {uri}: {error}",
                    public=f"cannot resolve {uri}: the model registry failed the request "
                    f"({type(error).__name__}); {SEE_THE_LOG}",
                ) from error
            if not force and (
                (previous is not None and ref == previous.ref)
                or (not retry_failed and ref == self._failed_ref)
            ):
                skipped = previous is None or ref != previous.ref
                outcome = "skipped_failed" if skipped else "unchanged"
                self.metrics.reloads.labels(outcome=outcome).inc()
                if previous is None:
                    raise ReloadError(self.unavailable_detail)
                if not skipped:  # the URI names the served version again (a rollback): the
                    # failure it reported is over, not a warning about what serves now
                    self._failed_ref = None
                    self._report(None, public=None, failing=False)
                return ReloadOutcome("unchanged", previous.ref.version, previous)
            try:
                served = await off_loop(self._build, ref)
            except Exception as error:
                self._failed_ref = ref
                failed = f"version {ref.version} of {ref.name} failed to load"
                remedy = (
                    "a setting of this server does not fit the model: its operator changes it "
                    "and reloads"
                    if isinstance(error, ServerSettingError)
                    else "register a new version (urnn train) or move the alias to one that "
                    "loads (urnn models promote)"
                )
                raise self._failed(
                    f"{failed}: {type(error).__name__}: {error}",
                    public=f"{failed} ({type(error).__name__}): {remedy}; {SEE_THE_LOG}",
                ) from error
            self.current = served  # the swap: one reference
            self._failed_ref = None
            self._report(None, public=None, failing=False)
            self._note_contract(previous, served)
            self._record_swap(previous, served)
            await off_loop(self._remember, served.ref)
            return ReloadOutcome(
                "reloaded", None if previous is None else previous.ref.version, served
            )

    def _build(self, ref: ModelRef) -> ServedModel:
        predictor = self.loader.load(ref)
        tail = self.settings.stream_tail_points
        lookback = predictor.model.config.lookback
        if predictor.model.STREAMING and tail < lookback:
            # a later version swap rebuilds each state from this tail: from fewer points than
            # the model's lookback every series would start warming up again
            raise ServerSettingError(
                f"URNN_STREAM_TAIL_POINTS={tail} is below the model's lookback {lookback}; "
                f"set it to at least {lookback} (default 4096)"
            )
        device = pick_device(self.settings.device)
        return ServedModel.build(
            ref,
            predictor,
            device,
            trace=self.settings.trace_model,
            graph_max_batch=self.settings.batch_max_series if self.settings.cuda_graphs else None,
        )

    def _not_registered_level(self, message: str) -> int:
        """WARNING the first time nothing is registered at the URI, DEBUG while the same is
        found again: a new stack polls every URNN_MODEL_POLL_SECONDS until its first model,
        and wrote the same warning at every poll (12 a minute at a 5 s poll in the PJM walk;
        `urnn_model_reloads_total{outcome="not_registered"}` still counts each)."""
        repeated = message == self._not_registered_said
        self._not_registered_said = message
        return logging.DEBUG if repeated else logging.WARNING

    def _failed(
        self,
        message: str,
        *,
        public: str,
        level: int = logging.ERROR,
        outcome: Literal["failure", "not_registered"] = "failure",
    ) -> ReloadError:
        """Nothing registered yet is the expected state of a new stack (`/readyz` says so and
        UrnnNoModelLoaded watches it), not a failed load: it neither counts as "failure" nor
        raises `urnn_model_reload_failing`, which UrnnModelReloadFailed reads.

        `message` (the log's, the API key's) names the store and quotes MLflow; `public` (GET
        /model, /readyz and the 503s, open to anyone) says the same in the user's terms: they
        answered `sqlite:////var/lib/urnn/mlflow.db` and the artifacts' folder to anyone."""
        # MLflow's own errors quote the tracking URI whole: one whose scheme was mistyped
        # (`user:password@host:5000`) reached GET /model and /readyz, open to anyone
        message, public = self._mask_secrets(message), self._mask_secrets(public)
        served = self.current
        if served is not None:
            message += f"; still serving version {served.ref.version}"
            public += f"; still serving version {served.ref.version}"
        else:
            self.unavailable_reason, self.unavailable_detail = public, message
        logger.log(level, "model reload failed: %s", message)
        self.metrics.reloads.labels(outcome=outcome).inc()
        self._report(message, public=public, failing=outcome == "failure")
        return ReloadError(message)

    def _report(self, error: str | None, *, public: str | None, failing: bool) -> None:
        """What GET /model says of the last reload (`last_reload_error`) and what the alert
        reads (`urnn_model_reload_failing`), set together: the gauge holds while the error
        stands, through the fallback's swap and the polls that pass over the broken version,
        and clears with it. Its clearing is logged once: the log said ERROR at every poll
        while the registry failed, then nothing once it answered, which reads the same as a
        poll that hangs."""
        if error is None and self.last_error is not None and self.current is not None:
            logger.info(
                "model reload recovered: %s resolves to a served version again, version %s "
                "(was failing: %s)",
                self.settings.model_uri,
                self.current.ref.version,
                self.last_error,
            )
        self.last_error, self.last_public_error = error, public
        self.last_error_at = None if error is None else datetime.now(UTC)
        self.metrics.reload_failing.set(1 if failing else 0)

    def _note_contract(self, previous: ServedModel | None, served: ServedModel) -> None:
        """`last_contract_change` for the swap from `previous` to `served`: None for the first
        load, or one of the same contract. Clients following the alias get another quantity
        from now on; the move is served (the alias is the operator's to set: `urnn models
        promote` refuses it unless told it is intended), and said once, here."""
        changes = []
        if previous is not None:
            before = ForecastContract.of(previous.predictor)
            changes = before.changes(ForecastContract.of(served.predictor))
        if not changes:
            self.last_contract_change = None
            return
        assert previous is not None  # changes are read from it
        self.last_contract_change = (
            f"version {served.ref.version} forecasts another quantity than version "
            f"{previous.ref.version} did: {'; '.join(changes)}"
        )
        logger.warning(
            "model reload: %s now names another forecasting contract; %s (served, as the "
            "alias says: the clients of %s get the new forecasts)",
            self.settings.model_uri,
            self.last_contract_change,
            self.settings.model_uri,
        )

    def _record_swap(self, previous: ServedModel | None, served: ServedModel) -> None:
        ref = served.ref
        if previous is not None and previous.ref != ref:
            old = previous.ref
            self.metrics.model_info.labels(
                name=old.name, version=old.version, run_id=old.run_id
            ).set(0)
            if old.version != ref.version:  # no longer served: no multiplier "served now"
                self.metrics.end_multipliers(old.version)
        self.metrics.model_info.labels(name=ref.name, version=ref.version, run_id=ref.run_id).set(1)
        self.metrics.model_loaded.set(1)
        self.metrics.start_version(
            ref.version,
            served.quantiles,
            served.max_horizon,
            adaptive=self.settings.adaptive_intervals != "off",
            reference=(reference := served.realised_reference),
        )
        if reference is None:
            logger.warning(
                "version %s has no realised_reference in its config.json (trained before "
                "urnn train recorded it): urnn_realised_reference_mase is not exported for it "
                "and UrnnRealisedErrorAboveBacktest stays silent; retrain to turn it on",
                ref.version,
            )
        self.metrics.reloads.labels(outcome="success").inc()
        self.on_swap(served)
        logger.info(
            "serving %s version %s (run %s) on %s",
            ref.name,
            ref.version,
            ref.run_id,
            served.device,
        )

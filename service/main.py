"""The app factory: `create_app()` is what uvicorn serves (`urnn serve`, or
`uvicorn service.main:create_app --factory`).

    app = create_app(Settings(model_uri="models:/urnn-forecaster@champion"))
    with TestClient(app) as client:   # runs the lifespan: load, batcher, poll
        client.post("/forecast", json={...})

Nothing happens at import. `create_app` builds the state (no I/O); the lifespan loads the model
(a missing model leaves the service up and not ready), starts the micro-batcher and the alias
poll, and stops them on shutdown. `loader` replaces the MLflow registry (tests inject one).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.docs_pages import secure_docs_pages
from service.errors import body_answers_in_schema, install_handlers, plain_errors_in_schema
from service.fast_routes import FastRoutesMiddleware, Outermost
from service.loader import MlflowLoader, ModelLoader
from service.metrics import mark_process_dead
from service.middleware import (
    BodySizeLimitMiddleware,
    HeadAsGetMiddleware,
    RequestMetricsMiddleware,
)
from service.openapi_example import forecast_example, observations_example
from service.routes import forecast, jobs, model, ops, schedules, series
from service.security import open_reads_in_schema
from service.state import ServiceState
from service.strict_query import strict_query
from urnn_forecast import LOG_FORMAT, __version__
from urnn_forecast.settings import Settings, SettingsError, get_settings, mlflow_variable_note

DESCRIPTION = """\
Forecasts from the registered uRNN forecaster (`URNN_MODEL_URI`, default
`models:/urnn-forecaster@champion`). POST histories to `/forecast`; `GET /model` says what the
served version accepts. Bad input answers 422 naming the series and the field.
"""


class ServiceApp(FastAPI):
    """FastAPI, with the hot endpoints' fast path (`service.fast_routes`) ahead of its whole
    middleware stack: a request the fast path answers costs none of the stack's layers, and
    one it is not sure of goes down the stack as to any FastAPI app."""

    fast_routes: FastRoutesMiddleware | None = None
    reads_need_key: bool = True
    max_body_bytes: int = 10 * 2**20

    _served_schema: tuple[tuple[str, str], dict[str, Any]] | None = None

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()  # built once and cached on self.openapi_schema
            open_reads_in_schema(schema, reads_need_key=self.reads_need_key)
            plain_errors_in_schema(schema)
            body_answers_in_schema(schema)
        return self._with_served_example(super().openapi())  # the cached schema, as edited

    def _with_served_example(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema with a POST /forecast example the served version accepts in place of
        the static one (service.openapi_example), and for a streaming version a POST
        /series/{id}/observations one too, built once per version; the static ones where none
        serves."""
        state = getattr(self.state, "service", None)
        served = None if state is None else state.manager.current
        # shown whatever URNN_API_KEY_FOR_READS says: what it tells of the model (look-back,
        # horizon, quantiles, covariates, frequency) GET /model tells anyone (the key guards
        # the job and schedule reads only: service.errors.GUARDED_READS)
        if served is None:
            return schema
        key = (served.ref.name, served.ref.version)
        if self._served_schema is None or self._served_schema[0] != key:
            edited = copy.deepcopy(schema)
            request = edited.get("components", {}).get("schemas", {}).get("ForecastRequest")
            example = forecast_example(served)
            if example is not None and len(json.dumps(example)) > self.max_body_bytes:
                example = None  # "Try it out" would be answered 413
            # the served one alone: the schema's own, kept second until 2026-12-07, was
            # refused by every model (six values), and copied from /docs it was a 422
            if request is not None and example is not None:
                request["examples"] = [example]
            schemas = edited.get("components", {}).get("schemas", {})
            observations = schemas.get("ObservationsRequest")
            points = observations_example(served)
            if points is not None and len(json.dumps(points)) > self.max_body_bytes:
                points = None
            if observations is not None and points is not None:
                observations["examples"] = [points]
            self._served_schema = (key, edited)
        return self._served_schema[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_routes
        if fast is None or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # as Starlette sets it: the fast path finds the handlers here
        await fast(scope, receive, send)

    async def _stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def _settings_or_exit(*, check_store: bool) -> Settings:
    """The settings of the environment (uvicorn's factory), or one error line and exit 2:
    under `--workers` a traceback per worker start, again at each restart, hid the cause."""
    from service.metrics import clear_earlier_run_files, multiprocess_folder_problem
    from urnn_forecast.tracking import TrackingStoreError, check_tracking_store

    try:
        settings = get_settings()
        if check_store:
            check_tracking_store(settings, records=False)  # as `urnn serve` checks it
    except (SettingsError, TrackingStoreError) as error:
        print(f"urnn-forecast service: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and (problem := multiprocess_folder_problem(folder)) is not None:
        print(f"urnn-forecast service: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if (note := mlflow_variable_note(settings)) is not None:
        logging.getLogger(__name__).warning("%s", note)
    if folder and (stale := clear_earlier_run_files(folder)):
        logging.getLogger(__name__).info(
            "removed %d metric files of an earlier run from %s", stale, folder
        )
    # A worker restarted under the pid of one killed earlier in this run (pids wrap around)
    # opens that one's files: its counters happened and stay, its live gauges (served version,
    # queue depth, drift) are not this process's and were never set again.
    mark_process_dead(os.getpid())
    return settings


def log_somewhere() -> None:
    """A handler at INFO, in `urnn serve`'s format, where nothing would receive the service's
    log lines: `uvicorn service.main:create_app --factory` configures uvicorn's own loggers
    only, so the service's INFO lines (a swap's "serving ... version N", a drain's start) were
    dropped and its warnings came out bare (Python's last resort: no time, level or logger),
    in every worker of uvicorn's --workers. A configuration that reaches them (`urnn serve`'s,
    uvicorn's --log-config with a root or `service` handler) is left as it is."""
    if logging.getLogger("service").hasHandlers():
        return
    handler = logging.StreamHandler()  # stderr, as uvicorn's own lines
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def create_app(settings: Settings | None = None, *, loader: ModelLoader | None = None) -> FastAPI:
    """The service. Without `settings` (`uvicorn service.main:create_app --factory`) they are
    read from the environment, and a setting that cannot work stops the process with one line
    and exit code 2, as `urnn serve` does, instead of uvicorn's traceback."""
    if settings is None:
        log_somewhere()
        settings = _settings_or_exit(check_store=loader is None)
    if settings.mlflow_tracking_uri is None and loader is None:
        settings.var_dir.mkdir(parents=True, exist_ok=True)  # the embedded SQLite store's folder
    state = ServiceState.build(settings, loader or MlflowLoader.from_settings(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()
            jobs_db = getattr(app.state, "jobs_db", None)  # made at the first job request
            if jobs_db is not None:  # its pooled connections, not left to the process exit
                jobs_db.dispose()
                app.state.jobs_db = None
            mark_process_dead(os.getpid())

    app = ServiceApp(
        dependencies=[Depends(strict_query)],
        title="urnn-forecast",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Off unless asked for: FastAPI's native OpenTelemetry checks its providers on every
        # request (~20 us of a ~300 us streaming update, measured in process).
        telemetry={
            "tracing": settings.otel_telemetry,
            "metrics": settings.otel_telemetry,
            "logs": settings.otel_telemetry,
        },
    )
    secure_docs_pages(app)  # /docs and /redoc: their Content-Security-Policy
    app.state.service = state
    app.reads_need_key = settings.api_key_for_reads
    app.max_body_bytes = settings.max_body_bytes
    install_handlers(app)
    # The two hot paths first: Starlette tries routes in order.
    routers = (
        forecast.router,
        series.router,
        model.router,
        ops.router,
        jobs.router,
        schedules.router,
    )
    for router in routers:
        app.include_router(router)
    jobs.install_job_handlers(app)
    series.install_series_handlers(app)
    # First added = innermost: the size limit and the metrics below see the request's HEAD.
    app.add_middleware(HeadAsGetMiddleware)
    # The hot endpoints' fast path: ahead of the whole stack, doing the metrics' and the size
    # limit's work itself; inside it (so that FastAPI's OpenTelemetry sees those requests)
    # when that telemetry is on.
    if settings.otel_telemetry:
        app.add_middleware(FastRoutesMiddleware, state=state)
    else:
        outermost = Outermost(metrics=state.metrics, max_body_bytes=settings.max_body_bytes)
        app.fast_routes = FastRoutesMiddleware(app._stack, state=state, outermost=outermost)
    # Added last = outermost: metrics see every answer, 413s included.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    # The routes as declared (included without a prefix), for the templates of answers given
    # before routing: FastAPI's app.router.routes holds the included routers, not their routes.
    # And FastAPI's own (/openapi.json, /docs, /redoc): plain Starlette routes put no template
    # in the scope, and their 200s were counted as `unmatched`.
    own = [route for route in app.router.routes if isinstance(route, Route)]
    declared = [*own, *(route for router in routers for route in router.routes)]
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics, routes=declared)
    return app

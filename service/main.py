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

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.errors import install_handlers
from service.fast_routes import FastRoutesMiddleware
from service.loader import MlflowLoader, ModelLoader
from service.metrics import mark_process_dead
from service.middleware import BodySizeLimitMiddleware, RequestMetricsMiddleware
from service.routes import forecast, jobs, model, ops, schedules, series
from service.state import ServiceState
from urnn_forecast import __version__
from urnn_forecast.settings import Settings, get_settings

DESCRIPTION = """\
Forecasts from the registered uRNN forecaster (`URNN_MODEL_URI`, default
`models:/urnn-forecaster@champion`). POST histories to `/forecast`; `GET /model` says what the
served version accepts. Bad input answers 422 naming the series and the field.
"""


def create_app(settings: Settings | None = None, *, loader: ModelLoader | None = None) -> FastAPI:
    settings = settings if settings is not None else get_settings()
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
            mark_process_dead(os.getpid())

    app = FastAPI(
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
    app.state.service = state
    install_handlers(app)
    # The two hot paths first: Starlette tries routes in order.
    app.include_router(forecast.router)
    app.include_router(series.router)
    app.include_router(model.router)
    app.include_router(ops.router)
    app.include_router(jobs.router)
    app.include_router(schedules.router)
    jobs.install_job_handlers(app)
    series.install_series_handlers(app)
    # Added last = outermost: metrics see every answer, 413s included; the hot endpoints' fast
    # path innermost, so the size limit and the metrics cover it too.
    app.add_middleware(FastRoutesMiddleware, state=state)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    return app

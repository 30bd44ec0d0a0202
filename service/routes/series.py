"""Streaming series: POST /series/{series_id}/observations, GET /series/{series_id}/forecast,
GET /series/{series_id}, DELETE /series/{series_id}, and WS /series/stream (one connection
carrying many updates, `service.stream_socket`).

Thin routes over `service.streaming.StreamEngine` (the state store, its snapshots and the
model work). The mutating ones (POST observations, DELETE) require the API key, as POST
/model/reload does. 409 answers name the timestamps involved (order, duplicates, gaps, a
state still warming up), 404 an unknown series, 503 an unusable snapshot database.

POST observations is declared as FastAPI declares any typed body (OpenAPI, the schema's
422s). A plainly well-formed JSON body with the right API key never reaches it, as with POST
/forecast: `service.fast_routes` answers it at the ASGI layer (orjson, then
`service.stream_fast_path`, then `StreamEngine.observe_json`, which writes the answer straight
to JSON bytes). Anything else (JSON orjson refuses, such as NaN tokens; another content type;
any doubt about the body, the path's series id or the key) comes here, so every rejection
keeps its status and message.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response, WebSocket
from fastapi.responses import JSONResponse

from service.routes.fast_json import ObservationsJSONRoute
from service.schemas import ErrorResponse, TimeZoneName
from service.security import ApiKeyDep, carries_api_key
from service.series_ids import SERIES_ID_MAX, SERIES_ID_PATTERN, SERIES_ID_RULE
from service.state import StateDep
from service.stream_schemas import (
    ObservationsRequest,
    ObservationsResponse,
    SeriesForecastResponse,
    SeriesStatus,
)
from service.stream_socket import serve_stream
from service.stream_validation import SeriesNotFoundError, StreamConflictError
from service.streaming import SnapshotStoreError

router = APIRouter(tags=["series"], route_class=ObservationsJSONRoute)

SeriesId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=SERIES_ID_MAX,
        pattern=SERIES_ID_PATTERN,
        description="Caller's id of the series: " + SERIES_ID_RULE + ".",
        examples=["meter-17"],
    ),
]

_KEY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key."},
    403: {"model": ErrorResponse, "description": "No URNN_API_KEY configured."},
}
_COMMON: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "Out of order, a changed duplicate, a gap, a state still warming up, or "
        "a served model that is not streaming; names the timestamps.",
    },
    422: {"model": ErrorResponse, "description": "Bad input; names the field."},
    503: {"model": ErrorResponse, "description": "No model loaded, or no snapshot database."},
}
_NOT_STREAMING: dict[str, Any] = {
    "model": ErrorResponse,
    "description": "The served model is not a streaming model (kind 'urnn-stream').",
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such series."}
}


@router.post(
    "/series/{series_id}/observations",
    response_model=ObservationsResponse,
    dependencies=[ApiKeyDep],
    summary="Advance a series' stored state by new points and forecast (API key)",
    responses={
        **_KEY_ERRORS,
        **_COMMON,
        413: {"model": ErrorResponse, "description": "A body above URNN_MAX_BODY_BYTES."},
    },
)
async def post_observations(
    series_id: SeriesId, body: ObservationsRequest, state: StateDep
) -> ObservationsResponse:
    """The points are checked (grid, order, duplicates, gaps) before anything changes; exact
    duplicates of stored points are ignored and counted. Until the state has consumed the
    model's warm-up (its lookback) the forecast is null and `points_needed` says how many more
    points it needs."""
    answer = await state.streams.observe(series_id, body)
    state.streams.keep_awake()  # the next point of this feed may follow at once
    return answer


@router.websocket("/series/stream")
async def stream_observations(websocket: WebSocket) -> None:
    """One connection, many updates (API key at the handshake): each message is a POST
    observations body plus `series_id`, answered in order as that route answers it
    (`service.stream_socket`; docs/streaming.md)."""
    await serve_stream(websocket, websocket.app.state.service)


@router.get(
    "/series/{series_id}/forecast",
    response_model=SeriesForecastResponse,
    summary="The forecast after a series' last stored point",
    responses={**_NOT_FOUND, **_COMMON},
)
async def get_series_forecast(
    series_id: SeriesId,
    state: StateDep,
    horizon: Annotated[
        int | None, Query(ge=1, description="Steps to forecast; default the model's maximum.")
    ] = None,
    quantiles: Annotated[
        list[float] | None,
        Query(description="Quantile levels (repeat the parameter); default all trained ones."),
    ] = None,
    timezone: Annotated[
        TimeZoneName | None,
        Query(
            description="The series' zone, as a check: the `timezone` the series was created "
            "with, by any of its names (422 for another zone, or for a series created without "
            "one). The answer is on the series' clock either way.",
            examples=["Europe/London"],
        ),
    ] = None,
) -> SeriesForecastResponse:
    answer = await state.streams.forecast(series_id, horizon, quantiles, timezone)
    state.streams.keep_awake()
    return answer


@router.get(
    "/series/{series_id}",
    response_model=SeriesStatus,
    summary="What is stored for a streaming series",
    responses={**_NOT_FOUND, 409: _NOT_STREAMING, 503: _COMMON[503]},
)
async def get_series(series_id: SeriesId, state: StateDep) -> SeriesStatus:
    return await state.streams.status(series_id)


@router.delete(
    "/series/{series_id}",
    status_code=204,
    dependencies=[ApiKeyDep],
    summary="Forget a streaming series, in memory and in the database (API key)",
    responses={**_KEY_ERRORS, **_NOT_FOUND, 409: _NOT_STREAMING, 503: _COMMON[503]},
)
async def delete_series(series_id: SeriesId, state: StateDep) -> Response:
    await state.streams.delete(series_id)
    return Response(status_code=204)


def install_series_handlers(app: FastAPI) -> None:
    """409, 404 and 503 answers of the streaming endpoints, as `{"detail": <sentence>}`."""

    async def on_conflict(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    async def on_not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    async def on_store(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SnapshotStoreError)
        # what could not be read of a stored state to the operator only, as GET /model's
        # reason of a failed load: GET /series/{id} answers anyone
        reason = exc.detail if exc.detail and carries_api_key(request) else str(exc)
        return JSONResponse(status_code=503, content={"detail": reason})

    app.add_exception_handler(StreamConflictError, on_conflict)
    app.add_exception_handler(SeriesNotFoundError, on_not_found)
    app.add_exception_handler(SnapshotStoreError, on_store)

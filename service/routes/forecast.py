"""POST /forecast.

The endpoint is declared as FastAPI declares any typed body (OpenAPI, the schema's 422s). A
plainly well-formed JSON body never reaches it: `service.fast_routes` answers it at the ASGI
layer (orjson, then `service.fast_path`, then the same service function). Everything else
(JSON that orjson refuses, such as the NaN/Infinity tokens the service must answer with a 422
naming the value, a JSON-like content type, any doubt about the body) comes here: FastAPI's
own path with pydantic-core's parser (`FastJSONRoute`), then the schema. Arrow bodies
(`service.arrow_io`) are read there too, never here; their types are declared here for the
OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from service.arrow_io import ARROW_MEDIA_TYPES, ARROW_STREAM, wants_arrow
from service.forecasting import INTERVAL_HEADER, forecast
from service.routes.fast_json import FastJSONRoute
from service.schemas import ErrorResponse, ForecastRequest, ForecastResponse
from service.state import StateDep

router = APIRouter(tags=["forecast"], route_class=FastJSONRoute)

_BINARY = {"type": "string", "format": "binary"}


@router.post(
    "/forecast",
    response_model=ForecastResponse,
    summary="Forecast one or more series with the served model",
    responses={
        200: {
            "content": {ARROW_STREAM: {"schema": _BINARY}},
            "headers": {
                INTERVAL_HEADER: {
                    "description": "With URNN_ADAPTIVE_INTERVALS=rolling only: the quantiles "
                    "were moved about the median by the rolling multipliers, whose mean over "
                    "the request's steps this is (GET /model lists them per step).",
                    "schema": {"type": "string", "example": "1.1875"},
                }
            },
        },
        413: {"model": ErrorResponse, "description": "Body larger than URNN_MAX_BODY_BYTES."},
        415: {"model": ErrorResponse, "description": "A body neither JSON nor Arrow."},
        422: {"model": ErrorResponse, "description": "Bad input; names the series and field."},
        503: {"model": ErrorResponse, "description": "No model loaded, or the queue is full."},
    },
    openapi_extra={
        "requestBody": {"content": {kind: {"schema": _BINARY} for kind in ARROW_MEDIA_TYPES}}
    },
)
async def post_forecast(
    body: ForecastRequest,
    state: StateDep,
    accept: Annotated[
        str | None,
        Header(description=f"`{ARROW_STREAM}` for an Arrow answer; JSON otherwise."),
    ] = None,
) -> Response:
    """Each series is validated against the served model, then all concurrent requests share
    one batched forward pass. Values come back in the data's original units.

    The body may also be an Arrow IPC stream (`Content-Type: application/vnd.apache.arrow.stream`,
    or `.file`): one row per series with columns `id`, `values` and optionally `start`,
    `freq`, `timestamps`, `covariates.<name>`; `horizon` and `quantiles` as schema metadata.
    With `Accept: application/vnd.apache.arrow.stream` the answer is an Arrow stream (columns
    `id`, `timestamps`, `mean`, `quantiles.<level>`). docs/serving.md has the details."""
    return await forecast(body, state=state, arrow=wants_arrow(accept.encode() if accept else None))

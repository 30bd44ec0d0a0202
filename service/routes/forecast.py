"""POST /forecast.

The endpoint is declared as FastAPI declares any typed body (OpenAPI, the schema's 422s). A
plainly well-formed JSON body never reaches it: `service.fast_routes` answers it at the ASGI
layer (orjson, then `service.fast_path`, then the same service function). Everything else
(JSON that orjson refuses, such as the NaN/Infinity tokens the service must answer with a 422
naming the value, another content type, any doubt about the body) comes here: FastAPI's own
path with pydantic-core's parser (`FastJSONRoute`), then the schema.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.forecasting import forecast
from service.routes.fast_json import FastJSONRoute
from service.schemas import ErrorResponse, ForecastRequest, ForecastResponse
from service.state import StateDep

router = APIRouter(tags=["forecast"], route_class=FastJSONRoute)


@router.post(
    "/forecast",
    response_model=ForecastResponse,
    summary="Forecast one or more series with the served model",
    responses={
        413: {"model": ErrorResponse, "description": "Body larger than URNN_MAX_BODY_BYTES."},
        422: {"model": ErrorResponse, "description": "Bad input; names the series and field."},
        503: {"model": ErrorResponse, "description": "No model loaded, or the queue is full."},
    },
)
async def post_forecast(body: ForecastRequest, state: StateDep) -> Response:
    """Each series is validated against the served model, then all concurrent requests share
    one batched forward pass. Values come back in the data's original units."""
    return await forecast(body, state=state)

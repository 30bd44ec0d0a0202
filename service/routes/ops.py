"""GET (or HEAD) /healthz (the process answers), /readyz (a model is loaded); GET /metrics
(Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from service.errors import DrainingError
from service.metrics import CONTENT_TYPE
from service.schemas import ErrorResponse, HealthResponse, ModelRefOut, ReadyResponse
from service.state import StateDep

router = APIRouter(tags=["operations"])


# GET and HEAD: load balancers and uptime checks probe with either (HEAD answered 405). One
# route per method: a route of both gave both one operationId in /openapi.json (FastAPI's
# "Duplicate Operation ID" warning at every start; generated clients clash on it).


@router.get("/healthz", response_model=HealthResponse, summary="The process is alive")
@router.head(
    "/healthz",
    response_model=HealthResponse,
    summary="The process is alive (HEAD: the status alone)",
    operation_id="healthz_head",
)
async def healthz() -> HealthResponse:
    return HealthResponse()


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "Not ready, and why."}
}


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="A model is loaded and /forecast can answer",
    responses=NOT_READY,
)
@router.head(
    "/readyz",
    response_model=ReadyResponse,
    summary="A model is loaded and /forecast can answer (HEAD: the status alone)",
    responses=NOT_READY,
    operation_id="readyz_head",
)
async def readyz(state: StateDep) -> ReadyResponse:
    if state.drain.draining:  # out of rotation first (service.drain)
        raise DrainingError(state.drain.reason())
    model = state.manager.current
    if model is None:
        raise state.manager.unavailable()
    ref = model.ref
    return ReadyResponse(model=ModelRefOut(name=ref.name, version=ref.version, run_id=ref.run_id))


@router.get("/metrics", summary="Prometheus text exposition", response_class=Response)
async def metrics(state: StateDep) -> Response:
    # Set here, not in the SIGTERM handler: a signal handler must not take the metric's lock,
    # which the interrupted thread may hold.
    state.metrics.draining.set(1 if state.drain.draining else 0)
    return Response(content=state.metrics.render(), media_type=CONTENT_TYPE)

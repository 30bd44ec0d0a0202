"""GET /model and POST /model/reload."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from service.adaptive import AdaptiveIntervals, outer_pair
from service.errors import ServiceInputError
from service.manager import ModelManager
from service.realised import kept_spacing
from service.schemas import ErrorResponse, IntervalAdaptation, ModelInfo, ReloadResponse
from service.security import ApiKeyDep, carries_api_key
from service.served import ServedModel
from service.state import StateDep

router = APIRouter(tags=["model"])


@router.get(
    "/model",
    response_model=ModelInfo,
    summary="The served model version and what it accepts",
    responses={503: {"model": ErrorResponse, "description": "No model loaded, and why."}},
)
async def get_model(request: Request, state: StateDep) -> ModelInfo:
    manager = state.manager
    model = manager.current
    if model is None:
        raise manager.unavailable()
    # the reload error whole (the store's paths, MLflow's text) to the operator only
    return model_info(model, manager, state.adaptive, whole=carries_api_key(request))


@router.post(
    "/model/reload",
    response_model=ReloadResponse,
    dependencies=[ApiKeyDep],
    summary="Re-resolve the model URI and hot-swap to its version (API key)",
    responses={
        401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key."},
        403: {"model": ErrorResponse, "description": "No URNN_API_KEY configured."},
        422: {"model": ErrorResponse, "description": "A body was sent (the route takes none)."},
        502: {
            "model": ErrorResponse,
            "description": "The new version failed to load; the old one still serves.",
        },
    },
)
async def reload_model(
    request: Request,
    state: StateDep,
    force: bool = Query(
        default=False, description="Rebuild even if the alias still points at the served version."
    ),
) -> ReloadResponse:
    if await request.body():
        # a body such as {"version": "3"} was ignored, and the answer "unchanged" read as if
        # the version asked for were served
        raise ServiceInputError(
            "the body",
            "POST /model/reload takes no body: it loads the version URNN_MODEL_URI names "
            "(models:/NAME@champion: move the alias with `urnn models promote N`); "
            "?force=true rebuilds the served one",
        )
    outcome = await state.manager.reload(force=force)
    return ReloadResponse(
        status=outcome.status,
        previous_version=outcome.previous_version,
        model=model_info(outcome.model, state.manager, state.adaptive),
    )


def model_info(
    model: ServedModel,
    manager: ModelManager,
    adaptive: AdaptiveIntervals | None = None,
    *,
    whole: bool = True,
) -> ModelInfo:
    """What GET /model answers; `whole`: the last reload error as the log says it, else in
    the words answered to anyone (without the store's paths and hosts)."""
    ref = model.ref
    return ModelInfo(
        name=ref.name,
        version=ref.version,
        run_id=ref.run_id,
        uri=ref.uri,
        kind=model.model.config.kind,
        device=str(model.device),
        traced=model.traced is not None,
        cuda_graphs=[] if model.graphed is None else list(model.graphed.sizes),
        lookback=model.lookback,
        max_horizon=model.max_horizon,
        quantiles=list(model.quantiles),
        target=model.target,
        covariates=list(model.covariates),
        freq=model.freq,
        non_negative=model.model.config.non_negative,
        needs_dates=model.needs_dates,
        calendar_clock=model.calendar_clock,
        loaded_at=model.loaded_at,
        last_reload_error=manager.last_error if whole else manager.last_public_error,
        last_reload_error_at=manager.last_error_at,
        last_reload_contract_change=manager.last_contract_change,
        interval_adaptation=_adaptation(model, adaptive),
        realised_reference=model.realised_reference,
    )


def _adaptation(
    model: ServedModel, adaptive: AdaptiveIntervals | None
) -> IntervalAdaptation | None:
    """The rolling multipliers `model` serves (those of its first request, if none yet)."""
    config = model.model.config
    pair = outer_pair(config.quantiles, config.median_index)
    if adaptive is None or pair is None:
        return None
    version = model.ref.version
    multipliers = adaptive.multipliers(version, model.max_horizon, pair[2])
    return IntervalAdaptation(
        mode="rolling",
        scope="series" if adaptive.scope == "series" else "version",
        series=adaptive.series(version),
        window=adaptive.window,
        scores=adaptive.scored(version),
        multipliers=[round(float(m), 6) for m in multipliers],
        span_steps=adaptive.window * kept_spacing(model.max_horizon, adaptive.cache_depth),
    )

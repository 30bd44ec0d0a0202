"""The /forecast service function: validate against the served version, batch, answer.

    response = await forecast(request, state=state)

The model reference is read once, at the start: validation, inference and the response's
model block all use that version, even if a reload swaps in another one meanwhile. The
response is serialised here, by pydantic's Rust core, straight to JSON bytes.
"""

from __future__ import annotations

import numpy as np
from fastapi import Response

from service.schemas import ForecastRequest, ForecastResponse, ModelRefOut, SeriesForecast
from service.state import ServiceState
from service.validation import Dates, PreparedRequest, as_index, prepare


async def forecast(request: ForecastRequest, *, state: ServiceState) -> Response:
    model = state.manager.require()
    prepared = prepare(request, model)
    result = await state.batcher.submit(prepared)  # (n_series, H_max, Q), original units
    body = build_response(prepared, result)
    return Response(content=body.model_dump_json(), media_type="application/json")


def build_response(prepared: PreparedRequest, result: np.ndarray) -> ForecastResponse:
    ref = prepared.model.ref
    h = prepared.horizon
    median = prepared.model.model.config.median_index
    stamps = iso_timestamps([s.dates for s in prepared.series], h)
    forecasts = []
    for s, values, timestamps in zip(prepared.series, result, stamps, strict=True):
        steps = values[:h].T.tolist()  # Q lists of h floats
        forecasts.append(
            SeriesForecast.model_construct(
                id=s.id,
                timestamps=timestamps,
                mean=steps[median],
                quantiles={
                    key: steps[j]
                    for key, j in zip(prepared.quantile_keys, prepared.quantile_index, strict=True)
                },
            )
        )
    return ForecastResponse.model_construct(
        model=ModelRefOut.model_construct(name=ref.name, version=ref.version, run_id=ref.run_id),
        forecasts=forecasts,
    )


def iso_timestamps(dates: list[Dates | None], horizon: int) -> list[list[str] | None]:
    """ISO 8601 text of the first `horizon` forecast steps per series, as
    `pd.Timestamp.isoformat` writes it. Series without a zone and on whole seconds (the common
    case) are formatted together by one numpy call; others through pandas."""
    out: list[list[str] | None] = [None] * len(dates)
    plain = [
        (k, d)
        for k, d in enumerate(dates)
        if d is not None and d.tz is None and not (d.future_ns[:horizon] % 1_000_000_000).any()
    ]
    if plain:
        ns = np.stack([d.future_ns[:horizon] for _, d in plain])  # (S, h)
        text = np.datetime_as_string(ns.view("datetime64[ns]"), unit="s").tolist()
        for (k, _), row in zip(plain, text, strict=True):
            out[k] = row
    for k, d in enumerate(dates):
        if d is not None and out[k] is None:
            out[k] = [t.isoformat() for t in as_index(d.future_ns[:horizon], d.tz)]
    return out

"""The /forecast service function: validate against the served version, batch, answer.

    response = await forecast(request, state=state)

The model reference is read once, at the start: validation, inference and the response's
model block all use that version, even if a reload swaps in another one meanwhile. The
response (the `ForecastResponse` schema, field for field) is written straight to JSON bytes by
orjson from the result arrays: no per-value Python float, no pydantic model per series. Floats
are written as pydantic writes them (shortest round-trip text; NaN/inf as null). Forecast
timestamps are formatted once per distinct row of steps (a small cache, see iso_timestamps;
for a block, the row's JSON text is kept too), and each series' median once for "mean" and
its quantile key (orjson.Fragment: 16 x 96 x 3 quantiles, 0.22 -> 0.18 ms per answer).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from fastapi import Response

from service.arrow_answer import arrow_response, check_one_kind_of_time
from service.arrow_io import ARROW_STREAM
from service.state import ServiceState
from service.validation import Dates, PreparedRequest, RequestIn, as_index, prepare


async def forecast(request: RequestIn, *, state: ServiceState, arrow: bool = False) -> Response:
    """The answer to `request`: JSON, or an Arrow stream with `arrow` (`service.arrow_io`)."""
    model = state.manager.require()
    prepared = prepare(request, model)
    if arrow:
        check_one_kind_of_time(prepared)  # before the forward: the answer could not be written
    result = await state.batcher.submit(prepared)  # (n_series, H_max, Q), original units
    headers = None if prepared.adapted is None else adapted_header(prepared)
    if arrow:
        content = arrow_response(prepared, result)
        return Response(content=content, media_type=ARROW_STREAM, headers=headers)
    content = response_json(prepared, result)
    return Response(content=content, media_type="application/json", headers=headers)


INTERVAL_HEADER = "X-Interval-Multiplier"


def adapted_header(prepared: PreparedRequest) -> dict[str, str]:
    """Rolling intervals (service.adaptive): the answer says that its quantiles were moved,
    by the multipliers' mean over the request's steps (GET /model lists them step by step),
    so that no client is served another width silently."""
    assert prepared.adapted is not None
    m = prepared.adapted.multipliers[..., : prepared.horizon]  # (h,) or by series (S, h)
    return {INTERVAL_HEADER: f"{float(m.mean()):.4f}"}


def response_json(prepared: PreparedRequest, result: np.ndarray) -> bytes:
    """The ForecastResponse body of `result` ((n_series, H_max, Q), original units)."""
    ref = prepared.model.ref
    h = prepared.horizon
    median = prepared.model.model.config.median_index
    steps = np.ascontiguousarray(result[:, :h, :].transpose(0, 2, 1))  # (S, Q, h), rows contiguous
    block = prepared.block
    stamps: Sequence[Sequence[str] | orjson.Fragment | None]
    if block is not None:  # naive steps, all dated or none
        ids = block.ids
        stamps = (
            [None] * len(ids)
            if block.first_ns is None
            else [_plain_stamps_json(row.tobytes()) for row in block.future_ns(h)]
        )
    else:
        ids = [s.id for s in prepared.series]
        stamps = iso_timestamps([s.dates for s in prepared.series], h)
    keys = tuple(zip(prepared.quantile_keys, prepared.quantile_index, strict=True))
    forecasts: list[dict[str, Any]] = []
    for series_id, rows, timestamps in zip(ids, steps, stamps, strict=True):
        # The median is written twice ("mean" and its quantile key): as text once.
        mean = orjson.Fragment(orjson.dumps(rows[median], option=orjson.OPT_SERIALIZE_NUMPY))
        forecasts.append(
            {
                "id": series_id,
                "timestamps": timestamps,
                "mean": mean,
                "quantiles": {key: mean if j == median else rows[j] for key, j in keys},
            }
        )
    body = {
        "model": {"name": ref.name, "version": ref.version, "run_id": ref.run_id},
        "forecasts": forecasts,
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def iso_timestamps(dates: list[Dates | None], horizon: int) -> list[Sequence[str] | None]:
    """ISO 8601 text of the first `horizon` forecast steps per series, as
    `pd.Timestamp.isoformat` writes it. Series without a zone (the common case) go through a
    bounded cache keyed by their steps: the series of one request, and the requests of one
    period, mostly forecast the same instants, so each distinct row is formatted once; zoned
    series through pandas."""
    out: list[Sequence[str] | None] = []
    for d in dates:
        if d is None:
            out.append(None)
        elif d.tz is None:
            out.append(_plain_stamps(d.future_ns[:horizon].tobytes()))
        else:
            out.append([t.isoformat() for t in as_index(d.future_ns[:horizon], d.tz)])
    return out


@functools.lru_cache(maxsize=1024)
def _plain_stamps_json(ns: bytes) -> orjson.Fragment:
    """`_plain_stamps` as JSON text, kept: a request's answer splices it in as it is."""
    return orjson.Fragment(orjson.dumps(_plain_stamps(ns)))


@functools.lru_cache(maxsize=1024)
def _plain_stamps(ns: bytes) -> tuple[str, ...]:
    """Naive steps (int64 epoch ns, as bytes: hashable) as isoformat text: whole seconds as
    numpy writes them (one call per row), others through pandas (fractions as it writes them)."""
    steps = np.frombuffer(ns, dtype=np.int64)
    if not (steps % 1_000_000_000).any():
        return tuple(np.datetime_as_string(steps.view("datetime64[ns]"), unit="s").tolist())
    return tuple(t.isoformat() for t in as_index(steps, None))

"""A fast path past pydantic for POST /series/{series_id}/observations bodies that are plainly
well-formed: the request side of the route's shortcut (`service.routes.series`).

    body = fast_observations(parsed_json)   # a FastObservations, or None: let the schema decide

Like `service.fast_path` for /forecast, it never reports an error itself. Anything it is not
sure `ObservationsRequest` accepts with the same result (an unknown key, a wrong type, `null`
or a string or a bool among the numbers, a bool-only list, an empty `values`, a horizon that
is not a positive int, a quantile that is not a number, an unknown gap policy, a date that is
not text pydantic reads, a `timezone`, even null...) makes it return None, and the request
goes through the schema as before, so every rejection keeps the schema's 422 message. What it
accepts it reads exactly as the schema does: numbers to float64 (ints and floats, as
pydantic's `float`), dates by pydantic's own datetime validator. The checks that need the
served model or the stored series (finite values, covariates, the grid, order, gaps, the
series' zone) are `service.stream_validation`'s, for both paths.
tests/service/test_streaming_fast_path.py checks the two paths agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
from pydantic import TypeAdapter, ValidationError

from service.fast_path import (
    ZONE_KEY,
    NotFastError,
    fast_covariates,
    fast_horizon_quantiles,
    fast_timestamps,
    plain_floats,
)
from service.schemas import Timestamp
from service.stream_schemas import GapPolicy, ObservationsRequest

# A `timezone` is the schema's to check (the name) and the engine's to apply (the series' zone,
# `service.stream_validation.on_series_zone`): such a body steps aside, as on POST /forecast.
_KEYS = frozenset(ObservationsRequest.model_fields) - {ZONE_KEY}
_GAP_POLICIES: frozenset[str] = frozenset({"reject", "interpolate"})
_DATETIME = TypeAdapter(Timestamp)
_NUMBER_TYPES = frozenset({float, int})


@dataclass(frozen=True)
class FastObservations:
    """An `ObservationsRequest` whose numbers are already float64 arrays (same fields)."""

    values: np.ndarray  # (n,) float64, n >= 1
    timestamps: list[datetime] | None
    start: datetime | None
    covariates: dict[str, np.ndarray]
    horizon: int | None
    quantiles: list[float] | None
    gap_policy: GapPolicy


def fast_observations(data: Any) -> FastObservations | None:
    """`data` (parsed JSON) as FastObservations, or None when the schema must look at it."""
    if type(data) is not dict or not data.keys() <= _KEYS:
        return None
    values = _numbers(data.get("values"))
    if values is None or not len(values):
        return None
    gap_policy = data.get("gap_policy")
    if gap_policy is None:  # null: the default, as when left out
        gap_policy = "reject"
    if type(gap_policy) is not str or gap_policy not in _GAP_POLICIES:
        return None
    start = data.get("start")
    if start is not None:
        if type(start) is not str:
            return None
        try:
            start = _DATETIME.validate_python(start)
        except ValidationError:
            return None
    try:
        horizon, quantiles = fast_horizon_quantiles(data)
        timestamps = fast_timestamps(data.get("timestamps"))
        covariates = fast_covariates(data.get("covariates"), _numbers)  # null: none
    except NotFastError:
        return None
    return FastObservations(
        values=values,
        timestamps=timestamps,
        start=start,
        covariates=covariates,
        horizon=horizon,
        quantiles=quantiles,
        gap_policy=cast(GapPolicy, gap_policy),  # one of _GAP_POLICIES
    )


def _numbers(raw: Any) -> np.ndarray | None:
    """A list of JSON numbers as float64, or None if anything else is in it (null, a bool, a
    string, a nested list...). Ints and floats convert as pydantic's `float` does."""
    if type(raw) is not list:
        return None
    if not raw:
        return np.empty(0, dtype=np.float64)
    if len(raw) == 1:  # the streaming update's common case: no numpy type discovery
        (only,) = raw
        kind = type(only)
        if kind is float or (kind is int and -(2**63) <= only < 2**63):
            return np.array([only], dtype=np.float64)
        return None
    if not set(map(type, raw)) <= _NUMBER_TYPES:  # bools, None, text, lists, dicts...
        return None
    return plain_floats(raw, ndim=1)

"""`service.forecasting.response_json` writes the answer with orjson straight from the result
arrays (the median's text spliced in twice, timestamp rows kept as text); what it writes must
be, byte for byte, what pydantic writes for the same `ForecastResponse`: ids that need escapes,
quantiles in the request's order, NaN and inf, -0.0, every exponent form, block and series-by-
series timestamps, fractional seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.fast_path import fast_request
from service.forecasting import iso_timestamps, response_json
from service.schemas import ForecastRequest, ForecastResponse
from service.validation import PreparedRequest, prepare
from tests.service.test_fast_path import StubModel, _as_model, _series

Body = dict[str, Any]


@dataclass
class AnsweringStub(StubModel):
    """A StubModel with what the answer reads: the version's reference and median index."""

    ref: Any = field(default_factory=lambda: SimpleNamespace(name="m", version="7", run_id="r"))
    model: Any = field(
        default_factory=lambda: SimpleNamespace(config=SimpleNamespace(median_index=1))
    )


def _prepared(body: Body, *, fast: bool) -> PreparedRequest:
    request = fast_request(body) if fast else ForecastRequest.model_validate(body)
    assert request is not None, "the body is not a fast-path body"
    return prepare(request, _as_model(AnsweringStub()))


def _pydantic_answer(prepared: PreparedRequest, result: np.ndarray) -> bytes:
    """The same answer built as the schema's objects and written by pydantic."""
    h = prepared.horizon
    stamps = iso_timestamps([s.dates for s in prepared.series], h)
    forecasts = []
    for s, rows, t in zip(prepared.series, result, stamps, strict=True):
        forecasts.append(
            {
                "id": s.id,
                "timestamps": None if t is None else list(t),
                "mean": rows[:h, 1].tolist(),
                "quantiles": {
                    key: rows[:h, j].tolist()
                    for key, j in zip(prepared.quantile_keys, prepared.quantile_index, strict=True)
                },
            }
        )
    body = {"model": {"name": "m", "version": "7", "run_id": "r"}, "forecasts": forecasts}
    return ForecastResponse.model_validate(body).model_dump_json().encode()


def _result(n_series: int, rng: np.random.Generator) -> np.ndarray:
    """(n_series, H_max=4, Q=3) forecasts as the runner gives them: float32 model output
    un-scaled in float64, some of them not finite."""
    scaled = rng.standard_normal((n_series, 4, 3)).astype(np.float32).astype(np.float64)
    result = scaled * rng.uniform(0.1, 1e6) + rng.uniform(-1e3, 1e3)
    result[0, 0, 0] = np.nan
    result[-1, 1, 2] = np.inf
    result[-1, 2, 1] = -0.0
    return result


CASES: dict[str, tuple[Body, bool]] = {
    "block, dated": ({"horizon": 4, "series": [_series(i) for i in range(3)]}, True),
    "block, no dates, horizon 2": (
        {"horizon": 2, "series": [{"id": f"s-{i}", "values": [1.0] * 12} for i in range(2)]},
        True,
    ),
    "one quantile": ({"horizon": 3, "quantiles": [0.9], "series": [_series(0)]}, True),
    "quantiles out of order": (
        {"quantiles": [0.9, 0.1, 0.5], "series": [_series(0), _series(1)]},
        False,
    ),
    "ids to escape": (
        {"series": [_series(0, id='a "quoted" \\ id'), _series(1, id="pompe-\u00e9t\u00e9")]},
        False,
    ),
    "zoned and undated": (
        {
            "series": [
                _series(0, start="2024-03-31T00:00:00+00:00", timezone="Europe/London"),
                {"id": "no-dates", "values": [2.0] * 12},
            ]
        },
        False,
    ),
    "fractional seconds": ({"series": [_series(0, start="2024-03-01T00:00:00.25")]}, True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_answer_is_what_pydantic_writes(name: str) -> None:
    body, fast = CASES[name]
    prepared = _prepared(body, fast=fast)
    # both ways of writing timestamps are covered: a block's rows, and series one by one
    assert (prepared.block is None) == (name == "zoned and undated")
    result = _result(len(body["series"]), np.random.default_rng(len(name)))
    assert response_json(prepared, result) == _pydantic_answer(prepared, result)


def test_many_random_answers_agree() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 16, 40):
        prepared = _prepared({"series": [_series(i) for i in range(n)]}, fast=True)
        for _ in range(5):
            result = _result(n, rng)
            result *= 10.0 ** rng.integers(-30, 30, size=result.shape)  # every exponent form
            assert response_json(prepared, result) == _pydantic_answer(prepared, result)

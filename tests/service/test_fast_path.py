"""The /forecast hot path's shortcuts agree with the slow, obvious path they replace.

- `service.fast_path.fast_request` (parsed JSON -> arrays, no pydantic) accepts only bodies
  the `ForecastRequest` schema accepts, reads them into the same values, and leaves every
  other body (None) to the schema, so rejections keep the schema's 422s.
- `validation._prepare_bulk` (all series of a request at once) gives the arrays, dates and
  scaling of `_prepare_series` one by one, and any failure falls back to the per-series path
  (same message, same series named).
- The route's fast path answers exactly what FastAPI's path answers.
- Forecast timestamps (cached per row) are pandas' isoformat text.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.errors import ServiceInputError
from service.fast_path import BlockRequest, FastRequest, fast_request
from service.forecasting import iso_timestamps
from service.schemas import ForecastRequest
from service.served import ColumnScales, ServedModel, parse_offset
from service.validation import Dates, SeriesInput, _prepare_bulk, _prepare_series, prepare
from tests.service.conftest import Registry, history

Body = dict[str, Any]


def _series(i: int = 0, n: int = 12, **extra: Any) -> Body:
    return {
        "id": f"s-{i}",
        "start": "2024-03-01T00:00:00",
        "freq": "h",
        "values": [float(10 + i + k % 5) for k in range(n)],
        **extra,
    }


def _body(**extra: Any) -> Body:
    return {"horizon": 4, "series": [_series(0), _series(1)], **extra}


def _with(change: Any) -> Body:
    body = _body()
    change(body)
    return body


def _s1(key: str, value: Any) -> Any:
    def apply(body: Body) -> None:
        body["series"][1][key] = value

    return apply


def _value(position: int, value: Any) -> Any:
    def apply(body: Body) -> None:
        body["series"][1]["values"][position] = value

    return apply


BODIES: dict[str, Any] = {
    "plain": _body(),
    "ints among floats": _with(_value(3, 7)),
    "all ints": _with(_s1("values", list(range(12)))),
    "bool among floats": _with(_value(3, True)),
    "all bools": _with(_s1("values", [True] * 12)),
    "NaN": _with(_value(2, float("nan"))),
    "inf": _with(_value(2, float("inf"))),
    "null": _with(_value(2, None)),
    "numeric string": _with(_value(2, "1.5")),
    "word": _with(_value(2, "abc")),
    "nested list": _with(_value(2, [1.0])),
    "2-D values": _with(_s1("values", [[1.0, 2.0]] * 6)),
    "huge int": _with(_value(2, 10**400)),
    "big int": _with(_value(2, 2**70)),
    # uint64 alone, float64 beside the other series' floats: read alike (was a 500)
    "ints past int64": _with(_s1("values", [2**63] * 12)),
    "empty values": _with(_s1("values", [])),
    "values not a list": _with(_s1("values", 3.0)),
    "no values": _with(lambda b: b["series"][1].pop("values")),
    "no id": _with(lambda b: b["series"][1].pop("id")),
    "int id": _with(_s1("id", 7)),
    "empty id": _with(_s1("id", "")),
    "long id": _with(_s1("id", "x" * 257)),
    "id of 256": _with(_s1("id", "x" * 256)),
    "unknown series key": _with(_s1("colour", "red")),
    "unknown top key": _body(colour="red"),
    "date-only start": _with(_s1("start", "2024-03-01")),
    "zoned start": _with(_s1("start", "2024-03-01T00:00:00+02:00")),
    "unix start text": _with(_s1("start", "1700000000")),
    "bad start": _with(_s1("start", "yesterday")),
    "numeric start": _with(_s1("start", 1700000000)),
    "null start": _with(_s1("start", None)),
    "int freq": _with(_s1("freq", 60)),
    "timestamps": _with(
        lambda b: b["series"][1].update(
            timestamps=[t.isoformat() for t in pd.date_range("2024-03-01", periods=12, freq="h")]
        )
    ),
    "bad timestamp": _with(_s1("timestamps", ["2024-03-01T00:00:00", "never"])),
    "covariates": _with(_s1("covariates", {"x": [1.0] * 12})),
    "flag covariate": _with(_s1("covariates", {"x": [True, False] * 6})),
    "bool among covariate": _with(_s1("covariates", {"x": [True, *[0.5] * 11]})),
    "covariate null": _with(_s1("covariates", {"x": [1.0, None]})),
    "covariates null": _with(_s1("covariates", None)),
    "empty covariate": _with(_s1("covariates", {"x": []})),
    "horizon null": _body(horizon=None),
    "horizon 0": _body(horizon=0),
    "horizon float": _body(horizon=4.0),
    "horizon text": _body(horizon="4"),
    "horizon bool": _body(horizon=True),
    "quantiles": _body(quantiles=[0.1, 1]),
    "quantiles empty": _body(quantiles=[]),
    "quantile bool": _body(quantiles=[True]),
    "quantile text": _body(quantiles=["0.1"]),
    "series empty": {"series": []},
    "series missing": {"horizon": 3},
    "series not a list": {"series": {"id": "a"}},
    "series item not a dict": {"series": [1]},
    "not a dict": [1, 2],
}


def _schema(body: Any) -> ForecastRequest | None:
    try:
        return ForecastRequest.model_validate(body)
    except ValidationError:
        return None


@pytest.mark.parametrize("name", list(BODIES))
def test_fast_path_accepts_only_what_the_schema_accepts_and_reads_the_same(name: str) -> None:
    body = copy.deepcopy(BODIES[name])
    schema, fast = _schema(copy.deepcopy(body)), fast_request(body)
    if schema is None:
        assert fast is None, "the fast path accepted a body the schema rejects"
        return
    if fast is None:  # left to the schema: always allowed
        return
    assert isinstance(fast, FastRequest | BlockRequest)
    assert (fast.horizon, fast.quantiles) == (schema.horizon, schema.quantiles)
    if isinstance(fast, BlockRequest):  # plain series as one block: the same numbers and dates
        block = fast.block
        assert block.ids == [s.id for s in schema.series]
        assert block.freqs == [s.freq for s in schema.series]
        expected = np.array([np.asarray(s.values, dtype=np.float64) for s in schema.series])
        np.testing.assert_array_equal(block.values, expected)
        assert block.values.dtype == np.float64
        starts = [s.start for s in schema.series]
        if block.start_ns is None:
            assert starts == [None] * len(starts)
        else:
            assert block.start_ns.tolist() == [pd.Timestamp(s).value for s in starts if s]
    assert len(fast.series) == len(schema.series)
    for mine, theirs in zip(fast.series, schema.series, strict=True):
        assert (mine.id, mine.start, mine.freq, mine.timestamps) == (
            theirs.id,
            theirs.start,
            theirs.freq,
            theirs.timestamps,
        )
        assert mine.values.dtype == np.float64
        np.testing.assert_array_equal(mine.values, np.asarray(theirs.values, dtype=np.float64))
        assert mine.covariates.keys() == theirs.covariates.keys()
        for key, column in mine.covariates.items():
            np.testing.assert_array_equal(column, np.asarray(theirs.covariates[key], float))


def test_bools_are_found_among_exact_zeros_and_ones_in_any_series_or_covariate() -> None:
    plain = fast_request(copy.deepcopy(BODIES["covariates"]))
    assert plain is not None
    for where in ("values", "covariates"):
        body = copy.deepcopy(BODIES["covariates"])
        body["series"][0]["values"][4] = 1  # an int 1 is a number: stays on the fast path
        assert fast_request(copy.deepcopy(body)) is not None
        if where == "values":
            body["series"][1]["values"][5] = False
        else:
            body["series"][1]["covariates"]["x"][11] = True
        assert fast_request(body) is None, where


def test_fast_path_takes_the_common_bodies() -> None:
    for name in ("plain", "ints among floats", "all ints", "NaN", "inf", "covariates"):
        assert fast_request(copy.deepcopy(BODIES[name])) is not None, name
    assert fast_request(_body(quantiles=[0.1, 0.9])) is not None
    # plain histories of one length come as one block, as a plain Arrow table does
    for name in ("plain", "ints among floats", "all ints", "NaN", "inf", "id of 256"):
        assert isinstance(fast_request(copy.deepcopy(BODIES[name])), BlockRequest), name
    for name in ("covariates", "timestamps", "zoned start", "date-only start", "null start"):
        assert not isinstance(fast_request(copy.deepcopy(BODIES[name])), BlockRequest), name
    ragged = _body()
    ragged["series"][1]["values"] = ragged["series"][1]["values"][:-1]
    assert isinstance(fast_request(ragged), FastRequest)  # lengths differ: one by one


# -----------------------------------------------------------------------------
# Bulk preparation against the per-series path


@dataclass
class StubModel:
    """What `prepare` reads of a ServedModel, for a model without covariates or calendar."""

    lookback: int = 8
    max_horizon: int = 4
    freq: str = "h"
    target: str = "y"
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    covariates: tuple[str, ...] = ()
    known_covariates: tuple[str, ...] = ()
    needs_dates: bool = False
    calendar_clock: str = "local"
    per_series: bool = False
    stats: ColumnScales = field(
        default_factory=lambda: ColumnScales(10.0, 2.0, np.zeros(0), np.ones(0))
    )

    @property
    def offset(self) -> Any:
        return parse_offset(self.freq)

    @property
    def global_scales(self) -> ColumnScales | None:
        return None if self.per_series else self.stats

    def calendar_zone(self, tz: Any) -> Any:
        return None if self.calendar_clock == "utc" else tz

    def scales_for(self, series_id: str) -> ColumnScales | None:
        if self.per_series:  # a scaler that knows only s-0
            return self.stats if series_id == "s-0" else None
        return self.stats

    def unknown_covariates_problem(self, unknown: list[str]) -> str:
        return ServedModel.unknown_covariates_problem(cast(ServedModel, self), unknown)


def _as_model(stub: StubModel) -> ServedModel:
    return cast(ServedModel, stub)


def _dates_equal(a: Dates | None, b: Dates | None) -> None:
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        np.testing.assert_array_equal(a.history_ns, b.history_ns)
        np.testing.assert_array_equal(a.window_ns, b.window_ns)
        assert (a.tz, a.lookback) == (b.tz, b.lookback)


@pytest.mark.parametrize("dated", [True, False])
@pytest.mark.parametrize("fast", [True, False])
def test_bulk_prepare_equals_series_by_series(dated: bool, fast: bool) -> None:
    model = _as_model(StubModel())
    series = [_series(i) for i in range(5)]
    for k, item in enumerate(series):
        item["values"] = list(np.random.default_rng(k).normal(10, 3, 12))
        if not dated:
            item.pop("start")
    body = {"series": series}
    request = fast_request(body) if fast else ForecastRequest.model_validate(body)
    assert request is not None
    inputs: Sequence[SeriesInput] = request.series
    block = _prepare_bulk(inputs, model)
    assert block is not None, "the common request should take the bulk path"
    prepared, target = block.series(), block.target
    assert target.shape == (5, 8) and target.dtype == np.float32
    for i, (mine, one) in enumerate(zip(prepared, inputs, strict=True)):
        theirs = _prepare_series(i, one, model)
        assert (mine.index, mine.id) == (theirs.index, theirs.id)
        np.testing.assert_array_equal(mine.values, theirs.values)
        np.testing.assert_array_equal(mine.target, theirs.target)
        np.testing.assert_array_equal(target[i], theirs.target)
        assert mine.target.dtype == theirs.target.dtype == np.float32
        assert (mine.target_mean, mine.target_scale) == (theirs.target_mean, theirs.target_scale)
        assert mine.drift_inputs.keys() == theirs.drift_inputs.keys()
        for key in mine.drift_inputs:
            np.testing.assert_array_equal(mine.drift_inputs[key], theirs.drift_inputs[key])
        _dates_equal(mine.dates, theirs.dates)


BULK_FAILURES: dict[str, tuple[Any, str]] = {
    "NaN": (_value(5, float("nan")), "series 1 ('s-1'), field 'values': holds NaN at position 5"),
    "inf": (_value(5, float("inf")), "series 1 ('s-1'), field 'values': holds inf at position 5"),
    "null": (_value(5, None), "series 1 ('s-1'), field 'values': holds null at position 5"),
    "too short": (
        _s1("values", [1.0] * 5),
        "series 1 ('s-1'), field 'values': has 5 values; the model needs at least lookback=8",
    ),
    "float32 overflow": (
        _value(-1, 1e300),
        "series 1 ('s-1'), field 'values': holds values too large for the model once scaled",
    ),
    "other freq": (_s1("freq", "D"), "series 1 ('s-1'), field 'freq': 'D' is not the model's"),
    "past the calendar": (
        _s1("start", "2262-04-11T20:00:00"),
        "series 1 ('s-1'), field 'start': 2262-04-11T20:00:00 is out of range: `start` must "
        "lie between",
    ),
    "start and timestamps": (
        _s1("timestamps", ["2024-03-01T00:00:00"] * 12),
        "series 1 ('s-1'), field 'timestamps': give either `start` or `timestamps`",
    ),
}


@pytest.mark.parametrize("name", list(BULK_FAILURES))
def test_bulk_failures_answer_the_per_series_error(name: str) -> None:
    change, message = BULK_FAILURES[name]
    body = _with(change)
    request = fast_request(copy.deepcopy(body)) or ForecastRequest.model_validate(body)
    assert _prepare_bulk(request.series, _as_model(StubModel())) is None
    with pytest.raises(ServiceInputError) as error:
        prepare(request, _as_model(StubModel()))
    assert message in str(error.value)


def test_bulk_leaves_unusual_requests_to_the_per_series_path() -> None:
    model = _as_model(StubModel())
    mixed = _with(lambda b: b["series"][1].pop("start"))  # one dated, one not
    zoned = _with(_s1("start", "2024-03-01T00:00:00+02:00"))
    lengths = _with(_s1("values", [1.0] * 13))
    for body in (mixed, zoned, lengths):
        request = fast_request(body)
        assert request is not None
        assert _prepare_bulk(request.series, model) is None
        assert len(prepare(request, model).series) == 2  # and the per-series path serves them
    unknown = fast_request(_body())
    assert unknown is not None
    with pytest.raises(ServiceInputError, match="series 1 \\('s-1'\\), field 'id'"):
        prepare(unknown, _as_model(StubModel(per_series=True)))


# -----------------------------------------------------------------------------
# Timestamps and the route


def test_iso_timestamps_are_pandas_isoformat() -> None:
    def dates(start: str, freq: str, tz: str | None = None) -> Dates:
        index = pd.date_range(start, periods=10, freq=freq, tz=tz).as_unit("ns")
        return Dates(index.asi8[:4], index.asi8, index.tz, 4)

    cases = [
        dates("2024-03-01", "h"),
        dates("2024-03-01 00:00:00.25", "1500ms"),  # fractions of a second
        dates("2024-03-30", "h", "Europe/Paris"),  # zoned, across a DST change
        dates("2024-03-01", "h"),  # a row seen before (cached)
    ]
    out = iso_timestamps([*cases, None], 5)
    assert out[-1] is None
    for d, text in zip(cases, out, strict=False):
        index = pd.DatetimeIndex(d.future_ns[:5].view("datetime64[ns]"))
        if d.tz is not None:
            index = index.tz_localize("UTC").tz_convert(d.tz)
        assert list(text or []) == [t.isoformat() for t in index]


def test_fast_route_answers_what_the_schema_route_answers(
    client: TestClient, registry: Registry
) -> None:
    series = [history(registry.frame, "pump-1"), history(registry.frame, "pump-2", stop=150)]
    fast = client.post("/forecast", json={"horizon": 5, "series": series})
    # horizon 5.0: the fast path leaves it to the schema, which reads it as 5
    slow = client.post("/forecast", json={"horizon": 5.0, "series": series})
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    # NaN is not JSON orjson reads: FastAPI's path, same 422 as before
    text = json.dumps({"series": [series[0], {**series[1], "values": [float("nan")] * 60}]})
    bad = client.post("/forecast", content=text, headers={"content-type": "application/json"})
    assert bad.status_code == 422
    assert "series 1 ('pump-2'), field 'values': holds NaN at position 0" in bad.json()["detail"]
    # a JSON-like content type is FastAPI's business as before; a body neither JSON nor Arrow
    # is refused by type (415, test_arrow.py) rather than read as a malformed object
    merge = client.post(
        "/forecast", content=text, headers={"content-type": "application/merge+json"}
    )
    assert merge.status_code == 422
    assert "holds NaN at position 0" in merge.json()["detail"]
    other = client.post("/forecast", content=text, headers={"content-type": "text/plain"})
    assert other.status_code == 415


def test_covariates_null_is_read_as_absent_by_both_readers() -> None:
    """`"covariates": null` was a 422 ("field 'covariates': ...") while a null `start`,
    `freq`, `timestamps` or `timezone` is absent, as a null covariates cell of an Arrow body."""
    body = _with(_s1("covariates", None))
    schema = ForecastRequest.model_validate(copy.deepcopy(body))
    assert schema.series[1].covariates == {}
    fast = fast_request(copy.deepcopy(body))
    assert isinstance(fast, BlockRequest)  # plain histories: the block, as when left out
    assert fast.series[1].covariates == {}
    mixed = _with(_s1("covariates", None))
    mixed["series"][0]["covariates"] = {"x": [1.0] * 12}
    rows = fast_request(mixed)
    assert isinstance(rows, FastRequest)
    assert rows.series[1].covariates == {} and list(rows.series[0].covariates) == ["x"]


@pytest.mark.parametrize("reads_x", [False, True], ids=["no-covariates", "covariate-x"])
def test_covariates_null_answers_what_leaving_it_out_answers(
    registry: Registry, client_for: Callable[..., TestClient], reads_x: bool
) -> None:
    """On the fast path (application/json) and FastAPI's (application/merge+json, which the
    fast path leaves alone): the same bytes as a body without the field; a 200 from a model
    that reads no covariates, the missing-covariate 422 from one that reads x."""
    if reads_x:
        client = client_for()
    else:
        name = "covariates-null"
        assert registry.register(name, seed=4, covariates=False) == "1"
        client = client_for(model_uri=f"models:/{name}@champion")
    left_out = []
    for i, stop in enumerate((500, 480)):
        series = history(registry.frame, f"pump-{i}", stop=stop)
        series.pop("covariates")
        left_out.append(series)
    given_null = [{**series, "covariates": None} for series in left_out]
    answers = [
        client.post(
            "/forecast", content=json.dumps({"series": series}), headers={"content-type": kind}
        )
        for series in (left_out, given_null)
        for kind in ("application/json", "application/merge+json")
    ]
    expected = 422 if reads_x else 200
    assert [answer.status_code for answer in answers] == [expected] * 4, answers[-1].text
    assert len({answer.content for answer in answers}) == 1
    if reads_x:
        assert "covariate" in answers[0].json()["detail"]


def test_start_datetime_is_pydantics(client: TestClient) -> None:
    request = fast_request(_body())
    assert request is not None
    assert request.series[0].start == datetime(2024, 3, 1)

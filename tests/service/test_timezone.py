"""`timezone` on POST /forecast (and the pyfunc's `timezone` column): a local-clock calendar
model across Europe/London's spring-forward reads the wall-clock hours, its forecast steps are
dated on that clock with their offsets, bad names and naive times that a daylight-saving change
skips or repeats are 422s, and a request without `timezone` is read as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from models.forecaster import calendar_features
from service.arrow_io import ARROW_STREAM, request_stream
from service.errors import ServiceInputError
from service.fast_path import fast_request
from service.forecasting import iso_timestamps
from service.schemas import ForecastRequest
from service.validation import PreparedRequest, PreparedSeries, prepare
from tests.service.conftest import Registry, history
from tests.service.test_contract import state_of
from tests.service.test_fast_path import StubModel, _as_model
from tests.training.test_registry import HORIZON, LOOKBACK
from training.mlflow_model import ForecastInputError, signature_for

LONDON = "Europe/London"
# 31 March 2024, 01:00 UTC: London's clocks go from 01:00 (GMT, +00:00) to 02:00 (BST, +01:00).
# The stub model reads 8 hours and forecasts 4: 20:00 UTC on the 30th to 07:00 UTC on the 31st.
INSTANTS = pd.date_range("2024-03-30T20:00", periods=12, freq="h", tz="UTC")
WALL = INSTANTS.tz_convert(LONDON)  # 20 21 22 23 00 02 03 04 | 05 06 07 08


def _features(stamps: pd.DatetimeIndex) -> np.ndarray:
    """The calendar inputs of naive wall-clock times, as the model gets them."""
    return calendar_features(stamps.tz_localize(None), "h").astype(np.float32)


def _prepared(body: dict[str, Any], **model: Any) -> PreparedRequest:
    """The body through the schema: with a `timezone` the fast path steps aside."""
    if "timezone" in body or any("timezone" in s for s in body["series"]):
        assert fast_request(body) is None
    stub = StubModel(**{"needs_dates": True, **model})
    return prepare(ForecastRequest.model_validate(body), _as_model(stub))


def _one(body: dict[str, Any], **model: Any) -> PreparedSeries:
    (one,) = _prepared(body, **model).series
    return one


def _error(body: dict[str, Any], **model: Any) -> str:
    with pytest.raises(ServiceInputError) as caught:
        _prepared(body, **model)
    return str(caught.value)


def _series(**fields: Any) -> dict[str, Any]:
    return {"id": "a", "values": [float(v) for v in range(8)], **fields}


def _isos(stamps: pd.DatetimeIndex) -> list[str]:
    return [t.isoformat() for t in stamps]


def _answered(one: PreparedSeries) -> list[str]:
    """The forecast timestamps the answer carries for `one` (4 steps)."""
    assert one.dates is not None
    (stamps,) = iso_timestamps([one.dates], 4)
    assert stamps is not None
    return list(stamps)


SAME_HOURS = {
    "a fixed offset, the request's zone": {
        "timezone": LONDON,
        "series": [_series(start="2024-03-30T20:00:00+00:00")],
    },
    "a naive start, the series' zone": {
        "series": [_series(start="2024-03-30T20:00:00", timezone=LONDON)],
    },
    "the series' zone over the request's": {
        "timezone": "America/New_York",
        "series": [_series(start="2024-03-30T20:00:00", timezone=LONDON)],
    },
    "naive wall-clock timestamps (01:00 skipped)": {
        "timezone": LONDON,
        "series": [_series(timestamps=_isos(WALL[:8].tz_localize(None)))],
    },
    "timestamps whose offsets change": {
        "timezone": LONDON,
        "series": [_series(timestamps=_isos(WALL[:8]))],
    },
    "UTC timestamps": {
        "timezone": LONDON,
        "series": [_series(timestamps=_isos(INSTANTS[:8]))],
    },
}


@pytest.mark.parametrize("body", SAME_HOURS.values(), ids=SAME_HOURS.keys())
def test_a_local_clock_model_reads_london_wall_hours_across_spring_forward(
    body: dict[str, Any],
) -> None:
    one = _one(body)
    assert one.dates is not None and str(one.dates.tz) == LONDON
    np.testing.assert_array_equal(one.dates.window_ns, INSTANTS.as_unit("ns").asi8)
    assert one.past_calendar is not None and one.future_calendar is not None
    # 00:00, then 02:00: the hour after the change is the clock's, not 01:00
    np.testing.assert_allclose(one.past_calendar, _features(WALL[:8]))
    np.testing.assert_allclose(one.future_calendar, _features(WALL[8:]))
    assert list(WALL[3:8].hour) == [23, 0, 2, 3, 4]
    assert _answered(one) == [
        "2024-03-31T05:00:00+01:00",
        "2024-03-31T06:00:00+01:00",
        "2024-03-31T07:00:00+01:00",
        "2024-03-31T08:00:00+01:00",
    ]


def test_without_a_zone_a_fixed_offset_reads_the_hours_after_the_change_one_off() -> None:
    """What the field is for, and that a body without it is read as before."""
    body = {"series": [_series(start="2024-03-30T20:00:00+00:00")]}
    one = _one(body)
    assert one.dates is not None and str(one.dates.tz) == "UTC"
    assert one.past_calendar is not None
    np.testing.assert_allclose(one.past_calendar, _features(INSTANTS[:8]))  # 01:00, not 02:00
    assert not np.allclose(one.past_calendar, _features(WALL[:8]))
    assert _answered(one)[0] == "2024-03-31T04:00:00+00:00"


def test_a_body_without_a_zone_keeps_the_fast_path_and_a_null_zone_changes_nothing() -> None:
    body = {"series": [_series(start="2024-03-30T20:00:00")]}
    assert fast_request(body) is not None
    plain = _one(body)
    for nulls in (
        {"timezone": None, "series": body["series"]},
        {"series": [{**body["series"][0], "timezone": None}]},
    ):
        assert fast_request(nulls) is None  # the schema reads it: null is no zone
        same = _one(nulls)
        assert same.dates is not None and plain.dates is not None and same.dates.tz is None
        np.testing.assert_array_equal(same.dates.window_ns, plain.dates.window_ns)
        assert same.past_calendar is not None and plain.past_calendar is not None
        np.testing.assert_array_equal(same.past_calendar, plain.past_calendar)


def test_a_utc_model_reads_utc_hours_of_local_times() -> None:
    one = _one(
        {"series": [_series(start="2024-03-30T20:00:00", timezone=LONDON)]},
        calendar_clock="utc",
    )
    assert one.past_calendar is not None and one.dates is not None
    np.testing.assert_allclose(one.past_calendar, _features(INSTANTS[:8]))
    assert _answered(one)[0] == "2024-03-31T05:00:00+01:00"  # dated on the zone's clock


def test_a_daily_model_steps_local_midnights_across_the_change() -> None:
    """Calendar days of the zone (23 hours on the day of the change), from ISO texts whose
    offsets change: without the zone they are refused (they name no zone)."""
    midnights = pd.date_range("2024-03-26", periods=12, freq="D", tz=LONDON)
    series = _series(values=list(range(8)), timestamps=_isos(midnights[:8]))
    assert "different UTC offsets" in _error({"series": [series]}, freq="D")
    one = _one({"timezone": LONDON, "series": [series]}, freq="D")
    assert one.dates is not None
    np.testing.assert_array_equal(one.dates.window_ns, midnights.as_unit("ns").asi8)
    assert _answered(one)[:2] == ["2024-04-03T00:00:00+01:00", "2024-04-04T00:00:00+01:00"]


AMBIGUOUS = (
    "2024-10-27T01:30:00 is ambiguous in Europe/London: a daylight-saving change shows it twice "
    "on the clocks there (2024-10-27T01:30:00+01:00 and 2024-10-27T01:30:00+00:00); give it with "
    "its UTC offset"
)
SKIPPED = (
    "2024-03-31T01:00:00 does not exist in Europe/London: a daylight-saving change skips it on "
    "the clocks there; give a time that does, or the time with its UTC offset"
)


def test_a_naive_time_a_change_repeats_or_skips_is_refused_not_guessed() -> None:
    ambiguous = {"timezone": LONDON, "series": [_series(start="2024-10-27T01:30:00")]}
    assert _error(ambiguous) == f"series 0 ('a'), field 'start': {AMBIGUOUS}"
    skipped = {"series": [_series(id="b", start="2024-03-31T01:00:00", timezone=LONDON)]}
    assert _error(skipped) == f"series 0 ('b'), field 'start': {SKIPPED}"
    # with its offset the same time is one instant
    assert _one({**ambiguous, "series": [_series(start="2024-10-27T01:30:00+00:00")]}).dates
    # a wall clock that goes back repeats an hour: naive timestamps cannot say which is which
    autumn = pd.date_range("2024-10-26T18:00", periods=8, freq="h")
    stamps = _isos(autumn)  # 18:00 ... 01:00 on the 27th
    message = _error({"timezone": LONDON, "series": [_series(timestamps=stamps)]})
    assert message == (
        "series 0 ('a'), field 'timestamps': position 7: 2024-10-27T01:00:00 is ambiguous in "
        "Europe/London: a daylight-saving change shows it twice on the clocks there "
        "(2024-10-27T01:00:00+01:00 and 2024-10-27T01:00:00+00:00); give it with its UTC offset"
    )


@pytest.mark.parametrize(
    "name", ["Europe/Londn", "localtime", "", "GMT+1", "zone.tab", "right/UTC", "x" * 300]
)
def test_a_bad_zone_name_is_refused_by_the_schema(name: str) -> None:
    for body in (
        {"timezone": name, "series": [_series()]},
        {"series": [_series(timezone=name)]},
    ):
        assert fast_request(body) is None
        with pytest.raises(ValidationError) as caught:
            ForecastRequest.model_validate(body)
        (error,) = caught.value.errors()
        assert error["loc"][-1] == "timezone"
        assert "must be an IANA time zone name such as 'Europe/London'" in error["msg"]


def test_the_arrow_helper_refuses_a_zone_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="names the zone"):
        request_stream([_series(start="2024-03-30T20:00:00", timezone=LONDON)])
    assert request_stream([_series(start="2024-03-30T20:00:00", timezone=None)])


# -----------------------------------------------------------------------------
# The service end to end, and the pyfunc, on a registered local-clock calendar model


@pytest.fixture
def calendar_client(client_for: Callable[..., TestClient], registry: Registry) -> TestClient:
    registry.register("tz-calendar-model", calendar=True, seed=3)
    return client_for(model_uri="models:/tz-calendar-model@champion")


def _london(registry: Registry, start: str) -> dict[str, Any]:
    """60 hours of the test frame, re-dated from `start` (+00:00: a fixed offset)."""
    return {**history(registry.frame, "ldn"), "start": start, "freq": "h"}


# The change falls in the history (at input 33), or on the first forecast step.
STARTS = {"in the history": "2024-03-29T16:00:00+00:00", "in the horizon": "2024-03-28T13:00:00"}


@pytest.mark.parametrize("start", STARTS.values(), ids=STARTS.keys())
def test_the_service_and_the_pyfunc_read_london_hours_across_spring_forward(
    calendar_client: TestClient,
    registry: Registry,
    start: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert calendar_client.get("/model").json()["calendar_clock"] == "local"
    served = state_of(calendar_client).manager.require()
    series = _london(registry, start)
    first = pd.Timestamp(start)
    first = first.tz_localize(LONDON) if first.tz is None else first
    wall = pd.date_range(first, periods=60 + HORIZON, freq="h").tz_convert(LONDON)
    assert wall[-HORIZON:][0].utcoffset() == pd.Timedelta(hours=1)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    forward = served.forward

    def recording(*inputs: Any) -> np.ndarray:
        seen.append((inputs[2], inputs[3]))
        return forward(*inputs)

    monkeypatch.setattr(served, "forward", recording)
    response = calendar_client.post("/forecast", json={"timezone": LONDON, "series": [series]})
    assert response.status_code == 200, response.text
    ((past, future),) = seen
    np.testing.assert_allclose(past[0], _features(wall[-HORIZON - LOOKBACK : -HORIZON]))
    np.testing.assert_allclose(future[0], _features(wall[-HORIZON:]))
    answer = response.json()["forecasts"][0]
    assert answer["timestamps"] == _isos(wall[-HORIZON:])
    assert all(stamp.endswith("+01:00") for stamp in answer["timestamps"])

    # the pyfunc, given the same zone as a column, reads the same clock and answers the same
    indexes: list[pd.DatetimeIndex] = []

    def recorded(index: pd.DatetimeIndex, freq: str) -> np.ndarray:
        indexes.append(index)
        return calendar_features(index, freq)

    monkeypatch.setattr("training.mlflow_model.calendar_features", recorded)
    row = {k: series[k] for k in ("id", "values", "start")}
    frame = pd.DataFrame([{**row, "x": series["covariates"]["x"], "timezone": LONDON}])
    expected = served.predictor.predict_frame(frame)
    (index,) = indexes
    assert list(index.hour) == list(wall[-HORIZON - LOOKBACK :].hour)
    assert expected["timestamp"].tolist() == answer["timestamps"]
    np.testing.assert_allclose(answer["mean"], expected["mean"], rtol=1e-6, atol=1e-9)


def test_an_arrow_answer_carries_the_zone(calendar_client: TestClient, registry: Registry) -> None:
    series = _london(registry, "2024-03-29T16:00:00+00:00")
    body = {"timezone": LONDON, "horizon": 3, "series": [series]}
    json_answer = calendar_client.post("/forecast", json=body).json()["forecasts"][0]
    response = calendar_client.post("/forecast", json=body, headers={"accept": ARROW_STREAM})
    assert response.status_code == 200, response.text
    table = pa.ipc.open_stream(pa.py_buffer(response.content)).read_all()
    assert table.schema.field("timestamps").type == pa.list_(pa.timestamp("ns", tz=LONDON))
    stamps = table.column("timestamps").to_pylist()[0]
    assert [pd.Timestamp(t).isoformat() for t in stamps] == json_answer["timestamps"]


def test_the_service_refuses_bad_zones_and_ambiguous_times_with_the_field(
    calendar_client: TestClient, registry: Registry
) -> None:
    series = _london(registry, "2024-03-29T16:00:00")
    for body, detail in (
        (
            {"timezone": "Europe/Londn", "series": [series]},
            "field 'timezone': Value error, 'Europe/Londn' is not a time zone; it must be an "
            "IANA time zone name such as 'Europe/London'",
        ),
        (
            {"series": [{**series, "timezone": "London"}]},
            "series 0 ('ldn'), field 'timezone': Value error, 'London' is not a time zone; it "
            "must be an IANA time zone name such as 'Europe/London'",
        ),
        (
            {"timezone": LONDON, "series": [{**series, "start": "2024-10-27T01:30:00"}]},
            f"series 0 ('ldn'), field 'start': {AMBIGUOUS}",
        ),
    ):
        response = calendar_client.post("/forecast", json=body)
        assert response.status_code == 422, response.text
        assert response.json() == {"detail": detail}


def test_without_a_zone_the_service_answers_as_before(
    calendar_client: TestClient, registry: Registry
) -> None:
    series = _london(registry, "2024-03-29T16:00:00+00:00")
    answer = calendar_client.post("/forecast", json={"series": [series]}).json()["forecasts"][0]
    utc = pd.date_range("2024-03-29T16:00", periods=60 + HORIZON, freq="h", tz="UTC")
    assert answer["timestamps"] == _isos(utc[-HORIZON:])  # the offset as given: +00:00
    served = state_of(calendar_client).manager.require()
    row = {k: series[k] for k in ("id", "values", "start")}
    expected = served.predictor.predict_frame(
        pd.DataFrame([{**row, "x": series["covariates"]["x"]}])
    )
    np.testing.assert_allclose(answer["mean"], expected["mean"], rtol=1e-6, atol=1e-9)


def test_the_pyfunc_refuses_bad_zones_and_ambiguous_starts(
    calendar_client: TestClient, registry: Registry
) -> None:
    predictor = state_of(calendar_client).manager.require().predictor
    series = _london(registry, "2024-10-26T00:00:00")
    row = {"id": "p", "values": series["values"], "x": series["covariates"]["x"]}
    for start, zone, message in (
        (series["start"], "Europe/Londn", "series 'p': `timezone` 'Europe/Londn' is not a time"),
        (series["start"], 3, "series 'p': `timezone` 3 is not a text; it must be an IANA"),
        ("2024-10-27T01:30:00", LONDON, f"series 'p': `start` {AMBIGUOUS}"),
    ):
        with pytest.raises(ForecastInputError) as caught:
            predictor.predict_frame(pd.DataFrame([{**row, "start": start, "timezone": zone}]))
        assert str(caught.value).startswith(message)
    assert "timezone" in signature_for(["x"], [0.5]).inputs.input_names()


def test_openapi_describes_the_field(calendar_client: TestClient) -> None:
    schemas = calendar_client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("SeriesIn", "ForecastRequest"):
        field = schemas[name]["properties"]["timezone"]
        assert "IANA time zone name" in field["description"]
        assert "Europe/London" in field["description"]
        assert {"type": "string"} in field["anyOf"]
    assert "timezone" in schemas["ModelInfo"]["properties"]["calendar_clock"]["description"]

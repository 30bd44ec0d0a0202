"""`timezone` on POST /forecast (and the pyfunc's `timezone` column): a local-clock calendar
model across Europe/London's spring-forward reads the wall-clock hours, its forecast steps are
dated on that clock with their offsets, bad names and naive times that a daylight-saving change
skips or repeats are 422s, and a request without `timezone` is read as before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from models.forecaster import (
    ForecasterConfig,
    build_forecaster,
    calendar_features,
    n_calendar_features,
)
from service.arrow_io import ARROW_STREAM, request_stream
from service.errors import ServiceInputError
from service.fast_path import fast_request
from service.forecasting import iso_timestamps
from service.schemas import ForecastRequest
from service.validation import PreparedRequest, PreparedSeries, prepare
from tests.service.conftest import Registry, history
from tests.service.test_contract import state_of
from tests.service.test_fast_path import StubModel, _as_model
from tests.shared_data import SHARED_DATA, needs_shared
from tests.training.test_registry import HORIZON, LOOKBACK
from training.mlflow_model import ForecastInputError, ForecastPredictor, signature_for
from training.split import GLOBAL, ColumnScale, StandardScaler
from training.validation import local_steps, written_at_skipped_midnight

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


def test_local_midnights_written_in_utc_are_told_to_name_their_zone() -> None:
    """London's midnights as UTC texts (a database's export): 00:00Z until the change, then
    23:00Z. The daily model's 422 said "it is not on the model's grid: resample the history to
    the model's frequency", of a history that is daily already; the zone reads it (200)."""
    midnights = pd.date_range("2024-03-26", periods=8, freq="D", tz=LONDON).tz_convert("UTC")
    series = _series(timestamps=_isos(midnights))  # one offset, +00:00
    assert _error({"series": [series]}, freq="D") == (
        "series 0 ('a'), field 'timestamps': the last 8 must be spaced at the model's frequency "
        "'D'; position 6 is 2024-03-31T23:00:00+00:00, expected 2024-04-01T00:00:00+00:00; it "
        "is an hour earlier than the grid: local days (or weeks, months) across a "
        "daylight-saving change, written in UTC or one UTC offset? Name their zone in "
        "`timezone` (e.g. 'Europe/London'), or send them as naive local times, or as Arrow "
        "with the zone"
    )
    one = _one({"timezone": LONDON, "series": [series]}, freq="D")  # as it says
    assert _answered(one)[:1] == ["2024-04-03T00:00:00+01:00"]
    january = pd.date_range("2024-01-01", periods=8, freq="D", tz="UTC")
    odd = _series(
        timestamps=_isos(pd.DatetimeIndex(january[:5].append(january[5:] + pd.Timedelta(hours=3))))
    )
    assert _error({"series": [odd]}, freq="D").endswith(  # 3 hours off: no zone explains it
        "it is not on the model's grid: resample the history to the model's frequency"
    )


AMBIGUOUS = (
    "2024-10-27T01:30:00 is ambiguous in Europe/London: a daylight-saving change shows it twice "
    "on the clocks there (2024-10-27T01:30:00+01:00 and 2024-10-27T01:30:00+00:00); give it with "
    "its UTC offset"
)
SKIPPED = (
    "2024-03-31T01:00:00 does not exist in Europe/London: a daylight-saving change skips it on "
    "the clocks there; give a time that does, or the time with its UTC offset, the one before "
    "the change: 2024-03-31T01:00:00+00:00"
)


EVERY_OFFSET = (
    ", and every other timestamp with its own: timestamps must all carry a UTC offset or none"
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
        "(2024-10-27T01:00:00+01:00 and 2024-10-27T01:00:00+00:00); give it with its UTC "
        f"offset{EVERY_OFFSET}"
    )
    # a skipped one in a list: an offset on it alone was the next 422 (offsets all or none),
    # so the advice says to give every timestamp its own; followed, it is read
    # PJM's spring day: 01:00, which London's clocks skip, then 03:00 (hours ending there)
    spring = [*_isos(pd.date_range("2024-03-30T19:00", periods=7, freq="h")), "2024-03-31T03:00"]
    message = _error({"timezone": LONDON, "series": [_series(timestamps=spring)]})
    assert message == (f"series 0 ('a'), field 'timestamps': position 6: {SKIPPED}{EVERY_OFFSET}")
    spring[6] = "2024-03-31T01:00:00+00:00"
    assert "must all carry a UTC offset or none" in _error(
        {"timezone": LONDON, "series": [_series(timestamps=spring)]}
    )
    offsets = [f"{t}+00:00" for t in spring[:6]] + [spring[6]] + [f"{t}+01:00" for t in spring[7:]]
    assert _one({"timezone": LONDON, "series": [_series(timestamps=offsets)]}).dates


def test_naive_local_times_across_a_change_without_a_zone_are_told_what_it_is() -> None:
    """A meter's local-time export (PJM's) across a change, sent without `timezone`: the
    skipped hour was answered "a step is missing there: send the history ... filled as the
    training loader fills gaps" (a value for an hour that never was), and the repeated one
    "must be strictly increasing", neither saying what they are or that the zone places them."""
    spring = _isos(WALL[:8].tz_localize(None))  # 20:00 ... 00:00, 02:00, 03:00 (01:00 skipped)
    message = _error({"series": [_series(timestamps=spring)]})
    assert message.startswith(
        "series 0 ('a'), field 'timestamps': the last 8 must be spaced at the model's frequency "
        "'h'; position 5 is 2024-03-31T02:00:00, expected 2024-03-31T01:00:00; a step is "
        "missing there"
    )
    assert message.endswith(
        "; or, if these are local times and a daylight-saving change skipped that hour, name "
        "the zone (`timezone`, or an Arrow timestamp type with the zone) and send them as they "
        "are"
    )
    assert _one({"series": [_series(timestamps=spring, timezone=LONDON)]}).dates  # as it says
    two_missing = _isos(pd.date_range("2024-03-30T18:00", periods=10, freq="h").delete([6, 7]))
    two_hours = _error({"series": [_series(timestamps=two_missing)]})
    assert "a step is missing there" in two_hours and "daylight-saving" not in two_hours
    autumn = [*_isos(pd.date_range("2024-10-26T19:00", periods=7, freq="h")), "2024-10-27T01:00:00"]
    assert _error({"series": [_series(timestamps=autumn)]}) == (
        "series 0 ('a'), field 'timestamps': must be strictly increasing; position 7 "
        "(2024-10-27T01:00:00) is not after position 6 (2024-10-27T01:00:00); local times that "
        "a daylight-saving change repeats (the hour after it is written again)? Send them with "
        "their UTC offsets, and name the zone (`timezone`, or an Arrow timestamp type with the "
        "zone); or merge the rows of each repeated time as the training loader does (its "
        "duplicates policy: their mean by default), one row a step"
    )
    backwards = [*_isos(pd.date_range("2024-10-26T19:00", periods=7, freq="h")), "2024-10-26T20:00"]
    assert "daylight-saving" not in _error({"series": [_series(timestamps=backwards)]})


@needs_shared("PJM_hourly/DAYTON_hourly.csv")
def test_pjms_repeated_hour_is_refused_with_advice_that_places_it() -> None:
    """PJM writes the hour its clocks repeat as 02:00 twice (hours ending at the label), a time
    America/New_York does not repeat: the 422's only advice, UTC offsets and the zone, cannot
    be followed for it (pandas cannot infer the offsets), and a weekly client of the DAYTON
    export met it on 6 November 2016. The 422 also offers what the training loader did to the
    same rows (their mean), and that history is accepted."""
    raw = pd.read_csv(SHARED_DATA / "PJM_hourly" / "DAYTON_hourly.csv")
    rows = raw[(raw.Datetime >= "2016-11-05 20:00") & (raw.Datetime < "2016-11-06 06:00")]
    rows = rows.sort_values("Datetime", kind="stable")
    stamps = pd.DatetimeIndex(rows.Datetime)
    assert stamps.duplicated().sum() == 1 and stamps[stamps.duplicated()][0].hour == 2
    body = {"id": "DAYTON", "timestamps": _isos(stamps), "values": rows.DAYTON_MW.tolist()}
    message = _error({"series": [body]})
    assert message.endswith(
        "; or merge the rows of each repeated time as the training loader does (its "
        "duplicates policy: their mean by default), one row a step"
    )
    with pytest.raises(Exception, match="Cannot infer dst time"):
        stamps.tz_localize("America/New_York", ambiguous="infer")
    merged = rows.groupby("Datetime").DAYTON_MW.mean()
    one = _one(
        {
            "series": [
                {
                    **body,
                    "timestamps": _isos(pd.DatetimeIndex(merged.index)),
                    "values": merged.tolist(),
                }
            ]
        }
    )
    assert _answered(one)[0] == "2016-11-06T06:00:00"


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
            "field 'timezone': 'Europe/Londn' is not a time zone; it must be an "
            "IANA time zone name such as 'Europe/London'",
        ),
        (
            {"series": [{**series, "timezone": "London"}]},
            "series 0 ('ldn'), field 'timezone': 'London' is not a time zone; it "
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
    assert "timezone" in signature_for(["x"], [0.5], 24).inputs.input_names()


def test_openapi_describes_the_field(calendar_client: TestClient) -> None:
    schemas = calendar_client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("SeriesIn", "ForecastRequest"):
        field = schemas[name]["properties"]["timezone"]
        assert "IANA time zone name" in field["description"]
        assert "Europe/London" in field["description"]
        assert {"type": "string"} in field["anyOf"]
    assert "timezone" in schemas["ModelInfo"]["properties"]["calendar_clock"]["description"]


# -----------------------------------------------------------------------------
# Zones whose daylight-saving change falls at midnight: a daily model's steps are local days,
# the midnight a change skips is the first instant after the gap, a repeated one the earlier


DAILY = {"freq": "D", "lookback": 8, "max_horizon": 7}
# (zone, start, the day of the change, its step): 14 values from `start`, then 7 forecast steps
MIDNIGHTS = {
    "Santiago, in the history": (
        "America/Santiago", "2024-08-26", "2024-09-08", "2024-09-08T01:00:00-03:00"),
    "Santiago, in the horizon": (
        "America/Santiago", "2024-08-20", "2024-09-08", "2024-09-08T01:00:00-03:00"),
    "Havana, spring": ("America/Havana", "2024-02-26", "2024-03-10", "2024-03-10T01:00:00-04:00"),
    "Havana, autumn": ("America/Havana", "2024-10-24", "2024-11-03", "2024-11-03T00:00:00-04:00"),
    "Asuncion": ("America/Asuncion", "2024-09-24", "2024-10-06", "2024-10-06T01:00:00-03:00"),
    "Beirut": ("Asia/Beirut", "2024-03-20", "2024-03-31", "2024-03-31T01:00:00+03:00"),
    "Cairo": ("Africa/Cairo", "2024-04-16", "2024-04-26", "2024-04-26T01:00:00+03:00"),
}  # fmt: skip


def _local_midnights(zone: str, start: str, periods: int) -> pd.DatetimeIndex:
    """The zone's midnights by Python's own rule (PEP 495, fold=0): a midnight in a one-hour
    gap is read with the offset before it, which is the instant the gap ends; a repeated one
    is the earlier of its two instants."""
    tz = ZoneInfo(zone)
    days = pd.date_range(start, periods=periods, freq="D")
    instants = [day.to_pydatetime().replace(tzinfo=tz).astimezone(UTC) for day in days]
    return pd.DatetimeIndex(instants).as_unit("ns").tz_convert(zone)


def _daily(zone: str, **fields: Any) -> dict[str, Any]:
    return {"timezone": zone, "series": [_series(values=list(range(14)), **fields)]}


@pytest.mark.parametrize(("zone", "start", "day", "step"), MIDNIGHTS.values(), ids=MIDNIGHTS.keys())
def test_a_daily_model_steps_local_days_where_the_change_falls_at_midnight(
    zone: str, start: str, day: str, step: str
) -> None:
    """Pandas refused these (`... is a nonexistent time`, `Cannot infer dst time`): the
    midnight a change skips is the first instant of that day, a repeated one the earlier."""
    expected = _local_midnights(zone, start, 14 + 7)
    assert step in _isos(expected)  # the oracle agrees with the stated policy
    offset_start = expected[0].isoformat()  # the same start with its offset
    for body in (_daily(zone, start=start), _daily(zone, start=offset_start)):
        one = _one(body, **DAILY)
        assert one.dates is not None and str(one.dates.tz) == zone
        np.testing.assert_array_equal(one.dates.history_ns, expected[:14].asi8)
        np.testing.assert_array_equal(one.dates.window_ns, expected[14 - 8 :].asi8)
        assert _answered(one)[:4] == _isos(expected[14:18])
        # the calendar features are those of the local days, the day of the change included
        local_days = pd.date_range(start, periods=14 + 7, freq="D")
        features = calendar_features(local_days[14 - 8 :], "D").astype(np.float32)
        assert one.past_calendar is not None and one.future_calendar is not None
        np.testing.assert_allclose(one.past_calendar, features[:8])
        np.testing.assert_allclose(one.future_calendar, features[8:])
    hours = np.diff(expected.asi8) / 3.6e12
    assert set(hours) <= {23.0, 24.0, 25.0} and (hours != 24).sum() == 1


def test_the_steps_laid_by_the_service_come_back_as_one_series() -> None:
    """The answer's steps sent back as zoned timestamps (the window starting on the day whose
    midnight was skipped, at 01:00 -03:00) are on the grid, and give the same steps as
    `start`: the timestamps after it show that instant is the day's midnight step. A `start`
    given at that instant, written at 01:00, has nothing after it and is read as written: a
    series at 01:00 (whose timestamps are on the grid too). Written as Python writes that
    midnight, 00:00 -04:00, it is the midnight step
    (test_a_start_written_as_the_skipped_midnight_starts_a_midnight_series)."""
    zone = "America/Santiago"
    expected = _local_midnights(zone, "2024-09-02", 14 + 7)
    assert expected[6].isoformat() == "2024-09-08T01:00:00-03:00"  # the window's first input
    from_start = _one(_daily(zone, start="2024-09-02"), **DAILY)
    from_stamps = _one(_daily(zone, timestamps=_isos(expected[:14])), **DAILY)
    on_its_own = _one(_daily(zone, start="2024-09-08T01:00:00-03:00"), **DAILY)
    for one in (from_start, from_stamps):
        assert one.dates is not None
        np.testing.assert_array_equal(one.dates.window_ns, expected[6:].asi8)
    assert _answered(on_its_own)[0] == "2024-09-22T01:00:00-03:00"  # as written
    at_one = pd.date_range("2024-09-08T01:00", periods=14, freq="D", tz=zone)
    assert at_one[1].isoformat() == "2024-09-09T01:00:00-03:00"
    read_at_one = _one(_daily(zone, timestamps=_isos(at_one)), **DAILY)
    assert _answered(read_at_one)[0] == "2024-09-22T01:00:00-03:00"


# The zones above whose change skips a midnight: (zone, that day)
SKIPPED_MIDNIGHTS = {
    f"{zone}, {day}": (zone, day)
    for zone, _, day, step in MIDNIGHTS.values()
    if not step.startswith(f"{day}T00:00")
}


def _python_midnight(zone: str, day: str) -> str:
    """The day's midnight as Python writes it (PEP 495): a skipped one with the offset before
    the change, Santiago's 2024-09-08T00:00:00-04:00."""
    return datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(zone)).isoformat()


@pytest.mark.parametrize(("zone", "day"), SKIPPED_MIDNIGHTS.values(), ids=SKIPPED_MIDNIGHTS.keys())
def test_a_start_written_as_the_skipped_midnight_starts_a_midnight_series(
    zone: str, day: str
) -> None:
    """A daily series' history that begins on the day whose midnight was skipped, its `start`
    written as Python writes that midnight (the offset before the change: what the 422 for the
    naive midnight asks for), was read as a series at 01:00: every step an hour off. Written
    so, it names the midnight; the same instant written at 01:00 is still read as written."""
    midnights = _local_midnights(zone, day, 14 + 7)
    written = _python_midnight(zone, day)
    assert written.startswith(f"{day}T00:00:00")
    assert pd.Timestamp(written) == midnights[0]  # the same instant as 01:00 after the change
    one = _one(_daily(zone, start=written), **DAILY)
    assert one.dates is not None
    np.testing.assert_array_equal(one.dates.history_ns, midnights[:14].asi8)
    assert _answered(one) == _isos(midnights[14:18])
    # the instant on the zone's clock (01:00), naive or with its offset: a series at 01:00
    at_one = midnights[0].isoformat()
    assert at_one == f"{day}T01:00:00{at_one[-6:]}"
    for given in (at_one, at_one[:-6]):
        read = _one(_daily(zone, start=given), **DAILY)
        assert read.dates is not None
        assert _answered(read)[0] == f"{midnights[14].date()}T01:00:00{at_one[-6:]}"


@pytest.mark.parametrize(("zone", "day"), SKIPPED_MIDNIGHTS.values(), ids=SKIPPED_MIDNIGHTS.keys())
def test_the_pyfunc_reads_the_written_skipped_midnight_as_the_service(zone: str, day: str) -> None:
    midnights = _local_midnights(zone, day, 14 + 7)
    row = {"id": "d", "values": [float(v) for v in range(14)], "timezone": zone}
    predictor = _daily_predictor()
    for given in (_python_midnight(zone, day), midnights[0].isoformat()):
        answer = predictor.predict_frame(pd.DataFrame([{**row, "start": given}]))
        service = _one(_daily(zone, start=given), **DAILY)
        assert answer["timestamp"].tolist()[:4] == _answered(service)
        if given.startswith(f"{day}T00:00"):
            assert answer["timestamp"].tolist() == _isos(midnights[14:])


def test_written_at_skipped_midnight_needs_the_midnight_as_written() -> None:
    zone = ZoneInfo("America/Santiago")

    def reads(written: str) -> bool:
        stamp = pd.Timestamp(written)
        zoned = stamp.tz_localize(zone) if stamp.tz is None else stamp.tz_convert(zone)
        return written_at_skipped_midnight(stamp.to_pydatetime(), zoned)

    assert reads("2024-09-08T00:00:00-04:00")
    assert not reads("2024-09-08T01:00:00-03:00")  # the same instant, written at 01:00
    assert not reads("2024-09-08T01:00:00")  # naive: on the zone's clock, as written
    assert not reads("2024-09-08T04:00:00+00:00")  # the same instant in UTC
    assert not reads("2024-09-07T00:00:00-04:00")  # a midnight no change skipped


def test_a_naive_midnight_the_caller_writes_is_still_refused_where_it_does_not_exist() -> None:
    """Generated steps follow the policy; a caller's own naive time is never guessed."""
    skipped = (
        "2024-09-08T00:00:00 does not exist in America/Santiago: a daylight-saving change skips "
        "it on the clocks there; give a time that does, or the time with its UTC offset, the "
        "one before the change: 2024-09-08T00:00:00-04:00"
    )
    body = _daily("America/Santiago", start="2024-09-08")
    assert _error(body, **DAILY) == f"series 0 ('a'), field 'start': {skipped}"
    stamps = _isos(pd.date_range("2024-09-01", periods=14, freq="D"))
    body = _daily("America/Santiago", timestamps=stamps)
    assert _error(body, **DAILY) == (
        f"series 0 ('a'), field 'timestamps': position 7: {skipped}{EVERY_OFFSET}"
    )
    repeated = _error(_daily("America/Havana", start="2024-11-03"), **DAILY)
    assert "2024-11-03T00:00:00 is ambiguous in America/Havana" in repeated


@pytest.mark.parametrize("freq", ["D", "W-SUN", "MS", "B"])
def test_new_york_calendar_steps_are_pandas_steps_as_before(freq: str) -> None:
    """No midnight change there: every step is what pd.date_range laid before the policy."""
    for start in ("2024-03-01", "2024-10-27", "2024-11-04"):
        first = pd.Timestamp(start, tz="America/New_York")
        if not pd.tseries.frequencies.to_offset(freq).is_on_offset(first):
            continue
        before = pd.date_range(first, periods=14 + 7, freq=freq).as_unit("ns")
        one = _one(_daily("America/New_York", start=start), **{**DAILY, "freq": freq})
        assert one.dates is not None
        np.testing.assert_array_equal(one.dates.history_ns, before[:14].asi8)
        np.testing.assert_array_equal(one.dates.future_ns, before[14:].asi8)


def test_hourly_steps_across_a_midnight_change_are_real_hours_as_before() -> None:
    body = {"timezone": "America/Santiago", "series": [_series(start="2024-09-07T16:00:00")]}
    one = _one(body)
    assert _answered(one) == [
        "2024-09-08T01:00:00-03:00",  # 04:00 UTC: the hour after 23:00 -04:00
        "2024-09-08T02:00:00-03:00",
        "2024-09-08T03:00:00-03:00",
        "2024-09-08T04:00:00-03:00",
    ]
    assert one.dates is not None
    assert set(np.diff(one.dates.window_ns)) == {3_600_000_000_000}


def _daily_predictor() -> ForecastPredictor:
    """An untrained daily calendar forecaster (8 days in, 7 out), as the pyfunc loads one."""
    config = ForecasterConfig(
        kind="urnn", lookback=8, horizon=7, hidden_size=4, segment_length=4,
        n_calendar=n_calendar_features("D"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_forecaster(config).eval()
    scaler = StandardScaler(("y",), "global", {GLOBAL: {"y": ColumnScale(10.0, 2.0)}})
    meta = {"freq": "D", "target": "y", "covariates": [], "calendar_clock": "local"}
    return ForecastPredictor(model=model, meta=meta, scaler=scaler)


@pytest.mark.parametrize(("zone", "start", "day", "step"), MIDNIGHTS.values(), ids=MIDNIGHTS.keys())
def test_the_pyfunc_lays_the_same_local_days(
    zone: str, start: str, day: str, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It failed with "bad `start`"; it now answers the service's steps, and reads the same
    calendar (the local days)."""
    predictor = _daily_predictor()
    indexes: list[pd.DatetimeIndex] = []

    def recorded(index: pd.DatetimeIndex, freq: str) -> np.ndarray:
        indexes.append(index)
        return calendar_features(index, freq)

    monkeypatch.setattr("training.mlflow_model.calendar_features", recorded)
    expected = _local_midnights(zone, start, 14 + 7)
    service = _one(_daily(zone, start=start), **DAILY)
    for given in (start, expected[0].isoformat()):
        row = {"id": "d", "values": [float(v) for v in range(14)], "start": given}
        answer = predictor.predict_frame(pd.DataFrame([{**row, "timezone": zone}]))
        assert answer["timestamp"].tolist() == _isos(expected[14:])
        assert answer["timestamp"].tolist()[:4] == _answered(service)
        index = indexes.pop()
        np.testing.assert_array_equal(index.as_unit("ns").asi8, expected[14 - 8 :].asi8)
        assert list(index.hour) == [int(t.hour) for t in expected[14 - 8 :]]


def test_local_steps_states_its_policy() -> None:
    """training.validation.local_steps, which both the service and the pyfunc lay steps with."""
    day, week = pd.offsets.Day(), pd.offsets.Week(weekday=6)

    def laid(first: str, zone: str, offset: Any, periods: int = 3) -> list[str]:
        return _isos(local_steps(pd.Timestamp(first).tz_convert(zone), periods, offset))

    # a weekly model on Sundays meets Santiago's Sunday-midnight change every year
    assert laid("2024-09-01T00:00:00-04:00", "America/Santiago", week) == [
        "2024-09-01T00:00:00-04:00",
        "2024-09-08T01:00:00-03:00",
        "2024-09-15T00:00:00-03:00",
    ]
    # a start the caller gives at the later instant of a repeated midnight is kept as given
    assert laid("2024-11-03T00:00:00-05:00", "America/Havana", day) == [
        "2024-11-03T00:00:00-05:00",
        "2024-11-04T00:00:00-05:00",
        "2024-11-05T00:00:00-05:00",
    ]
    # London's change is at 01:00 UTC: a daily step at 02:00 BST stays at 02:00
    assert laid("2024-03-31T02:00:00+01:00", LONDON, day) == [
        "2024-03-31T02:00:00+01:00",
        "2024-04-01T02:00:00+01:00",
        "2024-04-02T02:00:00+01:00",
    ]
    # fixed-length steps are real durations, naive starts pandas' own steps
    assert laid("2024-09-07T23:00:00-04:00", "America/Santiago", pd.offsets.Hour(), 2) == [
        "2024-09-07T23:00:00-04:00",
        "2024-09-08T01:00:00-03:00",
    ]
    naive = local_steps(pd.Timestamp("2024-09-07"), 3, day)
    assert naive.equals(pd.date_range("2024-09-07", periods=3, freq="D"))


def test_an_empty_pyfunc_cell_is_no_zone_where_the_service_refuses_an_empty_name() -> None:
    """A DataFrame column holds a cell per row: rows without a zone leave it empty (None, NA,
    NaN or ""), and the row is read without one. The service's JSON field is left out or null
    for that; an empty name there is a 422 (test_a_bad_zone_name_is_refused_by_the_schema)."""
    predictor = _daily_predictor()
    row = {"id": "d", "values": [float(v) for v in range(14)], "start": "2024-08-26"}
    plain = predictor.predict_frame(pd.DataFrame([row]))
    assert plain["timestamp"].iloc[0] == "2024-09-09T00:00:00"  # naive: no zone
    for empty in ("", None, pd.NA, float("nan")):
        frame = pd.DataFrame([{**row, "timezone": empty}])
        pd.testing.assert_frame_equal(predictor.predict_frame(frame), plain)
    with pytest.raises(ValidationError, match="is not a time zone"):
        ForecastRequest.model_validate({"timezone": "", "series": [_series()]})


def test_steps_the_service_writes_with_a_seconds_offset_read_back() -> None:
    """Before 1937 Amsterdam kept local mean time, +00:19:32: the answer writes that offset
    (as Python does) and pydantic's parser refused it, so the service's own steps could not
    be sent back."""
    zone = "Europe/Amsterdam"
    from_start = _one({"timezone": zone, "series": [_series(start="1850-01-01T00:00:00")]})
    answered = _answered(from_start)
    assert answered[0] == "1850-01-01T08:00:00+00:19:32"
    laid = pd.date_range("1850-01-01T00:00", periods=12, freq="h", tz=zone)
    assert _isos(laid)[8:] == answered
    for body in (
        {"timezone": zone, "series": [_series(timestamps=_isos(laid[:8]))]},
        {"series": [_series(timestamps=_isos(laid[:8]))]},  # the fast path's parser
    ):
        one = _one(body)
        assert one.dates is not None and from_start.dates is not None
        np.testing.assert_array_equal(one.dates.window_ns, from_start.dates.window_ns)
        assert _answered(one) == answered
    assert fast_request({"series": [_series(timestamps=_isos(laid[:8]))]}) is not None
    bad = _isos(laid[:8])
    bad[3] = "1850-01-01T03:00:00+00:19:99"
    with pytest.raises(ValidationError, match="timestamps"):
        ForecastRequest.model_validate({"series": [_series(timestamps=bad)]})


def test_the_pyfunc_reads_a_start_with_a_seconds_offset() -> None:
    """It wrote 1850-01-15T00:00:00+00:19:32 among its own answers and refused it as a
    `start` ("bad `start`": pandas cannot read the offset)."""
    zone = "Europe/Amsterdam"
    predictor = _daily_predictor()
    days = pd.date_range("1850-01-01", periods=14 + 7, freq="D", tz=zone)
    for extra in ({"timezone": zone}, {}):
        row = {"id": "d", "values": [float(v) for v in range(14)], "start": days[0].isoformat()}
        answer = predictor.predict_frame(pd.DataFrame([{**row, **extra}]))
        assert answer["timestamp"].tolist() == _isos(days[14:])
    assert days[14].isoformat() == "1850-01-15T00:00:00+00:19:32"

"""A series' time axis as the service reads it from `start` or `timestamps`: local clocks
across a daylight-saving change, calendar starts off their grid, and errors said once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.errors import ServiceInputError
from service.fast_path import fast_request
from service.schemas import ForecastRequest
from service.validation import PreparedRequest, RequestIn, prepare
from tests.service.test_fast_path import StubModel, _as_model


def _prepared(series: dict[str, Any], **model: Any) -> list[PreparedRequest]:
    """The body through both readers (the schema and the JSON fast path): they must agree."""
    body = {"series": [series]}
    requests: list[RequestIn] = [ForecastRequest.model_validate(body)]
    if (fast := fast_request(body)) is not None:
        requests.append(fast)
    return [prepare(request, _as_model(StubModel(**model))) for request in requests]


def _error(series: dict[str, Any], **model: Any) -> str:
    with pytest.raises(ServiceInputError) as caught:
        _prepared(series, **model)
    return str(caught.value)


def test_local_hours_across_a_dst_change_are_one_utc_axis() -> None:
    # Paris, 30 Oct 2016 03:00 -> 02:00: the ISO strings go from +02:00 to +01:00
    local = pd.date_range("2016-10-30T00:00", periods=12, freq="h", tz="Europe/Paris")
    series = {"id": "p", "values": list(range(12)), "timestamps": [t.isoformat() for t in local]}
    for prepared in _prepared(series):
        (one,) = prepared.series
        assert one.dates is not None
        np.testing.assert_array_equal(
            one.dates.history_ns, local.tz_convert("UTC").as_unit("ns").asi8
        )
        assert str(one.dates.tz) == "UTC"  # the offsets differ: answered in UTC
        expected_next = local[-1].tz_convert("UTC") + pd.Timedelta(hours=1)
        assert one.dates.future_ns[0] == expected_next.as_unit("ns").value


def test_naive_and_zoned_stamps_together_stay_an_error() -> None:
    stamps = [t.isoformat() for t in pd.date_range("2020-01-01", periods=12, freq="h")]
    stamps[3] += "+00:00"
    message = _error({"id": "m", "values": list(range(12)), "timestamps": stamps})
    assert "series 0 ('m'), field 'timestamps': cannot be read as one time axis" in message


def test_local_midnights_across_a_dst_change_say_how_to_send_them() -> None:
    local = pd.date_range("2016-10-20", periods=12, freq="D", tz="Europe/Paris")
    series = {"id": "d", "values": list(range(12)), "timestamps": [t.isoformat() for t in local]}
    message = _error(series, freq="D")
    assert "different UTC offsets are read in UTC" in message
    assert "send them as naive local times, or as Arrow with the zone" in message
    naive = {**series, "timestamps": [t.tz_localize(None).isoformat() for t in local]}
    assert len(_prepared(naive, freq="D")[0].series) == 1


@pytest.mark.parametrize(
    ("freq", "start", "nearest"),
    [
        ("ME", "2019-01-15", "2018-12-31T00:00:00 and 2019-01-31T00:00:00"),
        ("W-MON", "2024-01-03", "2024-01-01T00:00:00 and 2024-01-08T00:00:00"),
        ("B", "2024-01-06", "2024-01-05T00:00:00 and 2024-01-08T00:00:00"),
    ],
)
def test_a_start_off_a_calendar_grid_is_refused_not_moved(
    freq: str, start: str, nearest: str
) -> None:
    message = _error({"id": "c", "values": list(range(12)), "start": start}, freq=freq)
    assert message == (
        f"series 0 ('c'), field 'start': {pd.Timestamp(start).isoformat()} is not a step of "
        f"the model's frequency {freq!r}; the nearest steps are {nearest}"
    )
    on_grid = pd.Timestamp(nearest.split(" and ")[1]).isoformat()
    assert len(_prepared({"id": "c", "values": list(range(12)), "start": on_grid}, freq=freq)) >= 1


def test_timestamp_errors_are_said_once() -> None:
    stamps = [t.isoformat() for t in pd.date_range("2020-01-01", periods=12, freq="h")][::-1]
    message = _error({"id": "r", "values": list(range(12)), "timestamps": stamps})
    assert message.startswith("series 0 ('r'), field 'timestamps': must be strictly increasing")
    assert message.count("field 'timestamps'") == 1
    assert "cannot lay" not in message

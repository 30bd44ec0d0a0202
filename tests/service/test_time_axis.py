"""A series' time axis as the service reads it from `start` or `timestamps`: local clocks
across a daylight-saving change, calendar starts off their grid, and errors said once."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from models.forecaster import calendar_features
from service.errors import ServiceInputError
from service.fast_path import fast_request
from service.schemas import ForecastRequest
from service.stream_schemas import ObservationsRequest
from service.stream_validation import parse_observations
from service.validation import PreparedRequest, RequestIn, checked_horizon, prepare
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
    """Said by the rule, naming one of each (it was pandas' "Tz-aware datetime.datetime
    cannot be converted to datetime64 unless utc=True")."""
    stamps = [t.isoformat() for t in pd.date_range("2020-01-01", periods=12, freq="h")]
    stamps[3] += "+00:00"
    message = _error({"id": "m", "values": list(range(12)), "timestamps": stamps})
    assert message == (
        "series 0 ('m'), field 'timestamps': position 3 (2020-01-01T03:00:00+00:00) carries a "
        "UTC offset and position 0 (2020-01-01T00:00:00) none; timestamps must all carry a UTC "
        "offset or none"
    )
    stamps = [stamps[0] + "+00:00", *stamps[1:3], stamps[3][: -len("+00:00")], *stamps[4:]]
    for body in (
        {"id": "m", "values": list(range(12)), "timestamps": stamps},
        {"id": "m", "values": list(range(12)), "timestamps": stamps, "timezone": "Europe/Paris"},
    ):
        assert _error(body) == (
            "series 0 ('m'), field 'timestamps': position 1 (2020-01-01T01:00:00) has none and "
            "position 0 (2020-01-01T00:00:00+00:00) one; timestamps must all carry a UTC offset "
            "or none"
        )


LATEST = "2262-04-11T23:47:16.854775"  # pd.Timestamp.max: the last time a ns axis holds
EARLIEST = "1677-09-21T00:12:43.145225"
PANDAS_WORDS = ("Out of bounds", "nanosecond timestamp", "Cannot", "overflow", "utc=True")


@pytest.mark.parametrize(
    ("start", "freq", "latest"),
    [
        ("9999-01-01T00:00:00", "h", "2262-04-11T08:47:16.854775"),  # 15 hours earlier
        ("0001-01-01T00:00:00", "h", "2262-04-11T08:47:16.854775"),
        ("1677-09-21T00:00:00", "h", "2262-04-11T08:47:16.854775"),  # minutes too early
        ("2262-04-11T20:00:00", "h", "2262-04-11T08:47:16.854775"),  # its steps run past
        ("9999-01-01T00:00:00", "D", "2262-03-27T23:47:16.854775"),  # 15 days earlier
        ("9999-01-01T00:00:00", "MS", "2261-01-01T23:47:16.854775"),  # 15 month starts
    ],
)
def test_a_start_out_of_range_says_where_it_must_lie(start: str, freq: str, latest: str) -> None:
    """12 values and 4 forecast steps: pandas said "Out of bounds nanosecond timestamp"."""
    message = _error({"id": "y", "values": list(range(12)), "start": start}, freq=freq)
    assert message == (
        f"series 0 ('y'), field 'start': {start} is out of range: `start` must lie between "
        f"{EARLIEST} and {latest}, so that its 12 values and 4 forecast steps of {freq!r} end "
        f"by {LATEST}, the latest time the service can date"
    )
    fits = {"id": "y", "values": list(range(12)), "start": latest[:19]}
    assert _prepared(fits, freq=freq)  # the bound itself is a start


def test_counts_of_one_are_said_in_the_singular() -> None:
    """A model of look-back 1 and horizon 1: its refusals said "its 1 values and 1 forecast
    steps" and "ask for at most 1 steps"."""
    message = _error(
        {"id": "y", "values": [5.0], "start": "9999-01-01T00:00:00"}, lookback=1, max_horizon=1
    )
    assert "so that its 1 value and 1 forecast step of 'h' end by" in message
    with pytest.raises(ServiceInputError) as caught:
        checked_horizon(2, _as_model(StubModel(lookback=1, max_horizon=1)))
    assert str(caught.value) == (
        "field 'horizon': 2 is above the model's maximum 1; ask for at most 1 step"
    )


def test_zoned_times_out_of_range_are_told_as_instants() -> None:
    """Bounds on instants, and on the times of the clock they are read on: a clock ahead of
    UTC (+02:00) holds times two hours fewer (formatting a time past pandas' last one was a
    500, OutOfBoundsDatetime)."""
    for start, latest, clock in (
        ("9999-01-01T00:00:00+00:00", "2262-04-11T08:47:16.854775", ""),
        (
            "9999-01-01T00:00:00+02:00",
            "2262-04-11T06:47:16.854775",
            ", both as instants and as times at their UTC offset (+02:00)",
        ),
    ):
        zoned = _error({"id": "y", "values": list(range(12)), "start": start})
        assert zoned == (
            f"series 0 ('y'), field 'start': {start} is out of range: `start` must lie "
            f"between {EARLIEST}+00:00 and {latest}+00:00, so that its 12 values and 4 "
            f"forecast steps of 'h' end by {LATEST}+00:00, the latest time the service can "
            f"date{clock}"
        )
        fits = {"id": "y", "values": list(range(12)), "start": f"{latest[:19]}+00:00"}
        assert _prepared(fits)  # the bound itself is a start
    # a naive time in a zone is compared as written, then as read there (the instant a zone
    # behind UTC puts hours later); hours from the edge, where the zone's offset decides, the
    # steps laid on its clock are refused in the same words
    body = {"id": "y", "values": list(range(12)), "start": "2262-03-27T23:00:00"}
    assert _error({**body, "timezone": "America/New_York"}, freq="D") == (
        "series 0 ('y'), field 'start': 2262-03-27T23:00:00-04:00 is out of range: `start` "
        "must lie between 1677-09-21T05:08:45.145225+00:00 and "
        "2262-03-27T23:47:16.854775+00:00, so that its 12 values and 4 forecast steps of "
        f"'D' end by {LATEST}+00:00, the latest time the service can date, both as instants "
        "and as times on America/New_York's clock"
    )
    start = "1677-09-21T05:00:00"  # 1677-09-20T19:41:01+00:00, Tokyo's clock then +09:18:59
    body = {"id": "y", "values": list(range(12)), "start": start, "timezone": "Asia/Tokyo"}
    assert _error(body, freq="D") == (
        f"series 0 ('y'), field 'start': {start}+09:18:59 is out of range: `start` must lie "
        f"between {EARLIEST}+00:00 and 2262-03-27T14:47:16.854775+00:00, so that its 12 "
        f"values and 4 forecast steps of 'D' end by {LATEST}+00:00, the latest time the "
        "service can date, both as instants and as times on Asia/Tokyo's clock"
    )


def test_timestamps_out_of_range_name_the_position() -> None:
    stamps = [t.isoformat() for t in pd.date_range("2020-01-01", periods=12, freq="h")]
    stamps[0] = "0001-01-01T00:00:00"
    assert _error({"id": "t", "values": list(range(12)), "timestamps": stamps}) == (
        "series 0 ('t'), field 'timestamps': position 0 (0001-01-01T00:00:00) is out of range: "
        f"timestamps must lie between {EARLIEST} and {LATEST}, the times the service can date"
    )
    # in range, but the forecast steps after them are not: they wrapped around to 1677
    late = [t.isoformat() for t in pd.date_range("2262-04-11T12:00", periods=12, freq="h")]
    assert _error({"id": "t", "values": list(range(12)), "timestamps": late}) == (
        "series 0 ('t'), field 'timestamps': position 11 (2262-04-11T23:00:00) is out of range: "
        "the last timestamp must lie on or before 2262-04-11T19:47:16.854775 so that the 4 "
        f"forecast steps of 'h' after it end by {LATEST}, the latest time the service can date"
    )


# (zone, last timestamp as written, as read on the zone's clock, the latest instant it may
# be, what the message adds): naive times New York reads are instants four hours later than
# written; UTC times Tokyo reads are times nine hours later on its clock.
READ_LATE = [
    (
        "America/New_York",
        "2262-04-11T19:00:00",
        "2262-04-11T19:00:00-04:00",
        "2262-04-11T19:47:16.854775",
        "",
    ),
    (
        "Asia/Tokyo",
        "2262-04-11T12:00:00+00:00",
        "2262-04-11T21:00:00+09:00",
        "2262-04-11T10:47:16.854775",
        ", both as instants and as times on Asia/Tokyo's clock",
    ),
    (  # its own time on Tokyo's clock is past pandas' last one: said by Python's datetime
        "Asia/Tokyo",
        "2262-04-11T20:00:00+00:00",
        "2262-04-12T05:00:00+09:00",
        "2262-04-11T10:47:16.854775",
        ", both as instants and as times on Asia/Tokyo's clock",
    ),
]


@pytest.mark.parametrize(("zone", "last", "read", "bound", "clock"), READ_LATE)
def test_times_a_zone_reads_are_bounded_as_read_there(
    zone: str, last: str, read: str, bound: str, clock: str
) -> None:
    """The range checks compared the times as written: the forecast steps after them, on the
    zone's clock, passed pandas' last time, a 500 (OutOfBoundsDatetime) when the answer was
    written. Refused with the bound of the time as read, as instants and clock times both
    must fit."""
    stamps = [t.isoformat() for t in pd.date_range(end=last, periods=12, freq="h")]
    series = {"id": "t", "values": list(range(12)), "timezone": zone}
    assert _error({**series, "timestamps": stamps}) == (
        f"series 0 ('t'), field 'timestamps': position 11 ({last}, on {zone}'s clock {read}) "
        f"is out of range: the last timestamp must lie on or before {bound}+00:00 so that the "
        f"4 forecast steps of 'h' after it end by {LATEST}+00:00, the latest time the service "
        f"can date{clock}"
    )
    # the last time that fits, on the zone's clock, is a timestamp
    fits = pd.Timestamp(bound).tz_localize("UTC").tz_convert(zone).floor("h").tz_localize(None)
    stamps = [t.isoformat() for t in pd.date_range(end=fits, periods=12, freq="h")]
    if "+" in last:
        stamps = [f"{t}{read[-6:]}" for t in stamps]
    (prepared,) = _prepared({**series, "timestamps": stamps})
    (one,) = prepared.series
    assert one.dates is not None
    assert one.dates.future_ns[-1] <= pd.Timestamp.max.value


def test_a_start_a_zone_reads_is_bounded_as_read_there() -> None:
    """As POST /forecast bounded a naive start New York reads (its instant); a UTC start Tokyo
    reads was a 500 (its forecast steps' times on Tokyo's clock)."""
    cases = [
        (
            "America/New_York",
            "2262-04-11T08:00:00",
            "2262-04-11T08:00:00-04:00 is out of range: `start` must lie between "
            "1677-09-21T05:08:45.145225+00:00 and 2262-04-11T08:47:16.854775+00:00",
            "America/New_York",
        ),
        (
            "Asia/Tokyo",
            "2262-04-11T01:00:00+00:00",
            "2262-04-11T10:00:00+09:00 is out of range: `start` must lie between "
            f"{EARLIEST}+00:00 and 2262-04-10T23:47:16.854775+00:00",
            "Asia/Tokyo",
        ),
    ]
    for zone, start, problem, clock in cases:
        body = {"id": "s", "values": list(range(12)), "start": start, "timezone": zone}
        assert _error(body) == (
            f"series 0 ('s'), field 'start': {problem}, so that its 12 values and 4 forecast "
            f"steps of 'h' end by {LATEST}+00:00, the latest time the service can date, both "
            f"as instants and as times on {clock}'s clock"
        )


def test_a_calendar_model_says_at_which_edge_a_zone_reads_the_history() -> None:
    """UTC times a zone behind UTC reads, just after pandas' first instant: before its first
    time on that clock. POST /forecast answers only the forecast steps, but a calendar model
    reads the history's hours, which was said as passing the last time."""
    stamps = [t.isoformat() for t in pd.date_range("1677-09-21T01:00", periods=12, freq="h")]
    body = {"id": "t", "values": list(range(12)), "timestamps": [f"{t}+00:00" for t in stamps]}
    assert _prepared({**body, "timezone": "America/New_York"})  # undated by calendar: answered
    message = _error({**body, "timezone": "America/New_York"}, needs_dates=True)
    assert message == (
        "series 0 ('t'), field 'timestamps': its steps read on the model's clock begin before "
        "1677-09-21T00:12:43.145224193, the first time this service can represent; give a "
        "later start"
    )


def test_no_pandas_words_reach_a_time_axis_message() -> None:
    late = [t.isoformat() for t in pd.date_range("2262-03-28", periods=12, freq="D")]
    zoned = [t.isoformat() for t in pd.date_range("2262-03-28", periods=12, freq="D", tz="UTC")]
    for series, model in (
        ({"start": "9999-12-31T23:59:59.999999"}, {}),
        ({"start": "9999-01-01T00:00:00", "timezone": "Europe/London"}, {"freq": "D"}),
        ({"timestamps": late, "timezone": "America/New_York"}, {"freq": "D"}),
        ({"timestamps": zoned}, {"freq": "D"}),
    ):
        message = _error({"id": "p", "values": list(range(12)), **series}, **model)
        assert "is out of range" in message, message
        assert not any(words in message for words in PANDAS_WORDS), message


def test_local_midnights_across_a_dst_change_say_how_to_send_them() -> None:
    local = pd.date_range("2016-10-20", periods=12, freq="D", tz="Europe/Paris")
    series = {"id": "d", "values": list(range(12)), "timestamps": [t.isoformat() for t in local]}
    message = _error(series, freq="D")
    assert "different UTC offsets are read in UTC" in message
    assert "name the zone in `timezone`, or send them as naive local times" in message
    assert len(_prepared({**series, "timezone": "Europe/Paris"}, freq="D")[0].series) == 1
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


def test_dates_without_a_time_of_day_are_said_to_be_dates_not_a_clock_change() -> None:
    """An hourly history exported with its dates alone (a spreadsheet's date format): each
    day's 24 stamps read as midnight, and the 422 asked whether they were local times that
    a daylight-saving change repeats. It says what they are, and what to send."""
    days = [t.date().isoformat() for t in pd.date_range("2016-03-11", periods=12, freq="h")]
    message = _error({"id": "d", "values": list(range(12)), "timestamps": days})
    assert message == (
        "series 0 ('d'), field 'timestamps': must be strictly increasing; position 1 "
        "(2016-03-11T00:00:00) is not after position 0 (2016-03-11T00:00:00); every timestamp "
        "is a midnight, as dates without a time of day are read: give each value's date and "
        "time, or one value a date"
    )
    # a daily history that repeats a day is told the same, not about a clock change
    days = [t.date().isoformat() for t in pd.date_range("2016-03-01", periods=12, freq="D")]
    days[5] = days[4]
    message = _error({"id": "d", "values": list(range(12)), "timestamps": days}, freq="D")
    assert message.endswith(
        "every timestamp is a midnight, as dates without a time of day are read: give each "
        "value's date and time, or one value a date"
    ), message
    assert "daylight-saving" not in message


def test_timestamp_errors_are_said_once() -> None:
    stamps = [t.isoformat() for t in pd.date_range("2020-01-01", periods=12, freq="h")][::-1]
    message = _error({"id": "r", "values": list(range(12)), "timestamps": stamps})
    assert message.startswith("series 0 ('r'), field 'timestamps': must be strictly increasing")
    assert message.count("field 'timestamps'") == 1
    assert "cannot lay" not in message


def local_clock(features: str) -> str:
    """The 422's words for a local-clock model whose calendar features are `features`."""
    return (
        f"this model reads calendar features ({features}) on the local clock it was trained "
        "on, which offsets alone do not give for the forecast steps"
    )


LOCAL_CLOCK = local_clock("hour of day, day of week, day of year")
# New York, 10 Mar 2019 02:00 -> 03:00: 15-minute ISO texts go from -05:00 to -04:00
SPRING = pd.date_range("2019-03-10T05:00", periods=24, freq="15min", tz="UTC").tz_convert(
    "America/New_York"
)


def test_offsets_that_change_are_refused_for_a_model_on_a_local_clock() -> None:
    """Read in UTC, a calendar model's hours were 4-5 h off the local clock it learnt (an
    audit's 15-minute model answered for 09:00 as if it were 13:00), with nothing said."""
    series = {"id": "n", "values": list(range(24)), "timestamps": [t.isoformat() for t in SPRING]}
    message = _error(series, freq="15min", lookback=16, needs_dates=True)
    assert message == (
        "series 0 ('n'), field 'timestamps': holds 2 different UTC offsets (a daylight-saving "
        f"change) and no zone: {LOCAL_CLOCK}; name the zone in `timezone` (e.g. "
        "'Europe/London'), send the series as Arrow with its zone (timestamp[ns, tz=...]), or "
        "as naive local times (`start` or `timestamps` without an offset)"
    )
    # without calendar features the instants are all the model needs
    assert len(_prepared(series, freq="15min", lookback=16)[0].series) == 1


@pytest.mark.parametrize(
    ("freq", "start", "features"),
    [
        ("D", "2016-03-05", "day of week, day of year"),
        ("W-SUN", "2016-02-14", "day of year"),
        ("ME", "2016-01-31", "day of year"),
    ],
)
def test_the_offsets_422_names_the_calendar_features_the_model_reads(
    freq: str, start: str, features: str
) -> None:
    """A daily, weekly or monthly model reads no hour of day, and the 422 said it did (a
    monthly model's user was told 'hour of day, day of week'): it names the model's own."""
    local = pd.date_range(start, periods=12, freq=freq, tz="America/New_York")
    assert len({t.utcoffset() for t in local}) == 2
    series = {"id": "m", "values": list(range(12)), "timestamps": [t.isoformat() for t in local]}
    message = _error(series, freq=freq, needs_dates=True)
    assert f"and no zone: {local_clock(features)};" in message, message


def test_the_series_endpoints_advise_only_what_they_take() -> None:
    """/series/{id}/observations (and the WebSocket) take a `timezone` (kept by the series
    from its first request) or naive local times, and answer 415 to Arrow: the advice names
    those two, not POST /forecast's Arrow."""
    local = pd.date_range("2016-03-20", periods=12, freq="D", tz="Europe/Paris")
    body = ObservationsRequest.model_validate(
        {"values": list(range(12)), "timestamps": [t.isoformat() for t in local]}
    )
    model = _as_model(StubModel(freq="D", needs_dates=True))
    scales = StubModel().stats
    with pytest.raises(ServiceInputError) as caught:
        parse_observations(body, model, scales, max_scaled=1e4)
    assert str(caught.value) == (
        "field 'timestamps': holds 2 different UTC offsets (a daylight-saving change) and no "
        f"zone: {local_clock('day of week, day of year')}; name the zone in `timezone` (e.g. "
        "'Europe/London') when the "
        "series is created, or send naive local times (`start` or `timestamps` without an "
        "offset); these endpoints take JSON only (no Arrow)"
    )
    # what it advises is taken: the zone, which reads the offsets as that zone's clock
    zoned = body.model_copy(update={"timezone": "Europe/Paris"})
    observations = parse_observations(
        zoned, model, scales, max_scaled=1e4, zone=ZoneInfo("Europe/Paris")
    )
    assert observations.tz == ZoneInfo("Europe/Paris")
    np.testing.assert_array_equal(observations.ns, local.as_unit("ns").asi8)
    # what it advises is taken: the local midnights as naive times
    naive = body.model_copy(update={"timestamps": list(local.tz_localize(None))})
    observations = parse_observations(naive, model, scales, max_scaled=1e4)
    assert observations.tz is None and len(observations.ns) == 12


def test_a_model_that_learnt_utc_hours_reads_zoned_input_on_utc() -> None:
    series = {"id": "n", "values": list(range(24)), "timestamps": [t.isoformat() for t in SPRING]}
    for prepared in _prepared(series, freq="15min", lookback=16, needs_dates=True,
                              calendar_clock="utc"):  # fmt: skip
        (one,) = prepared.series
        utc = SPRING[-16:].tz_convert("UTC").tz_localize(None)
        assert one.past_calendar is not None
        np.testing.assert_allclose(
            one.past_calendar, calendar_features(utc, "15min").astype(np.float32)
        )


@pytest.mark.parametrize(("clock", "hour"), [("local", 9), ("utc", 7)])
def test_one_offset_is_read_on_the_clock_the_model_learnt(clock: str, hour: int) -> None:
    local = pd.date_range("2019-06-03T09:00", periods=8, freq="h", tz="+02:00")
    series = {"id": "o", "values": list(range(8)), "timestamps": [t.isoformat() for t in local]}
    for prepared in _prepared(series, needs_dates=True, calendar_clock=clock):
        (one,) = prepared.series
        first = pd.DatetimeIndex([pd.Timestamp(2019, 6, 3, hour)])
        assert one.past_calendar is not None
        np.testing.assert_allclose(
            one.past_calendar[0], calendar_features(first, "h")[0].astype(np.float32)
        )


def test_a_clock_ahead_of_utc_past_the_last_representable_time_is_a_422() -> None:
    """A calendar model reads the steps on a +14:00 clock, which passed pandas' last time and
    was a 500 (OutOfBoundsDatetime in the features); the range checks now bound the clock's
    times as well as the instants, and say where the start must lie."""
    series = {"id": "a", "values": list(range(12)), "start": "2262-04-11T07:00:00+14:00"}
    message = _error(series, freq="h", lookback=8, max_horizon=6, needs_dates=True)
    assert message == (
        "series 0 ('a'), field 'start': 2262-04-11T07:00:00+14:00 is out of range: `start` "
        f"must lie between {EARLIEST}+00:00 and 2262-04-10T16:47:16.854775+00:00, so that "
        f"its 12 values and 6 forecast steps of 'h' end by {LATEST}+00:00, the latest time "
        "the service can date, both as instants and as times at their UTC offset (+14:00)"
    )


def test_a_fraction_finer_than_the_microsecond_is_refused_not_cut() -> None:
    """Python's datetime keeps six digits: 02:00:00.0000009 read as 02:00:00, on the hourly
    grid, without a word, and the messages quoted another time than the one sent."""
    from pydantic import ValidationError

    stamps = [t.isoformat() for t in pd.date_range("2020-01-01", periods=12, freq="h")]
    for finer in ("2020-01-01T03:00:00.0000009", "2020-01-01T03:00:00.123456789+00:00"):
        sent = [*stamps[:3], finer, *stamps[4:]]
        with pytest.raises(ValidationError) as caught:
            ForecastRequest.model_validate({"series": [{"id": "t", "values": list(range(12)),
                                                        "timestamps": sent}]})  # fmt: skip
        (error,) = caught.value.errors()
        assert error["loc"] == ("series", 0, "timestamps", 3)
        assert "finer than the microsecond (more than 6 digits)" in error["msg"]
    zeros = [*stamps[:3], "2020-01-01T03:00:00.000000000", *stamps[4:]]  # says nothing finer
    (prepared, *_) = _prepared({"id": "t", "values": list(range(12)), "timestamps": zeros})
    assert len(prepared.series) == 1


def test_the_earliest_time_a_message_states_can_be_sent() -> None:
    """It said 1677-09-21T00:12:43.145224193, which no request could give (six digits), and
    whose six digits lie before the range."""
    assert EARLIEST == "1677-09-21T00:12:43.145225"
    stamps = [t.isoformat() for t in pd.date_range(EARLIEST, periods=12, freq="h")]
    (prepared, *_) = _prepared({"id": "t", "values": list(range(12)), "timestamps": stamps})
    assert len(prepared.series) == 1


def test_offsets_are_written_whole_in_messages() -> None:
    """A cut of a time's last six characters wrote +00:19:32 as ':19:32'."""
    from datetime import timedelta

    from service.validation import offset_text

    assert offset_text(timedelta(hours=1)) == "+01:00"
    assert offset_text(timedelta(minutes=19, seconds=32)) == "+00:19:32"
    assert offset_text(-timedelta(hours=4, minutes=56, seconds=2)) == "-04:56:02"
    assert offset_text(None) == "+00:00"


@pytest.mark.parametrize(
    ("model_freq", "sent"),
    [("7D", "W-SUN"), ("7D", "W"), ("W-SUN", "7D"), ("14D", "2W-SUN"), ("2W-SUN", "14D")],
)
def test_a_weekly_model_takes_either_spelling_of_its_weeks(model_freq: str, sent: str) -> None:
    """Weekly data is inferred as '7D' (a fixed step); a client may call the same Sundays
    'W-SUN', pandas' weekly alias, and one trained with --freq W-SUN may send '7D': from a
    Sunday both name the same instants, and the forecast is dated alike."""
    series = {"id": "w", "values": list(range(12)), "start": "2018-07-01T00:00:00"}
    own = _prepared({**series, "freq": model_freq}, freq=model_freq)
    other = _prepared({**series, "freq": sent}, freq=model_freq)
    for mine, theirs in zip(own, other, strict=True):
        dates, same = mine.series[0].dates, theirs.series[0].dates
        assert dates is not None and same is not None
        np.testing.assert_array_equal(dates.window_ns, same.window_ns)
        np.testing.assert_array_equal(dates.history_ns, same.history_ns)
    zoned = {**series, "timezone": "America/New_York", "start": "2018-03-04T00:00:00"}
    assert len(_prepared({**zoned, "freq": sent}, freq=model_freq)) >= 1  # across DST too


@pytest.mark.parametrize(("model_freq", "sent"), [("7D", "W-SUN"), ("W-SUN", "7D")])
def test_a_weekly_spelling_off_its_weekday_is_refused_at_freq(model_freq: str, sent: str) -> None:
    monday = {"id": "w", "values": list(range(12)), "start": "2018-07-02T00:00:00", "freq": sent}
    assert _error(monday, freq=model_freq) == (
        f"series 0 ('w'), field 'freq': {sent!r} names the model's {model_freq!r} steps only "
        "from a Sunday, and `start` 2018-07-02T00:00:00 is a Monday; send freq "
        f"{model_freq!r} (or none)"
    )
    stamps = [t.isoformat() for t in pd.date_range("2018-07-02", periods=12, freq="7D")]
    message = _error(
        {"id": "w", "values": list(range(12)), "timestamps": stamps, "freq": sent}, freq=model_freq
    )
    assert message.startswith(f"series 0 ('w'), field 'freq': {sent!r} names the model's")
    assert "`timestamps`[0] 2018-07-02T00:00:00 is a Monday" in message
    # a week anchored on the start's own day is the same steps; other steps stay other
    assert len(_prepared({**monday, "freq": "W-MON"}, freq="7D")) >= 1
    sunday = {**monday, "start": "2018-07-01T00:00:00"}
    for other in ("D", "2W-SUN", "168h"):
        assert _error({**sunday, "freq": other}, freq="7D") == (
            f"series 0 ('w'), field 'freq': {other!r} is not the model's frequency '7D'; give "
            "'7D' (or leave `freq` out: it defaults to the model's) if the history is at that "
            "frequency, else resample it to '7D' (the model forecasts '7D' steps from a history "
            "at '7D')"
        )

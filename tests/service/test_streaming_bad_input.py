"""Every bad observations body answers 422 (naming the field) or 409 (naming the timestamps),
never a 500, and leaves the stored series exactly as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from service import fast_routes
from tests.service.conftest import Registry
from tests.service.test_streaming_api import KEY, points, post

Body = dict[str, Any]
# The stored series: rows 0..59 (hourly from the frame's start); the bad body follows it.
STORED = 60


def _stamp(frame: pd.DataFrame, row: int) -> str:
    return str(frame.index[row].isoformat())


def _timestamps(frame: pd.DataFrame, rows: list[int]) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        body.pop("start")
        body["timestamps"] = [_stamp(frame, r) for r in rows]

    return apply


def _cases(frame: pd.DataFrame) -> dict[str, tuple[Callable[[Body], None], int, str]]:
    def setter(key: str, value: Any) -> Callable[[Body], None]:
        return lambda body: body.__setitem__(key, value)

    def value_at(position: int, value: Any) -> Callable[[Body], None]:
        return lambda body: body["values"].__setitem__(position, value)

    last = _stamp(frame, STORED - 1)
    stamps = [_stamp(frame, row) for row in range(STORED, STORED + 4)]
    return {
        "null value": (value_at(2, None), 422, "field 'values': holds null at position 2"),
        "bool value": (value_at(1, True), 422, "field 'values'[1]: must be a number; got true"),
        # finite, but the state would carry it for good (1e38: an audit's, accepted before)
        "value too large": (
            value_at(2, 1e160),
            422,
            "field 'values': holds values too large for the model once scaled (",
        ),
        "value within float32, far out": (
            value_at(2, 1e38),
            422,
            "training standard deviations from the training mean, beyond the limit of 10000: "
            "URNN_STREAM_MAX_SCALED): 1e+38 at position 2; the model takes ",
        ),
        "one point too large": (  # the one-point update takes another path
            lambda b: b.update(values=[1e38], covariates={"x": [0.0]}),
            422,
            "field 'values': holds values too large for the model once scaled (",
        ),
        "one covariate too large": (
            lambda b: b.update(values=[1.0], covariates={"x": [1e300]}),
            422,
            "field 'covariates.x': holds values too large for the model once scaled (",
        ),
        "covariate too large": (
            lambda b: b["covariates"]["x"].__setitem__(0, -1e300),
            422,
            "field 'covariates.x': holds values too large for the model once scaled (",
        ),
        "bool horizon": (setter("horizon", True), 422, "field 'horizon': must be"),
        "unknown gap policy": (
            setter("gap_policy", "skip"),
            422,
            "field 'gap_policy': must be one of 'reject' or 'interpolate'; got the string 'skip'",
        ),
        "no values": (
            lambda b: b.update(values=[], covariates={"x": []}),
            422,
            "field 'values': must hold at least 1 item(s); got 0",
        ),
        "numeric start": (
            setter("start", 1_527_811_200),
            422,
            "field 'start': 1527811200 is a number, not a date and time",
        ),
        "empty values": (
            lambda b: b.update(values=[], covariates={"x": []}),
            422,
            "field 'values'",
        ),
        "horizon above max": (
            setter("horizon", 13),
            422,
            "field 'horizon': 13 is above the model's maximum 12",
        ),
        "unknown quantile": (
            setter("quantiles", [0.5, 0.3]),
            422,
            "field 'quantiles'[1]: 0.3 is not a quantile the model was trained with",
        ),
        "unknown covariate": (
            lambda b: b["covariates"].__setitem__("z", [1.0] * 4),
            422,
            "field 'covariates': unknown covariate(s) ['z']",
        ),
        "missing covariate": (
            setter("covariates", {}),
            422,
            "field 'covariates': missing covariate(s) ['x']",
        ),
        "covariate length": (
            lambda b: b["covariates"].__setitem__("x", [1.0]),
            422,
            "field 'covariates.x': has 1 value, `values` has 4",
        ),
        "covariate NaN": (
            lambda b: b["covariates"]["x"].__setitem__(1, float("nan")),
            422,
            "field 'covariates.x': holds NaN at position 1",
        ),
        "no dates": (lambda b: b.pop("start"), 422, "field 'timestamps': give `timestamps`"),
        "timestamps length": (
            _timestamps(frame, [60, 61, 62]),
            422,
            "field 'timestamps': has 3 entries, `values` has 4",
        ),
        "one timestamp for four values": (
            _timestamps(frame, [60]),
            422,
            "field 'timestamps': has 1 entry, `values` has 4",
        ),
        "timestamps backwards": (
            _timestamps(frame, [60, 62, 61, 63]),
            422,
            f"field 'timestamps': must be strictly increasing; position 2 ({_stamp(frame, 61)})",
        ),
        "timestamps off grid": (
            lambda b: (
                b.update(
                    timestamps=[
                        _stamp(frame, 60),
                        _stamp(frame, 61),
                        (frame.index[61] + pd.Timedelta(minutes=30)).isoformat(),
                        _stamp(frame, 63),
                    ]
                )
                or b.pop("start")
            ),
            422,
            "field 'timestamps': must be spaced at the model's frequency 'h'; position 2",
        ),
        "gap rejected": (
            setter("start", _stamp(frame, 63)),
            409,
            f"expected the next timestamp {_stamp(frame, 60)}, received {_stamp(frame, 63)} "
            "(3 missing step(s))",
        ),
        "gap too large": (
            lambda b: b.update(start=_stamp(frame, 60 + 30), gap_policy="interpolate"),
            409,
            "more than URNN_STREAM_MAX_GAP=24 missing steps",
        ),
        "off the series' grid": (
            setter("start", (frame.index[60] + pd.Timedelta(minutes=30)).isoformat()),
            409,
            f"is not on the series' 'h' grid: the next expected timestamp after {last} is "
            f"{_stamp(frame, 60)}",
        ),
        "changed duplicate": (
            lambda b: b.update(start=_stamp(frame, 58), values=[0.5, 1.0, 2.0, 3.0]),
            409,
            f"conflicting duplicate: timestamp {_stamp(frame, 58)} (position 0) was already "
            "consumed with value ",
        ),
        "older than the tail": (
            setter("start", _stamp(frame, 2)),
            409,
            f"timestamp {_stamp(frame, 2)} (position 0) is not after the last stored timestamp "
            f"{last}, and it is older than the retained tail",
        ),
        # a backfill of history from before the series began: said as such, not as a point
        # the tail no longer holds (which reads as if a longer URNN_STREAM_TAIL_POINTS helped)
        "before the series' first point": (
            setter("start", (frame.index[0] - pd.Timedelta(hours=2)).isoformat()),
            409,
            f"timestamp {(frame.index[0] - pd.Timedelta(hours=2)).isoformat()} (position 0) is "
            f"before the series' first point {_stamp(frame, 0)}: a series only takes points "
            f"after its last one ({last}); to add older history, DELETE the series and send "
            "its history again from its earliest point",
        ),
        "zoned after naive": (
            setter("start", "2030-01-01T00:00:00+00:00"),
            422,
            "field 'start': the series' timestamps are naive",
        ),
        # pandas' own words ("Out of bounds nanosecond timestamp", "Tz-aware datetime...
        # unless utc=True") used to be the message
        "start past pandas' range": (
            setter("start", "9999-01-01T00:00:00"),
            422,
            "field 'start': 9999-01-01T00:00:00 is out of range: `start` must lie between "
            "1677-09-21T00:12:43.145225 and 2262-04-11T08:47:16.854775, so that its 4 "
            "values and 12 forecast steps of 'h' end by 2262-04-11T23:47:16.854775, the "
            "latest time the service can date",
        ),
        "one point's start past pandas' range": (
            lambda b: b.update(
                values=b["values"][:1],
                covariates={"x": b["covariates"]["x"][:1]},
                start="9999-01-01T00:00:00",
            ),
            422,
            "so that its 1 value and 12 forecast steps of 'h' end by",
        ),
        "timestamps past pandas' range": (
            lambda b: b.update(timestamps=[*stamps[:3], "9999-01-01T00:00:00"]) or b.pop("start"),
            422,
            "field 'timestamps': position 3 (9999-01-01T00:00:00) is out of range: timestamps "
            "must lie between 1677-09-21T00:12:43.145225 and 2262-04-11T23:47:16.854775, "
            "the times the service can date",
        ),
        "naive and zoned timestamps": (
            lambda b: (
                b.update(timestamps=[stamps[0], stamps[1] + "+00:00", *stamps[2:]])
                or b.pop("start")
            ),
            422,
            f"field 'timestamps': position 1 ({_stamp(frame, 61)}+00:00) carries a UTC offset "
            f"and position 0 ({_stamp(frame, 60)}) none; timestamps must all carry a UTC "
            "offset or none",
        ),
    }


CASE_NAMES = list(
    _cases(pd.DataFrame({"y": [0.0]}, index=pd.date_range("2000", periods=200, freq="h")))
)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_observations(
    case: str, stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    frame = registry.frame
    client = stream_client_for(stream_tail_points=50)  # rows 10..59 kept
    assert post(client, "s", points(frame, 0, STORED)).status_code == 200
    before = (client.get("/series/s").json(), client.get("/series/s/forecast").json())
    change, status, message = _cases(frame)[case]
    body = points(frame, STORED, 4)
    change(body)
    answer = client.post(  # json.dumps writes NaN, as some clients do
        "/series/s/observations",
        content=json.dumps(body),
        headers={**KEY, "content-type": "application/json"},
    )
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    after = (client.get("/series/s").json(), client.get("/series/s/forecast").json())
    assert after == before  # nothing stored changed


def test_bad_get_forecast_query(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = stream_client_for()
    post(client, "s", points(registry.frame, 0, STORED))
    answer = client.get("/series/s/forecast", params={"horizon": 0})
    assert answer.status_code == 422
    assert answer.json() == {"detail": "field 'horizon': must be at least 1; got '0'"}
    answer = client.get("/series/s/forecast", params={"horizon": 13})
    assert answer.status_code == 422
    assert "field 'horizon': 13 is above the model's maximum 12" in answer.json()["detail"]
    answer = client.get("/series/s/forecast", params={"quantiles": [0.3]})
    assert answer.status_code == 422
    assert "field 'quantiles'[0]: 0.3 is not a quantile" in answer.json()["detail"]
    # the query's own type errors are named as the body's are (they said 'query.horizon')
    answer = client.get("/series/s/forecast", params={"horizon": "soon"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == "field 'horizon': must be an integer; got 'soon'"
    answer = client.get("/series/s/forecast", params={"quantiles": "0.1,0.9"})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail.startswith("field 'quantiles'[0]: must be a number; got '0.1,0.9'")
    assert "(one level per parameter: ?quantiles=0.1&quantiles=0.9)" in detail


def test_the_far_out_limit_is_the_operators(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """URNN_STREAM_MAX_SCALED: 20 training standard deviations refuses a point the default
    takes; the default refuses none of the training data's own values."""
    frame = registry.frame
    y = frame["y"]
    far = float(y.mean() + 50 * y.std())  # ~50 sd out on the training statistics
    for limit, status in ((20.0, 422), (1e4, 200)):
        client = stream_client_for(stream_max_scaled=limit)
        assert post(client, "s", points(frame, 0, STORED)).status_code == 200
        body = points(frame, STORED, 1)
        body["values"] = [far]
        answer = post(client, "s", body)
        assert answer.status_code == status, answer.text
        if status == 422:
            assert f"beyond the limit of {limit:g}: URNN_STREAM_MAX_SCALED" in answer.text


def test_json_nested_too_deeply_is_422_as_on_forecast(
    stream_client_for: Callable[..., TestClient],
) -> None:
    """FastAPI answered 400 'There was an error parsing the body' (its parser's
    RecursionError); malformed JSON is a 422 on every route."""
    client = stream_client_for()
    answer = client.post(
        "/series/x/observations",
        content=b"[" * 1100 + b"]" * 1100,
        headers={**KEY, "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("the body is not valid JSON")
    assert client.get("/series/x").status_code == 404


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"[" * 1100 + b"]" * 1100, "it is nested too deeply"),
        (b'{"values": [' + b"1" * 5000 + b"]}", "number out of range: it holds an integer of"),
        (b"", "it is empty; send one JSON object"),
    ],
)
def test_a_body_the_standard_parser_gives_up_on_is_said_why(
    stream_client_for: Callable[..., TestClient], content: bytes, said: str
) -> None:
    """A 5000-digit integer was answered 'it cannot be parsed (nested too deeply?)'."""
    client = stream_client_for()
    answer = client.post(
        "/series/x/observations",
        content=content,
        headers={**KEY, "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("the body is not valid JSON: " + said), answer.text


@pytest.mark.parametrize(
    "path",
    [
        "/series/%20/forecast",
        "/series/%20",
        "/series/a%0Ab",
        "/series/%E3%80%80",  # U+3000, a Unicode space: blank (it was stored)
        "/series/%C2%A0/forecast",  # U+00A0
        "/series/a%C2%85b",  # U+0085, a C1 control character
        "/series/%FF",  # not UTF-8: decoded to U+FFFD, so %FF and %FE named one series
        "/series/%FE/forecast",
        "/series/%E2%80%8B",  # a zero-width space alone: an id that looks blank
        "/series/%EF%BB%BF",  # a byte-order mark alone
    ],
)
def test_a_bad_series_id_in_the_path_is_said_in_words(
    stream_client_for: Callable[..., TestClient], path: str
) -> None:
    """The path rule was answered with its regular expression; the WebSocket said it in words."""
    client = stream_client_for()
    answer = client.get(path, headers=KEY)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        "field 'series_id': a string of 1 to 200 characters, not blank or invisible (zero-width "
        "characters alone), not '.' or '..' (nor those with spaces around them), without '/', "
        "control characters or U+FFFD (what bytes that are not UTF-8 decode to: write the id in "
        "UTF-8, percent-encoded)"
    )


def test_an_id_ending_in_a_newline_is_refused_not_stored(
    stream_client_for: Callable[..., TestClient],
) -> None:
    """Python's `$` matches before a last newline; the path's regex does not: "a\\n" was
    stored by POST and the WebSocket, then refused by GET and DELETE."""
    client = stream_client_for()
    answer = client.post(
        "/series/a%0A/observations", json={"values": [1.0], "start": "2024-01-01"}, headers=KEY
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("field 'series_id': a string of 1 to 200")
    assert not fast_routes.plain_series_id("b\n")


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_the_api_key_is_checked_before_the_body_type(
    stream_client_for: Callable[..., TestClient], content_type: str | None
) -> None:
    """A fuzz run (schemathesis, without the key): POST /series/{id}/observations answered a
    body sent as text/plain, or with no Content-Type, 415 whatever the key, where POST /jobs
    and the schedules answer 401 first: the fast path judged the body type before the key.
    Now the key comes first (401 missing or wrong, 403 none configured); with it, the 415."""
    client = stream_client_for()
    headers = {} if content_type is None else {"content-type": content_type}
    said = "'text/plain'" if content_type else "missing"
    for key, status in ((None, 401), ("wrong", 401), (KEY["X-API-Key"], 415)):
        sent = headers if key is None else {**headers, "X-API-Key": key}
        answer = client.post("/series/x/observations", content=b"values=1", headers=sent)
        assert answer.status_code == status, (key, answer.text)
        if status == 415:
            assert answer.json()["detail"] == (
                f"header 'Content-Type': {said}; this endpoint reads a body sent as "
                "application/json"
            )
        else:
            assert answer.json()["detail"] == "missing or wrong X-API-Key header"
    closed = stream_client_for(api_key=None)
    answer = closed.post("/series/x/observations", content=b"values=1", headers=headers)
    assert answer.status_code == 403 and "no API key is configured" in answer.json()["detail"]
    open_locally = stream_client_for(api_key=None, env="development")
    answer = open_locally.post("/series/x/observations", content=b"values=1", headers=headers)
    assert answer.status_code == 415, answer.text
    assert client.get("/series/x").status_code == 404  # nothing stored by any of them


_TWICE = {
    "values": "field 'values': is given twice in the body",
    "values, one escaped": "field 'values': is given twice in the body",
    "timestamps": "field 'timestamps': is given twice in the body",
    "covariate": "field 'covariates'['x']: is given twice in the covariates",
}
_READERS_DIFFER = (
    "; JSON readers differ on which of the two counts (the first or the last): give each key once"
)


def twice(frame: pd.DataFrame, case: str) -> str:
    """An observations body of 2 points after the stored ones that gives a key twice."""
    body = points(frame, STORED, 2)
    if case == "timestamps":
        _timestamps(frame, [STORED, STORED + 1])(body)
        text = json.dumps(body)
        return text[:-1] + f', "timestamps": {json.dumps(body["timestamps"][:1])}}}'
    text = json.dumps(body)
    if case == "values":
        return text[:-1] + ', "values": [3.0]}'
    if case == "values, one escaped":  # the same key, as JSON may write it
        return text[:-1] + ', "valu\\u0065s": [3.0]}'
    column = json.dumps(body["covariates"])
    return text.replace(column, column[:-1] + ", " + column[1:], 1)


@pytest.mark.parametrize("media", ["application/json", "application/vnd.api+json"])
@pytest.mark.parametrize("case", list(_TWICE))
def test_a_key_given_twice_is_422_naming_it_and_where(
    case: str, media: str, stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """orjson and pydantic's parser keep the last of a repeated key: {"values": [1, 2],
    "values": [3]} appended 3 alone. Refused as POST /forecast refuses it, on the fast path
    (application/json) and on FastAPI's (a +json media type), and on the WebSocket."""
    frame = registry.frame
    client = stream_client_for()
    assert post(client, "s", points(frame, 0, STORED)).status_code == 200
    before = (client.get("/series/s").json(), client.get("/series/s/forecast").json())
    text = twice(frame, case)
    answer = client.post(
        "/series/s/observations", content=text, headers={**KEY, "content-type": media}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == _TWICE[case] + _READERS_DIFFER
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_text('{"series_id": "s", ' + text[1:])
        assert json.loads(socket.receive_text()) == {
            "series_id": "s",
            "status": 422,
            "detail": _TWICE[case] + _READERS_DIFFER,
        }
        assert_series_id_twice_refused(socket, '{"series_id": "s", "series_id": "t", ' + text[1:])
    after = (client.get("/series/s").json(), client.get("/series/s/forecast").json())
    assert after == before  # nothing stored changed


def assert_series_id_twice_refused(socket: Any, message: str) -> None:
    """A WS message naming its series twice: refused with no id to answer under."""
    socket.send_text(message)
    assert json.loads(socket.receive_text()) == {
        "series_id": None,
        "status": 422,
        "detail": "field 'series_id': is given twice in the message" + _READERS_DIFFER,
    }


_BEYOND_64_BITS = "123456789012345678901234567890"


def shadowed(frame: pd.DataFrame, case: str, token: str) -> str:
    """An observations body of 2 points after the stored ones that gives `values` (or the
    covariate) twice, the first holding `token`, which simdjson refuses: orjson and the
    standard parser keep the last, a body the service otherwise takes (200)."""
    text = json.dumps(points(frame, STORED, 2))
    if case == "values":
        return text.replace('"values": ', f'"values": [{token}, 1.0], "values": ', 1)
    return text.replace('{"x": ', f'{{"x": [{token}, 1.0], "x": ', 1)


@pytest.mark.parametrize("token", [_BEYOND_64_BITS, "NaN", "Infinity"])
@pytest.mark.parametrize("case", ["values", "covariate"])
def test_a_key_given_twice_in_text_simdjson_refuses_is_422_naming_it(
    case: str, token: str, stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """The key check read the body with simdjson only: a number beyond 64 bits or a NaN or
    Infinity token (which the standard parser reads) left it unchecked, and the last of the
    two was stored. Refused as a body simdjson reads is, on both paths, on the WebSocket
    (text and binary messages), and after a UTF-8 byte-order mark, which the standard parser
    (Starlette's, for a POST body or a binary message) skips."""
    frame = registry.frame
    client = stream_client_for()
    assert post(client, "s", points(frame, 0, STORED)).status_code == 200
    before = (client.get("/series/s").json(), client.get("/series/s/forecast").json())
    text = shadowed(frame, case, token)
    detail = _TWICE[case] + _READERS_DIFFER
    for media in ("application/json", "application/vnd.api+json"):
        for sent in (text.encode(), b"\xef\xbb\xbf" + text.encode()):
            answer = client.post(
                "/series/s/observations", content=sent, headers={**KEY, "content-type": media}
            )
            assert answer.status_code == 422, (media, sent[:3], answer.text)
            assert answer.json()["detail"] == detail
    message = '{"series_id": "s", ' + text[1:]
    refused = {"series_id": "s", "status": 422, "detail": detail}
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_text(message)
        assert json.loads(socket.receive_text()) == refused
        for sent in (message.encode(), b"\xef\xbb\xbf" + message.encode()):
            socket.send_bytes(sent)
            assert json.loads(socket.receive_bytes()) == refused
        assert_series_id_twice_refused(
            socket, '{"series_id": "s", "series_id": "t", "horizon": NaN, ' + text[1:]
        )
    after = (client.get("/series/s").json(), client.get("/series/s/forecast").json())
    assert after == before  # nothing stored changed


def test_a_query_on_delete_is_refused_without_pointing_at_a_body(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """`DELETE /series/{id}?force=1` was told "its settings go in the body": a DELETE has
    none. It is refused in words that fit, and deletes nothing."""
    client = stream_client_for()
    assert post(client, "s", points(registry.frame, 0, STORED)).status_code == 200
    answer = client.delete("/series/s?force=1", headers=KEY)
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": "query parameter 'force': is not read by DELETE /series/{series_id}; it "
        "takes no query parameters"
    }
    assert client.get("/series/s").json()["points_seen"] == STORED


@pytest.mark.parametrize("field", ["values", "covariates.x"])
@pytest.mark.parametrize("n", [1, 4])  # the one-point update takes another path
def test_a_sentinel_is_named_with_its_value_the_range_and_a_remedy(
    stream_client_for: Callable[..., TestClient], registry: Registry, field: str, n: int
) -> None:
    """A logger's 1e308 for 'no reading': the 422 said only the position and how many
    standard deviations out it was ("position 2 is 4.73e+307 training standard deviations"), where
    POST /forecast names the value, the range the model takes in the data's units and what
    to send instead. The same facts here, the range bounded by URNN_STREAM_MAX_SCALED."""
    frame = registry.frame
    client = stream_client_for()
    assert post(client, "s", points(frame, 0, STORED)).status_code == 200
    body = points(frame, STORED, n)
    column = body["values"] if field == "values" else body["covariates"]["x"]
    column[n - 1] = 1e308
    answer = client.post("/series/s/observations", json=body, headers=KEY)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    stats = registry.meta["scaler"]["stats"]["*"][
        registry.meta["target"] if field == "values" else "x"
    ]
    mean, scale = float(stats["mean"]), float(stats["scale"])
    low, high = (f"{mean + sign * 10_000 * scale:.3g}" for sign in (-1, 1))
    assert detail.startswith(
        f"field '{field}': holds values too large for the model once scaled ("
    ), detail
    assert (
        f"beyond the limit of 10000: URNN_STREAM_MAX_SCALED): 1e+308 at position {n - 1}; "
        f"the model takes {low} to {high} here; send the series in the units it was trained "
        "on, and a missing reading as the training data had it filled, not as a sentinel "
        "number; a streaming state would carry it for good, so the series is left unchanged"
    ) in detail, detail

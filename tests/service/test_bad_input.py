"""Every bad input answers 422 (413 for size) naming the series (index and id) and the field;
none of them is a 500. The bad series is the second one, so the index is checked too."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from service.arrow_io import request_stream
from tests.service.conftest import API_KEY, Registry, history, metric_value

Body = dict[str, Any]
BAD = "series 1 ('pump-2'), field"


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _shorten(body: Body) -> None:
    s = body["series"][1]
    s["values"] = s["values"][-10:]
    s["covariates"]["x"] = s["covariates"]["x"][-10:]


def _timestamps(shift: Callable[[list[str]], list[str]]) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        s = body["series"][1]
        stamps = pd.date_range(s.pop("start"), periods=len(s["values"]), freq="h")
        s["timestamps"] = shift([t.isoformat() for t in stamps])

    return apply


def _swap(stamps: list[str]) -> list[str]:
    stamps[7], stamps[8] = stamps[8], stamps[7]
    return stamps


def _gap(stamps: list[str]) -> list[str]:
    late = [(pd.Timestamp(t) + pd.Timedelta(minutes=30)).isoformat() for t in stamps[-5:]]
    return [*stamps[:-5], *late]


CASES: dict[str, tuple[Callable[[Body], None], str]] = {
    "null value": (
        _set(("series", 1, "values", 2), None),
        f"{BAD} 'values': holds null at position 2",
    ),
    "value too large": (
        _set(("series", 1, "values", 50), 1e300),
        f"{BAD} 'values': holds values too large for the model once scaled (beyond "
        "float32's range): 1e+300 at position 50;",
    ),
    # the column named, as every other covariate message names it ('covariates' alone
    # left a client with several covariates guessing which)
    "covariate too large": (
        _set(("series", 1, "covariates", "x", 50), 1e300),
        f"{BAD} 'covariates.x': holds values too large for the model once scaled (beyond "
        "float32's range): 1e+300 at position 50;",
    ),
    "short history": (
        _shorten,
        f"{BAD} 'values': has 10 values; the model needs at least lookback=48",
    ),
    # counts of one in the singular: "has 1 values" read as a typo in an API's answer
    "one-value history": (
        lambda b: b["series"][1].update(values=[1.0], covariates={"x": [1.0]}),
        f"{BAD} 'values': has 1 value; the model needs at least lookback=48",
    ),
    "one-value covariate": (
        _set(("series", 1, "covariates", "x"), [1.0]),
        f"{BAD} 'covariates.x': has 1 value, `values` has 60; they must be the same length",
    ),
    "one timestamp": (
        _timestamps(lambda t: t[:1]),
        f"{BAD} 'timestamps': has 1 entry, `values` has 60",
    ),
    "horizon above max": (
        _set(("horizon",), 13),
        "field 'horizon': 13 is above the model's maximum 12",
    ),
    "unknown quantile": (
        _set(("quantiles",), [0.5, 0.3]),
        "field 'quantiles'[1]: 0.3 is not a quantile the model was trained with",
    ),
    "unknown covariate": (
        _set(("series", 1, "covariates", "z"), [1.0] * 60),
        f"{BAD} 'covariates': unknown covariate(s) ['z']",
    ),
    # a name in another case (as a spreadsheet header writes it) is told apart from one the
    # model never saw: "unknown ['X']; the model knows ['x']" left a one-letter hunt
    "covariate in another case": (
        lambda b: b["series"][1].update(covariates={"X": b["series"][1]["covariates"]["x"]}),
        f"{BAD} 'covariates': unknown covariate(s) ['X']; the model knows ['x'] "
        "('X' is written 'x' there)",
    ),
    "missing covariate": (
        _set(("series", 1, "covariates"), {}),
        f"{BAD} 'covariates': missing covariate(s) ['x']",
    ),
    "covariate length": (
        _set(("series", 1, "covariates", "x"), [1.0] * 59),
        f"{BAD} 'covariates.x': has 59 values, `values` has 60",
    ),
    # a weather forecast sent along for the forecast steps: the model takes none
    "covariate with future values": (
        _set(("series", 1, "covariates", "x"), [1.0] * 72),
        f"{BAD} 'covariates.x': has 72 values, `values` has 60; they must be the same length: "
        "the model reads covariates over the history only, none for the forecast steps (it "
        "was trained on past values alone)",
    ),
    "null covariate": (
        _set(("series", 1, "covariates", "x", 0), None),
        f"{BAD} 'covariates.x': holds null at position 0",
    ),
    "timestamps length": (
        _timestamps(lambda t: t[:-1]),
        f"{BAD} 'timestamps': has 59 entries, `values` has 60",
    ),
    "timestamps not increasing": (
        _timestamps(_swap),
        f"{BAD} 'timestamps': must be strictly increasing; position 8",
    ),
    "timestamps off the grid": (
        _timestamps(_gap),
        f"{BAD} 'timestamps': the last 48 must be spaced at the model's frequency 'h'; position 55",
    ),
    "timestamps with a missing step": (
        _timestamps(
            lambda t: [
                *t[:40],
                *[(pd.Timestamp(s) + pd.Timedelta(hours=1)).isoformat() for s in t[40:]],
            ]
        ),
        f"{BAD} 'timestamps': the last 48 must be spaced at the model's frequency 'h'; position "
        "40 is 2021-03-25T05:00:00, expected 2021-03-25T04:00:00; a step is missing there: send "
        "the history on the model's grid, the missing steps filled as the training loader "
        "fills gaps (its fill policy)",
    ),
    "start and timestamps": (_timestamps(lambda t: t), "__start_too__"),
    "unparsable freq": (
        _set(("series", 1, "freq"), "fortnightly"),
        f"{BAD} 'freq': 'fortnightly' is not a pandas offset alias",
    ),
    "freq beyond any timestamp": (  # pandas' OverflowError was a 500
        _set(("series", 1, "freq"), "100000000000000000000h"),
        f"{BAD} 'freq': '100000000000000000000h' has a multiple too large for any timestamp",
    ),
    "freq step too long": (
        _set(("series", 1, "freq"), "99999999999999999h"),
        f"{BAD} 'freq': '99999999999999999h' is a step too long for any timestamp",
    ),
    "other freq": (
        _set(("series", 1, "freq"), "D"),
        f"{BAD} 'freq': 'D' is not the model's frequency 'h'; give 'h' (or leave `freq` out: "
        "it defaults to the model's) if the history is at that frequency, else resample it to "
        "'h' (the model forecasts 'h' steps from a history at 'h')",
    ),
    "bad start": (
        _set(("series", 1, "start"), "yesterday"),
        f"{BAD} 'start': must be an ISO 8601 date-time such as '2024-03-01T00:00:00' (local "
        "wall time) or '2024-03-01T00:00:00+01:00'; got the string 'yesterday'",
    ),
    "values not a list": (
        _set(("series", 1, "values"), "31.2"),
        f"{BAD} 'values': must be an array; got the string '31.2'",
    ),
    "value not a number": (
        _set(("series", 1, "values", 4), "warm"),
        f"{BAD} 'values'[4]: must be a number; got the string 'warm'",
    ),
    "missing id": (lambda b: b["series"][1].pop("id"), "series 1, field 'id': is required"),
    "duplicate id": (
        _set(("series", 1, "id"), "pump-1"),
        "series 1 ('pump-1'), field 'id': repeats the id of series 0",
    ),
    "unknown field": (
        _set(("series", 1, "colour"), "red"),
        f"{BAD} 'colour': unknown field; the allowed fields are id, values, start, freq, "
        "timestamps, covariates, timezone",
    ),
    "unknown top-level field": (
        _set(("horizen",), 24),
        "field 'horizen': unknown field; the allowed fields are horizon, quantiles, series, "
        "timezone",
    ),
    "empty series list": (
        _set(("series",), []),
        "field 'series': must hold at least 1 item(s); got 0",
    ),
    "horizon zero": (
        _set(("horizon",), 0),
        "field 'horizon': must be at least 1; got 0",
    ),
    # JSON that lax parsing would read as numbers: refused, never "fixed" to 1, 0 or 31.2
    "bool among values": (
        _set(("series", 1, "values", 7), True),
        f"{BAD} 'values'[7]: must be a number; got true",
    ),
    "numeric string among values": (
        _set(("series", 1, "values", 7), "31.2"),
        f"{BAD} 'values'[7]: must be a number; got the string '31.2'",
    ),
    "bool among covariates": (  # a flag is true/false throughout (below), never mixed in
        _set(("series", 1, "covariates", "x", 3), False),
        f"{BAD} 'covariates'['x'][3]: must be a number (or every entry of the list true or "
        "false: a flag, read as 1 and 0); got false",
    ),
    # said 'Input should be a valid dictionary or instance of SeriesIn', a class's name
    "series not an object": (
        _set(("series", 1), 5),
        "series 1: must be a JSON object, not a number",
    ),
    "bool horizon": (
        _set(("horizon",), True),
        "field 'horizon': must be a JSON integer (not true, false or text)",
    ),
    # pydantic's lax datetime read these as Unix times, guessed seconds or milliseconds by size
    "numeric start": (
        _set(("series", 1, "start"), 1_527_811_200),
        f"{BAD} 'start': 1527811200 is a number, not a date and time",
    ),
    "start of digits": (
        _set(("series", 1, "start"), "20180601"),
        f"{BAD} 'start': '20180601' is a number, not a date and time: give an ISO",
    ),
    "numeric timestamp": (
        _timestamps(lambda stamps: [*stamps[:-1], 1_527_811_200_000]),  # type: ignore[list-item]
        f"{BAD} 'timestamps'[59]: 1527811200000 is a number, not a date",
    ),
    "repeated quantile": (  # the answer keys levels by name: one would vanish
        _set(("quantiles",), [0.9, 0.1, 0.9]),
        "field 'quantiles'[2]: 0.9 repeats the level at position 0; ask for each level once",
    ),
    "bool quantile": (
        _set(("quantiles",), [True]),
        "field 'quantiles'[0]: must be a number; got true",
    ),
}


@pytest.fixture
def body(registry: Registry) -> Iterator[Body]:
    yield {"series": [history(registry.frame, "pump-1"), history(registry.frame, "pump-2")]}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_422_naming_series_and_field(
    client: TestClient, body: Body, case: str
) -> None:
    mutate, pattern = CASES[case]
    bad = copy.deepcopy(body)
    start = bad["series"][1]["start"]
    mutate(bad)
    if pattern == "__start_too__":
        bad["series"][1]["start"] = start
        pattern = f"{BAD} 'timestamps': give either `start` or `timestamps`, not both"
    response = client.post("/forecast", json=bad)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert pattern in detail, detail


def test_covariates_sent_to_a_model_trained_without_any_say_to_leave_them_out(
    registry: Registry, client_for: Callable[..., TestClient], body: Body
) -> None:
    """Sent to a model trained without covariates, they were refused with "the model knows
    []": allowed values that allow nothing. The 422 says to leave the field out, in JSON and
    Arrow alike; a model that knows some still lists them."""
    from service.arrow_io import ARROW_STREAM, request_stream

    assert registry.register("no-covariates", covariates=False, meta={"covariates": []}) == "1"
    client = client_for(model_uri="models:/no-covariates@champion")
    body["series"][0].pop("covariates")  # the first series is fine: the second is named
    expected = (
        f"{BAD} 'covariates': unknown covariate(s) ['x']; this model was trained without "
        "covariates: leave `covariates` out"
    )
    answer = client.post("/forecast", json=body)
    assert (answer.status_code, answer.json()["detail"]) == (422, expected)
    arrow = client.post(
        "/forecast",
        content=request_stream(body["series"]),
        headers={"content-type": ARROW_STREAM},
    )
    assert (arrow.status_code, arrow.json()["detail"]) == (422, expected)
    body["series"][1].pop("covariates")
    assert client.post("/forecast", json=body).status_code == 200


@pytest.mark.parametrize(
    ("token", "shown"), [("NaN", "NaN"), ("Infinity", "inf"), ("-Infinity", "-inf")]
)
def test_nan_and_inf_in_json_are_422(
    client: TestClient, body: Body, token: str, shown: str
) -> None:
    body["series"][1]["values"][5] = 12345.5  # a marker, replaced by the bare token below
    text = json.dumps(body).replace("12345.5", token)
    response = client.post("/forecast", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert f"{BAD} 'values': holds {shown} at position 5" in response.json()["detail"]


def test_a_body_that_is_not_an_object_is_422_naming_the_body(client: TestClient) -> None:
    for content in (b"", b"[1]"):
        answer = client.post(
            "/forecast", content=content, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith("the body"), answer.text
    array = client.post("/forecast", content=b"[1]", headers={"content-type": "application/json"})
    assert array.json()["detail"] == "the body: must be a JSON object, not an array"


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/forecast", content=b'{"series": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


_JSON = "the body is not valid JSON: "
MALFORMED_JSON = {
    b'{"series": [': _JSON + "it ends before its JSON value is complete (cut short?)",
    b"{series: []}": _JSON + "unexpected 's' at line 1, column 2; send one JSON object",
    b'{"series": [],\n "horizon": tru}': _JSON + "unexpected 't' at line 2, column 13",
    b'{"series": []}}': _JSON + "unexpected '}' at line 1, column 15",
    # a whole value and then more: not a value cut short (said so for a time)
    b'{"series": []} 2': _JSON + "unexpected '2' at line 1, column 16; send one JSON object",
    b'{"series": []}true': _JSON + "unexpected 't' at line 1, column 15; send one JSON object",
    b"   ": _JSON + "it is empty; send one JSON object",
    b'\xff{"series": []}': _JSON + "line 1, column 1 holds bytes that are not UTF-8 text",
    b'{"series": ["\xff"]}': _JSON + "it holds bytes that are not UTF-8 text; JSON is UTF-8",
    b"[" * 300 + b"]" * 300: _JSON + "it nests arrays or objects more than 200 deep",
    # a lone UTF-16 surrogate (a client that cut a pair in two): where it is, and what to send
    b'{"series": ["\\ud800"]}': _JSON + "line 1, column 14 holds the escape \\ud800, a lone "
    "UTF-16 surrogate that names no character; send the character itself, or both halves of "
    "its surrogate pair",
    b'{"series": [\n "\\\\ud800", "\\ud83d\\ude00", "\\ude00"]}': _JSON + "line 2, column "
    "30 holds the escape \\ude00, a lone UTF-16 surrogate",
    # cut short inside a string, a number or a literal: said to be at the token (500 before)
    b'{"series": [{"id": "pump': _JSON + "it ends before its JSON value is complete (cut short?)",
    b'{"series": 1e': _JSON + "it ends before its JSON value is complete (cut short?)",
    b'{"horizon": tr': _JSON + "it ends before its JSON value is complete (cut short?)",
    # an integer longer than Python converts: 500 ValueError from json_problem's json.loads
    b'{"series": [{"id": "a", "values": [' + b"1" * 5000 + b"]}]}": _JSON
    + "number out of range: it holds an integer of more than 4300 digits",
    # as a body of only whitespace, not pydantic's 'Field required'
    b"": _JSON + "it is empty; send one JSON object",
}
# What the parsers say of these bodies, which no answer repeats.
_PARSER_WORDS = ("EOF", "expected ident", "expected value", "Expecting", "trailing", "recursion")


@pytest.mark.parametrize("content", list(MALFORMED_JSON), ids=lambda c: repr(c[:60]))
def test_malformed_json_says_where_in_the_services_words(
    client: TestClient, content: bytes
) -> None:
    """The 422 said pydantic-core's parser's text ('EOF while parsing a list at line 1
    column 12', 'expected ident'); it now says where the body stops being JSON."""
    answer = client.post("/forecast", content=content, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(MALFORMED_JSON[content]), detail
    assert not any(words in detail for words in _PARSER_WORDS), detail


def test_malformed_json_on_a_route_read_by_the_standard_parser(client: TestClient) -> None:
    """POST /jobs reads its body with FastAPI's own (json.loads): the same sentences."""
    answer = client.post(
        "/jobs",
        content=b'{"kind": "train",\n "params": {]}',
        headers={"content-type": "application/json", "X-API-Key": API_KEY},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        _JSON + "unexpected ']' at line 2, column 13; send one JSON object"
    )


def test_oversized_body_is_413_declared_or_streamed(
    client_for: Callable[..., TestClient], body: Body
) -> None:
    client = client_for(max_body_bytes=4096)
    payload = json.dumps(body).encode()
    assert len(payload) > 4096
    declared = client.post(
        "/forecast", content=payload, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert "exceeds the limit of 4,096 bytes" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for i in range(0, len(payload), 1000):
            yield payload[i : i + 1000]

    streamed = client.post(
        "/forecast", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert "streamed body" in streamed.json()["detail"]
    # The answer says how short: the last `lookback` values (GET /model), which the model reads
    # whole; "send fewer or shorter series" alone left a long look-back's client guessing.
    for answer in (declared, streamed):
        assert (
            "send fewer or shorter series per request: a windowed model reads only the last "
            "`lookback` values of each series (GET /model)"
        ) in answer.json()["detail"]
        assert answer.json()["detail"].endswith("or raise URNN_MAX_BODY_BYTES")
    lookback = client.get("/model").json()["lookback"]
    small = {"series": [{**body["series"][0], "values": body["series"][0]["values"][-lookback:]}]}
    small["series"][0]["covariates"] = {"x": body["series"][0]["covariates"]["x"][-lookback:]}
    small["series"][0].pop("start")
    assert len(json.dumps(small)) < 4096
    assert client.post("/forecast", json=small).status_code == 200
    # Answered before routing, and still counted under the route (the 4xx panels look there;
    # they were `unmatched`), as is a body in an encoding the service does not read (415).
    encoded = client.post(
        "/forecast",
        content=b"{}",
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert encoded.status_code == 415
    client.post("/no/such/route", content=payload)  # 413 too, on no route: unmatched
    requests = "urnn_http_request_duration_seconds_count"
    too_large = dict(route="/forecast", method="POST", status_class="4xx")
    assert metric_value(client, requests, **too_large) == 3.0
    assert metric_value(client, requests, route="unmatched", status_class="4xx") == 1.0


@pytest.mark.parametrize("rows", [60, 300])
def test_a_bool_among_exact_zeros_and_ones_is_still_refused(
    client: TestClient, body: Body, rows: int
) -> None:
    """An on/off log is all 0s and 1s: the fast path looks at each for a bool (60 of them), or
    past 256 in a request leaves the check to the schema (300); either way the bool is found."""
    series = body["series"][1]
    series["values"] = [float(i % 2) for i in range(rows)]
    series["covariates"]["x"] = [0.5] * rows
    assert client.post("/forecast", json=body).status_code == 200
    series["values"][10] = True
    response = client.post("/forecast", json=body)
    assert response.status_code == 422, response.text
    assert f"{BAD} 'values'[10]: must be a number; got true" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"), [("covariate", 1e30), ("values", 1e38), ("values", -1e38)]
)
def test_a_history_the_model_overflows_on_is_422_not_nulls(
    client: TestClient, body: Body, field: str, value: float
) -> None:
    """Finite inputs within float32's range once scaled, that still overflow the forward (an
    audit got 200 with every forecast null); the other series of the request are not served
    half-way: the request is refused, naming the series. (A history of 1e38 throughout is
    forecast as 1e38: a constant window's statistics are its value and 0, exactly; one that
    swings between 0 and 1e38 overflows its spread.)"""
    series = body["series"][1]
    if field == "covariate":
        series["covariates"]["x"][-1] = value  # inside the look-back window
    else:
        series["values"] = [value * (i % 2) for i in range(len(series["values"]))]
    response = client.post("/forecast", json=body)
    assert response.status_code == 422, response.text
    named = "'covariates.x'" if field == "covariate" else "'values'"  # the largest, scaled
    assert response.json()["detail"].startswith(
        f"{BAD} {named}: the model's forecast from this history is not finite"
    )
    good = client.post("/forecast", json={"series": body["series"][:1]})
    assert good.status_code == 200  # the batcher goes on
    if field == "values" and value > 0:  # the same level throughout: forecast as that level
        series["values"] = [value] * len(series["values"])
        flat = client.post("/forecast", json=body)
        assert flat.status_code == 200, flat.text
        assert flat.json()["forecasts"][1]["mean"] == pytest.approx([value] * 12, rel=1e-6)


@pytest.mark.parametrize("field", ["values", "covariates.x"])
def test_a_value_too_large_once_scaled_is_named_with_the_range_and_a_remedy(
    client: TestClient, body: Body, registry: Registry, field: str
) -> None:
    """A sentinel such as 1e308 (a logger's 'no reading') in the look-back: the 422 said
    only 'values too large', not which value, nor what the model takes. It names the
    position in the list as sent (the look-back is its last 48 of 60), the value, the range
    in the data's units, and what to send instead."""
    series = body["series"][1]
    column = series["values"] if field == "values" else series["covariates"]["x"]
    column[-3] = -1e308
    response = client.post("/forecast", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(
        f"{BAD} '{field}': holds values too large for the model once scaled (beyond float32's "
        "range): -1e+308 at position 57; "
    ), detail
    name = registry.meta["target"] if field == "values" else "x"
    mean, scale = _training_statistics(registry, name)
    low, high = (f"{mean + sign * 3.4028234663852886e38 * scale:.3g}" for sign in (-1, 1))
    assert f"the model takes {low} to {high} here" in detail, detail
    assert "send the series in the units it was trained on" in detail, detail


def _training_statistics(registry: Registry, column: str) -> tuple[float, float]:
    """The trained version's scaler mean and scale of `column` (config.json's record)."""
    stats = registry.meta["scaler"]["stats"]["*"][column]
    return float(stats["mean"]), float(stats["scale"])


@pytest.mark.parametrize("offset", ["+00:19:32.5", "-04:56:02.000001"])
def test_a_utc_offset_with_a_fraction_of_a_second_is_refused(
    client: TestClient, body: Body, offset: str
) -> None:
    """Python reads an offset with microseconds (a local mean time's +00:19:32 reads, and is
    answered so); pandas writes the times on such an offset cut to the second, so every step
    of the answer read up to a second off its local time (00:00 answered as 23:59:59.5).
    No clock keeps such an offset: refused, naming the field (an Arrow text too)."""
    series = body["series"][1]
    series["start"] = f"1930-01-01T00:00:00{offset}"
    answers = [
        client.post("/forecast", json=body),
        client.post(
            "/forecast",
            content=request_stream(body["series"]),
            headers={"content-type": "application/vnd.apache.arrow.stream"},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(f"{BAD} 'start': "), answer.text
    assert "UTC offset with a fraction of a second" in answers[0].json()["detail"]
    series["start"] = f"1930-01-01T00:00:00{offset.split('.')[0]}"  # whole seconds: read
    assert client.post("/forecast", json=body).status_code == 200


def test_a_long_id_is_shortened_in_the_error(client: TestClient, body: Body) -> None:
    body["series"][1]["id"] = "p" * 10_000  # was echoed whole: 10 KB per answer
    answer = client.post("/forecast", json=body)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail == (
        f"series 1 ('{'p' * 60}'... (10,000 characters)), field 'id': must be at most 256 "
        "character(s) long; got 10,000"
    )
    body["series"][1]["id"] = "q" * 200  # allowed, and still shortened in a message
    body["series"][1]["values"][3] = None
    detail = client.post("/forecast", json=body).json()["detail"]
    assert detail.startswith(f"series 1 ('{'q' * 60}'... (200 characters)), field 'values'")


LONG = "a" * 100_000


def _long_json(case: str, body: Body) -> None:
    series = body["series"][1]
    if case == "freq":
        series["freq"] = "9" * 100_000 + "h"
    elif case == "covariate name":
        series["covariates"][LONG] = series["covariates"]["x"]
    elif case == "key of a series":
        series[LONG] = 1
    elif case == "key of the body":
        body[LONG] = 1


@pytest.mark.parametrize("case", ["freq", "covariate name", "key of a series", "key of the body"])
def test_a_long_name_or_value_is_shortened_in_the_422(
    client: TestClient, body: Body, case: str
) -> None:
    """A 100,000-character freq, covariate name or unknown key was echoed whole: 100 kB per
    answer. Each is shown by its start and its length, as ids and values already were."""
    _long_json(case, body)
    answer = client.post("/forecast", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert len(detail) < 400 and "characters)" in detail, detail[:300]


def _arrow_table(case: str, series: Body) -> Any:
    import pyarrow as pa

    columns: dict[str, Any] = {"id": [series["id"]], "values": [series["values"]]}
    if case == "column":
        columns[LONG] = [1.0]
    elif case == "covariate column given twice":
        cells = [pa.array(v) for v in columns.values()] + [pa.array([[1.0]])] * 2
        return pa.Table.from_arrays(cells, names=["id", "values", f"cov:{LONG}", f"cov:{LONG}"])
    elif case == "start":
        columns |= {"start": [LONG], "freq": ["h"]}
    table = pa.table(columns)
    if case == "metadata key":
        table = table.replace_schema_metadata({LONG: "1"})
    return table


@pytest.mark.parametrize(
    "case", ["column", "covariate column given twice", "start", "metadata key"]
)
def test_a_long_name_or_value_in_an_arrow_body_is_shortened_in_the_422(
    client: TestClient, body: Body, case: str
) -> None:
    from service.arrow_io import ARROW_STREAM
    from tests.service.test_arrow import stream_of

    content = stream_of(_arrow_table(case, body["series"][0]))
    answer = client.post("/forecast", content=content, headers={"content-type": ARROW_STREAM})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert len(detail) < 400 and "characters)" in detail, detail[:300]


def test_a_long_content_type_is_shortened_in_the_415(client: TestClient, body: Body) -> None:
    answer = client.post(
        "/forecast", content=json.dumps(body), headers={"content-type": "a" * 5_000}
    )
    assert answer.status_code == 415, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"header 'Content-Type': '{'a' * 60}'... (5,000 characters)")


@pytest.mark.parametrize("horizon", [1e300, 1e20])
def test_a_horizon_beyond_64_bits_is_said_in_the_services_words(
    client: TestClient, body: Body, horizon: float
) -> None:
    """pydantic's own 'Unable to parse input string as an integer, exceeded maximum size'."""
    answer = client.post("/forecast", json={**body, "horizon": horizon})
    assert answer.status_code == 422, answer.text
    assert (
        answer.json()["detail"]
        == f"field 'horizon': must be an integer below 2**63; got {horizon!r}"
    )


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("series", 1, "values", 3), "series 1 ('pump-2'), field 'values'[3]"),
        (("series", 1, "covariates", "x", 0), "series 1 ('pump-2'), field 'covariates'['x'][0]"),
        (("quantiles", 0), "field 'quantiles'[0]"),
    ],
)
def test_an_integer_beyond_float64_is_said_to_be_too_large_not_no_number(
    client: TestClient, body: Body, path: tuple[Any, ...], field: str
) -> None:
    """An integer of 400 digits is a JSON number; the 422 said it 'must be a number', which
    it is (written with a decimal point or exponent, 1e400, it was read as inf and said to
    be not finite). It says the value is beyond float64's range."""
    body.setdefault("quantiles", [0.5])
    _set(path, 1234567)(body)  # a placeholder the text below replaces
    text = json.dumps(body).replace("1234567", "1" + "0" * 400, 1)
    answer = client.post("/forecast", content=text, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(
        f"{field}: must be a finite number within float64's range (at most about 1.8e308 in "
        "size); got 1000000"
    ), answer.json()["detail"]


def test_a_path_no_endpoint_serves_is_named_in_the_404(client: TestClient) -> None:
    """Starlette said only 'Not Found', also for a series id whose '/' was sent as %2F (it
    arrives decoded and splits the path), which the id rule forbids."""
    answer = client.get("/forcast")
    assert answer.status_code == 404
    assert answer.json() == {
        "detail": "no endpoint at GET /forcast; the endpoints are listed at /docs"
    }
    answer = client.post("/series/pump%2F1/observations", json={"values": [1.0]})
    assert answer.status_code == 404
    assert answer.json()["detail"] == (
        "no endpoint at POST /series/pump/1/observations; field 'series_id': a string of 1 to "
        "200 characters, not blank or invisible (zero-width characters alone), not '.' or '..' "
        "(nor those with spaces around them), without '/', control characters or U+FFFD (what "
        "bytes that are not UTF-8 decode to: write the id in UTF-8, percent-encoded) (a %2F in "
        "the URL is read as '/'); the endpoints are listed at /docs"
    )
    long = client.get("/" + "x" * 5000)
    assert long.status_code == 404 and "(5,001 characters)" in long.json()["detail"]
    assert len(long.text) < 300


def test_a_method_the_path_does_not_take_is_named_with_those_it_does(client: TestClient) -> None:
    answer = client.delete("/forecast")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json() == {"detail": "method DELETE is not allowed at /forecast; allowed: POST"}


def test_schema_errors_say_what_the_field_takes_and_what_was_sent(
    client: TestClient, body: Body
) -> None:
    """Pydantic's bound and type messages ('Input should be greater than or equal to 1') in
    the service's words, with the value that was refused, shortened when long."""
    cases = {
        '{"horizon": NaN, "series": [{"id": "a", "values": [1.0]}]}': (
            "field 'horizon': must be a finite number; got nan"
        ),
        '{"horizon": 2, "series": [{"id": "a", "start": "' + "1" * 3000 + '", "values": [1]}]}': (
            "series 0 ('a'), field 'start': '" + "1" * 60 + "'... (3,000 characters) is a number, "
            "not a date and time: give an ISO 8601 text such as '2018-06-01T00:00:00' (a number "
            "would be read as seconds or milliseconds since 1970 by its size, and '20180601' as "
            "a day in 1970)"
        ),
    }
    for text, detail in cases.items():
        answer = client.post(
            "/forecast", content=text, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json() == {"detail": detail}


def _described(body: Body) -> str:
    from pydantic import ValidationError

    from service.errors import describe_validation_errors
    from service.schemas import ForecastRequest

    with pytest.raises(ValidationError) as caught:
        ForecastRequest.model_validate(body)
    return describe_validation_errors(caught.value.errors(), body, ForecastRequest)


def test_one_problem_along_a_list_is_one_sentence_counting_the_rest() -> None:
    """100 timestamps in one wrong form read as 100 copies of one sentence, cut after five
    (1,300 characters that named five positions)."""
    series = {"id": "b", "values": [1.0] * 100, "timestamps": [f"x{i}" for i in range(100)]}
    said = _described({"series": [series]})
    assert said == (
        "series 0 ('b'), field 'timestamps'[0]: must be an ISO 8601 date-time such as "
        "'2024-03-01T00:00:00' (local wall time) or '2024-03-01T00:00:00+01:00'; got the "
        "string 'x0' (the same problem at [1], [2], [3], [4] and 95 more)"
    )
    mixed = {"id": "c", "start": "2020-01-01", "values": ["a", 1.0, "b", 2.0]}
    assert _described({"series": [mixed]}) == (
        "series 0 ('c'), field 'values'[0]: must be a number; got the string 'a' (the same "
        "problem at [2])"
    )


def test_problems_of_other_series_and_fields_stay_apart_and_the_rest_are_counted() -> None:
    good = {"start": "2020-01-01", "values": [1.0] * 8}
    body = {
        "series": [
            {**good, "id": "a", "values": ["x"] * 8},
            {**good, "id": "b", "values": ["x"] * 8},
            *({**good, "id": f"s{i}", "start": "zz"} for i in range(2, 7)),
        ]
    }
    said = re.split(r"; (?=series |and )", _described(body))
    assert said[0].startswith("series 0 ('a'), field 'values'[0]: must be a number")
    assert said[0].endswith("(the same problem at [1], [2], [3], [4] and 3 more)")
    assert said[1].startswith("series 1 ('b'), field 'values'[0]: must be a number")
    assert [s.split(",")[0] for s in said[2:5]] == ["series 2 ('s2')", "series 3 ('s3')",
                                                    "series 4 ('s4')"]  # fmt: skip
    assert said[5:] == ["and 2 more error(s)"]


def test_different_checks_along_one_list_are_not_one_problem() -> None:
    """Every check of the service's own validators is a pydantic "value_error": a time finer
    than the microsecond and a number given as a time were called "the same problem"."""
    times = ["2024-03-01T00:00:00.1234567", "20240301"]
    said = _described({"series": [{"id": "t", "values": [1.0, 2.0], "timestamps": times}]})
    first, second = re.split(r"; (?=series )", said)
    assert "'timestamps'[0]" in first and "finer than the microsecond" in first
    assert "the same problem" not in first
    assert "'timestamps'[1]" in second and "is a number, not a date and time" in second


def test_a_flag_covariate_sent_as_true_false_is_read_as_1_and_0(
    client: TestClient, registry: Registry
) -> None:
    """The training loader reads a True/False column (a holiday flag) as 1.0/0.0, so a model
    trained on one is sent JSON true/false for it (or an Arrow list<bool>): the same answer as
    1 and 0. A bool among numbers stays a 422, in `values` always."""
    series = history(registry.frame, "pump-1")
    flags = [i % 5 == 0 for i in range(len(series["values"]))]
    as_numbers = {**series, "covariates": {"x": [float(f) for f in flags]}}
    as_bools = {**series, "covariates": {"x": flags}}
    expected = client.post("/forecast", json={"series": [as_numbers]})
    assert expected.status_code == 200, expected.text
    answer = client.post("/forecast", json={"series": [as_bools]})
    assert answer.status_code == 200, answer.text
    assert answer.content == expected.content
    import pyarrow as pa

    for kind in (pa.list_(pa.bool_()), pa.large_list(pa.bool_())):
        table = pa.table(
            {
                "id": pa.array(["pump-1"]),
                "values": pa.array([series["values"]], pa.list_(pa.float64())),
                "start": pa.array([series["start"]]),
                "covariates.x": pa.array([flags], kind),
            }
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        by_arrow = client.post(
            "/forecast",
            content=sink.getvalue().to_pybytes(),
            headers={"content-type": "application/vnd.apache.arrow.stream"},
        )
        assert by_arrow.status_code == 200, (kind, by_arrow.text)
        assert by_arrow.json() == expected.json()
    flagged = table.set_column(1, "values", pa.array([[v > 0 for v in series["values"]]]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, flagged.schema) as writer:
        writer.write_table(flagged)
    refused = client.post(
        "/forecast",
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": "application/vnd.apache.arrow.stream"},
    )
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "column 'values': must be lists of floats or integers; got list<item: bool>"
    )
    mixed = {**series, "covariates": {"x": [True, *[0.5] * (len(flags) - 1)]}}
    refused = client.post("/forecast", json={"series": [mixed]})
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "series 0 ('pump-1'), field 'covariates'['x'][0]: must be a number (or every entry of "
        "the list true or false: a flag, read as 1 and 0); got true"
    )
    flagged_values = {**as_numbers, "values": [bool(v > 0) for v in series["values"]]}
    refused = client.post("/forecast", json={"series": [flagged_values]})
    assert refused.status_code == 422
    assert "field 'values'[0]: must be a number; got true" in refused.json()["detail"]


def test_the_series_endpoints_read_a_flag_covariate_as_the_forecast_does() -> None:
    from pydantic import ValidationError

    from service.errors import describe_validation_errors
    from service.stream_schemas import ObservationsRequest

    body = {"values": [1.0, 2.0, 3.0], "covariates": {"x": [True, False, True]}}
    assert ObservationsRequest.model_validate(body).covariates == {"x": [1.0, 0.0, 1.0]}
    mixed = {**body, "covariates": {"x": [1.0, False, 0.5]}}
    with pytest.raises(ValidationError) as caught:
        ObservationsRequest.model_validate(mixed)
    assert describe_validation_errors(caught.value.errors(), mixed) == (
        "field 'covariates.x'[1]: must be a number (or every entry of the list true or "
        "false: a flag, read as 1 and 0); got false"
    )


_TWICE = {
    "horizon": "field 'horizon': is given twice in the body",
    "values": "series 1 ('pump-2'), field 'values': is given twice in the series",
    "id": "series 1, field 'id': is given twice in the series",
    "covariate": "series 1 ('pump-2'), field 'covariates'['x']: is given twice in the series' "
    "covariates",
}


@pytest.mark.parametrize(
    ("case", "covariates"),
    [(case, True) for case in _TWICE] + [(case, False) for case in _TWICE if case != "covariate"],
)
@pytest.mark.parametrize("media", ["application/json", "application/vnd.api+json"])
def test_a_key_given_twice_is_422_naming_it_and_where(
    client_for: Callable[..., TestClient],
    registry: Registry,
    case: str,
    covariates: bool,
    media: str,
) -> None:
    """orjson and pydantic's parser keep the last of a repeated key, simdjson the first: the
    answer was the forecast of one of two histories (or horizons), chosen silently. Refused
    whichever reader meets the body: simdjson's block (plain histories), orjson's rows
    (covariates), FastAPI's own path (a +json media type)."""
    if not covariates:
        registry.register("plain-keys", seed=6, covariates=False, meta={"covariates": []})
        client = client_for(model_uri="models:/plain-keys@champion")
    else:
        client = client_for()
    series = [history(registry.frame, "pump-1"), history(registry.frame, "pump-2", stop=500)]
    if not covariates:
        for s in series:
            s.pop("covariates")
    body = {"horizon": 5, "series": series}
    text = json.dumps(body)
    assert (
        client.post("/forecast", content=text, headers={"content-type": media}).status_code == 200
    )
    second = json.dumps(series[1])
    if case == "horizon":
        twice = text.replace('"horizon": 5', '"horizon": 5, "horizon": 2', 1)
    elif case == "values":
        twice = text.replace(second, second[:-1] + ', "values": [1.0, 2.0]}', 1)
    elif case == "id":
        twice = text.replace(second, second[:-1] + ', "id": "pump-3"}', 1)
    else:
        column = json.dumps(series[1]["covariates"])
        twice = text.replace(column, column[:-1] + ", " + column[1:], 1)
    assert twice != text
    answer = client.post("/forecast", content=twice, headers={"content-type": media})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        f"{_TWICE[case]}; JSON readers differ on which of the two counts (the first or the "
        "last): give each key once"
    )


# A number simdjson refuses (beyond 64 bits; orjson reads it as a float, pydantic's parser as
# an int) and a token orjson refuses too (the route's parser reads it): bodies simdjson cannot
# look into, whose keys were not checked (a 200 from the last of two horizons or histories).
_BEYOND_64_BITS = "123456789012345678901234567890"


@pytest.mark.parametrize("token", [_BEYOND_64_BITS, "NaN", "-Infinity"])
@pytest.mark.parametrize("case", ["horizon", "values", "covariate"])
@pytest.mark.parametrize("media", ["application/json", "application/vnd.api+json"])
def test_a_key_given_twice_in_text_simdjson_refuses_is_422_naming_it(
    client_for: Callable[..., TestClient], registry: Registry, token: str, case: str, media: str
) -> None:
    """The token sits in the first of two histories (or covariate columns) of one series, the
    one orjson and pydantic's parser drop (or, horizon twice, in a history): the last one was
    forecast, 200, where a body simdjson reads answers the 422. The repeated key is named
    first, NaN in a history too, as on the simdjson path, where the key check runs ahead of
    any check of the values."""
    client = client_for()
    series = [history(registry.frame, "pump-1"), history(registry.frame, "pump-2", stop=500)]
    text = json.dumps({"horizon": 5, "series": series})
    second = json.dumps(series[1])
    if case == "horizon":  # the token in a history, the horizon twice
        first = json.dumps(series[0]["values"][0])
        twice = text.replace(first, token, 1).replace('"horizon": 5', '"horizon": 5, "horizon": 2')
    elif case == "values":
        bad = json.dumps(series[1]["values"][:-1])[:-1] + f", {token}]"
        shadowed = second.replace('"values": ', f'"values": {bad}, "values": ', 1)
        twice = text.replace(second, shadowed, 1)
    else:
        column = json.dumps(series[1]["covariates"])
        bad = json.dumps(series[1]["covariates"]["x"][:-1])[:-1] + f", {token}]"
        twice = text.replace(column, '{"x": ' + bad + ", " + column[1:], 1)
    assert twice != text and token in twice
    answer = client.post("/forecast", content=twice, headers={"content-type": media})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        f"{_TWICE[case]}; JSON readers differ on which of the two counts (the first or the "
        "last): give each key once"
    )


def test_a_key_given_twice_after_a_byte_order_mark_is_refused_as_not_json(
    client: TestClient, registry: Registry
) -> None:
    """simdjson skips a UTF-8 byte-order mark; orjson and pydantic's parser refuse the body,
    so it is not a request whichever key it repeats: the 422 says it is not JSON."""
    text = json.dumps({"horizon": 5, "series": [history(registry.frame, "pump-1")]})
    twice = text.replace('"horizon": 5', '"horizon": 5, "horizon": 2')
    for media in ("application/json", "application/vnd.api+json"):
        headers = {"content-type": media}
        answer = client.post("/forecast", content=b"\xef\xbb\xbf" + twice.encode(), headers=headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"] == (
            "the body is not valid JSON: unexpected '\\ufeff' at line 1, column 1; send one JSON "
            "object"
        )

"""POST /series/{id}/observations' fast path agrees with FastAPI's pydantic path it shortcuts.

- `service.stream_fast_path.fast_observations` (parsed JSON -> arrays, no pydantic) accepts
  only bodies `ObservationsRequest` accepts, reads them into the same values, and leaves every
  other body (None) to the schema, so rejections keep the schema's 422s.
- Through HTTP, the fast path (`application/json`) and FastAPI's path (the same body sent as
  `application/merge-patch+json`, which FastAPI parses as JSON and the fast path leaves alone)
  answer byte for byte the same, for good bodies and bad ones (422, 409, 401).
- The answer's ISO timestamps (numpy and a cache for naive whole seconds) are pandas'.
- Small updates of a ready state run on the event loop; loads stay on the worker thread.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.stream_fast_path import FastObservations, fast_observations
from service.stream_schemas import ObservationsRequest
from service.stream_validation import iso, iso_steps
from service.streaming import StreamEngine
from tests.service.conftest import API_KEY, Registry, register_streaming
from tests.service.test_streaming_api import points

Body = dict[str, Any]
FAST = {"X-API-Key": API_KEY, "content-type": "application/json"}
SLOW = {"X-API-Key": API_KEY, "content-type": "application/merge-patch+json"}


def _body(**extra: Any) -> Body:
    return {
        "start": "2024-03-01T00:00:00",
        "values": [1.5, 2.0, 3.25, 4.0],
        "covariates": {"x": [0.5, 0.25, 1.0, 2.0]},
        **extra,
    }


def _with(change: Callable[[Body], Any]) -> Body:
    body = _body()
    change(body)
    return body


def _value(position: int, value: Any) -> Callable[[Body], Any]:
    return lambda body: body["values"].__setitem__(position, value)


BODIES: dict[str, Any] = {
    "plain": _body(),
    "one value": _body(values=[1.5], covariates={"x": [2.0]}),
    "one int": _body(values=[7], covariates={"x": [2]}),
    "one bool": _body(values=[True], covariates={"x": [2.0]}),
    "one null": _body(values=[None], covariates={"x": [2.0]}),
    "one text": _body(values=["1.5"], covariates={"x": [2.0]}),
    "one huge int": _body(values=[2**70], covariates={"x": [2.0]}),
    "ints among floats": _with(_value(1, 3)),
    "all ints": _body(values=[1, 2, 3, 4]),
    "bool among floats": _with(_value(1, True)),
    "bool among ints": _body(values=[1, True, 3, 4]),
    "all bools": _body(values=[True, False, True, True]),
    "NaN": _with(_value(2, float("nan"))),
    "inf": _with(_value(2, float("inf"))),
    "null": _with(_value(2, None)),
    "numeric string": _with(_value(2, "1.5")),
    "nested list": _with(_value(2, [1.0])),
    "2-D values": _body(values=[[1.0, 2.0]] * 2),
    "big int": _with(_value(2, 2**70)),
    "empty values": _body(values=[]),
    "values not a list": _body(values=3.0),
    "no values": _with(lambda b: b.pop("values")),
    "unknown key": _body(colour="red"),
    "date-only start": _body(start="2024-03-01"),
    "zoned start": _body(start="2024-03-01T00:00:00+02:00"),
    "fractional start": _body(start="2024-03-01T00:00:00.250"),
    "unix start text": _body(start="1700000000"),
    "bad start": _body(start="yesterday"),
    "numeric start": _body(start=1700000000),
    "null start": _body(start=None),
    "timestamps": _with(
        lambda b: b.update(
            start=None,
            timestamps=[t.isoformat() for t in pd.date_range("2024-03-01", periods=4, freq="h")],
        )
    ),
    "bad timestamp": _body(timestamps=["2024-03-01T00:00:00", "never"]),
    "numeric timestamps": _body(timestamps=[1, 2, 3, 4]),
    "covariate null": _body(covariates={"x": [1.0, None, 1.0, 1.0]}),
    "covariates null": _body(covariates=None),
    "covariates not a dict": _body(covariates=[1.0]),
    "empty covariate": _body(covariates={"x": []}),
    "no covariates": _with(lambda b: b.pop("covariates")),
    "horizon": _body(horizon=3),
    "horizon null": _body(horizon=None),
    "horizon 0": _body(horizon=0),
    "horizon float": _body(horizon=4.0),
    "horizon text": _body(horizon="4"),
    "horizon bool": _body(horizon=True),
    "quantiles": _body(quantiles=[0.1, 1]),
    "quantiles null": _body(quantiles=None),
    "quantiles empty": _body(quantiles=[]),
    "quantile bool": _body(quantiles=[True]),
    "quantile text": _body(quantiles=["0.1"]),
    "interpolate": _body(gap_policy="interpolate"),
    "reject": _body(gap_policy="reject"),
    "other policy": _body(gap_policy="ignore"),
    "policy null": _body(gap_policy=None),
    "not a dict": [1, 2],
    "null body": None,
}


def _schema(body: Any) -> ObservationsRequest | None:
    try:
        return ObservationsRequest.model_validate(body)
    except ValidationError:
        return None


@pytest.mark.parametrize("name", list(BODIES))
def test_fast_path_accepts_only_what_the_schema_accepts_and_reads_the_same(name: str) -> None:
    body = copy.deepcopy(BODIES[name])
    schema, fast = _schema(copy.deepcopy(body)), fast_observations(body)
    if schema is None:
        assert fast is None, "the fast path accepted a body the schema rejects"
        return
    if fast is None:  # left to the schema: always allowed
        return
    assert isinstance(fast, FastObservations)
    for key in ("start", "timestamps", "horizon", "quantiles", "gap_policy"):
        assert getattr(fast, key) == getattr(schema, key), key
    assert fast.values.dtype == np.float64
    np.testing.assert_array_equal(fast.values, np.asarray(schema.values, dtype=np.float64))
    assert fast.covariates.keys() == schema.covariates.keys()
    for key, column in fast.covariates.items():
        assert column.dtype == np.float64
        np.testing.assert_array_equal(column, np.asarray(schema.covariates[key], np.float64))


def test_fast_path_takes_the_common_bodies() -> None:
    for name in (
        "plain",
        "one value",
        "one int",
        "ints among floats",
        "all ints",
        "timestamps",
        "zoned start",
        "no covariates",
        "horizon",
        "quantiles",
        "interpolate",
    ):
        assert fast_observations(copy.deepcopy(BODIES[name])) is not None, name


# -----------------------------------------------------------------------------
# Through HTTP: the two paths answer the same bytes


def _both(client: TestClient, body: Any, fast_id: str, slow_id: str, **headers: str) -> None:
    """POST `body` to series fast_id by the fast path and to slow_id (holding the same points)
    by FastAPI's; the answers must be the same bytes once the ids are swapped."""
    text = json.dumps(body)  # NaN and Infinity as Python writes them, as some clients do
    fast = client.post(f"/series/{fast_id}/observations", content=text, headers={**FAST, **headers})
    slow = client.post(f"/series/{slow_id}/observations", content=text, headers={**SLOW, **headers})
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.headers["content-type"] == slow.headers["content-type"]
    mine = fast.content.replace(json.dumps(fast_id).encode(), json.dumps(slow_id).encode())
    mine = mine.replace(repr(fast_id).encode(), repr(slow_id).encode())  # in 404/409 messages
    assert mine == slow.content, (fast.text, slow.text)


@pytest.fixture
def client(stream_client_for: Callable[..., TestClient]) -> TestClient:
    return stream_client_for(stream_tail_points=50)


def test_fast_route_answers_what_the_schema_route_answers(
    client: TestClient, registry: Registry
) -> None:
    frame = registry.frame
    ids = ("fast-1", "slow-1")
    steps: list[Body] = [
        points(frame, 0, 10),  # warming up: forecast null
        points(frame, 10, 38),  # ready now
        points(frame, 48, 1),  # single points, inline
        points(frame, 49, 1, horizon=3),
        points(frame, 50, 2, quantiles=[0.9, 0.1]),
        points(frame, 50, 4),  # 2 duplicates, 2 new
        points(frame, 54, 1, quantiles=[0.5, 1]),  # an int quantile level
        points(frame, 58, 2, gap_policy="interpolate"),  # 3 filled
        {  # dated by timestamps, ints among the values
            "timestamps": [t.isoformat() for t in frame.index[60:63]],
            "values": [1, 2.5, 3],
            "covariates": {"x": [0, 0.5, 1]},
        },
        points(frame, 63, 1, horizon=12),
    ]
    for body in steps:
        _both(client, body, *ids)
    for horizon in (1, 7, 12):  # the cached forecast, read as different horizons
        _both(client, points(frame, 60, 1, horizon=horizon), *ids)


def test_fast_route_zoned_series(client: TestClient, registry: Registry) -> None:
    frame = registry.frame
    zoned = pd.date_range("2024-03-29", periods=len(frame), freq="h", tz="Europe/Paris")
    for start, n in ((0, 50), (50, 1), (51, 3)):
        body = points(frame, start, n)
        body["start"] = zoned[start].isoformat()
        _both(client, body, "fast-z", "slow-z")


def test_bad_bodies_answer_the_same_on_both_paths(client: TestClient, registry: Registry) -> None:
    frame = registry.frame
    stored = 60
    for series_id in ("fast-b", "slow-b"):
        answer = client.post(
            f"/series/{series_id}/observations", json=points(frame, 0, stored), headers=FAST
        )
        assert answer.status_code == 200, answer.text
    last = frame.index[stored - 1]
    bad: dict[str, Any] = {
        "horizon above max": points(frame, stored, 2, horizon=13),
        "unknown quantile": points(frame, stored, 2, quantiles=[0.5, 0.3]),
        "unknown covariate": {**points(frame, stored, 2), "covariates": {"x": [1, 2], "z": [1, 2]}},
        "missing covariate": {**points(frame, stored, 2), "covariates": {}},
        "covariate length": {**points(frame, stored, 2), "covariates": {"x": [1.0]}},
        "null value": {**points(frame, stored, 2), "values": [1.0, None]},
        "NaN value": {**points(frame, stored, 2), "values": [1.0, float("nan")]},
        "inf value": {**points(frame, stored, 2), "values": [1.0, float("inf")]},
        "no dates": {k: v for k, v in points(frame, stored, 2).items() if k != "start"},
        "start and timestamps": points(
            frame, stored, 2, timestamps=[t.isoformat() for t in frame.index[60:62]]
        ),
        "timestamps backwards": {
            "timestamps": [frame.index[61].isoformat(), frame.index[60].isoformat()],
            "values": [1.0, 2.0],
            "covariates": {"x": [1.0, 2.0]},
        },
        "gap": points(frame, stored + 3, 2),
        "gap too large": points(frame, stored + 30, 2, gap_policy="interpolate"),
        "off the grid": {
            **points(frame, stored, 2),
            "start": (frame.index[stored] + pd.Timedelta(minutes=30)).isoformat(),
        },
        "changed duplicate": {**points(frame, stored - 2, 2), "values": [0.5, 1.0]},
        "older than the tail": points(frame, 2, 2),
        "zoned after naive": {**points(frame, stored, 2), "start": "2030-01-01T00:00:00+00:00"},
        "unknown key": points(frame, stored, 2, colour="red"),
        "horizon 0": points(frame, stored, 2, horizon=0),
        "empty values": {"start": last.isoformat(), "values": [], "covariates": {"x": []}},
        "not an object": [1, 2],
    }
    for name, body in bad.items():
        _both(client, body, "fast-b", "slow-b")
        answer = client.post("/series/fast-b/observations", content=json.dumps(body), headers=FAST)
        assert answer.status_code in (409, 422), (name, answer.text)
    # not JSON (or numbers orjson refuses) at all
    text = json.dumps(points(frame, stored, 2)).replace('"values": [', '"values": [1e400, ', 1)
    text = text.replace('"x": [', '"x": [1, ', 1)
    fast = client.post("/series/fast-b/observations", content=text, headers=FAST)
    slow = client.post("/series/slow-b/observations", content=text, headers=SLOW)
    assert fast.status_code == slow.status_code == 422
    assert "field 'values': holds inf at position 0" in fast.json()["detail"]
    assert fast.content == slow.content
    for text in ("{", "", "[1, 2"):
        fast = client.post("/series/fast-b/observations", content=text, headers=FAST)
        slow = client.post("/series/slow-b/observations", content=text, headers=FAST)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
        assert fast.status_code == 422
    # the key: missing, empty or wrong is 401 on both paths (before looking at the points)
    body = points(frame, stored, 1)
    for key in (None, "", "wrong"):
        headers = {"X-API-Key": key} if key is not None else {}
        for kind in ("application/json", "application/merge-patch+json"):
            answer = client.post(
                "/series/fast-b/observations",
                content=json.dumps(body),
                headers={"content-type": kind, **headers},
            )
            assert answer.status_code == 401, answer.text
            assert answer.json() == {"detail": "missing or wrong X-API-Key header"}
            assert answer.headers["www-authenticate"] == "ApiKey"
    # an id longer than the path allows: FastAPI's 422 on both
    long_id = "x" * 201
    fast = client.post(f"/series/{long_id}/observations", json=body, headers=FAST)
    slow = client.post(f"/series/{long_id}/observations", json=body, headers=SLOW)
    assert fast.status_code == slow.status_code == 422
    assert fast.content == slow.content
    # and nothing stored changed
    assert client.get("/series/fast-b").json()["points_seen"] == stored


@pytest.mark.parametrize("reads_x", [False, True], ids=["no-covariates", "covariate-x"])
def test_covariates_null_answers_what_leaving_it_out_answers(
    registry: Registry,
    stream_client_for: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    reads_x: bool,
) -> None:
    """`"covariates": null` was a 422 ("field 'covariates': ...") while a null `start` or
    `timestamps` is absent: now the same bytes as a body without the field, on the fast path
    and on FastAPI's, step after step of a series (a model that reads x: the same 422)."""
    uri = None
    if not reads_x:
        name = "stream-covariates-null"
        register_streaming(registry, name, covariates=False)
        uri = f"models:/{name}@champion"
    client = stream_client_for(**({"model_uri": uri} if uri else {}))
    assert fast_observations({**_body(), "covariates": None}) is not None  # the fast path's
    assert ObservationsRequest.model_validate({**_body(), "covariates": None}).covariates == {}
    frame = registry.frame
    for start, n in ((0, 50), (50, 1), (51, 3)):
        left_out = points(frame, start, n)
        left_out.pop("covariates")
        answers = [
            client.post(
                f"/series/{how}-{kind.split('/')[1]}/observations",
                content=json.dumps(body),
                headers={**FAST, "content-type": kind},
            )
            for how, body in (("out", left_out), ("null", {**left_out, "covariates": None}))
            for kind in ("application/json", "application/merge-patch+json")
        ]
        expected = 422 if reads_x else 200
        assert [answer.status_code for answer in answers] == [expected] * 4, answers[-1].text
        ids = ("out-json", "out-merge-patch+json", "null-json", "null-merge-patch+json")
        texts = {
            answer.text.replace(json.dumps(series_id), '"S"')
            for answer, series_id in zip(answers, ids, strict=True)
        }
        assert len(texts) == 1, texts


def test_gap_policy_null_answers_what_leaving_it_out_answers(
    registry: Registry, stream_client_for: Callable[..., TestClient]
) -> None:
    """`"gap_policy": null` was a 422 ("must be one of 'reject' or 'interpolate'; got null")
    where docs/streaming.md says a null optional field is absent: now the default, `reject`,
    on the fast path and on FastAPI's, for a next point and for a gap (the same 409)."""
    assert ObservationsRequest.model_validate({**_body(), "gap_policy": None}).gap_policy == (
        "reject"
    )
    fast = fast_observations({**_body(), "gap_policy": None})
    assert fast is not None and fast.gap_policy == "reject"
    client = stream_client_for()
    frame = registry.frame
    for start, n in ((0, 50), (50, 1), (55, 1)):  # the last one leaves a gap of four steps
        left_out = points(frame, start, n)
        answers = [
            client.post(
                f"/series/{how}-{kind}/observations",
                content=json.dumps(body),
                headers=headers,
            )
            for how, body in (("out", left_out), ("null", {**left_out, "gap_policy": None}))
            for kind, headers in (("fast", FAST), ("slow", SLOW))
        ]
        expected = 409 if start == 55 else 200
        assert [answer.status_code for answer in answers] == [expected] * 4, answers[-1].text
        ids = ("out-fast", "out-slow", "null-fast", "null-slow")
        texts = {
            answer.text.replace(json.dumps(series_id), '"S"')
            for answer, series_id in zip(answers, ids, strict=True)
        }
        assert len(texts) == 1, texts


def test_the_fast_path_is_taken(
    client: TestClient, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: StreamEngine = client.app.state.service.streams  # type: ignore[attr-defined]

    async def schema_path(*args: Any) -> Any:
        raise AssertionError("the schema's path was taken")

    monkeypatch.setattr(engine, "observe", schema_path)
    answer = client.post("/series/t/observations", json=points(registry.frame, 0, 60), headers=FAST)
    assert answer.status_code == 200, answer.text
    assert answer.json()["series"]["points_seen"] == 60


def test_small_updates_of_a_ready_state_skip_the_worker_thread(
    client: TestClient, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: StreamEngine = client.app.state.service.streams  # type: ignore[attr-defined]
    hops: list[str] = []
    compute = engine._compute

    async def counted(fn: Callable[..., Any], *args: Any) -> Any:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await compute(fn, *args)

    monkeypatch.setattr(engine, "_compute", counted)
    frame = registry.frame
    client.post("/series/i/observations", json=points(frame, 0, 40), headers=FAST)
    assert hops == ["_advance"]  # a load: the worker thread
    client.post("/series/i/observations", json=points(frame, 40, 10), headers=FAST)
    assert hops == ["_advance"] * 2  # the state becomes ready (encodes its warm-up): thread
    for row in range(50, 55):
        answer = client.post("/series/i/observations", json=points(frame, row, 1), headers=SLOW)
        assert answer.status_code == 200, answer.text
    assert hops == ["_advance"] * 2  # small updates of a ready state: inline
    client.post("/series/i/observations", json=points(frame, 55, 65), headers=FAST)
    assert hops == ["_advance"] * 3  # above INLINE_POINTS: the thread again


# -----------------------------------------------------------------------------
# Timestamps


@pytest.mark.parametrize(
    ("start", "freq", "tz"),
    [
        ("2024-03-01", "h", None),
        ("1677-09-22", "D", None),  # near the start of pandas' range
        ("2262-01-01", "h", None),  # near its end
        ("1960-03-01 00:00:30", "min", None),  # before the epoch
        ("2024-03-01 00:00:00.25", "1500ms", None),  # fractions of a second
        ("2024-03-30", "h", "Europe/Paris"),  # zoned, across a DST change
        ("2024-03-01", "h", "UTC"),
    ],
)
def test_iso_is_pandas_isoformat(start: str, freq: str, tz: str | None) -> None:
    index = pd.date_range(start, periods=50, freq=freq, tz=tz).as_unit("ns")
    ns = index.asi8.astype(np.int64)
    expected = [t.isoformat() for t in index]
    for _ in range(2):  # computed, then (naive whole seconds) from the cache
        assert iso_steps(ns, index.tz) == expected
        assert iso_steps(ns[10:20], index.tz) == expected[10:20]
        assert [iso(int(k), index.tz) for k in ns] == expected


@pytest.mark.parametrize(
    ("start", "freq", "tz"),
    [
        ("2024-03-01", "h", None),
        ("2024-03-30 20:00", "h", "Europe/Paris"),  # slides across the spring DST change
        ("2024-10-26 20:00", "30min", "Europe/Paris"),  # and the autumn one
        ("2024-03-28", "D", "Europe/Paris"),  # calendar days: not a fixed step, no sliding
        ("2024-01-31", "MS", None),
    ],
)
def test_forecast_stamps_slide_as_pandas_dates_them(start: str, freq: str, tz: str | None) -> None:
    """`stamps_after` (a shared cache, slid by one step per update) is pandas' grid, as text."""
    from types import SimpleNamespace

    from service.served import parse_offset
    from service.stream_validation import stamps_after

    model: Any = SimpleNamespace(freq=freq, offset=parse_offset(freq))
    index = pd.date_range(start, periods=80, freq=freq, tz=tz).as_unit("ns")
    text = [t.isoformat() for t in index]
    n = 24
    for k in range(40):  # one update after another: each call may reuse the previous one
        got = stamps_after(int(index[k].value), n, index.tz, model)
        assert list(got) == text[k + 1 : k + 1 + n], k
    assert list(stamps_after(int(index[5].value), 3, index.tz, model)) == text[6:9]

"""service.json_block: simdjson's reading of a plain /forecast body is the schema's reading.

What it takes must read exactly as FastAPI's path (json.loads + ForecastRequest) and as the
orjson fast path would: the same ids, numbers, starts, freqs, horizon and quantiles; what it
leaves (None) goes the orjson way unchanged. Checked on the fast path's table of bodies, on
texts where the two parsers could differ, on thousands of random mutations of a valid body,
and end to end: the service's answers are byte for byte those it gives with the reader off.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.fast_path import BlockRequest, FastRequest, FastSeries, fast_request
from service.json_block import (
    KeysUnread,
    RepeatedKeyError,
    forecast_repeated_key,
    json_document,
    pairs_document,
    read_json_block,
    repeated_key,
    repeated_observations_key,
)
from service.schemas import ForecastRequest, ForecastResponse
from tests.service.conftest import Registry, history, metric_value
from tests.service.test_fast_path import BODIES


def _schema(text: bytes) -> ForecastRequest | None:
    """FastAPI's reading of the body (Starlette's json.loads, then the model)."""
    try:
        return ForecastRequest.model_validate(json.loads(text))
    except (ValidationError, ValueError):
        return None


def _orjson_path(text: bytes) -> Any:
    try:
        return fast_request(orjson.loads(text))
    except orjson.JSONDecodeError:
        return "refused"


def check_agrees(text: bytes) -> BlockRequest | None:
    """The invariant: None, or a block that the schema reads the same (and the orjson fast
    path too where it takes the body as a block)."""
    block = read_json_block(text)
    if block is None:
        return None
    orjson_reading = _orjson_path(text)
    assert orjson_reading != "refused", "taken by simdjson, refused by orjson"
    schema = _schema(text)
    assert schema is not None, "taken by simdjson, refused by the schema"
    assert (block.horizon, block.quantiles) == (schema.horizon, schema.quantiles)
    b = block.block
    assert b.ids == [s.id for s in schema.series]
    assert b.freqs == [s.freq for s in schema.series]
    expected = np.array([np.asarray(s.values, dtype=np.float64) for s in schema.series])
    assert b.values.dtype == np.float64 and b.values.shape == expected.shape
    np.testing.assert_array_equal(b.values, expected)
    # -0.0 and 0.0 compare equal: the signs must agree too
    assert np.array_equal(np.signbit(b.values), np.signbit(expected))
    starts = [s.start for s in schema.series]
    if b.start_ns is None:
        assert starts == [None] * len(starts)
    else:
        assert b.start_ns.tolist() == [pd.Timestamp(s).value for s in starts if s]
    if isinstance(orjson_reading, BlockRequest):
        np.testing.assert_array_equal(b.values, orjson_reading.block.values)
        assert b.ids == orjson_reading.block.ids and b.freqs == orjson_reading.block.freqs
    # covariates: the same names in every series, in the order written, each an (S, N) block
    for i, theirs in enumerate(schema.series):
        assert list(b.covariates) == list(theirs.covariates)
        for name, column in b.covariates.items():
            assert column.dtype == np.float64 and column.shape == b.values.shape
            expected_column = np.asarray(theirs.covariates[name], dtype=np.float64)
            np.testing.assert_array_equal(column[i], expected_column)
            assert np.array_equal(np.signbit(column[i]), np.signbit(expected_column))
    rows = _orjson_rows(orjson_reading)
    for k, (mine, theirs) in enumerate(zip(block.series, schema.series, strict=True)):
        assert (mine.id, mine.start, mine.freq) == (theirs.id, theirs.start, theirs.freq)
        np.testing.assert_array_equal(mine.values, np.asarray(theirs.values, dtype=np.float64))
        assert list(mine.covariates) == list(theirs.covariates)
        for name, column in mine.covariates.items():
            assert column.dtype == np.float64
            np.testing.assert_array_equal(column, np.asarray(theirs.covariates[name], float))
        if rows is not None:  # the lazy rows are those the orjson path reads
            assert list(mine.covariates) == list(rows[k].covariates)
            for name, column in mine.covariates.items():
                np.testing.assert_array_equal(column, rows[k].covariates[name])
    return block


def _orjson_rows(reading: Any) -> tuple[FastSeries, ...] | None:
    """The orjson path's series one by one, where it read the body (a block's rows too)."""
    if isinstance(reading, (BlockRequest, FastRequest)):
        return reading.series
    return None


@pytest.mark.parametrize("name", list(BODIES))
def test_the_fast_paths_bodies_read_as_the_schema_reads_them(name: str) -> None:
    text = json.dumps(copy.deepcopy(BODIES[name])).encode()
    block = check_agrees(text)
    orjson_reading = _orjson_path(text)
    # It takes every body the orjson path takes as a block but those with integers beyond 64
    # bits (simdjson refuses them; orjson reads them as floats, and so reads the body).
    # NaN and inf are written as tokens neither takes.
    beyond_64_bits = name in ("big int", "huge int")
    assert (block is not None) == (isinstance(orjson_reading, BlockRequest) and not beyond_64_bits)


# Texts where simdjson and orjson could read differently, or where a plain body is spelled
# unusually. Each must be left to orjson or read as the schema reads it.
PLAIN = b'{"horizon":4,"series":[{"id":"a","start":"2024-03-01T00:00:00","freq":"h","values":'
TEXTS: dict[str, bytes] = {
    "plain": PLAIN + b"[1.5,2,3]}]}",
    "key twice at the top": b'{"horizon":4,"horizon":2,"series":[{"id":"a","values":[1,2]}]}',
    "key twice in a series": b'{"series":[{"id":"a","id":"b","values":[1,2]}]}',
    "values twice": b'{"series":[{"id":"a","values":[1,2],"values":[3,4]}]}',
    "byte-order mark": b"\xef\xbb\xbf" + PLAIN + b"[1,2]}]}",
    "trailing value": PLAIN + b"[1,2]}]} 2",
    "NaN token": PLAIN + b"[NaN,2]}]}",
    "Infinity token": PLAIN + b"[Infinity,2]}]}",
    "escaped key": b'{"series":[{"id":"a","v\\u0061lues":[1,2]}]}',
    "escaped id": b'{"series":[{"id":"\\u00e9t\\u00e9","values":[1,2]}]}',
    "id with NUL": b'{"series":[{"id":"a\\u0000b","values":[1,2]}]}',
    "lone surrogate id": b'{"series":[{"id":"\\ud800","values":[1,2]}]}',
    "invalid UTF-8 id": b'{"series":[{"id":"\xff","values":[1,2]}]}',
    "control character in id": b'{"series":[{"id":"a\nb","values":[1,2]}]}',
    "exponents": PLAIN + b"[1e2,1E-2,-2.5e+3,0e0]}]}",
    "signed zeros": PLAIN + b"[-0,-0.0,0.0,-0e5]}]}",
    "subnormal and underflow": PLAIN + b"[5e-324,1e-400,2.2250738585072011e-308]}]}",
    "overflow": PLAIN + b"[1e400,1]}]}",
    "largest double": PLAIN + b"[1.7976931348623157e308,1]}]}",
    "17 digits": PLAIN + b"[0.30000000000000004,9007199254740993,1.0000000000000002]}]}",
    "int64 bounds": PLAIN + b"[9223372036854775807,-9223372036854775808]}]}",
    "uint64 max": PLAIN + b"[18446744073709551615,1]}]}",
    "uint64 beside a negative": PLAIN + b"[18446744073709551615,-1]}]}",
    "beyond uint64": PLAIN + b"[18446744073709551616,1]}]}",
    "leading zero": PLAIN + b"[01,2]}]}",
    "bare dot": PLAIN + b"[.5,2]}]}",
    "true among numbers": PLAIN + b"[1,true]}]}",
    "null among numbers": PLAIN + b"[1,null]}]}",
    "whitespace everywhere": b' \n{ "series" :\t[ { "id" : "a" , "values" : [ 1 , 2 ] } ] }\r\n',
    "covariates null": b'{"series":[{"id":"a","covariates":null,"values":[1,2]}]}',
    "covariates empty": b'{"series":[{"id":"a","covariates":{},"values":[1,2]}]}',
    "quantiles nested": b'{"quantiles":[[0.1]],"series":[{"id":"a","values":[1,2]}]}',
    "quantiles object": b'{"quantiles":{"q":0.1},"series":[{"id":"a","values":[1,2]}]}',
    "horizon object": b'{"horizon":{},"series":[{"id":"a","values":[1,2]}]}',
    "series object": b'{"series":{"id":"a","values":[1,2]}}',
    "values object": b'{"series":[{"id":"a","values":{"0":1}}]}',
    "start array": b'{"series":[{"id":"a","start":["2024"],"values":[1,2]}]}',
    "nested list": PLAIN + b"[1,[2],3]}]}",
    "nested empty list": PLAIN + b"[[],[1,2]]}]}",
    "bracket in an id": b'{"series":[{"id":"a[0]","values":[1,2]}]}',
    # more exact 0s and 1s than the orjson reader looks through for bools: still a block
    "many zeros": PLAIN + b"[" + b",".join([b"0", b"1"] * 200) + b"]}]}",
    "ragged": b'{"series":[{"id":"a","values":[1,2]},{"id":"b","values":[1]}]}',
    "deep nesting": b'{"series":[{"id":"a","values":[' + b"[" * 2000 + b"]" * 2000 + b"]}]}",
    "empty": b"",
    "null document": b"null",
    "top-level array": b'[{"series":[]}]',
}


def _with_covariates(*columns: bytes, names: tuple[bytes, ...] = (b"x",)) -> bytes:
    """A body of two series of three values, each with the covariates `names`: series i
    gets `columns[i]` (a JSON array's text) for each name."""
    series = []
    for i, column in enumerate(columns):
        given = b",".join(b'"' + name + b'":' + column for name in names)
        series.append(
            b'{"id":"s-%d","start":"2024-03-01T00:00:00","values":[1.5,2,3],"covariates":{%s}}'
            % (i, given)
        )
    return b'{"horizon":4,"series":[' + b",".join(series) + b"]}"


COVARIATE_TEXTS: dict[str, bytes] = {
    "one covariate": _with_covariates(b"[0.5,1,-2e3]", b"[3,4,5]"),
    "two covariates": _with_covariates(b"[0.5,1,-2e3]", b"[3,4,5]", names=(b"x", b"temp")),
    "escaped covariate name": _with_covariates(b"[1,2,3]", b"[3,4,5]", names=(b"\\u0078",)),
    "covariate signed zeros": _with_covariates(b"[-0,0.0,-0e1]", b"[0,-0.0,1]"),
    "covariate uint64 max": _with_covariates(b"[18446744073709551615,1,2]", b"[1,2,3]"),
    "covariate 17 digits": _with_covariates(
        b"[0.30000000000000004,9007199254740993,1]", b"[1,2,3]"
    ),
    "covariate overflow": _with_covariates(b"[1e400,1,2]", b"[1,2,3]"),  # simdjson refuses
    "covariate of 0s and 1s": _with_covariates(b"[0,1,0]", b"[1,1,0]"),
    "covariates in one series only": PLAIN.replace(
        b'"values":', b'"covariates":{"x":[1,2]},"values":'
    )
    + b'[1,2]},{"id":"b","values":[3,4]}]}',
    "covariates null in one series": b'{"series":[{"id":"a","covariates":{"x":[1,2]},'
    b'"values":[1,2]},{"id":"b","covariates":null,"values":[3,4]}]}',
    "covariate names differ": _with_covariates(b"[1,2,3]", b"[3,4,5]").replace(b'"x"', b'"z"', 1),
    "covariate order differs": _with_covariates(b"[1,2,3]", b"[3,4,5]", names=(b"x", b"z")).replace(
        b'"x":[3,4,5],"z"', b'"z":[3,4,5],"x"'
    ),
    "covariate name twice": _with_covariates(b"[1,2,3]", b"[3,4,5]", names=(b"x", b"x")),
    "covariate shorter": _with_covariates(b"[1,2]", b"[3,4]"),
    "covariate longer": _with_covariates(b"[1,2,3,4]", b"[3,4,5,6]"),
    "covariate lengths differ": _with_covariates(b"[1,2,3]", b"[3,4]"),
    "covariate empty": _with_covariates(b"[]", b"[]"),
    "true among a covariate": _with_covariates(b"[1,true,3]", b"[3,4,5]"),
    "false among a covariate": _with_covariates(b"[0,false,0]", b"[3,4,5]"),
    "null among a covariate": _with_covariates(b"[1,null,3]", b"[3,4,5]"),
    "string among a covariate": _with_covariates(b'[1,"2",3]', b"[3,4,5]"),
    "nested list in a covariate": _with_covariates(b"[1,[2],3]", b"[3,4,5]"),
    "covariate beyond uint64": _with_covariates(b"[18446744073709551616,1,2]", b"[1,2,3]"),
    "covariate NaN token": _with_covariates(b"[NaN,1,2]", b"[1,2,3]"),
    "covariate an object": _with_covariates(b'{"0":1}', b'{"0":1}'),
    "covariate null": _with_covariates(b"null", b"null"),
    "covariates an array": b'{"series":[{"id":"a","covariates":[[1,2]],"values":[1,2]}]}',
    "covariates a number": b'{"series":[{"id":"a","covariates":1,"values":[1,2]}]}',
    "bracket in a covariate name": _with_covariates(b"[1,2,3]", b"[3,4,5]", names=(b"x[0]",)),
}


@pytest.mark.parametrize("name", list(TEXTS) + list(COVARIATE_TEXTS))
def test_texts_where_the_parsers_could_differ(name: str) -> None:
    check_agrees(TEXTS[name] if name in TEXTS else COVARIATE_TEXTS[name])


def test_covariates_of_one_kind_in_every_series_are_read_as_a_block() -> None:
    """Covariate arrays are buffers of doubles as the histories are: taken when every series
    names the same covariates in the same order, each as long as the histories, all plain
    numbers; anything else goes to orjson (whose path keeps every message)."""
    taken = [
        "one covariate",
        "two covariates",
        "escaped covariate name",
        "covariate signed zeros",
        "covariate uint64 max",
        "covariate 17 digits",
        "covariate of 0s and 1s",  # a bool is refused by simdjson's buffer itself
    ]
    for name in taken:
        assert read_json_block(COVARIATE_TEXTS[name]) is not None, name
    for name in set(COVARIATE_TEXTS) - set(taken):
        assert read_json_block(COVARIATE_TEXTS[name]) is None, name
    two = read_json_block(COVARIATE_TEXTS["two covariates"])
    assert two is not None and list(two.block.covariates) == ["x", "temp"]
    np.testing.assert_array_equal(two.block.covariates["x"], [[0.5, 1, -2e3], [3, 4, 5]])
    assert two.block.covariates["x"].shape == (2, 3)
    escaped = read_json_block(COVARIATE_TEXTS["escaped covariate name"])
    assert escaped is not None and list(escaped.block.covariates) == ["x"]


def test_what_it_takes_and_what_it_leaves_to_orjson() -> None:
    taken = [
        "plain",
        "escaped key",
        "escaped id",
        "id with NUL",
        "exponents",
        "signed zeros",
        "subnormal and underflow",
        "largest double",
        "17 digits",
        "int64 bounds",
        "uint64 max",
        "whitespace everywhere",
        "covariates null",
        "many zeros",
    ]
    for name in taken:
        assert read_json_block(TEXTS[name]) is not None, name
    for name in (
        "key twice at the top",  # simdjson keeps the first, orjson the last
        "key twice in a series",
        "values twice",
        "byte-order mark",  # simdjson skips it, orjson refuses the body
        "lone surrogate id",
        "invalid UTF-8 id",
        "NaN token",
        "true among numbers",
        "covariates empty",  # a covariates object: the rows' business, as in fast_block
        "deep nesting",
        "nested list",  # simdjson's buffer would flatten it
        "nested empty list",
        "bracket in an id",  # counted with the lists' brackets: left to orjson
    ):
        assert read_json_block(TEXTS[name]) is None, name
    signed = read_json_block(TEXTS["signed zeros"])
    assert signed is not None
    assert np.signbit(signed.block.values[0]).tolist() == [False, True, False, True]


_ALPHABET = b'{}[],:"0123456789.eE+-tnfalsu\\ \x00\xff'


def _mutate(text: bytearray, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text) + 1)
        kind = rng.randrange(4)
        if kind == 0 and len(text) > 1:
            del text[min(at, len(text) - 1)]
        elif kind == 1:
            text.insert(at, rng.choice(_ALPHABET))
        elif kind == 2 and text:
            text[min(at, len(text) - 1)] = rng.choice(_ALPHABET)
        else:  # a span repeated: duplicated keys, values, series
            end = min(len(text), at + rng.randint(1, 40))
            text[end:end] = text[at:end]
    return bytes(text)


def test_random_mutations_of_a_plain_body_are_read_as_the_schema_reads_them() -> None:
    body = {
        "horizon": 4,
        "quantiles": [0.1, 0.9],
        "series": [
            {"id": "s-0", "start": "2024-03-01T00:00:00", "freq": "h", "values": [1.5, -2, 3e1]},
            {"id": "s-1", "start": "2024-03-01T01:00:00", "freq": "h", "values": [0, 1, 2.25]},
        ],
    }
    seed_text = json.dumps(body, separators=(",", ":")).encode()
    rng = random.Random(20261205)
    taken = 0
    for _ in range(4000):
        text = _mutate(bytearray(seed_text), rng)
        taken += check_agrees(text) is not None
    assert taken > 50  # many mutants are still plain bodies: the invariant was exercised


def test_random_mutations_of_a_body_with_covariates_are_read_as_the_schema_reads_them() -> None:
    body = {
        "horizon": 4,
        "series": [
            {
                "id": f"s-{i}",
                "start": f"2024-03-01T0{i}:00:00",
                "values": [1.5, -2, 3e1],
                "covariates": {"x": [0, 1, 2.25], "t": [-1.5, 7, 0.125]},
            }
            for i in range(2)
        ],
    }
    seed_text = json.dumps(body, separators=(",", ":")).encode()
    rng = random.Random(20261207)
    taken = 0
    for _ in range(4000):
        text = _mutate(bytearray(seed_text), rng)
        taken += check_agrees(text) is not None
    assert taken > 50


def test_the_service_answers_the_same_bytes_with_the_reader_off(
    registry: Registry,
    client_for: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "json-block"  # a model that reads no covariates: plain histories are its bodies
    assert registry.register(name, seed=5, covariates=False) == "1"
    client = client_for(model_uri=f"models:/{name}@champion")
    series = [history(registry.frame, "pump-1"), history(registry.frame, "pump-2", stop=400)]
    for s in series:
        s.pop("covariates")
        # a plain block has naive starts (a zoned one goes series by series on either path)
        s["start"] = pd.Timestamp(s["start"]).tz_localize(None).isoformat()
    plain = json.dumps({"horizon": 5, "series": series}).encode()
    texts = {
        "plain": plain,
        "uint64 beside a negative": plain.replace(
            b'"values": [', b'"values": [18446744073709551615, -1, ', 2
        ),
        "values twice": plain.replace(b'"values": [', b'"values": [1, 2], "values": [', 1),
        "nested list": plain.replace(b'"values": [', b'"values": [[1], ', 1),
        "short history": json.dumps(
            {"horizon": 5, "series": [{**series[0], "values": [1.0]}]}
        ).encode(),
        # a block check fails and the series are read one by one for the message, with more
        # exact 0s and 1s than the orjson reader looks through for bools (was a 500)
        "short histories of 0s and 1s": json.dumps(
            {
                "horizon": 5,
                "series": [
                    {**series[0], "id": f"pump-{i}", "values": [0.0, 1.0] * 10} for i in range(16)
                ],
            }
        ).encode(),
    }
    for case, text in texts.items():
        calls, on, off = _answers_with_the_reader_on_and_off(client, monkeypatch, text)
        assert calls == [case not in ("values twice", "nested list")], case
        assert on.status_code == off.status_code, case
        assert on.content == off.content, case
        expected = {
            "plain": 200,
            "values twice": 422,  # either reader: which of the two was meant is not known
            "nested list": 422,
            "short history": 422,
            "short histories of 0s and 1s": 422,
        }
        if case in expected:
            assert on.status_code == expected[case], (case, on.text)
        if on.status_code == 200:  # the answer is what pydantic writes for the same values
            answer = ForecastResponse.model_validate_json(on.content)
            assert answer.model_dump_json().encode() == on.content
            assert all(f.mean == f.quantiles["0.5"] for f in answer.forecasts)


_REPEATS = [
    b'{"horizon": 5, "horizon": 2, "series": []}',
    b'{"series": [{"id": "a", "values": [1]}, {"id": "b", "values": [1], "values": [2]}]}',
    b'{"series": [{"values": [1]}, {"id": "a", "id": "b", "values": [1]}]}',
    b'{"series": [{"id": "a", "covariates": {"x": [1], "y": [2], "x": [3]}}]}',
    b'{"series": [{"id": "a", "covariates": {"x": [1], "x": [3]}, "id": "b"}]}',
    b'{"series": [{"id": "a", "valu\\u0065s": [1], "values": [2]}]}',
    b'{"series": [{"id": "\\u00e9", "values": [1], "values": [2]}], "horizon": 1}',
    b'{"series": [{"id": "a", "values": [1]}], "horizon": 1}',  # none given twice
    b'{"series": {"id": "a"}, "series": 1}',
    b'[{"a": 1, "a": 2}]',  # not shaped as a request: the schema answers
]


@pytest.mark.parametrize("text", _REPEATS)
def test_the_standard_parsers_reading_names_a_repeated_key_as_simdjsons_does(text: bytes) -> None:
    """For text simdjson refuses the keys are read by json.loads (`pairs_document`): the same
    key, the same place, the same words as from simdjson's document, on these texts both
    read; and the same with a NaN or a number beyond 64 bits added, which only json.loads
    reads."""
    expected = repeated_key(json_document(text))
    assert str(repeated_key(pairs_document(text))) == str(expected)
    assert str(forecast_repeated_key(text, json_document(text))) == str(expected)
    for token in (b"NaN", b"-Infinity", b"123456789012345678901234567890"):
        refused = text.replace(b"[1]", b"[" + token + b"]")
        if refused == text:
            continue
        assert json_document(refused) is None
        found = forecast_repeated_key(refused, None)
        assert str(found) == str(expected) and not isinstance(found, KeysUnread)


def test_text_no_reader_of_a_forecast_takes_leaves_its_keys_unread() -> None:
    """Malformed text, and text the route's parser (pydantic's) refuses though json.loads
    reads it (a byte-order mark, an unpaired surrogate escaped): the route's 422 says it is
    not JSON, whatever key it repeats, and the fast path leaves the keys unchecked
    (`KEYS_CHECKED` unset). A body each reader takes and that repeats no key is None
    (checked)."""
    twice = b'{"horizon": 5, "horizon": 2, "series": []}'
    for text in (b'{"horizon": 5, "horizon": ', b"\xef\xbb\xbf" + twice):
        assert forecast_repeated_key(text, json_document(text)) is KeysUnread.UNREAD
    surrogate = b'{"horizon": 5, "horizon": 2, "series": [{"id": "\\ud800"}]}'
    assert forecast_repeated_key(surrogate, json_document(surrogate)) is KeysUnread.UNREAD
    once = b'{"horizon": NaN, "series": []}'
    assert forecast_repeated_key(once, json_document(once)) is None
    found = forecast_repeated_key(twice.replace(b"5", b"NaN"), None)
    assert isinstance(found, RepeatedKeyError) and found.where == "field 'horizon'"


def test_an_observations_body_after_a_byte_order_mark_is_checked_as_starlette_reads_it() -> None:
    """Starlette reads a POST body with json.loads, which skips a byte-order mark before
    bytes (simdjson's document is not asked: json_document leaves such text out); a str
    after one (a WS text message) is not JSON for json.loads either."""
    text = b'\xef\xbb\xbf{"values": [1.0], "values": [2.0]}'
    found = repeated_observations_key(text, json.loads(text))
    assert str(found).startswith("field 'values': is given twice in the body")
    assert pairs_document(text.decode()) is None


def _covariate_texts(registry: Registry) -> dict[str, bytes]:
    """Bodies for a model that reads the covariate x, each its own case."""
    series = [history(registry.frame, f"pump-{i}", stop=500 - 7 * i) for i in range(3)]
    for s in series:  # naive starts: a block's kind (a zoned one goes series by series)
        s["start"] = pd.Timestamp(s["start"]).tz_localize(None).isoformat()

    def body(change: Callable[[dict[str, Any]], None] | None = None) -> bytes:
        changed = copy.deepcopy(series)
        for s in changed:
            if change is not None:
                change(s)
        return json.dumps({"horizon": 5, "quantiles": [0.1, 0.5], "series": changed}).encode()

    def first_x(value: Any) -> Callable[[dict[str, Any]], None]:
        def apply(s: dict[str, Any]) -> None:
            if s["id"] == "pump-1":
                s["covariates"]["x"][-1] = value  # in the lookback window

        return apply

    plain = body()
    return {
        "covariates": plain,
        "an unknown covariate": body(lambda s: s.update(covariates={"X": s["covariates"]["x"]})),
        "a covariate too long": body(lambda s: s["covariates"]["x"].append(1.0)),
        "covariates null": body(lambda s: s.update(covariates=None)),
        "an infinite covariate": plain.replace(b'"x": [', b'"x": [1e400, ', 3).replace(
            b'"values": [', b'"values": [1, ', 3
        ),
        "a covariate too large once scaled": body(first_x(1e300)),
        "a bool among a covariate": body(first_x(True)),
        "a null among a covariate": body(first_x(None)),
        "a covariate given twice": plain.replace(b'"x": [', b'"x": [1], "x": [', 1),
        "a covariate of 0s and 1s": body(
            lambda s: s["covariates"].update(x=[float(k % 2) for k in range(len(s["values"]))])
        ),
    }


_TAKEN = {
    "covariates",
    "an unknown covariate",
    "covariates null",
    "a covariate too large once scaled",
    "a covariate of 0s and 1s",
}


@pytest.mark.parametrize("reads_x", [True, False], ids=["covariate-x", "x-known-not-read"])
def test_bodies_with_covariates_answer_the_same_bytes_with_the_reader_off(
    registry: Registry,
    client_for: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    reads_x: bool,
) -> None:
    """Through the app: a body with covariates read by simdjson as a block is answered as
    the orjson path answers it (series by series, or the schema's path), 200s and 422s."""
    name = f"json-block-covariates-{reads_x}".lower()
    assert registry.register(name, seed=6, covariates=reads_x) == "1"
    client = client_for(model_uri=f"models:/{name}@champion")
    statuses = {}
    for case, text in _covariate_texts(registry).items():
        calls, on, off = _answers_with_the_reader_on_and_off(client, monkeypatch, text)
        assert calls == [case in _TAKEN], case
        assert (on.status_code, on.content) == (off.status_code, off.content), case
        statuses[case] = on.status_code
        if on.status_code == 200:
            answer = ForecastResponse.model_validate_json(on.content)
            assert answer.model_dump_json().encode() == on.content
    expected = {
        "covariates": 200,
        "an unknown covariate": 422,
        "a covariate too long": 422,
        "covariates null": 422 if reads_x else 200,
        "an infinite covariate": 422,
        "a covariate too large once scaled": 422 if reads_x else 200,
        "a null among a covariate": 422,
        "a covariate given twice": 422,
        "a covariate of 0s and 1s": 200,
    }
    assert {case: statuses[case] for case in expected} == expected


def test_a_block_with_covariates_feeds_drift_as_the_rows_do(
    registry: Registry,
    client_for: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Drift reads each covariate's raw lookback windows from the block, as from the rows."""
    name = "json-block-covariate-drift"
    assert registry.register(name, seed=7) == "1"
    text = _covariate_texts(registry)["covariates"]
    assert read_json_block(text) is not None  # a block, with the reader on
    headers = {"content-type": "application/json"}
    windows = {}
    for reader_on in (True, False):
        if not reader_on:
            monkeypatch.setattr("service.fast_routes.read_json_block", lambda raw, document: None)
        client = client_for(model_uri=f"models:/{name}@champion", drift_window=1000)
        assert client.post("/forecast", content=text, headers=headers).status_code == 200
        windows[reader_on] = [
            metric_value(client, "urnn_input_drift_window_values", column=column)
            for column in ("y", "x")
        ]
    assert windows[True] == windows[False] == [3 * 48.0, 3 * 48.0]  # 3 series, lookback 48


def _answers_with_the_reader_on_and_off(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, text: bytes
) -> tuple[list[bool], Any, Any]:
    """`text` POSTed to /forecast with simdjson's block reader on (spied: whether it took the
    body) and off (every body to the orjson path): (took it, answer on, answer off)."""
    reader = read_json_block
    calls: list[bool] = []

    def spy(raw: bytes, document: Any) -> BlockRequest | None:
        got = reader(raw, document)
        calls.append(got is not None)
        return got

    headers = {"content-type": "application/json"}
    monkeypatch.setattr("service.fast_routes.read_json_block", spy)
    on = client.post("/forecast", content=text, headers=headers)
    monkeypatch.setattr("service.fast_routes.read_json_block", lambda raw, document: None)
    off = client.post("/forecast", content=text, headers=headers)
    return calls, on, off

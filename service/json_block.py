"""/forecast JSON bodies of plain histories, with or without covariates, read straight into
float64 blocks (simdjson).

    request = read_json_block(body)   # a BlockRequest, or None: parse with orjson as before

Why: orjson makes a Python float of every number in the body and `fast_path.fast_block`
then has numpy read those floats back into an array. For the serving benchmark's body (16
histories of 512 values) that is ~0.5 ms of the event loop per request, half of all the loop
does for a JSON /forecast; simdjson parses the text and hands each `values` array over as a
buffer of doubles with no Python object per number, ~0.25 ms for the same body
(docs/serving.md, "JSON bodies read by simdjson"). Covariates are read the same way, one
(S, N) block per name: a body whose 16 series each carry one covariate of 512 values took
orjson and the fast path series by series, ~1.1 ms to read and ~0.9 to prepare; as blocks,
~0.33 and ~0.08 (`python -m bench.json_read`).

It takes what `fast_block` takes, and covariates: the request keys of
`fast_path.REQUEST_KEYS` (horizon and quantiles judged by `fast_horizon_quantiles`), series
with keys among `BLOCK_KEYS`, a string id within bounds, `freq` a string or absent, `start`
plain naive texts in every series or in none, histories of one length of plain numbers (not
nested lists: simdjson's buffer would flatten them), and `covariates` absent or null in every
series, or an object in every series naming the same covariates in the same order (each
once), each a list of plain numbers as long as the histories. It adds no rule of its own and
reports no error: anything else (covariate names differing between series, an empty
covariates object, a covariate of another length) answers None and the body takes the
orjson path as before, which makes every answer, error or not, the same whichever reader
took the body (tests/service/test_json_block.py compares the two on accepted, refused and
mutated bodies, and the app's answers with the reader on and off). Whether the model knows
the covariates, reads them, and whether they are finite is `service.validation`'s to judge,
on the block or, where it finds anything wrong, series by series with the rows' messages.
Where simdjson and orjson read one text differently, the body goes to orjson: a key given
twice (simdjson keeps the first, orjson the last; `repeated_key` then names it for the 422
every reader answers) and a UTF-8 byte-order mark (simdjson skips it, orjson refuses the
body). Numbers agree: both round correctly, read ints as ints, and refuse NaN and Infinity
tokens; a bool, null or string among the numbers (of a history or a covariate) makes
simdjson refuse the buffer, so no true or false is ever read as 1 or 0 (orjson's path
looks for them itself); an integer beyond 64 bits, or a number beyond the doubles (1e400),
makes it refuse the body (orjson then reads it).
"""

from __future__ import annotations

import enum
import json
from functools import partial
from itertools import chain
from typing import Any

import numpy as np
import pydantic_core
import simdjson

from service.errors import ServiceInputError, series_where
from service.fast_path import (
    BLOCK_KEYS,
    REQUEST_KEYS,
    BlockRequest,
    FastSeries,
    SeriesBlock,
    fast_horizon_quantiles,
    parse_datetime,
    plain_series_fields,
    plain_start_ns,
)
from urnn_forecast.field_types import shown

_BOM = b"\xef\xbb\xbf"
_OPEN_BRACKET = ord("[")


_PARSE: Any = object()  # read_json_block's default: parse the body itself


def json_document(body: bytes) -> Any:
    """simdjson's document of a body, or None for text simdjson refuses (or reads otherwise
    than orjson: a byte-order mark)."""
    if body.startswith(_BOM):
        return None
    try:
        # A parser per body: a parser's document lives until its next parse, and one shared
        # parser refuses to parse while objects of the last document are still referenced.
        # Creating one costs ~0.1 us; its buffers are sized to the body on first parse.
        return simdjson.Parser().parse(body)
    except (ValueError, TypeError, RuntimeError):
        # malformed text (ValueError), invalid UTF-8 in a string (UnicodeDecodeError, a
        # ValueError), an integer beyond 64 bits (RuntimeError)
        return None


def read_json_block(body: bytes, document: Any = _PARSE) -> BlockRequest | None:
    """The body as a BlockRequest when it is the plain kind `fast_block` takes; None for
    anything else, including text simdjson refuses (the orjson path then reads it).
    `document`: the body's `json_document`, where the caller has it. A body it takes gives
    each key once in every object (`_fields`)."""
    if document is _PARSE:
        document = json_document(body)
    if document is None:
        return None
    try:
        return _read(document, body)
    except (ValueError, TypeError, RuntimeError):
        # simdjson's refusals: a value not of the type asked for (TypeError; a bool, null or
        # string among the numbers), an integer beyond 64 bits (RuntimeError); invalid UTF-8
        # in a string (UnicodeDecodeError, a ValueError); NotFastError (a ValueError): a
        # horizon or quantiles the schema must judge.
        return None


# Set in the scope by service.fast_routes once it has checked a JSON body's keys (a body it
# leaves to FastAPI's route, whose parser, pydantic's, keeps the last of a repeated key).
KEYS_CHECKED = "urnn.keys_checked"


class RepeatedKeyError(ServiceInputError):
    """A /forecast or observations body (or a WS /series/stream message) that gives one key
    twice in an object (422)."""


READERS_DIFFER = (
    "JSON readers differ on which of the two counts (the first or the last): give each key once"
)


class _Pairs:
    """An object as the standard parser's `object_pairs_hook` hands it over: every key in
    the order written, a repeated one too (a dict would keep one), and `get` as simdjson's
    Object answers it (the first value of a key), for `repeated_key` to read either."""

    __slots__ = ("_first", "_keys")

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self._keys = [key for key, _ in pairs]
        self._first = dict(reversed(pairs))

    def __iter__(self) -> Any:
        return iter(self._keys)

    def get(self, key: str) -> Any:
        return self._first.get(key)


# What `repeated_key` reads as an object and as an array: simdjson's document or the standard
# parser's (`pairs_document`), whose arrays are lists
_OBJECTS = (simdjson.Object, _Pairs)
_ARRAYS = (simdjson.Array, list)


def pairs_document(raw: bytes | str) -> Any:
    """`raw` as the standard library's json.loads reads it (Starlette's reader of an
    observations body, the WebSocket's of what orjson refuses), every object a `_Pairs`; None
    for text it refuses. For the texts simdjson refuses that the service's readers take: NaN
    and Infinity tokens, integers beyond 64 bits, a byte-order mark before bytes (json.loads
    skips it; before a str it refuses it, as the WebSocket's reader does)."""
    try:
        return json.loads(raw, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply for the parser
        return None


class KeysUnread(enum.Enum):
    """`forecast_repeated_key`'s answer for a body it could not read the keys of."""

    UNREAD = "unread"


def forecast_repeated_key(body: bytes, document: Any) -> RepeatedKeyError | KeysUnread | None:
    """`repeated_key` of a /forecast body whose `json_document` is `document`. Text simdjson
    refuses is read again for its keys (`pairs_document`): NaN and Infinity tokens and
    integers beyond 64 bits, which pydantic's parser (FastAPI's route, `fast_json`) reads and
    orjson (the fast path) reads in part. A repeat found there is reported only where that
    route's parser reads the body (not one after a byte-order mark, or with an unpaired
    surrogate escaped: its 422 says the body is not JSON). `KeysUnread.UNREAD` where neither
    reader takes the text (the route then answers that it is not JSON)."""
    if document is not None:
        return repeated_key(document)
    pairs = pairs_document(body)
    if pairs is None:
        return KeysUnread.UNREAD
    repeated = repeated_key(pairs)
    if repeated is not None:
        try:
            pydantic_core.from_json(body, allow_inf_nan=True)
        except ValueError:
            return KeysUnread.UNREAD
    return repeated


def repeated_key(document: Any) -> RepeatedKeyError | None:
    """The first key a /forecast document gives twice in an object the request is read from
    (the body, a series, a series' covariates), as the 422 naming it and where; None when
    every key there is given once (and for anything not shaped as a request: the schema says
    what is wrong with it). orjson and pydantic's parser keep the last of the two, simdjson
    the first: either answer would be a guess at what the client meant. Keys only, a few
    per series: ~10 us for 16 series beside the ~70-130 us simdjson's parse took.
    `document`: simdjson's, or the standard parser's `pairs_document` (text simdjson
    refuses)."""
    if not isinstance(document, _OBJECTS):
        return None
    if (repeated := _body_key(document)) is not None:
        return repeated
    series = document.get("series")
    if not isinstance(series, _ARRAYS):
        return None
    for i, item in enumerate(series):
        if not isinstance(item, _OBJECTS):
            continue
        keys = list(item)
        series_id = item.get("id") if keys.count("id") == 1 else None
        if (key := _twice(keys)) is not None:
            where = series_where(i, series_id, key)
            return RepeatedKeyError(where, f"is given twice in the series; {READERS_DIFFER}")
        covariates = item.get("covariates")
        if isinstance(covariates, _OBJECTS) and (name := _twice(list(covariates))):
            where = f"{series_where(i, series_id, 'covariates')}[{shown(name)}]"
            said = f"is given twice in the series' covariates; {READERS_DIFFER}"
            return RepeatedKeyError(where, said)
    return None


def repeated_key_path(raw: bytes) -> str | None:
    """The dotted path (`config.fit.max_epochs`, `[i]` in arrays) of the first key `raw`
    gives twice in one object, at any depth, or None (for text that is not JSON too: the
    route's parser answers that). For bodies whose every object is the request's (the jobs
    and schedules API): pydantic's parser keeps the last of the two, so `{"target": "OT",
    "target": "HUFL"}` trained on HUFL without a word."""
    document = pairs_document(raw)
    if not isinstance(document, _Pairs):  # an array or a scalar: the schema says what it is
        return None
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:  # depth first, in the order written; no recursion at any depth
        path, value = stack.pop()
        if isinstance(value, _Pairs):
            seen: set[str] = set()
            inner = []
            for key in value:
                where = f"{path}.{key}" if path else key
                if key in seen:
                    return where
                seen.add(key)
                inner.append((where, value.get(key)))  # the rest are read before a repeat
            stack.extend(reversed(inner))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{i}]", item) for i, item in enumerate(value)]))
    return None


def _body_key(document: Any) -> RepeatedKeyError | None:
    """The first key the body object `document` gives twice, as the 422 naming it."""
    if (key := _twice(list(document))) is not None:
        return RepeatedKeyError(
            f"field {shown(key)}", f"is given twice in the body; {READERS_DIFFER}"
        )
    return None


def repeated_observations_key(raw: bytes | str, data: Any) -> RepeatedKeyError | None:
    """The first key an observations body (or a WS /series/stream message) `raw` gives twice
    in the body or in its covariates, as `repeated_key`'s 422; None when each is given once.
    `data`: `raw` as orjson (or the standard parser) read it, keeping the last of a repeated
    key. Only a body `_may_repeat` is parsed again, by simdjson, for its keys: a short plain
    update pays a scan of its bytes per key (docs/streaming.md has the costs). Text simdjson
    refuses (NaN and Infinity tokens, an integer beyond 64 bits, a byte-order mark) is read
    again by the standard parser, which read it for `data` (`pairs_document`)."""
    if type(data) is not dict or not _may_repeat(raw, data):
        return None
    document = json_document(raw.encode() if isinstance(raw, str) else raw)
    if document is None:
        document = pairs_document(raw)
    if not isinstance(document, _OBJECTS):
        return None
    if (repeated := _body_key(document)) is not None:
        return repeated
    covariates = document.get("covariates")
    if isinstance(covariates, _OBJECTS) and (name := _twice(list(covariates))):
        where = f"field 'covariates'[{shown(name)}]"
        return RepeatedKeyError(where, f"is given twice in the covariates; {READERS_DIFFER}")
    return None


# Bytes `_may_repeat` scans at most (a count per name over the body, ~0.3 us per KB): past
# it simdjson's parse and a look at the keys (~1.5-2 us for a KB) is the cheaper check.
_SCAN_LIMIT = 4096


def _may_repeat(raw: bytes | str, data: dict[str, Any]) -> bool:
    """False when no key of `data` or of its covariates can be given twice in `raw`. With no
    backslash in the text every key is written as its quoted self, so a key given twice
    puts its quoted name there at least twice (the count of non-overlapping matches of one
    pattern is the most there can be); a quoted name found once is given once. A name that
    also appears as a value, any escape, or a body too long to scan once per name
    (`_SCAN_LIMIT`) sends it to the full check."""
    text = raw.encode() if isinstance(raw, str) else raw
    covariates = data.get("covariates")
    names = len(data) + (len(covariates) if type(covariates) is dict else 0)
    if names * len(text) > _SCAN_LIMIT or b"\\" in text:
        return True
    # a plain loop: any() over a generator costs ~0.8 us more per update here
    for name in chain(data, covariates) if type(covariates) is dict else data:
        if text.count(b'"' + name.encode() + b'"') != 1:
            return True
    return False


def _twice(keys: list[str]) -> str | None:
    """The first of `keys` that comes again, or None."""
    if len(set(keys)) == len(keys):
        return None
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    return None  # not reached: a set shorter than the list holds a repeat


def _read(doc: Any, body: bytes) -> BlockRequest | None:
    """The request's fields from simdjson's document; `body` for counting its lists."""
    top = _fields(doc, REQUEST_KEYS)
    if top is None:
        return None
    series = top.pop("series", None)
    if not isinstance(series, simdjson.Array) or not len(series):
        return None
    quantiles = top.get("quantiles")
    lists = 1 + len(series)  # the series list and each history
    if isinstance(quantiles, simdjson.Array):
        top["quantiles"] = quantiles.as_list()
        lists += 1
    horizon, quantile_list = fast_horizon_quantiles(top)
    read = _block(series)
    if read is None:
        return None
    block, starts = read
    lists += len(series) * len(block.covariates)  # each covariate's list
    # simdjson's buffer flattens nested lists ([1, [2], 3] reads as 1, 2, 3, where the schema
    # refuses the body). One '[' per list the plain body holds rules them out (numpy counts
    # 70 KB in ~7 us, bytes.count in ~22); a '[' inside a string counts too, and such a body
    # goes to orjson.
    if int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == _OPEN_BRACKET)) != lists:
        return None
    return BlockRequest(horizon, quantile_list, block, partial(_rows, block, starts))


def _fields(item: Any, allowed: frozenset[str]) -> dict[str, Any] | None:
    """An object's fields, when it is an object whose keys are among `allowed`, each once."""
    if not isinstance(item, simdjson.Object):
        return None
    keys = list(item)
    if len(set(keys)) != len(keys) or not allowed.issuperset(keys):
        return None
    return {key: item[key] for key in keys}


def _block(series: Any) -> tuple[SeriesBlock, list[Any]] | None:
    """`fast_path.fast_block`'s checks, read from simdjson's values, and covariates: none in
    every series (absent or null), or the same names in the same order in every series, each
    a list as long as the histories; the block and each series' `start` as written."""
    ids: list[str] = []
    starts: list[Any] = []
    freqs: list[str | None] = []
    rows: list[Any] = []
    names: tuple[str, ...] | None = None  # the first series' covariate names
    columns: list[tuple[Any, ...]] = []  # per series, its covariate arrays in `names` order
    for item in series:
        fields = _fields(item, BLOCK_KEYS)
        if fields is None:
            return None
        covariates = fields.pop("covariates", None)
        given = _NO_COVARIATES if covariates is None else _covariates(covariates)
        plain = plain_series_fields(fields)  # the rest as fast_block reads it
        if given is None or plain is None:
            return None
        if names is None:
            names = given[0]
        elif given[0] != names:
            return None
        values = fields.get("values")
        if not isinstance(values, simdjson.Array):
            return None
        ids.append(plain[0])
        starts.append(fields.get("start"))
        freqs.append(plain[1])
        rows.append(values)
        columns.append(given[1])
    width = len(rows[0])
    if not width or any(len(row) != width for row in rows):
        return None
    if names and any(len(array) != width for arrays in columns for array in arrays):
        return None
    block = _doubles(rows, width)
    if block is None:
        return None
    by_name = {}
    for c, name in enumerate(names or ()):
        column = _doubles([arrays[c] for arrays in columns], width)
        if column is None:
            return None
        by_name[name] = column
    start_ns = None
    if any(start is not None for start in starts):
        start_ns = plain_start_ns(starts)
        if start_ns is None:
            return None
    return SeriesBlock(ids, block, start_ns, freqs, by_name), starts


# A series' covariates when absent or null (as the schema reads null): no names, no arrays
_NO_COVARIATES: tuple[tuple[str, ...], tuple[Any, ...]] = ((), ())


def _covariates(given: Any) -> tuple[tuple[str, ...], tuple[Any, ...]] | None:
    """A series' covariate names and arrays, in the order written, from its `covariates`
    value (not null); None for anything a block does not take (an empty object, a name
    twice, a value that is not an array: the rows', or the schema's, business)."""
    if not isinstance(given, simdjson.Object):
        return None
    names = tuple(given)
    if not names or len(set(names)) != len(names):
        return None
    arrays = tuple(given[name] for name in names)
    if not all(isinstance(array, simdjson.Array) for array in arrays):
        return None
    return names, arrays


def _doubles(arrays: list[Any], width: int) -> np.ndarray | None:
    """simdjson arrays of `width` plain numbers each as one (len(arrays), width) float64 block
    (read-only, as an Arrow body's block is a view of its buffer); None where the buffer's
    size says otherwise. A bool, null or string among the numbers raises TypeError."""
    buffers = [array.as_buffer(of_type="d") for array in arrays]
    # simdjson's len() of an array stops at 2**24 - 1: the buffer tells the true length
    if any(buffer.size != width * 8 for buffer in buffers):
        return None
    # one copy of all rows
    return np.frombuffer(b"".join(buffers), dtype=np.float64).reshape(len(arrays), width)


def _rows(block: SeriesBlock, starts: list[Any]) -> tuple[FastSeries, ...]:
    """The block's series one by one, for the checks that go series by series (a request that
    fails a block check), as `fast_path`'s row reader reads them: each history and covariate
    a row of its block (covariates in the order written), each start by pydantic's datetime
    validator, no timestamps. Built from the block rather than by parsing the body again: the
    row reader would leave a body with more than 256 exact 0s and 1s to the schema (a bool
    could hide among them in orjson's reading; simdjson's buffer refuses bools), and a block
    must always expand."""
    rows = []
    for i, (series_id, freq, start) in enumerate(zip(block.ids, block.freqs, starts, strict=True)):
        if start is not None:
            start = parse_datetime(start)
            assert start is not None, "plain_start_ns took only texts pydantic reads"
        covariates = {name: column[i].copy() for name, column in block.covariates.items()}
        rows.append(FastSeries(series_id, block.values[i].copy(), start, freq, None, covariates))
    return tuple(rows)

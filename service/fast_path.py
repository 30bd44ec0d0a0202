"""A fast path past pydantic for /forecast bodies that are plainly well-formed.

    request = fast_request(parsed_json)   # a FastRequest, or None: let the schema decide

FastAPI validates a body by building a `ForecastRequest` (a list of Python floats per series),
and `service.validation` then turns each list into a numpy array anyway. For the common body
(known keys, a string id, lists of plain numbers, an ISO `start`, no `timezone`) this
module goes straight from the parsed JSON to those arrays: one `np.asarray` per list instead
of pydantic's per-item check plus the conversion.

It never reports an error itself. Anything it is not sure the schema accepts with the same
result (an unknown or missing key, a wrong type, `null` or a string or a bool among the
numbers, nested lists, an id out of bounds, an unparsable date...) makes it return None, and
the request goes through `ForecastRequest` as before, so every rejection keeps the schema's
422 message. What it accepts, it converts exactly as the schema would: numbers to float64,
datetimes by pydantic's own datetime validator, `"covariates": null` as none given
(tests/service/test_fast_path.py checks the two agree on accepted and rejected bodies). The
checks that need the model (finite values, lengths, dates on the model's grid, ...) are
`service.validation`'s, for both paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from service.schemas import ForecastRequest, SeriesIn, Timestamp
from training.validation import FORECAST_ID_MAX, is_number_text

# A `timezone` (the request's or a series') is the schema's to read: it checks the name, and
# the row path in service.validation reads the zone. Such a body steps aside here.
ZONE_KEY = "timezone"
REQUEST_KEYS = frozenset(ForecastRequest.model_fields) - {ZONE_KEY}
_SERIES_KEYS = frozenset(SeriesIn.model_fields) - {ZONE_KEY}
ID_MAX = FORECAST_ID_MAX  # SeriesIn.id: min_length=1, max_length=FORECAST_ID_MAX
_DATETIME = TypeAdapter(Timestamp)
_DATETIMES = TypeAdapter(list[Timestamp])


# slots, not frozen: built once per series per request on the hot path, where a frozen
# dataclass's __init__ (object.__setattr__ per field) costs ~1 us more each; never mutated.
@dataclass(slots=True)
class FastSeries:
    """A `SeriesIn` whose numbers are already float64 arrays (same fields, same meaning)."""

    id: str
    values: np.ndarray  # (N,) float64, may hold NaN/inf (service.validation rejects them)
    start: datetime | None
    freq: str | None
    timestamps: list[datetime] | None
    covariates: dict[str, np.ndarray]


@dataclass(frozen=True)
class FastRequest:
    """A `ForecastRequest` read by `fast_request`."""

    horizon: int | None
    quantiles: list[float] | None
    series: tuple[FastSeries, ...]


# slots: one per request on the hot path; never mutated.
@dataclass(slots=True)
class SeriesBlock:
    """Histories of one length as one array, as an Arrow body of plain histories holds them
    (service.arrow_io): no timestamps, every `start` naive or none at all; covariates none, or
    (an Arrow body's covariate columns, a JSON body read by service.json_block) the same
    names in every series, each as long as the histories."""

    ids: list[str]
    values: np.ndarray  # (S, N) float64, may hold NaN/inf (service.validation rejects them)
    start_ns: np.ndarray | None  # (S,) int64 naive epoch ns; None when no series has a start
    freqs: list[str | None]
    # name -> (S, N) float64 (may hold NaN/inf), in the order the series give them; {}: none
    covariates: dict[str, np.ndarray] = field(default_factory=dict)


class BlockRequest:
    """A request whose series come as one `SeriesBlock`; `series` (the same request as
    FastSeries, for the checks that go series by series) is built on first use only."""

    __slots__ = ("_expand", "_series", "block", "horizon", "quantiles")

    def __init__(
        self,
        horizon: int | None,
        quantiles: list[float] | None,
        block: SeriesBlock,
        expand: Callable[[], tuple[FastSeries, ...]],
    ) -> None:
        self.horizon = horizon
        self.quantiles = quantiles
        self.block = block
        self._expand = expand
        self._series: tuple[FastSeries, ...] | None = None

    @property
    def series(self) -> tuple[FastSeries, ...]:
        if self._series is None:
            self._series = self._expand()
        return self._series


def fast_request(data: Any) -> FastRequest | BlockRequest | None:
    """`data` (parsed JSON) as a BlockRequest when its series are the plain kind (as an Arrow
    body's can be: `fast_block`), else a FastRequest, or None when the schema must look at it."""
    if type(data) is not dict or not data.keys() <= REQUEST_KEYS:
        return None
    try:
        horizon, quantiles = fast_horizon_quantiles(data)
    except NotFastError:
        return None
    raw_series = data.get("series")
    if type(raw_series) is not list or not raw_series:
        return None
    block = fast_block(raw_series)
    if block is not None:
        return BlockRequest(horizon, quantiles, block, partial(_rows_of, raw_series))
    return _rows_request(horizon, quantiles, raw_series)


def _rows_of(raw_series: list[Any]) -> tuple[FastSeries, ...]:
    """A block's series one by one (for the checks that go series by series)."""
    request = _rows_request(None, None, raw_series)
    assert request is not None, "a plain block's series are each a FastSeries"
    return request.series


# and "covariates" when null: none given, as when left out (the schema reads it so)
BLOCK_KEYS = frozenset({"id", "values", "start", "freq", "covariates"})


def fast_block(raw_series: list[Any]) -> SeriesBlock | None:
    """The series as one block, as `service.arrow_io` reads a plain Arrow table: keys among
    id, values, start and freq (and a null covariates); histories of one length, of plain
    numbers; `start` in every series (plain naive texts, `plain_start_ns`) or in none. None
    for anything else: the series then go one by one, with their own checks and messages
    (the same answers: the block's checks are the rows', tests/service/test_fast_path.py)."""
    ids: list[str] = []
    rows: list[Any] = []
    starts: list[Any] = []
    freqs: list[str | None] = []
    for item in raw_series:
        if type(item) is not dict or not item.keys() <= BLOCK_KEYS:
            return None
        plain = plain_series_fields(item)
        if plain is None:
            return None
        ids.append(plain[0])
        rows.append(item.get("values"))
        starts.append(item.get("start"))
        freqs.append(plain[1])
    first = rows[0]
    if type(first) is not list or not first:
        return None
    width = len(first)
    if any(type(row) is not list or len(row) != width for row in rows):
        return None
    values = plain_floats(rows, ndim=2)
    if values is None or _bool_in_block(rows, values):
        return None
    start_ns = None
    if any(start is not None for start in starts):
        start_ns = plain_start_ns(starts)
        if start_ns is None:
            return None
    return SeriesBlock(ids, values, start_ns, freqs)


def plain_series_fields(fields: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The id and freq of a series a block takes (covariates absent or null, a string id
    within bounds, a string freq or none); None for any other. The orjson reader's
    (`fast_block`) and simdjson's (`service.json_block`) one rule; simdjson's reader takes the
    covariates out first and reads them itself, as blocks."""
    if fields.get("covariates") is not None:
        return None
    series_id = fields.get("id")
    if type(series_id) is not str or not 1 <= len(series_id) <= ID_MAX:
        return None
    freq = fields.get("freq")
    if freq is not None and type(freq) is not str:
        return None
    return series_id, freq


def _bool_in_block(rows: list[list[Any]], values: np.ndarray) -> bool:
    """`_bool_among` for a block: a JSON true/false that numpy read as 1 or 0."""
    suspects = np.flatnonzero((values == 0.0) | (values == 1.0))
    if not len(suspects):
        return False
    if len(suspects) > _MAX_ZERO_ONE:
        return True
    width = values.shape[1]
    return any(type(rows[i // width][i % width]) is bool for i in suspects.tolist())


def _rows_request(
    horizon: int | None, quantiles: list[float] | None, raw_series: list[Any]
) -> FastRequest | None:
    series = []
    raws: list[list[Any]] = []
    arrays: list[np.ndarray] = []
    for item in raw_series:
        one = _series(item)
        if one is None:
            return None
        series.append(one)
        raws.append(item["values"])
        arrays.append(one.values)
        for name, column in one.covariates.items():
            raws.append(item["covariates"][name])
            arrays.append(column)
    if _bool_among(raws, arrays):
        return None
    return FastRequest(horizon=horizon, quantiles=quantiles, series=tuple(series))


def _series(item: Any) -> FastSeries | None:
    if type(item) is not dict or not item.keys() <= _SERIES_KEYS:
        return None
    series_id = item.get("id")
    if type(series_id) is not str or not 1 <= len(series_id) <= ID_MAX:
        return None
    values = _numbers(item.get("values"))
    if values is None or not len(values):
        return None
    start = item.get("start")
    if start is not None:
        if type(start) is not str:
            return None
        start = parse_datetime(start)
        if start is None:
            return None
    freq = item.get("freq")
    if freq is not None and type(freq) is not str:
        return None
    try:
        timestamps = fast_timestamps(item.get("timestamps"))
        covariates = fast_covariates(item.get("covariates"), _numbers)
    except NotFastError:
        return None
    return FastSeries(series_id, values, start, freq, timestamps, covariates)


class NotFastError(ValueError):
    """A field the fast path does not take: the caller hands the body to the schema's path."""


def fast_horizon_quantiles(data: dict[str, Any]) -> tuple[int | None, list[float] | None]:
    """The `horizon` (a positive int) and `quantiles` (a non-empty list of numbers, as floats)
    fields, None when absent; NotFastError for anything the schema must judge."""
    horizon = data.get("horizon")
    if horizon is not None and (type(horizon) is not int or horizon < 1):
        raise NotFastError("horizon")
    quantiles = data.get("quantiles")
    if quantiles is None:
        return horizon, None
    if type(quantiles) is not list or not quantiles:
        raise NotFastError("quantiles")
    if any(type(q) is not float and type(q) is not int for q in quantiles):
        raise NotFastError("quantiles")
    return horizon, [float(q) for q in quantiles]


def fast_timestamps(raw: Any) -> list[datetime] | None:
    """A `timestamps` field: None when absent, the parsed list when it is a plain list of
    strings pydantic accepts (pydantic's own validator: same values), else NotFastError."""
    if raw is None:
        return None
    if type(raw) is not list or any(type(t) is not str for t in raw):
        raise NotFastError("timestamps")
    try:
        return _DATETIMES.validate_python(raw)
    except ValidationError:
        raise NotFastError("timestamps") from None


def fast_covariates(raw: Any, numbers: Callable[[Any], np.ndarray | None]) -> dict[str, np.ndarray]:
    """A `covariates` field: {} when absent or null (the schema reads null as absent), {name:
    float64 array} when every column is what `numbers` accepts, else NotFastError."""
    if raw is None:
        return {}
    if type(raw) is not dict:
        raise NotFastError("covariates")
    covariates = {}
    for name, values in raw.items():
        column = numbers(values)
        if type(name) is not str or column is None:
            raise NotFastError("covariates")
        covariates[name] = column
    return covariates


def _numbers(raw: Any) -> np.ndarray | None:
    """A list of JSON numbers as float64, or None if anything else is in it (null, a string,
    a bool-only list, a nested list...). Floats (NaN and inf included) and ints convert as the
    schema's strict `Number` does; a bool among numbers comes out as 0 or 1 here, which
    `_bool_among` catches for the whole request at once."""
    if type(raw) is not list:
        return None
    if not raw:
        return np.empty(0, dtype=np.float64)
    return plain_floats(raw, ndim=1)


def plain_floats(raw: list[Any], *, ndim: int) -> np.ndarray | None:
    """Nested lists of JSON numbers as a float64 array of `ndim` dimensions, or None when
    numpy finds anything else in them (text, null, ragged nesting, ints beyond uint64). A bool
    among numbers comes out as 0 or 1: the callers look for those themselves. Ints in
    [2^63, 2^64) read as uint64 alone and as float64 beside floats: both are taken, as the
    schema takes them (float of the int), so a list reads the same alone or in a block."""
    try:
        array = np.asarray(raw)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, ints beyond any dtype
        return None
    if array.ndim != ndim or array.dtype.kind not in "fiu":
        return None
    if array.dtype.kind in "iu" and array.dtype.itemsize != 8:
        return None
    return array.astype(np.float64, copy=False)


_MAX_ZERO_ONE = 256  # exact 0s and 1s in one request the fast path checks for bools itself


def _bool_among(raws: list[list[Any]], arrays: list[np.ndarray]) -> bool:
    """Whether a JSON true/false hides among the numbers (numpy read it as 1 or 0; the schema
    refuses it). Only items that came out exactly 0 or 1 can be one: a vectorised test over the
    request's numbers finds them, and each is looked at; past `_MAX_ZERO_ONE` of them (counts,
    on/off logs) the answer is "maybe" (True), and the schema judges the request."""
    flat = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    suspects = np.flatnonzero((flat == 0.0) | (flat == 1.0))
    if not len(suspects):
        return False
    if len(suspects) > _MAX_ZERO_ONE:
        return True
    lengths = np.array([len(a) for a in arrays])
    ends = np.cumsum(lengths)
    owners = np.searchsorted(ends, suspects, side="right")
    starts = ends - lengths
    for flat_index, owner in zip(suspects.tolist(), owners.tolist(), strict=True):
        if type(raws[owner][flat_index - int(starts[owner])]) is bool:
            return True
    return False


# A naive ISO date and time to the second between 1700 and 2199: what every reader (pydantic,
# numpy's datetime64[s]) reads alike, and inside int64 nanoseconds.
_PLAIN_START = re.compile(r"(1[7-9]\d\d|2[01]\d\d)-\d\d-\d\dT\d\d:\d\d:\d\d")


def plain_start_ns(texts: list[Any]) -> np.ndarray | None:
    """`start` strings as int64 naive epoch nanoseconds, exactly as the row path reads them,
    when every one is a plain `_PLAIN_START` text; None otherwise (the rows then judge)."""
    if not all(type(t) is str and _PLAIN_START.fullmatch(t) for t in texts):
        return None
    try:
        seconds = np.array(texts, dtype="datetime64[s]").view(np.int64)
    except ValueError:  # a day or hour that does not exist: the rows name it
        return None
    ns: np.ndarray = seconds * 1_000_000_000
    return ns


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 string as the schema reads it (pydantic's own validator); None if not one."""
    try:
        return _DATETIME.validate_python(text)
    except ValidationError:
        return None


def datetime_problem(text: str) -> str | None:
    """Why the schema refuses `text`, a date and time in ISO 8601's form, for its precision
    (more than six fractional digits, as .NET writes; an offset with a fraction of a second):
    its own check's words, where "not an ISO 8601 date and time" would be untrue. None for
    anything else (a text of digits, one pydantic's parser refuses). For the readers that
    parse texts themselves (Arrow columns), on their error path only."""
    if is_number_text(text):
        return None
    try:
        _DATETIME.validate_python(text)
    except ValidationError as error:
        for problem in error.errors():
            if problem["type"] == "value_error" and "error" in problem.get("ctx", {}):
                return str(problem["ctx"]["error"])
    return None

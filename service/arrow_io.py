"""/forecast bodies as Apache Arrow IPC streams: reading them, and whether to answer in Arrow.

    request = read_arrow_request(body)            # a FastRequest, or ServiceInputError (422)
    wants_arrow(accept_header)                    # whether the answer is Arrow too

JSON makes a server turn every history value from text into a float and every forecast value
back into text; with 16 histories of 512 values that is most of what one request costs the
event loop (docs/serving.md, "Benchmark"). An Arrow stream carries the numbers as the
little-endian doubles they are: reading it is a header walk and a view of one buffer. This is
what Triton's and KServe's binary tensor extensions are for; Arrow is the tabular form of it
that pandas, Polars, DuckDB and Spark already write (`pa.Table.from_pandas`).

The table is the JSON body flattened the way `pandas.json_normalize` flattens it, one row per
series:

| column | Arrow type | JSON field |
|---|---|---|
| `id` (required) | string | `series[i].id` |
| `values` (required) | list of float or int | `series[i].values` |
| `start` | timestamp (any unit, zone kept) or ISO string | `series[i].start` |
| `freq` | string | `series[i].freq` |
| `timestamps` | list of timestamp or ISO string | `series[i].timestamps` |
| `covariates.<name>` | list of float, int or bool (a flag: 1, 0) | `series[i].covariates[name]` |

and `horizon` / `quantiles`, the request-level fields, are schema metadata (an integer, and a
JSON list of numbers). A null in an optional column means the field is absent for that row.
The answer, when `Accept` asks for Arrow, is `service.arrow_answer`'s.

Every problem with the table (not Arrow, an unknown column, a wrong type, a null where a value
is needed) is a ServiceInputError naming the column (and series) and what is allowed; what
the table holds then goes through the same checks as a JSON body (`service.validation`).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Sequence
from datetime import date, datetime
from functools import partial
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from service.arrow_limits import (
    ARROW_FILE_MAGIC,
    ROW_BYTES,
    is_numbers,
    is_text,
    may_repeat_data,
    python_bytes,
    read_bytes,
    stream_cut_short,
)
from service.errors import (
    TOO_LARGE_ADVICE,
    BodyTooLargeError,
    ServiceInputError,
    series_where,
)
from service.fast_path import (
    ID_MAX,
    BlockRequest,
    FastRequest,
    FastSeries,
    SeriesBlock,
    datetime_problem,
    parse_datetime,
    plain_start_ns,
)
from training.validation import plural_says, zone_named
from urnn_forecast.field_types import shown

logger = logging.getLogger(__name__)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_MEDIA_TYPES = (ARROW_STREAM, ARROW_FILE)

COVARIATE_PREFIX = "covariates."
QUANTILE_PREFIX = "quantiles."
_COLUMNS = ("id", "values", "start", "freq", "timestamps")
_ALLOWED = "id, values, start, freq, timestamps, covariates.<name>"
_BLOCK_COLUMNS = frozenset(("id", "values", "start", "freq"))
# What `datetime.isoformat()` writes for a naive whole second, in years where numpy's parser
# and pydantic's agree on every string (both refuse hour 24, second 60, Feb 30...) and epoch
# nanoseconds fit.
Table: TypeAlias = pa.Table | pa.RecordBatch  # a stream of one batch is read as that batch


def media_type(content_type: bytes) -> str:
    """The bare media type of a Content-Type header, lower case (`b"a/b; x=y"` -> `"a/b"`)."""
    return content_type.split(b";", 1)[0].strip().lower().decode("latin-1")


def wants_arrow(accept: bytes | None) -> bool:
    """Whether an Accept header prefers an Arrow answer over JSON (the default): the Arrow
    stream type is listed with the highest q-value among the types the route answers with,
    and listed before JSON on a tie. An Accept that names neither gets JSON. Media types are
    case-insensitive (RFC 9110, 8.3.1), as the Content-Type the body is read by already was."""
    if not accept or b"arrow" not in accept.lower():
        return False
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(accept.decode("latin-1").split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        kind = kind.lower()
        if kind not in (ARROW_STREAM, "application/json", "application/*", "*/*"):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        key = (q, -position, kind)
        if best is None or key[:2] > best[:2]:
            best = key
    return best is not None and best[2] == ARROW_STREAM


# -----------------------------------------------------------------------------
# Request


_METADATA_KEYS = (b"horizon", b"quantiles")
# Written by the libraries that build tables, not by the caller: pandas' schema record
# (pa.Table.from_pandas) and Arrow's own reserved "ARROW:" keys.
_LIBRARY_METADATA = (b"pandas",)


def _check_metadata_keys(metadata: dict[bytes, bytes]) -> None:
    """An unknown schema metadata key is refused as an unknown JSON field is: a misspelt
    `horizn` would otherwise be ignored and the full horizon answered."""
    for key in metadata:
        if key in _METADATA_KEYS or key in _LIBRARY_METADATA or key.startswith(b"ARROW:"):
            continue
        name = key.decode("utf-8", "replace")
        raise ServiceInputError(
            f"metadata {shown(name)}",
            "is not a request setting; allowed: horizon, quantiles",
        )


def _unknown_column_hint(name: str, metadata: dict[bytes, bytes]) -> str:
    """What to do about an unknown column that is not a misspelling: a DataFrame's index,
    which pa.Table.from_pandas writes unless it is a plain RangeIndex (a frame filtered to
    some rows has another), and JSON's `timezone` field, which an Arrow body says in its
    timestamp type. Only on the error path."""
    if name == "timezone":
        return (
            "; an Arrow body names the zone in the type of its `start` or `timestamps` "
            "column (timestamp[ns, tz=Europe/London])"
        )
    if name in _pandas_index_columns(metadata):
        return (
            f"; {shown(name)} holds the DataFrame's index, which pa.Table.from_pandas writes "
            "unless told not to: build the table with "
            "pa.Table.from_pandas(frame, preserve_index=False)"
        )
    return ""


def _pandas_index_columns(metadata: dict[bytes, bytes]) -> list[str]:
    """The columns pandas' schema record (the `pandas` metadata key) lists as the frame's
    index; [] where there is no readable record."""
    try:
        record = json.loads(metadata.get(b"pandas", b"{}"))
    except ValueError:
        return []
    columns = record.get("index_columns", []) if isinstance(record, dict) else []
    return [c for c in columns if isinstance(c, str)] if isinstance(columns, list) else []


def read_arrow_request(
    body: bytes, content_type: str = ARROW_STREAM, *, max_bytes: int | None = None
) -> FastRequest | BlockRequest:
    """The request an Arrow stream (or file) body holds; ServiceInputError naming the column
    and series for anything that is not a request table. Plain histories of one length, with
    or without covariate columns of the same length, come as one block (`_plain_block`),
    their FastSeries built only if a check needs them.
    `max_bytes` (URNN_MAX_BODY_BYTES): BodyTooLargeError when the columns would take more
    once decoded (`_check_read_size`), before any column is decoded."""
    table = _read_table(body, content_type)
    metadata = table.schema.metadata or {}
    _check_metadata_keys(metadata)
    horizon = _horizon(metadata.get(b"horizon"))
    quantiles = _quantiles(metadata.get(b"quantiles"))
    names = table.column_names
    for name in names:
        if name not in _COLUMNS and not (
            name.startswith(COVARIATE_PREFIX) and len(name) > len(COVARIATE_PREFIX)
        ):
            hint = _unknown_column_hint(name, metadata)
            raise ServiceInputError(
                f"column {shown(name)}", f"is not a request column; allowed: {_ALLOWED}{hint}"
            )
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ServiceInputError(f"column {shown(repeated[0])}", "appears more than once")
    for required in ("id", "values"):
        if required not in names:
            raise ServiceInputError(f"column {required!r}", f"is missing; columns: {_ALLOWED}")
    if table.num_rows == 0:
        raise ServiceInputError("the table", "holds no series; give one row per series")
    if max_bytes is not None:  # before any column is decoded
        _check_read_size(table, max_bytes)
    ids = _ids(_column(table, "id"))
    _refuse_sub_microsecond_times(table, ids)
    block = _plain_block(table, ids)
    if block is not None:
        return BlockRequest(horizon, quantiles, block, partial(_fast_series, table, ids))
    return FastRequest(horizon=horizon, quantiles=quantiles, series=_fast_series(table, ids))


def _refuse_sub_microsecond_times(table: Table, ids: Sequence[str]) -> None:
    """A 422 for a nanosecond `start` or `timestamps` cell finer than the microsecond, as the
    JSON body's text gets (`service.schemas`): the service dates to the microsecond, and the
    Arrow path cut the rest off without a word, so a time 0.9 us off a step's grid read as on
    it here while the same time in JSON was refused."""
    for field in table.schema:
        name = field.name
        if name not in ("start", "timestamps") or not _may_hold_nanoseconds(field.type):
            continue  # the schema alone says so: next to no cost for other types
        array = _column(table, name)
        nested = pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
        cells, offsets = array, None
        if nested:
            # The child values the rows' offsets point into, by position: `flatten()` drops
            # those under a null row, which the format lets span any range, and positions
            # counted past them named the series before the right one.
            offsets = array.offsets.to_numpy()
            first = int(offsets[0])
            offsets = offsets - first
            cells = array.values.slice(first, int(offsets[-1]))
        kind = cells.type
        if not (pa.types.is_timestamp(kind) and kind.unit == "ns"):
            continue
        ns = cells.view(pa.int64()).to_numpy(zero_copy_only=False)
        finer = ns % 1000 != 0
        if not finer.any():
            continue
        finer &= cells.is_valid().to_numpy(zero_copy_only=False)
        if offsets is not None and array.null_count:  # a null row's values are no one's
            rows_valid = array.is_valid().to_numpy(zero_copy_only=False)
            finer &= np.repeat(rows_valid, np.diff(offsets))
        finer = np.flatnonzero(finer)
        if not len(finer):  # only under nulls, whose slots hold anything
            continue
        at = int(finer[0])
        field, row = name, at
        if offsets is not None:  # the row whose list holds it, and its position there
            row = int(np.searchsorted(offsets[:-1], at, side="right")) - 1
            field = f"timestamps[{at - int(offsets[row])}]"
        time = f"'{np.datetime64(int(ns[at]), 'ns')}'" + (" (UTC)" if kind.tz else "")
        raise ServiceInputError(
            series_where(row, ids[row], field),
            f"{time} gives a fraction of a second finer than the microsecond; the service "
            "dates to the microsecond: send timestamp[us] or whole microseconds",
        )


def _may_hold_nanoseconds(kind: pa.DataType) -> bool:
    """Whether a column's schema type is (a list of) timestamp[ns], or a dictionary, whose
    values only decoding tells."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or _is_list_view(kind):
        kind = kind.value_type
    if pa.types.is_dictionary(kind):
        return True
    return bool(pa.types.is_timestamp(kind) and kind.unit == "ns")


def _fast_series(table: Table, ids: list[str]) -> tuple[FastSeries, ...]:
    """The table's rows as FastSeries (ServiceInputError for a row that cannot be one)."""
    names = table.column_names
    values = _number_lists(_column(table, "values"), "values", ids, required=True)
    starts = _starts(table, ids)
    freqs = _strings(table, "freq", ids)
    timestamps = _timestamp_lists(table, ids)
    covariates = {
        name[len(COVARIATE_PREFIX) :]: _number_lists(_column(table, name), name, ids, flags=True)
        for name in names
        if name.startswith(COVARIATE_PREFIX)
    }
    series = []
    for i, series_id in enumerate(ids):
        history = values[i]
        assert history is not None  # a required column: _number_lists refused null rows
        given = {}
        for name, column in covariates.items():
            cell = column[i]
            if cell is not None:  # a null cell: this series does not give that covariate
                given[name] = cell
        series.append(FastSeries(series_id, history, starts[i], freqs[i], timestamps[i], given))
    return tuple(series)


def _plain_block(table: Table, ids: list[str]) -> SeriesBlock | None:
    """The table as one block when it is the plain kind: columns among id, values, start,
    freq and `covariates.<name>`; histories of one non-zero length, lists of numbers without
    nulls; every covariate column likewise (booleans too, as 1.0 and 0.0: `_plain_lists`)
    with no null cell and each list as long as the histories; `start` in every row or none,
    naive timestamps or plain strings (`fast_path.plain_start_ns`). None for anything else
    (the rows then go one by one, with their own checks and messages: a null covariate cell,
    a series that does not give that covariate, among them)."""
    names = table.column_names
    covariate_columns = [name for name in names if name.startswith(COVARIATE_PREFIX)]
    if len(covariate_columns) + len(_BLOCK_COLUMNS.intersection(names)) != len(names):
        return None
    values = _plain_lists(_column(table, "values"))
    if values is None:
        return None
    rows, width = values.shape
    covariates = {}
    for name in covariate_columns:  # the table's order, as `_fast_series` gives them
        column = _plain_lists(_column(table, name), flags=True)
        if column is None or column.shape[1] != width:
            return None
        covariates[name[len(COVARIATE_PREFIX) :]] = column
    start_ns = None
    if "start" in names:
        start_ns = _plain_starts(_column(table, "start"))
        if start_ns is None:
            return None
    freqs: list[str | None] = _strings(table, "freq", ids) if "freq" in names else [None] * rows
    return SeriesBlock(ids, values, start_ns, freqs, covariates)


def _plain_lists(array: pa.Array, *, flags: bool = False) -> np.ndarray | None:
    """A column of lists of one non-zero length, with no null cell nor null value, as one
    (rows, width) float64 array: a view of the Arrow buffer for float64, one copy for other
    numbers, exactly what `_number_lists` reads row by row (the same cast; `flags`: lists of
    booleans as 1.0 and 0.0 too, as that reads a covariate's). None for anything else: other
    list kinds (fixed-size lists, list views) and other value types go row by row."""
    kind = array.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return None
    value_type = kind.value_type
    if not (is_numbers(value_type) or (flags and pa.types.is_boolean(value_type))):
        return None
    if array.null_count:
        return None
    offsets = array.offsets.to_numpy()
    width = _equal_width(offsets)
    if width is None:
        return None
    first, rows = int(offsets[0]), len(array)
    # only the rows' own values: a sliced table's child holds others, nulls among them
    flat = array.values.slice(first, rows * width)
    if flat.null_count:
        return None
    numbers = flat.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    block: np.ndarray = numbers.reshape(rows, width)
    return block


def _equal_width(offsets: np.ndarray) -> int | None:
    """The rows' common length when list offsets give every row the same non-zero one."""
    rows = len(offsets) - 1
    first = int(offsets[0])
    width, rest = divmod(int(offsets[-1]) - first, rows)
    if width < 1 or rest:
        return None
    if (offsets - first).tobytes() != list_offsets(rows, width, offsets.dtype.str):
        return None
    return width


@functools.lru_cache(maxsize=256)
def list_offsets(rows: int, width: int, dtype: str = "<i4") -> bytes:
    """The offsets of `rows` lists of `width` values each, from 0, as bytes of `dtype` (int32
    by default, as Arrow's lists): what a table of equal-length lists holds."""
    return (width * np.arange(rows + 1)).astype(dtype).tobytes()


def _plain_starts(array: pa.Array) -> np.ndarray | None:
    """A `start` column as int64 naive epoch nanoseconds, exactly as the row path reads it
    (`service.validation`: whole microseconds, which a finer timestamp[ns] cell was refused
    for by `_refuse_sub_microsecond_times`), or None when it is not of the plain kind."""
    if array.null_count:
        return None
    kind = array.type
    if pa.types.is_timestamp(kind) and kind.tz is None:
        try:
            ns: np.ndarray = array.cast(pa.timestamp("ns")).to_numpy().view(np.int64)
        except pa.ArrowException:  # outside the nanosecond range: the rows say so
            return None
        return ns
    if not is_text(kind):
        return None
    return plain_start_ns(_cells(array, "start"))


def _read_table(body: bytes, content_type: str) -> Table:
    """The body's table; a stream of one record batch (what clients write for a request) as
    that batch: its columns are arrays, with no chunks to combine. Checked whole
    (`_check_table`) before anything reads a cell of it."""
    kind = "file" if content_type == ARROW_FILE else "stream"
    unread = 0  # bytes after a stream's end-of-stream marker
    table: Table
    try:
        if content_type == ARROW_FILE:
            table = pa.ipc.open_file(pa.py_buffer(body)).read_all()
        else:
            source = pa.BufferReader(pa.py_buffer(body))
            reader = pa.ipc.open_stream(source)
            batches = list(reader)
            unread = len(body) - source.tell()
            if len(batches) == 1:
                table = batches[0]
            else:
                table = pa.Table.from_batches(batches, schema=reader.schema)
    except (pa.ArrowException, OSError, ValueError) as error:
        logger.info("an Arrow body (%s) did not read: %s", content_type, error)
        raise ServiceInputError(
            "the body",
            f"is not an Arrow IPC {kind} ({content_type}): {_why_unreadable(body, content_type)}",
        ) from None
    if unread > 0:
        # pyarrow's reader stops at the end-of-stream marker: a second stream appended
        # (two tables meant as one request) had its series dropped under a 200.
        raise ServiceInputError(
            "the body",
            f"is not an Arrow IPC stream ({content_type}): "
            f"{plural_says(unread, 'byte', 'follows', 'follow')} its "
            "end-of-stream marker (a second stream appended?); send one stream holding "
            "every series, as pyarrow.ipc.new_stream writes it",
        )
    _check_table(table, kind)
    return table


def _check_read_size(table: Table, max_bytes: int) -> None:
    """413 for a table whose columns take more than `max_bytes` once decoded (a dictionary's
    entries repeated row by row, views followed: `service.arrow_limits.read_bytes`), 422 for
    a column whose rows may share data in a layout no request column has; nothing decoded
    either way. Rows first: a request row takes at least 8 bytes once read (an offset and one
    value of its history), and a type whose rows need no bytes (a null column, a fixed-size
    list of size 0) could otherwise declare rows that no buffer bounds."""
    too_large = (
        f"request body too large: its Arrow columns take more than {max_bytes:,} bytes "
        "once read (dictionary-encoded columns decoded, string and list views followed "
        f"to each row's data), above the limit of URNN_MAX_BODY_BYTES; {TOO_LARGE_ADVICE}"
    )
    if table.num_rows * 8 > max_bytes:
        raise BodyTooLargeError(too_large)
    total = table.num_rows * ROW_BYTES
    for field, column in zip(table.schema, table.columns, strict=True):
        total += python_bytes(column)
        if total > max_bytes:
            raise BodyTooLargeError(too_large)
        if not may_repeat_data(field.type):
            continue  # read_bytes: what rows sharing data take once followed
        size = read_bytes(column)
        if size is None:
            raise ServiceInputError(
                f"column {shown(field.name)}",
                f"is {field.type}, a dictionary or view layout no request column has; send "
                "text, numbers or timestamps, or lists of them",
            )
        total += size
        if total > max_bytes:
            raise BodyTooLargeError(too_large)


def _check_table(table: Table, kind: str) -> None:
    """A 422 for a table whose messages decode but whose contents contradict each other.
    Arrow's reader checks a message's framing, not what its buffers hold: a string column
    whose offsets point past its data (or backwards), a list whose offsets overrun its
    values, text that is not UTF-8 or a field name that is not would crash the process
    (a read outside the buffer) or raise deep inside pyarrow when a cell or name is read.
    `validate(full=True)` checks every offset and string; for a request table (a few
    columns, tens of rows) it costs about a microsecond, next to ~100 for reading the
    request. Only a table it refuses is looked at column by column, to name the column and
    tell text that is not UTF-8 from damaged offsets (`_sound_as_bytes`)."""
    try:
        names = table.schema.names
    except UnicodeDecodeError:
        raise ServiceInputError(
            "the body", "has a column name that is not UTF-8; Arrow field names must be UTF-8"
        ) from None
    try:
        table.validate(full=True)
    except (pa.ArrowException, ValueError) as error:
        logger.info("an Arrow body's table is inconsistent: %s", error)
    else:
        return
    for name, column in zip(names, table.columns, strict=True):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        for chunk in chunks:
            try:
                chunk.validate(full=True)
            except (pa.ArrowException, ValueError):
                if _sound_as_bytes(chunk):
                    raise ServiceInputError(
                        f"column {shown(name)}",
                        "holds text that is not UTF-8; Arrow strings must be UTF-8",
                    ) from None
                if _date64_not_days(chunk):
                    raise ServiceInputError(
                        f"column {shown(name)}",
                        "holds date64 cells that are not whole days (milliseconds since 1970 "
                        "that 86,400,000 does not divide); send dates as whole days, or times "
                        "as timestamp[ms]",
                    ) from None
                raise ServiceInputError(
                    f"column {shown(name)}",
                    f"is damaged or inconsistent in the body: its offsets or lengths point "
                    f"outside its buffers; send the table as pyarrow.ipc.new_{kind} writes it",
                ) from None
    raise ServiceInputError(
        "the body",
        f"is an Arrow IPC {kind} whose contents are damaged or inconsistent (a column's "
        f"length differs from the table's?); send the table as pyarrow.ipc.new_{kind} writes it",
    )


def _sound_as_bytes(array: pa.Array) -> bool:
    """Whether a column that full validation refused passes it read as bytes
    (`_bytes_twin`): all that is wrong with it is then text that is not UTF-8, in a string
    column, a list of strings or a dictionary of them."""
    twin = _bytes_twin(array.type)
    if twin == array.type:
        return False
    try:
        array.view(twin).validate(full=True)
    except (pa.ArrowException, ValueError):
        return False
    return True


_DAY_MS = 86_400_000


def _date64_not_days(array: pa.Array) -> bool:
    """Whether a column that full validation refused is date64 (or lists of it) with a cell
    holding a time of day: valid as Arrow except for that (JavaScript's Arrow writes a Date's
    time into date64), and not the damage the generic 422 speaks of."""
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        array = array.values
    if not pa.types.is_date64(array.type):
        return False
    try:
        ms = array.view(pa.int64()).to_numpy(zero_copy_only=False)
        valid = array.is_valid().to_numpy(zero_copy_only=False)
    except (pa.ArrowException, ValueError):  # buffers too short: damage after all
        return False
    return bool(((ms % _DAY_MS != 0) & valid).any())


def _bytes_twin(kind: pa.DataType) -> pa.DataType:
    """`kind` with each string type in it the binary type of the same layout (string ->
    binary, large_string -> large_binary, string_view -> binary_view), into the values of
    lists and dictionaries: what a column's buffers are with no UTF-8 to check."""
    if pa.types.is_string(kind):
        return pa.binary()
    if pa.types.is_large_string(kind):
        return pa.large_binary()
    view = getattr(pa.types, "is_string_view", None)
    if view is not None and view(kind):
        return pa.binary_view()
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_bytes_twin(kind.value_type)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_bytes_twin(kind.value_type)))
    if pa.types.is_dictionary(kind):
        return pa.dictionary(kind.index_type, _bytes_twin(kind.value_type), kind.ordered)
    return kind


_CONTINUATION = b"\xff\xff\xff\xff"  # what every message of a stream begins with (format 1.0+)


def _why_unreadable(body: bytes, content_type: str) -> str:
    """What is wrong with a body pyarrow's reader refused, in the service's words: its own
    text names reader internals ('Expected to read 1330795073 metadata bytes, but only read
    902', 'Invalid flatbuffers message.') and goes to the log. Told apart by the body's first
    and last bytes and its framing (`arrow_limits.stream_cut_short`), never by that text."""
    file = content_type == ARROW_FILE
    writer = "pyarrow.ipc.new_file" if file else "pyarrow.ipc.new_stream"
    damaged = f"damaged, or not written by {writer} or another Arrow IPC writer?"
    if not body:
        return f"it is empty; send the request table as {writer} writes it"
    if body.lstrip()[:1] in (b"{", b"["):
        return "it looks like JSON; send JSON with Content-Type: application/json"
    if body.startswith(b"PAR1"):
        return f"it is a Parquet file; send the table as {writer} writes it"
    if file:
        if not body.startswith(ARROW_FILE_MAGIC):
            return (
                "it does not begin with 'ARROW1', as an Arrow IPC file does; an Arrow IPC "
                f"stream goes with Content-Type: {ARROW_STREAM}"
            )
        if (appended := _after_file_end(body)) is not None:
            return (
                f"{plural_says(appended, 'byte', 'follows', 'follow')} its closing 'ARROW1' "
                "(another file or other bytes "
                "appended?); send one file holding every series, as pyarrow.ipc.new_file "
                "writes it"
            )
        if not body.endswith(ARROW_FILE_MAGIC) or len(body) < 2 * len(ARROW_FILE_MAGIC) + 4:
            return "it stops before the file's footer (cut short in sending?)"
        return f"its footer or a message in it cannot be decoded ({damaged})"
    if body.startswith(ARROW_FILE_MAGIC):
        return f"it is an Arrow IPC file; send it with Content-Type: {ARROW_FILE}"
    if not (body.startswith(_CONTINUATION) or _CONTINUATION.startswith(body)):
        return f"it does not begin with a stream's schema message ({damaged})"
    if stream_cut_short(body):
        return "it stops in the middle of a message (cut short in sending?)"
    return f"a message in it cannot be decoded ({damaged})"


def _after_file_end(body: bytes) -> int | None:
    """How many bytes follow a whole Arrow file at the start of `body` (one that reads up to
    its last closing 'ARROW1'), or None: a file with bytes appended was said to be cut short."""
    end = body.rfind(ARROW_FILE_MAGIC) + len(ARROW_FILE_MAGIC)
    if end <= len(ARROW_FILE_MAGIC) or end == len(body):
        return None
    try:
        pa.ipc.open_file(pa.py_buffer(body[:end]))
    except (pa.ArrowException, OSError, ValueError):
        return None
    return len(body) - end


def _horizon(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace").strip()
    try:  # ASCII digits only: '²' and '٣' are digits to str.isdigit, and int() refuses '²'
        steps = int(text) if text.isascii() and text.isdigit() else 0
    except ValueError:  # more digits than Python converts
        steps = 0
    if steps < 1:
        raise ServiceInputError(
            "metadata 'horizon'", f"must be a positive integer (steps); got {shown(text)}"
        )
    return steps


def _quantiles(raw: bytes | None) -> list[float] | None:
    if raw is None:
        return None
    try:
        levels = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, nested too deeply, a 5000-digit integer
        levels = None
    if (
        not isinstance(levels, list)
        or not levels
        or any(isinstance(q, bool) or not isinstance(q, int | float) for q in levels)
    ):
        raise ServiceInputError(
            "metadata 'quantiles'",
            "must be a non-empty JSON list of numbers, e.g. [0.1, 0.5, 0.9]; got "
            f"{raw.decode('utf-8', 'replace')[:80]!r}",
        )
    try:
        return [float(q) for q in levels]
    except OverflowError:  # an integer beyond any float: not a quantile level either way
        raise ServiceInputError(
            "metadata 'quantiles'", "holds a number beyond float range; levels lie in (0, 1)"
        ) from None


def _column(table: Table, name: str) -> pa.Array:
    """The column as one array, dictionaries decoded chunk by chunk: batches of a stream may
    each carry their own dictionary, which pyarrow cannot merge for lists (a 500), and a
    dictionary of string views (Polars' categorical) it cannot decode until its entries are
    plain strings."""
    column = table.column(name)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    chunks = [_decoded(chunk) for chunk in chunks]
    if len(chunks) == 1:
        return chunks[0]
    return pa.chunked_array(chunks, type=chunks[0].type).combine_chunks()


def _decoded(chunk: pa.Array) -> pa.Array:
    if not pa.types.is_dictionary(chunk.type):
        return chunk
    entries = chunk.dictionary
    if is_text(entries.type) and not pa.types.is_string(entries.type):
        entries = entries.cast(pa.large_string())  # views and large strings alike
        chunk = pa.DictionaryArray.from_arrays(chunk.indices, entries)
    return chunk.dictionary_decode()


def _ids(array: pa.Array) -> list[str]:
    if not is_text(array.type):
        raise ServiceInputError("column 'id'", f"must be strings; got {array.type}")
    ids: list[str] = _cells(array, "id")
    for i, series_id in enumerate(ids):
        if series_id is None:
            raise ServiceInputError(series_where(i, None, "id"), "is null; every series needs one")
        if not 1 <= len(series_id) <= ID_MAX:
            raise ServiceInputError(
                series_where(i, series_id, "id"),
                f"must be 1 to {ID_MAX} characters; has {len(series_id)}",
            )
    return ids


def _number_lists(
    array: pa.Array,
    name: str,
    ids: Sequence[str],
    *,
    required: bool = False,
    flags: bool = False,
) -> list[np.ndarray | None]:
    """Each row's list as float64 (views of one buffer where Arrow allows); None for a null
    row of an optional column. Lists, large lists, fixed-size lists and list views (what
    Polars may export) are read through their offsets, never cast (pyarrow 25 casts a list
    view to a list wrongly). `flags` (a covariate): lists of booleans too, as 1.0 and 0.0, as
    JSON's true/false lists (service.schemas) and the training loader's True/False columns."""
    kind = array.type
    views = _is_list_view(kind)
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or views
    # flags not in views: a view's rows may show a few of a long child's bits, each a float64
    # once read, past what the size count bounds (arrow_limits refuses list views of booleans)
    if not (listed or pa.types.is_fixed_size_list(kind)) or not (
        is_numbers(kind.value_type)
        or (flags and not views and pa.types.is_boolean(kind.value_type))
    ):
        kinds = "floats, integers or booleans (a flag)" if flags else "floats or integers"
        raise ServiceInputError(f"column {shown(name)}", f"must be lists of {kinds}; got {kind}")
    if pa.types.is_fixed_size_list(kind):
        array = array.cast(pa.list_(kind.value_type))  # offsets, like the other list kinds
    row_nulls = array.is_null().to_numpy(False) if array.null_count else None
    offsets = array.offsets.to_numpy()  # positions in array.values
    if views:  # each row: offset and size, in any order
        starts, ends = offsets, offsets + array.sizes.to_numpy(zero_copy_only=False)
    else:  # each row ends where the next starts
        starts, ends = offsets[:-1], offsets[1:]
    bounds = list(zip(starts.tolist(), ends.tolist(), strict=True))
    flat = array.values
    if flat.null_count:
        null = flat.is_null().to_numpy(zero_copy_only=False)
        for i, (a, b) in enumerate(bounds):
            if (row_nulls is None or not row_nulls[i]) and null[a:b].any():
                raise ServiceInputError(
                    series_where(i, ids[i], name),
                    f"holds null at position {int(np.argmax(null[a:b]))}; every value must be "
                    "a finite number",
                )
    numbers = flat.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    out: list[np.ndarray | None] = []
    for i, (a, b) in enumerate(bounds):
        if row_nulls is not None and row_nulls[i]:
            if required:
                raise ServiceInputError(
                    series_where(i, ids[i], name), "is null; give the history's values"
                )
            out.append(None)
        else:
            out.append(numbers[a:b])
    return out


def _is_list_view(kind: pa.DataType) -> bool:
    """A list view (Arrow 1.4 format, pyarrow >= 16); False where pyarrow has none."""
    checks = (
        getattr(pa.types, "is_list_view", None),
        getattr(pa.types, "is_large_list_view", None),
    )
    return any(check is not None and check(kind) for check in checks)


def _starts(table: Table, ids: Sequence[str]) -> list[datetime | None]:
    if "start" not in table.column_names:
        return [None] * len(ids)
    array = _column(table, "start")
    kind = array.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return [_as_datetime(v) for v in _cells(array, "start")]
    if is_text(kind):
        return [
            None if text is None else _parse(text, i, ids[i], "start")
            for i, text in enumerate(_cells(array, "start"))
        ]
    raise ServiceInputError(
        "column 'start'", f"must be timestamps, dates or ISO 8601 strings; got {kind}"
    )


def _timestamp_lists(table: Table, ids: Sequence[str]) -> list[list[datetime] | None]:
    if "timestamps" not in table.column_names:
        return [None] * len(ids)
    array = _column(table, "timestamps")
    kind = array.type
    value_type = kind.value_type if pa.types.is_list(kind) or pa.types.is_large_list(kind) else None
    if value_type is None or not (
        pa.types.is_timestamp(value_type) or pa.types.is_date(value_type) or is_text(value_type)
    ):
        raise ServiceInputError(
            "column 'timestamps'",
            f"must be lists of timestamps, dates or ISO 8601 strings; got {kind}",
        )
    out: list[list[datetime] | None] = []
    for i, row in enumerate(_cells(array, "timestamps")):
        if row is None:
            out.append(None)
            continue
        stamps = []
        for position, value in enumerate(row):
            if value is None:
                raise ServiceInputError(
                    series_where(i, ids[i], "timestamps"), f"holds null at position {position}"
                )
            if isinstance(value, str):
                stamps.append(_parse(value, i, ids[i], f"timestamps[{position}]"))
            else:
                stamp = _as_datetime(value)
                assert stamp is not None  # nulls refused above
                stamps.append(stamp)
        out.append(stamps)
    return out


def _strings(table: Table, name: str, ids: Sequence[str]) -> list[str | None]:
    if name not in table.column_names:
        return [None] * len(ids)
    array = _column(table, name)
    if not is_text(array.type):
        raise ServiceInputError(f"column {shown(name)}", f"must be strings; got {array.type}")
    values: list[str | None] = _cells(array, name)
    return values


def _cells(array: pa.Array, name: str) -> list[Any]:
    """The column's cells as Python values, or a 422 for the column saying why they cannot
    be (not a 500, and not pyarrow's text: for a zone it does not know it says 'The zoneinfo
    module or pytz package must be installed.'). Told apart by the exception's class and the
    column's type: an instant outside Python's years 1 to 9999, a zone no clock is named by.
    Text that is not UTF-8 never gets here: `_check_table` refused it as the body was read."""
    try:
        cells: list[Any] = array.to_pylist()
    except OverflowError:
        clock = " on its zone's clock" if _zone_of(array.type) else ""
        raise ServiceInputError(
            f"column {shown(name)}",
            f"holds a date or time outside the years 1 to 9999{clock}; request times lie "
            "within them",
        ) from None
    except (pa.ArrowException, ValueError) as error:
        logger.info("column %r (%s) did not read: %s", name, array.type, error)
        zone = _zone_of(array.type)
        if zone is not None and not _known_zone(zone):
            raise ServiceInputError(
                f"column {shown(name)}",
                f"has the time zone {shown(zone)} in its type ({array.type}), which names no zone; "
                "a zone is an IANA name such as 'Europe/London' or an offset such as '+02:00'",
            ) from None
        said = f"cannot be read as {array.type}"
        raise ServiceInputError(f"column {shown(name)}", said) from None
    return cells


# The fixed offsets an Arrow timestamp type may name as its zone, as pyarrow reads them.
_OFFSET_ZONE = re.compile(r"[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]")


def _zone_of(kind: pa.DataType) -> str | None:
    """The zone a timestamp type, or a list of timestamps, names (None for none)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    if pa.types.is_timestamp(kind) and kind.tz:
        return str(kind.tz)
    return None


def _known_zone(zone: str) -> bool:
    """Whether pyarrow can read `zone`: an offset such as '+02:00' or a zone database name."""
    if _OFFSET_ZONE.fullmatch(zone):
        return True
    try:
        zone_named(zone)
    except ValueError:
        return False
    return True


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp cell as a datetime (pandas' Timestamp for nanosecond columns), a date cell
    as its midnight."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise TypeError(f"not a timestamp: {value!r}")


def _parse(text: str, i: int, series_id: str, field: str) -> datetime:
    """An ISO 8601 string as the JSON body's is read (`service.fast_path.parse_datetime`)."""
    parsed = parse_datetime(text)
    if parsed is None:
        said = datetime_problem(text) or f"{shown(text)} is not an ISO 8601 date and time"
        raise ServiceInputError(series_where(i, series_id, field), said)
    return parsed


def request_stream(
    series: Sequence[dict[str, Any]],
    *,
    horizon: int | None = None,
    quantiles: Sequence[float] | None = None,
) -> bytes:
    """What a Python client sends: the JSON body's `series` (dicts with the same keys) as an
    Arrow stream, covariates flattened to `covariates.<name>` columns (null where a series
    does not give one), `horizon` and `quantiles` as metadata. Histories go as float64. A
    `timezone` is refused (ValueError), not dropped: an Arrow body names a zone in the type
    of its timestamps (timestamp[ns, tz=...]), which these strings are not."""
    if any(s.get("timezone") is not None for s in series):
        raise ValueError(
            "an Arrow body has no `timezone`; send a table whose `start` or `timestamps` "
            "type names the zone (timestamp[ns, tz=...]), or the JSON body"
        )
    names = sorted({name for s in series for name in s.get("covariates", {})})
    columns: dict[str, pa.Array] = {
        "id": pa.array([s["id"] for s in series], pa.string()),
        "values": pa.array([s["values"] for s in series], pa.list_(pa.float64())),
    }
    for key in ("start", "freq"):
        if any(s.get(key) is not None for s in series):
            columns[key] = pa.array([s.get(key) for s in series], pa.string())
    if any(s.get("timestamps") is not None for s in series):
        stamps = [s.get("timestamps") for s in series]
        columns["timestamps"] = pa.array(stamps, pa.list_(pa.string()))
    for name in names:
        cells = [s.get("covariates", {}).get(name) for s in series]
        columns[COVARIATE_PREFIX + name] = pa.array(cells, pa.list_(pa.float64()))
    metadata = {}
    if horizon is not None:
        metadata["horizon"] = str(horizon)
    if quantiles is not None:
        metadata["quantiles"] = json.dumps([float(q) for q in quantiles])
    table = pa.table(columns, metadata=metadata or None)
    return _stream_bytes(table.to_batches(), table.schema)


def _stream_bytes(batches: Sequence[pa.RecordBatch], schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    out: bytes = sink.getvalue().to_pybytes()
    return out

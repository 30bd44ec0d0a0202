"""How many bytes an Arrow IPC body's record batches take once read: the body-size limit
(URNN_MAX_BODY_BYTES) counts the bytes sent, and a body with IPC compression (LZ4 or ZSTD,
per buffer) can unpack a thousand times larger: 38 KB of zeros that read as 1.2 GB.

Arrow reads a compressed buffer into an allocation of the size written in its first 8 bytes
(the format's uncompressed length; -1 for a buffer stored as is). Those prefixes are summed
here from the messages' metadata, before pyarrow reads anything (a file's footer is not read:
its blocks point at the same messages), so an oversized body is
refused (413) without the allocation.

Uncompressed, a body can still stand for far more than it holds: a dictionary-encoded column
repeats its entries row by row when decoded, and a string or list view's rows may all point
at the same data. `read_bytes` counts what a read table's columns take once decoded and
followed, for the same limit (`service.arrow_io.read_arrow_request`).

The metadata is a FlatBuffer (format/Message.fbs): read here field by field with `struct`,
as pyarrow exposes no accessor for a batch's compression or buffer layout.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ARROW_FILE_MAGIC = b"ARROW1"

# format/Message.fbs: Message {version, header_type, header, bodyLength, custom_metadata};
# RecordBatch {length, nodes, buffers, compression, variadicBufferCounts};
# DictionaryBatch {id, data: RecordBatch, isDelta}. MessageHeader union: 1 Schema,
# 2 DictionaryBatch, 3 RecordBatch.
_MESSAGE_HEADER = 2
_HEADER_DICTIONARY_BATCH, _HEADER_RECORD_BATCH = 2, 3
_DICTIONARY_DATA = 1
_BATCH_BUFFERS, _BATCH_COMPRESSION = 2, 3
_MESSAGE_BODY_LENGTH = 3
_BUFFER_STRUCT_BYTES = 16  # Buffer {offset: long, length: long}
_PREFIX = struct.Struct("<q")  # a compressed buffer's uncompressed length (-1: stored as is)
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_I64 = struct.Struct("<q")
_BUFFER = struct.Struct("<qq")


class MalformedArrowError(ValueError):
    """Metadata that does not parse as the format says; pyarrow's own reader says why."""


def unpacked_bytes(body: bytes) -> int:
    """The bytes the body's batches take once decompressed (their body lengths when they are
    not compressed). A stream: its messages in order; a file: the messages its footer points
    at, which is what pyarrow's file reader reads (the stream a file also holds after its
    magic can be cut short by an end-of-stream marker the reader never looks at). Walks the
    framing itself: a few microseconds per request, where pyarrow's MessageReader costs ~10."""
    if body.startswith(ARROW_FILE_MAGIC) and body.endswith(ARROW_FILE_MAGIC):
        try:
            return _file_bytes(body)
        except (struct.error, IndexError, MalformedArrowError):
            return 0  # pyarrow's reader reports the malformed footer as a 422
    at = 8 if body.startswith(ARROW_FILE_MAGIC) else 0
    total = 0
    dictionaries: dict[int, int] = {}
    try:
        while at + 4 <= len(body):
            (length,) = _I32.unpack_from(body, at)
            at += 4
            if length == -1:  # the continuation marker; the length follows
                (length,) = _I32.unpack_from(body, at)
                at += 4
            if length <= 0:
                break  # end of stream
            metadata, at = at, at + length
            if at > len(body):
                break
            body_length = _message_body_length(body, metadata)
            size = _batch_bytes(body, metadata, at, body_length)
            total += _with_deltas(body, metadata, size, dictionaries)
            at += body_length
    except (struct.error, IndexError, MalformedArrowError):
        pass  # pyarrow's reader reports the malformed part as a 422
    return total


def stream_cut_short(body: bytes) -> bool:
    """Whether a stream's framing runs past the end of the body: a length prefix, a message's
    metadata or its body that the bytes stop inside of, as a client that sent part of its
    stream (a closed connection, a buffer not flushed) leaves it. False when the framing
    holds together or cannot be walked at all (then the messages themselves are damaged):
    `service.arrow_io` says which in its 422, in place of pyarrow's reader's text."""
    at = 0
    try:
        while at < len(body):
            if at + 4 > len(body):
                return True  # part of a length prefix
            (length,) = _I32.unpack_from(body, at)
            at += 4
            if length == -1:  # the continuation marker; the length follows
                if at + 4 > len(body):
                    return True
                (length,) = _I32.unpack_from(body, at)
                at += 4
            if length <= 0:
                return False  # end of stream: the reader stops here
            metadata, at = at, at + length
            if at > len(body):
                return True
            at += _message_body_length(body, metadata)
            if at > len(body):
                return True
    except (struct.error, IndexError, MalformedArrowError):
        return False
    return False


# format/File.fbs: Footer {version, schema, dictionaries: [Block], recordBatches: [Block]};
# Block {offset: long, metaDataLength: int, (4 bytes padding), bodyLength: long}.
_FOOTER_DICTIONARIES, _FOOTER_RECORD_BATCHES = 2, 3
_BLOCK = struct.Struct("<qi4xq")


def _file_bytes(body: bytes) -> int:
    """The batches a file's footer lists, each read where the footer says it lies."""
    end = len(body) - len(ARROW_FILE_MAGIC)
    (footer_length,) = _I32.unpack_from(body, end - 4)
    footer_at = end - 4 - footer_length
    if footer_length <= 0 or footer_at < len(ARROW_FILE_MAGIC):
        raise MalformedArrowError("a footer outside the file")
    footer = footer_at + _u32(body, footer_at)
    total = 0
    for field in (_FOOTER_DICTIONARIES, _FOOTER_RECORD_BATCHES):
        blocks = _table_field(body, footer, field)
        if blocks is None:
            continue
        for i in range(_u32(body, blocks)):
            try:
                total += _block_bytes(body, blocks, i)
            except (struct.error, IndexError, MalformedArrowError):
                # what was counted stands: pyarrow reads (and unpacks) the blocks before this
                # one before it finds this one damaged; 0 here let a bomb in block 0 through
                # behind a damaged block 1
                return total
    return total


def _block_bytes(body: bytes, blocks: int, i: int) -> int:
    """The bytes footer block `i` (a dictionary or record batch) takes once read."""
    offset, metadata_length, body_length = _BLOCK.unpack_from(body, blocks + 4 + i * _BLOCK.size)
    if offset < 0 or metadata_length < 8 or body_length < 0:
        raise MalformedArrowError(f"block {i} of the footer is not a message")
    (marker,) = _I32.unpack_from(body, offset)
    metadata = offset + (8 if marker == -1 else 4)  # the continuation marker, or not
    body_at = offset + metadata_length
    if body_at + body_length > len(body):
        raise MalformedArrowError(f"block {i} lies past the end of the file")
    return _batch_bytes(body, metadata, body_at, body_length)


_DICTIONARY_ID, _DICTIONARY_IS_DELTA = 0, 2


def _with_deltas(buffer: bytes, message_at: int, size: int, held: dict[int, int]) -> int:
    """What a message adds to the count: `size`, or for a dictionary delta the whole
    dictionary it makes (pyarrow's reader concatenates a delta onto the dictionary so far,
    and the batches read before keep theirs: 600 deltas of 4 KB in a 2.7 MB stream took
    795 MB). `held`: each dictionary's size so far, by id."""
    message = message_at + _u32(buffer, message_at)
    if _header_type(buffer, message) != _HEADER_DICTIONARY_BATCH:
        return size
    header = _table_field(buffer, message, _MESSAGE_HEADER)
    if header is None:
        return size
    at = _field_offset(buffer, header, _DICTIONARY_ID)
    key = 0 if at is None else int(_I64.unpack_from(buffer, header + at)[0])
    at = _field_offset(buffer, header, _DICTIONARY_IS_DELTA)
    delta = at is not None and buffer[header + at] != 0
    held[key] = (held.get(key, 0) + size) if delta else size
    return held[key]


def _message_body_length(buffer: bytes, message_at: int) -> int:
    message = message_at + _u32(buffer, message_at)
    offset = _field_offset(buffer, message, _MESSAGE_BODY_LENGTH)
    if offset is None:
        return 0
    (length,) = _I64.unpack_from(buffer, message + offset)
    if length < 0:
        raise MalformedArrowError("a negative body length")
    return int(length)


def _batch_bytes(buffer: bytes, message_at: int, body_at: int, size: int) -> int:
    message = message_at + _u32(buffer, message_at)
    kind = _header_type(buffer, message)
    header = _table_field(buffer, message, _MESSAGE_HEADER)
    if header is None:
        return size
    if kind == _HEADER_DICTIONARY_BATCH:
        header = _table_field(buffer, header, _DICTIONARY_DATA)
        if header is None:
            return size
    elif kind != _HEADER_RECORD_BATCH:
        return size
    if _field_offset(buffer, header, _BATCH_COMPRESSION) is None:
        return size
    buffers = _table_field(buffer, header, _BATCH_BUFFERS)
    if buffers is None:
        return size
    unpacked = 0
    for i in range(_u32(buffer, buffers)):
        offset, length = _BUFFER.unpack_from(buffer, buffers + 4 + i * _BUFFER_STRUCT_BYTES)
        if length < _PREFIX.size:
            continue  # an empty buffer: no prefix
        if offset < 0 or offset + _PREFIX.size > size:
            continue  # pyarrow refuses the batch; the other buffers are still counted
        (declared,) = _PREFIX.unpack_from(buffer, body_at + offset)
        # Each buffer on its own: pyarrow refuses a length below -1, but only once it has
        # unpacked the batch's other buffers (a -200,000,000 beside 200 MB of zeros summed
        # to nothing and the zeros were unpacked)
        unpacked += length - _PREFIX.size if declared == -1 else max(declared, 0)
    return max(unpacked, size)


def _header_type(buffer: bytes, table: int) -> int | None:
    offset = _field_offset(buffer, table, 1)
    return None if offset is None else buffer[table + offset]


def _field_offset(buffer: bytes, table: int, field: int) -> int | None:
    """The field's offset inside its table, None when the table leaves it out (default)."""
    (back,) = _I32.unpack_from(buffer, table)
    vtable = table - back
    (vtable_bytes,) = _U16.unpack_from(buffer, vtable)
    slot = 4 + 2 * field
    if slot + 2 > vtable_bytes:
        return None
    (offset,) = _U16.unpack_from(buffer, vtable + slot)
    return offset or None


def _table_field(buffer: bytes, table: int, field: int) -> int | None:
    """Where a table's field that refers to another table or a vector points."""
    offset = _field_offset(buffer, table, field)
    if offset is None:
        return None
    at = table + offset
    target = at + _u32(buffer, at)
    if target >= len(buffer):
        raise MalformedArrowError("a reference past the end of the metadata")
    return target


def _u32(buffer: bytes, at: int) -> int:
    (value,) = _U32.unpack_from(buffer, at)
    return int(value)


# -----------------------------------------------------------------------------
# What a table's columns take once read as the service reads them

# A Python object per decoded text cell (to_pylist: a str of ~50 bytes plus its pointer), and
# a float64 per number (to_numpy(...).astype(np.float64)).
PY_TEXT_BYTES = 64
NUMBER_BYTES = 8


def read_bytes(column: pa.Array | pa.ChunkedArray) -> int | None:
    """The bytes a column whose rows may share data (`may_repeat_data`) takes once read as
    `service.arrow_io` reads it: a dictionary decoded (`dictionary_decode`: each row a copy of
    its entry), string views and list views followed to every row's data, each text cell a
    Python str. None for such a column of a type no request column has: refused (422) before
    anything decodes it.

    Both encodings let a row point at data that other rows point at too, so a small body can
    stand for a very large table: 400 KB (one 1,000-character id, 200,000 one-byte indices)
    decoded to 200 MB and then to as many Python strings again, before any cell was checked.
    Only the layouts the service reads are counted (`_counted`), each with a fixed number of
    numpy arrays of at most one entry per row or per dictionary entry: the caller bounds the
    rows by the limit first (`arrow_io._check_read_size`), and a type that could carry rows
    no buffer bounds (a size-0 fixed list, a null column) is never counted."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    total = 0
    for chunk in chunks:
        counted = _counted(chunk)
        if counted is None:
            return None
        total += counted
    return total


def _counted(array: pa.Array) -> int | None:
    kind = array.type
    if pa.types.is_dictionary(kind):
        if not pa.types.is_integer(kind.index_type):
            return None
        entries = _entry_bytes(array.dictionary)
        if entries is None:
            return None
        if len(entries) == 0 or len(array) == 0:
            return 0
        indices = array.indices.fill_null(0).to_numpy(zero_copy_only=False)
        rows = entries[np.clip(indices.astype(np.int64), 0, len(entries) - 1)]
        if array.null_count:
            rows = rows[array.is_valid().to_numpy(zero_copy_only=False)]
        return int(rows.sum())
    if _is_view(kind, "is_string_view"):
        return int(_view_lengths(array).sum()) + len(array) * PY_TEXT_BYTES
    if _is_view(kind, "is_list_view") or _is_view(kind, "is_large_list_view"):
        if not is_numbers(kind.value_type):
            return None
        sizes = array.sizes.to_numpy(zero_copy_only=False).astype(np.int64)
        if array.null_count:
            sizes = sizes[array.is_valid().to_numpy(zero_copy_only=False)]
        return int(np.maximum(sizes, 0).sum()) * NUMBER_BYTES + len(array) * NUMBER_BYTES
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _is_view(
        kind.value_type, "is_string_view"
    ):  # timestamps as text: the rows' views, in one range (offsets only grow)
        offsets = array.offsets
        first, last = int(offsets[0].as_py()), int(offsets[-1].as_py())
        lengths = _view_lengths(array.values)[first:last]
        return int(lengths.sum()) + (last - first) * PY_TEXT_BYTES
    return None


def _entry_bytes(entries: pa.Array) -> np.ndarray | None:
    """A dictionary's entries' bytes once read, per entry: text (the service's ids, starts
    and frequencies) or lists of numbers (histories); None for any other entry type."""
    kind = entries.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        lengths = pc.binary_length(entries).fill_null(0).to_numpy(zero_copy_only=False)
        text: np.ndarray = lengths.astype(np.int64) + PY_TEXT_BYTES
        return text
    if _is_view(kind, "is_string_view"):  # Polars' categorical
        views: np.ndarray = _view_lengths(entries) + PY_TEXT_BYTES
        return views
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and is_numbers(kind.value_type):
        offsets = entries.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        sizes: np.ndarray = (offsets[1:] - offsets[:-1]) * NUMBER_BYTES + NUMBER_BYTES
        return sizes
    return None


def _view_lengths(array: pa.Array) -> np.ndarray:
    """Each string view's length (the first int32 of its 16 bytes), read from the views
    buffer for this array's rows only (the buffer may be longer than they need)."""
    views = array.buffers()[1]
    rows = len(array)
    if views is None or rows == 0:
        return np.zeros(0, dtype=np.int64)
    whole = min(array.offset + rows, views.size // 16)  # validated: never fewer, but a guard
    words = np.frombuffer(views, dtype="<i4", count=4 * whole)
    lengths: np.ndarray = np.maximum(words.reshape(-1, 4)[array.offset :, 0].astype(np.int64), 0)
    if array.null_count:  # a null view's bytes are not read (zeroed, so positions still match)
        lengths = np.where(array.is_valid().to_numpy(zero_copy_only=False), lengths, 0)
    return lengths


# Once read, each row becomes a series (a FastSeries and its arrays: a few hundred bytes), a
# text cell a Python str, a timestamp or date a Python object of about this size.
ROW_BYTES = 256
PY_STAMP_BYTES = 56


def python_bytes(column: pa.Array | pa.ChunkedArray) -> int:
    """What a column's cells take as the Python objects and float64 arrays the service reads
    them into, from lengths and offsets alone: plain buffers bound the bytes sent, not the
    objects (a million 2-character ids in 10 MB became 320 MB of series; 9 MB of int8 values
    72 MB of float64). Views and dictionaries are counted by `read_bytes` as well."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    total = 0
    for chunk in chunks:
        kind = chunk.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if is_text(kind):
            total += len(chunk) * PY_TEXT_BYTES
        elif pa.types.is_fixed_size_list(kind):
            total += len(chunk) * kind.list_size * _cell_bytes(kind.value_type)
        elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and not (
            pa.types.is_dictionary(chunk.type)
        ):
            # the child's length: the rows' cells, and more only for a sliced array
            total += len(chunk.values) * _cell_bytes(kind.value_type)
    return total


def _cell_bytes(kind: pa.DataType) -> int:
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or is_text(kind):
        return PY_STAMP_BYTES
    return NUMBER_BYTES


def is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or _is_view(kind, "is_string_view")
    )


def is_numbers(kind: pa.DataType) -> bool:
    return bool(pa.types.is_floating(kind) or pa.types.is_integer(kind))


def _type_ids(*checks: str) -> frozenset[int]:
    """The Arrow type ids of the named pyarrow types that this pyarrow has."""
    makers = {
        "string_view": lambda: pa.string_view(),
        "binary_view": lambda: pa.binary_view(),
        "list_view": lambda: pa.list_view(pa.int8()),
        "large_list_view": lambda: pa.large_list_view(pa.int8()),
    }
    ids = set()
    for name in checks:
        try:
            ids.add(makers[name]().id)
        except AttributeError:  # an older pyarrow without the type
            continue
    return frozenset(ids)


_REPEATING = _type_ids("string_view", "binary_view", "list_view", "large_list_view") | {
    pa.dictionary(pa.int8(), pa.string()).id
}


def may_repeat_data(kind: pa.DataType) -> bool:
    """Whether rows of this type can point at data other rows point at too (a dictionary, a
    view, anywhere in a nested type): only such columns' buffers can stand for more than the
    body holds, so only they go through `read_bytes` (the Python objects of every column are
    counted by `python_bytes`, from lengths alone).
    By type id, without a cache: a type can be as large as a body, and one kept per request
    would keep refused bodies' memory."""
    if kind.id in _REPEATING:
        return True
    return any(may_repeat_data(kind.field(i).type) for i in range(kind.num_fields))


def _is_view(kind: pa.DataType, check: str) -> bool:
    """pyarrow's `pa.types.<check>`; False where this pyarrow has none."""
    found = getattr(pa.types, check, None)
    return bool(found is not None and found(kind))

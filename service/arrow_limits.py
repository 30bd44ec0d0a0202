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

import functools
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
            total += _batch_bytes(body, metadata, at, body_length)
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


def read_bytes(column: pa.Array | pa.ChunkedArray) -> int | None:
    """The bytes a table's column takes once read as `service.arrow_io` reads it: a
    dictionary-encoded column decoded (`dictionary_decode`: each row a copy of its entry), a
    string view or list view followed to every row's data (`to_pylist`, the lists' rows).

    Both encodings let a row point at data that other rows point at too, so a small body can
    stand for a very large table: 400 KB (one 1,000-character id, 200,000 one-byte indices)
    decoded to 200 MB and then to as many Python strings again, before any cell was checked;
    8 MB could take every byte of the machine's memory. This counts without decoding: O(rows)
    numpy over buffers that `validate(full=True)` has checked. 0 for a column of a type no
    request column has (the type checks refuse it; nothing decodes it), None for a
    dictionary-encoded one (decoded before its type is checked: the caller refuses it)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    total = 0
    for chunk in chunks:
        rows = _row_bytes(chunk)
        if rows is None:
            if pa.types.is_dictionary(chunk.type):
                return None
            continue
        total += int(rows.sum())
    return total


def _row_bytes(array: pa.Array) -> np.ndarray | None:
    """Each row's bytes once decoded, for the types request columns have (text, numbers,
    timestamps, dates, lists of those, dictionaries of those); None for any other type. The
    arrays' lengths are bounded by their buffers for all of these (an index, an offset or a
    value per row), so the result is as large as the body at most."""
    kind = array.type
    n = len(array)
    if pa.types.is_dictionary(kind):
        entries = _row_bytes(array.dictionary)
        if entries is None:
            return None
        if len(entries) == 0:
            return np.zeros(n, dtype=np.int64)
        indices = array.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        rows: np.ndarray = entries[np.clip(indices, 0, len(entries) - 1)]
        if array.null_count:
            rows = np.where(array.is_valid().to_numpy(zero_copy_only=False), rows, 0)
        return rows
    if _is_view(kind, "is_string_view") or _is_view(kind, "is_binary_view"):
        views = array.buffers()[1]
        if views is None or n == 0:
            return np.zeros(n, dtype=np.int64)
        # each view: int32 length, then a prefix or the data's buffer and offset (16 bytes)
        lengths = np.frombuffer(views, dtype="<i4").reshape(-1, 4)[array.offset :, 0][:n]
        counted: np.ndarray = np.maximum(lengths.astype(np.int64), 0)
        return counted
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        lengths = pc.binary_length(array).fill_null(0)
        measured: np.ndarray = lengths.to_numpy(zero_copy_only=False).astype(np.int64)
        return measured
    if pa.types.is_fixed_size_list(kind):
        child = _row_bytes(array.values)
        if child is None:
            return None
        size = kind.list_size
        starts = (np.arange(n, dtype=np.int64) + array.offset) * size
        return _ranges(child, starts, starts + size)
    views = _is_view(kind, "is_list_view") or _is_view(kind, "is_large_list_view")
    if views or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        child = _row_bytes(array.values)
        if child is None:
            return None
        offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        if views:
            sizes = array.sizes.to_numpy(zero_copy_only=False).astype(np.int64)
            return _ranges(child, offsets, offsets + sizes)
        return _ranges(child, offsets[:-1], offsets[1:])
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_timestamp(kind)
        or pa.types.is_date(kind)
        or pa.types.is_boolean(kind)
    ):
        return np.full(n, max(kind.bit_width // 8, 1), dtype=np.int64)
    return None


def _ranges(child: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The sums of `child[start:end]` for each row's (start, end)."""
    cumulative = np.concatenate(([0], np.cumsum(child, dtype=np.int64)))
    last = len(child)
    sums: np.ndarray = cumulative[np.clip(ends, 0, last)] - cumulative[np.clip(starts, 0, last)]
    return sums


_VIEW_CHECKS = ("is_string_view", "is_binary_view", "is_list_view", "is_large_list_view")


@functools.lru_cache(maxsize=256)  # per request, for a handful of types: a dict lookup
def may_repeat_data(kind: pa.DataType) -> bool:
    """Whether rows of this type can point at data other rows point at too (a dictionary, a
    view, anywhere in a nested type): only such columns can take more once read than the body
    holds. Plain text, numbers and lists of them take at most their buffers, which the body
    bounds, so `read_bytes` need not count them (a request's cost stays that of its reading)."""
    if pa.types.is_dictionary(kind) or any(_is_view(kind, check) for check in _VIEW_CHECKS):
        return True
    return any(may_repeat_data(kind.field(i).type) for i in range(kind.num_fields))


def _is_view(kind: pa.DataType, check: str) -> bool:
    """pyarrow's `pa.types.<check>`; False where this pyarrow has none."""
    found = getattr(pa.types, check, None)
    return bool(found is not None and found(kind))

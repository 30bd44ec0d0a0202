"""`service.stream_validation.Tail.extend`: appending in place into a shared buffer must give
exactly what concatenating and keeping the last `limit` points gives, and never change a tail
handed out earlier (a request that fails, or a conflict retry, keeps using the older one)."""

from __future__ import annotations

import numpy as np
import pytest

from service.stream_validation import Tail


def reference(chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]], limit: int) -> Tail:
    ns = np.concatenate([c[0] for c in chunks])[-limit:]
    values = np.concatenate([c[1] for c in chunks])[-limit:]
    covariates = np.concatenate([c[2] for c in chunks])[-limit:]
    return Tail(ns, values, covariates, ("a", "b"))


def chunk(start: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ns = np.arange(start, start + size, dtype=np.int64) * 1_000
    values = np.arange(start, start + size, dtype=np.float64) + 0.5
    covariates = np.stack([values * 2, -values], axis=1)
    return ns, values, covariates


def assert_same(got: Tail, want: Tail) -> None:
    np.testing.assert_array_equal(got.ns, want.ns)
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.covariates, want.covariates)
    assert got.names == want.names
    assert got.ns.dtype == np.int64 and got.values.dtype == np.float64


@pytest.mark.parametrize("limit", [1, 5, 64, 100, 4096])
@pytest.mark.parametrize("sizes", [[1] * 300, [3, 1, 70, 1, 1, 200, 2, 1], [150, 1, 1]])
def test_chained_extends_equal_concatenation(limit: int, sizes: list[int]) -> None:
    tail = Tail.empty(("a", "b"))
    chunks = []
    start = 0
    for size in sizes:
        part = chunk(start, size)
        start += size
        chunks.append(part)
        tail = tail.extend(*part, limit)
        assert_same(tail, reference(chunks, limit))


def test_older_tails_are_never_changed_by_later_extends() -> None:
    limit = 50
    tail = Tail.empty(("a", "b")).extend(*chunk(0, 30), limit)
    frozen = Tail(tail.ns.copy(), tail.values.copy(), tail.covariates.copy(), tail.names)
    first = tail.extend(*chunk(30, 1), limit)  # appends in place, past `tail`'s view
    # A second extend of the same older tail (a retry) must not write over `first`'s point.
    second = tail.extend(*chunk(1000, 2), limit)
    assert_same(tail, frozen)
    assert_same(first, reference([chunk(0, 30), chunk(30, 1)], limit))
    assert_same(second, reference([chunk(0, 30), chunk(1000, 2)], limit))
    # ... and extending `first` further still gives the right points.
    third = first.extend(*chunk(31, 40), limit)
    assert_same(third, reference([chunk(0, 30), chunk(30, 1), chunk(31, 40)], limit))
    assert_same(second, reference([chunk(0, 30), chunk(1000, 2)], limit))


def test_a_tail_read_from_bytes_extends_like_any_other() -> None:
    tail = Tail.empty(("a", "b")).extend(*chunk(0, 10), 8)
    loaded = Tail.from_bytes(tail.to_bytes())
    assert_same(loaded, tail)
    assert_same(loaded.extend(*chunk(10, 3), 8), reference([chunk(0, 13)], 8))


@pytest.mark.parametrize("names", [b"5", b"null", b'{"a": 1}', b'[1, "b"]', b"[", b"\xff"])
def test_a_tail_whose_names_are_damaged_is_a_value_error(names: bytes) -> None:
    """The covariate names of a stored tail are JSON; damaged ones that still parse (a number,
    null) raised TypeError, which the service's reader of stored series (service.streaming.
    _readable) does not take for unreadable bytes: a 500 where a 503 keeps the row."""
    import struct

    data = struct.pack("<4sHIII", b"URNT", 2, 0, 2, len(names)) + names
    with pytest.raises(ValueError, match="covariate names"):
        Tail.from_bytes(data)


def test_a_young_series_does_not_reserve_a_whole_tail() -> None:
    """Every tail's buffer held URNN_STREAM_TAIL_POINTS rows and an eighth more from its first
    point: 4,608 rows, 144 KiB with two covariates, for a series of 60 points (150 KiB per
    series traced in a running service, whatever its length)."""
    limit = 4096
    tail = Tail.empty(("a", "b"))
    sizes = []
    for start in range(0, 60):
        tail = tail.extend(*chunk(start, 1), limit)
        assert tail._buffer is not None
        sizes.append(len(tail._buffer.ns))
    assert sizes[-1] <= 128  # at most twice what it holds, 64 rows at least
    assert len(set(sizes)) == 1  # 60 one-point updates: no copy after the first buffer
    for start in range(60, 6000):
        tail = tail.extend(*chunk(start, 1), limit)
    assert tail._buffer is not None and len(tail._buffer.ns) == limit + limit // 8
    assert_same(tail, reference([chunk(0, 6000)], limit))


@pytest.mark.parametrize("filled", [0, 2])
def test_the_filled_flags_survive_bytes_and_a_tail_without_any_is_written_as_version_1(
    filled: int,
) -> None:
    """A tail holding filled points is written as version 2 (a byte per point after the
    covariates); one without, as version 1, which replicas running older code still read."""
    tail = Tail.empty(("a", "b")).extend(*chunk(0, 5), 100, filled=filled)
    tail = tail.extend(*chunk(5, 3), 100)
    data = tail.to_bytes()
    assert data[4:6] == (2 if filled else 1).to_bytes(2, "little")
    back = Tail.from_bytes(data)
    assert [back.was_filled(j) for j in range(len(back))] == [j < filled for j in range(8)]
    np.testing.assert_array_equal(back.values, tail.values)

"""Parse and check a body of POST /series/{series_id}/observations, then plan its update.

Two steps, both before anything is mutated:

1. `parse_observations(body, model)`: everything the served model decides (422, naming the
   field): finite values, known and complete covariates of the right length, a horizon within
   the maximum, trained quantiles, and a time axis (`timestamps` or `start`) that is strictly
   increasing and on the model's frequency grid (naming the index that is not), read on the
   request's `timezone` when it names one.
2. `plan_update(observations, stored, ...)`: what the series' stored points decide (409,
   naming the timestamps): the request's points that were already consumed must be exact
   duplicates found in the stored tail (ignored, counted); the first new point must follow the
   last stored one on the grid, or, with `gap_policy="interpolate"`, at most
   URNN_STREAM_MAX_GAP steps later (the missing steps are filled linearly, covariates too).

Step 1 runs before the series is loaded, so whatever the request alone shows wrong is a 422
even while the snapshot store is down (its 503 would invite a retry that cannot succeed); the
rest of its time axis waits for the series' zone.

Between the two, `on_series_zone` puts the request on the series' clock: a series created with
a `timezone` keeps that zone (the snapshot's `tz`), a later request may omit it (its times are
then read on the series' zone) or must name the same one, and a series created without one
takes none later (422, naming `timezone` and what the series is on).

The raw tail of recent points (`Tail`) lives here too, with its byte encoding for the snapshot:
a versioned header (magic, version, counts, covariate names as UTF-8 JSON) then the int64
timestamps and float64 values and covariates, little-endian. No pickle.
"""

from __future__ import annotations

import functools
import json
import re
import struct
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone, tzinfo
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from service.errors import ServiceInputError
from service.served import ColumnScales, ServedModel
from service.stream_fast_path import FastObservations
from service.stream_schemas import GapPolicy, ObservationsRequest
from service.validation import (
    _naive_ns,
    as_index,
    axis_error,
    calendar_words,
    check_clock,
    check_first_stamp,
    check_last_stamp,
    check_on_grid,
    check_start_span,
    checked_horizon,
    increasing_axis,
    offset_text,
    quantile_indices,
    quantile_key,
    shifted_hour,
    skipped_hour,
    stamps_alone_error,
    zoned_start,
)
from training.mlflow_model import CLOCK_UTC, too_large_problem
from training.validation import (
    at_skipped_midnight,
    local_steps,
    plural,
    steps_along,
    written_at_skipped_midnight,
    zone_named,
)

# A body as the schema built it, or as the fast path read it (service.stream_fast_path).
ObservationsIn = ObservationsRequest | FastObservations


class StreamConflictError(RuntimeError):
    """The request contradicts what the series already holds (409): out of order, a changed
    duplicate, a gap, a state still warming up. The message names the timestamps involved."""


class SeriesNotFoundError(LookupError):
    """No streaming series has this id (404)."""


# --- the raw tail -------------------------------------------------------------------------

_TAIL_MAGIC = b"URNT"
_TAIL_VERSION = 2  # 2: a byte per point after the covariates, 1 where gap_policy filled it
_TAIL_VERSIONS = (1, 2)  # read; a tail with no filled point is written as 1 (older replicas)
_TAIL_HEADER = struct.Struct("<4sHIII")  # magic, version, points, covariates, names' bytes


class _TailBuffer:
    """Storage that successive tails of one series view: appending in place, past every view
    handed out so far, leaves those views unchanged, so a Tail stays immutable while a
    one-point `extend` costs a few writes instead of copying the whole tail."""

    __slots__ = ("covariates", "end", "filled", "ns", "values")

    def __init__(self, capacity: int, width: int) -> None:
        self.ns = np.empty(capacity, np.int64)
        self.values = np.empty(capacity, np.float64)
        self.covariates = np.empty((capacity, width), np.float64)
        self.filled = np.zeros(capacity, np.bool_)
        self.end = 0  # rows written; every view ends at or before this


@dataclass(frozen=True)
class Tail:
    """The last points consumed (raw, original units): timestamps, values, covariates."""

    ns: np.ndarray  # (n,) int64 epoch ns (UTC)
    values: np.ndarray  # (n,) float64
    covariates: np.ndarray  # (n, C) float64, in `names` order
    names: tuple[str, ...]
    # (n,) bool: the points gap_policy="interpolate" filled in, not sent (None: none is), so
    # that a late real value for one is said to conflict with a filled value, not a sent one
    filled: np.ndarray | None = field(default=None, compare=False, repr=False)
    # Where the arrays above are views of a shared buffer: it, and the row they end at.
    _buffer: _TailBuffer | None = field(default=None, compare=False, repr=False)
    _stop: int = field(default=0, compare=False, repr=False)

    @classmethod
    def empty(cls, names: Sequence[str]) -> Tail:
        return cls(
            np.empty(0, np.int64), np.empty(0, np.float64), np.empty((0, len(names))), tuple(names)
        )

    def __len__(self) -> int:
        return len(self.ns)

    def select(self, names: Sequence[str]) -> Tail:
        """The tail with the covariate columns `names` only, in that order (each in the tail):
        what a model reading those covariates compares and replays."""
        if tuple(names) == self.names:
            return self
        columns = [self.names.index(name) for name in names]
        return Tail(
            self.ns, self.values, self.covariates[:, columns], tuple(names), filled=self.filled
        )

    def was_filled(self, row: int) -> bool:
        """Whether the tail's point `row` was filled in by gap_policy="interpolate"."""
        return self.filled is not None and bool(self.filled[row])

    def columns_for(self, names: Sequence[str], covariates: np.ndarray) -> np.ndarray:
        """`covariates` (columns `names`, a subset of the tail's) laid out as the tail's
        columns, NaN in those it keeps that `names` lacks: the points of a model that reads
        fewer covariates than the tail holds say nothing of the others."""
        if tuple(names) == self.names:
            return covariates
        out = np.full((len(covariates), len(self.names)), np.nan)
        for j, name in enumerate(names):
            out[:, self.names.index(name)] = covariates[:, j]
        return out

    def extend(
        self,
        ns: np.ndarray,
        values: np.ndarray,
        covariates: np.ndarray,
        limit: int,
        *,
        filled: int = 0,
    ) -> Tail:
        """A new tail with the points appended, keeping the last `limit`; the first `filled`
        of them were filled in by the gap policy (Plan's order: the filled steps first)."""
        m, buffer, stop = len(ns), self._buffer, self._stop
        if buffer is None or buffer.end != stop or stop + m > len(buffer.ns):
            # A fresh buffer with room to append in place before the next copy: a full tail
            # gets an eighth of `limit` (at least 64 rows) more, memory + 12.5 %, one copy per
            # that many points; a tail still filling up twice what it holds, so that a young
            # series does not reserve a whole tail (4,096 rows: 144 KiB with two covariates,
            # for a series of 60 points) and its copies stay one per doubling.
            keep = min(len(self), max(limit - m, 0))
            full = max(limit, keep + m) + max(64, limit // 8)
            buffer = _TailBuffer(min(full, max(64, 2 * (keep + m))), len(self.names))
            stop = keep
            if keep:
                buffer.ns[:keep] = self.ns[-keep:]
                buffer.values[:keep] = self.values[-keep:]
                buffer.covariates[:keep] = self.covariates[-keep:]
                if self.filled is not None:
                    buffer.filled[:keep] = self.filled[-keep:]
        end = stop + m
        buffer.ns[stop:end] = ns
        buffer.values[stop:end] = values
        buffer.covariates[stop:end] = covariates
        buffer.filled[stop:end] = False
        buffer.filled[stop : stop + filled] = True
        buffer.end = end
        start = max(end - limit, 0, end - len(self) - m)
        flags = buffer.filled[start:end]
        return Tail(
            buffer.ns[start:end],
            buffer.values[start:end],
            buffer.covariates[start:end],
            self.names,
            flags if flags.any() else None,
            buffer,
            end,
        )

    def to_bytes(self) -> bytes:
        names = json.dumps(list(self.names)).encode()
        n, c = len(self.ns), len(self.names)
        filled = self.filled is not None and bool(self.filled.any())
        flags = (
            [self.filled.astype(np.uint8).tobytes()] if filled and self.filled is not None else []
        )
        return b"".join(
            [
                _TAIL_HEADER.pack(_TAIL_MAGIC, _TAIL_VERSION if filled else 1, n, c, len(names)),
                names,
                self.ns.astype("<i8").tobytes(),
                self.values.astype("<f8").tobytes(),
                self.covariates.reshape(n, c).astype("<f8").tobytes(),
                *flags,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Tail:
        magic, version, n, c, name_bytes = _TAIL_HEADER.unpack_from(data)
        if magic != _TAIL_MAGIC or version not in _TAIL_VERSIONS:
            raise ValueError(
                f"not a stream tail of version {_TAIL_VERSIONS} ({magic!r}, {version})"
            )
        offset = _TAIL_HEADER.size
        names = _tail_names(data[offset : offset + name_bytes])
        offset += name_bytes
        expected = offset + 8 * n * (2 + c) + (n if version >= 2 else 0)
        if len(names) != c or len(data) != expected:
            raise ValueError(f"a stream tail of {len(data)} bytes; expected {expected}")
        ns = np.frombuffer(data, "<i8", n, offset).astype(np.int64)
        values = np.frombuffer(data, "<f8", n, offset + 8 * n).astype(np.float64)
        covariates = np.frombuffer(data, "<f8", n * c, offset + 16 * n).astype(np.float64)
        filled = None
        if version >= 2:
            filled = np.frombuffer(data, np.uint8, n, offset + 8 * n * (2 + c)).astype(np.bool_)
        return cls(ns, values, covariates.reshape(n, c), names, filled)


def _tail_names(data: bytes) -> tuple[str, ...]:
    """A stored tail's covariate names, or a ValueError: damaged bytes that still parse as JSON
    (a number, null) raised TypeError, which the service's reader of stored series does not
    take for unreadable bytes."""
    try:
        names = json.loads(data.decode())
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError alike
        raise ValueError(f"a stream tail's covariate names are not JSON text: {error}") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"a stream tail's covariate names are not a list of text: {names!r:.80}")
    return tuple(names)


# --- time zones and the frequency grid -----------------------------------------------------


def tz_name(tz: tzinfo | None) -> str | None:
    """The zone as stored in a snapshot (None: naive timestamps): an IANA name for a series
    created with a `timezone` (`series_zone`), else the offset of its first timestamps
    ("UTC", "+02:00")."""
    return None if tz is None else str(tz)


def tz_from(name: str | None) -> tzinfo | None:
    """The zone of a snapshot's `tz` (`tz_name`): a ZoneInfo for an IANA name, so that the
    restored series is one created with a `timezone` (`named_zone`), as it was; "UTC" and
    offsets as pandas reads them, as they were stored."""
    if name is None:
        return None
    if name != _OFFSETS_UTC:
        try:
            return zone_named(name)
        except ValueError:  # an offset such as +02:00
            pass
    seconds = _OFFSET_WITH_SECONDS.fullmatch(name)
    if seconds is not None:  # pandas reads it cut to the minute: the series' times moved
        sign, hours, minutes, secs = seconds.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes), seconds=int(secs))
        return timezone(-offset if sign == "-" else offset)
    return as_index(np.zeros(1, np.int64), None).tz_localize("UTC").tz_convert(name).tz


# How `str()` names a fixed offset with seconds (a local mean time such as Amsterdam's
# +00:19:32, which ISO texts carry until the early 20th century): `tz_name` stores it so.
_OFFSET_WITH_SECONDS = re.compile(r"UTC([+-])(\d\d):(\d\d):(\d\d)")


# The `tz` a series created from UTC timestamps (no `timezone`) has always stored. The zone of
# that name, given as `timezone`, is stored under its canonical name instead (`series_zone`).
_OFFSETS_UTC = "UTC"
_CANONICAL_UTC = "Etc/UTC"


def series_zone(name: str) -> ZoneInfo:
    """The zone a request's `timezone` names (checked by the schema: zone_named), as a series
    keeps it: under the name first given, but "UTC", which becomes Etc/UTC. The snapshot's `tz`
    column already holds "UTC" for series created from UTC offsets without a `timezone`,
    which later requests must not read naive times on, so the two stay apart without a
    migration; and Etc/UTC is the same zone by `same_zone`'s rule ("UTC" is a link to it in
    the zone database, as are "Etc/UCT", "Zulu", "Universal"...), so every name of it still
    names the series' zone."""
    zone = zone_named(name)
    return zone_named(_CANONICAL_UTC) if zone.key == _OFFSETS_UTC else zone


def same_zone(a: ZoneInfo, b: ZoneInfo) -> bool:
    """Whether two zones are one: the same name, or names for the same zone data, the zone
    database's links ("Asia/Calcutta" for "Asia/Kolkata", "Zulu" for "Etc/UTC"). Told by the
    bytes of the TZif files ZoneInfo loads them from (`_zone_data`): names whose files are the
    same read every time alike, which is what a series' zone is for; names whose data differ
    are other zones even where their clocks agree today (Etc/GMT and Etc/UTC differ in
    abbreviation, and the data is the whole history). A release of the database that merges
    two zones (tzdata's backward links, e.g. Europe/Amsterdam to Europe/Brussels in the
    package, not in Debian's full data) makes them one where that release is the one read."""
    if a.key == b.key:
        return True
    data = _zone_data(a.key)
    return data is not None and data == _zone_data(b.key)


@functools.lru_cache(maxsize=1024)
def _zone_data(key: str) -> bytes | None:
    """The TZif bytes ZoneInfo(key) reads, found as the standard library finds them: the
    first file of that name under zoneinfo.TZPATH, else the tzdata package's resource. None
    where neither can be read (two such names are told apart by name only). Cached: the files
    are only read again when the process restarts, as ZoneInfo's own cache does."""
    for root in zoneinfo.TZPATH:
        path = Path(root, key)
        if path.is_file():
            try:
                return path.read_bytes()
            except OSError:
                return None
    try:
        return resources.files("tzdata.zoneinfo").joinpath(*key.split("/")).read_bytes()
    except (ModuleNotFoundError, OSError):
        return None


def named_zone(tz: tzinfo | None) -> ZoneInfo | None:
    """The series' zone when it was created with a `timezone` (`series_zone` made it, or
    `tz_from` restored it); None for naive timestamps and for a series on the offset of its
    first timestamps (those are never a ZoneInfo: pydantic's and the standard library's
    fixed offsets)."""
    return tz if isinstance(tz, ZoneInfo) else None


def zone_shown(tz: tzinfo | None) -> str | None:
    """The series' `timezone` as its status shows it: the name of the zone it was created
    with (`named_zone`), as the series keeps it (`series_zone`: the name first given, "UTC" as
    "Etc/UTC"), the name `check_series_zone`'s 422 names; None for a series created without
    one (naive timestamps, or the offsets of its first ones: "UTC", "+02:00")."""
    named = named_zone(tz)
    return None if named is None else named.key


def request_zone(body: ObservationsIn) -> ZoneInfo | None:
    """The zone the body's `timezone` names; None without one (the fast path never has one:
    `service.stream_fast_path` leaves such bodies to the schema)."""
    if isinstance(body, ObservationsRequest) and body.timezone is not None:
        return series_zone(body.timezone)
    return None


_SECOND = 1_000_000_000
# Naive whole-second instants (epoch ns) -> their ISO text: a series' next forecast steps are
# mostly its last ones shifted by one, and series on one grid share instants. Bounded: cleared
# when full (recomputing is cheap, it only saves time).
_ISO_CACHE: dict[int, str] = {}
_ISO_CACHE_MAX = 1 << 16


def iso(ns: int, tz: tzinfo | None) -> str:
    """`pd.Timestamp.isoformat` of epoch ns `ns` in zone `tz`; naive whole seconds (the common
    case) by numpy, without building a Timestamp."""
    if tz is None and not ns % _SECOND:
        cached = _ISO_CACHE.get(ns)
        return cached if cached is not None else str(np.datetime64(ns // _SECOND, "s"))
    return str(as_index(np.array([ns], np.int64), tz)[0].isoformat())


def iso_steps(ns: np.ndarray, tz: tzinfo | None) -> list[str]:
    """`iso` of every element of `ns` (int64 epoch ns): naive whole seconds from the cache, the
    ones it lacks by numpy; anything else through pandas."""
    if tz is None:
        cache = _ISO_CACHE
        keys: list[int] = ns.tolist()
        stamps = list(map(cache.get, keys))
        try:
            first = stamps.index(None)  # a sliding horizon misses only at its end
        except ValueError:
            return stamps  # type: ignore[return-value]  # no None in it
        todo = [i for i in range(first, len(stamps)) if stamps[i] is None]
        if all(keys[i] % _SECOND == 0 for i in todo):
            if len(todo) <= 16:  # a series' next update: one new step
                texts = [str(np.datetime64(keys[i] // _SECOND, "s")) for i in todo]
            else:
                missing = ns[todo].view("datetime64[ns]")
                texts = np.datetime_as_string(missing, unit="s").tolist()
            if len(cache) + len(todo) > _ISO_CACHE_MAX:
                cache.clear()
            for i, text in zip(todo, texts, strict=True):
                stamps[i] = cache[keys[i]] = text
            return stamps  # type: ignore[return-value]  # every None filled
    return [t.isoformat() for t in as_index(ns, tz)]


# The text of the steps after a series' last point, by (last_ns, n, tz, freq): every series
# updated at the same hour shares one list, and a series' next update slides the previous one
# by a step (one new timestamp to format, not n). The key holds `grid_after`'s `before_ns`
# (None but for zoned calendar steps: `before_last`). Cleared when full.
_STAMPS: dict[tuple[int, int, tzinfo | None, str, int | None], tuple[str, ...]] = {}
_STAMPS_MAX = 4096


def stamps_after(
    last_ns: int,
    n: int,
    tz: tzinfo | None,
    model: ServedModel,
    before_ns: int | None = None,
) -> tuple[str, ...]:
    """`iso` of each of the next `n` steps of the model's frequency after `last_ns`
    (`grid_after`, `before_ns` its)."""
    key = (last_ns, n, tz, model.freq, before_ns)
    stamps = _STAMPS.get(key)
    if stamps is not None:
        return stamps
    offset = model.offset
    before = None
    if isinstance(offset, pd.offsets.Tick):  # fixed steps: the grid one step earlier
        before = _STAMPS.get((last_ns - offset.nanos, n, tz, model.freq, None))
    if before is not None:
        stamps = (*before[1:], iso(last_ns + n * offset.nanos, tz))
    else:
        stamps = tuple(iso_steps(grid_after(last_ns, n, tz, model, before_ns), tz))
    if len(_STAMPS) >= _STAMPS_MAX:
        _STAMPS.clear()
    _STAMPS[key] = stamps
    return stamps


def grid_after(
    last_ns: int,
    n: int,
    tz: tzinfo | None,
    model: ServedModel,
    before_ns: int | None = None,
    *,
    skipped_midnight: bool = False,
) -> np.ndarray:
    """The next `n` steps of the model's frequency after `last_ns` (int64 epoch ns).

    A zoned `last_ns` at the first instant of a day whose midnight a daylight-saving change
    skipped (Santiago's 2024-09-08T01:00:00-03:00) is that day's midnight step of a series of
    midnights, or a series read at 01:00: the instant alone cannot say (`local_steps`), and
    laid from it alone a daily series of midnights went on at 01:00 for good. `before_ns`, the
    series' point before it (`before_last`), says which: the steps are laid along the two by
    `steps_along`, as POST /forecast lays a history's, so they keep the wall time of the
    series. `skipped_midnight`: local_steps' where the caller knows (a start written as that
    midnight: training.validation.written_at_skipped_midnight)."""
    offset = model.offset
    if isinstance(offset, pd.offsets.Tick):
        return last_ns + offset.nanos * np.arange(1, n + 1, dtype=np.int64)
    start = as_index(np.array([last_ns], np.int64), tz)[0]
    if before_ns is not None and at_skipped_midnight(start):
        given = as_index(np.array([before_ns, last_ns], np.int64), tz)
        along: np.ndarray = steps_along(given, n + 2, offset).as_unit("ns").asi8
        if along[1] == last_ns:  # the point before is the step before: the grid is theirs
            return along[2:]
    laid = local_steps(start, n + 1, offset, skipped_midnight=skipped_midnight)
    steps: np.ndarray = laid.as_unit("ns").asi8[1:]
    return steps


def series_grid(stored: Stored, n: int, model: ServedModel, next_ns: int) -> np.ndarray:
    """The next `n` steps of the stored series (`grid_after` along its last two points), for
    a request whose first new point is `next_ns`. A series of one point, at the first instant
    of a day whose midnight a change skipped, has no point before it to say whether it is a
    series of midnights or one read at 01:00 (the start that created it may have been written
    either way: training.validation.written_at_skipped_midnight); the request's first point
    says, as `steps_along` reads the timestamps after such a first one: where it lies on the
    midnights' steps and not on the literal ones, the series is one of midnights."""
    tz, last = stored.tz, stored.last_ns
    before = before_last(stored.tail, tz, model)
    ahead = grid_after(last, n, tz, model, before)
    if before is not None or tz is None or next_ns in ahead:
        return ahead
    if not at_skipped_midnight(as_index(np.array([last], np.int64), tz)[0]):
        return ahead
    midnights = grid_after(last, n, tz, model, skipped_midnight=True)
    return midnights if next_ns in midnights else ahead


def before_last(tail: Tail, tz: tzinfo | None, model: ServedModel) -> int | None:
    """The series' point before its last (the tail's last but one), for `grid_after` where
    the last alone may not say how the grid goes on: zoned calendar steps. None elsewhere
    (naive times and fixed-length steps never need it, and `stamps_after` keys on it)."""
    if tz is None or len(tail) < 2 or isinstance(model.offset, pd.offsets.Tick):
        return None
    return int(tail.ns[-2])


# --- step 1: the body against the model ----------------------------------------------------


@dataclass(frozen=True)
class Observations:
    """A parsed body: the request's points (raw units) and what to answer with."""

    ns: np.ndarray  # (n,) int64 epoch ns (UTC for zoned input), strictly increasing, on grid
    tz: tzinfo | None
    values: np.ndarray  # (n,) float64
    covariates: np.ndarray  # (n, C) float64, model.covariates order
    horizon: int
    quantile_index: tuple[int, ...]
    quantile_keys: tuple[str, ...]
    gap_policy: GapPolicy
    dated_by: str = "timestamps"  # the body's field that gave the time axis (or "start")
    zone: ZoneInfo | None = None  # the zone the body's `timezone` names (`request_zone`)
    # Why the time axis could not be read (on `zone`, or without one), kept for
    # `on_series_zone`, which raises it once the series' zone has had its say (`ns` is empty).
    axis_error: ServiceInputError | None = None


_NO_NS = np.empty(0, np.int64)


def parse_observations(
    body: ObservationsIn,
    model: ServedModel,
    scales: ColumnScales,
    *,
    max_scaled: float,
    zone: ZoneInfo | None = None,
    defer_axis: bool = False,
) -> Observations:
    """Check `body` against `model` and the series' `scales`; ServiceInputError (422) naming
    the field. The time axis is read on `zone` (the body's `timezone`: `request_zone`) when
    given. `defer_axis`: a time-axis error is kept in `axis_error` instead of raised, for
    `on_series_zone` to decide once the series is loaded: without a zone, the series' own zone
    may read the times (naive hours across a daylight-saving change are not evenly spaced
    without it); with one, a zone that is not the series' is what the request gets wrong (not
    a time its clock skips). Errors no zone changes are raised at once, so a malformed body is
    a 422 even when the series cannot be loaded: the axis fields' (`check_axis_fields`) and
    what the timestamps alone show wrong (some with a UTC offset and some without, times
    outside those the service can date: `stamps_alone_error`)."""
    horizon = checked_horizon(body.horizon, model)
    indices = quantile_indices(body.quantiles, model.quantiles)
    values = _finite("values", body.values)
    n = len(values)
    covariates = _covariates(body, model, n)
    _check_scaled_range(values, covariates, model, scales, max_scaled)
    check_axis_fields(body, n)
    axis_error = None
    try:
        ns, tz = time_axis(body, model, n, zone)
    except ServiceInputError as error:
        if not defer_axis:
            raise
        # What the request alone shows wrong is no zone's to decide: said now, so it is a 422
        # while the snapshot store is down too. Looked for only once the axis has failed (its
        # checks come first in `increasing_axis`, so an axis that read its timestamps passed
        # them), which keeps the common, well-formed update at no extra cost.
        if body.timestamps is not None:
            alone = stamps_alone_error(body.timestamps, "field 'timestamps'")
            if alone is not None:
                raise alone from None
        ns, tz, axis_error = _NO_NS, None, error
    return Observations(
        ns=ns,
        tz=tz,
        values=values,
        covariates=covariates,
        horizon=horizon,
        quantile_index=indices,
        quantile_keys=_quantile_keys(model.quantiles, indices),
        gap_policy=body.gap_policy,
        dated_by="timestamps" if body.timestamps is not None else "start",
        zone=zone,
        axis_error=axis_error,
    )


@functools.lru_cache(maxsize=256)
def _quantile_keys(trained: tuple[float, ...], indices: tuple[int, ...]) -> tuple[str, ...]:
    """The response keys of the chosen quantiles (a request asks the same few sets)."""
    return tuple(quantile_key(trained[j]) for j in indices)


def _check_scaled_range(
    values: np.ndarray,
    covariates: np.ndarray,
    model: ServedModel,
    scales: ColumnScales,
    limit: float,
) -> None:
    """|scaled value| <= `limit` (URNN_STREAM_MAX_SCALED) for every value and covariate.

    Why a limit far inside float32's range: a streaming series' state is never re-read from a
    window; its unitary recurrence keeps the norm of what it took in. One point of 1e38 (an
    audit's) was accepted and left the series forecasting 1e35 for good, through restarts
    (its stored tail replays it). A value 10,000 training standard deviations out is a unit
    or sensor error far more often than an event; the 422 says so, and the operator can raise
    the limit."""
    if len(values) == 1:  # the common update, one point: Python floats, no array arithmetic
        fits = abs((float(values[0]) - scales.target_mean) / scales.target_scale) <= limit
        if fits and covariates.size:
            fits = all(
                abs((x - mean) / scale) <= limit
                for x, mean, scale in zip(
                    covariates[0].tolist(),
                    scales.covariate_mean.tolist(),
                    scales.covariate_scale.tolist(),
                    strict=True,
                )
            )
        if fits:
            return
    with np.errstate(over="ignore", invalid="ignore"):
        target = np.abs((values - scales.target_mean) / scales.target_scale)
        scaled = np.abs((covariates - scales.covariate_mean) / scales.covariate_scale)
    checks = [("values", target, values, scales.target_mean, scales.target_scale)]
    checks += [
        (
            f"covariates.{name}",
            scaled[:, c],
            covariates[:, c],
            float(scales.covariate_mean[c]),
            float(scales.covariate_scale[c]),
        )
        for c, name in enumerate(model.covariates)
    ]
    for where, column, raw, mean, scale in checks:
        bad = ~(column <= limit)
        if bad.any():
            position = int(np.argmax(bad))
            # the facts POST /forecast's 422 gives (value, position, range, remedy), and how
            # far out the value is against this endpoint's own bound
            beyond = (
                f"{float(column[position]):.3g} training standard deviations from the "
                f"training mean, beyond the limit of {limit:g}: URNN_STREAM_MAX_SCALED"
            )
            problem = too_large_problem(float(raw[position]), position, mean, scale, limit, beyond)
            raise ServiceInputError(
                f"field {where!r}",
                f"{problem}; a streaming state would carry it for good, so the series is left "
                "unchanged (raise URNN_STREAM_MAX_SCALED if such values are real)",
            )


def _finite(field: str, raw: Sequence[float | None] | np.ndarray) -> np.ndarray:
    values = np.asarray(raw, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        position = int(np.argmax(bad))
        value = float(values[position])
        what = "null" if raw[position] is None else "NaN" if value != value else f"{value}"
        raise ServiceInputError(
            f"field {field!r}",
            f"holds {what} at position {position}; every value must be a finite number",
        )
    return values


def _covariates(body: ObservationsIn, model: ServedModel, n: int) -> np.ndarray:
    if not body.covariates and not model.covariates:  # none sent, none read: nothing to check
        return np.empty((n, 0))
    known = model.known_covariates
    unknown = sorted(set(body.covariates) - set(known))
    if unknown:
        raise ServiceInputError(
            "field 'covariates'",
            model.unknown_covariates_problem(unknown),
        )
    missing = [name for name in model.covariates if name not in body.covariates]
    if missing:
        raise ServiceInputError(
            "field 'covariates'",
            f"missing covariate(s) {missing}; the model reads {list(model.covariates)}",
        )
    columns = {}
    for name, raw in body.covariates.items():
        field = f"covariates.{name}"
        if len(raw) != n:
            raise ServiceInputError(
                f"field {field!r}",
                f"has {plural(len(raw), 'value')}, `values` has {n}; they must be the same length",
            )
        columns[name] = _finite(field, raw)
    if not model.covariates:
        return np.empty((n, 0))
    return np.stack([columns[name] for name in model.covariates], axis=1)


def check_axis_fields(body: ObservationsIn, n: int) -> None:
    """The time-axis errors that no zone changes (422): `start` and `timestamps` both or
    neither, a timestamp count other than the values'. Checked before the series is loaded
    (the rest of the axis waits for its zone: `parse_observations`' `defer_axis`): a
    malformed body is a 422 even when the snapshot store is down, not its 503. Constant
    time, so a body without `timezone` (the fast path's) costs no more than before."""
    if body.start is not None and body.timestamps is not None:
        raise ServiceInputError(
            "field 'timestamps'", "give either `start` or `timestamps`, not both"
        )
    if body.start is None and body.timestamps is None:
        raise ServiceInputError(
            "field 'timestamps'", "give `timestamps` (one per value) or `start` to date the points"
        )
    if body.timestamps is not None and len(body.timestamps) != n:
        raise ServiceInputError(
            "field 'timestamps'",
            f"has {len(body.timestamps)} {'entry' if len(body.timestamps) == 1 else 'entries'}, "
            f"`values` has {n}; they must be the same length",
        )


def time_axis(
    body: ObservationsIn, model: ServedModel, n: int, zone: ZoneInfo | None = None
) -> tuple[np.ndarray, tzinfo | None]:
    """The body's points as int64 epoch ns and their zone; on `zone`'s clock when given, as
    POST /forecast reads a series with a `timezone` (service.validation._dates). The body has
    passed `check_axis_fields`."""
    field = "timestamps" if body.timestamps is not None else "start"
    try:
        if body.timestamps is not None:
            return _from_timestamps(body.timestamps, model, n, zone)
        assert body.start is not None
        return _from_start(body.start, model, n, zone)
    except ServiceInputError:
        raise  # already says what is wrong and where (it is a ValueError too)
    except (ValueError, OverflowError) as error:  # pandas' datetime range, hours from its edge
        steps = (
            f"the forecast steps of {model.freq!r} after it"
            if body.timestamps is not None
            else f"its {plural(n, 'value')} and {plural(model.max_horizon, 'forecast step')} "
            f"of {model.freq!r}"
        )
        raise axis_error(
            body.timestamps, body.start, steps, model, f"field {field!r}", error
        ) from None


def _from_start(
    start: datetime, model: ServedModel, n: int, zone: ZoneInfo | None = None
) -> tuple[np.ndarray, tzinfo | None]:
    # the points and the forecast steps after them must be times pandas' ns axis holds (the
    # steps of a fixed frequency are integer arithmetic, which would wrap around past them)
    # (read on the zone's clock when one reads it: its instant and its time there)
    where = "field 'start'"
    check_start_span(start, n, model.max_horizon, model, where, zone)
    if zone is not None:  # a naive start is a local time there (a skipped or repeated one: 422)
        first = zoned_start(start, zone, where)
        if not isinstance(model.offset, pd.offsets.Tick):
            check_on_grid(first, model, where)
        first_ns = int(first.value)
        midnight = written_at_skipped_midnight(start, first)  # as POST /forecast reads it
        steps = grid_after(first_ns, n - 1, zone, model, skipped_midnight=midnight)
        return np.concatenate([[first_ns], steps]).astype(np.int64), zone
    if not isinstance(model.offset, pd.offsets.Tick):  # calendar steps: on their anchors
        check_on_grid(pd.Timestamp(start), model, where)
    naive_ns = _naive_ns(start)  # the common case, without building a pd.Timestamp
    if naive_ns is not None and n == 1:  # a streaming update's single point
        return np.array([naive_ns], np.int64), None
    if naive_ns is not None:
        return np.concatenate([[naive_ns], grid_after(naive_ns, n - 1, None, model)]).astype(
            np.int64
        ), None
    first = pd.Timestamp(start).as_unit("ns")
    first_ns = int(first.value)
    return np.concatenate([[first_ns], grid_after(first_ns, n - 1, first.tz, model)]).astype(
        np.int64
    ), first.tz


def _from_timestamps(
    stamps: list[datetime], model: ServedModel, n: int, zone: ZoneInfo | None = None
) -> tuple[np.ndarray, tzinfo | None]:
    where = "field 'timestamps'"
    index = increasing_axis(stamps, n, where, zone, endpoint="series")
    check_last_stamp(stamps, model.max_horizon, model, where, index.tz)
    if zone is None:  # with one, the offsets' zone is named: nothing to refuse
        check_clock(stamps, index, model, where, endpoint="series")
    # the answer writes the first timestamp on the axis' clock: a zone's, or the offset the
    # timestamps carry without one (1677-09-20T20:00-05:00 has no time there pandas holds)
    check_first_stamp(stamps, index, where)
    ns = index.asi8.astype(np.int64)
    if isinstance(model.offset, pd.offsets.Tick):
        expected = ns[0] + model.offset.nanos * np.arange(n, dtype=np.int64)
    else:
        expected = steps_along(index, n, model.offset).as_unit("ns").asi8
    off = np.flatnonzero(expected != ns)
    if off.size:
        k = int(off[0])
        # what a daylight-saving change makes of local times sent without their zone, as
        # POST /forecast says it: a naive skipped hour, local midnights written in UTC
        skipped = skipped_hour(index, k, zone, "series") if ns[k] in expected else ""
        hint = (
            f"; {skipped}"
            if skipped
            else shifted_hour(int(ns[k] - expected[k]), index, zone, "series")
        )
        raise ServiceInputError(
            where,
            f"must be spaced at the model's frequency {model.freq!r}; position {k} is "
            f"{index[k].isoformat()}, expected {iso(int(expected[k]), index.tz)}{hint}",
        )
    return ns, index.tz if zone is None else zone


# --- step 2: the body against the stored series ---------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What `plan_update` needs of a series' stored state."""

    last_ns: int
    tz: tzinfo | None
    tail: Tail
    first_ns: int | None = None  # the series' first point (None: not known, the tail's then)


def on_series_zone(
    obs: Observations, body: ObservationsIn, model: ServedModel, stored: Stored | None
) -> Observations:
    """`obs` on the clock of the series it updates (`stored`; None: the request creates it).

    A request that names a zone must name the series' own (`check_series_zone`), said before
    anything its clock made of the times (a time another zone's change skips is not the
    request's error: its zone is); one that creates the series gives it that zone. One that
    names none is read on the series' zone when the series was created with one (its naive
    times are local times there, as if the request had named it), else as it was parsed. A
    time-axis error kept by `parse_observations(defer_axis=True)` is raised here when no other
    zone reads the times."""
    if obs.zone is not None:
        if stored is not None:
            check_series_zone(obs.zone, stored.tz)
        if obs.axis_error is not None:
            raise obs.axis_error
        return obs
    zone = None if stored is None else named_zone(stored.tz)
    if zone is None:
        if obs.axis_error is not None:
            raise obs.axis_error
        return obs
    ns, tz = time_axis(body, model, len(obs.values), zone)
    return replace(obs, ns=ns, tz=tz, axis_error=None)


def check_series_zone(zone: ZoneInfo, stored: tzinfo | None) -> None:
    """A 422 naming `timezone` unless `zone` (a request's, `series_zone`) is the zone the
    series was created with, by any of its names (`same_zone`). A series created without one
    takes none later: its stored points were read without that zone's rules, so reading the
    next ones with them would mix clocks."""
    named = named_zone(stored)
    if named is not None and same_zone(named, zone):
        return
    if named is not None:
        why = f"the series is on {named.key!r}, the `timezone` it was created with"
        fix = "omit `timezone`, or give the series' own"
    else:
        on = "are naive" if stored is None else f"carry their own UTC offset ({tz_name(stored)})"
        why = f"the series was created without a `timezone` (its timestamps {on})"
        fix = "omit `timezone`, or DELETE the series and send its history again with the zone"
    raise ServiceInputError("field 'timezone'", f"{why}; this request names {zone.key!r}: {fix}")


@dataclass(frozen=True)
class Plan:
    """The points to consume (gap-filled ones first), and the request's accounting."""

    ns: np.ndarray  # (m,) int64
    values: np.ndarray  # (m,) float64
    covariates: np.ndarray  # (m, C) float64
    accepted: int  # the request's new points
    duplicates: int  # the request's points already consumed, identical
    filled: int  # interpolated steps before the first new point


def plan_update(
    obs: Observations, stored: Stored | None, model: ServedModel, *, max_gap: int
) -> Plan:
    """Which of the request's points are new, duplicates or wrong (StreamConflictError)."""
    if stored is None:
        return Plan(obs.ns, obs.values, obs.covariates, len(obs.ns), 0, 0)
    if (obs.tz is None) != (stored.tz is None):
        raise ServiceInputError(
            f"field {obs.dated_by!r}",
            "the series' timestamps are "
            + (
                "naive (no zone); this request's carry one"
                if stored.tz is None
                else f"zoned ({stored.tz}); this request's are naive"
            ),
        )
    tz = stored.tz
    last = stored.last_ns
    if tz is not None:
        _check_same_offset(obs, tz, model)
        obs = _along_series(obs, stored, model)
    if obs.ns[0] > last:  # all new (the common case): no duplicates to look up
        consumed = 0
        ns, values, covariates = obs.ns, obs.values, obs.covariates
    else:
        consumed = int(np.searchsorted(obs.ns, last, side="right"))  # a prefix: ns increase
        _check_duplicates(obs, consumed, stored, tz)
        ns, values = obs.ns[consumed:], obs.values[consumed:]
        covariates = obs.covariates[consumed:]
    if not len(ns):
        return Plan(ns, values, covariates, 0, consumed, 0)
    filled, ahead = _gap(int(ns[0]), stored, obs.gap_policy, model, max_gap)
    if filled:
        fill_ns = ahead[:filled]  # the grid `_gap` found the point on, not one laid again
        weight = (np.arange(1, filled + 1) / (filled + 1))[:, None]  # linear in steps
        start = np.concatenate([stored.tail.values[-1:], stored.tail.covariates[-1]])[None, :]
        end = np.concatenate([values[:1], covariates[0]])[None, :]
        between = start + (end - start) * weight  # (filled, 1 + C)
        ns = np.concatenate([fill_ns, ns])
        values = np.concatenate([between[:, 0], values])
        covariates = np.concatenate([between[:, 1:], covariates])
    return Plan(ns, values, covariates, len(obs.ns) - consumed, consumed, filled)


def _check_same_offset(obs: Observations, stored: tzinfo, model: ServedModel) -> None:
    """A 422 when a series on the UTC offset of its first timestamps (no `timezone`) gets a
    request at another offset, for a model that reads calendar features on a local clock.
    One request holding both offsets is refused (`check_clock`); split over two, the second
    was read on the first's offset, its hours off by the change from then on (a daylight-saving
    change: 03:00+02:00 stored and answered as 02:00+01:00)."""
    if not model.needs_dates or model.calendar_clock == CLOCK_UTC:
        return  # the instants are exact: a model on UTC hours reads them as they are
    if obs.tz is None or named_zone(stored) is not None or named_zone(obs.tz) is not None:
        return  # naive (refused above), or a zone, whose own rules read the clock
    moment = datetime(2000, 1, 1)
    series, request = stored.utcoffset(moment), obs.tz.utcoffset(moment)
    if series == request:
        return
    raise ServiceInputError(
        f"field {obs.dated_by!r}",
        f"carries the UTC offset {offset_text(request)} and the series' timestamps "
        f"{offset_text(series)} (a daylight-saving change?), and the series has no zone: this "
        f"model reads calendar features ({calendar_words(model.freq)}) on the local clock it "
        "was trained on, which offsets alone do not give; DELETE the series and send its history "
        "again with `timezone` (e.g. 'Europe/London') or as naive local times",
    )


def _along_series(obs: Observations, stored: Stored, model: ServedModel) -> Observations:
    """`obs` with the steps after its `start` laid along the series it goes on. A start at the
    first instant of a day whose midnight a daylight-saving change skipped (the series' own
    answers write that day's midnight step so: Santiago's 2024-09-08T01:00:00-03:00) names
    that step of a series of midnights as well as a 01:00 reading (`local_steps`), and laid
    from its wall time alone a request of several days moved a series of midnights to 01:00
    for good. The series' point before the start, when it is the step before, says which, as
    `grid_after` reads the stored points (`steps_along` along the two). Timestamps date each
    point themselves, and other starts are not ambiguous: left as they are."""
    tz = stored.tz
    if obs.dated_by != "start" or len(obs.ns) < 2 or isinstance(model.offset, pd.offsets.Tick):
        return obs
    first = int(obs.ns[0])
    prior = stored.tail.ns[stored.tail.ns < first]
    if not len(prior) or not at_skipped_midnight(as_index(obs.ns[:1], tz)[0]):
        return obs
    given = as_index(np.array([prior[-1], first], np.int64), tz)
    laid = steps_along(given, len(obs.ns) + 1, model.offset).as_unit("ns").asi8
    if laid[1] != first:  # not the step after the series' point: nothing says otherwise
        return obs
    return replace(obs, ns=laid[1:].astype(np.int64))


def _check_duplicates(obs: Observations, consumed: int, stored: Stored, tz: tzinfo | None) -> None:
    """The request's points at or before the last stored one must be stored, identical."""
    if not consumed:
        return
    tail = stored.tail
    last = iso(stored.last_ns, tz)
    positions = np.searchsorted(tail.ns, obs.ns[:consumed])
    for k in range(consumed):
        stamp = iso(int(obs.ns[k]), tz)
        if stored.first_ns is not None and obs.ns[k] < stored.first_ns:
            # Known not to be a point of the series, whatever the tail holds.
            raise StreamConflictError(
                f"out of order: timestamp {stamp} (position {k}) is before the series' first "
                f"point {iso(stored.first_ns, tz)}: a series only takes points after its last "
                f"one ({last}); to add older history, DELETE the series and send its history "
                "again from its earliest point"
            )
        if not len(tail) or obs.ns[k] < tail.ns[0]:
            oldest = iso(int(tail.ns[0]), tz) if len(tail) else "none"
            raise StreamConflictError(
                f"out of order: timestamp {stamp} (position {k}) is not after the last stored "
                f"timestamp {last}, and it is older than the retained tail (oldest kept: "
                f"{oldest}), so it cannot be verified as a duplicate"
            )
        j = int(positions[k])
        if j >= len(tail) or tail.ns[j] != obs.ns[k]:
            raise StreamConflictError(
                f"out of order: timestamp {stamp} (position {k}) is not after the last stored "
                f"timestamp {last}, and it is not a point of this series"
            )
        if tail.values[j] != obs.values[k] or not np.array_equal(
            tail.covariates[j], obs.covariates[k]
        ):
            if tail.was_filled(j):
                raise StreamConflictError(_filled_conflict(obs, k, stamp, tail, j, last))
            what = (
                f"value {float(tail.values[j])!r}; this request has {float(obs.values[k])!r}"
                if tail.values[j] != obs.values[k]
                else "different covariates"
            )
            raise StreamConflictError(
                f"conflicting duplicate: timestamp {stamp} (position {k}) was already consumed "
                f"with {what}; a consumed point cannot be changed (the last stored timestamp is "
                f"{last})"
            )


def _filled_conflict(obs: Observations, k: int, stamp: str, tail: Tail, j: int, last: str) -> str:
    """The 409 for a late real point at a step the gap policy filled in: the stored value is
    the interpolation's, not one the user sent (quoted as "already consumed with value" it
    read as their own), and the state has taken it, so the way out is the series' history
    again."""
    if tail.values[j] != obs.values[k]:
        what = (
            f"the interpolated value {float(tail.values[j])!r}; this request sends its real "
            f"value {float(obs.values[k])!r}"
        )
    else:
        what = "interpolated covariates; this request sends other covariates for it"
    return (
        f"late point: timestamp {stamp} (position {k}) was missing when a later point arrived "
        f"and was filled by gap_policy='interpolate' with {what}; the series' state has "
        f"consumed the filled step and cannot take it again (the last stored timestamp is "
        f"{last}): to use the real value, DELETE the series and send its history again with "
        "it; to keep the filled one, leave this point out"
    )


_NO_STEPS = np.empty(0, np.int64)  # `_gap`'s grid where it lays none (nothing is missing)
_NO_STEPS.flags.writeable = False


def _gap(
    first_ns: int, stored: Stored, policy: GapPolicy, model: ServedModel, max_gap: int
) -> tuple[int, np.ndarray]:
    """Missing steps between the last stored point and `first_ns` (409 where not allowed),
    and the series' grid after its last point on which `first_ns` was found: the missing
    steps are its first ones. `series_grid` chooses between the two grids of a one-point
    series at a skipped midnight by whether `first_ns` lies on them, so the fill must take
    its steps from this grid: laid again, `filled` steps long, it never holds `first_ns` and
    could be the other one (a gap filled at 01:00 before a point at midnight)."""
    tz, last = stored.tz, stored.last_ns
    offset = model.offset
    if isinstance(offset, pd.offsets.Tick) and first_ns == last + offset.nanos:
        return 0, _NO_STEPS  # the common case, without laying out the whole window
    ahead = series_grid(stored, max_gap + 1, model, first_ns)
    if first_ns == ahead[0]:
        return 0, ahead
    expected, received = iso(int(ahead[0]), tz), iso(first_ns, tz)
    hit = np.flatnonzero(ahead == first_ns)
    if not hit.size and first_ns < ahead[-1]:
        raise StreamConflictError(
            f"timestamp {received} is not on the series' {model.freq!r} grid: the next "
            f"expected timestamp after {iso(last, tz)} is {expected}"
        )
    missing = int(hit[0]) if hit.size else None
    if policy == "reject":
        count = f"{missing} missing step(s)" if missing is not None else "a gap"
        raise StreamConflictError(
            f"gap: expected the next timestamp {expected}, received {received} ({count}); send "
            "the missing points, or gap_policy='interpolate' to fill them"
        )
    if missing is None or not len(stored.tail):
        raise StreamConflictError(
            f"gap: expected the next timestamp {expected}, received {received}: more than "
            f"URNN_STREAM_MAX_GAP={max_gap} missing steps, too many to interpolate"
        )
    return missing, ahead

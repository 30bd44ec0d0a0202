"""Turn a parsed `ForecastRequest` into the model's scaled input arrays, or say what is wrong.

Every check that needs the served model lives here, and every failure is a `ServiceInputError`
whose message names the series (index and id) and the field: NaN/inf/null values, a history
shorter than the lookback (with the minimum), a horizon above the maximum, quantiles the model
was not trained with, unknown or missing covariates, mismatched lengths, timestamps that go
backwards or off the model's frequency, a bad or different `freq`, missing dates for a model
that reads calendar features, a naive time that a `timezone`'s daylight-saving change skips or
repeats. Nothing is "fixed" silently.

A `timezone` (JSON bodies only: `service.schemas`) puts a series on that zone's clock: naive
times are its local times, zoned ones are converted to it, and the time axis (`Dates.tz`) is
the zone, so the calendar features of a local-clock model and the forecast timestamps follow
its daylight-saving changes.

The output is plain numpy (no DataFrame per series): the hot path is array arithmetic, and the
scaling matches `ForecastPredictor.predict_frame` exactly (see `service.served`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pandas.tseries.offsets import BaseOffset

from models.forecaster import calendar_features, calendar_periods
from service.errors import ServiceInputError, series_where
from service.fast_path import BlockRequest, FastRequest, FastSeries, SeriesBlock
from service.schemas import ForecastRequest, SeriesIn
from service.served import ColumnScales, ServedModel, freq_problem
from training.mlflow_model import (
    CLOCK_UTC,
    FLOAT32_BEYOND,
    FLOAT32_LARGEST,
    as_float32,
    off_grid,
    same_level,
    too_large_problem,
)
from training.validation import (
    WEEKDAYS,
    in_zone,
    local_steps,
    local_time_problem,
    plural,
    steps_along,
    week_anchor,
    written_at_skipped_midnight,
    zone_named,
)
from urnn_forecast.field_types import shown

logger = logging.getLogger(__name__)


# A body as the schema built it, or as the fast path read it (service.fast_path): same fields.
RequestIn = ForecastRequest | FastRequest | BlockRequest
SeriesInput = SeriesIn | FastSeries


# slots, not frozen: built once per series per request on the hot path, where a frozen
# dataclass's __init__ (object.__setattr__ per field) costs ~1 us more each; never mutated.
@dataclass(slots=True)
class Dates:
    """A series' time axis as int64 epoch nanoseconds (UTC for zoned input) plus its zone.

    Plain integers because that is what the hot path needs (comparing, offsetting, formatting
    whole seconds); a DatetimeIndex is built only for calendar features or zoned output.
    """

    history_ns: np.ndarray  # (N,): one per value
    window_ns: np.ndarray  # (L + H_max,): the last lookback inputs, then the forecast steps
    tz: tzinfo | None
    lookback: int

    @property
    def future_ns(self) -> np.ndarray:
        return self.window_ns[self.lookback :]  # (H_max,)


def as_index(ns: np.ndarray, tz: tzinfo | None) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(ns.view("datetime64[ns]"))
    return index if tz is None else index.tz_localize("UTC").tz_convert(tz)


# slots, not frozen: built once per series per request on the hot path, where a frozen
# dataclass's __init__ (object.__setattr__ per field) costs ~1 us more each; never mutated.
@dataclass(slots=True)
class PreparedSeries:
    """One series, ready for the batched forward (all model inputs scaled)."""

    index: int  # position in the request
    id: str
    values: np.ndarray  # (N,) float64: the whole raw history (realised error reads it)
    dates: Dates | None  # None when the series carries no dates
    target: np.ndarray  # (L,) float32, scaled
    covariates: np.ndarray | None  # (L, C) float32, scaled, model order
    past_calendar: np.ndarray | None  # (L, K) float32
    future_calendar: np.ndarray | None  # (H_max, K) float32
    target_mean: float
    target_scale: float
    drift_inputs: dict[str, np.ndarray]  # column -> raw values the model reads, for drift
    history: StreamHistory | None = None  # a streaming model's whole history (else None)


@dataclass(frozen=True)
class StreamHistory:
    """The whole history, scaled in float64, for a streaming model (`ServedModel.streaming`):
    it consumes every point from a fresh state (`advance`), then forecasts."""

    target: np.ndarray  # (N,) float64
    covariates: np.ndarray | None  # (N, C) float64, model order
    calendar: np.ndarray | None  # (N, K) float64
    # (H_max, K) float64: the forecast steps' features as the /series endpoints compute them
    # (the windowed path's float32 copy moved a calendar model's forecast by ~1e-9 of it)
    future_calendar: np.ndarray | None = None


# slots: one per request on the hot path; never mutated.
@dataclass(slots=True)
class PreparedBlock:
    """A request's series as arrays (the block path of `prepare`): what the hot path reads,
    without a PreparedSeries per series (`series()` builds those when something needs them)."""

    ids: list[str]
    values: np.ndarray  # (S, N) float64: the whole raw histories
    target: np.ndarray  # (S, L) float32, scaled
    first_ns: np.ndarray | None  # (S,) int64 naive epoch ns of each first value; None: undated
    step_ns: int  # the model's step: each series' axis is first_ns + step_ns * position
    lookback: int
    max_horizon: int  # the model's: PreparedSeries' windows run that far
    target_mean: float
    target_scale: float
    drift_column: str  # the target's name: drift reads the raw lookback window
    covariates: np.ndarray | None = None  # (S, L, C) float32, scaled, model order; None: none
    # name -> (S, N) float64, every covariate given (read or not), in the order given: drift
    # reads their raw lookback windows
    raw_covariates: dict[str, np.ndarray] = dataclass_field(default_factory=dict)
    # a calendar model's features of each series' window (`_block_calendar`), float32 as
    # `_prepare_series` casts them; None for a model that reads none
    past_calendar: np.ndarray | None = None  # (S, L, K) float32
    future_calendar: np.ndarray | None = None  # (S, H_max, K) float32

    def drift_inputs(self) -> dict[str, np.ndarray]:
        """Column -> (S, L) raw lookback windows, as PreparedSeries.drift_inputs by rows."""
        lookback = self.lookback
        inputs = {self.drift_column: self.values[:, -lookback:]}
        for name, column in self.raw_covariates.items():
            inputs[name] = column[:, -lookback:]
        return inputs

    def future_ns(self, horizon: int) -> np.ndarray:
        """(S, horizon) forecast steps (the axis is regular: built here, not stored)."""
        assert self.first_ns is not None
        future: np.ndarray = self.first_ns[:, None] + _steps(
            self.step_ns, self.values.shape[1], horizon
        )
        return future

    def series(self) -> tuple[PreparedSeries, ...]:
        n, lookback = self.values.shape[1], self.lookback
        every = None
        if self.first_ns is not None:
            every = self.first_ns[:, None] + _steps(self.step_ns, 0, n + self.max_horizon)
        drift = self.drift_inputs()
        return tuple(
            PreparedSeries(
                index=i,
                id=series_id,
                values=self.values[i],
                dates=None
                if every is None
                else Dates(every[i, :n], every[i, n - lookback :], None, lookback),
                target=self.target[i],
                covariates=None if self.covariates is None else self.covariates[i],
                past_calendar=None if self.past_calendar is None else self.past_calendar[i],
                future_calendar=None if self.future_calendar is None else self.future_calendar[i],
                target_mean=self.target_mean,
                target_scale=self.target_scale,
                drift_inputs={name: windows[i] for name, windows in drift.items()},
            )
            for i, series_id in enumerate(self.ids)
        )


@functools.lru_cache(maxsize=256)
def _steps(step_ns: int, start: int, count: int) -> np.ndarray:
    """step_ns * (start, ..., start + count - 1), read-only: shared by the requests of a shape."""
    steps = step_ns * np.arange(start, start + count, dtype=np.int64)
    steps.flags.writeable = False
    return steps


@dataclass(slots=True, frozen=True)
class Adapted:
    """What rolling intervals (service.adaptive) did to a request's forecasts: the outermost
    quantile pair and the median before adaptation and the floor, (S, H_max, 3) in the data's
    units (the realised scores are taken against them), and the multipliers applied, (H_max,)
    or by series (S, H_max)."""

    unadapted: np.ndarray
    multipliers: np.ndarray


class PreparedRequest:
    """A whole request, validated against one model version (it must run on that version).
    Its series come one by one (`rows`) or as one block (`block`); `series` gives them one
    by one either way (built from the block on first use). `adapted`: set with the forecasts
    when rolling intervals moved them."""

    __slots__ = (
        "_rows",
        "adapted",
        "block",
        "horizon",
        "model",
        "quantile_index",
        "quantile_keys",
    )

    def __init__(
        self,
        *,
        model: ServedModel,
        horizon: int,
        quantile_index: tuple[int, ...],
        quantile_keys: tuple[str, ...],
        series: tuple[PreparedSeries, ...] | None = None,
        block: PreparedBlock | None = None,
    ) -> None:
        if (series is None) == (block is None):
            raise ValueError("a prepared request holds its series one by one or as a block")
        self.model = model
        self.horizon = horizon
        self.quantile_index = quantile_index  # positions in the model's quantiles
        self.quantile_keys = quantile_keys  # their response keys, e.g. "0.1"
        self._rows = series
        self.block = block
        self.adapted: Adapted | None = None

    @property
    def series(self) -> tuple[PreparedSeries, ...]:
        if self._rows is None:
            assert self.block is not None
            self._rows = self.block.series()
        return self._rows

    @property
    def n_series(self) -> int:
        return len(self.block.ids) if self.block is not None else len(self.series)

    def last_values(self) -> np.ndarray:
        """Each series' last raw history value, (S,) float64: the forecast is un-scaled from
        it (`service.runner.unscale`), so that a flat look-back comes back as its level."""
        if self.block is not None:
            return np.asarray(self.block.values[:, -1], dtype=np.float64)
        return np.array([s.values[-1] for s in self.series], dtype=np.float64)

    def unit_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Each series' target mean and scale, (S,) float64 each."""
        if self.block is not None:
            n = len(self.block.ids)
            return np.full(n, self.block.target_mean), np.full(n, self.block.target_scale)
        series = self.series
        return (
            np.array([s.target_mean for s in series]),
            np.array([s.target_scale for s in series]),
        )


def quantile_key(level: float) -> str:
    """The response key of a quantile level: "0.1", "0.5", "0.975"."""
    return repr(float(level))


def checked_horizon(horizon: int | None, model: ServedModel) -> int:
    """The requested horizon (default: the model's maximum), or a 422 when above it."""
    h = horizon if horizon is not None else model.max_horizon
    if h > model.max_horizon:
        raise ServiceInputError(
            "field 'horizon'",
            f"{h} is above the model's maximum {model.max_horizon}; ask for at most "
            f"{plural(model.max_horizon, 'step')}",
        )
    return h


def prepare(request: RequestIn, model: ServedModel) -> PreparedRequest:
    """Validate `request` against `model` and scale it; raises ServiceInputError."""
    horizon = checked_horizon(request.horizon, model)
    indices = quantile_indices(request.quantiles, model.quantiles)
    keys = tuple(quantile_key(model.quantiles[j]) for j in indices)
    # A streaming model reads whole histories: never a block (it cuts to the lookback).
    streaming = _streaming(model)
    block = None
    if isinstance(request, BlockRequest) and not streaming:
        block = _prepare_block(request.block, model)
    if block is None:
        all_series: Sequence[SeriesInput] = request.series
        _check_unique_ids(all_series)
        zones = series_zones(request)
        block = None if streaming or zones is not None else _prepare_bulk(all_series, model)
        if block is None:  # anything unusual, or anything wrong: the first error raised
            prepared = tuple(
                _prepare_series(i, s, model, None if zones is None else zones[i])
                for i, s in enumerate(all_series)
            )
            return PreparedRequest(
                model=model,
                horizon=horizon,
                quantile_index=indices,
                quantile_keys=keys,
                series=prepared,
            )
    return PreparedRequest(
        model=model, horizon=horizon, quantile_index=indices, quantile_keys=keys, block=block
    )


def series_zones(request: RequestIn) -> list[ZoneInfo | None] | None:
    """Each series' `timezone` (its own, else the request's) as a zone, or None when the
    request names none: the fast path's and Arrow's requests never do (an Arrow timestamp
    type names its zone itself)."""
    if not isinstance(request, ForecastRequest):
        return None
    names = [s.timezone or request.timezone for s in request.series]
    if not any(names):
        return None
    return [None if name is None else zone_named(name) for name in names]  # checked names


def _check_unique_ids(all_series: Sequence[SeriesInput]) -> None:
    seen: dict[str, int] = {}
    for i, series in enumerate(all_series):
        if series.id in seen:
            raise ServiceInputError(
                series_where(i, series.id, "id"),
                f"repeats the id of series {seen[series.id]}; ids must be unique in a request",
            )
        seen[series.id] = i


def _takes_blocks(model: ServedModel) -> bool:
    """Whether `model` can be fed a block: its frequency has a fixed length on a block's
    clock (time axes are arithmetic, naive, so a calendar model's features are those of
    first_ns + steps: `_block_calendar`). A Tick (h, 15min, 24h) always; calendar days (D,
    2D: no Tick since pandas 3) too, since a block's starts are naive, where a day is 24 h
    (`local_steps` lays a naive start's days by pd.date_range, exactly `offset.nanos` apart;
    every time of day is a step of D: `check_on_grid` refuses none; the span `latest_first`
    allows is `offset.nanos` steps from the end, as a Tick's). Weeks and months are anchored
    (weekdays, month ends): they stay series by series. The covariates it reads, a block
    must carry (`_block_covariates_fit`); the dates a calendar model reads, too."""
    return _fixed_on_naive_clock(model.offset)


def _fixed_on_naive_clock(offset: BaseOffset) -> bool:
    """Whether `offset`'s steps from a naive time are `offset.nanos` apart: a Tick, or
    calendar days (pandas 3 refuses a normalised Day, which would snap steps to midnight)."""
    return isinstance(offset, (pd.offsets.Tick, pd.offsets.Day))


def _prepare_bulk(series: Sequence[SeriesInput], model: ServedModel) -> PreparedBlock | None:
    """The common request in a few array operations over all its series at once: histories of
    one length, no covariates (and a model that reads none), one
    statistics for all (a global scaler), dates from a naive `start` on a fixed-length
    frequency or none at all. The series are laid out as one block and go through
    `_prepare_block`. None when the request is not of that kind, or when any check fails:
    `_prepare_series` then goes series by series and raises the first error, so messages (and
    which error wins) are exactly those of the per-series path.
    """
    if model.covariates or not _takes_blocks(model):
        return None
    n = len(series[0].values)
    starts: list[int] = []
    for s in series:
        if len(s.values) != n or s.covariates or s.timestamps is not None:
            return None
        if s.start is not None:
            ns = _naive_ns(s.start)
            if ns is None:
                return None
            starts.append(ns)
    if starts and len(starts) != len(series):  # some dated, some not: per series
        return None
    values = np.asarray([s.values for s in series], dtype=np.float64)  # (S, N)
    if values.shape != (len(series), n):
        return None
    start_ns = np.array(starts, dtype=np.int64) if starts else None
    block = SeriesBlock([s.id for s in series], values, start_ns, [s.freq for s in series])
    return _prepare_block(block, model)


def _prepare_block(block: SeriesBlock, model: ServedModel) -> PreparedBlock | None:
    """A request's series as one block, checked and scaled with array operations, without a
    Python object per series (an Arrow body of plain histories arrives as a block; JSON ones
    are read as one by service.json_block, covariates too, or laid out as one by
    `_prepare_bulk`). None when anything is off: the request then goes series by series (and
    raises the first error exactly as the row path does)."""
    if not _takes_blocks(model):
        return None
    lookback, horizon, offset = model.lookback, model.max_horizon, model.offset
    ids = block.ids
    if len(set(ids)) != len(ids):
        return None
    n = block.values.shape[1]
    scales = model.scales_for(ids[0])
    if n < lookback or scales is None:
        return None
    if model.global_scales is None and any(model.scales_for(i) is not scales for i in ids):
        return None
    for freq in set(block.freqs):
        if freq is not None and (
            freq_problem(freq, model.freq) is not None or week_anchor(freq, model.freq) is not None
        ):
            return None  # the per-series path says why, or checks the weekday of each start
    values = block.values
    if not np.isfinite(values).all():
        return None
    tail = values[:, -lookback:]
    with np.errstate(over="ignore"):
        target = ((tail - scales.target_mean) / scales.target_scale).astype(np.float32)
    if not np.isfinite(target).all():
        return None
    if not _block_covariates_fit(block, model):
        return None
    covariates = None
    if model.covariates:
        covariates = _scaled_block_covariates(block, model, scales)
        if covariates is None:
            return None
    first_ns = block.start_ns
    if first_ns is not None:
        if int(first_ns.max()) + offset.nanos * (n + horizon - 1) > _MAX_NS:
            return None
        if int(first_ns.min()) < _MIN_NS:
            return None
    past_calendar = future_calendar = None
    if model.needs_dates:
        if first_ns is None:  # the per-series path's 422 names `start`
            return None
        calendar = _block_calendar(first_ns, offset.nanos, n, model)
        if calendar is None:
            return None
        past_calendar, future_calendar = calendar
    return PreparedBlock(
        ids=ids,
        values=values,
        target=target,
        first_ns=first_ns,
        step_ns=offset.nanos,
        lookback=lookback,
        max_horizon=horizon,
        target_mean=scales.target_mean,
        target_scale=scales.target_scale,
        drift_column=model.target,
        covariates=covariates,
        raw_covariates=block.covariates,
        past_calendar=past_calendar,
        future_calendar=future_calendar,
    )


def _block_calendar(
    first_ns: np.ndarray, step_ns: int, n: int, model: ServedModel
) -> tuple[np.ndarray, np.ndarray] | None:
    """A calendar model's (S, L, K) past and (S, H_max, K) future features of a block's
    series, float32: what `_prepare_series` gives each (`calendar_on_clock` of its window,
    cast), from one `calendar_on_clock` call. The features are a function of each instant
    alone, so they are computed once per distinct instant: where the starts lie on one grid
    (a request's series mostly do, or share their start), over the one axis that spans all
    windows, each window a slice of it; otherwise over the windows of the distinct starts.
    The axes are naive, as a naive `start`'s are on the per-series path (tz None, which
    both clocks read as it is). None where `calendar_on_clock` refuses (the per-series path
    then says why)."""
    lookback, span = model.lookback, model.lookback + model.max_horizon
    low = int(first_ns.min())
    gathered = None
    # Python integers first: starts centuries apart differ by more than an int64 holds
    if int(first_ns.max()) - low <= step_ns * (len(first_ns) - 1) * span:
        shift = first_ns - low
        if not (shift % step_ns).any():  # one grid: windows start k steps after the first
            k = shift // step_ns  # at most (S - 1) * span: the axis is no longer than the
            length = int(k.max()) + span  # windows laid end to end
            instants = low + _steps(step_ns, n - lookback, length)  # (T,)
            gathered = k[:, None] + np.arange(span)  # (S, L + H) positions on that axis
    if gathered is None:
        starts, inverse = np.unique(first_ns, return_inverse=True)
        instants = (starts[:, None] + _steps(step_ns, n - lookback, span)).ravel()
        gathered = inverse.reshape(-1, 1) * span + np.arange(span)
    try:
        features = calendar_on_clock(instants, None, model, "field 'start'")
    except ServiceInputError:
        return None
    # the same float32 cast of the same float64 values as `_prepare_series`, bit for bit
    every = features.astype(np.float32)[gathered]  # (S, L + H, K)
    return every[:, :lookback], every[:, lookback:]


def _block_covariates_fit(block: SeriesBlock, model: ServedModel) -> bool:
    """Whether no series of the block fails `_covariates`: every name one the model knows,
    every one it reads given, every column as long as the histories and finite."""
    given = block.covariates
    if not given.keys() <= set(model.known_covariates):
        return False
    if any(name not in given for name in model.covariates):
        return False
    shape = block.values.shape
    return all(column.shape == shape and np.isfinite(column).all() for column in given.values())


def _scaled_block_covariates(
    block: SeriesBlock, model: ServedModel, scales: ColumnScales
) -> np.ndarray | None:
    """The covariates the model reads, scaled as `_prepare_series` scales a series' (the same
    float64 arithmetic), as (S, L, C) float32 in model order; None where they overflow it."""
    lookback = model.lookback
    raw = np.stack([block.covariates[name][:, -lookback:] for name in model.covariates], axis=2)
    with np.errstate(over="ignore"):
        return as_float32((raw - scales.covariate_mean) / scales.covariate_scale)


def quantile_indices(
    requested: Sequence[float] | None, trained: tuple[float, ...]
) -> tuple[int, ...]:
    if requested is None:
        return tuple(range(len(trained)))
    out: list[int] = []
    for position, level in enumerate(requested):
        match = [j for j, q in enumerate(trained) if same_level(q, level)]
        if not match:
            raise ServiceInputError(
                f"field 'quantiles'[{position}]",
                f"{level!r} is not a quantile the model was trained with; choose from "
                f"{list(trained)}",
            )
        if match[0] in out:  # the answer keys levels by name: one of the two would vanish
            first = out.index(match[0])
            raise ServiceInputError(
                f"field 'quantiles'[{position}]",
                f"{level!r} repeats the level at position {first}; ask for each level once",
            )
        out.append(match[0])
    return tuple(out)


def _prepare_series(
    i: int, series: SeriesInput, model: ServedModel, zone: ZoneInfo | None = None
) -> PreparedSeries:
    lookback = model.lookback
    values = _numbers(i, series.id, "values", series.values)
    n = len(values)
    if n < lookback:
        # A streaming model reads the whole history, not its last `lookback` values (it
        # fixes the series' normalisation from the first ones): "it reads the last 48" told
        # its clients to send no more than that, and its forecast changed with what they cut.
        reads = (
            f"it fixes the series' normalisation from the first {lookback} and reads the whole "
            "history"
            if _streaming(model)
            else f"it reads the last {lookback}"
        )
        raise ServiceInputError(
            series_where(i, series.id, "values"),
            f"has {plural(n, 'value')}; the model needs at least lookback={lookback} ({reads})",
        )
    covariates = _covariates(i, series, model, n)
    dates = _dates(i, series, model, n, zone)
    scales = model.scales_for(series.id)
    if scales is None:
        raise ServiceInputError(
            series_where(i, series.id, "id"),
            "the model's scaler is per series and has no statistics for this id",
        )
    tail = values[-lookback:]
    target = _float32(
        i,
        series.id,
        "values",
        (tail - scales.target_mean) / scales.target_scale,
        Scaling(tail, n - lookback, scales.target_mean, scales.target_scale),
    )
    scaled_covariates = None
    drift = {model.target: tail}
    for name, column in covariates.items():
        drift[name] = column[-lookback:]
    if model.covariates:
        raw = np.stack([covariates[name][-lookback:] for name in model.covariates], axis=1)
        scaled = (raw - scales.covariate_mean) / scales.covariate_scale  # (L, C)
        scaling = Scaling(raw, n - lookback, scales.covariate_mean, scales.covariate_scale)
        scaled_covariates = _float32(i, series.id, "covariates", scaled, scaling, model.covariates)
    past_calendar = future_calendar = None
    if model.needs_dates and dates is not None:
        where = series_where(i, series.id, "start" if series.timestamps is None else "timestamps")
        features64 = calendar_on_clock(dates.window_ns, dates.tz, model, where)  # (L + H, K)
        features = features64.astype(np.float32)
        past_calendar, future_calendar = features[:lookback], features[lookback:]
    history = None
    if _streaming(model):
        history = _stream_history(i, series.id, values, covariates, dates, scales, model)
        if past_calendar is not None:
            history = replace(history, future_calendar=features64[lookback:])
    return PreparedSeries(
        index=i,
        id=series.id,
        values=values,
        dates=dates,
        target=target,
        covariates=scaled_covariates,
        past_calendar=past_calendar,
        future_calendar=future_calendar,
        target_mean=scales.target_mean,
        target_scale=scales.target_scale,
        drift_inputs=drift,
        history=history,
    )


def calendar_on_clock(
    ns: np.ndarray, tz: tzinfo | None, model: ServedModel, where: str
) -> np.ndarray:
    """The calendar features of instants `ns` read on the model's clock (calendar_zone). The
    range checks bound the instants and the times on the axis' clock (`clock_range`); what
    they leave (a history whose first times a `timezone` behind UTC puts before pandas' first
    one, 1677-09-21T00:12:43.145224193, on POST /forecast) is a 422, not a 500, said at the
    edge it passes."""
    try:
        return calendar_features(as_index(ns, model.calendar_zone(tz)), model.freq)
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        if len(ns) and int(ns[0]) < 0:  # the instants start before 1970: the early edge
            edge = f"begin before {pd.Timestamp.min.isoformat()}, the first"
            fix = "a later"
        else:
            edge = f"pass {pd.Timestamp.max.isoformat()}, the last"
            fix = "an earlier"
        raise ServiceInputError(
            where,
            f"its steps read on the model's clock {edge} time this service can represent; "
            f"give {fix} start",
        ) from None


def _streaming(model: ServedModel) -> bool:
    """`model.streaming`; False for a stand-in that does not say (tests' stub models)."""
    return bool(getattr(model, "streaming", False))


def _stream_history(
    i: int,
    series_id: str,
    values: np.ndarray,
    covariates: dict[str, np.ndarray],
    dates: Dates | None,
    scales: ColumnScales,
    model: ServedModel,
) -> StreamHistory:
    """The whole history scaled as the /series endpoints scale it (float64, same arithmetic)."""
    target = (values - scales.target_mean) / scales.target_scale
    scaled = None
    if model.covariates:
        raw = np.stack([covariates[name] for name in model.covariates], axis=1)
        scaled = (raw - scales.covariate_mean) / scales.covariate_scale
    calendar = None
    if model.needs_dates and dates is not None:
        calendar = calendar_on_clock(
            dates.history_ns, dates.tz, model, series_where(i, series_id, "timestamps")
        )
    for field, array, columns in (("values", target, ()), ("covariates", scaled, model.covariates)):
        if array is not None and not np.isfinite(array).all():
            field = _overflowing(field, array, columns, np.float64)
            column = columns.index(field.removeprefix("covariates.")) if columns else 0
            at = int(np.argmax(~np.isfinite(array.reshape(len(array), -1)[:, column])))
            raw = values if not columns else covariates[columns[column]]
            mean, scale = (
                (scales.target_mean, scales.target_scale)
                if not columns
                else (scales.covariate_mean[column], scales.covariate_scale[column])
            )
            raise ServiceInputError(
                series_where(i, series_id, field),
                too_large_problem(
                    float(raw[at]),
                    at,
                    float(mean),
                    float(scale),
                    float(np.finfo(np.float64).max),
                    "beyond float64's range",
                ),
            )
    return StreamHistory(target=target, covariates=scaled, calendar=calendar)


def _numbers(
    i: int, series_id: str, field: str, raw: Sequence[float | None] | np.ndarray
) -> np.ndarray:
    values = np.asarray(raw, dtype=np.float64)  # null -> NaN, told apart below (a no-op for
    # the fast path's float64 arrays, which hold no nulls)
    bad = ~np.isfinite(values)
    if bad.any():
        position = int(np.argmax(bad))
        value = float(values[position])
        what = "null" if raw[position] is None else "NaN" if value != value else f"{value}"
        raise ServiceInputError(
            series_where(i, series_id, field),
            f"holds {what} at position {position}; every value must be a finite number",
        )
    return values


@dataclass(frozen=True)
class Scaling:
    """What a float32 overflow's 422 quotes: the raw look-back ((L,) or (L, C)), the position
    of its first value in the list as sent, and the scaler statistics ((C,) for covariates)."""

    raw: np.ndarray
    offset: int
    mean: float | np.ndarray
    scale: float | np.ndarray


def _float32(
    i: int,
    series_id: str,
    field: str,
    scaled: np.ndarray,
    scaling: Scaling,
    columns: Sequence[str] = (),
) -> np.ndarray:
    """The model's float32 input; finite float64 values can still overflow it (|z| > 3e38).
    `columns`: the names of a (L, C) covariate block's columns, one of which the 422 names."""
    out = as_float32(scaled)
    if out is None:
        named = _overflowing(field, scaled, columns, np.float32)
        raise ServiceInputError(
            series_where(i, series_id, named), _too_large(scaled, scaling, columns, named)
        )
    return out


def _too_large(scaled: np.ndarray, scaling: Scaling, columns: Sequence[str], named: str) -> str:
    """The 422's text for a look-back that overflows float32 once scaled (`too_large_problem`,
    the pyfunc's and the /series endpoints' too): the first such value, its position in the
    list as sent, and the range the model takes in the data's units. Only on the error path."""
    column = columns.index(named.removeprefix("covariates.")) if columns else 0
    with np.errstate(over="ignore"):  # (L,) or (L, C) alike, as (L, C)
        beyond = ~np.isfinite(scaled.reshape(len(scaled), -1)[:, column].astype(np.float32))
    at = int(np.argmax(beyond))
    return too_large_problem(
        float(scaling.raw.reshape(len(scaled), -1)[at, column]),
        scaling.offset + at,
        float(np.atleast_1d(scaling.mean)[column]),
        float(np.atleast_1d(scaling.scale)[column]),
        FLOAT32_LARGEST,
        FLOAT32_BEYOND,
    )


def _overflowing(
    field: str, scaled: np.ndarray, columns: Sequence[str], dtype: type[np.floating]
) -> str:
    """`field`, or `covariates.<name>` of the first of `columns` whose scaled values are not
    finite as `dtype`: every other covariate message names the column, and 'covariates'
    alone left a client with several of them guessing. Only on the error path."""
    if not columns:
        return field
    with np.errstate(over="ignore"):
        beyond = ~np.isfinite(scaled.astype(dtype))
    return f"covariates.{columns[int(np.argmax(beyond.any(axis=0)))]}"


def _covariates(i: int, series: SeriesInput, model: ServedModel, n: int) -> dict[str, np.ndarray]:
    known = model.known_covariates
    unknown = sorted(set(series.covariates) - set(known))
    if unknown:
        raise ServiceInputError(
            series_where(i, series.id, "covariates"),
            model.unknown_covariates_problem(unknown),
        )
    missing = [name for name in model.covariates if name not in series.covariates]
    if missing:
        raise ServiceInputError(
            series_where(i, series.id, "covariates"),
            f"missing covariate(s) {missing}; the model reads {list(model.covariates)}",
        )
    out = {}
    for name, raw in series.covariates.items():
        field = f"covariates.{name}"
        if len(raw) != n:
            # longer: most likely its future values (a weather forecast), which no model reads
            future = (
                ": the model reads covariates over the history only, none for the forecast "
                "steps (it was trained on past values alone)"
                if len(raw) > n
                else ""
            )
            raise ServiceInputError(
                series_where(i, series.id, field),
                f"has {plural(len(raw), 'value')}, `values` has {n}; they must be the same "
                f"length{future}",
            )
        out[name] = _numbers(i, series.id, field, raw)
    return out


def _dates(
    i: int, series: SeriesInput, model: ServedModel, n: int, zone: ZoneInfo | None = None
) -> Dates | None:
    """The series' time axis from `start` (+ the model's freq) or `timestamps`, on `zone`'s
    clock when given; None when the series carries neither (allowed unless the model reads
    calendar features)."""
    if series.freq is not None:
        problem = freq_problem(series.freq, model.freq) or _weekday_problem(series, model, zone)
        if problem is not None:
            raise ServiceInputError(series_where(i, series.id, "freq"), problem)
    if series.start is not None and series.timestamps is not None:
        raise ServiceInputError(
            series_where(i, series.id, "timestamps"),
            "give either `start` or `timestamps`, not both",
        )
    field = "timestamps" if series.timestamps is not None else "start"
    where = series_where(i, series.id, field)
    try:
        if series.timestamps is not None:
            return _from_timestamps(i, series.id, series.timestamps, model, n, zone)
        if series.start is not None:
            check_start_span(series.start, n, model.max_horizon, model, where, zone)
            if zone is None:
                return _from_start(series.start, model, n, where)
            start = zoned_start(series.start, zone, where)
            midnight = written_at_skipped_midnight(series.start, start)
            return _from_start(start, model, n, where, skipped_midnight=midnight)
    except ServiceInputError:
        raise  # already says what is wrong and where (it is a ValueError too)
    except (ValueError, OverflowError) as error:  # pandas' datetime range, hours from its edge
        steps = (
            f"the forecast steps of {model.freq!r} after it"
            if series.timestamps is not None
            else f"its {plural(n, 'value')} and {plural(model.max_horizon, 'forecast step')} "
            f"of {model.freq!r}"
        )
        raise axis_error(series.timestamps, series.start, steps, model, where, error) from None
    if model.needs_dates:
        raise ServiceInputError(
            series_where(i, series.id, "start"),
            "this model reads calendar features; give `start` (or `timestamps`)",
        )
    return None


def _weekday_problem(series: SeriesInput, model: ServedModel, zone: ZoneInfo | None) -> str | None:
    """Why the series' `freq`, another spelling of the model's weeks (`week_anchor`: 'W-SUN'
    for '7D', or '7D' for 'W-SUN'), does not name the model's steps from the series' first
    time, which is on another weekday (on the series' clock); None when it does, or when the
    series carries no dates (then `freq` dates nothing)."""
    if series.freq is None or (weekday := week_anchor(series.freq, model.freq)) is None:
        return None
    if series.start is not None:
        first, field = series.start, "`start`"
    elif series.timestamps:
        first, field = series.timestamps[0], "`timestamps`[0]"
    else:
        return None
    if zone is not None and first.tzinfo is not None:
        try:
            first = first.astimezone(zone)
        except (OverflowError, ValueError):  # the range checks after this one say it
            return None
    if first.weekday() == weekday:
        return None
    return (
        f"{shown(series.freq)} names the model's {model.freq!r} steps only from a "
        f"{WEEKDAYS[weekday]}, and {field} {first.isoformat()} is a "
        f"{WEEKDAYS[first.weekday()]}; send freq {model.freq!r} (or none)"
    )


def _from_start(
    start: datetime, model: ServedModel, n: int, where: str, *, skipped_midnight: bool = False
) -> Dates:
    """n + H_max steps of the model's frequency from `start`: what `local_steps` gives (and
    ForecastPredictor.predict_frame uses), by integer arithmetic for fixed-length steps.
    `skipped_midnight`: local_steps' (the caller wrote `start` as the midnight a change
    skipped: training.validation.written_at_skipped_midnight)."""
    horizon, offset = model.max_horizon, model.offset
    first_ns = _naive_ns(start)  # the common case, without building a pd.Timestamp
    if first_ns is not None and isinstance(offset, pd.offsets.Tick):
        tz = None
    else:
        first = pd.Timestamp(start).as_unit("ns")
        check_on_grid(first, model, where)
        first_ns, tz = first.value, first.tz
    if isinstance(offset, pd.offsets.Tick):
        steps = np.arange(n + horizon, dtype=np.int64)
        last = first_ns + offset.nanos * (n + horizon - 1)  # Python integers: no wrapping
        if last > _MAX_NS:
            raise ServiceInputError(where, span_problem(start, n, horizon, model))
        every = first_ns + offset.nanos * steps
    else:  # calendar offsets (days across DST, months, business days): local calendar steps
        laid = local_steps(first, n + horizon, offset, skipped_midnight=skipped_midnight)
        every = laid.as_unit("ns").asi8
    return Dates(every[:n], every[n - model.lookback :], tz, model.lookback)


def zoned_start(start: datetime, zone: ZoneInfo, where: str) -> pd.Timestamp:
    """`start` on `zone`'s clock (`on_zone_clock`)."""
    return on_zone_clock(pd.DatetimeIndex([start]), zone, where, positions=False)[0]


def on_zone_clock(
    stamps: pd.DatetimeIndex, zone: ZoneInfo, where: str, *, positions: bool = True
) -> pd.DatetimeIndex:
    """`stamps` on `zone`'s clock: zoned ones converted, naive ones read as its local times;
    a 422 at `where` (naming the position, with `positions`) for a naive time that a
    daylight-saving change skips or repeats there (no guess: the caller gives its offset)."""
    if stamps.tz is None and (problem := local_time_problem(stamps, zone)) is not None:
        k, why = problem
        # an offset on that one timestamp alone is the next 422 (`check_offsets_alike`)
        every = (
            ", and every other timestamp with its own: timestamps must all carry a UTC offset "
            "or none"
        )
        raise ServiceInputError(where, f"position {k}: {why}{every}" if positions else why)
    return in_zone(stamps, zone).as_unit("ns")


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_MIN_NS, _MAX_NS = pd.Timestamp.min.value, pd.Timestamp.max.value


def _naive_ns(start: datetime) -> int | None:
    """Epoch nanoseconds of a naive datetime (what pd.Timestamp(start).value is, without
    building one); None for a zoned one or one outside pandas' range."""
    if start.tzinfo is not None:
        return None
    ns = (start - _EPOCH) // _MICROSECOND * 1000
    return ns if _MIN_NS <= ns <= _MAX_NS else None


_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST, _LATEST = pd.Timestamp.min.as_unit("ns"), pd.Timestamp.max.as_unit("ns")


def epoch_ns(t: datetime) -> int:
    """Epoch nanoseconds of `t` (its instant when zoned, its wall time when naive) by integer
    arithmetic, so that a time outside pandas' nanosecond range can be told so."""
    if isinstance(t, pd.Timestamp):
        if t.unit == "ns":
            return int(t.value)
        t = t.to_pydatetime()
    base = _EPOCH if t.tzinfo is None else _EPOCH_UTC
    return (t - base) // _MICROSECOND * 1000


@functools.lru_cache(maxsize=256)
def latest_first(count: int, offset: BaseOffset) -> pd.Timestamp | None:
    """The latest time from which `count` steps of `offset` (the first at that time) end by
    pd.Timestamp.max, the last time a nanosecond axis holds; None when none does."""
    try:
        if isinstance(offset, pd.offsets.Tick):
            first = _LATEST - pd.Timedelta(offset.nanos * (count - 1), unit="ns")
            return first if first >= _EARLIEST else None
        # in microseconds: pandas' anchored offsets (weeks, month ends) overflow nanoseconds
        # when rolled from the last one
        latest = _LATEST.as_unit("us")
        first = offset.rollback(latest) - (count - 1) * offset
    except (OverflowError, ValueError):  # more steps than the whole range holds
        return None
    if first < _EARLIEST:
        return None
    lost = _LATEST - latest.as_unit("ns")  # the nanoseconds after the last microsecond
    on_time = first.time() == latest.time()
    return first.as_unit("ns") + lost if on_time else first.as_unit("ns")


@functools.lru_cache(maxsize=256)
def clock_range(tz: tzinfo | None) -> tuple[int, int]:
    """The first and last instants (epoch ns) that pandas holds on `tz`'s clock: those whose
    instant and time on that clock both lie in its nanosecond range (pd.Timestamp.min to
    .max). A zoned time is formatted, and its calendar read, through its time on the clock,
    so a clock ahead of UTC (Asia/Tokyo, +02:00) runs out before the instants do, and one
    behind it (America/New_York) starts after them: an instant past either edge was a 500 when
    the answer was written (pandas' OutOfBoundsDatetime). Naive times and UTC: the whole
    range. The clock's offsets at the two edges, by Python's datetime (which holds times
    there on any clock, where pandas cannot): no zone changes its offset within a day of
    either edge."""
    if tz is None:
        return _MIN_NS, _MAX_NS
    first, last = (
        edge.to_pydatetime(warn=False).replace(tzinfo=UTC).astimezone(tz).utcoffset()
        for edge in (_EARLIEST, _LATEST)
    )
    behind = max(-(first or timedelta(0)), timedelta(0)) // _MICROSECOND * 1000
    ahead = max(last or timedelta(0), timedelta(0)) // _MICROSECOND * 1000
    return _MIN_NS + behind, _MAX_NS - ahead


@functools.lru_cache(maxsize=256)
def latest_on_clock(count: int, offset: BaseOffset, tz: tzinfo | None) -> pd.Timestamp | None:
    """`latest_first` for times on `tz`'s clock: the latest instant (naive, as latest_first
    gives it) from which `count` steps of `offset` end by the last one that clock holds
    (`clock_range`); None when none does. Cached, as `latest_first` and `clock_range` are: it
    runs for every zoned series of a POST /forecast, on keys they already hash (an int, a
    pandas offset, a tzinfo; equal ones give equal bounds), and a Timestamp is immutable."""
    latest = latest_first(count, offset)
    if latest is None or tz is None:
        return latest
    earliest, last = clock_range(tz)
    moved = latest - pd.Timedelta(_MAX_NS - last, unit="ns")
    return moved if moved.value >= earliest else None


def _clock_note(tz: tzinfo | None, *, start: bool) -> str:
    """What a bound moved in by `tz`'s `clock_range` says of that clock: nothing where the
    clock holds the whole range at the edges the message names (`start`: both, else the end)."""
    earliest, latest = clock_range(tz)
    if tz is None or (latest == _MAX_NS and (not start or earliest == _MIN_NS)):
        return ""
    if isinstance(tz, ZoneInfo):
        return f", both as instants and as times on {tz.key}'s clock"
    offset = _LATEST.to_pydatetime(warn=False).replace(tzinfo=UTC).astimezone(tz).utcoffset()
    return f", both as instants and as times at their UTC offset ({offset_text(offset)})"


def offset_text(offset: timedelta | None) -> str:
    """+01:00 (+00:19:32 with seconds), as Python writes a time's offset; a cut of the last six
    characters of a time's text gave ':19:32'."""
    stamp = datetime(2000, 1, 1, tzinfo=timezone(offset or timedelta(0))).isoformat()
    return stamp[len("2000-01-01T00:00:00") :]


def _shown(bound: pd.Timestamp, zoned: bool, *, lower: bool = False) -> str:
    """A bound as the caller's times are written: with +00:00 for zoned ones (the bounds are
    instants), naive for naive ones; to the microsecond, the finest time a request can give
    (service.schemas), rounded into the range (`lower`: up), so that the bound itself is a
    time the caller can send (1677-09-21T00:12:43.145225, not .145224193)."""
    sendable = bound.ceil("us") if lower else bound.floor("us")
    return (sendable.tz_localize("UTC") if zoned else sendable).isoformat()


def span_problem(start: datetime, n: int, horizon: int, model: ServedModel) -> str:
    """Why `start` cannot date `n` values (and `horizon` forecast steps after them): where
    `start` must lie for all of them to be times a nanosecond axis holds (pd.Timestamp.min
    to .max)."""
    tz = start.tzinfo
    zoned = tz is not None
    steps = plural(n, "value") + (f" and {plural(horizon, 'forecast step')}" if horizon else "")
    latest = latest_on_clock(n + horizon, model.offset, tz)
    first = pd.Timestamp(clock_range(tz)[0], unit="ns")
    earliest, end = _shown(first, zoned, lower=True), _shown(_LATEST, zoned)
    note = _clock_note(tz, start=True)
    if latest is None:
        return (
            f"{start.isoformat()} cannot start {steps} of {model.freq!r}: they span more than "
            f"the times the service can date, {earliest} to {end}{note}"
        )
    return (
        f"{start.isoformat()} is out of range: `start` must lie between {earliest} and "
        f"{_shown(latest, zoned)}, so that its {steps} of {model.freq!r} end by {end}, the "
        f"latest time the service can date{note}"
    )


def check_start_span(
    start: datetime,
    n: int,
    horizon: int,
    model: ServedModel,
    where: str,
    zone: tzinfo | None = None,
) -> None:
    """A 422 at `where` (`span_problem`) unless `n` values from `start` and `horizon` forecast
    steps after them all lie in pandas' nanosecond range, on `start`'s clock (`clock_range`).
    A start that a `timezone` reads (`zone`) is checked as read there (`on_clock`): its
    instant, which a clock behind UTC puts hours later than the same time written naive, and
    its time on the clock, which one ahead of UTC puts later than the instant."""
    if zone is not None:
        start = on_clock(start, zone)
    ns = epoch_ns(start)
    tz = start.tzinfo
    if tz is None:  # naive (the fast path's): the whole range, as before clocks were bounded
        latest, earliest = latest_first(n + horizon, model.offset), _MIN_NS
    else:
        latest, earliest = latest_on_clock(n + horizon, model.offset, tz), clock_range(tz)[0]
    if latest is None or not earliest <= ns <= latest.value:
        raise ServiceInputError(where, span_problem(start, n, horizon, model))


def check_stamps_range(stamps: Sequence[datetime], where: str) -> None:
    """A 422 at `where` naming the first timestamp outside pandas' nanosecond range."""
    for k, stamp in enumerate(stamps):
        if not _MIN_NS <= epoch_ns(stamp) <= _MAX_NS:
            zoned = stamp.tzinfo is not None
            raise ServiceInputError(
                where,
                f"position {k} ({stamp.isoformat()}) is out of range: timestamps must lie "
                f"between {_shown(_EARLIEST, zoned, lower=True)} and {_shown(_LATEST, zoned)}, "
                "the times the service can date",
            )


def check_first_stamp(stamps: Sequence[datetime], index: pd.DatetimeIndex, where: str) -> None:
    """A 422 at `where` when the first of `stamps`, zoned times on the axis' clock (`index`'s:
    a `timezone`'s, or without one the UTC offset they carry), has an instant in pandas' range
    but no time on that clock, behind UTC (`clock_range`). For answers that write the first
    timestamp (the /series endpoints' `first_timestamp`): it was a 500 there, after the series
    was stored. POST /forecast writes only the forecast steps, whose range `check_last_stamp`
    checks."""
    if index.tz is not None and len(index) and index.asi8[0] < clock_range(index.tz)[0]:
        first, zone = stamps[0], index.tz
        earliest = pd.Timestamp(clock_range(zone)[0], unit="ns")
        shown = on_clock(first, zone).isoformat()
        raise ServiceInputError(
            where,
            f"position 0 ({first.isoformat()}, on its clock {shown}) is out of range: "
            f"timestamps must lie between {_shown(earliest, True, lower=True)} and "
            f"{_shown(_LATEST, True)}, the times the service can date"
            + _clock_note(zone, start=True),
        )


def on_clock(t: datetime, tz: tzinfo) -> datetime:
    """`t` read on `tz`'s clock (naive: a time on that clock), by Python's datetime, which
    holds the times on any clock that pandas' nanosecond range does not (pandas raises
    OutOfBoundsDatetime for a time there, which the range checks are to say in words)."""
    try:
        return (t if t.tzinfo is not None else t.replace(tzinfo=tz)).astimezone(tz)
    except OverflowError:  # within hours of year 1 or 9999: out of range on any clock, as is
        return t


def last_stamp_problem(
    stamps: Sequence[datetime],
    horizon: int,
    model: ServedModel,
    clock: tzinfo | None = None,
) -> str | None:
    """Why the last of `stamps` cannot be followed by `horizon` forecast steps of the model's
    frequency that all lie in pandas' nanosecond range on the axis' clock, or None. `clock`:
    the axis' zone when zoned (a `timezone`'s, UTC, an offset), on which the last timestamp's
    instant and its time there are what must fit (`clock_range`): a naive time that a
    `timezone` reads is an instant hours later or earlier than the same time written naive."""
    last = stamps[-1]
    at = last if clock is None else on_clock(last, clock)
    tz = at.tzinfo
    if tz is None:  # naive (the fast path's): the whole range, as before clocks were bounded
        latest = latest_first(horizon + 1, model.offset)
    else:
        latest = latest_on_clock(horizon + 1, model.offset, tz)
    if latest is not None and epoch_ns(at) <= latest.value:
        return None
    zoned = tz is not None
    shown = last.isoformat()
    if isinstance(tz, ZoneInfo) and at.isoformat() != shown:  # a `timezone` read it
        shown = f"{shown}, on {tz.key}'s clock {at.isoformat()}"
    bound = "" if latest is None else f" on or before {_shown(latest, zoned)}"
    return (
        f"position {len(stamps) - 1} ({shown}) is out of range: the last timestamp "
        f"must lie{bound} so that the {horizon:,} forecast steps of {model.freq!r} after it end "
        f"by {_shown(_LATEST, zoned)}, the latest time the service can date"
        + _clock_note(tz, start=False)
    )


def check_last_stamp(
    stamps: Sequence[datetime],
    horizon: int,
    model: ServedModel,
    where: str,
    clock: tzinfo | None = None,
) -> None:
    """A 422 at `where` (`last_stamp_problem`) when the forecast steps would run out of range.
    `clock`: the zone of the axis that reads `stamps` (`increasing_axis`), when zoned."""
    if (problem := last_stamp_problem(stamps, horizon, model, clock)) is not None:
        raise ServiceInputError(where, problem)


def axis_error(
    stamps: Sequence[datetime] | None,
    start: datetime | None,
    steps: str,
    model: ServedModel,
    where: str,
    error: Exception,
) -> ServiceInputError:
    """Pandas' range error in the service's words (its own text goes to the log only): the
    checks above compare a zone's local times as instants, so steps laid on its clock a few
    hours from the edge of pandas' nanosecond range can still fail there. `steps` says which
    steps (e.g. "its 12 values and 4 forecast steps of 'D'")."""
    logger.info("laying a time axis at %s failed: %s", where, error)
    given = start if stamps is None else stamps[-1]
    assert given is not None
    late = given.year >= 1970
    if stamps is not None and not late:
        given = stamps[0]
    named = given.isoformat()
    if stamps is not None:
        named = f"position {len(stamps) - 1 if late else 0} ({named})"
    edge = (
        f"end after {_shown(_LATEST, True)}, the latest"
        if late
        else f"begin before {_shown(_EARLIEST, True, lower=True)}, the earliest"
    )
    return ServiceInputError(
        where,
        f"{named} is out of range: on its zone's clock {steps} would {edge} time the service "
        "can date",
    )


def check_on_grid(first: pd.Timestamp, model: ServedModel, where: str) -> None:
    """A start between a calendar frequency's steps is a 422 at `where` (training's
    `off_grid` says why); `timestamps` off the grid are refused alike."""
    if (problem := off_grid(first, model.offset, model.freq)) is not None:
        raise ServiceInputError(where, problem)


def check_offsets_alike(stamps: Sequence[datetime], where: str) -> None:
    """A 422 at `where` when some of `stamps` carry a UTC offset and others none, naming the
    first that differs from position 0. `increasing_axis` says it before any zone reads the
    times, in words taken from the request alone: no zone makes such a list readable."""
    zoned = [stamp.tzinfo is not None for stamp in stamps]
    if all(zoned) or not any(zoned):
        return
    k = zoned.index(not zoned[0])
    has = ("carries a UTC offset", "none") if zoned[k] else ("has none", "one")
    raise ServiceInputError(
        where,
        f"position {k} ({stamps[k].isoformat()}) {has[0]} and position 0 "
        f"({stamps[0].isoformat()}) {has[1]}; timestamps must all carry a UTC offset or none",
    )


def stamps_alone_error(stamps: Sequence[datetime], where: str) -> ServiceInputError | None:
    """What `increasing_axis` finds wrong with `stamps` before any zone reads them, from the
    request alone (the same check, the same words, whatever zone then reads the rest): some
    with a UTC offset and some without (`check_offsets_alike`), or times outside those the
    service can date (`check_stamps_range`). None when neither is."""
    try:
        check_offsets_alike(stamps, where)
        check_stamps_range(stamps, where)
    except ServiceInputError as error:
        return error
    return None


def increasing_axis(
    stamps: list[datetime],
    n: int,
    where: str,
    zone: ZoneInfo | None = None,
    endpoint: ClockEndpoint = "forecast",
) -> pd.DatetimeIndex:
    """`stamps` as one ns DatetimeIndex of `n` strictly increasing instants, else a 422 at
    `where` naming the first offending position. Zoned stamps with different UTC offsets (a
    local clock across a daylight-saving change, written as ISO strings) are read in UTC,
    the one axis they share; mixing zoned and naive stamps stays an error. With `zone` the
    axis is on that zone's clock (`on_zone_clock`). `endpoint`: whose ways of naming a zone
    a hint offers (ZONE_WAYS)."""
    if len(stamps) != n:
        raise ServiceInputError(
            where,
            f"has {len(stamps)} {'entry' if len(stamps) == 1 else 'entries'}, `values` has {n}; "
            "they must be the same length",
        )
    try:
        index = pd.DatetimeIndex(stamps)
    except (ValueError, TypeError) as error:  # zoned and naive mixed, or several offsets
        check_offsets_alike(stamps, where)
        if not stamps or stamps[0].tzinfo is None:  # all naive, yet unreadable: the caller's
            raise ValueError(f"naive timestamps pandas cannot read: {error}") from error
        index = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
    if index.unit != "ns":  # datetimes (microseconds): years 1-9999, beyond nanoseconds'
        check_stamps_range(stamps, where)
        index = index.as_unit("ns")
    if zone is not None:
        index = on_zone_clock(index, zone, where)
    steps = np.diff(index.asi8)
    if (steps <= 0).any():
        k = int(np.argmax(steps <= 0)) + 1
        back = int(index.asi8[k - 1] - index.asi8[k])
        naive = index.tz is None and zone is None
        repeated = (
            # dates alone (a spreadsheet's date format): no clock change repeats midnight
            # throughout, and asking about one sent the caller looking for it
            "; every timestamp is a midnight, as dates without a time of day are read: give "
            "each value's date and time, or one value a date"
            if naive and not (index.asi8 % _DAY_NS).any()
            else "; local times that a daylight-saving change repeats (the hour after it is "
            f"written again)? Send them with their UTC offsets, and name the zone "
            f"({ZONE_WAYS[endpoint]}); or merge the rows of each repeated time as the training "
            "loader does (its duplicates policy: their mean by default), one row a step"
            if naive and back < _HOUR_NS
            else ""
        )
        raise ServiceInputError(
            where,
            f"must be strictly increasing; position {k} ({index[k].isoformat()}) is not after "
            f"position {k - 1} ({index[k - 1].isoformat()}){repeated}",
        )
    return index


_HOUR_NS = 3_600_000_000_000
_DAY_NS = 24 * _HOUR_NS
# How a request names the zone of its times, by endpoint: POST /forecast takes `timezone` or
# an Arrow body's zoned timestamp type; the /series endpoints take JSON only, and a series
# keeps the zone it was created with (a later request may not give it another).
ZONE_WAYS = {
    "forecast": "`timezone`, or an Arrow timestamp type with the zone",
    "series": "`timezone`, given when the series is created; these endpoints take JSON only",
}


def shifted_hour(
    off_ns: int, index: pd.DatetimeIndex, zone: ZoneInfo | None, endpoint: ClockEndpoint
) -> str:
    """Where zoned times (one offset, or UTC) with no `timezone` land an hour off the grid, the
    clause saying what that likely is: local days, weeks or months across a daylight-saving
    change, written in UTC (a local midnight is 22:00Z, then 23:00Z), whose step is 23 or 25
    hours there; the zone reads them on its clock. "" otherwise."""
    if index.tz is None or zone is not None or abs(off_ns) != _HOUR_NS:
        return ""
    return (
        f"; it is an hour {'later' if off_ns > 0 else 'earlier'} than the grid: local days "
        "(or weeks, months) across a daylight-saving change, written in UTC or one UTC "
        "offset? Name their zone in `timezone` (e.g. 'Europe/London'), or send them as naive "
        f"local times{SHIFTED_OR[endpoint]}"
    )


SHIFTED_OR = {
    "forecast": ", or as Arrow with the zone",
    "series": " (a series keeps the zone it was created with; these endpoints take JSON only)",
}


def skipped_hour(
    index: pd.DatetimeIndex, k: int, zone: ZoneInfo | None, endpoint: ClockEndpoint
) -> str:
    """Where naive times jump one hour ahead at position k (01:00 then 03:00 on an hourly
    axis), the clause saying what that likely is: the hour a daylight-saving change skips on
    a local clock, which the zone places without a value made up for it."""
    if index.tz is not None or zone is not None or k < 1:
        return ""
    steps = np.diff(index.asi8[: k + 1])
    if len(steps) < 2 or int(steps[-1]) - int(np.median(steps[:-1])) != _HOUR_NS:
        return ""
    return (
        "if these are local times and a daylight-saving change skipped that hour, name the zone "
        f"({ZONE_WAYS[endpoint]}) and send them as they are"
    )


# What a request whose offsets change and name no zone can send instead, by what the endpoint
# takes: POST /forecast a `timezone`, Arrow with the zone in its timestamp type, or naive
# local times; the /series endpoints (and their WebSocket) a `timezone` or naive local times,
# JSON only (no Arrow).
CLOCK_ADVICE = {
    "forecast": (
        "name the zone in `timezone` (e.g. 'Europe/London'), send the series as Arrow with its "
        "zone (timestamp[ns, tz=...]), or as naive local times (`start` or `timestamps` "
        "without an offset)"
    ),
    "series": (
        "name the zone in `timezone` (e.g. 'Europe/London') when the series is created, or "
        "send naive local times (`start` or `timestamps` without an offset); these endpoints "
        "take JSON only (no Arrow)"
    ),
}
ClockEndpoint = Literal["forecast", "series"]


def calendar_words(freq: str) -> str:
    """The calendar features a model at `freq` reads, in words ('hour of day, day of week,
    day of year' hourly; 'day of year' monthly): the clock 422s named hour and weekday for
    every model, a monthly one's too."""
    return ", ".join(period.replace("_", " ") for period in calendar_periods(freq))


def check_clock(
    stamps: list[datetime],
    index: pd.DatetimeIndex,
    model: ServedModel,
    where: str,
    *,
    endpoint: ClockEndpoint,
) -> None:
    """Timestamps with several UTC offsets and no zone (ISO texts across a daylight-saving
    change, read in UTC by `increasing_axis`) for a model whose calendar features read a
    local clock: the offsets date the history, but name no zone for the forecast steps, and
    read in UTC the hours are off by the offset (an audit's 15-minute model answered as if
    09:00 were 13:00). A 422 that says how to send them, by what `endpoint` takes
    (`CLOCK_ADVICE`); a model that learnt UTC hours reads them as they are."""
    if not model.needs_dates or model.calendar_clock == CLOCK_UTC:
        return
    if index.tz is None or str(index.tz) != "UTC":
        return  # naive, one zone (Arrow's timestamp[ns, tz=...]) or one offset: a clock
    offsets = {stamp.utcoffset() for stamp in stamps}
    if len(offsets) > 1:
        raise ServiceInputError(
            where,
            f"holds {len(offsets)} different UTC offsets (a daylight-saving change) and no "
            f"zone: this model reads calendar features ({calendar_words(model.freq)}) on the "
            "local clock it was trained on, which offsets alone do not give for the forecast "
            f"steps; {CLOCK_ADVICE[endpoint]}",
        )


def _from_timestamps(
    i: int,
    series_id: str,
    stamps: list[datetime],
    model: ServedModel,
    n: int,
    zone: ZoneInfo | None = None,
) -> Dates:
    lookback, horizon, offset = model.lookback, model.max_horizon, model.offset
    where = series_where(i, series_id, "timestamps")
    index = increasing_axis(stamps, n, where, zone)
    check_last_stamp(stamps, horizon, model, where, index.tz)
    if zone is None:  # with one, the offsets' zone is named: nothing to refuse
        check_clock(stamps, index, model, where, endpoint="forecast")
    ns = index.asi8
    window = ns[-lookback:]
    if isinstance(offset, pd.offsets.Tick):
        expected = window[0] + offset.nanos * np.arange(lookback + horizon, dtype=np.int64)
    else:
        expected = steps_along(index[-lookback:], lookback + horizon, offset).as_unit("ns").asi8
    off = np.flatnonzero(expected[:lookback] != window)
    if off.size:
        k = n - lookback + int(off[0])
        wanted = as_index(expected[int(off[0]) : int(off[0]) + 1], index.tz)[0]
        offsets = {stamp.utcoffset() for stamp in stamps[-lookback:]}
        utc = (
            "; timestamps with different UTC offsets are read in UTC, where a local calendar "
            "step (a day across a daylight-saving change) is not one length: name the zone "
            "in `timezone`, or send them as naive local times, or as Arrow with the zone"
            if len(offsets) > 1 and zone is None
            else ""
        )
        if not utc and window[int(off[0])] in expected:  # on the grid, a step or more late
            # what the user must do to the history: the service neither fills nor resamples
            skipped = skipped_hour(index, k, zone, "forecast")
            utc = (
                "; a step is missing there: send the history on the model's grid, the missing "
                "steps filled as the training loader fills gaps (its fill policy)"
                + (f"; or, {skipped}" if skipped else "")
            )
        elif not utc:
            shift = int(window[int(off[0])] - expected[int(off[0])])
            utc = shifted_hour(shift, index, zone, "forecast") or (
                "; it is not on the model's grid: resample the history to the model's frequency"
            )
        raise ServiceInputError(
            where,
            f"the last {lookback} must be spaced at the model's frequency {model.freq!r}; "
            f"position {k} is {index[k].isoformat()}, expected {wanted.isoformat()}{utc}",
        )
    return Dates(ns, expected, index.tz, lookback)

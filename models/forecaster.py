"""Forecasters: one interface over the uRNN, its recurrent and linear rivals, naive baselines.

    config = ForecasterConfig(kind="urnn", lookback=720, horizon=96, segment_length=24)
    model = build_forecaster(config)
    quantiles = model(past_target)          # (B, L) -> (B, H, Q), in the input's scale
    point = model.point_forecast(past_target)  # (B, H): the 0.5 quantile

References:
1) Arjovsky, Shah & Bengio, "Unitary Evolution Recurrent Neural Networks", ICML 2016 -- the
   encoder (`models.urnn.URNN`).
2) Lin et al., "SegRNN: Segment Recurrent Neural Network for Long-Term Time Series
   Forecasting", 2023, arXiv:2308.11200 -- the levers that make a recurrent forecaster
   competitive on long horizons: segment inputs (L / seg recurrent steps instead of L), all
   horizon steps emitted at once, per-window normalisation, channel independence.
3) Zeng, Chen, Zhang & Xu, "Are Transformers Effective for Time Series Forecasting?", AAAI
   2023 (NLinear, DLinear) -- subtract the window's last value, one linear map L -> H;
   DLinear's moving-average trend/remainder split.
4) Kim et al., "Reversible Instance Normalization for Accurate Time-Series Forecasting against
   Distribution Shift" (RevIN), ICLR 2022 -- normalise each window by its own statistics and
   undo it on the output.
5) Olivares et al., NeuralForecast -- capability flags as class attributes, one contract test
   over every model.

Every forecaster answers the same call:

    forward(past_target (B, L), past_covariates (B, L, C) | None,
            past_calendar (B, L, K) | None, future_calendar (B, H, K) | None) -> (B, H, Q)

and it reads top to bottom: normalise the look-back of the target by the window's own
statistics, run the network in that normalised space, build monotone quantiles, undo the
normalisation. The output is therefore in the scale of `past_target` (for the training
pipeline: the train-only z-scores of `training.split.StandardScaler`).

Decisions and why:
- Normalisation (`ForecasterConfig.normalisation`): `instance` = (x - mean) / std of the
  target's look-back, RevIN without its affine pair: the head already has a bias and a scale
  per output, so the affine pair adds nothing for one target, and leaving it out makes the
  model exactly equivariant: forecasting a x + b (a > 0) gives a f(x) + b. `last` = subtract
  the window's last value (NLinear; equivariant to shifts only). `none`. Covariates are not
  normalised per window: they come globally z-scored from the data stage.
- Quantiles are built monotone by construction: the head emits, per horizon step, the median
  and Q - 1 unconstrained gaps; quantiles above the median are the median plus a cumulative
  sum of softplus(gap), those below the median minus one. Unlike sorting, every output keeps
  its identity during training (sorting swaps which raw output answers which quantile when two
  cross, so their losses swap too), there is no crossing to repair at inference, and the
  median is one raw output, so an MSE term on it (training.fit.FitConfig.mse_weight) trains
  exactly the point forecast. `0.5` must be among the quantiles: the point forecast is it.
- Segments: the recurrent encoders read the look-back as L / segment_length steps, each the
  flattened rows of one segment (target, covariates and calendar features of those rows).
  `lookback` must be a multiple of `segment_length`: padding would feed invented values into
  the first step, and the look-back is chosen once per model, so a clear error is kinder.
- Multivariate data is handled channel-independently by the data stage
  (`training.windows.WindowConfig.channel_independent` in the ETT benchmark,
  `training.data.channels_as_series` for `urnn train --channel-independent`): each channel
  becomes its own univariate series and one shared model forecasts them all; the model itself
  sees only univariate targets (with optional covariates when channels are not independent).
- The naive baselines are parameter-free modules with the same call. Their quantiles are the
  point forecast plus per-step offsets, stored as a buffer (so they round-trip through the
  state dict): zero until `calibrate_offsets` sets them to empirical quantiles of the
  normalised training residuals (training.fit does this); the median offset stays 0, so the
  point forecast is the textbook baseline.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.urnn import (
    RECURRENCE_KINDS,
    URNN,
    InputShapeError,
    RecurrenceKind,
    UnitaryKind,
    URNNConfig,
)
from urnn_forecast.field_types import not_one_of, shown

logger = logging.getLogger(__name__)

ForecasterKind = Literal[
    "urnn", "urnn-full", "urnn-stream", "lstm", "gru", "linear", "repeat_last", "seasonal_naive"
]
FORECASTER_KINDS: tuple[ForecasterKind, ...] = (
    "urnn",
    "urnn-full",
    "urnn-stream",
    "lstm",
    "gru",
    "linear",
    "repeat_last",
    "seasonal_naive",
)
Normalisation = Literal["instance", "last", "none"]
NORMALISATIONS: tuple[Normalisation, ...] = ("instance", "last", "none")
Decoder = Literal["direct", "pmf"]
DECODERS: tuple[Decoder, ...] = ("direct", "pmf")

# A look-back whose std is below this is treated as constant: dividing by a tiny std would blow
# rounding noise up to huge normalised values. Clamped, not added, so that windows with a real
# spread are normalised exactly (which keeps instance normalisation exactly scale-equivariant).
MIN_WINDOW_STD = 1e-5
# Recurrent steps the uRNN encoder reads at a time without autograd (URNNEncoder.forward):
# bounds an evaluation batch's states at B x 512 x 2n floats, whatever the look-back.
ENCODER_CHUNK_STEPS = 512
# Width of the linear bottleneck that the flattened future calendar features (H x K numbers)
# pass through before the head: a full H*K -> H*Q map would be ~170k weights at H = 96, K = 6.
FUTURE_CALENDAR_WIDTH = 16

CHECKPOINT_CONFIG = "config.json"
CHECKPOINT_WEIGHTS = "weights.pt"
CHECKPOINT_FORMAT = 1


# Bounds of a calibrated interval-gap multiplier (Forecaster.calibrate_gaps)
GAP_SCALE_MIN, GAP_SCALE_MAX = 0.05, 20.0


class ForecasterConfigError(ValueError):
    """A ForecasterConfig field holds a value no forecaster can be built with; `field` names
    it where one field alone is wrong (callers add hints in their own terms)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CalendarFrequencyError(ValueError):
    """A frequency string that is not a pandas offset alias."""


# -----------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class ForecasterConfig:
    """Everything needed to rebuild a forecaster; JSON round trip via to_dict / from_dict."""

    kind: ForecasterKind = "urnn"
    lookback: int = 336  # L: input rows per window
    horizon: int = 96  # H: steps forecast at once
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)  # strictly increasing, must include 0.5
    # uRNN: n complex units (state 2n reals); LSTM/GRU: n units. Left unset (None, or null in
    # JSON): the kind's own default, DEFAULT_HIDDEN of its class, filled in by __post_init__,
    # so that every built config (and every stored config.json) holds a number.
    hidden_size: int = None  # type: ignore[assignment]
    # Recurrent kinds read the look-back as lookback / segment_length steps (must divide).
    segment_length: int = 24
    normalisation: Normalisation = "instance"
    n_past_covariates: int = 0  # C: covariate columns of the look-back (recurrent kinds only)
    # K: calendar features per row (see calendar_features); fed for the look-back per step and
    # for the horizon to the head. Recurrent kinds only.
    n_calendar: int = 0
    # seasonal_naive: repeat the last season of this many rows. None: not chosen yet;
    # `urnn train` sets the data's season (training.seasonality), a forecaster needs a number.
    season_length: int | None = None
    dropout: float = 0.0  # on the encoder state (recurrent) or the normalised input (linear)
    # linear: 0 = NLinear (one map); odd k >= 3 = DLinear, separate maps for the k-row moving
    # average (trend) and the remainder.
    decomposition_kernel: int = 0
    recurrence: RecurrenceKind = "fast"  # uRNN kinds: which implementation of the same loop
    # Recurrent kinds: add a linear map of the normalised look-back to the median (LSTNet's
    # autoregressive "highway"), so the encoder learns what a linear model cannot.
    linear_skip: bool = False
    # Recurrent kinds (not urnn-stream): "direct" = one linear head from the encoder's last
    # state to all H x Q outputs; "pmf" = SegRNN's parallel multi-step decoding: one more
    # recurrent step of the same cell from that state per output segment of segment_length rows
    # (all in parallel), its input a learned embedding of the segment's position (+ channel),
    # then one shared linear map to the segment's rows x Q. The horizon need not divide.
    decoder: Decoder = "direct"
    # > 0 (decoder="pmf" only): a learned embedding per channel id 0 .. n_channels - 1 added to
    # the decoder's input; the forecaster then needs the id of each window's channel
    # (`channel=` in forward; training.windows passes it). 0: no channel identity.
    n_channels: int = 0
    # > 1: a deep ensemble (models.ensemble): this many members of this config, trained alone
    # with seeds seed, seed + 1, ... (training.fit) and averaged quantile by quantile; one
    # gap calibration on the average. K times the training and the forward. Trainable,
    # windowed kinds only.
    ensemble: int = 1
    # Every forecast (each quantile) is at least 0 in the data's original units: set by `urnn
    # train` where the target has no negative value in the spans the model learns from (demand,
    # counts, energy: a forecast below 0 is always wrong there and costs error on every metric;
    # TrainConfig.non_negative). Applied where forecasts are un-scaled (`floor_at_zero`).
    non_negative: bool = False

    def __post_init__(self) -> None:
        # JSON hands over lists; keep a tuple so the config stays hashable.
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        if type(self.non_negative) is not bool:
            raise ForecasterConfigError(
                f"non_negative must be true or false; got {self.non_negative!r}",
                field="non_negative",
            )
        _choice("kind", self.kind, FORECASTER_KINDS)
        _choice("normalisation", self.normalisation, NORMALISATIONS)
        _choice("recurrence", self.recurrence, RECURRENCE_KINDS)
        _choice("decoder", self.decoder, DECODERS)
        if self.hidden_size is None:
            object.__setattr__(self, "hidden_size", FORECASTERS[self.kind].DEFAULT_HIDDEN)
        for name in ("lookback", "horizon", "segment_length"):
            _integer(name, getattr(self, name), minimum=1)
        _integer("hidden_size", self.hidden_size, minimum=1, maximum=MAX_HIDDEN_SIZE)
        _integer("ensemble", self.ensemble, minimum=1, maximum=MAX_ENSEMBLE)
        if self.season_length is not None:
            _integer("season_length", self.season_length, minimum=1)
        for name in ("n_past_covariates", "n_calendar", "decomposition_kernel", "n_channels"):
            _integer(name, getattr(self, name), minimum=0)
        q = self.quantiles
        if (
            not q
            or any(not 0.0 < v < 1.0 for v in q)
            or any(a >= b for a, b in itertools.pairwise(q))
        ):
            raise ForecasterConfigError(
                f"quantiles must be a non-empty, strictly increasing sequence of values in "
                f"(0, 1), e.g. (0.1, 0.5, 0.9); got {shown(list(q))}"
            )
        if 0.5 not in q:
            raise ForecasterConfigError(
                f"quantiles must include 0.5 (the point forecast is the median); got "
                f"{shown(list(q))}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ForecasterConfigError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        cls = FORECASTERS[self.kind]
        if self.linear_skip and not cls.RECURRENT:
            recurrent = [k for k, c in FORECASTERS.items() if c.RECURRENT]
            raise ForecasterConfigError(
                f"linear_skip applies to the recurrent kinds ({', '.join(recurrent)}); "
                f"got kind {self.kind!r}"
            )
        if cls.STREAMING and self.linear_skip:
            raise ForecasterConfigError(
                f"linear_skip must be False for kind {self.kind!r}: it always maps the last "
                "lookback points to the median"
            )
        if self.decoder == "pmf" and (not cls.RECURRENT or cls.STREAMING):
            able = [k for k, c in FORECASTERS.items() if c.RECURRENT and not c.STREAMING]
            raise ForecasterConfigError(
                f"decoder='pmf' applies to the recurrent kinds ({', '.join(able)}); "
                f"got kind {self.kind!r}"
            )
        if self.ensemble > 1 and (not cls.TRAINABLE or cls.STREAMING):
            able = [k for k, c in FORECASTERS.items() if c.TRAINABLE and not c.STREAMING]
            raise ForecasterConfigError(
                f"ensemble must be 1 for kind {self.kind!r} (parameter-free or streaming); "
                f"kinds that can be ensembled: {', '.join(able)}"
            )
        if self.n_channels and self.decoder != "pmf":
            raise ForecasterConfigError(
                f"n_channels must be 0 unless decoder='pmf' (the channel embedding is an input "
                f"of the pmf decoder); got n_channels={self.n_channels}, "
                f"decoder={self.decoder!r}"
            )
        if cls.RECURRENT and self.lookback % self.segment_length:
            raise ForecasterConfigError(
                f"lookback must be a multiple of segment_length for kind {self.kind!r} "
                f"(segments are not padded); got lookback={self.lookback}, "
                f"segment_length={self.segment_length}: "
                f"{segment_way_out(self.lookback, self.segment_length)}"
            )
        for name, flag in (
            ("n_past_covariates", "SUPPORTS_PAST_COVARIATES"),
            ("n_calendar", "SUPPORTS_CALENDAR"),
        ):
            if getattr(self, name) and not getattr(cls, flag):
                able = [k for k, c in FORECASTERS.items() if getattr(c, flag)]
                raise ForecasterConfigError(
                    f"{name} must be 0 for kind {self.kind!r}, which does not read them; "
                    f"kinds that do: {', '.join(able)}"
                )
        if (
            self.kind == "seasonal_naive"
            and self.season_length is not None
            and self.season_length > self.lookback
        ):
            raise ForecasterConfigError(
                f"season_length must be <= lookback for seasonal_naive; got "
                f"season_length={self.season_length}, lookback={self.lookback}"
            )
        k = self.decomposition_kernel
        if k and self.kind != "linear":  # recorded in config.json, read by no other kind
            raise ForecasterConfigError(
                f"decomposition_kernel must be 0 for kind {self.kind!r}: only 'linear' "
                f"decomposes its input (DLinear); got {k}"
            )
        if k and (k < 3 or k % 2 == 0 or k > self.lookback):
            raise ForecasterConfigError(
                f"decomposition_kernel must be 0 (NLinear) or an odd integer in [3, lookback="
                f"{self.lookback}] (DLinear); got {k}"
            )

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)

    def member_config(self) -> ForecasterConfig:
        """The config of one member of an ensemble (this config with ensemble = 1)."""
        return replace(self, ensemble=1)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quantiles"] = list(self.quantiles)
        return out

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ForecasterConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ForecasterConfigError(
                f"unknown ForecasterConfig field(s) {unknown}; known: {', '.join(sorted(known))}"
            )
        if state.get("decomposition_kernel") and state.get("kind") != "linear":
            # saved before such configs were refused (2026-12-04): the kernel was never read
            # by this kind, so the model is what it was without it; it must still load
            logger.warning(
                "config of kind %r holds decomposition_kernel=%s, which only 'linear' reads: "
                "ignored, as it always was",
                state.get("kind"),
                state.get("decomposition_kernel"),
            )
            state = {**state, "decomposition_kernel": 0}
        return cls(**state)


def floor_at_zero(forecasts: np.ndarray, non_negative: bool) -> np.ndarray:
    """`forecasts` in original units, raised to 0 in place where the model forecasts a
    target that is never negative (ForecasterConfig.non_negative); the array either way. An
    overflowed -inf is left as it is, not raised to a plausible 0.
    Quantiles stay ordered: a floor keeps the order of the values it raises."""
    if non_negative:  # non-finite values stay as they are: callers refuse them
        np.maximum(forecasts, 0.0, out=forecasts, where=np.isfinite(forecasts))
    return forecasts


def segment_way_out(lookback: int, segment_length: int) -> str:
    """The nearest values that fit, for a look-back its segment length does not divide: the
    divisors of `lookback` on either side of `segment_length`, and the multiples of
    `segment_length` on either side of `lookback`. A look-back of 1024 or 4096 (powers of two,
    what long look-backs often are) against the default segment_length of 24 was refused with
    no hint of which segment lengths would do."""
    small = [d for d in range(1, math.isqrt(lookback) + 1) if lookback % d == 0]
    divisors = sorted({*small, *(lookback // d for d in small)})
    below = [d for d in divisors if d < segment_length]
    above = [d for d in divisors if d > segment_length]
    near = ([below[-1]] if below else []) + ([above[0]] if above and above[0] < lookback else [])
    lower = lookback - lookback % segment_length
    looks = [n for n in (lower, lower + segment_length) if n >= segment_length]
    segments = " or ".join(f"{d} ({lookback // d:,} recurrent steps)" for d in near)
    lookbacks = " or ".join(f"{n:,}" for n in looks)
    choice = f"a segment_length that divides {lookback:,}, such as {segments}, or " if near else ""
    return f"give {choice}a lookback that {segment_length} divides, such as {lookbacks}"


def _choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ForecasterConfigError(not_one_of(name, value, allowed), field=name)


def _integer(name: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        allowed = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum:,}"
        raise ForecasterConfigError(f"{name} must be an integer {allowed}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ForecasterConfigError(
            f"{name} must be an integer from {minimum} to {maximum:,}, got {value!r}"
        )


# Sizes past any model this product trains (the benchmarks use 64-512 units, ensembles of 5):
# a job submitted with hidden_size 10**8 or ensemble 10**8 was queued, to exhaust a worker's
# memory or train for ever; refused where it is submitted instead.
MAX_HIDDEN_SIZE = 8192
MAX_ENSEMBLE = 100
# Every percentile, 0.01 .. 0.99: the head emits horizon x quantiles outputs, and a job with
# 20,000 levels was queued (a walk-through).
MAX_QUANTILES = 99


def new_model_problem(config: ForecasterConfig) -> str | None:
    """What a model to be trained may not be, beyond what any stored config may be: checked
    where training is asked for (urnn train, a job), not in ForecasterConfig, which also
    loads the configs of models registered before a limit existed."""
    if len(config.quantiles) > MAX_QUANTILES:
        return (
            f"quantiles must hold at most {MAX_QUANTILES} levels (every percentile), got "
            f"{len(config.quantiles):,}"
        )
    # The backtest's tables and forecasts.parquet and the pyfunc's answer name a level's column
    # q<level> with 6 significant digits (training.metrics.quantile_column): 0.9 and 0.9000001
    # were both q0.9, and one of the two levels vanished from every table and answer.
    names = [f"{q:g}" for q in config.quantiles]
    for a, b in itertools.pairwise(range(len(names))):
        if names[a] == names[b]:
            return (
                f"quantiles {config.quantiles[a]!r} and {config.quantiles[b]!r} are both named "
                f"q{names[a]} in the backtest tables and the pyfunc's columns (6 significant "
                "digits); give levels that differ within 6 significant digits"
            )
    return None


# -----------------------------------------------------------------------------
# Calendar features (known in advance for any timestamp, so usable for the horizon too)

CalendarPeriod = Literal["hour_of_day", "day_of_week", "day_of_year"]


def calendar_periods(freq: str) -> tuple[CalendarPeriod, ...]:
    """Which cycles a series at `freq` can show: sub-daily data all three, daily and business-day
    data day-of-week and day-of-year, weekly and coarser day-of-year only (a feature that is
    constant at that frequency would only add dead inputs)."""
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        raise CalendarFrequencyError(
            f"freq {freq!r} is not a pandas offset alias; use e.g. 'h', '15min', 'D', 'B', 'MS'"
        ) from None
    day = pd.Timedelta(days=1)
    if isinstance(offset, pd.offsets.Tick):
        step = pd.Timedelta(offset)
    elif isinstance(offset, pd.offsets.Day):  # not a Tick since pandas 3
        step = offset.n * day
    elif isinstance(offset, pd.offsets.BusinessDay | pd.offsets.CustomBusinessDay):
        return ("day_of_week", "day_of_year")
    else:  # weeks, months, quarters, years
        return ("day_of_year",)
    if step < day:
        return ("hour_of_day", "day_of_week", "day_of_year")
    if step == day:
        return ("day_of_week", "day_of_year")
    return ("day_of_year",)


def n_calendar_features(freq: str) -> int:
    """K for `ForecasterConfig.n_calendar`: a sin/cos pair per period."""
    return 2 * len(calendar_periods(freq))


def calendar_features(index: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """(T, K) float64: sin and cos of each period's phase (calendar_periods(freq)), in [-1, 1].

    Sin/cos pairs rather than one-hot: 6 inputs instead of 24 + 7 + 366, and 23:00 sits next
    to 00:00. The phase of the day counts minutes and seconds, so 15-minute data gets distinct
    values within the hour.
    """
    phases = []
    for period in calendar_periods(freq):
        if period == "hour_of_day":
            hours = index.hour + index.minute / 60.0 + index.second / 3600.0
            phases.append(np.asarray(hours, dtype=np.float64) / 24.0)
        elif period == "day_of_week":
            phases.append(np.asarray(index.day_of_week, dtype=np.float64) / 7.0)
        else:
            days_in_year = np.where(np.asarray(index.is_leap_year), 366.0, 365.0)
            phases.append((np.asarray(index.day_of_year, dtype=np.float64) - 1.0) / days_in_year)
    columns = []
    for phase in phases:
        columns += [np.sin(2.0 * math.pi * phase), np.cos(2.0 * math.pi * phase)]
    return np.stack(columns, axis=1)  # (T, K)


# Forecasts come back to original units from float32 z-scores, so a value the data holds as
# exactly 0 (no demand in the look-back, forecast as that level) returns as +-1e-6 or so.
# Values within this share of the column's |mean| + scale of zero (8 float32 steps at that
# size: the round-off of un-scaling, and no more, so that a series' real small values such as
# 0.02 beside a mean of 5,000 are kept) are 0. The backtest, the service and the pyfunc all
# snap with it, so that they answer the same 0.
ROUND_OFF = 2.0**-21


def snap_zeros(forecasts: np.ndarray, mean: Any, scale: Any) -> np.ndarray:
    """`forecasts` in original units with the un-scaling's round-off about 0 set to exactly
    0, in place: `mean` and `scale` are the scaler's (scalars, or arrays that broadcast
    against `forecasts`). A monotone map, so quantiles stay ordered."""
    tolerance = ROUND_OFF * (np.abs(mean) + scale)
    forecasts[np.abs(forecasts) <= tolerance] = 0.0
    return forecasts


def unscale_from_last(scaled: np.ndarray, mean: Any, scale: Any, last: Any) -> np.ndarray:
    """(..., H, Q) model output in scaled units -> float64 in original units, measured from
    the look-back's last value as the data holds it (`last`, float64, broadcasting against
    `scaled`; NaN where it is not known): last + (scaled - z) x scale, z = last's float32
    z-score, the value the model read. The same affine map as scaled x scale + mean, but
    the model's input was rounded to float32 at the size of the z-score: 5000.0 in a fleet
    scaled by mean 4152, scale 1679 came back from a flat look-back, forecast as its level,
    as 5000.0000449, so the zero-width interval missed every actual and the backtest scored
    coverage 0 on an exact forecast. Measured from the exact last value, what the model
    adds to its input (exactly 0 for a flat look-back under instance normalisation, and for
    repeat_last) is all that is scaled back: such a forecast is the level, exactly."""
    values = np.array(scaled, dtype=np.float64)  # a copy: the passes below work in place
    last = np.asarray(last, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        read = ((last - mean) / scale).astype(np.float32).astype(np.float64)
    known = np.isfinite(last) & np.isfinite(read)
    # Where `last` is unknown: (values - 0) x scale + mean, the plain map, bit for bit. The
    # anchors have `last`'s shape (one per series), and the (B, H, Q) output meets its three
    # passes (subtract, multiply, add) in place: it runs on the service's inference thread for
    # every batch, where new arrays of a 1,024-series batch cost more than the arithmetic
    # (`python -m bench.unscale`).
    read = np.where(known, read, 0.0)
    base = np.where(known, last, mean)
    np.subtract(values, read, out=values)
    np.multiply(values, scale, out=values)
    np.add(values, base, out=values)
    return values


# -----------------------------------------------------------------------------
# Pieces shared by every forecaster


def window_statistics(past_target: Tensor, normalisation: Normalisation) -> tuple[Tensor, Tensor]:
    """(loc, scale), each (B, 1): z = (x - loc) / scale is what the network sees."""
    if normalisation == "instance":
        loc = past_target.mean(dim=1, keepdim=True)
        std = past_target.std(dim=1, unbiased=False, keepdim=True)
        # A constant look-back has std 0 and its value as mean only in exact arithmetic: the
        # rounded float32 mean of 48 copies of 123456.7 is one ulp off, which made the std
        # 0.0156 (1e9: 64), far over the clamp, so the window was read as varying and forecast
        # as level + output x ulp. Its statistics are set exactly: the value and 0.
        flat = past_target.amax(dim=1, keepdim=True) == past_target.amin(dim=1, keepdim=True)
        loc = torch.where(flat, past_target[:, :1], loc)
        scale = torch.where(flat, 0.0, std).clamp_min(MIN_WINDOW_STD)
        return loc, scale
    ones = torch.ones_like(past_target[:, -1:])
    if normalisation == "last":
        return past_target[:, -1:], ones
    return torch.zeros_like(ones), ones


def monotone_quantiles(raw: Tensor, median_index: int) -> Tensor:
    """(B, H, Q) raw head outputs -> (B, H, Q) non-decreasing along Q.

    raw[..., median_index] is the median itself; the other entries are gaps, made positive by
    softplus and summed outwards from the median (see the module docstring for why not sort).
    """
    median = raw[..., median_index : median_index + 1]  # (B, H, 1)
    above = median + torch.cumsum(F.softplus(raw[..., median_index + 1 :]), dim=-1)
    below_gaps = F.softplus(raw[..., :median_index]).flip(-1)  # nearest the median first
    below = median - torch.cumsum(below_gaps, dim=-1).flip(-1)
    return torch.cat([below, median, above], dim=-1)


def scale_gaps(quantiles: Tensor, gap_scale: Tensor, median_index: int) -> Tensor:
    """(B, H, Q) monotone quantiles with the gaps between neighbours multiplied by
    `gap_scale` (H, Q - 1), rebuilt outwards from the unchanged median."""
    gaps = quantiles.diff(dim=-1) * gap_scale  # (B, H, Q - 1)
    median = quantiles[..., median_index : median_index + 1]
    above = median + torch.cumsum(gaps[..., median_index:], dim=-1)
    below = median - torch.cumsum(gaps[..., :median_index].flip(-1), dim=-1).flip(-1)
    return torch.cat([below, median, above], dim=-1)


def _calibrated_column(step_quantiles: Tensor, k: int, median: int, step_scale: Tensor) -> Tensor:
    """Quantile `k` of every window (N,) at one horizon step, float64, from that step's
    forecasts `step_quantiles` (N, Q) with the gaps between it and the median multiplied by
    their fitted `step_scale` (Q - 1,): what `calibrate_gaps` fits the next gap out against.
    Rebuilt from the median with the operations, in the order, that a whole (N, H, Q) float64
    copy made it with: a few subtractions a window, where the copy held 8 bytes a window,
    step and quantile."""
    q = step_quantiles
    value = q[:, median]
    if k > median:
        for i in range(median + 1, k + 1):
            value = value + step_scale[i - 1] * (q[:, i] - q[:, i - 1])
    else:
        for i in range(median - 1, k - 1, -1):
            value = value - step_scale[i] * (q[:, i + 1] - q[:, i])
    return value


def _gap_ratio(
    quantiles: Tensor, target: Tensor, step: int, gap: int, median: int, scale: Tensor
) -> Tensor:
    """(N,) float64: how many of its uncalibrated widths each window's realised value at
    `step` lies beyond the calibrated quantile on the median's side of gap `gap` (gap j lies
    between quantiles j and j + 1); NaN where that gap is zero, a window that says nothing
    about its multiplier."""
    q = quantiles[:, step].double()  # (N, Q): one gather of the step's forecasts
    raw = q[:, gap + 1] - q[:, gap]
    informative = raw > 0
    divisor = torch.where(informative, raw, 1.0)  # the divisor only: ratios left out
    y = target[:, step].double()
    if gap >= median:  # above the median: from quantile `gap` up
        ratio = (y - _calibrated_column(q, gap, median, scale[step])) / divisor
    else:  # below: from quantile `gap + 1` down
        ratio = (_calibrated_column(q, gap + 1, median, scale[step]) - y) / divisor
    return ratio.where(informative, torch.nan)


def _gap_multipliers(
    quantiles: Tensor,
    target: Tensor,
    gap: int,
    median: int,
    level: float,
    scale: Tensor,
    min_windows: int,
) -> Tensor:
    """The `level` quantile (H,) of gap `gap`'s ratios over the windows where they say
    something: per horizon step where every step has at least `min_windows` of them, else one
    value pooled over all steps; 1 (no change) where none is left.

    The ratios are made one step at a time (N float64 values), not for all steps at once
    (made again for every step only where the fit is pooled): with float64 copies of the
    forecasts, the calibrated quantiles and the ratios of every step, and the sort's, the
    whole-tensor fit held 2.7 KB a validation window beyond its forecasts and targets at 24
    steps (4.4 GB for the 1.6 M windows of a 16 M-row log); a step at a time, ~65 bytes. A
    step's value is `torch.nanquantile` of its ratios alone, the value the (N, H) call along
    dim 0 gave it."""
    horizon = int(quantiles.shape[1])

    def ratio(step: int) -> Tensor:
        return _gap_ratio(quantiles, target, step, gap, median, scale)

    counts: list[int] = []
    per_step: list[Tensor] = []  # while every step so far has its min_windows: else pooled
    for step in range(horizon):
        step_ratio = ratio(step)
        counts.append(int((~step_ratio.isnan()).sum()))
        if counts[-1] >= min_windows and len(per_step) == step:
            per_step.append(torch.nanquantile(step_ratio, level))
    if len(per_step) == horizon:
        return torch.stack(per_step)
    if sum(counts) == 0:
        return torch.ones(horizon, dtype=torch.float64)
    # Pooled (few windows, or most gaps zero): every step's ratios, laid out as before.
    pooled = torch.stack([ratio(step) for step in range(horizon)], dim=1).reshape(-1)
    return torch.nanquantile(pooled, level).expand(horizon)


class Forecaster(nn.Module, ABC):
    """Base class: input checks, per-window normalisation and its inverse, the point forecast.

    Subclasses set the capability flags and implement `forecast_normalised`, which receives the
    normalised look-back and returns (B, H, Q) in that normalised space.
    """

    # Capability flags, read by the config validation and by the data stage to decide what to
    # feed (training.windows.WindowBatch.model_inputs).
    SUPPORTS_PAST_COVARIATES: ClassVar[bool] = False
    SUPPORTS_CALENDAR: ClassVar[bool] = False
    RECURRENT: ClassVar[bool] = False  # reads segments; lookback % segment_length == 0
    TRAINABLE: ClassVar[bool] = True  # False: parameter-free, "fitting" = calibrate_offsets
    UNITARY: ClassVar[bool] = False  # has a unitary recurrence matrix (exempt from clipping)
    # Carries a state across calls (models.streaming): new_state / advance / forecast, and
    # forward reads a whole history (T >= lookback) rather than exactly lookback rows.
    STREAMING: ClassVar[bool] = False
    # ForecasterConfig.hidden_size when left unset. 128: on the validation splits of ETTh1,
    # ETTh2, Taylor's demand and Bike sharing (urnn train's other defaults) it matched or beat
    # 64 on all four (val MSE -0.8, -0.9, -11, -4.5 %; docs/benchmarks.md). Kinds without
    # hidden units ignore it.
    DEFAULT_HIDDEN: ClassVar[int] = 128
    # An ensemble of members of the config's kind (models.ensemble): built from configs with
    # ensemble > 1, and only those.
    ENSEMBLE: ClassVar[bool] = False
    gap_scale: Tensor

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        if (config.ensemble > 1) != self.ENSEMBLE or (
            not self.ENSEMBLE and type(self) is not FORECASTERS[config.kind]
        ):
            raise ForecasterConfigError(
                f"{type(self).__name__} cannot be built from kind {config.kind!r}; "
                "use build_forecaster(config)"
            )
        self.config = config
        # Multipliers of the gaps between neighbouring quantiles, (H, Q - 1); ones until
        # `calibrate_gaps` fits them on held-out windows. Gap j lies between quantiles j and
        # j + 1; positive multipliers keep the quantiles monotone and leave the median alone.
        self.register_buffer("gap_scale", torch.ones(config.horizon, len(config.quantiles) - 1))

    def forward(
        self,
        past_target: Tensor,
        past_covariates: Tensor | None = None,
        past_calendar: Tensor | None = None,
        future_calendar: Tensor | None = None,
    ) -> Tensor:
        """(B, L) target look-back (+ optional inputs) -> (B, H, Q) quantiles, input scale."""
        self._check_inputs(past_target, past_covariates, past_calendar, future_calendar)
        return self._in_input_scale(
            past_target,
            lambda z: self.forecast_normalised(z, past_covariates, past_calendar, future_calendar),
        )

    @property
    def reads_channel_ids(self) -> bool:
        """Whether forward needs `channel=` (B,) ids (ForecasterConfig.n_channels > 0)."""
        return self.config.n_channels > 0

    def _in_input_scale(self, past_target: Tensor, network: Callable[[Tensor], Tensor]) -> Tensor:
        """Normalise the look-back, run `network` (z (B, L) -> (B, H, Q)) on it, apply the gap
        calibration and undo the normalisation."""
        loc, scale = window_statistics(past_target, self.config.normalisation)  # (B, 1) each
        z = (past_target - loc) / scale  # (B, L)
        out = network(z)
        out = scale_gaps(out, self.gap_scale, self.config.median_index)
        spread = out * scale.unsqueeze(-1)
        if self.config.normalisation == "instance":
            # A flat look-back (std at the MIN_WINDOW_STD clamp: 48 hours without a sale) is
            # forecast as its level: what the network adds there is its output times 1e-5,
            # noise that came back as 2e-6 sales, each such forecast of a zero counting 200 in
            # sMAPE (a perfect all-zero forecast scored 25 %) and deciding promotions on it.
            spread = torch.where(scale.unsqueeze(-1) > MIN_WINDOW_STD, spread, 0.0)
        return spread + loc.unsqueeze(-1)  # (B, H, Q)

    @torch.no_grad()
    def calibrate_gaps(self, quantiles: Tensor, target: Tensor, *, min_windows: int = 100) -> None:
        """Fit `gap_scale` so that each quantile's empirical level on held-out windows matches
        its nominal level (split-conformal calibration of the quantile outputs, Romano et al.,
        "Conformalized Quantile Regression", NeurIPS 2019, per quantile rather than per pair).

        `quantiles` (N, H, Q) are this model's forecasts *before* calibration (gap_scale at 1)
        and `target` (N, H) the realised values; a NaN target (a value the loader filled in,
        not observed: training.fit.window_targets) is left out of every fit. Working outwards
        from the median, the multiplier of the gap below quantile q_k (above the median) is
        the q_k-quantile of (y - q_{k-1}) / gap, where q_{k-1} is already calibrated;
        symmetrically below. Per
        horizon step when there are at least `min_windows` windows, else pooled over steps.
        Multipliers are clamped to [GAP_SCALE_MIN, GAP_SCALE_MAX] (0.05, 20) so that one odd
        window cannot collapse or blow up an interval.

        A window whose gap is zero (a flat look-back under instance normalisation is forecast
        as its level, every quantile; 48 quiet hours of intermittent demand) says nothing about
        the multiplier, which leaves its interval [level, level] whatever it is: it is left out
        of that gap's fit. Kept in, its ratio was 0 / 1e-12 or a sale / 1e-12, and such windows
        pulled every other window's multiplier toward the 0.05 or the 20 clamp. A gap that is
        zero in every window keeps its multiplier at 1.
        """
        c = self.config
        if quantiles.shape[1:] != (c.horizon, len(c.quantiles)) or target.shape != (
            quantiles.shape[0],
            c.horizon,
        ):
            raise InputShapeError(
                f"calibrate_gaps needs quantiles (N, {c.horizon}, {len(c.quantiles)}) and "
                f"target (N, {c.horizon}); got {tuple(quantiles.shape)} and {tuple(target.shape)}"
            )
        scale = torch.ones(c.horizon, len(c.quantiles) - 1, dtype=torch.float64)
        m = c.median_index
        # Each multiplier is clamped before the next quantile out is placed from it: the
        # outer gaps are then fitted against the inner quantiles as inference will put them
        # (a zero gap keeps q_k on q_(k-1); read as 1, it sat a unit out and the next gap was
        # fitted from there).
        for k in range(m + 1, len(c.quantiles)):  # above the median: gap k - 1
            scale[:, k - 1] = _gap_multipliers(
                quantiles, target, k - 1, m, c.quantiles[k], scale, min_windows
            ).clamp(GAP_SCALE_MIN, GAP_SCALE_MAX)
        for k in range(m - 1, -1, -1):  # below the median: gap k
            scale[:, k] = _gap_multipliers(
                quantiles, target, k, m, 1.0 - c.quantiles[k], scale, min_windows
            ).clamp(GAP_SCALE_MIN, GAP_SCALE_MAX)
        self.gap_scale.copy_(scale.to(self.gap_scale))

    def point_forecast(
        self,
        past_target: Tensor,
        past_covariates: Tensor | None = None,
        past_calendar: Tensor | None = None,
        future_calendar: Tensor | None = None,
    ) -> Tensor:
        """The median quantile, (B, H)."""
        out = self(past_target, past_covariates, past_calendar, future_calendar)
        median: Tensor = out[..., self.config.median_index]
        return median

    @abstractmethod
    def forecast_normalised(
        self,
        z: Tensor,
        past_covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> Tensor: ...

    def unitary_parameters(self) -> list[nn.Parameter]:
        """Parameters of unitary matrices: no gradient clipping, no weight decay for these."""
        return []

    def _check_inputs(
        self,
        past_target: Tensor,
        past_covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> None:
        c = self.config
        if past_target.dim() != 2 or past_target.shape[1] != c.lookback:
            raise InputShapeError(
                f"past_target must have shape (batch, lookback={c.lookback}); "
                f"got {tuple(past_target.shape)}"
            )
        b = past_target.shape[0]
        expected = {
            "past_covariates": (past_covariates, (b, c.lookback, c.n_past_covariates)),
            "past_calendar": (past_calendar, (b, c.lookback, c.n_calendar)),
            "future_calendar": (future_calendar, (b, c.horizon, c.n_calendar)),
        }
        for name, (tensor, shape) in expected.items():
            if shape[-1] == 0:
                if tensor is not None:
                    raise InputShapeError(
                        f"{name} must be None for this {c.kind!r} forecaster (built with "
                        f"{'n_past_covariates' if name == 'past_covariates' else 'n_calendar'}"
                        f"=0); got a tensor of shape {tuple(tensor.shape)}"
                    )
            elif tensor is None or tuple(tensor.shape) != shape:
                got = None if tensor is None else tuple(tensor.shape)
                raise InputShapeError(f"{name} must have shape {shape}; got {got}")


# -----------------------------------------------------------------------------
# Recurrent forecasters: segments -> encoder -> last state -> direct multi-horizon head


class URNNEncoder(nn.Module):
    """The uRNN over the segments; returns the last state as real pairs [Re h; Im h], (B, 2n).

    Wraps `models.urnn.URNN` and reads `URNN.states`; the URNN's own per-step read-out is not
    used (its 2n + 1 weights get no gradient and stay at their initial values).
    """

    def __init__(self, input_size: int, config: ForecasterConfig) -> None:
        super().__init__()
        unitary: UnitaryKind = "full" if config.kind == "urnn-full" else "structured"
        self.urnn = URNN(
            URNNConfig(
                input_size=input_size,
                hidden_size=config.hidden_size,
                output_size=1,
                unitary=unitary,
                recurrence=config.recurrence,
            )
        )
        self.state_size = 2 * config.hidden_size

    def forward(self, x: Tensor) -> Tensor:
        """The last state (B, 2n). Without autograd (evaluation, backtests, serving) the
        segments are read ENCODER_CHUNK_STEPS at a time, each chunk continuing from the last
        state of the one before (exact: `URNN.states(x, h0)`), so that only one chunk's states
        are held: every state of a (512, 4096)-step evaluation batch at n = 128 took 2 GiB
        to keep one of them."""
        steps = x.shape[1]
        if torch.is_grad_enabled() or steps <= ENCODER_CHUNK_STEPS:
            return self.urnn.states(x)[:, -1]
        n = self.state_size // 2
        h: Tensor | None = None
        last = x.new_empty(0)
        for chunk in torch.split(x, ENCODER_CHUNK_STEPS, dim=1):
            last = self.urnn.states(chunk, h)[:, -1]
            h = torch.complex(last[:, :n], last[:, n:])
        return last

    @property
    def decoder_input_width(self) -> int:
        """The pmf decoder's inputs are added to W h directly: 2n reals (V x's space)."""
        return self.state_size

    def decode(self, x: Tensor, inputs: Tensor) -> Tensor:
        """Encode x (B, S, step), then one more step h_j = modReLU(W h + u_j) from the last
        state h for each decoder input u_j (B, M, 2n), all in parallel; (B, M, 2n) real pairs.
        W and the modReLU bias are the encoder's own: the decoder step is a uRNN step whose
        projected input V x is replaced by the learned u_j."""
        n = self.state_size // 2
        last = self.forward(x)  # (B, 2n)
        if not last.shape[0]:  # MKL's FFT refuses a batch of no windows
            return inputs.new_zeros(0, inputs.shape[1], self.state_size)
        w_h = self.urnn.unitary(torch.complex(last[:, :n], last[:, n:]))  # (B, n) complex
        w_h_pairs = torch.cat([w_h.real, w_h.imag], dim=-1).unsqueeze(1)  # (B, 1, 2n)
        z = w_h_pairs + inputs  # (B, M, 2n)
        h = self.urnn.modrelu(torch.complex(z[..., :n], z[..., n:]))  # (B, M, n)
        return torch.cat([h.real, h.imag], dim=-1)


class GatedEncoder(nn.Module):
    """One LSTM or GRU layer (PyTorch's fused kernels) over the segments; last state (B, n)."""

    def __init__(self, input_size: int, config: ForecasterConfig) -> None:
        super().__init__()
        cell = nn.LSTM if config.kind == "lstm" else nn.GRU
        self.rnn = cell(input_size, config.hidden_size, batch_first=True)
        self.state_size = config.hidden_size

    def forward(self, x: Tensor) -> Tensor:
        return self._encode(x)[0]

    def _encode(self, x: Tensor) -> tuple[Tensor, Any]:
        """The last output (B, n) and the final hidden state (LSTM: (h, c)). Without autograd
        the segments go through ENCODER_CHUNK_STEPS at a time, each chunk from the hidden
        state the one before left, as the uRNN encoder does: the fused kernels return every
        step's output, (B, S, n), 2 GiB for 512 windows of 4,096 steps at n = 128."""
        steps = x.shape[1]
        if torch.is_grad_enabled() or steps <= ENCODER_CHUNK_STEPS:
            states, hidden = self.rnn(x)  # (B, S, n)
            return states[:, -1], hidden
        hidden = None
        for chunk in torch.split(x, ENCODER_CHUNK_STEPS, dim=1):
            states, hidden = self.rnn(chunk, hidden)
        return states[:, -1], hidden

    @property
    def decoder_input_width(self) -> int:
        """The pmf decoder's inputs go through the cell's own input weights: a step's width."""
        return self.rnn.input_size

    def decode(self, x: Tensor, inputs: Tensor) -> Tensor:
        """Encode x (B, S, step), then one more step of the same cell from the final (h, c) for
        each decoder input (B, M, step), all in parallel; the step outputs, (B, M, n)."""
        b, m, width = inputs.shape
        _, hidden = self._encode(x)  # LSTM: (h, c), each (1, B, n); GRU: h (1, B, n)
        if isinstance(hidden, tuple):
            hidden = tuple(t.repeat_interleave(m, dim=1) for t in hidden)
        else:
            hidden = hidden.repeat_interleave(m, dim=1)  # (1, B * M, n), window-major
        out, _ = self.rnn(inputs.reshape(b * m, 1, width), hidden)  # (B * M, 1, n)
        decoded: Tensor = out.reshape(b, m, out.shape[-1])  # -1 is ambiguous when B = 0
        return decoded


class RecurrentForecaster(Forecaster):
    """Shared body of the uRNN, LSTM and GRU forecasters (SegRNN's recipe, any cell).

    decoder="pmf" (SegRNN's parallel multi-step forecasting): M = ceil(H / segment_length)
    output segments; segment j gets the decoder input p_j (+ e_c, the window's channel, with
    n_channels > 0), both learned, and one recurrent step of the encoder's own cell from its
    final state (`URNNEncoder.decode`, `GatedEncoder.decode`); each step's output goes through
    dropout and one shared head to segment_length x Q values; the segments, concatenated and
    cut to H, are the forecast. SegRNN concatenates [p_j; e_c] before the cell's input map; here
    they are summed, which spans the same forecasts (the input map is linear). For the uRNN the
    embeddings live in the projected-input space (V x's), so no extra map is needed.
    """

    SUPPORTS_PAST_COVARIATES = True
    SUPPORTS_CALENDAR = True
    RECURRENT = True

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__(config)
        c = config
        row_width = 1 + c.n_past_covariates + c.n_calendar  # target, covariates, calendar
        step_width = c.segment_length * row_width
        self.encoder = self._build_encoder(step_width)
        self.dropout = nn.Dropout(c.dropout)
        self.future_calendar = (
            nn.Linear(c.horizon * c.n_calendar, FUTURE_CALENDAR_WIDTH) if c.n_calendar else None
        )
        head_in = self.encoder.state_size + (FUTURE_CALENDAR_WIDTH if c.n_calendar else 0)
        pmf = c.decoder == "pmf"
        head_out = c.segment_length if pmf else c.horizon  # rows per head call
        self.head = nn.Linear(head_in, head_out * len(c.quantiles))
        self.skip = nn.Linear(c.lookback, c.horizon) if c.linear_skip else None
        # Created only when asked for, after everything else: a "direct" model draws the same
        # random numbers and has the same state dict as before these options existed.
        self.position: nn.Parameter | None = None
        self.channel_embedding: nn.Parameter | None = None
        if pmf:
            width = self.encoder.decoder_input_width
            segments = math.ceil(c.horizon / c.segment_length)
            self.position = nn.Parameter(torch.randn(segments, width))  # SegRNN: randn
            if c.n_channels:
                self.channel_embedding = nn.Parameter(torch.randn(c.n_channels, width))

    @abstractmethod
    def _build_encoder(self, step_width: int) -> URNNEncoder | GatedEncoder: ...

    def forward(
        self,
        past_target: Tensor,
        past_covariates: Tensor | None = None,
        past_calendar: Tensor | None = None,
        future_calendar: Tensor | None = None,
        channel: Tensor | None = None,
    ) -> Tensor:
        """As Forecaster.forward; `channel` (B,) integer ids in [0, n_channels) is required
        when the model has a channel embedding (n_channels > 0) and refused otherwise."""
        self._check_inputs(past_target, past_covariates, past_calendar, future_calendar)
        self._check_channel(channel, past_target.shape[0])
        return self._in_input_scale(
            past_target,
            lambda z: self._forecast(z, past_covariates, past_calendar, future_calendar, channel),
        )

    def forecast_normalised(
        self,
        z: Tensor,
        past_covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> Tensor:
        return self._forecast(z, past_covariates, past_calendar, future_calendar, None)

    def _check_channel(self, channel: Tensor | None, batch: int) -> None:
        n = self.config.n_channels
        if n == 0:
            if channel is not None:
                raise InputShapeError(
                    f"channel must be None for this {self.config.kind!r} forecaster (built "
                    f"with n_channels=0); got a tensor of shape {tuple(channel.shape)}"
                )
            return
        if channel is None:
            raise InputShapeError(
                f"channel ids are required: this forecaster has a channel embedding "
                f"(n_channels={n}); pass channel=(batch,) integer ids in [0, {n})"
            )
        if channel.shape != (batch,) or channel.dtype.is_floating_point or channel.is_complex():
            raise InputShapeError(
                f"channel must be an integer tensor of shape (batch={batch},); got dtype "
                f"{channel.dtype} and shape {tuple(channel.shape)}"
            )
        if batch and (int(channel.min()) < 0 or int(channel.max()) >= n):
            raise InputShapeError(
                f"channel ids must lie in [0, n_channels={n}); got ids from "
                f"{int(channel.min())} to {int(channel.max())}"
            )

    def _forecast(
        self,
        z: Tensor,
        past_covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
        channel: Tensor | None,
    ) -> Tensor:
        c = self.config
        b = z.shape[0]
        rows = [z.unsqueeze(-1)]  # (B, L, 1)
        rows += [t for t in (past_covariates, past_calendar) if t is not None]
        x = torch.cat(rows, dim=-1)  # (B, L, 1 + C + K)
        steps = c.lookback // c.segment_length
        # (B, L/seg, seg * (1 + C + K)): one segment per step; the width is spelt out, as -1
        # is ambiguous for a batch of no windows
        x = x.reshape(b, steps, c.segment_length * x.shape[-1])
        calendar = None
        if self.future_calendar is not None and future_calendar is not None:
            calendar = self.future_calendar(future_calendar.reshape(b, c.horizon * c.n_calendar))
        if self.position is None:
            state = self.dropout(self.encoder(x))  # (B, state_size)
            if calendar is not None:
                state = torch.cat([state, calendar], dim=-1)
            raw = self.head(state).view(b, c.horizon, len(c.quantiles))  # (B, H, Q)
        else:
            inputs = self.position.unsqueeze(0).expand(b, -1, -1)  # (B, M, width)
            if self.channel_embedding is not None:
                if channel is None:
                    raise InputShapeError(
                        f"channel ids are required (n_channels={c.n_channels}); call forward "
                        "with channel=..."
                    )
                inputs = inputs + self.channel_embedding[channel].unsqueeze(1)
            decoded = self.dropout(self.encoder.decode(x, inputs))  # (B, M, state_size)
            segments = decoded.shape[1]
            if calendar is not None:
                decoded = torch.cat(
                    [decoded, calendar.unsqueeze(1).expand(-1, segments, -1)], dim=-1
                )
            raw = self.head(decoded).view(b, segments * c.segment_length, len(c.quantiles))
            raw = raw[:, : c.horizon]  # (B, H, Q)
        if self.skip is not None:
            median = raw[..., c.median_index] + self.skip(z)
            raw = torch.cat(
                [raw[..., : c.median_index], median.unsqueeze(-1), raw[..., c.median_index + 1 :]],
                dim=-1,
            )
        return monotone_quantiles(raw, c.median_index)


class URNNForecaster(RecurrentForecaster):
    """uRNN encoder; kind "urnn" = the paper's structured W (7n parameters), "urnn-full" = a
    full-capacity W = exp(S) (n^2)."""

    UNITARY = True

    def _build_encoder(self, step_width: int) -> URNNEncoder:
        return URNNEncoder(step_width, self.config)

    def unitary_parameters(self) -> list[nn.Parameter]:
        assert isinstance(self.encoder, URNNEncoder)
        return list(self.encoder.urnn.unitary.parameters())


class GatedForecaster(RecurrentForecaster):
    """LSTM ("lstm") or GRU ("gru") encoder with the same inputs and head as the uRNN."""

    def _build_encoder(self, step_width: int) -> GatedEncoder:
        return GatedEncoder(step_width, self.config)


# -----------------------------------------------------------------------------
# Linear forecaster (NLinear / DLinear)


class LinearForecaster(Forecaster):
    """One linear map from the normalised look-back to all H x Q outputs (NLinear with
    normalisation="last"); with decomposition_kernel = k, DLinear: one map for the k-row moving
    average of the look-back (edges padded by repeating the end values) and one for the rest."""

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__(config)
        c = config
        outputs = c.horizon * len(c.quantiles)
        self.dropout = nn.Dropout(c.dropout)
        self.linear = nn.Linear(c.lookback, outputs)
        self.trend = nn.Linear(c.lookback, outputs) if c.decomposition_kernel else None

    def forecast_normalised(
        self,
        z: Tensor,
        past_covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> Tensor:
        c = self.config
        z = self.dropout(z)
        if self.trend is None:
            raw = self.linear(z)  # (B, H*Q)
        else:
            k = c.decomposition_kernel
            padded = torch.cat(
                [z[:, :1].expand(-1, k // 2), z, z[:, -1:].expand(-1, k // 2)], dim=1
            )  # (B, L + k - 1)
            trend = F.avg_pool1d(padded.unsqueeze(1), k, stride=1).squeeze(1)  # (B, L)
            raw = self.linear(z - trend) + self.trend(trend)
        return monotone_quantiles(raw.view(-1, c.horizon, len(c.quantiles)), c.median_index)


# -----------------------------------------------------------------------------
# Parameter-free baselines


class NaiveForecaster(Forecaster):
    """Point forecast from a fixed rule, plus per-step quantile offsets (a buffer, (H, Q))."""

    TRAINABLE = False
    offsets: Tensor

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__(config)
        self.register_buffer("offsets", torch.zeros(config.horizon, len(config.quantiles)))

    @abstractmethod
    def point_rule(self, z: Tensor) -> Tensor: ...

    def forecast_normalised(
        self,
        z: Tensor,
        past_covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> Tensor:
        return self.point_rule(z).unsqueeze(-1) + self.offsets  # (B, H, Q)

    @torch.no_grad()
    def calibrate_offsets(self, normalised_residuals: Tensor) -> None:
        """Set the offsets from residuals (N, H) of the point rule, in the normalised space
        ((y - point) / scale of each window): the empirical quantile per step, the median
        offset pinned to 0, and the rest made monotone outwards from it."""
        q = torch.tensor(self.config.quantiles, dtype=torch.float64)
        empirical = np.quantile(normalised_residuals.double().cpu().numpy(), q.numpy(), axis=0)
        offsets = torch.from_numpy(np.ascontiguousarray(empirical.T))  # (H, Q)
        m = self.config.median_index
        offsets[:, m] = 0.0
        offsets[:, m + 1 :] = offsets[:, m + 1 :].clamp_min(0.0).cummax(dim=1).values
        below = offsets[:, :m].clamp_max(0.0).flip(1).cummin(dim=1).values.flip(1)
        offsets[:, :m] = below
        self.offsets.copy_(offsets.to(self.offsets.dtype))


class RepeatLastForecaster(NaiveForecaster):
    """Every horizon step = the last observed value (the random-walk forecast)."""

    def point_rule(self, z: Tensor) -> Tensor:
        return z[:, -1:].expand(-1, self.config.horizon)  # (B, H)


class SeasonalNaiveForecaster(NaiveForecaster):
    """Step h = the value one season earlier: x[L - m + ((h - 1) mod m)], m = season_length."""

    lags: Tensor

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__(config)
        m, horizon, lookback = config.season_length, config.horizon, config.lookback
        if m is None:
            raise ForecasterConfigError(
                "season_length must be set (rows per season, at most lookback) to build a "
                "seasonal_naive forecaster; `urnn train` sets it from the data's frequency"
            )
        lags = lookback - m + torch.arange(horizon) % m  # (H,) positions in the look-back
        self.register_buffer("lags", lags, persistent=False)

    def point_rule(self, z: Tensor) -> Tensor:
        return z[:, self.lags]  # (B, H)


# -----------------------------------------------------------------------------
# Registry, building, checkpoints

FORECASTERS: dict[str, type[Forecaster]] = {
    "urnn": URNNForecaster,
    "urnn-full": URNNForecaster,
    "lstm": GatedForecaster,
    "gru": GatedForecaster,
    "linear": LinearForecaster,
    "repeat_last": RepeatLastForecaster,
    "seasonal_naive": SeasonalNaiveForecaster,
}

# Imported here, after everything it builds on is defined: models.streaming imports this file
# and registers "urnn-stream" in FORECASTERS at its end, whichever of the two is imported first.
import models.streaming  # noqa: E402, F401


def build_forecaster(config: ForecasterConfig | Mapping[str, Any]) -> Forecaster:
    """A fresh forecaster (initialised from torch's global RNG) from a config or its dict;
    with `ensemble` > 1, an ensemble of that many members (models.ensemble)."""
    if not isinstance(config, ForecasterConfig):
        config = ForecasterConfig.from_dict(config)
    if config.ensemble > 1:
        from models.ensemble import ensemble_class  # imports this module

        return ensemble_class(FORECASTERS[config.kind])(config)
    return FORECASTERS[config.kind](config)


def load_forecaster(
    config: ForecasterConfig | Mapping[str, Any], state_dict: Mapping[str, Tensor]
) -> Forecaster:
    """Rebuild a trained forecaster: config (or its dict) + state dict, strict, in eval mode.

    The entry point for anything that serves a model (MLflow pyfunc, the FastAPI service).
    """
    model = build_forecaster(config)
    state = dict(state_dict)
    # Checkpoints written before interval calibration existed carry no gap_scale: uncalibrated.
    state.setdefault("gap_scale", model.gap_scale.clone())
    model.load_state_dict(state, strict=True)
    return model.eval()


def model_device(model: nn.Module) -> torch.device:
    """Where the model's tensors are (the first parameter or buffer); the CPU for a model
    without any. Callers that build inputs from numpy put them there."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def save_checkpoint(
    model: Forecaster, directory: str | Path, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write `config.json` ({"format": 1, "model": config, **extra}) and `weights.pt` (a state
    dict, loadable with torch.load(weights_only=True)). `extra` is for what the data stage
    knows (scaler statistics, frequency, column names) and must be JSON-serialisable."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": CHECKPOINT_FORMAT, "model": model.config.to_dict(), **(extra or {})}
    (directory / CHECKPOINT_CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, directory / CHECKPOINT_WEIGHTS)
    return directory


class CheckpointError(ValueError):
    """A weights file that is not a readable state dict of tensors (damaged, truncated, or
    holding other objects); one line saying which file and why, in our words: torch's own
    message suggests re-running torch.load with weights_only=False, which runs pickled code."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(
            f"{where} is not a readable state dict of tensors ({reason}); register a new "
            "version (urnn train) or move the alias to one that loads (urnn models promote)"
        )


def load_checkpoint(
    directory: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    source: str | None = None,
) -> tuple[Forecaster, dict[str, Any]]:
    """(model in eval mode, the whole config.json) from a directory written by save_checkpoint.
    No pickle runs: weights_only=True. A weights file that does not read as a dict of tensors
    is a CheckpointError (a missing one stays FileNotFoundError), naming it as `source` says
    (`weights.pt in <artifact URI>` for a downloaded copy), by its path when None."""
    directory = Path(directory)
    meta = read_model_config(directory / CHECKPOINT_CONFIG)
    state = load_weights(directory / CHECKPOINT_WEIGHTS, map_location, source=source)
    try:
        model = load_forecaster(meta["model"], state)
    except RuntimeError as error:  # load_state_dict: weights of another shape or kind
        raise ModelConfigError(
            directory / CHECKPOINT_CONFIG,
            f"its 'model' section does not match {CHECKPOINT_WEIGHTS}: {_mismatch(error)}",
        ) from None
    return model, meta


def _mismatch(error: RuntimeError) -> str:
    """The first thing torch's multi-line load_state_dict error names (a size mismatch, a
    missing or unexpected key), on one line: an edited config.json (another horizon, another
    kind) stopped `urnn train`'s comparison with the champion in a traceback."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(error).__name__)
    return detail if len(detail) <= 300 else detail[:297] + "..."


class ModelConfigError(ValueError):
    """A config.json that is not a model's (not JSON, or no "model" section): one line naming
    the file, where a bare KeyError or JSONDecodeError said neither."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.reason = reason  # to say it again of the file as stored (a temporary copy's path)
        super().__init__(
            f"{path} is not a model's {CHECKPOINT_CONFIG} ({reason}); register a new version "
            "(urnn train) or give a model folder `urnn train` wrote"
        )


def read_model_config(path: Path) -> dict[str, Any]:
    """The whole config.json of a model folder; a ModelConfigError when it cannot be one."""
    text = path.read_text()  # missing or unreadable: OSError, said as it is
    try:
        meta = json.loads(text)
    except ValueError as error:
        raise ModelConfigError(path, f"not JSON: {error}") from None
    if not isinstance(meta, dict):
        raise ModelConfigError(path, f"it holds a JSON {type(meta).__name__}, not an object")
    if not isinstance(meta.get("model"), dict):
        raise ModelConfigError(path, "no 'model' object")
    return meta


def load_weights(
    path: Path, map_location: str | torch.device = "cpu", *, source: str | None = None
) -> dict[str, Tensor]:
    """The state dict in `path` (torch.load with weights_only=True: no pickled code runs);
    anything else is a CheckpointError naming the file (as `source`, else its path) and why."""
    where = str(path) if source is None else source
    data = path.read_bytes()  # missing or unreadable on disk: OSError, said as it is
    try:  # from memory: whatever torch raises now is about the bytes (OSError included)
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(where, _load_failure(error, data)) from None
    if not isinstance(state, dict):
        raise CheckpointError(where, f"it holds {_a(type(state).__name__)}, not a dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(where, f"key {key!r} is not a parameter name")
        if not isinstance(value, Tensor):
            raise CheckpointError(
                where, f"entry {key!r} is {_a(type(value).__name__)}, not a tensor"
            )
    return state


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


_WEIGHTS_UNPICKLER = re.compile(r"WeightsUnpickler error:\s*(?P<detail>[^\n]+)")
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (?P<name>\S+)")
# torch's text for a global of a module it blocks outright (os, posix, subprocess, ...): the
# payload of a weights file built to run code, which no WeightsUnpickler line announces
_BLOCKED_GLOBAL = re.compile(r"unsupported GLOBAL (?P<name>\S+) whose module \S+ is blocked")


def _load_failure(error: Exception, data: bytes) -> str:
    """Why torch.load refused the bytes `data`, short and in our words: never torch's advice
    to load with weights_only=False (arbitrary code execution), nor its multi-line text."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch's terminal bold
    unpickler = _WEIGHTS_UNPICKLER.search(text)
    first = text.strip().splitlines()[0].split(". ", 1)[0].strip() if text.strip() else ""
    blocked = _BLOCKED_GLOBAL.search(text)
    if blocked is not None:
        reason = f"it pickles {_a(blocked['name'])}, which is not a tensor (nothing was run)"
    elif unpickler is not None:
        detail = unpickler["detail"].strip()
        pickled = _UNSUPPORTED_GLOBAL.match(detail)
        if pickled is not None:
            reason = f"it pickles {_a(pickled['name'])}, which is not a tensor"
        else:
            reason = f"not a torch checkpoint: {detail.rstrip('.')}"
    elif not data:
        reason = "the file is empty"
    elif "PytorchStreamReader" in text:  # torch's zip container, cut short or damaged
        detail = text.split(". ", 1)[0].rsplit(": ", 1)[-1].strip().rstrip(".")
        reason = f"truncated or damaged archive: {detail}"
    elif data.startswith(b"PK\x03\x04"):  # a zip archive (torch.save's) that does not read
        reason = "truncated or damaged archive"
    elif isinstance(error, EOFError):
        reason = "the file ends early"
    elif not first or len(first) > 120:
        reason = type(error).__name__
    else:
        reason = f"{type(error).__name__}: {first}"
    # whatever of torch's text is kept: its advice to run pickled code is not ours to give
    return type(error).__name__ if "weights_only" in reason else reason


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

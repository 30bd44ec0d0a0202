"""The streaming uRNN forecaster: a state that summarises a series' whole history, advanced
only by new points.

    model = build_forecaster(ForecasterConfig(kind="urnn-stream", lookback=336, horizon=96))
    state = model.new_state()
    state = model.advance(state, first_points)      # any chunking: the same state
    state = model.advance(state, next_points)
    quantiles = model.forecast(state)               # (H, Q), the input's (scaled) units

Why a separate kind. The windowed forecasters (`models.forecaster`) re-read a fixed look-back
from a fresh state and normalise it by its own statistics (RevIN): neither the state nor the
normalisation carries over from one request to the next, so the cost of a forecast grows with
the window and the model never sees past it. This one is built so that everything carries:

- Normalisation fixed at first contact: loc/scale are the mean and standard deviation of the
  series' first `lookback` points (W, the warm-up) and never change afterwards; before W
  points there is no forecast. The recurrence can only carry over if the inputs it has already
  consumed keep their meaning, which rules out refreshing the statistics in place; a served
  model version change (or a user's DELETE) starts the statistics again from the stored tail
  (service/streaming.py). `normalisation="last"` fixes loc at the warm-up's last value and
  the scale at 1; `"none"` skips it (the data stage's scaler only).
- Level drift is handled at the output instead: the median is anchored at the last observed
  value, plus a linear map of the last W points relative to that value (NLinear's trick), plus
  the state's contribution. A series that wanders far from its first-contact level therefore
  still gets forecasts around where it is now.
- Segments: the recurrence advances one step per `segment_length` points (SegRNN's segment
  inputs; 24x fewer recurrent steps on hourly data), each segment's targets read relative to
  the value just before it (the first segment relative to its own first value): level-free
  inputs, so the state summarises shapes and seasons rather than a level that drifts away
  from the first-contact statistics (chosen on the ETTh1 validation split over absolute
  inputs, docs/streaming.md). Segments are aligned to the series' first
  point; points of an unfinished segment wait in `pending`. The head is told how many points
  are pending (a one-hot phase) and sees them through the tail map, so a forecast is
  available after every point, not only at segment boundaries.
- Training (`training.stream_fit`) runs the encoder over long crops of each series and scores
  a forecast at every origin along the crop at once (`forward_origins`), with the statistics of
  each crop's first W points: the same rule the service applies at first contact, and states
  that have seen anywhere from W points to the whole crop.

Two code paths compute the same function. `forward` / `forward_origins` are batched torch
float32 with autograd (training, the ETT-style benchmark). `new_state` / `advance` /
`forecast` run one series in float64 on a cached double copy of the weights, with numpy in and
out (serving; `StreamServing`, the head's map of the last W points kept in float32): feeding a
history point by point, in chunks or at once gives the same state to rounding in float64
(~1e-12), so the same forecast, far inside the 1e-5 the service promises; the float32 path
agrees with it to float32 rounding.

States serialise without pickle (`StreamState.to_bytes`: a JSON header and raw float64 arrays).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import struct
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from models.forecaster import (
    FORECASTERS,
    FUTURE_CALENDAR_WIDTH,
    MIN_WINDOW_STD,
    Forecaster,
    ForecasterConfig,
    URNNEncoder,
    monotone_quantiles,
    scale_gaps,
)
from models.stream_head_cpp import head_kernel
from models.urnn import InputShapeError

STATE_FORMAT = 1
# Least shrink of every unit's modulus per recurrent step (modReLU bias <= -this). Unitary W
# keeps |h| and the inputs keep adding to it, so with the paper's free bias (0 at init) the state
# grows like sqrt(steps) without bound: a state served after a million points would lie far
# outside anything seen in training. With this floor the norm settles within about 300 steps
# (7,200 hourly points, inside a training crop) on ETTh1-like inputs
# (tests/models/test_streaming.py checks it stays flat over 200k points).
MIN_DISSIPATION = 0.03
_MAGIC = b"URNNSTATE"
_SERVING_TOKENS = itertools.count()


class NotReadyError(ValueError):
    """A forecast was asked of a series that has not yet seen its warm-up points."""


class StateFormatError(ValueError):
    """Bytes that are not a StreamState written by `StreamState.to_bytes`."""


@dataclass(frozen=True)
class StreamState:
    """One series' stream, in the model's scaled units; immutable (advance returns a new one).

    seen: points consumed. Before the warm-up (`warmup` points) only `warm` holds anything:
    the raw rows [target, covariates..., calendar...]. From then on loc/scale are fixed,
    `hidden` is the encoder state after the completed segments ([Re h; Im h], 2n values),
    `pending` the normalised rows of the segment in progress and `tail` the last `warmup`
    normalised targets.
    """

    warmup: int
    row_width: int
    seen: int = 0
    loc: float = math.nan
    scale: float = math.nan
    hidden: np.ndarray | None = None  # (2n,)
    # The normalised target of the last point of the last completed segment: the next
    # segment's inputs are read relative to it (nan before the first segment).
    anchor: float = math.nan
    pending: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (r, row_width)
    warm: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (<warmup, row_width)
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (<= warmup,)
    # A cache, not state: the head's product with `hidden` (it changes once per segment, the
    # forecast is asked after every point), valid for the StreamServing whose token it names.
    head_base: np.ndarray | None = field(default=None, compare=False, repr=False)
    head_base_of: int = field(default=-1, compare=False, repr=False)

    @property
    def ready(self) -> bool:
        return self.seen >= self.warmup

    @property
    def points_needed(self) -> int:
        """Points still to come before the first forecast (0 once ready)."""
        return max(0, self.warmup - self.seen)

    def to_bytes(self) -> bytes:
        """Magic, a length-prefixed JSON header, then the arrays as little-endian float64."""
        arrays = {
            "hidden": np.zeros(0) if self.hidden is None else self.hidden,
            "pending": self.pending,
            "warm": self.warm,
            "tail": self.tail,
        }
        header = {
            "format": STATE_FORMAT,
            "warmup": self.warmup,
            "row_width": self.row_width,
            "seen": self.seen,
            "loc": None if math.isnan(self.loc) else self.loc,
            "scale": None if math.isnan(self.scale) else self.scale,
            "has_hidden": self.hidden is not None,
            "anchor": None if math.isnan(self.anchor) else self.anchor,
            "shapes": {k: list(v.shape) for k, v in arrays.items()},
        }
        head = json.dumps(header, sort_keys=True).encode()
        body = b"".join(np.ascontiguousarray(v, dtype="<f8").tobytes() for v in arrays.values())
        return _MAGIC + struct.pack("<I", len(head)) + head + body

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamState:
        if not data.startswith(_MAGIC):
            raise StateFormatError("not a stream state (bad magic bytes)")
        offset = len(_MAGIC)
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4
        try:
            header = json.loads(data[offset : offset + size])
        except ValueError as exc:
            raise StateFormatError(f"stream state header is not JSON: {exc}") from None
        if not isinstance(header, dict):
            kind = type(header).__name__
            raise StateFormatError(f"stream state header is JSON {kind}, not an object")
        if header.get("format") != STATE_FORMAT:
            raise StateFormatError(
                f"stream state format {header.get('format')!r}; this version reads {STATE_FORMAT}"
            )
        offset += size
        try:
            return cls._from_header(header, data, offset)
        except (KeyError, TypeError, AttributeError) as exc:
            # JSON that parses but is not a state's header (damaged bytes): a format error, as
            # the service's reader of stored series expects, not a KeyError it would not catch
            what = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise StateFormatError(f"stream state header is not a state's: {what}") from None

    @classmethod
    def _from_header(cls, header: dict[str, Any], data: bytes, offset: int) -> StreamState:
        arrays: dict[str, np.ndarray] = {}
        for name in ("hidden", "pending", "warm", "tail"):
            shape = tuple(header["shapes"][name])
            count = int(np.prod(shape)) if shape else 1
            arrays[name] = (
                np.frombuffer(data, dtype="<f8", count=count, offset=offset)
                .astype(np.float64)
                .reshape(shape)
            )
            offset += 8 * count
        if offset != len(data):
            raise StateFormatError(f"stream state has {len(data) - offset} trailing bytes")
        return cls(
            warmup=int(header["warmup"]),
            row_width=int(header["row_width"]),
            seen=int(header["seen"]),
            loc=math.nan if header["loc"] is None else float(header["loc"]),
            scale=math.nan if header["scale"] is None else float(header["scale"]),
            hidden=arrays["hidden"] if header["has_hidden"] else None,
            anchor=math.nan if header["anchor"] is None else float(header["anchor"]),
            pending=arrays["pending"],
            warm=arrays["warm"],
            tail=arrays["tail"],
        )


class _Dissipative(nn.Module):
    """modReLU bias = -(MIN_DISSIPATION + softplus(raw)): learned, but never below the floor."""

    def forward(self, raw: Tensor) -> Tensor:
        return -(MIN_DISSIPATION + F.softplus(raw))

    def right_inverse(self, bias: Tensor) -> Tensor:
        """The raw value of a bias (which must lie below -MIN_DISSIPATION)."""
        excess = -bias - MIN_DISSIPATION
        return excess + torch.log(-torch.expm1(-excess))  # softplus^-1


class StreamingURNNForecaster(Forecaster):
    """kind "urnn-stream": the paper's structured uRNN over segments, carried across calls."""

    SUPPORTS_PAST_COVARIATES = True
    SUPPORTS_CALENDAR = True
    RECURRENT = True
    UNITARY = True
    STREAMING: ClassVar[bool] = True
    # What issue 8's per-update costs were measured with (docs/streaming.md); the windowed
    # kinds' 128 was chosen on evidence this kind was not part of.
    DEFAULT_HIDDEN: ClassVar[int] = 64

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__(config)
        c = config
        self.row_width = 1 + c.n_past_covariates + c.n_calendar
        self.encoder = URNNEncoder(c.segment_length * self.row_width, c)
        modrelu = self.encoder.urnn.modrelu
        with torch.no_grad():  # start just above the floor: raw = -6, bias ~ -0.0325
            modrelu.bias.fill_(-(MIN_DISSIPATION + F.softplus(torch.tensor(-6.0)).item()))
        parametrize.register_parametrization(modrelu, "bias", _Dissipative())
        self.dropout = nn.Dropout(c.dropout)
        self.future_calendar = (
            nn.Linear(c.horizon * c.n_calendar, FUTURE_CALENDAR_WIDTH) if c.n_calendar else None
        )
        head_in = self.encoder.state_size + c.segment_length
        head_in += FUTURE_CALENDAR_WIDTH if c.n_calendar else 0
        self.head = nn.Linear(head_in, c.horizon * len(c.quantiles))
        self.skip = nn.Linear(c.lookback, c.horizon)
        # Near-zero start: an untrained model forecasts about the last value (repeat-last)
        # rather than the last value plus a random head's O(1) noise, so training moves away
        # from a sane forecast instead of towards one. The head keeps small random weights so
        # that the encoder gets gradients from the first step.
        nn.init.normal_(self.head.weight, std=0.01)
        for tensor in (self.head.bias, self.skip.weight, self.skip.bias):
            nn.init.zeros_(tensor)
        # A float64 copy of this module for the serving path, rebuilt when any parameter or
        # buffer changes in place (tensor._version). A list, so nn.Module does not register it.
        self._double: list[tuple[tuple[object, ...], StreamServing]] = []
        self._watched: list[Tensor] = []  # parameters and buffers whose changes renew _double

    def unitary_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.urnn.unitary.parameters())

    # --- batched torch path (training, benchmarks) -------------------------------------------

    def forward(
        self,
        past_target: Tensor,
        past_covariates: Tensor | None = None,
        past_calendar: Tensor | None = None,
        future_calendar: Tensor | None = None,
    ) -> Tensor:
        """The whole history (B, T >= lookback) from a fresh state -> (B, H, Q), input units."""
        t = past_target.shape[1] if past_target.dim() == 2 else -1
        self._check_history(past_target, past_covariates, past_calendar)
        self._check_future(future_calendar, past_target.shape[0], 1)
        future = None if future_calendar is None else future_calendar.unsqueeze(1)
        origins = torch.tensor([t], device=past_target.device)
        out = self._origins(past_target, past_covariates, past_calendar, origins, future)
        return out[:, 0]

    def forward_origins(
        self,
        target: Tensor,
        covariates: Tensor | None,
        calendar: Tensor | None,
        origins: Tensor,
    ) -> Tensor:
        """Forecasts at many origins of one pass: (B, T) history -> (B, N, H, Q), input units.

        Origin t forecasts rows t .. t + H - 1 from rows 0 .. t - 1 (lookback <= t <= T; with
        calendar features t + H <= T, since the future calendar is read from `calendar`).
        Equal to `forward(target[:, :t], ...)` for every origin; one encoder pass serves all.
        """
        self._check_history(target, covariates, calendar)
        c = self.config
        t_max = target.shape[1] - (c.horizon if c.n_calendar else 0)
        if origins.dim() != 1 or len(origins) == 0:
            raise InputShapeError(
                f"origins must be a non-empty 1-d tensor; got {tuple(origins.shape)}"
            )
        if int(origins.min()) < c.lookback or int(origins.max()) > t_max:
            raise InputShapeError(
                f"origins must lie in [lookback={c.lookback}, {t_max}]; got "
                f"[{int(origins.min())}, {int(origins.max())}]"
            )
        future = None
        if calendar is not None and c.n_calendar:
            windows = calendar.unfold(1, c.horizon, 1)  # (B, T - H + 1, K, H)
            future = windows[:, origins].transpose(-1, -2)  # (B, N, H, K)
        return self._origins(target, covariates, calendar, origins, future)

    def _origins(
        self,
        target: Tensor,
        covariates: Tensor | None,
        calendar: Tensor | None,
        origins: Tensor,
        future: Tensor | None,
    ) -> Tensor:
        c = self.config
        b = target.shape[0]
        seg, w = c.segment_length, c.lookback
        loc, scale = self._first_contact(target[:, :w])  # (B, 1) each
        z = (target - loc) / scale  # (B, T)
        rows = torch.cat(
            [z.unsqueeze(-1)] + [x for x in (covariates, calendar) if x is not None], dim=-1
        )  # (B, T, R)
        n_seg = int(origins.max()) // seg
        # Segment j's targets relative to the value just before it (segment 0: to its first)
        z_seg = z[:, : n_seg * seg].reshape(b, n_seg, seg)
        before = torch.cat([z[:, :1], z[:, seg - 1 :: seg][:, : n_seg - 1]], dim=1)  # (B, S)
        segments = rows[:, : n_seg * seg].reshape(b, n_seg, seg, self.row_width)
        segments = torch.cat(
            [(z_seg - before.unsqueeze(-1)).unsqueeze(-1), segments[..., 1:]], dim=-1
        )
        steps = segments.reshape(b, n_seg, seg * self.row_width)
        states = self.encoder.urnn.states(steps)  # (B, n_seg, 2n); origin t reads state t // seg
        picked = states[:, origins // seg - 1]  # (B, N, 2n): t >= lookback >= seg
        phase = F.one_hot(origins % seg, seg).to(z.dtype).expand(b, -1, -1)  # (B, N, seg)
        tails = z.unfold(1, w, 1)[:, origins - w]  # (B, N, W): rows t - W .. t - 1
        out = self._head(picked, phase, tails, future)  # (B, N, H, Q), normalised
        # a flat first look-back (scale at the clamp) and a flat look-back before the origin:
        # its level, every quantile (StreamServing.forecast, the serving path, says why)
        flat = (scale <= MIN_WINDOW_STD) & (tails.amax(dim=-1) == tails.amin(dim=-1))  # (B, N)
        out = torch.where(flat[..., None, None], tails[..., -1:, None], out)
        return out * scale[..., None, None] + loc[..., None, None]

    def _head(self, state: Tensor, phase: Tensor, tail: Tensor, future: Tensor | None) -> Tensor:
        """(..., 2n), (..., seg), (..., W), (..., H, K) | None -> (..., H, Q) normalised."""
        c = self.config
        parts = [self.dropout(state), phase]
        if self.future_calendar is not None and future is not None:
            parts.append(self.future_calendar(future.flatten(-2)))
        raw = self.head(torch.cat(parts, dim=-1))
        raw = raw.unflatten(-1, (c.horizon, len(c.quantiles)))  # (..., H, Q)
        last = tail[..., -1:]  # (..., 1)
        anchor = last + self.skip(tail - last)  # (..., H)
        m = c.median_index
        raw = torch.cat(
            [raw[..., :m], (raw[..., m] + anchor).unsqueeze(-1), raw[..., m + 1 :]], dim=-1
        )
        return scale_gaps(monotone_quantiles(raw, m), self.gap_scale, m)

    def _first_contact(self, first: Tensor) -> tuple[Tensor, Tensor]:
        if self.config.normalisation != "instance":
            ones = torch.ones_like(first[:, :1])
            loc = first[:, -1:] if self.config.normalisation == "last" else torch.zeros_like(ones)
            return loc, ones
        # a flat first look-back: its value and the clamp exactly, as window_statistics sets
        # them (the float32 mean of 48 copies of 123456.7 is an ulp off, its std 0.0156)
        flat = first.amax(dim=1, keepdim=True) == first.amin(dim=1, keepdim=True)
        loc = torch.where(flat, first[:, :1], first.mean(dim=1, keepdim=True))
        std = first.std(dim=1, unbiased=False, keepdim=True)
        scale = torch.where(flat, 0.0, std).clamp_min(MIN_WINDOW_STD)
        return loc, scale

    def _check_history(
        self, target: Tensor, covariates: Tensor | None, calendar: Tensor | None
    ) -> None:
        c = self.config
        if target.dim() != 2 or target.shape[1] < c.lookback:
            raise InputShapeError(
                f"past_target must have shape (batch, T >= lookback={c.lookback}); "
                f"got {tuple(target.shape)}"
            )
        b, t = target.shape
        for name, tensor, width in (
            ("past_covariates", covariates, c.n_past_covariates),
            ("past_calendar", calendar, c.n_calendar),
        ):
            if width == 0 and tensor is not None:
                raise InputShapeError(f"{name} must be None for this forecaster (width 0)")
            if width and (tensor is None or tuple(tensor.shape) != (b, t, width)):
                got = None if tensor is None else tuple(tensor.shape)
                raise InputShapeError(f"{name} must have shape {(b, t, width)}; got {got}")

    def _check_future(self, future: Tensor | None, b: int, n: int) -> None:
        c = self.config
        if not c.n_calendar:
            if future is not None:
                raise InputShapeError("future_calendar must be None for this forecaster")
            return
        if future is None or tuple(future.shape) != (b, c.horizon, c.n_calendar):
            got = None if future is None else tuple(future.shape)
            raise InputShapeError(
                f"future_calendar must have shape {(b, c.horizon, c.n_calendar)}; got {got}"
            )

    def forecast_normalised(
        self,
        z: Tensor,
        past_covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> Tensor:
        raise NotImplementedError("urnn-stream normalises at first contact; call forward")

    # --- one series, float64, numpy (serving) -----------------------------------------------

    def new_state(self) -> StreamState:
        return self.serving().new_state()

    def advance(
        self,
        state: StreamState,
        target: np.ndarray,
        covariates: np.ndarray | None = None,
        calendar: np.ndarray | None = None,
    ) -> StreamState:
        """The state after `target` (T,) (+ covariates (T, C), calendar (T, K)); a new object."""
        return self.serving().advance(state, target, covariates, calendar)

    def forecast(self, state: StreamState, future_calendar: np.ndarray | None = None) -> np.ndarray:
        """(H, Q) float64 quantiles of the next H points, in the input's (scaled) units."""
        return self.serving().forecast(state, future_calendar)

    def serving(self) -> StreamServing:
        """The float64 serving snapshot of this module's current weights, rebuilt when a
        parameter or buffer has changed in place since it was made (training between calls).
        A caller that never changes the weights (the service) may keep the snapshot and skip
        this check (~6 us a call: a version counter per parameter)."""
        if not self._watched:  # walking the module tree costs more than the forecast itself
            self._watched.extend((*self.parameters(), *self.buffers()))
        key = tuple((t.data_ptr(), t._version) for t in self._watched)
        cached = self._double
        if cached and cached[0][0] == key:
            return cached[0][1]
        saved, self._double = self._double, []
        watched, self._watched = self._watched, []
        try:
            dup = copy.deepcopy(self)
        finally:
            self._double, self._watched = saved, watched
        # On the CPU whatever device this module is on: the serving path is numpy on one
        # series' arrays, per point, where a GPU would only add a copy each way.
        dup = dup.to("cpu", torch.float64).eval()
        for p in dup.parameters():
            p.requires_grad_(False)
        snapshot = StreamServing(dup)
        self._double = [(key, snapshot)]
        return snapshot


class StreamServing:
    """One series' serving path, float64, on a frozen double copy of the weights on the CPU.

    Built by `StreamingURNNForecaster.serving()`. Per call it only runs numpy on arrays laid
    out at construction (the head folded into a few matrices, see `forecast`; the compiled
    head of `models.stream_head_cpp` where it builds) and, once per completed segment, the
    torch encoder; it never looks at the module's parameters again, so it must not outlive a
    change of them (ask the module for a new one).
    """

    def __init__(self, double: StreamingURNNForecaster, *, compiled_head: bool = True) -> None:
        self.module = double
        self.token = next(_SERVING_TOKENS)  # names the states' head_base caches it made
        self.config = c = double.config
        self.row_width = double.row_width
        self._urnn = double.encoder.urnn

        def array(t: Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().copy()

        n2, seg, m, q = 2 * c.hidden_size, c.segment_length, c.median_index, len(c.quantiles)
        head_w, head_b = array(double.head.weight), array(double.head.bias)
        skip_w, skip_b = array(double.skip.weight), array(double.skip.bias)
        self._head_hidden = np.ascontiguousarray(head_w[:, :n2])  # (H * Q, 2n)
        # Per phase (points pending, 0 .. seg - 1): its one-hot column of the head plus the
        # bias, plus the skip's bias in the median's entries (flat index h * Q + m).
        phase_bias = head_w[:, n2 : n2 + seg] + head_b[:, None]
        phase_bias[m::q] += skip_b[:, None]
        self._phase_bias = np.ascontiguousarray(phase_bias.T)  # (seg, H * Q)
        self._head_calendar = np.ascontiguousarray(head_w[:, n2 + seg :])  # (H * Q, 16 or 0)
        # median = raw_m + last + skip_w @ (tail - last) + skip_b; the tail's last entry is
        # `last`, so last * (1 - row sums of skip_w) folds into that column of the map.
        skip = skip_w.copy()
        skip[:, -1] += 1.0 - skip_w.sum(axis=1)
        # Kept in float32: the largest array a forecast reads (H x W), and between two
        # requests it has left the CPU's caches; half the bytes made the product ~1.7x faster
        # from a cold cache. Its rounding (~1e-7 relative) is far below the service's 1e-5 and
        # the same for every way of feeding a series (the state stays float64).
        self._skip = np.ascontiguousarray(skip, dtype=np.float32)  # (H, W)
        self._gap_scale = np.insert(array(double.gap_scale), m, 0.0, axis=1)  # (H, Q)
        self._gap_scale_flat = np.ascontiguousarray(self._gap_scale.reshape(-1))
        # The same head compiled (models.stream_head_cpp), or None: the numpy path below.
        self._kernel = head_kernel() if compiled_head else None
        self._outwards = _outwards(q, m)  # (Q, Q)
        fc = double.future_calendar
        self._calendar_w = None if fc is None else array(fc.weight)  # (16, H * K)
        self._calendar_b = None if fc is None else array(fc.bias)

    def new_state(self) -> StreamState:
        r = self.row_width
        return StreamState(
            warmup=self.config.lookback,
            row_width=r,
            pending=np.zeros((0, r)),
            warm=np.zeros((0, r)),
            tail=np.zeros(0),
        )

    def advance(
        self,
        state: StreamState,
        target: np.ndarray,
        covariates: np.ndarray | None = None,
        calendar: np.ndarray | None = None,
    ) -> StreamState:
        """The state after `target` (T,) (+ covariates (T, C), calendar (T, K)); a new object."""
        c = self.config
        if (
            covariates is None
            and calendar is None
            and self.row_width == 1
            and state.ready
            and state.row_width == 1
            and state.warmup == c.lookback
            and np.ndim(target) == 1
            and len(target) == 1
            and len(state.pending) + 1 < c.segment_length
        ):
            return self._append_one(state, float(target[0]))
        rows = self._rows(state, target, covariates, calendar)
        if len(rows) == 0:
            return state
        if not state.ready:
            warm = np.concatenate([state.warm, rows])
            if len(warm) < c.lookback:
                return replace(state, seen=state.seen + len(rows), warm=warm)
            first = warm[: c.lookback, 0]
            if c.normalisation == "none":
                loc, scale = 0.0, 1.0
            elif c.normalisation == "last":
                loc, scale = float(first[-1]), 1.0
            else:
                flat = first.max() == first.min()  # exactly its value, as _first_contact
                loc = float(first[0]) if flat else float(first.mean())
                scale = MIN_WINDOW_STD if flat else max(float(first.std()), MIN_WINDOW_STD)
            state = replace(state, seen=0, loc=loc, scale=scale, warm=np.zeros((0, self.row_width)))
            rows = warm
        z_rows = rows.copy()
        z_rows[:, 0] = (rows[:, 0] - state.loc) / state.scale
        buffered = np.concatenate([state.pending, z_rows])
        seg = c.segment_length
        k = len(buffered) // seg
        hidden, anchor = state.hidden, state.anchor
        base = state.head_base if state.head_base_of == self.token else None
        if k:
            done = buffered[: k * seg].reshape(k, seg, self.row_width).copy()
            start = float(done[0, 0, 0]) if hidden is None else anchor  # segment 0: its first
            before = np.concatenate([[start], done[:-1, -1, 0]])  # (k,)
            done[:, :, 0] -= before[:, None]
            hidden = self._run_encoder(hidden, done.reshape(k, -1))
            anchor = float(buffered[k * seg - 1, 0])
            base = self._head_hidden @ hidden
        tail = np.concatenate([state.tail, z_rows[:, 0]])[-c.lookback :]
        # The constructor, not dataclasses.replace: this runs once per served point.
        return StreamState(
            warmup=state.warmup,
            row_width=state.row_width,
            seen=state.seen + len(rows),
            loc=state.loc,
            scale=state.scale,
            hidden=hidden,
            anchor=anchor,
            pending=buffered[k * seg :].copy(),
            warm=state.warm,
            tail=tail.copy(),
            head_base=base,
            head_base_of=-1 if base is None else self.token,
        )

    def _append_one(self, state: StreamState, value: float) -> StreamState:
        """`advance` by one target-only point that does not complete a segment (a streaming
        update's usual case): the same arithmetic on fewer, smaller arrays."""
        z = (value - state.loc) / state.scale
        return StreamState(
            warmup=state.warmup,
            row_width=1,
            seen=state.seen + 1,
            loc=state.loc,
            scale=state.scale,
            hidden=state.hidden,
            anchor=state.anchor,
            pending=np.concatenate((state.pending, ((z,),))),
            warm=state.warm,
            tail=np.concatenate((state.tail, (z,)))[-self.config.lookback :],
            head_base=state.head_base if state.head_base_of == self.token else None,
            head_base_of=state.head_base_of if state.head_base_of == self.token else -1,
        )

    def forecast(
        self,
        state: StreamState,
        future_calendar: np.ndarray | None = None,
        *,
        unit_scale: float = 1.0,
        unit_loc: float = 0.0,
        last: float = math.nan,
    ) -> np.ndarray:
        """(H, Q) float64 quantiles of the next H points, in the input's (scaled) units, then
        times `unit_scale` plus `unit_loc` (the caller's own scaler, folded in). `last`: the
        series' last point in the caller's units as its data holds it (NaN: not known), what
        a flat series is forecast as: its level scaled twice and back in float64 was one
        float step off for some levels (5004.000000000001 for 5004.0), so that its
        zero-width interval missed every actual at the level."""
        c = self.config
        if not state.ready or state.hidden is None:
            raise NotReadyError(
                f"the series has {state.seen} of the {c.lookback} points needed before the "
                f"first forecast ({state.points_needed} more)"
            )
        if state.scale <= MIN_WINDOW_STD and state.tail.max() == state.tail.min():
            # The series' first look-back had no spread (its scale is the clamp) and its last
            # look-back has none either: forecast as its level, every quantile, as the main
            # kinds forecast a flat look-back (UrnnForecaster._in_input_scale). The network's
            # output times 1e-5 was served as noise: 1.5e-05 for a series of zeros.
            if not math.isfinite(last):
                level = float(state.tail[-1]) * state.scale + state.loc
                last = level * unit_scale + unit_loc
            return np.full((c.horizon, len(c.quantiles)), last)
        # head([hidden, one-hot phase, calendar bottleneck]): the one-hot picks one column,
        # folded with the biases into _phase_bias.
        base = state.head_base
        if base is None or state.head_base_of != self.token:
            base = self._head_hidden @ state.hidden
        if c.n_calendar:
            if future_calendar is None or future_calendar.shape != (c.horizon, c.n_calendar):
                got = None if future_calendar is None else future_calendar.shape
                raise InputShapeError(
                    f"future_calendar must have shape {(c.horizon, c.n_calendar)}; got {got}"
                )
            assert self._calendar_w is not None and self._calendar_b is not None
            bottleneck = self._calendar_w @ np.asarray(future_calendar, np.float64).reshape(-1)
            base = base + self._head_calendar @ (bottleneck + self._calendar_b)
        phase = self._phase_bias[len(state.pending)]
        if self._kernel is not None:
            rows = np.empty((len(c.quantiles), c.horizon))
            self._kernel(
                rows,
                base,
                phase,
                self._skip,
                np.ascontiguousarray(state.tail),
                self._gap_scale_flat,
                c.median_index,
                state.scale * unit_scale,
                state.loc * unit_scale + unit_loc,
            )
            return rows.T  # (H, Q), a view: its transpose is the answer's contiguous rows
        raw = (base + phase).reshape(c.horizon, len(c.quantiles))
        median = raw[:, c.median_index] + self._skip @ state.tail.astype(np.float32)
        # monotone_quantiles then scale_gaps, composed: softplus gaps times gap_scale (0 in the
        # median's column), summed outwards from the median by one fixed (Q, Q) matrix.
        gaps = np.logaddexp(0.0, raw)
        gaps *= self._gap_scale
        out: np.ndarray = gaps @ self._outwards
        out += median[:, None]
        out *= state.scale * unit_scale
        out += state.loc * unit_scale + unit_loc
        return out

    def _rows(
        self,
        state: StreamState,
        target: np.ndarray,
        covariates: np.ndarray | None,
        calendar: np.ndarray | None,
    ) -> np.ndarray:
        c = self.config
        target = np.asarray(target, dtype=np.float64)
        if target.ndim != 1:
            raise InputShapeError(f"target must be 1-d (T,); got shape {target.shape}")
        t = len(target)
        parts = [target[:, None]]
        for name, array, width in (
            ("covariates", covariates, c.n_past_covariates),
            ("calendar", calendar, c.n_calendar),
        ):
            if width == 0:
                if array is not None:
                    raise InputShapeError(f"{name} must be None for this forecaster (width 0)")
                continue
            if array is None or np.shape(array) != (t, width):
                got = None if array is None else np.shape(array)
                raise InputShapeError(f"{name} must have shape {(t, width)}; got {got}")
            parts.append(np.asarray(array, dtype=np.float64))
        if state.row_width != self.row_width or state.warmup != c.lookback:
            raise InputShapeError(
                f"the state was made for another model (row width {state.row_width}, warm-up "
                f"{state.warmup}); this one has {self.row_width}, {c.lookback}"
            )
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def _run_encoder(self, hidden: np.ndarray | None, steps: np.ndarray) -> np.ndarray:
        """(2n,) | None (the learned initial state), (k, seg * R) -> the (2n,) state after."""
        n = self.config.hidden_size
        with torch.inference_mode():
            h0 = None
            if hidden is not None:
                pairs = torch.from_numpy(hidden)
                h0 = torch.complex(pairs[:n], pairs[n:]).unsqueeze(0)
            states = self._urnn.states(torch.from_numpy(np.ascontiguousarray(steps))[None], h0)
            last: np.ndarray = states[0, -1].numpy().copy()
        return last


def _outwards(q: int, median: int) -> np.ndarray:
    """(Q, Q) T with quantiles = median + gaps @ T, for gaps (H, Q) whose column k < median is
    the gap between quantiles k and k + 1 and column k > median the gap between k - 1 and k
    (the median's column is zero): quantile j sums the gaps between it and the median."""
    t = np.zeros((q, q))
    for j in range(q):
        if j > median:
            t[median + 1 : j + 1, j] = 1.0
        elif j < median:
            t[j:median, j] = -1.0
    return t


FORECASTERS["urnn-stream"] = StreamingURNNForecaster

"""Stage 4 of the training pipeline: (look-back, horizon) windows over split, scaled series.

    splits = split_data(data, SplitConfig(method="ett", lookback=336))
    scaler = StandardScaler.fit(splits)            # train rows only (training.split)
    sets = make_windows(splits, scaler, WindowConfig(lookback=336, horizon=96), freq=data.freq)
    batch = sets.train.batch(torch.arange(64))     # WindowBatch of (64, 336) / (64, 96) tensors
    model(*batch.model_inputs(model))              # what a forecaster's forward takes

Order of the stages: the global, train-only z-scoring of `training.split` is applied here,
first, to every frame; the per-window normalisation (RevIN-like, NLinear-like) happens inside
the model. The windows of a part come from that part's frame only: train windows from the train
rows, val and test windows from frames that start `lookback` rows before their span (context,
input only), so every target row of a val or test window lies in its own span. Origins are
aligned to the end of the frame (the last window ends on the last row; a stride > 1 drops rows
at the start, never the freshest ones).

One global model over many series: every series (or, channel-independent, every channel of
every series) is one entry in a single storage tensor; a window is (entry, first row), and a
batch is one gather `values[start + arange(L + H)]`. No window is ever materialised on its own,
so the memory is the series once, whatever the stride.

Channel independence (`WindowConfig.channel_independent`, SegRNN/PatchTST style): each column
of each series (target and covariates alike) becomes its own univariate entry named
`<series>/<column>`, with no covariates; one shared model then forecasts every channel. The
forecaster is built with n_past_covariates=0 and sees only (B, L) targets. Each such entry also
carries its channel id (the column's position in its series), which a forecaster with a channel
embedding (`ForecasterConfig.n_channels`) reads through `WindowBatch.model_keywords`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from models.forecaster import (
    FORECASTERS,
    Forecaster,
    ForecasterConfig,
    calendar_features,
    n_calendar_features,
)
from training.split import SeriesSplit, StandardScaler
from training.validation import NonFiniteValueError, plural, series_named

PARTS = ("train", "val", "test")


class WindowError(ValueError):
    """Windows that cannot be made as asked (series too short, bad stride or count)."""


class IncompatibleWindowsError(ValueError):
    """Windows whose shapes do not match the forecaster they are meant for."""


@dataclass(frozen=True)
class WindowConfig:
    """How to cut windows; JSON-serialisable (dataclasses.asdict) for the run's parameters."""

    lookback: int
    horizon: int
    stride: int = 1  # rows between the origins of consecutive train windows
    eval_stride: int = 1  # the same for val and test windows (the ETT protocol uses 1)
    channel_independent: bool = False  # every column its own univariate series
    calendar: bool = False  # add calendar_features(index, freq) for the look-back and horizon

    def __post_init__(self) -> None:
        for name in ("lookback", "horizon", "stride", "eval_stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WindowError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class SeriesEntry:
    """One univariate-target series in a dataset's storage."""

    name: str  # series id, or "<series id>/<column>" when channel-independent
    source: str  # the series id in the splits and in the scaler
    columns: tuple[str, ...]  # stored columns: the target first, then the covariates
    index: pd.DatetimeIndex  # timestamps of the stored rows
    offset: int  # first row of this entry in the storage tensor
    # Channel-independent: the column's position among its series' columns (target 0); else 0.
    channel: int = 0


class SeriesArrays(NamedTuple):
    """One series' rows as `WindowDataset.from_arrays` reads them."""

    stamps: pd.Index  # timestamps of the rows
    values: np.ndarray  # (T, 1 + C), already scaled: the target first, then the covariates
    columns: tuple[str, ...]
    # (T, 1 + C) bool: True where the loader filled the value in (LoadedData.filled); None:
    # every value observed
    filled: np.ndarray | None = None


class WindowBatch(NamedTuple):
    """A batch of windows (or one window, without the batch axis, from `dataset[i]`).

    Absent inputs are zero-width tensors rather than None, so that torch's default collate can
    stack them; `model_inputs` turns them into what a forecaster takes."""

    past_target: Tensor  # (B, L)
    past_covariates: Tensor  # (B, L, C), C = 0 without covariates
    past_calendar: Tensor  # (B, L, K), K = 0 without calendar features
    future_calendar: Tensor  # (B, H, K)
    target: Tensor  # (B, H)
    channel: Tensor  # (B,) int64 channel id of each window (SeriesEntry.channel)

    def to(self, device: torch.device | str) -> WindowBatch:
        return WindowBatch(*(t.to(device, non_blocking=True) for t in self))

    def model_inputs(
        self, model: Forecaster
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """The forward arguments for `model`: inputs it has no capability for are left out
        (so a baseline can be scored on the same windows as a uRNN with covariates)."""
        covariates = self.past_covariates
        use_covariates = model.SUPPORTS_PAST_COVARIATES and covariates.shape[-1] > 0
        use_calendar = model.SUPPORTS_CALENDAR and self.past_calendar.shape[-1] > 0
        return (
            self.past_target,
            covariates if use_covariates else None,
            self.past_calendar if use_calendar else None,
            self.future_calendar if use_calendar else None,
        )

    def model_keywords(self, model: Forecaster) -> dict[str, Tensor]:
        """Keyword arguments of the forward call beside `model_inputs`: the channel ids, for a
        forecaster with a channel embedding; call `model(*model_inputs, **model_keywords)`."""
        return {"channel": self.channel} if model.reads_channel_ids else {}


class WindowDataset(Dataset[WindowBatch]):
    """Windows over stored series, by index; works with torch's DataLoader (`dataset[i]`) and,
    faster, with `batch(indices)` (one gather per batch)."""

    def __init__(
        self,
        values: Tensor,
        calendar: Tensor,
        entries: Sequence[SeriesEntry],
        starts: Tensor,
        window_entry: Tensor,
        *,
        lookback: int,
        horizon: int,
        filled: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.values = values  # (R, 1 + C): all entries' rows, one after the other
        # (R,) bool: True where an entry's target value (its first column) at that row was
        # filled in by the loader, not observed; None where no target value of any window was
        # (the scores and the interval calibration then read every target, as they always did)
        self.filled = filled
        self.calendar = calendar  # (R, K)
        self.entries = tuple(entries)
        self.starts = starts  # (N,) first storage row of each window
        self.window_entry = window_entry  # (N,) entry index of each window
        self.lookback = lookback
        self.horizon = horizon
        self._span = torch.arange(lookback + horizon)  # (L + H,)
        entry_channel = torch.tensor([e.channel for e in self.entries], dtype=torch.int64)
        self.window_channel = entry_channel[window_entry]  # (N,) channel id of each window

    @classmethod
    def from_frames(
        cls,
        frames: Mapping[str, pd.DataFrame],
        *,
        lookback: int,
        horizon: int,
        stride: int = 1,
        n_windows: int | Mapping[str, int | None] | None = None,
        channel_independent: bool = False,
        calendar_freq: str | None = None,
    ) -> WindowDataset:
        """Windows over `frames` (already scaled; target first, then covariates), each frame
        giving its last `n_windows` windows (all if None; a mapping: per frame, by id),
        `stride` rows apart."""
        return cls.from_arrays(
            {
                # float64 as scaled: from_arrays casts to float32 and names a cell beyond it
                series_id: SeriesArrays(
                    frame.index, frame.to_numpy(dtype=np.float64), tuple(map(str, frame.columns))
                )
                for series_id, frame in frames.items()
            },
            lookback=lookback,
            horizon=horizon,
            stride=stride,
            n_windows=n_windows,
            channel_independent=channel_independent,
            calendar_freq=calendar_freq,
        )

    @classmethod
    def from_arrays(
        cls,
        series: Mapping[str, SeriesArrays],
        *,
        lookback: int,
        horizon: int,
        stride: int = 1,
        n_windows: int | Mapping[str, int | None] | None = None,
        channel_independent: bool = False,
        calendar_freq: str | None = None,
    ) -> WindowDataset:
        """`from_frames` over each series' index, values and column names: `make_windows`
        scales straight into arrays, with no DataFrame per part of each series to read back."""
        entries: list[SeriesEntry] = []
        blocks: list[np.ndarray] = []
        calendars: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        flags: list[np.ndarray] = []
        offset = 0
        for series_id, (frame_index, frame_values, columns, frame_filled) in series.items():
            index = pd.DatetimeIndex(frame_index)
            values = _float32_values(frame_values, series_id, index, columns)  # (T, 1 + C)
            if calendar_freq is not None:
                calendar = calendar_features(index, calendar_freq).astype(np.float32)
            else:
                calendar = np.zeros((len(index), 0), dtype=np.float32)
            if frame_filled is None:
                frame_filled = np.zeros((len(index), len(columns)), dtype=bool)
            pieces: list[tuple[str, tuple[str, ...], np.ndarray, int]]
            if channel_independent:
                pieces = [
                    (f"{series_id}/{column}", (column,), values[:, [c]], c)
                    for c, column in enumerate(columns)
                ]
            else:
                pieces = [(series_id, columns, values, 0)]
            count = n_windows.get(series_id) if isinstance(n_windows, Mapping) else n_windows
            first = window_starts(len(index), lookback, horizon, stride, count)
            for name, piece_columns, block, channel in pieces:
                entries.append(SeriesEntry(name, series_id, piece_columns, index, offset, channel))
                blocks.append(block)
                flags.append(frame_filled[:, channel])  # the entry's target: its first column
                calendars.append(calendar)
                starts.append(first + offset)
                owners.append(np.full(len(first), len(entries) - 1))
                offset += len(index)
        if not entries:
            raise WindowError("no series to make windows from")
        widths = {block.shape[1] for block in blocks}
        if len(widths) != 1:
            raise WindowError(f"every series must have the same columns; got widths {widths}")
        filled = np.concatenate(flags)
        return cls(
            torch.from_numpy(np.concatenate(blocks)),
            torch.from_numpy(np.concatenate(calendars)),
            entries,
            torch.from_numpy(np.concatenate(starts).astype(np.int64)),
            torch.from_numpy(np.concatenate(owners).astype(np.int64)),
            lookback=lookback,
            horizon=horizon,
            filled=torch.from_numpy(filled) if filled.any() else None,
        )

    @property
    def n_covariates(self) -> int:
        return int(self.values.shape[1]) - 1

    @property
    def n_calendar(self) -> int:
        return int(self.calendar.shape[1])

    @property
    def n_channels(self) -> int:
        """1 + the largest channel id among the entries (1 unless channel-independent)."""
        return 1 + max(e.channel for e in self.entries)

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def __getitem__(self, i: int) -> WindowBatch:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        return WindowBatch(*(t.squeeze(0) for t in self.batch(torch.tensor([i]))))

    def batch(self, indices: Tensor) -> WindowBatch:
        """The windows at `indices` (1-D int64), gathered from storage in one indexing op."""
        rows = self.starts[indices].unsqueeze(1) + self._span  # (B, L + H)
        values = self.values[rows]  # (B, L + H, 1 + C)
        calendar = self.calendar[rows]  # (B, L + H, K)
        lb = self.lookback
        return WindowBatch(
            past_target=values[:, :lb, 0],
            past_covariates=values[:, :lb, 1:],
            past_calendar=calendar[:, :lb],
            future_calendar=calendar[:, lb:],
            target=values[:, lb:, 0],
            channel=self.window_channel[indices],
        )

    def targets(self, indices: Tensor) -> Tensor:
        """The target rows (B, H) of the windows at `indices`, as `batch(indices).target`
        without gathering their look-backs, covariates and calendar features: the backtest
        reads every test window's target at once, and `batch` of 13,841 windows of 4,096 +
        96 rows took 0.7 GB (its row index and values), more with covariates, to keep 5 MB."""
        rows = self.starts[indices].unsqueeze(1) + self.lookback + self._span[: self.horizon]
        return self.values[rows, 0]

    def targets_filled(self, indices: Tensor) -> Tensor | None:
        """(B, H) bool: which target values of the windows at `indices` the loader filled in
        (`LoadedData.filled`), which the val scores and the interval calibration leave out as
        the backtest's metrics do; None where this dataset holds no filled target value."""
        if self.filled is None:
            return None
        rows = self.starts[indices].unsqueeze(1) + self.lookback + self._span[: self.horizon]
        return self.filled[rows]

    def window_table(self) -> pd.DataFrame:
        """One row per window: entry name, source series and origin (the timestamp of the last
        input row: the forecast's cutoff)."""
        owners = self.window_entry.numpy()
        starts = self.starts.numpy()
        names = np.empty(len(self), dtype=object)
        sources = np.empty(len(self), dtype=object)
        origins = np.empty(len(self), dtype="datetime64[ns]")
        for e, entry in enumerate(self.entries):
            mask = owners == e
            local = starts[mask] - entry.offset
            stamps = entry.index.to_numpy(dtype="datetime64[ns]")
            names[mask], sources[mask] = entry.name, entry.source
            origins[mask] = stamps[local + self.lookback - 1]
        return pd.DataFrame({"series": names, "source": sources, "origin": origins})

    def check_compatible(self, config: ForecasterConfig) -> None:
        """Raise IncompatibleWindowsError unless these windows fit a forecaster built from
        `config` (inputs it does not read are dropped by WindowBatch.model_inputs)."""
        cls = FORECASTERS[config.kind]
        wanted = {"lookback": self.lookback, "horizon": self.horizon}
        if cls.SUPPORTS_PAST_COVARIATES:
            wanted["n_past_covariates"] = self.n_covariates
        if cls.SUPPORTS_CALENDAR:
            wanted["n_calendar"] = self.n_calendar
        wrong = {k: v for k, v in wanted.items() if getattr(config, k) != v}
        if config.n_channels and config.n_channels < self.n_channels:
            wrong["n_channels"] = self.n_channels
        if wrong:
            detail = ", ".join(
                f"{k}={v} (config has {getattr(config, k)})" for k, v in wrong.items()
            )
            raise IncompatibleWindowsError(
                f"the windows do not fit a {config.kind!r} forecaster: they have {detail}"
            )


def window_starts(
    n_rows: int, lookback: int, horizon: int, stride: int, n_windows: int | None = None
) -> np.ndarray:
    """Frame-relative first rows of the windows of a frame of n_rows rows, ascending, aligned
    so the last window ends on the last row; the last `n_windows` of them if given."""
    last = n_rows - lookback - horizon
    available = last // stride + 1 if last >= 0 else 0
    count = available if n_windows is None else n_windows
    if count > available:
        raise WindowError(
            f"{plural(n_windows or 0, 'window')} of {lookback} + {horizon} rows, {stride} apart, "
            "need "
            f"{lookback + horizon + (n_windows or 1) * stride - stride:,} rows; the frame has "
            f"{n_rows:,} (room for {available})"
        )
    return np.asarray(last - stride * np.arange(count)[::-1], dtype=np.int64)


@dataclass(frozen=True)
class WindowSets:
    train: WindowDataset
    val: WindowDataset
    test: WindowDataset


def _float32_values(
    values: np.ndarray, series_id: str, index: pd.DatetimeIndex, columns: Sequence[str]
) -> np.ndarray:
    """The scaled values as the model's float32, or NonFiniteValueError naming the first cell
    beyond float32's range (3.4e38 training standard deviations from the training mean): a
    glitch of 1e40 in the test span of a column whose training std is 8 became inf, its
    windows forecast NaN, and the backtest scored MAE inf with no word of why (a registered
    version with that score); one in a covariate was cast to inf with only numpy's warning."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(out)
    if finite.all():
        return out
    row, column = (int(k) for k in np.argwhere(~finite)[0])
    count = plural(int(np.count_nonzero(~finite)), "such cell")
    scaled = float(np.asarray(values, dtype=np.float64)[row, column])
    raise NonFiniteValueError(
        f"{series_named(series_id)}, column {str(columns[column])!r} at {index[row]}: the value "
        f"lies {scaled:.4g} training standard deviations from the training mean, beyond the "
        f"range of float32 that the model reads ({count} in this "
        "series' part); a glitch or a unit error? leave the cell empty (missing values are "
        "filled), or rescale the column"
    )


def filled_flags(
    filled: Mapping[str, pd.DataFrame] | None, sid: str, column: str, index: pd.Index
) -> np.ndarray | None:
    """Which values of `column` at `index` the loader filled in, or None where it kept none."""
    flags = None if filled is None else filled.get(sid)
    if flags is None or column not in flags.columns:
        return None
    if len(index) and flags.index.is_monotonic_increasing:
        # A span of the series (train, val, ...) is a run of its rows: sliced by position.
        # Reindexing built a hash table of the whole index (+0.7 GB and 12 s for a 16 M-row log).
        start = int(flags.index.searchsorted(index[0]))
        stop = start + len(index)
        if stop <= len(flags) and flags.index[start:stop].equals(index):
            sliced: np.ndarray = flags[column].to_numpy(dtype=bool)[start:stop]
            return sliced
    return flags[column].reindex(index, fill_value=False).to_numpy(dtype=bool)


def _frame_filled(
    filled: Mapping[str, pd.DataFrame] | None, sid: str, frame: pd.DataFrame
) -> np.ndarray | None:
    """(T, columns) bool flags of `frame` (a part of series `sid`), or None where none is set."""
    if filled is None:
        return None
    columns = [filled_flags(filled, sid, str(column), frame.index) for column in frame.columns]
    if not any(flags is not None and flags.any() for flags in columns):
        return None
    none = np.zeros(len(frame), dtype=bool)
    return np.stack([none if flags is None else flags for flags in columns], axis=1)


def make_windows(
    splits: Mapping[str, SeriesSplit],
    scaler: StandardScaler,
    config: WindowConfig,
    *,
    freq: str,
    filled: Mapping[str, pd.DataFrame] | None = None,
) -> WindowSets:
    """Scale every part with the train-only `scaler`, then cut each part into windows.
    `filled` (`LoadedData.filled`): the values the loader filled in, which the windows flag
    (`WindowDataset.targets_filled`) so that val scores and calibrations leave those targets
    out; None: every value observed."""
    # every part of every series first, as `scaler.transform_splits` did: a series the
    # scaler does not know is named before any part's windows are cut
    scaled = {
        sid: {part: scaler.transform_values(sid, getattr(split, part)) for part in PARTS}
        for sid, split in splits.items()
    }
    datasets = {}
    for part in PARTS:
        # an empty frame: the series is held out for another part (the "series" split)
        frames = {sid: getattr(split, part) for sid, split in splits.items()}
        frames = {sid: frame for sid, frame in frames.items() if not frame.empty}
        shortest = min(len(f) for f in frames.values())
        if shortest < config.lookback + config.horizon:
            series = min(frames, key=lambda sid: len(frames[sid]))
            raise WindowError(
                f"the {part} frame of {series_named(series)} has {plural(shortest, 'row')}; "
                f"a window needs lookback + horizon = {config.lookback + config.horizon:,}"
            )
        arrays = {
            sid: SeriesArrays(
                frame.index,
                scaled[sid][part],
                tuple(map(str, frame.columns)),
                _frame_filled(filled, sid, frame),
            )
            for sid, frame in frames.items()
        }
        datasets[part] = WindowDataset.from_arrays(
            arrays,
            lookback=config.lookback,
            horizon=config.horizon,
            stride=config.stride if part == "train" else config.eval_stride,
            channel_independent=config.channel_independent,
            calendar_freq=freq if config.calendar else None,
        )
    return WindowSets(**datasets)


def flag_windows(
    splits: Mapping[str, SeriesSplit],
    config: WindowConfig,
    part: str,
    *,
    filled: Mapping[str, pd.DataFrame] | None,
) -> WindowDataset:
    """`part`'s windows as `make_windows` cuts them (the same entries, starts and filled
    flags), with zeros for values and no calendar features: for a check that reads only which
    targets the loader filled in, before any scaling or training (training.backtest checks
    every refit's val windows before the first refit trains)."""
    frames = {sid: getattr(split, part) for sid, split in splits.items()}
    arrays = {
        sid: SeriesArrays(
            frame.index,
            np.zeros((len(frame), len(frame.columns)), dtype=np.float32),
            tuple(map(str, frame.columns)),
            _frame_filled(filled, sid, frame),
        )
        for sid, frame in frames.items()
        if not frame.empty
    }
    return WindowDataset.from_arrays(
        arrays,
        lookback=config.lookback,
        horizon=config.horizon,
        stride=config.stride if part == "train" else config.eval_stride,
        channel_independent=config.channel_independent,
    )


def window_config_for(
    model: ForecasterConfig,
    *,
    freq: str,
    stride: int = 1,
    eval_stride: int = 1,
    channel_independent: bool = False,
) -> WindowConfig:
    """The WindowConfig that feeds `model`: its lookback and horizon, calendar features iff it
    reads them (checked against the frequency's feature count)."""
    if model.n_calendar and model.n_calendar != n_calendar_features(freq):
        raise IncompatibleWindowsError(
            f"n_calendar={model.n_calendar}, but calendar_features at freq {freq!r} gives "
            f"{n_calendar_features(freq)} features (6 sub-daily, 4 daily, 2 weekly or "
            f"coarser): set n_calendar to {n_calendar_features(freq)}, or let the data's "
            "frequency set it (urnn train --calendar, train.calendar in a config)"
        )
    return WindowConfig(
        lookback=model.lookback,
        horizon=model.horizon,
        stride=stride,
        eval_stride=eval_stride,
        channel_independent=channel_independent,
        calendar=model.n_calendar > 0,
    )

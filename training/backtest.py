"""Stage 6 of the training pipeline: rolling-origin backtest over the test span, and its plots.

    result = backtest(data, SplitConfig(method="ett", lookback=336), model_config, fit_config,
                      BacktestConfig(n_windows=None, step=1, refit=False))
    result.forecasts   # tidy: series, origin, timestamp, step, actual, point, q0.1, ..., mase_scale
    result.tables.by_step, result.tables.by_series, result.tables.overall

Origins (the last input row of each forecast) roll over the test span of every series, `step`
rows apart, aligned to its end: the last window's final target is the span's last row, and
`n_windows` counts back from there (None: as many as fit, which with step=1 is the ETT
protocol's set of test windows). Every target lies in the test span; inputs reach back
`lookback` rows before it, as the split's context rows allow. A series cut at a long gap
(`on_long_gap="split"`, training.split.plan_cut_series) is scored in the test rows of each of
its segments, no window spanning the gap; `n_windows` counts back from the end of its last
segment on into the ones before, and its forecasts are reported under the series' own id.

- refit=False: one model (given, with its scaler, or fitted here on the split's train and val
  parts) forecasts every origin.
- refit=True: at each origin the model is refitted on the data up to it: the last `len(val)`
  rows before the origin become the validation part (for early stopping), everything before
  them the training part, and a new scaler is fitted on that training part only. n_windows
  fits: slow, and meant for a handful of origins, so n_windows is required. For a registered
  model the fits follow the settings it was trained with (`refit_fit_config`), and its
  training windows the stride it was trained with (`refit_train_stride`).

`scale="original"` un-scales forecasts and actuals to the data's units (the product's view);
`"scaled"` keeps the train-only z-scores (the ETT papers' view; with refit, each origin's own
scaler). MASE's denominator is the seasonal naive MAE of the split's training span, in the same
units as the row it divides.

Plots use matplotlib's object-oriented API (a bare Figure renders with the Agg backend), so
nothing global such as pyplot's backend or current figure is touched. Their text is drawn in a
font that has its characters (series ids in CJK and other scripts: training.plot_fonts), or
written in ASCII, said once in the log, where no installed font has them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from matplotlib.figure import Figure

from models.forecaster import (
    FORECASTERS,
    ROUND_OFF,
    Forecaster,
    ForecasterConfig,
    floor_at_zero,
    model_device,
    unscale_from_last,
)
from models.streaming import StreamingURNNForecaster
from training.data import LoadedData
from training.fit import (
    FitConfig,
    FitConfigError,
    FitResult,
    check_val_observed,
    fit,
    fit_fields_from_record,
    predict,
)
from training.metrics import (
    MetricTables,
    json_scores,
    metric_tables,
    quantile_column,
    seasonal_naive_errors,
)
from training.paper_benchmark import DeviceName, resolve_device
from training.plot_fonts import FALLBACK_FAMILY, ascii_form, font_for
from training.realised_reference import realised_reference, window_lookback_scales
from training.split import (
    HELD_OUT_METHODS,
    ScalerScope,
    SeriesSplit,
    Span,
    SplitConfig,
    SplitPlan,
    StandardScaler,
    cut_series,
    split_data,
    split_series,
)
from training.stream_fit import StreamSeries, fit_stream, predict_origins, stream_series
from training.validation import plural, series_named
from training.windows import (
    WindowDataset,
    filled_flags,
    flag_windows,
    make_windows,
    window_config_for,
    window_starts,
)
from urnn_forecast.field_types import not_one_of

logger = logging.getLogger(__name__)

OutputScale = Literal["original", "scaled"]
OUTPUT_SCALES: tuple[OutputScale, ...] = ("original", "scaled")


class BacktestConfigError(ValueError):
    """A BacktestConfig field outside its allowed values, or a backtest that cannot run."""


@dataclass(frozen=True)
class BacktestConfig:
    n_windows: int | None = None  # origins per series, counted back from the test span's end
    step: int = 1  # rows between consecutive origins
    refit: bool = False  # refit at every origin on the data up to it (needs n_windows)
    season_length: int = 24  # MASE's seasonal naive scale
    scale: OutputScale = "original"
    channel_independent: bool = False  # every column its own series (training.windows)
    train_stride: int = 1  # stride of the training windows of fits made here
    batch_size: int = 512  # for prediction
    # A scored series whose test span has no room for n_windows: an error (before any fit),
    # or, with drop_short (LoadConfig.on_short="drop"), left out with a line in `dropped`.
    drop_short: bool = False

    def __post_init__(self) -> None:
        if self.scale not in OUTPUT_SCALES:
            raise BacktestConfigError(not_one_of("scale", self.scale, OUTPUT_SCALES))
        for name in ("step", "season_length", "train_stride", "batch_size"):
            if getattr(self, name) < 1:
                raise BacktestConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_windows is not None and self.n_windows < 1:
            raise BacktestConfigError(f"n_windows must be None or >= 1, got {self.n_windows}")
        if self.refit and self.n_windows is None:
            raise BacktestConfigError(
                "refit=True fits one model per origin: give n_windows explicitly"
            )


@dataclass
class BacktestResult:
    forecasts: pd.DataFrame  # tidy, one row per (series, origin, step)
    tables: MetricTables
    fits: list[FitResult] = field(default_factory=list)  # the fits made here, in origin order
    plots: dict[str, Path] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # series left out (drop_short), and why
    # the forecasts' error in the service's realised units (training.realised_reference;
    # config.json's `realised_reference`); None: no step could be scored so
    realised_reference: dict[str, Any] | None = None


def _room(split: SeriesSplit, horizon: int, step: int) -> int:
    """Backtest windows, `step` apart, that the test span of `split` holds."""
    rows = split.plan.lookback + len(split.plan.test)  # the test frame: context + test span
    last = rows - split.plan.lookback - horizon
    return last // step + 1 if last >= 0 else 0


def _scored_units(
    splits: Mapping[str, SeriesSplit], units: Mapping[str, str] | None
) -> dict[str, list[str]]:
    """Scored series -> their split entries holding test rows, in time order: a series cut at
    a long gap (LoadedData.units) is one series here, scored in each of its segments."""
    out: dict[str, list[str]] = {}
    for sid, s in splits.items():
        if len(s.plan.test):
            out.setdefault((units or {}).get(sid, sid), []).append(sid)
    for ids in out.values():
        ids.sort(key=lambda sid: splits[sid].test.index[0])
    return out


def _window_counts(
    splits: Mapping[str, SeriesSplit],
    horizon: int,
    config: BacktestConfig,
    units: Mapping[str, str] | None = None,
) -> dict[str, int | None]:
    """Split entry -> how many of its last test windows the backtest scores (None: all), for
    the entries holding test rows. `n_windows` counts back from the end of each series' test
    span; for a series cut at a long gap, from the end of its last segment's, then on into
    the segments before it (no window spans the gap)."""
    if config.n_windows is None:
        return {sid: None for sid, s in splits.items() if len(s.plan.test)}
    out: dict[str, int | None] = {}
    for ids in _scored_units(splits, units).values():
        wanted = config.n_windows
        for sid in reversed(ids):
            taken = min(wanted, _room(splits[sid], horizon, config.step))
            if taken:
                out[sid] = taken
            wanted -= taken
    return out


def short_of_room(
    splits: Mapping[str, SeriesSplit],
    horizon: int,
    config: BacktestConfig,
    units: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Scored series whose test span holds fewer than `n_windows` windows -> how many it holds
    (a series cut at a long gap: in its segments together, under the series' id)."""
    if config.n_windows is None:
        return {}
    out = {}
    for unit, ids in _scored_units(splits, units).items():
        available = sum(_room(splits[sid], horizon, config.step) for sid in ids)
        if available < config.n_windows:
            out[unit] = available
    return out


def check_backtest_room(
    splits: Mapping[str, SeriesSplit],
    horizon: int,
    config: BacktestConfig,
    units: Mapping[str, str] | None = None,
) -> list[str]:
    """Before any fit: every scored series has room for the backtest's windows, or (with
    drop_short) the lines saying which are left out. BacktestConfigError names the option,
    the series and what would fit."""
    short = short_of_room(splits, horizon, config, units)
    if not short:
        return []
    lookback = next(iter(splits.values())).plan.lookback
    what = (
        f"{plural(config.n_windows or 0, 'window')} of {lookback} + {horizon} rows, "
        f"{config.step} apart"
    )
    scored = list(_scored_units(splits, units))
    if config.drop_short and len(short) < len(scored):
        return [
            f"left out of the backtest: {series_named(sid)}, room for {room} of {what} "
            "(on_short='drop')"
            for sid, room in short.items()
        ]
    sid, room = min(short.items(), key=lambda item: item[1])
    more = f" ({len(short) - 1:,} more series too)" if len(short) > 1 else ""
    drop = ""
    if config.drop_short:  # every scored series is short: nothing would be left to score
        drop = "; on_short='drop' would leave out every series scored"
    elif len(scored) > 1:
        drop = ", or leave such series out with on_short='drop' (--on-short drop)"
    fits = f"ask for at most {plural(room, 'window')}, or a smaller step (--backtest-step)"
    if not room:  # fewer windows or a smaller step fit none: "ask for at most 0 windows"
        units_of = _scored_units(splits, units)[sid]
        rows = max(len(splits[part].plan.test) for part in units_of)  # its longest segment's
        fits = (
            f"its test span holds {plural(rows, 'row')}, fewer than one horizon of {horizon}: "
            f"a window fits with a horizon of at most {rows} (--horizon, when training), or "
            f"{plural(horizon - rows, 'more row')} in the test span (a longer series, or a "
            "larger test share: a smaller --train-fraction or --val-fraction)"
        )
    raise BacktestConfigError(
        f"backtest_windows (--backtest-windows): {series_named(sid)}{more} has room in its test "
        f"span for {room} of {what}; {fits}{drop}"
    )


# Forecast rows (windows x horizon) above which the backtest says how many it will score
# and what bounds them. Each row is ~80 bytes in the forecasts table, more while it is built
# and scored: `urnn train` of a linear model on PJME_hourly.csv at H = 168 (4,857,216 rows
# at the default step of 1) peaked at 2.4 GB, ~1.4 GB of it after the fit. PJM's six
# regions in one file are 29 million rows.
BACKTEST_ROWS_NOTE = 10_000_000
BYTES_PER_ROW_PEAK = 300


def _windows_scored(
    splits: Mapping[str, SeriesSplit],
    horizon: int,
    config: BacktestConfig,
    units: Mapping[str, str] | None,
) -> int:
    counts = _window_counts(splits, horizon, config, units)
    return sum(
        _room(splits[sid], horizon, config.step) if taken is None else taken
        for sid, taken in counts.items()
    )


def backtest_size_lines(
    splits: Mapping[str, SeriesSplit],
    horizon: int,
    config: BacktestConfig,
    units: Mapping[str, str] | None = None,
) -> list[str]:
    """One line when the backtest will score more than BACKTEST_ROWS_NOTE forecast rows:
    how many, the memory they take, and the step that would bring them under it. Said
    before the fit (`urnn train`) or the scoring (`urnn backtest`), not after: the default
    step of 1 scores every row of the test span, and a fleet's long test spans at a long
    horizon grew a table of tens of millions of rows with nothing said."""
    windows = _windows_scored(splits, horizon, config, units)
    rows = windows * horizon
    if rows <= BACKTEST_ROWS_NOTE:
        return []
    said = (
        f"backtest: {plural(windows, 'window')} x {plural(horizon, 'step')} = {rows:,} "
        "forecast rows "
        f"(~{rows * BYTES_PER_ROW_PEAK / 1e9:.1f} GB of memory while they are scored, each "
        "row kept in forecasts.parquet); "
    )

    def over(step: int) -> bool:
        return (
            _windows_scored(splits, horizon, replace(config, step=step), units) * (horizon)
            > BACKTEST_ROWS_NOTE
        )

    # every series scores at least its last window, whatever the step: where that alone is
    # over the note no step bounds it (a fleet of 60,000 series at H = 168)
    widest = max(_room(s, horizon, 1) for s in splits.values()) + 1
    if over(widest):
        return [
            said + "the backtest scores at least one window per series (and per segment cut "
            "at a long gap), so no --backtest-step bounds them: train on fewer series per "
            "file, or a shorter horizon"
        ]
    # the smallest step under the note, by bisection (the count falls as the step grows):
    # each series rounds its own count up, so a fleet needs a little more than rows / note,
    # and stepping up one at a time read every series once per step tried
    low, high = config.step * math.ceil(rows / BACKTEST_ROWS_NOTE), widest
    low = min(low, high)
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if over(middle) else (low, middle)
    step = low
    return [
        said
        + f"--backtest-step {step} (origins {plural(step, 'row')} apart) or --backtest-windows N "
        "(the last N origins per series) bound them"
    ]


# What a refit (`backtest(refit=True)` of a registered model, `urnn backtest --refit`) takes
# from the fit settings the model was trained with. Kept, as the training recipe:
# - max_epochs (unless --refit-epochs caps it), patience, lr, batch_size, weight_decay,
#   schedule and its plateau settings, clip_norm, mse_weight, monitor, min_delta: the recipe
#   itself (a record without min_delta predates it: 0, the strict "lower" it trained with).
# - seed: the recorded one, so that each origin's fit starts as the registered model's did
#   (an ensemble's member i with seed + i, as at training).
# - max_train_batches: it bounds each epoch's gradient steps, so it is part of what an epoch
#   (and so early stopping's patience) means; without it every refit's epochs would be longer
#   than the registered model's were.
# - calibrate_intervals: the refits' intervals are made like the registered model's.
# - eval_batch_size: it only batches the val scoring (the same numbers, other memory).
# - stream_*: kept and unused (the streaming kinds cannot be refitted; `backtest` says so).
# - Distributed training (`urnn train --nproc N`) has no FitConfig field: each batch of
#   batch_size windows was split across the ranks and DDP averaged their gradients, the same
#   step as one process on the whole batch (training.distributed), so the recorded batch_size
#   is the global one and a single-process refit follows the same recipe.
# Replaced (REFIT_REPLACED):
# - device: where the refits run is this machine's choice (`urnn backtest --device`); the
#   training machine's device may not exist here, and it does not change the recipe.
# - decoder_search: off. The search already chose the registered model's decoder, which is
#   part of the model config refitted here; searching again would fit every origin twice and
#   could score another decoder at some origins than the one registered.
REFIT_REPLACED: tuple[str, ...] = ("device", "decoder_search")


def refit_fit_config(
    recorded: object,
    *,
    source: str,
    device: DeviceName,
    max_epochs: int | None = None,
) -> tuple[FitConfig, str]:
    """The FitConfig of the refits of a registered model's backtest, and one line saying what
    it is and where it comes from. `recorded`: the fit settings the model was trained with
    (config.json's "fit", or its run's `fit.*` params read back), `source` naming where they
    were found; None when there are none, `source` then saying where they were looked for:
    the defaults, and the line says so. Fields are kept or replaced as the comment above
    REFIT_REPLACED says; `max_epochs` (`--refit-epochs`) overrides the recorded cap. A field
    FitConfig does not know (recorded by another version) is left out; a record that is not
    an object, a value not of its field's type (`fit_fields_from_record`: the file can be
    edited) or one
    FitConfig refuses: the defaults, the line saying why."""
    override: dict[str, Any] = {"device": device, "decoder_search": False}
    if max_epochs is not None:
        override["max_epochs"] = max_epochs
    config = FitConfig(**override)
    where = f"device {resolve_device(device).type}"
    capped = " (--refit-epochs)" if max_epochs is not None else ""
    if recorded is None:
        return config, (
            f"Refits: the default fit settings ({source}); max_epochs={config.max_epochs}"
            f"{capped}; {where}"
        )
    kept: dict[str, Any] = {}
    try:
        if not isinstance(recorded, Mapping):
            raise FitConfigError(f"not a JSON object but {type(recorded).__name__}")
        kept = fit_fields_from_record(recorded)
        if "min_delta" not in recorded:
            # recorded before FitConfig.min_delta (2026-12-06): early stopping took any lower
            # val score as an improvement, as min_delta 0 does; the default 1e-6 stopped such
            # a model's refits of a flat series after 4 epochs where it had trained 100
            kept["min_delta"] = 0.0
        config = FitConfig(**{**kept, **override})
    except (ValueError, TypeError) as error:  # FitConfigError is a ValueError
        return config, (
            f"Refits: the default fit settings (those {source} records cannot be used: "
            f"{error}); max_epochs={config.max_epochs}{capped}; {where}"
        )
    base = FitConfig()
    differ = [
        f"{f.name}={getattr(config, f.name)!r}"
        for f in fields(FitConfig)
        if f.name not in (*REFIT_REPLACED, "max_epochs")
        and getattr(config, f.name) != getattr(base, f.name)
    ]
    shown = f"{', '.join(differ)} (others at their defaults)" if differ else "the defaults"
    search = "; decoder search off (the registered decoder)" if kept.get("decoder_search") else ""
    return config, (
        f"Refits: the fit settings the model was trained with (from {source}): {shown}; "
        f"max_epochs={config.max_epochs}{capped}{search}; {where}"
    )


# Beyond any series' length (a window every 2**31 rows is one window), and far inside int64
# for the window starts (stride x window index): an edited config.json's 2**63 overflowed.
STRIDE_MAX = 2**31 - 1


def refit_train_stride(recorded: object, *, source: str) -> tuple[int, str]:
    """The stride of the refits' training windows (`BacktestConfig.train_stride`): the one the
    model was trained with (`urnn train --train-stride`: config.json's "train.train_stride",
    or its run's `backtest.train_stride` param), `source` naming where it was found; None when
    there is none, `source` saying where it was looked for. With it, what the "Refits:" line
    says of it: "" for a recorded 1 (every row, the default); 1 and why for none or a value
    that is not an integer >= 1 (the file can be edited). A model trained on windows every
    24 rows used to be refitted on every row's: 24 times the windows per epoch."""
    if recorded is None:
        return 1, f"training windows every row (no train stride recorded: {source})"
    if type(recorded) is not int or not 1 <= recorded <= STRIDE_MAX:
        return 1, (
            f"training windows every row (the train stride {source} records cannot be used: "
            f"{recorded!r} is not an integer from 1 to 2**31 - 1)"
        )
    if recorded == 1:
        return 1, ""
    return recorded, (
        f"training windows every {recorded} rows (the train stride the model was trained "
        f"with, from {source})"
    )


def backtest(
    data: LoadedData,
    split: SplitConfig,
    model_config: ForecasterConfig,
    fit_config: FitConfig,
    config: BacktestConfig,
    *,
    model: Forecaster | None = None,
    scaler: StandardScaler | None = None,
    plot_dir: str | Path | None = None,
    progress: bool = False,
    refit_scope: ScalerScope = "series",
    on_note: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Rolling-origin evaluation of `model_config` on `data` (see the module docstring).

    Pass `model` and the `scaler` it was trained with to evaluate an existing model
    (refit=False only); otherwise the model is fitted here with `fit_config`. `refit_scope`:
    the scope of each refit's train-only scaler; a registered model's refits take the scope
    it was trained with (`urnn train` fits one global scaler over every series: per series,
    a fleet's covariates reached the refits scaled otherwise than the model's own).
    `on_note` receives lines to show before the scoring starts (`backtest_size_lines`).
    """
    if split.lookback != model_config.lookback:
        raise BacktestConfigError(
            f"the split's lookback ({split.lookback}) must equal the model's "
            f"({model_config.lookback}): val and test frames carry that many context rows"
        )
    if model is not None and (scaler is None or config.refit or model.config != model_config):
        raise BacktestConfigError(
            "a given model needs the scaler it was trained with and its own config as "
            "model_config, and cannot be refitted"
        )
    streaming = FORECASTERS[model_config.kind].STREAMING
    if streaming and config.refit:
        raise BacktestConfigError(
            f"refit=True is not available for the streaming kind {model_config.kind!r}: its "
            "forecasts read the whole history, so one fit scores every origin"
        )
    held_out = split.method in HELD_OUT_METHODS
    if held_out and (streaming or config.refit):
        raise BacktestConfigError(
            f"the {split.method!r} split scores units the model never saw with one fit; "
            "refit=True and the streaming kinds need a split by time"
        )
    cut = cut_series(data) if not held_out else {}
    if cut and (streaming or config.refit):
        unit = next(iter(cut))
        what = (
            "refit=True refits on the history before each origin"
            if config.refit
            else f"the streaming kind {model_config.kind!r} reads each series' whole history"
        )
        instead = "backtest without refit" if config.refit else "use a windowed kind (urnn, lstm)"
        raise BacktestConfigError(
            f"{series_named(unit)} was cut at a long gap into {len(cut[unit])} segments "
            f"(on_long_gap='split'), and {what}, which a cut series does not have in one "
            f"stretch: fill the gap (max_gap, --max-gap, at least its length), or {instead}"
        )
    if split.method == "unseen" and model is None:
        raise BacktestConfigError(
            "the 'unseen' split makes every series a test unit, so nothing is left to train "
            "on: give a trained model, or hold out some series with the 'series' split"
        )
    # a segment of a series cut at a long gap holds a part only where a window of it fits
    split = replace(split, horizon=model_config.horizon)
    splits = split_data(data, split)
    dropped = check_backtest_room(splits, model_config.horizon, config, data.units)
    if dropped:
        left_out = short_of_room(splits, model_config.horizon, config, data.units)
        splits = {sid: s for sid, s in splits.items() if data.unit_of(sid) not in left_out}
    if on_note is not None:
        for line in backtest_size_lines(splits, model_config.horizon, config, data.units):
            on_note(line)
    window_config = window_config_for(
        model_config,
        freq=data.freq,
        stride=config.train_stride,
        channel_independent=config.channel_independent,
    )
    calendar_freq = data.freq if window_config.calendar else None
    scales = _mase_scales(splits, data.columns, config, data.units, data.filled)
    result = BacktestResult(forecasts=pd.DataFrame(), tables=_empty_tables(), dropped=dropped)
    pieces: list[pd.DataFrame] = []
    # the service's realised units are original ones: a scaled backtest has no reference
    references = config.scale == "original"
    window_scales: list[np.ndarray] = []  # each piece's windows' look-back scales
    if not config.refit:
        if model is None or scaler is None:
            # held-out units have no training rows of their own to be scaled by
            scaler = StandardScaler.fit(
                splits, scope="global" if held_out else "series", units=data.units
            )
            if streaming:
                series = stream_series(
                    splits,
                    scaler,
                    channel_independent=config.channel_independent,
                    calendar_freq=calendar_freq,
                    filled=data.filled,
                )
                fitted = fit_stream(model_config, series, fit_config, progress=progress)
            else:
                sets = make_windows(
                    splits, scaler, window_config, freq=data.freq, filled=data.filled
                )
                check_val_observed(
                    sets.val, fitting="the backtest's fit", how=data.config.fill_said()
                )
                fitted = fit(model_config, sets.train, sets.val, fit_config, progress=progress)
            result.fits.append(fitted)
            model = fitted.model
        counts = _window_counts(splits, model_config.horizon, config, data.units)
        scaled = scaler.transform_splits({sid: splits[sid] for sid in counts})
        test = WindowDataset.from_frames(
            {sid: s.test for sid, s in scaled.items()},
            lookback=model_config.lookback,
            horizon=model_config.horizon,
            stride=config.step,
            n_windows=counts,
            channel_independent=config.channel_independent,
            calendar_freq=calendar_freq,
        )
        test.check_compatible(model_config)
        if isinstance(model, StreamingURNNForecaster):
            series = stream_series(
                splits,
                scaler,
                channel_independent=config.channel_independent,
                calendar_freq=calendar_freq,
            )
            pred = _stream_predict(model, test, series)
        else:
            pred = predict(
                model, test, batch_size=config.batch_size, device=str(model_device(model))
            )
        pieces.append(
            tidy_forecasts(
                test,
                pred,
                model_config.quantiles,
                scaler,
                config,
                scales,
                data.filled,
                units=data.units,
                non_negative=model_config.non_negative,
                series=data.series,
            )
        )
        if references:
            window_scales.append(window_lookback_scales(test, data.series, model_config.lookback))
        del pred, test  # the forecasts are in the frame now
    else:
        assert config.n_windows is not None
        origins = {
            sid: _origins(s.plan, model_config.horizon, config.step, config.n_windows)
            for sid, s in splits.items()
        }

        def refit_splits_at(k: int) -> dict[str, SeriesSplit]:
            return {
                sid: _refit_split(data.series[sid], splits[sid].plan, origins[sid][k], model_config)
                for sid in splits
            }

        # every refit's val span before the first refit trains: the k-th one refused after
        # k - 1 fits had run (hours, on a fleet) would have wasted them
        for k in range(config.n_windows):
            refit_splits = refit_splits_at(k)
            check_val_observed(
                flag_windows(refit_splits, window_config, "val", filled=data.filled),
                fitting=_refit_said(data, origins, k, config.n_windows),
                how=data.config.fill_said(),
                ways_out=REFIT_WAYS_OUT,
            )
        for k in range(config.n_windows):
            refit_splits = refit_splits_at(k)
            refit_scaler = StandardScaler.fit(refit_splits, scope=refit_scope)
            sets = make_windows(
                refit_splits, refit_scaler, window_config, freq=data.freq, filled=data.filled
            )
            fitted = fit(model_config, sets.train, sets.val, fit_config, progress=progress)
            result.fits.append(fitted)
            pred = predict(
                fitted.model, sets.test, batch_size=config.batch_size, device=fitted.device
            )
            pieces.append(
                tidy_forecasts(
                    sets.test,
                    pred,
                    model_config.quantiles,
                    refit_scaler,
                    config,
                    scales,
                    data.filled,
                    non_negative=model_config.non_negative,
                    series=data.series,
                )
            )
            if references:
                window_scales.append(
                    window_lookback_scales(sets.test, data.series, model_config.lookback)
                )
    # one piece (no refit) is the frame itself: pd.concat copied all of it (DAYTON's default
    # backtest: 4 M rows, 0.3 GB)
    result.forecasts = pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)
    del pieces
    if references:
        result.realised_reference = realised_reference(
            result.forecasts, np.concatenate(window_scales), model_config.horizon
        )
    result.tables = metric_tables(result.forecasts, model_config.quantiles)
    if plot_dir is not None:
        units = None if config.scale == "original" else "scaled: unitless z-scores"
        result.plots = save_plots(
            result,
            model_config.quantiles,
            plot_dir,
            target=data.target,
            freq=data.freq,
            units=units,
        )
    return result


def uncalibrated_note(meta: Mapping[str, Any], quantiles: Sequence[float]) -> str:
    """ "" or the line saying the scored model is a checkpoint of an interrupted fit, whose
    intervals were never calibrated: a fit writes its best weights at every improving epoch,
    and calibrates the intervals on validation only once it ends (training.fit). Scored as it
    is, ETTh1's 0.1..0.9 interval covered 0.65 where the finished model's covers 0.78, and
    nothing said why."""
    if meta.get("complete") is not False or len(quantiles) < 2:
        return ""
    epoch = meta.get("best_epoch")
    at = f" (best epoch {epoch})" if epoch is not None else ""
    return (
        f"this is a checkpoint of an interrupted fit{at}: its intervals were never calibrated "
        "on validation (a fit calibrates them once it ends), so their coverage may lie far "
        "from nominal; a finished `urnn train` gives calibrated ones"
    )


def write_backtest_tables(result: BacktestResult, directory: Path) -> None:
    """The backtest's evidence as files: the metric tables (overall, by_step, by_series CSV;
    overall.json), every forecast it scored (forecasts.parquet: series, origin, timestamp,
    step, actual, point, quantiles, mase_scale, filled), so any figure can be recomputed and
    audited, and the scores in the service's units (realised_reference.json); a training run
    logs them under `metrics/`, `urnn backtest --output` into DIR."""
    directory.mkdir(parents=True, exist_ok=True)
    tables = result.tables
    for name, table in (
        ("overall", tables.overall),
        ("by_step", tables.by_step),
        ("by_series", tables.by_series),
    ):
        # overall's one row ("all") has an unnamed index: written with an empty first header
        # cell, MLflow's artifact preview showed that column unnamed and its "all" blank
        table.to_csv(directory / f"{name}.csv", index_label=str(table.index.name or "scope"))
    overall = json_scores({str(k): float(v) for k, v in tables.overall.iloc[0].items()})
    (directory / "overall.json").write_text(json.dumps(overall, indent=2, allow_nan=False))
    write_forecasts(result.forecasts, directory / FORECASTS_FILE)
    if result.realised_reference is not None:
        # the same scores in the service's realised units (training.realised_reference)
        (directory / REFERENCE_FILE).write_text(
            json.dumps(result.realised_reference, indent=2) + "\n"
        )


FORECASTS_FILE = "forecasts.parquet"
REFERENCE_FILE = "realised_reference.json"


def write_forecasts(forecasts: pd.DataFrame, path: Path) -> None:
    """A tidy forecast frame as Parquet, series ids as text, values as float32 where that
    changes no score (`float32_keeps_scores`), else float64. Forecasts hardly compress, and
    float64 doubled the artifact (the default run on ETTh1, 325,344 forecasts: 6.9 MB
    instead of 11.7); but float32 keeps 7 significant digits, so on a series at a large
    level (ETTh1 OT + 1e7) every actual came back up to 0.5 off and the file recomputed an
    MAE of 1.536 where the tables said 1.520."""
    values = [c for c in forecasts.columns if c in ("actual", "point") or c.startswith("q")]
    dtype = "float32" if float32_keeps_scores(forecasts, values) else "float64"

    def stored(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(series=rows["series"].astype(str)).astype(dict.fromkeys(values, dtype))

    if len(forecasts) <= FORECASTS_ROW_GROUP:
        stored(forecasts).to_parquet(path, index=False, compression="zstd")
        return
    # A row group at a time, as pyarrow's write of the whole frame cuts them: the same file,
    # byte for byte, without that write's copies of every row (DAYTON's default backtest:
    # 4 M rows, 0.3 GB each)
    first = pa.Table.from_pandas(stored(forecasts.iloc[:FORECASTS_ROW_GROUP]), preserve_index=False)
    with pq.ParquetWriter(path, first.schema, compression="zstd") as writer:
        writer.write_table(first)
        del first
        for start in range(FORECASTS_ROW_GROUP, len(forecasts), FORECASTS_ROW_GROUP):
            block = stored(forecasts.iloc[start : start + FORECASTS_ROW_GROUP])
            writer.write_table(pa.Table.from_pandas(block, preserve_index=False))


# Rows of each row group of forecasts.parquet: pyarrow's default, which a write of the whole
# frame at once cut the file into.
FORECASTS_ROW_GROUP = 1024 * 1024


# What float32 storage may change of a score recomputed from the stored forecasts: a forecast
# column's mean absolute error by this share of itself, and a coverage or below_q share by
# FLOAT32_SIDE_TOLERANCE (a tenth of the tables' last printed digit). Flips of a forecast
# within float32's step of its actual are rare, not never: ETTh1's 325,344 default forecasts
# at three levels expect about two, and a file twice the size for them would be a poor trade.
FLOAT32_SCORE_TOLERANCE = 1e-7
FLOAT32_SIDE_TOLERANCE = 1e-5


def float32_keeps_scores(forecasts: pd.DataFrame, values: Sequence[str]) -> bool:
    """Whether the forecast frame stored as float32 recomputes its scores: for every forecast
    column (point and quantiles) the mean |forecast - actual| moves by at most
    FLOAT32_SCORE_TOLERANCE of itself, and at most FLOAT32_SIDE_TOLERANCE of the actuals
    change side of a forecast (what the coverage and below_q shares count). Read in blocks of
    FLOAT32_CHECK_ROWS, so that a fleet's tens of millions of forecast rows take no more
    memory for it than a block's few arrays."""
    columns = [c for c in values if c != "actual"]
    if forecasts.empty or "actual" not in values or not columns:
        return True
    exact, rounded = np.zeros(len(columns)), np.zeros(len(columns))
    flipped = np.zeros(len(columns), dtype=np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, len(forecasts), FLOAT32_CHECK_ROWS):
            block = forecasts.iloc[start : start + FLOAT32_CHECK_ROWS]
            actual = block["actual"].to_numpy(dtype=np.float64)
            stored = actual.astype(np.float32).astype(np.float64)
            for j, column in enumerate(columns):
                forecast = block[column].to_numpy(dtype=np.float64)
                kept = forecast.astype(np.float32).astype(np.float64)
                exact[j] += float(np.sum(np.abs(forecast - actual)))
                rounded[j] += float(np.sum(np.abs(kept - stored)))
                flipped[j] += np.count_nonzero((actual <= forecast) != (stored <= kept))
        moved = np.abs(rounded - exact) > FLOAT32_SCORE_TOLERANCE * exact
    return not moved.any() and bool(flipped.max() <= FLOAT32_SIDE_TOLERANCE * len(forecasts))


FLOAT32_CHECK_ROWS = 1_000_000


def _stream_predict(
    model: StreamingURNNForecaster, test: WindowDataset, series: Sequence[StreamSeries]
) -> torch.Tensor:
    """Forecasts for the windows of `test`, each read from the whole history before its
    origin (the series from its first training row), not from the window alone."""
    c = model.config
    out = torch.empty(len(test), c.horizon, len(c.quantiles))
    by_name = {s.name: s for s in series}
    owners = test.window_entry.numpy()
    starts = test.starts.numpy()
    for e, entry in enumerate(test.entries):
        mask = owners == e
        if not mask.any():
            continue
        s = by_name[entry.name]
        first = starts[mask] - entry.offset + test.lookback  # first target rows in the frame
        origins = s.index.get_indexer(entry.index[first])
        if (origins < 0).any():
            raise BacktestConfigError(f"test windows of {entry.name!r} fall outside its series")
        out[torch.from_numpy(mask)] = predict_origins(
            model, s, origins.astype(np.int64), str(model_device(model))
        )
    return out


# What puts observed rows in the validation span of a backtest's refits (`_refit_split`: the
# rows just before each origin, as many as the split's val span)
REFIT_WAYS_OUT = (
    "Put observed rows in each refit's validation span (the rows just before its origin, as "
    "many as the split's val span): other origins (--backtest-step, --backtest-windows), "
    "another val span length (--val-fraction), or a backtest without --refit"
)


def _refit_said(
    data: LoadedData, origins: Mapping[str, Sequence[int]], k: int, n_windows: int
) -> str:
    """Which refit of a backtest this is, for messages: "refit 2 of 3 of the backtest (origin
    2021-03-13 06:00:00)", each series' origin where they differ."""
    stamps = {sid: data.series[sid].index[rows[k]] for sid, rows in origins.items()}
    if len(set(stamps.values())) == 1:
        at = f"origin {next(iter(stamps.values()))}"
    else:
        named = [f"{sid!r} {stamp}" for sid, stamp in list(stamps.items())[:3]]
        more = f" and {len(stamps) - 3:,} more" if len(stamps) > 3 else ""
        at = f"origins {'; '.join(named)}{more}"
    return f"refit {k + 1} of {n_windows} of the backtest ({at})"


def _origins(plan: SplitPlan, horizon: int, step: int, n_windows: int) -> list[int]:
    """Row positions (in the whole series) of the first target of each window, ascending."""
    test_frame_rows = plan.lookback + len(plan.test)
    starts = window_starts(test_frame_rows, plan.lookback, horizon, step, n_windows)
    return [plan.test.start + int(s) for s in starts]


def _refit_split(
    frame: pd.DataFrame, plan: SplitPlan, origin: int, model_config: ForecasterConfig
) -> SeriesSplit:
    """The series cut at `origin` (first target row): val = the len(plan.val) rows before it,
    train = everything earlier (an expanding window), or, when the plan's train span was capped
    (it starts after row 0: the "tail" split's max_train_rows), the same number of rows just
    before val (a sliding window); test = the one window at the origin."""
    lookback, horizon, n_val = plan.lookback, model_config.horizon, len(plan.val)
    train_stop = origin - n_val
    train_start = max(0, train_stop - len(plan.train)) if plan.train.start > 0 else 0
    refit_plan = SplitPlan(
        n_rows=origin + horizon,
        lookback=lookback,
        train=Span(train_start, train_stop),
        val=Span(origin - n_val, origin, context=lookback),
        test=Span(origin, origin + horizon, context=lookback),
    )
    return split_series(frame.iloc[: origin + horizon], refit_plan)


def _mase_scales(
    splits: Mapping[str, SeriesSplit],
    columns: Sequence[str],
    config: BacktestConfig,
    units: Mapping[str, str] | None = None,
    filled: Mapping[str, pd.DataFrame] | None = None,
) -> dict[tuple[str, str], float]:
    """(series id, column) -> seasonal naive MAE of its training span, in original units; for
    a unit held out whole (the "series" split), of its first `lookback` rows, the history it
    has before its first forecast. A segment of a series cut at a long gap (`units`) is scaled
    by the training rows of all the series' segments, each difference taken inside one
    segment; where none holds a training window, by its own first `lookback` rows. Values the
    loader filled in (`filled`, as `LoadedData.filled`) take no part: see
    `seasonal_naive_scale`."""
    unit_of = {sid: (units or {}).get(sid, sid) for sid in splits}
    trains: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for sid, s in splits.items():
        if s.plan.role == "segment" and not s.train.empty:
            trains.setdefault(unit_of[sid], []).append((sid, s.train))
    out = {}
    for sid, s in splits.items():
        if s.plan.role in ("val", "train") or not len(s.plan.test):
            continue  # never scored
        if s.plan.role == "all":
            history = [(sid, s.train)]
        elif s.plan.role == "segment":
            history = trains.get(unit_of[sid]) or [(sid, s.test.iloc[: s.plan.lookback])]
        else:
            history = [(sid, s.test.iloc[: s.plan.lookback])]
        for column in columns:
            pieces = [
                (
                    piece[column].to_numpy(dtype=np.float64),
                    filled_flags(filled, owner, column, piece.index),
                )
                for owner, piece in history
            ]
            out[(sid, column)] = _pooled_scale(pieces, config.season_length)
    return out


def _pooled_scale(pieces: Sequence[tuple[np.ndarray, np.ndarray | None]], season: int) -> float:
    """The seasonal naive MAE over stretches of one series with gaps between them: the mean of
    every difference one season apart inside a stretch (none spans a gap), of observed values
    (a piece's flags mark the filled ones); NaN where none is left. Stretches no longer than
    a season add nothing; where every one is, the longest's error names the season."""
    usable = [(v, f) for v, f in pieces if len(v) > season] or [
        max(pieces, key=lambda p: len(p[0]))
    ]
    errors = np.concatenate([seasonal_naive_errors(v, season, f) for v, f in usable])
    return float(np.mean(errors)) if len(errors) else math.nan


def tidy_forecasts(
    dataset: WindowDataset,
    pred: torch.Tensor,
    quantiles: Sequence[float],
    scaler: StandardScaler,
    config: BacktestConfig,
    mase_scales: Mapping[tuple[str, str], float],
    filled: Mapping[str, pd.DataFrame] | None = None,
    *,
    units: Mapping[str, str] | None = None,
    non_negative: bool = False,
    series: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per (window, step): series, origin, timestamp, step, actual, point, the
    quantile columns, mase_scale (in `config.scale` units) and `filled`: the actual is a
    value the loader filled in (`LoadedData.filled`), which the metrics leave out. `units`
    (LoadedData.units): the forecasts of a segment of a series cut at a long gap are under
    the series' id, so the per-series table has one row for it. `non_negative`
    (ForecasterConfig.non_negative): forecasts below 0 in original units are raised to it,
    as the service and the pyfunc answer them (in scaled units: to where 0 lies). `series`
    (LoadedData.series): the actuals in original units are read from it, the data's own
    values; without it they come back from the windows' float32 z-scores (18 rentals as
    17.999998)."""
    q = list(quantiles)
    median = q.index(0.5)
    table = dataset.window_table()
    if units:  # "<segment>" or "<segment>/<column>" -> "<series>", "<series>/<column>"
        pairs = zip(table["series"], table["source"], strict=True)
        table["series"] = [units.get(src, src) + name[len(src) :] for name, src in pairs]
    n, horizon = len(dataset), dataset.horizon
    # Filled window by window, TIDY_CHUNK windows at a time, straight into the frame's
    # columns: every step is elementwise, so the values are those of the whole at once.
    actual = np.empty((n, horizon))
    levels = np.empty((len(q), n, horizon))  # levels[j].reshape(-1): quantile j's column
    mase_scale = np.empty(n)
    timestamps = np.empty((n, horizon), dtype="datetime64[ns]")
    was_filled = np.zeros((n, horizon), dtype=bool)
    owners = dataset.window_entry.numpy()
    starts = dataset.starts.numpy()
    for e, entry in enumerate(dataset.entries):
        windows = np.flatnonzero(owners == e)
        column = entry.columns[0]
        stats = scaler.stats[_scaler_key(scaler, entry.source)][column]
        mase_scale[windows] = mase_scales[(entry.source, column)]
        if config.scale != "original":
            mase_scale[windows] /= stats.scale
        zero = ROUND_OFF * (abs(stats.mean) + stats.scale)
        own_actuals = series is not None and config.scale == "original"
        stamps = entry.index.to_numpy(dtype="datetime64[ns]")
        values = (
            series[entry.source][column].reindex(entry.index).to_numpy(dtype=np.float64)
            if series is not None and own_actuals
            else None
        )
        flags = None if filled is None else filled.get(entry.source)
        flagged = (
            flags[column].reindex(entry.index, fill_value=False).to_numpy(dtype=bool)
            if flags is not None and column in flags.columns
            else None
        )
        for begin in range(0, len(windows), TIDY_CHUNK):
            chunk = windows[begin : begin + TIDY_CHUNK]
            picked = torch.from_numpy(chunk)
            first = starts[chunk] - entry.offset + dataset.lookback  # first target rows
            rows = first[:, None] + np.arange(horizon)
            forecast = pred[picked].double().numpy()  # (c, H, Q)
            if values is not None:
                actual[chunk] = values[rows]  # the data's own values, not z-score round trips
            else:
                scaled = dataset.targets(picked).double().numpy()
                actual[chunk] = (
                    _snap_zeros(scaler.inverse_values(entry.source, column, scaled), zero)
                    if config.scale == "original"
                    else scaled
                )
            if config.scale == "original":
                # from each look-back's last value as the data holds it (NaN: unknown), so
                # that a flat look-back forecast as its level comes back as it exactly
                last = values[rows[:, :1] - 1, None] if values is not None else np.nan
                raised = unscale_from_last(forecast, stats.mean, stats.scale, last)
                forecast = _snap_zeros(floor_at_zero(raised, non_negative), zero)
            elif non_negative:  # 0 in original units, on the scaled axis
                forecast = np.maximum(forecast, -stats.mean / stats.scale)
            levels[:, chunk] = np.moveaxis(forecast, 2, 0)
            timestamps[chunk] = stamps[rows]
            if flagged is not None:
                was_filled[chunk] = flagged[rows]
    columns: dict[str, np.ndarray] = {
        "series": np.repeat(table["series"].to_numpy(), horizon),
        "origin": np.repeat(table["origin"].to_numpy(), horizon),
        "timestamp": timestamps.reshape(-1),
        "step": np.tile(np.arange(1, horizon + 1), n),
        "actual": actual.reshape(-1),
        "point": levels[median].reshape(-1).copy(),  # a column of its own, as q0.5 is
    }
    for j, level in enumerate(q):
        columns[quantile_column(level)] = levels[j].reshape(-1)
    columns["mase_scale"] = np.repeat(mase_scale, horizon)
    columns["filled"] = was_filled.reshape(-1)
    # copy=False: the columns are these arrays, not a second copy of them (the frame of
    # DAYTON's default backtest is 4 M rows: each float column 32 MB)
    return pd.DataFrame(columns, copy=False)


# Windows whose forecasts are un-scaled at once in tidy_forecasts: its temporary arrays are
# a chunk's (4,096 x 168 steps x 3 quantiles: 17 MB each), not the whole backtest's.
TIDY_CHUNK = 4096


# Actuals and forecasts come back to original units from float32 z-scores, so a value the data
# holds as exactly 0 (no demand that day) returns as +-1e-8 or so, and sMAPE's rule "actual =
# forecast = 0 counts 0" never fired: each such term counted ~200, and the seasonal naive
# forecast of an intermittent daily series scored sMAPE 129 instead of 74. Values within this
# share of the column's |mean| + scale of zero (8 float32 steps at that size: the round-off
# of un-scaling, and no more, so that a series' real small values such as 0.02 beside a
# global mean of 5,000 are kept) are set to exactly 0: models.forecaster.ROUND_OFF, which the
# service and the pyfunc snap their answers with too.


def _snap_zeros(values: np.ndarray, tolerance: float) -> np.ndarray:
    snapped: np.ndarray = np.where(np.abs(values) <= tolerance, 0.0, values)
    return snapped


def _scaler_key(scaler: StandardScaler, series_id: str) -> str:
    return next(iter(scaler.stats)) if scaler.scope == "global" else series_id


def _empty_tables() -> MetricTables:
    empty = pd.DataFrame()
    return MetricTables(overall=empty, by_step=empty, by_series=empty)


# -----------------------------------------------------------------------------
# Plots


def save_plots(
    result: BacktestResult,
    quantiles: Sequence[float],
    directory: str | Path,
    *,
    target: str = "value",
    freq: str | None = None,
    units: str | None = None,
) -> dict[str, Path]:
    """`forecasts.png` (a few origins of a single series; of several, one origin each of
    series from the worst to the best by MASE) and `error_by_horizon.png`, their axes named by
    the target (its values, in its own units) and the frequency (a step)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "forecasts": directory / "forecasts.png",
        "error_by_horizon": directory / "error_by_horizon.png",
    }
    label = target if units is None else f"{target} ({units})"
    in_ascii = plot_forecasts(
        result.forecasts,
        quantiles,
        paths["forecasts"],
        target=label,
        by_series=result.tables.by_series,
    )
    in_ascii += plot_error_by_horizon(
        result.tables.by_step,
        paths["error_by_horizon"],
        label,
        freq,
        units=units or f"in {target}'s units",
    )
    if in_ascii:  # once per backtest, not per panel
        shown = ", ".join(repr(text) for text in list(dict.fromkeys(in_ascii))[:3])
        logger.warning(
            "backtest plots: no installed font draws every character of %s%s, so the plots "
            "write them in ASCII (\\uXXXX escapes; a series with its number in the "
            "backtest's order) instead of empty boxes; install a font that has them (CJK: "
            "Debian/Ubuntu fonts-noto-cjk) to see them as written",
            shown,
            f" and {len(in_ascii) - 3} more" if len(in_ascii) > 3 else "",
        )
    return paths


def drawable(text: str, ascii_text: str | None = None) -> tuple[str, str | None]:
    """(text, font family) to draw `text` with: the first installed font that has each of its
    characters (training.plot_fonts), or, where none has, `ascii_text` (by default `text` with
    each character outside ASCII escaped) in DejaVu Sans, and family None to say so. Series
    ids in CJK were drawn as empty boxes: panels nobody could tell apart."""
    family = font_for(text)
    if family is not None:
        return text, family
    return (ascii_form(text) if ascii_text is None else ascii_text), None


def plotted_series(by_series: pd.DataFrame, panels: int) -> list[tuple[str, str]]:
    """(series id, what ranks it) for up to `panels` series spread evenly from the worst to the
    best by MASE (sMAPE where no series has one), series without the metric left out: the
    first series in id order told a fleet of 4,000 nothing about the other 3,999."""
    metric = next(
        (c for c in ("mase", "smape") if c in by_series.columns and by_series[c].notna().any()),
        None,
    )
    if metric is None:
        return [(str(sid), "") for sid in by_series.index[:panels]]
    ranked = by_series[metric].dropna().sort_values(ascending=False, kind="stable")
    n = len(ranked)
    positions = np.unique(np.linspace(0, n - 1, min(panels, n)).astype(int))
    return [
        (str(ranked.index[i]), f"{metric.upper()} {ranked.iloc[i]:.3g}, {i + 1:,} of {n:,} worst")
        for i in positions
    ]


def as_written(text: str) -> str:
    """`text` for a plot, drawn as written: matplotlib reads what lies between two '$' as TeX
    math, so a column 'cost ($) per unit ($)' was drawn mangled, and a series 'plant$' with a
    target 'cost_$' stopped `urnn train` after its fit with a mathtext ParseSyntaxException."""
    return text.replace("$", r"\$")


def plot_forecasts(
    forecasts: pd.DataFrame,
    quantiles: Sequence[float],
    path: Path,
    *,
    panels: int = 4,
    target: str = "value",
    by_series: pd.DataFrame | None = None,
) -> list[str]:
    """Actual vs median and the outermost quantile band: for one series (or without
    `by_series`), up to `panels` origins spread evenly over the first series' backtest; for
    several, the middle origin of each of `plotted_series`. Returns the texts (series ids,
    the target) no installed font draws, written in ASCII instead (`drawable`)."""
    first = forecasts["series"].iloc[0]
    picks: list[tuple[str, str, Any]] = []  # (series, rank note, origin)
    lo, hi = quantile_column(quantiles[0]), quantile_column(quantiles[-1])
    # the rows drawn and the columns read only: a copy of every row of the series (DAYTON's
    # default backtest: 4 M rows, 0.3 GB) held the whole frame twice
    shown = list(dict.fromkeys(["series", "origin", "timestamp", "actual", "point", lo, hi]))
    if by_series is not None and len(by_series) > 1:
        chosen_series = plotted_series(by_series, panels)
        ids = forecasts["series"].astype(str)
        some = forecasts.loc[ids.isin([sid for sid, _ in chosen_series]).to_numpy(), shown]
        some_ids = some["series"].astype(str)
        for sid, note in chosen_series:
            origins = some.loc[(some_ids == sid).to_numpy(), "origin"].drop_duplicates()
            if len(origins):
                picks.append((sid, note, origins.iloc[len(origins) // 2]))
    else:
        own = (forecasts["series"] == first).to_numpy()
        origins = forecasts.loc[own, "origin"].drop_duplicates().to_numpy()
        spread = np.unique(np.linspace(0, len(origins) - 1, min(panels, len(origins))).astype(int))
        picks = [(str(first), "", origins[i]) for i in spread]
        drawn = forecasts["origin"].isin([origin for _, _, origin in picks]).to_numpy()
        some = forecasts.loc[own & drawn, shown]
        some_ids = some["series"].astype(str)
    figure = Figure(figsize=(10, 2.6 * len(picks)), layout="constrained")
    axes = figure.subplots(len(picks), 1, squeeze=False)[:, 0]
    in_ascii: list[str] = []
    numbers: dict[str, int] = {}
    for ax, (series, note, origin) in zip(axes, picks, strict=True):
        window = some[((some_ids == series) & (some["origin"] == origin)).to_numpy()]
        ax.plot(window["timestamp"], window["actual"], color="black", label="actual")
        ax.plot(window["timestamp"], window["point"], color="tab:blue", label="median")
        if len(quantiles) > 1:
            ax.fill_between(
                window["timestamp"],
                window[lo],
                window[hi],
                color="tab:blue",
                alpha=0.2,
                label=f"{100 * (quantiles[-1] - quantiles[0]):.3g} % interval "
                f"(q{quantiles[0]:g}-q{quantiles[-1]:g})",
            )
        ranked = f" ({note})" if note else ""
        since = f"forecast from {pd.Timestamp(origin)} (the last value read)"
        title = as_written(f"{series}{ranked}: {target}, {since}")
        if font_for(title) is None:  # the id escaped, and its number: '\u5317\u4eac-01' alone
            if not numbers:  # is hard to match to a row of by_series.csv
                order = by_series.index if by_series is not None else forecasts["series"]
                numbers = {str(sid): i for i, sid in enumerate(pd.unique(np.asarray(order)))}
            named = (
                series
                if font_for(series) is not None
                else f"series {numbers.get(series, 0) + 1} '{ascii_form(series)}'"
            )
            in_ascii += [text for text in (series, target) if font_for(text) is None]
            title = as_written(f"{named}{ranked}: {ascii_form(target)}, {since}")
        title, family = drawable(title)
        ax.set_title(title, fontsize=9, fontfamily=family or FALLBACK_FAMILY)
        ylabel, family = drawable(as_written(target))
        ax.set_ylabel(ylabel, fontsize=8, fontfamily=family or FALLBACK_FAMILY)
        ax.legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("time", fontsize=8)
    figure.savefig(path, dpi=90)
    return in_ascii


def plot_error_by_horizon(
    by_step: pd.DataFrame,
    path: Path,
    target: str = "value",
    freq: str | None = None,
    *,
    units: str = "in the target's units",
) -> list[str]:
    """MAE and RMSE by steps ahead. Returns the texts (the target, its units) no installed
    font draws, written in ASCII instead (`drawable`)."""
    figure = Figure(figsize=(7, 3.5), layout="constrained")
    ax = figure.subplots()
    for column in ("mae", "rmse"):
        ax.plot(by_step.index, by_step[column], label=column.upper())
    step = f" (1 step = '{freq}')" if freq else ""
    ax.set_xlabel(as_written(f"steps ahead{step}"))
    in_ascii = [text for text in (target, units) if font_for(text) is None]
    ylabel, family = drawable(as_written(f"error, {units}"))
    ax.set_ylabel(ylabel, fontfamily=family or FALLBACK_FAMILY)
    title, family = drawable(as_written(f"{target}: error by steps ahead, over the test span"))
    ax.set_title(title, fontfamily=family or FALLBACK_FAMILY)
    ax.legend()
    figure.savefig(path, dpi=90)
    return in_ascii

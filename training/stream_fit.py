"""Training and scoring of the streaming uRNN forecaster (`models.streaming`, kind "urnn-stream").

    series = stream_series(splits, scaler, channel_independent=False, calendar_freq=None)
    result = fit_stream(model_config, series, fit_config)       # a training.fit.FitResult
    quantiles = predict_origins(result.model, series[0], origins)  # (N, H, Q), scaled units

Why not the windowed loop of `training.fit`. A windowed forecaster is scored on windows of
exactly `lookback` rows from a fresh state; the streaming one is served from a state that has
consumed the series from its first point, anywhere from `lookback` to millions of points. So
it is trained the way it is used: each batch holds `stream_batch_crops` crops of
`stream_crop_length` consecutive training rows (random starts), the encoder runs over each
crop once, and a forecast is scored at *every* origin along it (`forward_origins`), from
states that have seen lookback .. crop-length points, with the crop's first `lookback` rows
fixing the normalisation (the service's first-contact rule). One encoder pass thus yields
thousands of training forecasts. Validation and test forecasts read the whole series from its
first row up to each origin, as a service that has followed the series since then would.

Everything else is `training.fit`'s: FitConfig (AdamW, unitary parameters exempt from clipping
and weight decay, plateau schedule, early stopping on the val score, best epoch restored),
the pinball (+ mse_weight * MSE) loss, split-conformal interval calibration on val; the step
size is lr * stream_lr_scale (FitConfig).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from models.forecaster import ForecasterConfig, build_forecaster, count_parameters
from models.streaming import StreamingURNNForecaster
from training.fit import (
    EpochRecord,
    FitConfig,
    FitResult,
    clip_gradients,
    filled_val_message,
    make_optimizer,
    seed_everything,
    spans_said,
    stream_crop_error,
    training_loss,
)
from training.paper_benchmark import resolve_device
from training.split import SeriesSplit, StandardScaler
from training.validation import UnobservedValidationError, series_named
from training.windows import WindowDataset, filled_flags

# Origins per head evaluation when scoring: bounds the (N, W) tail and (N, H, Q) output blocks.
ORIGIN_CHUNK = 4096


class StreamFitError(ValueError):
    """Data a streaming forecaster cannot be trained or scored on."""


class UnobservedStreamValidationError(StreamFitError, UnobservedValidationError):
    """Every val target the streaming fit scores was filled in by the loader (exit 2 in the
    CLI, as the windowed kinds' UnobservedValidationError)."""


@dataclass(frozen=True)
class StreamSeries:
    """One series as the streaming model reads it: every row from the first training row on,
    scaled; spans are row positions in these arrays (stop exclusive)."""

    name: str  # series id, or "<series id>/<column>" when channel-independent
    source: str  # the series id in the splits and the scaler
    columns: tuple[str, ...]  # target first, then covariates
    index: pd.DatetimeIndex
    values: Tensor  # (T, 1 + C) float32: target, covariates
    calendar: Tensor  # (T, K) float32; K = 0 without calendar features
    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    # (T,) bool: True where the loader filled the target in (LoadedData.filled), which the val
    # scores and the interval calibration leave out; None where no target value was filled
    filled: Tensor | None = None

    @property
    def target(self) -> Tensor:
        return self.values[:, 0]


def stream_series(
    splits: Mapping[str, SeriesSplit],
    scaler: StandardScaler,
    *,
    channel_independent: bool,
    calendar_freq: str | None,
    filled: Mapping[str, pd.DataFrame] | None = None,
) -> list[StreamSeries]:
    """The scaled rows of each split series from its train start to its test end, with the
    split's spans, one entry per column when channel-independent; `filled`
    (LoadedData.filled): which values the loader filled in, flagged on each entry's target."""
    frames: dict[str, pd.DataFrame] = {}
    spans: dict[str, tuple[tuple[int, int], ...]] = {}
    for sid, s in splits.items():
        plan = s.plan
        first = plan.train.start
        whole = pd.concat(
            [s.train, s.val.iloc[plan.val.context :], s.test.iloc[plan.test.context :]]
        )
        if len(whole) != plan.test.stop - first:
            raise StreamFitError(
                f"{series_named(sid)}: the split's spans are not contiguous ({len(whole)} rows "
                f"between train start and test end, expected {plan.test.stop - first})"
            )
        frames[sid] = scaler.transform(sid, whole)
        spans[sid] = tuple(
            (span.start - first, span.stop - first) for span in (plan.train, plan.val, plan.test)
        )
    data = WindowDataset.from_frames(
        frames,
        lookback=1,
        horizon=1,
        stride=10**9,  # one window per frame: only the stored blocks are used
        channel_independent=channel_independent,
        calendar_freq=calendar_freq,
    )
    out = []
    for entry in data.entries:
        rows = slice(entry.offset, entry.offset + len(entry.index))
        columns = [list(frames[entry.source].columns).index(c) for c in entry.columns]
        block = torch.from_numpy(frames[entry.source].to_numpy(np.float32)[:, columns])
        train, val, test = spans[entry.source]
        flags = filled_flags(filled, entry.source, entry.columns[0], entry.index)
        out.append(
            StreamSeries(
                name=entry.name,
                source=entry.source,
                columns=entry.columns,
                index=entry.index,
                values=block,
                calendar=data.calendar[rows],
                train=train,
                val=val,
                test=test,
                # a copy: the flags are a read-only view of the loader's frame (torch warned
                # "The given NumPy array is not writable"), one byte a row
                filled=torch.from_numpy(flags.copy())
                if flags is not None and flags.any()
                else None,
            )
        )
    return out


def span_origins(span: tuple[int, int], lookback: int, horizon: int, step: int = 1) -> np.ndarray:
    """Origins (first target rows) whose whole horizon lies in `span` and that have at least
    `lookback` rows before them, `step` apart and aligned to the span's end."""
    start, stop = span
    last = stop - horizon
    first = max(start, lookback)
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(last, first - 1, -step, dtype=np.int64)[::-1].copy()


def _inputs(
    model: StreamingURNNForecaster, s: StreamSeries, stop: int
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    c = model.config
    target = s.target[None, :stop]
    covariates = s.values[None, :stop, 1:] if c.n_past_covariates else None
    calendar = s.calendar[None, :stop] if c.n_calendar else None
    return target, covariates, calendar


@torch.inference_mode()
def predict_origins(
    model: StreamingURNNForecaster, s: StreamSeries, origins: np.ndarray, device: str = "cpu"
) -> Tensor:
    """(N, H, Q) forecasts at `origins` of `s`, each from all rows before it; on the CPU."""
    model.eval()
    if len(origins) == 0:
        return torch.empty(0, model.config.horizon, len(model.config.quantiles))
    stop = int(origins.max()) + model.config.horizon
    target, covariates, calendar = (
        None if t is None else t.to(device) for t in _inputs(model, s, stop)
    )
    assert target is not None
    out = []
    for i in range(0, len(origins), ORIGIN_CHUNK):
        chunk = torch.from_numpy(origins[i : i + ORIGIN_CHUNK]).to(device)
        out.append(model.forward_origins(target, covariates, calendar, chunk)[0].cpu())
    return torch.cat(out)


def targets_at(s: StreamSeries, origins: np.ndarray, horizon: int) -> Tensor:
    """(N, H) realised targets of `origins`."""
    rows = torch.from_numpy(origins)[:, None] + torch.arange(horizon)
    return s.target[rows]


def scored_filled(
    span: tuple[int, int], lookback: int, horizon: int, flags: np.ndarray | None
) -> np.ndarray:
    """(N, H) bool: which targets of the origins of `span` (`span_origins`, step 1: what
    `evaluate_stream` scores) the loader filled in; `flags` marks the rows of the series from
    its first training row (`StreamSeries.filled`), None where none was filled."""
    origins = span_origins(span, lookback, horizon)
    rows = origins[:, None] + np.arange(horizon)
    return np.zeros(rows.shape, dtype=bool) if flags is None else flags[rows]


def split_stream_flags(
    splits: Mapping[str, SeriesSplit], filled: Mapping[str, pd.DataFrame] | None
) -> list[tuple[str, pd.DatetimeIndex, tuple[int, int], np.ndarray | None]]:
    """Per series, as `stream_series` lays it out (rows from the first training row on): its
    id, index, val span and target filled flags, without scaling a value: what
    `stream_val_problem` reads before the fit (training.pipeline.prepare_training)."""
    out = []
    for sid, s in splits.items():
        plan = s.plan
        first = plan.train.start
        index = pd.DatetimeIndex(
            s.train.index.append(
                [s.val.index[plan.val.context :], s.test.index[plan.test.context :]]
            )
        )
        target = str(s.train.columns[0])
        flags = filled_flags(filled, sid, target, index)
        span = (plan.val.start - first, plan.val.stop - first)
        out.append((sid, index, span, flags if flags is not None and flags.any() else None))
    return out


def stream_val_problem(
    series: list[tuple[str, pd.DatetimeIndex, tuple[int, int], np.ndarray | None]],
    lookback: int,
    horizon: int,
    how: str = "",
) -> str | None:
    """Why the streaming fit's val scores would have nothing to read, or None: every target
    of every val origin it scores (`scored_filled`) was filled in by the loader, so that the
    val loss is NaN at every epoch, early stopping never improves, the last epoch's weights are
    kept without a word and the intervals are calibrated on nothing. One observed target value
    is enough. `series`: (name, index, val span, target filled flags) per series
    (`split_stream_flags`, or `StreamSeries` fields); `how`: the fill, as the loader did it."""
    points, origins, spans = 0, 0, []
    for name, index, span, flags in series:
        scored = scored_filled(span, lookback, horizon, flags)
        if not bool(scored.all()):
            return None
        points, origins = points + scored.size, origins + len(scored)
        if len(scored):
            start, stop = span
            spans.append((name, f"{index[start]} to {index[stop - 1]} ({stop - start:,} rows)"))
    if not points:
        return None  # no origin at all: evaluate_stream names that itself
    subject = (
        "every target value the streaming kind 'urnn-stream' scores on the validation span "
        + spans_said(spans, named=len(spans) > 1)
    )
    counted = f"{points:,} of {points:,}, 100%: the horizons of its {origins:,} val origins"
    return filled_val_message(subject, how, counted, STREAM_WAYS_OUT)


# What puts observed rows in the streaming kind's validation span (it refuses a cut series)
STREAM_WAYS_OUT = (
    "Put observed rows in the validation span: another split (--train-fraction, "
    "--val-fraction, train.split_method), or a windowed kind (urnn, lstm) with the gap left "
    "unfilled (a --max-gap shorter than the gap with --on-long-gap split, which cuts the "
    "series there: the streaming kind refuses a cut series)"
)


@torch.inference_mode()
def evaluate_stream(
    model: StreamingURNNForecaster,
    series: list[StreamSeries],
    config: FitConfig,
    device: str,
    span: str = "val",
) -> tuple[dict[str, float], Tensor, Tensor]:
    """Loss, MSE, MAE of the median over every origin of `span` ("val" or "test") of every
    series; also the (N, H, Q) forecasts and (N, H) targets behind them. A target the loader
    filled in (`StreamSeries.filled`) is left out of the scores and NaN in the targets
    returned, which the interval calibration leaves out (as training.fit does for windows)."""
    c = model.config
    preds, targets, flags = [], [], []
    for s in series:
        origins = span_origins(getattr(s, span), c.lookback, c.horizon)
        preds.append(predict_origins(model, s, origins, device))
        targets.append(targets_at(s, origins, c.horizon))
        rows = torch.from_numpy(origins)[:, None] + torch.arange(c.horizon)
        flags.append(
            torch.zeros(rows.shape, dtype=torch.bool) if s.filled is None else s.filled[rows]
        )
    pred, target = torch.cat(preds), torch.cat(targets)
    if len(pred) == 0:
        raise StreamFitError(
            f"no {span} origin has {c.lookback} rows before it and {c.horizon} inside the span"
        )
    q = torch.tensor(c.quantiles)
    if any(s.filled is not None for s in series):
        filled = torch.cat(flags)
        return (
            observed_scores(pred, target, ~filled, c, config),
            pred,
            target.masked_fill(filled, math.nan),
        )
    error = pred[..., c.median_index] - target
    scores = {
        "loss": float(training_loss(pred, target, q, c.median_index, config.mse_weight)),
        "mse": float(error.square().mean()),
        "mae": float(error.abs().mean()),
    }
    return scores, pred, target


def observed_scores(
    pred: Tensor, target: Tensor, observed: Tensor, c: ForecasterConfig, config: FitConfig
) -> dict[str, float]:
    """Loss, MSE, MAE of the median over the `observed` (N, H) target points, as
    training.fit.evaluate_observed takes them; NaN where none is observed."""
    if not bool(observed.any()):
        return {"loss": math.nan, "mse": math.nan, "mae": math.nan}
    q = torch.tensor(c.quantiles)
    gap = target.unsqueeze(-1) - pred
    pinball = torch.maximum(q * gap, (q - 1.0) * gap).mean(-1)[observed].double()
    error = (pred[..., c.median_index] - target)[observed].double()
    mse = float(error.square().mean())
    return {"loss": float(pinball.mean()) + config.mse_weight * mse, "mse": mse,
            "mae": float(error.abs().mean())}  # fmt: skip


def fit_stream(
    model_config: ForecasterConfig,
    series: list[StreamSeries],
    config: FitConfig,
    *,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> FitResult:
    """Build and train a streaming forecaster on the train spans of `series`, early-stopped
    on their val spans; the best epoch is restored and the intervals calibrated on val."""
    device = str(resolve_device(config.device))
    seed_everything(config.seed)
    model = build_forecaster(model_config).to(device)
    if not isinstance(model, StreamingURNNForecaster):
        raise StreamFitError(f"fit_stream trains kind 'urnn-stream'; got {model_config.kind!r}")
    if (problem := stream_crop_error(model_config, config)) is not None:
        raise StreamFitError(problem)
    c = model_config
    flags = [(s.name, s.index, s.val, None if s.filled is None else s.filled.numpy())
             for s in series]  # fmt: skip
    if (problem := stream_val_problem(flags, c.lookback, c.horizon)) is not None:
        raise UnobservedStreamValidationError(problem)
    crop = config.stream_crop_length
    min_rows = c.lookback + c.horizon
    usable = [s for s in series if s.train[1] - s.train[0] >= min_rows]
    if not usable:
        raise StreamFitError(
            f"no series has the {min_rows} training rows (lookback + horizon) needed"
        )
    result = FitResult(model=model, n_params=count_parameters(model), device=device)
    optimizer = make_optimizer(model, replace(config, lr=config.lr * config.stream_lr_scale))
    plateau = cosine = None
    if config.schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.plateau_factor, patience=config.plateau_patience
        )
    elif config.schedule == "cosine":
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    quantiles = torch.tensor(c.quantiles, device=device)
    generator = np.random.default_rng(config.seed)
    lengths = np.array([s.train[1] - s.train[0] for s in usable], dtype=np.float64)
    weights = lengths / lengths.sum()  # longer series give proportionally more crops
    best_state: dict[str, Tensor] | None = None
    best, stale = math.inf, 0
    start = time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        losses = []
        lr = optimizer.param_groups[0]["lr"]
        for _ in range(config.stream_batches_per_epoch):
            if should_stop is not None and should_stop():
                result.stop_reason = "cancelled"
                break
            picks = generator.choice(len(usable), size=config.stream_batch_crops, p=weights)
            length = int(min(crop, lengths[picks].min()))
            blocks = []
            for i in picks:
                s = usable[int(i)]
                first = s.train[0] + int(
                    generator.integers(0, s.train[1] - s.train[0] - length + 1)
                )
                blocks.append((s, first))
            values = torch.stack([s.values[a : a + length] for s, a in blocks]).to(device)
            calendar = torch.stack([s.calendar[a : a + length] for s, a in blocks]).to(device)
            origins = torch.arange(c.lookback, length - c.horizon + 1, device=device)
            pred = model.forward_origins(
                values[..., 0],
                values[..., 1:] if c.n_past_covariates else None,
                calendar if c.n_calendar else None,
                origins,
            )  # (B, N, H, Q)
            target = values[..., 0].unfold(1, c.horizon, 1)[:, origins]  # (B, N, H)
            loss = training_loss(
                pred.flatten(0, 1), target.flatten(0, 1), quantiles, c.median_index,
                config.mse_weight,
            )  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            if config.clip_norm is not None:
                clip_gradients(model, config.clip_norm)
            optimizer.step()
            losses.append(float(loss.detach()))
        if not losses:
            break
        scores, _, _ = evaluate_stream(model, series, config, device)
        score = scores[config.monitor]
        improved = score < best - config.min_delta
        record = EpochRecord(
            epoch, float(np.mean(losses)), scores["loss"], scores["mse"], scores["mae"], lr,
            time.perf_counter() - epoch_start, improved,
        )  # fmt: skip
        result.history.append(record)
        if progress:
            print(
                f"epoch {epoch}: train {record.train_loss:.4f} val mse {record.val_mse:.4f} "
                f"{'*' if improved else ''}",
                flush=True,
            )
        if on_epoch_end is not None:
            on_epoch_end(record)
        if improved:
            best, stale = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            result.best_epoch, result.best_score = epoch, score
        else:
            stale += 1
        if plateau is not None:
            plateau.step(score)
        if cosine is not None:
            cosine.step()
        if result.stop_reason == "cancelled":
            break
        if stale >= config.patience:
            result.stop_reason = "patience"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if config.calibrate_intervals and len(c.quantiles) > 1:
        model.gap_scale.fill_(1.0)
        _, pred, target = evaluate_stream(model, series, config, device)
        model.calibrate_gaps(pred, target)
    result.wall_seconds = time.perf_counter() - start
    return result

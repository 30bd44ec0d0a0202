"""Stage 5 of the training pipeline: fit a forecaster on train windows, early-stopped on val.

    result = fit(ForecasterConfig(kind="urnn", lookback=336, horizon=96), sets.train, sets.val,
                 FitConfig(max_epochs=20, patience=3))
    result.model          # the best epoch's weights, in eval mode
    result.history        # one EpochRecord per epoch (train loss, val metrics, lr, seconds)

Decisions and why:
- Loss: the pinball (quantile) loss averaged over quantiles and horizon steps, so that every
  quantile output is trained for its own level. The median then minimises absolute error; when
  the metric that matters is MSE (the ETT protocol), `mse_weight` adds `mse_weight * MSE` of
  the median, which pulls the point forecast towards the conditional mean. Default 0: the
  product's forecasts are quantiles first.
- Optimiser: AdamW (decoupled weight decay). The unitary matrix's parameters (phases,
  reflections, the skew-Hermitian generator) get neither weight decay nor gradient clipping:
  decaying them would pull W towards a fixed matrix for no reason, and the paper trains the
  uRNN unclipped -- the whole point of a unitary W is that its gradients do not explode. All
  other parameters (input map V, modReLU bias, h0, the head; every LSTM/GRU/linear weight) are
  clipped together to `clip_norm`.
- Schedule: reduce-on-plateau on the monitored validation score (halve the learning rate after
  `plateau_patience` epochs without improvement) by default: the uRNN overfits within a few
  epochs on ETT, so a cosine schedule over a fixed budget would barely have decayed when early
  stopping fires, while a plateau step gives one more chance at a smaller step before it does.
  `cosine` (over max_epochs) and `none` are the alternatives.
- Budget: up to 100 epochs (Darts' default too), and early stopping decides. A cap of 20 cut
  training short wherever an epoch is small: on the Bike-sharing and Taylor demand data the
  uRNN's val error was still falling at epoch 20 (best epochs 53 and 21 with the cap at 100;
  val MSE -5.3 % and -4.0 %, val MAE -5.8 % and -1.8 %), while on ETT and PJM, with thousands
  of windows per epoch, early stopping ends runs well before 20 either way.
- Early stopping on the time-ordered val windows with `patience`; the best epoch's state dict
  is kept in memory (cloned tensors) and restored at the end, whatever stopped the loop.
- Intervals: the pinball loss fits quantiles on the train span, but the later val span is
  usually calmer or wilder (ETTh1: 80 % intervals covered 97 % of test windows with "last"
  normalisation), so after training the gaps between quantiles are rescaled on the val windows
  (split-conformal, `Forecaster.calibrate_gaps`). The median is untouched; val already chose
  the epoch, so this reuses it once more rather than carving a third split out of the history.
- Decoder: with `decoder_search` (`urnn train --decoder auto`) a recurrent kind is trained once
  per decoder and the better on val is kept, since neither wins on every data set and horizon.
- Under torchrun each batch is split across the ranks and DDP averages the gradients
  (training/distributed.py).
- Hooks: `on_epoch_end(record)` after every epoch (MLflow metrics later); `should_stop()`
  before every batch (job cancellation later): the loop ends cleanly and restores the best.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from models.ensemble import EnsembleForecaster
from models.forecaster import (
    CHECKPOINT_CONFIG,
    CHECKPOINT_WEIGHTS,
    DECODERS,
    FORECASTERS,
    MIN_WINDOW_STD,
    Forecaster,
    ForecasterConfig,
    NaiveForecaster,
    build_forecaster,
    count_parameters,
    save_checkpoint,
    window_statistics,
)
from training import distributed
from training.paper_benchmark import DeviceName, resolve_device
from training.validation import UnobservedValidationError, plural
from training.windows import WindowDataset
from urnn_forecast.checkpoints import staging_for
from urnn_forecast.field_types import not_one_of

Schedule = Literal["plateau", "cosine", "none"]
SCHEDULES: tuple[Schedule, ...] = ("plateau", "cosine", "none")
Monitor = Literal["loss", "mse", "mae"]
MONITORS: tuple[Monitor, ...] = ("loss", "mse", "mae")
DEVICES: tuple[DeviceName, ...] = ("auto", "cpu", "cuda")
StopReason = Literal["patience", "max_epochs", "cancelled", "parameter_free"]


class FitConfigError(ValueError):
    """A FitConfig field outside its allowed values."""


SEED_MAX = 2**32 - 1  # numpy's RNG takes seeds 0 .. 2**32 - 1 (torch would take more)


# The largest float32: the parameters and the optimiser's state are float32 tensors.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32


@dataclass(frozen=True)
class FitConfig:
    """How to train; JSON-serialisable (`dataclasses.asdict`) for the run's parameters."""

    max_epochs: int = 100  # a cap: early stopping on val ends the loop (module docstring)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0  # AdamW, decoupled; never applied to unitary parameters
    schedule: Schedule = "plateau"
    plateau_factor: float = 0.5  # lr multiplier when the val score stalls
    plateau_patience: int = 1  # epochs without improvement before the lr drops
    patience: int = 3  # early stopping: epochs without improvement before the loop ends
    # An epoch improves on the best when its val score is lower by more than this (scaled
    # units, where a score is ~0.1-1): a constant or perfectly learnt series otherwise
    # "improved" by rounding noise and trained all max_epochs (100 epochs, 7 minutes, for a
    # flat line).
    min_delta: float = 1e-6
    clip_norm: float | None = 1.0  # gradient norm of the non-unitary parameters; None: off
    mse_weight: float = 0.0  # loss = pinball + mse_weight * MSE(median, target)
    monitor: Monitor = "loss"  # val score for early stopping and the plateau schedule
    seed: int = 0  # python, numpy and torch RNGs: initialisation, shuffling, dropout
    device: DeviceName = "auto"
    eval_batch_size: int = 512
    max_train_batches: int | None = None  # per epoch; None: every train window once
    # Windowed recurrent kinds (DECODER_SEARCH_KINDS: urnn, urnn-full, lstm, gru): train one
    # model per decoder ("direct", "pmf") and keep the one with the better monitored val score;
    # the model config's own decoder is ignored. Which decoder wins depends on the data and the
    # horizon (docs/benchmarks.md); this picks it on the validation split at twice the cost.
    decoder_search: bool = False
    # Scale the gaps between quantiles on the val windows after training so that each
    # quantile's val level matches its nominal one (Forecaster.calibrate_gaps).
    calibrate_intervals: bool = True
    # Streaming kinds only (training.stream_fit): each batch holds `stream_batch_crops` crops
    # of `stream_crop_length` consecutive training rows, scored at every origin along them.
    # Chosen on the ETTh1 validation split (docs/streaming.md): crops of 8192 rows (states that
    # have seen up to ~340 segments, past where their norm settles) beat 4096 and 2048.
    stream_crop_length: int = 8192
    stream_batch_crops: int = 4
    stream_batches_per_epoch: int = 32
    # The streaming kind steps with lr * stream_lr_scale: each of its batches averages the loss
    # over thousands of origins, a low-variance gradient that takes a larger step (3x beat 1x on
    # the same validation split).
    stream_lr_scale: float = 3.0

    def __post_init__(self) -> None:
        for name, allowed in (
            ("schedule", SCHEDULES),
            ("monitor", MONITORS),
            ("device", DEVICES),
        ):
            if getattr(self, name) not in allowed:
                raise FitConfigError(not_one_of(name, getattr(self, name), allowed))
        for name in (
            "max_epochs",
            "batch_size",
            "patience",
            "eval_batch_size",
            "stream_crop_length",
            "stream_batch_crops",
            "stream_batches_per_epoch",
        ):
            if getattr(self, name) < 1:
                raise FitConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_train_batches is not None and self.max_train_batches < 1:
            raise FitConfigError(
                f"max_train_batches must be None or >= 1, got {self.max_train_batches}"
            )
        for name in (
            "lr",
            "weight_decay",
            "mse_weight",
            "clip_norm",
            "stream_lr_scale",
            "min_delta",
        ):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                # the model trains in float32: lr=1e300 was queued and failed in Adam's step
                # ("value cannot be converted to type float without overflow")
                raise FitConfigError(
                    f"{name} must be a finite number of magnitude at most {FLOAT32_MAX:.4g} "
                    f"(float32, what the model trains in), got {_number_text(value)}"
                )
        # the learning rates the optimiser takes: below float32's smallest normal nothing
        # trains; the streaming kind's product may also pass its largest
        for name, value in (
            ("lr", self.lr if isinstance(self.lr, (int, float)) else None),
            ("lr * stream_lr_scale (the streaming kind's step)", _product(self)),
        ):
            if value is not None and (0 < value < FLOAT32_TINY or value > FLOAT32_MAX):
                raise FitConfigError(
                    f"{name} must lie from {FLOAT32_TINY:.4g} to {FLOAT32_MAX:.4g} (float32, "
                    f"what the model trains in), got {_number_text(value)}"
                )
        if not self.stream_lr_scale > 0:
            raise FitConfigError(f"stream_lr_scale must be > 0, got {self.stream_lr_scale}")
        if not self.min_delta >= 0:
            raise FitConfigError(f"min_delta must be >= 0, got {self.min_delta}")
        if not self.lr > 0 or self.weight_decay < 0 or self.mse_weight < 0:
            raise FitConfigError(
                f"lr must be > 0, weight_decay and mse_weight >= 0; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, mse_weight={self.mse_weight}"
            )
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise FitConfigError(f"clip_norm must be None or > 0, got {self.clip_norm}")
        if not 0 < self.plateau_factor < 1 or self.plateau_patience < 0:
            raise FitConfigError(
                f"plateau_factor must lie in (0, 1) and plateau_patience be >= 0; got "
                f"{self.plateau_factor}, {self.plateau_patience}"
            )


def _product(config: FitConfig) -> float | None:
    """lr * stream_lr_scale when both are numbers (a string is refused elsewhere)."""
    lr, scale = config.lr, config.stream_lr_scale
    if not isinstance(lr, (int, float)) or not isinstance(scale, (int, float)):
        return None
    try:
        return float(lr) * float(scale)
    except OverflowError:
        return math.inf


def _number_text(value: float) -> str:
    """Four significant digits; an integer too large for a float by its size (10**400 printed
    all its digits)."""
    try:
        return f"{float(value):.4g}"
    except OverflowError:
        return f"an integer of {len(str(abs(int(value)))):,} digits"


def fit_fields_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The FitConfig fields among a training run's MLflow params, read back from the text the
    pipeline logged under "fit.<field>" (`str(value)`, training.pipeline._params): "0.0003" ->
    0.0003, "None" -> None, "False" -> False, "plateau" -> "plateau". A field the run lacks (a
    run from before the field existed) is left out, and so is a param of a field FitConfig no
    longer has. ValueError when a value does not read as its field's type."""
    hints = typing.get_type_hints(FitConfig)
    out: dict[str, Any] = {}
    for f in fields(FitConfig):
        text = params.get(f"fit.{f.name}")
        if text is not None:
            out[f.name] = _read_param(hints[f.name], f.name, text)
    return out


def fit_fields_from_record(record: Mapping[str, object]) -> dict[str, Any]:
    """The FitConfig fields of a recorded dict (config.json's "fit", a file anyone can edit),
    each checked against its field's type, which FitConfig itself does not check (it checks
    ranges: a seed of "7" or 2.5 epochs would fail deep in the fit). A key FitConfig does not
    know (recorded by another version) is left out. ValueError naming the field otherwise;
    the seed's range too (SEED_MAX), which FitConfig leaves to its callers."""
    hints = typing.get_type_hints(FitConfig)
    out: dict[str, Any] = {}
    for f in fields(FitConfig):
        if f.name not in record:
            continue
        value, options = record[f.name], _options(hints[f.name])
        if not any(_is_of(value, option) for option in options):
            names = " or ".join(_option_name(option) for option in options)
            raise ValueError(f"{f.name}={value!r}: not {names}")
        out[f.name] = value
    if not 0 <= out.get("seed", 0) <= SEED_MAX:  # numpy's RNG takes no other
        raise ValueError(f"seed must lie in 0 .. 2**32 - 1, got {out['seed']}")
    return out


def _options(annotation: Any) -> tuple[Any, ...]:
    union = typing.get_origin(annotation) in (Union, types.UnionType)
    return typing.get_args(annotation) if union else (annotation,)


def _is_of(value: object, option: Any) -> bool:
    if option is type(None):
        return value is None
    if typing.get_origin(option) is Literal:
        return isinstance(value, str) and value in typing.get_args(option)
    if option in (int, float) and isinstance(value, bool):
        return False  # a bool is an int to Python, not a number to a config
    if option is float:
        return isinstance(value, (int, float))
    return isinstance(value, option)


def _option_name(option: Any) -> str:
    if option is type(None):
        return "null"
    if typing.get_origin(option) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(option))
    return getattr(option, "__name__", str(option))


def _read_param(annotation: Any, name: str, text: str) -> Any:
    options = _options(annotation)
    if text == "None" and type(None) in options:
        return None
    for option in options:
        if option is bool:
            if text in ("True", "False"):
                return text == "True"
        elif option in (int, float):
            with contextlib.suppress(ValueError):
                return option(text)
        elif typing.get_origin(option) is Literal and text in typing.get_args(option):
            return text
    raise ValueError(f"run param fit.{name}={text!r} does not read as that field's type")


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float  # mean training loss over the epoch's batches
    val_loss: float
    val_mse: float  # of the median, on the scale the windows are in
    val_mae: float
    lr: float  # the learning rate used during this epoch
    seconds: float
    improved: bool  # the monitored val score is the best so far
    candidate: str | None = None  # under decoder_search: the decoder this fit trains


@dataclass
class FitResult:
    model: Forecaster  # best epoch restored, eval mode, on `device`
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0  # 0: no epoch finished (cancelled before the first ended)
    best_score: float = math.inf  # the monitored val score of best_epoch
    stop_reason: StopReason = "max_epochs"
    wall_seconds: float = 0.0
    n_params: int = 0
    device: str = "cpu"
    # Under decoder_search: each decoder's best monitored val score (the model is the lowest's)
    decoder_scores: dict[str, float] = field(default_factory=dict)
    # Epochs of fits whose model was not kept (the decoders a search did not choose), which
    # `history` leaves out: what the fit cost is len(history) + discarded_epochs.
    discarded_epochs: int = 0

    @property
    def epochs_trained(self) -> int:
        """Every epoch this fit ran, kept candidates' and discarded ones' alike."""
        return len(self.history) + self.discarded_epochs


# -----------------------------------------------------------------------------
# Pieces


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global RNGs (initialisation and dropout draw from them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pinball_loss(pred: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """Mean over batch, steps and quantiles of max(q e, (q - 1) e), e = y - f.
    pred (B, H, Q), target (B, H), quantiles (Q,)."""
    error = target.unsqueeze(-1) - pred  # (B, H, Q)
    return torch.maximum(quantiles * error, (quantiles - 1.0) * error).mean()


def training_loss(
    pred: Tensor, target: Tensor, quantiles: Tensor, median_index: int, mse_weight: float
) -> Tensor:
    loss = pinball_loss(pred, target, quantiles)
    if mse_weight:
        loss = loss + mse_weight * (pred[..., median_index] - target).square().mean()
    return loss


def split_parameters(model: Forecaster) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(unitary, other) trainable parameters."""
    unitary = [p for p in model.unitary_parameters() if p.requires_grad]
    ids = {id(p) for p in unitary}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return unitary, other


def clip_gradients(model: Forecaster, max_norm: float) -> float:
    """Clip the joint gradient norm of the non-unitary parameters to max_norm; the unitary
    matrix's gradients are left exactly as they are. Returns the norm before clipping."""
    _, other = split_parameters(model)
    return float(nn.utils.clip_grad_norm_(other, max_norm))


def make_optimizer(model: Forecaster, config: FitConfig) -> torch.optim.Optimizer:
    unitary, other = split_parameters(model)
    groups: list[dict[str, Any]] = []
    if other:
        groups.append({"params": other, "weight_decay": config.weight_decay})
    if unitary:
        groups.append({"params": unitary, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=config.lr)


def index_batches(order: Tensor, size: int) -> list[Tensor]:
    """Consecutive slices of `size` window indices (the last one may be shorter)."""
    return [order[i : i + size] for i in range(0, len(order), size)]


@torch.inference_mode()
def predict(
    model: Forecaster, dataset: WindowDataset, *, batch_size: int = 512, device: str = "cpu"
) -> Tensor:
    """Quantile forecasts (N, H, Q) for every window of `dataset`, on the CPU, in order:
    written batch by batch into one tensor (a list of batches joined at the end held them
    twice)."""
    model.eval()
    shape = (len(dataset), dataset.horizon, len(model.config.quantiles))
    out: Tensor | None = None
    for indices in index_batches(torch.arange(len(dataset)), batch_size):
        batch = dataset.batch(indices).to(device)
        pred = model(*batch.model_inputs(model), **batch.model_keywords(model))
        if out is None:  # the model's own dtype, as joining its batches kept it
            out = torch.empty(shape, dtype=pred.dtype)
        out[int(indices[0]) : int(indices[0]) + len(indices)] = pred.cpu()
    return out if out is not None else torch.empty(shape)


@torch.inference_mode()
def evaluate(
    model: Forecaster, dataset: WindowDataset, config: FitConfig, device: str
) -> dict[str, float]:
    """Training loss, MSE and MAE of the median over every window of `dataset`; over its
    observed target values only where the loader filled some in (`evaluate_observed`)."""
    if dataset.filled is not None:
        return evaluate_observed(model, dataset, config, device)
    model.eval()
    c = model.config
    quantiles = torch.tensor(c.quantiles, device=device)
    totals = {"loss": 0.0, "mse": 0.0, "mae": 0.0}
    for indices in index_batches(torch.arange(len(dataset)), config.eval_batch_size):
        batch = dataset.batch(indices).to(device)
        pred = model(*batch.model_inputs(model), **batch.model_keywords(model))
        error = pred[..., c.median_index] - batch.target
        n = len(indices)
        loss = training_loss(pred, batch.target, quantiles, c.median_index, config.mse_weight)
        totals["loss"] += float(loss) * n
        totals["mse"] += float(error.square().mean()) * n
        totals["mae"] += float(error.abs().mean()) * n
    return {k: v / len(dataset) for k, v in totals.items()}


# What puts observed rows in the validation span of a fit on a split by time (`urnn train`'s,
# a backtest's own fit without refit): what `check_val_observed` says by default.
SPLIT_WAYS_OUT = (
    "Put observed rows in the validation span: another split (--train-fraction, "
    "--val-fraction, train.split_method), or leave the gap unfilled: a --max-gap "
    "shorter than the gap with --on-long-gap split, which cuts the series there"
)


def scored_rows(dataset: WindowDataset) -> np.ndarray:
    """(R,) bool over the dataset's stored rows: those some window's target covers (what its
    scores read)."""
    covers = np.zeros(len(dataset.values) + 1, dtype=np.int64)
    first = dataset.starts.numpy() + dataset.lookback
    np.add.at(covers, first, 1)
    np.add.at(covers, first + dataset.horizon, -1)
    scored: np.ndarray = np.cumsum(covers[:-1]) > 0
    return scored


def unobserved_val_problem(
    val: WindowDataset, *, fitting: str = "", how: str = "", ways_out: str = SPLIT_WAYS_OUT
) -> str | None:
    """Why the val scores of a fit on `val` would have nothing to read, or None: the loader
    filled in every target value the val windows score (a gap across the whole val span, under
    max_filled_fraction overall). The val scores leave filled targets out
    (`evaluate_observed`), so they were NaN at every epoch, early stopping never improved, the
    last epoch's weights were kept without a word and the intervals were calibrated on
    nothing. One observed target value is enough. `fitting`: what is fitted, where the caller
    knows more than "the fit" ("refit 2 of 3 of the backtest (origin ...)"); `how`: the fill,
    as the loader did it (`LoadConfig.fill_said`); `ways_out`: what fixes it for that caller."""
    if val.filled is None or len(val) == 0:
        return None
    scored = scored_rows(val)
    if not bool(val.filled.numpy()[scored].all()):
        return None
    spans = []
    for entry in val.entries:
        rows = np.flatnonzero(scored[entry.offset : entry.offset + len(entry.index)])
        if len(rows):
            first, last = int(rows[0]), int(rows[-1])
            said = f"{entry.index[first]} to {entry.index[last]} ({last - first + 1:,} rows)"
            spans.append((entry.name, said))
    subject = (
        f"{fitting}: every target value of its validation span"
        if fitting
        else "every target value of the validation span"
    )
    n = int(scored.sum())
    counted = f"{n:,} of {n:,} rows, 100%: the targets of its {plural(len(val), 'val window')}"
    where = spans_said(spans, named=len(val.entries) > 1)
    return filled_val_message(f"{subject} {where}", how, counted, ways_out)


def spans_said(spans: list[tuple[str, str]], *, named: bool) -> str:
    """Validation spans for a message: (series, span) pairs, the series named with `named`
    (there are several), the first three and a count of the rest."""
    said = [f"{name!r} {span}" if named else span for name, span in spans[:3]]
    return "; ".join(said) + (f" and {len(spans) - 3:,} more" if len(spans) > 3 else "")


def filled_val_message(subject: str, how: str, counted: str, ways_out: str) -> str:
    """The refusal of a validation set whose every scored target the loader filled in, for
    the windowed kinds (`unobserved_val_problem`) and the streaming one
    (training.stream_fit.stream_val_problem): `subject` says what was filled, `counted` how
    many values, `ways_out` what fixes it for that caller."""
    return (
        f"{subject} was filled in by the loader{how} ({counted}), and the val scores leave "
        "filled values out: early stopping and the interval calibration would have no "
        f"observed value to score on (val loss NaN at every epoch). {ways_out}"
    )


def check_val_observed(
    val: WindowDataset, *, fitting: str = "", how: str = "", ways_out: str = SPLIT_WAYS_OUT
) -> None:
    """UnobservedValidationError (exit 2 in the CLI) saying `unobserved_val_problem`, if any.
    `fit` applies it to every fit; `urnn train` before its data-heavy work
    (training.pipeline.prepare_training), a backtest before each of its fits, naming which."""
    problem = unobserved_val_problem(val, fitting=fitting, how=how, ways_out=ways_out)
    if problem is not None:
        raise UnobservedValidationError(problem)


@torch.inference_mode()
def evaluate_observed(
    model: Forecaster, dataset: WindowDataset, config: FitConfig, device: str
) -> dict[str, float]:
    """`evaluate` over the target values the loader observed: a value it filled in (an
    interpolated gap, `WindowDataset.targets_filled`) is left out, as the backtest's metrics
    leave it out. Each score is the mean over the observed (window, step) points (the loss's
    pinball term over their quantiles too); NaN where none is observed. Counted in, a gap
    filled in the val span scored early stopping on a line the loader drew."""
    model.eval()
    c = model.config
    quantiles = torch.tensor(c.quantiles, device=device)
    totals = {"pinball": 0.0, "mse": 0.0, "mae": 0.0}
    count = 0
    for indices in index_batches(torch.arange(len(dataset)), config.eval_batch_size):
        batch = dataset.batch(indices).to(device)
        filled = dataset.targets_filled(indices)
        observed = (
            torch.ones_like(batch.target, dtype=torch.bool)
            if filled is None
            else ~filled.to(device)
        )
        pred = model(*batch.model_inputs(model), **batch.model_keywords(model))
        error = batch.target.unsqueeze(-1) - pred  # (B, H, Q)
        pinball = torch.maximum(quantiles * error, (quantiles - 1.0) * error).mean(-1)
        target_error = pred[..., c.median_index] - batch.target  # (B, H)
        totals["pinball"] += float(pinball[observed].double().sum())
        totals["mse"] += float(target_error[observed].double().square().sum())
        totals["mae"] += float(target_error[observed].double().abs().sum())
        count += int(observed.sum())
    if count == 0:
        return {"loss": math.nan, "mse": math.nan, "mae": math.nan}
    mse = totals["mse"] / count
    return {"loss": totals["pinball"] / count + config.mse_weight * mse, "mse": mse,
            "mae": totals["mae"] / count}  # fmt: skip


@torch.inference_mode()
def calibrate_baseline(
    model: NaiveForecaster, dataset: WindowDataset, *, batch_size: int, device: str
) -> None:
    """Quantile offsets of a parameter-free model from its residuals on `dataset`."""
    residuals, flat = [], []
    for indices in index_batches(torch.arange(len(dataset)), batch_size):
        batch = dataset.batch(indices).to(device)
        _, scale = window_statistics(batch.past_target, model.config.normalisation)
        point = model.point_forecast(*batch.model_inputs(model))
        residuals.append(((batch.target - point) / scale).cpu())  # (B, H)
        flat.append((scale <= MIN_WINDOW_STD).reshape(-1).cpu())
    # Under instance normalisation a flat look-back (an intermittent series' quiet hours) is
    # forecast as its level, offsets unused, and its residuals are divided by the 1e-5 clamp:
    # a sale after one came out as 1e5 standard deviations and, where such windows passed
    # 1 - q of the training windows, set the outer offsets of every other window from them.
    all_residuals, all_flat = torch.cat(residuals), torch.cat(flat)
    if model.config.normalisation == "instance" and not all_flat.all():
        all_residuals = all_residuals[~all_flat]
    model.calibrate_offsets(all_residuals)


def calibrate_intervals(
    model: Forecaster, dataset: WindowDataset, *, batch_size: int, device: str
) -> None:
    """Fit the model's quantile gap multipliers on `dataset` (held-out windows), from its
    uncalibrated forecasts, on the observed target values: one the loader filled in is NaN
    here (`window_targets(observed_only=True)`), which `calibrate_gaps` leaves out."""
    model.gap_scale.fill_(1.0)
    pred = predict(model, dataset, batch_size=batch_size, device=device)
    model.calibrate_gaps(pred, window_targets(dataset, batch_size, observed_only=True))


def window_targets(
    dataset: WindowDataset, batch_size: int, *, observed_only: bool = False
) -> Tensor:
    """The target rows (N, H) of every window of `dataset`, on the CPU, gathered a batch at a
    time: `dataset.targets` of all N windows at once also built their (N, H) int64 row index,
    twice the size of the targets (0.3 GB on 1.6 M windows of 24 steps). `observed_only`: a
    value the loader filled in (`WindowDataset.targets_filled`) is NaN."""
    out = torch.empty(len(dataset), dataset.horizon, dtype=dataset.values.dtype)
    for indices in index_batches(torch.arange(len(dataset)), batch_size):
        rows = slice(int(indices[0]), int(indices[0]) + len(indices))
        out[rows] = dataset.targets(indices).cpu()
        filled = dataset.targets_filled(indices) if observed_only else None
        if filled is not None:
            out[rows] = out[rows].masked_fill(filled, math.nan)
    return out


# -----------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class BestSoFar:
    """Where a fit writes its best weights so far, at every epoch that improves on val: a fit
    killed or interrupted leaves the best model it had reached, loadable as a checkpoint
    (config.json with `extra` + weights.pt; "complete": false). The fit of one model writes
    `directory` itself; candidates of a decoder search and ensemble members each their own
    sub-folder (`member1`, `member1/pmf`)."""

    directory: Path
    extra: Mapping[str, Any]
    tag: str | None = None

    def tagged(self, name: str) -> BestSoFar:
        return replace(self, tag=_nested_tag(self.tag, name) if self.tag else name)

    def save(self, model: Forecaster, record: EpochRecord) -> None:
        extra = {**self.extra, "best_epoch": record.epoch, "complete": False}
        save_checkpoint_whole(model, self.directory / (self.tag or ""), extra)


def save_checkpoint_whole(model: Forecaster, folder: Path, extra: Mapping[str, Any]) -> None:
    """`save_checkpoint` written beside `folder` (urnn_forecast.checkpoints.staging_for), then
    moved in file by file, weights first: a Ctrl-C during the save leaves the previous
    checkpoint or the new one, never a truncated weights file under a config naming an epoch
    it does not hold."""
    staging = staging_for(folder)
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(model, staging, extra)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (CHECKPOINT_WEIGHTS, CHECKPOINT_CONFIG):
        os.replace(staging / name, folder / name)
    staging.rmdir()


def fit(
    model_config: ForecasterConfig,
    train: WindowDataset,
    val: WindowDataset,
    config: FitConfig,
    *,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_extra: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> FitResult:
    """Build `model_config`'s forecaster under `config.seed`, train it, restore the best epoch.

    With `checkpoint_dir`, writes config.json (model config, fit config, best epoch and
    `checkpoint_extra`, e.g. scaler statistics) and weights.pt there (models.forecaster.
    save_checkpoint): the best weights so far at every epoch that improves (`BestSoFar`), the
    fitted model ("complete": true) once the fit ends. `progress`: tqdm bars over epochs and
    over each epoch's batches. Parameter-free baselines are not
    trained: their quantile offsets are calibrated on the train windows, then scored on val.
    With `config.decoder_search` a recurrent kind is fitted once per decoder (`select_decoder`).
    A `val` whose every scored target the loader filled in is refused before any training
    (`check_val_observed`: its scores would be NaN at every epoch).
    """
    check_val_observed(val)
    best = (
        None
        if checkpoint_dir is None
        else BestSoFar(Path(checkpoint_dir), {"fit": asdict(config), **(checkpoint_extra or {})})
    )
    if model_config.ensemble > 1:
        result = fit_ensemble(
            model_config,
            train,
            val,
            config,
            on_epoch_end=on_epoch_end,
            should_stop=should_stop,
            progress=progress,
            best=best,
        )
    elif config.decoder_search and searches_decoder(model_config):
        result = select_decoder(
            model_config,
            train,
            val,
            config,
            on_epoch_end=on_epoch_end,
            should_stop=should_stop,
            progress=progress,
            best=best,
        )
    else:
        result = _fit_one(
            model_config, train, val, config, on_epoch_end, should_stop, progress, best
        )
    if best is not None:  # the fitted model over the best weights so far, "complete"
        extra = {
            **best.extra,
            "best_epoch": result.best_epoch,
            "best_score": result.best_score if math.isfinite(result.best_score) else None,
            **({"decoder_scores": result.decoder_scores} if result.decoder_scores else {}),
            "complete": True,
        }
        save_checkpoint_whole(result.model, best.directory, extra)
    return result


# The kinds decoder_search applies to: the windowed recurrent ones (those with a pmf decoder).
DECODER_SEARCH_KINDS: tuple[str, ...] = tuple(
    k for k, c in FORECASTERS.items() if c.RECURRENT and not c.STREAMING
)


def searches_decoder(model_config: ForecasterConfig) -> bool:
    """Whether `decoder_search` applies to this model; every other kind trains once, as it is."""
    return model_config.kind in DECODER_SEARCH_KINDS


def decoder_search_error(model_config: ForecasterConfig, config: FitConfig) -> str | None:
    """Why `config` cannot train `model_config` (a decoder search for a kind without decoders),
    or None. `fit` itself just trains such a kind once; the training entry points refuse it."""
    if config.decoder_search and not searches_decoder(model_config):
        return (
            "decoder 'auto' (fit.decoder_search) applies to the kinds "
            f"{', '.join(DECODER_SEARCH_KINDS)}; got kind {model_config.kind!r}"
        )
    return None


def stream_crop_error(model_config: ForecasterConfig, config: FitConfig) -> str | None:
    """Why `config`'s training crops cannot train the streaming `model_config`, or None.

    Each crop of `stream_crop_length` rows is scored at the origins that have `lookback` rows
    before them and `horizon` after, so a crop shorter than lookback + horizon has none: a
    look-back of 8,192 against the default crop of 8,192 rows failed in the first batch with
    torch's own 'upper bound and lower bound inconsistent with step sign', after the data was
    loaded and split (and a crop a few rows longer than the look-back scored no origin)."""
    if not FORECASTERS[model_config.kind].STREAMING:
        return None
    crop, lookback, horizon = (
        config.stream_crop_length,
        model_config.lookback,
        model_config.horizon,
    )
    if crop >= lookback + horizon:
        return None
    return (
        f"stream_crop_length={crop:,} is shorter than lookback + horizon ({lookback:,} + "
        f"{horizon:,}) for kind {model_config.kind!r}: each training crop is scored at the "
        f"origins with lookback rows before them and horizon rows after, and this one has "
        f"none; set fit.stream_crop_length to at least {lookback + horizon:,} (twice the "
        f"look-back, {2 * lookback:,}, or more leaves each crop origins whose state has read "
        "past the first-contact rows; urnn train, which has no flag for it: --config with "
        f'{{"fit": {{"stream_crop_length": {2 * lookback}}}}}), or give a shorter lookback'
    )


def nproc_error(kind: str, nproc: int) -> str | None:
    """Why `nproc` training processes (data-parallel under torchrun: `urnn train --nproc`, a
    job's `nproc`) cannot train `kind`, or None. Checked before any launch: the pipeline found
    it in each process only after the data was loaded and split."""
    if nproc > 1 and FORECASTERS[kind].STREAMING:
        return (
            f"{nproc} processes (data-parallel) apply to the windowed kinds; kind {kind!r} "
            "trains in one process (its batches are long crops of each series, not windows to "
            "shard): give 1"
        )
    return None


def select_decoder(
    model_config: ForecasterConfig,
    train: WindowDataset,
    val: WindowDataset,
    config: FitConfig,
    *,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = True,
    best: BestSoFar | None = None,
) -> FitResult:
    """One fit per decoder of DECODERS (same seed, data and settings), each early-stopped on
    val; the result is the fit with the lowest best monitored val score (the first on a tie),
    with every candidate's score in `decoder_scores` and the wall time of all of them. Epoch
    records carry the candidate's name. A cancelled fit ends the search with that fit."""
    chosen: FitResult | None = None
    scores: dict[str, float] = {}
    wall = 0.0
    epochs = 0
    for decoder in DECODERS:
        # The channel embedding is an input of the pmf decoder only.
        channels = model_config.n_channels if decoder == "pmf" else 0
        candidate = replace(model_config, decoder=decoder, n_channels=channels)
        hook = _tagged(on_epoch_end, decoder)
        saving = None if best is None else best.tagged(decoder)
        result = _fit_one(candidate, train, val, config, hook, should_stop, progress, saving)
        wall += result.wall_seconds
        epochs += len(result.history)
        scores[decoder] = result.best_score
        if result.stop_reason == "cancelled":
            chosen = result
            break
        if chosen is None or result.best_score < chosen.best_score:
            chosen = result
    assert chosen is not None  # DECODERS is not empty
    chosen.decoder_scores = scores
    chosen.wall_seconds = wall
    chosen.discarded_epochs = epochs - len(chosen.history)
    return chosen


def fit_ensemble(
    model_config: ForecasterConfig,
    train: WindowDataset,
    val: WindowDataset,
    config: FitConfig,
    *,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = True,
    best: BestSoFar | None = None,
) -> FitResult:
    """`model_config.ensemble` members, each trained alone and early-stopped on val, member i
    with seed `config.seed + i`; then the ensemble (models.ensemble) of their best epochs, its
    intervals calibrated on val after averaging. Under `decoder_search` the first member
    chooses the decoder and the others use it (one search, not one per member). Epoch records
    carry "member<i>" (and the decoder candidate). A cancelled member ends the fit with the
    members trained so far (none: the cancelled one alone)."""
    member_config = model_config.member_config()
    quiet = replace(config, calibrate_intervals=False)  # members' gaps stay at one
    members: list[FitResult] = []
    history: list[EpochRecord] = []
    wall = 0.0
    discarded = 0
    for i in range(model_config.ensemble):
        seeded = replace(quiet, seed=config.seed + i)
        hook = _tagged(on_epoch_end, f"member{i + 1}", nested=True)
        saving = None if best is None else best.tagged(f"member{i + 1}")
        if i == 0 and config.decoder_search and searches_decoder(member_config):
            result = select_decoder(
                member_config, train, val, seeded, on_epoch_end=hook, should_stop=should_stop,
                progress=progress, best=saving,
            )  # fmt: skip
            member_config = result.model.config
        else:
            seeded = replace(seeded, decoder_search=False)
            result = _fit_one(
                member_config, train, val, seeded, hook, should_stop, progress, saving
            )
        wall += result.wall_seconds
        discarded += result.discarded_epochs
        history += [
            replace(r, candidate=_nested_tag(f"member{i + 1}", r.candidate)) for r in result.history
        ]
        if result.stop_reason == "cancelled":
            if not members:
                result.history = history
                result.discarded_epochs = discarded
                return result
            break
        members.append(result)
    first = members[0]
    device = first.device
    # The members' decoder (the first one's choice under decoder_search); as many members as
    # were trained (fewer than asked when cancelled).
    ensemble_config = replace(
        model_config,
        decoder=member_config.decoder,
        n_channels=member_config.n_channels,
        ensemble=len(members),
    )
    model = first.model
    if len(members) > 1:
        ensemble = build_forecaster(ensemble_config).to(device)
        assert isinstance(ensemble, EnsembleForecaster)
        for slot, member in zip(ensemble.members, members, strict=True):
            slot.load_state_dict(member.model.state_dict())
        model = ensemble
    model.eval()
    start = time.perf_counter()
    # The averaged model's val score before calibration, as a single model's best_score is:
    # after calibration it would be scored on the windows the calibration was fitted on.
    scores = evaluate(model, val, config, device) if len(val) > 0 else {config.monitor: math.nan}
    _calibrate_if_asked(model, val, config, device)
    return FitResult(
        model=model,
        history=history,
        best_epoch=first.best_epoch,
        best_score=scores[config.monitor],
        stop_reason="cancelled" if len(members) < model_config.ensemble else first.stop_reason,
        wall_seconds=wall + time.perf_counter() - start,
        n_params=count_parameters(model),
        device=device,
        decoder_scores=first.decoder_scores,
        discarded_epochs=discarded,
    )


def _calibrate_if_asked(
    model: Forecaster, val: WindowDataset, config: FitConfig, device: str
) -> None:
    """The interval calibration of a finished fit, when asked for and possible."""
    if config.calibrate_intervals and len(val) > 0 and len(model.config.quantiles) > 1:
        calibrate_intervals(model, val, batch_size=config.eval_batch_size, device=device)


def _nested_tag(outer: str, inner: str | None) -> str:
    return f"{outer}/{inner}" if inner else outer


def _tagged(
    on_epoch_end: Callable[[EpochRecord], None] | None, candidate: str, *, nested: bool = False
) -> Callable[[EpochRecord], None] | None:
    """The hook with `candidate` set on every record; `nested`: prefixed to the record's own
    candidate ("member1/pmf") instead of replacing it."""
    if on_epoch_end is None:
        return None
    forward = on_epoch_end

    def tagged(record: EpochRecord) -> None:
        name = _nested_tag(candidate, record.candidate) if nested else candidate
        forward(replace(record, candidate=name))

    return tagged


def _fit_one(
    model_config: ForecasterConfig,
    train: WindowDataset,
    val: WindowDataset,
    config: FitConfig,
    on_epoch_end: Callable[[EpochRecord], None] | None,
    should_stop: Callable[[], bool] | None,
    progress: bool,
    best: BestSoFar | None = None,
) -> FitResult:
    train.check_compatible(model_config)
    val.check_compatible(model_config)
    device = str(resolve_device(config.device))
    seed_everything(config.seed)
    model = build_forecaster(model_config).to(device)
    result = FitResult(model=model, n_params=count_parameters(model), device=device)
    start = time.perf_counter()

    if isinstance(model, NaiveForecaster):
        calibrate_baseline(model, train, batch_size=config.eval_batch_size, device=device)
        scores = evaluate(model, val, config, device)
        record = EpochRecord(1, math.nan, scores["loss"], scores["mse"], scores["mae"],
                             0.0, time.perf_counter() - start, True)  # fmt: skip
        result.history.append(record)
        result.best_epoch, result.best_score = 1, scores[config.monitor]
        result.stop_reason = "parameter_free"
        if on_epoch_end is not None:
            on_epoch_end(record)
    else:
        _train(model, train, val, config, result, on_epoch_end, should_stop, progress, best)
    model.eval()
    _calibrate_if_asked(model, val, config, device)
    result.wall_seconds = time.perf_counter() - start
    return result


def _train(
    model: Forecaster,
    train: WindowDataset,
    val: WindowDataset,
    config: FitConfig,
    result: FitResult,
    on_epoch_end: Callable[[EpochRecord], None] | None,
    should_stop: Callable[[], bool] | None,
    progress: bool,
    best: BestSoFar | None = None,
) -> None:
    device = result.device
    c = model.config
    quantiles = torch.tensor(c.quantiles, device=device)
    optimizer = make_optimizer(model, config)
    plateau = cosine = None
    if config.schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.plateau_factor, patience=config.plateau_patience
        )
    elif config.schedule == "cosine":
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    shuffle = torch.Generator().manual_seed(config.seed)
    # Under torchrun (training/distributed.py): DDP averages gradients over each batch's shards.
    ranks = distributed.active()
    engine: torch.nn.Module = model
    if ranks is not None:
        device_ids = [torch.device(device).index] if device.startswith("cuda") else None
        # Some kinds leave parameters out of the forecast (the uRNN's own readout): tell DDP.
        engine = DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
    best_state: dict[str, Tensor] | None = None
    stale = 0
    bar = tqdm(
        range(1, config.max_epochs + 1),
        desc=f"{c.kind} epochs",
        unit="epoch",
        disable=not progress,
        leave=False,
    )
    for epoch in bar:
        epoch_start = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        model.train()
        batches = index_batches(torch.randperm(len(train), generator=shuffle), config.batch_size)
        if config.max_train_batches is not None:
            batches = batches[: config.max_train_batches]
        total, seen, cancelled = 0.0, 0, False
        steps = tqdm(
            batches,
            desc=f"epoch {epoch}/{config.max_epochs}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for indices in steps:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            if ranks is not None:
                indices = distributed.shard(indices, ranks)
            batch = train.batch(indices).to(device)
            pred = engine(*batch.model_inputs(model), **batch.model_keywords(model))
            loss = training_loss(pred, batch.target, quantiles, c.median_index, config.mse_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            if config.clip_norm is not None:
                clip_gradients(model, config.clip_norm)
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"{c.kind} diverged in epoch {epoch}: loss {value}")
            total += value * len(indices)
            seen += len(indices)
        if cancelled:
            result.stop_reason = "cancelled"
            break
        scores = evaluate(model, val, config, device)
        score = scores[config.monitor]
        improved = score < result.best_score - config.min_delta
        if improved:
            result.best_epoch, result.best_score, stale = epoch, score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if plateau is not None:
            plateau.step(score)
        if cosine is not None:
            cosine.step()
        record = EpochRecord(
            epoch=epoch,
            train_loss=total / max(seen, 1),
            val_loss=scores["loss"],
            val_mse=scores["mse"],
            val_mae=scores["mae"],
            lr=lr,
            seconds=time.perf_counter() - epoch_start,
            improved=improved,
        )
        result.history.append(record)
        if improved and best is not None:
            best.save(model, record)
        bar.set_postfix(
            train=f"{record.train_loss:.4f}", val=f"{score:.4f}", best=result.best_epoch
        )
        if on_epoch_end is not None:
            on_epoch_end(record)
        if stale >= config.patience:
            result.stop_reason = "patience"
            break
    if best_state is not None:
        model.load_state_dict(best_state)

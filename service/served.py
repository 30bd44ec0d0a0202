"""One loaded model version, on its device: the tensor forward of the serving hot path.

`ServedModel` is built once per version (by `service.manager`) and never mutated afterwards:
the module is in eval mode from `load_checkpoint`, every forward runs under
`torch.inference_mode()`, and no state is stored between calls, so any number of batches can
use it while a newer version is being built beside it.

It also precomputes, per scaler key, the target's and covariates' mean and scale as arrays,
so that scaling a request is numpy arithmetic rather than a pandas frame per series. The
arithmetic is the one of `training.mlflow_model.ForecastPredictor.predict_frame` (float64
scaling, float32 model, float64 un-scaling), so both give the same numbers (tests/service).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

import numpy as np
import pandas as pd
import torch
from pandas.tseries.offsets import BaseOffset

from models.forecaster import Forecaster
from models.streaming import StreamingURNNForecaster, StreamServing
from service.cuda_graphs import GraphedForward
from service.traced import TracedForward, trace_forward
from training.mlflow_model import (
    CLOCK_UTC,
    CalendarClock,
    ForecastPredictor,
    calendar_clock,
    covariates_read,
)
from training.realised_reference import reference_mase
from training.split import GLOBAL
from training.validation import (
    OffsetRangeError,
    checked_offset,
    matching_id,
    renamed_alias_hint,
    series_id_text,
    week_anchor,
)
from urnn_forecast.field_types import shown, shown_names


@dataclass(frozen=True)
class ModelRef:
    """A concrete registered version: what /forecast and GET /model report."""

    name: str
    version: str
    run_id: str
    uri: str  # the configured URI that resolved to it (e.g. models:/urnn-forecaster@champion)

    @property
    def version_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ColumnScales:
    """Scaler statistics for one scaler key: the target's, and the covariates' in model order."""

    target_mean: float
    target_scale: float
    covariate_mean: np.ndarray  # (C,) float64
    covariate_scale: np.ndarray  # (C,) float64


@dataclass
class ServedModel:
    """A forecaster version ready to serve; build with `ServedModel.build`."""

    ref: ModelRef
    predictor: ForecastPredictor
    device: torch.device
    loaded_at: datetime
    scales: dict[str, ColumnScales] = field(default_factory=dict)
    stream_snapshot: StreamServing | None = field(default=None, repr=False)  # streaming kinds
    traced: TracedForward | None = field(default=None, repr=False)  # service.traced
    graphed: GraphedForward | None = field(default=None, repr=False)  # service.cuda_graphs

    @classmethod
    def build(
        cls,
        ref: ModelRef,
        predictor: ForecastPredictor,
        device: torch.device,
        *,
        trace: bool = True,
        graph_max_batch: int | None = None,
    ) -> ServedModel:
        """Move the model to `device`, precompute the scaler arrays, capture CUDA graphs of
        the forward (on a GPU, for batches up to `graph_max_batch`, when given and they check
        out: service.cuda_graphs), else trace it (when `trace` and it checks out:
        service.traced), and warm up with one forward."""
        predictor.model.to(device)
        served = cls(ref=ref, predictor=predictor, device=device, loaded_at=datetime.now(UTC))
        served.scales = served._scale_tables()
        if served.streaming:  # the float64 serving copy, built before the first update
            served.stream_snapshot = served.stream_model.serving()
            return served._warmed()
        if graph_max_batch is not None:
            served.graphed = GraphedForward.capture(served.model, device, max_batch=graph_max_batch)
        if served.graphed is None and trace:
            served.traced = trace_forward(served.model, device)
        return served._warmed()

    def _warmed(self) -> ServedModel:
        self.warm_up()
        return self

    # --- what the model accepts (GET /model, service.validation) ---------------------------

    @property
    def model(self) -> Forecaster:
        return self.predictor.model

    @property
    def streaming(self) -> bool:
        """True for a model that carries a state across calls (kind urnn-stream): /forecast
        feeds it each whole history, the /series endpoints advance stored states."""
        return bool(getattr(self.model, "STREAMING", False))

    @property
    def stream_model(self) -> StreamingURNNForecaster:
        """The model as a streaming forecaster (TypeError when it is not one)."""
        model = self.model
        if not isinstance(model, StreamingURNNForecaster):
            raise TypeError(f"the served model of kind {model.config.kind!r} is not streaming")
        return model

    @property
    def stream_serving(self) -> StreamServing:
        """The streaming model's float64 serving path, taken once (by `build`, or on first
        use): a served version's weights never change, so the per-call check of
        `StreamingURNNForecaster.serving()` is skipped."""
        if self.stream_snapshot is None:
            self.stream_snapshot = self.stream_model.serving()
        return self.stream_snapshot

    @property
    def meta(self) -> dict[str, Any]:
        return self.predictor.meta

    @property
    def lookback(self) -> int:
        return self.model.config.lookback

    @property
    def max_horizon(self) -> int:
        return self.model.config.horizon

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.model.config.quantiles

    @property
    def target(self) -> str:
        return self.predictor.target

    @property
    def known_covariates(self) -> tuple[str, ...]:
        """Covariates of the training data, read or not (a request may carry them all)."""
        return self.predictor.covariates

    @property
    def covariates(self) -> tuple[str, ...]:
        """Covariates the network reads, in its input order: every series must carry these."""
        return covariates_read(self.model.config, self.known_covariates)

    def unknown_covariates_problem(self, unknown: list[str]) -> str:
        """What a 422 says of covariates this model does not know: the ones it does, or, for
        a model trained without any, that the field is to be left out (not "knows []"); a
        name the model writes in another case ('hufl' for 'HUFL', a spreadsheet's header) is
        pointed out, not left for the client to spot in the list."""
        known = list(self.known_covariates)
        if not known:
            return (
                f"unknown covariate(s) {shown_names(unknown)}; this model was trained without "
                "covariates: leave `covariates` out"
            )
        near = [
            f"{shown(name)} is written {shown(found[0])}"
            for name in unknown
            if (found := [k for k in known if k.strip().casefold() == name.strip().casefold()])
        ]
        hint = f" ({', '.join(near)} there)" if near else ""
        return f"unknown covariate(s) {shown_names(unknown)}; the model knows {known}{hint}"

    @property
    def freq(self) -> str:
        return str(self.meta["freq"])

    @property
    def offset(self) -> BaseOffset:
        return parse_offset(self.freq)

    @property
    def needs_dates(self) -> bool:
        return self.model.config.n_calendar > 0

    @property
    def calendar_clock(self) -> CalendarClock:
        """training.mlflow_model.calendar_clock: "utc" or "local"."""
        return calendar_clock(self.meta)

    def calendar_zone(self, tz: tzinfo | None) -> tzinfo | None:
        """The zone whose wall clock the calendar features read for input in zone `tz`: none
        (UTC, as epoch nanoseconds already are) for a model that learnt UTC hours."""
        return None if self.calendar_clock == CLOCK_UTC else tz

    @property
    def reference(self) -> dict[str, dict[str, Any]]:
        """Training-input histograms per column the network reads (the target and
        `covariates`), for drift (training.mlflow_model). The stored reference has every
        column of the training data: a model that reads no covariates (a linear or naive
        kind) still takes the ones it knows in requests, and their drift was exported and
        alerted on though they change no forecast."""
        ref = self.meta.get("reference", {})
        if not isinstance(ref, dict):
            return {}
        read = {self.target, *self.covariates}
        return {name: stats for name, stats in ref.items() if name in read}

    @property
    def realised_reference(self) -> dict[str, float] | None:
        """The realised MASE by lead its backtest scored in the service's own units
        (training.realised_reference); None for a model trained before config.json had it
        (or one whose key is not of that shape): the above-backtest alert is off for it."""
        return reference_mase(self.meta)

    @property
    def global_scales(self) -> ColumnScales | None:
        """The statistics every series is scaled with, when the scaler is global; else None."""
        if self.predictor.scaler.scope == "global":
            return self.scales.get(GLOBAL)
        return None

    def scales_for(self, series_id: str) -> ColumnScales | None:
        """Scaler statistics for a series (ForecastPredictor._scaler_id's rule); None: unknown."""
        shared = self.global_scales
        if shared is not None:
            return shared
        if series_id in self.scales:
            return self.scales[series_id]
        if series_id_text(series_id) in self.scales:  # '1.0' is the loader's '1'
            return self.scales[series_id_text(series_id)]
        if (key := matching_id(self.scales, series_id)) is not None:  # a model's from before
            return self.scales[key]
        if len(self.scales) == 1:  # a per-series scaler of one series: use its stats
            return next(iter(self.scales.values()))
        return None

    # --- the forward ----------------------------------------------------------------------

    def forward(
        self,
        target: np.ndarray,
        covariates: np.ndarray | None,
        past_calendar: np.ndarray | None,
        future_calendar: np.ndarray | None,
    ) -> np.ndarray:
        """Scaled inputs (B, L), (B, L, C), (B, L, K), (B, H, K) float32 -> (B, H, Q) float32
        quantiles, still scaled (`service.runner.unscale` takes them to float64 units). Runs
        on `self.device`; never stores anything on the model. As few torch calls as it can:
        each one hands the interpreter lock back (see service.runner)."""
        graphed = self.graphed
        if graphed is not None and len(target) <= graphed.max_batch:  # copies in and out
            return graphed(
                torch.from_numpy(target),
                None if covariates is None else torch.from_numpy(covariates),
                None if past_calendar is None else torch.from_numpy(past_calendar),
                None if future_calendar is None else torch.from_numpy(future_calendar),
            ).numpy()
        with torch.inference_mode():
            out = (self.traced or self.model)(
                self._tensor(target),
                None if covariates is None else self._tensor(covariates),
                None if past_calendar is None else self._tensor(past_calendar),
                None if future_calendar is None else self._tensor(future_calendar),
            )
            if out.device.type != "cpu":
                out = out.cpu()
            result: np.ndarray = out.numpy()
            return result

    def warm_up(self) -> None:
        """One dummy forward: builds lazy kernels (and the compiled recurrence) before traffic,
        and refuses a version whose forecast is not finite. The history is a wave, not flat: a
        flat look-back is forecast as its level without the network's output (instance
        normalisation), so zeros let a version with NaN weights through."""
        c = self.model.config
        covariates = np.zeros((1, c.lookback, len(self.covariates)), np.float32)
        wave = np.sin(np.arange(c.lookback, dtype=np.float32) / 3.0)[None, :]
        calendar = np.zeros((1, c.lookback, c.n_calendar), np.float32)
        future = np.zeros((1, c.horizon, c.n_calendar), np.float32)
        out = self.forward(
            wave,
            covariates if self.covariates else None,
            calendar if c.n_calendar else None,
            future if c.n_calendar else None,
        )
        # Said apart: "gave shape (1, 12, 3) or non-finite values" named the expected shape
        # when the values were NaN, and left the operator to guess which of the two it was.
        expected = (1, c.horizon, len(c.quantiles))
        if out.shape != expected:
            raise RuntimeError(
                f"warm-up forward gave shape {out.shape}, where its config "
                f"(horizon {c.horizon}, {len(c.quantiles)} quantiles) gives {expected}"
            )
        bad = int(out.size - np.isfinite(out).sum())
        if bad:
            raise RuntimeError(
                f"warm-up forward gave {bad:,} of {out.size:,} values NaN or infinite for a "
                "finite history: its weights are not finite, or overflow"
            )

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type != "cpu":
            tensor = tensor.to(self.device, non_blocking=True)
        return tensor

    def _scale_tables(self) -> dict[str, ColumnScales]:
        scaler = self.predictor.scaler
        out = {}
        for key, by_column in scaler.stats.items():
            if self.target not in by_column:
                raise ValueError(f"the scaler has no statistics for the target {self.target!r}")
            missing = [c for c in self.covariates if c not in by_column]
            if missing:
                raise ValueError(f"the scaler has no statistics for covariate(s) {missing}")
            target = by_column[self.target]
            out[key] = ColumnScales(
                target_mean=float(target.mean),
                target_scale=float(target.scale),
                covariate_mean=np.array([by_column[c].mean for c in self.covariates]),
                covariate_scale=np.array([by_column[c].scale for c in self.covariates]),
            )
        return out


def pick_device(requested: str) -> torch.device:
    """URNN_DEVICE: `auto` is cuda when available, else cpu; `cuda` without a GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("URNN_DEVICE=cuda but CUDA is not available here; use auto or cpu")
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@functools.lru_cache(maxsize=256)
def parse_offset(alias: str) -> BaseOffset:
    """The offset of a pandas alias (cached: requests repeat a handful of spellings)."""
    return pd.tseries.frequencies.to_offset(alias)


@functools.lru_cache(maxsize=256)
def freq_problem(alias: str, model_freq: str) -> str | None:
    """Why a request's `freq` cannot be used with a model trained at `model_freq`, or None."""
    try:
        offset = checked_offset(alias)
    except OffsetRangeError as error:
        return str(error)
    except ValueError:
        hint = renamed_alias_hint(alias)
        example = " (e.g. 'h', '15min', 'D')"
        return f"{shown(alias)} is not a pandas offset alias{hint or example}"
    if offset != parse_offset(model_freq) and week_anchor(alias, model_freq) is None:
        own = repr(model_freq)  # 'h' == '60min'
        return (
            f"{shown(alias)} is not the model's frequency {own}; give {own} (or leave `freq` "
            "out: it defaults to the model's) if the history is at that frequency, else "
            f"resample it to {own} (the model forecasts {own} steps from a history at {own})"
        )
    return None

"""Out-of-sample coverage of the calibrated 80 % interval: train on a history ending at a cut-off,
then score rolling forecasts (an origin every row) over the weeks after it, week by week, beside
the model's own validation and test (backtest) coverage at training time.

    python -m bench.coverage_walk --datasets dayton,pjmw,comed --cutoffs 2016-10-15,2016-04-15

Small settings for speed by default (the PJM walk's): look-back 168, horizon 24, hidden 32, at
most `--epochs` epochs of `--batches` batches (`--lookback 336 --horizon 96 --hidden 0 --epochs
100 --batches 0`: `urnn train`'s defaults); `urnn train`'s split (fractions 70 / 10 / 20 % of a
one-year history), quantiles 0.1 / 0.5 / 0.9, calibrated on val as `urnn train` does.

`--calibrations aci:GAMMA,rolling:N` score the val-calibrated forecasts with their interval
widened or narrowed online after the cut-off, from the forecasts already resolved when each one
is issued (`adaptive_multipliers`; `--resolve step|horizon` says when a step counts as
resolved): what a service could do with the realised errors it observes; `rolling1:N` is the
rule `URNN_ADAPTIVE_INTERVALS=rolling` serves (its window starts as N scores of 1). On a whole
file (`taylor`, `etth1`) they move the test span's forecasts, as a deployment right after val.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset

from models.forecaster import Forecaster, ForecasterConfig
from training.data import LoadConfig
from training.fit import FitConfig, fit, predict, window_targets
from training.pipeline import TrainConfig, prepare_training
from training.windows import WindowDataset

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
CALIBRATIONS = (
    "val",
    "val-pooled",
    "train+val",
    "none",
    "crossfit",
)  # which windows fit the gap multipliers


@dataclass(frozen=True)
class Source:
    path: str
    time: str | tuple[str, str]
    target: str
    load: dict[str, object]


SOURCES = {
    "dayton": Source("PJM_hourly/DAYTON_hourly.csv", "Datetime", "DAYTON_MW", {}),
    "pjmw": Source("PJM_hourly/PJMW_hourly.csv", "Datetime", "PJMW_MW", {}),
    "comed": Source("PJM_hourly/COMED_hourly.csv", "Datetime", "COMED_MW", {}),
    "bike": Source(
        "Bike-Sharing-Dataset/hour.csv",
        ("dteday", "hr"),
        "cnt",
        {"timestamp_col": ("dteday", "hr"), "timestamp_format": "%Y-%m-%d %H", "max_gap": 36},
    ),
    "taylor": Source("pmdarima_taylor/taylor.csv", "", "demand_mw", {}),
    "etth1": Source("ETT-small/ETTh1.csv", "", "OT", {}),
}


def timestamps(frame: pd.DataFrame, source: Source) -> pd.Series:
    if isinstance(source.time, tuple):
        day, hour = source.time
        return pd.to_datetime(frame[day]) + pd.to_timedelta(frame[hour], unit="h")
    return pd.to_datetime(frame[source.time])


def cut(data: Path, source: Source, cutoff: pd.Timestamp, days: int, out: Path) -> Path:
    """The rows of the `days` before `cutoff` (inclusive), written as the user's file."""
    frame = pd.read_csv(data / source.path)
    when = timestamps(frame, source)
    keep = (when > cutoff - pd.Timedelta(days=days)) & (when <= cutoff)
    path = out / f"{source.target}_{cutoff:%Y%m%d}_{days}.csv"
    frame[keep.to_numpy()].to_csv(path, index=False)
    return path


def coverage_width(q: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[float, float, int]:
    inside = ((y >= q[..., 0]) & (y <= q[..., -1])).double()
    width = (q[..., -1] - q[..., 0]).double() * scale
    return float(inside.mean()), float(width.mean()), int(y.shape[0])


def weekly(
    q: torch.Tensor, y: torch.Tensor, origins: pd.DatetimeIndex, scale: float
) -> list[tuple[str, float, float, int]]:
    weeks = ((origins - origins[0]) // pd.Timedelta(days=7)).to_numpy()
    rows = []
    for w in np.unique(weeks):
        sel = torch.from_numpy(weeks == w)
        c, wd, n = coverage_width(q[sel], y[sel], scale)
        rows.append((f"{origins[weeks == w][0]:%Y-%m-%d}", c, wd, n))
    return rows


def run(name: str, cutoff: str, args: argparse.Namespace, tmp: Path) -> None:
    source = SOURCES[name]
    load = LoadConfig(target=source.target, **source.load)  # type: ignore[arg-type]
    hidden = {"hidden_size": args.hidden} if args.hidden else {}  # 0: the kind's default
    model = ForecasterConfig(kind=args.kind, lookback=args.lookback, horizon=args.horizon, **hidden)
    fit_config = FitConfig(
        max_epochs=args.epochs, max_train_batches=args.batches or None, device="cpu", seed=args.seed
    )
    if name in ("taylor", "etth1"):  # the whole file: its val and test spans only
        history = args.data_dir / source.path
        future = None
    else:
        end = pd.Timestamp(cutoff)
        history = cut(args.data_dir, source, end, args.history_days, tmp)
        future = cut(
            args.data_dir, source, end + pd.Timedelta(weeks=args.weeks), args.weeks * 7 + 14, tmp
        )
    config = TrainConfig(data=str(history), load=load, model=model, fit=fit_config)
    prepared = prepare_training(config)
    result = fit(prepared.model_config, prepared.sets.train, prepared.sets.val, fit_config,
                 progress=False)  # fmt: skip
    net = result.model
    (sid,) = prepared.data.series
    stats = prepared.scaler.stats
    col = next(iter(stats.values()))[source.target]
    scale = float(getattr(col, "scale", getattr(col, "std", 1.0)))
    label = f"{name} {cutoff if future else 'whole file'}"
    later: WindowDataset | None = None
    origins = pd.DatetimeIndex([])
    if future is not None:
        frame = prepare_training(replace(config, data=str(future))).data.series
        # the trained model's scaler on the later rows; the first lookback rows are context
        scaled = prepared.scaler.transform(sid, next(iter(frame.values())))
        start = (
            pd.Timestamp(cutoff) - pd.Timedelta(to_offset(prepared.data.freq).nanos) * args.lookback
        )
        context = scaled[scaled.index > start]
        later = WindowDataset.from_frames(
            {sid: context}, lookback=args.lookback, horizon=args.horizon
        )
        origins = pd.DatetimeIndex(context.index[later.starts.numpy() + args.lookback])
    folds: tuple[torch.Tensor, torch.Tensor] | None = None
    if "crossfit" in args.calibrations.split(","):
        folds = crossfit_forecasts(prepared.model_config, prepared.sets.train, prepared.sets.val,
                                   fit_config, args.folds, args.fold_block)  # fmt: skip
    for how in args.calibrations.split(","):
        adaptive = adaptive_method(how, args)
        calibrate(net, prepared.sets.train, prepared.sets.val, "val" if adaptive else how, folds)
        cells = [label, how]
        for ds in (prepared.sets.val, prepared.sets.test):
            c, w, _ = coverage_width(predict(net, ds), targets(ds), scale)
            cells += ["", ""] if adaptive else [f"{c:.3f}", f"{w:,.4g}"]  # starts from val's
        if later is None:
            if adaptive:  # a whole file: the test span is the deployment after val
                test = prepared.sets.test
                q = adapted(net, prepared.sets.val, test, adaptive, args)
                c, w, _ = coverage_width(q, targets(test), scale)
                cells[-2:] = [f"{c:.3f}", f"{w:,.4g}"]
            print(" | ".join(cells) + " | | | |", flush=True)
            continue
        y = targets(later)
        # adaptive: the val-calibrated forecasts, widened online from resolved ones only
        q = (
            predict(net, later)
            if not adaptive
            else adapted(net, prepared.sets.val, later, adaptive, args)
        )
        weeks = weekly(q, y, origins, scale)
        if args.weekly:
            for week, c, w, n in weeks:
                print(f"{label} | {how} | week of {week} | {c:.3f} | {w:,.1f} | {n}")
        c, w, n = coverage_width(q, y, scale)
        spread = [round(row[1], 2) for row in weeks]
        cells += [f"{c:.3f}", f"{w:,.4g}", f"{min(spread):.2f}-{max(spread):.2f}"]
        print(" | ".join(cells), flush=True)
        if args.steps:
            inside = ((y >= q[..., 0]) & (y <= q[..., -1])).double().mean(dim=0)  # (H,)
            at = sorted({1, args.horizon // 4, args.horizon // 2, args.horizon})
            said = ", ".join(f"step {s}: {float(inside[s - 1]):.3f}" for s in at)
            print(f"{label} | {how} | after, by horizon step | {said}")


def adapted(
    net: Forecaster,
    val: WindowDataset,
    later: WindowDataset,
    adaptive: tuple[str, float, int],
    args: argparse.Namespace,
) -> torch.Tensor:
    """The val-calibrated forecasts of `later`'s windows (in time order), each widened by the
    adaptive rule from the scores of the forecasts resolved before it only."""
    q, y = predict(net, later), targets(later)
    m = net.config.median_index
    multipliers = adaptive_multipliers(
        interval_scores(q, y, m).numpy(),
        later.starts.numpy(),
        interval_scores(predict(net, val), targets(val), m).numpy(),
        adaptive[0],
        gamma=adaptive[1],
        window=adaptive[2],
        resolve=args.resolve,
    )
    return widen(q, torch.from_numpy(multipliers), m)


def targets(ds: WindowDataset) -> torch.Tensor:
    """Every window's target rows (N, H), as the calibration in training reads them."""
    return window_targets(ds, batch_size=512)


def subset(ds: WindowDataset, keep: torch.Tensor) -> WindowDataset:
    """The windows of `ds` where `keep` (N,) is True, over the same stored rows."""
    return WindowDataset(
        ds.values,
        ds.calendar,
        ds.entries,
        ds.starts[keep],
        ds.window_entry[keep],
        lookback=ds.lookback,
        horizon=ds.horizon,
        filled=ds.filled,
    )


def crossfit_forecasts(
    config: ForecasterConfig,
    train: WindowDataset,
    val: WindowDataset,
    fit_config: FitConfig,
    k: int,
    block: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-sample uncalibrated forecasts of every train window: the train windows cut into
    runs of `block` windows dealt round-robin to `k` folds (each fold's model then still sees
    every season), each forecast by a model fitted on the other folds' windows, early-stopped
    on val. Windows within `horizon` of a held-out run are left out of that fit: their targets
    would share rows with the held-out targets."""
    n = len(train)
    index = torch.arange(n)
    fold_of = (index // block) % k
    preds, ys = [], []
    for f in range(k):
        held = fold_of == f
        near = torch.zeros(n, dtype=torch.bool)
        for shift in range(-train.horizon + 1, train.horizon):
            near |= held.roll(shift)  # roll wraps around: a few windows more left out
        quiet = replace(fit_config, calibrate_intervals=False)
        model = fit(config, subset(train, ~near), val, quiet, progress=False).model
        out = subset(train, held)
        preds.append(predict(model, out))
        ys.append(targets(out))
    return torch.cat(preds), torch.cat(ys)


def calibrate(
    net: Forecaster,
    train: WindowDataset,
    val: WindowDataset,
    how: str,
    folds: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Refit the gap multipliers from the uncalibrated forecasts of the windows `how` names:
    "val" (what `urnn train` does: per horizon step), "val-pooled" (one multiplier per gap for
    every step), "train+val" (a year of windows, every season), "none" (the raw pinball fit),
    "crossfit" (the train windows forecast out of sample by `crossfit_forecasts`, and val)."""
    net.gap_scale.fill_(1.0)
    if how == "none":
        return
    if how == "crossfit":  # the folds' out-of-sample train forecasts, then this model's val
        assert folds is not None
        net.calibrate_gaps(
            torch.cat([folds[0], predict(net, val)]), torch.cat([folds[1], targets(val)])
        )
        return
    parts = [val] if how.startswith("val") else [train, val]
    pred = torch.cat([predict(net, ds) for ds in parts])
    pooled = {"min_windows": sys.maxsize} if how == "val-pooled" else {}
    net.calibrate_gaps(pred, torch.cat([targets(ds) for ds in parts]), **pooled)


# --- Online adaptive width after deployment (ACI, rolling recalibration) -----------------------
#
# The served model keeps its val-calibrated quantiles; what adapts is one multiplier m per
# horizon step on both of the interval's sides about the median, [med - m (med - lo), med + m (hi
# - med)] (m = 1: the val-calibrated interval). A forecast's score at a step is the smallest m
# that would have covered its actual, so "covered at m" is "score <= m" and m follows from a
# quantile of earlier scores. The state sees a forecast's score at step h only once that step
# is observed: forecast i (target rows start at `pos[i] + lookback`) is resolved at step h when
# a later forecast j is issued with pos[i] + h <= pos[j] ("step": what service/realised.py can
# score once a later history covers it), or only once its whole horizon is observed ("horizon").

ADAPTIVE = ("aci", "rolling", "rolling1")  # "aci:GAMMA", "rolling:N" pick the step size / window
M_MAX = 20.0  # the multiplier's cap (GAP_SCALE_MAX): ACI's alpha_t <= 0 is an infinite interval


def interval_scores(q: torch.Tensor, y: torch.Tensor, median_index: int) -> torch.Tensor:
    """(N, H, Q) forecasts, (N, H) actuals -> (N, H) scores: the smallest multiplier of both
    outer gaps about the median whose interval holds the actual. A zero gap (a flat look-back's
    forecast) covers only its own value: score 0 there, else infinite."""
    q, y = q.double(), y.double()
    med = q[..., median_index]
    below, above = med - q[..., 0], q[..., -1] - med
    low = torch.where(below > 0, (med - y) / below.clamp_min(1e-300), (y < med) * torch.inf)
    high = torch.where(above > 0, (y - med) / above.clamp_min(1e-300), (y > med) * torch.inf)
    return torch.maximum(low.nan_to_num(0.0), high.nan_to_num(0.0)).clamp_min(0.0)


def widen(q: torch.Tensor, m: torch.Tensor, median_index: int) -> torch.Tensor:
    """The forecasts `q` (N, H, Q) with their outermost quantiles moved to m (N, H) times their
    distance from the median (what the adaptive state serves)."""
    med = q[..., median_index]
    out = q.clone().double()
    out[..., 0] = med - m * (med - q[..., 0])
    out[..., -1] = med + m * (q[..., -1] - med)
    return out


def conformal_quantile(sorted_scores: np.ndarray, miss: float) -> float:
    """The split-conformal multiplier for miscoverage `miss` from n ascending scores: the
    ceil((n + 1)(1 - miss))-th smallest, M_MAX past the largest, 0 for miss >= 1."""
    n = len(sorted_scores)
    k = int(np.ceil((n + 1) * (1.0 - miss)))
    if k > n:
        return M_MAX
    return 0.0 if k <= 0 else min(float(sorted_scores[k - 1]), M_MAX)


def resolved_counts(pos: np.ndarray, delay: int) -> np.ndarray:
    """(T,) for each forecast j in issue order: how many earlier forecasts i have their step
    `delay` rows out observed by the history forecast j is issued from (pos[i] + delay <=
    pos[j]; pos are the windows' start rows, increasing)."""
    return np.searchsorted(pos + delay, pos, side="right")


def adaptive_multipliers(
    scores: np.ndarray,
    pos: np.ndarray,
    val_scores: np.ndarray,
    method: str,
    *,
    level: float = 0.8,
    gamma: float = 0.005,
    window: int = 336,
    resolve: str = "step",
) -> np.ndarray:
    """(T, H) the multiplier each forecast is issued with, per horizon step, from the scores
    (T, H) of forecasts resolved before it only (see `resolved_counts`) and the val windows'
    scores (V, H) of the deployed model, each step's state on its own.

    "aci": Adaptive Conformal Inference (Gibbs & Candes, NeurIPS 2021): alpha_{t+1} = alpha_t +
    gamma (alpha - err_t), err_t = 1 when a resolved forecast's actual fell outside the interval
    it was issued with; m = the conformal quantile of the val scores at 1 - alpha_t. Several
    forecasts resolving at once update in issue order. "rolling": m = the conformal quantile at
    `level` of the last `window` resolved scores, topped up with the latest val scores while
    fewer have resolved; "rolling1": the same topped up with scores of 1 (m = 1, the
    val-calibrated interval, until enough scores say otherwise: service/adaptive.py)."""
    t_count, horizon = scores.shape
    miss = 1.0 - level
    out = np.empty((t_count, horizon))
    for h in range(horizon):
        delay = h + 1 if resolve == "step" else horizon
        done = resolved_counts(pos, delay)
        cal = np.sort(val_scores[:, h])
        if method == "aci":
            alpha, seen = miss, 0
            for j in range(t_count):
                for i in range(seen, done[j]):  # resolved since the last forecast, in order
                    alpha += gamma * (miss - float(scores[i, h] > out[i, h]))
                seen = done[j]
                out[j, h] = conformal_quantile(cal, alpha)
        elif method in ("rolling", "rolling1"):
            # rolling1: the window starts as `window` scores of 1, the val-calibrated interval
            # itself (what the service seeds with: its checkpoints keep no val scores)
            seed = val_scores[:, h] if method == "rolling" else np.ones(window)
            history = np.concatenate([seed, scores[:, h]])
            v = len(seed)
            for j in range(t_count):
                end = v + done[j]
                out[j, h] = conformal_quantile(np.sort(history[max(0, end - window) : end]), miss)
        else:
            raise ValueError(f"method must be one of {ADAPTIVE}; got {method!r}")
    return out


def adaptive_method(how: str, args: argparse.Namespace) -> tuple[str, float, int] | None:
    """("aci", gamma, window) for "aci" / "aci:GAMMA", ("rolling", ., N) for "rolling" /
    "rolling:N" (likewise "rolling1"), None for a calibration of the gap multipliers."""
    name, _, value = how.partition(":")
    if name not in ADAPTIVE:
        return None
    gamma = float(value) if name == "aci" and value else args.gamma
    window = int(value) if name.startswith("rolling") and value else args.window
    return name, gamma, window


def valid_calibration(how: str) -> bool:
    """A calibration name, an adaptive one, or "aci:GAMMA" (0..1) / "rolling:N" (N > 0)."""
    name, sep, value = how.partition(":")
    if not sep:
        return how in CALIBRATIONS or how in ADAPTIVE
    try:
        if name == "aci":
            return 0 <= float(value) <= 1
        return name in ("rolling", "rolling1") and int(value) > 0
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="dayton,pjmw,comed")
    parser.add_argument("--cutoffs", default="2016-10-15,2016-04-15")
    parser.add_argument("--kind", default="urnn")
    parser.add_argument("--lookback", type=int, default=168)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=32, help="0: the kind's default")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=60, help="0: every window, each epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weeks", type=int, default=10)
    parser.add_argument("--history-days", type=int, default=365)
    parser.add_argument("--calibrations", default="val,train+val")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--steps", action="store_true", help="after-span coverage by step")
    parser.add_argument("--folds", type=int, default=4, help="crossfit: folds of train windows")
    parser.add_argument("--fold-block", type=int, default=336, help="crossfit: windows a run")
    parser.add_argument("--gamma", type=float, default=0.005, help="aci: the step size")
    parser.add_argument("--window", type=int, default=336, help="rolling: resolved forecasts")
    parser.add_argument(
        "--resolve",
        choices=("step", "horizon"),
        default="step",
        help="adaptive: a forecast's step feeds the state once observed, or its whole horizon",
    )
    parser.add_argument("--weekly", action="store_true", help="a row per week after the cut-off")
    args = parser.parse_args()
    unknown = [n for n in args.datasets.split(",") if n not in SOURCES]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; known: {', '.join(SOURCES)}")
    odd = [c for c in args.calibrations.split(",") if not valid_calibration(c)]
    if odd:
        known = ", ".join(
            (*CALIBRATIONS, "aci[:GAMMA in 0..1]", "rolling[:N > 0]", "rolling1[:N > 0]")
        )
        parser.error(f"unknown calibration(s) {odd}; known: {known}")
    torch.set_num_threads(1)
    print(
        "| series, cut-off | calibrated on | val cov | val width | test cov | test width "
        "| after cov | after width | after, weekly cov |"
    )
    print("|---|---|" + "---:|" * 7)
    with tempfile.TemporaryDirectory(prefix="urnn-coverage-") as tmp:
        for name in args.datasets.split(","):
            for cutoff in args.cutoffs.split(","):
                run(name, cutoff, args, Path(tmp))


if __name__ == "__main__":
    main()

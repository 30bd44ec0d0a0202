"""Choose the ETT benchmark's defaults on the validation split only; the test span is never read.

    python -m bench.ett_tune --datasets ETTh1,ETTh2 --horizons 96,336 --variants base,skip \
        --output runs/tune/h.jsonl
    python -m bench.ett_tune --setting M --lookback 720 --datasets ETTh1 --horizons 96 \
        --variants base,pmf,pmf-ch --output runs/tune/m.jsonl

Each variant is a set of overrides of `training.ett_benchmark.EttBenchmarkConfig` (model and
fit fields). For every (dataset, horizon, variant) the model is fitted on the train windows,
early-stopped on the val windows, and its best-epoch val MSE / MAE (z-scale) is appended as one
JSON line. `--setting`, `--lookback` and `--seed` set those fields for every variant (a variant
that sets them too must agree). Only the train and val windows are ever fed to a model. Pick the
variant with the best mean val rank over datasets and horizons; report test figures once, with
`urnn benchmark ett`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from training.ett_benchmark import EttBenchmarkConfig, dataset_path, load_ett, resolve_data_dir
from training.fit import fit
from training.split import StandardScaler, split_data
from training.windows import make_windows, window_config_for

# name -> overrides of EttBenchmarkConfig. Keep names stable: results files refer to them.
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},  # the benchmark defaults (the uRNN: decoder "auto", chosen on val per run)
    "direct": {"decoder": "direct"},  # the control for the pmf and auto variants
    "direct-h128": {"decoder": "direct", "hidden_size": 128},
    "pmf-h128": {"decoder": "pmf", "hidden_size": 128},
    "auto": {"decoder": "auto"},
    "skip": {"linear_skip": True},
    "l720": {"lookback": 720},
    "l720-skip": {"lookback": 720, "linear_skip": True},
    "l1440-skip": {"lookback": 1440, "linear_skip": True},
    "l720-h128": {"lookback": 720, "hidden_size": 128},
    "l720-h32": {"lookback": 720, "hidden_size": 32},
    "l720-seg48": {"lookback": 720, "segment_length": 48},
    "l720-seg12": {"lookback": 720, "segment_length": 12},
    "l720-inst": {"lookback": 720, "normalisation": "instance"},
    "l720-drop": {"lookback": 720, "dropout": 0.3},
    "l720-lr3e-4": {"lookback": 720, "lr": 3e-4, "patience": 5},
    "l720-bs256": {"lookback": 720, "batch_size": 256, "lr": 3e-3},
    "l720-wd": {"lookback": 720, "weight_decay": 0.05},
    "l720-mse": {"lookback": 720, "mse_weight": 10.0},
    "drop": {"dropout": 0.3},
    "l720-drop-h32": {"lookback": 720, "dropout": 0.3, "hidden_size": 32},
    "l720-drop-skip": {"lookback": 720, "dropout": 0.3, "linear_skip": True},
    "l720-drop5": {"lookback": 720, "dropout": 0.5},
    "l720-drop-wd": {"lookback": 720, "dropout": 0.3, "weight_decay": 0.05},
    # Multivariate (channel-independent), look-back 720 as in the SegRNN comparison.
    "M": {"setting": "M"},
    "M-lr3e-4": {"setting": "M", "lr": 3e-4},
    "M-h128": {"setting": "M", "hidden_size": 128},
    "M-seg48": {"setting": "M", "segment_length": 48},
    "M-drop5": {"setting": "M", "dropout": 0.5},
    "M-bs256": {"setting": "M", "batch_size": 256},
    "M-seg48-lr3e-4": {"setting": "M", "segment_length": 48, "lr": 3e-4},
    "M-seg48-drop5": {"setting": "M", "segment_length": 48, "dropout": 0.5},
    # SegRNN's missing pieces (ForecasterConfig.decoder / n_channels); use with --setting M.
    "pmf": {"decoder": "pmf"},
    "pmf-ch": {"decoder": "pmf", "channel_embedding": True},
    "pmf-ch-drop5": {"decoder": "pmf", "channel_embedding": True, "dropout": 0.5},
    "pmf-ch-l1": {"decoder": "pmf", "channel_embedding": True, "mse_weight": 0.0},
    "l1": {"mse_weight": 0.0},  # the control for the *-l1 variants: pinball loss alone
    "pmf-l1": {"decoder": "pmf", "mse_weight": 0.0},
    "pmf-ch-drop5-l1": {
        "decoder": "pmf",
        "channel_embedding": True,
        "dropout": 0.5,
        "mse_weight": 0.0,
    },
    # RevIN-style per-window mean/std (SegRNN's default, revin=1) instead of NLinear's "last"
    "inst": {"decoder": "direct", "normalisation": "instance"},
    "pmf-inst": {"decoder": "pmf", "normalisation": "instance"},
    "pmf-seg24": {"decoder": "pmf", "segment_length": 24},  # SegRNN's segment length
    # fewer, longer segments (look-back 720: 10 or 5 recurrent steps)
    "seg72": {"decoder": "direct", "segment_length": 72},
    "seg144": {"decoder": "direct", "segment_length": 144},
    "pmf-seg72": {"decoder": "pmf", "segment_length": 72},
    # shorter segments: more recurrent steps for the unitary memory to carry (look-back 336:
    # 28, 56 or 112 steps)
    "seg12": {"decoder": "direct", "segment_length": 12},
    "seg6": {"decoder": "direct", "segment_length": 6},
    "seg3": {"decoder": "direct", "segment_length": 3},
    "l720-seg6": {"decoder": "direct", "lookback": 720, "segment_length": 6},
    "pmf-lr3e-4": {"decoder": "pmf", "lr": 3e-4, "patience": 5},  # SegRNN's lr and patience
    "pmf-h32": {"decoder": "pmf", "hidden_size": 32},
    "pmf-wd": {"decoder": "pmf", "weight_decay": 0.05},
    "h32": {"hidden_size": 32},
    "pmf-ch-h256": {"decoder": "pmf", "channel_embedding": True, "hidden_size": 256},
    "pmf-ch-h256-drop5": {
        "decoder": "pmf",
        "channel_embedding": True,
        "hidden_size": 256,
        "dropout": 0.5,
    },
    "pmf-ch-h512-drop5": {
        "decoder": "pmf",
        "channel_embedding": True,
        "hidden_size": 512,
        "dropout": 0.5,
    },
    # SegRNN's training recipe as far as our fit loop has it (pinball = L1 / 2 for the median).
    "pmf-ch-segrnn": {
        "decoder": "pmf",
        "channel_embedding": True,
        "hidden_size": 512,
        "dropout": 0.5,
        "batch_size": 256,
        "mse_weight": 0.0,
        "max_epochs": 30,
        "patience": 10,
    },
    # A val check every N train batches instead of once a pass: on M the uRNN and SegRNN's own
    # recipe score best after their first pass (~860 batches), so the best point may lie inside it.
    "direct-check100": {"decoder": "direct", "train_batches_per_epoch": 100},
    "direct-check250": {"decoder": "direct", "train_batches_per_epoch": 250},
    "pmf-check100": {"decoder": "pmf", "train_batches_per_epoch": 100},
    "pmf-check250": {"decoder": "pmf", "train_batches_per_epoch": 250},
    "direct-check100-e60": {"decoder": "direct", "train_batches_per_epoch": 100, "max_epochs": 60},
    "pmf-check100-e60": {"decoder": "pmf", "train_batches_per_epoch": 100, "max_epochs": 60},
    # calendar features (hour of day, day of week, day of year) for look-back and horizon
    "direct-cal": {"decoder": "direct", "calendar": True},
    "pmf-cal": {"decoder": "pmf", "calendar": True},
    "direct-nocal": {"decoder": "direct", "calendar": False},
    "direct-skip": {"decoder": "direct", "linear_skip": True},
    "pmf-skip": {"decoder": "pmf", "linear_skip": True},
}


class TuneError(ValueError):
    """Options that contradict each other (a variant against --setting / --lookback)."""


def merged_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The command line's fields (`base`) with a variant's overrides on top; a field set by both
    must agree."""
    clash = {k: (v, overrides[k]) for k, v in base.items() if k in overrides and overrides[k] != v}
    if clash:
        detail = ", ".join(f"{k}: command line {a!r}, variant {b!r}" for k, (a, b) in clash.items())
        raise TuneError(f"the variant contradicts the command line ({detail})")
    return {**base, **overrides}


def run_variant(
    dataset: str,
    horizon: int,
    model: str,
    name: str,
    overrides: dict[str, Any],
    data_dir: str | None,
) -> dict[str, Any]:
    config = dataclasses.replace(
        EttBenchmarkConfig(datasets=(dataset,), horizons=(horizon,), models=("urnn",)),
        data_dir=data_dir,
        **overrides,
    )
    path = dataset_path(resolve_data_dir(config.data_dir), dataset)
    data = load_ett(path, config.setting, config.resolved_lookback + horizon)
    splits = split_data(data, config.split_config())
    scaler = StandardScaler.fit(splits)
    model_config = config.model_config(model, horizon, data.freq)  # type: ignore[arg-type]
    window = window_config_for(
        model_config, freq=data.freq, channel_independent=config.setting == "M"
    )
    sets = make_windows(splits, scaler, window, freq=data.freq)
    start = time.perf_counter()
    fit_config = config.fit_config_for(model, horizon)  # type: ignore[arg-type]
    result = fit(model_config, sets.train, sets.val, fit_config, progress=False)
    best = result.history[result.best_epoch - 1]
    return {
        "dataset": dataset,
        "setting": config.setting,
        "horizon": horizon,
        "model": model,
        "variant": name,
        "overrides": overrides,
        "lookback": config.resolved_lookback,
        "segment_length": config.resolved_segment_length,
        "val_mse": best.val_mse,
        "val_mae": best.val_mae,
        "decoder": result.model.config.decoder,
        "decoder_scores": result.decoder_scores,
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ETTh1,ETTh2")
    parser.add_argument("--horizons", default="96,192,336,720")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--model", default="urnn")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--setting", choices=("S", "M"), default=None, help="S unless a variant says"
    )
    parser.add_argument("--lookback", type=int, default=None, help="the setting's default if unset")
    parser.add_argument("--seed", type=int, default=None, help="0 unless a variant says")
    parser.add_argument("--output", default="runs/tune/ett.jsonl")
    args = parser.parse_args()
    base: dict[str, Any] = {}
    if args.setting is not None:
        base["setting"] = args.setting
    if args.lookback is not None:
        base["lookback"] = args.lookback
    if args.seed is not None:
        base["seed"] = args.seed
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    try:
        plans = {name: merged_overrides(base, VARIANTS[name]) for name in names}
    except TuneError as error:
        parser.error(str(error))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets.split(","):
        for horizon in (int(h) for h in args.horizons.split(",")):
            for name, overrides in plans.items():
                row = run_variant(dataset, horizon, args.model, name, overrides, args.data_dir)
                print(json.dumps(row), flush=True)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

"""Choose the ETT benchmark's defaults on the validation split only; the test span is never read.

    python -m bench.ett_tune --datasets ETTh1,ETTh2 --horizons 96,336 --variants base,skip \
        --output runs/tune/h.jsonl

Each variant is a set of overrides of `training.ett_benchmark.EttBenchmarkConfig` (model and
fit fields). For every (dataset, horizon, variant) the model is fitted on the train windows,
early-stopped on the val windows, and its best-epoch val MSE / MAE (z-scale) is appended as one
JSON line. Pick the variant with the best mean val rank over datasets and horizons; report test
figures once, with `urnn benchmark ett`.
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
    "base": {},
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
}


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
    result = fit(model_config, sets.train, sets.val, config.fit_config(), progress=False)
    best = result.history[result.best_epoch - 1]
    return {
        "dataset": dataset,
        "setting": config.setting,
        "horizon": horizon,
        "model": model,
        "variant": name,
        "overrides": overrides,
        "val_mse": best.val_mse,
        "val_mae": best.val_mae,
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
    parser.add_argument("--output", default="runs/tune/ett.jsonl")
    args = parser.parse_args()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets.split(","):
        for horizon in (int(h) for h in args.horizons.split(",")):
            for name in args.variants.split(","):
                row = run_variant(dataset, horizon, args.model, name, VARIANTS[name], args.data_dir)
                print(json.dumps(row), flush=True)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

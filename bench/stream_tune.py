"""Choose the streaming uRNN's training defaults on the validation split only; the test span is
never read.

    python -m bench.stream_tune --datasets ETTh1 --horizons 96 --variants base,last \
        --output runs/tune/stream.jsonl

Each variant overrides the ETT benchmark's urnn-stream model config and its FitConfig (the
`stream_*` crop fields included). For every (dataset, horizon, variant) the model is trained on
crops of the train span and early-stopped on the val origins, each forecast read from the
whole history before it (training.stream_fit); the best epoch's val MSE / MAE (z-scale) is
appended as one JSON line. Report test figures once, with
`urnn benchmark ett --models urnn,urnn-stream,linear`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from training.ett_benchmark import EttBenchmarkConfig, dataset_path, load_ett, resolve_data_dir
from training.split import StandardScaler, split_data
from training.stream_fit import fit_stream, stream_series

# name -> ({ForecasterConfig overrides}, {FitConfig overrides}). Keep names stable.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "base": ({}, {}),
    "last": ({"normalisation": "last"}, {}),
    "drop0": ({"dropout": 0.0}, {}),
    "lr3e-3": ({}, {"lr": 3e-3}),
    "lr3e-4": ({}, {"lr": 3e-4, "patience": 5}),
    "crop2048": ({}, {"stream_crop_length": 2048, "stream_batch_crops": 16}),
    "h128": ({"hidden_size": 128}, {}),
    "seg12": ({"segment_length": 12}, {}),
    "mse0": ({}, {"mse_weight": 0.0}),
    "short": ({}, {"stream_crop_length": 1024, "stream_batches_per_epoch": 128}),
    "bpe128": ({}, {"stream_batches_per_epoch": 128}),
    "drop5": ({"dropout": 0.5}, {}),
    "drop5-lr3e-3": ({"dropout": 0.5}, {"lr": 3e-3}),
    "h32": ({"hidden_size": 32}, {}),
    "crop8192": ({}, {"stream_crop_length": 8192, "stream_batch_crops": 4}),
    "c8192-drop5": ({"dropout": 0.5}, {"stream_crop_length": 8192, "stream_batch_crops": 4}),
    "c8192-h32": ({"hidden_size": 32}, {"stream_crop_length": 8192, "stream_batch_crops": 4}),
    "c8192-lr3e-3": ({}, {"stream_crop_length": 8192, "stream_batch_crops": 4, "lr": 3e-3}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="ETTh1")
    parser.add_argument("--horizons", default="96")
    parser.add_argument("--variants", default="base")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--output", default="runs/tune/stream.jsonl")
    args = parser.parse_args(argv)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    base = EttBenchmarkConfig(max_epochs=args.epochs, device="cpu")
    data_dir = resolve_data_dir(None)
    for dataset in args.datasets.split(","):
        for horizon in (int(h) for h in args.horizons.split(",")):
            data = load_ett(dataset_path(data_dir, dataset), "S", base.resolved_lookback + horizon)
            splits = split_data(data, base.split_config())
            scaler = StandardScaler.fit(splits)
            series = stream_series(splits, scaler, channel_independent=False, calendar_freq=None)
            for name in args.variants.split(","):
                model_fields, fit_fields = VARIANTS[name]
                model = dataclasses.replace(
                    base.model_config("urnn-stream", horizon, data.freq), **model_fields
                )
                fit_config = dataclasses.replace(base.fit_config(), **fit_fields)
                start = time.perf_counter()
                result = fit_stream(model, series, fit_config)
                best = result.history[result.best_epoch - 1]
                row = {
                    "dataset": dataset,
                    "horizon": horizon,
                    "variant": name,
                    "val_mse": best.val_mse,
                    "val_mae": best.val_mae,
                    "best_epoch": result.best_epoch,
                    "epochs": len(result.history),
                    "seconds": round(time.perf_counter() - start, 1),
                }
                print(json.dumps(row), flush=True)
                with output.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

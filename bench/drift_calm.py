"""How often the input-drift gauge reads "shifted" on data that did not drift: each data set's
own history, replayed as a service sees it, scored by the two drift spaces side by side.

    python -m bench.drift_calm                    # ETTh1, PJM DAYTON, Bike sharing (~1 min)
    python -m bench.drift_calm --lookback 512 --window 20000

For each data set the reference is built as `urnn train` builds it (training.mlflow_model.
reference_statistics on the first 70 % of the rows, the training span of its default split),
once with the target binned by value (every model registered before the "space" key, and those
that read the level), once as each window less its last value (what a "last"-normalised network
reads, e.g. the demo's and the ETT benchmark's) and once per look-back window ("window":
z-scores of each window's own mean and std, the space of every windowed model that normalises
per window since).
Then hourly requests are replayed, each carrying the last `lookback` values, through the
service's own monitor (service.drift.DriftMonitor, a window of `--window` values per column),
at origins drawn in the training span itself (no drift by construction) and in the rest of the
file (later months). The table gives PSI's median and 90th percentile over the origins and the
share of origins above the alert's threshold, 0.2 (deploy/prometheus/alerts.yml).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from bench.train_defaults import DATASETS as TRAIN_DEFAULTS
from service.drift import DriftMonitor
from service.metrics import ServiceMetrics
from training.data import LoadConfig, load_data
from training.mlflow_model import reference_statistics

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    "etth1": ("ETT-small/ETTh1.csv", LoadConfig(target="OT")),
    "dayton": ("PJM_hourly/DAYTON_hourly.csv", LoadConfig(target="DAYTON_MW")),
    "bike": (TRAIN_DEFAULTS["bike"].path, TRAIN_DEFAULTS["bike"].load),
}
THRESHOLD = 0.2


# What the gauge should and should not see, applied to each request's window (the row of a
# block): not drift for a model that normalises each window, then changes of shape.
Change = Callable[[np.ndarray, np.random.Generator], np.ndarray]
CHANGES: dict[str, Change] = {
    "as recorded": lambda w, rng: w,
    "level and spread changed (x2 + 10)": lambda w, rng: 2 * w + 10,
    "Gaussian noise of the window's own spread added": lambda w, rng: (
        w + rng.normal(0.0, 1.0, w.shape) * w.std(axis=1, keepdims=True)
    ),
    "stuck: the last half of each window at one value": lambda w, rng: np.concatenate(
        [
            w[:, : w.shape[1] // 2],
            np.repeat(
                w[:, w.shape[1] // 2 - 1 : w.shape[1] // 2], w.shape[1] - w.shape[1] // 2, axis=1
            ),
        ],
        axis=1,
    ),
    "spikes: 5 % of values tripled": lambda w, rng: np.where(rng.random(w.shape) < 0.05, 3 * w, w),
    "a square daily wave": lambda w, rng: (
        w.mean(axis=1, keepdims=True)
        + w.std(axis=1, keepdims=True) * np.sign(np.sin(np.arange(w.shape[1]) * 2 * np.pi / 24))
    ),
}


def replay(
    series: np.ndarray,
    reference: dict[str, object],
    origins: np.ndarray,
    lookback: int,
    window: int,
    minus_last: bool = False,
    change: Change | None = None,
) -> np.ndarray:
    """PSI after the requests of the `window // lookback` hours up to each origin."""
    out = []
    requests = max(1, window // lookback)
    for origin in origins:
        registry = CollectorRegistry()
        monitor = DriftMonitor(ServiceMetrics(registry), window=window)
        monitor.reset_for("1", {"y": reference})
        hours = np.arange(origin - requests + 1, origin + 1)
        block = np.stack([series[h - lookback : h] for h in hours])  # (requests, lookback)
        if change is not None:
            block = change(block, np.random.default_rng(int(origin)))
        if minus_last:  # what a "last"-normalised network reads: the window less its last value
            block = block - block[:, -1:]
        monitor.observe("1", {"y": [block]})
        out.append(registry.get_sample_value("urnn_input_drift_psi", {"column": "y"}))
    return np.asarray(out, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument("--window", type=int, default=20_000)
    parser.add_argument("--origins", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"look-back {args.lookback}, drift window {args.window:,} values, {args.origins} "
        f"origins per span; PSI median / 90th percentile / share above {THRESHOLD}"
    )
    changes: list[tuple[str, np.ndarray, np.ndarray, dict[str, object]]] = []
    print("| data | span | by value (before) | less the last value | per window (now) |")
    print("|---|---|---|---|---|")
    for name in args.datasets.split(","):
        path, config = DATASETS[name]
        data = load_data(DATA_DIR / path, config)
        (frame,) = data.series.values()
        y = frame[config.target].to_numpy(dtype=np.float64)
        n_train = int(len(y) * 0.7)
        train = pd.DataFrame({"y": y[:n_train]})
        windowed = reference_statistics([train], window=("y", args.lookback))["y"]
        by_value = reference_statistics([train])["y"]
        windows = np.lib.stride_tricks.sliding_window_view(y[:n_train], args.lookback)[::8]
        less_last = pd.DataFrame({"y": (windows - windows[:, -1:]).reshape(-1)})
        minus_last = reference_statistics([less_last])["y"]
        first = args.lookback + args.window // args.lookback
        spans = {"training span": (first, n_train), "later rows": (n_train + first, len(y))}
        for span, (lo, hi) in spans.items():
            origins = rng.integers(lo, hi, args.origins)
            cells = []
            for reference, less in ((by_value, False), (minus_last, True), (windowed, False)):
                psi = replay(y, reference, origins, args.lookback, args.window, less)
                cells.append(
                    f"{np.median(psi):.3f} / {np.quantile(psi, 0.9):.3f} / "
                    f"{np.mean(psi > THRESHOLD):.0%}"
                )
            print(f"| {name} | {span} | {' | '.join(cells)} |")
        later = rng.integers(n_train + first, len(y), args.origins)
        changes.append((name, later, y, windowed))
    print(
        "\nChanges to each request's window on the later rows, per window (the space now): "
        "PSI median / share above the threshold"
    )
    names = [name for name, *_ in changes]
    print("| change | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, change in CHANGES.items():
        cells = []
        for _, origins, y, windowed in changes:
            psi = replay(y, windowed, origins, args.lookback, args.window, change=change)
            cells.append(f"{np.median(psi):.3f} / {np.mean(psi > THRESHOLD):.0%}")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

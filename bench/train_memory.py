"""Peak memory and time of `urnn train` on a large history file, stage by stage
(`make bench-train`).

    make bench-train                                 # 16 M rows (1.0 GB CSV), ~10 min on 2 cores
    make bench-train ARGS="--rows 4000000"           # a quicker look (~3 min)
    python -m bench.train_memory --baseline-ref none

The log is bench/read_memory.py's (ETTh1's seven columns repeated at one-minute steps, built
once in `--dir`). Each run is `urnn train --data LOG --target OT --model linear --lookback 24
--horizon 24 --epochs 1 --train-stride 1000 --backtest-step 100000 --no-promote --no-progress`
in a fresh Python process with its own URNN_VAR_DIR (MLflow store and registry), once with
this checkout and once with `--baseline-ref` (default: the commit before the interval
calibration fitted one horizon step at a time), extracted by `git archive`.

A thread samples the process's resident memory (/proc/self/statm) every 20 ms, and wrappers
mark the stages: `prepare` (load, split, scale, windows), `fit` (all of it), within it the
validation score of each epoch (`evaluate`, running sums over batches) and the interval
calibration on the val windows (`calibrate`: forecasts of every val window, then the gap
multipliers), then the `backtest`. Per stage: its wall time, the resident memory when it
began and the most seen during it; and the process's peak (ru_maxrss, which the sampling can
miss by a few ms). The run's printed losses and backtest table are compared between the two
trees: they must be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.read_memory import ROOT, baseline_tree, build_files, gb, log_parser
from bench.stage_probe import probe_source, run_probe

# The commit before the interval calibration read one horizon step at a time (2026-12-06).
BASELINE_REF = "8c3db7c"
STAGES = ("prepare", "fit", "evaluate", "calibrate", "backtest")

# The printed epoch losses and backtest table, compared between the trees.
_LINES = """
import re  # the epoch lines without their seconds, which differ from run to run
lines = [
    re.sub(r", [0-9.]+ s", "", l)
    for l in text.getvalue().splitlines() if "val loss" in l or l.startswith("all ")
]
out["lines"] = lines
"""

# What a fresh process runs: urnn train with stage marks and an RSS sampler; one JSON line.
PROBE = probe_source(
    [
        ("training.pipeline", "prepare_training", "prepare"),
        ("training.pipeline", "_fit_model", "fit"),
        ("training.fit", "evaluate", "evaluate"),
        ("training.fit", "calibrate_intervals", "calibrate"),
        ("training.pipeline", "backtest", "backtest"),
    ],
    tail=_LINES,
)


def train_args(path: Path) -> list[str]:
    return [
        "train", "--data", str(path), "--target", "OT", "--model", "linear",
        "--lookback", "24", "--horizon", "24", "--epochs", "1", "--train-stride", "1000",
        "--backtest-step", "100000", "--no-promote", "--no-progress", "--experiment", "bench",
    ]  # fmt: skip


def probe(tree: Path, path: Path) -> dict[str, Any]:
    """One `urnn train` in a fresh process with the code of `tree` and its own store."""
    with tempfile.TemporaryDirectory() as var:
        return run_probe(PROBE, tree, train_args(path), var)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return log_parser("bench.train_memory", __doc__, BASELINE_REF).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    csv_path, _ = build_files(args.dir, args.rows)
    print(f"{args.rows:,} rows: CSV {csv_path.stat().st_size:,} bytes")
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"now": ROOT}
        if args.baseline_ref != "none":
            trees[f"before ({args.baseline_ref})"] = baseline_tree(args.baseline_ref, Path(scratch))
        outputs: dict[str, list[str]] = {}
        for name, tree in trees.items():
            load = os.getloadavg()[0]
            result = probe(tree, csv_path)
            outputs[name] = result["lines"]
            peak = gb(float(result["peak"]))
            print(f"\n{name}: process peak RSS {peak} (load average {load:.1f})")
            print(f"  {'stage':10s} {'wall':>8s} {'RSS at start':>13s} {'peak RSS':>10s}")
            stages = result["stages"]
            for stage in STAGES:
                if stage in stages:
                    s = stages[stage]
                    print(
                        f"  {stage:10s} {s['seconds']:7.1f}s {gb(s['start']):>13s} "
                        f"{gb(s['peak']):>10s}",
                        flush=True,
                    )
        if len(outputs) > 1:
            same = len({json.dumps(lines) for lines in outputs.values()}) == 1
            print(f"\nlosses and backtest printed alike: {'yes' if same else 'NO'}")
            for name, lines in outputs.items():
                print(f"  {name}: " + " | ".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

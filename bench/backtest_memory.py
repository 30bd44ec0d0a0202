"""Peak memory of `urnn train`'s backtest on PJM hourly demand, stage by stage, and the files
it writes, compared between this checkout and a baseline commit.

    python -m bench.backtest_memory                          # DAYTON, then all six regions
    python -m bench.backtest_memory --regions DAYTON --baseline-ref none

Each run is `urnn train --data FILE --target MW --model urnn --lookback 336 --horizon 168
--hidden-size 16 --epochs 1 --train-stride 24 --no-promote --no-progress` with the default
backtest of `urnn train` (split fractions 0.7 / 0.1 / 0.2, `--backtest-step 1`, every origin
that fits: DAYTON 24,088 origins, 4.05 M forecast rows; six regions 19.9 M), in a fresh
Python process with its own URNN_VAR_DIR. FILE is a long-format Parquet (Datetime, region,
MW) built in `--dir` from ../shared/data/PJM_hourly; `--train-stride 24` only thins the
training windows, to keep the fit short (the backtest is the subject).

A thread samples the process's resident memory (/proc/self/statm) every 20 ms, and wrappers
mark the stages: `fit`, then `backtest` and, within it, `predict`, `tidy` (the per-point
forecast table), `tables` (the metric tables), `plots`; then `write` (the metric CSVs,
overall.json and forecasts.parquet). Per stage: the resident memory when it began and the
most seen during it; and the process's peak (ru_maxrss). The files the run logged under
`metrics/` (and the two plots) are compared between the trees: forecasts.parquet value for
value, the others byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.read_memory import ROOT, baseline_tree, gb
from bench.stage_probe import probe_source, run_probe

REGIONS = ("PJME", "PJMW", "DAYTON", "COMED", "FE", "DEOK")
PJM_DIR = ROOT.parent / "shared" / "data" / "PJM_hourly"  # --pjm-dir elsewhere
STAGES = ("fit", "backtest", "predict", "tidy", "tables", "plots", "write")

PROBE = probe_source(
    [
        ("training.pipeline", "_fit_model", "fit"),
        ("training.pipeline", "backtest", "backtest"),
        ("training.backtest", "predict", "predict"),
        ("training.backtest", "tidy_forecasts", "tidy"),
        ("training.backtest", "metric_tables", "tables"),
        ("training.backtest", "save_plots", "plots"),
        ("training.pipeline", "write_backtest_tables", "write"),
    ]
)


def build_file(folder: Path, regions: Sequence[str], source: Path = PJM_DIR) -> Path:
    """The regions' hourly loads as one long Parquet: Datetime, region, MW."""
    path = folder / f"pjm_{'_'.join(regions)}.parquet"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        frames = []
        for region in regions:
            raw = pd.read_csv(source / f"{region}_hourly.csv")
            frames.append(
                pd.DataFrame(
                    {"Datetime": raw["Datetime"], "region": region, "MW": raw[f"{region}_MW"]}
                )
            )
        pd.concat(frames, ignore_index=True).to_parquet(path, index=False)
    return path


def train_args(path: Path) -> list[str]:
    return [
        "train", "--data", str(path), "--target", "MW", "--series-col", "region",
        "--model", "urnn", "--lookback", "336", "--horizon", "168", "--hidden-size", "16",
        "--epochs", "1", "--train-stride", "24", "--no-promote", "--no-progress",
        "--experiment", "bench",
    ]  # fmt: skip


def probe(tree: Path, path: Path, keep: Path) -> dict[str, Any]:
    """One `urnn train` in a fresh process with the code of `tree`; its metrics/ files are
    copied into `keep`."""
    with tempfile.TemporaryDirectory() as var:
        result = run_probe(PROBE, tree, train_args(path), var)
        found = next(Path(var).rglob("metrics/forecasts.parquet"))
        shutil.copytree(found.parent, keep, dirs_exist_ok=True)
        for plot in (found.parent.parent / "plots").glob("*.png"):
            shutil.copy(plot, keep / plot.name)
    return result


def same_files(a: Path, b: Path) -> list[str]:
    """Lines saying which of the two metrics/ folders' files differ (none: [])."""
    out = []
    for path in sorted(a.iterdir()):
        other = b / path.name
        if not other.exists():
            out.append(f"{path.name}: missing")
        elif path.suffix == ".parquet":
            x, y = pd.read_parquet(path), pd.read_parquet(other)
            try:
                pd.testing.assert_frame_equal(x, y, check_exact=True)
            except AssertionError as error:
                out.append(f"{path.name}: {str(error).splitlines()[0]}")
        elif not filecmp.cmp(path, other, shallow=False):
            out.append(f"{path.name}: bytes differ")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.backtest_memory", description=__doc__)
    parser.add_argument("--regions", default="DAYTON;" + ",".join(REGIONS))
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pjm-bench")
    parser.add_argument("--pjm-dir", type=Path, default=PJM_DIR)
    parser.add_argument("--baseline-ref", default="042e887")
    parser.add_argument("--only", choices=("both", "now", "before"), default="both")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        trees = {}
        if args.only in ("both", "now"):
            trees["now"] = ROOT
        if args.baseline_ref != "none" and args.only in ("both", "before"):
            trees[f"before ({args.baseline_ref})"] = baseline_tree(
                args.baseline_ref, Path(scratch) / "tree"
            )
        for group in args.regions.split(";"):
            regions = group.split(",")
            path = build_file(args.dir, regions, args.pjm_dir)
            kept: dict[str, Path] = {}
            for name, tree in trees.items():
                keep = args.dir / f"out-{'_'.join(regions)}-{name.split()[0]}"
                load = os.getloadavg()[0]
                result = probe(tree, path, keep)
                kept[name] = keep
                print(f"\n{','.join(regions)}, {name}: process peak RSS {gb(result['peak'])} "
                      f"(load average {load:.1f})")  # fmt: skip
                print(f"  {'stage':10s} {'wall':>8s} {'RSS at start':>13s} {'peak RSS':>10s}")
                for stage in STAGES:
                    if stage in result["stages"]:
                        s = result["stages"][stage]
                        print(
                            f"  {stage:10s} {s['seconds']:7.1f}s {gb(s['start']):>13s} "
                            f"{gb(s['peak']):>10s}",
                            flush=True,
                        )
            if len(kept) > 1:
                a, b = kept.values()
                differ = same_files(a, b)
                print(
                    "metrics/ files alike: " + ("yes" if not differ else "NO: " + "; ".join(differ))
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Peak memory and time of reading and preparing a large history file (`make bench-read`).

    make bench-read                                  # 16 M rows (a 1.0 GB CSV), ~10 min on 2 cores
    make bench-read ARGS="--rows 2000000"            # a quicker look (~1.5 min)
    python -m bench.read_memory --cases csv-target --baseline-ref none

Builds an equipment log from real data: ETTh1's seven columns (`OT` and the six load
features, as three decimals, as the upstream file writes them) repeated to `--rows` rows of
one-minute timestamps from 1995 (16 M rows: 1,008,766,694 bytes of CSV), in `--dir`, once
(kept for later runs), and its Parquet copy (timestamps as timestamps). Without the shared data
beside the repository, seeded random values of the same shape stand in.

Each case (`--cases`) is `training.data.load_data` of one file for the target `OT` alone or
with the six covariates, run in a fresh Python process (so each peak is its own): the wall time
of the call and the process's peak resident memory (`ru_maxrss`, all allocators: numpy, Python,
Arrow). Each case runs with this checkout's loader ("now") and, in the same run, with the
loader of `--baseline-ref` ("before"; default: the commit before the loader read in chunks),
extracted by `git archive` into a temporary folder; `--baseline-ref none` skips it. The two
are interleaved case by case, so that load from other processes hits both alike.

"used" is what the loaded data holds: a datetime64 timestamp a row and a float64 value and a
filled flag a cell (17 bytes a row for the target alone, 71 with six covariates): the floor
any loader that returns the data needs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_ETT = ROOT.parent / "shared" / "data" / "ETT-small" / "ETTh1.csv"
# The loader before it read in chunks (e5556ed, 2026-12-06).
BASELINE_REF = "e5556ed"
COVARIATES = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL")
CASES = ("csv-target", "csv-covariates", "parquet-target", "parquet-covariates")

# What a fresh process runs: one load_data, its wall time and the process's peak RSS.
PROBE = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from training.data import LoadConfig, load_data
covariates = tuple(c for c in sys.argv[3].split(",") if c)
start = time.perf_counter()
data = load_data(sys.argv[2], LoadConfig(target="OT", covariates=covariates))
seconds = time.perf_counter() - start
rows = sum(len(f) for f in data.series.values())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak": peak, "rows": rows}))
"""


def build_files(folder: Path, rows: int) -> tuple[Path, Path]:
    """The CSV log and its Parquet copy, written once per row count."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"ett_{rows}.csv"
    parquet_path = folder / f"ett_{rows}.parquet"
    names = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    if SHARED_ETT.exists():
        import pandas as pd

        source = pd.read_csv(SHARED_ETT)[list(names)].to_numpy().round(3)
    else:  # the shape of ETTh1, without its values
        source = np.random.default_rng(0).normal(10, 5, size=(17_420, 7)).round(3)
    start = np.datetime64("1995-01-01T00:00:00", "s")
    schema = pa.schema([("date", pa.timestamp("s"))] + [(n, pa.float64()) for n in names])
    if not csv_path.exists():
        print(f"writing {csv_path} ({rows:,} rows) ...", flush=True)
        partial = csv_path.with_suffix(".part")
        options = pacsv.WriteOptions(include_header=True, quoting_style="none")
        with pacsv.CSVWriter(str(partial), schema, write_options=options) as writer:
            for at in range(0, rows, 1_000_000):
                index = np.arange(at, min(rows, at + 1_000_000))
                columns = {"date": pa.array(start + (index * 60).astype("timedelta64[s]"))}
                for k, name in enumerate(names):
                    columns[name] = pa.array(source[index % len(source), k])
                writer.write_table(pa.table(columns, schema=schema))
        partial.rename(csv_path)
    if not parquet_path.exists():
        print(f"writing {parquet_path} ...", flush=True)
        table = pacsv.read_csv(csv_path, convert_options=pacsv.ConvertOptions(column_types=schema))
        pq.write_table(table, parquet_path.with_suffix(".part"))
        parquet_path.with_suffix(".part").rename(parquet_path)
    return csv_path, parquet_path


def baseline_tree(ref: str, into: Path) -> Path:
    """The repository at `ref` (its tracked files), extracted into `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def probe(tree: Path, path: Path, covariates: Sequence[str]) -> dict[str, float]:
    """load_data in a fresh process, with the loader of `tree`."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tree), str(path), ",".join(covariates)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def gb(n: float) -> str:
    return f"{n / 1e9:5.2f} GB"


def log_parser(prog: str, doc: str | None, baseline_ref: str) -> argparse.ArgumentParser:
    """The options of a benchmark on the built log: its rows, its folder, the baseline."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}", description=doc.split("\n\n")[0] if doc else None
    )
    parser.add_argument("--rows", type=int, default=16_000_000, help="rows of the log")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "urnn-bench-read",
        help="where the log is written (kept for later runs, by bench.read_memory and "
        "bench.train_memory alike)",
    )
    parser.add_argument(
        "--baseline-ref",
        default=baseline_ref,
        help="git revision measured beside this checkout; 'none' skips it",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = log_parser("bench.read_memory", __doc__, BASELINE_REF)
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma separated, of {', '.join(CASES)}"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; choose from {', '.join(CASES)}")
    csv_path, parquet_path = build_files(args.dir, args.rows)
    print(
        f"{args.rows:,} rows: CSV {csv_path.stat().st_size:,} bytes, "
        f"Parquet {parquet_path.stat().st_size:,} bytes; load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"now": ROOT}
        if args.baseline_ref != "none":
            trees[f"before ({args.baseline_ref})"] = baseline_tree(args.baseline_ref, Path(scratch))
        print(f"{'case':20s} {'loader':18s} {'peak RSS':>10s} {'wall':>8s} {'used':>10s}")
        for case in cases:
            kind, columns = case.split("-")
            path = csv_path if kind == "csv" else parquet_path
            covariates = COVARIATES if columns == "covariates" else ()
            used = args.rows * (16 + 9 * len(covariates) + 1)
            for name, tree in trees.items():
                result = probe(tree, path, covariates)
                print(
                    f"{case:20s} {name:18s} {gb(result['peak']):>10s} "
                    f"{result['seconds']:7.1f}s {gb(used):>10s}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

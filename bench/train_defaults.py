"""`urnn train`'s defaults on data no benchmark tunes on, every kind side by side: Taylor's
half-hourly England & Wales demand, Bike sharing's hourly rentals, one PJM region's 16 years of
hourly load (PJMW), the 15-minute transformer log ETTm2, two short demand histories (PJM East's
monthly means, Bike sharing's daily rentals), and two equipment logs: SKAB's water pump rig
(1 s) and NASA's C-MAPSS FD001 turbofans (100 engines, one global model) (`../shared/data`).

    python -m bench.train_defaults                        # nine data sets, four kinds, ~25 min
    python -m bench.train_defaults --datasets taylor,bike --kinds urnn,linear

Each cell is exactly what `urnn train --data FILE --target COL --model KIND` does (the same
TrainConfig the command builds with no options but the loader's), run into a temporary MLflow
store and not registered (a data set's `model` options aside, where its series cannot hold the
default look-back and horizon). The table it prints is the one in docs/benchmarks.md, section
"Beyond ETT and PJM"; that section also says how the defaults were chosen (validation only).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from models.forecaster import FORECASTER_KINDS, ForecasterConfig
from training.data import LoadConfig
from training.pipeline import TrainConfig, train_pipeline
from urnn_forecast.settings import Settings

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
KINDS = ("urnn", "lstm", "linear", "seasonal_naive")
COLUMNS = ("mae", "mse", "mase", "smape", "pinball_mean", "coverage_0.1_0.9")


def cmapss_csv(raw: Path, out_dir: Path) -> Path:
    """C-MAPSS ships space-separated text without a header; a user's first step is to name the
    columns (unit, cycle, three settings, 21 sensors: the data's readme) and write a CSV."""
    names = ["unit", "cycle", "op1", "op2", "op3", *(f"s{i}" for i in range(1, 22))]
    path = out_dir / "fd001.csv"
    pd.read_csv(raw, sep=r"\s+", header=None, names=names).to_csv(path, index=False)
    return path


def monthly_means_csv(raw: Path, out_dir: Path) -> Path:
    """A demand planner's monthly history: PJM East's hourly load as monthly means (the first
    and last months, partial, left out), dated on each month's first day."""
    hourly = pd.read_csv(raw, parse_dates=["Datetime"]).set_index("Datetime")["PJME_MW"]
    monthly = hourly.sort_index().resample("MS").mean().iloc[1:-1]
    path = out_dir / "pjme_monthly.csv"
    months = pd.DatetimeIndex(monthly.index).strftime("%Y-%m-%d")
    frame = pd.DataFrame({"month": months, "PJME_MW": monthly.to_numpy()})
    frame.to_csv(path, index=False)
    return path


@dataclass(frozen=True)
class DataSet:
    path: str  # under the data folder
    load: LoadConfig  # what the user passes to urnn train's loader options
    note: str
    # model options the user must set for this data (e.g. a look-back its series can afford)
    model: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[Path, Path], Path] | None = None  # (raw file, work dir) -> file to read
    # the naive row: seasonal naive where the data has a season the look-back can hold
    baseline: str = "seasonal_naive"
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig options (e.g. the split)


CMAPSS = DataSet(
    "CMAPSS/train_FD001.txt",
    # 100 engines run to failure, 128-362 cycles each: the cycle counter is the time axis
    LoadConfig(
        target="s11",
        series_col="unit",
        timestamp_col="cycle",
        step_origin="2000-01-01",
        freq="D",
    ),
    "C-MAPSS FD001, sensor 11 (HPC static pressure), 100 engines, 20,631 cycles; "
    "look-back 48, horizon 12, segments of 12 (the shortest engine has 128 cycles)",
    model={"lookback": 48, "horizon": 12, "segment_length": 12},
    prepare=cmapss_csv,
    baseline="repeat_last",  # cycles carry no season: seasonal naive would be the same
)

DATASETS = {
    "taylor": DataSet(
        "pmdarima_taylor/taylor.csv",
        LoadConfig(target="demand_mw"),
        "England & Wales demand, MW, half-hourly, 4,032 rows",
    ),
    "bike": DataSet(
        "Bike-Sharing-Dataset/hour.csv",
        # hour.csv splits its timestamp over two columns and lacks 165 hours (36 in a row at
        # most): the README's command line for it
        LoadConfig(
            target="cnt",
            timestamp_col=("dteday", "hr"),
            timestamp_format="%Y-%m-%d %H",
            max_gap=36,
        ),
        "Capital Bikeshare rentals per hour, 17,379 rows",
    ),
    "pjmw": DataSet(
        "PJM_hourly/PJMW_hourly.csv",
        LoadConfig(target="PJMW_MW"),  # out of order, daylight-saving duplicates: reported
        "PJM West region load, MW, hourly 2002-2018, 143,206 rows",
    ),
    "ettm2": DataSet(
        "ETT-small/ETTm2.csv",
        LoadConfig(target="OT"),
        "transformer oil temperature, 15-minute, 69,680 rows (urnn train's split, not ETT's)",
    ),
    "skab": DataSet(
        "SKAB/anomaly-free/anomaly-free.csv",
        # ';'-separated; 556 missing seconds, none longer than one step: filled and reported
        LoadConfig(target="Temperature", sep=";"),
        "SKAB water pump rig, Temperature, 1 s, 9,405 rows (the anomaly-free run)",
        # the frequency's season (an hour of seconds) is longer than the look-back, and a
        # pump's temperature has no hourly cycle: the naive row repeats the last value
        baseline="repeat_last",
    ),
    "pjme-monthly": DataSet(
        "PJM_hourly/PJME_hourly.csv",
        LoadConfig(target="PJME_MW", timestamp_col="month"),  # freq inferred: 'MS'
        "PJM East load, monthly means, 198 months 2002-2018; look-back 24 and horizon 12, the "
        "pair urnn train's too-short error names for it (the defaults, 336 + 96, do not fit)",
        model={"lookback": 24, "horizon": 12},
        prepare=monthly_means_csv,
    ),
    "bike-daily": DataSet(
        "Bike-Sharing-Dataset/day.csv",
        LoadConfig(target="cnt", timestamp_col="dteday"),
        "Capital Bikeshare rentals per day, 731 rows; look-back 96 and horizon 48, the pair "
        "urnn train's too-short error names for it",
        model={"lookback": 96, "horizon": 48},
    ),
    "cmapss": CMAPSS,
    "cmapss-units": replace(
        CMAPSS,
        note="the same engines split by unit (--split series): engines 1-70 train on their "
        "whole lives, 71-80 validate, 81-100 are scored as engines the model never saw",
        train={"split_method": "series"},
    ),
}


@dataclass(frozen=True)
class Cell:
    kind: str  # what ran: the data set's baseline stands in for "seasonal_naive"
    scores: dict[str, float]  # the backtest's overall metrics, original units
    epochs: int
    mase_season: str  # which seasonal naive scales the MASE, and why
    seconds: float


def run_cell(name: str, kind: str, data_dir: Path, var_dir: Path) -> Cell:
    spec = DATASETS[name]
    if kind == "seasonal_naive":
        kind = spec.baseline
    data = data_dir / spec.path
    if spec.prepare is not None:
        var_dir.mkdir(parents=True, exist_ok=True)
        data = spec.prepare(data, var_dir)
    config = TrainConfig(
        data=str(data),
        load=spec.load,
        model=ForecasterConfig(kind=kind, **spec.model),  # type: ignore[arg-type]
        registered_name=None,
        experiment="train-defaults",
        **spec.train,
    )
    start = time.perf_counter()
    result = train_pipeline(config, Settings(var_dir=var_dir))
    seconds = time.perf_counter() - start
    return Cell(kind, result.scores, result.epochs, result.mase_season, seconds)


def table_row(name: str, cell: Cell) -> str:
    values = " | ".join(f"{cell.scores[c]:,.4g}" for c in COLUMNS)
    return f"| {name} | {cell.kind} | {values} | {cell.epochs} | {cell.seconds:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    names = args.datasets.split(",")
    kinds = args.kinds.split(",")
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; known: {', '.join(DATASETS)}")
    odd = [k for k in kinds if k not in FORECASTER_KINDS]
    if odd:
        parser.error(f"unknown kind(s) {odd}; known: {', '.join(FORECASTER_KINDS)}")
    missing = [n for n in names if not (args.data_dir / DATASETS[n].path).is_file()]
    if missing:
        parser.error(f"--data-dir {args.data_dir}: no file for {missing}")
    print("| data | model | " + " | ".join(COLUMNS) + " | epochs | seconds |")
    print("|---|---|" + "---:|" * (len(COLUMNS) + 2))
    seasons = {}
    with tempfile.TemporaryDirectory(prefix="urnn-defaults-") as tmp:
        for name in names:
            for kind in kinds:
                cell = run_cell(name, kind, args.data_dir, Path(tmp) / "var")
                seasons[name] = cell.mase_season
                print(table_row(name, cell), flush=True)
    for name, season in seasons.items():
        print(f"\n{name}: {DATASETS[name].note}; MASE scaled by the seasonal naive of {season}")


if __name__ == "__main__":
    main()

"""Calibrate UrnnRealisedErrorAboveBacktest's factor k on PJM load: how often a healthy model's
daily realised MASE stands k times above what its backtest scored, and whether a degraded one
does.

    OMP_NUM_THREADS=1 python -m bench.accuracy_reference            # 6 regions, ~5 min on 2 cores
    python -m bench.accuracy_reference --epochs 2 --hidden 32 --end 2015-08-03

One model is fitted on the six PJM regions (a fleet: one registered version) as `urnn train`
fits and backtests it, on the 1.5 years before `--end` (train 1 year, val 60 days, test 90
days, backtest at every origin of the test span): `training.backtest.backtest`, whose
`realised_reference` is what config.json stores and the service exports as
urnn_realised_reference_mase. Then the year after `--end` (never seen, never a benchmark's test
span) is replayed as a client asking once a day for the next 24 hours and revealing each day's
actuals the day after: the same backtest code with the fitted model and its scaler at origins 24
rows apart, each forecast's steps scored as service.realised scores them (|actual - median| over
`lookback_scale` of its look-back, by `lead_bucket`). Each day's ratio is what the alert reads
over a 1-day window: the day's scaled errors over the sum of its points times the reference of
their lead. Printed: the ratio's quantiles and the days a year above each k, for

- healthy: the year after training;
- stale: the second year after training (the same model, a year older);
- x1.2, x1.5: the actuals revealed 1.2 or 1.5 times what the histories said (a unit or a
  meter change, a client scoring against the wrong column);
- other region: a model fitted on DAYTON alone serving the other five regions' histories
  (its per-series scaler of one series applies to every id, as the service applies it).

`--data bike|etth1|etth2|ett-fleet` replays another kind of series the same way (same model,
same split sizes, same scoring): a model fitted on the first 15 months of the data set (the
training rows, then 60 days of validation and 90 of backtest), the months after (8-9, to the
data's end) replayed daily; healthy, 1.2x and 1.5x actuals, each over 1 day and over 7 (a
version scoring < 100 points a day, one hourly series, is read over 7). `ett-fleet` is the 14
channels of ETTh1 and ETTh2 as one model (336 points a day: the alert reads 1 day), also read
for its oil temperature ETTh1_OT alone.

    for d in bike etth1 etth2 ett-fleet; do
        OMP_NUM_THREADS=1 python -m bench.accuracy_reference --data $d
    done
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.forecaster import Forecaster, ForecasterConfig
from service.metrics import LEAD_LABELS, lead_bucket
from service.realised import lookback_scale
from training.backtest import BacktestConfig, backtest
from training.data import LoadConfig, LoadedData, load_data
from training.fit import FitConfig
from training.split import SplitConfig, StandardScaler, split_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_DIR = SHARED / "PJM_hourly"
REGIONS = ("PJME", "PJMW", "DAYTON", "COMED", "FE", "DEOK")
L, H = 168, 24
TRAIN, VAL, TEST = 8760, 1440, 2160
YEAR = 8760
FACTORS = (1.25, 1.5, 2.0, 2.5, 3.0)


def only(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The one frame of a file's LoadedData (its id is the file name)."""
    (frame,) = frames.values()
    return frame


def as_fleet(parts: Mapping[str, LoadedData], target: str, source: str) -> LoadedData:
    """One-series LoadedData joined as one fleet, the target named `target` in every series."""
    first = next(iter(parts.values()))
    return replace(
        first,
        series={r: only(d.series).set_axis([target], axis=1) for r, d in parts.items()},
        filled={r: only(d.filled).set_axis([target], axis=1) for r, d in parts.items()},
        target=target,
        config=replace(first.config, target=target),
        source=source,
    )


def load_fleet(regions: tuple[str, ...]) -> LoadedData:
    """The regions' hourly load as one LoadedData, the target named `MW` in every series."""
    parts = {
        region: load_data(DATA_DIR / f"{region}_hourly.csv", LoadConfig(target=f"{region}_MW"))
        for region in regions
    }
    return as_fleet(parts, "MW", "PJM_hourly")


ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


def load_ett_fleet() -> LoadedData:
    """The 14 channels of ETTh1 and ETTh2 (6 loads and the oil temperature of each of two
    transformers) as 14 series of one fleet: 336 points a day, so the alert reads 1 day."""
    parts = {
        f"{name}_{column}": load_data(
            SHARED / "ETT-small" / f"{name}.csv", LoadConfig(target=column)
        )
        for name in ("ETTh1", "ETTh2")
        for column in ETT_COLUMNS
    }
    return as_fleet(parts, "y", "ETT-small")


def cut(data: LoadedData, start: pd.Timestamp, stop: pd.Timestamp) -> LoadedData:
    """Rows in [start, stop) of every series."""
    return replace(
        data,
        series={k: v.loc[start : stop - pd.Timedelta(hours=1)] for k, v in data.series.items()},
        filled={k: v.loc[start : stop - pd.Timedelta(hours=1)] for k, v in data.filled.items()},
    )


def served_as(data: LoadedData, region: str) -> LoadedData:
    """`region`'s history alone, under the id DAYTON (the one-series model's id)."""
    return replace(
        data,
        series={"DAYTON": data.series[region]},
        filled={"DAYTON": data.filled[region]},
    )


def fitted(
    data: LoadedData,
    end: pd.Timestamp,
    model: ForecasterConfig,
    fit: FitConfig,
    train: int = TRAIN,
) -> tuple[Forecaster, StandardScaler, dict[str, float]]:
    """The model `urnn train` would fit on the `train` rows (1 year) + 60 + 90 days before
    `end`, its scaler, and the realised reference its backtest (every origin of the 90-day test
    span) scored."""
    rows = train + VAL + TEST
    train_data = cut(data, end - pd.Timedelta(hours=rows), end)
    split = SplitConfig(
        lookback=L, method="tail", val_rows=VAL, test_rows=TEST, max_train_rows=train, horizon=H
    )
    torch.manual_seed(0)
    result = backtest(train_data, split, model, fit, BacktestConfig(step=1, season_length=24))
    assert result.realised_reference is not None
    scaler = StandardScaler.fit(split_data(train_data, split), scope="series")
    return result.fits[0].model, scaler, result.realised_reference["mase_by_lead"]


def daily_scores(
    data: LoadedData,
    model: Forecaster,
    scaler: StandardScaler,
    start: pd.Timestamp,
    *,
    actual_factor: float = 1.0,
    hours: int = YEAR,
) -> pd.DataFrame:
    """One row per (series, day): the scaled errors of that day's forecast summed by lead
    bucket (`err_<lead>`) and its points (`n_<lead>`), the forecasts made once a day through
    the `hours` from `start` (a year; less where the data ends sooner), scored as
    service.realised scores them: a flat look-back (scale 0) and filled actuals (the loader's
    interpolated hours: bike sharing's 165 missing ones) are left out, as the service leaves
    them out."""
    last = min(v.index[-1] for v in data.series.values()) + pd.Timedelta(hours=1)
    hours = min(hours, (last - start) // pd.Timedelta(hours=H) * H)
    span = cut(data, start - pd.Timedelta(hours=L + VAL + 48), start + pd.Timedelta(hours=hours))
    split = SplitConfig(lookback=L, method="tail", val_rows=VAL, test_rows=hours, horizon=H)
    config = BacktestConfig(step=H, season_length=24)
    result = backtest(span, split, model.config, FitConfig(), config, model=model, scaler=scaler)
    frame = result.forecasts
    target = data.target
    n = len(frame) // H
    origins = frame["origin"].to_numpy()[::H]
    series = frame["series"].to_numpy()[::H]
    stamps = pd.DatetimeIndex(frame["timestamp"].to_numpy())
    step_series = frame["series"].to_numpy()
    scales = np.empty(n)
    filled = np.zeros(len(frame), dtype=bool)
    for sid in np.unique(series):
        values = span.series[str(sid)][target]
        at = values.index.get_indexer(pd.DatetimeIndex(origins[series == sid]))
        rows = at[:, None] - L + 1 + np.arange(L)
        scales[series == sid] = lookback_scale(values.to_numpy()[rows], L)
        mask = span.filled[str(sid)][target]
        own = step_series == sid
        filled[own] = mask.to_numpy()[mask.index.get_indexer(stamps[own])]
    actual = frame["actual"].to_numpy().reshape(n, H) * actual_factor
    errors = np.abs(actual - frame["point"].to_numpy().reshape(n, H))
    scored = ~filled.reshape(n, H)
    keep = scales > 0
    scaled = np.where(scored, errors, 0.0)[keep] / scales[keep, None]
    scored = scored[keep]
    buckets = np.array([lead_bucket(s) for s in range(1, H + 1)])
    out = pd.DataFrame({"series": series[keep], "day": pd.DatetimeIndex(origins[keep]).normalize()})
    for b in np.unique(buckets):
        lead = LEAD_LABELS[b]
        out[f"err_{lead}"] = scaled[:, buckets == b].sum(axis=1)
        out[f"n_{lead}"] = scored[:, buckets == b].sum(axis=1)
    return out


def ratios(scores: pd.DataFrame, reference: dict[str, float], days: int = 1) -> pd.Series:
    """Per day, the alert's reading over a window of `days` days ending that day: the fleet's
    scaled errors over the points of each lead times that lead's reference."""
    daily = scores.drop(columns="series").groupby("day").sum()
    daily = daily.rolling(days).sum().dropna()
    leads = [c[4:] for c in daily.columns if c.startswith("err_")]
    observed = daily[[f"err_{lead}" for lead in leads]].sum(axis=1)
    expected = (daily[[f"n_{lead}" for lead in leads]] * [reference[k] for k in leads]).sum(axis=1)
    return observed / expected


@dataclass(frozen=True)
class Other:
    """A data set other than PJM, replayed as PJM is: one series, a model fitted on the 15
    months from its start (train, then 60 days of validation, 90 of backtest), the rest of
    the data (8-9 months) replayed daily."""

    load: Callable[[], LoadedData]
    end: str  # training data ends here; the replay starts here and runs to the data's end
    train: int  # training rows before the 60 + 90 days
    what: str
    solo: str | None = None  # a fleet's series also read alone


def _single(path: Path, config: LoadConfig) -> LoadedData:
    return load_data(path, config)


OTHERS: dict[str, Other] = {
    # 2011-01-01 .. 2012-03-31 (456 days); the 36-hour outage of 2012-10-29 (hurricane Sandy)
    # and the night hours with no rental row are filled and, as in the service, not scored
    "bike": Other(
        lambda: _single(
            SHARED / "Bike-Sharing-Dataset" / "hour.csv",
            LoadConfig(
                target="cnt",
                timestamp_col=("dteday", "hr"),
                timestamp_format="%Y-%m-%d %H",
                max_gap=36,
            ),
        ),
        "2012-04-01",
        456 * 24 - VAL - TEST,
        "bike sharing hourly rentals (cnt)",
    ),
    "etth1": Other(
        lambda: _single(SHARED / "ETT-small" / "ETTh1.csv", LoadConfig(target="OT")),
        "2017-10-01",
        457 * 24 - VAL - TEST,
        "ETTh1 transformer oil temperature (OT)",
    ),
    "etth2": Other(
        lambda: _single(SHARED / "ETT-small" / "ETTh2.csv", LoadConfig(target="OT")),
        "2017-10-01",
        457 * 24 - VAL - TEST,
        "ETTh2 transformer oil temperature (OT)",
    ),
    "ett-fleet": Other(
        load_ett_fleet,
        "2017-10-01",
        457 * 24 - VAL - TEST,
        "ETTh1 + ETTh2, all 7 channels each (14 series, one model)",
        solo="ETTh1_OT",
    ),
}


def replay_other(
    name: str, model: ForecasterConfig, fit: FitConfig, end_at: str | None = None
) -> dict[str, pd.Series]:
    """The PJM cases for another data set: healthy, 1.2x and 1.5x actuals, each read over 1
    day and over 7 (the alert reads a version scoring < 100 points a day over 7 days), and a
    fleet's `solo` series alone. `end_at`: training ends there instead (everything before it
    trains, validates and backtests; the replay runs from it to the data's end)."""
    other = OTHERS[name]
    data = other.load()
    end = pd.Timestamp(other.end if end_at is None else end_at)
    train = other.train
    if end_at is not None:
        start = min(v.index[0] for v in data.series.values())
        train = (end - start) // pd.Timedelta(hours=1) - VAL - TEST
    net, scaler, reference = fitted(data, end, model, fit, train=train)
    print(f"{other.what}: trained on {train} + {VAL} + {TEST} rows before {end.date()}, "
          "replayed from there to the data's end")  # fmt: skip
    print("reference (backtest realised MASE by lead):",
          {k: round(v, 3) for k, v in reference.items()})  # fmt: skip
    out = {}
    for label, factor in (("healthy", 1.0), ("actuals x1.2", 1.2), ("actuals x1.5", 1.5)):
        scores = daily_scores(data, net, scaler, end, actual_factor=factor)
        for days in (1, 7):
            out[f"{name} {label}, {days}-day window"] = ratios(scores, reference, days)
        if other.solo is not None and factor == 1.0:
            alone = scores[scores["series"] == other.solo]
            for days in (1, 7):
                out[f"{other.solo} alone, {days}-day window"] = ratios(alone, reference, days)
    return out


def row(name: str, r: pd.Series) -> str:
    q = r.quantile([0.5, 0.9, 0.99]).to_numpy()
    per_year = [f"{(r > k).sum() * 365 / len(r):5.1f}" for k in FACTORS]
    return (
        f"| {name} | {len(r)} | {q[0]:.2f} | {q[1]:.2f} | {q[2]:.2f} | {r.max():.2f} | "
        + " | ".join(per_year)
        + " |"
    )


def print_table(cases: Mapping[str, pd.Series]) -> None:
    """The cases' rows under the table's head."""
    heads = " | ".join(f"k={k}" for k in FACTORS)
    print()
    print(f"| case | days | p50 | p90 | p99 | max | {heads} |")
    print("|---|---|---|---|---|---|" + "---|" * len(FACTORS))
    for name, r in cases.items():
        print(row(name, r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--end",
        default=None,
        help="training data ends here (pjm: 2016-08-03; the others: 15 months from their start)",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--batches", type=int, default=150, help="training batches per epoch")
    parser.add_argument("--no-other-region", action="store_true")
    parser.add_argument(
        "--data",
        choices=["pjm", *OTHERS],
        default="pjm",
        help="pjm (the calibration) or a one-series data set replayed the same way",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    end = pd.Timestamp(args.end or "2016-08-03")
    model = ForecasterConfig(
        kind="urnn", lookback=L, horizon=H, hidden_size=args.hidden, segment_length=24
    )
    fit = FitConfig(
        max_epochs=args.epochs, max_train_batches=args.batches, batch_size=64, device="cpu"
    )
    if args.data != "pjm":
        print_table(replay_other(args.data, model, fit, args.end))
        print(f"\n{time.perf_counter() - started:.0f} s")
        return
    data = load_fleet(REGIONS)
    net, scaler, reference = fitted(data, end, model, fit)
    print(f"model: urnn hidden {args.hidden}, L {L}, H {H}, {args.epochs} epoch(s), "
          f"trained on the 1.5 years before {end.date()} (6 regions, one model)")  # fmt: skip
    print("reference (backtest realised MASE by lead):",
          {k: round(v, 3) for k, v in reference.items()})  # fmt: skip
    year1 = daily_scores(data, net, scaler, end)
    cases = {
        "healthy: year after training": ratios(year1, reference),
        "stale: second year after": ratios(
            daily_scores(data, net, scaler, end + pd.Timedelta(hours=YEAR)), reference
        ),
        "actuals x1.2 (year after)": ratios(
            daily_scores(data, net, scaler, end, actual_factor=1.2), reference
        ),
        "actuals x1.5 (year after)": ratios(
            daily_scores(data, net, scaler, end, actual_factor=1.5), reference
        ),
    }
    windows = {f"healthy, {days}-day window": ratios(year1, reference, days) for days in (3, 7)}
    alone = year1[year1["series"] == "DAYTON"]  # the fleet model's scorings of one region
    for days in (1, 7):
        windows[f"DAYTON alone, {days}-day window"] = ratios(alone, reference, days)
    if not args.no_other_region:
        solo, solo_scaler, solo_ref = fitted(served_as(data, "DAYTON"), end, model, fit)
        cases["DAYTON model, own region"] = ratios(
            daily_scores(served_as(data, "DAYTON"), solo, solo_scaler, end),
            solo_ref,
        )
        others = []
        for region in REGIONS:
            if region == "DAYTON":
                continue
            # served under the model's one series id: its scaler applies, as in the service
            moved = served_as(data, region)
            others.append(daily_scores(moved, solo, solo_scaler, end).assign(series=region))
        cases["DAYTON model, 5 other regions"] = ratios(pd.concat(others), solo_ref)
    print()
    print("daily realised MASE / backtest reference (lead-weighted), one forecast a day per")
    print("series at every lead; days a year above k:")
    print()
    heads = " | ".join(f"k={k}" for k in FACTORS)
    print(f"| case | days | p50 | p90 | p99 | max | {heads} |")
    print("|---|---|---|---|---|---|" + "---|" * len(FACTORS))
    for name, r in cases.items():
        print(row(name, r))
    print()
    print("healthy year, other windows, and one series alone (24 points a day):")
    print()
    print(f"| case | days | p50 | p90 | p99 | max | {heads} |")
    print("|---|---|---|---|---|---|" + "---|" * len(FACTORS))
    for name, r in windows.items():
        print(row(name, r))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

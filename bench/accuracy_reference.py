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

`--factor F` (repeatable) adds the actuals revealed F times the histories to any data's cases:
`--factor 1000` is a kW model scored against W, `--factor 0.001` the reverse.

`--data skab` replays the product's own kind of data, an equipment log: SKAB's water pump rig,
8 sensors at 1 s (`;` separated), one model of the 8 channels as a fleet (ids: the column
names, so the model and its per-series scaler serve any run of the rig). Choices:

- Time. Row k of a run is read as hour k (`as_hours`, as `step_origin` reads C-MAPSS's cycles
  as days), so the bench's cut, split and day are row counts; the model is the PJM one (look-
  back 168 s, horizon 24 s). Missing seconds (556 in the anomaly-free run, up to 75 in a row
  in the labelled ones) are interpolated and, as in the service, not scored; other/2.csv is
  left out (246 s missing in a row; its anomaly starts at its row 104, before a 168-s
  look-back of its own).
- Split. The anomaly-free run (9,961 s regularised) fits on its first 6,000 s: train 3,600
  (1 h), val 1,200, backtest 1,200 at every origin (the reference); the other 3,961 s (165
  rounds) are replayed as healthy, also with 1.2x, 1.5x and `--factor` actuals.
- Cadence and window. A client asks every 24 s for the next 24 s and reveals them after: one
  "round" of 8 forecasts, 192 scored points. The alert's window is wall-clock (1 day, 7 for a
  version under 100 points a day); a day of 1 s data is 3,600 rounds, longer than all of SKAB
  (a labelled run is ~1,100 s, its anomaly ~400 s), so a literal day pools an anomaly with
  hours of normal running. The window is mapped instead by what the factor 3 was calibrated
  on: the same number of forecasts per series (a daily client's 1 per day) and about the same
  points (PJM's fleet: 144 a day; here 192, >= 100 so the alert reads one round). One round is
  the "1-round window"; 7 rounds and the ratio pooled over a whole phase (a window holding
  exactly the anomaly: the most a longer window could read) are printed beside it.
- Anomalies. Each of the 33 labelled runs (valve1: inlet valve closed, valve2: outlet valve,
  other: leaks, rotor imbalance, cavitation, hot water) is served by the anomaly-free run's
  model from its row 168 (its own first look-back) to its end, after 72 filled padding rows
  the split wants as context (never scored, never in a look-back). A round is "during" when
  any of its 24 steps is labelled anomalous (`anomalous_days`), "before"/"after" otherwise.
  These runs are other experiments on the same rig (other days, levels and set-ups), so the
  model serving them is itself a shift: the "before" rows are that shift alone.

    OMP_NUM_THREADS=1 python -m bench.accuracy_reference --data skab --factor 1000 --factor 0.001
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

from bench.train_defaults import DATASETS
from models.forecaster import Forecaster, ForecasterConfig
from service.metrics import LEAD_LABELS, lead_bucket
from service.realised import lookback_scale
from training.backtest import BacktestConfig, backtest
from training.data import LoadConfig, LoadedData, channels_as_series, load_data
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
    val: int = VAL,
    test: int = TEST,
) -> tuple[Forecaster, StandardScaler, dict[str, float]]:
    """The model `urnn train` would fit on the `train` rows (1 year) + `val` (60 days) +
    `test` (90 days) before `end`, its scaler, and the realised reference its backtest (every
    origin of the test span) scored."""
    rows = train + val + test
    train_data = cut(data, end - pd.Timedelta(hours=rows), end)
    split = SplitConfig(
        lookback=L, method="tail", val_rows=val, test_rows=test, max_train_rows=train, horizon=H
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
    val: int = VAL,
) -> pd.DataFrame:
    """One row per (series, day): the scaled errors of that day's forecast summed by lead
    bucket (`err_<lead>`) and its points (`n_<lead>`), the forecasts made once a day through
    the `hours` from `start` (a year; less where the data ends sooner), scored as
    service.realised scores them: a flat look-back (scale 0) and filled actuals (the loader's
    interpolated hours: bike sharing's 165 missing ones) are left out, as the service leaves
    them out. `val`: rows of (unused) validation context the split wants before `start`."""
    last = min(v.index[-1] for v in data.series.values()) + pd.Timedelta(hours=1)
    hours = min(hours, (last - start) // pd.Timedelta(hours=H) * H)
    span = cut(data, start - pd.Timedelta(hours=L + val + 48), start + pd.Timedelta(hours=hours))
    split = SplitConfig(lookback=L, method="tail", val_rows=val, test_rows=hours, horizon=H)
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
        # the loader settings bench.train_defaults runs it with (the README's command line)
        lambda: _single(SHARED / DATASETS["bike"].path, DATASETS["bike"].load),
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
    name: str,
    model: ForecasterConfig,
    fit: FitConfig,
    end_at: str | None = None,
    factors: tuple[float, ...] = (),
) -> dict[str, pd.Series]:
    """The PJM cases for another data set: healthy, 1.2x and 1.5x actuals, each read over 1
    day and over 7 (the alert reads a version scoring < 100 points a day over 7 days), and a
    fleet's `solo` series alone. `end_at`: training ends there instead (everything before it
    trains, validates and backtests; the replay runs from it to the data's end). `factors`:
    more slips of the actuals replayed (1000: kW revealed as W)."""
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
    slips = tuple((f"actuals x{f:g}", f) for f in (1.2, 1.5, *factors))
    for label, factor in (("healthy", 1.0), *slips):
        scores = daily_scores(data, net, scaler, end, actual_factor=factor)
        for days in (1, 7):
            out[f"{name} {label}, {days}-day window"] = ratios(scores, reference, days)
        if other.solo is not None and factor == 1.0:
            alone = scores[scores["series"] == other.solo]
            for days in (1, 7):
                out[f"{other.solo} alone, {days}-day window"] = ratios(alone, reference, days)
    return out


def as_hours(data: LoadedData, pad: int = 0, origin: str = "2000-01-01") -> LoadedData:
    """Every series' k-th row stamped `origin` + (pad + k) hours, after `pad` copies of its first
    row marked filled (never scored; context the split wants before a short run's look-back).
    A 1-second log read as hours, as `step_origin` reads C-MAPSS's cycles as days: the bench's
    cut, split and day are then row counts (one "day" = 24 rows)."""

    def stamped(frame: pd.DataFrame, head: pd.DataFrame) -> pd.DataFrame:
        out = pd.concat([head, frame]) if pad else frame.copy()
        out.index = pd.date_range(origin, periods=len(out), freq="h", name=frame.index.name)
        return out

    series, filled = {}, {}
    for sid, frame in data.series.items():
        mask = data.filled[sid]
        series[sid] = stamped(frame, frame.iloc[[0] * pad])
        head = mask.iloc[[0] * pad].copy()
        head.loc[:, :] = True
        filled[sid] = stamped(mask, head.astype(bool))
    return replace(data, series=series, filled=filled, freq="h")


def anomalous_days(label: pd.Series, days: pd.DatetimeIndex) -> np.ndarray:
    """Per replay "day" (one round of forecasts, its origin at 23:00 of that day), whether any
    of its steps (the next day's 24 hours) carries an anomaly label (> 0: a label interpolated
    across a gap counts)."""
    flagged = (label > 0).groupby(pd.DatetimeIndex(label.index).normalize()).any()
    after = pd.DatetimeIndex(days) + pd.Timedelta(days=1)
    return flagged.reindex(after, fill_value=False).to_numpy(dtype=bool)


SKAB = SHARED / "SKAB"
SKAB_COLUMNS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)
# the anomaly-free run (9,405 s): train 1 h, val 20 min, backtest 20 min; the rest (56 min)
# replayed as healthy
SKAB_TRAIN, SKAB_VAL, SKAB_TEST = 3600, 1200, 1200
SKAB_PAD = 72  # filled rows before a labelled run: the split's 48 + 24 rows of context
SKAB_MAX_GAP = 75  # up to 75 s missing in a row (valve1/2.csv): filled, and not scored
# other/2.csv is left out: 246 s missing in a row, and its anomaly starts at its row 104,
# before a first 168-s look-back of its own
SKAB_LEFT_OUT = ("other/2",)


def load_skab(path: Path, pad: int = 0) -> tuple[LoadedData, pd.Series | None]:
    """A SKAB run's 8 sensors as 8 series of one fleet (ids: the column names, the same in
    every run, so the anomaly-free run's model and scaler serve any run), rows read as hours
    (`as_hours`), and its anomaly label on the same index (None in the anomaly-free run)."""
    config = LoadConfig(
        target=SKAB_COLUMNS[0], covariates=SKAB_COLUMNS[1:], sep=";", max_gap=SKAB_MAX_GAP
    )
    data = channels_as_series(load_data(path, config))
    data = replace(
        data,
        series={k.split("/", 1)[1]: v for k, v in data.series.items()},
        filled={k.split("/", 1)[1]: v for k, v in data.filled.items()},
    )
    data = as_hours(data, pad)
    if "anomaly" not in pd.read_csv(path, sep=";", nrows=0).columns:
        return data, None
    labels = load_data(path, LoadConfig(target="anomaly", sep=";", max_gap=SKAB_MAX_GAP))
    labels = as_hours(labels, pad)
    return data, only(labels.series)["anomaly"]


def pooled(scores: pd.DataFrame, reference: dict[str, float]) -> float:
    """The alert's ratio over a window holding all of `scores`' rounds."""
    return float(ratios(scores.assign(day=pd.Timestamp(0)), reference).iloc[0])


def replay_skab(
    model: ForecasterConfig, fit: FitConfig, factors: tuple[float, ...] = ()
) -> tuple[dict[str, pd.Series], pd.DataFrame]:
    """SKAB: the cases (healthy, slipped actuals) of the anomaly-free run, and per labelled run
    its rounds' 1-round ratios by phase (before, during, after the anomaly)."""
    data, _ = load_skab(SKAB / "anomaly-free" / "anomaly-free.csv")
    start = min(v.index[0] for v in data.series.values())
    end = start + pd.Timedelta(hours=SKAB_TRAIN + SKAB_VAL + SKAB_TEST)
    net, scaler, reference = fitted(
        data, end, model, fit, train=SKAB_TRAIN, val=SKAB_VAL, test=SKAB_TEST
    )
    rows = min(len(v) for v in data.series.values())
    print(f"SKAB anomaly-free run ({rows} s after regularising), 8 sensors as one fleet: "
          f"trained on {SKAB_TRAIN} + {SKAB_VAL} + {SKAB_TEST} s, the rest replayed")  # fmt: skip
    print("reference (backtest realised MASE by lead):",
          {k: round(v, 3) for k, v in reference.items()})  # fmt: skip
    cases: dict[str, pd.Series] = {}
    for factor in (1.0, 1.2, 1.5, *factors):
        label = "healthy" if factor == 1.0 else f"actuals x{factor:g}"
        scores = daily_scores(data, net, scaler, end, actual_factor=factor)
        for days in (1, 7):
            cases[f"skab {label}, {days}-round window"] = ratios(scores, reference, days)
    runs = []
    for path in sorted(SKAB.glob("*/*.csv")):
        if path.parent.name == "anomaly-free" or f"{path.parent.name}/{path.stem}" in SKAB_LEFT_OUT:
            continue
        run, marks = load_skab(path, pad=SKAB_PAD)
        assert marks is not None
        first = min(v.index[0] for v in run.series.values())
        begin = first + pd.Timedelta(hours=SKAB_PAD + L)  # the first look-back: the run's own
        scores = daily_scores(run, net, scaler, begin, val=24)
        r = ratios(scores, reference)
        flags = anomalous_days(marks, pd.DatetimeIndex(r.index))
        seen = np.maximum.accumulate(flags)
        phase = np.where(flags, "during", np.where(seen, "after", "before"))
        name = f"{path.parent.name}/{path.stem}"
        for ph in ("before", "during", "after"):
            days = r.index[phase == ph]
            share = scores[scores["day"].isin(days)]
            pool = pooled(share, reference) if len(share) else np.nan
            runs.append(
                pd.DataFrame(
                    {"run": name, "phase": ph, "ratio": r.to_numpy()[phase == ph], "pooled": pool}
                )
            )
    return cases, pd.concat(runs, ignore_index=True)


def print_runs(runs: pd.DataFrame) -> None:
    """The labelled runs' rounds by phase: quantiles, rounds and runs above 3, and the ratio
    pooled over the phase (a window holding all of it)."""
    print()
    print(
        "| phase | runs | rounds | p50 | p90 | max | rounds above 2 | above 3 | runs with a "
        "round above 3 | pooled per run: median | min | max | runs pooled above 3 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ph in ("before", "during", "after"):
        part = runs[runs["phase"] == ph]
        r = part["ratio"]
        per_run = part.groupby("run")
        pool = per_run["pooled"].first()
        above = (per_run["ratio"].max() > 3).sum()
        q = r.quantile([0.5, 0.9]).to_numpy()
        print(
            f"| {ph} | {part['run'].nunique()} | {len(r)} | {q[0]:.2f} | {q[1]:.2f} | "
            f"{r.max():.2f} | {(r > 2).sum()} | {(r > 3).sum()} | {above} | "
            f"{pool.median():.2f} | {pool.min():.2f} | {pool.max():.2f} | {(pool > 3).sum()} |"
        )
    phases = ["before", "during", "after"]
    by_pool = runs.pivot_table(index="run", columns="phase", values="pooled", aggfunc="first")
    top = runs.pivot_table(index="run", columns="phase", values="ratio", aggfunc="max")
    table = pd.concat(
        [by_pool[phases].add_prefix("pooled "), top[phases].add_prefix("max ")], axis=1
    )
    print()
    print("per run and phase: the ratio pooled over the phase, and its highest 1-round reading:")
    print(table.round(2).to_string())


def row(name: str, r: pd.Series, per_year: bool = True) -> str:
    q = r.quantile([0.5, 0.9, 0.99]).to_numpy()
    scale = 365 / len(r) if per_year else 1.0
    above = [f"{(r > k).sum() * scale:5.1f}" if per_year else f"{(r > k).sum()}" for k in FACTORS]
    return (
        f"| {name} | {len(r)} | {q[0]:.2f} | {q[1]:.2f} | {q[2]:.2f} | {r.max():.2f} | "
        + " | ".join(above)
        + " |"
    )


def print_table(cases: Mapping[str, pd.Series], per_year: bool = True) -> None:
    """The cases' rows under the table's head: days a year above each k, or (`per_year`
    False) the count of days (rounds) above it."""
    heads = " | ".join(f"k={k}" for k in FACTORS)
    print()
    print(f"| case | days | p50 | p90 | p99 | max | {heads} |")
    print("|---|---|---|---|---|---|" + "---|" * len(FACTORS))
    for name, r in cases.items():
        print(row(name, r, per_year))


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
        choices=["pjm", *OTHERS, "skab"],
        default="pjm",
        help="pjm (the calibration), a data set replayed the same way, or skab (the pump rig)",
    )
    parser.add_argument(
        "--factor",
        type=float,
        action="append",
        default=[],
        help="also replay the actuals revealed this many times the histories (repeatable; "
        "1000: kW revealed as W, 0.001 the reverse)",
    )
    args = parser.parse_args()
    factors = tuple(args.factor)
    started = time.perf_counter()
    end = pd.Timestamp(args.end or "2016-08-03")
    model = ForecasterConfig(
        kind="urnn", lookback=L, horizon=H, hidden_size=args.hidden, segment_length=24
    )
    fit = FitConfig(
        max_epochs=args.epochs, max_train_batches=args.batches, batch_size=64, device="cpu"
    )
    if args.data == "skab":
        cases, runs = replay_skab(model, fit, factors)
        print("\nanomaly-free run, the rest replayed; rounds (24 s each) above k:")
        print_table(cases, per_year=False)
        print("\nthe labelled runs (other/2 left out), served by the anomaly-free run's model:")
        print_runs(runs)
        print(f"\n{time.perf_counter() - started:.0f} s")
        return
    if args.data != "pjm":
        print_table(replay_other(args.data, model, fit, args.end, factors))
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
    for factor in factors:
        cases[f"actuals x{factor:g} (year after)"] = ratios(
            daily_scores(data, net, scaler, end, actual_factor=factor), reference
        )
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

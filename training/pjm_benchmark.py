"""The PJM hourly demand benchmark: one global model over six regions, MASE against weekly
seasonal naive, one command.

    config = PjmBenchmarkConfig(horizons=(24,), models=("urnn", "seasonal_naive_168"))
    rows = run_pjm_benchmark(config)        # one PjmRow per (horizon, model, region | overall)
    write_results(rows, config, "runs/pjm") # results.json + results.md + data_report.txt
    print(markdown_report(rows, config))

Target (issue 4): on PJM demand (six regions of `../shared/data/PJM_hourly`, one global model,
horizons 24 h and 168 h) the uRNN's MASE is below weekly seasonal naive's on every region.

Protocol (the defaults; every number is an option of `PjmBenchmarkConfig`):

- Data: `<REGION>_hourly.csv` (`Datetime,<REGION>_MW`) for PJME, PJMW, DAYTON, COMED, FE and
  DEOK, each read and repaired by `training.data.load_data` with its default policies (rows
  sorted, the 4 daylight-saving fall-back duplicates averaged, the 9..30 missing hours inserted
  and linearly interpolated; every decision is in `data_report.txt`), then combined by
  `training.data.load_many` into one dataset of six series with the target renamed `MW`.
- Split, per region (`training.split`'s "tail" method; the regions start between 2002 and 2012
  but all end on 2018-08-03, so tail spans cover the same calendar time in every region):
  test = the last 365 days (8,760 rows), val = the 365 days before them (a whole year, so early
  stopping sees every season and holiday the test year holds), train = the 4 years before
  val (35,040 rows; `train_years`, None for the whole history: it bounds CPU cost, and the
  shortest region, DEOK, has 4.6 years before val). Val and test read `lookback` rows of
  context before their span.
- Scaling: a StandardScaler per region, fitted on that region's train span only
  (`StandardScaler.fit`, scope "series"); the models also normalise every window themselves.
- One global model per (model kind, horizon), trained on the windows of all six regions at
  once, early-stopped on the val windows of all six.
- Look-back 336 rows (two weeks; a multiple of the 24-row segments the recurrent encoders
  read). Training windows every `train_stride` rows.
- Test origins: one per day (stride 24 rows), aligned so that the last forecast ends on the
  last test row: every forecast is issued at midnight for the next 24 (or 168) hours; 365
  origins per region at 24 h, 359 at 168 h.
- Metrics on the original scale (MW), per region and over all regions' forecasts together:
  MASE with the scale of Hyndman & Koehler, the in-sample MAE of the weekly seasonal naive
  forecast (m = 168) over the region's train span (`BacktestConfig(season_length=168)`); MSE,
  MAE, sMAPE (%). The overall MASE is the mean over every forecast value (all regions have the
  same number of origins, so it is the mean of the regions' MASE); the overall MSE and MAE mix
  megawatts of regions of different size (PJME is ~10x DAYTON) and are dominated by the big ones.
- Models, all trained and scored in the same run by `training.backtest.backtest` on the same
  windows: urnn, lstm (same segment encoder + direct head), linear (NLinear), weekly seasonal
  naive (the reference to beat), daily seasonal naive, repeat-last.
- Validation MASE: every model is also scored on its val span with the same daily origins
  (`val_mase` in the rows). Settings were only ever chosen on it, never on test figures.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.forecaster import (
    Forecaster,
    ForecasterConfig,
    ForecasterKind,
    Normalisation,
    n_calendar_features,
)
from training.backtest import BacktestConfig, backtest, tidy_forecasts
from training.benchmark_options import check_horizons, check_names
from training.data import LoadConfig, LoadedData, load_many
from training.fit import FitConfig, predict
from training.metrics import metric_tables, seasonal_naive_scale
from training.paper_benchmark import DeviceName
from training.split import SplitConfig, SplitPlan, StandardScaler, plan_split, split_data
from training.validation import plural
from training.windows import WindowDataset, filled_flags

DATASET = "PJM"
REGIONS: tuple[str, ...] = ("PJME", "PJMW", "DAYTON", "COMED", "FE", "DEOK")
HORIZONS: tuple[int, ...] = (24, 168)
TARGET = "MW"  # every region's `<REGION>_MW` column is renamed to this
OVERALL = "overall"  # the `region` of the rows that pool every region's forecasts
ROWS_PER_DAY = 24
WEEK = 168  # MASE's season and the reference model's
# Model labels -> (forecaster kind, season length of seasonal naive or None).
MODEL_SPECS: dict[str, tuple[ForecasterKind, int | None]] = {
    "urnn": ("urnn", None),
    "lstm": ("lstm", None),
    "linear": ("linear", None),
    "seasonal_naive_168": ("seasonal_naive", WEEK),
    "seasonal_naive_24": ("seasonal_naive", ROWS_PER_DAY),
    "repeat_last": ("repeat_last", None),
}
MODELS: tuple[str, ...] = tuple(MODEL_SPECS)
REFERENCE = "seasonal_naive_168"  # the model to beat
CHALLENGER = "urnn"
RECURRENT_KINDS: tuple[ForecasterKind, ...] = ("urnn", "lstm")

_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = _ROOT.parent / "shared" / "data" / "PJM_hourly"


class PjmBenchmarkError(ValueError):
    """A benchmark that cannot run as asked (unknown region, missing file, bad option)."""


# -----------------------------------------------------------------------------
# Config and rows


@dataclass(frozen=True)
class PjmBenchmarkConfig:
    """One benchmark run: every (horizon, model) trained once over all regions and scored."""

    regions: tuple[str, ...] = REGIONS
    horizons: tuple[int, ...] = HORIZONS
    models: tuple[str, ...] = MODELS
    lookback: int = 336
    data_dir: str | None = None  # None: DEFAULT_DATA_DIR
    test_days: int = 365
    val_days: int = 365
    train_years: float | None = 4.0  # None: every row before val
    test_step: int = ROWS_PER_DAY  # rows between test (and val) origins
    train_stride: int = 2  # rows between training windows
    max_train_batches: int | None = None  # per epoch; None: every training window once
    max_epochs: int = 20
    seed: int = 0
    device: DeviceName = "auto"
    # urnn / lstm / linear
    hidden_size: int = 64
    segment_length: int = ROWS_PER_DAY
    normalisation: Normalisation = "last"
    calendar: bool = False  # urnn / lstm: hour, weekday and day-of-year features
    mse_weight: float = 0.0
    patience: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("regions", "horizons", "models"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))
        check_names("regions", self.regions, REGIONS, PjmBenchmarkError)
        check_names("models", self.models, MODELS, PjmBenchmarkError)
        check_horizons(self.horizons, PjmBenchmarkError)
        for name in ("lookback", "test_days", "val_days", "test_step", "train_stride"):
            if getattr(self, name) < 1:
                raise PjmBenchmarkError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.train_years is not None and not self.train_years > 0:
            raise PjmBenchmarkError(f"train_years must be > 0 or None; got {self.train_years}")
        if self.lookback < WEEK and REFERENCE in self.models:
            raise PjmBenchmarkError(
                f"lookback must be >= {WEEK} for {REFERENCE} (it repeats the last week); "
                f"got {self.lookback}"
            )
        recurrent = sorted({"urnn", "lstm"} & set(self.models))
        if recurrent and self.lookback % self.segment_length:
            raise PjmBenchmarkError(
                f"lookback {self.lookback} must be a multiple of the segment length "
                f"{self.segment_length} for {', '.join(recurrent)}"
            )

    @property
    def train_rows(self) -> int | None:
        if self.train_years is None:
            return None
        return max(1, round(self.train_years * 365 * ROWS_PER_DAY))

    def split_config(self) -> SplitConfig:
        return SplitConfig(
            lookback=self.lookback,
            method="tail",
            val_rows=self.val_days * ROWS_PER_DAY,
            test_rows=self.test_days * ROWS_PER_DAY,
            max_train_rows=self.train_rows,
        )

    def fit_config(self) -> FitConfig:
        return FitConfig(
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=self.patience,
            mse_weight=self.mse_weight,
            max_train_batches=self.max_train_batches,
            seed=self.seed,
            device=self.device,
        )

    def backtest_config(self) -> BacktestConfig:
        return BacktestConfig(
            n_windows=None,
            step=self.test_step,
            season_length=WEEK,
            scale="original",
            train_stride=self.train_stride,
        )

    def model_config(self, model: str, horizon: int, freq: str = "h") -> ForecasterConfig:
        kind, season = MODEL_SPECS[model]
        recurrent = kind in RECURRENT_KINDS
        return ForecasterConfig(
            kind=kind,
            lookback=self.lookback,
            horizon=horizon,
            hidden_size=self.hidden_size,
            segment_length=self.segment_length,
            normalisation=self.normalisation,
            season_length=season or ROWS_PER_DAY,
            n_calendar=n_calendar_features(freq) if recurrent and self.calendar else 0,
        )


@dataclass(frozen=True)
class PjmRow:
    """One model's test scores on one region (or `overall`) at one horizon; original scale."""

    dataset: str
    region: str
    horizon: int
    model: str
    mase: float
    mse: float
    mae: float
    smape: float
    val_mase: float  # the same MASE on the val span (what tuning may look at)
    n_windows: int  # test origins (per region; summed over regions for `overall`)
    epochs: int  # epochs trained (1 for the parameter-free baselines)
    best_epoch: int
    wall_seconds: float  # fit + scoring of this model (same for every region of a model)
    n_params: int
    lookback: int


# -----------------------------------------------------------------------------
# Data


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    path = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if not path.is_dir():
        how = "--data-dir" if data_dir is not None else "the default data folder"
        raise PjmBenchmarkError(
            f"{how} {path}: no such directory; it must hold the PJM files <REGION>_hourly.csv "
            f"({', '.join(REGIONS)}), as in the shared data set ../shared/data/PJM_hourly; "
            "pass --data-dir"
        )
    return path


def region_path(data_dir: Path, region: str) -> Path:
    path = data_dir / f"{region}_hourly.csv"
    if not path.is_file():
        have = sorted(r for r in REGIONS if (data_dir / f"{r}_hourly.csv").is_file())
        raise PjmBenchmarkError(
            f"{path.name} is not in {data_dir}; PJM regions there: "
            f"{', '.join(have) if have else 'none'}"
        )
    return path


def load_pjm(data_dir: Path, regions: Sequence[str], min_length: int = 2) -> LoadedData:
    """The regions' files combined into one dataset: series ids = region names, target `MW`."""
    sources = [
        (
            region_path(data_dir, region),
            LoadConfig(target=f"{region}_MW", series_id=region, min_length=min_length),
        )
        for region in regions
    ]
    return load_many(sources, target=TARGET)


# -----------------------------------------------------------------------------
# Running


def run_pjm_benchmark(
    config: PjmBenchmarkConfig,
    *,
    on_row: Callable[[Sequence[PjmRow]], None] | None = None,
    data: LoadedData | None = None,
) -> list[PjmRow]:
    """Every (horizon, model) of `config`, trained once over all regions and scored per region
    and overall; rows in (horizon, model, region..., overall) order. `on_row` gets each model's
    rows as they are made. `data`: already loaded series (tests); None loads the PJM files."""
    if data is None:
        data = load_pjm(resolve_data_dir(config.data_dir), config.regions)
    split = config.split_config()
    for frame in data.series.values():
        plan_split(len(frame), data.freq, split)  # every region long enough, before training
    fit_config = config.fit_config()
    bt = config.backtest_config()
    rows: list[PjmRow] = []
    for horizon in config.horizons:
        for model in config.models:
            model_config = config.model_config(model, horizon, data.freq)
            start = time.perf_counter()
            result = backtest(data, split, model_config, fit_config, bt)
            fitted = result.fits[0]
            val = score_val(data, split, fitted.model, bt)
            wall = round(time.perf_counter() - start, 2)
            tables = result.tables
            counts = result.forecasts.groupby("series")["origin"].nunique()
            metrics = ["mase", "mse", "mae", "smape"]
            by_region = {str(k): v for k, v in tables.by_series[metrics].to_dict("index").items()}
            by_region[OVERALL] = tables.overall[metrics].iloc[0].to_dict()
            made = []
            for region in [*data.series, OVERALL]:
                scores = by_region[region]
                made.append(
                    PjmRow(
                        dataset=DATASET,
                        region=region,
                        horizon=horizon,
                        model=model,
                        mase=float(scores["mase"]),
                        mse=float(scores["mse"]),
                        mae=float(scores["mae"]),
                        smape=float(scores["smape"]),
                        val_mase=val[region],
                        n_windows=int(counts.sum() if region == OVERALL else counts[region]),
                        epochs=len(fitted.history),
                        best_epoch=fitted.best_epoch,
                        wall_seconds=wall,
                        n_params=fitted.n_params,
                        lookback=config.lookback,
                    )
                )
            rows += made
            if on_row is not None:
                on_row(made)
    return rows


def score_val(
    data: LoadedData, split: SplitConfig, model: Forecaster, config: BacktestConfig
) -> dict[str, float]:
    """MASE of a fitted `model` on the val span of every series (and `overall`), with the test
    protocol's origins (`config.step` apart, aligned to the span's end) and MASE scale.

    The scaler is refitted on the train spans, exactly as `backtest` fitted the model's (same
    data, same split: the same statistics); nothing of the test span is read."""
    splits = split_data(data, split)
    scaler = StandardScaler.fit(splits)
    scaled = scaler.transform_splits(splits)
    c = model.config
    windows = WindowDataset.from_frames(
        {sid: s.val for sid, s in scaled.items()},
        lookback=c.lookback,
        horizon=c.horizon,
        stride=config.step,
        calendar_freq=data.freq if c.n_calendar else None,
    )
    device = next((str(t.device) for t in model.parameters()), "cpu")
    pred = predict(model, windows, batch_size=config.batch_size, device=device)
    scales = {
        (sid, column): seasonal_naive_scale(
            s.train[column].to_numpy(dtype=np.float64),
            config.season_length,
            filled_flags(data.filled, sid, column, s.train.index),
        )
        for sid, s in splits.items()
        for column in data.columns
    }
    forecasts = tidy_forecasts(windows, pred, c.quantiles, scaler, config, scales, data.filled)
    tables = metric_tables(forecasts, c.quantiles)
    mase = tables.by_series["mase"].to_dict()
    out = {str(sid): float(mase[sid]) for sid in splits}
    out[OVERALL] = float(tables.overall["mase"].iloc[0])
    return out


# -----------------------------------------------------------------------------
# Reporting


def _fmt(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.3f}"


def protocol_text(config: PjmBenchmarkConfig) -> str:
    years = "all rows" if config.train_years is None else f"the last {config.train_years:g} years"
    return (
        f"Per region: test = the last {config.test_days} days ({config.test_days * 24:,} rows), "
        f"val = the {config.val_days} days before, train = {years} before val; train-only "
        "StandardScaler per region; one global model over "
        f"{plural(len(config.regions), 'region')}; "
        f"look-back {config.lookback} h; training windows every {config.train_stride} h; one "
        f"test origin every {config.test_step} h (midnight), forecasts to the last test row; "
        f"MASE scaled by the in-sample MAE of the weekly seasonal naive (m = {WEEK}) on the "
        "train span; MSE, MAE (MW) and sMAPE (%) on the original scale."
    )


def beats_reference(rows: Sequence[PjmRow], horizon: int) -> tuple[bool, list[str]] | None:
    """(whether the uRNN's MASE is below weekly seasonal naive's on every region, the regions
    where it is not); None when the run lacks either model at `horizon`."""
    by_key = {(r.region, r.model): r for r in rows if r.horizon == horizon}
    regions = [r.region for r in rows if r.horizon == horizon and r.model == REFERENCE]
    regions = [r for r in regions if r != OVERALL]
    if not regions or not all((r, CHALLENGER) in by_key for r in regions):
        return None
    misses = [r for r in regions if not by_key[(r, CHALLENGER)].mase < by_key[(r, REFERENCE)].mase]
    return not misses, misses


def markdown_report(rows: Sequence[PjmRow], config: PjmBenchmarkConfig) -> str:
    """Per horizon: test MASE with regions down and models across (overall last), the verdict
    against weekly seasonal naive, and the val MASE the settings were chosen on."""
    how_many = plural(len(config.regions), "region")
    lines = [f"### PJM hourly demand, {how_many}, one global model", ""]
    lines += [protocol_text(config), ""]
    for horizon in dict.fromkeys(r.horizon for r in rows):
        own = [r for r in rows if r.horizon == horizon]
        models = list(dict.fromkeys(r.model for r in own))
        regions = list(dict.fromkeys(r.region for r in own))
        by_key = {(r.region, r.model): r for r in own}
        lines.append(f"#### H = {horizon} h: test MASE (m = {WEEK})")
        lines.append("")
        lines.append("| region | " + " | ".join(models) + " |")
        lines.append("|---|" + "---|" * len(models))
        for region in regions:
            cells = [
                by_key[(region, m)].mase if (region, m) in by_key else math.nan for m in models
            ]
            label = f"**{region}**" if region == OVERALL else region
            lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in cells) + " |")
        lines.append("")
        verdict = beats_reference(own, horizon)
        if verdict is None:
            lines.append(f"- {CHALLENGER} vs {REFERENCE}: not both in this run")
        else:
            ok, misses = verdict
            n = len([r for r in regions if r != OVERALL])
            if ok:
                lines.append(
                    f"- H = {horizon}: the uRNN beats weekly seasonal naive on every region "
                    f"({n}/{n}): YES"
                )
            else:
                detail = ", ".join(
                    f"{r} ({_fmt(by_key[(r, CHALLENGER)].mase)} vs "
                    f"{_fmt(by_key[(r, REFERENCE)].mase)})"
                    for r in misses
                )
                lines.append(
                    f"- H = {horizon}: the uRNN beats weekly seasonal naive on every region: NO "
                    f"({n - len(misses)}/{n}; misses: {detail})"
                )
        overall = {m: by_key[(OVERALL, m)] for m in models if (OVERALL, m) in by_key}
        lines.append(
            "- overall MSE / MAE (MW) / sMAPE (%): "
            + "; ".join(
                f"{m} {r.mse:,.0f} / {r.mae:,.1f} / {r.smape:.2f}" for m, r in overall.items()
            )
        )
        lines.append(
            "- val MASE (overall): "
            + ", ".join(f"{m} {_fmt(r.val_mase)}" for m, r in overall.items())
        )
        lines.append(
            "- epochs and wall time: "
            + ", ".join(
                f"{m}: {r.epochs} ep (best {r.best_epoch}), {r.wall_seconds:.0f} s"
                for m, r in overall.items()
            )
        )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def spans_table(data: LoadedData, config: PjmBenchmarkConfig) -> dict[str, dict[str, Any]]:
    """Per region: rows loaded and the first/last timestamp of train, val and test."""
    out: dict[str, dict[str, Any]] = {}
    for sid, frame in data.series.items():
        plan: SplitPlan = plan_split(len(frame), data.freq, config.split_config())
        index = frame.index
        out[sid] = {"rows": len(frame), "first": str(index[0]), "last": str(index[-1])}
        for part in ("train", "val", "test"):
            span = getattr(plan, part)
            out[sid][part] = [str(index[span.start]), str(index[span.stop - 1]), len(span)]
    return out


def results_json(
    rows: Sequence[PjmRow], config: PjmBenchmarkConfig, data: LoadedData | None = None
) -> dict[str, Any]:
    verdicts = {}
    for horizon in dict.fromkeys(r.horizon for r in rows):
        verdict = beats_reference(rows, horizon)
        if verdict is not None:
            verdicts[str(horizon)] = {"beats_on_every_region": verdict[0], "misses": verdict[1]}
    payload: dict[str, Any] = {
        "config": asdict(config),
        "protocol": {
            "text": protocol_text(config),
            "split": asdict(config.split_config()),
            "mase_season": WEEK,
            "test_step": config.test_step,
            "scale": "original (MW)",
            "reference": REFERENCE,
        },
        "urnn_beats_weekly_seasonal_naive": verdicts,
        "rows": [asdict(r) for r in rows],
    }
    if data is not None:
        payload["data"] = {"spans": spans_table(data, config), "report": data.report_lines()}
    return payload


def write_results(
    rows: Sequence[PjmRow],
    config: PjmBenchmarkConfig,
    output: str | Path,
    data: LoadedData | None = None,
) -> tuple[Path, Path]:
    """`results.json` and `results.md` (and `data_report.txt` with `data`) in `output`."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(results_json(rows, config, data), indent=2) + "\n")
    md_path.write_text(markdown_report(rows, config))
    if data is not None:
        (out / "data_report.txt").write_text("\n".join(data.report_lines()) + "\n")
    return json_path, md_path

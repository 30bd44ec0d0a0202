"""The ETT long-horizon benchmark: our forecasters beside the published rows, one command.

    config = EttBenchmarkConfig(datasets=("ETTh1",), setting="S", horizons=(96,))
    rows = run_ett_benchmark(config)               # one EttRow per (dataset, horizon, model)
    write_results(rows, config, "runs/ett")        # results.json + results.md
    print(markdown_report(rows, config))

Protocol (`/work/shared/data/README.md`, Informer/Autoformer/DLinear/PatchTST): train / val /
test = the first 12 / next 4 / next 4 months (`training.split`'s "ett" preset; val and test
frames start `lookback` rows earlier), a StandardScaler fitted on the train split only, sliding
test windows with stride 1, MSE and MAE on the z-normalised scale. "S": the target `OT` alone;
"M": all 7 channels, channel-independent (each channel its own univariate series, one shared
model), scored over every channel. Every model is trained (early-stopped on the val windows)
and scored in the same run, on the same windows, by `training.backtest.backtest` with
`scale="scaled"`; nothing here re-implements splitting, windowing, fitting or scoring.

`split="fractions"` cuts the same way by the ETT proportions (60 / 20 / 20 %) instead of
calendar months: for short files (the tests), never for reported numbers.

The published rows (`ANCHORS`) are copied from `/work/shared/ANCHORS.md`, section "Long-horizon
forecasting, ETT"; each table names its source. They are test MSE only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from models.forecaster import (
    FORECASTERS,
    Decoder,
    ForecasterConfig,
    ForecasterKind,
    Normalisation,
    n_calendar_features,
    segment_way_out,
)
from training.backtest import BacktestConfig, backtest
from training.benchmark_options import check_horizons, check_names
from training.data import LoadConfig, LoadedData, load_data
from training.fit import FitConfig, searches_decoder, stream_crop_error
from training.metrics import coverage_column
from training.paper_benchmark import DeviceName
from training.split import SplitConfig, SplitMethod
from training.validation import fixed_step
from urnn_forecast.field_types import not_one_of

Setting = Literal["S", "M"]
SETTINGS: tuple[Setting, ...] = ("S", "M")
DATASETS: tuple[str, ...] = ("ETTh1", "ETTh2", "ETTm1", "ETTm2")
HORIZONS: tuple[int, ...] = (96, 192, 336, 720)
MODELS: tuple[ForecasterKind, ...] = ("urnn", "lstm", "linear", "seasonal_naive", "repeat_last")
# Also accepted, not run by default: the streaming uRNN (models.streaming), scored from the whole
# history before each test origin rather than the look-back window (docs/streaming.md).
OPTIONAL_MODELS: tuple[ForecasterKind, ...] = ("urnn-stream",)
TARGET = "OT"
COVARIATES: tuple[str, ...] = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL")
# Look-back defaults: 336 for S (the DLinear paper's univariate table); 720 for M (the SegRNN
# paper's, where every model, the GRU included, reads the same 720 rows).
DEFAULT_LOOKBACK: dict[Setting, int] = {"S": 336, "M": 720}
ETT_FRACTIONS = (0.6, 0.2)  # train, val shares of split="fractions": 12 / 4 / 4 months
# Recurrent kinds read the look-back as segments of this many rows: 24 for S; 48 for M, which
# beat 24 on the ETTh1 M validation split at H = 96 and 336 (docs/benchmarks.md) and is also
# SegRNN's choice at look-back 720.
DEFAULT_SEGMENT: dict[Setting, int] = {"S": 24, "M": 48}
# Calendar features for the uRNN and the LSTM, chosen on the validation splits (2026-12-07,
# docs/benchmarks.md): in S they lowered the uRNN's val MSE in every cell of ETTh1 and ETTh2
# at three seeds (most on ETTh2 at long horizons); in M (channel-independent, seven channels)
# they raised it and the fit overfitted after one pass.
DEFAULT_CALENDAR: dict[Setting, bool] = {"S": True, "M": False}


# A recurrent model's decoder: one of models.forecaster.DECODERS, or "auto": fit one model per
# decoder and keep the one with the better val score (training.fit.FitConfig.decoder_search).
DecoderChoice = Literal["direct", "pmf", "auto"]
DECODER_CHOICES: tuple[DecoderChoice, ...] = ("direct", "pmf", "auto")


def default_decoder(kind: ForecasterKind) -> DecoderChoice:
    """The uRNN's is "auto": which decoder wins on validation depends on the data set and the
    horizon (SegRNN's parallel decoder won on ETTh1 M at H >= 336 and ETTh1 S at H = 720, lost
    on ETTh2 M at 336 and on every other univariate cell checked; docs/benchmarks.md), so the
    benchmark lets each run's validation split choose, as a user's training would. The LSTM
    keeps the direct head, which the decoder did not improve on the ETTh1 M validation split.
    """
    return "auto" if kind == "urnn" else "direct"


RECURRENT_KINDS: tuple[ForecasterKind, ...] = ("urnn", "lstm", "urnn-stream")
# The windowed recurrent models of the benchmark: the recipe options (decoder, channel
# embedding, linear skip, calendar features) apply to these; the others ignore them.
RECIPE_KINDS: tuple[ForecasterKind, ...] = ("urnn", "lstm")

# Data folders tried in order when none is given: the full shared copy (all four files), then
# the one bundled with the repository (ETTh1 only). Relative to the repository root.
_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIRS: tuple[Path, ...] = (
    _ROOT.parent / "shared" / "data" / "ETT-small",
    _ROOT / "data" / "ETT-small",
)


class EttBenchmarkError(ValueError):
    """A benchmark that cannot run as asked (unknown dataset, missing file, bad option)."""


# -----------------------------------------------------------------------------
# Published rows


@dataclass(frozen=True)
class AnchorTable:
    """Published test MSE per horizon of some models on one (dataset, setting)."""

    source: str
    lookback: int
    mse: Mapping[str, Mapping[int, float]]  # column label -> horizon -> MSE


def _per_horizon(*values: float) -> dict[int, float]:
    return dict(zip(HORIZONS, values, strict=True))


_S_SOURCE = (
    "Zeng et al., 'Are Transformers Effective for Time Series Forecasting?' (AAAI 2023), "
    "Table 1, univariate, look-back 336 (as collected in the project's ANCHORS.md)"
)
_S_NAIVE_SOURCE = "simple references, same protocol, look-back 336 (the project's ANCHORS.md)"
_M96_SOURCE = "published multivariate ETTh1 rows at look-back 96 (the project's ANCHORS.md)"
_M720_SOURCE = (
    "Lin et al., 'SegRNN' (2023), same look-back 720 for all models "
    "(as collected in the project's ANCHORS.md)"
)

# (dataset, setting) -> tables, in display order.
ANCHORS: dict[tuple[str, Setting], tuple[AnchorTable, ...]] = {
    ("ETTh1", "S"): (
        AnchorTable(
            _S_SOURCE,
            336,
            {
                "NLinear": _per_horizon(0.053, 0.069, 0.081, 0.080),
                "DLinear": _per_horizon(0.056, 0.071, 0.098, 0.189),
                "FEDformer": _per_horizon(0.079, 0.104, 0.119, 0.142),
                "Autoformer": _per_horizon(0.071, 0.114, 0.107, 0.126),
                "Informer": _per_horizon(0.193, 0.217, 0.202, 0.183),
            },
        ),
        AnchorTable(
            _S_NAIVE_SOURCE,
            336,
            {
                "repeat last (ref)": _per_horizon(0.069, 0.092, 0.113, 0.129),
                "seasonal naive 24 h (ref)": _per_horizon(0.071, 0.092, 0.111, 0.125),
            },
        ),
    ),
    ("ETTh2", "S"): (
        AnchorTable(
            _S_SOURCE,
            336,
            {
                "NLinear": _per_horizon(0.129, 0.169, 0.194, 0.225),
                "DLinear": _per_horizon(0.131, 0.176, 0.209, 0.276),
                "FEDformer": _per_horizon(0.128, 0.185, 0.231, 0.278),
                "Autoformer": _per_horizon(0.153, 0.204, 0.246, 0.268),
                "Informer": _per_horizon(0.213, 0.227, 0.242, 0.291),
            },
        ),
    ),
    ("ETTm1", "S"): (
        AnchorTable(
            _S_SOURCE,
            336,
            {
                "NLinear": _per_horizon(0.026, 0.039, 0.052, 0.073),
                "DLinear": _per_horizon(0.028, 0.045, 0.061, 0.080),
                "FEDformer": _per_horizon(0.033, 0.058, 0.084, 0.102),
            },
        ),
    ),
    ("ETTm2", "S"): (
        AnchorTable(
            _S_SOURCE,
            336,
            {
                "NLinear": _per_horizon(0.063, 0.090, 0.117, 0.170),
                "DLinear": _per_horizon(0.063, 0.092, 0.119, 0.175),
                "FEDformer": _per_horizon(0.067, 0.102, 0.130, 0.178),
            },
        ),
    ),
    ("ETTh1", "M"): (
        AnchorTable(
            _M96_SOURCE,
            96,
            {
                "SegRNN": _per_horizon(0.368, 0.408, 0.444, 0.446),
                "iTransformer": _per_horizon(0.386, 0.441, 0.487, 0.503),
                "PatchTST": _per_horizon(0.414, 0.460, 0.501, 0.500),
                "DLinear": _per_horizon(0.386, 0.437, 0.481, 0.519),
            },
        ),
        AnchorTable(
            _M720_SOURCE,
            720,
            {
                "SegRNN": _per_horizon(0.351, 0.392, 0.423, 0.466),
                "PatchTST": _per_horizon(0.375, 0.418, 0.462, 0.495),
                "DLinear": _per_horizon(0.381, 0.419, 0.454, 0.499),
                "GRU": _per_horizon(1.135, 1.123, 1.080, 1.089),
                "DeepAR": _per_horizon(1.097, 1.080, 1.076, 1.079),
            },
        ),
    ),
}


# -----------------------------------------------------------------------------
# Config and rows


@dataclass(frozen=True)
class EttBenchmarkConfig:
    """One benchmark run: every (dataset, horizon, model) combination, trained and scored."""

    datasets: tuple[str, ...] = ("ETTh1",)
    setting: Setting = "S"
    horizons: tuple[int, ...] = HORIZONS
    models: tuple[ForecasterKind, ...] = MODELS
    lookback: int | None = None  # None: DEFAULT_LOOKBACK[setting]
    data_dir: str | None = None  # None: the first of DEFAULT_DATA_DIRS that exists
    max_epochs: int = 20
    seed: int = 0
    device: DeviceName = "auto"
    split: SplitMethod = "ett"  # "fractions": 60/20/20 % (short files, tests)
    # uRNN / LSTM: what helper measurements on the ETTh1 validation split found good.
    hidden_size: int = 64
    segment_length: int | None = None  # None: DEFAULT_SEGMENT[setting]
    normalisation: Normalisation = "last"
    mse_weight: float = 1.0
    patience: int = 3
    # Train batches between two val checks (FitConfig.max_train_batches: each "epoch" is that
    # many random batches); None: one pass over the train windows. Early stopping and the
    # plateau schedule count these checks.
    train_batches_per_epoch: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    # On the recurrent encoders' final state: chosen on the ETTh1/ETTh2 validation splits
    # (bench/ett_tune.py; docs/benchmarks.md), where 0.3 beat 0 at most horizons.
    dropout: float = 0.3
    linear_skip: bool = False  # uRNN / LSTM: a linear map of the look-back added to the median
    # uRNN / LSTM: read calendar features (models.forecaster.calendar_features: hour of day,
    # day of week, day of year for hourly data) for the look-back and the horizon; None:
    # DEFAULT_CALENDAR[setting].
    calendar: bool | None = None
    # uRNN / LSTM: "direct" head, "pmf" = SegRNN's parallel decoder over output segments
    # (ForecasterConfig.decoder), or "auto" = both fitted, the better on val kept; None:
    # default_decoder's choice per kind (auto for the uRNN). channel_embedding (pmf, or auto's
    # pmf candidate) adds a learned embedding of each window's channel (n_channels = the file's
    # channels in M, 1 in S).
    decoder: DecoderChoice | None = None
    channel_embedding: bool = False
    # Members per trained model (urnn, lstm, linear), seeds seed .. seed + K - 1, quantiles
    # averaged (models.ensemble); every trained model of the run gets the same K.
    ensemble: int = 1
    # Each trained model is fitted and scored this many times, repeat r with seed
    # seed + r * ensemble (so no two repeats share a member's seed); the table shows the mean
    # and the range of the test MSE. The parameter-free baselines run once.
    repeats: int = 1
    # urnn-stream only: its training crops (training.fit.FitConfig's stream_* fields).
    stream_crop_length: int = FitConfig.stream_crop_length
    stream_batch_crops: int = FitConfig.stream_batch_crops
    stream_batches_per_epoch: int = FitConfig.stream_batches_per_epoch
    stream_lr_scale: float = FitConfig.stream_lr_scale

    def __post_init__(self) -> None:
        for name in ("datasets", "horizons", "models"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))
        if self.setting not in SETTINGS:
            raise EttBenchmarkError(not_one_of("setting", self.setting, SETTINGS))
        check_names("datasets", self.datasets, DATASETS, EttBenchmarkError)
        check_names("models", self.models, MODELS + OPTIONAL_MODELS, EttBenchmarkError)
        check_horizons(self.horizons, EttBenchmarkError)
        for name in ("ensemble", "repeats"):
            if getattr(self, name) < 1:
                raise EttBenchmarkError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.lookback is not None and self.lookback < 1:
            raise EttBenchmarkError(f"lookback must be >= 1; got {self.lookback}")
        if self.train_batches_per_epoch is not None and self.train_batches_per_epoch < 1:
            raise EttBenchmarkError(
                f"train_batches_per_epoch must be None or >= 1; got {self.train_batches_per_epoch}"
            )
        if self.decoder is not None and self.decoder not in DECODER_CHOICES:
            raise EttBenchmarkError(not_one_of("decoder", self.decoder, DECODER_CHOICES))
        if self.channel_embedding and self.decoder not in ("pmf", "auto"):
            raise EttBenchmarkError(
                f"channel_embedding needs decoder='pmf' or 'auto'; got decoder={self.decoder!r}"
            )
        recurrent = set(RECURRENT_KINDS) & set(self.models)
        if self.segment_length is not None and self.segment_length < 1:
            raise EttBenchmarkError(f"segment_length must be >= 1; got {self.segment_length}")
        if recurrent and self.resolved_lookback % self.resolved_segment_length:
            raise EttBenchmarkError(
                f"lookback {self.resolved_lookback} must be a multiple of the segment length "
                f"{self.resolved_segment_length} for {', '.join(sorted(recurrent))}: "
                f"{segment_way_out(self.resolved_lookback, self.resolved_segment_length)} "
                "(--lookback, --segment-length)"
            )
        if "urnn-stream" in self.models:
            # before any model of the run trains: fit_stream would refuse it only in its turn
            for horizon in self.horizons:
                stream = self.model_config("urnn-stream", horizon, "h")
                if (problem := stream_crop_error(stream, self.fit_config())) is not None:
                    raise EttBenchmarkError(problem)

    @property
    def resolved_lookback(self) -> int:
        return self.lookback if self.lookback is not None else DEFAULT_LOOKBACK[self.setting]

    @property
    def resolved_segment_length(self) -> int:
        if self.segment_length is not None:
            return self.segment_length
        return DEFAULT_SEGMENT[self.setting]

    @property
    def resolved_calendar(self) -> bool:
        return DEFAULT_CALENDAR[self.setting] if self.calendar is None else self.calendar

    def split_config(self) -> SplitConfig:
        train, val = ETT_FRACTIONS
        return SplitConfig(
            lookback=self.resolved_lookback,
            method=self.split,
            train_fraction=train,
            val_fraction=val,
        )

    def fit_config(self) -> FitConfig:
        return FitConfig(
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=self.patience,
            mse_weight=self.mse_weight,
            max_train_batches=self.train_batches_per_epoch,
            seed=self.seed,
            device=self.device,
            stream_crop_length=self.stream_crop_length,
            stream_batch_crops=self.stream_batch_crops,
            stream_batches_per_epoch=self.stream_batches_per_epoch,
            stream_lr_scale=self.stream_lr_scale,
        )

    def members_for(self, kind: str) -> int:
        """`ensemble` for the kinds that can be ensembled (trained, windowed), else 1."""
        cls = FORECASTERS[kind]
        return self.ensemble if cls.TRAINABLE and not cls.STREAMING else 1

    @property
    def repeat_seeds(self) -> tuple[int, ...]:
        """The first seed of each repeat, spaced so that no two repeats share a member's."""
        return tuple(self.seed + r * self.ensemble for r in range(self.repeats))

    def seeds_for(self, kind: ForecasterKind) -> tuple[int, ...]:
        """The seeds `kind` is fitted with: one per repeat for the trained kinds."""
        return self.repeat_seeds if FORECASTERS[kind].TRAINABLE else (self.seed,)

    def fit_config_for(self, kind: ForecasterKind, horizon: int) -> FitConfig:
        """fit_config() with decoder_search where `kind`'s decoder resolves to "auto"."""
        search = self.resolved_decoder(kind, horizon) == "auto"
        return replace(self.fit_config(), decoder_search=search)

    def model_config(self, kind: ForecasterKind, horizon: int, freq: str) -> ForecasterConfig:
        return ForecasterConfig(
            kind=kind,
            lookback=self.resolved_lookback,
            horizon=horizon,
            hidden_size=self.hidden_size,
            segment_length=self.resolved_segment_length,
            # The streaming kind fixes its statistics at first contact ("instance") and anchors
            # its output at the last value itself (models.streaming).
            normalisation="instance" if kind == "urnn-stream" else self.normalisation,
            season_length=rows_per_day(freq),
            dropout=self.dropout if kind in RECURRENT_KINDS else 0.0,
            linear_skip=self.linear_skip and kind in RECIPE_KINDS,
            decoder=self._model_decoder(kind, horizon),
            n_channels=self.n_channels if kind in RECIPE_KINDS else 0,
            ensemble=self.members_for(kind),
            n_calendar=n_calendar_features(freq) if self.reads_calendar(kind) else 0,
        )

    def reads_calendar(self, kind: str) -> bool:
        """Whether `kind` is fed calendar features in this run (the uRNN and the LSTM only: the
        linear model and the naive baselines read the target alone)."""
        return self.resolved_calendar and kind in RECIPE_KINDS

    def _model_decoder(self, kind: ForecasterKind, horizon: int) -> Decoder:
        """The model config's decoder; under "auto" the search replaces it with each candidate
        in turn (pmf where a channel embedding is asked for: it is the pmf decoder's input)."""
        decoder = self.resolved_decoder(kind, horizon)
        if decoder != "auto":
            return decoder
        return "pmf" if self.channel_embedding else "direct"

    def resolved_decoder(self, kind: ForecasterKind, horizon: int) -> DecoderChoice:
        if kind not in RECIPE_KINDS:
            return "direct"
        if self.decoder is not None:
            return self.decoder
        return default_decoder(kind)

    @property
    def n_channels(self) -> int:
        """ForecasterConfig.n_channels for the recurrent kinds: 0 without channel_embedding."""
        if not self.channel_embedding:
            return 0
        return 1 + len(COVARIATES) if self.setting == "M" else 1


@dataclass(frozen=True)
class EttRow:
    """One model's test score on one (dataset, setting, horizon); z-normalised scale."""

    dataset: str
    setting: str
    horizon: int
    model: str
    mse: float
    mae: float
    epochs: int  # epochs trained (1 for the parameter-free baselines)
    wall_seconds: float  # fit + scoring of this model
    lookback: int = 0
    best_epoch: int = 0
    n_params: int = 0
    n_windows: int = 0  # test windows (per channel in M)
    coverage_80: float = float("nan")  # share of test actuals inside the 0.1..0.9 interval
    decoder: str = ""  # the recurrent models' decoder ("" for the others)
    # Under decoder "auto": each candidate decoder's best val score (the row's is the lowest)
    decoder_val_scores: dict[str, float] = field(default_factory=dict)
    seed: int = 0  # the fit's seed (an ensemble's first member's)


def rows_per_day(freq: str) -> int:
    """Rows per day at `freq` (24 hourly, 96 at 15 minutes): the seasonal naive's season."""
    step = fixed_step(freq)
    if step is None:
        raise EttBenchmarkError(f"ETT data need a fixed step such as 'h' or '15min'; got {freq!r}")
    return max(1, int(pd.Timedelta(days=1) / step))


# -----------------------------------------------------------------------------
# Data


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise EttBenchmarkError(f"--data-dir {path}: no such directory")
        return path
    for candidate in DEFAULT_DATA_DIRS:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in DEFAULT_DATA_DIRS)
    raise EttBenchmarkError(f"no ETT data folder found (tried {tried}); pass --data-dir")


def available_datasets(data_dir: Path) -> list[str]:
    return sorted(p.stem for p in data_dir.glob("*.csv") if p.stem in DATASETS)


def dataset_path(data_dir: Path, dataset: str) -> Path:
    path = data_dir / f"{dataset}.csv"
    if not path.is_file():
        have = available_datasets(data_dir)
        raise EttBenchmarkError(
            f"{dataset}.csv is not in {data_dir}; available there: "
            f"{', '.join(have) if have else 'none'}"
            + ("" if have == list(DATASETS) else f" (all four: {DEFAULT_DATA_DIRS[0]})")
        )
    return path


def load_ett(path: Path, setting: Setting, min_length: int) -> LoadedData:
    covariates = COVARIATES if setting == "M" else ()
    config = LoadConfig(target=TARGET, covariates=covariates, min_length=min_length)
    return load_data(path, config)


# -----------------------------------------------------------------------------
# Running


def run_ett_benchmark(
    config: EttBenchmarkConfig, *, on_row: Callable[[EttRow], None] | None = None
) -> list[EttRow]:
    """Every (dataset, horizon, model) of `config`, trained and scored; rows in that order.
    Every dataset file is checked before the first model trains."""
    data_dir = resolve_data_dir(config.data_dir)
    paths = {d: dataset_path(data_dir, d) for d in config.datasets}
    lookback = config.resolved_lookback
    split = config.split_config()
    rows: list[EttRow] = []
    for dataset, path in paths.items():
        data = load_ett(path, config.setting, lookback + max(config.horizons))
        for horizon in config.horizons:
            for kind, seed in ((k, s) for k in config.models for s in config.seeds_for(k)):
                model = config.model_config(kind, horizon, data.freq)
                bt = BacktestConfig(
                    n_windows=None,
                    step=1,
                    scale="scaled",
                    channel_independent=config.setting == "M",
                    season_length=rows_per_day(data.freq),
                )
                start = time.perf_counter()
                fit_config = replace(config.fit_config_for(kind, horizon), seed=seed)
                result = backtest(data, split, model, fit_config, bt)
                wall = time.perf_counter() - start
                fitted = result.fits[0]
                overall = result.tables.overall.iloc[0]
                n_series = result.forecasts["series"].nunique()
                row = EttRow(
                    dataset=dataset,
                    setting=config.setting,
                    horizon=horizon,
                    model=kind,
                    mse=float(overall["mse"]),
                    mae=float(overall["mae"]),
                    epochs=len(fitted.history),
                    wall_seconds=round(wall, 2),
                    lookback=lookback,
                    best_epoch=fitted.best_epoch,
                    n_params=fitted.n_params,
                    n_windows=len(result.forecasts) // (horizon * max(n_series, 1)),
                    coverage_80=float(overall.get(coverage_column(0.1, 0.9), float("nan"))),
                    decoder=fitted.model.config.decoder if searches_decoder(model) else "",
                    decoder_val_scores=dict(fitted.decoder_scores),
                    seed=seed,
                )
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


# -----------------------------------------------------------------------------
# Reporting


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def markdown_report(rows: Sequence[EttRow], config: EttBenchmarkConfig) -> str:
    """One markdown table per dataset: horizons down, our models (MSE / MAE) and the published
    MSE of that dataset and setting across."""
    lines: list[str] = []
    split_note = (
        "ETT split 12/4/4 months"
        if config.split == "ett"
        else "fraction split 60/20/20 % (NOT the ETT protocol; not comparable to the papers)"
    )
    for dataset in dict.fromkeys(r.dataset for r in rows):
        own = [r for r in rows if r.dataset == dataset]
        models = list(dict.fromkeys(r.model for r in own))
        horizons = list(dict.fromkeys(r.horizon for r in own))
        anchors = ANCHORS.get((dataset, config.setting), ())
        by_key: dict[tuple[int, str], list[EttRow]] = {}
        for r in own:
            by_key.setdefault((r.horizon, r.model), []).append(r)
        lines.append(
            f"### {dataset}, setting {config.setting}, look-back {config.resolved_lookback}"
        )
        lines.append("")
        lines.append(
            f"Ours: test MSE / MAE on the z-normalised scale ({split_note}, train-only scaler, "
            "stride-1 test windows"
            + (", 7 channels channel-independent" if config.setting == "M" else ", target OT")
            + "). Published: test MSE."
        )
        lines.append("")
        header = ["H", *(f"{m} (ours{_ensemble_note(m, config)})" for m in models)]
        for table in anchors:
            suffix = f" (L={table.lookback})" if config.setting == "M" else ""
            header += [f"{name}{suffix}" for name in table.mse]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for horizon in horizons:
            cells = [str(horizon)]
            for m in models:
                cells.append(_cell(by_key.get((horizon, m), [])))
            for table in anchors:
                for values in table.mse.values():
                    v = values.get(horizon)
                    cells.append("-" if v is None else _fmt(v))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if anchors:
            lines += [f"- {source}" for source in dict.fromkeys(t.source for t in anchors)]
        else:
            lines.append(f"- no published rows for {dataset}, setting {config.setting}")
        if config.repeats > 1:
            lines.append(
                f"- trained models: the mean over {config.repeats} fits (seeds "
                f"{', '.join(map(str, config.repeat_seeds))}), [lowest - highest] test MSE"
            )
        epochs = ", ".join(
            f"{_label(r, config)}: {r.epochs} ep (best {r.best_epoch}), {r.wall_seconds:.0f} s"
            for r in own
        )
        lines.append(f"- epochs and wall time: {epochs}")
        readers = [m for m in models if config.reads_calendar(m)]
        if readers:
            lines.append(
                f"- calendar features (hour of day, day of week, day of year as sin/cos pairs, "
                f"for the look-back and the horizon) read by: {', '.join(readers)}"
            )
        searched = ", ".join(
            f"{_label(r, config)}: {r.decoder} ("
            + ", ".join(f"{k} {v:.4f}" for k, v in r.decoder_val_scores.items())
            + ")"
            for r in own
            if r.decoder_val_scores
        )
        if searched:
            lines.append(f"- decoder chosen on val (each candidate's best val score): {searched}")
        covered = ", ".join(
            f"{_label(r, config)}: {r.coverage_80:.2f}" for r in own if math.isfinite(r.coverage_80)
        )
        if covered:
            lines.append(
                f"- test coverage of the 80 % interval (0.1..0.9, nominal 0.80): {covered}"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _cell(rows: Sequence[EttRow]) -> str:
    """MSE / MAE of one (horizon, model): the mean over its fits, and the MSE's range when
    there are several."""
    if not rows:
        return "-"
    mse = sum(r.mse for r in rows) / len(rows)
    mae = sum(r.mae for r in rows) / len(rows)
    text = f"{_fmt(mse)} / {_fmt(mae)}"
    if len(rows) > 1:
        low, high = min(r.mse for r in rows), max(r.mse for r in rows)
        text += f" [{_fmt(low)} - {_fmt(high)}]"
    return text


def _label(row: EttRow, config: EttBenchmarkConfig) -> str:
    seed = f" seed {row.seed}" if config.repeats > 1 else ""
    return f"{row.model} H={row.horizon}{seed}"


def _ensemble_note(kind: str, config: EttBenchmarkConfig) -> str:
    if config.members_for(kind) > 1:
        return f", ensemble of {config.ensemble}"
    return ""


def results_json(rows: Sequence[EttRow], config: EttBenchmarkConfig) -> dict[str, Any]:
    return {
        "config": asdict(config),
        "protocol": {
            "split": config.split,
            "lookback": config.resolved_lookback,
            "scale": "z-normalised (train-only StandardScaler)",
            "test_stride": 1,
            "calendar_features": [m for m in config.models if config.reads_calendar(m)],
        },
        "rows": [asdict(r) for r in rows],
        "summary": summary_rows(rows),
    }


def summary_rows(rows: Sequence[EttRow]) -> list[dict[str, Any]]:
    """One row per (dataset, setting, horizon, model): mean MSE and MAE over its fits (the
    seeds of `repeats`), the MSE's range, the seeds."""
    groups: dict[tuple[str, str, int, str], list[EttRow]] = {}
    for r in rows:
        groups.setdefault((r.dataset, r.setting, r.horizon, r.model), []).append(r)
    return [
        {
            "dataset": dataset,
            "setting": setting,
            "horizon": horizon,
            "model": model,
            "mse": sum(r.mse for r in group) / len(group),
            "mae": sum(r.mae for r in group) / len(group),
            "mse_min": min(r.mse for r in group),
            "mse_max": max(r.mse for r in group),
            "seeds": [r.seed for r in group],
        }
        for (dataset, setting, horizon, model), group in groups.items()
    ]


def write_results(
    rows: Sequence[EttRow], config: EttBenchmarkConfig, output: str | Path
) -> tuple[Path, Path]:
    """`results.json` and `results.md` in `output` (created if needed)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(results_json(rows, config), indent=2) + "\n")
    md_path.write_text(markdown_report(rows, config))
    return json_path, md_path

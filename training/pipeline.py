"""The whole training pipeline in one call: the flow of ARCHITECTURE.md, as `urnn train` runs it.

    result = train_pipeline(TrainConfig(data="data/ETT-small/ETTh1.csv",
                                        load=LoadConfig(target="OT"),
                                        model=ForecasterConfig(lookback=96, horizon=24)),
                            settings)

load_data -> split by time (ETT preset or fractions) -> scaler fitted on train only (global
scope, so the served model can scale series it never saw) -> windows -> fit (per-epoch metrics to
MLflow) -> rolling-origin backtest on the test span (original units) -> one MLflow run with the
params, the dataset as an input, metric tables (CSV + JSON) and plots as artifacts -> the model
logged as a pyfunc and registered (alias `challenger`) -> promotion to `champion` if it beats
the current champion re-evaluated on the same backtest (training.registry.promote_if_better).
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from models.forecaster import (
    CHECKPOINT_CONFIG,
    FORECASTERS,
    MIN_WINDOW_STD,
    Forecaster,
    ForecasterConfig,
    calendar_periods,
    n_calendar_features,
)
from training import distributed, run_notes
from training.backtest import (
    BACKTEST_ROWS_NOTE,
    BacktestConfig,
    BacktestConfigError,
    BacktestResult,
    backtest,
    backtest_size_lines,
    check_backtest_room,
    write_backtest_tables,
    write_forecasts,
)
from training.contract import ForecastContract, same_steps
from training.data import LoadConfig, LoadedData, channels_as_series, load_data, naive_utc
from training.fit import (
    EpochRecord,
    FitConfig,
    FitResult,
    check_val_observed,
    decoder_search_error,
    fit,
    searches_decoder,
    stream_crop_error,
)
from training.metrics import (
    filled_note,
    metric_tables,
    quantile_column,
    unscaled_note,
    zero_width_note,
)
from training.mlflow_model import (
    CLOCK_LOCAL,
    CLOCK_UTC,
    ROW_COLUMNS,
    ForecastPredictor,
    calendar_clock,
    covariates_read,
    input_example,
    reference_statistics,
)
from training.realised_reference import KEY as REFERENCE_KEY
from training.realised_reference import reference_metrics
from training.registry import (
    DEFAULT_REGISTERED_NAME,
    Comparison,
    best_effort,
    edit_description,
    load_registered,
    log_forecaster,
    min_improvement_problem,
    promote_if_better,
)
from training.seasonality import Season, mase_season, model_season
from training.split import (
    CONSTANT_TOLERANCE,
    HELD_OUT_METHODS,
    CutSeriesError,
    ScalerScope,
    SeriesSplit,
    SplitConfig,
    SplitMethod,
    StandardScaler,
    constant_in_training,
    cut_series,
    cut_series_lines,
    deciding_parts,
    fraction_rows,
    rows_for_one_window_each,
    shortest_train_span,
    split_data,
)
from training.stream_fit import (
    UnobservedStreamValidationError,
    fit_stream,
    split_stream_flags,
    stream_series,
    stream_val_problem,
)
from training.validation import (
    WEEKDAYS,
    DataValidationError,
    InvalidOptionError,
    SeriesTooShortError,
    natural_key,
    plural,
    series_id_text,
    series_named,
    week_anchor,
    week_start_problem,
)
from training.windows import WindowSets, make_windows, window_config_for
from urnn_forecast import __version__
from urnn_forecast.checkpoints import remove_checkpoints, run_checkpoints
from urnn_forecast.field_types import not_one_of, shown
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import (
    TRAINING_EXPERIMENT_NOTE,
    experiment_problem,
    registered_name_problem,
    run_name_problem,
    start_run,
)

METRICS = ("mae", "mse", "rmse", "smape", "mase", "pinball_mean")
# What a training run can split by ("tail" needs row counts TrainConfig does not carry; it is
# the PJM benchmark's; "unseen" leaves nothing to train on).
TRAIN_SPLITS: tuple[SplitMethod, ...] = ("fractions", "ett", "series")


class TrainingCancelledError(RuntimeError):
    """`should_stop` answered True: the run ended before registering anything."""


class TrainingStoreError(RuntimeError):
    """The MLflow store refused what the run logs once the fit has ended (tables, plots, the
    model, its registration: a tracking server whose artifact store fails every upload):
    says so and where the fitted model is kept. MLflow's error alone was three chained
    tracebacks that named neither the run's state nor the weights under checkpoints/."""


class TrainingInterruptedError(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during the fit: says which run stopped and where its best weights so
    far lie (a checkpoint `urnn backtest --model` reads)."""


CHANNEL_EMBEDDING_REFUSAL = (
    "n_channels={n}: a channel embedding needs the channel id of every series, which the "
    "pyfunc and the forecast service do not take, so `urnn train` cannot log or serve it (it "
    "is for `urnn benchmark ett --setting M`); set n_channels to 0"
)


@dataclass(frozen=True)
class TrainConfig:
    data: str  # path of the history file
    load: LoadConfig
    model: ForecasterConfig = field(default_factory=ForecasterConfig)  # covariate count is set here
    fit: FitConfig = field(default_factory=FitConfig)
    split_method: SplitMethod = "fractions"
    train_fraction: float = 0.7
    val_fraction: float = 0.1
    # split "series": the units held out for test / validation, by id (SplitConfig)
    test_series: tuple[str, ...] = ()
    val_series: tuple[str, ...] = ()
    train_stride: int = 1  # rows between training windows
    backtest_step: int = 1  # rows between backtest origins
    backtest_windows: int | None = None  # origins per series (None: all that fit)
    # The data's season in rows: MASE's seasonal naive scale, and the seasonal_naive kind's
    # season unless its model config sets one. None: the frequency's (training.seasonality).
    season_length: int | None = None
    # Calendar features (hour of day, day of week, day of year as sin/cos pairs: known-future
    # covariates, models.forecaster.calendar_features) for the kinds that read them: the
    # model's n_calendar is set from the data's frequency once it is loaded (6 sub-daily, 4
    # daily, 2 weekly or coarser; `urnn train --calendar`). False: the model config's
    # n_calendar (0 by default: none), which must then match the frequency.
    calendar: bool = False
    # Every column of every series (target and covariates) its own univariate series
    # "<id>/<column>", one model over all of them (training.data.channels_as_series).
    channel_independent: bool = False
    # Forecasts floored at 0 (ForecasterConfig.non_negative): "auto" where the target holds no
    # negative value in any series' training and validation spans (the test span is not read),
    # "on" always, "off" never. The data report says which and why.
    non_negative: str = "auto"
    metric: str = "mae"  # backtest metric deciding promotion (lower is better)
    # How far below the champion's score the challenger's must be to replace it, as a share of
    # the champion's (0.02: 2 % lower). 0: any lower score. A margin keeps nightly retrains on
    # barely changed data from swapping the served model on noise.
    min_improvement: float = 0.0
    registered_name: str | None = DEFAULT_REGISTERED_NAME  # None: log but do not register
    promote: bool = True
    experiment: str = "forecast"
    run_name: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(not_one_of("metric", self.metric, METRICS))
        if self.non_negative not in NON_NEGATIVE:
            raise ValueError(not_one_of("non_negative", self.non_negative, NON_NEGATIVE))
        if (problem := min_improvement_problem(self.min_improvement)) is not None:
            raise ValueError(f"min_improvement {problem}")
        if (problem := decoder_search_error(self.model, self.fit)) is not None:
            raise ValueError(problem)
        if (problem := stream_crop_error(self.model, self.fit)) is not None:
            raise ValueError(problem)
        if self.split_method == "unseen":
            raise ValueError(
                "split 'unseen' scores every series and leaves none to train on: it is for "
                "urnn backtest of a trained model; to train, hold out units with split 'series'"
            )
        if self.split_method not in TRAIN_SPLITS:
            raise ValueError(not_one_of("split_method", self.split_method, TRAIN_SPLITS))
        for name in ("train_stride", "backtest_step"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.train_stride != 1 and FORECASTERS[self.model.kind].STREAMING:
            # ignored without a word, and recorded in config.json as if it had been used
            raise ValueError(
                f"train_stride (--train-stride) spaces training windows, and kind "
                f"{self.model.kind!r} trains on crops of each series' history "
                "(fit.stream_crop_length), not windows: leave it at 1"
            )
        windows = self.backtest_windows
        if windows is not None and (type(windows) is not int or windows < 1):
            raise ValueError(
                f"backtest_windows must be None (every origin) or an integer >= 1; got {windows!r}"
            )
        if (problem := experiment_problem(self.experiment)) is not None:
            raise ValueError(f"experiment {problem}")
        registered = self.registered_name
        if registered is not None and (not isinstance(registered, str) or not registered.strip()):
            raise ValueError(
                f"registered_name must be None (log without registering) or a non-empty name; "
                f"got {shown(registered)}"
            )
        if registered is not None and (problem := registered_name_problem(registered)):
            raise ValueError(f"registered_name {problem}")
        if self.run_name is not None and (problem := run_name_problem(self.run_name)):
            raise ValueError(f"run_name (None: named KIND-TARGET-L<lookback>-H<horizon>) {problem}")
        try:  # the fractions, checked where a job is submitted rather than where it runs
            split = self.split(1)
        except InvalidOptionError as error:
            raise ValueError(str(error)) from None
        object.__setattr__(self, "test_series", split.test_series)  # lists from JSON: tuples
        object.__setattr__(self, "val_series", split.val_series)
        if self.model.n_channels:  # found when the model was logged, after the whole fit
            raise ValueError("model " + CHANNEL_EMBEDDING_REFUSAL.format(n=self.model.n_channels))
        if self.split_method == "series" and FORECASTERS[self.model.kind].STREAMING:
            raise ValueError(
                f"split 'series' holds out whole series, and kind {self.model.kind!r} learns each "
                "series' state from its own history over time: split it by time (fractions, ett)"
            )
        clashing = [name for name in self.load.covariates if name in ROW_COLUMNS]
        if clashing and not self.channel_independent:  # there covariates are series
            raise ValueError(
                f"covariate {clashing[0]!r} has the name of a column of the registered model's "
                f"predict rows ({', '.join(ROW_COLUMNS)}), where it could not be told apart: "
                "rename the column in the data"
            )
        given = self.model.n_past_covariates
        if given and given != len(self.load.covariates):  # replaced once the data is read
            raise ValueError(
                f"model n_past_covariates is set from the covariates (load.covariates: "
                f"{len(self.load.covariates)} here); the model config gives {given}: leave it out"
            )
        if (problem := calendar_problem(self.calendar, self.model, self.load)) is not None:
            raise ValueError(problem)
        if self.season_length is not None and (
            type(self.season_length) is not int or self.season_length < 1
        ):
            raise ValueError(
                f"season_length must be None (the data's frequency decides) or an integer >= 1; "
                f"got {self.season_length!r}"
            )

    def split(self, lookback: int, horizon: int = 1) -> SplitConfig:
        return SplitConfig(
            lookback=lookback,
            horizon=horizon,
            method=self.split_method,
            train_fraction=self.train_fraction,
            val_fraction=self.val_fraction,
            test_series=self.test_series,
            val_series=self.val_series,
        )

    def backtest_config(self, season_length: int) -> BacktestConfig:
        """`season_length`: MASE's scale, as resolved for the data (`Prepared.mase_season`)."""
        return BacktestConfig(
            n_windows=self.backtest_windows,
            step=self.backtest_step,
            season_length=season_length,
            train_stride=self.train_stride,
            drop_short=self.load.on_short == "drop",
        )


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    registered_name: str | None
    version: str | None
    scores: dict[str, float]  # the backtest's overall metrics, original units
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    promoted: bool
    reason: str
    best_epoch: int
    epochs: int  # the kept model's (every member's, for an ensemble)
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    # Under decoder_search: each decoder's best val score; the model's decoder is the lowest's
    decoder_scores: Mapping[str, float] = field(default_factory=dict)
    decoder: str = ""  # the trained model's decoder ("" for kinds without one)
    ensemble: int = 1  # members of the trained model (models.ensemble); 1: a single model
    # every epoch run, the decoders a search did not keep included (FitResult.epochs_trained)
    epochs_trained: int = 0
    trained: bool = True  # False: a parameter-free baseline, whose one "epoch" trains nothing
    mase_season: str = ""  # "<rows> rows (<why>)": the seasonal naive scale of the MASE
    # what the scores left out, if anything: series from the MASE (a constant training span),
    # values whose actual the loader filled in
    mase_note: str = ""
    # config.json's `realised_reference` (training.realised_reference): the backtest scored as
    # the service scores a served forecast; None where no step could be scored so
    realised_reference: Mapping[str, Any] | None = None


def calendar_problem(calendar: object, model: ForecasterConfig, load: LoadConfig) -> str | None:
    """Why TrainConfig.calendar cannot apply to this model and data, or None: found where the
    config is built (a job's at submission), not after the data is read."""
    if type(calendar) is not bool:
        return f"calendar must be true or false; got {calendar!r}"
    if not calendar:
        return None
    if not FORECASTERS[model.kind].SUPPORTS_CALENDAR:
        readers = ", ".join(k for k, cls in FORECASTERS.items() if cls.SUPPORTS_CALENDAR)
        return (
            f"calendar features are read by the kinds {readers}; kind {model.kind!r} forecasts "
            "from the target alone"
        )
    if model.n_calendar:
        return (
            f"calendar sets the model's n_calendar from the data's frequency; the model config "
            f"also gives n_calendar={model.n_calendar}: give one of them"
        )
    if load.step_origin is not None:
        return (
            "calendar features read the hour, weekday and day of year of real dates; the "
            "timestamps of step numbers (step_origin) have none"
        )
    return None


def resolve_model_config(
    model: ForecasterConfig,
    data: LoadedData,
    season_length: int | None = None,
    *,
    steps: bool = False,
    calendar: bool = False,
) -> ForecasterConfig:
    """Feed the covariates to kinds that read them (others see the target only); give the
    seasonal naive kind its season: the model config's, else `season_length` (the data's, as
    the user set it), else the frequency's (training.seasonality); with `calendar`
    (TrainConfig.calendar), give the model the frequency's calendar features (n_calendar:
    models.forecaster.n_calendar_features)."""
    reads = FORECASTERS[model.kind].SUPPORTS_PAST_COVARIATES
    model = replace(model, n_past_covariates=len(data.covariates) if reads else 0)
    if calendar:
        model = replace(model, n_calendar=n_calendar_features(data.freq))
    if model.kind == "seasonal_naive":
        explicit = model.season_length if model.season_length is not None else season_length
        season = model_season(explicit, data.freq, model.lookback, steps=steps)
        model = replace(model, season_length=season.rows)
    return model


NON_NEGATIVE = ("auto", "on", "off")


# At most this many negative values turning "auto"'s floor off and the report suggests they
# may be glitches (a demand or temperature series with a stray -1e6 reading).
FEW_NEGATIVES = 10


@dataclass(frozen=True)
class Negatives:
    """The observed target values of the training and validation spans that are below 0, as
    "auto" reads them: how many of how many, and the first (series, timestamp, value)."""

    count: int
    observed: int
    first: tuple[str, Any, float] | None = None

    def describe(self) -> str:
        """'1 negative value of 3,200 observed (series 's' at 2016-08-11 16:00:00, -1e+06)':
        a single glitch turns the floor off, so the report names it."""
        said = f"{plural(self.count, 'negative value')} of {self.observed:,} observed"
        if self.first is None:
            return said
        sid, stamp, value = self.first
        which = "the first: " if self.count > 1 else ""
        return f"{said} ({which}{series_named(sid)} at {stamp}, {value:.6g})"


def negative_targets(splits: Mapping[str, SeriesSplit], data: LoadedData) -> Negatives:
    """The observed target values below 0 in every series' training and validation spans.
    Values the loader filled in are not read: one interpolated at the val/test border leans
    on the test span's first observed value (a negative one there turned the floor off)."""
    count = observed = 0
    first: tuple[str, Any, float] | None = None
    for series_id, split in splits.items():
        filled = data.filled.get(series_id)
        if filled is not None and not column_values(filled, data.target, bool).any():
            filled = None  # most series: nothing filled, nothing to look up (5 s at 2,000)
        # the val span's first `lookback` rows are context, train rows: each row once (in
        # numpy: a concat and a duplicate check per series took 3 ms, 6 s at 2,000 series;
        # the timestamps of those rows are joined only where they are read)
        train, val = split.train, split.val
        after = (
            int(val.index.values.searchsorted(train.index.values[-1], side="right"))
            if len(train)
            else 0
        )
        values = np.concatenate(
            [
                column_values(train, data.target, np.float64),
                column_values(val, data.target, np.float64)[after:],
            ]
        )
        keep = ~np.isnan(values)
        if filled is not None and len(values):
            index = train.index.append(val.index[after:])
            keep &= ~filled[data.target].loc[index].to_numpy(dtype=bool)
        below = keep & (values < 0)
        observed += int(keep.sum())
        count += int(below.sum())
        if first is None and below.any():
            at = int(np.argmax(below))
            stamp = train.index[at] if at < len(train) else val.index[after + at - len(train)]
            first = (series_id, stamp, float(values[at]))
    return Negatives(count=count, observed=observed, first=first)


def column_values(frame: pd.DataFrame, column: str, dtype: Any) -> np.ndarray:
    """`frame[column].to_numpy(dtype=dtype)` without the Series in between: a quarter of the
    time on a short frame (8 us of 30), read per part of every series of a fleet."""
    values: np.ndarray = frame.to_numpy(dtype=dtype)[:, frame.columns.get_loc(column)]
    return values


def floors_at_zero(
    choice: str,
    model: ForecasterConfig,
    splits: Mapping[str, SeriesSplit],
    data: LoadedData,
    negatives: Negatives | None = None,
) -> bool:
    """TrainConfig.non_negative resolved: "on" / "off" as said; "auto": the model config's own
    true, else whether no series' training or validation span holds a negative observed target
    (and one holds a value at all; `negative_targets`, read here unless `negatives` gives it).
    A seasonal naive forecast repeats observed values: floored or not, the same."""
    if choice != "auto":
        return choice == "on"
    if model.non_negative:
        return True
    if negatives is None:
        negatives = negative_targets(splits, data)
    return bool(negatives.observed) and not negatives.count


def non_negative_lines(
    choice: str,
    model: ForecasterConfig,
    target: str,
    *,
    asked: bool = False,
    negatives: Negatives | None = None,
) -> list[str]:
    """The data report's line on the floor at 0, where forecasts have one. `asked`: the
    model config given (TrainConfig.model) already said non_negative true, which "auto" keeps
    without reading the data: the line names that, not the data (it claimed "no negative
    value" of a target full of them). `negatives` (`negative_targets`): what turned "auto"'s
    floor off, named; the line said only "holds negative values" where one glitch of -1e6
    among 3,200 readings of a temperature had done it."""
    if not model.non_negative:
        if choice == "auto":
            if negatives is None or not negatives.count:
                return [
                    f"forecasts of {target!r} are not floored at 0: its training or validation "
                    "span holds negative values"
                ]
            few = negatives.count <= FEW_NEGATIVES
            return [
                f"forecasts of {target!r} are not floored at 0: its training and validation "
                f"spans hold {negatives.describe()}"
                + ("; if they are glitches, fix the data or pass --non-negative on" if few else "")
            ]
        return []
    if choice != "auto":
        why = "non_negative 'on'"
    elif asked:
        why = "the model config says non_negative true (the data was not read for it)"
    else:
        why = f"{target!r} holds no negative value in any series' training and validation spans"
    return [
        f"forecasts (every quantile) are floored at 0: {why} (--non-negative off keeps "
        "negative forecasts)"
    ]


# Fewer training windows than this and the data report says so, with the ways to get more.
FEW_TRAIN_WINDOWS = 200


def window_lines(sets: WindowSets, stride: int, model: ForecasterConfig) -> list[str]:
    """How many windows the model trains and early-stops on: at a long look-back (or a large
    --train-stride) they get few, and nothing said how few. Streaming kinds train on crops."""
    if FORECASTERS[model.kind].STREAMING or not FORECASTERS[model.kind].TRAINABLE:
        return []
    n_train, n_val = len(sets.train), len(sets.val)
    every = "every row" if stride == 1 else f"one every {stride:,} rows, --train-stride"
    line = (
        f"windows of {model.lookback:,} + {model.horizon:,} rows: {n_train:,} to train on "
        f"({every}), {n_val:,} to early-stop on"
    )
    if n_train < FEW_TRAIN_WINDOWS:
        line += (
            "; few to train on: a shorter look-back or horizon, a smaller --train-stride or a "
            "longer history gives more"
        )
    return [line]


def overall_scores(result: BacktestResult) -> dict[str, float]:
    row = result.tables.overall.iloc[0]
    return {str(k): float(v) for k, v in row.items() if k != "n"}


def train_pipeline(
    config: TrainConfig,
    settings: Settings,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_data_report: Callable[[list[str]], None] | None = None,
    on_run_started: Callable[[str], None] | None = None,
    on_registering: Callable[[], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Run the whole pipeline. `should_stop` (cancellation by an in-process caller; the job
    worker stops its training child instead) is polled before every training batch; when it
    answers True the pipeline raises TrainingCancelledError instead of backtesting and
    registering (the MLflow run ends as failed). `on_data_report` receives the loader's
    decisions in brief (sorting, duplicates, filled gaps, the MASE season) once the data is ready,
    so a command can show them before a long fit rather than only in the run's artifacts.
    `on_run_started` receives the MLflow run id as soon as the run exists (`urnn train
    --started-json` writes it for the job worker, so a cancelled or lost attempt still points
    at its run). `on_registering` is called once the fit and the backtest are done, just
    before the model is logged and registered: from there on the job worker lets the run
    finish rather than stop it half-registered. `on_epoch` receives every epoch's record (the
    CLI prints one line per epoch, so a long fit is not silent)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    def check_cancelled(where: str) -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelledError(f"cancelled {where}")

    check_cancelled("before loading the data")
    prepared = prepare_training(config)
    load, data, model_config = prepared.load, prepared.data, prepared.model_config
    split_config, splits, scaler = prepared.split_config, prepared.splits, prepared.scaler
    sets, season = prepared.sets, prepared.mase_season
    backtest_config, dropped = prepared.backtest_config, prepared.backtest_dropped
    mase_line = f"MASE season: {season.describe()}"
    split_lines = time_split_lines(splits, split_config.method) + held_out_lines(splits)
    split_lines += cut_series_lines(data, splits, split_config)
    split_lines += lookahead_fill_lines(data, splits)
    split_lines += constant_lines(splits, data.target, scaler.scope)
    split_lines += spike_lines(splits, data.target)
    split_lines += stuck_run_lines(data, splits, data.target)
    split_lines += flattened_window_lines(splits, scaler, data.target, model_config)
    split_lines += unread_covariate_lines(data, model_config) + dropped
    split_lines += calendar_lines(data, model_config)
    split_lines += non_negative_lines(
        config.non_negative,
        model_config,
        data.target,
        asked=config.model.non_negative,
        negatives=prepared.negatives,
    )
    split_lines += window_lines(sets, config.train_stride, model_config)
    split_lines += backtest_size_lines(splits, model_config.horizon, backtest_config, data.units)
    data_report = [*data.report_lines(), *split_lines, mase_line]
    if on_data_report is not None:
        on_data_report([*data.brief_report_lines(), *split_lines, mase_line])

    ranks = distributed.active()
    if ranks is not None and FORECASTERS[model_config.kind].STREAMING:
        raise ValueError(
            f"kind {model_config.kind!r} trains in one process; run it without torchrun/--nproc"
        )
    tags = {
        "kind": model_config.kind,
        "target": data.target,
        # absolute: a relative path says nothing once the run is read from elsewhere
        "source": ", ".join(str(Path(part).resolve()) for part in data.source.split(", ")),
        "processes": str(1 if ranks is None else ranks.world_size),  # DDP under torchrun
    }
    what = run_notes.summary(
        model_config,
        source=data.source,
        target=data.target,
        covariates=data.covariates,
        n_series=len(data.series),
        freq=data.freq,
    )
    metrics_note = run_notes.metrics_note(
        trains=FORECASTERS[model_config.kind].TRAINABLE,
        scope=scaler.scope,
        monitor=config.fit.monitor,
        mse_weight=config.fit.mse_weight,
        ensemble=model_config.ensemble,
        decoder_search=config.fit.decoder_search,
    )
    tags[run_notes.NOTE_TAG] = run_notes.run_description(what, metrics_note)
    name = config.run_name or run_notes.run_name(model_config, data.target)
    checkpoints: Path | None = None  # set once the run exists
    try:
        with start_run(
            config.experiment,
            settings,
            run_name=name,
            tags=tags,
            experiment_description=TRAINING_EXPERIMENT_NOTE,
        ) as run:
            run_id = run.info.run_id
            if on_run_started is not None:
                on_run_started(run_id)
            mlflow.log_params(
                _params(config, load, model_config, split_config, backtest_config), run_id=run_id
            )
            mlflow.set_tag("mase_season", season.describe())
            mlflow.log_input(_dataset(config.data, data), context="training")

            def on_epoch_end(record: EpochRecord) -> None:
                # Under decoder_search each candidate's curves are their own series ("pmf/val_mse").
                prefix = "" if record.candidate is None else f"{record.candidate}/"
                values = {
                    f"{prefix}{run_notes.EPOCH_METRIC_KEYS.get(k, k)}": float(v)
                    for k, v in asdict(record).items()
                    if k not in ("epoch", "candidate")
                }
                finite = {k: v for k, v in values.items() if math.isfinite(v)}
                mlflow.log_metrics(finite, step=record.epoch, run_id=run_id)
                if on_epoch is not None:
                    on_epoch(record)

            meta = model_meta(
                data,
                load,
                split_config,
                model_config,
                scaler,
                splits_train(splits),
                season_length=config.season_length,
                fit_config=config.fit,
                train_stride=config.train_stride,
                channel_independent=config.channel_independent,
                seen_until=seen_until(data, splits),
            )
            # The best weights so far, while the fit runs (training.fit.BestSoFar): what an
            # interrupted or failed run leaves; removed once the model is logged.
            checkpoints = run_checkpoints(settings.var_dir, run_id)
            fitted = _fit_model(
                config, model_config, splits, scaler, sets, data, checkpoints, meta,
                on_epoch_end, should_stop,
            )  # fmt: skip
            if fitted.stop_reason == "cancelled":
                raise TrainingCancelledError(f"cancelled during training (run {run_id})")
            fit_summary = {
                "best_epoch": fitted.best_epoch,
                "n_params": fitted.n_params,
                "fit_seconds": fitted.wall_seconds,
            }
            if math.isfinite(fitted.best_score):  # no val windows: nothing was monitored
                fit_summary[run_notes.best_val_key(config.fit.monitor)] = fitted.best_score
            mlflow.log_metrics(fit_summary, run_id=run_id)
            mlflow.set_tag("stop_reason", fitted.stop_reason)
            mlflow.set_tag("device", fitted.device)  # fit.device may say "auto"
            model_config = fitted.model.config  # under decoder_search: the chosen decoder's
            if fitted.decoder_scores:
                # The decoder the validation split chose, beside each candidate's best val score.
                mlflow.set_tag("decoder", model_config.decoder)
                mlflow.log_metrics(
                    {f"decoder_score_{k}": v for k, v in fitted.decoder_scores.items()},
                    run_id=run_id,
                )
            with tempfile.TemporaryDirectory(prefix="urnn-train-") as tmp:
                out = Path(tmp)
                result = backtest(
                    data,
                    split_config,
                    model_config,
                    config.fit,
                    backtest_config,
                    model=fitted.model,
                    scaler=scaler,
                    plot_dir=out / "plots",
                )
                scores = overall_scores(result)
                mlflow.log_metrics(
                    {f"backtest_{k}": v for k, v in scores.items() if math.isfinite(v)},
                    run_id=run_id,
                )
                write_backtest_tables(result, out / "metrics")
                if result.realised_reference is not None:
                    # the service's realised MASE by lead, as this backtest scored it: what
                    # UrnnRealisedErrorAboveBacktest compares the served version with
                    meta = {**meta, REFERENCE_KEY: result.realised_reference}
                    mlflow.log_metrics(reference_metrics(result.realised_reference), run_id=run_id)
                (out / "data_report.txt").write_text("\n".join(data_report) + "\n")
                mlflow.log_artifacts(str(out / "metrics"), artifact_path="metrics", run_id=run_id)
                mlflow.log_artifacts(str(out / "plots"), artifact_path="plots", run_id=run_id)
                mlflow.log_artifact(str(out / "data_report.txt"), run_id=run_id)

            first_id = next(iter(data.series))
            example = input_example(
                data.series[first_id], data.target, data.covariates, model_config.lookback, first_id
            )
            if on_registering is not None:
                on_registering()
            logged = log_forecaster(
                fitted.model, meta, example, registered_name=config.registered_name
            )
            remove_checkpoints(checkpoints)  # the logged model is the one kept
    except KeyboardInterrupt:
        if checkpoints is None:
            raise
        said = _interrupted(checkpoints, model_config)
        with best_effort("the interrupted run's description"):  # the UI says it too
            client = mlflow.MlflowClient()
            note = run_notes.run_description(what, metrics_note, outcome=f"Interrupted: {said}.")
            client.set_tag(checkpoints.name, run_notes.NOTE_TAG, note)
        raise TrainingInterruptedError(said) from None
    except MlflowException as error:
        if checkpoints is None:  # before the fit: nothing trained to point at
            raise
        text = str(error.message).strip()
        said = text.splitlines()[0] if text else type(error).__name__
        kept = _interrupted(checkpoints, model_config, ended="FAILED")
        raise TrainingStoreError(
            f"the MLflow tracking store did not take the run's results ({said}); {kept}"
        ) from error

    challenger_score = scores[config.metric]
    result_fields: dict[str, Any] = {
        "champion_version": None,
        "champion_score": None,
        "promoted": False,
        "reason": "not registered",
    }
    if logged.registered_name is not None and logged.version is not None:
        client = mlflow.MlflowClient()

        compared: dict[str, Comparison | None] = {}

        def champion_score(version: str) -> Comparison | None:
            compared[version] = compare_registered(
                f"models:/{logged.registered_name}/{version}",
                data,
                config,
                backtest_config,
                challenger=result,
                challenger_config=model_config,
            )
            return compared[version]

        # the summary at registration, before the alias can move; the decision above it after
        # (below a line a replacement may have written first meanwhile)
        registered, version = logged.registered_name, logged.version
        edit_description(client, registered, version, lambda _: run_notes.capped(what))
        decision = promote_if_better(
            client,
            logged.registered_name,
            logged.version,
            challenger_score,
            champion_score,
            metric=config.metric,
            promote=config.promote,
            min_improvement=config.min_improvement,
        )
        _log_champion_forecasts(client, run_id, compared)
        result_fields = {
            "champion_version": decision.champion_version,
            "champion_score": decision.champion_score,
            "promoted": decision.promoted,
            "reason": decision.reason,
        }
        outcome = run_notes.decision_line(
            name=logged.registered_name,
            version=logged.version,
            reason=decision.reason,
            promoted=decision.promoted,
        )
        edit_description(
            client, registered, version, lambda said: run_notes.above_summary(said, what, outcome)
        )
        with best_effort("the run's description"):
            note = run_notes.run_description(what, metrics_note, outcome=outcome)
            client.set_tag(run_id, run_notes.NOTE_TAG, note)
            tags = run_notes.outcome_tags(registered, decision.version, decision.decision)
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
    return TrainResult(
        run_id=run_id,
        model_uri=logged.model_uri,
        registered_name=logged.registered_name,
        version=logged.version,
        scores=scores,
        challenger_score=challenger_score,
        best_epoch=fitted.best_epoch,
        epochs=len(fitted.history),
        epochs_trained=fitted.epochs_trained,
        trained=FORECASTERS[model_config.kind].TRAINABLE,
        decoder_scores=dict(fitted.decoder_scores),
        decoder=model_config.decoder if searches_decoder(model_config) else "",
        ensemble=model_config.ensemble,
        mase_season=season.describe(),
        mase_note="\n".join(
            note
            for note in (
                unscaled_note(result.forecasts),
                filled_note(result.forecasts),
                zero_width_note(result.forecasts, model_config.quantiles),
            )
            if note
        ),
        realised_reference=result.realised_reference,
        tables={
            "overall": result.tables.overall,
            "by_step": result.tables.by_step,
            "by_series": result.tables.by_series,
        },
        **result_fields,
    )


class Prepared(NamedTuple):
    load: LoadConfig
    data: LoadedData
    model_config: ForecasterConfig
    split_config: SplitConfig
    splits: dict[str, SeriesSplit]
    scaler: StandardScaler
    sets: WindowSets
    mase_season: Season
    backtest_config: BacktestConfig
    # series left out of the backtest for want of room (on_short='drop'), one line each
    backtest_dropped: list[str]
    # the target's negative observed values in training and validation (the floor's "auto")
    negatives: Negatives


def prepare_training(config: TrainConfig) -> Prepared:
    """load -> split by time -> scaler on train -> windows -> room for the backtest: what
    every rank trains on, and every check of the data a run makes before its fit. Job
    submission runs it too (jobs.spec.check_job_data), so that a job the data cannot train
    is refused then, with the message the run would fail with."""
    load = config.load
    lookback, horizon = config.model.lookback, config.model.horizon
    # A window in every part of the split is the floor: a smaller min_length of the user's
    # (an audit's min_length=5) let short series through to fail in the split, unnamed, where
    # on_short='drop' should have left them out. A larger one stands.
    rows = rows_for_one_window_each(config.split(lookback), horizon)
    derived = load.min_length < rows
    if derived:
        load = replace(load, min_length=rows)
    if load.on_long_gap == "split" and load.min_segment_length is None:
        # a segment of a series cut at a long gap holds the parts whose borders fall in it
        # (the split draws them over the series' segments together: training.split
        # plan_cut_series), so it needs one window, not one of each part; whole series keep
        # the floor above
        load = replace(load, min_segment_length=min(lookback + horizon, load.min_length))
    try:
        data = load_data(config.data, load)
    except SeriesTooShortError as error:
        if not derived:
            raise
        raise SeriesTooShortError(
            f"{error}; {_too_short_way_out(config, lookback, horizon, load.min_length, error)}",
            longest=error.longest,
            freq=error.freq,
            series=error.series,
        ) from None
    if config.channel_independent:
        data = channels_as_series(data)
    steps = load.step_origin is not None
    model_config = resolve_model_config(
        config.model, data, config.season_length, steps=steps, calendar=config.calendar
    )
    split_config = config.split(model_config.lookback, model_config.horizon)
    cut = cut_series(data) if split_config.method not in HELD_OUT_METHODS else {}
    if cut and FORECASTERS[model_config.kind].STREAMING:
        unit = next(iter(cut))
        raise CutSeriesError(
            f"{series_named(unit)} was cut at a long gap into {len(cut[unit])} segments "
            f"(on_long_gap='split'), and kind {model_config.kind!r} learns each series' state "
            "from its whole history, which a cut series does not have in one stretch: fill "
            "the gap (max_gap, --max-gap, at least its length), or train a windowed kind "
            "(urnn, lstm)"
        )
    splits = split_data(data, split_config)
    negatives = negative_targets(splits, data)  # read once: the floor and the data report
    floored = floors_at_zero(config.non_negative, model_config, splits, data, negatives)
    model_config = replace(model_config, non_negative=floored)
    season = data_mase_season(config, data, split_config)
    scaler = StandardScaler.fit(splits, scope="global")
    window_config = window_config_for(model_config, freq=data.freq, stride=config.train_stride)
    sets = make_windows(splits, scaler, window_config, freq=data.freq, filled=data.filled)
    if FORECASTERS[model_config.kind].STREAMING:
        # it scores its own val origins from the whole history (training.stream_fit), not
        # the windows: the check reads what it scores
        check_stream_val_observed(splits, data.filled, model_config, load)
    else:
        check_val_observed(sets.val, how=load.fill_said())
    backtest_config = config.backtest_config(season.rows)
    # before the fit: a backtest with no room for its windows used to fail after it
    dropped = check_backtest_room(splits, model_config.horizon, backtest_config, data.units)
    return Prepared(
        load,
        data,
        model_config,
        split_config,
        splits,
        scaler,
        sets,
        season,
        backtest_config,
        dropped,
        negatives,
    )


def check_stream_val_observed(
    splits: Mapping[str, SeriesSplit],
    filled: Mapping[str, pd.DataFrame],
    model_config: ForecasterConfig,
    load: LoadConfig,
) -> None:
    """`training.fit.check_val_observed` for a streaming kind: UnobservedStreamValidationError
    where the loader filled in every target value of the val origins the streaming fit scores
    (`training.stream_fit.stream_val_problem`, which `fit_stream` also applies)."""
    problem = stream_val_problem(
        split_stream_flags(splits, filled),
        model_config.lookback,
        model_config.horizon,
        how=load.fill_said(),
    )
    if problem is not None:
        raise UnobservedStreamValidationError(problem)


# The split's shares that a too-short error can blame on the user: the fraction sizing the
# part that decides the floor (training.split.deciding_parts), when it is below the default.
FRACTION_OPTIONS = {"train": "train_fraction", "val": "val_fraction"}


def too_short_fraction(config: TrainConfig, longest: int | None = None) -> str | None:
    """The field, train_fraction or val_fraction, when the user's own fraction, below its default
    (TrainConfig's), is what makes its part of the split need more rows than one window
    (a train_fraction of 0.001 needs 1,000 windows' rows), or when the two leave the longest
    series (`longest` rows, if known) a test span shorter than the horizon (the one the user
    raised, val_fraction first: no look-back can lengthen the test span); None when the
    look-back and the horizon decide (or the user's min_length, or a split other than
    "fractions")."""
    lookback, horizon = config.model.lookback, config.model.horizon
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    if longest is not None and short_test_span(config.split(lookback), horizon, longest):
        # the user's val_fraction at or below its default: the train_fraction is what they raised
        raised_val = config.val_fraction > TrainConfig.val_fraction
        return "val_fraction" if raised_val else "train_fraction"
    for part in deciding_parts(config.split(lookback), horizon):
        name = FRACTION_OPTIONS.get(part)
        if name is not None and getattr(config, name) < defaults[name]:
            return name
    return None


def short_test_span(split: SplitConfig, horizon: int, rows: int) -> tuple[int, int, int] | None:
    """The rows of train, val and test a "fractions" split gives a series of `rows` rows when
    its test span is shorter than the horizon (its look-back is context read from the val
    rows before it, so only the horizon must fit in the span itself); None otherwise."""
    if split.method != "fractions":
        return None
    parts = fraction_rows(rows, split)
    return parts if parts[2] < horizon else None


def _short_test_way_out(
    config: TrainConfig, split: SplitConfig, horizon: int, longest: int, whom: str
) -> str | None:
    """Why a test share too small for the longest series decides, in the fractions' terms:
    the test span they leave it, what a test span needs and why, and the remedy (a smaller
    val_fraction or train_fraction, or a horizon the span holds). A look-back was the only
    advice before, and it cannot help: the test span's look-back is read from val's rows."""
    parts = short_test_span(split, horizon, longest)
    if parts is None:
        return None
    n_train, n_val, n_test = parts
    train, val = config.train_fraction, config.val_fraction
    why = (
        f"min_length is what leaves one window of look-back + horizon "
        f"({split.lookback:,} + {horizon:,}) in each part of the split; the test share decides: "
        f"train_fraction {train!r} and val_fraction {val!r} leave a test share of "
        f"{1 - train - val:.3g} of the rows: {whom} ({longest:,} rows) splits "
        f"{n_train:,} / {n_val:,} / {n_test:,}, a test span of {plural(n_test, 'step')}; a test "
        f"span needs at least the horizon, {plural(horizon, 'step')} (its look-back of "
        f"{plural(split.lookback, 'step')} is read from the val rows before it)"
    )
    remedies = []
    for name in ("val_fraction", "train_fraction"):
        smaller = _smaller_fraction_that_fits(split, horizon, longest, name)
        if smaller is not None:
            test_rows = fraction_rows(longest, _with_fraction(split, name, smaller))[2]
            flag = f"--{name.replace('_', '-')}"
            remedies.append(
                f"{name} ({flag} {smaller:g} leaves {whom} a test span of "
                f"{plural(test_rows, 'step')})"
            )
    other = "train_fraction (--train-fraction)"
    if not remedies:
        remedies = ["val_fraction (--val-fraction)", other]
    elif len(remedies) == 1 and remedies[0].startswith("val_fraction"):
        remedies.append(other)
    way_out = f"a smaller {' or '.join(remedies)} keeps more series"
    if rows_for_one_window_each(split, max(n_test, 1)) <= longest:
        way_out += f", as does a horizon of at most {plural(n_test, 'step')} (--horizon {n_test})"
    return f"{why}: {way_out}"


def _smaller_fraction_that_fits(
    split: SplitConfig, horizon: int, longest: int, name: str
) -> float | None:
    """The largest `name` (train_fraction or val_fraction) below `split`'s, in steps of 0.05,
    whose one-window-per-part floor the longest series meets; None where none does."""
    given: float = getattr(split, name)
    fraction = math.floor(given * 20) / 20
    if fraction >= given:
        fraction = round(fraction - 0.05, 2)
    while fraction > 0:
        if rows_for_one_window_each(_with_fraction(split, name, fraction), horizon) <= longest:
            return fraction
        fraction = round(fraction - 0.05, 2)
    return None


def _with_fraction(split: SplitConfig, name: str, fraction: float) -> SplitConfig:
    """`split` with its train_fraction or val_fraction (`name`) set to `fraction`."""
    if name == "train_fraction":
        return replace(split, train_fraction=fraction)
    return replace(split, val_fraction=fraction)


def _too_short_way_out(
    config: TrainConfig, lookback: int, horizon: int, min_length: int, error: SeriesTooShortError
) -> str:
    """Why min_length is what it is, and only the ways out that can help: no split option
    keeps a series shorter than one window (look-back + horizon); a larger train_fraction or
    val_fraction is named only where one would bring min_length down to the longest series,
    with the fraction that does, and first where the user's own smaller fraction is what
    raised it (`too_short_fraction`)."""
    need = lookback + horizon
    # whom the ways out keep: the longest series where every one is short, else the longest
    # of the short ones (error.longest is its length)
    whom = "the longest series" if error.series is None else shown(error.series)
    options = "a shorter look-back or horizon (--lookback, --horizon)"
    fits = _window_that_fits(config, error.longest, error.freq)
    # the asked window itself when the longest series holds it: naming it ("--lookback 48
    # --horizon 24", the options given) read as advice that changes nothing
    if fits is not None and fits != (lookback, horizon):
        # a long look-back asked on purpose (30 days at 15 min) is told how long one can be at
        # its horizon too, not only the short window above (192 where 48,672 fit)
        most = _longest_lookback(config, error.longest, horizon)
        up_to = (
            f"; at --horizon {horizon} it holds a --lookback of up to {most:,}"
            if most is not None and most > fits[0]
            else ""
        )
        options = (
            f"a shorter look-back or horizon (--lookback {fits[0]} --horizon {fits[1]} fits "
            f"{whom}{up_to})"
        )
    if min_length <= need:
        return (
            f"min_length is the look-back plus the horizon ({lookback:,} + {horizon:,}): "
            f"{options} keeps more series"
        )
    split = config.split(lookback)
    parts = deciding_parts(split, horizon)
    shares = {
        "train": f"train ({config.train_fraction:g} of the rows)",
        "val": f"val ({config.val_fraction:g} of the rows, with {lookback:,} rows of context)",
    }
    decides = (
        f"; the {' and '.join(parts)} share{'s decide' if len(parts) > 1 else ' decides'}"
        if parts
        else ""
    )
    why = (
        f"min_length is what leaves one window of look-back + horizon ({lookback:,} + "
        f"{horizon:,}) in each part of the split: {shares['train']}, {shares['val']} and "
        f"test{decides}"
    )
    longest = error.longest
    if longest is not None and longest < need:
        return (
            f"{why}; one window alone ({need:,} rows) is longer than {whom}, so "
            f"no split option helps: {options} keeps more series"
        )
    if longest is not None and (test := _short_test_way_out(config, split, horizon, longest, whom)):
        return test
    # a larger train share helps where train decides; a larger val share where val does
    # (or, as before, where the test share does: it never helps there and is not named)
    name = "train_fraction" if "train" in parts else "val_fraction"
    larger = _fraction_that_fits(split, horizon, longest, name)
    # a look-back and horizon of one row each: what no shorter window can go below
    shortest = rows_for_one_window_each(replace(split, lookback=1), 1)
    window_helps = longest is None or shortest <= longest
    if larger is None:
        if window_helps:
            return f"{why}: {options} keeps more series"
        return (
            f"{why}: with these fractions no look-back or horizon fits {whom} "
            f"(one row each needs {shortest:,} rows): change them (--train-fraction, "
            "--val-fraction) to keep more series"
        )
    fraction, rows = larger
    option = f"a larger --{name.replace('_', '-')} ({fraction:g} needs {rows:,} rows)"
    if not window_helps:
        return f"{why}: {option} keeps more series (no look-back or horizon would)"
    if too_short_fraction(config) == name:
        return f"{why}: {option}, or {options} keeps more series"
    return f"{why}: {options}, or {option} keeps more series"


def _window_that_fits(
    config: TrainConfig, longest: int | None, freq: str | None = None
) -> tuple[int, int] | None:
    """A look-back and horizon that leave the longest series one window in each part of the
    split, for the too-short message to name (a monthly history of 198 rows cannot hold the
    hourly defaults, 336 + 96, and "shorter" alone left the user to search): the asked horizon
    halved until one fits, with a look-back of twice that horizon (at most the asked one; a
    multiple of the segment length for the recurrent kinds), shorter where that does not fit.
    None where none fits.

    Twice the horizon, not the longest look-back that fits: a short history has few training
    windows, and every row of look-back is one window fewer (198 months at look-back 120 and
    horizon 12 leave 7). On validation only (best val MAE, z scale, urnn / lstm / linear):
    PJM East's monthly means, horizon 12, look-back 120: 0.532 / 0.347 / 0.481, 48: 0.398 /
    0.305 / 0.396, 24: 0.327 / 0.268 / 0.383; Bike sharing's 731 days, horizon 48, look-back
    336: 1.719 / 0.609 / 1.440, 216: 0.741 / 0.512 / 0.647, 96: 0.596 / 0.448 / 0.568."""
    if longest is None:
        return None
    model = config.model
    step = model.segment_length if FORECASTERS[model.kind].RECURRENT else 1
    most = model.lookback // step

    steps = config.load.step_origin is not None
    explicit = model.season_length if model.season_length is not None else config.season_length

    def lookback_for(horizon: int) -> int | None:
        """In multiples of `step`: valid from some look-back up (a kernel, a season within
        it), fitting up to some; the longest that fits up to twice the horizon (or the
        shortest valid one), both found by bisection."""

        def valid(k: int) -> bool:
            try:
                replace(model, lookback=k * step, horizon=horizon)
                if model.kind == "seasonal_naive" and (explicit is not None or freq is not None):
                    # the season resolve_model_config gives it: the user's, else the frequency's
                    model_season(explicit, freq or "D", k * step, steps=steps)
            except ValueError:
                return False
            return True

        def too_long(k: int) -> bool:
            return rows_for_one_window_each(config.split(k * step), horizon) > longest

        shortest = _first_true(1, most, valid)
        if shortest is None or too_long(shortest):
            return None
        high = min(most, max(shortest, 2 * horizon // step))
        over = _first_true(shortest + 1, high, too_long)
        return (high if over is None else over - 1) * step

    horizon = model.horizon
    while horizon >= 1:
        lookback = lookback_for(horizon)
        if lookback is not None:
            return lookback, horizon
        horizon //= 2
    return None


def _longest_lookback(config: TrainConfig, longest: int | None, horizon: int) -> int | None:
    """The longest look-back, below the asked one (a multiple of the segment length for the
    recurrent kinds), that leaves a series of `longest` rows one window of it + `horizon` in
    each part of the split; None where none does or the model refuses it (a season or kernel
    longer than it)."""
    if longest is None:
        return None
    model = config.model
    step = model.segment_length if FORECASTERS[model.kind].RECURRENT else 1

    def too_long(k: int) -> bool:
        return rows_for_one_window_each(config.split(k * step), horizon) > longest

    most = model.lookback // step
    if most < 1 or too_long(1):
        return None
    over = _first_true(2, most, too_long)
    lookback = (most if over is None else over - 1) * step
    try:
        replace(model, lookback=lookback, horizon=horizon)
    except ValueError:
        return None
    return lookback


def _first_true(low: int, high: int, test: Callable[[int], bool]) -> int | None:
    """The least k in [low, high] with test(k), for a test false then true as k grows; None
    where none is."""
    found = None
    while low <= high:
        middle = (low + high) // 2
        if test(middle):
            found, high = middle, middle - 1
        else:
            low = middle + 1
    return found


def _fraction_that_fits(
    split: SplitConfig, horizon: int, longest: int | None, name: str
) -> tuple[float, int] | None:
    """The smallest `name` (train_fraction or val_fraction) above `split`'s, in steps of 0.05
    that leave a test share, whose one-window-per-part floor the longest series meets:
    (fraction, that floor)."""
    if longest is None:
        return None
    fraction = round(getattr(split, name) + 0.05, 2)
    while split.train_fraction + split.val_fraction - getattr(split, name) + fraction < 1 - 1e-9:
        rows = rows_for_one_window_each(replace(split, **{name: fraction}), horizon)
        if rows <= longest:
            return fraction, rows
        fraction = round(fraction + 0.05, 2)
    return None


def data_mase_season(config: TrainConfig, data: LoadedData, split: SplitConfig) -> Season:
    """MASE's season for this data and split: the user's, else the frequency's where every
    series' training span is longer than it (training.seasonality.mase_season)."""
    steps = config.load.step_origin is not None
    shortest, series = shortest_train_span(data, split)
    return mase_season(
        config.season_length, data.freq, shortest, steps=steps, shortest_series=series
    )


def unread_covariate_lines(data: LoadedData, model: ForecasterConfig) -> list[str]:
    """Covariates given to a kind that reads only the target (linear, the naive baselines):
    said, so that `--covariates` is not taken to have been used."""
    if not data.covariates or FORECASTERS[model.kind].SUPPORTS_PAST_COVARIATES:
        return []
    readers = ", ".join(k for k, cls in FORECASTERS.items() if cls.SUPPORTS_PAST_COVARIATES)
    return [
        f"covariates {', '.join(data.covariates)}: not read by kind {model.kind!r}, which "
        f"forecasts from the target alone (the kinds that read them: {readers})"
    ]


def constant_lines(
    splits: Mapping[str, SeriesSplit], target: str, scope: ScalerScope = "global"
) -> list[str]:
    """Columns that hold one value where the model's scaler reads them, named. A covariate the
    scaler (`scope`: the pipeline's is global) finds constant is centred and left unscaled: it
    tells the model nothing, and a value it takes later reaches the model unscaled. One that
    is constant inside each series but differs between them is scaled, and does tell the
    series apart: not named. A target that never moves in a series' training span has no MASE
    scale there (the scale is per series)."""
    lines = []
    trained = [sid for sid, s in splits.items() if not s.train.empty]
    per_series = constant_in_training(splits)
    if target in per_series:
        series = per_series[target]
        lines.append(
            f"target {target!r} holds one value over the training span of {len(series):,} of "
            f"{len(trained):,} series ({named_ids(series)}): there it has nothing to learn, and "
            "no MASE scale (its MASE is left out of the overall)"
        )
    pooled = constant_in_training(splits, pooled=True) if scope == "global" else per_series
    for column, series in pooled.items():
        if column == target:
            continue
        where = (
            f"every series' training span ({len(trained):,})"
            if scope == "global"
            else f"the training span of {len(series):,} of {len(trained):,} series "
            f"({named_ids(series)})"
        )
        lines.append(
            f"covariate {column!r} holds one value over {where}: centred and not scaled, it "
            "tells the model nothing (a stuck sensor?); leave it out of --covariates, or train "
            "on a span where it varies"
        )
    return lines


def lookahead_fill_lines(data: LoadedData, splits: Mapping[str, SeriesSplit]) -> list[str]:
    """Values filled by interpolation at the end of a series' train (or val) span whose run of
    missing values reached the border: each was computed from the next observed value, which
    lies after that span. Training values (the scaler's statistics and the training windows,
    target and covariates alike) then read a validation value, or the early stopping and the
    interval calibration a test value. training.split leaves this look-ahead to the loader's
    fill policy; it is said here, where the borders are known, per series and column."""
    if data.config.fill != "interpolate":  # ffill carries the past forward; none fills nothing
        return []
    lines = []
    for series_id, split in splits.items():
        filled = data.filled.get(series_id)
        if filled is None or filled.empty:
            continue
        mask = filled.to_numpy(dtype=bool)  # (T, C)
        index = data.series[series_id].index
        plan = split.plan
        for name, span, later in (("train", plan.train, "val"), ("val", plan.val, "test")):
            if not len(span) or not mask[span.stop - 1].any():
                continue
            counts = []
            for c, column in enumerate(filled.columns):
                run = 0
                while run < len(span) and mask[span.stop - 1 - run, c]:
                    run += 1
                if run:
                    counts.append(f"{column} {run:,}")
            lines.append(
                f"{series_named(series_id)}: the last {name} values ({', '.join(counts)}, up to "
                f"{index[span.stop - 1]}) were filled by interpolation toward the next observed "
                f"value, which lies in the {later} span or later: a look-ahead across the "
                f"{name}/{later} border; --fill ffill never looks ahead"
            )
    return lines


# How far from a series' training median a value lies, in robust standard deviations
# (1.4826 MAD), before the report names it. Checked on the shared data sets (2026-12-06): at
# 15 none of PJM's regions, ETTh1, Taylor or Bike sharing's counts (a heavy right tail:
# casual rentals have 130 values beyond 10) is named, ETTh2's and ETTm2's LULL are (values to
# -31 around a median of -1.2), and so are x10 spikes in 1 % of an hourly demand series.
SPIKE_MADS = 15.0


def spike_lines(
    splits: Mapping[str, SeriesSplit], target: str, limit: int = 3, *, learnt: bool = True
) -> list[str]:
    """The target's training values far outside their series' usual range, named: they are
    learnt as they are (nothing is removed), but each widens the MASE scale (every MASE then
    reads better than it is: x10 spikes in 1 % of an hourly demand series made the seasonal
    naive's MASE 0.44 where it is 1.61 without them) and the per-window normalisation of
    every window that holds one. Said so that the user can check the data; series whose
    training values are mostly one value (MAD 0) are left out. `learnt` False: a backtest of
    a trained model, which reads the training span only for the MASE scale (one glitch of 1e6
    in ETTh1 OT's made the same forecasts' MASE 0.0042 where it is 1.32)."""
    found: list[tuple[str, int, Any, float]] = []
    for sid, split in splits.items():
        if split.train.empty or target not in split.train:
            continue
        values = column_values(split.train, target, np.float64)
        finite = values[np.isfinite(values)]
        if len(finite) < 30:  # a MAD of fewer is noise (10 Gaussian rows: false spikes)
            continue
        median = float(np.median(finite))
        spread = 1.4826 * float(np.median(np.abs(finite - median)))
        if spread <= 0:
            continue
        far = np.abs(values - median) > SPIKE_MADS * spread
        if far.any():
            first = int(np.argmax(far))
            found.append((sid, int(far.sum()), split.train.index[first], float(values[first])))
    if not found:
        return []
    found.sort(key=lambda item: -item[1])  # the series with the most first
    named = "; ".join(
        f"{series_named(sid)}: {count:,} (first at {stamp}: {value:.6g})"
        for sid, count, stamp, value in found[:limit]
    )
    more = f"; and {len(found) - limit:,} more series" if len(found) > limit else ""
    found_text = (
        f"target {target!r} has training values more than {SPIKE_MADS:g} robust standard "
        f"deviations (1.4826 x MAD) from its series' median: {named}{more}."
    )
    if not learnt:
        return [
            f"{found_text} The MASE scale is read from the training span, and spikes or unit "
            "errors widen it: every MASE reads better than it is; check the data, or compare "
            "models on MAE"
        ]
    return [
        f"{found_text} They are learnt as they are; spikes or unit errors also widen the MASE "
        "scale (every MASE reads better) and the normalisation of the windows that hold them: "
        "check the data"
    ]


# A run of one value this long or longer, outside the range of every other value of its series,
# is named as an outage (a meter that wrote 0 for a few hours, a value stuck at a sentinel).
# Such runs may hold at most this share of a series' observed values: where a value outside
# the rest comes in many runs (a solar plant's zero every night, a shop's zero every Sunday)
# it is how the series behaves, not an outage.
STUCK_RUN_MIN = 3
STUCK_RUN_MAX_SHARE = 0.01


def _runs_of_one_value(values: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops ([start, stop)) of the runs of at least STUCK_RUN_MIN equal observed
    values. A filled value breaks a run: interpolation between two equal neighbours is not a
    reading. In arrays: a sensor quantised to whole units repeats in millions of runs."""
    same = (values[1:] == values[:-1]) & observed[1:] & observed[:-1]
    edges = np.flatnonzero(np.diff(np.concatenate(([0], same.astype(np.int8), [0]))))
    begins, ends = edges[::2], edges[1::2] + 1  # `ends - begins - 1` equal pairs
    long_enough = ends - begins >= STUCK_RUN_MIN
    return begins[long_enough], ends[long_enough]


def stuck_run_lines(
    data: LoadedData,
    splits: Mapping[str, SeriesSplit],
    target: str,
    limit: int = 3,
    *,
    learnt: bool = True,
) -> list[str]:
    """Runs of one value of the target outside the range of the rest of its series, named
    with the span they lie in. An outage exported as zeros (8 hours of 0 in PJM DAYTON's
    demand, whose other values are 1,199 to 3,327) is neither a spike (6 robust standard
    deviations from the median, under SPIKE_MADS) nor missing: it was learnt and backtested
    as demand, the backtest scoring both the champion and the challenger against it, and said
    nowhere. Left in the data (the user decides), as spikes are. `learnt` False: a backtest
    of a trained model, which scores against it and learns nothing."""
    found: list[str] = []
    flagged_series = 0
    for sid, split in splits.items():
        frame = data.series.get(sid)
        if frame is None or target not in frame:
            continue
        values = frame[target].to_numpy(np.float64)
        filled = data.filled.get(sid)
        observed = (
            ~filled[target].to_numpy(dtype=bool)
            if filled is not None and target in filled
            else np.ones(len(values), dtype=bool)
        )
        begins, ends = _runs_of_one_value(values, observed)
        if not len(begins):
            continue
        marks = np.zeros(len(values) + 1, dtype=np.int64)
        np.add.at(marks, begins, 1)
        np.add.at(marks, ends, -1)
        in_run = np.cumsum(marks[:-1]) > 0
        rest = values[observed & ~in_run]
        if len(rest) < 30:
            continue
        low, high = float(rest.min()), float(rest.max())
        away = ~((low <= values[begins]) & (values[begins] <= high))
        outside = list(zip(begins[away].tolist(), ends[away].tolist(), strict=True))
        count = int((ends[away] - begins[away]).sum())
        if not outside or count > STUCK_RUN_MAX_SHARE * int(observed.sum()):
            continue
        flagged_series += 1
        if len(found) >= limit:
            continue
        begin, end = outside[0]
        index = frame.index
        plan = split.plan
        spans = [
            name
            for name, span in (("train", plan.train), ("val", plan.val), ("test", plan.test))
            if len(span) and begin < span.stop and end > span.start
        ]
        where = "/".join(spans) if spans else "no"
        more = f" (and {len(outside) - 1:,} more such runs)" if len(outside) > 1 else ""
        found.append(
            f"{series_named(sid)}: {end - begin:,} values in a row at exactly "
            f"{values[begin]:.6g} from {index[begin]} to {index[end - 1]} ({where} span){more}, "
            f"outside the range of every other value of {target!r} in the series ({low:.6g} to "
            f"{high:.6g})"
        )
    if not found:
        return []
    others = f"; and {flagged_series - limit:,} more series" if flagged_series > limit else ""
    done = "learnt and backtested" if learnt else "backtested"
    return [
        f"{'; '.join(found)}{others}: an outage or a stuck meter written as a value? It is "
        f"{done} as it is (the backtest scores every model against it): leave such cells "
        "empty, as missing values (filled up to max_gap), and train again"
    ]


# Values a look-back window's std is read over, at most, per series (a stride keeps to it).
FLAT_CHECK_VALUES = 5_000_000


def flattened_window_lines(
    splits: Mapping[str, SeriesSplit],
    scaler: StandardScaler,
    target: str,
    model: ForecasterConfig,
) -> list[str]:
    """Training look-back windows that vary in the data but not once scaled: the model reads
    a window whose scaled std is below MIN_WINDOW_STD as flat and forecasts its level only
    (instance normalisation). The scaler's std is the training span's, so one extreme value
    inflates it: a logger's error sentinel of -999999999 among 2,800 readings of ETTh1 OT
    (std 8) made it 1.9e7, every window's scaled std fell below the clamp, validation loss
    read 0.0000 and the model forecast levels only (coverage of the 80 % interval 0.14).
    Windows that hold one value in the data (a day without a sale) are flat by design and not
    counted."""
    if model.normalisation != "instance" or FORECASTERS[model.kind].STREAMING:
        return []
    flattened = total = 0
    named: list[str] = []
    scale = 0.0
    for sid, split in splits.items():
        if len(split.train) < model.lookback:
            continue
        raw = column_values(split.train, target, np.float64)
        target_at = split.train.columns.get_loc(target)
        scaled = scaler.transform_values(sid, split.train)[:, target_at]
        stride = max(1, -(-len(raw) * model.lookback // FLAT_CHECK_VALUES))
        windows = np.lib.stride_tricks.sliding_window_view(raw, model.lookback)[::stride]
        scaled_windows = np.lib.stride_tricks.sliding_window_view(scaled, model.lookback)[::stride]
        raw_std = windows.std(axis=1)
        moving = raw_std > CONSTANT_TOLERANCE * np.abs(windows.mean(axis=1))
        flat = moving & (scaled_windows.std(axis=1) <= MIN_WINDOW_STD)
        total += int(np.isfinite(raw_std).sum())
        if flat.any():
            flattened += int(flat.sum())
            named.append(sid)
            key = next(iter(scaler.stats)) if scaler.scope == "global" else sid
            scale = max(scale, scaler.stats[key][target].scale)
    if not flattened:
        return []
    return [
        f"{flattened:,} of {total:,} training look-back windows of {target!r} "
        f"({named_ids(named)}) vary, but by less than the model resolves once scaled (a "
        f"std under {MIN_WINDOW_STD:g} of the scaler's, {scale:.4g}): they are read as flat "
        "and forecast as their level only. A few extreme values (an error code such as "
        "-999999999, a glitch) inflate that std: leave those cells empty (missing values are "
        "filled) and train again"
    ]


def _fit_model(
    config: TrainConfig,
    model_config: ForecasterConfig,
    splits: Mapping[str, SeriesSplit],
    scaler: StandardScaler,
    sets: WindowSets,
    data: LoadedData,
    checkpoints: Path,
    meta: Mapping[str, Any],
    on_epoch_end: Callable[[EpochRecord], None],
    should_stop: Callable[[], bool] | None,
) -> FitResult:
    """The fit of `train_pipeline`: a streaming kind on long crops scored at every origin
    (training.stream_fit, no checkpoints), any other on windows, its best weights so far in
    `checkpoints` as it goes (with `meta`: a loadable model)."""
    if FORECASTERS[model_config.kind].STREAMING:
        series = stream_series(
            splits,
            scaler,
            channel_independent=False,
            calendar_freq=data.freq if model_config.n_calendar else None,
            filled=data.filled,
        )
        return fit_stream(
            model_config,
            series,
            config.fit,
            on_epoch_end=on_epoch_end,
            should_stop=should_stop,
            progress=config.progress,
        )
    return fit(
        model_config,
        sets.train,
        sets.val,
        config.fit,
        on_epoch_end=on_epoch_end,
        should_stop=should_stop,
        checkpoint_dir=checkpoints,
        checkpoint_extra=meta,
        progress=config.progress,
    )


def _interrupted(
    checkpoints: Path, model_config: ForecasterConfig, *, ended: str = "KILLED"
) -> str:
    """What an interrupted run leaves, in words: the run (its id names `checkpoints`) and the
    best weights so far, or the fitted model when the fit had ended (interrupted in the
    backtest or while logging). `ended`: the run's status (FAILED where the store refused
    what it logs)."""
    run = f"MLflow run {checkpoints.name} ended {ended}"
    if FORECASTERS[model_config.kind].STREAMING:
        return f"{run}; kind {model_config.kind!r} keeps no checkpoints while it trains"
    config_file = checkpoints / CHECKPOINT_CONFIG
    if not config_file.exists():
        found = sorted(
            p.parent
            for p in checkpoints.glob(f"**/{CHECKPOINT_CONFIG}")
            if not any(part.startswith(".") for part in p.relative_to(checkpoints).parts)
        )
        if not found:
            return f"{run} before any epoch finished; nothing kept"
        return (
            f"{run}; the best weights so far of each candidate are in "
            f"{', '.join(str(p) for p in found)} (each a model `urnn backtest --model DIR` scores)"
        )
    meta = json.loads(config_file.read_text())
    what = (
        "the fitted model (the fit had ended) is"
        if meta.get("complete")
        else f"the best weights so far (epoch {meta.get('best_epoch')}) are"
    )
    return (
        f"{run}; {what} in {checkpoints}: `urnn backtest --model {checkpoints} --data ...` "
        "scores them"
    )


def time_split_lines(splits: Mapping[str, SeriesSplit], method: str, limit: int = 3) -> list[str]:
    """Under a split by time, where each series' train, val and test rows begin and end, and
    the rows no part holds (the ETT split's 20 months end before a longer file does): the
    borders every score depends on, which the report did not state. The first `limit` series
    (a fleet's borders differ only by length); cut series and held-out units have their own
    lines (cut_series_lines, held_out_lines)."""
    lines = []
    plain = [(sid, split) for sid, split in splits.items() if split.plan.role == "all"]
    for series_id, split in plain[:limit]:
        plan = split.plan
        parts = []
        for name, frame, span in (
            ("train", split.train, plan.train),
            ("val", split.val, plan.val),
            ("test", split.test, plan.test),
        ):
            own = frame.index[span.context :]
            if len(own):
                parts.append(f"{name} {own[0]} to {own[-1]} ({len(own):,} rows)")
        unused = []
        if plan.train.start:
            unused.append(f"{plural(plan.train.start, 'row')} before train")
        if after := plan.n_rows - plan.test.stop:
            unused.append(f"{plural(after, 'row')} after test, the split's span ended")
        left = f"; unused: {', '.join(unused)}" if unused else ""
        lines.append(f"split {method!r} of {series_named(series_id)}: {', '.join(parts)}{left}")
    if len(plain) > limit:
        lines.append(f"(and {len(plain) - limit:,} more series, split the same way)")
    return lines


def held_out_lines(splits: Mapping[str, SeriesSplit]) -> list[str]:
    """Under the "series" split, which units were held out (the rest trained): the first thing a
    fleet user checks. Empty for splits by time."""
    roles: dict[str, list[str]] = {"val": [], "test": []}
    for series_id, split in splits.items():
        if split.plan.role in roles:
            roles[split.plan.role].append(series_id)
    if not roles["test"]:
        return []
    n_train = len(splits) - len(roles["val"]) - len(roles["test"])

    n_val, n_test = len(roles["val"]), len(roles["test"])
    return [
        f"split 'series': {n_train:,} series "
        f"{'trains on its' if n_train == 1 else 'train on their'} whole history; "
        f"{n_val:,} {'validates' if n_val == 1 else 'validate'} "
        f"({named_ids(roles['val'])}); {n_test:,} "
        f"{'is the test unit' if n_test == 1 else 'are the test units'}, never seen in "
        f"training ({named_ids(roles['test'])})"
    ]


def named_ids(ids: Sequence[str], limit: int = 20) -> str:
    """Series ids in natural order, the first `limit` of them, each quoted as `series_named`
    quotes one: unquoted, a list hid where an id begins or ends (' PJM', 'a, b', 'North
    East')."""
    ordered = sorted(ids, key=natural_key)
    listed = [shown(i) for i in ordered[:limit]]
    more = len(ordered) - limit
    return ", ".join(listed) + (f" and {more:,} more" if more > 0 else "")


def train_replica(config: TrainConfig) -> None:
    """A torchrun rank other than 0: the same data and the same fit in step with rank 0 (DDP
    averages the gradients); no MLflow, no backtest, no registration (rank 0 does those)."""
    prepared = prepare_training(config)
    fit(prepared.model_config, prepared.sets.train, prepared.sets.val, config.fit, progress=False)


def seen_until(data: LoadedData, splits: Mapping[str, SeriesSplit]) -> dict[str, str]:
    """Per unit (a series, or the series a cut segment belongs to): the timestamp of the last
    row the model trained or early-stopped on (UTC where zoned, ISO 8601). A later challenger
    scores this model only on values after it (`compare_registered`): a champion scored on its
    own training rows looks better than it is. A unit it only early-stopped on (a validation
    unit of `--split series`; a cut series' later segment with val rows only) counts; units
    held out for test alone are absent."""
    until: dict[str, pd.Timestamp] = {}
    for sid, split in splits.items():
        parts = [part for part in (split.train, split.val) if not part.empty]
        if not parts:
            continue
        last = max(part.index[-1] for part in parts)
        unit = data.unit_of(sid)
        until[unit] = max(until.get(unit, last), last)
    return {unit: naive_utc(pd.Timestamp(stamp)).isoformat() for unit, stamp in until.items()}


def splits_train(splits: Mapping[str, Any]) -> list[pd.DataFrame]:
    # a held-out unit, or a segment of a cut series with no train window, has no train rows
    return [s.train for s in splits.values() if not s.train.empty]


def model_meta(
    data: LoadedData,
    load: LoadConfig,
    split: SplitConfig,
    model_config: ForecasterConfig,
    scaler: StandardScaler,
    train_frames: list[pd.DataFrame],
    *,
    season_length: int | None = None,
    fit_config: FitConfig | None = None,
    train_stride: int | None = None,
    channel_independent: bool = False,
    seen_until: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """config.json's keys beside the model config (training.mlflow_model.EXTRA).
    `evaluation.season_length`: the user's MASE season (None: the frequency's), so that
    `urnn backtest` scores the model on the scale it was trained and registered with.
    `fit`: the fit settings it was trained with (FitConfig as a dict, as the run's `fit.*`
    params hold them too), so that `urnn backtest --refit` retrains it by the same recipe from
    the artifact alone (a copied model, or one whose run was deleted). `train.train_stride`:
    the rows between its training windows (TrainConfig.train_stride, `--train-stride`), which
    the refits' training windows follow too (the run's `backtest.train_stride` param holds it
    for models from before the key). `train.channel_independent`: the model forecasts each
    column of the file as a series of its own (`urnn backtest` reads the file so again).
    `train.seen_until`: per unit, the last row it trained or early-stopped on (`seen_until`)."""
    train: dict[str, Any] = {} if train_stride is None else {"train_stride": train_stride}
    if channel_independent:
        train["channel_independent"] = True
    if seen_until:
        train["seen_until"] = dict(seen_until)
    return {
        "lookback": model_config.lookback,
        "horizon": model_config.horizon,
        "quantiles": list(model_config.quantiles),
        "freq": data.freq,
        "target": data.target,
        "covariates": list(data.covariates),
        "scaler": scaler.to_dict(),
        # the target per look-back window where the network reads each window apart from its
        # level (a windowed kind normalised per window, "instance" or "last"); by value where
        # it reads the level ("none") or statistics fixed at a stream's start (urnn-stream)
        "reference": reference_statistics(
            train_frames,
            window=(data.target, model_config.lookback)
            if model_config.normalisation != "none" and not FORECASTERS[model_config.kind].STREAMING
            else None,
        ),
        "package_version": __version__,
        "load": load.to_dict(),
        "split": asdict(split),
        "evaluation": {"season_length": season_length},
        **({"fit": asdict(fit_config)} if fit_config is not None else {}),
        **({"train": train} if train else {}),
        "calendar_clock": data_calendar_clock(data),
    }


def data_calendar_clock(data: LoadedData) -> str:
    """The clock a model's calendar features are learnt on (training.mlflow_model.
    CalendarClock): UTC where the loader read zoned timestamps as UTC (its "timezone"
    decision), else the local wall clock the naive timestamps were written in."""
    return CLOCK_UTC if any(d.step == "timezone" for d in data.report) else CLOCK_LOCAL


def calendar_clock_note(model_clock: str, data: LoadedData) -> str | None:
    """For scoring a model with calendar features on `data` (urnn backtest): the line saying
    that the data's timestamps are on another clock than the one the model learnt its hours
    and weekdays on; None when the clocks agree. The loader reads zoned timestamps as UTC, so
    a model learnt on a local wall clock was given hours off by the zone's offset (the service
    reads such a model's features on the clock as written), and a UTC model given naive local
    times was off the other way, each with worse scores and nothing said."""
    clock = data_calendar_clock(data)
    if clock == model_clock:
        return None
    if model_clock == CLOCK_LOCAL:
        return (
            "the model's calendar features were learnt on the local wall clock of its "
            "training timestamps (calendar_clock 'local'), and this file's timestamps carry a "
            "zone or UTC offsets, read as UTC: its hour-of-day and weekday inputs are off by "
            "the offset (unless that clock was UTC); score it on timestamps written on the "
            "clock it was trained on, without offsets"
        )
    return (
        "the model's calendar features were learnt on UTC (calendar_clock 'utc': its "
        "training timestamps carried a zone or UTC offsets), and this file's timestamps have "
        "none, read as UTC: unless they are UTC, its hour-of-day and weekday inputs are off "
        "by the offset of the clock they were written on; score it on timestamps with their "
        "zone or UTC offsets"
    )


def calendar_lines(data: LoadedData, model: ForecasterConfig) -> list[str]:
    """For the data report: the calendar features a model reads, and on which clock."""
    if not model.n_calendar:
        return []
    periods = ", ".join(p.replace("_", " ") for p in calendar_periods(data.freq))
    clock = (
        "on UTC (calendar_clock 'utc': the timestamps carried a zone or UTC offsets, read as UTC)"
        if data_calendar_clock(data) == CLOCK_UTC
        else "on the local wall clock the timestamps were written in (calendar_clock 'local')"
    )
    return [
        f"calendar features: {periods} as sin/cos pairs (n_calendar={model.n_calendar} at "
        f"frequency {data.freq!r}), {clock}"
    ]


def compare_registered(
    model_uri: str,
    data: LoadedData,
    config: TrainConfig,
    backtest_config: BacktestConfig,
    *,
    challenger: BacktestResult,
    challenger_config: ForecasterConfig,
) -> Comparison | None:
    """The registered model at `model_uri` (the champion) against the challenger's backtest,
    on the same forecasts: the (series, origin, step) rows both made. Refused when requests
    the champion serves would answer 422 from the challenger (`served_requests_refused`),
    with both scores all the same where this data holds the champion's columns: they are
    what a person promoting by hand goes on; None when the champion cannot read this data.

    Not compared (champion None, `why` saying so, and so kept) when the champion was trained
    at another frequency than this data's ('h' and '60min' are one, and so are weeks written
    as days and as weeks, '7D' and 'W-SUN', where every series starts on the anchor's weekday,
    as the service takes them: `week_anchor`): its steps are not this
    model's, the two scores measure different things, and as champion the new model would
    answer the champion's clients in other steps than they asked for. A switch of frequency
    is a person's decision (`urnn models promote`), not a score's.

    Not compared either when the champion reads calendar features on another clock than this
    data's (`calendar_clock_note`: one learnt on naive local times, this data zoned and read
    as UTC, or the other way round): its hour-of-day and weekday inputs would be off by the
    zone's offset, a score unfair to it. Its own clock cannot be rebuilt from this data (the
    zone of naive times is unknown), so the champion is kept and the reason says why.

    A pinball metric is taken on the quantile levels both models forecast (pinball_mean over
    different levels averages different losses: wider levels score lower whatever the
    model); none in common: not compared. A champion that does not load (a damaged weights
    file, an artifact gone from the store) is not compared either: the version just registered
    keeps its scores and a "kept" decision saying why, rather than being left without either
    by the error; a person fixes the alias (`urnn models promote`)."""
    try:
        predictor = load_registered(model_uri)
    except Exception as error:
        if not _unloadable(error):  # the store unreachable for a moment: fail, to be retried
            raise
        return Comparison(
            None,
            why=(
                f"it cannot be loaded ({type(error).__name__}: {error}); the service cannot "
                "load it either: move the alias to a version that loads (urnn models promote)"
            ),
        )
    theirs = predictor.model.config
    # the champion's forecasting contract against this model's (training.contract, the rule
    # `urnn models promote` and the service's reload also follow): another target or
    # frequency is not compared; other covariates are a refusal (served_requests_refused)
    contract = ForecastContract.of(predictor)
    mine = ForecastContract(data.target, data.freq, tuple(data.covariates))
    their_freq = contract.freq
    anchor = week_anchor(data.freq, their_freq)  # '7D' and 'W-SUN' from a Sunday: one step
    if not same_steps(their_freq, mine.freq):
        return Comparison(
            None,
            why=(
                f"it was trained at frequency {their_freq!r} and this model at {data.freq!r}: "
                "their scores are not comparable, and the clients of the champion would be "
                f"answered in {data.freq!r} steps instead of {their_freq!r}; move the alias by "
                "hand (urnn models promote) if the switch is intended"
            ),
        )
    starts = {sid: frame.index[0] for sid, frame in data.series.items() if len(frame)}
    if anchor is not None and (problem := week_start_problem(data.freq, their_freq, starts)):
        other = next(first for first in starts.values() if first.weekday() != anchor)
        return Comparison(
            None,
            why=(
                f"it was trained at frequency {their_freq!r} and this model at {data.freq!r}: "
                f"{problem}: their scores are not comparable, and the clients of the champion "
                f"would be answered in weeks from a {WEEKDAYS[other.weekday()]} instead of a "
                f"{WEEKDAYS[anchor]}; move the alias by hand (urnn models promote) if the "
                "switch is intended"
            ),
        )
    levels, levels_note = shared_levels(
        config.metric, theirs.quantiles, challenger_config.quantiles
    )
    if levels is not None and not levels:
        return Comparison(None, why=levels_note)
    if contract.target != mine.target:
        return Comparison(
            None, why=f"it forecasts {contract.target!r} and this model {mine.target!r}"
        )
    clock_note = (
        calendar_clock_note(calendar_clock(predictor.meta), data) if theirs.n_calendar else None
    )
    if clock_note is not None:
        return Comparison(
            None,
            why=(
                f"it reads calendar features on another clock than this data's: {clock_note}; "
                "scored here it would be judged on hours and weekdays it never learnt: move "
                "the alias by hand (urnn models promote) if the switch of clock is intended"
            ),
        )
    refusal = served_requests_refused(
        predictor, challenger_config, data.covariates, data_calendar_clock(data), data.freq
    )

    def scored() -> Comparison | None:
        return _scored_on_backtest(
            predictor,
            data,
            config,
            backtest_config,
            challenger,
            challenger_config,
            levels,
            levels_note,
        )

    if refusal is None:
        return scored()
    refused = f"{refusal}; kept (move the alias by hand if that is intended)"
    # the scores are still the evidence a person needs to promote by hand (a covariate added
    # on purpose: does it help?); taken where this data holds the champion's columns
    comparison = None
    if set(predictor.covariates) <= set(data.covariates):
        try:
            comparison = scored()
        except (BacktestConfigError, DataValidationError) as error:
            # a split the champion cannot be backtested on (a streaming champion, a series
            # cut at a gap): the refusal stands, saying why there is no score
            refused += f"; the champion cannot be scored on this backtest ({error})"
    return replace(comparison or Comparison(None), refusal=refused)


def _scored_on_backtest(
    predictor: ForecastPredictor,
    data: LoadedData,
    config: TrainConfig,
    backtest_config: BacktestConfig,
    challenger: BacktestResult,
    challenger_config: ForecasterConfig,
    levels: tuple[float, ...] | None,
    levels_note: str,
) -> Comparison | None:
    """The champion (`predictor`, whose covariates `data` holds) and the challenger scored on
    the forecasts both made on the challenger's backtest, past the rows the champion trained
    or early-stopped on (`compare_registered`)."""
    theirs = predictor.model.config
    # Each model's origins are counted back from the test span's end by its own horizon, so
    # at --backtest-step 24 a champion forecasting 12 steps and a challenger forecasting 24
    # had no origin in common, and the challenger was kept as "could not be scored" without
    # a reason. At a step dividing both the step and the horizons' difference the champion's
    # origins hold every one of the challenger's (its extra ones are not scored below).
    step, windows = backtest_config.step, backtest_config.n_windows
    apart = abs(challenger_config.horizon - theirs.horizon)
    aligned = math.gcd(step, apart) if apart else step
    theirs_config = backtest_config
    # as many forecast rows as the step / aligned times more origins make, within the bound
    # over which the backtest's size is said (a --backtest-step chosen to bound a fleet's)
    rows = len(challenger.forecasts) / challenger_config.horizon * theirs.horizon
    affordable = rows * (step // aligned) <= BACKTEST_ROWS_NOTE
    if aligned != step and windows is None and not backtest_config.refit and affordable:
        theirs_config = replace(backtest_config, step=aligned)
    # the champion knows no covariate this data lacks: scored on the columns it was trained
    # with (a challenger that only knows one more is compared)
    result = backtest_predictor(
        predictor, with_covariates(data, predictor.covariates), config, theirs_config
    )
    if result is None:
        return None
    keys = ["series", "origin", "step"]
    mine, other = challenger.forecasts, result.forecasts
    mine_keys, other_keys = (
        pd.MultiIndex.from_frame(mine[keys]),
        pd.MultiIndex.from_frame(other[keys]),
    )
    in_other, in_mine = mine_keys.isin(other_keys), other_keys.isin(mine_keys)
    if not in_other.any():
        last = f", the last {windows:,} per series (--backtest-windows)" if windows else ""
        hint = f"; a --backtest-step dividing {apart} compares them" if apart % step else ""
        return Comparison(
            None,
            why=(
                "the two backtests share no forecast: each model's origins are counted back "
                f"from the test span's end by its own horizon (the champion's {theirs.horizon} "
                f"steps, this model's {challenger_config.horizon}), {step} rows apart"
                f"{last}{hint}"
            ),
        )
    partial = not (in_other.all() and in_mine.all())
    theirs_shared = other[in_mine]
    unseen = _after_champion_saw(predictor.meta, data, theirs_shared)
    unmatched_note = _none_recorded(predictor.meta, data, theirs_shared)
    seen_note = ""
    if unseen is not None and not unseen.all():  # counted on the forecasts both models made
        if not unseen.any():
            return Comparison(
                None,
                why=(
                    "it trained or early-stopped on every value both models forecast in this "
                    "backtest; scored there it would look better than it is"
                ),
            )
        seen_note = (
            f"{int((~unseen).sum()):,} forecast values the champion trained or early-stopped "
            "on left out"
        )
        theirs_shared = theirs_shared[unseen]
        in_other = mine_keys.isin(pd.MultiIndex.from_frame(theirs_shared[keys]))

    def score(frame: pd.DataFrame, quantiles: tuple[float, ...]) -> float:
        return float(metric_tables(frame, quantiles).overall[config.metric].iloc[0])

    bases = []
    if partial or seen_note:
        shared = mine[in_other]
        steps = int(shared["step"].max())
        past = " past the champion's training and validation rows" if seen_note else ""
        bases.append(
            f"on the {len(shared):,} forecasts both models made{past}: "
            f"{shared['origin'].nunique():,} origins, steps 1-{steps}"
        )
    if seen_note:
        bases.append(seen_note)
    if unmatched_note:
        bases.append(unmatched_note)
    if levels_note:
        bases.append(levels_note)
    return Comparison(
        champion=score(theirs_shared, levels or theirs.quantiles),
        challenger=score(mine[in_other], levels or challenger_config.quantiles),
        basis="; ".join(bases),
        forecasts=theirs_shared,
    )


def _after_champion_saw(
    meta: Mapping[str, Any], data: LoadedData, forecasts: pd.DataFrame
) -> np.ndarray | None:
    """Which of the champion's backtest rows forecast a value after the last row it trained or
    early-stopped on in that unit (`train.seen_until`); None for a model from before the key
    (nothing known, nothing left out). Units are matched by id: a one-series file's id is its
    file's name, so the same data under another name is not matched. A challenger trained
    with a larger test share, or
    holding out units the champion trained on, used to compare it partly on its own training
    rows without a word."""
    until = recorded_seen_until(meta)
    if until is None:
        return None
    ids = forecasts["series"].astype(str)
    by_id = {sid: until.get(data.unit_of(sid), pd.NaT) for sid in ids.unique()}
    limit = pd.to_datetime(ids.map(by_id))  # NaT for a unit it never fitted on
    stamps = pd.to_datetime(forecasts["timestamp"])
    return np.asarray(limit.isna() | (stamps > limit), dtype=bool)


def seen_rows_note(meta: Mapping[str, Any], data: LoadedData, forecasts: pd.DataFrame) -> str:
    """ "" or the line `urnn backtest` prints under its table where some forecast values it
    scored lie on rows the model trained or early-stopped on (`train.seen_until`, by unit):
    `--split unseen`, a smaller --train-fraction or --train-fraction 0.3 on the training file
    itself scored the model on its own training rows (ETTh1's first 800 rows at 0.3: 2,946 of
    4,800 values in-sample) and the tables read as an evaluation with nothing said. Matched by
    id and time only: another file's units under the same ids (C-MAPSS's test engines, numbered
    1-100 again) match too, so the note says what holds for either (it called them in-sample)."""
    after = _after_champion_saw(meta, data, forecasts)
    if after is None or after.all():
        return ""
    until = recorded_seen_until(meta) or {}
    seen = ~after
    units = sorted({str(data.unit_of(sid)) for sid in forecasts["series"].astype(str)[seen]})
    shown_units = ", ".join(f"{shown(u)} up to {until[u]}" for u in units[:3] if u in until)
    more = f" and {len(units) - 3:,} more" if len(units) > 3 else ""
    return (
        f"{int(seen.sum()):,} of {len(seen):,} forecast values lie on series ids and times the "
        f"model trained or early-stopped on ({shown_units}{more}: its train.seen_until, matched "
        "by id and time, not by value): where these are the rows it trained on (its own "
        "training file), their scores are in-sample and read better than on data it has not "
        "seen; score a span after those rows (the model's own split of its training file, or "
        "newer data); other units under the same ids (a fleet's new engines numbered from 1 "
        "again) are not in-sample: give them ids of their own for this note to leave them out"
    )


def recorded_seen_until(meta: Mapping[str, Any]) -> dict[str, pd.Timestamp] | None:
    """A model's `train.seen_until` (`seen_until`) read back, per unit; None for a model from
    before the key, or a config.json edited into something else (nothing known)."""
    train = meta.get("train")
    recorded = train.get("seen_until") if isinstance(train, Mapping) else None
    if not isinstance(recorded, Mapping) or not recorded:
        return None
    try:
        # units by the loader's id rule: a model trained before it recorded float ids as '1.0'
        return {
            series_id_text(str(unit)): naive_utc(pd.Timestamp(stamp))
            for unit, stamp in recorded.items()
        }
    except (TypeError, ValueError):
        return None


def _none_recorded(meta: Mapping[str, Any], data: LoadedData, forecasts: pd.DataFrame) -> str:
    """A note for the decision when the champion recorded where its training ended
    (`train.seen_until`) and none of the series it is scored on here is among its units: then
    nothing is left out, and a series it trained on under another name (a one-series file is
    named by its file: `demand.csv` exported again as `demand-2014.csv`) is scored on the
    rows it trained on. Without the note the decision read as a fair comparison (a renamed
    copy of the champion's own data: mae 275.4 >= champion 255.3, scored on its training
    rows). "" when any unit matches (a new series beside known ones is simply unseen)."""
    recorded = recorded_seen_until(meta)
    if recorded is None:
        return ""
    units = sorted({str(data.unit_of(sid)) for sid in forecasts["series"].astype(str).unique()})
    known = set(recorded)
    if not units or any(unit in known for unit in units):
        return ""

    def listed(names: Sequence[str]) -> str:
        more = f" and {len(names) - 3:,} more" if len(names) > 3 else ""
        return ", ".join(shown(name) for name in names[:3]) + more

    return (
        f"none of this data's series ({listed(units)}) is one the champion recorded training "
        f"on ({listed(sorted(known))}), so none of its rows was left out: if one is the same "
        "series under another name (a one-series file is named by its file), the champion "
        "was scored on rows it trained on"
    )


def _unloadable(error: Exception) -> bool:
    """Whether a champion's load failed on the version itself (a damaged or missing artifact,
    a config this release cannot build), not on reaching the store: a brief outage must not
    become a lasting "kept" decision."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(error, (ConnectionError, TimeoutError, requests.RequestException)):
        return False  # requests' errors are OSErrors too
    if isinstance(error, MlflowException):
        return error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
    return isinstance(error, (ValueError, KeyError, OSError))


def shared_levels(
    metric: str, theirs: tuple[float, ...], mine: tuple[float, ...]
) -> tuple[tuple[float, ...] | None, str]:
    """The quantile levels a pinball or coverage `metric` compares two models on, and what to
    say of it: (None, "") when the metric reads no level or both models have the same ones;
    else the levels both forecast (in this model's order) and a note naming them, or () and
    why they cannot be compared."""
    if not metric.startswith(("pinball", "coverage")):
        return None, ""
    their_columns = {quantile_column(q) for q in theirs}
    if their_columns == {quantile_column(q) for q in mine}:
        return None, ""
    shared = tuple(q for q in mine if quantile_column(q) in their_columns)
    levels = ", ".join(f"{q:g}" for q in shared)
    if not shared:
        return (), (
            f"{metric} is taken over quantile levels, and the champion's "
            f"({', '.join(f'{q:g}' for q in theirs)}) and this model's "
            f"({', '.join(f'{q:g}' for q in mine)}) share none"
        )
    return shared, f"{metric} on the quantile levels both models forecast: {levels}"


def served_requests_refused(
    champion: ForecastPredictor,
    challenger: ForecasterConfig,
    covariates: Sequence[str],
    clock: str = CLOCK_LOCAL,
    freq: str | None = None,
) -> str | None:
    """Why requests the champion answers today would be refused (422) by the challenger as
    champion, or None: whatever its score, such a model is not promoted automatically (a
    score cannot say which requests the champion's clients send; a person can).

    The challenger forecasts fewer steps; lacks a quantile level the champion answers; is
    not a streaming model where the champion is (its /series requests answer 409); needs a
    longer history; steps weeks anchored on a day (`freq`, its data's: 'W-SUN') where the
    champion steps as many times 7 days ('7D', from any weekday: dated requests from another
    weekday refused, `week_anchor`); reads calendar features (each series' dates required)
    where the champion does not, or on the local clock (`clock`) where the champion's read
    UTC hours (undated offsets across a daylight-saving change refused); reads a covariate
    the champion does not read (a request may lack it: the service refuses a missing
    covariate the model reads); or does not know a covariate the champion knows (a request
    may carry it: the service refuses an unknown one). A model knows its data's covariates,
    and reads them only where it has covariate inputs (`covariates_read`: the linear and
    naive kinds read none), as service.served.ServedModel has it."""
    theirs = champion.model.config
    if theirs.horizon > challenger.horizon:
        return (
            f"the champion forecasts {theirs.horizon} steps and this model "
            f"{challenger.horizon}: as champion it would refuse requests for more than "
            f"{plural(challenger.horizon, 'step')} that are served today"
        )
    lost = [q for q in theirs.quantiles if q not in challenger.quantiles]
    if lost:
        return (
            f"the champion answers quantile level(s) {', '.join(f'{q:g}' for q in lost)} and "
            "this model does not: as champion it would refuse the requests asking for them "
            "that are served today"
        )
    if FORECASTERS[theirs.kind].STREAMING and not FORECASTERS[challenger.kind].STREAMING:
        return (
            f"the champion is a streaming model ({theirs.kind!r}) and this one is not "
            f"({challenger.kind!r}): as champion it would answer 409 to the /series requests "
            "that are served today"
        )
    if challenger.lookback > theirs.lookback:
        return (
            f"the champion reads histories of {theirs.lookback} values and this model "
            f"{challenger.lookback}: as champion it would refuse the histories of "
            f"{theirs.lookback} to {challenger.lookback - 1} values that are served today"
        )
    their_freq = str(champion.meta.get("freq"))
    anchor = None if freq is None else week_anchor(freq, their_freq)
    if anchor is not None and not isinstance(
        pd.tseries.frequencies.to_offset(their_freq), pd.offsets.Week
    ):
        return (
            f"the champion steps {their_freq!r} from any weekday and this model {freq!r} only "
            f"from a {WEEKDAYS[anchor]}: as champion it would refuse the dated requests "
            "starting on another weekday that are served today"
        )
    if challenger.n_calendar and not theirs.n_calendar:
        return (
            "this model reads calendar features, so every series needs its dates (start or "
            "timestamps), and the champion does not: as champion it would refuse the "
            "undated requests that are served today"
        )
    if challenger.n_calendar and calendar_clock(champion.meta) == CLOCK_UTC and clock != CLOCK_UTC:
        return (
            "the champion's calendar features read UTC hours and this model's the local clock "
            "of its data: as champion it would refuse the undated requests whose offsets span "
            "a daylight-saving change that are served today"
        )
    their_reads = covariates_read(champion.model.config, champion.covariates)
    mine_reads = covariates_read(challenger, covariates)
    needed = [name for name in mine_reads if name not in their_reads]
    if needed:
        return (
            f"this model reads covariate(s) {', '.join(map(repr, needed))} that the champion "
            "does not: as champion it would refuse the requests without them that are served "
            "today (a covariate the model reads must be given)"
        )
    unknown = [name for name in champion.covariates if name not in covariates]
    if unknown:
        return (
            f"this model does not know the champion's covariate(s) "
            f"{', '.join(map(repr, unknown))}: as champion it would refuse the requests "
            "carrying them that are served today (an unknown covariate is refused)"
        )
    return None


def with_covariates(data: LoadedData, covariates: Sequence[str]) -> LoadedData:
    """`data` with only `covariates` (each one of its own) beside the target, in that order."""
    if tuple(covariates) == data.covariates:
        return data
    columns = [data.target, *covariates]
    return replace(
        data,
        series={sid: frame[columns] for sid, frame in data.series.items()},
        filled={sid: frame[columns] for sid, frame in data.filled.items()},
        covariates=tuple(covariates),
        config=replace(data.config, covariates=tuple(covariates)),
    )


def backtest_predictor(
    predictor: ForecastPredictor,
    data: LoadedData,
    config: TrainConfig,
    backtest_config: BacktestConfig,
) -> BacktestResult | None:
    """A trained model's backtest on this data and split; None when it cannot read the data
    (another target or other covariates)."""
    model: Forecaster = predictor.model
    if predictor.target != data.target or predictor.covariates != data.covariates:
        return None
    split = config.split(model.config.lookback, model.config.horizon)
    return backtest(
        data,
        split,
        model.config,
        config.fit,
        backtest_config,
        model=model,
        scaler=predictor.scaler,
    )


def _log_champion_forecasts(
    client: Any, run_id: str, compared: Mapping[str, Comparison | None]
) -> None:
    """The champion's forecasts on this run's backtest, beside the run's own
    (`metrics/forecasts.parquet`): the evidence behind `backtest.champion_score`, which was a
    tag with nothing to recompute it from."""
    with tempfile.TemporaryDirectory(prefix="urnn-champion-") as tmp:
        for version, comparison in compared.items():
            if comparison is None or comparison.forecasts is None:
                continue
            path = Path(tmp) / f"champion_v{version}_forecasts.parquet"
            write_forecasts(comparison.forecasts, path)
            client.log_artifact(run_id, str(path), artifact_path="metrics")


def _params(
    config: TrainConfig,
    load: LoadConfig,
    model: ForecasterConfig,
    split: SplitConfig,
    backtest_config: BacktestConfig,
) -> dict[str, str]:
    out: dict[str, str] = {"data": str(Path(config.data).resolve())}
    for prefix, values in (
        ("load", load.to_dict()),
        ("model", model.to_dict()),
        ("fit", asdict(config.fit)),
        ("split", asdict(split)),
        ("backtest", asdict(backtest_config)),
    ):
        for key, value in values.items():
            out[f"{prefix}.{key}"] = _param_value(value)
    out["metric"] = config.metric
    return out


PARAM_LIMIT = 6000  # characters of one MLflow param value (mlflow.utils.validation)


def _param_value(value: Any) -> str:
    """Lists as JSON; one too long for MLflow (a fleet's held-out unit ids) is cut with a
    pointer to the model's config.json, which holds it whole."""
    text = json.dumps(list(value)) if isinstance(value, (list, tuple)) else str(value)
    if len(text) <= PARAM_LIMIT:
        return text
    note = (
        f" ... ({len(value):,} in all; the whole list is in the model's config.json)"
        if isinstance(value, (list, tuple))
        else f" ... (cut to MLflow's {PARAM_LIMIT:,} characters)"
    )
    return text[: PARAM_LIMIT - len(note)] + note


def _unused_name(name: str, taken: set[str]) -> str:
    """`name`, or it behind as many underscores as make it none of `taken`."""
    while name in taken:
        name = f"_{name}"
    return name


def _dataset(path: str, data: LoadedData) -> Any:
    """The loaded series as one long frame for `mlflow.log_input`, with its digest and schema
    computed here. MLflow's own do a Python call per cell of the whole frame (its digest checks
    every cell's type though it hashes only the first rows; its schema infers every id string):
    ~15 s of a 1,000-series `urnn train` of 300 rows each, linear in the rows. The digest is
    MLflow's (the same value for the same frame) and the schema is read from the first rows,
    which hold every column's one dtype (ids are strings, the rest typed columns)."""
    from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest
    from mlflow.data.pandas_dataset import PandasDataset, from_pandas
    from mlflow.types.utils import _infer_schema

    ids = list(data.series)
    frames = list(data.series.values())
    frame = pd.concat(frames, ignore_index=False)
    # the time and id columns beside the data's own, under names none of them holds: a
    # covariate called `timestamp` stopped `urnn train` as its run started ("cannot insert
    # timestamp, already exists"), and one called `series_id` was overwritten by the ids
    taken = {str(column) for column in frame.columns}
    time_column = _unused_name("timestamp", taken)
    id_column = _unused_name("series_id", taken | {time_column})
    frame = frame.rename_axis(time_column).reset_index()
    frame[id_column] = np.repeat(np.array(ids, dtype=object), [len(f) for f in frames])
    head = frame.head(MAX_ROWS)
    strings = head.columns[head.map(lambda cell: type(cell) is str).all(axis=0)]
    kept = head[strings.union(head.select_dtypes(include=[np.number]).columns)]
    digest = get_normalized_md5_digest(
        [pd.util.hash_pandas_object(kept).values, np.int64(len(frame))]
        + [str(x).encode() for x in frame.columns]
    )
    with warnings.catch_warnings():
        # MLflow registers its local-file source class twice (schemes "" and "file") and warns
        # that a local path matches both; either reading is the same class, so the warning only
        # adds noise to every `urnn train`.
        warnings.filterwarnings(
            "ignore", message="The specified dataset source can be interpreted in multiple ways"
        )
        dataset: PandasDataset = from_pandas(
            frame,
            source=str(Path(path).resolve()),
            name=Path(path).name,
            targets=data.target,
            digest=digest,
        )
    try:
        schema = _infer_schema(head)
    except Exception:  # what MLflow's own schema does with a frame it cannot type
        schema = None
    dataset.__dict__["schema"] = schema  # PandasDataset.schema is a cached_property
    return dataset

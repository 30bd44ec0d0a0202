"""The forecaster as an MLflow pyfunc model: what it stores, what its predict takes and returns.

Artifacts (the ARCHITECTURE.md "Model artifact"): `config.json` (written by
`models.forecaster.save_checkpoint`: the model config plus `EXTRA` keys below) and `weights.pt`
(a bare state dict). Loading reads the JSON and calls `torch.load(weights_only=True)`: no pickle
runs. The pyfunc class lives in `training/pyfunc_entry.py`, logged *from code* (that file calls
`mlflow.models.set_model`), so MLflow stores that file's source, not a cloudpickle of the object.

Predict input (`pd.DataFrame`, one row per series; JSON `{"dataframe_records": [...]}` for
`mlflow models serve`):

- `values` (list of float, required): the target's history, oldest first, at least `lookback`
  long, every value finite (a NaN or null is refused wherever it lies, as the service does);
  only the last `lookback` values are read. A value too large for the model once scaled (a
  logger's sentinel such as 1e308) is refused as POST /forecast refuses it
  (`too_large_problem`): its column, value and position, the range the model takes in the
  data's units, and the remedy.
- one list column per covariate the model was trained with (same length as `values`); none
  is named like the columns here (`ROW_COLUMNS`: TrainConfig refuses such a covariate).
- `id` (str, optional): echoed in the output; default `series-<row>`.
- `start` (str, optional): timestamp of the first value, ISO 8601 ('2018-06-01T00:00:00',
  an offset or Z may follow; '01.07.2016' is refused, not guessed); with it the output carries
  the forecast timestamps (at the training frequency), and a model with calendar features
  needs it.
- the forecast API's request fields, optional: `horizon` (answer steps 1..horizon), `freq`
  (must be the model's), `timestamps` and `quantiles` (refused: give `start`, and the
  `quantiles` param below). An empty cell ("", None, NA, NaN) in any optional column is no
  value.
- `timezone` (str, optional): an IANA time zone name such as "Europe/London", as the forecast
  API's `timezone` (docs/serving.md); an empty cell ("", None, NA, NaN) is a row without a
  zone (the API's JSON leaves the field out instead, and refuses ""). A naive `start` is a
  local time there (one that a daylight-saving change skips or repeats is refused), a zoned
  one is converted to it, and the steps, their timestamps and a local-clock model's calendar
  features follow that zone's clock across daylight-saving changes: steps of a calendar
  frequency are its local dates, a step that a change skips the first instant after the gap,
  a repeated one the earlier instant (`training.validation.local_steps`, the service's
  policy; a `start` written as a skipped midnight with the offset before the change,
  "2024-09-08T00:00:00-04:00" in America/Santiago, starts a midnight series). Models
  registered before the column was added have a signature without it, and
  MLflow's schema enforcement drops it (with a warning): register them again to use it
  through `mlflow.pyfunc`. The same holds for the request fields above (signatures since
  2026-12-05), and for empty optional cells, which older signatures' string columns refuse.

Predict params (`predict(df, params={...})`; `"params": {...}` beside the rows in a JSON body
for `mlflow models serve`), in the signature's params schema since 2026-12-06 (MLflow drops
params a model's signature does not list, with a warning, and so did it with these before):

- `horizon` (int, default the model's): the steps answered for every row without a `horizon`
  cell of its own (a row's cell wins), 1 to the model's horizon.
- `quantiles` (list of float, default every trained level): the `q<level>` columns answered,
  in the order given, each a level the model was trained with (`mean` is always answered).

Predict output (`pd.DataFrame`, long, one row per series and horizon step): `id`, `step`
(1..horizon), `timestamp` (ISO text, or "" without `start`), `mean` (the point forecast, which
is the 0.5 quantile), and one `q<level>` column per quantile asked for (default: every trained
level), all in the data's original units.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset

from models.forecaster import (
    CHECKPOINT_CONFIG,
    CHECKPOINT_WEIGHTS,
    Forecaster,
    ForecasterConfig,
    ModelConfigError,
    calendar_features,
    floor_at_zero,
    load_checkpoint,
    model_device,
    snap_zeros,
    unscale_from_last,
)
from training.data import NO_DATE
from training.metrics import quantile_column
from training.split import ScalerError, StandardScaler
from training.validation import (
    FORECAST_ID_MAX,
    ZONE_RULE,
    in_zone,
    is_number_text,
    local_steps,
    local_time_problem,
    matching_id,
    plural,
    series_id_text,
    week_anchor,
    week_start_problem,
    with_seconds_offset,
    written_at_skipped_midnight,
    zone_named,
)
from urnn_forecast.field_types import shown, shown_names

# Keys that the training pipeline adds to config.json beside "format" and "model".
EXTRA = ("lookback", "horizon", "quantiles", "freq", "target", "covariates", "scaler",
         "reference", "package_version", "load", "split", "evaluation",
         "calendar_clock", "fit", "train", "realised_reference")  # fmt: skip
HISTOGRAM_BINS = 10


# The clock a model's calendar features (hour of day, day of week, day of year) were learnt
# on. The loader converts timestamps that carry a zone or UTC offsets to UTC (one regular axis
# across daylight-saving changes), so such a model learnt UTC hours: serving must read zoned
# input on UTC too. Naive training timestamps are a local wall clock as written: zoned input
# is then read on its own zone's clock. Models from before the key: "local".
CalendarClock = Literal["local", "utc"]
CLOCK_LOCAL: CalendarClock = "local"
CLOCK_UTC: CalendarClock = "utc"


def calendar_clock(meta: Mapping[str, Any]) -> CalendarClock:
    return CLOCK_UTC if meta.get("calendar_clock") == CLOCK_UTC else CLOCK_LOCAL


def on_clock(index: pd.DatetimeIndex, clock: str) -> pd.DatetimeIndex:
    """`index` as the model's calendar reads it: zoned stamps as UTC wall clock for a "utc"
    model; as given otherwise."""
    if clock == CLOCK_UTC and index.tz is not None:
        return index.tz_convert("UTC").tz_localize(None)
    return index


# A requested level matches a trained one within this share of it (service too): float32's
# rounding of a level (0.9 reads 0.8999999761581421, 2.7e-8 of it: a numpy caller's float32
# array, which 1e-9 absolute refused) lies inside, and two levels a model is trained with
# differ within 6 significant digits (models.forecaster), by 1e-6 of them or more.
QUANTILE_TOLERANCE = 1e-7


def same_level(trained: float, requested: float) -> bool:
    """Whether a requested quantile level names the trained one (QUANTILE_TOLERANCE)."""
    return abs(trained - requested) <= QUANTILE_TOLERANCE * abs(trained)


class ForecastInputError(ValueError):
    """A predict input that the model cannot forecast; names the series (row) and the field."""


# Values of one column a drift reference samples at most: windows are taken at a stride that
# keeps their values under it (a year of hourly windows of 336 is 2.8 M values).
REFERENCE_SAMPLE = 2_000_000
# The drift reference's spaces (`reference[column]["space"]`): "window" = each look-back window
# as z-scores of its own mean and std (the target of a windowed model that normalises each
# window, "instance" or "last"); "values" = the values as they are (covariates, read at their
# level; the target of a model that reads it, "none" or a stream's; every column of a model
# registered before the key).
DRIFT_SPACES = ("window", "values")


def window_scores(rows: np.ndarray) -> np.ndarray:
    """Each row (one look-back window) as z-scores of its own mean and population std; a
    constant row, or one whose spread is rounding noise, is all zeros.

    The target's drift is measured in this space. In raw values a short stretch of a seasonal
    series is always far from a whole year's histogram (the training span of ETTh1 scored
    against its own reference: PSI 3.6 at the median over 20,000-value windows; the alert's
    threshold is 0.2), so the drift gauge read "shifted" on the data the model was trained
    on. Normalised per window, as the network reads them, the same windows score 0.05.

    "Rounding noise" is relative to the window's own size only: with a floor at 1 (std above
    1e-12 x (1 + |mean|)) a current logged in amperes (ETTh1 OT x 1e-13) was all "flat", every
    window scored zeros and the drift gauge read 0 whatever came in."""
    rows = np.asarray(rows, dtype=np.float64)
    mean = rows.mean(axis=-1, keepdims=True)
    std = rows.std(axis=-1, keepdims=True)
    spread = (std > 0) & (std > 1e-12 * np.abs(mean))
    return np.where(spread, (rows - mean) / np.where(spread, std, 1.0), 0.0)


def reference_statistics(
    frames: Sequence[pd.DataFrame],
    *,
    bins: int = HISTOGRAM_BINS,
    window: tuple[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per column of the (unscaled) training frames: mean, std, min, max, and a histogram for
    PSI: `edges` are the interior bin edges (train quantiles, deduplicated), so the bins are
    (-inf, e0], (e0, e1], ..., (e_last, inf); `proportions` has len(edges) + 1 entries.
    `window` = (column, lookback): that column's histogram is of its look-back windows in the
    "window" space (`window_scores`), sampled at a stride up to REFERENCE_SAMPLE values;
    mean, std, min and max stay the column's own."""
    data = pd.concat(list(frames))
    out: dict[str, dict[str, Any]] = {}
    for column in data.columns:
        values = data[column].to_numpy(dtype=np.float64)
        scored = None
        if window is not None and str(column) == window[0]:
            scored = _window_sample(
                [f[column].to_numpy(dtype=np.float64) for f in frames], window[1]
            )
        space = "values" if scored is None else "window"
        binned = values if scored is None else scored
        levels = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = np.unique(np.quantile(binned, levels))
        counts = np.bincount(np.searchsorted(edges, binned, side="left"), minlength=len(edges) + 1)
        out[str(column)] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "count": len(values),
            "space": space,
            **({"window": window[1]} if space == "window" and window is not None else {}),
            "edges": [float(e) for e in edges],
            "proportions": [float(c) / len(binned) for c in counts],
        }
    return out


def _window_sample(series: Sequence[np.ndarray], lookback: int) -> np.ndarray | None:
    """The look-back windows of every series, at one stride that keeps their values under
    REFERENCE_SAMPLE, in the "window" space; None when no series holds one window."""
    views = [
        np.lib.stride_tricks.sliding_window_view(values, lookback)
        for values in series
        if len(values) >= lookback
    ]
    total = sum(view.size for view in views)
    if not total:
        return None
    stride = max(1, -(-total // REFERENCE_SAMPLE))
    return np.concatenate([window_scores(view[::stride]).reshape(-1) for view in views])


def covariates_read(config: ForecasterConfig, covariates: Sequence[str]) -> tuple[str, ...]:
    """The covariates a model of `config` trained on `covariates` (the data's: the ones it
    knows) reads, which every request must carry: all of them where it has covariate inputs
    (ForecasterConfig refuses n_past_covariates on a kind that reads none), else none."""
    return tuple(covariates) if config.n_past_covariates > 0 else ()


def forecaster_meta_problem(meta: Mapping[str, Any]) -> str | None:
    """What is wrong with the keys of a forecaster's config.json that every predict reads
    (`target`, `freq`, `covariates`), or None. A config.json edited without them loaded, and
    then failed far from the file: `urnn train` comparing with such a champion stopped in a
    traceback (KeyError: 'target') after registering its version, which was left with no
    decision, and predict blamed the request's `start` for a `freq` the model did not have."""

    def got(key: str) -> str:
        return f"got {shown(meta[key])}" if key in meta else "it has none"

    target = meta.get("target")
    if not isinstance(target, str) or not target:
        return f"'target' must be the forecast column's name; {got('target')}"
    freq = meta.get("freq")
    try:
        valid = isinstance(freq, str) and to_offset(freq) is not None
    except (ValueError, OverflowError):
        valid = False
    if not valid:
        return f"'freq' must be a pandas frequency alias such as 'h'; {got('freq')}"
    covariates = meta.get("covariates", [])
    if not isinstance(covariates, list) or not all(
        isinstance(name, str) and name for name in covariates
    ):
        return f"'covariates' must be a list of column names; {got('covariates')}"
    return None


class UnservableModelError(ValueError):
    """A checkpoint that loads but that the serving paths cannot feed."""


@dataclass
class ForecastPredictor:
    """A loaded forecaster plus what the data stage knew; turns history rows into forecasts."""

    model: Forecaster
    meta: dict[str, Any]
    scaler: StandardScaler

    def __post_init__(self) -> None:
        # The service and the pyfunc pass history rows, not channel ids: a forecaster with a
        # channel embedding (ForecasterConfig.n_channels > 0, benchmark use) cannot be served.
        n = self.model.config.n_channels
        if n:
            raise UnservableModelError(
                f"this forecaster has a channel embedding (n_channels={n}): it needs the channel "
                "id of every series, which the pyfunc and the forecast service do not take; "
                "train it with n_channels=0 to serve it"
            )

    @classmethod
    def from_directory(
        cls, directory: str | Path, *, source: str | None = None
    ) -> ForecastPredictor:
        """The predictor saved in `directory`; `source` names its weights file in a
        CheckpointError (`load_checkpoint`), e.g. as stored when `directory` is a copy."""
        model, meta = load_checkpoint(directory, source=source)
        config = Path(directory) / CHECKPOINT_CONFIG
        if not isinstance(meta.get("scaler"), dict):  # a bare model checkpoint, not a forecaster
            raise ModelConfigError(config, "no 'scaler' object")
        if (problem := forecaster_meta_problem(meta)) is not None:
            raise ModelConfigError(config, problem)
        try:
            scaler = StandardScaler.from_dict(meta["scaler"])
        except ScalerError as error:
            raise ModelConfigError(config, f"'scaler': {error}") from None
        needed = [str(meta["target"]), *meta.get("covariates", [])]
        unscaled = [name for name in needed if name not in scaler.columns]
        if unscaled or not scaler.stats:
            said = f"no statistics for {shown_names(unscaled)}" if unscaled else "no statistics"
            raise ModelConfigError(config, f"'scaler' has {said}")
        return cls(model=model, meta=meta, scaler=scaler)

    @classmethod
    def from_files(cls, config_path: str | Path, weights_path: str | Path) -> ForecastPredictor:
        config_path, weights_path = Path(config_path), Path(weights_path)
        if config_path.name != CHECKPOINT_CONFIG or weights_path.name != CHECKPOINT_WEIGHTS:
            raise FileNotFoundError(f"expected {CHECKPOINT_CONFIG} and {CHECKPOINT_WEIGHTS}")
        if config_path.parent != weights_path.parent:
            raise FileNotFoundError("config.json and weights.pt must lie in one folder")
        return cls.from_directory(config_path.parent)

    @property
    def target(self) -> str:
        return str(self.meta["target"])

    @property
    def covariates(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.meta.get("covariates", []))

    def predict_frame(
        self, frame: pd.DataFrame, params: Mapping[str, Any] | None = None
    ) -> pd.DataFrame:
        """Forecast rows for the history rows of `frame`; `params` as the module docstring's
        "Predict params" (None: every step and level)."""
        c = self.model.config
        read = covariates_read(c, self.covariates)
        steps, levels = self._params(params or {})
        if "values" not in frame.columns:
            raise ForecastInputError("the input needs a `values` column (the target's history)")
        if len(frame) == 0:
            raise ForecastInputError("the input holds no rows; give one row per series")
        missing = [name for name in read if name not in frame]
        if missing:
            raise ForecastInputError(
                f"missing covariate column(s) {missing}; the model reads {list(read)}"
            )
        ids = [self._id(frame, i) for i in range(len(frame))]
        repeated = repeated_ids(ids)
        if repeated:  # two answers under one id could not be told apart
            holders = [i for i, sid in enumerate(ids) if sid == repeated[0]]
            named = [i for i in holders if not self._has_id(frame, i)]
            if named:  # 'series-<row>' of a row without an id is an id another row gives
                raise ForecastInputError(
                    f"series {shown(repeated[0])}: row {named[0]} has no id and is named "
                    f"{shown(repeated[0])} by default, the id row "
                    f"{next(i for i in holders if i not in named)} gives; give row {named[0]} "
                    "its own id"
                )
            raise ForecastInputError(
                f"series {shown(repeated[0])}: the id is given to more than one row; give each "
                "series its own id"
            )
        targets, covariates, calendars, futures, stamps = [], [], [], [], []
        lasts: list[float] = []  # each history's last value: what the forecast is measured from
        horizons = [
            self._request_fields(frame, i, series_id, steps) for i, series_id in enumerate(ids)
        ]
        for i, series_id in enumerate(ids):
            values = self._series(frame["values"].iloc[i], series_id, "values")
            lasts.append(float(values[-1]))
            # A streaming model reads the whole history from a fresh state; the others their
            # last `lookback` rows.
            keep = len(values) if self.model.STREAMING else c.lookback
            rows = {self.target: values[-keep:]}
            for name in read:
                cov = self._series(frame[name].iloc[i], series_id, name)
                if len(cov) != len(values):
                    raise ForecastInputError(
                        f"series {shown(series_id)}: covariate {name!r} has "
                        f"{plural(len(cov), 'value')}, `values` has {len(values)}; they must be "
                        "the same length"
                    )
                rows[name] = cov[-keep:]
            scaler_id = self._scaler_id(series_id)
            scaled = self.scaler.transform(scaler_id, pd.DataFrame(rows))
            offset = len(values) - keep  # the position of the first value read, as sent
            inputs = [
                _float32(
                    scaled[column].to_numpy(),
                    rows[column],
                    offset,
                    self.scaler.column_stats(scaler_id, column),
                    series_id,
                    "values" if column == self.target else column,
                )
                for column in rows
            ]
            targets.append(inputs[0])
            if read:
                covariates.append(np.stack(inputs[1:], axis=1))
            index = self._future_index(frame, i, series_id, len(values), keep)
            stamps.append(index[keep:] if index is not None else None)
            if c.n_calendar:
                if index is None:
                    raise ForecastInputError(
                        f"series {shown(series_id)}: this model reads calendar features; "
                        "give `start`"
                    )
                clock = on_clock(index, calendar_clock(self.meta))
                features = calendar_features(clock, str(self.meta["freq"])).astype(np.float32)
                calendars.append(features[:keep])
                futures.append(features[keep:])
        # Histories of a streaming model differ in length: one forward per series.
        groups = [[i] for i in range(len(ids))] if self.model.STREAMING else [list(range(len(ids)))]
        # The model may have been moved off the CPU (the service places it on its device).
        device = model_device(self.model)
        outs = []
        with torch.inference_mode():
            for group in groups:

                def stacked(
                    arrays: list[np.ndarray], group: list[int] = group
                ) -> torch.Tensor | None:
                    if not arrays:
                        return None
                    return torch.from_numpy(np.stack([arrays[j] for j in group])).to(device)

                out = self.model(
                    stacked(targets), stacked(covariates), stacked(calendars), stacked(futures)
                )
                outs.append(out.cpu().double().numpy())
        forecast = np.concatenate(outs)  # (B, H, Q), scaled
        not_finite = ~np.isfinite(forecast).reshape(len(ids), -1).all(axis=1)
        if not_finite.any():  # finite histories far outside the training data's range
            raise ForecastInputError(
                f"series {shown(ids[int(np.argmax(not_finite))])}: the model's forecast from "
                "this history is not finite; its values lie too far outside the training "
                "data's range"
            )
        pieces = []
        for i, series_id in enumerate(ids):
            scaler_id = self._scaler_id(series_id)
            mean, scale = self.scaler.column_stats(scaler_id, self.target)
            raw = unscale_from_last(forecast[i], mean, scale, lasts[i])  # as the backtest
            snap_zeros(raw, mean, scale)
            floor_at_zero(raw, c.non_negative)
            index = stamps[i]
            piece = pd.DataFrame(
                {
                    "id": series_id,
                    "step": np.arange(1, c.horizon + 1, dtype=np.int64),
                    "timestamp": [t.isoformat() for t in index] if index is not None else "",
                    "mean": raw[:, c.median_index],
                }
            )
            for j in levels:
                piece[quantile_column(c.quantiles[j])] = raw[:, j]
            pieces.append(piece.iloc[: horizons[i]])
        return pd.concat(pieces, ignore_index=True)

    def _params(self, params: Mapping[str, Any]) -> tuple[int, tuple[int, ...]]:
        """The predict params' steps (default: the model's horizon) and the positions of the
        quantile levels to answer (default: all). MLflow has checked their types against the
        signature; a direct caller may pass anything, so both are checked here again."""
        c = self.model.config
        steps = c.horizon
        if (horizon := params.get("horizon")) is not None:
            value = horizon.item() if isinstance(horizon, np.generic) else horizon
            if type(value) is not int or not 1 <= value <= c.horizon:
                raise ForecastInputError(
                    f"params 'horizon' must be a whole number of steps from 1 to the model's "
                    f"{c.horizon}; got {shown(value)}"
                )
            steps = value
        requested = params.get("quantiles")
        if requested is None:
            return steps, tuple(range(len(c.quantiles)))
        trained = ", ".join(f"{q:g}" for q in c.quantiles)
        listed = isinstance(requested, list | tuple) or (
            isinstance(requested, np.ndarray) and requested.ndim == 1
        )
        if not listed or not len(requested):
            raise ForecastInputError(
                f"params 'quantiles' must be a list of levels the model was trained with "
                f"({trained}); got {shown(requested)}"
            )
        levels: list[int] = []
        for position, level in enumerate(requested):
            match = (
                [j for j, q in enumerate(c.quantiles) if same_level(q, level)]
                if _is_number(level)
                else []
            )
            if not match:
                raise ForecastInputError(
                    f"params 'quantiles'[{position}]: {shown(level)} is not a quantile the "
                    f"model was trained with; choose from {trained}"
                )
            if match[0] in levels:  # two columns of one name: one would vanish
                raise ForecastInputError(
                    f"params 'quantiles'[{position}]: {shown(level)} repeats the level at "
                    f"position {levels.index(match[0])}; ask for each level once"
                )
            levels.append(match[0])
        return steps, tuple(levels)

    def _request_columns(self) -> tuple[str, ...]:
        """REQUEST_COLUMNS but a covariate's name: a covariate called `freq` is a covariate."""
        return tuple(name for name in REQUEST_COLUMNS if name not in self.covariates)

    def _request_fields(self, frame: pd.DataFrame, i: int, series_id: str, steps: int) -> int:
        """The row's steps to answer (`horizon`, default `steps`: the params'), after checking
        the forecast API's other request fields where a row carries them: `freq` must be the
        model's, and `timestamps` and `quantiles` are refused. Before they were in the
        signature, MLflow dropped such columns with a log line, so `timestamps` without
        `start` answered undated rows and a `freq` of 'D' on an hourly model hours."""
        c = self.model.config
        where = f"series {shown(series_id)}"
        row = {name: frame[name].iloc[i] for name in self._request_columns() if name in frame}
        if not _missing(row.get("timestamps")):
            raise ForecastInputError(
                f"{where}: `timestamps` is not read by the model's predict; give `start`, the "
                f"time of the first value (the steps follow the model's frequency "
                f"{self.meta['freq']!r})"
            )
        if not _missing(quantiles := row.get("quantiles")):
            levels = ", ".join(f"{q:g}" for q in c.quantiles)
            raise ForecastInputError(
                f"{where}: `quantiles` is not read from a row; give the levels once for every "
                f"row as predict's params {{'quantiles': [...]}}, chosen from those the model "
                f"was trained with ({levels}) (got {shown(quantiles)})"
            )
        if not _missing(freq := row.get("freq")):
            model_freq = str(self.meta["freq"])
            try:
                same = isinstance(freq, str) and to_offset(freq) == to_offset(model_freq)
            except (ValueError, OverflowError):  # not an alias; '99999999999999999999h'
                same = False
            if not same and isinstance(freq, str):
                same = self._same_weeks(frame, i, series_id, freq, model_freq)
            if not same:
                raise ForecastInputError(
                    f"{where}: `freq` {shown(freq)} is not the model's frequency "
                    f"{model_freq!r}; leave it out or give {model_freq!r}"
                )
        horizon = row.get("horizon")
        if _missing(horizon):
            return steps
        value = horizon.item() if isinstance(horizon, np.generic) else horizon
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # a column with an empty cell is float: 24.0 is 24
        if type(value) is not int or not 1 <= value <= c.horizon:
            raise ForecastInputError(
                f"{where}: `horizon` must be a whole number of steps from 1 to the model's "
                f"{c.horizon}; got {shown(value)}"
            )
        return value

    @staticmethod
    def _same_weeks(
        frame: pd.DataFrame, i: int, series_id: str, freq: str, model_freq: str
    ) -> bool:
        """Whether `freq` is the model's weeks spelt otherwise ('W-SUN' for '7D', the other
        way round; `week_anchor`, the service's rule) for row `i`: from the anchor's weekday
        only, on the `start`'s own clock (`week_start_problem`, as backtests are judged). A
        row without `start` has no weekday to differ."""
        if week_anchor(freq, model_freq) is None:
            return False
        start = frame["start"].iloc[i] if "start" in frame else None
        if start is None or _missing(start):
            return True
        try:
            first = pd.Timestamp(start)
        except (ValueError, TypeError, OverflowError):
            return True  # the start's own check names what is wrong with it
        if (problem := week_start_problem(freq, model_freq, {series_id: first})) is not None:
            raise ForecastInputError(
                f"series {shown(series_id)}: `freq` {problem}; give `freq` {model_freq!r} or "
                "leave it out"
            )
        return True

    @staticmethod
    def _has_id(frame: pd.DataFrame, i: int) -> bool:
        """Whether row `i` gives its own id (else `_id` names it 'series-<row>')."""
        if "id" not in frame.columns:
            return False
        value = frame["id"].iloc[i]
        return isinstance(value, str) and bool(value)

    def _id(self, frame: pd.DataFrame, i: int) -> str:
        """The row's `id`; 'series-<row>' where none is given (no column, or an empty cell).
        An id that is not text is refused: replaced, its answer could not be matched."""
        if "id" in frame.columns:
            value = frame["id"].iloc[i]
            if isinstance(value, str) and len(value) > FORECAST_ID_MAX:
                raise ForecastInputError(  # the service's limit: the same request, one answer
                    f"row {i}: `id` must be 1 to {FORECAST_ID_MAX} characters; got "
                    f"{len(value)} ({shown(value)})"
                )
            if isinstance(value, str) and value:
                return value
            if not _missing(value):
                given = value.item() if isinstance(value, np.generic) else value
                listed = isinstance(given, list | tuple | np.ndarray)
                raise ForecastInputError(
                    f"row {i}: `id` must be a text such as 'pump-7'; got {shown(given)}"
                    + (f"; {DICT_OF_COLUMNS}" if listed else "")
                )
        return f"series-{i}"

    def _series(self, raw: object, series_id: str, field: str) -> np.ndarray:
        try:
            if isinstance(raw, list | tuple) and any(isinstance(v, bool | np.bool_) for v in raw):
                raise TypeError("true/false among the numbers")  # numpy would read them as 1, 0
            given = np.asarray(raw)
            if given.ndim != 1:  # nested lists: flattened, they would read as a longer history
                raise TypeError("not a flat list")
            if given.dtype == object:  # numbers held as Python objects (a JSON array, say)
                items = given.reshape(-1).tolist()
                position = next((k for k, item in enumerate(items) if not _is_number(item)), None)
                if position is not None and items[position] is None:  # a JSON null: a gap
                    raise ForecastInputError(
                        f"series {shown(series_id)}: {field!r} holds null at position "
                        f"{position}; every value must be a finite number"
                    )
                if position is not None:
                    raise TypeError("not numbers")
                given = np.asarray(items, dtype=np.float64)
            if given.dtype.kind not in "iuf":  # text, true/false: not numbers
                raise TypeError(given.dtype)
            values = given.astype(np.float64).reshape(-1)
        except ForecastInputError:
            raise
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int of 400 digits
            listed = isinstance(raw, list | tuple) or (isinstance(raw, np.ndarray) and raw.ndim)
            cells: Any = raw if listed else ()  # a 0-d array cannot be iterated
            nested = any(isinstance(item, list | tuple | np.ndarray) for item in cells)
            raise ForecastInputError(
                f"series {shown(series_id)}: {field!r} must be a flat list of numbers "
                "(float64's range)" + (f"; it holds lists: {DICT_OF_COLUMNS}" if nested else "")
            ) from None
        lookback = self.model.config.lookback
        if len(values) < lookback:
            raise ForecastInputError(
                f"series {shown(series_id)}: {field!r} has {plural(len(values), 'value')}; the "
                f"model needs at least lookback={lookback} and reads the last {lookback}"
            )
        bad = ~np.isfinite(values)
        if bad.any():  # anywhere, as the service refuses it: a gap is not for predict to skip
            position = int(np.argmax(bad))
            value = float(values[position])
            what = "NaN" if value != value else f"{value}"  # as the service writes it
            raise ForecastInputError(
                f"series {shown(series_id)}: {field!r} holds {what} at position {position}; "
                "every value must be a finite number"
            )
        return values

    def _scaler_id(self, series_id: str) -> str:
        if self.scaler.scope == "global" or series_id in self.scaler.stats:
            return series_id
        if series_id_text(series_id) in self.scaler.stats:  # '1.0' is the loader's '1'
            return series_id_text(series_id)
        if (key := matching_id(self.scaler.stats, series_id)) is not None:  # from before
            return key
        if len(self.scaler.stats) == 1:  # a per-series scaler of one series: use its stats
            return next(iter(self.scaler.stats))
        raise ForecastInputError(
            f"series {shown(series_id)}: the model's scaler is per series and does not know this id"
        )

    def _future_index(
        self, frame: pd.DataFrame, i: int, series_id: str, n_values: int, keep: int
    ) -> pd.DatetimeIndex | None:
        """Timestamps of the last `keep` inputs and the `horizon` forecasts, from `start` (on
        the row's `timezone` clock when it names one). The zone is checked first, with or
        without a start, as the service checks it: read only to date the forecast, a bad one
        in a row without a start was passed over and answered."""
        zone = self._zone(frame, i, series_id)
        if "start" not in frame.columns:
            return None
        start = frame["start"].iloc[i]
        if _missing(start):
            return None
        if not pd.api.types.is_scalar(start) or (
            isinstance(start, str) and NO_DATE.fullmatch(start)
        ):  # a list, an array; 'now', '13:00', which pandas dates to the day it runs
            raise ForecastInputError(
                f"series {shown(series_id)}: `start` must be an ISO 8601 date and time such as "
                f"'2018-06-01T00:00:00'; got {shown(start)}"
            )
        if _is_number(start) or is_number_text(start):  # numpy's integers too
            # pd.Timestamp read 1527811200 as nanoseconds (1970-01-01T00:00:01.5), dating the
            # forecast and its calendar features in 1970. A text of digits ('20180601', ISO's
            # basic form) is refused too, as the service refuses it: one request, one answer
            raise ForecastInputError(
                f"series {shown(series_id)}: `start` {shown(start)} is a number, not a date and "
                "time; give an ISO 8601 text such as '2018-06-01T00:00:00' (year-month-day "
                "with dashes, as the forecast API takes it)"
            )
        if isinstance(start, str) and not _ISO_DATE_TIME.fullmatch(start.strip()):
            # pandas guessed day and month in '01.07.2016' (7 January) and '05/06/07': the
            # forecast dated, and a calendar model fed, wrongly without a word
            raise ForecastInputError(
                f"series {shown(series_id)}: `start` {shown(start)} is not an ISO 8601 date and "
                "time; write it as year-month-day, e.g. '2018-06-01T00:00:00' (an offset such "
                "as +02:00 or Z may follow), as the forecast API takes it"
            )
        c = self.model.config
        freq = str(self.meta["freq"])
        try:
            # pandas cannot read the local mean time offsets it writes (+00:19:32)
            written = first = pd.Timestamp(with_seconds_offset(start) or start)
            offset = pd.tseries.frequencies.to_offset(freq)
            midnight = False
            if zone is not None:
                first = self._on_zone_clock(first, zone, series_id)
                midnight = written_at_skipped_midnight(written, first)  # as the service
            index = local_steps(first, n_values + c.horizon, offset, skipped_midnight=midnight)
        except ForecastInputError:
            raise
        except (TypeError, ValueError):
            raise ForecastInputError(
                f"series {shown(series_id)}: bad `start` {shown(start)}"
            ) from None
        if (problem := off_grid(first, offset, freq)) is not None:
            raise ForecastInputError(f"series {shown(series_id)}: `start` {problem}")
        last = index[-1].tz_localize(None) if index.tz is not None else index[-1]
        if index[0].tz_localize(None) < pd.Timestamp.min or last > pd.Timestamp.max:
            raise ForecastInputError(  # '9999-12-31' forecast into the year 10000
                f"series {shown(series_id)}: `start` {shown(start)}: its "
                f"{plural(n_values, 'value')} and {plural(c.horizon, 'forecast step')} must lie "
                f"between {pd.Timestamp.min} and "
                f"{pd.Timestamp.max}"
            )
        return index[n_values - keep :]

    def _zone(self, frame: pd.DataFrame, i: int, series_id: str) -> ZoneInfo | None:
        """The row's `timezone` (optional column) as a zone; None when absent or empty (a
        column has a cell in every row: "", None, NA or NaN is a row without a zone, where
        the service's JSON leaves the field out and refuses "")."""
        if "timezone" not in frame.columns:
            return None
        name = frame["timezone"].iloc[i]
        if _missing(name):  # "", None, NaN, NA
            return None
        try:
            if not isinstance(name, str):
                raise ValueError(f"{str(name)[:60]} is not a text; it {ZONE_RULE}")
            return zone_named(name)
        except ValueError as error:
            raise ForecastInputError(f"series {shown(series_id)}: `timezone` {error}") from None

    @staticmethod
    def _on_zone_clock(first: pd.Timestamp, zone: ZoneInfo, series_id: str) -> pd.Timestamp:
        """`start` on `zone`'s clock, as the service reads it (service.validation.zoned_start)."""
        stamps = pd.DatetimeIndex([first])
        if stamps.tz is None and (problem := local_time_problem(stamps, zone)) is not None:
            raise ForecastInputError(f"series {shown(series_id)}: `start` {problem[1]}")
        zoned: pd.Timestamp = in_zone(stamps, zone)[0]
        return zoned


def repeated_ids(ids: Sequence[str]) -> list[str]:
    """The ids given to more than one row, sorted. Counted once: `ids.count` per row was
    quadratic, 5.7 s of a 30,000-series batch before any forecast (an hour at a million)."""
    counts = Counter(ids)
    return sorted(sid for sid, count in counts.items() if count > 1)


def off_grid(first: pd.Timestamp, offset: BaseOffset, freq: str) -> str | None:
    """Why `first` cannot start a series at a calendar frequency, or None. Its steps fall on
    anchors (month ends, Mondays, business days): pd.date_range would move a start between
    them to the next one, silently dating the history later than the caller said. The
    service's checks say the same (service.validation.check_on_grid)."""
    if isinstance(offset, pd.offsets.Tick) or offset.is_on_offset(first):
        return None
    return (
        f"{first.isoformat()} is not a step of the model's frequency {freq!r}; the nearest "
        f"steps are {offset.rollback(first).isoformat()} and "
        f"{offset.rollforward(first).isoformat()}"
    )


# What a list where one row's value belongs most likely means. MLflow's scoring server makes
# such a dict of `{"instances": [records]}` too: told to send "a list of records", the client
# who had sent exactly that under `instances` was left to guess which key to use.
DICT_OF_COLUMNS = (
    "a dict of columns ({'id': [...], 'values': [[...], ...]}) is read by MLflow as one row; "
    "give a DataFrame (or a list of records), one row per series; over HTTP "
    '(mlflow models serve): {"dataframe_records": [...]}, dataframe_split or inputs as a list '
    "of records (MLflow turns instances into a dict of columns)"
)

# The columns a predict row has beside the covariates' own. A covariate of one of these names
# cannot be told apart from it (a covariate `values` was read as the target's history, one
# named `start` or `id` stopped `urnn train` after its fit, checking the input example), so
# TrainConfig refuses such a covariate before the fit.
ROW_COLUMNS = ("id", "values", "start", "timezone")

# Fields of the forecast API's series that a predict row may carry: `horizon` is honoured,
# `freq` checked, `timestamps` and `quantiles` refused (ForecastPredictor._request_fields).
REQUEST_COLUMNS = ("horizon", "freq", "timestamps", "quantiles")

# ISO 8601 extended: a date, optionally a time to the minute or finer (to the microsecond),
# optionally an offset with its minutes (with seconds, as pandas writes local mean time) or Z;
# nothing pandas would have to guess, and what the service's `start` takes (it refuses '+02'
# and nanoseconds: one request, one answer).
_ISO_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,6}0*)?)?)?"
    r"(?:[Zz]|[+-]\d{2}:?\d{2}(?::\d{2}(?:\.\d+)?)?)?"
)  # digits past the microsecond only as zeros ('.000000000', numpy's ns text), as the service


def _missing(value: object) -> bool:
    """An empty cell: None, NaN, pandas' NA or NaT, or ''."""
    if isinstance(value, str):
        return value == ""
    if value is None or not pd.api.types.is_scalar(value):
        return value is None
    return bool(pd.isna(value))  # type: ignore[call-overload]  # a scalar: NaN, NA, NaT


def as_float32(values: np.ndarray) -> np.ndarray | None:
    """The model's float32 input, or None where finite float64 values overflow it (|z| >
    3e38: the forward would answer NaN). Shared with the service's checks."""
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    return out if np.isfinite(out).all() else None


# The largest |scaled value| the model's float32 input holds: what `too_large_problem`
# bounds a look-back by on POST /forecast and in the pyfunc.
FLOAT32_LARGEST = float(np.finfo(np.float32).max)
FLOAT32_BEYOND = "beyond float32's range"


def too_large_problem(
    value: float, position: int, mean: float, scale: float, bound: float, beyond: str
) -> str:
    """What a 422 (POST /forecast, the /series endpoints) or a pyfunc refusal says of a value
    too large once scaled: the value and its position in the list as sent, the range the
    model takes in the data's units (the training `mean` +- `bound` x the training `scale`;
    `beyond` names the bound), and the remedy. A logger's sentinel for 'no reading' (1e308)
    is the usual cause; the pyfunc and the streaming endpoints said only 'values too large'
    or how many standard deviations out, leaving the client to find the value and the range.
    One text for every entry point: the same history, the same answer."""
    largest = float(np.finfo(np.float64).max)  # a range past float64's is float64's
    low, high = max(mean - bound * scale, -largest), min(mean + bound * scale, largest)
    return (
        f"holds values too large for the model once scaled ({beyond}): {value:g} at position "
        f"{position}; the model takes {low:.3g} to {high:.3g} here; send the series in the "
        "units it was trained on, and a missing reading as the training data had it filled, "
        "not as a sentinel number"
    )


def _float32(
    scaled: np.ndarray,
    raw: np.ndarray,
    offset: int,
    stats: tuple[float, float],
    series_id: str,
    field: str,
) -> np.ndarray:
    """The model's float32 input of one column: `scaled` and `raw` its last values, `offset`
    the position of their first in the list as sent, `stats` the column's (mean, scale)."""
    out = as_float32(scaled)
    if out is None:
        with np.errstate(over="ignore"):
            at = int(np.argmax(~np.isfinite(scaled.astype(np.float32))))
        problem = too_large_problem(
            float(raw[at]), offset + at, *stats, FLOAT32_LARGEST, FLOAT32_BEYOND
        )
        raise ForecastInputError(f"series {shown(series_id)}: {field!r} {problem}")
    return out


def _is_number(item: object) -> bool:
    return isinstance(item, int | float | np.integer | np.floating) and not isinstance(
        item, bool | np.bool_
    )


def signature_for(covariates: Sequence[str], quantiles: Sequence[float], horizon: int) -> Any:
    """The pyfunc's input/output schema and its params (see the module docstring)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import (
        AnyType,
        Array,
        ColSpec,
        DataType,
        ParamSchema,
        ParamSpec,
        Schema,
    )

    # Histories as arrays of any element type: MLflow's schema enforcement refuses integers
    # for an array of doubles ("cannot safely convert int64 to float64"), and demand in MW or
    # counts of rentals are integers; predict_frame checks that every element is a number.
    numbers = Array(AnyType())  # type: ignore[no-untyped-call]  # untyped in MLflow
    # The optional columns take any type: MLflow's conversion refused an empty column read as
    # float NaN for a string ("Can not safely convert float64 to <U0"), an integer id and a
    # datetime `start` with words that named no row; predict_frame judges them, by row.
    optional = AnyType()  # type: ignore[no-untyped-call]
    inputs: list[Any] = [
        ColSpec(optional, "id", required=False),
        ColSpec(numbers, "values"),
        *(ColSpec(numbers, name) for name in covariates),
        ColSpec(optional, "start", required=False),
        ColSpec(optional, "timezone", required=False),
        # the forecast API's request fields: in the schema so that predict sees them (a
        # covariate of the same name stays a covariate)
        *(
            ColSpec(optional, name, required=False)
            for name in REQUEST_COLUMNS
            if name not in covariates
        ),
    ]
    outputs: list[Any] = [
        ColSpec(DataType.string, "id"),
        ColSpec(DataType.long, "step"),
        ColSpec(DataType.string, "timestamp"),
        ColSpec(DataType.double, "mean"),
        *(ColSpec(DataType.double, quantile_column(q)) for q in quantiles),
    ]
    # Without a params schema MLflow drops every param with a warning: params={"horizon": 6}
    # answered all the model's steps.
    params = ParamSchema(
        [
            ParamSpec("horizon", DataType.long, int(horizon)),
            ParamSpec("quantiles", DataType.double, [float(q) for q in quantiles], (-1,)),
        ]
    )
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs), params=params)


def input_example(
    frame: pd.DataFrame, target: str, covariates: Sequence[str], lookback: int, series_id: str
) -> pd.DataFrame:
    """One predict row from the last `lookback` rows of an unscaled series frame."""
    tail = frame.iloc[-lookback:]
    row: dict[str, Any] = {"id": series_id, "values": tail[target].astype(float).tolist()}
    for name in covariates:
        row[name] = tail[name].astype(float).tolist()
    row["start"] = pd.Timestamp(tail.index[0]).isoformat()
    return pd.DataFrame([row])

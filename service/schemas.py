"""Request and response bodies of the HTTP API (ARCHITECTURE.md, "HTTP API"), pydantic v2.

Only shape and type are checked here. Everything that depends on the served model (history
long enough, horizon within the maximum, known quantiles and covariates, timestamps on the
model's frequency, finite values) is checked by `service.validation`, which knows the model and
names the series and the field in its messages. `values` accepts `null` so that a missing
value is reported as such (422 naming its position) rather than as a type error. Numbers are
strict: a JSON `true`, `false` or a numeric string among them is refused, not read as 1, 0 or
the number (pydantic's lax mode would), since that would be bad data silently "fixed". One
exception, by its whole list: a covariate given as true/false throughout is a flag, read as 1
and 0 as the training loader reads a True/False column.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    WithJsonSchema,
)

from training.validation import (
    FORECAST_ID_MAX,
    is_number_text,
    with_seconds_offset,
    zone_named,
)
from urnn_forecast.field_types import shown

EXAMPLE_VALUES: list[JsonValue] = [31.2, 30.9, 30.4, 30.1, 29.8, 30.3]
# A JSON number (an integer or a float, NaN and inf included for the checks that name them);
# never a bool or a string.
Number = Annotated[float, Strict()]
# An entry of a history (`values`, a covariate's list): a number. null is read, so that its 422
# names the position as NaN's does (service.validation), and always refused; OpenAPI shows the
# entry as the number the service takes (it showed `number | null`: generated clients typed
# histories Optional[float], and a fuzzer's schema-valid nulls were all 422s).
HistoryValue = Annotated[Number | None, WithJsonSchema({"type": "number"})]


def _not_bool_or_text(value: object) -> object:
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer (not true, false or text)")
    return value


# A whole number of steps >= 1: 4 (or 4.0); never true (1) or "4", which lax pydantic would
# read. The bound sits inside the type so OpenAPI shows it as JSON Schema's `minimum` (given
# on the field of an optional type it came out as a bare `ge` that clients ignore).
Count = Annotated[int, Field(ge=1), BeforeValidator(_not_bool_or_text)]


# A fraction of a second finer than the microsecond: pydantic's datetime (Python's) cuts the
# digits past the sixth, so a time 0.9 us off a step's grid read as on it, without a word.
_SUB_MICROSECOND = re.compile(r"\d\d:\d\d:\d\d[.,]\d{6}(\d+)")


# The shortest text either of the two forms above can be: 2024-03-01T00:00:00.1234567
_LONG_FORMS = 27


def _date_time_text(value: object) -> object:
    # the length first: a plain time (2024-03-01T00:00:00+01:00) pays no regular expression
    long_text = value if isinstance(value, str) and len(value) >= _LONG_FORMS else None
    finer = _SUB_MICROSECOND.search(long_text) if long_text else None
    if finer is not None and finer.group(1).strip("0"):  # trailing zeros say nothing finer
        raise ValueError(
            f"{shown(value)} gives a fraction of a second finer than the microsecond "
            "(more than 6 digits); the service dates to the microsecond: give at most 6"
        )
    if long_text and (read := with_seconds_offset(long_text)) is not None:
        offset = read.utcoffset()
        if offset is not None and offset.microseconds:
            # pandas writes times on such an offset cut to the second: every step of the
            # answer read up to a second off its local time (00:00 as 23:59:59.5)
            raise ValueError(
                f"{shown(value)} has a UTC offset with a fraction of a second, which no clock "
                "keeps; give the offset in whole seconds (+00:19:32) or minutes (+01:00)"
            )
        return read  # what the service writes for local mean time (+00:19:32) reads back
    if is_number_text(value):
        raise ValueError(
            f"{shown(value)} is a number, not a date and time: give an ISO 8601 text such as "
            "'2018-06-01T00:00:00' (a number would be read as seconds or milliseconds since "
            "1970 by its size, and '20180601' as a day in 1970)"
        )
    return value


# A date and time as ISO 8601 text (or a JSON-less datetime). Pydantic's lax datetime reads a
# number, or a text of digits, as a Unix time in seconds or milliseconds, guessed from its
# size: `"start": 20180601` became 1970-08-23, a silent misreading of the caller's data.
Timestamp = Annotated[datetime, BeforeValidator(_date_time_text)]


def _null_is_absent(value: object) -> object:
    return {} if value is None else value


def _flags_as_numbers(value: object) -> object:
    """A covariate's list of true and false only, a flag (a holiday), as 1.0 and 0.0: what
    the training loader reads a True/False column as (training.data), so a model trained on
    one takes the flag as clients hold it. A bool among numbers stays a type error (the
    schema's strict `Number`), as a column mixing True with numbers is refused in training.
    One type test on a list of numbers: its first entry is no bool."""
    if (
        isinstance(value, list)
        and value
        and type(value[0]) is bool
        and all(type(entry) is bool for entry in value)
    ):
        return [1.0 if entry else 0.0 for entry in value]
    return value


# One covariate's list: numbers (as `values`), or true/false throughout (a flag, as 1 and 0).
CovariateValues = Annotated[
    list[HistoryValue],
    BeforeValidator(_flags_as_numbers, json_schema_input_type=list[HistoryValue] | list[bool]),
]
# Covariate columns by name, each a list as long as `values`. null means none given, as
# leaving the field out does (and as a null `covariates.<name>` cell of an Arrow body), like
# the other optional fields' null; OpenAPI shows it as an object or null.
Covariates = Annotated[
    dict[str, CovariateValues],
    BeforeValidator(
        _null_is_absent, json_schema_input_type=dict[str, list[HistoryValue] | list[bool]] | None
    ),
]


def _zone_name(name: str) -> str:
    zone_named(name)  # ValueError: not an IANA name
    return name


# An IANA time zone name ("Europe/London"), checked against the zone database; kept as the
# name (service.validation turns it into the zone).
TimeZoneName = Annotated[str, AfterValidator(_zone_name)]
ZONE_EFFECT = (
    "Naive `start`/`timestamps` are local times in it (a time that a daylight-saving change "
    "skips or repeats there is refused with a 422, not guessed); zoned ones are converted to "
    "it. The forecast timestamps are steps of its clock, written with their offsets, and a "
    "model whose `calendar_clock` (GET /model) is 'local' reads its calendar features (hour "
    "of day, day of week) on its wall clock, right across daylight-saving changes, which an "
    "offset such as +00:00 cannot do (it names no zone: the hours after a change would be "
    "one off). A 'utc' model still reads UTC hours."
)


class SeriesIn(BaseModel):
    """One history to forecast from."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "transformer-1",
                    "start": "2018-06-01T00:00:00",
                    "freq": "h",
                    "values": EXAMPLE_VALUES,
                    "covariates": {"HUFL": [5.8, 5.7, 5.2, 5.1, 5.3, 5.5]},
                }
            ]
        },
    )

    id: str = Field(
        min_length=1,
        max_length=FORECAST_ID_MAX,
        description="Caller's id of the series, echoed in the response; unique per request.",
        examples=["transformer-1"],
    )
    values: list[HistoryValue] = Field(
        min_length=1,
        description=(
            "The target's history, oldest first, at least the model's lookback long (GET "
            "/model); only the last lookback values are read. null, NaN and inf are rejected."
        ),
        examples=[EXAMPLE_VALUES],
    )
    start: Timestamp | None = Field(
        default=None,
        description="Timestamp of values[0]; with `freq` (or the model's) it dates the forecast.",
        examples=["2018-06-01T00:00:00"],
    )
    freq: str | None = Field(
        default=None,
        description=(
            "Pandas offset alias of the history (e.g. 'h', '15min'); must equal the model's "
            "frequency ('W-SUN' equals '7D' for a history starting on a Sunday). Default: the "
            "model's."
        ),
        examples=["h"],
    )
    timestamps: list[Timestamp] | None = Field(
        default=None,
        description=(
            "One timestamp per value, strictly increasing, the last lookback of them spaced at "
            "the model's frequency; replaces `start`."
        ),
    )
    covariates: Covariates = Field(
        default_factory=dict,
        description=(
            "One list per covariate the model was trained with, as long as `values`, of "
            "numbers or of true/false throughout (a flag, read as 1 and 0); null: none, as "
            "when left out."
        ),
    )
    timezone: TimeZoneName | None = Field(
        default=None,
        description="IANA time zone name of the series' clock, e.g. 'Europe/London'; default: "
        "the request's `timezone`; without either, naive times are read as written and zoned "
        "ones on their own offset. " + ZONE_EFFECT,
        examples=["Europe/London"],
    )


class ForecastRequest(BaseModel):
    """Histories of one or more series, and what to forecast for them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "horizon": 24,
                    "quantiles": [0.1, 0.5, 0.9],
                    "series": [
                        {
                            "id": "transformer-1",
                            "start": "2018-06-01T00:00:00",
                            "freq": "h",
                            "values": EXAMPLE_VALUES,
                        }
                    ],
                }
            ]
        },
    )

    horizon: Count | None = Field(
        default=None,
        description="Steps to forecast, at most the model's max_horizon; default: that maximum.",
        examples=[24],
    )
    quantiles: list[Number] | None = Field(
        default=None,
        min_length=1,
        description="Quantile levels to return, each one the model was trained with; default all.",
        examples=[[0.1, 0.5, 0.9]],
    )
    series: list[SeriesIn] = Field(
        min_length=1, description="The histories; each is forecast independently."
    )
    timezone: TimeZoneName | None = Field(
        default=None,
        description="IANA time zone name, e.g. 'Europe/London': the `timezone` of every series "
        "that gives none of its own. " + ZONE_EFFECT,
        examples=["Europe/London"],
    )


class ModelRefOut(BaseModel):
    """Which registered model version answered."""

    name: str = Field(description="Registered model name.", examples=["urnn-forecaster"])
    version: str = Field(description="Registered model version.", examples=["3"])
    run_id: str = Field(description="MLflow run that produced the version.")


class SeriesForecast(BaseModel):
    """The forecast of one series, in the data's original units."""

    id: str = Field(description="The request's series id.")
    timestamps: list[str] | None = Field(
        description="ISO timestamps of the forecast steps; null when the request gave no dates."
    )
    mean: list[float] = Field(description="Point forecast per step (the 0.5 quantile).")
    quantiles: dict[str, list[float]] = Field(
        description='Per requested level (key as text, e.g. "0.1"), one value per step.'
    )


class ForecastResponse(BaseModel):
    """Forecasts in request order, and the model version that made them."""

    model: ModelRefOut
    forecasts: list[SeriesForecast]


class ModelInfo(BaseModel):
    """The served model: identity, where it runs, and what it accepts."""

    name: str = Field(description="Registered model name.", examples=["urnn-forecaster"])
    version: str = Field(description="Registered version now serving.", examples=["3"])
    run_id: str = Field(description="MLflow run that produced the version.")
    uri: str = Field(description="The configured URI (URNN_MODEL_URI) that resolved to it.")
    kind: str = Field(description="Forecaster kind, e.g. urnn.")
    device: str = Field(description="Where it runs: cpu or cuda[:n].")
    traced: bool = Field(
        default=False,
        description="Whether batches run the TorchScript-traced forward (URNN_TRACE_MODEL; "
        "false when off, for streaming kinds, or when tracing failed its check).",
    )
    cuda_graphs: list[int] = Field(
        default_factory=list,
        description="Batch sizes whose forward replays a captured CUDA graph (URNN_CUDA_GRAPHS; "
        "empty on the CPU, for streaming kinds, when off, or when capture failed its check).",
    )
    lookback: int = Field(
        description="Minimum history length; a windowed model reads the last this many, a "
        "streaming one (kind urnn-stream) the whole history."
    )
    max_horizon: int = Field(description="Largest horizon a request may ask for.")
    quantiles: list[float] = Field(description="Quantile levels the model was trained with.")
    target: str = Field(description="Name of the target column at training time.")
    covariates: list[str] = Field(description="Covariates every series must carry.")
    freq: str = Field(description="Frequency (pandas offset alias) of the training data.")
    non_negative: bool = Field(
        default=False,
        description="True if every forecast (each quantile) is floored at 0: the target had no "
        "negative value where the model learnt it (urnn train --non-negative).",
    )
    needs_dates: bool = Field(
        description="True if the model reads calendar features: each series needs start or "
        "timestamps."
    )
    calendar_clock: Literal["local", "utc"] = Field(
        description="The clock the calendar features read: 'local' (the model learnt naive, "
        "wall-clock timestamps: zoned input is read on its own zone's clock; ISO texts whose "
        "UTC offsets change are refused, as they name no zone; give POST /forecast a "
        "`timezone` such as 'Europe/London', per request or per series, for histories and "
        "horizons across a daylight-saving change: offsets alone read the hours after it one "
        "off) or 'utc' (its training timestamps carried a zone and were read as UTC: zoned "
        "input is read on UTC, naive input taken as UTC, or as local times in `timezone`)."
    )
    loaded_at: datetime = Field(description="When this version was loaded (UTC).")
    last_reload_error: str | None = Field(
        description="Why the latest reload failed (the version above kept serving); null if it "
        "succeeded. Without the store's paths and hosts, unless the request carries X-API-Key."
    )
    last_reload_error_at: datetime | None = Field(description="When that failure happened (UTC).")
    last_reload_contract_change: str | None = Field(
        default=None,
        description="How the version the latest swap loaded forecasts otherwise than the one it "
        "replaced (another target, frequency or covariates: the alias was moved with `urnn "
        'models promote --allow-contract-change`), e.g. "version 2 forecasts another quantity '
        "than version 1 did: target 'OT' -> 'cnt'\"; null after the first load or a swap "
        "within one contract.",
    )
    interval_adaptation: IntervalAdaptation | None = Field(
        default=None,
        description="With URNN_ADAPTIVE_INTERVALS=rolling, the multipliers the intervals are "
        "served with now and how many realised scores they come from; null when off (or the "
        "model has no quantile on each side of its median).",
    )
    realised_reference: dict[str, float] | None = Field(
        default=None,
        description="The realised MASE by lead bucket ('1', '2-3', ...) that this version's "
        "backtest scored in the service's own units (|actual - median| over the mean absolute "
        "one-step change of the look-back), exported as urnn_realised_reference_mase and "
        "compared with the served error by the UrnnRealisedErrorAboveBacktest alert; null for "
        "a model trained before urnn train recorded it: that alert is off for it.",
        examples=[{"1": 0.42, "2-3": 0.71, "4-7": 1.3, "8-15": 2.4, "16-31": 3.1}],
    )


class IntervalAdaptation(BaseModel):
    """Rolling intervals (URNN_ADAPTIVE_INTERVALS=rolling): what POST /forecast serves now."""

    mode: Literal["rolling"] = Field(description="The rule (URNN_ADAPTIVE_INTERVALS).")
    scope: Literal["version", "series"] = Field(
        default="version",
        description="One window for every series the version serves, or one per series id "
        "(URNN_ADAPTIVE_SCOPE).",
    )
    series: int = Field(
        default=0,
        description="With scope 'series': the series ids with a window of their own (the "
        "others are served at 1); 0 with scope 'version'.",
    )
    window: int = Field(description="Realised scores per horizon step (URNN_ADAPTIVE_WINDOW).")
    scores: int = Field(
        description="Realised scores taken for this version so far, over all steps (the "
        "window starts as window scores of 1 per step: the interval as calibrated)."
    )
    multipliers: list[float] = Field(
        description="Per horizon step, the factor each quantile's distance from the median is "
        "served with (1: as trained and calibrated; above 1 wider); with scope 'series', the "
        "mean over the series with a window."
    )
    span_steps: int = Field(
        description="How many steps of one series asked at every step the window spans: "
        "window x the realised cache's spacing of kept forecasts at this model's horizon and "
        "URNN_FORECAST_CACHE_DEPTH; divide by the series served (pooled). At horizon 96 and "
        "depth 1, 336 scores span 32,592 steps (3.7 years of hours)."
    )


class ReloadResponse(BaseModel):
    """Outcome of POST /model/reload."""

    status: Literal["reloaded", "unchanged"] = Field(
        description="reloaded: a new version now serves; unchanged: the alias still points at "
        "the served version (use force=true to rebuild it anyway)."
    )
    previous_version: str | None = Field(
        description="The version served before this call; null if none was loaded."
    )
    model: ModelInfo


class HealthResponse(BaseModel):
    """The process answers (says nothing about the model: see /readyz)."""

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """A model is loaded and /forecast can answer."""

    status: Literal["ready"] = "ready"
    model: ModelRefOut


class ErrorResponse(BaseModel):
    """Every error answers with one sentence that says what was wrong and where."""

    detail: str = Field(examples=["series 0 ('pump-1'), field 'values': 10 values; needs 48"])

"""Request and response bodies of the streaming endpoints (/series/{series_id}/...), pydantic v2.

As in `service.schemas`, only shape and type are checked here; everything that depends on the
served model or on the series' stored state (finite values, covariates, the frequency grid,
order, duplicates, gaps) is checked by `service.stream_validation`, whose messages name the
field (422) or the timestamps involved (409).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from service.schemas import (
    EXAMPLE_VALUES,
    ZONE_EFFECT,
    Count,
    Covariates,
    HistoryValue,
    ModelRefOut,
    Number,
    Timestamp,
    TimeZoneName,
)

GapPolicy = Literal["reject", "interpolate"]


def _null_is_reject(value: object) -> object:
    return "reject" if value is None else value


# null is the default, as for every optional field (docs/streaming.md, "Bad values").
GapPolicyIn = Annotated[
    GapPolicy, BeforeValidator(_null_is_reject, json_schema_input_type=GapPolicy | None)
]

# What `timezone` means on the /series endpoints: POST /forecast's field (service.schemas: the
# same name, the same check of the name, the same reading of naive times), kept by the series.
SERIES_ZONE = (
    "IANA time zone name of the series' clock, e.g. 'Europe/London'. The request that "
    "creates a series fixes it: later ones may omit it (their times are then read on the "
    "series' zone) or must give the same one, by any of its names (a link of the zone "
    "database such as 'Asia/Calcutta' for 'Asia/Kolkata'; another zone is a 422), and a "
    "series created "
    "without it takes none later. " + ZONE_EFFECT
)


class ObservationsRequest(BaseModel):
    """New points of one series, oldest first, and what to forecast after consuming them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2018-06-01T00:00:00",
                    "values": EXAMPLE_VALUES,
                    "covariates": {"HUFL": [5.8, 5.7, 5.2, 5.1, 5.3, 5.5]},
                    "horizon": 24,
                    "quantiles": [0.1, 0.5, 0.9],
                }
            ]
        },
    )

    values: list[HistoryValue] = Field(
        min_length=1,
        description="The new target values, oldest first. null, NaN and inf are rejected.",
        examples=[EXAMPLE_VALUES],
    )
    timestamps: list[Timestamp] | None = Field(
        default=None,
        description=(
            "One timestamp per value, strictly increasing and spaced at the model's frequency; "
            "or give `start`."
        ),
    )
    start: Timestamp | None = Field(
        default=None,
        description="Timestamp of values[0]; the rest follow at the model's frequency.",
        examples=["2018-06-01T00:00:00"],
    )
    covariates: Covariates = Field(
        default_factory=dict,
        description=(
            "One list per covariate the model reads, as long as `values`, of numbers or of "
            "true/false throughout (a flag, read as 1 and 0); null: none, as when left out."
        ),
    )
    horizon: Count | None = Field(
        default=None,
        description="Steps to forecast, at most the model's max_horizon; default: that maximum.",
    )
    quantiles: list[Number] | None = Field(
        default=None,
        min_length=1,
        description="Quantile levels to return, each one the model was trained with; default all.",
    )
    gap_policy: GapPolicyIn = Field(
        default="reject",
        description=(
            "Missing steps between the last stored point and the first new one: `reject` (409) "
            "or `interpolate` (filled linearly, up to URNN_STREAM_MAX_GAP steps); null: "
            "`reject`, as when left out."
        ),
    )
    timezone: TimeZoneName | None = Field(
        default=None, description=SERIES_ZONE, examples=["Europe/London"]
    )


class StreamForecast(BaseModel):
    """The forecast after the series' last point, in the data's original units."""

    timestamps: list[str] = Field(description="ISO timestamps of the forecast steps.")
    mean: list[float] = Field(description="Point forecast per step (the 0.5 quantile).")
    quantiles: dict[str, list[float]] = Field(
        description='Per requested level (key as text, e.g. "0.1"), one value per step.'
    )


class SeriesStatus(BaseModel):
    """What is stored for a streaming series."""

    id: str = Field(description="The series id.")
    first_timestamp: str | None = Field(description="ISO timestamp of the first point consumed.")
    last_timestamp: str | None = Field(description="ISO timestamp of the last point consumed.")
    timezone: str | None = Field(
        description=(
            "The IANA time zone the series was created with (its first request's `timezone`), "
            "under the name that request gave ('UTC' is kept as 'Etc/UTC'); later requests "
            "that name it by another of its names do not change it. null for a series created "
            "without one, whose timestamps are naive or carry their own UTC offsets."
        ),
        examples=["Europe/London"],
    )
    points_seen: int = Field(description="Points consumed since the series was created.")
    model_version: str = Field(description="The model version that produced the stored state.")
    ready: bool = Field(description="True once the state has consumed the model's warm-up.")
    points_needed: int = Field(description="Points still needed before the first forecast.")
    tail_length: int = Field(
        description="Raw recent points kept (duplicate checks, rebuilds on a new model version)."
    )


class ObservationsResponse(BaseModel):
    """The outcome of POST /series/{series_id}/observations."""

    model: ModelRefOut
    series: SeriesStatus
    accepted: int = Field(description="New points of the request consumed by the state.")
    duplicates: int = Field(
        description="Points of the request already consumed with the same value (ignored)."
    )
    filled: int = Field(description="Missing steps filled by interpolation before the new points.")
    forecast: StreamForecast | None = Field(
        description="The fresh forecast; null while the state is still warming up."
    )


class SeriesForecastResponse(BaseModel):
    """GET /series/{series_id}/forecast."""

    model: ModelRefOut
    series: SeriesStatus
    forecast: StreamForecast

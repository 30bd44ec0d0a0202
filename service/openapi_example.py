"""A `POST /forecast` example that the served model accepts, for `/docs`' "Try it out".

The request schema's own example (service.schemas) is short, so that the schema stays
readable, and no trained model accepts it: every model reads a longer look-back than its six
values (the default `urnn train` model reads 336). So while a model is served, /openapi.json
puts an example built for that version first: a history as long as its look-back, dated on its
frequency's grid, with every covariate it reads, at its maximum horizon and its quantiles.

The values are a plain wave around 0, not the data's level: /openapi.json answers without a
key, and the training statistics are not the public's. What it shows of the model (look-back,
horizon, quantiles, covariate names, frequency) is what GET /model shows to anyone, with or
without `URNN_API_KEY_FOR_READS` (which guards the job and schedule reads only); until
2026-12-07 it was left out with that setting on, on the wrong premise that GET /model took the
key.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from service.served import ServedModel

# When no season is recorded, one day of hourly data: the example's wave only has to look
# like a history, not to match the data's own season.
EXAMPLE_PERIOD = 24
EXAMPLE_START = "2024-01-01T00:00:00"


def forecast_example(model: ServedModel) -> dict[str, Any] | None:
    """A request body the served `model` answers with 200; None for a model whose scaler
    knows only the series it was trained on (per-series statistics: an example would have to
    name one of them)."""
    if model.global_scales is None:
        return None
    lookback = model.lookback
    season = model.model.config.season_length
    period = season if season is not None and season >= 3 else EXAMPLE_PERIOD  # 1, 2: flat
    values = [_rounded(math.sin(2 * math.pi * i / period)) for i in range(lookback)]
    series: dict[str, Any] = {
        "id": "example-1",
        "start": _on_grid(model),
        "freq": model.freq,
        "values": values,
    }
    if model.covariates:
        series["covariates"] = {name: [0.0] * lookback for name in model.covariates}
    return {
        "horizon": model.max_horizon,
        "quantiles": list(model.quantiles),
        "series": [series],
    }


def observations_example(model: ServedModel) -> dict[str, Any] | None:
    """A `POST /series/{id}/observations` body the served streaming `model` answers with 200
    and a forecast: the /forecast example's history (its look-back: enough to warm a new
    series up), covariates, horizon and quantiles. None for a windowed model, whose /series
    endpoints answer 409 whatever is sent, and where `forecast_example` is None. The schema's
    own example (ETTh1's `HUFL` covariate, horizon 24) was refused by every model that reads
    other covariates or forecasts fewer steps, the tests' and most others."""
    if not model.streaming:
        return None
    request = forecast_example(model)
    if request is None:
        return None
    (series,) = request["series"]
    body: dict[str, Any] = {"start": series["start"], "values": series["values"]}
    if "covariates" in series:
        body["covariates"] = series["covariates"]
    return {**body, "horizon": request["horizon"], "quantiles": request["quantiles"]}


def _on_grid(model: ServedModel) -> str:
    """A start the model's frequency reaches (a weekly model on Sundays, a monthly one on the
    first): the first step of its grid at or after EXAMPLE_START."""
    start = pd.Timestamp(EXAMPLE_START)
    return str(model.offset.rollforward(start).isoformat())


def _rounded(value: float) -> float:
    """About four significant digits: an example to read, not 17-digit floats."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return round(value, digits)

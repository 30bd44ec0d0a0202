"""A `POST /forecast` example that the served model accepts, for `/docs`' "Try it out".

The request schema's own example (service.schemas) is short, so that the schema stays
readable, and no trained model accepts it: every model reads a longer look-back than its six
values (the default `urnn train` model reads 336). So while a model is served, /openapi.json
puts an example built for that version first: a history as long as its look-back, around its
training mean, dated on its frequency's grid, with every covariate it reads, at its maximum
horizon and its quantiles.
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


def forecast_example(model: ServedModel) -> dict[str, Any]:
    """A request body the served `model` answers with 200."""
    lookback = model.lookback
    scales = model.global_scales or next(iter(model.scales.values()), None)
    mean, scale = (0.0, 1.0) if scales is None else (scales.target_mean, scales.target_scale)
    period = model.model.config.season_length or EXAMPLE_PERIOD
    values = [
        _rounded(mean + 0.5 * scale * math.sin(2 * math.pi * i / period)) for i in range(lookback)
    ]
    series: dict[str, Any] = {
        "id": "example-1",
        "start": _on_grid(model),
        "freq": model.freq,
        "values": values,
    }
    if model.covariates:
        covariate_means = [] if scales is None else list(scales.covariate_mean)
        series["covariates"] = {
            name: [_rounded(float(covariate_means[i]) if covariate_means else 0.0)] * lookback
            for i, name in enumerate(model.covariates)
        }
    return {
        "horizon": model.max_horizon,
        "quantiles": list(model.quantiles),
        "series": [series],
    }


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

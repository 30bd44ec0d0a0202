"""Small synthetic histories for the forecasting tests: daily-seasonal hourly series whose
values are known in closed form, wrapped as the loader's LoadedData."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data import LoadConfig, LoadedData


def seasonal_frame(
    n: int, *, seed: int = 0, period: int = 24, noise: float = 0.2, level: float = 10.0
) -> pd.DataFrame:
    """Hourly `y` = level + 3 sin(2 pi t / period) + noise, covariate `x` = its cosine twin."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    index = pd.date_range("2021-03-01", periods=n, freq="h", name="timestamp")
    y = level + 3.0 * np.sin(2 * np.pi * t / period) + noise * rng.normal(size=n)
    x = np.cos(2 * np.pi * t / period) + 0.1 * rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x}, index=index)


def half_hourly_frame(n: int = 1200) -> pd.DataFrame:
    """Demand-like half-hourly `y`: a daily cycle of 48 rows plus a little noise."""
    t = np.arange(n)
    rng = np.random.default_rng(0)
    y = 100 + 20 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.5, n)
    index = pd.date_range("2000-06-05", periods=n, freq="30min", name="timestamp")
    return pd.DataFrame({"y": y}, index=index)


def row_number_frame(n: int) -> pd.DataFrame:
    """`y` = the row number, `x` = minus it: every window's values say which rows it read."""
    index = pd.date_range("2021-03-01", periods=n, freq="h", name="timestamp")
    rows = np.arange(n, dtype=np.float64)
    return pd.DataFrame({"y": rows, "x": -rows}, index=index)


def loaded(frames: dict[str, pd.DataFrame], *, covariates: tuple[str, ...] = ("x",)) -> LoadedData:
    """LoadedData as `training.data.load_data` would return it for these clean frames."""
    first = next(iter(frames.values()))
    target = str(first.columns[0])
    frames = {k: f[[target, *covariates]] for k, f in frames.items()}
    return LoadedData(
        series=frames,
        filled={
            k: pd.DataFrame(False, index=f.index, columns=f.columns) for k, f in frames.items()
        },
        target=target,
        covariates=covariates,
        freq="h",
        source="synthetic",
        config=LoadConfig(target=target, covariates=covariates),
    )

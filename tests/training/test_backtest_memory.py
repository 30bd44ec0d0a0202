"""The backtest's forecast frame, metric tables and forecasts.parquet are built in less memory
than they were (tidy_forecasts un-scales a chunk of windows at a time into the frame's own
columns; metric_tables averages one metric column at a time; write_forecasts writes one row
group at a time): every value and file must be what the former whole-frame code made. The
former code is kept here as the oracle, and a backtest of real data (ETTh1, bundled) runs with
both side by side: exact equality, dtypes and index included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import training.backtest as bt
import training.metrics
from models.forecaster import ROUND_OFF, ForecasterConfig, floor_at_zero, unscale_from_last
from training.backtest import BacktestConfig, backtest, write_backtest_tables
from training.data import LoadConfig, LoadedData, load_data
from training.fit import FitConfig
from training.metrics import (
    MetricTables,
    below_column,
    coverage_column,
    metric_tables,
    quantile_column,
    smape_terms,
    symmetric_pairs,
)
from training.split import SplitConfig, StandardScaler
from training.validation import natural_key
from training.windows import WindowDataset

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETT-small" / "ETTh1.csv"
L, H = 48, 24
QUICK = FitConfig(max_epochs=1, max_train_batches=4, batch_size=64, device="cpu")


def tidy_before(
    dataset: WindowDataset,
    pred: torch.Tensor,
    quantiles: Sequence[float],
    scaler: StandardScaler,
    config: BacktestConfig,
    mase_scales: Mapping[tuple[str, str], float],
    filled: Mapping[str, pd.DataFrame] | None = None,
    *,
    units: Mapping[str, str] | None = None,
    non_negative: bool = False,
    series: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """training.backtest.tidy_forecasts as it was (042e887): the whole backtest at once, with
    forecasts un-scaled from each look-back's last value since 2026-12-08."""
    q = list(quantiles)
    median = q.index(0.5)
    table = dataset.window_table()
    if units:
        pairs = zip(table["series"], table["source"], strict=True)
        table["series"] = [units.get(src, src) + name[len(src) :] for name, src in pairs]
    n, horizon = len(dataset), dataset.horizon
    actual = dataset.targets(torch.arange(n)).double().numpy()
    forecast = pred.double().numpy()
    mase_scale = np.empty(n)
    owners = dataset.window_entry.numpy()
    starts = dataset.starts.numpy()
    for e, entry in enumerate(dataset.entries):
        mask = owners == e
        column = entry.columns[0]
        stats = scaler.stats[bt._scaler_key(scaler, entry.source)][column]
        mase_scale[mask] = mase_scales[(entry.source, column)]
        if config.scale == "original":
            zero = ROUND_OFF * (abs(stats.mean) + stats.scale)
            actual[mask] = bt._snap_zeros(
                scaler.inverse_values(entry.source, column, actual[mask]), zero
            )
            last: Any = np.nan  # the look-back's last value, as the data holds it
            if series is not None:
                held = series[entry.source][column].reindex(entry.index).to_numpy(np.float64)
                last = held[starts[mask] - entry.offset + dataset.lookback - 1][:, None, None]
            raised = unscale_from_last(forecast[mask], stats.mean, stats.scale, last)
            forecast[mask] = bt._snap_zeros(floor_at_zero(raised, non_negative), zero)
        else:
            mase_scale[mask] /= stats.scale
            if non_negative:
                forecast[mask] = np.maximum(forecast[mask], -stats.mean / stats.scale)
    timestamps = np.empty((n, horizon), dtype="datetime64[ns]")
    was_filled = np.zeros((n, horizon), dtype=bool)
    for e, entry in enumerate(dataset.entries):
        mask = owners == e
        first = starts[mask] - entry.offset + dataset.lookback
        rows = first[:, None] + np.arange(horizon)
        timestamps[mask] = entry.index.to_numpy(dtype="datetime64[ns]")[rows]
        if series is not None and config.scale == "original":
            own = series[entry.source][entry.columns[0]].reindex(entry.index)
            actual[mask] = own.to_numpy(dtype=np.float64)[rows]
        flags = None if filled is None else filled.get(entry.source)
        if flags is not None and entry.columns[0] in flags.columns:
            flagged = flags[entry.columns[0]].reindex(entry.index, fill_value=False)
            was_filled[mask] = flagged.to_numpy(dtype=bool)[rows]
    out = pd.DataFrame(
        {
            "series": np.repeat(table["series"].to_numpy(), horizon),
            "origin": np.repeat(table["origin"].to_numpy(), horizon),
            "timestamp": timestamps.reshape(-1),
            "step": np.tile(np.arange(1, horizon + 1), n),
            "actual": actual.reshape(-1),
            "point": forecast[..., median].reshape(-1),
        }
    )
    for j, level in enumerate(q):
        out[quantile_column(level)] = forecast[..., j].reshape(-1)
    out["mase_scale"] = np.repeat(mase_scale, horizon)
    out["filled"] = was_filled.reshape(-1)
    return out


def tables_before(forecasts: pd.DataFrame, quantiles: Sequence[float]) -> MetricTables:
    """training.metrics.metric_tables as it was (042e887): one frame of every per-value term,
    grouped three ways."""
    if "filled" in forecasts.columns:
        forecasts = forecasts[~forecasts["filled"].to_numpy(dtype=bool)]
    a = forecasts["actual"].to_numpy(dtype=np.float64)
    f = forecasts["point"].to_numpy(dtype=np.float64)
    scale = forecasts["mase_scale"].to_numpy(dtype=np.float64)
    terms = pd.DataFrame(
        {
            "series": forecasts["series"].to_numpy(),
            "step": forecasts["step"].to_numpy(),
            "mae": np.abs(f - a),
            "mse": (f - a) ** 2,
            "smape": smape_terms(a, f),
            "mase": np.abs(f - a) / np.where(scale > 0, scale, np.nan),
        }
    )
    pinball_columns = []
    for q in quantiles:
        e = a - forecasts[quantile_column(q)].to_numpy(dtype=np.float64)
        name = f"pinball_{quantile_column(q)}"
        terms[name] = np.maximum(q * e, (q - 1.0) * e) + 0.0
        pinball_columns.append(name)
    terms["pinball_mean"] = terms[pinball_columns].mean(axis=1)
    for lo, hi in symmetric_pairs(quantiles):
        lower = forecasts[quantile_column(lo)].to_numpy(dtype=np.float64)
        upper = forecasts[quantile_column(hi)].to_numpy(dtype=np.float64)
        terms[coverage_column(lo, hi)] = ((lower <= a) & (a <= upper)).astype(np.float64)
    for q in quantiles:
        forecast = forecasts[quantile_column(q)].to_numpy(dtype=np.float64)
        terms[below_column(q)] = (a <= forecast).astype(np.float64)

    def summarise(frame: pd.DataFrame, key: str) -> pd.DataFrame:
        grouped = frame.groupby(key, sort=True)
        table = grouped.mean()
        table.insert(2, "rmse", np.sqrt(table["mse"]))
        table.insert(0, "n", grouped.size())
        return table

    values = terms.drop(columns=["series", "step"])
    overall = summarise(values.assign(group="all"), "group").rename_axis(None)
    by_step = summarise(terms.drop(columns=["series"]), "step")
    by_series = summarise(terms.drop(columns=["step"]), "series")
    by_series = by_series.loc[sorted(by_series.index, key=lambda sid: natural_key(str(sid)))]
    return MetricTables(overall=overall, by_step=by_step, by_series=by_series)


def write_before(forecasts: pd.DataFrame, path: Path) -> None:
    """training.backtest.write_forecasts as it was (042e887): one copy of the whole frame."""
    values = [c for c in forecasts.columns if c in ("actual", "point") or c.startswith("q")]
    dtype = "float32" if bt.float32_keeps_scores(forecasts, values) else "float64"
    frame = forecasts.assign(series=forecasts["series"].astype(str)).astype(
        dict.fromkeys(values, dtype)
    )
    frame.to_parquet(path, index=False, compression="zstd")


def etth1(tmp_path: Path, *, fleet: bool, level: float = 0.0) -> LoadedData:
    """2,000 rows of ETTh1 (OT, one covariate), a few OT values blanked in the test span (the
    loader fills them in and flags them, the scores leave them out) and a run of exact zeros
    (snapped back to 0); `fleet`: the rows as two series of a long file."""
    frame = pd.read_csv(ETTH1, nrows=2000)
    frame["OT"] = frame["OT"] + level
    frame.loc[1850:1852, "OT"] = np.nan
    frame.loc[1900:1910, "OT"] = 0.0
    if fleet:
        frame["unit"] = np.where(np.arange(len(frame)) < 1000, "b", "a")
        frame.loc[frame["unit"] == "a", "date"] = frame["date"].iloc[:1000].to_numpy()
    path = tmp_path / "etth1.csv"
    frame.to_csv(path, index=False)
    return load_data(
        path,
        LoadConfig(target="OT", covariates=("HUFL",), series_col="unit" if fleet else None),
    )


def side_by_side(monkeypatch: pytest.MonkeyPatch, chunk: int) -> list[str]:
    """Run the former tidy_forecasts and metric_tables beside the new ones in every backtest:
    their results must be equal exactly. Returns the list each call names itself in."""
    calls: list[str] = []
    tidy, tables = bt.tidy_forecasts, metric_tables

    def both_tidy(*args: Any, **kwargs: Any) -> pd.DataFrame:
        now = tidy(*args, **kwargs)
        pd.testing.assert_frame_equal(now, tidy_before(*args, **kwargs), check_exact=True)
        calls.append("tidy")
        return now

    def both_tables(forecasts: pd.DataFrame, quantiles: Sequence[float]) -> MetricTables:
        now = tables(forecasts, quantiles)
        before = tables_before(forecasts, quantiles)
        for name in ("overall", "by_step", "by_series"):
            pd.testing.assert_frame_equal(
                getattr(now, name), getattr(before, name), check_exact=True
            )
        calls.append("tables")
        return now

    monkeypatch.setattr(bt, "tidy_forecasts", both_tidy)
    monkeypatch.setattr(bt, "metric_tables", both_tables)
    monkeypatch.setattr(bt, "TIDY_CHUNK", chunk)
    monkeypatch.setattr(training.metrics, "TERM_ROWS", 1000)  # several blocks
    return calls


@pytest.mark.parametrize(
    ("fleet", "scale", "non_negative", "level", "chunk"),
    [
        (False, "original", True, 0.0, 7),
        (True, "original", False, 0.0, 4096),
        (True, "scaled", True, 0.0, 5),
        (False, "original", False, 1e7, 1),  # float64 in the file
    ],
)
def test_the_frame_tables_and_files_are_those_of_the_whole_frame_code(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fleet: bool,
    scale: str,
    non_negative: bool,
    level: float,
    chunk: int,
) -> None:
    data = etth1(tmp_path, fleet=fleet, level=level)
    model = ForecasterConfig(
        kind="linear", lookback=L, horizon=H, quantiles=(0.1, 0.5, 0.9), non_negative=non_negative
    )
    config = BacktestConfig(step=3, scale=scale)  # type: ignore[arg-type]
    calls = side_by_side(monkeypatch, chunk)
    result = backtest(data, SplitConfig(lookback=L), model, QUICK, config)
    assert calls == ["tidy", "tables"]
    forecasts = result.forecasts
    assert forecasts["filled"].any()
    assert (forecasts["actual"] == 0).any() == (scale == "original")  # zeros snapped to 0
    assert forecasts["series"].nunique() == (2 if fleet else 1)

    now, before = tmp_path / "now", tmp_path / "before"
    monkeypatch.setattr(bt, "FORECASTS_ROW_GROUP", 1000)  # several row groups
    write_backtest_tables(result, now)
    before.mkdir()
    write_before(forecasts, before / "forecasts.parquet")
    for name in ("overall", "by_step", "by_series"):
        table = tables_before(forecasts, model.quantiles)
        frame = getattr(table, name)
        frame.to_csv(before / f"{name}.csv", index_label=str(frame.index.name or "scope"))
        assert (now / f"{name}.csv").read_bytes() == (before / f"{name}.csv").read_bytes()
    stored, expected = (pd.read_parquet(d / "forecasts.parquet") for d in (now, before))
    pd.testing.assert_frame_equal(stored, expected, check_exact=True)
    assert stored["actual"].dtype == (np.float64 if level or scale == "scaled" else np.float32)


def test_forecasts_parquet_is_the_one_shot_file_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written a row group at a time, of the size pyarrow's one-shot write cuts them to, the
    file is that write's, byte for byte."""
    data = etth1(tmp_path, fleet=True)
    model = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H)
    result = backtest(data, SplitConfig(lookback=L), model, QUICK, BacktestConfig())
    monkeypatch.setattr(bt, "FORECASTS_ROW_GROUP", 1000)
    bt.write_forecasts(result.forecasts, tmp_path / "now.parquet")
    values = ["actual", "point", *(quantile_column(q) for q in model.quantiles)]
    dtype = "float32" if bt.float32_keeps_scores(result.forecasts, values) else "float64"
    frame = result.forecasts.assign(series=result.forecasts["series"].astype(str))
    frame.astype(dict.fromkeys(values, dtype)).to_parquet(
        tmp_path / "before.parquet", index=False, compression="zstd", row_group_size=1000
    )
    assert len(result.forecasts) > 3000
    now = (tmp_path / "now.parquet").read_bytes()
    assert now == (tmp_path / "before.parquet").read_bytes()

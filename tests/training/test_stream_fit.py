"""Training and scoring the streaming uRNN: it learns, its backtest forecasts read the whole
history before each origin and nothing after it, and the spans it trains on are the split's."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from models.forecaster import ForecasterConfig, build_forecaster
from models.streaming import StreamingURNNForecaster
from tests.training.synthetic import loaded, seasonal_frame
from training.backtest import BacktestConfig, BacktestConfigError, backtest
from training.data import LoadedData
from training.fit import FitConfig
from training.split import SplitConfig, StandardScaler, split_data
from training.stream_fit import (
    StreamFitError,
    StreamSeries,
    UnobservedStreamValidationError,
    evaluate_stream,
    fit_stream,
    predict_origins,
    span_origins,
    stream_series,
)
from training.validation import UnobservedValidationError

L, H, SEG = 24, 6, 8
SPLIT = SplitConfig(lookback=L)
QUICK = FitConfig(
    max_epochs=3,
    lr=3e-3,
    device="cpu",
    stream_crop_length=160,
    stream_batch_crops=4,
    stream_batches_per_epoch=8,
    calibrate_intervals=False,
)


def config(**fields: object) -> ForecasterConfig:
    return ForecasterConfig(
        kind="urnn-stream",
        lookback=L,
        horizon=H,
        hidden_size=8,
        segment_length=SEG,
        **fields,  # type: ignore[arg-type]
    )


def prepared(n: int = 600) -> tuple[object, list]:  # type: ignore[type-arg]
    data = loaded({"a": seasonal_frame(n), "b": seasonal_frame(n - 100, seed=1)})
    splits = split_data(data, SPLIT)
    scaler = StandardScaler.fit(splits)
    return data, stream_series(splits, scaler, channel_independent=False, calendar_freq=None)


def test_stream_series_cover_the_split_from_the_train_start_with_its_spans() -> None:
    data, series = prepared()
    a = next(s for s in series if s.name == "a")
    assert len(a.index) == 600 and a.index[0] == data.series["a"].index[0]  # type: ignore[attr-defined]
    assert a.train[0] == 0 and a.train[1] == a.val[0] and a.val[1] == a.test[0]
    assert a.test[1] == 600
    origins = span_origins(a.val, L, H)
    assert origins.min() >= a.val[0] and origins.max() + H == a.val[1]


def test_fit_stream_learns_the_daily_cycle() -> None:
    _, series = prepared()
    torch.manual_seed(0)
    untrained = build_forecaster(config())
    assert isinstance(untrained, StreamingURNNForecaster)
    before, _, _ = evaluate_stream(untrained, series, QUICK, "cpu")
    result = fit_stream(config(), series, QUICK)
    assert result.best_epoch >= 1 and len(result.history) >= 1
    assert result.history[-1].train_loss < result.history[0].train_loss * 1.5
    assert result.best_score < 0.5 * before["loss"]


def test_a_crop_shorter_than_one_window_is_refused_naming_the_field() -> None:
    """A look-back as long as the crops (8,192 against the default 8,192) left no origin to
    score and failed in the first batch with torch's arange error; a crop of exactly one
    window trains."""
    _, series = prepared()
    one_window = FitConfig(**{**QUICK.__dict__, "max_epochs": 1, "stream_crop_length": L + H})
    short = FitConfig(**{**one_window.__dict__, "stream_crop_length": L + H - 1})
    with pytest.raises(StreamFitError) as refused:
        fit_stream(config(), series, short)
    assert f"stream_crop_length={L + H - 1} is shorter than lookback + horizon ({L} + {H})" in (
        str(refused.value)
    )
    assert f"set fit.stream_crop_length to at least {L + H}" in str(refused.value)
    result = fit_stream(config(), series, one_window)
    assert len(result.history) == 1 and np.isfinite(result.history[0].train_loss)


def test_backtest_forecasts_read_the_whole_history_and_never_the_future() -> None:
    data = loaded({"a": seasonal_frame(500)}, covariates=())
    model_config = config()
    result = backtest(
        data, SPLIT, model_config, QUICK, BacktestConfig(n_windows=3, step=7, scale="scaled")
    )
    model = result.fits[0].model
    assert isinstance(model, StreamingURNNForecaster)
    splits = split_data(data, SPLIT)
    scaler = StandardScaler.fit(splits)
    (series,) = stream_series(splits, scaler, channel_independent=False, calendar_freq=None)
    rows = result.forecasts
    origin_rows = sorted(
        int(i)
        for i in series.index.get_indexer(pd.DatetimeIndex(rows[rows["step"] == 1]["timestamp"]))
    )
    assert len(origin_rows) == 3
    # the same numbers as the model reading rows 0 .. origin - 1 in one go
    with torch.no_grad():
        for origin in origin_rows:
            direct = model(series.target[None, :origin])[0, :, 1].double().numpy()
            at = rows[(rows["timestamp"] == series.index[origin]) & (rows["step"] == 1)]
            assert float(at["point"].iloc[0]) == pytest.approx(direct[0], abs=1e-5)
    # changing everything after an origin leaves its forecast alone; changing before does not
    first = np.array([origin_rows[0]], dtype=np.int64)
    base = predict_origins(model, series, first)
    future = series.values.clone()
    future[origin_rows[0] :] += 5.0
    early = series.values.clone()
    early[10] += 5.0
    for values, same in ((future, True), (early, False)):
        changed = type(series)(**{**series.__dict__, "values": values})
        moved = predict_origins(model, changed, first)
        assert torch.equal(moved, base) is same


def test_refit_backtests_are_refused_for_the_streaming_kind() -> None:
    data = loaded({"a": seasonal_frame(300)}, covariates=())
    with pytest.raises(BacktestConfigError, match="refit=True is not available"):
        backtest(data, SPLIT, config(), QUICK, BacktestConfig(n_windows=2, refit=True))


def test_val_scores_and_calibration_of_the_stream_leave_out_filled_targets() -> None:
    """Values the loader filled in (here: 20 val hours of series "a", flagged and pushed far
    off, as a bad fill would) are no observations: the streaming fit's val scores and its
    interval calibration read the observed targets only, as the windowed fit and the
    backtest do."""
    data = loaded({"a": seasonal_frame(600), "b": seasonal_frame(500, seed=1)})
    splits = split_data(data, SPLIT)
    plan = splits["a"].plan
    rows = data.series["a"].index[plan.val.start + 10 : plan.val.start + 30]
    data.series["a"].loc[rows, "y"] += 50.0
    data.filled["a"].loc[rows, "y"] = True
    splits = split_data(data, SPLIT)
    scaler = StandardScaler.fit(splits)
    series = stream_series(
        splits, scaler, channel_independent=False, calendar_freq=None, filled=data.filled
    )
    torch.manual_seed(0)
    model = build_forecaster(config())
    assert isinstance(model, StreamingURNNForecaster)
    c = model.config
    preds, targets, flags = [], [], []
    for s in series:
        origins = span_origins(s.val, L, H)
        preds.append(predict_origins(model, s, origins))
        rows_at = torch.from_numpy(origins)[:, None] + torch.arange(H)
        targets.append(s.target[rows_at])
        own = data.filled[s.source]["y"].reindex(s.index).to_numpy(dtype=bool)
        flags.append(torch.from_numpy(own)[rows_at])
    pred, target, filled = torch.cat(preds), torch.cat(targets), torch.cat(flags)
    assert 0 < int(filled.sum()) < filled.numel()
    error = (pred[..., c.median_index] - target)[~filled].double()
    q = torch.tensor(c.quantiles)
    gap = target.unsqueeze(-1) - pred
    pinball = torch.maximum(q * gap, (q - 1.0) * gap).mean(-1)[~filled].double()
    expected = {
        "mse": float(error.square().mean()),
        "mae": float(error.abs().mean()),
        "loss": float(pinball.mean() + QUICK.mse_weight * error.square().mean()),
    }
    scores, _, calibration_target = evaluate_stream(model, series, QUICK, "cpu")
    assert scores == pytest.approx(expected, rel=1e-5)
    assert bool(calibration_target[filled].isnan().all())
    assert torch.equal(calibration_target[~filled], target[~filled])


def _filled_val(last: int | None = None) -> tuple[LoadedData, list[StreamSeries]]:
    """Series "a" and "b" with their val targets flagged as filled: all of them, or the last
    `last` rows of "a"'s val span only."""
    data = loaded({"a": seasonal_frame(600), "b": seasonal_frame(500, seed=1)})
    splits = split_data(data, SPLIT)
    for sid in ("a",) if last else ("a", "b"):
        plan = splits[sid].plan
        start = plan.val.stop - last if last else plan.val.start
        data.filled[sid].loc[data.series[sid].index[start : plan.val.stop], "y"] = True
    splits = split_data(data, SPLIT)
    scaler = StandardScaler.fit(splits)
    return data, stream_series(
        splits, scaler, channel_independent=False, calendar_freq=None, filled=data.filled
    )


def test_the_streams_filled_flags_are_its_own_copy_with_no_read_only_warning() -> None:
    """The flags were a read-only view of the loader's frame handed to torch.from_numpy: "The
    given NumPy array is not writable" at every stream fit over filled values. Copied now."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        data, series = _filled_val(last=H)
    assert not [w for w in seen if "not writable" in str(w.message)], [str(w.message) for w in seen]
    a = next(s for s in series if s.name == "a")
    assert a.filled is not None and int(a.filled.sum()) == H
    loaders = data.filled["a"]["y"].to_numpy()
    assert not np.shares_memory(a.filled.numpy(), loaders)


def test_a_stream_whose_val_targets_are_all_filled_is_refused_before_the_fit() -> None:
    """fit_stream called without the pipeline's check (the backtest's fit, the benchmarks):
    every val target filled gave val loss [nan, nan, nan] over 3 epochs, best_epoch 0, and
    the last epoch's weights kept without a word. Refused before the first batch, naming
    both series' spans, as the CLI does (exit 2: an UnobservedValidationError)."""
    _, series = _filled_val()
    with pytest.raises(UnobservedStreamValidationError) as caught:
        fit_stream(config(), series, QUICK)
    said = str(caught.value)
    assert "'a'" in said and "'b'" in said and "100%" in said, said
    assert isinstance(caught.value, UnobservedValidationError)


def test_a_filled_val_target_does_not_move_the_streams_val_score() -> None:
    """The last H rows of "a"'s val span are read as targets only (no val origin's history
    reaches them): flagged as filled, their values, pushed 50 off, leave every val score as
    it was; unflagged, the same push moves it."""
    _, series = _filled_val(last=H)
    a = next(k for k, s in enumerate(series) if s.name == "a")
    torch.manual_seed(0)
    model = build_forecaster(config())
    assert isinstance(model, StreamingURNNForecaster)
    before, _, _ = evaluate_stream(model, series, QUICK, "cpu")
    stop = series[a].val[1]
    values = series[a].values.clone()
    values[stop - H : stop, 0] += 50.0
    pushed = [replace(s, values=values) if k == a else s for k, s in enumerate(series)]
    after, _, _ = evaluate_stream(model, pushed, QUICK, "cpu")
    assert after == before
    unflagged = [replace(s, filled=None) for s in pushed]
    moved, _, _ = evaluate_stream(model, unflagged, QUICK, "cpu")
    assert moved["mae"] > 2 * before["mae"]

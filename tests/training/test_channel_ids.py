"""Channel ids through the data stage: channel-independent windows carry each column's position,
a forecaster with a channel embedding gets them from the fit loop, others never see them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.forecaster import ForecasterConfig
from tests.training.synthetic import row_number_frame
from training.fit import FitConfig, fit
from training.split import SeriesSplit, SplitConfig, StandardScaler, plan_split, split_series
from training.windows import IncompatibleWindowsError, WindowConfig, make_windows

L, H = 12, 4


def splits_of(n: int = 200) -> dict[str, SeriesSplit]:
    frame = row_number_frame(n)  # columns y (channel 0) and x (channel 1)
    return {"s": split_series(frame, plan_split(n, "h", SplitConfig(lookback=L)))}


def test_channel_independent_windows_carry_the_column_position() -> None:
    splits = splits_of()
    scaler = StandardScaler.fit(splits)
    sets = make_windows(splits, scaler, WindowConfig(L, H, channel_independent=True), freq="h")
    assert [(e.name, e.channel) for e in sets.train.entries] == [("s/y", 0), ("s/x", 1)]
    batch = sets.val.batch(torch.arange(len(sets.val)))
    owners = sets.val.window_entry
    np.testing.assert_array_equal(batch.channel.numpy(), owners.numpy())
    assert sets.val.n_channels == 2 and batch.channel.dtype == torch.int64
    assert sets.val[0].channel.shape == ()  # one window: a scalar id
    joint = make_windows(splits, scaler, WindowConfig(L, H), freq="h")
    assert joint.train.n_channels == 1
    assert not joint.train.batch(torch.arange(3)).channel.any()


def pmf_config(**overrides: object) -> ForecasterConfig:
    options: dict[str, object] = {
        "kind": "urnn",
        "lookback": L,
        "horizon": H,
        "hidden_size": 4,
        "segment_length": 4,
        "recurrence": "python",
        "decoder": "pmf",
        "n_channels": 2,
    }
    return ForecasterConfig(**{**options, **overrides})  # type: ignore[arg-type]


def test_fit_feeds_channel_ids_to_a_model_with_a_channel_embedding() -> None:
    splits = splits_of()
    scaler = StandardScaler.fit(splits)
    sets = make_windows(splits, scaler, WindowConfig(L, H, channel_independent=True), freq="h")
    config = FitConfig(max_epochs=2, batch_size=16, max_train_batches=3, device="cpu")
    result = fit(pmf_config(), sets.train, sets.val, config, progress=False)
    assert result.model.reads_channel_ids
    assert len(result.history) == 2 and np.isfinite(result.history[-1].val_mse)
    plain = fit(pmf_config(n_channels=0), sets.train, sets.val, config, progress=False)
    assert not plain.model.reads_channel_ids


def test_windows_with_more_channels_than_the_embedding_are_refused() -> None:
    splits = splits_of()
    scaler = StandardScaler.fit(splits)
    sets = make_windows(splits, scaler, WindowConfig(L, H, channel_independent=True), freq="h")
    with pytest.raises(IncompatibleWindowsError, match=r"n_channels=2 \(config has 1\)"):
        sets.train.check_compatible(pmf_config(n_channels=1))


def test_a_forecaster_with_channel_ids_is_refused_by_the_serving_predictor() -> None:
    from models.forecaster import build_forecaster
    from training.mlflow_model import ForecastPredictor, UnservableModelError

    splits = splits_of()
    scaler = StandardScaler.fit(splits)
    model = build_forecaster(pmf_config(n_channels=2))
    with pytest.raises(UnservableModelError, match="n_channels=2"):
        ForecastPredictor(model=model, meta={}, scaler=scaler)
    plain = build_forecaster(pmf_config(n_channels=0))  # the decoder alone serves
    assert ForecastPredictor(model=plain, meta={}, scaler=scaler).model is plain

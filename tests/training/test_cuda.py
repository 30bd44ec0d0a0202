"""The same models on a CUDA device: every kind forecasts what it forecasts on the CPU, training
with `device="cuda"` runs there, and what it saves loads and predicts on a machine without one.

These need a GPU (marker `gpu`); on a CPU-only machine they are reported as skipped, with the
reason. The rest of the suite also runs on a GPU machine, where `device="auto"` (the service's
and `urnn train`'s default) picks CUDA.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.forecaster import ForecasterConfig, build_forecaster, load_checkpoint
from models.streaming import StreamingURNNForecaster
from tests.training.synthetic import loaded, seasonal_frame
from tests.training.test_fit import FAST, H, L, urnn_config, windows_of
from training.fit import fit, predict
from training.split import SplitConfig, StandardScaler, split_data
from training.stream_fit import fit_stream, predict_origins, span_origins, stream_series

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# float32 on two devices: different kernels sum in different orders.
TOLERANCE = 1e-4
# cuDNN's LSTM and GRU may run their matrix products in TF32 (torch.backends.cudnn.allow_tf32
# is on by default): ~1e-3 relative, measured 2e-4 absolute on an H200.
GATED_TOLERANCE = 1e-3

KIND_CONFIGS = {
    "urnn (compiled recurrence on the CPU)": urnn_config(recurrence="fast"),
    "urnn, pmf decoder with channel ids": urnn_config(decoder="pmf", n_channels=2),
    "urnn-full": urnn_config(kind="urnn-full"),
    "lstm": urnn_config(kind="lstm"),
    "gru, pmf decoder": urnn_config(kind="gru", decoder="pmf"),
    "linear (DLinear)": ForecasterConfig(
        kind="linear", lookback=L, horizon=H, decomposition_kernel=5
    ),
    "seasonal naive": ForecasterConfig(
        kind="seasonal_naive", lookback=L, horizon=H, season_length=24
    ),
}


@pytest.mark.parametrize("config", KIND_CONFIGS.values(), ids=KIND_CONFIGS.keys())
def test_every_kind_forecasts_the_same_on_cuda_as_on_the_cpu(config: ForecasterConfig) -> None:
    sets, _ = windows_of(seasonal_frame(300))
    torch.manual_seed(0)
    model = build_forecaster(config).eval()
    on_cpu = predict(model, sets.test)
    on_cuda = predict(model.to("cuda"), sets.test, device="cuda")
    assert on_cuda.device.type == "cpu"  # predict hands results back on the CPU
    tolerance = GATED_TOLERANCE if config.kind in ("lstm", "gru") else TOLERANCE
    torch.testing.assert_close(on_cuda, on_cpu, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("decoder_search", [False, True], ids=["one fit", "decoder search"])
def test_training_on_cuda_saves_a_model_that_predicts_on_the_cpu(
    tmp_path: Path, decoder_search: bool
) -> None:
    sets, scaler = windows_of(seasonal_frame(300))
    config = replace(FAST, device="cuda", decoder_search=decoder_search)
    result = fit(
        urnn_config(),
        sets.train,
        sets.val,
        config,
        checkpoint_dir=tmp_path,
        checkpoint_extra={"scaler": scaler.to_dict()},
        progress=False,
    )
    assert result.device.startswith("cuda")
    assert all(p.device.type == "cuda" for p in result.model.parameters())
    assert result.best_epoch >= 1
    on_cuda = predict(result.model, sets.test, device="cuda")
    restored, meta = load_checkpoint(tmp_path)  # map_location="cpu"
    assert all(p.device.type == "cpu" for p in restored.parameters())
    assert meta["fit"]["device"] == "cuda"
    torch.testing.assert_close(predict(restored, sets.test), on_cuda, atol=TOLERANCE, rtol=0)


def test_the_streaming_kind_trains_on_cuda_and_forecasts_as_on_the_cpu() -> None:
    data = loaded({"a": seasonal_frame(600)})
    splits = split_data(data, SplitConfig(lookback=L))
    series = stream_series(
        splits, StandardScaler.fit(splits), channel_independent=False, calendar_freq=None
    )
    model_config = ForecasterConfig(
        kind="urnn-stream",
        lookback=L,
        horizon=H,
        hidden_size=8,
        segment_length=8,
        n_past_covariates=1,
    )
    quick = replace(
        FAST,
        device="cuda",
        max_epochs=2,
        stream_crop_length=160,
        stream_batch_crops=4,
        stream_batches_per_epoch=4,
    )
    result = fit_stream(model_config, series, quick)
    model = result.model
    assert isinstance(model, StreamingURNNForecaster)
    assert all(p.device.type == "cuda" for p in model.parameters())
    origins = span_origins(series[0].test, L, H)
    on_cuda = predict_origins(model, series[0], origins, device="cuda")
    on_cpu = predict_origins(model.to("cpu"), series[0], origins)
    torch.testing.assert_close(on_cuda, on_cpu, atol=TOLERANCE, rtol=TOLERANCE)

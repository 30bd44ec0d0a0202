"""CUDA graphs of the served forward (service/cuda_graphs.py): buckets, the CPU's refusal, and
on a GPU (marker `gpu`) the replayed numbers against the eager module for every kind, with
padding rows that never leak into the rows read, and the service reporting its graphs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from models.forecaster import ForecasterConfig, build_forecaster
from service.cuda_graphs import GraphedForward, bucket_sizes
from service.traced import PositionalForward
from tests.service.conftest import API_KEY, Registry, history
from tests.service.test_cuda_serving import forecast_blocks
from tests.training.test_cuda import KIND_CONFIGS
from tests.training.test_fit import H, L, urnn_config

# Kinds whose forward copies between host and GPU and so cannot be captured: expRNN's matrix
# exponential reads the matrix norm on the host (seen on an H200, torch 2.11: "Cannot copy
# between CPU and CUDA tensors during CUDA graph capture"). Any other kind must capture.
MAY_REFUSE = {"urnn-full"}
# Every kind the service serves; a model with channel ids (n_channels > 0) needs `channel=` in
# its forward, which /forecast does not send.
GRAPH_CONFIGS = {
    **{name: c for name, c in KIND_CONFIGS.items() if c.n_channels == 0},
    "urnn with calendar features": urnn_config(n_calendar=4),
}


def test_buckets_double_up_to_the_batch_cap() -> None:
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(8) == (1, 2, 4, 8)
    assert bucket_sizes(256) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert bucket_sizes(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        bucket_sizes(0)


def test_no_graphs_on_the_cpu() -> None:
    model = build_forecaster(urnn_config()).eval()
    assert GraphedForward.capture(model, torch.device("cpu"), max_batch=8) is None


def test_cpu_service_reports_no_graphs_and_still_traces(
    client_for: Callable[..., TestClient],
) -> None:
    info = client_for(device="cpu").get("/model").json()
    assert info["cuda_graphs"] == [] and info["traced"] is True


Inputs = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


class _FakeGraph:
    """Stands in for torch.cuda.CUDAGraph on the CPU: `replay` runs the recorded forward again
    on the same static inputs and writes into the same output tensor, as a replay does."""

    recording: _FakeGraph | None = None

    def __init__(self) -> None:
        self.rerun: Callable[[], torch.Tensor] | None = None
        self.output: torch.Tensor | None = None

    def pool(self) -> object:
        return object()

    def replay(self) -> None:
        assert self.rerun is not None and self.output is not None
        self.output.copy_(self.rerun())


def _fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda's graph API, faked on the CPU, so the capture's own logic (buckets, static
    copies, the check, padding) runs in CI where no GPU is."""

    @contextlib.contextmanager
    def fake_graph(graph: _FakeGraph, **_: object) -> Iterator[None]:
        _FakeGraph.recording = graph
        try:
            yield
        finally:
            _FakeGraph.recording = None

    original = PositionalForward.forward

    def recorded(self: PositionalForward, *inputs: torch.Tensor) -> torch.Tensor:
        out = original(self, *inputs)
        graph = _FakeGraph.recording
        if graph is not None:
            graph.rerun, graph.output = (lambda: original(self, *inputs)), out
        return out

    class FakeStream:
        def wait_stream(self, other: object) -> None:
            pass

    monkeypatch.setattr(PositionalForward, "forward", recorded)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", fake_graph)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)


@pytest.mark.parametrize("config", GRAPH_CONFIGS.values(), ids=GRAPH_CONFIGS.keys())
def test_capture_logic_on_a_faked_cuda(
    config: ForecasterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cuda(monkeypatch)
    torch.manual_seed(0)
    model = build_forecaster(config).eval()
    graphed = GraphedForward._capture(model, torch.device("cpu"), max_batch=6)
    assert graphed is not None and graphed.sizes == (1, 2, 4, 6)
    target, covariates, past, future = _inputs(config, 6, seed=1)
    graphed(1e3 * target, covariates, past, future)  # leaves large stale rows in bucket 6
    for rows in (1, 3, 5, 6):  # exact buckets and padded ones
        inputs = _inputs(config, rows, seed=rows)
        with torch.inference_mode():
            eager = model(*inputs)
        torch.testing.assert_close(graphed(*inputs), eager, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="above the largest captured size 6"):
        graphed(*_inputs(config, 7, seed=7))


def test_a_capture_that_fails_its_check_serves_without_graphs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_cuda(monkeypatch)
    monkeypatch.setattr(_FakeGraph, "replay", lambda self: self.output.add_(1.0))
    model = build_forecaster(urnn_config()).eval()
    with caplog.at_level(logging.WARNING, logger="service.cuda_graphs"):
        assert GraphedForward._capture(model, torch.device("cpu"), max_batch=2) is None
    assert "differs from the eager forward at batch 1" in caplog.text


def _inputs(config: ForecasterConfig, rows: int, seed: int) -> Inputs:
    """Random inputs for every tensor the kind reads (None for the others)."""
    generator = torch.Generator().manual_seed(seed)
    covariates = build_forecaster(config).SUPPORTS_PAST_COVARIATES and config.n_past_covariates

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return (
        randn(rows, L),
        randn(rows, L, config.n_past_covariates) if covariates else None,
        randn(rows, L, config.n_calendar) if config.n_calendar else None,
        randn(rows, H, config.n_calendar) if config.n_calendar else None,
    )


@pytest.mark.parametrize("config", GRAPH_CONFIGS.values(), ids=GRAPH_CONFIGS.keys())
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_kind_replays_the_eager_numbers(
    config: ForecasterConfig, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    model = build_forecaster(config).eval().to("cuda")
    with caplog.at_level(logging.WARNING, logger="service.cuda_graphs"):
        graphed = GraphedForward.capture(model, torch.device("cuda"), max_batch=16)
    if graphed is None:
        assert config.kind in MAY_REFUSE, caplog.text
        assert f"kind {config.kind!r}" in caplog.text  # the reason is logged
        return
    assert graphed.sizes == (1, 2, 4, 8, 16)
    for rows in (1, 3, 8, 13, 16):  # exact buckets and padded ones
        inputs = _inputs(config, rows, seed=rows)
        with torch.inference_mode():
            eager = model(*[None if x is None else x.cuda() for x in inputs]).cpu()
        replayed = graphed(*inputs)
        assert replayed.device.type == "cpu" and replayed.shape == eager.shape
        torch.testing.assert_close(replayed, eager, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_padding_rows_left_by_a_larger_batch_do_not_reach_a_smaller_one() -> None:
    config = urnn_config()
    model = build_forecaster(config).eval().to("cuda")
    graphed = GraphedForward.capture(model, torch.device("cuda"), max_batch=4)
    assert graphed is not None
    target, covariates, _, _ = _inputs(config, 4, seed=1)
    assert covariates is not None
    graphed(
        1e4 * target, 1e4 * covariates, None, None
    )  # leaves large values in the bucket's rows 3 and 4
    small = _inputs(config, 3, seed=2)  # replays bucket 4 with row 4 stale
    with torch.inference_mode():
        eager = model(*[None if x is None else x.cuda() for x in small]).cpu()
    torch.testing.assert_close(graphed(*small), eager, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_service_serves_from_graphs_unless_told_not_to(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    graphed = client_for(device="cuda", batch_max_series=64)
    plain = client_for(device="cuda", batch_max_series=64, cuda_graphs=False)
    assert graphed.get("/model").json()["cuda_graphs"] == [1, 2, 4, 8, 16, 32, 64]
    assert plain.get("/model").json()["cuda_graphs"] == []
    body = {"series": [history(registry.frame, f"s{i}", stop=300 + 9 * i) for i in range(5)]}
    a, b = graphed.post("/forecast", json=body), plain.post("/forecast", json=body)
    assert a.status_code == b.status_code == 200, a.text
    for x, y in zip(forecast_blocks(a.json()), forecast_blocks(b.json()), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4, rtol=1e-4)
    # A reload captures the new version's graphs before it is swapped in.
    registry.register("graphs-reload", seed=3)
    reloading = client_for(device="cuda", model_uri="models:/graphs-reload@champion")
    registry.register("graphs-reload", seed=4)
    answer = reloading.post("/model/reload", headers={"X-API-Key": API_KEY})
    assert answer.status_code == 200 and answer.json()["status"] == "reloaded", answer.text
    info = reloading.get("/model").json()
    assert info["version"] == "2" and info["cuda_graphs"][-1] == 256

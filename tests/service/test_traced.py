"""`service.traced`: the served forward as one TorchScript call, taken only when its graph
gives the eager module's numbers exactly, for every kind and input layout the service serves."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from torch import Tensor, nn

from models.forecaster import ForecasterConfig, build_forecaster
from service.traced import trace_forward
from tests.service.conftest import Registry, history

CPU = torch.device("cpu")
BASE: dict[str, Any] = {"lookback": 48, "horizon": 12, "segment_length": 12, "hidden_size": 8}
CONFIGS: dict[str, dict[str, Any]] = {
    "urnn": {"kind": "urnn"},
    "urnn, covariates + calendar, pmf decoder, linear skip": {
        "kind": "urnn",
        "n_past_covariates": 2,
        "n_calendar": 4,
        "decoder": "pmf",
        "linear_skip": True,
    },
    "urnn, python recurrence, last-value normalisation": {
        "kind": "urnn",
        "recurrence": "python",
        "normalisation": "last",
    },
    "urnn-full": {"kind": "urnn-full", "n_past_covariates": 1},
    "lstm": {"kind": "lstm", "n_calendar": 4},
    "gru": {"kind": "gru", "decoder": "pmf"},
    "linear (DLinear)": {"kind": "linear", "decomposition_kernel": 5},
    "repeat_last": {"kind": "repeat_last"},
    "seasonal_naive": {"kind": "seasonal_naive", "season_length": 24},
}


def _inputs(
    config: ForecasterConfig, b: int
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    g = torch.Generator().manual_seed(100 + b)
    target = torch.randn(b, config.lookback, generator=g) * 3 + 10
    covariates = (
        torch.randn(b, config.lookback, config.n_past_covariates, generator=g)
        if config.n_past_covariates
        else None
    )
    past = (
        torch.randn(b, config.lookback, config.n_calendar, generator=g)
        if config.n_calendar
        else None
    )
    future = (
        torch.randn(b, config.horizon, config.n_calendar, generator=g)
        if config.n_calendar
        else None
    )
    return target, covariates, past, future


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_windowed_kind_traces_to_the_eager_numbers(name: str) -> None:
    torch.manual_seed(0)
    config = ForecasterConfig(**BASE, **CONFIGS[name])
    model = build_forecaster(config).eval()
    forward = trace_forward(model, CPU)
    assert forward is not None, f"{name} did not trace"
    for b in (1, 7, 33):  # batch sizes neither traced nor checked at trace time
        inputs = _inputs(config, b)
        with torch.inference_mode():
            assert torch.equal(forward(*inputs), model(*inputs)), (name, b)


def test_streaming_kind_is_not_traced() -> None:
    config = ForecasterConfig(kind="urnn-stream", lookback=48, horizon=12, hidden_size=8)
    assert trace_forward(build_forecaster(config).eval(), CPU) is None


class _BatchTwoOnly(nn.Module):
    """A module whose Python branch depends on the batch size: a trace freezes the branch
    taken for its example batch, so the graph is wrong for any other size."""

    SUPPORTS_PAST_COVARIATES = False

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(
            kind="toy", lookback=4, horizon=2, n_past_covariates=0, n_calendar=0
        )

    def forward(self, target: Tensor, *rest: Tensor | None) -> Tensor:
        sign = 1.0 if target.shape[0] == 2 else -1.0
        return (sign * target[:, :2]).unsqueeze(-1)


def test_a_graph_that_differs_from_eager_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.traced"):
        assert trace_forward(_BatchTwoOnly(), CPU) is None  # type: ignore[arg-type]
    assert "differs from the eager one at batch 1" in caplog.text


def test_a_model_that_cannot_be_traced_is_served_eager(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracing is gone from this torch")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    model = build_forecaster(ForecasterConfig(**BASE, kind="urnn")).eval()
    with caplog.at_level(logging.WARNING, logger="service.traced"):
        assert trace_forward(model, CPU) is None
    assert "cannot trace the forward of kind 'urnn' (RuntimeError: tracing is gone" in caplog.text


def test_service_serves_the_trace_and_the_same_numbers_without_it(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    body = {
        "series": [history(registry.frame, "pump-1"), history(registry.frame, "pump-2", stop=450)]
    }
    # On the CPU: on a GPU the forward replays CUDA graphs instead (test_cuda_graphs.py).
    traced = client_for(device="cpu")
    eager = client_for(device="cpu", trace_model=False)
    assert traced.get("/model").json()["traced"] is True
    assert eager.get("/model").json()["traced"] is False
    a, b = traced.post("/forecast", json=body), eager.post("/forecast", json=body)
    assert a.status_code == b.status_code == 200
    assert a.content == b.content

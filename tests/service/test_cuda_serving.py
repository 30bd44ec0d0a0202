"""The service on a CUDA device (URNN_DEVICE=cuda): it says where it runs, answers what the CPU
service answers for the same histories (windowed and streaming models, JSON and Arrow bodies,
many concurrent requests batched together), and a hot reload lands on the GPU too.

Needs a GPU (marker `gpu`); on a CPU-only machine these are reported as skipped. The rest of the
service tests also run on CUDA on such a machine: their settings leave URNN_DEVICE at `auto`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from service.arrow_io import ARROW_STREAM, request_stream
from tests.service.conftest import API_KEY, Registry, history, metric_value
from tests.service.test_streaming_api import points, post, quantile_block

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

KEY = {"X-API-Key": API_KEY}
TOLERANCE = 1e-4  # float32 kernels of two devices sum in different orders


def forecast_blocks(answer: dict[str, Any]) -> list[np.ndarray]:
    return [quantile_block(f) for f in answer["forecasts"]]


def test_cuda_service_says_so_and_answers_what_the_cpu_service_answers(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    on_cuda, on_cpu = client_for(device="cuda"), client_for(device="cpu")
    assert on_cuda.get("/model").json()["device"].startswith("cuda")
    assert on_cpu.get("/model").json()["device"] == "cpu"
    series = [history(registry.frame, f"pump-{i}", stop=300 + 20 * i) for i in range(5)]
    quantiles = [0.1, 0.5, 0.9]
    body = {"quantiles": quantiles, "series": series}
    gpu, cpu = on_cuda.post("/forecast", json=body), on_cpu.post("/forecast", json=body)
    assert gpu.status_code == cpu.status_code == 200, gpu.text
    assert [f["timestamps"] for f in gpu.json()["forecasts"]] == [
        f["timestamps"] for f in cpu.json()["forecasts"]
    ]
    for a, b in zip(forecast_blocks(gpu.json()), forecast_blocks(cpu.json()), strict=True):
        np.testing.assert_allclose(a, b, atol=TOLERANCE, rtol=TOLERANCE)
    arrow = on_cuda.post(
        "/forecast",
        content=request_stream(series, horizon=None, quantiles=quantiles),
        headers={"content-type": ARROW_STREAM},
    )
    assert arrow.status_code == 200 and arrow.content == gpu.content


def test_concurrent_requests_on_cuda_keep_their_own_answers(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    on_cuda = client_for(device="cuda", batch_max_wait_ms=5.0)
    bodies = [{"series": [history(registry.frame, f"s{i}", stop=200 + 7 * i)]} for i in range(40)]
    alone = [on_cuda.post("/forecast", json=b).json() for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda b: on_cuda.post("/forecast", json=b), bodies))
    assert all(r.status_code == 200 for r in together)
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(
            forecast_blocks(a.json())[0], forecast_blocks(b)[0], atol=TOLERANCE, rtol=TOLERANCE
        )
    # Some of the concurrent requests shared a forward: fewer forwards than requests.
    assert metric_value(on_cuda, "urnn_batch_requests_sum") == 2 * len(bodies)
    assert metric_value(on_cuda, "urnn_batch_requests_count") < 2 * len(bodies)


def test_reload_on_cuda_keeps_serving_from_the_gpu(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    name = "cuda-reload"
    registry.register(name, seed=1)
    on_cuda = client_for(device="cuda", model_uri=f"models:/{name}@champion")
    body = {"series": [history(registry.frame)]}
    before = on_cuda.post("/forecast", json=body).json()
    registry.register(name, seed=2)
    reload = on_cuda.post("/model/reload", headers=KEY)
    assert reload.status_code == 200 and reload.json()["status"] == "reloaded", reload.text
    info = on_cuda.get("/model").json()
    assert info["version"] == "2" and info["device"].startswith("cuda")
    after = on_cuda.post("/forecast", json=body).json()
    assert after["model"]["version"] == "2"
    assert not np.allclose(forecast_blocks(after)[0], forecast_blocks(before)[0])


def test_streaming_model_on_cuda_matches_the_cpu(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    on_cuda = stream_client_for(device="cuda")
    on_cpu = stream_client_for(device="cpu")
    assert on_cuda.get("/model").json()["device"].startswith("cuda")
    # Two ids: both apps keep their series in the same job database.
    for client, series_id in ((on_cuda, "on-gpu"), (on_cpu, "on-cpu")):
        for start, size in ((0, 40), (40, 30)):
            answer = post(client, series_id, points(registry.frame, start, size))
            assert answer.status_code == 200, answer.text
    gpu = on_cuda.get("/series/on-gpu/forecast").json()["forecast"]
    cpu = on_cpu.get("/series/on-cpu/forecast").json()["forecast"]
    np.testing.assert_allclose(
        quantile_block(gpu), quantile_block(cpu), atol=TOLERANCE, rtol=TOLERANCE
    )

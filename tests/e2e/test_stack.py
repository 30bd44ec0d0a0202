"""The whole stack as real processes, no containers: an MLflow tracking server, `urnn serve`,
`urnn worker` and Prometheus (scraping the service), on free ports, with SQLite stores in tmp.

A retraining job submitted through POST /jobs is trained and promoted by the worker, the service
hot-reloads the new champion through its alias poll, /forecast answers with that version, a
WebSocket on /series/stream answers a message (uvicorn's WebSocket support installed),
Prometheus' HTTP API returns the service's latency series, and the MLflow UI (rendered by
headless Chromium) lists the job's run.

In CI (CI set) a missing `prometheus` or `chromium` binary fails the test (.ci/run installs the
Debian packages); elsewhere it skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from websockets.sync.client import connect as ws_connect

from tests.e2e.processes import Process, Stack, free_port, http_ok, mlflow_server_command, wait_for

ROOT = Path(__file__).resolve().parents[2]
ETTH1 = ROOT / "data" / "ETT-small" / "ETTh1.csv"
BIN = Path(sys.executable).parent
API_KEY = "e2e-secret"
LOOKBACK, HORIZON = 24, 6
LATENCY_COUNT = "urnn_http_request_duration_seconds_count"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

pytestmark = pytest.mark.e2e


def _binary(names: tuple[str, ...], package: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    message = f"{names[0]} not installed (Debian package {package})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: missing in CI, where .ci/run installs it")
    pytest.skip(message)


def _job_spec(csv: Path) -> dict[str, Any]:
    """A seconds-long uRNN: lookback 24, horizon 6, hidden 8, one short epoch, 4 backtest
    windows."""
    return {
        "data": str(csv),
        "target": "OT",
        "covariates": [],
        "config": {
            "model": {
                "kind": "urnn",
                "lookback": LOOKBACK,
                "horizon": HORIZON,
                "hidden_size": 8,
                "segment_length": 6,
            },
            "fit": {"max_epochs": 1, "max_train_batches": 5, "batch_size": 32, "device": "cpu"},
            "train": {"backtest_step": HORIZON, "backtest_windows": 4},
        },
        "promote": True,
    }


def _child_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("URNN_", "MLFLOW_", "PROMETHEUS_MULTIPROC_DIR"))
    }
    env.update(
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        URNN_TORCH_THREADS=os.environ.get("URNN_TORCH_THREADS", "1"),
        PYTHONUNBUFFERED="1",
        HOME=str(tmp / "home"),  # Chromium and MLflow write caches and profiles under it
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    (tmp / "home").mkdir(exist_ok=True)
    return env


def test_job_to_promoted_model_to_forecast_to_prometheus_and_mlflow_ui(tmp_path: Path) -> None:
    prometheus = _binary(("prometheus",), "prometheus")
    chromium = _binary(CHROMIUM_NAMES, "chromium")
    started = time.monotonic()

    mlflow_port, service_port, prometheus_port = free_port(), free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    service_url = f"http://127.0.0.1:{service_port}"
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    csv = tmp_path / "ETTh1-1500.csv"
    pd.read_csv(ETTH1, nrows=1500).to_csv(csv, index=False)

    env = _child_env(tmp_path)
    urnn_env = {
        "URNN_VAR_DIR": str(tmp_path / "var"),
        "URNN_MLFLOW_TRACKING_URI": mlflow_url,
        # Artifacts go through the tracking server (--serve-artifacts), as with a remote server.
        "URNN_MLFLOW_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "URNN_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "URNN_API_KEY": API_KEY,
        "URNN_MODEL_POLL_SECONDS": "1",
        "URNN_WORKER_POLL_SECONDS": "0.5",
        "URNN_JOB_HEARTBEAT_SECONDS": "1",
        "URNN_DEVICE": "cpu",
    }
    stack = Stack(tmp_path, {**env, **urnn_env}, cwd=tmp_path)
    try:
        # --- start everything ------------------------------------------------------------------
        mlflow = stack.start(
            "mlflow",
            mlflow_server_command(BIN, tmp_path / "mlflow.db", tmp_path / "artifacts", mlflow_port),
        )
        upgrade = subprocess.run(
            [str(BIN / "urnn"), "db", "upgrade"],
            env={**env, **urnn_env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert upgrade.returncode == 0, f"urnn db upgrade: {upgrade.stdout}{upgrade.stderr}"

        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: urnn\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{service_port}']\n"
        )
        prom = stack.start(
            "prometheus",
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
        )
        wait_for(
            "the MLflow server's /health",
            lambda: http_ok(f"{mlflow_url}/health"),
            timeout_s=60,
            stack=stack,
            watch=[mlflow],
        )
        service = stack.start("serve", [str(BIN / "urnn"), "serve", "--port", str(service_port)])
        worker = stack.start("worker", [str(BIN / "urnn"), "worker"])
        wait_for(
            "the service's /healthz",
            lambda: http_ok(f"{service_url}/healthz"),
            timeout_s=60,
            stack=stack,
            watch=[service],
        )
        wait_for(
            "Prometheus' /-/ready",
            lambda: http_ok(f"{prometheus_url}/-/ready"),
            timeout_s=30,
            stack=stack,
            watch=[prom],
        )
        # No model is registered yet: the service is up and not ready.
        assert httpx.get(f"{service_url}/readyz").status_code == 503

        # --- a retraining job through the API ----------------------------------------------------
        submitted = httpx.post(
            f"{service_url}/jobs",
            json=_job_spec(csv),
            headers={"X-API-Key": API_KEY},
            timeout=30,
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        job = _wait_for_job(stack, service_url, job_id, [service, worker])
        version = job["registered_version"]
        run_id = job["mlflow_run_id"]
        assert version and run_id and job["promoted"] is True, job
        assert any((tmp_path / "artifacts").rglob("*")), "no artifact reached the MLflow server"

        # --- the service picks the new champion up through its 1 s alias poll -------------------
        model = wait_for(
            f"GET /model to serve version {version}",
            lambda: _model_if_version(service_url, version),
            timeout_s=30,
            stack=stack,
            watch=[service],
        )
        assert model["run_id"] == run_id
        history = pd.read_csv(csv)
        values = history["OT"].tail(LOOKBACK).tolist()
        start = pd.Timestamp(history["date"].iloc[-LOOKBACK]).isoformat()
        answer = httpx.post(
            f"{service_url}/forecast",
            json={"series": [{"id": "ett", "start": start, "freq": "h", "values": values}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"]["version"] == version
        assert body["model"]["run_id"] == run_id
        assert len(body["forecasts"][0]["mean"]) == HORIZON

        # --- uvicorn's WebSocket support is installed: WS /series/stream answers per message -----
        # (this champion is windowed, so the message gets the POST route's 409, in the frame)
        feed_url = service_url.replace("http://", "ws://") + "/series/stream"
        with ws_connect(feed_url, additional_headers={"X-API-Key": API_KEY}) as feed:
            feed.send(json.dumps({"series_id": "ett", "start": start, "values": values[:1]}))
            reply = json.loads(feed.recv(timeout=30))
        assert reply["status"] == 409 and "not a streaming model" in reply["detail"], reply

        # --- Prometheus scraped the service's latency histogram ---------------------------------
        query = f'{LATENCY_COUNT}{{route="/forecast"}}'
        series = wait_for(
            f"Prometheus to return {query}",
            lambda: _prometheus_series(prometheus_url, query),
            timeout_s=20,
            stack=stack,
            watch=[prom, service],
        )
        assert series[0]["metric"]["job"] == "urnn"
        assert float(series[0]["value"][1]) >= 1

        # --- the MLflow UI lists the run (headless Chromium runs the JS app) --------------------
        experiment_id = _experiment_of(mlflow_url, run_id)
        run_name = _run_name(mlflow_url, run_id)
        page = f"{mlflow_url}/#/experiments/{experiment_id}/runs"
        dom = _dump_dom(stack, chromium, page)
        assert run_name in dom, (
            f"the MLflow UI's runs page {page} does not list run {run_name} ({run_id}); "
            f"DOM tail:\n{dom[-3000:]}"
        )
    finally:
        left = stack.stop_all()
        print(f"e2e stack ran {time.monotonic() - started:.1f} s")
    assert not left, f"process groups still alive after teardown: {left}"


def _wait_for_job(
    stack: Stack, service_url: str, job_id: str, watch: list[Process]
) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{service_url}/jobs/{job_id}", timeout=5).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(
        f"job {job_id} to finish", finished, timeout_s=90, stack=stack, watch=watch, interval_s=0.5
    )
    assert job["status"] == "succeeded", (
        f"job {job_id} {job['status']}: {job['error']}\nlog tail:\n{job['log_tail']}\n"
        f"{stack.diagnostics()}"
    )
    return job


def _model_if_version(service_url: str, version: str) -> dict[str, Any] | None:
    response = httpx.get(f"{service_url}/model", timeout=5)
    if response.status_code != 200:
        return None
    model: dict[str, Any] = response.json()
    return model if model["version"] == version else None


def _prometheus_series(prometheus_url: str, query: str) -> list[dict[str, Any]] | None:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    payload = response.json()
    assert payload["status"] == "success", payload
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result or None


def _experiment_of(mlflow_url: str, run_id: str) -> str:
    response = httpx.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    response.raise_for_status()
    return str(response.json()["run"]["info"]["experiment_id"])


def _run_name(mlflow_url: str, run_id: str) -> str:
    response = httpx.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    response.raise_for_status()
    return str(response.json()["run"]["info"]["run_name"])


def _dump_dom(stack: Stack, chromium: str, url: str) -> str:
    """The page's DOM after its scripts ran (virtual time lets the app fetch and render)."""
    dom = stack.tmp / "chromium-dom.html"
    process = stack.start(
        "chromium",
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={stack.tmp / 'chromium-profile'}",
            "--virtual-time-budget=15000",
            "--window-size=1600,1200",
            "--dump-dom",
            url,
        ],
        stdout=dom,
    )
    try:
        process.popen.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"chromium did not finish in 60 s\n{process.describe()}") from None
    assert process.popen.returncode == 0, process.describe()
    return dom.read_text(errors="replace")

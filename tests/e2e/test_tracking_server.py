"""Against a real `mlflow server --serve-artifacts` (docs/runbook.md, PostgreSQL in production):
runs logged by one host are readable by every other through the server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.processes import Stack, free_port, http_ok, mlflow_server_command, wait_for
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import start_run

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


def test_with_a_tracking_server_and_no_artifact_root_artifacts_go_through_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runbook's production setup names the server only (URNN_MLFLOW_TRACKING_URI): new
    experiments were given <var_dir>/mlartifacts, so a worker wrote each model to its own disk
    and a service on another host could not load it. The server's default is used instead."""
    from mlflow import MlflowClient
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    served = tmp_path / "served-artifacts"
    stack = Stack(tmp_path, {"HOME": str(tmp_path), "PATH": str(BIN)}, cwd=tmp_path)
    try:
        server = stack.start(
            "mlflow",
            mlflow_server_command(BIN, tmp_path / "mlflow.db", served, port),
        )
        wait_for(
            "the MLflow server",
            lambda: http_ok(f"{url}/health"),
            timeout_s=120,
            stack=stack,
            watch=[server],
        )
        settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=url)
        model_file = tmp_path / "weights.txt"
        model_file.write_text("trained")
        with start_run("through-the-server", settings, run_name="r") as run:
            from mlflow import log_artifact

            log_artifact(str(model_file))
            run_id = run.info.run_id

        experiment = MlflowClient(tracking_uri=url).get_experiment_by_name("through-the-server")
        assert experiment is not None
        assert experiment.artifact_location.startswith("mlflow-artifacts:")
        assert [p.read_text() for p in served.rglob("weights.txt")] == ["trained"]
        assert not (tmp_path / "var" / "mlartifacts").exists()
        downloaded = MlflowClient(tracking_uri=url).download_artifacts(
            run_id, "weights.txt", str(tmp_path)
        )
        assert Path(downloaded).read_text() == "trained"
    finally:
        stack.stop_all()

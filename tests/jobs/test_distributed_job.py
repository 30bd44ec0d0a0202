"""A job that asks for 2 processes trains under torchrun (DDP, gloo on CPU) from its worker,
registers one version from rank 0, and can be cancelled while its ranks train."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs import queue
from jobs.db import Database
from jobs.spec import JobSpec, validate_spec
from jobs.worker import Worker
from tests.jobs.conftest import cancel_once_logged, tiny_spec, worker_settings
from urnn_forecast.settings import Settings


def submit(db: Database, spec: dict[str, object]) -> str:
    checked = validate_spec(JobSpec.model_validate(spec))
    with db.session() as session:
        return queue.submit(session, spec=checked.model_dump(), max_attempts=1).id


@pytest.mark.slow
def test_a_two_process_job_trains_and_registers(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    from mlflow import MlflowClient

    settings = worker_settings(tmp_path, mlflow_settings)
    db = Database.from_settings(settings)
    try:
        job_id = submit(db, tiny_spec(ett_csv, nproc=2))
        assert Worker(db, settings).run_once() == job_id
        with db.session() as session:
            job = queue.get(session, job_id=job_id)
    finally:
        db.dispose()
    if job.status != "succeeded":  # the whole log, which an assertion message would cut
        print(f"job error: {job.error}\n--- log tail ---\n{job.log_tail}")
    assert job.status == "succeeded", job.error
    assert (job.registered_name, job.registered_version, job.promoted) == (
        "urnn-forecaster",
        "1",
        True,
    )
    assert job.log_tail is not None and "launching 2 processes" in job.log_tail
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    assert job.mlflow_run_id is not None
    assert client.get_run(job.mlflow_run_id).data.tags["processes"] == "2"


@pytest.mark.slow
def test_cancelling_a_two_process_job_stops_its_ranks(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    settings = worker_settings(tmp_path, mlflow_settings)
    db = Database.from_settings(settings)
    spec = tiny_spec(ett_csv, nproc=2)
    spec["config"]["fit"] = {"max_epochs": 500, "patience": 500, "batch_size": 8, "device": "cpu"}
    try:
        job_id = submit(db, spec)
        # once the ranks print that training started
        job, _ = cancel_once_logged(db, settings, job_id, "Training urnn")
    finally:
        db.dispose()
    assert job.status == "cancelled", (job.error, job.log_tail)
    assert job.registered_version is None

"""The MLflow helper writes runs into the store the Settings point at, and nowhere else."""

import pytest

from urnn_forecast.settings import Settings
from urnn_forecast.tracking import MlflowTracker, start_run


def test_start_run_logs_into_a_fresh_sqlite_store(mlflow_settings: Settings) -> None:
    from mlflow.tracking import MlflowClient

    settings = mlflow_settings
    assert not settings.var_dir.exists()
    with start_run("unit-test", settings, run_name="r1", tags={"suite": "test"}) as run:
        tracker = MlflowTracker(run.info.run_id)
        tracker.log_params({"task": "copy", "seq_len": 10})
        tracker.log_metrics({"train_cost": 0.5}, step=1)
        tracker.log_metrics({"train_cost": 0.25}, step=2)
        run_id = run.info.run_id

    assert (settings.var_dir / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    experiment = client.get_experiment_by_name("unit-test")
    assert experiment is not None
    assert experiment.artifact_location == f"{settings.resolved_artifact_root()}/unit-test"
    stored = client.get_run(run_id)
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name == "r1"
    assert stored.data.params == {"task": "copy", "seq_len": "10"}
    assert stored.data.tags["suite"] == "test"
    history = client.get_metric_history(run_id, "train_cost")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]

    # a second run reuses the experiment instead of failing to create it again
    with start_run("unit-test", settings) as second:
        assert second.info.experiment_id == experiment.experiment_id


def test_a_failing_body_marks_the_run_failed(mlflow_settings: Settings) -> None:
    from mlflow.tracking import MlflowClient

    settings = mlflow_settings
    with pytest.raises(RuntimeError), start_run("unit-test", settings) as run:
        run_id = run.info.run_id
        raise RuntimeError("boom")
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    assert client.get_run(run_id).info.status == "FAILED"

"""bench.paper_plots draws the paper runs' learning curves from the MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import paper_plots
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import ensure_experiment


def test_curves_are_drawn_from_the_latest_run_of_each_model_and_length(
    mlflow_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    mlflow_settings.var_dir.mkdir(parents=True)
    monkeypatch.setattr(paper_plots, "get_settings", lambda: mlflow_settings)
    client = MlflowClient(tracking_uri=mlflow_settings.resolved_tracking_uri())
    experiment = ensure_experiment("paper-copy", mlflow_settings)
    for name in ("urnn-T100", "lstm-T100", "urnn-T200", "urnn-T200", "not-a-paper-run"):
        run = client.create_run(experiment, run_name=name)
        client.log_param(run.info.run_id, "baseline", 0.17)
        for step, cost in ((50, 1.0), (100, 0.5)):
            client.log_metric(run.info.run_id, "train_cost", cost, step=step)
        client.set_terminated(run.info.run_id)
    runs = paper_plots.latest_runs(client, experiment)
    assert sorted(runs) == [(100, "lstm"), (100, "urnn"), (200, "urnn")]
    output = tmp_path / "copy.png"
    assert paper_plots.main(["--task", "copy", "--output", str(output)]) == 0
    assert output.stat().st_size > 1000
    with pytest.raises(SystemExit, match="no experiment paper-adding"):
        paper_plots.main(["--task", "adding", "--output", str(tmp_path / "a.png")])

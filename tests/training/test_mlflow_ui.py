"""What a user reads in the MLflow UI after `urnn train`: the experiment's and the registered
model's descriptions, the kept model's val score beside the last epoch's, the versions list's
first words, and a metrics table with its column names.

Found by a walk through the UI (MLflow 3.17) on ETTh1, PJM and Bike runs: the experiments list
and the registered model's page had empty descriptions; the runs table showed `val_loss` of
the last epoch, not of the weights kept; the versions list cut every description to
"Registered as urnn-forecaster..."; and `metrics/overall.csv` previewed with its first column
unnamed and the row's label (`all`) blank.
Everything runs in a temporary store on the tiny model of test_registry.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from models.forecaster import ForecasterConfig
from tests.training.synthetic import seasonal_frame
from tests.training.test_registry import NAME, tiny_config
from training.fit import FitConfig
from training.pipeline import train_pipeline
from training.run_notes import best_val_key, job_run_name, metrics_note
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import (
    NOTE_TAG,
    PAPER_EXPERIMENT_NOTE,
    TRAINING_EXPERIMENT_NOTE,
    ensure_experiment,
    start_run,
)


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "plant.csv"
    seasonal_frame(600).to_csv(path)
    return path


def test_two_runs_read_in_the_ui(csv: Path, tmp_path: Path, mlflow_settings: Settings) -> None:
    import mlflow

    # three epochs with patience 1: a run that stops past its best epoch shows the gap
    fit = FitConfig(max_epochs=3, max_train_batches=4, device="cpu", patience=1)
    first = train_pipeline(tiny_config(csv, fit=fit), mlflow_settings)
    second = train_pipeline(tiny_config(csv, fit=fit), mlflow_settings)
    client = mlflow.MlflowClient()

    experiment = client.get_experiment_by_name("forecast")
    assert experiment is not None and experiment.tags[NOTE_TAG] == TRAINING_EXPERIMENT_NOTE

    registered = client.get_registered_model(NAME)
    assert registered.description is not None
    assert f"`models:/{NAME}@champion`" in registered.description
    assert "`challenger` is the version registered last" in registered.description

    for result in (first, second):
        run = client.get_run(result.run_id)
        history = client.get_metric_history(result.run_id, "val_loss")
        best_epoch = int(run.data.metrics["best_epoch"])
        kept = next(m.value for m in history if m.step == best_epoch)
        assert run.data.metrics["best_val_loss"] == pytest.approx(kept)
        assert "`best_val_loss` the model kept" in run.data.tags[NOTE_TAG]
        # an epoch's duration, not to be read as another total beside fit_seconds
        assert "epoch_seconds" in run.data.metrics and "seconds" not in run.data.metrics

        overall = client.download_artifacts(result.run_id, "metrics/overall.csv", str(tmp_path))
        header = Path(overall).read_text().splitlines()[0].split(",")
        assert header[:3] == ["scope", "n", "mae"]
        assert pd.read_csv(overall, index_col="scope").loc["all", "mae"] == pytest.approx(
            result.scores["mae"]
        )

    # runs of one command share a name: what became of each model is on the run, searchable
    for result in (first, second):
        assert result.version is not None
        tags = client.get_run(result.run_id).data.tags
        on_version = client.get_model_version(NAME, result.version).tags["promotion.decision"]
        assert tags["registered_version"] == result.version
        assert tags["promotion.decision"] == on_version
    promoted = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`promotion.decision` = 'promoted'"
    )
    assert [r.info.run_id for r in promoted if r.info.run_id == first.run_id] == [first.run_id]

    # the versions list shows a description's first words: the decision, not the model's name
    for result in (first, second):
        assert result.version is not None
        said = client.get_model_version(NAME, result.version).description or ""
        word = "Promoted to champion (" if result.promoted else "Not promoted ("
        assert said.startswith(word), said


def test_runs_of_two_registered_models_are_told_apart_by_their_tags(
    csv: Path, mlflow_settings: Settings
) -> None:
    """Runs registering into two names (`--registered-name`) share the experiment: each name's
    first version is `registered_version` 1, so the tag alone matched both runs in a search
    (`tags.registered_version = '1'`, found in a walk with ETTh1 and PJM DAYTON models); the
    run also names the registered model, for the run list's columns and search."""
    import mlflow

    ours = train_pipeline(tiny_config(csv), mlflow_settings)
    other = train_pipeline(tiny_config(csv, registered_name="pump-7"), mlflow_settings)
    client = mlflow.MlflowClient()
    assert (ours.version, other.version) == ("1", "1")
    for result, name in ((ours, NAME), (other, "pump-7")):
        tags = client.get_run(result.run_id).data.tags
        assert (tags["registered_model"], tags["registered_version"]) == (name, "1")
    experiment = client.get_experiment_by_name("forecast")
    assert experiment is not None
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.registered_model = 'pump-7' and tags.registered_version = '1'",
    )
    assert [r.info.run_id for r in found] == [other.run_id]


def test_a_description_a_person_wrote_is_kept(csv: Path, mlflow_settings: Settings) -> None:
    import mlflow

    train_pipeline(tiny_config(csv), mlflow_settings)
    client = mlflow.MlflowClient()
    client.update_registered_model(NAME, description="Pump 7 forecaster, owned by ops.")
    experiment = client.get_experiment_by_name("forecast")
    assert experiment is not None
    client.set_experiment_tag(experiment.experiment_id, NOTE_TAG, "Plant 3 models.")

    train_pipeline(tiny_config(csv), mlflow_settings)
    assert client.get_registered_model(NAME).description == "Pump 7 forecaster, owned by ops."
    assert client.get_experiment(experiment.experiment_id).tags[NOTE_TAG] == "Plant 3 models."


def test_an_experiment_made_before_descriptions_is_described(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    from mlflow import MlflowClient

    uri = mlflow_settings.resolved_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    made = client.create_experiment("older", artifact_location=(tmp_path / "a").as_uri())
    assert NOTE_TAG not in client.get_experiment(made).tags
    assert ensure_experiment("older", mlflow_settings) == made  # not described: not asked to
    assert NOTE_TAG not in client.get_experiment(made).tags
    described = ensure_experiment("older", mlflow_settings, description=TRAINING_EXPERIMENT_NOTE)
    assert described == made
    assert client.get_experiment(made).tags[NOTE_TAG] == TRAINING_EXPERIMENT_NOTE


def test_a_deleted_experiment_is_named_with_the_way_to_restore_it(
    csv: Path, mlflow_settings: Settings
) -> None:
    """An experiment deleted in the UI (in MLflow's trash) stopped `urnn train` after the data
    was read with a traceback ("The experiment 1 must be in the 'active' state"), and every
    scheduled retrain into it the same way; nothing is made or logged in it now, and the
    error says how to restore it."""
    from mlflow import MlflowClient

    from urnn_forecast.tracking import DeletedExperimentError

    client = MlflowClient(tracking_uri=mlflow_settings.resolved_tracking_uri())
    made = ensure_experiment("forecast", mlflow_settings)
    client.delete_experiment(made)
    with pytest.raises(DeletedExperimentError) as raised:
        train_pipeline(tiny_config(csv), mlflow_settings)
    assert str(raised.value).startswith(
        f"experiment 'forecast' was deleted in the MLflow store at "
        f"{mlflow_settings.resolved_tracking_uri()} (it is in the trash, id {made}), which logs "
        "no run and makes no new experiment of that name: restore it (the UI's trash, or "
        f"MLFLOW_TRACKING_URI=... mlflow experiments restore --experiment-id {made})"
    )
    assert not client.search_runs([made], run_view_type=3)  # ViewType.ALL: no run at all


def test_only_the_training_experiment_gets_the_training_description(
    mlflow_settings: Settings,
) -> None:
    """The paper benchmark's experiment (`paper-adding`) holds no training runs: it is
    described as what it holds; an experiment of other runs is not described at all."""
    from mlflow import MlflowClient

    from urnn_forecast.cli import main

    argv = "benchmark paper adding --seq-len 6 --iterations 3 --model lstm --hidden-size 4"
    assert main([*argv.split(), "--device", "cpu"], settings=mlflow_settings) == 0
    client = MlflowClient(tracking_uri=mlflow_settings.resolved_tracking_uri())
    paper = client.get_experiment_by_name("paper-adding")
    assert paper is not None and paper.tags[NOTE_TAG] == PAPER_EXPERIMENT_NOTE

    with start_run("service-tests", mlflow_settings) as run:
        other = run.info.experiment_id
    assert NOTE_TAG not in client.get_experiment(other).tags


def test_descriptions_hold_no_angle_brackets() -> None:
    """The runs page renders the experiment's description as markdown, which drops `<lookback>`
    as an HTML tag: the first note read "named KIND-TARGET-L-H (a job's: job--KIND-...)"."""
    from training.run_notes import registered_model_description

    for said in (
        TRAINING_EXPERIMENT_NOTE,
        PAPER_EXPERIMENT_NOTE,
        registered_model_description(NAME),
    ):
        assert re.search(r"<[A-Za-z]", said) is None, said


def test_metric_and_job_run_names() -> None:
    assert best_val_key("loss") == "best_val_loss"
    assert best_val_key("mae") == "best_val_mae_scaled"  # as the per-epoch curve is named
    model = ForecasterConfig(kind="lstm", lookback=96, horizon=24)
    assert job_run_name("3f0c1a2b-9d", model, "OT") == "job-3f0c1a2b-lstm-OT-L96-H24"
    assert len(job_run_name("3f0c1a2b-9d", model, "x" * 400)) <= 250  # MLflow's limit


def test_the_run_description_names_an_ensembles_and_a_decoder_searchs_curves(
    csv: Path, mlflow_settings: Settings
) -> None:
    """An ensemble's run (`--ensemble 2`) logs each member's curves apart (`member1/val_loss`)
    and a decoder search's each candidate's (`pmf/val_loss`), where the description named
    `train_loss` and `val_loss`, which such a run does not have, and called `best_val_loss` the
    score at `best_epoch`: an ensemble's is the averaged members', its `best_epoch` member 1's
    (found in a walk through the UI with an ETTh1 ensemble)."""
    plain = metrics_note(trains=True, scope="global")
    assert "member1/" not in plain and "pmf/" not in plain
    members = metrics_note(trains=True, scope="global", ensemble=2)
    assert "`member1/train_loss`" in members and "`member2/val_loss`" in members
    assert "`best_val_loss` is the averaged ensemble's" in members
    assert "`best_epoch` member 1's" in members
    assert members.count("`member2/val_loss`") == 1  # not "member2/val_loss, ... member2/..."
    search = metrics_note(trains=True, scope="global", decoder_search=True)
    assert "`direct/val_loss`" in search and "`pmf/val_loss`" in search
    assert "the chosen decoder's (tag `decoder`)" in search
    both = metrics_note(trains=True, scope="global", ensemble=3, decoder_search=True)
    assert "`member1/pmf/val_loss`" in both and "`member3/val_loss`" in both
    import mlflow

    fit = FitConfig(max_epochs=1, max_train_batches=2, device="cpu")
    model = ForecasterConfig(
        kind="urnn", lookback=48, horizon=12, hidden_size=8, segment_length=12, ensemble=2
    )
    result = train_pipeline(tiny_config(csv, fit=fit, model=model), mlflow_settings)
    run = mlflow.MlflowClient().get_run(result.run_id)
    said = run.data.tags[NOTE_TAG]
    named = set(re.findall(r"`(member\d/[a-z_]+)`", said))
    assert named and named <= set(run.data.metrics), (named, sorted(run.data.metrics))
    assert "train_loss" not in run.data.metrics


def test_the_run_description_says_what_the_losses_and_scores_measure(
    csv: Path, mlflow_settings: Settings
) -> None:
    """The run's description said `val_loss` is 'the pinball loss over the quantiles' for a
    fit with `mse_weight` too (the demo trains with 1.0), whose loss adds the median's MSE, and
    that every `backtest_*` is in the target's own units, where sMAPE is a percentage, MSE in
    squared units and MASE and the coverage shares have none."""
    plain = metrics_note(trains=True, scope="global")
    assert "pinball loss over the quantiles" in plain and "mse_weight" not in plain
    weighted = metrics_note(trains=True, scope="global", mse_weight=1.0)
    assert "pinball loss over the quantiles plus 1 x the median's MSE (mse_weight)" in weighted
    for note in (plain, weighted, metrics_note(trains=False, scope="global")):
        assert "MSE in its units squared" in note
        assert "sMAPE in percent, MASE, coverage_* and below_q* unitless" in note
    import mlflow

    fit = FitConfig(max_epochs=1, max_train_batches=2, device="cpu", mse_weight=1.0)
    result = train_pipeline(tiny_config(csv, fit=fit), mlflow_settings)
    said = mlflow.MlflowClient().get_run(result.run_id).data.tags[NOTE_TAG]
    assert "over the quantiles plus 1 x the median's MSE (mse_weight)" in said

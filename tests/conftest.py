"""Fixtures shared across test layers."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from urnn_forecast.settings import Settings

# What MLflow makes in the working folder when a test logs to its default places: ./mlruns (the
# artifacts of a SQLite store's Default experiment, or the file store), ./mlartifacts,
# ./mlflow.db (MLflow 3's default tracking URI).
MLFLOW_DEFAULT_PLACES = ("mlruns", "mlartifacts", "mlflow.db")


def _mlflow_places(folder: Path) -> set[str]:
    """The entries under `folder`'s MLflow default places, three levels deep (mlruns/<experiment>
    /models/<model id>), and each file's size and modification time: a test that adds a model
    to an mlruns/ that was already there changes it too."""
    found: set[str] = set()
    for name in MLFLOW_DEFAULT_PLACES:
        top = folder / name
        if top.is_file():
            stat = top.stat()
            found.add(f"{name} {stat.st_size} {stat.st_mtime_ns}")
        elif top.is_dir():
            found.add(name)
            for parent, folders, files in os.walk(top):
                depth = len(Path(parent).relative_to(folder).parts)
                found.update(str(Path(parent, entry).relative_to(folder)) for entry in folders)
                found.update(str(Path(parent, entry).relative_to(folder)) for entry in files)
                if depth >= 3:
                    folders.clear()
    return found


@pytest.fixture(autouse=True)
def no_mlflow_store_in_the_working_folder() -> Iterator[None]:
    """Fails the test that logs to MLflow's default places in the working folder (the
    repository root, under `make test`) instead of a temporary store: three tests with a SQLite
    store in tmp_path left their models in ./mlruns/0/models, the Default experiment's
    artifact root being ./mlruns. Checked in the folder the test started in (a test may chdir)."""
    folder = Path.cwd()
    before = _mlflow_places(folder)
    yield
    made = sorted(_mlflow_places(folder) - before)
    if made:
        shown = ", ".join(made[:5]) + (f" and {len(made) - 5} more" if len(made) > 5 else "")
        pytest.fail(
            f"the test wrote MLflow's default store in the working folder {folder}: {shown}; "
            "log to a temporary store (the mlflow_settings fixture, or an experiment whose "
            "artifact_location is under tmp_path)",
            pytrace=False,
        )


@pytest.fixture
def mlflow_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose MLflow store lives in tmp_path; MLflow's global URI is restored after.

    `mlflow.set_tracking_uri` (called by `urnn_forecast.tracking.start_run`) stores the URI in a
    module global and in `MLFLOW_TRACKING_URI`; monkeypatch puts both back so later tests never
    see a store inside a deleted temp folder.
    """
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    yield Settings(var_dir=tmp_path / "var")

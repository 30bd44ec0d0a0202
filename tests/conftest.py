"""Fixtures shared across test layers."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from urnn_forecast.settings import Settings


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

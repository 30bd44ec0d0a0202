"""An MLflow store on the PostgreSQL server: checked with one connection, then used as is."""

from pathlib import Path

import pytest

from urnn_forecast import cli
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import check_tracking_server

pytestmark = pytest.mark.postgres


def test_a_reachable_postgres_tracking_store_passes_the_check_and_lists_its_registry(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reachability check is one connection that creates nothing; MLflow then makes its
    tables, and `urnn models list` answers from that store (not from the local default)."""
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=postgres_url)
    check_tracking_server(settings)
    code = cli.main(["models", "list"], settings=settings)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "no registered model 'urnn-forecaster' (registered: none yet)" in err
    assert postgres_url.split("@")[1] in err  # the store it read is named
    assert not (tmp_path / "var").exists()  # the local default store was not touched

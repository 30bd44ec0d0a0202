"""bench.train_defaults: urnn train's defaults side by side on other data (tiny stand-in data
here; the real files are ../shared/data's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import train_defaults
from bench.train_defaults import DataSet
from tests.training.synthetic import half_hourly_frame
from training.data import LoadConfig
from urnn_forecast.settings import Settings


def run_main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["train_defaults", *argv])
    train_defaults.main()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--datasets", "weather"],
            "unknown data set(s) ['weather']; known: taylor, bike, pjmw, ettm2",
        ),
        (["--kinds", "prophet"], "unknown kind(s) ['prophet']; known: urnn,"),
        (
            ["--data-dir", "/nowhere"],
            "--data-dir /nowhere: no file for ['taylor', 'bike', 'pjmw', 'ettm2']",
        ),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stop:
        run_main(argv, monkeypatch)
    assert stop.value.code == 2
    assert expected in capsys.readouterr().err


def test_every_kind_is_trained_and_scored_on_the_same_backtest(
    tmp_path: Path,
    mlflow_settings: Settings,  # puts MLflow's global tracking URI back afterwards
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    half_hourly_frame().to_csv(tmp_path / "demand.csv")
    tiny = DataSet("demand.csv", LoadConfig(target="y"), "a half-hourly stand-in")
    monkeypatch.setattr(train_defaults, "DATASETS", {"tiny": tiny})
    run_main(
        ["--datasets", "tiny", "--kinds", "linear,seasonal_naive", "--data-dir", str(tmp_path)],
        monkeypatch,
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert [row.split(" | ")[1] for row in rows] == ["linear", "seasonal_naive"]
    # the daily season repeats yesterday, which is this series up to its noise
    naive_mae = float(rows[1].split(" | ")[2].replace(",", ""))
    assert naive_mae < 1.5
    assert "tiny: a half-hourly stand-in; MASE scaled by the seasonal naive of 48 rows" in out

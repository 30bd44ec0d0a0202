"""bench.train_defaults: urnn train's defaults side by side on other data (tiny stand-in data
here; the real files are ../shared/data's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
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
            "unknown data set(s) ['weather']; known: taylor, bike, pjmw, ettm2, skab, "
            "pjme-monthly, bike-daily, cmapss, cmapss-units",
        ),
        (["--kinds", "prophet"], "unknown kind(s) ['prophet']; known: urnn,"),
        (
            ["--data-dir", "/nowhere"],
            "--data-dir /nowhere: no file for ['taylor', 'bike', 'pjmw', 'ettm2', 'skab', "
            "'pjme-monthly', 'bike-daily', 'cmapss', 'cmapss-units']",
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


def test_a_prepared_file_with_its_own_model_options_and_baseline(
    tmp_path: Path,
    mlflow_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """C-MAPSS's way: a headerless text file named into a CSV first, engines too short for the
    default look-back, and cycles without a season (the naive row repeats the last value)."""
    lines = [
        f"{unit} {cycle} {0.5 * cycle + unit:.2f}" for unit in (1, 2) for cycle in range(1, 121)
    ]
    (tmp_path / "engines.txt").write_text("\n".join(lines) + "\n")

    def named(raw: Path, out_dir: Path) -> Path:
        frame = pd.read_csv(raw, sep=" ", header=None, names=["unit", "cycle", "s2"])
        frame.to_csv(out_dir / "engines.csv", index=False)
        return out_dir / "engines.csv"

    load = LoadConfig(
        target="s2", series_col="unit", timestamp_col="cycle", step_origin="2000-01-01", freq="D"
    )
    spec = DataSet(
        "engines.txt",
        load,
        "two engines",
        model={"lookback": 24, "horizon": 6, "segment_length": 6},
        prepare=named,
        baseline="repeat_last",
    )
    monkeypatch.setattr(train_defaults, "DATASETS", {"engines": spec})
    run_main(
        ["--datasets", "engines", "--kinds", "seasonal_naive", "--data-dir", str(tmp_path)],
        monkeypatch,
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| engines |")]
    assert [row.split(" | ")[1] for row in rows] == ["repeat_last"]
    # a straight line rising 0.5 a cycle: repeating the last value is 0.5 x (1..6) off
    assert float(rows[0].split(" | ")[2]) == pytest.approx(1.75)

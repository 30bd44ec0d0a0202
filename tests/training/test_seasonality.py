"""The data's season when the user names none: MASE's scale and the seasonal naive forecaster
follow the frequency (a fixed 24 was half a day on half-hourly data), and every fallback or
refusal says why."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from models.forecaster import ForecasterConfig, ForecasterConfigError, build_forecaster
from tests.training.synthetic import half_hourly_frame
from training.data import LoadConfig
from training.pipeline import TrainConfig, train_pipeline
from training.registry import load_registered
from training.seasonality import (
    SeasonError,
    frequency_season,
    mase_season,
    model_season,
)
from urnn_forecast.settings import Settings


@pytest.mark.parametrize(
    ("freq", "rows"),
    [
        ("h", 24),
        ("30min", 48),
        ("15min", 96),
        ("min", 1440),
        ("1s", 3600),
        ("10s", 360),
        ("2h", 12),
        ("7h", 1),  # divides no day
        ("D", 7),
        ("3D", 1),
        ("B", 5),
        ("W-SUN", 52),
        ("7D", 52),
        ("MS", 12),
        ("ME", 12),
        ("2MS", 6),
        ("SMS", 24),
        ("QS-OCT", 4),
        ("QE-DEC", 4),
        ("YS", 1),
    ],
)
def test_the_season_of_each_frequency(freq: str, rows: int) -> None:
    assert frequency_season(freq) == rows


def test_mase_season_falls_back_to_one_step_when_the_training_span_is_too_short() -> None:
    assert mase_season(None, "30min", 500).rows == 48
    short = mase_season(None, "1s", 3000)
    assert short.rows == 1 and "3600 rows" in short.reason and "3000 rows" in short.reason
    assert mase_season(5, "1s", 3000) == mase_season(5, "h", 10)  # the user's, as given
    assert mase_season(5, "h", 10).reason == "set by the user"
    with pytest.raises(SeasonError, match=r"set season_length \(--season-length\) to at most 9$"):
        mase_season(10, "h", 10)  # before the fit: the scale needs a pair a season apart


def test_a_seasonal_naive_season_longer_than_the_lookback_is_refused_naming_both() -> None:
    assert model_season(None, "30min", 48).rows == 48
    assert model_season(12, "30min", 48).rows == 12
    with pytest.raises(SeasonError, match=r"season_length: .*\(3600 rows, .*'1s'.*lookback=336"):
        model_season(None, "1s", 336)


def test_an_unset_season_cannot_build_a_seasonal_naive_forecaster() -> None:
    config = ForecasterConfig(kind="seasonal_naive", lookback=48, horizon=12)
    assert config.season_length is None
    with pytest.raises(ForecasterConfigError, match="season_length must be set"):
        build_forecaster(config)
    with pytest.raises(ForecasterConfigError, match="season_length must be an integer >= 1"):
        ForecasterConfig(kind="seasonal_naive", season_length=0)


def half_hourly_csv(path: Path) -> Path:
    half_hourly_frame().to_csv(path)
    return path


def test_urnn_train_seasonal_naive_on_half_hourly_data_repeats_yesterday(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    csv = half_hourly_csv(tmp_path / "demand.csv")
    config = TrainConfig(
        data=str(csv),
        load=LoadConfig(target="y"),
        model=ForecasterConfig(kind="seasonal_naive", lookback=96, horizon=24),
        backtest_step=24,
    )
    result = train_pipeline(config, mlflow_settings)
    assert load_registered(result.model_uri).model.config.season_length == 48
    # yesterday's value is today's up to the noise: far below the half-day season's error
    assert result.scores["mae"] < 1.5
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.tags["mase_season"].startswith("48 rows (one season of the data's frequency")
    assert run.data.params["backtest.season_length"] == "48"
    assert result.mase_season.startswith("48 rows (one season of the data's frequency")

    half_day = train_pipeline(
        TrainConfig(**{**config.__dict__, "season_length": 24, "registered_name": None}),
        mlflow_settings,
    )
    assert half_day.scores["mae"] > 10 * result.scores["mae"]  # the opposite phase
    assert mlflow.MlflowClient().get_run(half_day.run_id).data.tags["mase_season"] == (
        "24 rows (set by the user)"
    )


def test_urnn_train_refuses_a_seasonal_naive_lookback_shorter_than_the_season(
    tmp_path: Path, mlflow_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from urnn_forecast import cli

    csv = half_hourly_csv(tmp_path / "demand.csv")
    argv = ["train", "--data", str(csv), "--target", "y", "--model", "seasonal_naive"]
    code = cli.main([*argv, "--lookback", "36", "--horizon", "12"], settings=mlflow_settings)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "season_length:" in err and "(48 rows, one season of the data's frequency" in err
    assert "lookback=36" in err


@pytest.mark.parametrize("bad", [0, -24, 2.5, "48", True])
def test_a_bad_season_in_a_job_or_config_file_names_the_field(bad: object) -> None:
    from urnn_forecast.cli import train_config_from_sections
    from urnn_forecast.cli_support import UsageError

    sections = {"load": {"target": "y"}, "train": {"season_length": bad}}
    expected = (  # a wrong type is named by its field's type; a wrong value by its range
        r"config\.train: field 'season_length' must be an integer or null; got"
        if not isinstance(bad, int) or isinstance(bad, bool)
        else r"config\.train: season_length must be None .* >= 1"
    )
    with pytest.raises(UsageError, match=expected):
        train_config_from_sections("demand.csv", sections, what="config")
    ok = train_config_from_sections("demand.csv", {"load": {"target": "y"}}, what="config")
    assert ok.season_length is None

"""`urnn train --nproc 2`: two CPU processes under torchrun (DDP, gloo) train, rank 0 logs and
registers, and the result equals one process's on the same data within a stated tolerance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from urnn_forecast.cli import main
from urnn_forecast.settings import Settings

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETT-small" / "ETTh1.csv"
# Batches of 32 split evenly over 2 ranks, so a DDP step is the single-process step up to the
# order of floating-point sums; after 2 epochs x 3 batches the scores agree to this:
RTOL = 1e-4


@pytest.mark.slow
def test_two_process_ddp_trains_registers_and_matches_one_process(
    tmp_path: Path, mlflow_settings: Settings
) -> None:
    from mlflow import MlflowClient

    csv = tmp_path / "etth1-400.csv"
    pd.read_csv(ETTH1, nrows=400).to_csv(csv, index=False)
    argv = [
        "train", "--data", str(csv), "--target", "OT", "--covariates", "HUFL",
        "--lookback", "24", "--horizon", "6", "--hidden-size", "8", "--segment-length", "6",
        "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--backtest-step", "6",
        "--backtest-windows", "4", "--no-promote",
    ]  # fmt: skip
    config = tmp_path / "fit.json"
    config.write_text('{"fit": {"max_train_batches": 3, "patience": 5}}')
    argv += ["--config", str(config)]
    assert main(argv, settings=mlflow_settings) == 0
    assert main([*argv, "--nproc", "2"], settings=mlflow_settings) == 0

    client = MlflowClient(tracking_uri=mlflow_settings.resolved_tracking_uri())
    versions = sorted(
        client.search_model_versions("name='urnn-forecaster'"), key=lambda v: int(v.version)
    )
    assert [str(v.version) for v in versions] == ["1", "2"]  # DDP registered once (rank 0)
    runs = [client.get_run(str(v.run_id)) for v in versions]
    assert [run.data.tags["processes"] for run in runs] == ["1", "2"]
    single, ddp = (run.data.metrics for run in runs)
    for metric in ("backtest_mae", "backtest_mse", "val_loss"):
        assert ddp[metric] == pytest.approx(single[metric], rel=RTOL), metric

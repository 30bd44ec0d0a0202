"""bench/stage_probe.py: the probe that bench/train_memory.py and bench/backtest_memory.py run
in a fresh process, on a tiny `urnn train`: every stage marked is reported with memory
figures, a stage the tree lacks is left out, and the tail sees the command's output."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.stage_probe import probe_source, run_probe

ROOT = Path(__file__).resolve().parents[2]


def test_the_probe_reports_each_marked_stage_and_the_tail(tmp_path: Path) -> None:
    data = tmp_path / "ett.csv"
    pd.read_csv(ROOT / "data" / "ETT-small" / "ETTh1.csv").head(600).to_csv(data, index=False)
    source = probe_source(
        [
            ("training.pipeline", "prepare_training", "prepare"),
            ("training.pipeline", "backtest", "backtest"),
            ("training.pipeline", "no_such_stage", "absent"),
        ],
        tail='out["said"] = "Backtest" in text.getvalue()\n',
    )
    args = ["train", "--data", str(data), "--target", "OT", "--model", "linear"]
    args += ["--lookback", "24", "--horizon", "12", "--epochs", "1", "--no-promote"]
    args += ["--no-progress", "--experiment", "probe"]
    result = run_probe(source, ROOT, args, tmp_path / "var")
    assert result["code"] == 0
    assert set(result["stages"]) == {"prepare", "backtest"}
    for stage in result["stages"].values():
        assert stage["seconds"] > 0
        # ru_maxrss is the process's peak: no sample can be above it
        assert 0 < stage["start"] <= result["peak"]
        assert stage["peak"] <= result["peak"]
    assert result["said"] is True

"""bench.coverage_walk: coverage of the calibrated interval in the weeks after training, on PJM
DAYTON's real hourly load (../shared/data)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from bench import coverage_walk
from models.forecaster import ForecasterConfig
from tests.shared_data import SHARED_DATA, needs_shared
from training.data import LoadConfig
from training.fit import FitConfig, fit
from training.pipeline import TrainConfig, prepare_training
from training.windows import WindowDataset


def run_main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["coverage_walk", *argv])
    coverage_walk.main()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--datasets", "weather"],
            "unknown data set(s) ['weather']; known: dayton, pjmw, comed, bike, taylor, etth1",
        ),
        (
            ["--calibrations", "test"],
            "unknown calibration(s) ['test']; known: val, val-pooled, train+val, none, crossfit, "
            "aci[:GAMMA in 0..1], rolling[:N > 0]",
        ),
        (
            ["--calibrations", "val,aci:2,rolling:0"],
            "unknown calibration(s) ['aci:2', 'rolling:0']",
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


@needs_shared("PJM_hourly/DAYTON_hourly.csv")
def test_the_weeks_after_the_cutoff_are_scored_beside_val_and_test(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A short fit on one year of DAYTON ending 2016-10-15: val calibration matches val by
    construction, and the rows after the cut-off start on its day (no forecast target inside
    the training history) and are 168 origins a week."""
    argv = ["--datasets", "dayton", "--cutoffs", "2016-10-15", "--epochs", "1"]
    argv += ["--batches", "5", "--weeks", "2", "--weekly", "--data-dir", str(SHARED_DATA)]
    run_main(argv, monkeypatch)
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    weeks = [r for r in rows if r[1] == "val" and r[2].startswith("week of")]
    assert [(r[2], r[5]) for r in weeks] == [
        ("week of 2016-10-15", "168"),
        ("week of 2016-10-22", "145"),  # the last origin needs 24 later hours
    ]
    summary = {r[1]: r for r in rows if len(r) == 9}
    assert set(summary) == {"val", "train+val"}
    assert abs(float(summary["val"][2]) - 0.8) < 0.01  # val coverage, fitted there
    for r in summary.values():
        assert 0.0 <= float(r[6]) <= 1.0  # the after-span coverage


@needs_shared("PJM_hourly/DAYTON_hourly.csv")
def test_crossfit_forecasts_each_train_window_once_from_a_fit_without_its_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every train window is forecast exactly once, by a fold model none of whose training
    windows shares a target row with the windows it forecasts (real DAYTON hours)."""
    source = coverage_walk.SOURCES["dayton"]
    history = coverage_walk.cut(SHARED_DATA, source, pd.Timestamp("2016-10-15"), 120, tmp_path)
    model = ForecasterConfig(kind="urnn", lookback=48, horizon=24, hidden_size=8)
    config = TrainConfig(data=str(history), load=LoadConfig(target=source.target), model=model)
    prepared = prepare_training(config)
    train, val = prepared.sets.train, prepared.sets.val
    fitted_on: list[set[int]] = []

    def recording_fit(
        config: ForecasterConfig, train: WindowDataset, val: WindowDataset, *a: Any, **k: Any
    ) -> Any:
        fitted_on.append(set(train.starts.tolist()))
        return fit(config, train, val, *a, **k)

    monkeypatch.setattr(coverage_walk, "fit", recording_fit)
    quick = FitConfig(max_epochs=1, max_train_batches=2, device="cpu")
    pred, target = coverage_walk.crossfit_forecasts(model, train, val, quick, 3, 48)
    assert pred.shape == (len(train), 24, 3)
    assert sorted(target.sum(dim=1).tolist()) == sorted(
        train.targets(torch.arange(len(train))).sum(dim=1).tolist()
    )
    starts = train.starts.tolist()
    for fold, trained in enumerate(fitted_on):
        held = {s for i, s in enumerate(starts) if (i // 48) % 3 == fold}
        assert held and trained and not held & trained
        # a target span is [start + L, start + L + H): no trained one overlaps a held-out one
        assert min(abs(t - h) for t in trained for h in held) >= 24


@pytest.mark.parametrize("method", ["aci", "rolling"])
@pytest.mark.parametrize("resolve", ["step", "horizon"])
def test_the_adaptive_multiplier_reads_only_forecasts_resolved_before_it(
    method: str, resolve: str
) -> None:
    """Forecast j's multiplier at every step is the same whatever the scores of the (forecast,
    step) pairs not yet observed when j is issued: step h of forecast i (horizon steps 1..H)
    is known from pos[i] + h <= pos[j] on ("step"), or pos[i] + H <= pos[j] ("horizon"). The
    start rows skip 3 hours once (a gap in the history), and the unseen scores are replaced by
    0 or 9 (inside or far outside any interval), so a state that read one changes."""
    rng = np.random.default_rng(0)
    horizon = 4
    pos = np.r_[np.arange(20), np.arange(23, 43)]
    scores = rng.uniform(0.0, 2.0, (len(pos), horizon))
    val_scores = rng.uniform(0.0, 2.0, (30, horizon))
    kwargs: dict[str, Any] = {"gamma": 0.05, "window": 6, "resolve": resolve}
    issued = coverage_walk.adaptive_multipliers(scores, pos, val_scores, method, **kwargs)
    steps = np.arange(1, horizon + 1) if resolve == "step" else np.full(horizon, horizon)
    changed = 0
    for j in range(len(pos)):
        unseen = pos[:, None] + steps[None, :] > pos[j]  # (T, H)
        other = np.where(unseen, rng.choice([0.0, 9.0], scores.shape), scores)
        again = coverage_walk.adaptive_multipliers(other, pos, val_scores, method, **kwargs)
        np.testing.assert_array_equal(again[j], issued[j])
        changed += int((again[j + 1 :] != issued[j + 1 :]).any())  # later ones may read them
    assert changed > len(pos) // 2  # the replaced scores do move the multipliers once seen


def test_the_adaptive_multiplier_starts_from_the_val_scores() -> None:
    """Before anything resolves, both rules issue the conformal 80 % quantile of the val
    scores (rolling: of the last `window` of them), and a step size of 0 keeps ACI there."""
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.0, 2.0, (50, 3))
    val_scores = rng.uniform(0.0, 2.0, (99, 3))  # ceil(100 * 0.8) = the 80th smallest
    pos = np.arange(50)
    expected = np.sort(val_scores, axis=0)[79]
    aci = coverage_walk.adaptive_multipliers(scores, pos, val_scores, "aci", gamma=0.0)
    np.testing.assert_array_equal(aci, np.broadcast_to(expected, aci.shape))
    rolling = coverage_walk.adaptive_multipliers(scores, pos, val_scores, "rolling", window=9)
    np.testing.assert_array_equal(rolling[0], np.sort(val_scores[-9:], axis=0)[7])


def test_the_interval_score_is_the_multiplier_that_just_covers() -> None:
    """Covered at multiplier m exactly when the score is at most m, for widened forecasts."""
    rng = np.random.default_rng(2)
    q = torch.from_numpy(rng.normal(size=(200, 5, 3))).sort(dim=-1).values
    y = torch.from_numpy(rng.normal(size=(200, 5)))
    score = coverage_walk.interval_scores(q, y, 1)
    for m in (0.5, 1.0, 1.7):
        wide = coverage_walk.widen(q, torch.full((200, 5), m), 1)
        inside = (y >= wide[..., 0]) & (y <= wide[..., -1])
        assert torch.equal(score <= m, inside)

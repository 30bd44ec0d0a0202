"""bench.coverage_walk: coverage of the calibrated interval in the weeks after training, on PJM
DAYTON's real hourly load (../shared/data)."""

from __future__ import annotations

import sys

import pytest

from bench import coverage_walk
from tests.shared_data import SHARED_DATA, needs_shared


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
            "unknown calibration(s) ['test']; known: val, val-pooled, train+val, none",
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

"""The Prometheus config and its alert rules are valid (`promtool`, Debian package prometheus)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.files import ALERTS, PROMETHEUS


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: .ci/run installs the Debian package prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def _promtool_passes(*args: str) -> None:
    result = subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    _promtool_passes("check", "config", str(PROMETHEUS))


def test_promtool_check_rules() -> None:
    _promtool_passes("check", "rules", str(ALERTS))


def test_the_reload_alerts_on_replayed_counters() -> None:
    """UrnnModelReloadFailed holds while the alias names a version that does not load and
    clears at the rollback: it watched "failure" only, so it cleared after 15 minutes while no
    replica served that version; then a 15-minute increase() of the failure counters, which held
    for 15 minutes past a rollback. And the 502 of a failed POST /model/reload paged as a 5xx
    rate on a quiet replica."""
    _promtool_passes("test", "rules", str(Path(__file__).with_name("reload_alert_rules_test.yml")))


def test_the_mixed_versions_alert_fires_when_a_replica_does_not_follow_the_alias() -> None:
    """Nothing fired while a worker with its poll off (or whose reloads fail) served the old
    version for good beside the new one: clients got two models' forecasts at random, seen
    only as two rows at 1 on a dashboard panel."""
    here = Path(__file__).with_name("mixed_versions_rules_test.yml")
    _promtool_passes("test", "rules", str(here))


def test_the_drift_alert_fires_with_a_window_below_1000_values() -> None:
    """UrnnInputDrift reads the PSI alone: a worker exports 0 until its window holds 1,000
    values or is full (service/drift.py). The alert also required 1,000 values in the window,
    so with URNN_DRIFT_WINDOW below 1,000 it never fired."""
    _promtool_passes("test", "rules", str(Path(__file__).with_name("drift_alert_rules_test.yml")))


def test_the_realised_error_alert_fires_when_the_cache_evicts_every_forecast_unscored() -> None:
    """urnn_realised_evicted_total had no alert: a cache smaller than the ids of one cycle
    scores nothing, and UrnnIntervalCoverageLow (which needs 100 points) stays silent."""
    _promtool_passes(
        "test", "rules", str(Path(__file__).with_name("realised_alert_rules_test.yml"))
    )


def test_the_out_of_range_alert_fires_when_a_versions_revealed_steps_are_all_out_of_range() -> None:
    """Steps whose error is out of range go to urnn_realised_out_of_range_points_total only: a
    client revealing actuals in other units than its history had every step there, nothing
    was measured, and no alert fired (nothing is evicted, so not UrnnRealisedErrorUnmeasured;
    no points, so not UrnnIntervalCoverageLow). UrnnRealisedErrorOutOfRange fires per version
    when over 90 % of 100 or more revealed steps are out of range, its points counter absent
    or not; a few among many scored do not; and over a week for one series forecast daily."""
    here = Path(__file__)
    _promtool_passes(
        "test",
        "rules",
        str(here.with_name("realised_out_of_range_rules_test.yml")),
        str(here.with_name("realised_out_of_range_small_fleet_rules_test.yml")),
    )


def test_the_accuracy_alert_fires_when_a_versions_realised_mase_jumps() -> None:
    """No alert fired when the served model's point accuracy fell (actuals in kW after
    histories in W: errors scored, in range, a thousand times larger). UrnnRealisedErrorJumped
    fires per version when its realised MASE over 6 h is more than 4 times its own over the 7
    days before (a new version: the fleet's then), over 100 points in each; not on few points,
    not on a 3x spell, and it resolves once the errors are back; over a week for a fleet of
    one series."""
    _promtool_passes(
        "test", "rules", str(Path(__file__).with_name("realised_accuracy_rules_test.yml"))
    )


def test_the_job_alerts_fire_on_a_failed_retrain_a_stuck_queue_and_an_unreadable_database() -> None:
    """A failed retraining job was seen by nobody until someone asked GET /jobs: the job
    gauges of /metrics (service/job_status.py) feed UrnnRetrainingFailed (until a later job
    succeeds), UrnnJobsNotPickedUp and UrnnJobDatabaseUnreadable."""
    _promtool_passes("test", "rules", str(Path(__file__).with_name("job_alert_rules_test.yml")))


def test_the_coverage_alert_reads_each_versions_own_nominal_level() -> None:
    """UrnnIntervalCoverageLow compared every version with 0.6, so one trained with
    --quantiles 0.5,0.9,0.99 (outermost interval 0.5..0.99, nominal 0.49) alerted for ever
    however well calibrated; it now fires 0.2 below urnn_realised_interval_nominal."""
    _promtool_passes(
        "test", "rules", str(Path(__file__).with_name("coverage_alert_rules_test.yml"))
    )


def test_the_coverage_alert_fires_for_a_fleet_of_one_series_forecast_daily() -> None:
    """A series forecast once a day scores 24 points a day: UrnnIntervalCoverageLow asked for
    100 points in 6 h and never fired for it (the PJM walk's one region, 168 points a week).
    It also reads the last week, where 100 points are there after 4.2 days."""
    _promtool_passes(
        "test", "rules", str(Path(__file__).with_name("coverage_small_fleet_rules_test.yml"))
    )


def test_the_interval_multiplier_alert_watches_the_served_version_only() -> None:
    """Rolling intervals widen a failing model's interval until its coverage looks fine, so
    UrnnIntervalCoverageLow stays silent: UrnnIntervalMultiplierFar fires on the served
    version's multiplier held at 4x (or 0.25x), not on a replaced version's last value."""
    _promtool_passes(
        "test", "rules", str(Path(__file__).with_name("interval_multiplier_rules_test.yml"))
    )


def test_the_above_backtest_alert_compares_each_version_with_its_own_backtest() -> None:
    """UrnnRealisedErrorJumped compares a version with its own past only: a slow decline, a
    jump older than 7 days and a version bad from its first day never fired. The backtest's
    MASE could not be the reference (another scale). UrnnRealisedErrorAboveBacktest reads
    urnn_realised_reference_mase (the backtest scored in the service's units, by lead): it
    fires on 30x errors, weighs the reference by the day's lead mix (a version scoring only
    long leads at 0.9 of its reference there is silent), is silent without the gauge (a model
    from before it), on under 100 points, and at 2.8x; one series reads the last 7 days."""
    _promtool_passes(
        "test", "rules", str(Path(__file__).with_name("realised_above_backtest_rules_test.yml"))
    )

"""The Grafana provisioning is consistent, and every PromQL expression (dashboard and alerts)
selects only series the service really exports, with the right suffix for each metric type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs.models import JOB_STATUSES
from jobs.queue import JobSummary
from service.job_status import JobStatusReading
from service.metrics import ServiceMetrics
from tests.deploy.files import (
    GRAFANA,
    alert_exprs,
    dashboard_exprs,
    dashboards,
    load_yaml,
    panels,
    promql_metric_names,
)

# Series Prometheus adds itself for every target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exported_series() -> set[str]:
    """Sample names /metrics can hold: the families of a fresh ServiceMetrics registry, each
    with its type's suffixes (counters `_total`, histograms `_bucket`/`_sum`/`_count`)."""
    names = set()
    metrics = ServiceMetrics()
    jobs = JobSummary(dict.fromkeys(JOB_STATUSES, 0), None, None, None)
    metrics.watch_jobs(lambda: JobStatusReading(jobs, up=True))  # read from the job database
    for family in metrics.registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_exported_series_match_a_live_scrape() -> None:
    """The suffix rules above agree with prometheus_client's exposition of used metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = ServiceMetrics()
    metrics.request_latency.labels("/forecast", "POST", "2xx").observe(0.01)
    metrics.inference_latency.observe(0.001)
    metrics.batch_series.observe(2)
    metrics.reloads.labels("success").inc()
    metrics.queue_depth.set(0)
    text = metrics.render().decode()
    scraped = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    assert {
        "urnn_http_request_duration_seconds_bucket",
        "urnn_http_request_duration_seconds_count",
        "urnn_inference_duration_seconds_sum",
        "urnn_batch_series_bucket",
        "urnn_model_reloads_total",
        "urnn_queue_depth_requests",
    } <= scraped
    assert scraped <= exported_series()


def _provisioned() -> tuple[dict[str, Any], dict[str, Any]]:
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "urnn.yml")
    return datasource["datasources"][0], provider["providers"][0]


def test_provisioning_files_point_at_each_other() -> None:
    datasource, provider = _provisioned()
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"  # the compose service
    assert provider["type"] == "file" and provider["options"]["path"]
    boards = dashboards()
    assert boards, "no dashboard JSON under deploy/grafana/dashboards"
    for path, board in boards.items():
        assert board.get("uid") and board.get("title"), path
        for panel in panels(board):
            if panel.get("type") == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"], (path, panel["title"])
            assert panel.get("targets"), (path, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_panel_ids_are_unique() -> None:
    for path, board in dashboards().items():
        ids = [panel["id"] for panel in panels(board)]
        assert len(ids) == len(set(ids)), path


@pytest.mark.parametrize("path", sorted(dashboards()), ids=lambda p: Path(p).name)
def test_dashboard_queries_only_exported_series(path: Path) -> None:
    exported = exported_series()
    exprs = dashboard_exprs(dashboards()[path])
    assert exprs
    for expr in exprs:
        names = promql_metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        assert names <= exported, f"{sorted(names - exported)} not exported; in {expr!r}"


def test_dashboard_covers_what_issue_7_asks_for() -> None:
    used = set().union(
        *(promql_metric_names(e) for board in dashboards().values() for e in dashboard_exprs(board))
    )
    assert {
        "urnn_http_request_duration_seconds_count",  # request and error rate
        "urnn_http_request_duration_seconds_bucket",  # latency p50/p99
        "urnn_inference_duration_seconds_bucket",
        "urnn_batch_series_sum",
        "urnn_queue_depth_requests",
        "urnn_input_drift_psi",
        "urnn_realised_abs_error_total",  # realised MAE = abs_error / points
        "urnn_realised_interval_hits_total",
        "urnn_realised_points_total",
        "urnn_realised_evicted_total",  # why the two above can read nothing
        "urnn_model_info",
        "urnn_model_reloads_total",
    } <= used


def test_alert_rules_query_only_exported_series() -> None:
    exported = exported_series() | SCRAPE_SERIES
    for expr in alert_exprs():
        names = promql_metric_names(expr)
        assert names and names <= exported, f"{sorted(names - exported)} in {expr!r}"


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{route="/x", s=~"4xx|5xx"}'
        "[$__rate_interval]))) / ignoring(status_class) group_left sum(b_total offset 5m) > 1e-3"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total"}


def test_every_alert_signal_has_a_panel() -> None:
    """An operator paged by an alert finds its signal on the dashboard: UrnnModelReloadFailed
    (urnn_model_reload_failing) and UrnnStreamSnapshotsFailing
    (urnn_stream_snapshot_failures_total) fired on metrics no panel showed."""
    shown = set().union(
        *(promql_metric_names(e) for board in dashboards().values() for e in dashboard_exprs(board))
    )
    alerted = set().union(*(promql_metric_names(e) for e in alert_exprs())) - SCRAPE_SERIES
    assert alerted <= shown, f"alerted on, shown on no panel: {sorted(alerted - shown)}"


def _draws_threshold_lines(panel: dict[str, Any]) -> bool:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    style = defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off")
    return bool(style != "off")


def test_threshold_lines_only_on_the_drift_panel() -> None:
    """The PSI rule of thumb (0.1 watch, 0.2 shifted; docs/serving.md) is the dashboard's only
    documented threshold. The streaming row had it copied on, drawing yellow and red lines at
    0.1 and 0.2 s of update latency, 0.2 live states and 0.2 evictions per second."""
    for path, board in dashboards().items():
        for panel in panels(board):
            if not _draws_threshold_lines(panel):
                continue
            names = set().union(*(promql_metric_names(t["expr"]) for t in panel["targets"]))
            assert names == {"urnn_input_drift_psi"}, (path.name, panel["title"])


def test_every_panel_says_what_it_shows() -> None:
    """Each panel has a description (the streaming row's had none), and a panel that mixes a
    rate with counts gives the rate its own unit."""
    for path, board in dashboards().items():
        for panel in panels(board):
            if panel.get("type") == "row":
                continue
            assert panel.get("description"), (path.name, panel["title"])
            exprs = [t["expr"] for t in panel["targets"]]
            rates = [t for t in panel["targets"] if "rate(" in t["expr"]]
            if rates and len(rates) < len(exprs):
                overridden = {
                    o["matcher"]["options"]
                    for o in panel["fieldConfig"].get("overrides", [])
                    if any(p["id"] == "unit" for p in o["properties"])
                }
                for target in rates:
                    assert target["legendFormat"] in overridden, (panel["title"], target["expr"])


def test_realised_mae_by_version_weights_every_scored_step_alike() -> None:
    """The panel's mean read urnn_realised_mae_sum / _count: the mean over scorings of each
    scoring's MAE, so a client asking every hour (a scoring per step) outweighed one asking
    daily (24 steps a scoring). Walked on PJM (2026-12-07), an hourly DAYTON client beside a
    daily PJME one: the panel read 131 MW where the 305 scored steps' MAE was 765 MW (587 in
    its window). It now reads the per-step counters, as the by-lead panel and the docs do."""
    board = next(iter(dashboards().values()))
    (panel,) = [p for p in panels(board) if p.get("title") == "Realised MAE by model version"]
    means = [t["expr"] for t in panel["targets"] if t.get("legendFormat", "").endswith("mean")]
    assert means
    for expr in means:
        assert promql_metric_names(expr) == {
            "urnn_realised_abs_error_total",
            "urnn_realised_points_total",
        }, expr

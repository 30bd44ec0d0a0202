"""Every Prometheus metric of the service, defined in this one module.

Labels take bounded values only: route templates (never the raw path), method, status class,
model version, and drift column names (they come from the model, not from requests). A series
id is never a label; per-series state (the realised-error cache) stays in memory, bounded.

Several uvicorn workers: when PROMETHEUS_MULTIPROC_DIR is set before the processes start,
prometheus_client writes every value to files in that folder and `/metrics` merges them with a
`MultiProcessCollector` (`render`). Gauges say how to merge: queue depth sums over live
workers, the served version takes the max over live workers (1 where any worker serves it),
drift takes the worst worker, live streaming states and open WebSocket feeds sum over live
workers. `urnn serve --workers N` sets the folder up.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from service.job_status import JobStatusReading

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Realised MAE is in the target's own units, unknown here: a wide geometric range, 1e-3 to
# 1e5 in quarter decades (1, 1.78, 3.16, 5.62, 10, ...). Half decades up to 1,000 and then
# 10,000 read the p90 of PJM COMED's day-ahead MAEs as 6,560 MW where it was 1,510 and
# ETTh1's p50 as 1.89 where it was 1.46; these read within ~20 % (docs/serving.md).
MAE_BUCKETS = tuple(float(f"{10.0 ** (e / 4):.3g}") for e in range(-12, 21))
# Realised MASE (error over the look-back's mean one-step change): scale-free, finer about 1.
MASE_BUCKETS = (
    0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 20.0, 50.0,
)  # fmt: skip
# The largest step error the realised sums take, in target units and in multiples of the
# look-back's mean one-step change: a float64 sum that holds one 1e19 keeps nothing of a later
# 2.3 (1e19 + 2.3 == 1e19), and rate(sum) read 0 for every series until a restart. Below
# 1e12 a thousand such errors leave the sum's resolution near 0.1 target units, not 2048.
REALISED_ERROR_LIMIT = 1e12
REALISED_SCALED_LIMIT = 1e6

CONTENT_TYPE = CONTENT_TYPE_LATEST
RELOAD_OUTCOMES = ("success", "failure", "unchanged", "skipped_failed", "not_registered")
REJECT_REASONS = ("queue_full", "no_model")
# Realised error by lead time (forecast step 1, 2-3, 4-7, ...): doubling buckets keep the label
# to 11 values for any horizon, and separate the one-step error from the day-ahead one.
LEAD_LABELS = ("1", *(f"{2**b}-{2 ** (b + 1) - 1}" for b in range(1, 10)), "1024+")


def lead_bucket(lead: int) -> int:
    """The index in LEAD_LABELS of forecast step `lead` (1-based)."""
    return min(lead.bit_length() - 1, len(LEAD_LABELS) - 1)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ServiceMetrics:
    """The service's metrics, registered in `registry` (one per app, so tests stay isolated)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.jobs: JobMetrics | None = None  # watch_jobs
        # (version, lead) of every urnn_interval_multiplier value set: end_multipliers
        self._multiplier_labels: set[tuple[str, str]] = set()
        self._ended_multipliers: set[str] = set()  # versions no longer served: not shown
        r = self.registry
        self.request_latency = Histogram(
            "urnn_http_request_duration_seconds",
            "HTTP request latency, by route template, method and status class (2xx, 4xx, 5xx).",
            ["route", "method", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_latency = Histogram(
            "urnn_inference_duration_seconds",
            "Wall time of one micro-batch on the inference thread: its forward passes (at "
            "most URNN_BATCH_MAX_SERIES series each), not the stacking of its inputs nor the "
            "un-scaling of its forecasts, which run on the event loop.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_series = Histogram(
            "urnn_batch_series",
            "Series per micro-batch (the requests grouped into one inference job; its forward "
            "passes take at most URNN_BATCH_MAX_SERIES series each).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "urnn_batch_requests",
            "Requests grouped into one batched forward pass.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "urnn_queue_depth_requests",
            "Requests waiting for inference.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.rejected = Counter(
            "urnn_forecast_rejected",
            "Forecast requests refused before inference, by reason (queue_full, no_model).",
            ["reason"],
            registry=r,
        )
        self.forecast_series = Counter(
            "urnn_forecast_series",
            "Series answered with a forecast, by model version (not those of a request refused "
            "because its forecast was not finite).",
            ["model_version"],
            registry=r,
        )
        self.model_info = Gauge(
            "urnn_model_info",
            "The served model version: 1 for the version being served, 0 for earlier ones.",
            ["name", "version", "run_id"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_loaded = Gauge(
            "urnn_model_loaded",
            "1 when a model is loaded and /forecast can answer, else 0.",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.draining = Gauge(
            "urnn_draining",
            "1 while the process drains after SIGTERM (URNN_SHUTDOWN_DRAIN_SECONDS), else 0.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.reloads = Counter(
            "urnn_model_reloads",
            "Model (re)load attempts by outcome: success, failure, unchanged, skipped_failed "
            "(the poll passing over a version that failed to load), not_registered (nothing "
            "at the URI yet: no model trained, an alias not set).",
            ["outcome"],
            registry=r,
        )
        self.reload_failing = Gauge(
            "urnn_model_reload_failing",
            "1 while the model URI names a version that does not load, or the registry cannot "
            "be read (the last load failed); 0 once a version loads or the URI names the "
            "served one again.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_psi = Gauge(
            "urnn_input_drift_psi",
            "Population stability index of recent inputs against the training reference, per "
            "column (target and covariates); > 0.2 is usually read as a shift.",
            ["column"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_values = Gauge(
            "urnn_input_drift_window_values",
            "Values in the sliding window the drift PSI is computed over, per column.",
            ["column"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.realised_mae = Histogram(
            "urnn_realised_mae",
            "MAE of an earlier forecast over the steps a later history revealed (target units; "
            "not those out of range, urnn_realised_out_of_range_points), "
            "by the version that made the forecast.",
            ["model_version"],
            buckets=MAE_BUCKETS,
            registry=r,
        )
        self.realised_points = Counter(
            "urnn_realised_points",
            "Forecast steps whose actual value a later history revealed, by the version that "
            "made the forecast and the step's lead (1, 2-3, 4-7, ... steps ahead).",
            ["model_version", "lead"],
            registry=r,
        )
        self.realised_hits = Counter(
            "urnn_realised_interval_hits",
            "Of those, steps inside the outermost interval served (lowest..highest quantile; "
            "with URNN_ADAPTIVE_INTERVALS=rolling after the rolling multiplier, the interval "
            "before it is urnn_realised_unadapted_interval_hits); coverage = hits / points.",
            ["model_version", "lead"],
            registry=r,
        )
        self.realised_abs_error = Counter(
            "urnn_realised_abs_error",
            "Sum of |actual - median forecast| over those steps (target units): realised MAE "
            "by lead = abs_error / points.",
            ["model_version", "lead"],
            registry=r,
        )
        self.realised_scaled_abs_error = Counter(
            "urnn_realised_scaled_abs_error",
            "Sum over the scored steps of |actual - median forecast| divided by the mean "
            "absolute one-step change of the look-back the forecast was made from (scale-free: "
            "a series in MW and one in rentals weigh alike); realised MASE by lead = "
            "scaled_abs_error / scaled_points. Steps of a flat look-back (no change) are not "
            "in it.",
            ["model_version", "lead"],
            registry=r,
        )
        self.realised_scaled_points = Counter(
            "urnn_realised_scaled_points",
            "Scored steps in urnn_realised_scaled_abs_error: the points less those forecast "
            "from a flat look-back.",
            ["model_version", "lead"],
            registry=r,
        )
        self.realised_mase = Histogram(
            "urnn_realised_mase",
            "Realised MASE of an earlier forecast over the steps a later history revealed (MAE "
            "over the look-back's mean one-step change), by the version that made the forecast.",
            ["model_version"],
            buckets=MASE_BUCKETS,
            registry=r,
        )
        self.realised_out_of_range = Counter(
            "urnn_realised_out_of_range_points",
            "Revealed steps not scored because their error is out of range: over "
            f"{REALISED_ERROR_LIMIT:.0e} target units, or over {REALISED_SCALED_LIMIT:.0e} times "
            "the look-back's mean one-step change (a sentinel, a unit change, a glitch); kept "
            "out of every realised sum, which one such value would hold at a level where later "
            "errors no longer add.",
            ["model_version"],
            registry=r,
        )
        self.realised_unadapted_hits = Counter(
            "urnn_realised_unadapted_interval_hits",
            "With URNN_ADAPTIVE_INTERVALS=rolling: of the scored steps, those inside the "
            "outermost interval as trained and calibrated, before the rolling multiplier "
            "(urnn_realised_interval_hits counts the interval served); unadapted coverage = "
            "these / points. Not counted when adaptation is off.",
            ["model_version", "lead"],
            registry=r,
        )
        self.interval_multiplier = Gauge(
            "urnn_interval_multiplier",
            "With URNN_ADAPTIVE_INTERVALS=rolling: the multiplier of each quantile's distance "
            "from the median that POST /forecast serves now, averaged over the horizon steps "
            "of each lead bucket (1: the interval as calibrated; above 1 wider).",
            ["model_version", "lead"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.realised_nominal = Gauge(
            "urnn_realised_interval_nominal",
            "Nominal coverage of the outermost trained interval of each version that has "
            "served (highest minus lowest quantile level: 0.8 for 0.1..0.9, 0.49 for "
            "0.5..0.99), what hits / points should sit near.",
            ["model_version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.realised_reference = Gauge(
            "urnn_realised_reference_mase",
            "The realised MASE each version's backtest scored, by lead: its forecasts' "
            "|actual - median| over the mean absolute one-step change of each window's "
            "look-back, as the service scores them (config.json's realised_reference, "
            "written by urnn train). What UrnnRealisedErrorAboveBacktest compares "
            "urnn_realised_scaled_abs_error / urnn_realised_scaled_points with; absent for a "
            "model trained before the key.",
            ["model_version", "lead"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.realised_evicted = Counter(
            "urnn_realised_evicted",
            "Forecasts dropped from the realised-error cache before their last step was "
            "scored: every forecast pending for the id it evicts, the least recently seen, when "
            "it holds URNN_FORECAST_CACHE_SIZE ids (never scored, or partly by earlier "
            "histories). Near the rate of forecast series, more ids cycle through than it "
            "keeps and their realised error is never measured.",
            registry=r,
        )
        self.realised_cache = Gauge(
            "urnn_realised_cache_series",
            "Series ids whose latest forecast is kept for scoring, summed over workers (an "
            "id whose requests reached two workers is kept, and counted, by each).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.stream_series_live = Gauge(
            "urnn_stream_series_live",
            "Streaming series whose state is held in memory.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.stream_connections = Gauge(
            "urnn_stream_connections",
            "Open WebSocket feeds (WS /series/stream).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.stream_evictions = Counter(
            "urnn_stream_evictions",
            "Streaming states dropped from memory by the LRU bound (flushed first when changed).",
            registry=r,
        )
        self.stream_restores = Counter(
            "urnn_stream_restores",
            "Streaming states loaded from their database snapshot on a cache miss.",
            registry=r,
        )
        self.stream_rebuilds = Counter(
            "urnn_stream_rebuilds",
            "Streaming states rebuilt by replaying the stored tail through a new model version.",
            registry=r,
        )
        self.stream_snapshot_conflicts = Counter(
            "urnn_stream_snapshot_conflicts",
            "Snapshot writes refused because another replica wrote the series first.",
            registry=r,
        )
        self.stream_snapshot_failures = Counter(
            "urnn_stream_snapshot_failures",
            "Snapshot writes the database refused or did not answer (locked, down): the states "
            "stay in memory, unsaved, and are retried; a crash meanwhile loses their points.",
            registry=r,
        )
        self.stream_points = Counter(
            "urnn_stream_points",
            "Points consumed by streaming states (gap-filled ones included, duplicates not).",
            registry=r,
        )
        self.stream_update_seconds = Histogram(
            "urnn_stream_update_seconds",
            "Wall time of one streaming update: advance the state and forecast.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_flush_seconds = Histogram(
            "urnn_stream_snapshot_flush_seconds",
            "Wall time of one write of streaming snapshots to the database.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        if not multiprocess_mode():
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                r.register(collector)
        # Every label value a counter can take, at 0 from the start: Prometheus' increase()
        # does not count a series' first appearance, so a first reload failure (or rejection)
        # created at 1 would never raise an alert built on increase().
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(outcome=outcome)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)

    def start_version(
        self,
        version: str,
        quantiles: tuple[float, ...],
        horizon: int,
        *,
        adaptive: bool = False,
        reference: Mapping[str, float] | None = None,
    ) -> None:
        """The counters by model version, at 0 when the version starts serving: created at
        their first increment, the first scrape's counts never reach rate() or increase(),
        which skewed coverage (hits / points) over a window by all that came before it. And
        the nominal coverage of its outermost interval (`quantiles`: its trained levels), which
        the coverage alert compares with: a fixed 0.6 fired for ever on a model trained with
        --quantiles 0.5,0.9,0.99 (nominal 0.49) or 0.25,0.5,0.75 (0.5), however well calibrated.
        The realised counters get every lead bucket up to `horizon`, the model's longest;
        with `adaptive` (rolling intervals) also the unadapted hits and the multiplier, at 1.
        `reference`: the version's backtest realised MASE by lead (config.json's
        realised_reference), the gauge the above-backtest alert reads; None (a model from
        before the key): no gauge, and that alert stays silent for the version."""
        self.forecast_series.labels(model_version=version)
        self._ended_multipliers.discard(version)  # served again (a rollback)
        for lead in LEAD_LABELS[: lead_bucket(max(horizon, 1)) + 1]:
            for family in (
                self.realised_points,
                self.realised_hits,
                self.realised_abs_error,
                self.realised_scaled_abs_error,
                self.realised_scaled_points,
            ):
                family.labels(model_version=version, lead=lead)
            if adaptive:
                self.realised_unadapted_hits.labels(model_version=version, lead=lead)
                self._show_multiplier(version, lead, 1.0)
        self.realised_mae.labels(model_version=version)
        self.realised_mase.labels(model_version=version)
        self.realised_out_of_range.labels(model_version=version)
        nominal = round(quantiles[-1] - quantiles[0], 12)  # 0.8, not 0.8000000000000002
        self.realised_nominal.labels(model_version=version).set(nominal)
        for lead, value in (reference or {}).items():
            self.realised_reference.labels(model_version=version, lead=lead).set(value)

    def end_multipliers(self, version: str) -> None:
        """Drop a version's rolling multipliers once another version serves: the gauge says
        what POST /forecast serves now, and the old one's last values stayed for ever.
        prometheus_client cannot remove a labelled value in multiprocess mode (the worker's
        file keeps it, and it warns), which the compose stack runs in with one worker too:
        there each is set to NaN, no value, which the dashboard draws as nothing and the
        alert's comparisons never match (a 0 would read as a multiplier far below 1 beside
        another replica still serving that version)."""
        self._ended_multipliers.add(version)
        for lead in LEAD_LABELS:
            if multiprocess_mode():
                if (version, lead) in self._multiplier_labels:
                    self.interval_multiplier.labels(model_version=version, lead=lead).set(math.nan)
                continue
            with contextlib.suppress(KeyError):
                self.interval_multiplier.remove(version, lead)

    def show_multipliers(self, version: str, multipliers: Sequence[float]) -> None:
        """The rolling multipliers (one per horizon step) as their mean per lead bucket; none
        for a version `end_multipliers` ended: a batch validated against it before the swap
        is scored after it, and showed its multipliers again, for ever."""
        if version in self._ended_multipliers:
            return
        sums: dict[int, list[float]] = {}
        for step, m in enumerate(multipliers, start=1):
            sums.setdefault(lead_bucket(step), []).append(m)
        for bucket, values in sums.items():
            self._show_multiplier(version, LEAD_LABELS[bucket], sum(values) / len(values))

    def _show_multiplier(self, version: str, lead: str, value: float) -> None:
        self.interval_multiplier.labels(model_version=version, lead=lead).set(value)
        self._multiplier_labels.add((version, lead))

    def render(self) -> bytes:
        """The text exposition of /metrics; merged over worker processes in multiprocess mode
        (after dropping the live gauges of workers that died without saying so)."""
        if multiprocess_mode():
            forget_dead_workers()
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            if self.jobs is not None:  # read from the database, not merged from files
                merged.register(self.jobs)
            return generate_latest(merged)
        return generate_latest(self.registry)

    def watch_jobs(self, read: Callable[[], JobStatusReading | None]) -> None:
        """Expose the job queue's gauges (JobMetrics) read by `read`."""
        self.jobs = JobMetrics(read)
        if not multiprocess_mode():
            self.registry.register(self.jobs)


class JobMetrics(Collector):
    """The job queue, read from the job database at scrape time (service.job_status keeps
    the reads off the event loop): the same numbers from every replica and every worker
    process, so alerts take max() over them. `read` answers None where there is no queue
    (an embedded default where no job was ever submitted): then nothing is exposed."""

    def __init__(self, read: Callable[[], JobStatusReading | None]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return []  # families vary with the reading; registering must not read the database

    def collect(self) -> Iterable[Metric]:
        reading = self.read()
        if reading is None:
            return
        yield GaugeMetricFamily(
            "urnn_jobs_database_up",
            "1 if the latest read of the job database for these metrics succeeded; 0 when it "
            "failed or a read has not returned in 30 s; the job gauges then show the last "
            "successful read.",
            value=1 if reading.up else 0,
        )
        jobs = reading.summary
        if jobs is None:
            return
        by_status = GaugeMetricFamily(
            "urnn_jobs", "Jobs in the job database by status (all time).", labels=["status"]
        )
        for status, count in jobs.counts.items():
            by_status.add_metric([status], count)
        yield by_status
        for name, moment, what in (
            ("urnn_job_last_failure_timestamp_seconds", jobs.last_failure, "failed job"),
            ("urnn_job_last_success_timestamp_seconds", jobs.last_success, "succeeded job"),
        ):
            yield GaugeMetricFamily(
                name,
                f"Unix time the newest {what} finished; 0 if there is none.",
                value=0.0 if moment is None else moment.timestamp(),
            )
        yield GaugeMetricFamily(
            "urnn_job_oldest_queued_timestamp_seconds",
            "Unix time the oldest job still queued was submitted; 0 if none is queued. A queue "
            "no worker takes grows old: time() minus this.",
            value=0.0 if jobs.oldest_queued is None else jobs.oldest_queued.timestamp(),
        )


def forget_dead_workers() -> list[int]:
    """Drop the live gauges of worker processes that are gone: a worker killed (OOM, SIGKILL)
    never reaches its lifespan's `mark_process_dead`, and uvicorn starts a new one beside its
    files, so its queue depth, served version and drift would be merged in forever. Returns
    the pids forgotten."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return []
    pids = set()
    for path in glob.glob(os.path.join(folder, "gauge_live*_*.db")):
        stem = os.path.basename(path).removesuffix(".db")
        number = stem.rsplit("_", 1)[-1]
        if number.isdigit():
            pids.add(int(number))
    dead = [pid for pid in sorted(pids) if not _alive(pid)]
    for pid in dead:
        multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def multiprocess_folder_problem(folder: str) -> str | None:
    """Why PROMETHEUS_MULTIPROC_DIR cannot hold the metric files, None when it can. The
    workers write there from their first metric on: a folder that did not exist failed every
    worker as it started (FileNotFoundError in a traceback) and uvicorn started it again, 8
    times in 40 s in a walk, while the service never answered. Checked by `urnn serve` and
    by `create_app` as uvicorn's factory."""
    path = Path(folder)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        return (
            f"PROMETHEUS_MULTIPROC_DIR={folder} {what}: the metrics of every worker are "
            "written there; make it a folder (emptied at each start), or unset it (urnn "
            "serve --workers N then makes a temporary one)"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        return f"PROMETHEUS_MULTIPROC_DIR={folder} is not writable by this user"
    return None


class FolderInUseError(RuntimeError):
    """Another process holds the metrics folder (`hold_multiprocess_folder`)."""


def hold_multiprocess_folder(folder: str) -> int | None:
    """Lock `folder` itself (flock on the folder, no file in it) for this process: the
    returned descriptor holds it until closed or the process ends; FolderInUseError where
    another process holds it; None where the lock cannot be taken at all (a filesystem
    without flock): unguarded then, as before. Two `urnn serve` given one folder (a shell that
    exports it, a blue/green start on one host): the second emptied it under the first, whose
    counts left its /metrics, and each then merged the other's files into its own scrape. A
    lock, not the pids in the file names: a pid of an earlier run's worker may be any live
    process's now, and the lock goes with its holder however it ends (SIGKILL included)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # EWOULDBLOCK: held
        os.close(descriptor)
        raise FolderInUseError(folder) from None
    except OSError:  # ENOLCK, EOPNOTSUPP: no locks here, nothing to tell
        os.close(descriptor)
        return None
    return descriptor


def clear_multiprocess_folder(folder: str) -> int:
    """Remove the metric files of an earlier run (prometheus_client needs the folder empty
    when the workers start, or it adds the old counts to the new). Returns the files removed."""
    removed = 0
    for path in glob.glob(os.path.join(folder, "*.db")):
        os.remove(path)
        removed += 1
    return removed


def mark_process_dead(pid: int) -> None:
    """Drop this worker's live gauges from the multiprocess files (at shutdown)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# Files last written this long before the supervisor started are an earlier run's: /proc
# gives the start in clock ticks after a boot time in whole seconds (both rounded down), and a
# second's margin keeps a sibling's fresh file from ever reading as older.
EARLIER_RUN_MARGIN_SECONDS = 1.0


def clear_earlier_run_files(folder: str) -> int:
    """Remove the metric files an earlier server left in `folder`, from a worker as it starts
    (uvicorn's `--factory --workers N`, gunicorn: nothing runs before the workers there, as
    `urnn serve` does, to empty it). prometheus_client wants the folder empty at each start:
    over a folder kept across a restart (a pod's emptyDir, a fixed path on a host) the new
    server reported the earlier run's counts as its own (a walk: 404 forecasts of a version
    after a restart that served none), and where the pids came back the same (a container's
    workers), that run's served version and drift stayed in the live gauges. A file last
    written before this worker's parent (the supervisor) started is an earlier run's when its
    process is gone or is a sibling (the same pid again): kept when it belongs to a process of
    another server. Siblings clear one at a time (a lock file), each before it writes a metric,
    so none removes a file a sibling made. Linux only (/proc); returns the files removed."""
    started = _process_start(os.getppid())
    if started is None:
        return 0
    cutoff = started - EARLIER_RUN_MARGIN_SECONDS
    removed = 0
    try:
        lock = os.open(os.path.join(folder, ".urnn-clear.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return 0
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_EX)
        for path in glob.glob(os.path.join(folder, "*.db")):
            number = os.path.basename(path).removesuffix(".db").rsplit("_", 1)[-1]
            try:
                if os.stat(path).st_mtime >= cutoff:
                    continue
                if number.isdigit() and _alive(int(number)) and not _sibling(int(number)):
                    continue  # another server's process, idle since before this one started
                os.remove(path)
            except FileNotFoundError:
                continue
            removed += 1
    finally:
        os.close(lock)
    return removed


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from its third field (state) on; None off Linux or for no process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the command name may hold spaces


def _sibling(pid: int) -> bool:
    """Whether `pid` is this process or another child of its parent."""
    fields = _stat_fields(pid)
    return fields is not None and fields[1] == str(os.getppid())


def _process_start(pid: int) -> float | None:
    """Unix time process `pid` started (rounded down), None where /proc cannot tell."""
    fields = _stat_fields(pid)
    try:
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    if fields is None:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")

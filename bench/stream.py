"""Streaming updates against whole-history re-reads, by history length, through `urnn serve`.

    make bench-stream                                  # ~40 s on 2 cores (up to 1M points)
    make bench-stream ARGS=--quick                     # smoke run: 1k and 10k points, as long
                                                       # (start-up dominates)
    python -m bench.stream --lengths 1000,100000 --updates 500 --rereads 10

One streaming model is registered as urnn-stream-forecaster@champion in a temporary MLflow
store: kind urnn-stream, lookback (warm-up) 336, horizon 96, hidden 64, segments of 24 hourly
points. Its weights are **untrained** (random initialisation, seeded): the cost of a request
does not depend on the weights' values. `urnn serve` then runs as a real process on loopback
(one worker, torch on `--torch-threads` threads, default 1; URNN_DEVICE=cpu) on a SQLite job
database in the same temporary folder, upgraded with `urnn db upgrade`, with the default
write-behind snapshots (URNN_STREAM_SNAPSHOT_SECONDS=1) and URNN_MAX_BODY_BYTES raised to fit
the largest re-read body.

For each history length N (`--lengths`, default 1k, 10k, 100k, 1M) a fresh series gets N
synthetic hourly points (daily and weekly seasonality, a slow drift and noise, 4 decimals)
through POST /series/{id}/observations in chunks of `--chunk` points (loading is timed and
printed, not a measured quantity). Then, one request at a time on one keep-alive connection
(`bench.raw_http.RawHTTPClient`, a bare socket client: httpx alone costs ~0.3 ms a request
here, more than the update it would time; bodies serialised with orjson before the clock
starts):

(a) stream update: `--updates` POSTs of one new point each (the next hour), horizon 96: the
    service advances the stored state by that point only and answers the forecast;
(a') the same over WS /series/stream: `--updates` more points, one message each on one
    connection (`bench.raw_ws.RawWebSocket`, a bare client, messages serialised before the
    clock starts), answered as (a) answers them;
(b) re-read: POST /forecast with the series' first N points as one series (`start` + `freq`,
    horizon 96), `--rereads` times: the service reads the whole history from a fresh state.

Then (`--compare-busy-poll`, on by default) an interleaved A/B of busy polling: a second `urnn
serve` with URNN_STREAM_BUSY_POLL_US=0 (its own database) starts beside the first, a series of
1,000 points is loaded into each, and blocks of `--ab-block` back-to-back updates alternate
between the two servers for `--ab-rounds` rounds, then sparse updates (one every
`--paced-gap-ms`, `--paced-updates` per server) alternate the same way: update p50/p99 and the
server's CPU time per update (the scheduler's per-thread counters, /proc/<pid>/task/*/schedstat),
what the default buys back to back and costs when answers are sparse.

Printed per N: update p50/p99/mean, re-read p50 and the ratio of the p50s; the flatness of
the update cost (p50 at the largest N over p50 at the smallest), and the targets of the
streaming issue, judged from the numbers: "flat in history length" (that ratio at most
FLAT_TOLERANCE) and "re-read / update >= 100x at 100k points". A sanity check asserts that
both paths compute the same function: the forecast answered after the last loading chunk (N
points) and the re-read of those N points agree within a relative 1e-4 (every quantile).

Everything shares one machine (server, client, and whatever else runs there), so compare rows
of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import torch

from bench.raw_http import RawHTTPClient
from bench.raw_ws import RawWebSocket
from bench.serve import free_port, register_untrained, server

LOOKBACK, HORIZON, HIDDEN, SEGMENT = 336, 96, 64, 24
NAME = "urnn-stream-forecaster"
FREQ = "h"
START = pd.Timestamp("2000-01-01T00:00:00")
QUICK = {
    "lengths": [1_000, 10_000],
    "updates": 20,
    "rereads": 2,
    "paced_updates": 20,
    "ab_rounds": 2,
    "ab_block": 20,
}
FLAT_TOLERANCE = 1.5  # "flat": update p50 at the largest N at most this times the smallest N's
SPEEDUP_TARGET, SPEEDUP_AT = 100.0, 100_000
RTOL = 1e-4  # the two paths' forecasts agree within this relative difference


@dataclass
class Row:
    """One history length's measurements (latencies in seconds)."""

    n: int
    load_seconds: float
    load_requests: int
    updates: list[float]
    rereads: list[float]
    max_abs_diff: float
    max_rel_diff: float
    server_ms: float = float("nan")  # mean per update inside the service (its request histogram)
    model_ms: float = float("nan")  # of which advance + forecast (urnn_stream_update_seconds)
    cpu_ms: float = float("nan")  # the server process's CPU time per update (schedstat)
    socket_updates: list[float] = field(default_factory=list)  # the same over WS /series/stream

    @property
    def update_p50(self) -> float:
        return percentile_ms(self.updates, 50)

    @property
    def reread_p50(self) -> float:
        return percentile_ms(self.rereads, 50)

    @property
    def ratio(self) -> float:
        return self.reread_p50 / self.update_p50 if self.update_p50 > 0 else float("nan")

    @property
    def socket_p50(self) -> float:
        return percentile_ms(self.socket_updates, 50) if self.socket_updates else float("nan")

    @property
    def socket_ratio(self) -> float:
        return self.reread_p50 / self.socket_p50


# -----------------------------------------------------------------------------
# Pure helpers


def percentile_ms(latencies: Sequence[float], q: float) -> float:
    """The q-th percentile of latencies in seconds, in milliseconds (NaN when empty)."""
    return float(np.percentile(latencies, q)) * 1e3 if len(latencies) else float("nan")


def synthetic_values(n: int, seed: int = 0) -> np.ndarray:
    """n hourly values: daily and weekly seasonality, a slow drift, noise; 4 decimals."""
    t = np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(seed)
    y = (
        50.0
        + 8.0 * np.sin(2 * np.pi * t / 24)
        + 3.0 * np.sin(2 * np.pi * t / (24 * 7))
        + 2.0 * t / (24 * 365)  # +2 a year
        + rng.normal(scale=1.0, size=n)
    )
    return np.round(y, 4)


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges covering 0..n in pieces of at most `size`."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1; got {size}")
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def timestamp(i: int) -> str:
    """ISO timestamp of point i of every benchmark series (hourly from START)."""
    return (START + pd.Timedelta(hours=i)).isoformat()


def rereads_for(n: int, args: Any) -> int:
    """Re-reads at history length n: --slow-rereads above --max-reread-points, else --rereads."""
    limit = args.max_reread_points
    return int(args.slow_rereads if limit is not None and n > limit else args.rereads)


def forecast_block(forecast: dict[str, Any]) -> np.ndarray:
    """A forecast's quantiles as a (Q, H) array, rows in key order."""
    return np.array([forecast["quantiles"][k] for k in sorted(forecast["quantiles"])])


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / |b|) of two forecasts of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"forecast shapes differ: {a.shape} vs {b.shape}")
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(b), 1e-12)
    return float(diff.max()), float(rel.max())


def flatness(rows: Sequence[Row]) -> float:
    """Update p50 at the largest N over update p50 at the smallest N."""
    by_n = sorted(rows, key=lambda r: r.n)
    return by_n[-1].update_p50 / by_n[0].update_p50


def targets(rows: Sequence[Row]) -> list[str]:
    """The issue's targets beside the measurements, each judged met/missed from the numbers."""
    lines = []
    flat = flatness(rows)
    lo, hi = min(r.n for r in rows), max(r.n for r in rows)
    verdict = "met" if flat <= FLAT_TOLERANCE else "missed"
    lines.append(
        f"- flat in history length: update p50 at N={hi:,} / at N={lo:,} = {flat:.2f} "
        f"(target <= {FLAT_TOLERANCE:g}): {verdict}"
    )
    at = next((r for r in rows if r.n == SPEEDUP_AT), None)
    if at is None:
        lines.append(
            f"- re-read / update >= {SPEEDUP_TARGET:g}x at {SPEEDUP_AT:,} points: not measured "
            f"(N={SPEEDUP_AT:,} is not among --lengths)"
        )
    else:
        verdict = "met" if at.ratio >= SPEEDUP_TARGET else "missed"
        lines.append(
            f"- re-read / update >= {SPEEDUP_TARGET:g}x at {SPEEDUP_AT:,} points, updates by "
            f"POST /series/{{id}}/observations: {at.ratio:,.0f}x: {verdict}"
        )
        if at.socket_updates:
            verdict = "met" if at.socket_ratio >= SPEEDUP_TARGET else "missed"
            lines.append(
                f"- the same, updates as messages on one WS /series/stream connection: "
                f"{at.socket_ratio:,.0f}x: {verdict}"
            )
    return lines


# -----------------------------------------------------------------------------
# In process: the same computation without HTTP


@dataclass(frozen=True)
class ModelRow:
    n: int
    update_p50_us: float  # advance by 1 point + forecast
    reread_p50_ms: float  # advance a fresh state by N points + forecast

    @property
    def ratio(self) -> float:
        return self.reread_p50_ms * 1000.0 / self.update_p50_us


def in_process(lengths: Sequence[int], updates: int, rereads: int) -> list[ModelRow]:
    """What the service computes, timed in this process: where HTTP, JSON and the framework
    are taken away, the ratio is the model's own (the first table's is end to end)."""
    from models.forecaster import ForecasterConfig, build_forecaster
    from models.streaming import StreamingURNNForecaster

    torch.manual_seed(0)
    model = build_forecaster(
        ForecasterConfig(
            kind="urnn-stream",
            lookback=LOOKBACK,
            horizon=HORIZON,
            hidden_size=HIDDEN,
            segment_length=SEGMENT,
        )
    ).eval()
    assert isinstance(model, StreamingURNNForecaster)
    values = synthetic_values(max(lengths) + updates)
    values = (values - values.mean()) / values.std()
    rows = []
    for n in lengths:
        times = []
        for _ in range(rereads if n < 1_000_000 else max(1, rereads // 2)):
            start = time.perf_counter()
            state = model.advance(model.new_state(), values[:n])
            model.forecast(state)
            times.append(time.perf_counter() - start)
        reread = float(np.median(times)) * 1e3
        times = []
        for i in range(updates):
            start = time.perf_counter()
            state = model.advance(state, values[n + i : n + i + 1])
            model.forecast(state)
            times.append(time.perf_counter() - start)
        rows.append(ModelRow(n, float(np.median(times)) * 1e6, reread))
    return rows


def model_report(rows: Sequence[ModelRow]) -> str:
    lines = [
        "In process (models.streaming, float64 serving path, no HTTP): the same computation",
        "",
        "| N | update (1 point + forecast) p50 us | re-read (N points + forecast) p50 ms "
        "| re-read / update |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.n:,} | {r.update_p50_us:.0f} | {r.reread_p50_ms:.1f} | {r.ratio:,.0f}x |"
        for r in rows
    ]
    at = next((r for r in rows if r.n == SPEEDUP_AT), None)
    if at is not None:
        verdict = "met" if at.ratio >= SPEEDUP_TARGET else "missed"
        lines.append("")
        lines.append(
            f"- in process, re-read / update >= {SPEEDUP_TARGET:g}x at {SPEEDUP_AT:,} points: "
            f"{at.ratio:,.0f}x: {verdict}"
        )
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# The model


def register_model(var_dir: Path) -> str:
    """Register an untrained streaming forecaster as NAME@champion; its tracking URI."""
    from models.forecaster import ForecasterConfig

    values = synthetic_values(5000)
    index = pd.date_range(START, periods=len(values), freq=FREQ, name="timestamp")
    config = ForecasterConfig(
        kind="urnn-stream",
        lookback=LOOKBACK,
        horizon=HORIZON,
        hidden_size=HIDDEN,
        segment_length=SEGMENT,
    )
    frame = pd.DataFrame({"y": values}, index=index)
    return register_untrained(config, frame, var_dir, NAME, "bench-stream", FREQ)


# -----------------------------------------------------------------------------
# Requests


def observations_body(values: np.ndarray, first: int, horizon: int = HORIZON) -> bytes:
    """POST /series/{id}/observations: `values` as points first, first + 1, ..."""
    body = {"start": timestamp(first), "values": values, "horizon": horizon}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def socket_message(series_id: str, values: np.ndarray, first: int) -> bytes:
    """A WS /series/stream message: the observations body plus the series id."""
    body = {"series_id": series_id, "start": timestamp(first), "values": values, "horizon": HORIZON}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def reread_body(series_id: str, values: np.ndarray) -> bytes:
    """POST /forecast: the whole history as one series from point 0."""
    series = {"id": series_id, "start": timestamp(0), "freq": FREQ, "values": values}
    body = {"horizon": HORIZON, "series": [series]}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def post(client: RawHTTPClient, path: str, body: bytes) -> tuple[float, Any]:
    """(seconds, parsed JSON) of one POST; raises on anything but 200."""
    start = time.perf_counter()
    status, content = client.post(path, body)
    elapsed = time.perf_counter() - start
    if status != 200:
        raise RuntimeError(f"POST {path} answered {status}: {content[:500]!r}")
    return elapsed, orjson.loads(content)


def measure(
    client: RawHTTPClient,
    n: int,
    values: np.ndarray,
    args: Any,
    pid: int | None = None,
    socket: RawWebSocket | None = None,
) -> Row:
    """Load a fresh series of n points, then time single-point updates and re-reads."""
    series_id = f"bench-{n}"
    path = f"/series/{series_id}/observations"
    load_start = time.perf_counter()
    pieces = chunks(n, args.chunk)
    streamed: dict[str, Any] | None = None
    answer: Any = None
    for start, stop in pieces:
        _, answer = post(client, path, observations_body(values[start:stop], start))
        streamed = answer["forecast"]
    load_seconds = time.perf_counter() - load_start
    if streamed is None or answer["series"]["points_seen"] != n:
        raise RuntimeError(f"series {series_id}: no forecast, or not {n} points seen: {answer}")

    # (b) first: its body is the loaded history exactly, and the sanity check needs it.
    body = reread_body(series_id, values[:n])
    rereads, reread = [], None
    for _ in range(rereads_for(n, args)):
        seconds, answer = post(client, "/forecast", body)
        rereads.append(seconds)
        reread = answer["forecasts"][0]
    assert reread is not None
    if reread["timestamps"] != streamed["timestamps"]:
        raise RuntimeError(f"N={n}: the two paths forecast different timestamps")
    abs_diff, rel_diff = agreement(forecast_block(streamed), forecast_block(reread))
    if rel_diff > RTOL:
        raise RuntimeError(
            f"N={n}: the streamed forecast and the re-read differ by {rel_diff:.2e} relative "
            f"(max abs {abs_diff:.2e}); they should compute the same function"
        )

    updates = []
    before = service_totals(client)
    cpu_before = process_cpu_seconds(pid)
    for i in range(n, n + args.updates):
        seconds, answer = post(client, path, observations_body(values[i : i + 1], i))
        if answer["accepted"] != 1 or answer["forecast"] is None:
            raise RuntimeError(f"N={n}: update at point {i} was not consumed: {answer}")
        updates.append(seconds)
    if answer["series"]["points_seen"] != n + args.updates:
        raise RuntimeError(f"N={n}: the series has seen {answer['series']['points_seen']} points")
    cpu = process_cpu_seconds(pid) - cpu_before
    row = Row(n, load_seconds, len(pieces), updates, rereads, abs_diff, rel_diff)
    row.cpu_ms = 1e3 * cpu / args.updates
    after = service_totals(client)
    row.server_ms, row.model_ms = (
        1e3 * (after[k][0] - before[k][0]) / max(after[k][1] - before[k][1], 1) for k in range(2)
    )
    if socket is not None:  # the next points, one message each over WS /series/stream
        first = n + args.updates
        for i in range(first, first + args.updates):
            message = socket_message(series_id, values[i : i + 1], i)
            sent = time.perf_counter()
            reply = socket.request(message)
            row.socket_updates.append(time.perf_counter() - sent)
            answer = orjson.loads(reply)
            if answer.get("accepted") != 1 or answer.get("forecast") is None:
                raise RuntimeError(f"N={n}: socket update at point {i} not consumed: {answer}")
    return row


OBSERVATIONS_ROUTE = "/series/{series_id}/observations"


def process_cpu_seconds(pid: int | None) -> float:
    """CPU seconds the threads of process `pid` have run so far, from the scheduler's own
    nanosecond count (Linux /proc/<pid>/task/*/schedstat; NaN elsewhere). Tick-sampled
    utime/stime would alias with evenly paced requests."""
    if pid is None:
        return float("nan")
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        return float("nan")
    return total / 1e9


def service_totals(client: RawHTTPClient) -> tuple[tuple[float, float], tuple[float, float]]:
    """(sum, count) of the service's observations-request latency and of its model work
    (urnn_stream_update_seconds) so far, from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    status, content = client.get("/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    text = content.decode()
    totals = {"request": [0.0, 0.0], "model": [0.0, 0.0]}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if name.startswith("urnn_http_request_duration_seconds_"):
                if labels.get("route") != OBSERVATIONS_ROUTE or labels.get("method") != "POST":
                    continue
                key = "request"
            elif name.startswith("urnn_stream_update_seconds_"):
                key = "model"
            else:
                continue
            if name.endswith("_sum"):
                totals[key][0] += sample.value
            elif name.endswith("_count"):
                totals[key][1] += sample.value
    request, model = totals["request"], totals["model"]
    return (request[0], request[1]), (model[0], model[1])


def warm_up(client: RawHTTPClient, values: np.ndarray) -> None:
    """Build the compiled recurrence, load lazy imports: first-call costs are not measured."""
    n = 2 * LOOKBACK
    path = "/series/bench-warm-up/observations"
    post(client, path, observations_body(values[:n], 0))
    for i in range(n, n + 5):
        post(client, path, observations_body(values[i : i + 1], i))
    for _ in range(3):
        post(client, "/forecast", reread_body("bench-warm-up", values[:n]))


# -----------------------------------------------------------------------------
# Report


def report(rows: Sequence[Row], args: Any, machine: str) -> str:
    lines = [
        f"model: urnn-stream, lookback {LOOKBACK}, horizon {HORIZON}, hidden {HIDDEN}, segment "
        f"{SEGMENT} (untrained weights), hourly",
        machine,
        f"server: urnn serve, 1 worker, {args.torch_threads} torch thread(s), SQLite snapshots "
        "(write-behind, 1 s), URNN_STREAM_BUSY_POLL_US="
        f"{busy_poll_us_text(None)}; client: raw socket keep-alive (bench.raw_http), one "
        "request at a time",
        f"per N: {args.updates} single-point updates (horizon {HORIZON}); re-reads of the N "
        f"points (horizon {HORIZON}): {', '.join(f'{r.n:,}: {len(r.rereads)}' for r in rows)}",
        "",
        "| N | load s (requests) | update p50 ms | update p99 ms | update mean ms "
        "| in service ms (model) | server CPU ms / update | re-read p50 ms | re-read / update "
        "| socket update p50 ms | re-read / socket update | max abs diff |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.n:,} | {r.load_seconds:.2f} ({r.load_requests}) | {r.update_p50:.2f} | "
            f"{percentile_ms(r.updates, 99):.2f} | {1e3 * float(np.mean(r.updates)):.2f} | "
            f"{r.server_ms:.2f} ({r.model_ms:.2f}) | {r.cpu_ms:.2f} | "
            f"{r.reread_p50:,.1f} | {r.ratio:,.0f}x | {r.socket_p50:.2f} | "
            f"{r.socket_ratio:,.0f}x | {r.max_abs_diff:.1e} |"
        )
    lines.append(
        "(in service ms: mean per update from the service's own request histogram; in brackets "
        "its advance + forecast, urnn_stream_update_seconds; the rest of the update p50 is HTTP, "
        "uvicorn and the client; server CPU: the `urnn serve` process's threads' run time over "
        "the updates, busy polling included)"
    )
    lines.append("")
    lines.append(f"flatness: update p50 at max N / at min N = {flatness(rows):.2f}")
    worst = max(r.max_rel_diff for r in rows)
    lines.append(
        f"sanity: streamed forecast after N points vs re-read of them, max abs diff "
        f"{max(r.max_abs_diff for r in rows):.2e}, max relative {worst:.2e} (limit {RTOL:g}): ok"
    )
    lines.append("")
    lines.append("Targets (reported, not asserted):")
    lines += targets(rows)
    return "\n".join(lines)


def busy_poll_report(on: Side, off: Side, args: Any) -> str:
    """The interleaved A/B of `busy_poll_ab`: default against busy polling off."""

    def cells(side: Side) -> tuple[float, float, float, float, float]:
        return (
            percentile_ms(side.back_to_back, 50),
            percentile_ms(side.back_to_back, 99),
            1e3 * side.back_to_back_cpu / max(len(side.back_to_back), 1),
            percentile_ms(side.sparse, 50),
            1e3 * side.sparse_cpu / max(len(side.sparse), 1),
        )

    lines = [
        f"Busy polling, interleaved A/B in the same run: a second `urnn serve` with "
        f"URNN_STREAM_BUSY_POLL_US=0 beside the default one, a series of {AB_LOAD:,} points in "
        f"each, {args.ab_rounds} rounds of {args.ab_block} back-to-back updates alternating "
        f"between them, then sparse updates (one every {args.paced_gap_ms:g} ms, "
        f"{len(on.sparse)} per server) alternating the same way:",
        "",
        "| server | back to back: update p50 ms | p99 ms | server CPU ms / update "
        "| sparse: update p50 ms | server CPU ms / update |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    default_us = busy_poll_us_text(None).split()[0]
    for side, name in ((on, f"default, {default_us} us"), (off, "busy polling off (0)")):
        p50, p99, cpu, sparse_p50, sparse_cpu = cells(side)
        lines.append(
            f"| {name} | {p50:.3f} | {p99:.2f} | {cpu:.3f} | {sparse_p50:.3f} | {sparse_cpu:.3f} |"
        )
    a, b = cells(on), cells(off)
    lines.append(
        f"(back to back: default / off update p50 = {a[0] / b[0]:.2f}; server CPU time per "
        "update includes the time it spends polling)"
    )
    return "\n".join(lines)


def machine_line(torch_threads: int) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), CPU only (URNN_DEVICE=cpu, "
        f"no accelerator used), torch {torch.__version__}, Python {platform.python_version()}; "
        f"1-min load average at start {load:.2f}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]

    parser = argparse.ArgumentParser(
        prog="python -m bench.stream", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--lengths",
        type=ints,
        default=[1_000, 10_000, 100_000, 1_000_000],
        help="history lengths N, comma list; default 1000,10000,100000,1000000",
    )
    parser.add_argument("--updates", type=int, default=1000, help="single-point updates per N")
    parser.add_argument("--rereads", type=int, default=5, help="whole-history re-reads per N")
    parser.add_argument(
        "--max-reread-points",
        type=int,
        default=None,
        help="above this N, re-read only --slow-rereads times (default: no limit)",
    )
    parser.add_argument("--slow-rereads", type=int, default=2, help="see --max-reread-points")
    parser.add_argument("--chunk", type=int, default=20_000, help="points per loading request")
    parser.add_argument("--torch-threads", type=int, default=1, help="URNN_TORCH_THREADS; 1")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: lengths 1000,10000, 20 updates, 2 re-reads (under 2 minutes)",
    )
    parser.add_argument(
        "--compare-busy-poll",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="an interleaved A/B against a second server with URNN_STREAM_BUSY_POLL_US=0 "
        "(default: on)",
    )
    parser.add_argument(
        "--ab-rounds", type=int, default=10, help="busy-polling A/B: alternating rounds; 10"
    )
    parser.add_argument(
        "--ab-block", type=int, default=200, help="busy-polling A/B: updates per block; 200"
    )
    parser.add_argument(
        "--paced-updates", type=int, default=500, help="sparse updates per server (A/B); 500"
    )
    parser.add_argument(
        "--paced-gap-ms", type=float, default=2.0, help="ms between sparse-traffic updates; 2"
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if not args.lengths or min(args.lengths) < LOOKBACK:
        parser.error(f"--lengths: every N must be >= the model's warm-up, {LOOKBACK}")
    for name in (
        "updates",
        "rereads",
        "chunk",
        "torch_threads",
        "slow_rereads",
        "paced_updates",
        "ab_rounds",
        "ab_block",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    args.lengths = sorted(set(args.lengths))
    return args


@dataclass
class Server:
    port: int
    api_key: str


def start_environment(
    work: Path, args: Any, max_body: int, database: Path | None = None
) -> tuple[dict[str, str], Server]:
    """The `urnn serve` environment (and `urnn db upgrade`'s) on this run's temporary store."""
    bin_dir = str(Path(sys.executable).parent)
    threads = str(args.torch_threads)
    key = secrets.token_hex(16)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "URNN_VAR_DIR": str(work / "var"),
        "URNN_MODEL_URI": f"models:/{NAME}@champion",
        "URNN_MODEL_POLL_SECONDS": "0",
        "URNN_TORCH_THREADS": threads,
        "URNN_DEVICE": "cpu",
        "URNN_API_KEY": key,
        "URNN_DATABASE_URL": f"sqlite:///{(database or work / 'jobs.db').resolve()}",
        "URNN_MAX_BODY_BYTES": str(max_body),
    }
    for name in ("PROMETHEUS_MULTIPROC_DIR", "MLFLOW_TRACKING_URI", "URNN_ENV"):
        env.pop(name, None)
    env.pop("URNN_STREAM_SNAPSHOT_SECONDS", None)  # the default: write-behind, 1 s
    env.pop("URNN_STREAM_BUSY_POLL_US", None)  # the default, unless a pass sets it
    return env, Server(free_port(), key)


@contextmanager
def client_for(srv: Server) -> Iterator[RawHTTPClient]:
    """One keep-alive connection to the server, with the API key and a JSON content type."""
    headers = {"X-API-Key": srv.api_key, "Content-Type": "application/json"}
    with RawHTTPClient("127.0.0.1", srv.port, headers, timeout=600.0) as client:
        yield client


@dataclass
class Side:
    """One server's share of the busy-polling comparison."""

    label: str
    client: RawHTTPClient
    pid: int
    next_point: int = 0
    back_to_back: list[float] = field(default_factory=list)  # seconds per update
    back_to_back_cpu: float = 0.0  # the server's CPU seconds over them
    sparse: list[float] = field(default_factory=list)
    sparse_cpu: float = 0.0

    def updates(self, values: np.ndarray, count: int, gap_s: float) -> tuple[list[float], float]:
        """`count` one-point updates of the comparison's series, each `gap_s` after the last
        one started (0: back to back); their latencies and the server's CPU seconds."""
        path = f"/series/{AB_SERIES}/observations"
        latencies = []
        cpu_before = process_cpu_seconds(self.pid)
        for i in range(self.next_point, self.next_point + count):
            due = time.perf_counter() + gap_s
            seconds, answer = post(self.client, path, observations_body(values[i : i + 1], i))
            if answer["accepted"] != 1:
                raise RuntimeError(f"{self.label}: update at point {i} not consumed: {answer}")
            latencies.append(seconds)
            while time.perf_counter() < due:
                time.sleep(max(due - time.perf_counter(), 0.0))
        self.next_point += count
        return latencies, process_cpu_seconds(self.pid) - cpu_before


AB_SERIES = "bench-busy-poll"
AB_LOAD = 1_000  # points loaded into the comparison's series before its updates


def busy_poll_ab(values: np.ndarray, args: Any, on: Side, off: Side) -> None:
    """Interleaved A/B: the default server and one with busy polling off, both up, the same
    series loaded in each, then blocks of updates alternating between them (which goes first
    alternates too), back to back and then sparse, so that drifts of a shared machine fall
    on both sides alike."""
    for side in (on, off):
        post(
            side.client, f"/series/{AB_SERIES}/observations", observations_body(values[:AB_LOAD], 0)
        )
        side.next_point = AB_LOAD
    sparse_block = max(1, args.paced_updates // args.ab_rounds)
    for round_ in range(args.ab_rounds):
        for side in (on, off) if round_ % 2 == 0 else (off, on):
            latencies, cpu = side.updates(values, args.ab_block, 0.0)
            side.back_to_back += latencies
            side.back_to_back_cpu += cpu
    for round_ in range(args.ab_rounds):
        for side in (on, off) if round_ % 2 == 0 else (off, on):
            latencies, cpu = side.updates(values, sparse_block, args.paced_gap_ms / 1e3)
            side.sparse += latencies
            side.sparse_cpu += cpu


@contextmanager
def started(
    work: Path, args: Any, max_body: int, busy_poll_us: int | None
) -> Iterator[tuple[Server, int]]:
    """A `urnn serve` on its own fresh database: (its address and API key, its pid).
    `busy_poll_us`: URNN_STREAM_BUSY_POLL_US for this server (None: the service's default)."""
    label = "default" if busy_poll_us is None else str(busy_poll_us)
    folder = work / f"server-busy-poll-{label}"
    folder.mkdir()
    env, srv = start_environment(work, args, max_body, database=folder / "jobs.db")
    if busy_poll_us is not None:
        env["URNN_STREAM_BUSY_POLL_US"] = str(busy_poll_us)
    upgrade = subprocess.run(
        [str(Path(sys.executable).parent / "urnn"), "db", "upgrade"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if upgrade.returncode != 0:
        raise RuntimeError(f"urnn db upgrade failed:\n{upgrade.stdout}{upgrade.stderr}")
    print(upgrade.stdout.strip(), flush=True)
    command = [str(Path(sys.executable).parent / "urnn"), "serve"]
    command += ["--host", "127.0.0.1", "--port", str(srv.port)]
    print(
        f"urnn serve on port {srv.port}, URNN_STREAM_BUSY_POLL_US={busy_poll_us_text(busy_poll_us)}"
        f" (URNN_MAX_BODY_BYTES={max_body}) ...",
        flush=True,
    )
    ready = f"http://127.0.0.1:{srv.port}/readyz"
    log = folder / "service.log"
    try:
        with server(command, env, ready, log) as process:
            yield srv, process.pid
    except BaseException:
        if log.exists():  # the temporary folder goes: show the server's last words
            tail = log.read_text(errors="replace").splitlines()[-40:]
            print("\n".join(["--- urnn serve log (last lines) ---", *tail]), file=sys.stderr)
        raise


def busy_poll_us_text(busy_poll_us: int | None) -> str:
    from urnn_forecast.settings import Settings

    if busy_poll_us is None:
        return f"{Settings.model_fields['stream_busy_poll_us'].default} (the default)"
    return str(busy_poll_us)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_line(args.torch_threads)
    print(machine, flush=True)
    work = Path(tempfile.mkdtemp(prefix="urnn-bench-stream-"))
    try:
        print(f"registering the model in {work} ...", flush=True)
        register_model(work / "var")
        top = max(args.lengths)
        ab_points = AB_LOAD + args.ab_rounds * args.ab_block + args.paced_updates
        values = synthetic_values(max(top + 2 * args.updates, ab_points) + 1)
        largest = len(reread_body(f"bench-{top}", values[:top]))
        max_body = max(8 * 1024 * 1024, 2 * largest + (1 << 20))
        print(f"largest re-read body {largest / 1e6:.1f} MB", flush=True)
        rows: list[Row] = []
        ab: tuple[Side, Side] | None = None
        with started(work, args, max_body, None) as (srv, pid):
            key = {"X-API-Key": srv.api_key}
            with (
                client_for(srv) as client,
                RawWebSocket("127.0.0.1", srv.port, "/series/stream", key) as socket,
            ):
                warm_up(client, values)
                for n in args.lengths:
                    row = measure(client, n, values, args, pid, socket)
                    print(
                        f"  N={n:>9,}: loaded in {row.load_seconds:6.2f} s "
                        f"({row.load_requests} requests), update p50 {row.update_p50:6.2f} ms, "
                        f"re-read p50 {row.reread_p50:9.1f} ms",
                        flush=True,
                    )
                    rows.append(row)
            if args.compare_busy_poll:
                print("a second server with busy polling off, for an A/B ...", flush=True)
                with (
                    started(work, args, max_body, 0) as (off_srv, off_pid),
                    client_for(srv) as client,
                    client_for(off_srv) as off_client,
                ):
                    warm_up(off_client, values)
                    ab = (Side("default", client, pid), Side("off", off_client, off_pid))
                    busy_poll_ab(values, args, *ab)
        table = report(rows, args, machine)
        if ab is not None:
            table += "\n\n" + busy_poll_report(*ab, args)
        print()
        print(table)
        print("\nmeasuring the same computation in process ...", flush=True)
        model_table = model_report(in_process(args.lengths, args.updates, args.rereads))
        table += "\n\n" + model_table
        print()
        print(model_table)
        if args.output is not None:
            args.output.write_text(table + "\n")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

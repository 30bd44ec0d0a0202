"""Soak a running forecast service as production drives it, and record what it holds over time.

`python -m bench.soak --url http://127.0.0.1:8000 --pid <server pid> --minutes 25` sends, at a
modest fixed rate from one thread, what weeks of production send: many distinct series ids
(each lives a few requests, then a new id takes its place: tens of thousands over a run, past
the realised-error cache's `URNN_FORECAST_CACHE_SIZE`), histories that advance in time so that
earlier forecasts are scored (the realised-error path), JSON and Arrow bodies and answers,
some bad bodies (each must be a 422), `POST /model/reload` with and without `force`, a
`GET /metrics` scrape every 15 s and, with `--stream`, the streaming endpoints (a model of
kind urnn-stream: observations by POST and WebSocket, forecasts, status reads, deletes).

Every 30 s it writes a CSV row: the server's RSS, open file descriptors and threads (from
/proc/<pid>, so run it on the server's machine), the last scrape's size and number of metric
series, the client-side p50/p99 latency of that interval's forecasts, and the answers by
status. Anything that grows without bound, a 5xx or an unexpected status is what it is for;
the unexpected statuses are also printed as they happen. Not run by the tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
from websockets.sync.client import connect

from service.arrow_io import request_stream

ARROW = "application/vnd.apache.arrow.stream"
BASE = pd.Timestamp("2015-01-01T00:00:00")


@dataclass
class Series:
    """One series id's client: where its history sits in the data and how far it has gone."""

    id: str
    offset: int  # index into the data of its first value
    start: pd.Timestamp  # the (synthetic) time of that first value
    visits_left: int
    advanced: int = 0  # steps the history has moved since the first request


def load_values(path: str, column: str) -> np.ndarray:
    """The column's values in time order, one per timestamp (repeats averaged): the client
    places them on a regular hourly grid of its own, so the data's clock changes do not
    matter."""
    frame = pd.read_csv(path)
    stamp = frame.columns[0]
    frame[stamp] = pd.to_datetime(frame[stamp])
    return frame.groupby(stamp)[column].mean().sort_index().to_numpy(dtype=np.float64)


def proc_stats(pid: int) -> tuple[float, int, int]:
    """(RSS in MB, open file descriptors, threads) of the process and its children's sum."""
    rss, fds, threads = 0.0, 0, 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            pids += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    for each in pids:
        try:
            with open(f"/proc/{each}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) / 1024
                    elif line.startswith("Threads:"):
                        threads += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{each}/fd"))
        except OSError:
            pass
    return rss, fds, threads


def metric_series(text: str) -> int:
    """Sample lines of a Prometheus text exposition (every series, one line each)."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def percentiles(latencies: list[float], prefix: str) -> dict[str, Any]:
    """p50 and p99 in ms of the interval's latencies (seconds), which it then empties."""
    ms = np.asarray(latencies) * 1e3
    latencies.clear()
    if not ms.size:
        return {prefix + "p50_ms": "", prefix + "p99_ms": ""}
    p50, p99 = np.percentile(ms, [50, 99])
    return {prefix + "p50_ms": round(float(p50), 2), prefix + "p99_ms": round(float(p99), 2)}


def gauge(text: str, name: str) -> float:
    """The value of an unlabelled gauge in the exposition; nan where absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return math.nan


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.values = load_values(args.data, args.target)
        self.client = httpx.Client(base_url=args.url, timeout=30.0)
        info = self.client.get("/model").json()
        self.lookback: int = info["lookback"]
        self.horizon: int = info["max_horizon"]
        self.quantiles: list[float] = info["quantiles"]
        self.key = {"X-API-Key": args.api_key}
        self.active: list[Series] = []
        self.streams: list[Series] = []
        self.ids = 0
        # a tag of this run in every id: a later run against the same service (whose stored
        # streaming series outlive the client) must not continue another run's series
        self.tag = os.urandom(3).hex()
        self.latencies: list[float] = []
        self.stream_latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.unexpected = 0
        self.metrics_text = ""

    def new_series(self, prefix: str) -> Series:
        self.ids += 1
        room = len(self.values) - self.lookback - 48 - 24 * 40
        offset = self.rng.randrange(room)
        return Series(
            f"{prefix}-{self.tag}-{self.ids}",
            offset,
            BASE + pd.Timedelta(hours=offset),
            self.rng.randint(2, 8),
        )

    def history(self, series: Series, extra: int) -> dict[str, Any]:
        first = series.offset + series.advanced
        values = self.values[first : first + self.lookback + extra]
        start = series.start + pd.Timedelta(hours=series.advanced)
        body: dict[str, Any] = {"id": series.id, "values": values.tolist()}
        if self.rng.random() < 0.15:
            stamps = pd.date_range(start, periods=len(values), freq="h")
            body["timestamps"] = [t.isoformat() for t in stamps]
        else:
            body["start"], body["freq"] = start.isoformat(), "h"
        return body

    def note(self, route: str, status: int, expected: int, detail: str = "") -> None:
        self.statuses[f"{route}:{status}"] += 1
        if status != expected:
            self.unexpected += 1
            print(f"UNEXPECTED {route} {status} (wanted {expected}) {detail[:300]}", flush=True)

    def forecast(self) -> None:
        """One POST /forecast of 1-16 series, each advanced 6-24 hours since its last one."""
        while len(self.active) < self.args.active:
            self.active.append(self.new_series("s"))
        chosen = self.rng.sample(self.active, self.rng.randint(1, 16))
        series = [self.history(s, self.rng.randint(0, 48)) for s in chosen]
        for s in chosen:
            s.advanced += self.rng.randint(6, 24)
            s.visits_left -= 1
        self.active = [s for s in self.active if s.visits_left > 0]
        horizon = self.rng.choice([None, self.horizon, self.horizon // 2])
        quantiles = self.rng.choice([None, [min(self.quantiles), max(self.quantiles)]])
        headers = dict(self.key)
        if self.rng.random() < 0.3:
            headers["Content-Type"] = ARROW
            content = request_stream(series, horizon=horizon, quantiles=quantiles)
        else:
            headers["Content-Type"] = "application/json"
            body: dict[str, Any] = {"series": series}
            if horizon is not None:
                body["horizon"] = horizon
            if quantiles is not None:
                body["quantiles"] = quantiles
            content = json.dumps(body).encode()
        if self.rng.random() < 0.2:
            headers["Accept"] = ARROW
        began = time.perf_counter()
        answer = self.client.post("/forecast", content=content, headers=headers)
        if answer.status_code == 200:
            self.latencies.append(time.perf_counter() - began)
        self.note("forecast", answer.status_code, 200, answer.text[:300])

    def bad_forecast(self) -> None:
        """A body a client gets wrong: each must be a 422 naming the problem, never a 500."""
        series = self.history(self.new_series("bad"), 0)
        kind = self.rng.randrange(5)
        if kind == 0:
            series["values"][0] = math.nan  # json.dumps writes the NaN token
            text = json.dumps({"series": [series]})
        elif kind == 1:
            series["values"] = series["values"][: self.lookback // 2]
            text = json.dumps({"series": [series]})
        elif kind == 2:
            text = json.dumps({"series": [series], "quantiles": [0.37]})
        elif kind == 3:
            text = json.dumps({"series": [series, series]})  # one id twice
        else:
            text = json.dumps({"series": [series], "horizon": self.horizon + 1})
        answer = self.client.post(
            "/forecast",
            content=text.encode(),
            headers={"Content-Type": "application/json"},
        )
        self.note("bad_forecast", answer.status_code, 422, answer.text)

    def reload(self, url: str) -> None:
        force = self.rng.random() < 0.5
        answer = self.client.post(
            url + "/model/reload", params={"force": "true"} if force else None, headers=self.key
        )
        self.note(f"reload{'_force' if force else ''}", answer.status_code, 200, answer.text)

    def stream(self) -> None:
        """One streaming update (or a read or delete) of a series of the streaming service."""
        url = self.args.stream
        while len(self.streams) < self.args.active:
            self.streams.append(self.new_series("st"))
        roll = self.rng.random()
        if roll < 0.02:
            self.socket()
            return
        series = self.rng.choice(self.streams)
        path = f"{url}/series/{series.id}"
        if roll < 0.05 and series.advanced:
            answer = self.client.get(path + "/forecast")
            self.note("stream_forecast", answer.status_code, 200, answer.text)
            return
        if roll < 0.08 and series.advanced:
            answer = self.client.get(path)
            self.note("stream_status", answer.status_code, 200, answer.text)
            return
        if series.visits_left <= 0:
            answer = self.client.delete(path, headers=self.key)
            self.note("stream_delete", answer.status_code, 204, answer.text)
            self.streams.remove(series)
            return
        body = self.observations(series)
        began = time.perf_counter()
        answer = self.client.post(path + "/observations", json=body, headers=self.key)
        if answer.status_code == 200:
            self.stream_latencies.append(time.perf_counter() - began)
        self.note("stream_obs", answer.status_code, 200, answer.text)

    def observations(self, series: Series) -> dict[str, Any]:
        """The series' next points (its look-back and more at first), and moves it on."""
        if series.advanced == 0:
            count = self.lookback + self.rng.randint(0, 24)
        else:
            count = self.rng.randint(1, 24)
        first = series.offset + series.advanced
        start = series.start + pd.Timedelta(hours=series.advanced)
        series.advanced += count
        series.visits_left -= 1
        return {"start": start.isoformat(), "values": self.values[first : first + count].tolist()}

    def socket(self) -> None:
        """One WebSocket connection that sends 1-20 updates of live streaming series."""
        url = self.args.stream.replace("http", "ws", 1) + "/series/stream"
        with connect(url, additional_headers=self.key) as feed:
            for series in self.rng.sample(self.streams, self.rng.randint(1, 20)):
                if series.visits_left <= 0:
                    continue
                feed.send(json.dumps({"series_id": series.id, **self.observations(series)}))
                answer = json.loads(feed.recv())
                self.note("stream_ws", answer.get("status", 200), 200, json.dumps(answer))

    def scrape(self) -> None:
        answer = self.client.get("/metrics")
        self.note("metrics", answer.status_code, 200, answer.text)
        self.metrics_text = answer.text
        if self.args.stream:
            self.stream_metrics = self.client.get(self.args.stream + "/metrics").text

    def run(self) -> None:
        args = self.args
        out = open(args.csv, "w", newline="")  # noqa: SIM115 - kept open for the whole run
        fields = [
            "t_s",
            "rss_mb",
            "fds",
            "threads",
            "metrics_bytes",
            "metric_series",
            "realised_cache_series",
            "p50_ms",
            "p99_ms",
            "requests",
            "ids",  # series ids created so far (distinct)
            "unexpected",
            "statuses",
        ]
        if args.stream_pid:
            fields[4:4] = ["stream_rss_mb", "stream_fds", "stream_threads"]
            fields[-4:-4] = ["stream_metric_series", "stream_p50_ms", "stream_p99_ms"]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        began = time.monotonic()
        next_scrape = next_row = began
        next_reload = began + args.reload_seconds
        sent = 0
        self.stream_metrics = ""
        while (now := time.monotonic()) - began < args.minutes * 60:
            if now >= next_scrape:
                self.scrape()
                next_scrape += 15
            if now >= next_reload:
                self.reload(args.url)
                if args.stream:
                    self.reload(args.stream)
                next_reload += args.reload_seconds
            if now >= next_row:
                self.row(writer, now - began, sent)
                out.flush()
                next_row += 30
            roll = self.rng.random()
            if roll < 0.03:
                self.bad_forecast()
            elif args.stream and roll < 0.3:
                self.stream()
            else:
                self.forecast()
            sent += 1
            # a fixed rate, not flat out: the soak looks for growth, not throughput
            pause = began + sent / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        self.scrape()
        self.row(writer, time.monotonic() - began, sent)
        out.close()

    def row(self, writer: csv.DictWriter[str], elapsed: float, sent: int) -> None:
        rss, fds, threads = proc_stats(self.args.pid)
        row = {
            "t_s": round(elapsed),
            "rss_mb": round(rss, 1),
            "fds": fds,
            "threads": threads,
            "metrics_bytes": len(self.metrics_text),
            "metric_series": metric_series(self.metrics_text),
            "realised_cache_series": gauge(self.metrics_text, "urnn_realised_cache_series"),
            **percentiles(self.latencies, ""),
            "requests": sent,
            "ids": self.ids,
            "unexpected": self.unexpected,
            "statuses": " ".join(f"{k}={v}" for k, v in sorted(self.statuses.items())),
        }
        if self.args.stream_pid:
            s_rss, s_fds, s_threads = proc_stats(self.args.stream_pid)
            row |= {"stream_rss_mb": round(s_rss, 1), "stream_fds": s_fds}
            row["stream_threads"] = s_threads
            row["stream_metric_series"] = metric_series(self.stream_metrics)
            row |= percentiles(self.stream_latencies, "stream_")
        writer.writerow(row)
        print(" ".join(f"{k}={v}" for k, v in row.items() if k != "statuses"), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--stream", default=None, help="URL of a service of a urnn-stream model")
    parser.add_argument("--stream-pid", type=int, default=None)
    parser.add_argument("--api-key", default=os.environ.get("URNN_API_KEY", ""))
    parser.add_argument(
        "--data",
        default="data/ETT-small/ETTh1.csv",
        help="CSV whose first column is the time: its --target column's values are the histories",
    )
    parser.add_argument("--target", default="OT")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--active", type=int, default=300, help="series ids live at a time")
    parser.add_argument("--reload-seconds", type=float, default=90.0)
    parser.add_argument("--csv", default="soak.csv")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    Soak(args).run()


if __name__ == "__main__":
    main()

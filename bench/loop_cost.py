"""The event loop's work per /forecast request, measured in process, with a count that repeats.

    python -m bench.loop_cost                  # event-loop CPU per request (thread time), ~1 min
    python -m bench.loop_cost --callgrind      # its instructions per request (valgrind), ~8 min
    python -m bench.loop_cost --format json --series 1
    python -m bench.loop_cost --format json --covariates --block-reader off
    python -m bench.loop_cost --covariates --block-reader off     # Arrow, as until 2026-12-07

`make bench-serve` compares this service with the raw model over loopback; on a 2-core VM its
ratios move by a fifth with the machine's phase (docs/serving.md), and what limits the service
there is the event loop's CPU per request. This benchmark isolates that figure: the app's
ASGI entry (`service.main.create_app`, its lifespan, batcher and model, the untrained
registered model of bench.serve) is driven by `--concurrency` in-process clients sending the
bench's body (history 512, horizon 96, `--series` series, Arrow or JSON), with no sockets and
no HTTP parsing. Printed: the event-loop thread's CPU time per request (each round's and the
least), and the requests per second the whole process reached. `--covariates`: bodies
whose series each carry a covariate as long as the history, to a model that reads it
(bench.json_read's, or as Arrow bench.arrow_read's); `--block-reader off`: for JSON, the
route's simdjson block reader declines every body, which then takes orjson and the fast
path (as a body with covariates did until 2026-12-07: after simdjson's parse and the
repeated-key check); for Arrow, a table with a covariate column is read series by series
(as it was until 2026-12-07: `bench.arrow_read.before`).

`--callgrind` counts instructions instead of seconds: the same requests run under valgrind's
callgrind (one thread per output file) twice, with `--warm` requests and with `--warm` +
`--requests`; the event-loop thread's difference divided by `--requests` is its instruction
count per request, startup and imports excluded (the lifespan waits for the model's load, ~50 s
under valgrind: URNN_STARTUP_LOAD_WAIT_SECONDS in SERVICE_ENV). Counts repeat within ~1-2 % for
the same code (batch composition varies a little with timing), whatever the machine is doing, so
a change to the loop's work shows as a number. Valgrind does not know AVX-512: under it, torch
is held to AVX2 (ATEN_CPU_CAPABILITY), numpy's AVX-512 kernels are switched off
(NPY_DISABLE_CPU_FEATURES) and the uRNN extension is built without -march=native
(URNN_NATIVE_BUILD=0, a separate cached build). Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.arrow_read import arrow_body, before
from bench.json_read import body as covariate_body
from bench.json_read import register_covariate_model
from bench.serve import HEADERS, payloads, register_model

if TYPE_CHECKING:
    from service.fast_path import BlockRequest

ROOT = Path(__file__).resolve().parents[1]


async def drive(app: Any, body: bytes, headers: dict[str, str], clients: int, count: int) -> int:
    """`count` POST /forecast requests through `app`, `clients` at a time; their statuses
    must all be 200 (anything else stops the benchmark: it would not measure forecasts; the
    error says which statuses came and the first body of each, the service's reason)."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    base = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/forecast",
        "raw_path": b"/forecast",
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    started = 0
    bad: list[int] = []
    why: dict[int, bytes] = {}  # each non-200 status's first body: what the service said

    async def one() -> None:
        given = False
        status = 200
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # a client that stays: never disconnects
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status != 200:
                    bad.append(status)
            elif message["type"] == "http.response.body" and status != 200:
                chunks.append(message.get("body", b""))

        await app(dict(base), receive, send)
        if status != 200:
            why.setdefault(status, b"".join(chunks))

    async def client() -> None:
        nonlocal started
        while started < count:
            started += 1
            await one()

    await asyncio.gather(*(client() for _ in range(clients)))
    if bad:
        said = "; ".join(f"{code}: {_text(why.get(code, b''))}" for code in sorted(set(bad)))
        raise RuntimeError(f"{len(bad)} requests answered {sorted(set(bad))}, not 200 ({said})")
    return started


def _text(body: bytes, limit: int = 500) -> str:
    """A response body as it reads in an error message: at most `limit` characters."""
    text = body.decode(errors="replace").strip() or "(no body)"
    return text if len(text) <= limit else text[:limit] + " ..."


async def measure(app: Any, args: argparse.Namespace) -> list[tuple[float, float]]:
    """(event-loop CPU seconds per request, requests/s) per round, after the lifespan starts."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    if args.covariates:
        reader = arrow_body if args.format == "arrow" else covariate_body
        body = reader(args.series, True)
    else:
        payload = payloads(args.series)
        body = payload.arrow if args.format == "arrow" else payload.ours
    headers = HEADERS[args.format]
    rounds = []
    try:
        await drive(app, body, headers, args.concurrency, args.warm)
        for _ in range(args.rounds):
            wall, cpu = time.perf_counter(), time.thread_time()
            done = await drive(app, body, headers, args.concurrency, args.requests)
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            if done:  # none: a callgrind run of the warm-up alone
                rounds.append((cpu / done, done / wall))
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan
    return rounds


SERVICE_ENV = {
    "URNN_MODEL_POLL_SECONDS": "0",
    "URNN_TORCH_THREADS": "1",
    "URNN_DEVICE": "cpu",
    # The lifespan waits for the model however long its load takes (the setting's most). By
    # default it goes on after 10 s with /forecast at 503 "the service is starting" until the
    # load ends; under valgrind the load (MLflow, torch, the trace and its check) took ~50 s
    # against 1.4 s without, so every request of the --callgrind warm-up answered 503.
    "URNN_STARTUP_LOAD_WAIT_SECONDS": "3600",
}
"""The service's settings (urnn_forecast.settings) for the in-process app, besides its var dir."""


def run_in_process(args: argparse.Namespace, var_dir: Path) -> list[tuple[float, float]]:
    import torch
    import uvloop

    torch.set_num_threads(1)
    os.environ.update({"URNN_VAR_DIR": str(var_dir), **SERVICE_ENV})
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from service.main import create_app

    if args.block_reader == "off" and args.format == "arrow":
        with before():
            return uvloop.run(measure(create_app(), args))
    if args.block_reader == "off":
        import service.fast_routes

        service.fast_routes.read_json_block = _declined  # type: ignore[attr-defined]

    return uvloop.run(measure(create_app(), args))


def _declined(body: bytes, document: Any = None) -> BlockRequest | None:
    """`--block-reader off`: the route's block reader, declining every body."""
    return None


def callgrind_env() -> dict[str, str]:
    """What keeps torch, numpy and our extension to instructions valgrind knows."""
    from numpy._core import _multiarray_umath  # type: ignore[attr-defined]

    # only features numpy dispatches to may be named (it refuses others)
    avx512 = [f for f in _multiarray_umath.__cpu_dispatch__ if f.startswith("AVX512")]
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "URNN_NATIVE_BUILD": "0"}
    if avx512:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512)
    return env


def loop_instructions(out: Path) -> int:
    """Instructions of the main (event-loop) thread from callgrind's per-thread files."""
    text = Path(f"{out}-01").read_text()
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in {out}-01")
    return int(found.group(1))


def run_callgrind(args: argparse.Namespace, var_dir: Path, work: Path) -> int:
    """Instructions per request of the event-loop thread: two valgrind runs, in parallel."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install valgrind)")
    runs = []
    for extra in (0, args.requests):
        out = work / f"callgrind-{extra}.out"
        command = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
        command += [f"--callgrind-out-file={out}", sys.executable, "-m", "bench.loop_cost"]
        command += ["--var-dir", str(var_dir), "--rounds", "1", "--warm", str(args.warm)]
        command += ["--requests", str(extra), "--series", str(args.series)]
        command += ["--format", args.format, "--concurrency", str(args.concurrency)]
        command += ["--block-reader", args.block_reader] + (
            ["--covariates"] if args.covariates else []
        )
        log = (work / f"callgrind-{extra}.log").open("w")
        process = subprocess.Popen(
            command, cwd=ROOT, env=callgrind_env(), stdout=log, stderr=subprocess.STDOUT
        )
        runs.append((process, out, log))
    for process, _, log in runs:
        failed = process.wait() != 0
        log.close()
        if failed:  # the work folder goes when this returns: say what valgrind said
            tail = Path(log.name).read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError("a valgrind run failed:\n" + "\n".join(tail))
    low, high = (loop_instructions(out) for _, out, _ in runs)
    requests: int = args.requests
    return round((high - low) / requests)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loop_cost", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--format", choices=("arrow", "json"), default="arrow")
    parser.add_argument("--series", type=int, default=16, help="series per request; 16")
    parser.add_argument("--concurrency", type=int, default=32, help="in-process clients; 32")
    parser.add_argument("--requests", type=int, default=None, help="per round (3000; 600)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --requests; 5")
    parser.add_argument("--warm", type=int, default=40, help="unmeasured requests first; 40")
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    parser.add_argument(
        "--covariates",
        action="store_true",
        help="series with a covariate, to a model reading it",
    )
    parser.add_argument(
        "--block-reader",
        choices=("on", "off"),
        default="on",
        help="off: JSON bodies take orjson and the fast path (the route's reader declines); "
        "Arrow tables with a covariate column are read series by series",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="--callgrind: copy callgrind's files here, for callgrind_annotate (thread -01 is "
        "the event loop's)",
    )
    parser.add_argument("--var-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 600 if args.callgrind else 3000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.var_dir is not None:  # a run under valgrind: the model is already registered
        run_in_process(args, args.var_dir)
        return 0
    work = Path(tempfile.mkdtemp(prefix="urnn-loop-cost-"))
    try:
        print(f"registering the model in {work} ...", flush=True)
        if args.covariates:
            register_covariate_model(work / "var", hidden_size=128, segment_length=16)
        else:
            register_model(work / "var", hidden_size=128, segment_length=16)
        what = f"{args.format} bodies, {args.series} series x {args.concurrency} clients"
        if args.covariates:
            what += ", a covariate each"
        if args.block_reader == "off":
            what += ", block reader off"
        if args.callgrind:
            print(f"callgrind: {args.warm} and {args.warm + args.requests} requests ...")
            per_request = run_callgrind(args, work / "var", work)
            print(f"event loop, {what}: {per_request:,} instructions per request")
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                for path in work.glob("callgrind-*"):
                    shutil.copy2(path, args.keep / path.name)
                print(f"callgrind's files: {args.keep}")
            return 0
        rounds = run_in_process(args, work / "var")
        for cpu, rate in rounds:
            print(f"  round: {cpu * 1e3:.3f} ms event-loop CPU per request, {rate:,.0f} req/s")
        least = min(cpu for cpu, _ in rounds)
        median = statistics.median(cpu for cpu, _ in rounds)
        print(
            f"event loop, {what}: {least * 1e3:.3f} ms CPU per request (least of "
            f"{len(rounds)} rounds of {args.requests}; median {median * 1e3:.3f})"
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

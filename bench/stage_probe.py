"""The source a fresh process runs to measure `urnn train` stage by stage: a thread samples
the resident memory (/proc/self/statm) every 20 ms, wrappers mark the stages named, `urnn`'s
`main` runs with the arguments after the tree, and one JSON line says the exit code, the
process's peak (ru_maxrss, which the sampling can miss by a few ms) and, per stage, its wall
time, the resident memory when it began and the most seen during it.

Shared by bench/train_memory.py and bench/backtest_memory.py: run as
`python -c SOURCE TREE urnn-args...`, with TREE (the checkout whose code runs) first on the
path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_HEAD = """
import functools, importlib, json, resource, sys, threading, time
sys.path.insert(0, sys.argv[1])
samples, marks, done = [], [], threading.Event()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
def sample():
    while not done.is_set():
        samples.append((time.perf_counter(), rss()))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
def mark(module, name, label):
    mod = importlib.import_module(module)
    inner = getattr(mod, name, None)
    if inner is None:  # a stage the tree does not have (an older commit)
        return
    @functools.wraps(inner)
    def marked(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            marks.append((label, start, time.perf_counter()))
    setattr(mod, name, marked)
for module, name, label in MARKS:
    mark(module, name, label)
from urnn_forecast.cli import main
import contextlib, io
text = io.StringIO()
with contextlib.redirect_stdout(text):
    try:
        code = main(sys.argv[2:])
    except SystemExit as stop:
        code = stop.code
done.set()
stages = {}
for label, start, end in marks:
    seen = [r for t, r in samples if start <= t <= end]
    before = [r for t, r in samples if t <= start]
    s = stages.setdefault(label, {"seconds": 0.0, "start": before[-1] if before else 0, "peak": 0})
    s["seconds"] += end - start
    s["peak"] = max([s["peak"], *seen])
out = {"code": code, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
       "stages": stages}
"""


def probe_source(marks: Sequence[tuple[str, str, str]], tail: str = "") -> str:
    """The probe for these (module, function, stage label) marks; `tail` runs after the
    command and may add keys to `out` (it sees `text`, the command's captured stdout)."""
    return f"MARKS = {list(marks)!r}\n{_HEAD}{tail}\nprint(json.dumps(out))\n"


def run_probe(source: str, tree: Path, args: Sequence[str], var_dir: str | Path) -> dict[str, Any]:
    """Run `source` (`probe_source`) with the code of `tree` and `urnn` arguments `args`, its
    MLflow store and registry under `var_dir` (URNN_VAR_DIR); its JSON line, read. A failed
    run ends the benchmark with the end of its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", source, str(tree), *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree), "URNN_VAR_DIR": str(var_dir)},
    )
    if done.returncode:
        raise SystemExit(done.stderr[-4000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result

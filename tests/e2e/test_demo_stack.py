"""`urnn demo --stay` as a user runs it: the stack comes up, the printed curl returns a
forecast, the MLflow UI answers, and SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True, text=True)
    found = []
    for line in out.stdout.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and int(fields[1]) == pid:
            found.append(int(fields[0]))
    return found


def test_demo_stays_up_serves_the_printed_curl_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "URNN_VAR_DIR": str(tmp_path / "var"),
        "URNN_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "URNN_TORCH_THREADS": "1",
    }
    env.pop("URNN_MLFLOW_TRACKING_URI", None)
    env.pop("URNN_DATABASE_URL", None)
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "urnn_forecast.cli", "demo", "--stay", "--epochs", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        text = ""
        while "The stack is up" not in text:
            assert demo.poll() is None, f"the demo exited early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no stack after 180 s:\n{text[-3000:]}"
            time.sleep(1)
            text = log_path.read_text(errors="replace")
        time.sleep(1)  # the rest of the banner
        text = log_path.read_text(errors="replace")
        curl = re.search(r"try:  curl -s (\S+) .* -d @(\S+)", text)
        ui = re.search(r"MLflow UI\s+(http://\S+)", text)
        assert curl is not None and ui is not None, text[-2000:]
        url, body = curl.group(1), Path(curl.group(2))
        request = urllib.request.Request(
            url, data=body.read_bytes(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["model"]["name"] == "urnn-forecaster"
        assert len(answer["forecasts"][0]["mean"]) == 24
        deadline = time.monotonic() + 60
        while True:  # the MLflow UI takes a few seconds to start
            try:
                with urllib.request.urlopen(ui.group(1), timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the MLflow UI never answered"
                time.sleep(1)
        children = _children_of(demo.pid)
        assert len(children) >= 2, children  # the MLflow UI and the worker
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0, log_path.read_text()[-2000:]
        assert "stopping the demo stack" in log_path.read_text(errors="replace")
        time.sleep(1)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
        assert not alive, f"demo children still running: {alive}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()

"""Several workers: with PROMETHEUS_MULTIPROC_DIR set, each process writes its metrics to that
folder and /metrics of any of them reports the sum over all. Two fresh interpreters stand in
for two uvicorn workers (the variable must be set before prometheus_client is imported, which
is also why this cannot run in the test process). Fresh interpreters also prove that the
service finds its model through explicit URIs, not MLflow's process-global state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.service.conftest import Registry, history

WORKER = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
    from service.main import create_app

    body, n = json.loads(sys.argv[1]), int(sys.argv[2])
    with TestClient(create_app()) as client:
        for _ in range(n):
            assert client.post("/forecast", json=body).status_code == 200
        sys.stdout.write(client.get("/metrics").text)
    """
)


def worker_env(registry: Registry, folder: Path) -> dict[str, str]:
    """A worker's environment: the metrics folder, the registry's store, one thread."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "URNN_VAR_DIR": str(registry.settings.var_dir),
        "URNN_MODEL_POLL_SECONDS": "0",
        "OMP_NUM_THREADS": "1",
        "URNN_TORCH_THREADS": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_script(script: str, *args: str, env: dict[str, str]) -> str:
    """A worker process of the repository's code (`python -c script args`): its stdout, after
    checking it exited 0."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_metrics_merge_over_worker_processes(registry: Registry, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = worker_env(registry, folder)
    body = json.dumps({"series": [history(registry.frame)]})
    outputs = []
    for n in (1, 2):  # worker A, then worker B: B's /metrics must include A's counts
        outputs.append(run_script(WORKER, body, str(n), env=env))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(outputs[1])
        for s in family.samples
    }
    forecasts = ("urnn_forecast_series_total", (("model_version", "1"),))
    assert samples[forecasts] == 3.0  # 1 from A + 2 from B
    info = [v for (name, _), v in samples.items() if name == "urnn_model_info"]
    assert info == [1.0]  # B is alive and serves v1; A's live gauge left with A
    assert any(name == "urnn_input_drift_psi" for name, _ in samples)
    assert list(folder.glob("counter_*.db"))


DYING_WORKER = textwrap.dedent(
    """
    import json, os, sys, warnings
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
    from service.main import create_app

    body = json.loads(sys.argv[1])
    with TestClient(create_app()) as client:
        assert client.post("/forecast", json=body).status_code == 200
        sys.stdout.write(str(os.getpid()))
        sys.stdout.flush()
        os._exit(0)  # killed: the lifespan's mark_process_dead never runs
    """
)


def test_a_worker_that_died_without_shutting_down_leaves_no_live_gauges(
    registry: Registry, tmp_path: Path
) -> None:
    """uvicorn restarts a killed worker beside its files; its served version, queue depth and
    drift must not be merged in forever (they were: two versions at 1 after a swap)."""
    from prometheus_client.parser import text_string_to_metric_families

    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = worker_env(registry, folder)
    body = json.dumps({"series": [history(registry.frame)]})
    outputs = []
    for script, *args in ((DYING_WORKER, body), (WORKER, body, "1")):
        outputs.append(run_script(script, *args, env=env))
        if script is DYING_WORKER:
            pid = int(outputs[-1])
            assert list(folder.glob(f"gauge_live*_{pid}.db"))  # what it left behind
    samples = [s for family in text_string_to_metric_families(outputs[1]) for s in family.samples]
    assert [s.value for s in samples if s.name == "urnn_model_info"] == [1.0]
    assert not list(folder.glob(f"gauge_live*_{pid}.db"))
    forecasts = [s.value for s in samples if s.name == "urnn_forecast_series_total"]
    assert forecasts == [2.0]  # counters of the dead worker still count: they happened
    failures = [
        s.value
        for s in samples
        if s.name == "urnn_model_reloads_total" and s.labels["outcome"] == "failure"
    ]
    assert failures == [0.0]  # present from the start, so increase() sees a first failure


SWAPPING_METRICS = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("error")  # prometheus_client warns where it cannot remove a value
    from service.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    metrics.start_version("1", (0.1, 0.5, 0.9), 12, adaptive=True)
    metrics.show_multipliers("1", [4.5] * 12)
    metrics.end_multipliers("1")  # version 2 serves now
    metrics.start_version("2", (0.1, 0.5, 0.9), 12, adaptive=True)
    sys.stdout.write(metrics.render().decode())
    """
)


def test_a_swap_takes_the_old_versions_multiplier_off_the_merged_metrics(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set (the compose stack sets it, with one worker too, and
    rolling intervals run with one worker) prometheus_client cannot remove a labelled value:
    the old version's last multipliers stayed in /metrics after a swap, 4.5 on the dashboard
    for ever, where the docs say the swap drops them."""
    import math

    from prometheus_client.parser import text_string_to_metric_families

    folder = tmp_path / "prometheus"
    folder.mkdir()
    out = run_script(SWAPPING_METRICS, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)})
    multipliers = {
        (s.labels["model_version"], s.labels["lead"]): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
        if s.name == "urnn_interval_multiplier"
    }
    assert {lead: m for (v, lead), m in multipliers.items() if v == "2"} == {
        "1": 1.0,
        "2-3": 1.0,
        "4-7": 1.0,
        "8-15": 1.0,
    }
    old = [m for (v, _), m in multipliers.items() if v == "1"]
    assert len(old) == 4 and all(math.isnan(m) for m in old)  # no value: nothing to draw


def test_a_server_started_over_an_earlier_runs_metric_files_counts_its_own_only(
    registry: Registry, tmp_path: Path
) -> None:
    """`uvicorn service.main:create_app --factory --workers N` (or gunicorn) over a folder an
    earlier run left (a pod's emptyDir across a container restart, a fixed folder on a host):
    prometheus_client wants it empty, and the new server reported the earlier run's counts as
    its own (a walk: 404 forecasts of a version after a restart that served none). Files last
    written before this server's supervisor started are an earlier run's: removed."""
    from prometheus_client.parser import text_string_to_metric_families

    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = worker_env(registry, folder)
    body = json.dumps({"series": [history(registry.frame)]})

    def run_worker(n: int) -> str:
        return run_script(WORKER, body, str(n), env=env)

    run_worker(2)  # the earlier run
    an_hour_ago = time.time() - 3600  # before this test's process (their supervisor) started
    for path in folder.glob("*.db"):
        os.utime(path, (an_hour_ago, an_hour_ago))
    families = text_string_to_metric_families(run_worker(1))
    samples = [s for family in families for s in family.samples]
    forecasts = [s.value for s in samples if s.name == "urnn_forecast_series_total"]
    assert forecasts == [1.0]  # this run's one, not 3
    successes = [
        s.value
        for s in samples
        if s.name == "urnn_model_reloads_total" and s.labels["outcome"] == "success"
    ]
    assert successes == [1.0]
    assert all(path.stat().st_mtime > an_hour_ago for path in folder.glob("*.db"))


def test_clearing_an_earlier_run_keeps_this_runs_files_and_another_servers(
    tmp_path: Path,
) -> None:
    """Only files last written before this process's parent started go, and of those not
    one a live process of another server owns (pid 1 here, no sibling of this process): a
    worker restarted after a SIGKILL keeps its dead predecessor's counters, which happened."""
    from service.metrics import clear_earlier_run_files

    dead = 2**22 + 12345  # above any pid_max: no such process
    names = {
        f"counter_{dead}.db": 100.0,  # an earlier run's, its process gone: removed
        f"gauge_livemax_{os.getpid()}.db": 100.0,  # the same pid again (a container): removed
        "counter_1.db": 100.0,  # another server's live process, idle: kept
        f"histogram_{dead + 1}.db": time.time(),  # a worker of this run that died: kept
    }
    for name, moment in names.items():
        path = tmp_path / name
        path.write_bytes(b"\0" * 8)
        os.utime(path, (moment, moment))
    assert clear_earlier_run_files(str(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.glob("*.db")) == sorted(
        ["counter_1.db", f"histogram_{dead + 1}.db"]
    )


REUSED_PID_WORKER = textwrap.dedent(
    """
    import json, os, sys, warnings
    warnings.simplefilter("ignore")
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from fastapi.testclient import TestClient
    from service.main import create_app

    # what a worker killed earlier in this run left under the pid this one now has
    stale = MmapedDict(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"],
                                    f"gauge_livemax_{os.getpid()}.db"))
    names, values = ["name", "version", "run_id"], ["urnn-forecaster", "0", "gone"]
    stale.write_value(mmap_key("urnn_model_info", "urnn_model_info", names, values, ""), 1.0, 0.0)
    stale.close()
    with TestClient(create_app()) as client:
        sys.stdout.write(client.get("/metrics").text)
    """
)


def test_a_worker_started_under_a_dead_workers_pid_does_not_show_its_gauges(
    registry: Registry, tmp_path: Path
) -> None:
    """A worker restarted under the pid of one killed earlier (pids wrap around: a container's
    small ones) opened its live-gauge file, whose values it never set again: the dead worker's
    served version read 1 beside the new one's for the new worker's whole life."""
    from prometheus_client.parser import text_string_to_metric_families

    folder = tmp_path / "prometheus"
    folder.mkdir()
    families = text_string_to_metric_families(
        run_script(REUSED_PID_WORKER, env=worker_env(registry, folder))
    )
    served = [
        s.labels["version"]
        for family in families
        for s in family.samples
        if s.name == "urnn_model_info" and s.value == 1.0
    ]
    assert served == ["1"]

"""`urnn serve`: options reach uvicorn; several workers run the factory with a metrics folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from urnn_forecast import cli
from urnn_forecast.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    import uvicorn

    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.append((a, k)))
    # the port is never bound here (uvicorn.run is stubbed): whatever holds it on this machine
    monkeypatch.setattr(cli, "_address_problem", lambda host, port, **where: None)
    # Empty counts as unset; monkeypatch puts the variable back as it was after the test.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    return seen


def test_serve_one_worker_runs_the_app_built_from_these_settings(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]], tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", serve_port=9000)
    assert cli.main(["serve", "--host", "0.0.0.0"], settings=settings) == 0
    (app,), options = calls[0]
    assert isinstance(app, FastAPI)
    assert app.state.service.settings is settings
    assert options == {
        "host": "0.0.0.0",
        "port": 9000,
        "access_log": False,
        "ws_max_size": 16 * 1024 * 1024,  # uvicorn's default, 2 x the 8 MiB body limit
        "http": "service.http_head:BoundedHeadProtocol",
        "log_config": cli.serve_log_config(),
    }


def test_one_worker_with_a_metrics_folder_clears_an_earlier_runs_files(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PROMETHEUS_MULTIPROC_DIR set (compose, a Kubernetes emptyDir) turns multiprocess mode
    on with one worker too: a restart read 100 requests after 50 (an audit's)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_15883.db").write_bytes(b"an earlier run's counts")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    assert cli.main(["serve"], settings=Settings(var_dir=tmp_path / "var")) == 0
    assert calls and not (folder / "counter_15883.db").exists()


def test_serve_writes_the_access_log_when_asked(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]], tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", serve_access_log=True)
    assert cli.main(["serve"], settings=settings) == 0
    assert calls[0][1]["access_log"] is True


def test_serve_workers_use_the_factory_and_a_multiprocess_folder(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    seen: dict[str, str] = {}

    def run(*args: Any, **kwargs: Any) -> None:  # what the workers would find
        seen["folder"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        seen["snapshots"] = os.environ["URNN_STREAM_SNAPSHOT_SECONDS"]
        assert Path(seen["folder"]).is_dir()
        calls.append((args, kwargs))

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.delenv("URNN_STREAM_SNAPSHOT_SECONDS", raising=False)
    settings = Settings(var_dir=tmp_path / "var", stream_snapshot_seconds=5.0)
    assert cli.main(["serve", "--port", "8123", "--workers", "3"], settings=settings) == 0
    # no sticky routing between workers: streaming state written through on every request
    assert seen["snapshots"] == "0"
    assert not Path(seen["folder"]).exists()  # the folder it made is removed when it stops
    (target,), options = calls[0]
    assert target == "service.main:create_app"
    assert options == {
        "factory": True,
        "host": "127.0.0.1",
        "port": 8123,
        "workers": 3,
        "access_log": False,
        "ws_max_size": 16 * 1024 * 1024,
        "http": "service.http_head:BoundedHeadProtocol",
        "log_config": cli.serve_log_config(),  # applied in every worker: they are spawned
    }
    # a folder given by the operator is kept, emptied of an earlier run's files first
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"old")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    assert cli.main(["serve", "--port", "8123", "--workers", "2"], settings=settings) == 0
    assert seen["folder"] == str(given) and given.is_dir() and not list(given.iterdir())


def test_serve_workers_without_the_poll_say_a_reload_switches_one_worker(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """POST /model/reload reaches the one worker that takes the request; the others follow at
    their poll. With the poll off they never did: a walk's promote and reload left two
    versions served side by side (`urnn_model_info` at 1 for both) until a restart, and
    nothing said so."""
    settings = Settings(var_dir=tmp_path / "var", model_poll_seconds=0)
    with caplog.at_level("WARNING", logger="urnn.serve"):  # one worker: a reload switches all
        assert cli.main(["serve"], settings=settings) == 0
    assert "URNN_MODEL_POLL_SECONDS" not in caplog.text
    with caplog.at_level("WARNING", logger="urnn.serve"):
        assert cli.main(["serve", "--workers", "2"], settings=settings) == 0
    said = [r.getMessage() for r in caplog.records if "URNN_MODEL_POLL_SECONDS" in r.getMessage()]
    assert len(said) == 1 and "only the worker" in said[0], caplog.text
    caplog.clear()  # a version pinned by number: no alias moves, nothing to follow
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # unset again: the run above made one
    pinned = Settings(
        var_dir=tmp_path / "var", model_poll_seconds=0, model_uri="models:/urnn-forecaster/3"
    )
    with caplog.at_level("WARNING", logger="urnn.serve"):
        assert cli.main(["serve", "--workers", "2"], settings=pinned) == 0
    assert "URNN_MODEL_POLL_SECONDS" not in caplog.text


def test_serve_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out and "--workers" in out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "serve" in capsys.readouterr().out


def test_websocket_messages_may_exceed_a_raised_body_limit_before_uvicorn_closes(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]], tmp_path: Path
) -> None:
    """Between URNN_MAX_BODY_BYTES and uvicorn's ws_max_size a message gets its 413 reply."""
    settings = Settings(var_dir=tmp_path / "var", max_body_bytes=64 * 1024 * 1024)
    assert cli.main(["serve"], settings=settings) == 0
    assert calls[0][1]["ws_max_size"] == 128 * 1024 * 1024


def test_a_port_in_use_is_one_line_before_any_model_is_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn must not start"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(var_dir=tmp_path / "var")
        assert cli.main(["serve", "--port", str(port)], settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn serve: error: cannot listen on 127.0.0.1:{port} (")
    assert "pick another --port" in err


def test_a_host_that_is_not_this_machines_address_is_not_told_to_change_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn must not start"))
    settings = Settings(var_dir=tmp_path / "var")
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never assigned to a real interface
    assert cli.main(["serve", "--host", "192.0.2.1", "--port", "8000"], settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith("urnn serve: error: cannot listen on 192.0.2.1:8000 (")
    assert "--host must be an address of this machine" in err
    assert "another --port" not in err
    # given by the settings, the address names them, not an option the user never typed
    # (URNN_SERVE_HOST='' named --host '')
    by_env = Settings(var_dir=tmp_path / "var", serve_host="192.0.2.1", serve_port=8000)
    assert cli.main(["serve"], settings=by_env) == 2
    err = capsys.readouterr().err
    assert "; URNN_SERVE_HOST must be an address of this machine" in err and "--" not in err
    by_env = Settings(var_dir=tmp_path / "var", serve_host="no-such-host.invalid")
    assert cli.main(["serve"], settings=by_env) == 2
    err = capsys.readouterr().err
    assert err.startswith("urnn serve: error: URNN_SERVE_HOST='no-such-host.invalid': cannot ")
    # the defaults (neither option nor setting given) are changed with the options
    assert cli._address_problem("192.0.2.1", 8000) is not None
    unset = Settings(var_dir=tmp_path / "var")
    assert "serve_host" not in unset.model_fields_set


def test_a_privileged_port_is_told_the_allowed_range() -> None:
    import errno

    assert "pick a --port from 1024 to 65535" in cli._bind_advice(errno.EACCES)
    assert cli._bind_advice(errno.EADDRINUSE) == "pick another --port"


def test_the_workers_option_has_the_settings_bound(capsys: pytest.CaptureFixture[str]) -> None:
    """--workers took up to 2**32 - 1 processes (each loading the model) where
    URNN_SERVE_WORKERS allows 256."""
    bound = next(
        rule.le for rule in Settings.model_fields["serve_workers"].metadata if hasattr(rule, "le")
    )
    from urnn_forecast.settings import SERVE_WORKERS_MAX

    assert bound == SERVE_WORKERS_MAX  # one constant for the setting and the option
    assert cli.build_parser().parse_args(["serve", "--workers", str(bound)]).workers == bound
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--workers", str(bound + 1)])
    said = f"argument --workers: must be an integer from 1 to {bound} (as URNN_SERVE_WORKERS)"
    assert said in capsys.readouterr().err


def test_a_var_dir_below_a_file_stops_serve_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`urnn serve` and `uvicorn service.main:create_app --factory` ended in a
    NotADirectoryError traceback (a contract walk-through); the factory also printed one for a
    bad setting, where `urnn serve` says one line."""
    import uvicorn

    from service.main import create_app

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn must not start"))
    taken = tmp_path / "taken"
    taken.write_text("")
    settings = Settings(var_dir=taken / "var")
    assert cli.main(["serve", "--port", "18998"], settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn serve: error: URNN_VAR_DIR={taken}/var: cannot create the folder")

    monkeypatch.setenv("URNN_VAR_DIR", str(taken / "var"))
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            create_app()
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("urnn-forecast service: error: URNN_VAR_DIR=")
        monkeypatch.setenv("URNN_DEVICE", "gpu")
        get_settings.cache_clear()
        with pytest.raises(SystemExit):
            create_app()
        assert "error: invalid settings: URNN_DEVICE='gpu'" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_metrics_folder_that_is_no_folder_is_one_error_line(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """Every worker failed as it started (FileNotFoundError on histogram_<pid>.db, in a
    traceback) and uvicorn started it again, for ever: 8 starts in 40 s, nothing answered."""
    folder = tmp_path / "metrics"
    if kind == "file":
        folder.write_text("not a folder")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    code = cli.main(["serve", "--workers", "2"], settings=Settings(var_dir=tmp_path / "var"))
    said = capsys.readouterr().err
    assert code == 2 and not calls
    assert said.startswith(f"urnn serve: error: PROMETHEUS_MULTIPROC_DIR={folder} ")
    assert ("does not exist" if kind == "missing" else "is not a folder") in said
    # uvicorn's factory, run directly (`uvicorn service.main:create_app --factory --workers
    # 2`): each worker failed the same way, in a traceback, restarted for ever
    from service.main import create_app

    monkeypatch.setenv("URNN_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            create_app()
    finally:
        get_settings.cache_clear()
    said = capsys.readouterr().err
    assert stopped.value.code == 2
    assert said.startswith(f"urnn-forecast service: error: PROMETHEUS_MULTIPROC_DIR={folder} ")


def test_uvicorn_run_directly_logs_the_service_lines_in_the_command_format(
    tmp_path: Path,
) -> None:
    """`uvicorn service.main:create_app --factory` configures uvicorn's loggers only: the
    service's INFO lines (a swap's "serving ... version N") were dropped and its warnings came
    out bare, without time, level or logger. The factory gives them a handler when nothing
    would receive them, and adds none where `urnn serve`'s configuration does."""
    script = textwrap.dedent(
        """
        import logging, logging.config, sys
        from uvicorn.config import LOGGING_CONFIG
        from urnn_forecast.cli import serve_log_config
        config = serve_log_config() if sys.argv[1] == "urnn" else LOGGING_CONFIG
        logging.config.dictConfig(config)  # what uvicorn does in each process it runs
        from service.main import create_app
        create_app()  # as uvicorn's --factory calls it
        logging.getLogger("service.manager").info("serving urnn-forecaster version 2")
        logging.getLogger("service.drain").warning("SIGTERM: /readyz answers 503")
        """
    )
    env = {**os.environ, "URNN_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    # an earlier test's mlflow.set_tracking_uri wrote MLflow's variable in this process: in
    # the child it would name another store, and the service's note on it is a third line
    env.pop("MLFLOW_TRACKING_URI", None)
    for how in ("uvicorn", "urnn"):
        done = subprocess.run(
            [sys.executable, "-c", script, how],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if " service." in line]
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
        assert len(lines) == 2, (how, done.stderr)  # each once: no second handler
        assert re.fullmatch(
            rf"{stamp} INFO service.manager: serving urnn-forecaster version 2", lines[0]
        ), (how, lines)
        assert re.fullmatch(
            rf"{stamp} WARNING service.drain: SIGTERM: /readyz answers 503", lines[1]
        ), (how, lines)


def test_an_empty_metrics_folder_variable_is_unset_before_prometheus_client_reads_it(
    tmp_path: Path,
) -> None:
    """prometheus_client turns multiprocess mode on when PROMETHEUS_MULTIPROC_DIR is present,
    empty or not, and then writes every metric file into the working directory (`/app` in
    the image, not writable by its user: no start), while the service read an empty value as
    unset (`export PROMETHEUS_MULTIPROC_DIR=` to unset it, `${VAR:-}` in compose) and never
    cleared or merged those files."""
    script = textwrap.dedent(
        """
        import os
        from service.metrics import ServiceMetrics
        from prometheus_client import values
        metrics = ServiceMetrics()
        metrics.rejected.labels(reason="queue_full").inc()
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        assert values.ValueClass is values.MutexValue, values.ValueClass
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(tmp_path.glob("*.db")) == []


def test_the_lower_case_metrics_folder_variable_is_cleared_like_the_upper_case_one(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prometheus_client still reads `prometheus_multiproc_dir` (deprecated) where the upper
    case one is not set: `urnn serve` neither checked nor emptied that folder, so a restart
    added the earlier run's counts to the new ones."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_15883.db").write_bytes(b"an earlier run's counts")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    monkeypatch.setenv("prometheus_multiproc_dir", str(folder))
    assert cli.main(["serve"], settings=Settings(var_dir=tmp_path / "var")) == 0
    assert calls and not (folder / "counter_15883.db").exists()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)


def test_a_metrics_folder_another_serve_uses_is_refused_not_emptied(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second `urnn serve` given the same PROMETHEUS_MULTIPROC_DIR (a shell that exports it,
    a blue/green start on one host) emptied the folder under the running one: the first's
    counts went from its /metrics, and each server's scrape then merged the other's files."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    settings = Settings(var_dir=tmp_path / "var")
    running = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from service.metrics import hold_multiprocess_folder; "
            "held = hold_multiprocess_folder(sys.argv[1]); print(held is not None, flush=True); "
            "time.sleep(60)",
            str(folder),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert running.stdout is not None and running.stdout.readline().strip() == "True"
        (folder / "counter_15883.db").write_bytes(b"the running server's counts")
        assert cli.main(["serve", "--workers", "2"], settings=settings) == 2
        said = capsys.readouterr().err
        assert said.startswith(f"urnn serve: error: PROMETHEUS_MULTIPROC_DIR={folder} ")
        assert "in use by another urnn serve" in said
        assert not calls and (folder / "counter_15883.db").exists()
    finally:
        running.kill()
        running.wait()
    assert cli.main(["serve"], settings=settings) == 0  # the other one gone: emptied, served
    assert calls and not (folder / "counter_15883.db").exists()


def test_a_metrics_folder_on_a_filesystem_without_locks_is_served_unguarded(
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A folder whose filesystem takes no flock (some FUSE or NFS mounts: ENOLCK) is not
    "in use by another urnn serve": it is emptied and served as before the lock existed."""
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_15883.db").write_bytes(b"an earlier run's counts")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert cli.main(["serve"], settings=Settings(var_dir=tmp_path / "var")) == 0
    assert calls and not (folder / "counter_15883.db").exists()

"""Real processes for the end-to-end test: each in its own process group, logging to a file,
polled for readiness with a deadline, and killed (the whole group) at teardown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")
TAIL_LINES = 60


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_server_command(bin_dir: Path, store: Path, artifacts: Path, port: int) -> list[str]:
    """`mlflow server` on loopback `port`: a SQLite backend store at `store`, artifacts served
    from `artifacts` (--serve-artifacts, mlflow-artifacts:/ URIs), one worker."""
    return [
        str(bin_dir / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{store}",
        "--artifacts-destination",
        str(artifacts),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


class Process:
    """One child process in its own session (so its process group is its own), stdout and
    stderr in `log`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: Path,
        stdout: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._log_file = log.open("wb")
        self._stdout_file = stdout.open("wb") if stdout is not None else None
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout_file or self._log_file,
            stderr=self._log_file if self._stdout_file else subprocess.STDOUT,
            start_new_session=True,  # setsid: pgid == pid, so killpg reaches its children too
        )
        self.pgid = self.popen.pid

    def describe(self) -> str:
        state = "running" if self.popen.poll() is None else f"exited {self.popen.returncode}"
        return f"--- {self.name} ({state}): {' '.join(self.argv)}\n{tail(self.log)}"

    def group_alive(self) -> bool:
        """Whether any process of the group is left (zombies reaped by us do not count)."""
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - a pid reused by someone else's process
            return False
        return True

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL what is left of it after `grace_s`, reap the leader,
        close the log."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            self.popen.poll()  # reaps the leader once it exits
            if not self.group_alive():
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)  # whatever ignored SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log_file.close()
        if self._stdout_file is not None:
            self._stdout_file.close()


class Stack:
    """The started processes; `diagnostics` is what a failure message shows."""

    def __init__(self, tmp: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.tmp = tmp
        self.env = dict(env)
        self.cwd = cwd
        self.processes: list[Process] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        stdout: Path | None = None,
    ) -> Process:
        """Start `argv` with stdout and stderr in <tmp>/<name>.log (stdout in `stdout` if set)."""
        process = Process(
            name,
            argv,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            log=self.tmp / f"{name}.log",
            stdout=stdout,
        )
        self.processes.append(process)
        return process

    def diagnostics(self) -> str:
        return "\n".join(p.describe() for p in self.processes)

    def stop_all(self) -> list[str]:
        """Stop every process, last started first; the names of groups still alive after."""
        for process in reversed(self.processes):
            process.stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [p.name for p in self.processes if p.group_alive()]
            if not left:
                return []
            time.sleep(0.2)
        return [p.name for p in self.processes if p.group_alive()]


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    stack: Stack,
    watch: Sequence[Process] = (),
    interval_s: float = 0.25,
) -> T:
    """Call `probe` until it returns something other than None (exceptions count as not yet);
    fail with the processes' log tails when `timeout_s` passes or a watched process exits."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        try:
            result = probe()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            result, last_error = None, f"{type(error).__name__}: {error}"
        if result is not None:
            return result
        dead = [p for p in watch if p.popen.poll() is not None]
        if dead or time.monotonic() > deadline:
            reason = (
                f"{dead[0].name} exited with {dead[0].popen.returncode}"
                if dead
                else f"timed out after {timeout_s:.0f} s"
            )
            raise AssertionError(
                f"waiting for {what}: {reason}; last error: {last_error or 'none'}\n"
                f"{stack.diagnostics()}"
            )
        time.sleep(interval_s)


def http_ok(url: str, *, timeout_s: float = 2.0) -> bool | None:
    """True when `url` answers 2xx, else None (for wait_for)."""
    response = httpx.get(url, timeout=timeout_s)
    return True if response.is_success else None

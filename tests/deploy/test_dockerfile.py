"""The Dockerfile, read instruction by instruction: stages, user, health check, entrypoint."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest

from tests.deploy.files import DOCKERIGNORE, ROOT, Stage, dockerfile_stages
from urnn_forecast.cli import build_parser

COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cmake|make|cpp|ninja-build)\b")


def _final() -> Stage:
    return dockerfile_stages()[-1]


def test_two_stages_builder_then_runtime() -> None:
    stages = dockerfile_stages()
    assert [stage.name for stage in stages] == ["builder", "runtime"]
    assert all(stage.base.startswith(("python:3.11", "${PYTHON_IMAGE}")) for stage in stages)
    builder = stages[0]
    args = {i.args.split("=", 1)[0] for i in builder.of("ARG")}
    assert {"VARIANT", "TORCH_SPEC", "TORCH_INDEX_URL", "PREBUILD_RECURRENCE"} <= args
    runs = " ".join(i.args for i in builder.of("RUN"))
    assert "build-essential" in runs  # the compiler lives in the builder only
    assert "download.pytorch.org/whl/cpu" in runs and "download.pytorch.org/whl/cu" in runs
    assert "load_extension()" in runs  # the prebuilt recurrence (docs/runbook.md)
    assert "head_kernel()" in runs  # and the streaming head


def test_final_stage_has_no_build_tools() -> None:
    """No RUN of the final stage names a compiler or build tool, however it installs it
    (`apt-get -y install gcc`, `pip install cmake`), and what it copies from another stage
    comes from the builder."""
    final = _final()
    runs = final.of("RUN")
    assert runs, "no RUN in the final stage: is the stage parsed?"
    for instruction in runs:
        assert not COMPILERS.search(instruction.args), instruction
    copied = [i for i in final.of("COPY") if "--from=" in i.args]
    assert copied, "the final stage copies nothing from the builder"
    for instruction in copied:
        assert "--from=builder" in instruction.args, instruction


def test_runs_as_a_non_root_user() -> None:
    users = _final().of("USER")
    assert users, "no USER in the final stage"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")


def test_health_check_probes_healthz() -> None:
    checks = _final().of("HEALTHCHECK")
    assert len(checks) == 1
    assert "CMD" in checks[0].args and "/healthz" in checks[0].args


def test_entrypoint_is_urnn_and_default_command_serves_on_all_interfaces() -> None:
    final = _final()
    assert json.loads(final.of("ENTRYPOINT")[-1].args) == ["urnn"]
    command = json.loads(final.of("CMD")[-1].args)
    assert command == ["serve", "--host", "0.0.0.0"]
    args = build_parser().parse_args(command)
    assert (args.command, args.host) == ("serve", "0.0.0.0")
    assert "8000" in final.of("EXPOSE")[-1].args


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".venv", "var", "runs", "mlruns", ".git", ".mypy_cache", ".pytest_cache"} <= ignored
    assert "mlflow.db" in ignored


def test_no_local_mlflow_store_is_committed() -> None:
    """A ./mlflow.db (MLflow's default store in the working folder) was committed once by
    accident: the image (COPY . .) and every checkout carried a stranger's runs and registry."""
    tracked = subprocess.run(
        ["git", "ls-files", "--", "*.db", "mlruns", "mlartifacts", "var"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if tracked.returncode != 0:
        if os.environ.get("CI"):  # CI runs on a fresh clone: a skip there would hide this check
            pytest.fail(f"git ls-files failed in CI: {tracked.stderr.strip()}")
        pytest.skip("not a git checkout")
    assert tracked.stdout.split() == []


def _runtime_env() -> dict[str, str]:
    pairs = [
        item.split("=", 1)
        for instruction in _final().of("ENV")
        for item in shlex.split(instruction.args)
    ]
    return {key: value for key, value in pairs}


def test_the_non_root_user_can_write_where_the_code_writes() -> None:
    """The state folder (URNN_VAR_DIR, the image's VOLUME) is made and handed to the user
    before the VOLUME (changes after it would be lost), and the extension build folder is
    copied as the user's: torch takes a lock file in it when loading the prebuilt build."""
    final = _final()
    user = final.of("USER")[-1].args.split(":")[0]
    env = _runtime_env()
    var_dir, extensions = env["URNN_VAR_DIR"], env["TORCH_EXTENSIONS_DIR"]
    volume = final.of("VOLUME")[-1]
    assert json.loads(volume.args) == [var_dir]
    owned = [
        i
        for i in final.of("RUN")
        if re.search(rf"\bchown\b[^&;]*\b{user}:{user}\s+{re.escape(var_dir)}\b", i.args)
    ]
    assert owned and owned[0].line < volume.line, f"{var_dir} not chowned to {user} before VOLUME"
    copied = [i for i in final.of("COPY") if i.args.split()[-1] == extensions]
    assert copied and f"--chown={user}:{user}" in copied[0].args.split()
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(i.args for i in final.of("ENV"))  # /app: root's

"""The Makefile, read through `make -n` (prints the recipes, runs nothing)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.files import ROOT

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _dry_run(tmp_path: Path, *variables: str) -> list[str]:
    if shutil.which("make") is None:
        if os.environ.get("CI"):  # .ci/run itself runs `make test`: a skip there would hide this
            pytest.fail("make is missing in CI")
        pytest.skip("make is not installed")
    # A VENV that does not exist: the setup recipe is printed in full.
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", *variables, "setup"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def _torch_install(lines: list[str]) -> list[str]:
    (line,) = [line for line in lines if "pip install" in line and "torch==" in line]
    return shlex.split(line)


def test_setup_installs_torch_first_then_the_project(tmp_path: Path) -> None:
    lines = _dry_run(tmp_path)
    torch = next(i for i, line in enumerate(lines) if "torch==2.13.0" in line)
    project = next(i for i, line in enumerate(lines) if '-e ".[dev]"' in line)
    assert torch < project


def test_torch_spec_can_carry_an_index_url(tmp_path: Path) -> None:
    """The README's CPU override. TORCH_SPEC was quoted in the recipe: pip got the whole text
    as one requirement and failed ("Invalid requirement")."""
    args = _torch_install(_dry_run(tmp_path, f"TORCH_SPEC=torch==2.13.0 --index-url {CPU_INDEX}"))
    assert args[-3:] == ["torch==2.13.0", "--index-url", CPU_INDEX]

"""Which code a run was made with, as MLflow tags.

MLflow records `mlflow.source.git.commit` only when the entry point lies in a git checkout; the
`urnn` command lies in `.venv/bin`, which git ignores, so runs carried no commit (a walk-through
of the MLflow UI). The package's own checkout is asked instead: its commit, and whether tracked
files were changed since (a run from uncommitted code is not that commit's).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from urnn_forecast import __version__

GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own: the UI shows it with the run
MODIFIED_TAG = "urnn.code_modified"
VERSION_TAG = "urnn.package_version"


@functools.lru_cache(maxsize=1)
def code_version_tags() -> dict[str, str]:
    """The package version; and the checkout's commit and state when the package runs from a
    git checkout (an installed wheel, or a machine without git: the version alone)."""
    tags = {VERSION_TAG: __version__}
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return tags
    try:
        commit = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return tags
    if commit:
        tags[GIT_COMMIT_TAG] = commit
        tags[MODIFIED_TAG] = "true" if changed else "false"
    return tags


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()

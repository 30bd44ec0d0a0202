"""Where `urnn train` keeps a run's best weights so far while it fits, and how they go.

    folder = run_checkpoints(settings.var_dir, run_id)   # <var_dir>/checkpoints/<run id>
    staging_for(folder)                                  # written there first, then moved in
    remove_checkpoints(folder)                           # the folder and its staging sibling

One place for the layout: the fit writes it (training.fit.BestSoFar), the pipeline removes it
once the model is logged, and the job worker when it stops an attempt. Imports nothing heavy:
the worker never imports training code.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def run_checkpoints(var_dir: Path, run_id: str) -> Path:
    return var_dir / "checkpoints" / run_id


def staging_for(folder: Path) -> Path:
    """A hidden sibling of `folder`: a checkpoint is written whole there, then its files are
    moved into `folder`, so a save cut short never leaves `folder` half written."""
    return folder.parent / f".{folder.name}.saving"


def remove_checkpoints(folder: Path) -> list[Path]:
    """Remove `folder` and its staging sibling; the paths that were there."""
    removed = [path for path in (folder, staging_for(folder)) if path.exists()]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed

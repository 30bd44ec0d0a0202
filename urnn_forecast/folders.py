"""Whether a folder can be made, asked before the work that writes into it.

Commands that write results, stores or artifacts after minutes or hours of work (a benchmark's
--output, an MLflow artifact root, a SQLite store) ask first: a path below a file, or in a folder
this user cannot write to, otherwise fails at the end, in a traceback, with the work lost.
"""

from __future__ import annotations

import os
from pathlib import Path


def folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot be made (or written to) by this user, without making anything;
    None when it can: the nearest existing path at or above it must be a writable folder."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None

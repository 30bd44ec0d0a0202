"""Where the shared real data sets lie (../shared/data beside the repository, in development and
in CI), and the mark for the tests that read them: skipped, saying where they looked, on a
machine that has only the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def needs_shared(relative: str = "") -> pytest.MarkDecorator:
    """Skip unless SHARED_DATA / relative (a file or folder) exists."""
    path = SHARED_DATA / relative
    return pytest.mark.skipif(not path.exists(), reason=f"shared real data not found at {path}")

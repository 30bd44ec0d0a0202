"""An exclusive lock between processes that dies with its holder.

`fcntl.flock` on a file: the kernel releases it when the process exits, however it exits, so a
killed holder never leaves a lock behind (unlike a lock *file*, which torch's extension builds
and MLflow's store set-up have no such guard for). Where flock does not exist (not POSIX) the
lock is a no-op, as before these locks were added.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exclusive_file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created, with its folder, if missing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

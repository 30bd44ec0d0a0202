"""Keep the event loop awake for a moment after a streaming answer, so the next update finds it
running instead of asleep.

Why: a one-point streaming update is ~0.1 ms of work, and an event loop that goes to sleep in
`epoll_wait` between two updates pays for it twice: the wake-up itself, and cold caches once
awake. Measured on a 2-core KVM guest (docs/streaming.md, "Busy polling"): the same request
through the whole app took ~50 % longer in process after a 0.3 ms idle gap than back to back,
and end to end (`make bench-stream`) the update p50 fell from ~0.40 to ~0.25 ms. This is what
KVM's halt polling (200 us by default) and Go's scheduler do before they park a CPU: spin a
bounded while, because the next event usually comes sooner than a sleep costs.

How: after each answer (once it is sent, on the fast path) `touch()` moves a deadline `window`
seconds ahead; one task yields to the loop (`asyncio.sleep(0)`) until the deadline passes, so
the loop polls its sockets without blocking and runs whatever arrives at once. Nothing else
changes: requests are served exactly as without it. The cost is CPU: up to `window` of one core
per answer when answers are sparse (measured: +0.17 ms per update at one update every 2 ms),
less than nothing when they come back to back (the sleeps and wake-ups it saves cost more).
While it spins, the loop holds the GIL between polls, so a thread of the same process (the
/forecast batcher, the stream worker) may wait up to the window for it. Set
URNN_STREAM_BUSY_POLL_US=0 where CPU is metered tightly (a small container quota).
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class BusyPoll:
    def __init__(self, window_seconds: float) -> None:
        if window_seconds < 0:
            raise ValueError(f"window_seconds must be >= 0, got {window_seconds}")
        self.window = window_seconds
        self._deadline = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def spinning(self) -> bool:
        return self._task is not None

    def touch(self) -> None:
        """Keep the running loop polling for `window` seconds from now (no-op when 0)."""
        if self.window <= 0:
            return
        self._deadline = time.perf_counter() + self.window
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._spin(), name="urnn-busy-poll")

    async def _spin(self) -> None:
        try:
            while time.perf_counter() < self._deadline:
                await asyncio.sleep(0)  # one loop iteration: poll the sockets with no timeout
        finally:
            self._task = None

    async def stop(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""Draining before shutdown: after SIGTERM, keep serving for a while with /readyz at 503.

    drain = Drain(settings.shutdown_drain_seconds)
    drain.install()      # in the lifespan, in the main thread, after uvicorn took SIGTERM
    drain.draining       # True from the SIGTERM on: /readyz answers 503 with the reason

Why: on SIGTERM uvicorn stops accepting connections at once. A load balancer (Kubernetes, a
cloud LB) learns that a replica is going away only from its next failed health check, and
until then keeps sending it connections, which are refused or reset. With a drain of a few
health-check intervals, the replica answers every request as before while /readyz says it is
shutting down; the balancer takes it out of rotation, and only then does uvicorn's graceful
shutdown begin (requests in flight finish). A second SIGTERM, or SIGINT (Ctrl-C), stops at
once. With several workers each one drains: uvicorn's supervisor passes SIGTERM on to them.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)


class Drain:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.since: float | None = None  # time.monotonic() of the SIGTERM
        self._then: Any = None  # the handler SIGTERM had: uvicorn's graceful shutdown

    @property
    def draining(self) -> bool:
        return self.since is not None

    def reason(self) -> str:
        left = 0.0 if self.since is None else self.seconds - (time.monotonic() - self.since)
        return (
            f"shutting down: draining after SIGTERM (URNN_SHUTDOWN_DRAIN_SECONDS="
            f"{self.seconds:g}), requests are still served for {max(left, 0.0):.1f} s"
        )

    def install(self) -> bool:
        """Take SIGTERM over from the server (only in the main thread, only with a drain set,
        only when a handler to hand over to exists); True when installed."""
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return False
        then = signal.getsignal(signal.SIGTERM)
        if not callable(then):  # not under a server that shuts down on SIGTERM: leave it be
            return False
        self._then = then
        signal.signal(signal.SIGTERM, self._on_sigterm)
        logger.info("on SIGTERM: draining for %g s before shutting down", self.seconds)
        return True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.since is not None:  # asked again: stop now
            self._then(signum, frame)
            return
        self.since = time.monotonic()
        logger.warning(
            "SIGTERM: /readyz answers 503; still serving for %g s, then shutting down",
            self.seconds,
        )
        timer = threading.Timer(self.seconds, self._then, args=(signum, frame))
        timer.daemon = True
        timer.start()

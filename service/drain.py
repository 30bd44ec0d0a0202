"""Draining before shutdown: after SIGTERM, keep serving for a while with /readyz at 503.

    drain = Drain(settings.shutdown_drain_seconds)
    drain.install()      # in the lifespan, in the main thread, after uvicorn took SIGTERM
    drain.draining       # True from the SIGTERM on: /readyz answers 503 with the reason

Why: on SIGTERM uvicorn stops accepting connections at once. A load balancer (Kubernetes, a
cloud LB) learns that a replica is going away only from its next failed health check, and
until then keeps sending it connections, which are refused or reset. With a drain of a few
health-check intervals, the replica answers every request as before while /readyz says it is
shutting down; the balancer takes it out of rotation, and only then does uvicorn's graceful
shutdown begin (requests in flight finish; uvicorn sets no time limit on them). A second
SIGTERM or a Ctrl-C ends the drain early: the graceful shutdown starts then (a second Ctrl-C
forces it, as uvicorn does). With several workers each one drains: uvicorn's supervisor passes
SIGTERM on to them, and while it waits for them it does not act on further signals (send them
to the workers, or wait for the drain).
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
        self._on_term: Any = None  # the handlers the server had: its graceful shutdown
        self._on_int: Any = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._handed_over = False

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
        """Take SIGTERM (and SIGINT, to end a drain early) over from the server: only in the
        main thread, only with a drain set, only when handlers to hand over to exist."""
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return False
        on_term, on_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        if not callable(on_term):  # not under a server that shuts down on SIGTERM: leave it be
            return False
        self._on_term, self._on_int = on_term, on_int
        signal.signal(signal.SIGTERM, self._sigterm)
        if callable(on_int):
            signal.signal(signal.SIGINT, self._sigint)
        logger.info("on SIGTERM: draining for %g s before shutting down", self.seconds)
        return True

    def _sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.since is not None:  # asked again: the graceful shutdown starts now
            self._hand_over(self._on_term, signum, frame)
            return
        self.since = time.monotonic()
        logger.warning(
            "SIGTERM: /readyz answers 503; still serving for %g s, then shutting down "
            "(SIGTERM again or Ctrl-C: now)",
            self.seconds,
        )
        self._timer = threading.Timer(
            self.seconds, self._hand_over, args=(self._on_term, signum, frame)
        )
        self._timer.daemon = True
        self._timer.start()

    def _sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.since is not None and self._timer is not None:
            self._timer.cancel()  # no SIGTERM handed over later, to be re-raised at exit
        self._on_int(signum, frame)  # the server's own: graceful, and forced the second time

    def _hand_over(self, handler: Any, signum: int, frame: FrameType | None) -> None:
        """The server's shutdown, once (the timer and a second SIGTERM may both get here)."""
        with self._lock:
            if self._handed_over:
                return
            self._handed_over = True
            if self._timer is not None:
                self._timer.cancel()
        handler(signum, frame)

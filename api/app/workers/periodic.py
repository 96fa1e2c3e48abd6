"""A background loop in its own thread: run a step every `interval`, or sooner when woken."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, step: Callable[[], int], interval_s: float) -> None:
        self.name = name
        self._step = step
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                busy = self._step()
            except Exception:  # a failing step (DB down, say) must not end the loop
                log.exception("worker.step_failed", extra={"worker": self.name})
                busy = 0
            if not busy:
                self._wake.wait(self._interval_s)


class Worker:
    """A background job whose `run_once` the Periodic loop calls (tests call it directly)."""

    name = "worker"

    def __init__(self, interval_s: float) -> None:
        self._loop = Periodic(self.name, self.run_once, interval_s)

    def run_once(self) -> int:
        """Do one round; return how much was done (non-zero: run again at once)."""
        raise NotImplementedError

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def wake(self) -> None:
        self._loop.wake()

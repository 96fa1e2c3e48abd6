"""A background worker: a loop in its own thread that runs a round, again at once while there
is work, otherwise after `next_wait_s()` or sooner when woken."""

import logging
import threading

log = logging.getLogger(__name__)


class Worker:
    """The loop calls `run_once` (tests call it directly)."""

    name = "worker"

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Do one round; return how much was done (non-zero: run again at once)."""
        raise NotImplementedError

    def next_wait_s(self) -> float:
        """How long to sleep after a round that did nothing (unless woken)."""
        return self._interval_s

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
                busy = self.run_once()
            except Exception:  # a failing round (DB down, say) must not end the loop
                log.exception("worker.step_failed", extra={"worker": self.name})
                busy = 0
            if not busy:
                self._wake.wait(self.next_wait_s())

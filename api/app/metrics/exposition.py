"""What a scrape shows, and the listener of its own (METRICS_PORT) that one worker holds."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import generate_latest, start_http_server
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from app.config import Refusal, Settings
from app.metrics.events import events
from app.metrics.state import JobStateCollector

log = logging.getLogger(__name__)


class Exporter(Collector):
    """Everything one scrape shows: the jobs' state, then the events of every worker (from
    PROMETHEUS_MULTIPROC_DIR when set, otherwise this process's own)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._settings = settings
        self._state = JobStateCollector(sessions)
        directory = settings.prometheus_multiproc_dir
        own = events().registry  # made now, so a scrape shows every metric from the start
        self._events: Collector = (
            MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]
            if directory
            else own
        )
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._state.collect()
        yield from self._events.collect()

    def render(self) -> bytes:
        return generate_latest(self)

    def start(self) -> None:
        """Listen on METRICS_PORT if it is set and no other worker of this API already does
        (only one process can bind it; any of them shows every worker's events)."""
        settings = self._settings
        if not settings.metrics_enabled or not settings.metrics_port:
            return
        host, port = settings.metrics_host, settings.metrics_port
        try:
            self._server = start_http_server(port, host, registry=self)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise Refusal(f"METRICS_PORT={port} cannot be bound on {host}: {exc}") from None
            if settings.web_concurrency == 1:
                raise Refusal(
                    f"METRICS_PORT={port} is already in use on {host}: choose another port"
                ) from None
            log.info("metrics.port_held_by_another_worker", extra={"port": port})
            return
        log.info("metrics.listening", extra={"host": host, "port": port})

    def stop(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._server = None

"""A real API on a loopback port, for tests that use it the way people do: the upload page in
Chromium, the CLI in a subprocess. Uvicorn runs the app (lifespan, background dispatcher and
the Local orchestrator with the fixture model) in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import uvicorn

from app.bootstrap import add_admin_key
from app.config import Settings
from app.main import create_app
from tests.api.conftest import SettingsFactory
from tests.conftest import ROOT
from tests.support.net import free_port

MODEL = ROOT / "tests" / "fixtures" / "model" / "shapes.pt"

StartApi = Callable[..., str]


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """Serve the app on a free port until the block ends; yields its base URL. The settings'
    ADMIN_API_KEY is stored first, as bootstrap does."""
    add_admin_key(settings)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_config=None,  # the app configures logging itself
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"live-api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start (see the log above)")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def start_api(make_settings: SettingsFactory) -> Iterator[StartApi]:
    """`start_api(**settings)` -> base URL of a running API on this test's fresh database.
    By default: background workers on, the fixture model, two detections at a time."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> str:
            values: dict[str, Any] = {
                "model": str(MODEL),
                "workers_enabled": True,
                "local_max_parallel": 2,
                **overrides,
            }
            return stack.enter_context(serve(make_settings(**values)))

        yield start

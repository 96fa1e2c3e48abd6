"""A real API on a loopback port, for tests that use it the way people do: the upload page in
Chromium, the CLI in a subprocess. Uvicorn runs the app (lifespan, background dispatcher and
the Local orchestrator with the fixture model) in a thread of the test process. Also the calls
tests make to it over HTTP with the admin key. tests/conftest.py registers this module as a
pytest plugin (the `start_api` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from app.bootstrap import add_admin_key
from app.config import Settings
from app.main import create_app
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer
from tests.support.net import free_port
from tests.support.paths import FIXTURE_MODEL
from tests.support.wait import wait_until

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
    wait_until(
        lambda: server.started or not thread.is_alive(),
        30,
        what="the API to start",
        interval_s=0.05,
    )
    if not server.started:
        raise RuntimeError("the API did not start (see the log above)")
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
                "model": str(FIXTURE_MODEL),
                "workers_enabled": True,
                "local_max_parallel": 2,
                **overrides,
            }
            return stack.enter_context(serve(make_settings(**values)))

        yield start


def api_jobs(url: str, key: str = ADMIN_KEY) -> list[dict[str, Any]]:
    """The jobs the key sees (the admin key: everyone's)."""
    response = httpx.get(f"{url}/v1/jobs", headers=bearer(key))
    response.raise_for_status()
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def new_key(url: str, name: str) -> str:
    """A new (non-admin) API key, made over HTTP with the admin key."""
    response = httpx.post(f"{url}/v1/keys", json={"name": name}, headers=bearer(ADMIN_KEY))
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def revoke_key(url: str, name: str) -> None:
    response = httpx.delete(f"{url}/v1/keys/{name}", headers=bearer(ADMIN_KEY))
    assert response.status_code == 200, response.text

"""The API inside the test process: one Postgres server for the run, a fresh database per test
(cloned from one migrated with the project's Alembic migrations), the settings tests start
from, and the app behind a TestClient that sends an API key of its own. tests/conftest.py
registers this module as a pytest plugin, so these fixtures reach every test directory."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.bootstrap import add_admin_key, migrate
from app.config import Settings
from app.deps import Resources
from app.keys import service as keys
from app.main import create_app
from tests.support.paths import ROOT
from tests.support.postgres import ThrowawayCluster

TEMPLATE_DB = "yolo_template"
CALLBACK_TOKEN = "test-callback-token"
# The admin key tests' settings carry (as ADMIN_API_KEY in .env would); bootstrap stores it.
ADMIN_KEY = "yk_test-admin-key-0123456789abcdefghijklmnop"

SettingsFactory = Callable[..., Settings]
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """The Postgres server of TEST_DATABASE_URL or DATABASE_URL when given (its user must be
    allowed to create databases: each test gets its own, cloned from a migrated template);
    otherwise a cluster started from the machine's PostgreSQL binaries, removed afterwards."""
    given = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if given.startswith("postgresql"):
        yield given
        return
    cluster = ThrowawayCluster()
    cluster.start()
    try:
        yield cluster.admin_url
    finally:
        cluster.destroy()


def _admin_execute(admin_url: str, *statements: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> str:
    _admin_execute(
        postgres_admin_url,
        f"DROP DATABASE IF EXISTS {TEMPLATE_DB}",
        f"CREATE DATABASE {TEMPLATE_DB}",
    )
    url = make_url(postgres_admin_url).set(database=TEMPLATE_DB)
    migrate(url.render_as_string(hide_password=False))
    return TEMPLATE_DB


@pytest.fixture
def database_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    name = f"yolo_test_{next(_counter)}"
    _admin_execute(postgres_admin_url, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    _admin_execute(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    path = tmp_path / "shared-data"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(database_url: str, shared_dir: Path) -> SettingsFactory:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "shared_data_dir": shared_dir,
            "orchestrator": "local",
            "callback_token": CALLBACK_TOKEN,
            "admin_api_key": ADMIN_KEY,
            "min_free_bytes": 0,  # the test machine's disk is not the subject
            "local_detect_script": ROOT / "flows" / "detect.py",
            "workers_enabled": False,  # tests step the workers themselves
            "batch_window_s": 0,  # tests that are not about the window don't wait for it
            "max_upload_bytes": 2 * 1024 * 1024,
            "max_image_pixels": 4_000_000,
            "max_files_per_request": 4,
        }
        return Settings(**{**values, **overrides})

    return factory


@pytest.fixture
def client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    with keyed_client(make_settings()) as test_client:
        yield test_client


@contextmanager
def keyed_client(settings: Settings, **options: Any) -> Iterator[TestClient]:
    """A client of a new app that sends a (non-admin) key of its own on every request; the
    settings' ADMIN_API_KEY is stored first, as bootstrap does."""
    add_admin_key(settings)
    with TestClient(create_app(settings), **options) as test_client:
        test_client.headers.update(bearer(issue_key(test_client, f"tester-{next(_counter)}")))
        yield test_client


def issue_key(test_client: TestClient, name: str, *, admin: bool = False) -> str:
    """A new API key (what `python -m app.keys create` does)."""
    with resources_of(test_client).sessions() as session:
        _, raw = keys.create(session, name, admin=admin)
        session.commit()
    return raw


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def resources_of(test_client: TestClient) -> Resources:
    app = test_client.app
    assert isinstance(app, FastAPI)
    resources: Resources = app.state.resources
    return resources

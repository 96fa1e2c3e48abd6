"""API fixtures on top of tests/support/api_app.py's (database, settings, `client`): the
Kestra stand-in and a client of an app that sends its jobs there (also with webhooks on); a
client of an app that runs them with the fixture model through the Local orchestrator; a
webhook receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.factories import kestra_settings
from tests.support.api_app import SettingsFactory, keyed_client
from tests.support.kestra import KestraStandin
from tests.support.net import free_port
from tests.support.paths import FIXTURE_MODEL
from tests.support.webhooks import Receiver, webhook_settings


@pytest.fixture
def kestra() -> Iterator[KestraStandin]:
    standin = KestraStandin(free_port())
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def kestra_client(make_settings: SettingsFactory, kestra: KestraStandin) -> Iterator[TestClient]:
    with keyed_client(make_settings(**kestra_settings(kestra))) as test_client:
        yield test_client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def webhook_client(make_settings: SettingsFactory, kestra: KestraStandin) -> Iterator[TestClient]:
    """Jobs go to the stand-in; their ends to callback URLs (loopback allowed)."""
    settings = make_settings(**kestra_settings(kestra), **webhook_settings())
    with keyed_client(settings) as test_client:
        yield test_client


@pytest.fixture
def local_client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    settings = make_settings(
        model=str(FIXTURE_MODEL), confidence=0.25, image_size=640, max_files_per_request=32
    )
    with keyed_client(settings) as test_client:
        yield test_client

"""The webhook worker: with several API processes each outbox row is delivered once, and a
restart between attempts loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient

from tests.api.factories import (
    deliver_until,
    deliverer_of,
    ended_job,
    kestra_settings,
    webhook_of,
    webhook_settings,
)
from tests.support.api_app import SettingsFactory, keyed_client
from tests.support.kestra import KestraStandin
from tests.support.webhooks import Receiver

WebhookApp = Callable[[], AbstractContextManager[TestClient]]


@pytest.fixture
def webhook_app(make_settings: SettingsFactory, kestra: KestraStandin) -> WebhookApp:
    """Clients of new app instances (processes' worth) on one database."""
    settings = make_settings(**kestra_settings(kestra), **webhook_settings())
    return lambda: keyed_client(settings)


def test_two_workers_deliver_each_webhook_once(
    webhook_app: WebhookApp, kestra: KestraStandin, receiver: Receiver
) -> None:
    """Each uvicorn worker runs its own deliverer: SKIP LOCKED gives every row to one."""
    with webhook_app() as one, webhook_app() as two:
        ids = [ended_job(one, kestra, receiver.url(f"/{n}")) for n in range(6)]
        start = threading.Barrier(2)

        def drain(client: TestClient) -> int:
            start.wait()
            sent = 0
            while made := deliverer_of(client).run_once():
                sent += made
            return sent

        with ThreadPoolExecutor(2) as pool:
            sent = list(pool.map(drain, (one, two)))
        assert sum(sent) == len(ids)
        assert sorted(r.path for r in receiver.received) == [f"/{n}" for n in range(6)]
        assert len(set(receiver.ids())) == len(ids)
        assert {webhook_of(one, job_id)["state"] for job_id in ids} == {"delivered"}


def test_a_restart_between_attempts_loses_nothing(
    webhook_app: WebhookApp, kestra: KestraStandin, receiver: Receiver
) -> None:
    receiver.stop()
    with webhook_app() as before:
        job_id = ended_job(before, kestra, receiver.url())
        assert deliverer_of(before).run_once() == 1  # refused: the receiver is down
        first = webhook_of(before, job_id)
        headers = dict(before.headers)
    assert (first["state"], first["attempts"]) == ("pending", 1)
    receiver.start()
    with webhook_app() as after:
        after.headers.update(headers)  # the same key: its owner
        webhook = deliver_until(after, job_id, "delivered")
    assert webhook["attempts"] == 2
    (received,) = receiver.received
    assert received.job["id"] == job_id

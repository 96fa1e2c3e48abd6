"""The webhook worker: with several API processes each outbox row is delivered once, and a
restart between attempts loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.jobs.service import utcnow
from app.webhooks.models import Delivery
from tests.api.factories import (
    deliver_until,
    deliverer_of,
    ended_job,
    kestra_settings,
    webhook_of,
)
from tests.support.api_app import SettingsFactory, keyed_client, resources_of
from tests.support.kestra import KestraStandin
from tests.support.webhooks import Receiver, webhook_settings

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


def cut_short(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """One attempt that dies after its POST, before its outcome is recorded; then its lease
    runs out."""
    deliverer = deliverer_of(client)

    def crash(*_: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(deliverer, "_record", crash)
    with pytest.raises(SystemExit):
        deliverer.run_once()
    monkeypatch.undo()
    assert deliverer.run_once() == 0  # leased: not due yet
    with resources_of(client).sessions() as session:
        session.execute(update(Delivery).values(next_attempt_at=utcnow()))
        session.commit()


def test_an_attempt_cut_short_is_made_again_under_the_same_id(
    webhook_app: WebhookApp,
    kestra: KestraStandin,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At least once: the row is sent again, with the same webhook-id and body."""
    with webhook_app() as before:
        job_id = ended_job(before, kestra, receiver.url())
        cut_short(before, monkeypatch)
        leased = webhook_of(before, job_id)
        assert (leased["state"], leased["attempts"]) == ("pending", 1)
    with webhook_app() as after:
        assert deliverer_of(after).run_once() == 1
    first, second = receiver.received
    assert first.webhook_id == second.webhook_id
    assert first.job == second.job


def test_a_last_attempt_cut_short_fails_the_webhook_without_another(
    make_settings: SettingsFactory,
    kestra: KestraStandin,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(**kestra_settings(kestra), **webhook_settings(webhook_max_attempts=1))
    with keyed_client(settings) as client:
        job_id = ended_job(client, kestra, receiver.url())
        cut_short(client, monkeypatch)
        assert deliverer_of(client).run_once() == 1
        webhook = webhook_of(client, job_id)
    assert (webhook["state"], webhook["attempts"]) == ("failed", 1)
    assert "outcome was lost" in webhook["last_error"]
    assert len(receiver.received) == 1

"""Job-end webhooks reach a real receiver on loopback that checks their signatures: once per
job, the job's JSON, the same webhook-id on every attempt, retried until a 2xx or the last
attempt, the state on the job."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.webhooks.models import Delivery
from tests.api.factories import (
    deliver_until,
    deliverer_of,
    ended_job,
    kestra_settings,
    webhook_of,
)
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer, keyed_client, resources_of
from tests.support.images import encode
from tests.support.kestra import KestraStandin
from tests.support.metrics import change, scrape
from tests.support.webhooks import Receiver, webhook_settings

DELIVERIES = "yolo_webhook_deliveries_total"


def delivery_id(client: TestClient, job_id: str) -> str:
    with resources_of(client).sessions() as session:
        found = session.scalar(select(Delivery.id).where(Delivery.job_id == job_id))
    assert found is not None
    return found


@pytest.mark.parametrize(("state", "status"), [("SUCCESS", "succeeded"), ("FAILED", "failed")])
def test_a_job_that_ends_is_posted_once_signed_with_its_json(
    webhook_client: TestClient, kestra: KestraStandin, receiver: Receiver, state: str, status: str
) -> None:
    job_id = ended_job(webhook_client, kestra, receiver.url(), state)
    job = webhook_client.get(f"/v1/jobs/{job_id}").json()
    assert job["webhook"] == {
        "url": receiver.url(),
        "state": "pending",
        "attempts": 0,
        "last_error": None,
        "next_attempt_at": job["webhook"]["next_attempt_at"],
        "delivered_at": None,
    }
    deliverer = deliverer_of(webhook_client)
    assert deliverer.run_once() == 1
    assert deliverer.run_once() == 0  # nothing left to send
    (received,) = receiver.received  # verified by the receiver with the library
    assert receiver.forged == []
    assert received.path == "/hook"
    assert received.webhook_id == delivery_id(webhook_client, job_id)
    del job["webhook"]
    assert received.job == job  # the job's JSON as GET shows it, as it ended
    assert received.job["status"] == status
    webhook = webhook_of(webhook_client, job_id)
    assert (webhook["state"], webhook["attempts"], webhook["last_error"]) == ("delivered", 1, None)
    assert webhook["delivered_at"] is not None


def test_a_job_without_callback_url_posts_nothing(
    webhook_client: TestClient, kestra: KestraStandin, receiver: Receiver
) -> None:
    job_id = ended_job(webhook_client, kestra, None)
    assert webhook_of(webhook_client, job_id) is None
    assert deliverer_of(webhook_client).run_once() == 0
    assert receiver.received == []


def test_a_receiver_that_is_down_gets_it_when_back_with_the_same_id(
    webhook_client: TestClient, kestra: KestraStandin, receiver: Receiver
) -> None:
    receiver.stop()
    job_id = ended_job(webhook_client, kestra, receiver.url())
    assert deliverer_of(webhook_client).run_once() == 1
    webhook = webhook_of(webhook_client, job_id)
    assert (webhook["state"], webhook["attempts"]) == ("pending", 1)
    assert "ConnectError" in webhook["last_error"]
    receiver.start()
    webhook = deliver_until(webhook_client, job_id, "delivered")
    assert webhook["attempts"] >= 2
    assert receiver.ids() == [delivery_id(webhook_client, job_id)]


def test_an_error_answer_is_retried_under_the_same_id(
    webhook_client: TestClient, kestra: KestraStandin, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    before = scrape(webhook_client)
    job_id = ended_job(webhook_client, kestra, receiver.url())
    webhook = deliver_until(webhook_client, job_id, "delivered")
    assert webhook["attempts"] == 2
    after = scrape(webhook_client)
    for outcome, attempts in (("retrying", 1), ("delivered", 1), ("failed", 0)):
        assert change(before, after, DELIVERIES, outcome=outcome) == attempts
    first, second = receiver.received
    assert first.webhook_id == second.webhook_id == delivery_id(webhook_client, job_id)
    assert first.job == second.job  # the same frozen body


def test_after_the_last_attempt_the_webhook_has_failed(
    make_settings: SettingsFactory, kestra: KestraStandin, receiver: Receiver
) -> None:
    settings = make_settings(**kestra_settings(kestra), **webhook_settings(webhook_max_attempts=3))
    receiver.statuses = [503] * 10
    with keyed_client(settings) as client:
        before = scrape(client)
        job_id = ended_job(client, kestra, receiver.url())
        webhook = deliver_until(client, job_id, "failed")
        assert deliverer_of(client).run_once() == 0
        after = scrape(client)
    for outcome, attempts in (("retrying", 2), ("delivered", 0), ("failed", 1)):
        assert change(before, after, DELIVERIES, outcome=outcome) == attempts
    assert (webhook["attempts"], webhook["last_error"]) == (3, "HTTP 503")
    assert webhook["next_attempt_at"] is None
    assert len(receiver.received) == 3


def test_a_keys_default_url_is_used_when_the_upload_names_none(
    webhook_client: TestClient, kestra: KestraStandin, receiver: Receiver
) -> None:
    default = receiver.url("/key-default", host="localhost")  # resolved, then pinned
    created = webhook_client.post(
        "/v1/keys", json={"name": "with-hook", "callback_url": default}, headers=bearer(ADMIN_KEY)
    )
    assert created.status_code == 201, created.text
    assert created.json()["callback_url"] == default
    webhook_client.headers.update(bearer(created.json()["key"]))
    job_id = ended_job(webhook_client, kestra, None)
    assert webhook_of(webhook_client, job_id)["url"] == default
    deliver_until(webhook_client, job_id, "delivered")
    (received,) = receiver.received
    assert received.path == "/key-default"
    assert received.host == f"localhost:{receiver.port}"  # the name, though sent to its address
    named = ended_job(webhook_client, kestra, receiver.url("/named"))  # the upload's wins
    assert webhook_of(webhook_client, named)["url"] == receiver.url("/named")


def test_an_idempotent_retry_names_the_same_callback_url(
    webhook_client: TestClient, receiver: Receiver
) -> None:
    files = [("files", ("a.png", encode("PNG", 40, 30)))]
    key = {"Idempotency-Key": "upload-1"}

    def post(url: str) -> list[str]:
        response = webhook_client.post(
            "/v1/uploads", files=files, data={"callback_url": url}, headers=key
        )
        if response.status_code != 202:
            return [response.json()["error"]["code"]]
        return [job["id"] for job in response.json()["jobs"]]

    first = post(receiver.url())
    assert post(receiver.url()) == first
    assert post(receiver.url("/other")) == ["idempotency_key_reused"]


def test_a_deleted_job_takes_its_pending_webhook_along(
    webhook_client: TestClient, kestra: KestraStandin, receiver: Receiver
) -> None:
    job_id = ended_job(webhook_client, kestra, receiver.url())
    assert webhook_client.delete(f"/v1/jobs/{job_id}").status_code == 204
    with resources_of(webhook_client).sessions() as session:
        assert session.scalars(select(Delivery).where(Delivery.job_id == job_id)).all() == []
    assert deliverer_of(webhook_client).run_once() == 0
    assert receiver.received == []

"""Events observed where they happen, with the values the jobs' own rows and Kestra's end
dates give; only once their transaction commits."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jobs import service
from app.jobs.models import Job
from app.metrics.events import record_webhook_delivery
from tests.api.factories import (
    DETECTION,
    callback,
    execution_of,
    submitted_batch,
    submitted_job,
    write_result,
    write_success,
)
from tests.api.workers.test_reconciler import reconcile_late
from tests.support.api_app import resources_of
from tests.support.kestra import KestraStandin
from tests.support.metrics import change, scrape


def rows(client: TestClient, job_ids: list[str]) -> list[Job]:
    with resources_of(client).sessions() as session:
        return list(session.scalars(select(Job).where(Job.id.in_(job_ids))))


def end_date(kestra: KestraStandin, execution_id: str) -> datetime:
    return datetime.fromisoformat(kestra.state.executions[execution_id]["state"]["endDate"])


def test_a_batch_through_its_callback_is_observed_in_every_histogram(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    before = scrape(kestra_client)
    job_ids, batch_id = submitted_batch(kestra_client, 3)
    for job_id in job_ids:
        write_success(kestra_client, job_id, [DETECTION], inference_ms=12.5)
    callback(kestra_client, kestra, batch_id, "SUCCESS")
    after = scrape(kestra_client)
    jobs = rows(kestra_client, job_ids)

    assert change(before, after, "yolo_batch_size_count") == 1
    assert change(before, after, "yolo_batch_size_sum") == 3
    assert change(before, after, "yolo_batch_size_bucket", le="2.0") == 0
    assert change(before, after, "yolo_batch_size_bucket", le="4.0") == 1

    waited = sum(
        (job.submitted_at - job.created_at).total_seconds() for job in jobs if job.submitted_at
    )
    assert change(before, after, "yolo_dispatch_latency_seconds_count") == 3
    assert change(before, after, "yolo_dispatch_latency_seconds_sum") == pytest.approx(waited)

    took = sum(
        (job.finished_at - job.created_at).total_seconds() for job in jobs if job.finished_at
    )
    succeeded = {"status": "succeeded"}
    assert change(before, after, "yolo_job_duration_seconds_count", **succeeded) == 3
    assert change(before, after, "yolo_job_duration_seconds_sum", **succeeded) == pytest.approx(
        took
    )
    assert change(before, after, "yolo_job_duration_seconds_count", status="failed") == 0

    # 12.5 ms each: above the 10 ms bucket, within the 25 ms one.
    assert change(before, after, "yolo_inference_seconds_count") == 3
    assert change(before, after, "yolo_inference_seconds_sum") == pytest.approx(0.0375)
    assert change(before, after, "yolo_inference_seconds_bucket", le="0.01") == 0
    assert change(before, after, "yolo_inference_seconds_bucket", le="0.025") == 3

    ended = end_date(kestra, execution_of(kestra_client, batch_id))
    lag = sum((job.finished_at - ended).total_seconds() for job in jobs if job.finished_at)
    assert change(before, after, "yolo_callback_lag_seconds_count", via="callback") == 3
    assert change(before, after, "yolo_callback_lag_seconds_sum", via="callback") == pytest.approx(
        lag
    )
    assert change(before, after, "yolo_callback_lag_seconds_count", via="poll") == 0


def test_a_lost_callback_is_timed_from_the_execution_end_to_the_poll(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_success(kestra_client, job_id, [DETECTION])
    execution_id = execution_of(kestra_client, batch_id)
    kestra.state.set_state(execution_id, "SUCCESS")  # ...and the callback was dropped
    before = scrape(kestra_client)
    reconcile_late(kestra_client)
    after = scrape(kestra_client)
    (job,) = rows(kestra_client, [job_id])
    assert job.status == "succeeded"
    assert job.finished_at is not None
    lag = (job.finished_at - end_date(kestra, execution_id)).total_seconds()
    assert change(before, after, "yolo_callback_lag_seconds_count", via="poll") == 1
    assert change(before, after, "yolo_callback_lag_seconds_sum", via="poll") == pytest.approx(lag)
    assert change(before, after, "yolo_callback_lag_seconds_count", via="callback") == 0


def test_a_failed_job_is_timed_as_failed_and_has_no_inference_time(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_result(kestra_client, job_id, status="failed", error="cannot decode the image")
    before = scrape(kestra_client)
    assert callback(kestra_client, kestra, batch_id, "SUCCESS") == {job_id: "failed"}
    after = scrape(kestra_client)
    assert change(before, after, "yolo_job_duration_seconds_count", status="failed") == 1
    assert change(before, after, "yolo_job_duration_seconds_count", status="succeeded") == 0
    assert change(before, after, "yolo_inference_seconds_count") == 0


def test_a_rolled_back_transition_is_not_counted_and_its_retry_once(
    kestra_client: TestClient,
) -> None:
    _, batch_id = submitted_job(kestra_client)
    sessions = resources_of(kestra_client).sessions
    before = scrape(kestra_client)
    for end, failed in ((Session.rollback, 0), (Session.commit, 1)):
        with sessions() as session:
            service.fail_batch(session, batch_id, "refused")
            end(session)
        after = scrape(kestra_client)
        assert change(before, after, "yolo_job_duration_seconds_count", status="failed") == failed


def test_webhook_deliveries_are_counted_by_outcome(client: TestClient) -> None:
    before = scrape(client)
    record_webhook_delivery("delivered")
    record_webhook_delivery("delivered")
    record_webhook_delivery("failed")
    after = scrape(client)
    assert change(before, after, "yolo_webhook_deliveries_total", outcome="delivered") == 2
    assert change(before, after, "yolo_webhook_deliveries_total", outcome="failed") == 1

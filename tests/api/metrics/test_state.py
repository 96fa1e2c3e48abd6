"""The jobs' state, read from the database at each scrape."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.db import make_engine, make_session_factory
from app.jobs.models import JobStatus
from app.metrics.state import JobStateCollector
from tests.api.factories import callback, submitted_batch, upload, write_success
from tests.support.api_app import SettingsFactory, resources_of
from tests.support.kestra import KestraStandin
from tests.support.metrics import Samples, scrape, value
from tests.support.net import free_port

FAMILIES = {
    "yolo_database_up",
    "yolo_jobs",
    "yolo_queue_depth",
    "yolo_queue_oldest_age_seconds",
    "yolo_batch_size_count",
    "yolo_dispatch_latency_seconds_count",
    "yolo_job_duration_seconds_count",
    "yolo_inference_seconds_count",
    "yolo_callback_lag_seconds_count",
}


def jobs(samples: Samples) -> dict[str, float]:
    return {status.value: value(samples, "yolo_jobs", status=status) for status in JobStatus}


def counts(**given: int) -> dict[str, float]:
    """Every status, with these counts and 0 for the rest."""
    return {status.value: given.get(status.value, 0) for status in JobStatus}


def test_a_scrape_parses_and_needs_no_key(client: TestClient) -> None:
    samples = scrape(client)  # with a key that is not valid
    assert {name for name, _ in samples} >= FAMILIES
    assert value(samples, "yolo_database_up") == 1
    assert jobs(samples) == counts()
    assert value(samples, "yolo_queue_oldest_age_seconds") == 0
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer not-a-key"}).status_code == 401


def test_jobs_by_status_and_the_queue_follow_the_jobs(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    upload(kestra_client, 2)
    samples = scrape(kestra_client)
    assert jobs(samples) == counts(queued=2)
    assert value(samples, "yolo_queue_depth") == 2
    assert value(samples, "yolo_queue_oldest_age_seconds") > 0

    resources_of(kestra_client).dispatcher.run_once()
    job_ids, batch_id = submitted_batch(kestra_client, 1)
    upload(kestra_client, 1)
    samples = scrape(kestra_client)
    assert jobs(samples) == counts(queued=1, submitted=3)
    assert value(samples, "yolo_queue_depth") == 1

    write_success(kestra_client, job_ids[0], [])
    callback(kestra_client, kestra, batch_id, "SUCCESS")
    resources_of(kestra_client).dispatcher.run_once()
    samples = scrape(kestra_client)
    assert jobs(samples) == counts(submitted=3, succeeded=1)
    assert value(samples, "yolo_queue_depth") == 0
    assert value(samples, "yolo_queue_oldest_age_seconds") == 0


def test_a_database_that_does_not_answer_shows_as_down(make_settings: SettingsFactory) -> None:
    nowhere = f"postgresql+psycopg2://u:p@127.0.0.1:{free_port()}/none"
    engine = make_engine(make_settings(database_url=nowhere, db_connect_timeout_s=1))
    try:
        families = list(JobStateCollector(make_session_factory(engine)).collect())
    finally:
        engine.dispose()
    assert [(family.name, [s.value for s in family.samples]) for family in families] == [
        ("yolo_database_up", [0])
    ]

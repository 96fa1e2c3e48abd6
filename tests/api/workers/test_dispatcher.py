"""The dispatcher: queued jobs reach Kestra exactly once, whatever fails in between."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.jobs.models import Job
from app.jobs.service import utcnow
from app.main import create_app
from tests.api.conftest import SettingsFactory, kestra_settings, resources_of
from tests.api.test_jobs import upload
from tests.support.kestra_standin import KestraStandin


def make_due(client: TestClient) -> None:
    """Skip the back-off wait instead of sleeping through it."""
    with resources_of(client).sessions() as session:
        session.execute(update(Job).values(next_dispatch_at=utcnow() - timedelta(seconds=1)))
        session.commit()


def statuses(client: TestClient, ids: list[str]) -> list[str]:
    return [client.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in ids]


def test_queued_jobs_are_submitted_with_their_label(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    ids = upload(kestra_client, 3)
    assert resources_of(kestra_client).dispatcher.run_once() == 3
    assert statuses(kestra_client, ids) == ["submitted"] * 3
    for job_id in ids:
        (execution,) = kestra.state.by_job(job_id)
        assert kestra_client.get(f"/v1/jobs/{job_id}").json()["execution_id"] == execution["id"]
        assert execution["inputs"]["image_path"].startswith(f"uploads/{job_id}.")


def test_kestra_down_then_up_loses_no_job(kestra_client: TestClient, kestra: KestraStandin) -> None:
    kestra.stop()
    ids = upload(kestra_client, 3)
    dispatcher = resources_of(kestra_client).dispatcher
    dispatcher.run_once()
    assert statuses(kestra_client, ids) == ["queued"] * 3
    assert dispatcher.run_once() == 0  # backing off, not hammering
    kestra.start()
    make_due(kestra_client)
    assert dispatcher.run_once() == 3
    assert statuses(kestra_client, ids) == ["submitted"] * 3
    assert all(len(kestra.state.by_job(job_id)) == 1 for job_id in ids)


def test_kestra_5xx_keeps_jobs_queued(kestra_client: TestClient, kestra: KestraStandin) -> None:
    kestra.state.faults.fail_next = 1000
    ids = upload(kestra_client, 2)
    resources_of(kestra_client).dispatcher.run_once()
    assert statuses(kestra_client, ids) == ["queued"] * 2
    kestra.state.faults.fail_next = 0
    make_due(kestra_client)
    resources_of(kestra_client).dispatcher.run_once()
    assert statuses(kestra_client, ids) == ["submitted"] * 2
    assert all(len(kestra.state.by_job(job_id)) == 1 for job_id in ids)


def test_crash_between_commit_and_dispatch_is_sent_after_restart(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**kestra_settings(kestra))
    with TestClient(create_app(settings)) as first:
        ids = upload(first, 2)  # committed, never dispatched: the process "dies" here
    assert kestra.state.executions == {}
    with TestClient(create_app(settings)) as second:
        resources_of(second).dispatcher.run_once()
        assert statuses(second, ids) == ["submitted"] * 2


def test_crash_after_submit_adopts_the_execution_instead_of_starting_another(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    (job_id,) = upload(kestra_client)
    resources = resources_of(kestra_client)
    # Kestra created the execution, but we died before recording it: the attempt is
    # counted and the job still queued.
    kestra.state.faults.create_then_fail = True
    resources.dispatcher.run_once()
    assert len(kestra.state.by_job(job_id)) == 1
    with resources.sessions() as session:
        session.execute(
            update(Job).values(status="queued", execution_id=None, next_dispatch_at=utcnow())
        )
        session.commit()
    resources.dispatcher.run_once()
    (execution,) = kestra.state.by_job(job_id)
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["execution_id"]) == ("submitted", execution["id"])


def test_bad_credentials_keep_jobs_queued(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**{**kestra_settings(kestra), "kestra_password": "Wrong1234"})
    with TestClient(create_app(settings)) as client:
        ids = upload(client)
        resources_of(client).dispatcher.run_once()
        job = client.get(f"/v1/jobs/{ids[0]}").json()
    assert job["status"] == "queued"


def test_inputs_refused_by_kestra_fail_the_job(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**kestra_settings(kestra), model="bad model name; rm -rf /")
    with TestClient(create_app(settings)) as client:
        (job_id,) = upload(client)
        resources_of(client).dispatcher.run_once()
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "422" in job["error"]
    assert kestra.state.executions == {}


def test_background_dispatch_runs_on_upload(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    import time

    settings = make_settings(**kestra_settings(kestra), workers_enabled=True)
    with TestClient(create_app(settings)) as client:
        ids = upload(client, 2)
        deadline = time.monotonic() + 10
        while statuses(client, ids) != ["submitted"] * 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statuses(client, ids) == ["submitted"] * 2

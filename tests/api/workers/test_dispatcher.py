"""The dispatcher: queued jobs reach Kestra exactly once, in micro-batches, whatever fails in
between."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.jobs.models import Job
from app.jobs.service import utcnow
from tests.api.factories import kestra_settings, upload
from tests.support.api_app import SettingsFactory, keyed_client, resources_of
from tests.support.kestra import KestraStandin, jobs_of
from tests.support.wait import wait_until


def make_due(client: TestClient) -> None:
    """Skip the back-off wait instead of sleeping through it."""
    with resources_of(client).sessions() as session:
        session.execute(update(Job).values(next_dispatch_at=utcnow() - timedelta(seconds=1)))
        session.commit()


def statuses(client: TestClient, ids: list[str]) -> list[str]:
    return [client.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in ids]


def label(execution: dict[str, Any], key: str) -> str | None:
    return next((i["value"] for i in execution["labels"] if i["key"] == key), None)


def test_queued_jobs_travel_as_one_labelled_batch(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    ids = upload(kestra_client, 3)
    assert resources_of(kestra_client).dispatcher.run_once() == 3
    assert statuses(kestra_client, ids) == ["submitted"] * 3
    (execution,) = kestra.state.executions.values()
    assert list(jobs_of(execution)) == ids  # in upload order
    jobs = [kestra_client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    for job in jobs:
        assert jobs_of(execution)[job["id"]].startswith(f"uploads/{job['id']}.")
        assert job["execution_id"] == execution["id"]
        assert job["batch_id"] == execution["inputs"]["batch_id"] == label(execution, "batch_id")


def test_a_batch_holds_at_most_batch_max_jobs(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**kestra_settings(kestra), batch_max_jobs=2)
    with keyed_client(settings) as client:
        ids = upload(client, 3)
        dispatcher = resources_of(client).dispatcher
        assert dispatcher.run_once() == 2  # oldest first
        assert dispatcher.run_once() == 1
        sizes = sorted(len(jobs_of(e)) for e in kestra.state.executions.values())
        assert sizes == [1, 2]
        assert [len(kestra.state.by_job(job_id)) for job_id in ids] == [1, 1, 1]


def test_jobs_with_different_parameters_travel_apart(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    ids = upload(kestra_client, 3)
    with resources_of(kestra_client).sessions() as session:
        session.execute(update(Job).where(Job.id == ids[1]).values(confidence=0.6))
        session.commit()
    assert resources_of(kestra_client).dispatcher.run_once() == 3
    by_confidence = {
        e["inputs"]["confidence"]: sorted(jobs_of(e)) for e in kestra.state.executions.values()
    }
    assert by_confidence == {0.25: sorted([ids[0], ids[2]]), 0.6: [ids[1]]}


def test_the_window_holds_a_partial_batch_until_its_oldest_job_is_old_enough(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**kestra_settings(kestra), batch_window_s=60, batch_max_jobs=4)
    with keyed_client(settings) as client:
        dispatcher = resources_of(client).dispatcher
        first = upload(client)
        assert dispatcher.run_once() == 0  # held: more may join
        assert 0 < dispatcher.next_wait_s() <= settings.dispatch_interval_s
        second = upload(client, 2)
        assert dispatcher.run_once() == 0
        with resources_of(client).sessions() as session:  # the oldest job's window is over
            session.execute(
                update(Job)
                .where(Job.id == first[0])
                .values(created_at=utcnow() - timedelta(seconds=61))
            )
            session.commit()
        assert dispatcher.run_once() == 3
        (execution,) = kestra.state.executions.values()
        assert set(jobs_of(execution)) == {*first, *second}


def test_the_window_sleep_ends_when_the_oldest_job_is_due(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(
        **kestra_settings(kestra), batch_window_s=5, dispatch_interval_s=30, batch_max_jobs=4
    )
    with keyed_client(settings) as client:
        dispatcher = resources_of(client).dispatcher
        upload(client)
        assert dispatcher.run_once() == 0
        # The loop sleeps until the window closes (at most 5 s), not a whole 30 s interval.
        assert 0 < dispatcher.next_wait_s() <= 5


def test_a_full_batch_leaves_without_waiting_for_the_window(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**kestra_settings(kestra), batch_window_s=60, batch_max_jobs=3)
    with keyed_client(settings) as client:
        ids = upload(client, 3)
        assert resources_of(client).dispatcher.run_once() == 3
        assert statuses(client, ids) == ["submitted"] * 3


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


def test_a_retried_batch_is_resent_whole_under_its_id(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**kestra_settings(kestra), batch_max_jobs=3)
    with keyed_client(settings) as client:
        kestra.state.faults.fail_next = 1000
        ids = upload(client, 3)
        dispatcher = resources_of(client).dispatcher
        dispatcher.run_once()
        with resources_of(client).sessions() as session:
            batch_ids = set(session.scalars(select(Job.batch_id)))
        assert len(batch_ids) == 1
        assert None not in batch_ids
        later = upload(client, 2)  # newer jobs must not join (or split) the earlier batch
        kestra.state.faults.fail_next = 0
        make_due(client)
        assert dispatcher.run_once() == 3  # the earlier batch, whole
        assert dispatcher.run_once() == 2
        executions = {
            label(e, "batch_id"): set(jobs_of(e)) for e in kestra.state.executions.values()
        }
        assert executions[batch_ids.pop()] == set(ids)
        assert set(later) in executions.values()
        assert statuses(client, ids + later) == ["submitted"] * 5


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
    with keyed_client(settings) as first:
        ids = upload(first, 2)  # committed, never dispatched: the process "dies" here
    assert kestra.state.executions == {}
    with keyed_client(settings) as second:
        second.headers.update(first.headers)  # the same client, after the restart
        resources_of(second).dispatcher.run_once()
        assert statuses(second, ids) == ["submitted"] * 2


def test_crash_after_submit_adopts_the_execution_instead_of_starting_another(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    ids = upload(kestra_client, 2)
    resources = resources_of(kestra_client)
    # Kestra created the execution, but we died before recording it: the attempt is
    # counted, the batch id kept and the jobs still queued.
    kestra.state.faults.create_then_fail = True
    resources.dispatcher.run_once()
    assert len(kestra.state.executions) == 1
    with resources.sessions() as session:
        session.execute(
            update(Job).values(status="queued", execution_id=None, next_dispatch_at=utcnow())
        )
        session.commit()
    resources.dispatcher.run_once()
    (execution,) = kestra.state.executions.values()
    for job_id in ids:
        job = kestra_client.get(f"/v1/jobs/{job_id}").json()
        assert (job["status"], job["execution_id"]) == ("submitted", execution["id"])


def test_bad_credentials_keep_jobs_queued(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**{**kestra_settings(kestra), "kestra_password": "Wrong1234"})
    with keyed_client(settings) as client:
        ids = upload(client)
        resources_of(client).dispatcher.run_once()
        job = client.get(f"/v1/jobs/{ids[0]}").json()
    assert job["status"] == "queued"


def test_inputs_refused_by_kestra_fail_the_batch(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**kestra_settings(kestra), model="bad model name; rm -rf /")
    with keyed_client(settings) as client:
        ids = upload(client, 2)
        resources_of(client).dispatcher.run_once()
        jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert [job["status"] for job in jobs] == ["failed"] * 2
    assert all("422" in job["error"] for job in jobs)
    assert kestra.state.executions == {}


def test_background_dispatch_runs_on_upload(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**kestra_settings(kestra), workers_enabled=True, batch_window_s=0.2)
    with keyed_client(settings) as client:
        ids = upload(client, 2)
        wait_until(
            lambda: statuses(client, ids),
            10,
            what="both jobs submitted",
            interval_s=0.05,
            until=lambda found: found == ["submitted"] * 2,
        )
        assert statuses(client, ids) == ["submitted"] * 2
        assert len(kestra.state.executions) == 1

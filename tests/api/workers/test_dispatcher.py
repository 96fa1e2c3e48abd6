"""The dispatcher: queued jobs reach Kestra exactly once, in micro-batches, whatever fails in
between."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import ColumnElement, select, update

from app.jobs.models import Job, JobStatus
from app.jobs.service import utcnow
from tests.api.factories import kestra_settings, upload
from tests.support.api_app import SettingsFactory, keyed_client, resources_of
from tests.support.kestra import KestraStandin, jobs_of
from tests.support.wait import wait_until

KestraApp = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def kestra_app(make_settings: SettingsFactory, kestra: KestraStandin) -> KestraApp:
    """Clients of an app that sends to the stand-in, with these settings overridden."""
    return lambda **overrides: keyed_client(make_settings(**(kestra_settings(kestra) | overrides)))


def update_jobs(client: TestClient, *where: ColumnElement[bool], **values: object) -> None:
    with resources_of(client).sessions() as session:
        session.execute(update(Job).where(*where).values(**values))
        session.commit()


def make_due(client: TestClient) -> None:
    """Skip the back-off wait instead of sleeping through it."""
    update_jobs(client, next_dispatch_at=utcnow() - timedelta(seconds=1))


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


def test_a_batch_holds_at_most_batch_max_jobs(kestra_app: KestraApp, kestra: KestraStandin) -> None:
    with kestra_app(batch_max_jobs=2) as client:
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
    update_jobs(kestra_client, Job.id == ids[1], confidence=0.6)
    assert resources_of(kestra_client).dispatcher.run_once() == 3
    by_confidence = {
        e["inputs"]["confidence"]: sorted(jobs_of(e)) for e in kestra.state.executions.values()
    }
    assert by_confidence == {0.25: sorted([ids[0], ids[2]]), 0.6: [ids[1]]}


def occupy(client: TestClient) -> str:
    """One job sent to the orchestrator (on an idle stack it leaves at once): the stack is busy."""
    (job_id,) = upload(client)
    assert resources_of(client).dispatcher.run_once() == 1
    return job_id


def test_a_lone_job_on_an_idle_stack_leaves_at_once_and_later_ones_wait_for_company(
    kestra_app: KestraApp,
) -> None:
    with kestra_app(batch_window_s=60, batch_max_jobs=4) as client:
        in_flight = occupy(client)
        waiting = upload(client)
        assert resources_of(client).dispatcher.run_once() == 0  # held while the stack is busy
        update_jobs(client, Job.id == in_flight, status=JobStatus.SUCCEEDED)
        assert resources_of(client).dispatcher.run_once() == 1  # idle again: it leaves
        assert statuses(client, [in_flight, *waiting]) == ["succeeded", "submitted"]


def test_the_window_holds_a_partial_batch_until_its_oldest_job_is_old_enough(
    kestra_app: KestraApp, kestra: KestraStandin
) -> None:
    with kestra_app(batch_window_s=60, batch_max_jobs=4) as client:
        dispatcher = resources_of(client).dispatcher
        occupy(client)
        first = upload(client)
        assert dispatcher.run_once() == 0  # held: more may join
        assert 0 < dispatcher.next_wait_s() <= resources_of(client).settings.dispatch_interval_s
        second = upload(client, 2)
        assert dispatcher.run_once() == 0
        # The oldest job's window is over.
        update_jobs(client, Job.id == first[0], created_at=utcnow() - timedelta(seconds=61))
        assert dispatcher.run_once() == 3
        batches = [set(jobs_of(e)) for e in kestra.state.executions.values()]
        assert batches[1:] == [{*first, *second}]


def test_the_window_sleep_ends_when_the_oldest_job_is_due(kestra_app: KestraApp) -> None:
    with kestra_app(batch_window_s=5, dispatch_interval_s=30, batch_max_jobs=4) as client:
        dispatcher = resources_of(client).dispatcher
        occupy(client)
        upload(client)
        assert dispatcher.run_once() == 0
        # The loop sleeps until the window closes (at most 5 s), not a whole 30 s interval.
        assert 0 < dispatcher.next_wait_s() <= 5


def test_a_full_batch_leaves_without_waiting_for_the_window(kestra_app: KestraApp) -> None:
    with kestra_app(batch_window_s=60, batch_max_jobs=3) as client:
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
    kestra_app: KestraApp, kestra: KestraStandin
) -> None:
    with kestra_app(batch_max_jobs=3) as client:
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
    kestra_app: KestraApp, kestra: KestraStandin
) -> None:
    with kestra_app() as first:
        ids = upload(first, 2)  # committed, never dispatched: the process "dies" here
    assert kestra.state.executions == {}
    with kestra_app() as second:
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
    update_jobs(kestra_client, status="queued", execution_id=None, next_dispatch_at=utcnow())
    resources.dispatcher.run_once()
    (execution,) = kestra.state.executions.values()
    for job_id in ids:
        job = kestra_client.get(f"/v1/jobs/{job_id}").json()
        assert (job["status"], job["execution_id"]) == ("submitted", execution["id"])


def test_bad_credentials_keep_jobs_queued(kestra_app: KestraApp) -> None:
    with kestra_app(kestra_password="Wrong1234") as client:
        ids = upload(client)
        resources_of(client).dispatcher.run_once()
        assert statuses(client, ids) == ["queued"]


def test_inputs_refused_by_kestra_fail_the_batch(
    kestra_app: KestraApp, kestra: KestraStandin
) -> None:
    with kestra_app(model="bad model name; rm -rf /") as client:
        ids = upload(client, 2)
        resources_of(client).dispatcher.run_once()
        jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert [job["status"] for job in jobs] == ["failed"] * 2
    assert all("422" in job["error"] for job in jobs)
    assert kestra.state.executions == {}


def test_background_dispatch_runs_on_upload(kestra_app: KestraApp, kestra: KestraStandin) -> None:
    with kestra_app(workers_enabled=True, batch_window_s=0.2) as client:
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


def test_two_workers_on_one_database_send_each_job_exactly_once(
    kestra_app: KestraApp, kestra: KestraStandin
) -> None:
    """Each uvicorn worker (or replica) runs its own dispatcher: SKIP LOCKED hands every job to
    exactly one of them, however their rounds interleave."""
    with kestra_app(batch_max_jobs=3) as one, kestra_app(batch_max_jobs=3) as two:
        ids = [job_id for _ in range(4) for job_id in upload(one, 4)]
        start = threading.Barrier(2)

        def drain(client: TestClient) -> None:
            start.wait()
            while resources_of(client).dispatcher.run_once():
                pass

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(drain, (one, two)))
        assert [len(kestra.state.by_job(job_id)) for job_id in ids] == [1] * len(ids)
        assert statuses(one, ids) == ["submitted"] * len(ids)

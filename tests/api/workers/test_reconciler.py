"""The reconciler finishes jobs whose callback never came."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.jobs.models import Job
from app.jobs.service import MAX_RUNS, utcnow
from tests.api.factories import (
    DETECTION,
    execution_of,
    kestra_settings,
    submitted_batch,
    upload,
    write_success,
)
from tests.support.api_app import SettingsFactory, keyed_client, resources_of
from tests.support.kestra import KestraStandin


def submitted_job(client: TestClient) -> tuple[str, str]:
    """One job sent alone: (its id, its execution id)."""
    (job_id,), batch_id = submitted_batch(client, 1)
    return job_id, execution_of(client, batch_id)


def job_of(client: TestClient, job_id: str) -> Any:
    return client.get(f"/v1/jobs/{job_id}").json()


def reconcile_late(client: TestClient, **values: object) -> None:
    """One reconciler pass once the callback should have come long ago."""
    long_ago = utcnow() - timedelta(hours=1)
    with resources_of(client).sessions() as session:
        session.execute(update(Job).values(updated_at=long_ago, last_checked_at=None, **values))
        session.commit()
    resources_of(client).reconciler.run_once()


def test_lost_success_callback_is_recovered(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    write_success(kestra_client, job_id, [DETECTION])
    kestra.state.set_state(execution_id, "RUNNING")
    kestra.state.set_state(execution_id, "SUCCESS")  # ...and the callback was dropped
    reconcile_late(kestra_client)
    job = job_of(kestra_client, job_id)
    assert job["status"] == "succeeded"
    assert job["detections"] == [DETECTION]


def test_kestra_failure_becomes_failed_with_its_reason(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    kestra.state.set_state(execution_id, "FAILED", failed_task="detect")
    reconcile_late(kestra_client, runs=MAX_RUNS)  # its last allowed run
    job = job_of(kestra_client, job_id)
    assert job["status"] == "failed"
    assert "task 'detect' failed after 2 attempt(s)" in job["error"]


def test_still_running_stays_running(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    kestra.state.set_state(execution_id, "RUNNING")
    reconcile_late(kestra_client)
    assert job_of(kestra_client, job_id)["status"] == "running"


def test_recent_jobs_are_left_to_their_callback(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    kestra.state.set_state(execution_id, "FAILED")
    resources_of(kestra_client).reconciler.run_once()
    assert job_of(kestra_client, job_id)["status"] == "submitted"


def test_kestra_down_changes_nothing(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, _ = submitted_job(kestra_client)
    kestra.stop()
    reconcile_late(kestra_client)
    assert job_of(kestra_client, job_id)["status"] == "submitted"


def test_vanished_execution_is_requeued_and_sent_again(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    with kestra.state.lock:
        del kestra.state.executions[execution_id]  # e.g. Kestra's database was reset
    reconcile_late(kestra_client)
    assert job_of(kestra_client, job_id)["status"] == "queued"
    resources_of(kestra_client).dispatcher.run_once()
    (execution,) = kestra.state.by_job(job_id)
    job = job_of(kestra_client, job_id)
    assert (job["status"], job["execution_id"]) == ("submitted", execution["id"])


def test_uploads_left_without_a_job_are_swept(kestra_client: TestClient, shared_dir: Path) -> None:
    (job_id,) = upload(kestra_client)
    orphan = shared_dir / "uploads" / "0b6f5f0e-5c2a-4d55-9a43-8a1d2f0f9a10.jpg"
    young = shared_dir / "uploads" / "1c6f5f0e-5c2a-4d55-9a43-8a1d2f0f9a10.jpg"
    kept = shared_dir / "uploads" / f"{job_id}.png"
    orphan.write_bytes(b"left by a crash between rename and commit")
    young.write_bytes(b"a request that may still commit")
    hour_ago = time.time() - 3600
    for path in (orphan, kept):
        os.utime(path, (hour_ago, hour_ago))
    resources_of(kestra_client).reconciler.run_once()
    assert not orphan.exists()
    assert young.exists()
    assert kept.exists()


def test_one_question_per_execution_finishes_a_whole_batch(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    ids, batch_id = submitted_batch(kestra_client, 3)
    execution_id = execution_of(kestra_client, batch_id)
    for job_id in ids:
        write_success(kestra_client, job_id, [DETECTION])
    kestra.state.set_state(execution_id, "SUCCESS")  # the callback was dropped
    kestra.state.requests.clear()
    reconcile_late(kestra_client)
    asked = [r["path"] for r in kestra.state.requests if r["method"] == "GET"]
    assert asked == [f"/api/v1/main/executions/{execution_id}"]
    assert {job_of(kestra_client, job_id)["status"] for job_id in ids} == {"succeeded"}


def test_two_workers_on_one_database_ask_once_per_execution(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    """Each uvicorn worker (or replica) runs its own reconciler: SKIP LOCKED and the check time
    committed with the claim keep them from asking about, or finishing, the same jobs twice."""
    settings = make_settings(**kestra_settings(kestra))
    with keyed_client(settings) as one, keyed_client(settings) as two:
        batches = [submitted_batch(one, 2) for _ in range(4)]
        executions = [execution_of(one, batch_id) for _, batch_id in batches]
        for (ids, _), execution_id in zip(batches, executions, strict=True):
            for job_id in ids:
                write_success(one, job_id, [DETECTION])
            kestra.state.set_state(execution_id, "RUNNING")
            kestra.state.set_state(execution_id, "SUCCESS")  # ...and the callbacks were dropped
        with resources_of(one).sessions() as session:
            session.execute(update(Job).values(updated_at=utcnow() - timedelta(hours=1)))
            session.commit()
        kestra.state.requests.clear()
        start = threading.Barrier(2)

        def reconcile(client: TestClient) -> None:
            start.wait()
            resources_of(client).reconciler.run_once()

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(reconcile, (one, two)))
        asked = sorted(r["path"].rsplit("/", 1)[-1] for r in kestra.state.requests)
        assert asked == sorted(executions)
        assert {job_of(one, job_id)["status"] for ids, _ in batches for job_id in ids} == {
            "succeeded"
        }

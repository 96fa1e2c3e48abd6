"""The reconciler finishes jobs whose callback never came."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.jobs.models import Job
from app.jobs.service import MAX_RUNS, utcnow
from tests.api.factories import DETECTION, submitted_batch, upload, write_success
from tests.support.api_app import resources_of
from tests.support.kestra import KestraStandin


def submitted_job(client: TestClient) -> tuple[str, str]:
    """One job sent alone: (its id, its execution id)."""
    (job_id,), _ = submitted_batch(client, 1)
    return job_id, client.get(f"/v1/jobs/{job_id}").json()["execution_id"]


def go_quiet(client: TestClient) -> None:
    """Pretend the callback should have come long ago."""
    long_ago = utcnow() - timedelta(hours=1)
    with resources_of(client).sessions() as session:
        session.execute(update(Job).values(updated_at=long_ago, last_checked_at=None))
        session.commit()


def test_lost_success_callback_is_recovered(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    write_success(kestra_client, job_id, [DETECTION])
    kestra.state.set_state(execution_id, "RUNNING")
    kestra.state.set_state(execution_id, "SUCCESS")  # ...and the callback was dropped
    go_quiet(kestra_client)
    resources_of(kestra_client).reconciler.run_once()
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["detections"] == [DETECTION]


def test_kestra_failure_becomes_failed_with_its_reason(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    with resources_of(kestra_client).sessions() as session:  # its last allowed run
        session.execute(update(Job).values(runs=MAX_RUNS))
        session.commit()
    kestra.state.set_state(execution_id, "FAILED", failed_task="detect")
    go_quiet(kestra_client)
    resources_of(kestra_client).reconciler.run_once()
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "task 'detect' failed after 2 attempt(s)" in job["error"]


def test_still_running_stays_running(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    kestra.state.set_state(execution_id, "RUNNING")
    go_quiet(kestra_client)
    resources_of(kestra_client).reconciler.run_once()
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"


def test_recent_jobs_are_left_to_their_callback(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    kestra.state.set_state(execution_id, "FAILED")
    resources_of(kestra_client).reconciler.run_once()
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"


def test_kestra_down_changes_nothing(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, _ = submitted_job(kestra_client)
    kestra.stop()
    go_quiet(kestra_client)
    resources_of(kestra_client).reconciler.run_once()
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"


def test_vanished_execution_is_requeued_and_sent_again(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    with kestra.state.lock:
        del kestra.state.executions[execution_id]  # e.g. Kestra's database was reset
    go_quiet(kestra_client)
    resources = resources_of(kestra_client)
    resources.reconciler.run_once()
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    resources.dispatcher.run_once()
    (execution,) = kestra.state.by_job(job_id)
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["execution_id"]) == ("submitted", execution["id"])


def test_uploads_left_without_a_job_are_swept(kestra_client: TestClient, shared_dir: Path) -> None:
    import os

    (job_id,) = upload(kestra_client)
    orphan = shared_dir / "uploads" / "0b6f5f0e-5c2a-4d55-9a43-8a1d2f0f9a10.jpg"
    young = shared_dir / "uploads" / "1c6f5f0e-5c2a-4d55-9a43-8a1d2f0f9a10.jpg"
    orphan.write_bytes(b"left by a crash between rename and commit")
    young.write_bytes(b"a request that may still commit")
    hour_ago = time.time() - 3600
    os.utime(orphan, (hour_ago, hour_ago))
    kept = shared_dir / "uploads" / f"{job_id}.png"
    os.utime(kept, (hour_ago, hour_ago))
    resources_of(kestra_client).reconciler.run_once()
    assert not orphan.exists()
    assert young.exists()
    assert kept.exists()


def test_one_question_per_execution_finishes_a_whole_batch(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    ids, _ = submitted_batch(kestra_client, 3)
    execution_id = kestra_client.get(f"/v1/jobs/{ids[0]}").json()["execution_id"]
    for job_id in ids:
        write_success(kestra_client, job_id, [DETECTION])
    kestra.state.set_state(execution_id, "SUCCESS")  # the callback was dropped
    go_quiet(kestra_client)
    kestra.state.requests.clear()
    resources_of(kestra_client).reconciler.run_once()
    asked = [r["path"] for r in kestra.state.requests if r["method"] == "GET"]
    assert asked == [f"/api/v1/main/executions/{execution_id}"]
    statuses = {kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in ids}
    assert statuses == {"succeeded"}

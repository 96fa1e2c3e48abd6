"""POST /v1/callbacks/kestra: authenticated, idempotent, the same path as polling."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.jobs.models import Job
from tests.api.conftest import CALLBACK_TOKEN, resources_of
from tests.api.test_jobs import upload, write_result, write_success
from tests.support.kestra_standin import KestraStandin

AUTH = {"Authorization": f"Bearer {CALLBACK_TOKEN}"}
DETECTION = {
    "class_id": 1,
    "class_name": "square",
    "confidence": 0.91,
    "box": {"x1": 1.0, "y1": 2.0, "x2": 30.5, "y2": 20.25},
}


def submitted_job(client: TestClient) -> tuple[str, str]:
    """One job, sent alone: (its id, its batch id)."""
    (job_id,), batch_id = submitted_batch(client, 1)
    return job_id, batch_id


def submitted_batch(client: TestClient, count: int) -> tuple[list[str], str]:
    ids = upload(client, count)
    resources_of(client).dispatcher.run_once()
    jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert {job["status"] for job in jobs} == {"submitted"}
    (batch_id,) = {job["batch_id"] for job in jobs}
    return ids, batch_id


def callback(
    client: TestClient,
    batch_id: str,
    state: str,
    execution_id: str | None = None,
    headers: dict[str, str] = AUTH,
) -> dict[str, str]:
    """Report the batch's execution (by default the one its jobs were sent in)."""
    if execution_id is None:
        with resources_of(client).sessions() as session:
            execution_id = session.scalars(
                select(Job.execution_id).where(Job.batch_id == batch_id)
            ).first()
    response = client.post(
        "/v1/callbacks/kestra",
        headers=headers,
        json={"batch_id": batch_id, "execution_id": execution_id, "state": state},
    )
    assert response.status_code == 202, response.text
    assert response.json()["batch_id"] == batch_id
    jobs: dict[str, str] = response.json()["jobs"]
    return jobs


def test_success_callback_stores_the_result(kestra_client: TestClient, shared_dir: Path) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_result(
        shared_dir,
        job_id,
        status="succeeded",
        model="shapes.pt",
        inference_ms=12.5,
        image={"path": "x", "width": 40, "height": 30},
        detections=[DETECTION],
        annotated_path=f"results/{job_id}.annotated.jpg",
    )
    (shared_dir / "results" / f"{job_id}.annotated.jpg").write_bytes(b"\xff\xd8\xff fake")
    assert callback(kestra_client, batch_id, "SUCCESS") == {job_id: "succeeded"}
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["detections"] == [DETECTION]
    assert job["inference_ms"] == 12.5
    assert job["model"] == resources_of(kestra_client).settings.model
    assert job["finished_at"] is not None
    assert kestra_client.get(job["annotated_url"]).status_code == 200


def test_the_same_callback_twice_changes_nothing(
    kestra_client: TestClient, shared_dir: Path
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_success(shared_dir, job_id, [DETECTION])
    callback(kestra_client, batch_id, "SUCCESS")
    first = kestra_client.get(f"/v1/jobs/{job_id}").json()
    write_result(shared_dir, job_id, status="succeeded", model="other", detections=[])
    callback(kestra_client, batch_id, "SUCCESS")
    callback(kestra_client, batch_id, "FAILED")
    assert kestra_client.get(f"/v1/jobs/{job_id}").json() == first


def test_failure_callback_uses_the_scripts_reason(
    kestra_client: TestClient, shared_dir: Path
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_result(shared_dir, job_id, status="failed", error="cannot decode the image")
    assert callback(kestra_client, batch_id, "FAILED") == {job_id: "failed"}
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["error"] == "cannot decode the image"


def test_success_without_a_result_file_is_a_failure(kestra_client: TestClient) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    callback(kestra_client, batch_id, "SUCCESS")
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "no result file" in job["error"]


def test_running_callback_marks_running(kestra_client: TestClient) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    assert callback(kestra_client, batch_id, "RUNNING") == {job_id: "running"}
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["started_at"] is not None


def test_callback_needs_the_token(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": CALLBACK_TOKEN}):
        response = kestra_client.post(
            "/v1/callbacks/kestra",
            headers=headers,
            json={"batch_id": batch_id, "execution_id": "x", "state": "FAILED"},
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"


def test_callback_for_an_unknown_batch_is_404(kestra_client: TestClient) -> None:
    response = kestra_client.post(
        "/v1/callbacks/kestra",
        headers=AUTH,
        json={
            "batch_id": "00000000-0000-0000-0000-000000000000",
            "execution_id": "x",
            "state": "SUCCESS",
        },
    )
    assert response.status_code == 404


def test_callback_from_another_execution_is_ignored(kestra_client: TestClient) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    callback(kestra_client, batch_id, "FAILED", execution_id="someoneelse")
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"


def test_each_job_of_a_batch_ends_on_its_own_result(
    kestra_client: TestClient, shared_dir: Path
) -> None:
    (good, bad, lost), batch_id = submitted_batch(kestra_client, 3)
    write_success(shared_dir, good, [DETECTION])
    write_result(shared_dir, bad, status="failed", error="The image could not be decoded.")
    assert callback(kestra_client, batch_id, "SUCCESS") == {
        good: "succeeded",
        bad: "failed",
        lost: "failed",
    }
    jobs = {job_id: kestra_client.get(f"/v1/jobs/{job_id}").json() for job_id in (good, bad, lost)}
    assert jobs[good]["detections"] == [DETECTION]
    assert jobs[bad]["error"] == "The image could not be decoded."
    assert "no result file" in jobs[lost]["error"]


def test_a_failed_execution_requeues_the_jobs_it_did_not_reach_once(
    kestra_client: TestClient, shared_dir: Path
) -> None:
    (done, unreached), batch_id = submitted_batch(kestra_client, 2)
    write_success(shared_dir, done, [DETECTION])
    # The container died (or timed out) after the first image: the first job keeps its
    # result; the second goes back to the queue, in a batch of its own next time.
    assert callback(kestra_client, batch_id, "FAILED") == {done: "succeeded", unreached: "queued"}
    requeued = kestra_client.get(f"/v1/jobs/{unreached}").json()
    assert (requeued["batch_id"], requeued["execution_id"]) == (None, None)
    resources_of(kestra_client).dispatcher.run_once()
    second = kestra_client.get(f"/v1/jobs/{unreached}").json()
    assert second["status"] == "submitted"
    assert second["batch_id"] != batch_id
    # Its second execution fails too: now the job fails, with Kestra's account of it.
    assert callback(kestra_client, second["batch_id"], "KILLED") == {unreached: "failed"}
    assert "KILLED" in kestra_client.get(f"/v1/jobs/{unreached}").json()["error"]

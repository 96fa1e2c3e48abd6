"""POST /v1/callbacks/kestra: authenticated, idempotent, the same path as polling."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

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
    (job_id,) = upload(client)
    resources_of(client).dispatcher.run_once()
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "submitted"
    return job_id, job["execution_id"]


def callback(
    client: TestClient, job_id: str, execution_id: str, state: str, headers: dict[str, str] = AUTH
) -> dict[str, object]:
    response = client.post(
        "/v1/callbacks/kestra",
        headers=headers,
        json={"job_id": job_id, "execution_id": execution_id, "state": state},
    )
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


def test_success_callback_stores_the_result(kestra_client: TestClient, shared_dir: Path) -> None:
    job_id, execution_id = submitted_job(kestra_client)
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
    assert callback(kestra_client, job_id, execution_id, "SUCCESS")["status"] == "succeeded"
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["detections"] == [DETECTION]
    assert job["inference_ms"] == 12.5
    assert job["model"] == resources_of(kestra_client).settings.model
    assert job["finished_at"] is not None
    assert kestra_client.get(job["annotated_url"]).status_code == 200


def test_the_same_callback_twice_changes_nothing(
    kestra_client: TestClient, shared_dir: Path
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    write_success(shared_dir, job_id, [DETECTION])
    callback(kestra_client, job_id, execution_id, "SUCCESS")
    first = kestra_client.get(f"/v1/jobs/{job_id}").json()
    write_result(shared_dir, job_id, status="succeeded", model="other", detections=[])
    callback(kestra_client, job_id, execution_id, "SUCCESS")
    callback(kestra_client, job_id, execution_id, "FAILED")
    assert kestra_client.get(f"/v1/jobs/{job_id}").json() == first


def test_failure_callback_uses_the_scripts_reason(
    kestra_client: TestClient, shared_dir: Path
) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    write_result(shared_dir, job_id, status="failed", error="cannot decode the image")
    assert callback(kestra_client, job_id, execution_id, "FAILED")["status"] == "failed"
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["error"] == "cannot decode the image"


def test_kill_without_result_gives_kestras_state(kestra_client: TestClient) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    callback(kestra_client, job_id, execution_id, "KILLED")
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "KILLED" in job["error"]


def test_success_without_a_result_file_is_a_failure(kestra_client: TestClient) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    callback(kestra_client, job_id, execution_id, "SUCCESS")
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "no result file" in job["error"]


def test_running_callback_marks_running(kestra_client: TestClient) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    assert callback(kestra_client, job_id, execution_id, "RUNNING")["status"] == "running"
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["started_at"] is not None


def test_callback_needs_the_token(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, execution_id = submitted_job(kestra_client)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": CALLBACK_TOKEN}):
        response = kestra_client.post(
            "/v1/callbacks/kestra",
            headers=headers,
            json={"job_id": job_id, "execution_id": execution_id, "state": "FAILED"},
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"


def test_callback_for_an_unknown_job_is_404(kestra_client: TestClient) -> None:
    response = kestra_client.post(
        "/v1/callbacks/kestra",
        headers=AUTH,
        json={
            "job_id": "00000000-0000-0000-0000-000000000000",
            "execution_id": "x",
            "state": "SUCCESS",
        },
    )
    assert response.status_code == 404


def test_callback_from_another_execution_is_ignored(kestra_client: TestClient) -> None:
    job_id, _ = submitted_job(kestra_client)
    callback(kestra_client, job_id, "someoneelse", "FAILED")
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"

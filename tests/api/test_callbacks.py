"""POST /v1/callbacks/kestra: authenticated, idempotent, the same path as polling."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.factories import (
    CALLBACK_AUTH,
    DETECTION,
    callback,
    execution_of,
    notify,
    submitted_batch,
    submitted_job,
    write_result,
    write_success,
)
from tests.support.api_app import CALLBACK_TOKEN, bearer, resources_of
from tests.support.kestra import KestraStandin


def test_success_callback_stores_the_result(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_success(
        kestra_client,
        job_id,
        [DETECTION],
        model="shapes.pt",
        inference_ms=12.5,
        image={"path": "x", "width": 40, "height": 30},
        annotated_path=f"results/{job_id}.annotated.jpg",
    )
    (shared_dir / "results" / f"{job_id}.annotated.jpg").write_bytes(b"\xff\xd8\xff fake")
    assert callback(kestra_client, kestra, batch_id, "SUCCESS") == {job_id: "succeeded"}
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["detections"] == [DETECTION]
    assert job["inference_ms"] == 12.5
    assert job["model"] == resources_of(kestra_client).settings.model
    assert job["finished_at"] is not None
    assert kestra_client.get(job["annotated_url"]).status_code == 200


def test_the_same_callback_twice_changes_nothing(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_success(kestra_client, job_id, [DETECTION])
    callback(kestra_client, kestra, batch_id, "SUCCESS")
    first = kestra_client.get(f"/v1/jobs/{job_id}").json()
    write_result(kestra_client, job_id, status="succeeded", model="other", detections=[])
    callback(kestra_client, kestra, batch_id, "SUCCESS")
    callback(kestra_client, kestra, batch_id, "FAILED")
    assert kestra_client.get(f"/v1/jobs/{job_id}").json() == first


def test_failure_callback_uses_the_scripts_reason(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_result(kestra_client, job_id, status="failed", error="cannot decode the image")
    assert callback(kestra_client, kestra, batch_id, "FAILED") == {job_id: "failed"}
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["error"] == "cannot decode the image"


def test_success_without_a_result_file_is_a_failure(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    callback(kestra_client, kestra, batch_id, "SUCCESS")
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "no result file" in job["error"]


def test_running_callback_marks_running(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    assert callback(kestra_client, kestra, batch_id, "RUNNING") == {job_id: "running"}
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["started_at"] is not None


def test_callback_needs_the_token(kestra_client: TestClient) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": CALLBACK_TOKEN}):
        response = notify(kestra_client, batch_id, "x", "FAILED", headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"


def test_callback_for_an_unknown_batch_is_404(kestra_client: TestClient) -> None:
    response = notify(kestra_client, "00000000-0000-0000-0000-000000000000", "x", "SUCCESS")
    assert response.status_code == 404


def test_callback_from_another_execution_changes_nothing(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    _, other_batch = submitted_batch(kestra_client, 1)
    kestra.state.set_state(execution_of(kestra_client, other_batch), "FAILED")
    for execution_id in ("someoneelse", execution_of(kestra_client, other_batch)):
        response = notify(kestra_client, batch_id, execution_id, "FAILED")
        assert response.status_code == 404, response.text
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"


def test_each_job_of_a_batch_ends_on_its_own_result(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    (good, bad, lost), batch_id = submitted_batch(kestra_client, 3)
    write_success(kestra_client, good, [DETECTION])
    write_result(kestra_client, bad, status="failed", error="The image could not be decoded.")
    assert callback(kestra_client, kestra, batch_id, "SUCCESS") == {
        good: "succeeded",
        bad: "failed",
        lost: "failed",
    }
    jobs = {job_id: kestra_client.get(f"/v1/jobs/{job_id}").json() for job_id in (good, bad, lost)}
    assert jobs[good]["detections"] == [DETECTION]
    assert jobs[bad]["error"] == "The image could not be decoded."
    assert "no result file" in jobs[lost]["error"]


def test_a_failed_execution_requeues_the_jobs_it_did_not_reach_once(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    (done, unreached), batch_id = submitted_batch(kestra_client, 2)
    write_success(kestra_client, done, [DETECTION])
    # The container died (or timed out) after the first image: the first job keeps its
    # result; the second goes back to the queue, in a batch of its own next time.
    assert callback(kestra_client, kestra, batch_id, "FAILED") == {
        done: "succeeded",
        unreached: "queued",
    }
    requeued = kestra_client.get(f"/v1/jobs/{unreached}").json()
    assert (requeued["batch_id"], requeued["execution_id"]) == (None, None)
    resources_of(kestra_client).dispatcher.run_once()
    second = kestra_client.get(f"/v1/jobs/{unreached}").json()
    assert second["status"] == "submitted"
    assert second["batch_id"] != batch_id
    # Its second execution fails too: now the job fails, with Kestra's account of it.
    assert callback(kestra_client, kestra, second["batch_id"], "KILLED") == {unreached: "failed"}
    assert "KILLED" in kestra_client.get(f"/v1/jobs/{unreached}").json()["error"]


def test_an_early_success_callback_changes_nothing_kestra_does_not_confirm(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    execution_id = execution_of(kestra_client, batch_id)
    kestra.state.set_state(execution_id, "RUNNING")  # Kestra's truth: still running
    response = notify(kestra_client, batch_id, execution_id, "SUCCESS")
    assert response.status_code == 202
    assert response.json()["jobs"] == {job_id: "running"}  # not failed for a missing result
    write_success(kestra_client, job_id, [DETECTION])  # the real result arrives later
    assert callback(kestra_client, kestra, batch_id, "SUCCESS") == {job_id: "succeeded"}


def test_an_unknown_state_is_ignored(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    assert callback(kestra_client, kestra, batch_id, "SOMETHING_NEW") == {job_id: "submitted"}


def test_a_callback_kestra_cannot_confirm_is_503_and_changes_nothing(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    execution_id = execution_of(kestra_client, batch_id)
    kestra.state.faults.fail_next = 10
    response = notify(kestra_client, batch_id, execution_id, "FAILED")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "orchestrator_unavailable"
    assert response.headers["retry-after"]
    kestra.state.faults.fail_next = 0
    assert kestra_client.get(f"/v1/jobs/{job_id}").json()["status"] == "submitted"


def test_the_token_is_checked_before_the_body_is_read(kestra_client: TestClient) -> None:
    headers = {**bearer("wrong"), "Content-Type": "application/json"}
    body = b"{" * 60_000  # would be a 422 (or 400), were it read
    response = kestra_client.post("/v1/callbacks/kestra", headers=headers, content=body)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"batch_id": "' + b"0" * 5000 + b'"}', 413),  # over the callback's few KB
        (b"[1, 2", 422),
        (b'{"batch_id": "../../x", "execution_id": "e", "state": "SUCCESS"}', 422),
        (b'{"batch_id": "x", "execution_id": "../flows", "state": "SUCCESS", "more": 1}', 422),
    ],
    ids=["too-large", "not-json", "bad-batch-id", "path-in-execution-id"],
)
def test_bad_callback_bodies_are_refused_in_the_error_shape(
    kestra_client: TestClient, body: bytes, status: int
) -> None:
    headers = {**CALLBACK_AUTH, "Content-Type": "application/json"}
    response = kestra_client.post("/v1/callbacks/kestra", headers=headers, content=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]

"""Result files are checked at the boundary: anything that can write to the shared volume
can write one, so a file that is not a valid result of its job fails that job, readably."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.factories import DETECTION, callback, submitted_job, write_result, write_success
from tests.support.api_app import resources_of
from tests.support.kestra import KestraStandin


def box(**corners: float) -> dict[str, float]:
    return {"x1": 1.0, "y1": 2.0, "x2": 30.5, "y2": 20.25, **corners}


def failure(client: TestClient, kestra: KestraStandin, job_id: str, batch_id: str) -> str:
    """Why the job failed once Kestra reported its batch a success."""
    callback(client, kestra, batch_id, "SUCCESS")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    return str(job["error"])


FORGED: dict[str, Any] = {
    "confidence above 1": [{**DETECTION, "confidence": 7.5}],
    "class not of the model": [{**DETECTION, "class_id": 99, "class_name": "tank"}],
    "class name not the model's": [{**DETECTION, "class_name": "tank"}],
    "box off the image": [{**DETECTION, "box": box(x2=4000.0)}],
    "negative box": [{**DETECTION, "box": box(x1=-50.0)}],
    "corners swapped": [{**DETECTION, "box": box(x1=25.0, x2=5.0)}],
    "not a list": {"class_id": 1},
    "string box": [{**DETECTION, "box": "everywhere"}],
    "extra field": [{**DETECTION, "owner": "mallory"}],
}


@pytest.mark.parametrize("detections", FORGED.values(), ids=FORGED.keys())
def test_an_invalid_result_fails_its_job_and_never_breaks_a_listing(
    kestra_client: TestClient, kestra: KestraStandin, detections: Any
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_success(kestra_client, job_id, detections)
    assert callback(kestra_client, kestra, batch_id, "SUCCESS") == {job_id: "failed"}
    job = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert job["error"].startswith("the result file is invalid: detections")
    assert job["detections"] is None
    listing = kestra_client.get("/v1/jobs")
    assert listing.status_code == 200
    assert [j["id"] for j in listing.json()["jobs"]] == [job_id]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"job_id": "00000000-0000-4000-8000-000000000000"}, "job_id is not this job's"),
        ({"annotated_path": "uploads/other.jpg"}, "annotated_path is not this job's"),
        ({"inference_ms": -3}, "inference_ms"),
        ({"schema_version": 2}, "schema_version"),
        ({"status": "done"}, "status"),
        # A result of an earlier batch of the job is not this batch's.
        ({"batch_id": "99999999-0000-4000-8000-000000000000"}, "no result for this batch"),
    ],
)
def test_forged_ids_and_paths_fail_the_job(
    kestra_client: TestClient, kestra: KestraStandin, fields: dict[str, Any], words: str
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_success(kestra_client, job_id, [DETECTION], **fields)
    assert words in failure(kestra_client, kestra, job_id, batch_id)


@pytest.mark.parametrize("garbage", [b"\xff\xfe", b"[]", b'{"schema_version": 1', b"null"])
def test_unparseable_files_fail_the_job(
    kestra_client: TestClient, kestra: KestraStandin, garbage: bytes
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    (resources_of(kestra_client).storage.root / "results" / f"{job_id}.json").write_bytes(garbage)
    assert failure(kestra_client, kestra, job_id, batch_id).startswith("the result file is invalid")


def test_a_linked_result_file_is_not_followed(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    elsewhere = shared_dir / "planted.json"
    write_success(kestra_client, job_id, [DETECTION])
    (shared_dir / "results" / f"{job_id}.json").rename(elsewhere)
    (shared_dir / "results" / f"{job_id}.json").symlink_to(elsewhere)
    assert "cannot be opened" in failure(kestra_client, kestra, job_id, batch_id)


def test_an_annotated_image_that_is_a_link_is_not_served(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    secret_job, _ = submitted_job(kestra_client)
    job_id, batch_id = submitted_job(kestra_client)
    annotated = f"results/{job_id}.annotated.jpg"
    write_success(kestra_client, job_id, [DETECTION], annotated_path=annotated)
    (shared_dir / annotated).symlink_to(next((shared_dir / "uploads").glob(f"{secret_job}.*")))
    assert callback(kestra_client, kestra, batch_id, "SUCCESS") == {job_id: "succeeded"}
    response = kestra_client.get(f"/v1/jobs/{job_id}/annotated")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_valid_result_is_stored_whole(kestra_client: TestClient, kestra: KestraStandin) -> None:
    job_id, batch_id = submitted_job(kestra_client)
    write_result(
        kestra_client,
        job_id,
        status="succeeded",
        inference_ms=3.5,
        detections=[DETECTION, {**DETECTION, "box": box(x1=-1.5, x2=41.5)}],  # rounding slack
        class_names={"1": "square"},
        annotated_path=None,
    )
    assert callback(kestra_client, kestra, batch_id, "SUCCESS") == {job_id: "succeeded"}
    assert len(kestra_client.get(f"/v1/jobs/{job_id}").json()["detections"]) == 2

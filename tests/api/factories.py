"""Small factories the API tests share: uploads, jobs sent to the Kestra stand-in and its
callbacks, result files as flows/detect.py writes them (schema v1) for a job's current batch,
and jobs waited for until they end."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.jobs.models import Job
from app.workers.deliverer import Deliverer
from tests.support.api_app import ADMIN_KEY, CALLBACK_TOKEN, bearer, resources_of
from tests.support.images import encode
from tests.support.kestra import KestraStandin
from tests.support.wait import wait_until

CLASS_NAMES = {"0": "circle", "1": "square", "2": "triangle"}
CALLBACK_AUTH = {"Authorization": f"Bearer {CALLBACK_TOKEN}"}
DETECTION = {
    "class_id": 1,
    "class_name": "square",
    "confidence": 0.91,
    "box": {"x1": 1.0, "y1": 2.0, "x2": 30.5, "y2": 20.25},
}


def kestra_settings(standin: KestraStandin) -> dict[str, Any]:
    return {
        "orchestrator": "kestra",
        "kestra_url": standin.url,
        "kestra_username": standin.state.username,
        "kestra_password": standin.state.password,
        "kestra_connect_timeout_s": 0.5,
        "kestra_read_timeout_s": 2.0,
        # The in-process stand-in shows executions at once unless a test delays them.
        "kestra_visibility_grace_s": 0.5,
    }


def ended_job(
    client: TestClient, kestra: KestraStandin, callback_url: str | None, state: str = "SUCCESS"
) -> str:
    """One job uploaded (naming `callback_url` unless None), sent and ended through Kestra's
    callback (succeeded with one detection, or failed); its id."""
    form = {} if callback_url is None else {"callback_url": callback_url}
    files = [("files", ("a.png", encode("PNG", 40, 30)))]
    response = client.post("/v1/uploads", files=files, data=form)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobs"][0]["id"]
    resources_of(client).dispatcher.run_once()
    batch_id = client.get(f"/v1/jobs/{job_id}").json()["batch_id"]
    if state == "SUCCESS":
        write_success(client, job_id, [DETECTION])
    else:
        write_result(client, job_id, status="failed", error="the model could not load")
    callback(client, kestra, batch_id, state)
    return job_id


def webhook_of(client: TestClient, job_id: str) -> dict[str, Any]:
    webhook: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()["webhook"]
    return webhook


def deliverer_of(client: TestClient) -> Deliverer:
    deliverer = resources_of(client).deliverer
    assert deliverer is not None, "webhooks are off (no WEBHOOK_SECRET)"
    return deliverer


def deliver_until(client: TestClient, job_id: str, state: str) -> dict[str, Any]:
    """Step the app's webhook worker until the job's webhook is in `state`; the webhook."""
    deliverer = deliverer_of(client)

    def step() -> dict[str, Any]:
        deliverer.run_once()
        return webhook_of(client, job_id)

    return wait_until(
        step, 10, what=f"the webhook {state}", interval_s=0.02, until=lambda w: w["state"] == state
    )


def job_count(client: TestClient) -> int:
    with resources_of(client).sessions() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def stored_files(shared_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(shared_dir)) for p in shared_dir.rglob("*") if p.is_file())


def assert_refused(
    client: TestClient, shared_dir: Path, response: httpx.Response, status: int, code: str
) -> dict[str, Any]:
    """`response` refused the upload with this error, leaving no job and no file behind."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert job_count(client) == 0
    assert stored_files(shared_dir) == []
    return body


def upload(client: TestClient, count: int = 1, fmt: str = "PNG") -> list[str]:
    """`count` images of 40+i x 30 pixels in one request; their job ids."""
    files = [("files", (f"{i}.png", encode(fmt, 40 + i, 30))) for i in range(count)]
    response = client.post("/v1/uploads", files=files)
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]


def submitted_job(client: TestClient) -> tuple[str, str]:
    """One job, sent alone: (its id, its batch id)."""
    (job_id,), batch_id = submitted_batch(client, 1)
    return job_id, batch_id


def submitted_batch(client: TestClient, count: int) -> tuple[list[str], str]:
    """`count` jobs uploaded and sent to the orchestrator as one batch: (their ids, its id)."""
    ids = upload(client, count)
    resources_of(client).dispatcher.run_once()
    jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert {job["status"] for job in jobs} == {"submitted"}
    (batch_id,) = {job["batch_id"] for job in jobs}
    return ids, batch_id


def execution_of(client: TestClient, batch_id: str) -> str:
    with resources_of(client).sessions() as session:
        found = session.scalars(select(Job.execution_id).where(Job.batch_id == batch_id)).first()
    assert found is not None
    return found


def notify(
    client: TestClient,
    batch_id: str,
    execution_id: str,
    state: str,
    headers: dict[str, str] = CALLBACK_AUTH,
) -> httpx.Response:
    """POST /v1/callbacks/kestra as the flow's afterExecution task does (with the token)."""
    body = {"batch_id": batch_id, "execution_id": execution_id, "state": state}
    response: httpx.Response = client.post("/v1/callbacks/kestra", headers=headers, json=body)
    return response


def callback(
    client: TestClient, kestra: KestraStandin, batch_id: str, state: str
) -> dict[str, str]:
    """Kestra moves the batch's execution to `state`, then its afterExecution task calls."""
    execution_id = execution_of(client, batch_id)
    kestra.state.set_state(execution_id, state)
    response = notify(client, batch_id, execution_id, state)
    assert response.status_code == 202, response.text
    assert response.json()["batch_id"] == batch_id
    jobs: dict[str, str] = response.json()["jobs"]
    return jobs


def wait_terminal(client: TestClient, job_ids: list[str], timeout_s: float = 180) -> list[Any]:
    """The jobs (as GET /v1/jobs/<id> shows them) once every one has succeeded or failed."""

    def jobs() -> list[Any]:
        return [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]

    def ended(found: list[Any]) -> bool:
        return all(job["status"] in ("succeeded", "failed") for job in found)

    return wait_until(jobs, timeout_s, what="the jobs to end", interval_s=0.2, until=ended)


def detected(client: TestClient, files: list[tuple[str, tuple[str, bytes]]]) -> list[Any]:
    """The jobs of one upload of `files`, sent to the orchestrator, once they have ended."""
    response = client.post("/v1/uploads", files=files)
    assert response.status_code == 202, response.text
    resources_of(client).dispatcher.run_once()
    return wait_terminal(client, [job["id"] for job in response.json()["jobs"]])


def write_result(client: TestClient, job_id: str, /, **fields: object) -> None:
    """results/<job_id>.json for the batch the job is in now; `fields` may override any key
    (a forged `job_id` or `batch_id` included)."""
    resources = resources_of(client)
    with resources.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        batch_id = job.batch_id
    body = {"schema_version": 1, "job_id": job_id, "batch_id": batch_id, **fields}
    results = resources.storage.root / "results"
    results.mkdir(exist_ok=True)
    (results / f"{job_id}.json").write_text(json.dumps(body))


def write_success(client: TestClient, job_id: str, detections: object, /, **fields: object) -> None:
    """A succeeded result with these detections; `fields` override any key."""
    body = {"model": "m", "inference_ms": 1.0, "annotated_path": None, "class_names": CLASS_NAMES}
    write_result(
        client, job_id, **{"status": "succeeded", "detections": detections, **body, **fields}
    )


def torch_archive(*members: str, content: bytes = b"x") -> bytes:
    """A zip shaped like what torch.save writes (`weights/data.pkl`, `weights/version`) or with
    the given members. Its pickle is not one: the API reads the zip's directory, never loads
    what is in it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member in members or ("weights/data.pkl", "weights/version"):
            archive.writestr(member, content)
    return buffer.getvalue()


def push_model(
    client: TestClient, name: str, body: bytes | None = None, key: str = ADMIN_KEY
) -> httpx.Response:
    """PUT /v1/models/<name> with the admin key (or `key`); `body` defaults to torch_archive()."""
    response: httpx.Response = client.put(
        f"/v1/models/{name}",
        content=torch_archive() if body is None else body,
        headers={"Content-Type": "application/octet-stream", **bearer(key)},
    )
    return response

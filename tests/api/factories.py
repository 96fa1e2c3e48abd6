"""Small factories the API tests share: uploads, and result files as flows/detect.py writes
them (schema v1) for a job's current batch."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.jobs.models import Job
from tests.api.conftest import ADMIN_KEY, bearer, resources_of
from tests.support.images import encode

CLASS_NAMES = {"0": "circle", "1": "square", "2": "triangle"}


def job_count(client: TestClient) -> int:
    with resources_of(client).sessions() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def stored_files(shared_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(shared_dir)) for p in shared_dir.rglob("*") if p.is_file())


def upload(client: TestClient, count: int = 1, fmt: str = "PNG") -> list[str]:
    """`count` images of 40+i x 30 pixels in one request; their job ids."""
    files = [("files", (f"{i}.png", encode(fmt, 40 + i, 30))) for i in range(count)]
    response = client.post("/v1/uploads", files=files)
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]


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
    """A succeeded result with the given detections (other fields defaulted)."""
    body: dict[str, object] = {
        "model": "m",
        "inference_ms": 1.0,
        "annotated_path": None,
        "class_names": CLASS_NAMES,
    }
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
    return client.put(
        f"/v1/models/{name}",
        content=torch_archive() if body is None else body,
        headers={"Content-Type": "application/octet-stream", **bearer(key)},
    )

"""API keys on every /v1 route, and each job visible only to the key that made it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.keys.models import ApiKey
from app.main import create_app
from tests.api.factories import upload
from tests.support.api_app import (
    ADMIN_KEY,
    SettingsFactory,
    bearer,
    issue_key,
    keyed_client,
    resources_of,
)
from tests.support.images import encode

JOB = "00000000-0000-4000-8000-000000000000"
V1_ROUTES = [
    ("GET", "/v1/jobs"),
    ("GET", f"/v1/jobs/{JOB}"),
    ("GET", f"/v1/jobs/{JOB}/image"),
    ("GET", f"/v1/jobs/{JOB}/annotated"),
    ("POST", "/v1/uploads"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("DELETE", "/v1/keys/someone"),
]


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer yk_not-a-key", "Basic eDp5"])
def test_every_v1_route_needs_a_valid_key(
    client: TestClient, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    client.headers.pop("Authorization")
    response = client.request(method, path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_refused_key_sends_no_upload_anywhere(client: TestClient, shared_dir: Path) -> None:
    response = client.post(
        "/v1/uploads", files={"files": ("a.png", encode("PNG"))}, headers=bearer("yk_wrong")
    )
    assert response.status_code == 401
    assert [p for p in shared_dir.rglob("*") if p.is_file()] == []


def test_jobs_are_seen_only_by_their_key_and_by_admins(client: TestClient) -> None:
    (mine,) = upload(client)
    other = bearer(issue_key(client, "other"))
    admin = bearer(ADMIN_KEY)
    for path in (f"/v1/jobs/{mine}", f"/v1/jobs/{mine}/image", f"/v1/jobs/{mine}/annotated"):
        response = client.get(path, headers=other)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert client.get("/v1/jobs", headers=other).json()["jobs"] == []
    assert [j["id"] for j in client.get("/v1/jobs").json()["jobs"]] == [mine]
    assert [j["id"] for j in client.get("/v1/jobs", headers=admin).json()["jobs"]] == [mine]
    assert client.get(f"/v1/jobs/{mine}/image", headers=admin).status_code == 200


def test_a_revoked_key_is_refused_and_its_jobs_stay(client: TestClient) -> None:
    key = issue_key(client, "leaving")
    (job_id,) = upload_with(client, key)
    revoked = client.delete("/v1/keys/leaving", headers=bearer(ADMIN_KEY))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 401
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(ADMIN_KEY)).status_code == 200
    assert client.delete("/v1/keys/leaving", headers=bearer(ADMIN_KEY)).status_code == 200


def test_managing_keys_needs_an_admin_key(client: TestClient) -> None:
    for method, path in (("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", "/v1/keys/x")):
        response = client.request(method, path, json={"name": "x"})
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "forbidden"


def test_an_admin_creates_a_key_shown_once_and_stored_as_a_hash(client: TestClient) -> None:
    admin = bearer(ADMIN_KEY)
    created = client.post("/v1/keys", json={"name": "alice"}, headers=admin)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("yk_")
    assert len(key) >= 40
    assert key.startswith(created.json()["prefix"])
    listed = client.get("/v1/keys", headers=admin).json()["keys"]
    assert "alice" in [k["name"] for k in listed]
    assert key not in str(listed)
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    with resources_of(client).sessions() as session:
        stored = session.scalars(select(ApiKey).where(ApiKey.name == "alice")).one()
        assert key not in (stored.key_hash, stored.prefix, stored.name)
    taken = client.post("/v1/keys", json={"name": "alice"}, headers=admin)
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "name_taken"


def test_unfinished_jobs_are_capped_per_key(
    make_settings: SettingsFactory, shared_dir: Path
) -> None:
    with keyed_client(make_settings(max_unfinished_jobs_per_key=2)) as client:
        upload(client, 2)
        files_before = sorted(shared_dir.rglob("*.png"))
        refused = client.post("/v1/uploads", files={"files": ("c.png", encode("PNG"))})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_jobs"
        assert int(refused.headers["retry-after"]) > 0
        assert sorted(shared_dir.rglob("*.png")) == files_before
        other = issue_key(client, "someone-else")  # one key's backlog does not block another's
        assert upload_with(client, other)
        files = [("files", (f"{n}.png", encode("PNG"))) for n in range(3)]
        too_many = client.post("/v1/uploads", files=files, headers=bearer(other))
        assert too_many.status_code == 413  # can never fit: no Retry-After to wait for
        assert too_many.json()["error"]["details"]["max_files"] == 2


def test_with_keys_off_everyone_is_let_in(make_settings: SettingsFactory) -> None:
    with TestClient(create_app(make_settings(require_api_keys=False))) as client:
        (job_id,) = upload(client)
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200


def upload_with(client: TestClient, key: str) -> list[str]:
    response = client.post(
        "/v1/uploads", files={"files": ("k.png", encode("PNG"))}, headers=bearer(key)
    )
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]

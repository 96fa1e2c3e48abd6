"""GET /v1/jobs, /v1/jobs/{id}, its image and annotated image."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.api.factories import upload
from tests.support.images import encode


def test_get_job_shows_the_queued_job(client: TestClient) -> None:
    (job_id,) = upload(client)
    body = client.get(f"/v1/jobs/{job_id}").json()
    assert body["id"] == job_id
    assert body["status"] == "queued"
    assert body["detections"] is None
    assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]
    assert body["submitted_at"] is None


def test_unknown_and_malformed_ids_are_404(client: TestClient) -> None:
    for job_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "..%2Fetc"):
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_list_is_newest_first_and_pages_with_a_cursor(client: TestClient) -> None:
    ids = [job_id for _ in range(3) for job_id in upload(client, 2)]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 4}
    while True:
        page = client.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["jobs"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen)) == 6
    created = [client.get(f"/v1/jobs/{i}").json()["created_at"] for i in seen]
    assert created == sorted(created, reverse=True)


def test_list_filters_by_status(client: TestClient) -> None:
    upload(client, 2)
    assert len(client.get("/v1/jobs", params={"status": "queued"}).json()["jobs"]) == 2
    assert client.get("/v1/jobs", params={"status": "succeeded"}).json()["jobs"] == []
    assert client.get("/v1/jobs", params={"status": "bogus"}).status_code == 422


def test_image_is_served_as_uploaded(client: TestClient) -> None:
    data = encode("WEBP", 50, 20)
    response = client.post("/v1/uploads", files={"files": ("a.webp", data)})
    job_id = response.json()["jobs"][0]["id"]
    image = client.get(f"/v1/jobs/{job_id}/image")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/webp"
    assert image.content == data


def test_annotated_is_404_until_there_is_a_result(client: TestClient) -> None:
    (job_id,) = upload(client)
    response = client.get(f"/v1/jobs/{job_id}/annotated")
    assert response.status_code == 404
    assert "queued" in response.json()["error"]["message"]


def test_openapi_documents_the_surface(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/uploads",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/image",
        "/v1/jobs/{job_id}/annotated",
        "/v1/callbacks/kestra",
        "/health",
        "/ready",
    ):
        assert path in spec["paths"], path
    assert json.dumps(spec["paths"]["/v1/uploads"]["post"]["responses"]["413"])

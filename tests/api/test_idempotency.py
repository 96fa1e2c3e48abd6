"""Idempotency-Key: per API key, validated, and a reused key with another request refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.factories import job_count, stored_files
from tests.support.api_app import bearer, issue_key
from tests.support.images import encode


def send(client: TestClient, key: str, image: bytes, **headers: str) -> httpx.Response:
    response: httpx.Response = client.post(
        "/v1/uploads",
        files={"files": ("a.png", image)},
        headers={"Idempotency-Key": key, **headers},
    )
    return response


@pytest.mark.parametrize(
    "key",
    ["", " ", "\t", "with space", "ключ", "caf\u00e9", "x" * 201, "new\nline"],
    ids=["empty", "space", "tab", "inner-space", "cyrillic", "latin1", "too-long", "newline"],
)
def test_unusable_keys_are_refused(client: TestClient, shared_dir: Path, key: str) -> None:
    # httpx refuses to send some of these itself; send the raw bytes a client could send.
    raw = key.encode("utf-8")
    response = client.post(
        "/v1/uploads",
        files={"files": ("a.png", encode("PNG"))},
        headers=[("Idempotency-Key", raw)],
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert job_count(client) == 0
    assert stored_files(shared_dir) == []


def test_empty_keys_never_merge_two_clients(client: TestClient, shared_dir: Path) -> None:
    other = bearer(issue_key(client, "client-b"))
    for headers in ({}, other):
        response = client.post(
            "/v1/uploads",
            files={"files": ("a.png", encode("PNG"))},
            headers=[("Idempotency-Key", b""), *headers.items()],
        )
        assert response.status_code == 400
    assert job_count(client) == 0


def test_a_reused_key_with_other_files_is_422(client: TestClient, shared_dir: Path) -> None:
    first = send(client, "order-7", encode("PNG", 40, 30))
    assert first.status_code == 202
    reused = send(client, "order-7", encode("PNG", 41, 30))
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert job_count(client) == 1
    assert len(stored_files(shared_dir)) == 1


def test_keys_are_scoped_to_the_api_key(client: TestClient) -> None:
    image = encode("PNG")
    mine = send(client, "same-key", image).json()["jobs"]
    other = bearer(issue_key(client, "b"))
    theirs = send(client, "same-key", image, **other).json()["jobs"]
    assert {j["id"] for j in mine}.isdisjoint(j["id"] for j in theirs)
    assert job_count(client) == 2


def test_a_printable_key_round_trips(client: TestClient) -> None:
    key = "AZaz09-_.~!#$%&'*+^`|" + "x" * 178  # 200 visible ASCII characters
    first = send(client, key, encode("PNG")).json()["jobs"]
    again = send(client, key, encode("PNG")).json()["jobs"]
    assert [j["id"] for j in first] == [j["id"] for j in again]


def test_concurrent_identical_requests_make_one_set_of_jobs(
    client: TestClient, shared_dir: Path
) -> None:
    image = encode("PNG")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: send(client, "burst-1", image), range(4)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["jobs"][0]["id"] for a in answers}) == 1
    assert job_count(client) == 1
    assert len(stored_files(shared_dir)) == 1

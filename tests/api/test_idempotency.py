"""Idempotency-Key: per API key, validated, and a reused key with another request refused."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tests.api.factories import assert_refused, job_count, stored_files
from tests.support.api_app import bearer, issue_key
from tests.support.images import encode

IMAGE = encode("PNG")


def send(
    client: TestClient, key: str | bytes, image: bytes = IMAGE, headers: Mapping[str, str] = {}
) -> Response:
    # A key may be bytes: httpx refuses to send some bad keys as str, not as raw bytes.
    response: Response = client.post(
        "/v1/uploads",
        files={"files": ("a.png", image)},
        headers=[("Idempotency-Key", key), *headers.items()],
    )
    return response


@pytest.mark.parametrize(
    "key",
    ["", " ", "\t", "with space", "ключ", "caf\u00e9", "x" * 201, "new\nline"],
    ids=["empty", "space", "tab", "inner-space", "cyrillic", "latin1", "too-long", "newline"],
)
def test_unusable_keys_are_refused(client: TestClient, shared_dir: Path, key: str) -> None:
    assert_refused(client, shared_dir, send(client, key.encode()), 400, "invalid_idempotency_key")


def test_empty_keys_never_merge_two_clients(client: TestClient) -> None:
    other = bearer(issue_key(client, "client-b"))
    for headers in ({}, other):
        assert send(client, b"", headers=headers).status_code == 400
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
    mine = send(client, "same-key").json()["jobs"]
    other = bearer(issue_key(client, "b"))
    theirs = send(client, "same-key", headers=other).json()["jobs"]
    assert {j["id"] for j in mine}.isdisjoint(j["id"] for j in theirs)
    assert job_count(client) == 2


def test_a_printable_key_round_trips(client: TestClient) -> None:
    key = "AZaz09-_.~!#$%&'*+^`|" + "x" * 178  # 200 visible ASCII characters
    first = send(client, key).json()["jobs"]
    again = send(client, key).json()["jobs"]
    assert [j["id"] for j in first] == [j["id"] for j in again]


def test_concurrent_identical_requests_make_one_set_of_jobs(
    client: TestClient, shared_dir: Path
) -> None:
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: send(client, "burst-1"), range(4)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["jobs"][0]["id"] for a in answers}) == 1
    assert job_count(client) == 1
    assert len(stored_files(shared_dir)) == 1

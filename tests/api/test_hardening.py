"""Every answer in the one error shape with `nosniff`; HEAD where GET is; stalled bodies,
bad cursors, a full disk and server paths handled at the boundary."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.jobs import repository
from tests.api.factories import job_count, stored_files, upload
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer, keyed_client, resources_of
from tests.support.images import encode
from tests.support.live_api import serve


def test_every_answer_says_nosniff(client: TestClient) -> None:
    (job_id,) = upload(client)
    for path in ("/health", "/", "/openapi.json", "/v1/jobs", f"/v1/jobs/{job_id}/image"):
        response = client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
    for response in (client.get("/v1/nothing"), client.get("/v1/jobs", headers=bearer("x"))):
        assert response.status_code >= 400
        assert response.headers["x-content-type-options"] == "nosniff"


def test_head_is_answered_wherever_get_is(client: TestClient) -> None:
    (job_id,) = upload(client)
    for path in ("/health", "/ready", "/", "/v1/jobs", f"/v1/jobs/{job_id}/image"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == str(len(got.content)), path
    assert client.head("/v1/uploads").status_code == 405


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "value",
    [
        "%%%",
        cursor("2026-12-02T10:00:00|00000000-0000-4000-8000-000000000000"),  # no zone
        cursor("0001-01-01T00:00:00+14:00|00000000-0000-4000-8000-000000000000"),
        cursor("9999-12-31T23:59:59-14:00|00000000-0000-4000-8000-000000000000"),
        cursor("2026-12-02T10:00:00+00:00|not-a-job\x00"),
        cursor("no separator"),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
    ],
)
def test_a_tampered_cursor_is_400(client: TestClient, value: str) -> None:
    response = client.get("/v1/jobs", params={"cursor": value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"


def test_an_unexpected_error_is_500_in_the_error_shape(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(repository, "page", broken)
    with keyed_client(make_settings(), raise_server_exceptions=False) as client:
        response = client.get("/v1/jobs")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "/srv" not in response.text


def test_corrupt_image_details_name_no_server_path(client: TestClient, shared_dir: Path) -> None:
    data = encode("PNG", 50, 50)
    response = client.post("/v1/uploads", files={"files": ("x.png", data[: len(data) - 30])})
    assert response.status_code == 422
    assert str(shared_dir) not in response.text
    assert str(shared_dir.resolve()) not in response.text


def test_a_stalled_request_body_is_408(make_settings: SettingsFactory) -> None:
    settings = make_settings(body_timeout_s=0.5)
    with serve(settings) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
                b"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 5000\r\n\r\n"
                b"--B\r\n"  # ... and then nothing more
            )
            answer = http.client.HTTPResponse(conn)
            answer.begin()
            body = json.loads(answer.read())
    assert answer.status == 408, body
    assert body["error"]["code"] == "request_timeout"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem for the shared directory (tmpfs; needs root, as in CI)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the disk-full tests mount a tmpfs: run them as root")
        pytest.skip("needs root to mount a tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    free = shutil.disk_usage(disk).free
    (disk / "ballast").write_bytes(b"\0" * max(0, free - leave_bytes))


def test_a_full_disk_is_507_and_leaves_nothing(
    make_settings: SettingsFactory, small_disk: Path
) -> None:
    with keyed_client(make_settings(shared_data_dir=small_disk)) as client:
        fill(small_disk, 64 * 1024)
        noise = os.urandom(600 * 1024)  # the PNG's header is fine; its size fills the disk
        body = encode("PNG", 10, 10) + noise
        response = client.post("/v1/uploads", files={"files": ("big.png", body)})
        assert response.status_code == 507, response.text
        assert response.json()["error"]["code"] == "insufficient_storage"
        assert job_count(client) == 0
        (small_disk / "ballast").unlink()
        assert stored_files(small_disk) == []


def test_below_the_free_space_floor_uploads_wait_and_ready_says_why(
    make_settings: SettingsFactory, small_disk: Path
) -> None:
    settings = make_settings(shared_data_dir=small_disk, min_free_bytes=1024 * 1024)
    with keyed_client(settings) as client:
        assert client.get("/ready").json()["checks"]["storage"] in ("ok", "nearly full")
        fill(small_disk, 512 * 1024)
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["storage"].startswith("nearly full")
        response = client.post("/v1/uploads", files={"files": ("a.png", encode("PNG"))})
        assert response.status_code == 507
        assert resources_of(client).storage.root == small_disk.resolve()

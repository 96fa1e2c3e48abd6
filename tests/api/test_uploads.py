"""POST /v1/uploads: accepted uploads, and every kind of bad input leaving nothing behind."""

from __future__ import annotations

import errno
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import app.storage
from app.jobs import intake
from tests.api.factories import assert_refused, job_count, stored_files
from tests.support.api_app import SettingsFactory, keyed_client, resources_of
from tests.support.images import encode, png_bomb


def multipart(parts: list[tuple[bytes, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A body and its headers by hand, so filenames can hold what no well-behaved client sends."""
    out = io.BytesIO()
    for filename, payload in parts:
        out.write(b"--XyZ\r\n")
        out.write(b'Content-Disposition: form-data; name="files"; filename="' + filename + b'"\r\n')
        out.write(b"Content-Type: image/jpeg\r\n\r\n" + payload + b"\r\n")
    out.write(b"--XyZ--\r\n")
    return out.getvalue(), {"Content-Type": "multipart/form-data; boundary=XyZ"}


def test_single_upload_is_queued_with_location(client: TestClient, shared_dir: Path) -> None:
    response = client.post("/v1/uploads", files={"files": ("cat.jpg", encode("JPEG"))})
    assert response.status_code == 202
    (job,) = response.json()["jobs"]
    assert job["status"] == "queued"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert (job["image_width"], job["image_height"], job["image_format"]) == (64, 48, "JPEG")
    assert stored_files(shared_dir) == [f"uploads/{job['id']}.jpg"]


def test_several_files_make_several_jobs(client: TestClient, shared_dir: Path) -> None:
    files = [
        ("files", (f"img{i}.{ext}", encode(fmt)))
        for i, (fmt, ext) in enumerate([("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
    ]
    response = client.post("/v1/uploads", files=files)
    assert response.status_code == 202
    jobs = response.json()["jobs"]
    assert [j["image_format"] for j in jobs] == ["JPEG", "PNG", "WEBP"]
    assert "location" not in response.headers
    assert stored_files(shared_dir) == sorted(
        f"uploads/{j['id']}.{ext}" for j, ext in zip(jobs, ["jpg", "png", "webp"], strict=True)
    )


def test_content_is_sniffed_not_the_name_or_type(client: TestClient) -> None:
    response = client.post(
        "/v1/uploads", files={"files": ("photo.gif", encode("PNG"), "image/gif")}
    )
    assert response.status_code == 202
    assert response.json()["jobs"][0]["image_format"] == "PNG"


def test_idempotency_key_returns_the_same_jobs(client: TestClient, shared_dir: Path) -> None:
    headers = {"Idempotency-Key": "retry-me-1"}
    first = client.post("/v1/uploads", files={"files": ("a.png", encode("PNG"))}, headers=headers)
    second = client.post("/v1/uploads", files={"files": ("a.png", encode("PNG"))}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert [j["id"] for j in first.json()["jobs"]] == [j["id"] for j in second.json()["jobs"]]
    assert job_count(client) == 1
    assert len(stored_files(shared_dir)) == 1


def test_empty_file_is_refused(client: TestClient, shared_dir: Path) -> None:
    response = client.post("/v1/uploads", files={"files": ("empty.jpg", b"")})
    assert_refused(client, shared_dir, response, 400, "empty_file")


def test_text_named_like_an_image_is_not_an_image(client: TestClient, shared_dir: Path) -> None:
    response = client.post(
        "/v1/uploads", files={"files": ("x.jpg", b"hello, this is plain text" * 10, "image/jpeg")}
    )
    body = assert_refused(client, shared_dir, response, 415, "not_an_image")
    assert "JPEG, PNG and WebP" in body["error"]["message"]


def test_tiny_non_image_is_not_an_image(client: TestClient, shared_dir: Path) -> None:
    response = client.post("/v1/uploads", files={"files": ("x.png", b"GIF")})
    assert_refused(client, shared_dir, response, 415, "not_an_image")


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_unsupported_format_names_the_supported_ones(
    client: TestClient, shared_dir: Path, fmt: str
) -> None:
    response = client.post("/v1/uploads", files={"files": ("x.jpg", encode(fmt))})
    body = assert_refused(client, shared_dir, response, 415, "unsupported_format")
    assert fmt in body["error"]["message"]
    assert body["error"]["details"]["supported"] == ["JPEG", "PNG", "WEBP"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image_is_refused(client: TestClient, shared_dir: Path, fmt: str) -> None:
    data = encode(fmt, 300, 200, "blue")
    response = client.post("/v1/uploads", files={"files": ("t.img", data[: len(data) * 2 // 3])})
    assert_refused(client, shared_dir, response, 422, "corrupt_image")


def test_corrupt_png_is_refused(client: TestClient, shared_dir: Path) -> None:
    data = bytearray(encode("PNG", 300, 200, "green"))
    data[60:80] = b"\x00" * 20  # inside IDAT: checksum no longer matches
    response = client.post("/v1/uploads", files={"files": ("c.png", bytes(data))})
    assert_refused(client, shared_dir, response, 422, "corrupt_image")


def test_a_bad_file_refuses_the_whole_request(client: TestClient, shared_dir: Path) -> None:
    files = [("files", ("good.png", encode("PNG"))), ("files", ("bad.jpg", b"not an image!!!!!"))]
    response = client.post("/v1/uploads", files=files)
    assert_refused(client, shared_dir, response, 415, "not_an_image")


def test_too_many_bytes_is_413_while_streaming(client: TestClient, shared_dir: Path) -> None:
    limit = resources_of(client).settings.max_upload_bytes
    payload = encode("PNG") + b"\x00" * limit  # valid start, then more than allowed
    data, headers = multipart([(b"big.png", payload)])
    # Chunked, without Content-Length: only the streaming limit can stop it.
    chunks = (data[start : start + 65536] for start in range(0, len(data), 65536))
    response = client.post("/v1/uploads", content=chunks, headers=headers)
    body = assert_refused(client, shared_dir, response, 413, "file_too_large")
    assert body["error"]["details"]["max_bytes"] == limit


def test_declared_oversized_request_is_refused_before_reading(
    client: TestClient, shared_dir: Path
) -> None:
    data, headers = multipart([(b"a.png", encode("PNG"))])
    headers["Content-Length"] = str(10**12)
    response = client.post("/v1/uploads", content=data, headers=headers)
    assert_refused(client, shared_dir, response, 413, "payload_too_large")


@pytest.mark.parametrize("side", [10_000, 60_000])
def test_too_many_pixels_is_refused_from_the_header(
    client: TestClient, shared_dir: Path, side: int
) -> None:
    # side x side claimed, a few KB of data: only the header can have been read.
    response = client.post("/v1/uploads", files={"files": ("bomb.png", png_bomb(side, side))})
    body = assert_refused(client, shared_dir, response, 413, "too_many_pixels")
    assert body["error"]["details"]["max_pixels"] == resources_of(client).settings.max_image_pixels


def test_too_many_files_is_refused(client: TestClient, shared_dir: Path) -> None:
    limit = resources_of(client).settings.max_files_per_request
    files = [("files", (f"{i}.png", encode("PNG"))) for i in range(limit + 1)]
    response = client.post("/v1/uploads", files=files)
    assert_refused(client, shared_dir, response, 413, "too_many_files")


def test_no_files_field_is_refused(client: TestClient, shared_dir: Path) -> None:
    response = client.post("/v1/uploads", files={"image": ("a.png", encode("PNG"))})
    assert_refused(client, shared_dir, response, 400, "no_files")


def test_not_multipart_is_refused(client: TestClient, shared_dir: Path) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.post("/v1/uploads", content=json.dumps({"files": []}), headers=headers)
    assert_refused(client, shared_dir, response, 400, "bad_request")


def test_body_cut_short_is_refused(client: TestClient, shared_dir: Path) -> None:
    data, headers = multipart([(b"a.png", encode("PNG"))])
    response = client.post("/v1/uploads", content=data[:-40], headers=headers)
    assert_refused(client, shared_dir, response, 400, "bad_request")


@pytest.mark.parametrize(
    ("raw_name", "kept"),
    [
        (b"../../x.jpg", "x.jpg"),
        (b"..\\..\\windows\\x.jpg", "x.jpg"),
        (b"/etc/passwd", "passwd"),
        (b"nul\x00byte.jpg", "nulbyte.jpg"),
        (b"a" * 1000 + b".jpg", "a" * 255),
        ("фото_猫_🐱.jpg".encode(), "фото_猫_🐱.jpg"),
        (b"..", None),
    ],
)
def test_hostile_filenames_are_kept_only_as_clean_metadata(
    client: TestClient, shared_dir: Path, raw_name: bytes, kept: str | None
) -> None:
    data, headers = multipart([(raw_name, encode("JPEG"))])
    response = client.post("/v1/uploads", content=data, headers=headers)
    assert response.status_code == 202, response.text
    (job,) = response.json()["jobs"]
    assert job["filename"] == kept
    # Stored under the server's name only, inside uploads/.
    assert stored_files(shared_dir) == [f"uploads/{job['id']}.jpg"]


def test_the_upload_and_its_name_are_synced_before_the_job_is_committed(
    client: TestClient, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_commit = app.storage._fsync, Session.commit

    def fsync(*paths: Path) -> None:
        real_fsync(*paths)
        events.extend(f"fsync {path.relative_to(shared_dir)}" for path in paths)

    def commit(session: Session) -> None:
        events.append("commit")
        real_commit(session)

    monkeypatch.setattr(app.storage, "_fsync", fsync)
    monkeypatch.setattr(Session, "commit", commit)
    response = client.post("/v1/uploads", files={"files": ("cat.jpg", encode("JPEG"))})
    assert response.status_code == 202
    job_id = response.json()["jobs"][0]["id"]
    assert events == [f"fsync uploads/{job_id}.jpg", "fsync uploads", "commit"]


def test_a_failing_fsync_leaves_no_job_and_no_file(
    make_settings: SettingsFactory, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*paths: Path) -> None:
        raise OSError(errno.EIO, "I/O error", str(paths[0]))

    monkeypatch.setattr(app.storage, "_fsync", failing)
    with keyed_client(make_settings(), raise_server_exceptions=False) as client:
        response = client.post("/v1/uploads", files={"files": ("cat.jpg", encode("JPEG"))})
        assert response.status_code == 500
        assert job_count(client) == 0
    assert stored_files(shared_dir) == []


def test_a_retry_racing_the_first_request_gets_its_jobs(
    client: TestClient, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"Idempotency-Key": "race-1"}
    first = client.post("/v1/uploads", files={"files": ("a.png", encode("PNG"))}, headers=headers)
    # The retry's lookup ran before the first request committed: its INSERT then conflicts.
    real, calls = intake.jobs_for_retry, []

    def stale_first_lookup(session: Session, request: intake.UploadRequest) -> Any:
        calls.append(request.idempotency_key)
        return [] if len(calls) == 1 else real(session, request)

    monkeypatch.setattr(intake, "jobs_for_retry", stale_first_lookup)
    second = client.post("/v1/uploads", files={"files": ("a.png", encode("PNG"))}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert [j["id"] for j in second.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    assert calls == ["race-1", "race-1"]  # the stale lookup, then the winner's jobs
    assert job_count(client) == 1
    assert len(stored_files(shared_dir)) == 1

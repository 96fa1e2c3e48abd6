"""PUT, GET and DELETE /v1/models: weights pushed by admins onto the shared volume, checked,
placed atomically and listed with their digests; refused pushes leave nothing behind."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import repository
from app.models.models import StoredModel
from tests.api.factories import push_model, stored_files, torch_archive, upload
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer, keyed_client, resources_of
from tests.support.images import encode

ADMIN = bearer(ADMIN_KEY)


def model_rows(client: TestClient) -> int:
    with resources_of(client).sessions() as session:
        return session.scalar(select(func.count()).select_from(StoredModel)) or 0


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/models")
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()["models"]}


def assert_refused(
    client: TestClient, shared_dir: Path, response: Any, status: int, code: str
) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert stored_files(shared_dir) == []  # nothing in tmp/ or models/
    assert model_rows(client) == 0


def test_a_new_model_is_201_placed_whole_and_recorded(client: TestClient, shared_dir: Path) -> None:
    weights = torch_archive()

    response = push_model(client, "mine.pt", weights)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "mine.pt"
    assert (body["source"], body["default"]) == ("volume", False)
    assert body["size_bytes"] == len(weights)
    assert body["sha256"] == hashlib.sha256(weights).hexdigest()
    assert body["created_at"] == body["updated_at"]
    placed = shared_dir / "models" / "mine.pt"
    assert placed.read_bytes() == weights
    assert placed.stat().st_mode & 0o777 == 0o644  # inference containers read it
    assert stored_files(shared_dir) == ["models/mine.pt"]  # nothing left in tmp/
    assert model_rows(client) == 1


def test_pushing_a_name_again_replaces_its_weights_with_200(
    client: TestClient, shared_dir: Path
) -> None:
    first = push_model(client, "mine.pt", torch_archive(content=b"v1")).json()
    newer = torch_archive(content=b"v2")

    response = push_model(client, "mine.pt", newer)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sha256"] == hashlib.sha256(newer).hexdigest() != first["sha256"]
    assert body["created_at"] == first["created_at"]
    assert body["updated_at"] > first["updated_at"]
    assert (shared_dir / "models" / "mine.pt").read_bytes() == newer
    assert listed(client)["mine.pt"]["sha256"] == body["sha256"]
    assert stored_files(shared_dir) == ["models/mine.pt"]
    assert model_rows(client) == 1


def test_any_key_lists_the_models_with_digests_and_the_default_from_the_image(
    client: TestClient,
) -> None:
    pushed = {
        name: push_model(client, name, torch_archive(content=name.encode())).json()
        for name in ("b.pt", "a.pt")
    }

    response = client.get("/v1/models")  # the client's own key: not an admin's

    assert response.status_code == 200
    body = response.json()
    assert body["default"] == "yolo11n.pt"
    assert [entry["name"] for entry in body["models"]] == ["a.pt", "b.pt", "yolo11n.pt"]
    for entry in body["models"][:2]:
        assert entry == {**pushed[entry["name"]], "default": False}
        assert entry["format"] == "pytorch"
    unknown = dict.fromkeys(["size_bytes", "sha256", "created_at", "updated_at"])  # not on disk
    assert (
        body["models"][2]
        == {"name": "yolo11n.pt", "source": "image", "default": True, "format": "pytorch"} | unknown
    )


def test_a_default_model_file_in_models_is_listed_with_its_digest(
    make_settings: SettingsFactory, shared_dir: Path
) -> None:
    (shared_dir / "models").mkdir()
    weights = torch_archive(content=b"downloaded by Ultralytics")
    (shared_dir / "models" / "yolo11n.pt").write_bytes(weights)  # not pushed: no row

    with keyed_client(make_settings()) as client:
        entry = listed(client)["yolo11n.pt"]
        assert (entry["source"], entry["default"]) == ("volume", True)
        assert entry["sha256"] == hashlib.sha256(weights).hexdigest()
        assert entry["size_bytes"] == len(weights)
        assert entry["created_at"] is None  # never pushed

        pushed = push_model(client, "yolo11n.pt").json()
        assert listed(client)["yolo11n.pt"] == {**pushed, "default": True}


def test_a_body_over_max_model_bytes_is_refused_while_streaming(
    make_settings: SettingsFactory, shared_dir: Path
) -> None:
    with keyed_client(make_settings(max_model_bytes=64 * 1024)) as client:
        response = client.put(
            "/v1/models/big.pt",
            content=iter([b"\0" * 2**14] * 16),  # chunked: no Content-Length to refuse up front
            headers={**ADMIN, "Content-Type": "application/octet-stream"},
        )
        assert_refused(client, shared_dir, response, 413, "payload_too_large")

        declared = push_model(client, "big.pt", b"\0" * (64 * 1024 + 1))
        assert_refused(client, shared_dir, declared, 413, "payload_too_large")
        assert declared.json()["error"]["details"] == {"max_bytes": 64 * 1024}

        assert push_model(client, "fits.pt", torch_archive()).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        encode("PNG"),
        b"\x80\x02}q\x00.",  # a bare pickle (torch.save's legacy format is one too)
        torch_archive("weights/version", "weights/data/0"),  # no data.pkl
        torch_archive("data.pkl"),  # not in a folder, as torch.save never writes it
        torch_archive("a/b/data.pkl"),
        b"PK\x05\x06" + b"\0" * 18,  # an empty zip
        b"PK\x03\x04 not really a zip",
    ],
    ids=["png", "pickle", "no-data-pkl", "top-level", "nested", "empty-zip", "broken-zip"],
)
def test_what_is_not_a_pytorch_archive_is_refused_with_415(
    client: TestClient, shared_dir: Path, body: bytes
) -> None:
    response = push_model(client, "mine.pt", body)
    assert_refused(client, shared_dir, response, 415, "not_a_model")


def test_an_empty_body_is_refused(client: TestClient, shared_dir: Path) -> None:
    assert_refused(client, shared_dir, push_model(client, "mine.pt", b""), 400, "empty_file")


@pytest.mark.parametrize(
    "name",
    [
        "mine",
        "mine.bin",
        "mine.PT",
        ".hidden.pt",
        "-x.pt",
        "_x.pt",
        "a b.pt",
        "ü.pt",
        "a.pt.exe",
        "x" * 101 + ".pt",
        ".pt",
        "a.pt;rm",
    ],
)
def test_a_name_that_does_not_fit_the_pattern_is_400(
    client: TestClient, shared_dir: Path, name: str
) -> None:
    assert_refused(client, shared_dir, push_model(client, name), 400, "invalid_model_name")
    removed = client.delete(f"/v1/models/{name}", headers=ADMIN)
    assert removed.status_code == 400
    assert removed.json()["error"]["code"] == "invalid_model_name"


def test_the_longest_name_fits(client: TestClient) -> None:
    assert push_model(client, "x" * 100 + ".pt").status_code == 201  # 1 + 99 characters + .pt


def test_managing_models_needs_an_admin_key(client: TestClient, shared_dir: Path) -> None:
    user_key = client.headers["authorization"].removeprefix("Bearer ")

    as_user = push_model(client, "mine.pt", key=user_key)
    assert_refused(client, shared_dir, as_user, 403, "forbidden")
    client.headers.pop("authorization")
    anonymous = client.put("/v1/models/mine.pt", content=torch_archive())
    assert_refused(client, shared_dir, anonymous, 401, "unauthorized")
    assert client.get("/v1/models").status_code == 401

    assert push_model(client, "mine.pt").status_code == 201
    assert client.delete("/v1/models/mine.pt", headers=bearer(user_key)).status_code == 403
    assert client.delete("/v1/models/mine.pt").status_code == 401
    assert (shared_dir / "models" / "mine.pt").is_file()


def test_delete_removes_the_file_and_the_row_then_404(client: TestClient, shared_dir: Path) -> None:
    push_model(client, "mine.pt")

    first = client.delete("/v1/models/mine.pt", headers=ADMIN)
    again = client.delete("/v1/models/mine.pt", headers=ADMIN)

    assert (first.status_code, first.content) == (204, b"")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "not_found"
    assert stored_files(shared_dir) == []
    assert model_rows(client) == 0
    assert "mine.pt" not in listed(client)


def test_delete_of_a_model_never_pushed_is_404(client: TestClient) -> None:
    never = client.delete("/v1/models/never.pt", headers=ADMIN)
    default = client.delete("/v1/models/yolo11n.pt", headers=ADMIN)

    assert never.status_code == default.status_code == 404
    assert "inference image" in default.json()["error"]["message"]
    assert "yolo11n.pt" in listed(client)


def test_a_row_whose_file_is_gone_is_not_listed_and_delete_clears_it(
    client: TestClient, shared_dir: Path
) -> None:
    push_model(client, "mine.pt")
    (shared_dir / "models" / "mine.pt").unlink()  # as if removal stopped after the file

    assert "mine.pt" not in listed(client)
    assert client.delete("/v1/models/mine.pt", headers=ADMIN).status_code == 204
    assert model_rows(client) == 0


def test_weights_unfinished_jobs_use_are_neither_replaced_nor_removed(
    client: TestClient, shared_dir: Path
) -> None:
    weights = torch_archive(content=b"v1")
    push_model(client, "mine.pt", weights)
    files = {"files": ("a.png", encode("PNG"))}
    assert client.post("/v1/uploads", files=files, data={"model": "mine.pt"}).status_code == 202
    upload(client)  # a job of the default model does not count

    replaced = push_model(client, "mine.pt", torch_archive(content=b"v2"))
    removed = client.delete("/v1/models/mine.pt", headers=ADMIN)

    for response in (replaced, removed):
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "model_in_use"
        assert response.json()["error"]["details"] == {"name": "mine.pt", "unfinished": 1}
    assert (shared_dir / "models" / "mine.pt").read_bytes() == weights
    assert not list((shared_dir / "tmp").iterdir())
    assert push_model(client, "mine.pt", weights).status_code == 200  # the same weights: fine


def test_a_first_push_that_loses_a_race_for_the_name_replaces_the_winner(
    client: TestClient, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    push_model(client, "mine.pt", torch_archive(content=b"winner"))
    real_get = repository.get
    calls: list[str] = []

    def unseen_once(session: Session, name: str, *, lock: bool = False) -> StoredModel | None:
        calls.append(name)  # the first look misses the winner's row, as if not yet committed
        return None if len(calls) == 1 else real_get(session, name, lock=lock)

    monkeypatch.setattr(repository, "get", unseen_once)
    loser = torch_archive(content=b"loser")

    response = push_model(client, "mine.pt", loser)

    assert response.status_code == 200, response.text
    assert response.json()["sha256"] == hashlib.sha256(loser).hexdigest()
    assert (shared_dir / "models" / "mine.pt").read_bytes() == loser
    assert len(calls) == 2
    assert model_rows(client) == 1


@pytest.mark.slow  # real exports (once per session)
def test_an_export_is_removed_whole_unless_unfinished_jobs_use_it(
    client: TestClient, shared_dir: Path, exports_in: Callable[[Path], None]
) -> None:
    exports_in(shared_dir)
    (shared_dir / "elsewhere").mkdir()
    (shared_dir / "models" / "linked_openvino_model").symlink_to(shared_dir / "elsewhere")
    queued = client.post(
        "/v1/uploads", files={"files": ("a.png", encode("PNG"))}, data={"model": "shapes.onnx"}
    )
    assert queued.status_code == 202, queued.text

    in_use = client.delete("/v1/models/shapes.onnx", headers=ADMIN)
    removed = client.delete("/v1/models/shapes_openvino_model", headers=ADMIN)
    link = client.delete("/v1/models/linked_openvino_model", headers=ADMIN)

    assert in_use.json()["error"]["code"] == "model_in_use"
    assert (removed.status_code, link.status_code) == (204, 204)
    assert sorted(p.name for p in (shared_dir / "models").iterdir()) == ["shapes.onnx"]
    assert (shared_dir / "elsewhere").is_dir()  # the link went, not what it pointed at
    assert list(listed(client)) == ["shapes.onnx", "yolo11n.pt"]
    again = client.delete("/v1/models/shapes_openvino_model", headers=ADMIN)
    assert again.status_code == 404
    assert client.delete("/v1/models/x.tflite", headers=ADMIN).status_code == 400

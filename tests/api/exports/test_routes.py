"""Exports through the API: POST /v1/models/<name>/exports (admin) starts one on the
orchestrator (Local: a real `detect.py --export` subprocess; Kestra: the stand-in's
execution), the reconciler finishes it once the files pass the checks, and then the export
is a model: listed, named by uploads, its digest on the jobs. Bad requests leave nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.exports.models import ExportState, ModelExport
from tests.api.factories import push_model
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer, keyed_client, resources_of
from tests.support.images import encode
from tests.support.kestra import KestraStandin
from tests.support.paths import FIXTURE_MODEL
from tests.support.wait import wait_until

ADMIN = bearer(ADMIN_KEY)


def ask(client: TestClient, name: str, fmt: str = "openvino", **headers: str) -> httpx.Response:
    response: httpx.Response = client.post(
        f"/v1/models/{name}/exports", json={"format": fmt}, headers=headers or ADMIN
    )
    return response


def state(client: TestClient, export: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = client.get(
        f"/v1/models/{export['model']}/exports/{export['id']}", headers=ADMIN
    ).json()
    return body


def finished(client: TestClient, export: dict[str, Any]) -> dict[str, Any]:
    """The export once the reconciler (stepped here) has finished it."""

    def step() -> dict[str, Any]:
        resources_of(client).reconciler.advance_exports()
        return state(client, export)

    return wait_until(
        step, 180, what="the export to end", until=lambda e: e["state"] in ("succeeded", "failed")
    )


def export_count(client: TestClient) -> int:
    with resources_of(client).sessions() as session:
        return session.scalar(select(func.count()).select_from(ModelExport)) or 0


@pytest.mark.slow  # a real export
def test_an_export_runs_through_the_local_orchestrator_and_becomes_a_model(
    client: TestClient,
) -> None:
    weights = FIXTURE_MODEL.read_bytes()
    pushed = push_model(client, "shapes.pt", weights).json()

    response = ask(client, "shapes.pt")

    assert response.status_code == 202, response.text
    export = response.json()
    assert response.headers["Location"] == f"/v1/models/shapes.pt/exports/{export['id']}"
    assert (export["state"], export["name"], export["format"]) == (
        "running",
        "shapes_openvino_model",
        "openvino",
    )
    assert (export["model_sha256"], export["image_size"]) == (pushed["sha256"], 640)
    assert ask(client, "shapes.pt").json()["error"]["code"] == "export_in_progress"
    done = finished(client, export)
    assert done["state"] == "succeeded", done["error"]
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    entry = listed["shapes_openvino_model"]
    assert (entry["format"], entry["sha256"], entry["size_bytes"]) == (
        "openvino",
        done["sha256"],
        done["size_bytes"],
    )
    upload = client.post(
        "/v1/uploads",
        files={"files": ("a.png", encode("PNG"))},
        data={"model": "shapes_openvino_model"},
    )
    assert upload.status_code == 202, upload.text
    (job,) = upload.json()["jobs"]
    assert (job["model"], job["model_sha256"]) == ("models/shapes_openvino_model", done["sha256"])
    # Finished, but the queued job recorded this export's digest: it is not replaced under it.
    assert ask(client, "shapes.pt").json()["error"]["code"] == "model_in_use"


@pytest.mark.slow  # a real export
def test_after_a_restart_mid_export_the_reconciler_starts_it_again(
    make_settings: SettingsFactory,
) -> None:
    """The API died while its Local subprocess exported: the row says running, with an
    execution the new process does not know."""
    settings = make_settings()
    with keyed_client(settings) as client:
        push_model(client, "shapes.pt", FIXTURE_MODEL.read_bytes())
        resources = resources_of(client)
        export = ask(client, "shapes.pt", "onnx").json()
        resources.orchestrator.close()  # as if the API had stopped
    with keyed_client(settings) as client, resources_of(client).sessions() as session:
        row = session.get(ModelExport, export["id"])
        assert row is not None
        assert row.state == ExportState.RUNNING
        row.execution_id = "local-from-the-process-that-died"
        session.commit()
        done = finished(client, export)

        assert done["state"] == "succeeded", done["error"]
        assert done["execution_id"] != "local-from-the-process-that-died"
        names = [m["name"] for m in client.get("/v1/models").json()["models"]]
        assert "shapes.onnx" in names


@pytest.mark.slow  # a real (failing) export
def test_an_export_that_fails_says_why_and_registers_nothing(client: TestClient) -> None:
    push_model(client, "fake.pt")  # a zip shaped like torch.save's, not a model

    done = finished(client, ask(client, "fake.pt", "onnx").json())

    assert done["state"] == "failed"
    assert "the export script exited 1" in done["error"]
    assert "fake.onnx" not in [m["name"] for m in client.get("/v1/models").json()["models"]]


def test_kestra_gets_an_execution_of_the_export_flow(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    push_model(kestra_client, "shapes.pt", FIXTURE_MODEL.read_bytes())

    export = ask(kestra_client, "shapes.pt", "onnx").json()

    stored = kestra.state.executions[export["execution_id"]]
    assert stored["flowId"] == "yolo-export"
    assert stored["labels"] == [{"key": "export_id", "value": export["id"]}]
    kestra.state.set_state(export["execution_id"], "SUCCESS")  # but wrote no files
    done = finished(kestra_client, export)
    assert done["state"] == "failed"
    assert "the export is not usable: shapes.onnx does not exist" in done["error"]


def test_while_kestra_is_down_the_export_waits_queued_and_starts_later(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    push_model(kestra_client, "shapes.pt", FIXTURE_MODEL.read_bytes())
    kestra.stop()
    response = ask(kestra_client, "shapes.pt", "onnx")
    assert response.status_code == 202, response.text
    export = response.json()
    assert (export["state"], export["execution_id"]) == ("queued", None)

    kestra.start()
    resources_of(kestra_client).reconciler.advance_exports()

    started = state(kestra_client, export)
    assert started["state"] == "running"
    assert kestra.state.executions[started["execution_id"]]["flowId"] == "yolo-export"


@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "code"),
    [
        ("shapes.pt", {"format": "onnx"}, {}, 403, "forbidden"),
        ("shapes.onnx", {"format": "onnx"}, ADMIN, 400, "invalid_model_name"),
        ("none.pt", {"format": "onnx"}, ADMIN, 404, "not_found"),
        ("shapes.pt", {"format": "tflite"}, ADMIN, 422, "invalid_request"),
        ("shapes.pt", {"format": "onnx", "dynamic": True}, ADMIN, 422, "invalid_request"),
    ],
)
def test_bad_requests_are_refused_and_leave_nothing(
    client: TestClient,
    name: str,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    push_model(client, "shapes.pt", FIXTURE_MODEL.read_bytes())

    response = client.post(f"/v1/models/{name}/exports", json=body, headers=headers)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert export_count(client) == 0


def test_an_unknown_export_is_404(client: TestClient) -> None:
    response = client.get("/v1/models/shapes.pt/exports/nope", headers=ADMIN)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")

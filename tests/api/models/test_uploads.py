"""Choosing the model, confidence and image size per upload: checked against what exists,
recorded on each job with the weights' digest, batched apart, and run with the pushed file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.factories import job_count, push_model, stored_files, torch_archive, wait_terminal
from tests.fixtures.synthetic import HELD_OUT_SEED_START, boxes_of, match, render_scene
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer, keyed_client, resources_of
from tests.support.images import encode, png
from tests.support.kestra import KestraStandin, jobs_of
from tests.support.paths import FIXTURE_MODEL, ROOT

IMAGE = {"files": ("a.png", encode("PNG"))}


def send(client: TestClient, count: int = 1, **fields: object) -> Any:
    files = [("files", (f"{n}.png", encode("PNG", 40 + n, 30))) for n in range(count)]
    return client.post("/v1/uploads", files=files, data={k: str(v) for k, v in fields.items()})


def jobs_of_response(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 202, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def assert_nothing_kept(client: TestClient, shared_dir: Path, models: list[str]) -> None:
    assert job_count(client) == 0
    assert stored_files(shared_dir) == [f"models/{name}" for name in models]


def test_a_pushed_model_is_what_the_jobs_run_with_and_its_digest_is_kept(
    client: TestClient,
) -> None:
    weights = torch_archive(content=b"mine")
    push_model(client, "mine.pt", weights)

    jobs = jobs_of_response(send(client, 2, model="mine.pt", confidence=0.4, image_size=320))

    for job in jobs:
        assert job["model"] == "models/mine.pt"
        assert job["model_sha256"] == hashlib.sha256(weights).hexdigest()
        assert (job["confidence"], job["image_size"]) == (0.4, 320)
    again = client.get(f"/v1/jobs/{jobs[0]['id']}").json()
    assert again["model_sha256"] == jobs[0]["model_sha256"]


def test_as_listed_or_as_a_job_shows_it_the_model_is_the_same(client: TestClient) -> None:
    push_model(client, "mine.pt")
    by_name = jobs_of_response(send(client, model="mine.pt"))[0]
    by_path = jobs_of_response(send(client, model="models/mine.pt"))[0]
    assert by_path["model"] == by_name["model"] == "models/mine.pt"
    assert by_path["model_sha256"] == by_name["model_sha256"]


def test_without_fields_the_settings_are_used(make_settings: SettingsFactory) -> None:
    settings = make_settings(model="yolo11n.pt", confidence=0.3, image_size=512)
    with keyed_client(settings) as client:
        (job,) = jobs_of_response(send(client))
        (named,) = jobs_of_response(send(client, model="yolo11n.pt"))
    for made in (job, named):
        assert (made["model"], made["model_sha256"]) == ("yolo11n.pt", None)  # from the image
        assert (made["confidence"], made["image_size"]) == (0.3, 512)


def test_the_default_model_in_models_records_its_digest(
    make_settings: SettingsFactory, shared_dir: Path
) -> None:
    (shared_dir / "models").mkdir()
    (shared_dir / "models" / "yolo11n.pt").write_bytes(b"downloaded")
    with keyed_client(make_settings(model="yolo11n.pt")) as client:
        (job,) = jobs_of_response(send(client))
    assert job["model"] == "yolo11n.pt"
    assert job["model_sha256"] == hashlib.sha256(b"downloaded").hexdigest()


def test_an_unknown_model_is_422_naming_the_models_there_are(
    client: TestClient, shared_dir: Path
) -> None:
    push_model(client, "b.pt")
    push_model(client, "a.pt")

    response = send(client, 2, model="nope.pt")

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_model"
    assert error["details"] == {"model": "nope.pt", "models": ["a.pt", "b.pt", "yolo11n.pt"]}
    assert "a.pt, b.pt, yolo11n.pt" in error["message"]
    assert_nothing_kept(client, shared_dir, ["a.pt", "b.pt"])


def test_a_removed_model_is_unknown_from_then_on(client: TestClient, shared_dir: Path) -> None:
    push_model(client, "mine.pt")
    assert client.delete("/v1/models/mine.pt", headers=bearer(ADMIN_KEY)).status_code == 204
    response = send(client, model="mine.pt")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["models"] == ["yolo11n.pt"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("confidence", "1.5"),
        ("confidence", "-0.1"),
        ("confidence", "nan"),
        ("confidence", "high"),
        ("image_size", "31"),
        ("image_size", "4097"),
        ("image_size", "640.5"),
        ("image_size", "big"),
        ("model", ""),
        ("model", "m" * 256),
    ],
)
def test_parameters_out_of_range_are_422_and_nothing_is_kept(
    client: TestClient, shared_dir: Path, field: str, value: str
) -> None:
    response = send(client, 2, **{field: value})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [problem["loc"] for problem in error["details"]["errors"]] == [["body", field]]
    assert_nothing_kept(client, shared_dir, [])


@pytest.mark.parametrize(
    "fields",
    [
        [("model", b"x" * 1025)],  # past the cap, refused while it streams
        [("confidence", b"\xff\xfe")],
        [("confidence", b"0.5"), ("confidence", b"0.6")],
    ],
    ids=["oversized", "not-utf8", "twice"],
)
def test_malformed_fields_are_422_and_nothing_is_kept(
    client: TestClient, shared_dir: Path, fields: list[tuple[str, bytes]]
) -> None:
    parts: list[tuple[str, Any]] = [(name, (None, value)) for name, value in fields]
    response = client.post("/v1/uploads", files=[*parts, ("files", ("a.png", encode("PNG")))])

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert_nothing_kept(client, shared_dir, [])


def test_other_fields_are_still_ignored(client: TestClient) -> None:
    (job,) = jobs_of_response(client.post("/v1/uploads", files=IMAGE, data={"note": "x" * 10**5}))
    assert job["model"] == "yolo11n.pt"


def test_an_idempotency_key_reused_with_another_model_is_422(client: TestClient) -> None:
    push_model(client, "mine.pt")
    key = {"Idempotency-Key": "with-a-model"}
    first = client.post("/v1/uploads", files=IMAGE, data={"model": "mine.pt"}, headers=key)
    retry = client.post("/v1/uploads", files=IMAGE, data={"model": "mine.pt"}, headers=key)
    other = client.post("/v1/uploads", files=IMAGE, headers=key)

    assert retry.json()["jobs"] == first.json()["jobs"]
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert job_count(client) == 1


def test_jobs_with_different_models_or_parameters_go_in_different_batches(
    kestra_client: TestClient, kestra: KestraStandin
) -> None:
    push_model(kestra_client, "a.pt")
    push_model(kestra_client, "b.pt")
    sent = {
        ("models/a.pt", 0.25): send(kestra_client, 2, model="a.pt"),
        ("models/a.pt", 0.5): send(kestra_client, model="a.pt", confidence=0.5),
        ("models/b.pt", 0.25): send(kestra_client, model="b.pt"),
        ("yolo11n.pt", 0.25): send(kestra_client),
    }

    assert resources_of(kestra_client).dispatcher.run_once() == 5

    runs = {
        tuple(jobs_of(execution)): (execution["inputs"]["model"], execution["inputs"]["confidence"])
        for execution in kestra.state.executions.values()
    }
    assert runs == {
        tuple(job["id"] for job in jobs_of_response(response)): inputs
        for inputs, response in sent.items()
    }


@pytest.mark.slow
def test_an_upload_runs_with_the_pushed_weights_through_the_local_orchestrator(
    make_settings: SettingsFactory,
) -> None:
    """The default would fail (no such file): only the pushed weights can detect anything."""
    settings = make_settings(model=str(ROOT / "no-such-model.pt"))
    image, truth = render_scene(HELD_OUT_SEED_START + 950)
    weights = FIXTURE_MODEL.read_bytes()
    with keyed_client(settings) as client:
        assert push_model(client, "shapes-mine.pt", weights).status_code == 201
        response = client.post(
            "/v1/uploads",
            files={"files": ("scene.png", png(image))},
            data={"model": "shapes-mine.pt", "confidence": "0.25", "image_size": "640"},
        )
        (queued,) = jobs_of_response(response)
        resources_of(client).dispatcher.run_once()
        (job,) = wait_terminal(client, [queued["id"]])

    assert job["status"] == "succeeded", job["error"]
    assert job["model"] == "models/shapes-mine.pt"
    assert job["model_sha256"] == hashlib.sha256(weights).hexdigest()
    assert match(truth, boxes_of(job["detections"]))["ok"], job["detections"]


@pytest.mark.slow
def test_an_upload_runs_with_an_export_in_models_through_the_local_orchestrator(
    make_settings: SettingsFactory, shared_dir: Path, exports_in: Callable[[Path], None]
) -> None:
    """The OpenVINO export Ultralytics made of the fixture model, found in models/: listed,
    named by an upload, run by detect.py; the job records the export's digest. At another
    image size than IMAGE_SIZE it is refused up front (422, nothing kept)."""
    exports_in(shared_dir)
    settings = make_settings(model=str(ROOT / "no-such-model.pt"))
    image, truth = render_scene(HELD_OUT_SEED_START + 951)
    name = "shapes_openvino_model"
    with keyed_client(settings) as client:
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        refused = send(client, model=name, image_size=320)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_request"
        assert job_count(client) == 0
        assert not any((shared_dir / "uploads").glob("*"))
        response = client.post(
            "/v1/uploads", files={"files": ("scene.png", png(image))}, data={"model": name}
        )
        (queued,) = jobs_of_response(response)
        resources_of(client).dispatcher.run_once()
        (job,) = wait_terminal(client, [queued["id"]])

    assert job["status"] == "succeeded", job["error"]
    assert (job["model"], job["image_size"]) == (f"models/{name}", 640)
    assert job["model_sha256"] == listed[name]["sha256"] is not None
    assert match(truth, boxes_of(job["detections"]))["ok"], job["detections"]

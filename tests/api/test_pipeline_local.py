"""End to end through the Local orchestrator: upload -> job -> flows/detect.py with real
Ultralytics inference -> result in Postgres, matching ground truth and a direct call."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.bootstrap import migrate
from tests.api.factories import detected, wait_terminal
from tests.fixtures.synthetic import CLASS_NAMES, HELD_OUT_SEED_START, boxes_of, match, render_scene
from tests.support.api_app import SettingsFactory, keyed_client
from tests.support.images import png
from tests.support.paths import FIXTURE_MODEL, ROOT
from tests.support.yolo import predict

pytestmark = pytest.mark.slow


def test_upload_to_detections_matches_ground_truth_and_ultralytics(
    local_client: TestClient, shared_dir: Path
) -> None:
    from ultralytics.models import YOLO

    scenes = [render_scene(HELD_OUT_SEED_START + 500 + k) for k in range(2)]
    files = [("files", (f"scene{k}.png", png(img))) for k, (img, _) in enumerate(scenes)]
    jobs = detected(local_client, files)

    model = YOLO(str(FIXTURE_MODEL))
    for job, (image, truth) in zip(jobs, scenes, strict=True):
        assert job["status"] == "succeeded", job["error"]
        assert job["execution_id"].startswith("local-")
        assert (job["image_width"], job["image_height"]) == image.size
        assert job["inference_ms"] > 0
        detections = job["detections"]
        assert match(truth, boxes_of(detections))["ok"], (truth, detections)
        assert all(d["class_name"] == CLASS_NAMES[d["class_id"]] for d in detections)

        # Box for box what Ultralytics itself returns on the stored file.
        stored = shared_dir / "uploads" / f"{job['id']}.png"
        direct = predict(model, stored)
        assert direct.classes == [d["class_id"] for d in detections]
        for row, d in zip(direct.xyxy, detections, strict=True):
            assert row == pytest.approx([d["box"][k] for k in ("x1", "y1", "x2", "y2")], abs=0.01)
        for conf, d in zip(direct.conf, detections, strict=True):
            assert conf == pytest.approx(d["confidence"], abs=1e-4)

        annotated = local_client.get(job["annotated_url"])
        assert annotated.status_code == 200
        assert annotated.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(annotated.content)).size == image.size


def test_a_failing_detection_is_failed_with_a_readable_reason(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(model=str(ROOT / "no-such-model.pt"))
    image, _ = render_scene(HELD_OUT_SEED_START + 900)
    with keyed_client(settings) as client:
        (job,) = detected(client, [("files", ("a.png", png(image)))])
    assert job["status"] == "failed"
    assert "no-such-model.pt" in job["error"]
    assert job["detections"] is None


def test_dev_mode_sqlite_with_background_workers(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """`make dev`: SQLite, the Local orchestrator and the background dispatcher."""
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    migrate(url)
    settings = make_settings(database_url=url, model=str(FIXTURE_MODEL), workers_enabled=True)
    scenes = [render_scene(HELD_OUT_SEED_START + 700 + k) for k in range(3)]
    with keyed_client(settings) as client:
        response = client.post(
            "/v1/uploads",
            files=[("files", (f"{k}.png", png(img))) for k, (img, _) in enumerate(scenes)],
        )
        jobs = wait_terminal(client, [job["id"] for job in response.json()["jobs"]])
    for job, (_, truth) in zip(jobs, scenes, strict=True):
        assert job["status"] == "succeeded", job["error"]
        assert job["submitted_at"] <= job["started_at"] <= job["finished_at"]
        assert match(truth, boxes_of(job["detections"]))["ok"]

"""flows/detect.py on phone photos: for every EXIF orientation (1-8, and none) of JPEG, PNG
and WebP files, the result's image size, its boxes and the annotated image are in one frame,
that of the photo turned upright (what OpenCV decodes and what a viewer shows), and the boxes
find the scene's objects there. The photos are stored turned, as a camera stores them
(tests/support/images.py `oriented`)."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import pytest
from PIL import Image

from tests.fixtures import synthetic
from tests.support import detect
from tests.support.images import EXTENSIONS, frame_of, oriented

pytestmark = pytest.mark.slow  # real inference in a subprocess

CASES = [
    (fmt, orientation)
    for fmt in ("JPEG", "PNG", "WEBP")
    for orientation in (None, 1, 2, 3, 4, 5, 6, 7, 8)
]
WIDTH, HEIGHT = 520, 360  # wider than tall: orientations 5-8 store it 360 x 520


class Photo(TypedDict):
    rel: str  # the upload, relative to the data dir
    image: Image.Image  # the scene upright
    truth: list[synthetic.GroundTruth]


class Photos(TypedDict):
    data_dir: Path
    jobs: dict[str, Photo]
    proc: detect.Process


def case_id(fmt: str, orientation: int | None) -> str:
    return f"{fmt.lower()}-{orientation or 'none'}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Photos:
    """One detect.py run over every case; the data dir, what each job was and the process."""
    data_dir = detect.fresh_data_dir(tmp_path_factory.mktemp("orientation") / "data")
    jobs: dict[str, Photo] = {}
    for k, (fmt, orientation) in enumerate(CASES):
        image, truth = synthetic.render_scene(
            synthetic.HELD_OUT_SEED_START + 7300 + k, width=WIDTH, height=HEIGHT
        )
        job = case_id(fmt, orientation)
        rel = f"uploads/{job}.{EXTENSIONS[fmt]}"
        (data_dir / rel).write_bytes(oriented(image, orientation, fmt))
        jobs[job] = {"rel": rel, "image": image, "truth": truth}
    proc = detect.run_detect(
        data_dir, "--model", "models/shapes.pt",
        *detect.jobs_args(*((job, spec["rel"]) for job, spec in jobs.items())),
    )  # fmt: skip
    return {"data_dir": data_dir, "jobs": jobs, "proc": proc}


def test_every_photo_succeeds(photos: Photos) -> None:
    assert photos["proc"].returncode == 0, photos["proc"].stderr
    n = len(CASES)
    outputs = detect.outputs_of(photos["proc"])
    assert outputs == {"batch_id": None, "jobs": n, "succeeded": n, "failed": 0}


@pytest.mark.parametrize(("fmt", "orientation"), CASES, ids=[case_id(*c) for c in CASES])
def test_size_boxes_and_annotated_image_share_the_upright_frame(
    photos: Photos, fmt: str, orientation: int | None
) -> None:
    job = case_id(fmt, orientation)
    spec, res = photos["jobs"][job], detect.load_result(photos["data_dir"], job)
    assert res["status"] == "succeeded", res
    stored = Image.open(photos["data_dir"] / spec["rel"]).size
    assert stored == ((HEIGHT, WIDTH) if (orientation or 1) >= 5 else (WIDTH, HEIGHT))
    assert res["image"] == {"path": spec["rel"], "width": WIDTH, "height": HEIGHT}

    boxes = synthetic.boxes_of(res["detections"])
    found = synthetic.match(spec["truth"], boxes)
    assert found["ok"], (job, spec["truth"], res["detections"])
    for _, box in boxes:
        assert -2 <= box[0] < box[2] <= WIDTH + 2
        assert -2 <= box[1] < box[3] <= HEIGHT + 2

    annotated = Image.open(photos["data_dir"] / res["annotated_path"])
    assert annotated.format == "JPEG"
    assert annotated.size == (WIDTH, HEIGHT)
    assert frame_of(annotated, spec["image"]) == 1  # the upright scene, boxes drawn on it

"""detect.py runs the fixture model exported to ONNX and OpenVINO, and their boxes match the
PyTorch original's on the fixture scenes within the stated tolerance (flows/README.md):

- every detection of one with a confidence >= STRONG has a detection of the other of the same
  class with IoU >= MIN_IOU and a confidence within CONF_TOLERANCE (the other's detections are
  taken down to LOW, so a box near the threshold is not lost to the threshold alone);
- so at a threshold away from the edge both give the same number of boxes.

The difference comes from the input, not the runtime: a PyTorch model letterboxes each image to
the smallest multiple of the stride, an export to its fixed square size (more padding).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import synthetic
from tests.support.detect import (
    EXPORTS,
    export_fixture_model,
    fresh_data_dir,
    jobs_args,
    load_result,
    run_detect,
)

pytestmark = pytest.mark.slow  # real exports and inference

LOW = 0.05  # every run keeps the boxes down to here
STRONG = 0.30  # the boxes that must be matched: LOW + 0.25, far from the edge
MIN_IOU = 0.95  # measured: >= 0.977 for both formats
CONF_TOLERANCE = 0.04  # measured: <= 0.029 (padding, see above)
SEEDS = [synthetic.HELD_OUT_SEED_START + 800 + i for i in range(12)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the fixture model, its two exports at 640 (detect.py's export mode) and
    the scenes (easy and crowded ones)."""
    root = fresh_data_dir(tmp_path_factory.mktemp("exports") / "data")
    for fmt in EXPORTS:
        export_fixture_model(root, fmt)
    for i, seed in enumerate(SEEDS):
        image, _ = synthetic.render_scene(seed, n_objects=None if i % 2 else 8, easy=i % 2 == 1)
        image.save(root / "uploads" / f"{seed}.png")
    return root


def _detections(data: Path, model: str, imgsz: int = 640) -> dict[int, list[dict[str, Any]]]:
    shutil.rmtree(data / "results", ignore_errors=True)
    jobs = jobs_args(*((f"job-{seed}", f"uploads/{seed}.png") for seed in SEEDS))
    proc = run_detect(data, "--model", model, "--conf", str(LOW), "--imgsz", str(imgsz), *jobs)
    assert proc.returncode == 0, proc.stderr
    return {seed: load_result(data, f"job-{seed}")["detections"] for seed in SEEDS}


def _unmatched(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[str]:
    """Our strong detections that have no counterpart among theirs."""
    missing = []
    for d in ours:
        if d["confidence"] < STRONG:
            continue
        box = synthetic.boxes_of([d])[0][1]
        if not any(
            t["class_id"] == d["class_id"]
            and synthetic.iou(box, synthetic.boxes_of([t])[0][1]) >= MIN_IOU
            and abs(t["confidence"] - d["confidence"]) <= CONF_TOLERANCE
            for t in theirs
        ):
            missing.append(f"{d['class_name']} {d['confidence']} {d['box']}")
    return missing


@pytest.mark.parametrize("fmt", sorted(EXPORTS))
def test_an_export_gives_the_boxes_of_its_pytorch_original(data: Path, fmt: str) -> None:
    original = _detections(data, "models/shapes.pt")
    exported = _detections(data, EXPORTS[fmt])

    strong = sum(d["confidence"] >= STRONG for boxes in original.values() for d in boxes)
    assert strong >= 3 * len(SEEDS)  # the scenes have boxes to compare
    for seed in SEEDS:
        assert _unmatched(original[seed], exported[seed]) == [], f"scene {seed}: lost"
        assert _unmatched(exported[seed], original[seed]) == [], f"scene {seed}: extra"
    first = load_result(data, f"job-{SEEDS[-1]}")
    assert first["model"] == EXPORTS[fmt]
    assert first["class_names"] == {"0": "circle", "1": "square", "2": "triangle"}


def test_an_export_refuses_another_image_size(data: Path) -> None:
    """A fixed-size export runs at its size only; another --imgsz fails the batch (exit 1,
    every job failed with the reason) instead of silently running at the export's size."""
    jobs = jobs_args((f"job-{SEEDS[0]}", f"uploads/{SEEDS[0]}.png"))
    proc = run_detect(data, "--model", EXPORTS["onnx"], "--imgsz", "320", *jobs)
    assert proc.returncode == 1
    error = load_result(data, f"job-{SEEDS[0]}")["error"]
    assert error.startswith("The export shapes.onnx takes 640x640 images only"), error
    assert "imgsz 320" in error


def test_the_export_mode_replaces_an_export_whole_and_leaves_no_temp_files(data: Path) -> None:
    models = data / "models"
    (models / "shapes_openvino_model" / "stale.txt").write_text("from an earlier export")
    proc = run_detect(data, "--export", "openvino", "--model", "models/shapes.pt")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (models / "shapes_openvino_model").iterdir()) == [
        "metadata.yaml",
        "shapes.bin",
        "shapes.xml",
    ]
    assert sorted(p.name for p in models.iterdir()) == [
        "shapes.onnx",
        "shapes.pt",
        "shapes_openvino_model",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--model", "models/missing.pt"], 1, "The model file models/missing.pt does not exist"),
        (["--model", "models/../x.pt"], 2, "is not models/<name>.pt"),
        (["--model", "models/shapes.onnx"], 2, "is not models/<name>.pt"),
        (["--model", "models/shapes.pt", "--imgsz", "20"], 2, "between 32 and 8192"),
    ],
)
def test_the_export_mode_refuses_what_it_cannot_export(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    data = fresh_data_dir(tmp_path / "data")
    proc = run_detect(data, "--export", "onnx", *args)
    assert (proc.returncode, proc.stdout) == (code, "")
    assert message in proc.stderr
    assert sorted(p.name for p in (data / "models").iterdir()) == ["shapes.pt"]

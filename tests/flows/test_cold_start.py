"""What detect.py leaves out of a container's start, and that the boxes do not change for it.

Ultralytics' warm-up imports torchvision (about 1 s) only so that NMS takes torchvision's
kernel; detect.py skips it, and Ultralytics' own NMS must then give exactly the same boxes.
Each run imports detect.py as a module (torchvision first for the old path), runs a batch of
crowded scenes at a low confidence (many overlapping candidates for NMS to suppress), and
records what it imported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import synthetic
from tests.support.detect import jobs_args, run_detect
from tests.support.paths import FIXTURE_MODEL

pytestmark = pytest.mark.slow  # real inference in two subprocesses

RECORDING_WRAPPER = r"""
import importlib.util, json, os, sys

if os.environ["PRELOAD"]:
    import torchvision  # the old path: NMS takes torchvision's kernel
spec = importlib.util.spec_from_file_location("detect_under_test", sys.argv[1])
detect = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(detect)
status = detect.main(sys.argv[2:])
with open(os.environ["RECORD"], "w") as f:
    json.dump({"status": status, "torchvision": "torchvision" in sys.modules,
               "offline": os.environ.get("YOLO_OFFLINE")}, f)
"""
SEEDS = [synthetic.HELD_OUT_SEED_START + 700 + i for i in range(6)]


def _run(data: Path, preload: str) -> tuple[dict[str, Any], dict[int, Any]]:
    """One batch over the scenes: what the run recorded, and the detections by seed."""
    shutil.rmtree(data / "results", ignore_errors=True)
    record = data / f"run-{preload or 'none'}.json"
    jobs = jobs_args(*((f"job-{seed}", f"uploads/{seed}.png") for seed in SEEDS))
    args = ["--model", str(FIXTURE_MODEL), "--conf", "0.01", *jobs]
    env = {"PRELOAD": preload, "RECORD": str(record)}
    proc = run_detect(data, *args, env=env, unset=["YOLO_OFFLINE"], wrapper=RECORDING_WRAPPER)
    assert proc.returncode == 0, proc.stderr
    results = {
        seed: json.loads((data / "results" / f"job-{seed}.json").read_text())["detections"]
        for seed in SEEDS
    }
    return json.loads(record.read_text()), results


def test_detect_skips_torchvision_and_the_boxes_stay_the_same(tmp_path: Path) -> None:
    (tmp_path / "uploads").mkdir()
    for seed in SEEDS:
        image, _ = synthetic.render_scene(seed, n_objects=8, easy=False)
        image.save(tmp_path / "uploads" / f"{seed}.png")

    new, new_boxes = _run(tmp_path, "")
    old, old_boxes = _run(tmp_path, "torchvision")

    assert new == {"status": 0, "torchvision": False, "offline": "1"}
    assert old["torchvision"] is True
    assert sum(len(d) for d in new_boxes.values()) > 10 * len(SEEDS)  # NMS had work to do
    assert new_boxes == old_boxes

"""flows/detect.py end to end: real Ultralytics inference with the fixture model.

The script runs as a subprocess (as the API's local orchestrator and the
Kestra task do) on synthetic scenes with known ground truth, written as JPEG
uploads into a temporary data directory. Its results are compared with the
ground truth and with a direct ``YOLO(model).predict(...)`` call on the same
file (model loaded once per module).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures import synthetic

REPO = Path(__file__).resolve().parents[2]
DETECT_PY = REPO / "flows" / "detect.py"
SHAPES_MODEL = REPO / "tests" / "fixtures" / "model" / "shapes.pt"

pytestmark = pytest.mark.slow  # real inference in subprocesses (about 30 s in all)

OUTPUTS_LINE = re.compile(r"^::(\{.*\})::$")
SEEDS = [synthetic.HELD_OUT_SEED_START + 500 + i for i in range(3)]
TOP_KEYS = {
    "schema_version",
    "job_id",
    "status",
    "model",
    "image",
    "inference_ms",
    "detections",
    "annotated_path",
}


def run_detect(
    data_dir: Path, *args: str, env: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env["YOLO_OFFLINE"] = "1"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(DETECT_PY), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        **kwargs,
    )


def job_id_for(seed: int) -> str:
    return str(uuid.UUID(int=seed))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    (d / "uploads").mkdir()
    (d / "models").mkdir()
    shutil.copy(SHAPES_MODEL, d / "models" / "shapes.pt")
    return d


@pytest.fixture(scope="module")
def scenes(data_dir) -> dict:
    out = {}
    for seed in SEEDS:
        img, gt = synthetic.render_scene(seed)
        job = job_id_for(seed)
        rel = f"uploads/{job}.jpg"
        img.save(data_dir / rel, quality=92)
        out[job] = {"rel": rel, "gt": gt, "size": img.size}
    return out


# Each successful run: (job id, how the model is named, extra CLI args, conf, imgsz).
RUN_VARIANTS = [
    ("relative-default-args", "models/shapes.pt", [], 0.25, 640),
    ("absolute-imgsz320", "ABSOLUTE", ["--conf", "0.25", "--imgsz", "320"], 0.25, 320),
    ("relative-conf05", "models/shapes.pt", ["--conf", "0.5"], 0.5, 640),
]


@pytest.fixture(scope="module")
def runs(data_dir, scenes) -> list[dict]:
    results = []
    for (name, model_arg, extra, conf, imgsz), job in zip(RUN_VARIANTS, scenes, strict=True):
        model = str(data_dir / "models" / "shapes.pt") if model_arg == "ABSOLUTE" else model_arg
        proc = run_detect(
            data_dir, "--job-id", job, "--image", scenes[job]["rel"], "--model", model, *extra
        )
        results.append(
            {
                "name": name,
                "job": job,
                "proc": proc,
                "model": model,
                "conf": conf,
                "imgsz": imgsz,
                **scenes[job],
            }
        )
    return results


@pytest.fixture(scope="module")
def yolo():
    from ultralytics import YOLO

    return YOLO(str(SHAPES_MODEL))


def load_result(data_dir: Path, job: str) -> dict:
    return json.loads((data_dir / "results" / f"{job}.json").read_text())


def outputs_of(proc: subprocess.CompletedProcess) -> dict:
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be exactly the outputs line, got {proc.stdout!r}"
    m = OUTPUTS_LINE.match(lines[0])
    assert m, lines[0]
    payload = json.loads(m.group(1))
    assert set(payload) == {"outputs"}
    return payload["outputs"]


def test_exits_zero(runs):
    for run in runs:
        assert run["proc"].returncode == 0, f"{run['name']}: {run['proc'].stderr}"


def test_result_json_matches_schema(runs, data_dir):
    for run in runs:
        res = load_result(data_dir, run["job"])
        assert set(res) == TOP_KEYS, run["name"]
        assert res["schema_version"] == 1
        assert res["job_id"] == run["job"]
        assert res["status"] == "succeeded"
        assert res["model"] == run["model"]  # as given on the command line
        assert res["image"] == {
            "path": run["rel"],
            "width": run["size"][0],
            "height": run["size"][1],
        }
        assert isinstance(res["inference_ms"], float)
        assert res["inference_ms"] > 0
        assert res["annotated_path"] == f"results/{run['job']}.annotated.jpg"
        assert isinstance(res["detections"], list)
        for det in res["detections"]:
            assert set(det) == {"class_id", "class_name", "confidence", "box"}
            assert isinstance(det["class_id"], int)
            assert det["class_name"] == synthetic.CLASS_NAMES[det["class_id"]]
            assert 0 < det["confidence"] <= 1
            assert round(det["confidence"], 4) == det["confidence"]
            assert det["confidence"] >= run["conf"]
            assert set(det["box"]) == {"x1", "y1", "x2", "y2"}
            for v in det["box"].values():
                assert isinstance(v, (int, float))
                assert round(v, 2) == v
            assert det["box"]["x1"] < det["box"]["x2"]
            assert det["box"]["y1"] < det["box"]["y2"]
        confs = [d["confidence"] for d in res["detections"]]
        assert confs == sorted(confs, reverse=True)  # Ultralytics' order


def test_detections_match_ground_truth(runs, data_dir):
    for run in runs:
        res = load_result(data_dir, run["job"])
        dets = [
            (d["class_id"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")])
            for d in res["detections"]
        ]
        m = synthetic.match(run["gt"], dets, iou_threshold=0.5)
        assert m["ok"], f"{run['name']}: missed={m['missed']} extra={[dets[i] for i in m['extra']]}"


def test_boxes_equal_direct_ultralytics_call(runs, data_dir, yolo):
    for run in runs:
        res = load_result(data_dir, run["job"])
        r = yolo.predict(
            str(data_dir / run["rel"]), conf=run["conf"], imgsz=run["imgsz"], verbose=False
        )[0]
        direct = list(
            zip(r.boxes.cls.tolist(), r.boxes.conf.tolist(), r.boxes.xyxy.tolist(), strict=True)
        )
        assert len(direct) == len(res["detections"]), run["name"]
        for (cls, conf, xyxy), det in zip(direct, res["detections"], strict=True):
            assert det["class_id"] == int(cls)
            assert det["confidence"] == pytest.approx(conf, abs=1e-4)
            got = [det["box"][k] for k in ("x1", "y1", "x2", "y2")]
            assert got == pytest.approx(xyxy, abs=1e-2), run["name"]


def test_annotated_image_is_a_jpeg_of_the_same_size(runs, data_dir):
    for run in runs:
        path = data_dir / "results" / f"{run['job']}.annotated.jpg"
        with Image.open(path) as im:
            assert im.format == "JPEG"
            assert im.size == run["size"]
            im.load()  # fully decodable


def test_outputs_line(runs, data_dir):
    for run in runs:
        out = outputs_of(run["proc"])
        res = load_result(data_dir, run["job"])
        assert out == {
            "result_path": f"results/{run['job']}.json",
            "annotated_path": f"results/{run['job']}.annotated.jpg",
            "detections": len(res["detections"]),
            "inference_ms": res["inference_ms"],
        }


def test_files_are_world_readable_and_no_temp_files_left(runs, data_dir):
    names = sorted(p.name for p in (data_dir / "results").iterdir())
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")], names
    for run in runs:
        for suffix in (".json", ".annotated.jpg"):
            mode = stat.S_IMODE((data_dir / "results" / f"{run['job']}{suffix}").stat().st_mode)
            assert mode == 0o644, (suffix, oct(mode))


# --------------------------------------------------------------------------- failures


def assert_failed(
    data_dir: Path, job: str, proc: subprocess.CompletedProcess, fragment: str
) -> dict:
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "", "no outputs line on failure"
    res = load_result(data_dir, job)
    assert res == {"schema_version": 1, "job_id": job, "status": "failed", "error": res["error"]}
    assert fragment in res["error"]
    assert "\n" not in res["error"]
    assert "Traceback" not in res["error"]
    assert res["error"] in proc.stderr
    return res


def test_undecodable_image(data_dir):
    job = str(uuid.uuid4())
    (data_dir / "uploads" / f"{job}.jpg").write_bytes(b"this is not a JPEG at all\n" * 10)
    proc = run_detect(
        data_dir, "--job-id", job, "--image", f"uploads/{job}.jpg", "--model", "models/shapes.pt"
    )
    assert_failed(data_dir, job, proc, "could not be decoded")


def test_missing_image(data_dir):
    job = str(uuid.uuid4())
    proc = run_detect(
        data_dir, "--job-id", job, "--image", f"uploads/{job}.png", "--model", "models/shapes.pt"
    )
    assert_failed(data_dir, job, proc, "does not exist")


def test_missing_model_path(data_dir, scenes):
    job = str(uuid.uuid4())
    rel = next(iter(scenes.values()))["rel"]
    proc = run_detect(data_dir, "--job-id", job, "--image", rel, "--model", "models/missing.pt")
    assert_failed(data_dir, job, proc, "models/missing.pt does not exist")
    proc = run_detect(
        data_dir, "--job-id", job, "--image", rel, "--model", str(data_dir / "nowhere" / "m.pt")
    )
    assert_failed(data_dir, job, proc, "does not exist")


def test_unloadable_model_file(data_dir, scenes):
    job = str(uuid.uuid4())
    (data_dir / "models" / "broken.pt").write_bytes(b"not a torch checkpoint")
    rel = next(iter(scenes.values()))["rel"]
    proc = run_detect(data_dir, "--job-id", job, "--image", rel, "--model", "models/broken.pt")
    assert_failed(data_dir, job, proc, "could not be loaded")


def test_paths_escaping_the_data_dir_are_refused(data_dir, tmp_path):
    outside = tmp_path / "outside.jpg"
    img, _ = synthetic.render_scene(synthetic.HELD_OUT_SEED_START + 900)
    img.save(outside)
    link = data_dir / "uploads" / "link.jpg"
    link.symlink_to(outside)
    rel_up = os.path.relpath(outside, data_dir)  # ../../.../outside.jpg
    cases = [
        (rel_up, "outside the data directory"),
        ("uploads/../../outside.jpg", "outside the data directory"),
        ("uploads/link.jpg", "outside the data directory"),
        (str(outside), "must be relative"),
    ]
    for image, fragment in cases:
        job = str(uuid.uuid4())
        proc = run_detect(
            data_dir, "--job-id", job, "--image", image, "--model", "models/shapes.pt"
        )
        assert_failed(data_dir, job, proc, fragment)


def test_missing_data_dir_writes_nothing(tmp_path):
    missing = tmp_path / "no-such-dir"
    proc = run_detect(missing, "--job-id", "abc", "--image", "uploads/a.jpg", "--model", "m.pt")
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr
    assert not missing.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--job-id", "j", "--image", "uploads/a.jpg"],  # no --model
        ["--job-id", "j", "--image", "uploads/a.jpg", "--model", "m.pt", "--conf", "1.5"],
        ["--job-id", "j", "--image", "uploads/a.jpg", "--model", "m.pt", "--imgsz", "big"],
        ["--job-id", "../evil", "--image", "uploads/a.jpg", "--model", "m.pt"],
        ["--job-id", "abc\n", "--image", "uploads/a.jpg", "--model", "m.pt"],
    ],
)
def test_bad_usage_exits_2(tmp_path, args):
    proc = run_detect(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- environment


def test_works_with_unwritable_home_and_no_config_dir(data_dir, scenes, tmp_path):
    """As in the task container: HOME unusable, YOLO_CONFIG_DIR not set by the caller."""
    blocker = tmp_path / "file"
    blocker.write_text("a file, so nothing can be created below it")
    env = {"HOME": str(blocker / "home"), "TMPDIR": str(tmp_path)}
    _job, scene = next(iter(scenes.items()))
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("YOLO_CONFIG_DIR", "MPLCONFIGDIR", "XDG_CONFIG_HOME")
    }
    full_env.update(env, YOLO_OFFLINE="1")
    new_job = str(uuid.uuid4())
    proc = subprocess.run(
        [sys.executable, str(DETECT_PY), "--data-dir", str(data_dir), "--job-id", new_job,
         "--image", scene["rel"], "--model", "models/shapes.pt"],
        capture_output=True, text=True, env=full_env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    outputs_of(proc)
    settings = list(tmp_path.glob("ultralytics-config-*/Ultralytics/settings.json"))
    assert settings, f"Ultralytics settings should live under TMPDIR: {list(tmp_path.iterdir())}"


# Running as uid 1000 (the flow's `user`) is covered end to end in tests/e2e, inside the
# inference image, where the results are checked to be owned by uid 1000.


NO_NETWORK_WRAPPER = """
import runpy, socket, sys
def _refuse(*args, **kwargs):
    raise OSError("network disabled by the test")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_works_without_any_network(data_dir, scenes):
    """Nothing is downloaded (fonts, weights, checks).

    Sockets are refused and YOLO_OFFLINE is unset.
    """
    _job, scene = next(iter(scenes.items()))
    new_job = str(uuid.uuid4())
    env = {k: v for k, v in os.environ.items() if k != "YOLO_OFFLINE"}
    proc = subprocess.run(
        [sys.executable, "-c", NO_NETWORK_WRAPPER, str(DETECT_PY), "--data-dir", str(data_dir),
         "--job-id", new_job, "--image", scene["rel"], "--model", "models/shapes.pt"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert outputs_of(proc)["detections"] == len(scene["gt"])
    assert (data_dir / "results" / f"{new_job}.annotated.jpg").stat().st_size > 0

"""flows/detect.py end to end: real Ultralytics inference with the fixture model.

The script runs as a subprocess, as the API's local orchestrator and the Kestra task run it,
on micro-batches of synthetic scenes with known ground truth (JPEG and PNG uploads in a
temporary data directory). Its results are compared with the ground truth and with a direct
Ultralytics call on the same file. Where a test needs to know how often the model was built
or predicted, the script runs under ``COUNTING_WRAPPER``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pytest
from PIL import Image

from tests.fixtures import synthetic
from tests.support.detect import (
    Process,
    fresh_data_dir,
    jobs_args,
    load_result,
    outputs_of,
    run_detect,
)
from tests.support.paths import FIXTURE_MODEL
from tests.support.yolo import predict

if TYPE_CHECKING:
    from ultralytics.models import YOLO

pytestmark = pytest.mark.slow  # real inference in subprocesses (about 30 s in all)

SEEDS = [synthetic.HELD_OUT_SEED_START + 500 + i for i in range(5)]
TOP_KEYS = {
    "schema_version",
    "job_id",
    "batch_id",
    "status",
    "model",
    "image",
    "inference_ms",
    "detections",
    "class_names",
    "annotated_path",
}
BATCH = "b47c0001-0000-4000-8000-000000000001"
FAIL_MARKER = "boom"  # COUNTING_WRAPPER's predict raises for images whose path contains it

# Imports detect.py as a module, counts YOLO() constructions and predict calls (and makes
# predict raise for images whose path holds FAIL_PREDICT_ON), and writes the counts to a file.
COUNTING_WRAPPER = r"""
import importlib.util, json, os, sys

spec = importlib.util.spec_from_file_location("detect_under_test", sys.argv[1])
detect = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = detect
spec.loader.exec_module(detect)
counts = {"yolo_models": 0, "predictions": 0}
real_load_model = detect.load_model


def load_model(*args, **kwargs):
    from ultralytics import YOLO  # detect.py builds its models from this class only

    if not getattr(YOLO, "_counted_by_test", False):
        init, predict = YOLO.__init__, YOLO.predict

        def counting_init(self, *a, **k):
            counts["yolo_models"] += 1
            init(self, *a, **k)

        def counting_predict(self, source=None, *a, **k):
            counts["predictions"] += 1
            marker = os.environ.get("FAIL_PREDICT_ON")
            if marker and marker in str(source):
                raise RuntimeError("simulated \U0001f4a5 failure\n  in predict")
            return predict(self, source, *a, **k)

        YOLO.__init__, YOLO.predict = counting_init, counting_predict
        YOLO._counted_by_test = True
    return real_load_model(*args, **kwargs)


detect.load_model = load_model
try:
    code = detect.main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
counts["ultralytics_imported"] = "ultralytics" in sys.modules
with open(os.environ["DETECT_COUNTS"], "w") as f:
    json.dump(counts, f)
sys.exit(code)
"""


class Scene(TypedDict):
    rel: str  # the upload, relative to the data dir
    gt: list[synthetic.GroundTruth]
    size: tuple[int, int]


class Batch(TypedDict):
    proc: Process
    counts: dict[str, Any]
    order: list[tuple[str, str]]  # (job, image)
    good: list[str]
    failed: dict[str, str]  # job: a fragment of its error


class Variant(TypedDict):
    proc: Process
    jobs: list[str]
    model: str


class Run(Scene):
    """A job that should have succeeded, with the arguments it ran with."""

    name: str
    job: str
    proc: Process
    model: str
    batch_id: str | None
    conf: float
    imgsz: int


def run_counted(
    data_dir: Path, *args: str, env: Mapping[str, str] = {}
) -> tuple[Process, dict[str, Any]]:
    """detect.py under COUNTING_WRAPPER: the process and the counts."""
    counts_file = data_dir.parent / f"counts-{uuid.uuid4().hex}.json"
    proc = run_detect(
        data_dir, *args, env={"DETECT_COUNTS": str(counts_file), **env}, wrapper=COUNTING_WRAPPER
    )
    assert counts_file.exists(), proc.stderr
    counts: dict[str, Any] = json.loads(counts_file.read_text())
    return proc, counts


def new_job() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_data_dir(tmp_path_factory.mktemp("shared") / "data")


@pytest.fixture(scope="module")
def scenes(data_dir: Path) -> dict[str, Scene]:
    """Uploads with known objects, keyed by job id: JPEG, PNG, JPEG, ..."""
    out: dict[str, Scene] = {}
    for index, seed in enumerate(SEEDS):
        img, gt = synthetic.render_scene(seed)
        job = str(uuid.UUID(int=seed))
        rel = f"uploads/{job}.{'png' if index % 2 else 'jpg'}"
        img.save(data_dir / rel, quality=92)
        out[job] = {"rel": rel, "gt": gt, "size": img.size}
    return out


def write_undecodable(data_dir: Path, rel: str) -> str:
    (data_dir / rel).write_bytes(b"this is not a JPEG at all\n" * 10)
    return rel


def fabricate_success(data_dir: Path, job: str, batch: str | None, *, annotated: bool) -> None:
    """What an earlier run would have left for a job that succeeded."""
    (data_dir / "results").mkdir(exist_ok=True)
    body = {"schema_version": 1, "job_id": job, "batch_id": batch, "status": "succeeded",
            "model": "fabricated", "image": {"path": "uploads/x.jpg", "width": 1, "height": 1},
            "inference_ms": 1.0, "detections": [],
            "annotated_path": f"results/{job}.annotated.jpg"}  # fmt: skip
    (data_dir / "results" / f"{job}.json").write_text(json.dumps(body))
    if annotated:
        (data_dir / "results" / f"{job}.annotated.jpg").write_bytes(b"fabricated annotated")


def fabricate_failure(data_dir: Path, job: str, batch: str | None) -> None:
    (data_dir / "results").mkdir(exist_ok=True)
    body = {"schema_version": 1, "job_id": job, "batch_id": batch, "status": "failed",
            "error": "An earlier attempt failed."}  # fmt: skip
    (data_dir / "results" / f"{job}.json").write_text(json.dumps(body))


# --------------------------------------------------------------------------- the batch runs


@pytest.fixture(scope="module")
def batch(data_dir: Path, scenes: dict[str, Scene]) -> Batch:
    """One batch of six jobs with default arguments: three good images and, between them, an
    undecodable one, a missing one and one whose prediction raises."""
    good = list(scenes)[:3]
    bad, missing, boom = new_job(), new_job(), new_job()
    write_undecodable(data_dir, f"uploads/{bad}.jpg")
    boom_rel = f"uploads/{FAIL_MARKER}-{boom}.jpg"
    shutil.copy(data_dir / scenes[good[0]]["rel"], data_dir / boom_rel)
    order = [
        (good[0], scenes[good[0]]["rel"]),
        (bad, f"uploads/{bad}.jpg"),
        (good[1], scenes[good[1]]["rel"]),
        (missing, f"uploads/{missing}.png"),
        (boom, boom_rel),
        (good[2], scenes[good[2]]["rel"]),
    ]
    proc, counts = run_counted(
        data_dir,
        "--batch-id", BATCH, "--model", "models/shapes.pt", *jobs_args(*order),
        env={"FAIL_PREDICT_ON": FAIL_MARKER},
    )  # fmt: skip
    return {
        "proc": proc,
        "counts": counts,
        "order": order,
        "good": good,
        "failed": {
            bad: "could not be decoded",
            missing: "does not exist",
            boom: f"Detection failed for {boom_rel}: simulated failure in predict",
        },
    }


@pytest.fixture(scope="module")
def variant(data_dir: Path, scenes: dict[str, Scene]) -> Variant:
    """Two jobs with an absolute model path, --conf 0.5 --imgsz 320 and no --batch-id. The
    first one looks done already (a success without batch id), which is not trusted."""
    jobs = list(scenes)[3:]
    fabricate_success(data_dir, jobs[0], None, annotated=True)
    model = str(data_dir / "models" / "shapes.pt")
    proc = run_detect(
        data_dir, "--model", model, "--conf", "0.5", "--imgsz", "320",
        *jobs_args(*((job, scenes[job]["rel"]) for job in jobs)),
    )  # fmt: skip
    return {"proc": proc, "jobs": jobs, "model": model}


@pytest.fixture(scope="module")
def runs(batch: Batch, variant: Variant, scenes: dict[str, Scene]) -> list[Run]:
    out: list[Run] = [
        {"name": f"batch-{i}", "job": job, "proc": batch["proc"], "model": "models/shapes.pt",
         "batch_id": BATCH, "conf": 0.25, "imgsz": 640, **scenes[job]}
        for i, job in enumerate(batch["good"])
    ]  # fmt: skip
    out += [
        {"name": f"variant-{i}", "job": job, "proc": variant["proc"], "model": variant["model"],
         "batch_id": None, "conf": 0.5, "imgsz": 320, **scenes[job]}
        for i, job in enumerate(variant["jobs"])
    ]  # fmt: skip
    return out


@pytest.fixture(scope="module")
def yolo() -> YOLO:
    from ultralytics.models import YOLO

    return YOLO(str(FIXTURE_MODEL))


def test_exits_zero(batch: Batch, variant: Variant) -> None:
    assert batch["proc"].returncode == 0, batch["proc"].stderr
    assert variant["proc"].returncode == 0, variant["proc"].stderr


def test_the_model_is_built_once_per_batch(batch: Batch) -> None:
    # Six jobs: the three that failed the cheap checks never reach the model; the four
    # others (three good ones and the one whose predict raises) share one YOLO().
    assert batch["counts"] == {"yolo_models": 1, "predictions": 4, "ultralytics_imported": True}
    assert batch["proc"].stderr.count("model models/shapes.pt loaded") == 1


def test_outputs_line(batch: Batch, variant: Variant) -> None:
    assert outputs_of(batch["proc"]) == {"batch_id": BATCH, "jobs": 6, "succeeded": 3, "failed": 3}
    assert outputs_of(variant["proc"]) == {"batch_id": None, "jobs": 2, "succeeded": 2, "failed": 0}


def test_result_json_matches_schema(runs: list[Run], data_dir: Path) -> None:
    for run in runs:
        res = load_result(data_dir, run["job"])
        assert set(res) == TOP_KEYS, run["name"]
        assert res["schema_version"] == 1
        assert res["job_id"] == run["job"]
        assert res["batch_id"] == run["batch_id"]
        assert res["status"] == "succeeded"
        assert res["model"] == run["model"]  # as given on the command line
        width, height = run["size"]
        assert res["image"] == {"path": run["rel"], "width": width, "height": height}
        assert isinstance(res["inference_ms"], float)
        assert res["inference_ms"] > 0
        assert res["annotated_path"] == f"results/{run['job']}.annotated.jpg"
        # The model's classes, so the API can check each detection's class against them.
        assert res["class_names"] == {str(i): n for i, n in enumerate(synthetic.CLASS_NAMES)}
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


def test_detections_match_ground_truth(runs: list[Run], data_dir: Path) -> None:
    for run in runs:
        dets = synthetic.boxes_of(load_result(data_dir, run["job"])["detections"])
        m = synthetic.match(run["gt"], dets, iou_threshold=0.5)
        assert m["ok"], f"{run['name']}: missed={m['missed']} extra={[dets[i] for i in m['extra']]}"


def test_boxes_equal_direct_ultralytics_call(runs: list[Run], data_dir: Path, yolo: YOLO) -> None:
    for run in runs:
        res = load_result(data_dir, run["job"])
        direct = predict(yolo, data_dir / run["rel"], conf=run["conf"], imgsz=run["imgsz"])
        assert len(direct.classes) == len(res["detections"]), run["name"]
        boxes = zip(direct.classes, direct.conf, direct.xyxy, res["detections"], strict=True)
        for cls, conf, xyxy, det in boxes:
            assert det["class_id"] == cls
            assert det["confidence"] == pytest.approx(conf, abs=1e-4)
            got = [det["box"][k] for k in ("x1", "y1", "x2", "y2")]
            assert got == pytest.approx(xyxy, abs=1e-2), run["name"]


def test_annotated_image_is_a_jpeg_of_the_same_size(runs: list[Run], data_dir: Path) -> None:
    for run in runs:
        path = data_dir / "results" / f"{run['job']}.annotated.jpg"
        with Image.open(path) as im:
            assert im.format == "JPEG"
            assert im.size == run["size"]
            im.load()  # fully decodable


def test_a_bad_job_fails_only_itself(batch: Batch, data_dir: Path) -> None:
    proc = batch["proc"]
    for job, fragment in batch["failed"].items():
        res = assert_failed_result(data_dir, job, BATCH, fragment)
        assert res["error"] in proc.stderr
    for job in batch["good"]:
        assert load_result(data_dir, job)["status"] == "succeeded"
    # A progress line per job on stderr, naming it and what became of it.
    for job, _rel in batch["order"]:
        status = "failed" if job in batch["failed"] else "succeeded"
        assert re.search(rf"job {job} {status}", proc.stderr), (job, proc.stderr[-3000:])


def test_files_are_world_readable_and_no_temp_files_left(
    runs: list[Run], batch: Batch, data_dir: Path
) -> None:
    names = sorted(p.name for p in (data_dir / "results").iterdir())
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")], names
    for run in runs:
        for suffix in (".json", ".annotated.jpg"):
            mode = stat.S_IMODE((data_dir / "results" / f"{run['job']}{suffix}").stat().st_mode)
            assert mode == 0o644, (suffix, oct(mode))
    for job in batch["failed"]:
        mode = stat.S_IMODE((data_dir / "results" / f"{job}.json").stat().st_mode)
        assert mode == 0o644


# --------------------------------------------------------------------------- re-runs


def test_a_rerun_of_the_same_batch_skips_the_jobs_that_succeeded_in_it(
    tmp_path: Path, scenes: dict[str, Scene], data_dir: Path
) -> None:
    """Kestra's task retry runs the same batch again: only what did not succeed is redone."""
    d = fresh_data_dir(tmp_path / "data")
    rel = "uploads/scene.jpg"
    shutil.copy(data_dir / next(iter(scenes.values()))["rel"], d / rel)
    done, failed_before, other_batch, no_annotated = (new_job() for _ in range(4))
    fabricate_success(d, done, BATCH, annotated=True)
    fabricate_failure(d, failed_before, BATCH)
    fabricate_success(d, other_batch, "another-batch", annotated=True)
    fabricate_success(d, no_annotated, BATCH, annotated=False)
    done_files = {p: p.read_bytes() for p in (d / "results").glob(f"{done}.*")}
    pairs = [(job, rel) for job in (done, failed_before, other_batch, no_annotated)]
    args = ["--batch-id", BATCH, "--model", "models/shapes.pt", *jobs_args(*pairs)]

    proc, counts = run_counted(d, *args)
    assert proc.returncode == 0, proc.stderr
    assert counts == {"yolo_models": 1, "predictions": 3, "ultralytics_imported": True}
    assert outputs_of(proc) == {"batch_id": BATCH, "jobs": 4, "succeeded": 4, "failed": 0}
    assert {p: p.read_bytes() for p in (d / "results").glob(f"{done}.*")} == done_files
    assert f"job {done} already succeeded in batch {BATCH}" in proc.stderr
    for job in (failed_before, other_batch, no_annotated):
        res = load_result(d, job)
        assert res["status"] == "succeeded"
        assert res["batch_id"] == BATCH
        assert res["model"] == "models/shapes.pt"
        with Image.open(d / res["annotated_path"]) as im:
            assert im.format == "JPEG"

    # Everything is done now: a third run touches nothing and does not even import
    # Ultralytics (the model load is skipped when no job is left).
    before = {p: p.stat().st_mtime_ns for p in (d / "results").iterdir()}
    proc, counts = run_counted(d, *args)
    assert proc.returncode == 0, proc.stderr
    assert counts == {"yolo_models": 0, "predictions": 0, "ultralytics_imported": False}
    assert outputs_of(proc) == {"batch_id": BATCH, "jobs": 4, "succeeded": 4, "failed": 0}
    assert {p: p.stat().st_mtime_ns for p in (d / "results").iterdir()} == before


def test_a_success_without_batch_id_is_not_trusted(variant: Variant, data_dir: Path) -> None:
    # The variant run's first job had a fabricated success (no batch id): it was redone.
    res = load_result(data_dir, variant["jobs"][0])
    assert res["model"] == variant["model"]
    assert res["batch_id"] is None
    assert "already succeeded" not in variant["proc"].stderr


# --------------------------------------------------------------------------- failures


def assert_failed_result(
    data_dir: Path, job: str, batch_id: str | None, fragment: str
) -> dict[str, Any]:
    res = load_result(data_dir, job)
    assert res == {
        "schema_version": 1,
        "job_id": job,
        "batch_id": batch_id,
        "status": "failed",
        "error": res["error"],
    }
    assert fragment in res["error"], res["error"]
    assert "\n" not in res["error"]
    assert "Traceback" not in res["error"]
    assert "\U0001f4a5" not in res["error"]
    assert not (data_dir / "results" / f"{job}.annotated.jpg").exists()
    return res


def test_a_missing_model_fails_every_job_not_done_and_exits_1(
    data_dir: Path, scenes: dict[str, Scene]
) -> None:
    """The batch as a whole cannot run: exit 1 (Kestra retries the batch), and every job not
    done yet has a failed result saying why."""
    rel = next(iter(scenes.values()))["rel"]
    good1, good2, bad, done = (new_job() for _ in range(4))
    write_undecodable(data_dir, f"uploads/{bad}.jpg")
    fabricate_success(data_dir, done, BATCH, annotated=True)
    pairs = [(good1, rel), (bad, f"uploads/{bad}.jpg"), (done, rel), (good2, rel)]
    for model, fragment in [
        ("models/missing.pt", "The model file models/missing.pt does not exist"),
        (str(data_dir / "nowhere" / "m.pt"), "does not exist"),
    ]:
        proc = run_detect(data_dir, "--batch-id", BATCH, "--model", model, *jobs_args(*pairs))
        assert proc.returncode == 1, proc.stderr
        assert proc.stdout == "", "no outputs line when the batch fails"
        for job in (good1, good2):
            assert fragment in assert_failed_result(data_dir, job, BATCH, fragment)["error"]
            assert fragment in proc.stderr
        assert_failed_result(data_dir, bad, BATCH, "could not be decoded")  # its own reason
        assert load_result(data_dir, done)["model"] == "fabricated"  # left alone


def test_an_unloadable_model_file_fails_the_batch(data_dir: Path, scenes: dict[str, Scene]) -> None:
    (data_dir / "models" / "broken.pt").write_bytes(b"not a torch checkpoint")
    rel = next(iter(scenes.values()))["rel"]
    jobs = [new_job(), new_job()]
    proc = run_detect(
        data_dir, "--model", "models/broken.pt", *jobs_args(*((job, rel) for job in jobs))
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    for job in jobs:
        assert_failed_result(data_dir, job, None, "The model models/broken.pt could not be loaded")


def test_no_model_load_when_no_image_passes_the_cheap_checks(
    data_dir: Path, tmp_path: Path
) -> None:
    """Missing, undecodable and escaping images fail their jobs without loading the model
    (here an unloadable one, which is never touched): exit 0, one result each."""
    outside = tmp_path / "outside.jpg"
    img, _ = synthetic.render_scene(synthetic.HELD_OUT_SEED_START + 900)
    img.save(outside)
    link = data_dir / "uploads" / "link.jpg"
    link.symlink_to(outside)
    (data_dir / "models" / "broken.pt").write_bytes(b"not a torch checkpoint")
    cases = [
        (os.path.relpath(outside, data_dir), "outside the data directory"),  # ../../...
        ("uploads/../../outside.jpg", "outside the data directory"),
        ("uploads/link.jpg", "outside the data directory"),
        (str(outside), "must be relative"),
        ("uploads", "is not a file"),
        ("uploads/nothing-here.png", "does not exist"),
        (write_undecodable(data_dir, "uploads/garbage.webp"), "could not be decoded"),
    ]
    pairs = [(new_job(), image) for image, _ in cases]
    proc, counts = run_counted(
        data_dir, "--batch-id", BATCH, "--model", "models/broken.pt", *jobs_args(*pairs)
    )
    assert proc.returncode == 0, proc.stderr
    assert counts == {"yolo_models": 0, "predictions": 0, "ultralytics_imported": False}
    assert outputs_of(proc) == {"batch_id": BATCH, "jobs": 7, "succeeded": 0, "failed": 7}
    for (job, _image), (_, fragment) in zip(pairs, cases, strict=True):
        assert_failed_result(data_dir, job, BATCH, fragment)


def test_a_result_that_cannot_be_written_exits_1_after_the_other_jobs(data_dir: Path) -> None:
    blocked, other = new_job(), new_job()
    (data_dir / "results" / f"{blocked}.json").mkdir(parents=True)  # a directory in the way
    proc = run_detect(
        data_dir,
        "--model", "models/shapes.pt",
        *jobs_args((blocked, "uploads/gone-1.jpg"), (other, "uploads/gone-2.jpg")),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert f"could not write results/{blocked}.json" in proc.stderr
    assert_failed_result(data_dir, other, None, "does not exist")  # it went on


def test_missing_data_dir_writes_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    proc = run_detect(missing, "--model", "m.pt", "--jobs", "abc=uploads/a.jpg")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "does not exist" in proc.stderr
    assert not missing.exists()


J1, J2 = "3f1c2b7e-1d2a-4c5b-9e8f-0a1b2c3d4e5f", "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"


@pytest.mark.parametrize(
    "args",
    [
        ["--jobs", f"{J1}=uploads/a.jpg"],  # no --model
        ["--model", "m.pt"],  # no --jobs
        ["--model", "m.pt", "--jobs"],  # --jobs without a job
        ["--model", "m.pt", "--conf", "1.5", "--jobs", f"{J1}=uploads/a.jpg"],
        ["--model", "m.pt", "--imgsz", "big", "--jobs", f"{J1}=uploads/a.jpg"],
        ["--model", "m.pt", "--jobs", "../evil=uploads/a.jpg"],
        ["--model", "m.pt", "--jobs", "abc\n=uploads/a.jpg"],
        ["--model", "m.pt", "--jobs", "=uploads/a.jpg"],
        ["--model", "m.pt", "--jobs", f"{J1}="],
        ["--model", "m.pt", "--jobs", f"{J1}"],  # no image
        ["--model", "m.pt", "--jobs", f"{J1}=uploads/a.jpg", f"{J1}=uploads/b.jpg"],  # twice
        ["--model", "m.pt", "--jobs", f"{J1}=uploads/a.jpg", "--jobs", f"{J1}=uploads/a.jpg"],
        ["--batch-id", "../x", "--model", "m.pt", "--jobs", f"{J1}=uploads/a.jpg"],
        ["--batch-id", "", "--model", "m.pt", "--jobs", f"{J1}=uploads/a.jpg"],
        ["--model", "m.pt", "--job-id", J1, "--image", "uploads/a.jpg"],  # the old interface
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str]) -> None:
    proc = run_detect(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "results").exists()


def test_duplicate_job_ids_are_named(tmp_path: Path) -> None:
    args = ["--model", "m.pt", "--jobs", f"{J1}=uploads/a.jpg", f"{J2}=uploads/b.jpg"]
    proc = run_detect(tmp_path, *args, f"{J1}=uploads/c.jpg")
    assert proc.returncode == 2
    assert f"job id {J1} is given more than once" in proc.stderr


# --------------------------------------------------------------------------- environment


def test_works_with_unwritable_home_and_no_config_dir(
    data_dir: Path, scenes: dict[str, Scene], tmp_path: Path
) -> None:
    """As in the task container: HOME unusable, YOLO_CONFIG_DIR not set by the caller."""
    blocker = tmp_path / "file"
    blocker.write_text("a file, so nothing can be created below it")
    rel = next(iter(scenes.values()))["rel"]
    args = ["--model", "models/shapes.pt", *jobs_args((new_job(), rel))]
    env = {"HOME": str(blocker / "home"), "TMPDIR": str(tmp_path)}
    proc = run_detect(
        data_dir, *args, env=env, unset=("YOLO_CONFIG_DIR", "MPLCONFIGDIR", "XDG_CONFIG_HOME")
    )
    assert proc.returncode == 0, proc.stderr
    assert outputs_of(proc)["succeeded"] == 1
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


def test_works_without_any_network(data_dir: Path, scenes: dict[str, Scene]) -> None:
    """Nothing is downloaded (fonts, weights, checks): sockets are refused and YOLO_OFFLINE is
    unset."""
    pairs = [(new_job(), scene["rel"]) for scene in list(scenes.values())[:2]]
    args = ["--model", "models/shapes.pt", *jobs_args(*pairs)]
    proc = run_detect(data_dir, *args, unset=("YOLO_OFFLINE",), wrapper=NO_NETWORK_WRAPPER)
    assert proc.returncode == 0, proc.stderr
    assert outputs_of(proc)["succeeded"] == 2
    for job, _rel in pairs:
        assert (data_dir / "results" / f"{job}.annotated.jpg").stat().st_size > 0

"""Inference pipeline benchmark: the whole stack vs. Ultralytics on its own, side by side.

What is measured, in one run, on one compose stack (API + Postgres + the Kestra stand-in of
tests/e2e, which runs flows/yolo-detect.yml by starting real inference containers):

* **Burst throughput.** N distinct synthetic images (tests/fixtures/synthetic.py, JPEG and
  PNG, 320-640 px) are POSTed as fast as possible (up to 16 files a request, 4 requests at a
  time). Time runs from the first POST to the last job's `finished_at` (the API's own
  timestamp, so polling adds nothing); images/s = N / that. Every job must succeed: failed
  ones are reported, never counted.
  *Baseline:* a warm Ultralytics process in the **same inference image** (same torch, same
  files and model on the same volume): it imports Ultralytics, loads the model, predicts
  one image to warm up, then times `predict` on the N files one by one with the stack's
  conf and imgsz. Goal (issue 5): stack >= 0.8x the warm process's images/s.
* **Single-image latency.** One upload with the stack idle, from the POST to the job's
  `finished_at`, several times in a row.
  *Baselines:* a cold `python -c` that imports Ultralytics, loads the model and predicts the
  same file once, (a) `docker exec`'d into an already running container of the inference
  image (pure cold Python) and (b) as `docker run --rm` (container start included).
  Goal: stack <= cold (a) + 1 s.
* A per-phase breakdown (upload, first/last job done, task containers, dispatch, callback,
  the cold process's import/load/predict), and for reference the same warm loop in the
  Python running this script (PyPI torch) when it has Ultralytics.

Each repeat runs warm baseline, burst, then single uploads interleaved with the cold
baselines, so stack and baselines see the same machine state; ratios are paired per repeat.
Tables show min / median / max over repeats. Nothing is asserted: it prints tables.

Models (`--model`): `fixture` is the repository's tests/fixtures/model/shapes.pt (tiny);
`yolo11n` is a YOLO11n built by Ultralytics from its bundled yolo11n.yaml with random weights
(nothing downloaded), saved with `YOLO.save()` onto the shared volume: the same compute as
the real YOLO11n. Random weights find (almost) nothing at conf 0.25; stack and baselines
use the same conf and imgsz (the API's CONFIDENCE, default 0.25, and IMAGE_SIZE 640).

Reproduce (from the repository root; needs Docker with the compose plugin, the offline
images of `make offline-images`; the inference image yolo-inference:local is built with
docker/inference/build.sh when missing):

    .venv/bin/python bench/pipeline_bench.py [--images 64] [--repeats 3] [--model fixture|yolo11n]

The stack runs under its own compose project and volume (nothing of a developer's stack or
of the tests is touched) and is removed at the end (`down -v`), errors included.
Environment passed through to the stack when set: BATCH_MAX_JOBS, BATCH_WINDOW_S
(micro-batching), STANDIN_WORKER_THREADS (default 3), INFERENCE_IMAGE, PYTHON_BASE_IMAGE,
POSTGRES_IMAGE, LOG_LEVEL. BENCH_KEEP=1 leaves the stack up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import load_average, machine_line, median, spread  # noqa: E402
from tests.docker.dockerutil import (  # noqa: E402
    HOST_CA_BUNDLE,
    OFFLINE_POSTGRES,
    OFFLINE_PYTHON,
    Docker,
    client,
    secrets_env,
)
from tests.e2e.stack import (  # noqa: E402
    TASK_LABEL,
    TERMINAL,
    Scene,
    Stack,
    build_inference_image,
    chunks,
    scenes,
)
from tests.support.net import free_port  # noqa: E402

FIXTURE_MODEL = ROOT / "tests" / "fixtures" / "model" / "shapes.pt"
IMAGE_SIZE = 640  # the API's default; compose does not pass IMAGE_SIZE
FIRST_SEED = 90_000  # held-out scenes no test uploads
LIVE = ("queued", "submitted", "running")  # in the order a job moves through them
BATCH_VARS = ("BATCH_MAX_JOBS", "BATCH_WINDOW_S")
MARK = "BENCH-RESULT "
MODEL_FILES = {"fixture": "models/shapes.pt", "yolo11n": "models/yolo11n-random.pt"}
PINNED: dict[str, str] = {}  # our tag of the inference image -> what it was called, id, size

# Run inside the inference image (or this Python): argv = model, conf, imgsz, files...
WARM_SCRIPT = f"""
import json, sys, time
import torch, ultralytics
from ultralytics import YOLO
model = YOLO(sys.argv[1])
conf, imgsz, files = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
model.predict(files[0], conf=conf, imgsz=imgsz, verbose=False)
times, boxes = [], 0
start = time.perf_counter()
for path in files:
    began = time.perf_counter()
    boxes += len(model.predict(path, conf=conf, imgsz=imgsz, verbose=False)[0].boxes)
    times.append(time.perf_counter() - began)
elapsed = time.perf_counter() - start
print({MARK!r} + json.dumps({{"elapsed_s": elapsed, "times": times, "boxes": boxes,
      "torch": torch.__version__, "threads": torch.get_num_threads(),
      "ultralytics": ultralytics.__version__}}), flush=True)
"""

# The cold process of the issue: import, load, predict once. argv = model, image, conf, imgsz.
COLD_SCRIPT = f"""
import json, sys, time
t0 = time.perf_counter()
from ultralytics import YOLO
t1 = time.perf_counter()
model = YOLO(sys.argv[1])
t2 = time.perf_counter()
result = model.predict(sys.argv[2], conf=float(sys.argv[3]), imgsz=int(sys.argv[4]),
                       verbose=False)[0]
t3 = time.perf_counter()
print({MARK!r} + json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "predict_s": t3 - t2,
      "boxes": len(result.boxes)}}), flush=True)
"""

# A YOLO11n with random weights, from Ultralytics' bundled architecture file. argv = target.
RANDOM_YOLO11N_SCRIPT = """
import sys
from ultralytics import YOLO
YOLO("yolo11n.yaml").save(sys.argv[1])
"""


class BenchError(Exception):
    """A phase could not be measured (reported in the output, the run goes on)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_result(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            return result
    raise BenchError(f"no result line in the output:\n{output[-2000:]}")


def timestamp(value: str | None) -> float | None:
    """An API/stand-in ISO timestamp ('...Z') as seconds since the epoch."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Samples:
    """Everything measured, as lists over repeats (or over single uploads)."""

    values: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault(name, []).append(value)

    def get(self, name: str) -> list[float]:
        return self.values.get(name, [])


# --- the stack ------------------------------------------------------------------------------
def ensure_images(docker: Docker, inference_image: str, base: str, postgres: str) -> None:
    for image in (base, postgres):
        if not docker.image_exists(image):
            raise SystemExit(f"image {image} is missing (make offline-images)")
    if docker.image_exists(inference_image):
        return
    log(f"building {inference_image} with docker/inference/build.sh (minutes, once)")
    failure = build_inference_image(inference_image)
    if failure is not None:
        raise SystemExit(f"building {inference_image} failed:\n{failure}")


def make_stack(docker: Docker, model: str, conf: float) -> Stack:
    base = os.environ.get("PYTHON_BASE_IMAGE") or OFFLINE_PYTHON
    postgres = os.environ.get("POSTGRES_IMAGE") or OFFLINE_POSTGRES
    inference_image = os.environ.get("INFERENCE_IMAGE") or "yolo-inference:local"
    ensure_images(docker, inference_image, base, postgres)
    project = f"yolobench{secrets.token_hex(4)}"
    pinned = pin_image(docker, inference_image, project)
    env = {
        **secrets_env(),
        # Own tags: never retag the images a concurrent test run uses.
        "API_IMAGE": "yolo-api:bench",
        "KESTRA_STANDIN_IMAGE": "yolo-kestra-standin:bench",
        "PYTHON_BASE_IMAGE": base,
        "POSTGRES_IMAGE": postgres,
        "INFERENCE_IMAGE": pinned,
        "SHARED_VOLUME_NAME": f"{project}-shared",
        "API_PORT": str(free_port()),
        "KESTRA_PORT": str(free_port()),
        "MODEL": MODEL_FILES[model],  # put on the volume before the first upload
        "CONFIDENCE": repr(conf),
        "STANDIN_WORKER_THREADS": os.environ.get("STANDIN_WORKER_THREADS") or "3",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL") or "INFO",
    }
    for name in BATCH_VARS:
        if os.environ.get(name):
            env[name] = os.environ[name]
    ca = os.environ.get("EXTRA_CA_BUNDLE") or os.environ.get("BUILD_CA_BUNDLE")
    if not ca and HOST_CA_BUNDLE.exists():
        ca = str(HOST_CA_BUNDLE)
    if ca:
        env["BUILD_CA_BUNDLE"] = ca
    return Stack(docker, [*docker.cmd, "compose"], project, env, pinned, base)


def pin_image(docker: Docker, image: str, project: str) -> str:
    """A tag of our own for the image `image` names now, so that a rebuild of that tag
    during the run (others build on this machine) changes neither the stack's task
    containers nor the baselines halfway through."""
    info = docker.inspect(image)
    pinned = f"yolo-inference-bench:{project}"
    docker("tag", info["Id"], pinned)
    PINNED[pinned] = f"{image} ({info['Id'][7:19]}, {int(info['Size']) / 1e6:.0f} MB)"
    return pinned


def unpin_image(docker: Docker, pinned: str) -> None:
    """Drop our tag. If the original tag was rebuilt meanwhile, it was the image's last name
    and the image goes too, as a dangling one would (not while a container uses it)."""
    proc = docker("rmi", "--no-prune", pinned, check=False)
    if proc.returncode != 0:
        log(f"could not remove {pinned}: {proc.stderr.strip()[:300]}")


def seed_volume(stack: Stack, model: str, images: Sequence[Scene]) -> None:
    """Put the model (where the API's MODEL points) and the bench images on the volume."""
    if model == "fixture":
        stack.seed_model()
    else:
        stack.docker(
            *container_args(stack, "run", "--rm"),
            stack.inference_image,
            "python",
            "-c",
            RANDOM_YOLO11N_SCRIPT,
            f"/data/{MODEL_FILES[model]}",
            timeout=600,
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for scene in images:
            info = tarfile.TarInfo(scene.name)
            info.size, info.mode = len(scene.data), 0o644
            tar.addfile(info, io.BytesIO(scene.data))
    stack.volume_run("mkdir -p /data/bench && tar -x -C /data/bench", stdin=buffer.getvalue())


def container_args(stack: Stack, *head: str) -> list[str]:
    """`docker run`/`create` options of a baseline container: like the flow's task
    container (uid 1000, the shared volume on /data), labelled for the clean-up."""
    return [
        *head,
        "--user",
        "1000:1000",
        "--network",
        "none",
        "--label",
        f"yolobench={stack.project}",
        "-v",
        f"{stack.volume}:/data",
    ]


def api_env(stack: Stack) -> dict[str, str]:
    info = stack.docker.inspect(stack.container("api"), "container")
    return dict(item.split("=", 1) for item in info["Config"]["Env"] if "=" in item)


def wait_idle(stack: Stack, timeout: float = 120) -> None:
    """Until no task container of this stack runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = stack.docker(
            "ps", "-q", "--filter", f"label={TASK_LABEL}", "--filter", f"volume={stack.volume}"
        ).stdout.split()
        if not running:
            return
        time.sleep(0.5)
    raise BenchError(f"task containers still running after {timeout:.0f} s")


def tear_down(stack: Stack, started: bool) -> None:
    if started:
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            (artifacts / f"bench-{stack.project}.log").write_text(stack.logs())
    if os.environ.get("BENCH_KEEP") == "1":
        log(f"BENCH_KEEP=1: stack {stack.project} left up")
        return
    log(f"removing stack {stack.project}")
    stack.compose("down", "-v", "--remove-orphans", "-t", "30", timeout=300, check=False)
    for label in (f"yolobench={stack.project}", TASK_LABEL):
        ids = stack.docker(
            "ps", "-aq", "--filter", f"label={label}", "--filter", f"volume={stack.volume}"
        ).stdout.split()
        if ids:
            stack.docker("rm", "-fv", *ids, check=False)
    stack.docker("volume", "rm", "-f", stack.volume, check=False)


# --- through the stack ----------------------------------------------------------------------
async def _post_all(
    url: str, key: str, images: Sequence[Scene], per_request: int, concurrency: int
) -> tuple[list[str], float]:
    """POST the images (concurrently); return the job ids in image order and when the last
    202 came back."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, headers=auth) as http:

        async def post(batch: Sequence[Scene]) -> list[str]:
            files = [("files", (s.name, s.data, "application/octet-stream")) for s in batch]
            async with gate:
                response = await http.post("/v1/uploads", files=files)
            if response.status_code != 202:
                raise BenchError(f"upload refused: {response.status_code} {response.text[:300]}")
            return [job["id"] for job in response.json()["jobs"]]

        parts = await asyncio.gather(*(post(b) for b in chunks(images, per_request)))
    return [job_id for part in parts for job_id in part], time.time()


def live_ids(http: httpx.Client) -> set[str]:
    """Ids of every job not yet succeeded or failed. The statuses are listed in the order a
    job moves through them, so a job moving on while we ask is still seen once."""
    found: set[str] = set()
    for status in LIVE:
        cursor = None
        while True:
            params = {"status": status, "limit": "200", **({"cursor": cursor} if cursor else {})}
            response = http.get("/v1/jobs", params=params)
            response.raise_for_status()
            body = response.json()
            found |= {job["id"] for job in body["jobs"]}
            cursor = body.get("next_cursor")
            if not cursor:
                break
    return found


def wait_jobs(http: httpx.Client, ids: Sequence[str], timeout: float) -> dict[str, Any]:
    """Poll cheaply (the lists of live jobs) until none of ids is live; return every job."""
    deadline = time.monotonic() + timeout
    while True:
        if not live_ids(http) & set(ids):
            jobs = {job_id: http.get(f"/v1/jobs/{job_id}").json() for job_id in ids}
            if all(job["status"] in TERMINAL for job in jobs.values()):
                return jobs
        if time.monotonic() > deadline:
            raise BenchError(f"jobs not finished after {timeout:.0f} s")
        time.sleep(0.5)


def containers_since(stack: Stack, since: float) -> list[dict[str, Any]]:
    """The stand-in's task containers started after `since` (epoch seconds)."""
    rows = stack.task_containers()
    return [r for r in rows if (timestamp(r.get("startedAt")) or 0) >= since]


def burst(
    stack: Stack, images: Sequence[Scene], samples: Samples, per_request: int, concurrency: int
) -> float | None:
    """One burst through the stack; returns images/s (None when not measurable)."""
    t0 = time.time()
    ids, acked = asyncio.run(
        _post_all(stack.api_url, stack.env["ADMIN_API_KEY"], images, per_request, concurrency)
    )
    if len(set(ids)) != len(images):
        raise BenchError(f"{len(images)} images gave {len(set(ids))} jobs")
    with stack.client(timeout=60) as http:
        jobs = wait_jobs(http, ids, timeout=max(600.0, 30.0 * len(images)))
    failed = [job for job in jobs.values() if job["status"] != "succeeded"]
    finished = [timestamp(job["finished_at"]) or t0 for job in jobs.values()]
    elapsed = max(finished) - t0
    samples.add("burst upload s", acked - t0)
    samples.add("burst first done s", min(finished) - t0)
    samples.add("burst all done s", elapsed)
    samples.add("burst failed jobs", float(len(failed)))
    samples.add("burst boxes", float(sum(len(job["detections"]) for job in jobs.values())))
    waits = [
        (timestamp(job["submitted_at"]) or 0) - (timestamp(job["created_at"]) or 0)
        for job in jobs.values()
        if job["submitted_at"]
    ]
    samples.add("burst wait s", median(waits))
    tasks = containers_since(stack, t0)
    durations = [
        (timestamp(c.get("finishedAt")) or 0) - (timestamp(c["startedAt"]) or 0)
        for c in tasks
        if c.get("finishedAt")
    ]
    samples.add("burst task containers", float(len(tasks)))
    samples.add("burst task container median s", median(durations))
    for job in failed[:3]:
        samples.problems.append(f"burst job {job['id']} {job['status']}: {job.get('error')}")
    succeeded = len(jobs) - len(failed)
    return succeeded / elapsed if succeeded else None


def single(stack: Stack, scene: Scene, samples: Samples) -> float:
    """One upload with the stack idle: seconds from the POST to the job's finished_at."""
    t0 = time.time()
    with stack.client(timeout=60) as http:
        files = [("files", (scene.name, scene.data, "application/octet-stream"))]
        response = http.post("/v1/uploads", files=files)
        if response.status_code != 202:
            raise BenchError(f"upload refused: {response.status_code} {response.text[:300]}")
        job_id = response.json()["jobs"][0]["id"]
        deadline = time.monotonic() + 300
        while True:
            job = http.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"single job {job_id} not finished after 300 s")
            time.sleep(0.1)
    if job["status"] != "succeeded":
        raise BenchError(f"single job {job_id} {job['status']}: {job.get('error')}")
    finished = timestamp(job["finished_at"]) or time.time()
    submitted = timestamp(job["submitted_at"])
    samples.add("single dispatch s", submitted - t0 if submitted else None)
    runs = [c for c in stack.task_containers() if c["executionId"] == job["execution_id"]]
    if runs and runs[-1].get("finishedAt"):
        began, ended = timestamp(runs[0]["startedAt"]), timestamp(runs[-1]["finishedAt"])
        if began and ended:
            samples.add("single task container s", ended - began)
            samples.add("single callback s", finished - ended)
    return finished - t0


# --- the baselines --------------------------------------------------------------------------
def warm(stack: Stack, model_path: str, files: Sequence[str], conf: float) -> dict[str, Any]:
    proc = stack.docker(
        *container_args(stack, "run", "--rm"),
        stack.inference_image,
        "python",
        "-c",
        WARM_SCRIPT,
        model_path,
        repr(conf),
        str(IMAGE_SIZE),
        *files,
        timeout=3600,
    )
    return parse_result(proc.stdout)


def warm_on_host(model: str, image_dir: Path, names: Sequence[str], conf: float) -> dict[str, Any]:
    """The same warm loop in this Python (its own torch), for reference."""
    model_arg = str(FIXTURE_MODEL) if model == "fixture" else "yolo11n.yaml"
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(image_dir / "ultralytics"))
    proc = subprocess.run(
        [sys.executable, "-c", WARM_SCRIPT, model_arg, repr(conf), str(IMAGE_SIZE)]
        + [str(image_dir / n) for n in names],
        capture_output=True,
        text=True,
        env=env,
        cwd=image_dir,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"host warm run exited {proc.returncode}: {proc.stderr[-1500:]}")
    return parse_result(proc.stdout)


def cold(
    stack: Stack, how: list[str], model_path: str, image: str, conf: float
) -> tuple[float, dict[str, Any]]:
    """One cold `python -c` (import, load, predict once), started by `how` (docker exec or
    run): its wall time seen from here, and its own import/load/predict times."""
    began = time.perf_counter()
    proc = stack.docker(
        *how, "python", "-c", COLD_SCRIPT, model_path, image, repr(conf), str(IMAGE_SIZE)
    )
    return time.perf_counter() - began, parse_result(proc.stdout)


# --- one repeat -----------------------------------------------------------------------------
def repeat(
    stack: Stack,
    args: argparse.Namespace,
    images: Sequence[Scene],
    model_path: str,
    cold_box: str,
    host_dir: Path | None,
    samples: Samples,
) -> None:
    files = [f"/data/bench/{s.name}" for s in images]
    wait_idle(stack)
    warm_rate = None
    try:
        result = warm(stack, model_path, files, args.conf)
        warm_rate = len(files) / result["elapsed_s"]
        samples.add("warm images/s", warm_rate)
        samples.add("warm per-image median ms", statistics.median(result["times"]) * 1000)
        samples.add("warm boxes", float(result["boxes"]))
        samples.facts["image torch"] = (
            f"torch {result['torch']} ({result['threads']} thread(s) under Ultralytics), "
            f"ultralytics {result['ultralytics']}"
        )
    except Exception as exc:
        samples.problems.append(f"warm baseline: {exc}")
    if host_dir is not None:
        try:
            result = warm_on_host(args.model, host_dir, [s.name for s in images], args.conf)
            samples.add("host warm images/s", len(images) / result["elapsed_s"])
            samples.facts["host torch"] = f"torch {result['torch']}"
        except Exception as exc:
            samples.problems.append(f"host reference: {exc}")
    try:
        rate = burst(stack, images, samples, args.per_request, args.concurrency)
        samples.add("burst images/s", rate)
        if rate and warm_rate:
            samples.add("burst ratio", rate / warm_rate)
    except Exception as exc:
        samples.problems.append(f"burst: {exc}")
    wait_idle(stack)
    lat: list[float] = []
    cold_exec: list[float] = []
    cold_run: list[float] = []
    run_how = [*container_args(stack, "run", "--rm"), stack.inference_image]
    for index in range(args.singles):
        scene = images[index % len(images)]
        image = f"/data/bench/{scene.name}"
        try:
            lat.append(single(stack, scene, samples))
            wait_idle(stack)
            wall, inside = cold(stack, ["exec", cold_box], model_path, image, args.conf)
            cold_exec.append(wall)
            for key in ("import_s", "load_s", "predict_s"):
                samples.add(f"cold {key}", inside[key])
            cold_run.append(cold(stack, run_how, model_path, image, args.conf)[0])
        except Exception as exc:
            samples.problems.append(f"single/cold #{index + 1}: {exc}")
    for name, values in (("single s", lat), ("cold exec s", cold_exec), ("cold run s", cold_run)):
        for value in values:
            samples.add(name, value)
    if lat and cold_exec:
        samples.add("single - cold exec s", statistics.median(lat) - statistics.median(cold_exec))
        samples.add("single ratio exec", statistics.median(lat) / statistics.median(cold_exec))
    if lat and cold_run:
        samples.add("single - cold run s", statistics.median(lat) - statistics.median(cold_run))
        samples.add("single ratio run", statistics.median(lat) / statistics.median(cold_run))


# --- output ---------------------------------------------------------------------------------
def verdict(value: float | None, ok: bool, text: str) -> str:
    if value is None:
        return "n/a"
    return f"{'met' if ok else 'NOT met'} ({text})"


def report(samples: Samples, args: argparse.Namespace, header: list[str], runtime_s: float) -> None:
    s = samples.get
    n = args.images
    failed = s("burst failed jobs")
    failed_note = f" ({int(sum(failed))} jobs failed!)" if sum(failed) else ""
    ratio = median(s("burst ratio"))
    gap = median(s("single - cold exec s"))
    print()
    print(f"### Inference pipeline: {n}-image burst and single-image latency")
    print()
    for line in header:
        print(f"- {line}")
    print()
    print("| metric | stack (min / median / max) | baseline | baseline (min / median / max) "
          "| stack vs baseline (min / median / max) | goal | median vs goal |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print(
        f"| burst of {n}: images/s | {spread(s('burst images/s'))}{failed_note} "
        f"| warm Ultralytics process, same image | {spread(s('warm images/s'))} "
        f"| {spread(s('burst ratio'))} x | >= 0.8 x "
        f"| {verdict(ratio, (ratio or 0) >= 0.8, f'{ratio or 0:.2f} x')} |"
    )
    print(
        f"| single image: s to done | {spread(s('single s'))} "
        f"| cold `python -c` (docker exec) | {spread(s('cold exec s'))} "
        f"| {spread(s('single - cold exec s'), unit=' s', signed=True)}; "
        f"{spread(s('single ratio exec'))} x | <= cold + 1 s "
        f"| {verdict(gap, (gap if gap is not None else 99) <= 1.0, f'{gap or 0:+.2f} s')} |"
    )
    print(
        f"| single image: s to done | {spread(s('single s'))} "
        f"| cold `docker run --rm` | {spread(s('cold run s'))} "
        f"| {spread(s('single - cold run s'), unit=' s', signed=True)}; "
        f"{spread(s('single ratio run'))} x | (reference) | |"
    )
    print()
    print("| phase | min / median / max |")
    print("|---|---|")
    whole = {"burst task containers", "burst failed jobs"}
    rows = [
        ("burst: upload, first POST to last 202 (s)", "burst upload s"),
        ("burst: first job done (s after first POST)", "burst first done s"),
        ("burst: last job done (s after first POST)", "burst all done s"),
        ("burst: job queued -> submitted, median per burst (s)", "burst wait s"),
        ("burst: task containers run", "burst task containers"),
        ("burst: task container, median per burst (s)", "burst task container median s"),
        ("burst: failed jobs", "burst failed jobs"),
        ("single: POST -> submitted to Kestra (s)", "single dispatch s"),
        ("single: task container, start to removed (s)", "single task container s"),
        ("single: container gone -> job finished (callback) (s)", "single callback s"),
        ("cold `python -c` (exec): import ultralytics (s)", "cold import_s"),
        ("cold `python -c` (exec): load model (s)", "cold load_s"),
        ("cold `python -c` (exec): first predict (s)", "cold predict_s"),
        ("warm: predict per image, median per repeat (ms)", "warm per-image median ms"),
        ("reference: warm loop in this Python (images/s)", "host warm images/s"),
    ]
    for name, key in rows:
        if s(key):
            print(f"| {name} | {spread(s(key), 0 if key in whole else 2)} |")
    if s("burst boxes") or s("warm boxes"):
        boxes = f"{spread(s('burst boxes'), 0)} vs {spread(s('warm boxes'), 0)}"
        print(f"| detections in all {n} images: stack burst vs warm process | {boxes} |")
    print()
    print(
        f"Ratios are paired per repeat (burst: stack/warm of that repeat; single: median of "
        f"that repeat's uploads vs its cold runs). {args.repeats} repeat(s), {args.singles} "
        f"single upload(s) each; run time {runtime_s / 60:.1f} min."
    )
    for line in samples.problems:
        print(f"- problem: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=64, help="images in a burst")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=("fixture", "yolo11n"), default="fixture")
    parser.add_argument("--singles", type=int, default=3, help="single uploads per repeat")
    parser.add_argument("--per-request", type=int, default=16, help="files per upload request")
    parser.add_argument("--concurrency", type=int, default=4, help="upload requests at a time")
    parser.add_argument("--conf", type=float, default=0.25, help="CONFIDENCE, stack and baselines")
    parser.add_argument(
        "--no-host-reference", action="store_true", help="skip the warm loop in this Python"
    )
    args = parser.parse_args()

    started = time.monotonic()
    load_before = load_average()
    cmd, env = client()
    docker = Docker(cmd, env)
    if not docker.available():
        raise SystemExit("no Docker engine answers (`docker info` fails)")
    images = scenes(first_seed=FIRST_SEED, count=args.images)
    stack = make_stack(docker, args.model, args.conf)
    samples = Samples()
    up = False
    seen: dict[str, str] = {}
    cold_box = f"{stack.project}-cold"
    host_dir: Path | None = None
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        if not args.no_host_reference and importlib.util.find_spec("ultralytics"):
            host_dir = Path(tmp)
            for scene in images:
                (host_dir / scene.name).write_bytes(scene.data)
        try:
            log(f"compose project {stack.project}: up (builds the API and stand-in images)")
            t_up = time.monotonic()
            up = True
            stack.compose("up", "-d", "--build", "--wait", "--wait-timeout", "300", timeout=1200)
            samples.facts["stack up s"] = f"{time.monotonic() - t_up:.0f}"
            seed_volume(stack, args.model, images)
            model_path = f"/data/{stack.env['MODEL']}"
            seen = api_env(stack)
            docker(
                *container_args(stack, "run", "-d", "--name", cold_box),
                "--entrypoint",
                "sleep",
                stack.inference_image,
                "infinity",
            )
            log("warm-up (not counted): one upload through the stack, one cold run")
            single(stack, images[0], Samples())
            cold(stack, ["exec", cold_box], model_path, f"/data/bench/{images[0].name}", args.conf)
            for number in range(1, args.repeats + 1):
                log(f"repeat {number}/{args.repeats}")
                repeat(stack, args, images, model_path, cold_box, host_dir, samples)
                last = {k: round(v[-1], 2) for k, v in samples.values.items() if v}
                log(f"repeat {number}: {last}")
        finally:
            with contextlib.suppress(Exception):
                docker("rm", "-f", cold_box, check=False)
            try:
                tear_down(stack, up)
            finally:
                unpin_image(docker, stack.inference_image)

    server = docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip()
    compose = docker("compose", "version", "--short", check=False).stdout.strip()
    batching = ", ".join(
        f"{name}={stack.env.get(name, 'unset')} (api container: {seen.get(name, 'not passed')})"
        for name in BATCH_VARS
    )
    model_name = (
        "tests/fixtures/model/shapes.pt (fixture)"
        if args.model == "fixture"
        else "YOLO11n architecture, random weights (Ultralytics yolo11n.yaml)"
    )
    header = [
        f"model: {model_name} as {stack.env['MODEL']}; conf {args.conf}, imgsz {IMAGE_SIZE}",
        f"burst: {args.images} images, {args.per_request} per request, {args.concurrency} "
        f"requests at a time; stand-in Kestra with STANDIN_WORKER_THREADS="
        f"{stack.env['STANDIN_WORKER_THREADS']}",
        f"micro-batching: {batching}",
        f"machine: {machine_line()}; load average (1/5/15 min) at start {load_before}, "
        f"at end {load_average()}",
        f"docker: engine {server}, compose {compose}; inference image "
        f"{PINNED[stack.inference_image]}; {samples.facts.get('image torch', 'torch n/a')}"
        + (
            f"; this Python: {samples.facts['host torch']}" if "host torch" in samples.facts else ""
        ),
        f"stack up in {samples.facts.get('stack up s', '?')} s (not counted)",
    ]
    report(samples, args, header, time.monotonic() - started)


if __name__ == "__main__":
    main()

"""Inference pipeline benchmark: the whole stack vs. Ultralytics on its own, side by side.
BENCHMARKS.md (table 2) describes the measurements in full and has the results.

One compose stack: API, Postgres and the Kestra stand-in of tests/e2e, which runs
flows/yolo-detect.yml in real inference containers. Each repeat runs, in this order so that
both sides see the same machine state:

* a warm Ultralytics process in the same inference image predicting N synthetic images one
  by one, after one warm-up prediction;
* a burst of the same N images through the stack, from the first POST to the last job's
  `finished_at`; failed jobs are reported, never counted. Goal: >= 0.8x the warm images/s;
  then the same burst naming each export of --formats (registered through the API before the
  repeats, timed): each against the same warm PyTorch process (goal of issue 15: >= 1.5x);
* single uploads on the idle stack, each followed by a cold `python -c` (import, load,
  predict once) `docker exec`'d into a running container of the image (goal: stack <= it
  + 1 s) and one as `docker run --rm`;
* for reference, the warm loop in this Python (its own torch) when it has Ultralytics.

Ratios are paired per repeat; the tables give min / median / max over repeats, and the
phases (upload, dispatch, task containers, callback, the cold process's import/load/predict);
nothing is asserted.

    .venv/bin/python -m bench.pipeline_bench [--images 64] [--repeats 3] [--model fixture|yolo11n]
        [--formats pytorch openvino onnx]

Needs Docker with the compose plugin and the images of `make offline-images`;
yolo-inference:local is built with docker/inference/build.sh when missing. The stack's
compose project and volume are its own, removed at the end, errors included (BENCH_KEEP=1
leaves them up). Passed through to it when set: BATCH_MAX_JOBS, BATCH_WINDOW_S,
STANDIN_WORKER_THREADS (default 3), INFERENCE_IMAGE, PYTHON_BASE_IMAGE, POSTGRES_IMAGE,
LOG_LEVEL.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import load_average, machine_line, median, spread, table
from tests.support.engine import Docker, tar_of
from tests.support.kestra.containers import LABEL as TASK_LABEL
from tests.support.paths import FIXTURE_MODEL
from tests.support.stack import Stack, ensure_inference_image
from tests.support.stack.scenes import Scene, chunks, scenes
from tests.support.wait import wait_until

IMAGE_SIZE = 640  # the API's default; compose does not pass IMAGE_SIZE
FIRST_SEED = 90_000  # held-out scenes no test uploads
BATCH_VARS = ("BATCH_MAX_JOBS", "BATCH_WINDOW_S")
MARK = "BENCH-RESULT "
MODEL_FILES = {"fixture": "models/shapes.pt", "yolo11n": "models/yolo11n-random.pt"}
FORMATS = ("pytorch", "openvino", "onnx")  # the model's `.pt`, then its exports
GOALS = {"pytorch": 0.8}  # burst vs warm PyTorch; an export's: 1.5 (issue 15)

# Run in the inference image (or this Python): argv = model, conf, imgsz, the image to predict
# first, then those of the timed loop: none for the cold process of the issue (import, load,
# predict once); all N for the warm process, after that first prediction as its warm-up.
BASELINE_SCRIPT = f"""
import json, sys, time
t0 = time.perf_counter()
from ultralytics import YOLO
t1 = time.perf_counter()
model = YOLO(sys.argv[1])
t2 = time.perf_counter()
conf, imgsz, first, files = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
model.predict(first, conf=conf, imgsz=imgsz, verbose=False)
t3 = time.perf_counter()
times, boxes = [], 0
for path in files:
    began = time.perf_counter()
    boxes += len(model.predict(path, conf=conf, imgsz=imgsz, verbose=False)[0].boxes)
    times.append(time.perf_counter() - began)
elapsed = time.perf_counter() - t3
import torch, ultralytics
print({MARK!r} + json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "predict_s": t3 - t2,
      "elapsed_s": elapsed, "times": times, "boxes": boxes, "torch": torch.__version__,
      "threads": torch.get_num_threads(), "ultralytics": ultralytics.__version__}}), flush=True)
"""

# A YOLO11n with random weights, from Ultralytics' bundled architecture file. argv = target.
RANDOM_YOLO11N_SCRIPT = """
import sys
from ultralytics import YOLO
YOLO("yolo11n.yaml").save(sys.argv[1])
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_result(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            return result
    raise RuntimeError(f"no result line in the output:\n{output[-2000:]}")


def timestamp(value: str | None) -> float | None:
    """An API/stand-in ISO timestamp as seconds since the epoch."""
    return datetime.fromisoformat(value).timestamp() if value else None


# --- the stack ------------------------------------------------------------------------------
def need(ok: bool, reason: str) -> None:
    if not ok:
        raise SystemExit(reason)


def make_stack(docker: Docker, model: str, conf: float) -> tuple[Stack, str]:
    """The stack (not up yet) and what its inference image is."""
    image = ensure_inference_image(docker, need)
    # A tag of our own for the image `image` names now, so that a rebuild of that tag during
    # the run (others build on this machine) changes neither the stack's task containers nor
    # the baselines halfway through (tear_down drops it).
    pinned = f"yolo-inference-bench:{secrets.token_hex(4)}"
    env = {
        "INFERENCE_IMAGE": pinned,
        "MODEL": MODEL_FILES[model],  # on the volume before `up` (seed_volume)
        "CONFIDENCE": repr(conf),
        "STANDIN_WORKER_THREADS": os.environ.get("STANDIN_WORKER_THREADS") or "3",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL") or "INFO",
        **{name: os.environ[name] for name in BATCH_VARS if os.environ.get(name)},
    }
    stack = Stack.create(docker, "bench", env, need)
    info = docker.inspect(image)
    docker("tag", info["Id"], pinned)
    return stack, f"{image} ({info['Id'][7:19]}, {int(info['Size']) / 1e6:.0f} MB)"


def seed_volume(stack: Stack, model: str, images: Sequence[Scene]) -> None:
    """Put the bench images and the model (where MODEL points) on the volume before `up`:
    compose's one-shot seed step stops the stack when MODEL is not there. The volume is new,
    so it is made uid 1000's first, as the API image's /data would make it."""
    stack.volume.run(
        "mkdir -p /data/models /data/bench && tar -x -C /data/bench && chown -R 1000:1000 /data",
        user="0:0",
        stdin=tar_of({scene.name: scene.data for scene in images}),
    )
    if model == "fixture":
        stack.volume.seed_model()
    else:
        script, target = RANDOM_YOLO11N_SCRIPT, f"/data/{MODEL_FILES[model]}"
        stack.docker(*baseline(stack, "--rm"), "python", "-c", script, target, timeout=600)


def baseline(stack: Stack, *options: str) -> list[str]:
    """`docker run OPTIONS IMAGE` of a baseline container: like the flow's task container
    (uid 1000, no network, the shared volume on /data), labelled for the clean-up."""
    return [
        *("run", *options, "--user", "1000:1000", "--network", "none"),
        *("--label", f"yolobench={stack.project}", "-v", f"{stack.volume.name}:/data"),
        stack.inference_image,
    ]


def wait_idle(stack: Stack) -> None:
    """Until no task container of this stack runs."""
    running = partial(
        stack.docker.containers, label=TASK_LABEL, volume=stack.volume.name, status="running"
    )
    wait_until(running, 120, what="task containers to end", until=lambda found: not found)


def tear_down(stack: Stack) -> None:
    keep = os.environ.get("BENCH_KEEP") == "1"
    log(f"BENCH_KEEP=1: stack {stack.project} left up" if keep else f"removing {stack.project}")
    try:
        baselines = stack.docker.containers(label=f"yolobench={stack.project}")
        stack.docker.remove("container", *(c.id or "" for c in baselines))
        stack.down(keep=keep)
    finally:
        # Our tag only. If the original tag was rebuilt meanwhile, it was the image's last
        # name and the image goes too, as a dangling one would (not while a container uses it).
        proc = stack.docker("rmi", "--no-prune", stack.inference_image, check=False)
        if proc.returncode != 0:
            log(f"could not remove {stack.inference_image}: {proc.stderr.strip()[:300]}")


# --- the report -----------------------------------------------------------------------------
PHASES = {  # the rows of the second table: what -> sample
    "burst: upload, first POST to last 202 (s)": "burst upload s",
    "burst: first job done (s after first POST)": "burst first done s",
    "burst: last job done (s after first POST)": "burst all done s",
    "burst: job queued -> submitted, median per burst (s)": "burst wait s",
    "burst: task containers run": "burst task containers",
    "burst: task container, median per burst (s)": "burst task container median s",
    "burst: failed jobs": "burst failed jobs",
    "single: POST -> submitted to Kestra (s)": "single dispatch s",
    "single: task container, start to removed (s)": "single task container s",
    "single: container gone -> job finished (callback) (s)": "single callback s",
    "cold `python -c` (exec): import ultralytics (s)": "cold import_s",
    "cold `python -c` (exec): load model (s)": "cold load_s",
    "cold `python -c` (exec): first predict (s)": "cold predict_s",
    "warm: predict per image, median per repeat (ms)": "warm per-image median ms",
    "reference: warm loop in this Python (images/s)": "host warm images/s",
}
COUNTS = {"burst task containers", "burst failed jobs"}  # whole numbers


def verdict(value: float | None, ok: bool, text: str) -> str:
    if value is None:
        return "n/a"
    return f"{'met' if ok else 'NOT met'} ({text})"


def burst_key(fmt: str) -> str:
    """What a burst's values are named after: `burst` for the `.pt` (the tables' keys),
    `burst <format>` for an export."""
    return "burst" if fmt == "pytorch" else f"burst {fmt}"


def versus(s: Callable[[str], list[float]], how: str) -> str:
    """The single upload vs a cold run: difference and ratio."""
    gap = spread(s(f"single - cold {how} s"), unit=" s", signed=True)
    return f"{gap}; {spread(s(f'single ratio {how}'))} x"


# --- one run --------------------------------------------------------------------------------
@dataclass
class Bench:
    """One run on one stack: everything measured, as lists over repeats (or over single
    uploads). A phase that cannot be measured is a problem in the output; the run goes on."""

    stack: Stack
    args: argparse.Namespace
    images: list[Scene]
    host_dir: Path | None  # the images for the warm loop in this Python, if it runs
    values: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    models: dict[str, str | None] = field(default_factory=dict)  # format -> `model` field

    def add(self, values: dict[str, float | None]) -> None:
        for name, value in values.items():
            if value is not None:
                self.values.setdefault(name, []).append(value)

    def get(self, name: str) -> list[float]:
        return self.values.get(name, [])

    @property
    def cold_box(self) -> str:
        """A running container of the inference image, for the cold `docker exec`."""
        return f"{self.stack.project}-cold"

    def python(self, how: list[str], *images: str) -> tuple[float, dict[str, Any]]:
        """BASELINE_SCRIPT on `images` (on the volume), started by `how` (docker exec or run):
        its wall time seen from here, and its result."""
        began = time.perf_counter()
        argv = [f"/data/{self.stack.env['MODEL']}", repr(self.args.conf), str(IMAGE_SIZE)]
        timeout = 3600 if len(images) > 1 else 600
        proc = self.stack.docker(
            *how, "python", "-c", BASELINE_SCRIPT, *argv, *images, timeout=timeout
        )
        return time.perf_counter() - began, parse_result(proc.stdout)

    def warm_on_host(self, host_dir: Path) -> dict[str, Any]:
        """The same warm loop in this Python (its own torch), for reference."""
        model = str(FIXTURE_MODEL) if self.args.model == "fixture" else "yolo11n.yaml"
        env = dict(os.environ, YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(host_dir / "ultralytics"))
        files = [str(host_dir / s.name) for s in self.images]
        argv = [model, repr(self.args.conf), str(IMAGE_SIZE), files[0], *files]
        proc = subprocess.run(
            [sys.executable, "-c", BASELINE_SCRIPT, *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=host_dir,
            timeout=3600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"host warm run exited {proc.returncode}: {proc.stderr[-1500:]}")
        return parse_result(proc.stdout)

    def register_exports(self) -> None:
        """The uploads' `model` field per format of --formats: none for the `.pt` (MODEL),
        the name of its export once the API says it succeeded. Each export is asked for
        through the API and timed from its POST to `succeeded` (the API's own timestamps);
        one that fails is a problem, and its format is left out."""
        model = Path(self.stack.env["MODEL"]).name
        for fmt in self.args.formats:
            if fmt == "pytorch":
                self.models[fmt] = None
                continue
            log(f"registering the {fmt} export of {model} through the API")
            try:
                export = self.stack.api.export(model, fmt, timeout=900)
            except Exception as exc:
                self.problems.append(f"export {fmt}: {exc}")
                continue
            if export["state"] != "succeeded":
                self.problems.append(f"export {fmt} {export['state']}: {export['error']}")
                continue
            self.models[fmt] = export["name"]
            began, ended = timestamp(export["created_at"]), timestamp(export["updated_at"])
            self.add({f"export {fmt} s": (ended or 0) - (began or 0)})

    def upload(self, batch: Sequence[Scene], fmt: str = "pytorch") -> list[dict[str, Any]]:
        """An upload naming the model of `fmt` (none: the stack's MODEL)."""
        model = self.models.get(fmt)
        return self.stack.api.upload(batch, form={"model": model} if model else None)

    def burst(self, fmt: str) -> float | None:
        """One burst through the stack (--concurrency upload requests at a time) with the
        model of `fmt`: images/s from the first POST to the last job's `finished_at` (the
        API's own timestamp, so polling adds nothing); None when no job succeeded."""
        images, t0, key = self.images, time.time(), burst_key(fmt)
        with ThreadPoolExecutor(self.args.concurrency) as pool:
            batches = chunks(images, self.args.per_request)
            parts = pool.map(partial(self.upload, fmt=fmt), batches)
            ids = [job["id"] for part in parts for job in part]
        acked = time.time()
        if len(set(ids)) != len(images):
            raise RuntimeError(f"{len(images)} images gave {len(set(ids))} jobs")
        done = self.stack.api.wait_terminal(ids, timeout=max(600.0, 30.0 * len(images)))
        jobs = list(done.values())
        failed = [job for job in jobs if job["status"] != "succeeded"]
        finished = [timestamp(job["finished_at"]) or t0 for job in jobs]
        waits = [
            (timestamp(job["submitted_at"]) or 0) - (timestamp(job["created_at"]) or 0)
            for job in jobs
            if job["submitted_at"]
        ]
        rows = self.stack.standin.task_containers()
        tasks = [c for c in rows if (timestamp(c.get("startedAt")) or 0) >= t0]
        durations = [
            (timestamp(c.get("finishedAt")) or 0) - (timestamp(c["startedAt"]) or 0)
            for c in tasks
            if c.get("finishedAt")
        ]
        self.add(
            {
                f"{key} upload s": acked - t0,
                f"{key} first done s": min(finished) - t0,
                f"{key} all done s": max(finished) - t0,
                f"{key} failed jobs": float(len(failed)),
                f"{key} boxes": float(sum(len(job["detections"]) for job in jobs)),
                f"{key} wait s": median(waits),
                f"{key} task containers": float(len(tasks)),
                f"{key} task container median s": median(durations),
            }
        )
        for job in failed[:3]:
            self.problems.append(f"{key} job {job['id']} {job['status']}: {job.get('error')}")
        succeeded = len(jobs) - len(failed)
        return succeeded / (max(finished) - t0) if succeeded else None

    def single(self, scene: Scene, fmt: str = "pytorch") -> tuple[float, dict[str, float | None]]:
        """One upload with the stack idle: seconds from the POST to the job's finished_at,
        and its phases."""
        t0 = time.time()
        job_id = self.upload([scene], fmt)[0]["id"]
        job = self.stack.api.wait_terminal([job_id], 300)[job_id]
        if job["status"] != "succeeded":
            raise RuntimeError(f"single job {job_id} {job['status']}: {job.get('error')}")
        finished = timestamp(job["finished_at"]) or time.time()
        submitted = timestamp(job["submitted_at"])
        rows = self.stack.standin.task_containers()
        runs = [c for c in rows if c["executionId"] == job["execution_id"]]
        began = timestamp(runs[0]["startedAt"]) if runs else None
        ended = timestamp(runs[-1].get("finishedAt")) if runs else None
        return finished - t0, {
            "single dispatch s": submitted - t0 if submitted else None,
            "single task container s": ended - began if began and ended else None,
            "single callback s": finished - ended if began and ended else None,
        }

    def repeat(self) -> None:
        """Warm baseline, a burst per format, then single uploads interleaved with the cold
        baselines."""
        files = [f"/data/bench/{s.name}" for s in self.images]
        run = baseline(self.stack, "--rm")
        wait_idle(self.stack)
        warm_rate = None
        try:
            result = self.python(run, files[0], *files)[1]
            warm_rate = len(files) / result["elapsed_s"]
            self.add(
                {
                    "warm images/s": warm_rate,
                    "warm per-image median ms": statistics.median(result["times"]) * 1000,
                    "warm boxes": float(result["boxes"]),
                }
            )
            self.facts["image torch"] = (
                f"torch {result['torch']} ({result['threads']} thread(s) under Ultralytics), "
                f"ultralytics {result['ultralytics']}"
            )
        except Exception as exc:
            self.problems.append(f"warm baseline: {exc}")
        if self.host_dir is not None:
            try:
                result = self.warm_on_host(self.host_dir)
                self.add({"host warm images/s": len(files) / result["elapsed_s"]})
                self.facts["host torch"] = f"torch {result['torch']}"
            except Exception as exc:
                self.problems.append(f"host reference: {exc}")
        for fmt in self.models:
            wait_idle(self.stack)
            key = burst_key(fmt)
            try:
                rate = self.burst(fmt)
                ratio = rate / warm_rate if rate and warm_rate else None
                self.add({f"{key} images/s": rate, f"{key} ratio": ratio})
            except Exception as exc:
                self.problems.append(f"{key}: {exc}")
        wait_idle(self.stack)
        lat: list[float] = []
        cold: dict[str, list[float]] = {"exec": [], "run": []}
        for index in range(self.args.singles):
            scene = self.images[index % len(self.images)]
            image = f"/data/bench/{scene.name}"
            try:
                seconds, phases = self.single(scene)
                lat.append(seconds)
                self.add(phases)
                wait_idle(self.stack)
                wall, inside = self.python(["exec", self.cold_box], image)
                cold["exec"].append(wall)
                self.add(
                    {f"cold {key}": inside[key] for key in ("import_s", "load_s", "predict_s")}
                )
                cold["run"].append(self.python(run, image)[0])
            except Exception as exc:
                self.problems.append(f"single/cold #{index + 1}: {exc}")
        self.values.setdefault("single s", []).extend(lat)
        for how, walls in cold.items():  # paired: this repeat's medians
            self.values.setdefault(f"cold {how} s", []).extend(walls)
            if lat and walls:
                ratio = statistics.median(lat) / statistics.median(walls)
                gap = statistics.median(lat) - statistics.median(walls)
                self.add({f"single - cold {how} s": gap, f"single ratio {how}": ratio})

    def report(self, header: list[str], runtime_s: float) -> None:
        s, n = self.get, self.args.images
        failed = sum(s("burst failed jobs"))
        failed_note = f" ({int(failed)} jobs failed!)" if failed else ""
        ratio, gap = median(s("burst ratio")), median(s("single - cold exec s"))
        burst_verdict = verdict(ratio, (ratio or 0) >= 0.8, f"{ratio or 0:.2f} x")
        gap_verdict = verdict(gap, (gap if gap is not None else 99) <= 1.0, f"{gap or 0:+.2f} s")
        single = spread(s("single s"))
        print(f"\n### Inference pipeline: {n}-image burst and single-image latency\n")
        print("\n".join(f"- {line}" for line in header) + "\n")
        table(
            "metric | stack (min / median / max) | baseline | baseline (min / median / max) "
            "| stack vs baseline (min / median / max) | goal | median vs goal",
            [
                f"burst of {n}: images/s | {spread(s('burst images/s'))}{failed_note} "
                f"| warm Ultralytics process, same image | {spread(s('warm images/s'))} "
                f"| {spread(s('burst ratio'))} x | >= 0.8 x | {burst_verdict}",
                f"single image: s to done | {single} | cold `python -c` (docker exec) "
                f"| {spread(s('cold exec s'))} | {versus(s, 'exec')} | <= cold + 1 s "
                f"| {gap_verdict}",
                f"single image: s to done | {single} | cold `docker run --rm` "
                f"| {spread(s('cold run s'))} | {versus(s, 'run')} | (reference) |",  # no verdict
            ],
        )
        rows = [
            f"{name} | {spread(s(key), 0 if key in COUNTS else 2)}"
            for name, key in PHASES.items()
            if s(key)
        ]
        if s("burst boxes") or s("warm boxes"):
            rows.append(
                f"detections in all {n} images: stack burst vs warm process "
                f"| {spread(s('burst boxes'), 0)} vs {spread(s('warm boxes'), 0)}"
            )
        print()
        table("phase | min / median / max", rows)
        self.formats_table()
        print(
            f"\nRatios are paired per repeat (burst: stack/warm of that repeat; single: median of "
            f"that repeat's uploads vs its cold runs). {self.args.repeats} repeat(s), "
            f"{self.args.singles} single upload(s) each; run time {runtime_s / 60:.1f} min."
        )
        for line in self.problems:
            print(f"- problem: {line}")

    def formats_table(self) -> None:
        """The burst per format of --formats side by side, each against the same warm PyTorch
        process of its repeat."""
        s, n, rows = self.get, self.args.images, []
        for fmt in self.args.formats:
            key, goal = burst_key(fmt), GOALS.get(fmt, 1.5)
            ratio = median(s(f"{key} ratio"))
            name = Path(self.stack.env["MODEL"]).name if fmt == "pytorch" else "(no export)"
            rows.append(
                f"{fmt} | {self.models.get(fmt) or name} | {spread(s(f'export {fmt} s'))} "
                f"| {spread(s(f'{key} images/s'))} | {spread(s(f'{key} ratio'))} x "
                f"| >= {goal} x | {verdict(ratio, (ratio or 0) >= goal, f'{ratio or 0:.2f} x')} "
                f"| {spread(s(f'{key} task container median s'))} "
                f"| {spread(s(f'{key} failed jobs'), 0)} | {spread(s(f'{key} boxes'), 0)}"
            )
        print(
            f"\nBurst of {n} per model format, each vs the warm PyTorch process "
            f"({spread(s('warm images/s'))} images/s; {spread(s('warm boxes'), 0)} detections); "
            "export: its POST to `succeeded`, by the API's timestamps.\n"
        )
        table(
            "format | model | export through the API (s) | burst images/s "
            "| burst vs warm PyTorch | goal | median vs goal | task container, median (s) "
            "| failed jobs | detections",
            rows,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=64, help="images in a burst")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=("fixture", "yolo11n"), default="fixture")
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        default=list(FORMATS),
        help="a burst per format: the .pt, its exports (registered through the API first)",
    )
    parser.add_argument("--singles", type=int, default=3, help="single uploads per repeat")
    parser.add_argument("--per-request", type=int, default=16, help="files per upload request")
    parser.add_argument("--concurrency", type=int, default=4, help="upload requests at a time")
    parser.add_argument("--conf", type=float, default=0.25, help="CONFIDENCE, stack and baselines")
    parser.add_argument(
        "--no-host-reference", action="store_true", help="skip the warm loop in this Python"
    )
    args = parser.parse_args()
    args.formats = list(dict.fromkeys(args.formats))

    started = time.monotonic()
    load_before = load_average()
    docker = Docker()
    need(docker.available(), "no Docker engine answers")
    images = scenes(first_seed=FIRST_SEED, count=args.images)
    stack, pinned_from = make_stack(docker, args.model, args.conf)
    seen: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        host_dir = None
        if not args.no_host_reference and importlib.util.find_spec("ultralytics"):
            host_dir = Path(tmp)
            for scene in images:
                (host_dir / scene.name).write_bytes(scene.data)
        bench = Bench(stack, args, images, host_dir)
        try:
            log(f"compose project {stack.project}: up (builds the API and stand-in images)")
            seed_volume(stack, args.model, images)
            bench.facts["stack up s"] = f"{stack.up():.0f}"
            api = docker.inspect(stack.compose.container("api"), "container")
            seen = dict(item.split("=", 1) for item in api["Config"]["Env"] if "=" in item)
            sleeper = baseline(stack, "-d", "--name", bench.cold_box, "--entrypoint", "sleep")
            docker(*sleeper, "infinity")
            bench.register_exports()
            log("warm-up (not counted): one upload per format through the stack, one cold run")
            for fmt in dict.fromkeys(["pytorch", *bench.models]):
                bench.single(images[0], fmt)
            bench.python(["exec", bench.cold_box], f"/data/bench/{images[0].name}")
            for number in range(1, args.repeats + 1):
                log(f"repeat {number}/{args.repeats}")
                bench.repeat()
                last = {k: round(v[-1], 2) for k, v in bench.values.items() if v}
                log(f"repeat {number}: {last}")
        finally:
            tear_down(stack)

    server = docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip()
    compose = docker("compose", "version", "--short", check=False).stdout.strip()
    batching = ", ".join(
        f"{name}={stack.env.get(name, 'unset')} (api container: {seen.get(name, 'not passed')})"
        for name in BATCH_VARS
    )
    facts = bench.facts
    model_name = (
        "tests/fixtures/model/shapes.pt (fixture)"
        if args.model == "fixture"
        else "YOLO11n architecture, random weights (Ultralytics yolo11n.yaml)"
    )
    host_torch = f"; this Python: {facts['host torch']}" if "host torch" in facts else ""
    header = [
        f"model: {model_name} as {stack.env['MODEL']}; conf {args.conf}, imgsz {IMAGE_SIZE}",
        f"burst: {args.images} images, {args.per_request} per request, {args.concurrency} "
        f"requests at a time; stand-in Kestra with STANDIN_WORKER_THREADS="
        f"{stack.env['STANDIN_WORKER_THREADS']}",
        f"micro-batching: {batching}",
        f"machine: {machine_line()}; load average (1/5/15 min) at start {load_before}, "
        f"at end {load_average()}",
        f"docker: engine {server}, compose {compose}; inference image {pinned_from}; "
        f"{facts.get('image torch', 'torch n/a')}{host_torch}",
        f"stack up in {facts.get('stack up s', '?')} s (not counted)",
    ]
    bench.report(header, time.monotonic() - started)


if __name__ == "__main__":
    main()

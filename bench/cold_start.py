"""Cold start of the inference container, old vs new, side by side: wall time from `docker run`
to its exit for flows/detect.py on one image with the fixture model, run as the flow runs it
(uid 1000, no network, the flow's environment, the shared volume on /data, the script at
/data/scripts/). BENCHMARKS.md (table 4) describes the measurement and has the results.

* new: flows/detect.py as it is in the working tree;
* old: flows/detect.py as of OLD_REV (`git show`, at bench time), the last version before
  detect.py skipped Ultralytics' predictor warm-up (its torchvision import) and set
  YOLO_OFFLINE itself; it runs with YOLO_OFFLINE empty, which Ultralytics reads as off, since
  our image sets it and the official images do not.

Both run in the same image (pinned by id for the whole run; `--old-image` gives the old side
another one), interleaved (old, new, old, new, ...) after one uncounted run of each; every run
must exit 0 with its job succeeded, and the report says whether every run found the same
detections. Prints min / median / max and the new/old ratio, paired per round. Nothing is
asserted on time.

    .venv/bin/python -m bench.cold_start [--runs 7] [--old-rev REV] [--old-image IMAGE]

Needs Docker and git (the old detect.py comes from the repository's history). INFERENCE_IMAGE
(default yolo-inference:local) is built with docker/inference/build.sh when missing.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import yaml

from bench.common import load_average, machine_line, spread, table
from tests.support.detect import DETECT_PY, jobs_args, outputs_of
from tests.support.engine import Docker, tar_of
from tests.support.kestra.api import FLOWS_DIR
from tests.support.kestra.flow import check_flow
from tests.support.kestra.pebble import render
from tests.support.paths import ROOT
from tests.support.stack import ensure_inference_image
from tests.support.stack.scenes import Scene, scenes
from tests.support.stack.volume import SharedVolume

# The commit before detect.py's cold-start change (the warm-up skip and YOLO_OFFLINE).
OLD_REV = "e5f2870b0d38b12c6bedebaea8aacdf92b5e92e4"
FIRST_SEED = 95_000  # held-out scenes no test uploads
MODEL = "models/shapes.pt"  # the fixture model, seeded on the volume


def log(message: str) -> None:
    print(f"[cold-start {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def flow_env() -> dict[str, str]:
    """The task container's environment in flows/yolo-detect.yml, rendered as the stand-in
    renders it with no deployment variables set (their defaults)."""
    (task,) = check_flow(yaml.safe_load((FLOWS_DIR / "yolo-detect.yml").read_text())).tasks
    return {name: render(value, {"envs": {}}) for name, value in task.env.items()}


def git(*args: str) -> str:
    command = ["git", *args]  # from PATH, as a developer runs it
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Side:
    """One side of the comparison: its detect.py on the volume, its image (by id) and extra
    environment, and what its runs measured."""

    name: str
    script: str
    image: str
    env: dict[str, str]
    seconds: list[float] = field(default_factory=list)
    detections: set[str] = field(default_factory=set)  # each run's, as JSON
    boxes: set[int] = field(default_factory=set)


def pinned(docker: Docker, tag: str) -> tuple[str, str]:
    """The image's id (the same image for every run, whatever happens to the tag meanwhile)
    and how to name it in the report."""
    info = docker.inspect(tag)
    return info["Id"], f"{tag} ({info['Id'][7:19]}, {int(info['Size']) / 1e6:.0f} MB)"


def seed(volume: SharedVolume, scripts: dict[str, bytes], scene: Scene) -> None:
    """The scripts, the scene and the fixture model on a new volume, owned by uid 1000."""
    volume.run(
        "mkdir -p /data/models /data/bench /data/scripts && tar -x -C /data/scripts"
        " && chown -R 1000:1000 /data",
        user="0:0",
        stdin=tar_of(scripts),
    )
    volume.run(f"cat > /data/bench/{scene.name}", stdin=scene.data)
    volume.seed_model()


def run(docker: Docker, volume: str, side: Side, job: str, scene: str) -> float:
    """One `docker run` of `side` on the scene: its wall time; raises unless the job
    succeeded."""
    env = [arg for name, value in side.env.items() for arg in ("-e", f"{name}={value}")]
    argv = ["run", "--rm", "--user", "1000:1000", "--network", "none", "-v", f"{volume}:/data"]
    command = ["python", f"/data/scripts/{side.script}", "--data-dir", "/data", "--model", MODEL]
    began = time.perf_counter()
    proc = docker(*argv, *env, side.image, *command, *jobs_args((job, f"bench/{scene}")))
    seconds = time.perf_counter() - began
    outputs = outputs_of(proc)
    if outputs.get("succeeded") != 1:
        raise RuntimeError(f"{side.name} run {job}: {outputs}\n{proc.stderr[-2000:]}")
    return seconds


def rounds(docker: Docker, volume: str, sides: tuple[Side, Side], scene: str, runs: int) -> None:
    """One uncounted run of each side, then `runs` rounds of one run each, in turn."""
    log("one uncounted run of each (page cache, settings file)")
    for side in sides:
        run(docker, volume, side, f"{side.name}-warmup", scene)
    for number in range(1, runs + 1):
        for side in sides:
            side.seconds.append(run(docker, volume, side, f"{side.name}-{number}", scene))
        log(
            f"round {number}/{runs}: " + ", ".join(f"{s.name} {s.seconds[-1]:.2f} s" for s in sides)
        )


def collect_detections(volume: SharedVolume, sides: tuple[Side, Side]) -> None:
    """Each side's detections, from the results its runs left on the volume."""
    lines = volume.run("for f in /data/results/*.json; do tr -d '\\n' < \"$f\"; echo; done")
    for result in (json.loads(line) for line in lines.splitlines() if line):
        side = next(s for s in sides if result["job_id"].startswith(f"{s.name}-"))
        side.detections.add(json.dumps(result["detections"], sort_keys=True))
        side.boxes.add(len(result["detections"]))


def report(old: Side, new: Side, header: list[str]) -> None:
    ratios = [n / o for n, o in zip(new.seconds, old.seconds, strict=True)]
    same = old.detections == new.detections and len(new.detections) == 1
    print("\n### Inference container cold start: old vs new detect.py\n")
    print("\n".join(f"- {line}" for line in header) + "\n")
    table(
        "detect.py | s, min / median / max | new/old, paired per round (min / median / max) "
        "| boxes found",
        [
            f"old | {spread(old.seconds)} | | {', '.join(map(str, sorted(old.boxes)))}",
            f"new | {spread(new.seconds)} | {spread(ratios)} x "
            f"| {', '.join(map(str, sorted(new.boxes)))}",
        ],
    )
    saved = statistics.median(old.seconds) - statistics.median(new.seconds)
    print(
        f"\nMedian saved per container start: {saved:.2f} s; the same detections in every run "
        f"of both: {'yes' if same else 'NO'}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="counted runs of each side")
    parser.add_argument("--old-rev", default=OLD_REV, help="the commit the old detect.py is from")
    parser.add_argument("--old-image", help="the old side's image (default: the new side's)")
    args = parser.parse_args()

    load_before = load_average()
    docker = Docker()
    if not docker.available():
        raise SystemExit("no Docker engine answers")
    rev = git("rev-parse", "--verify", f"{args.old_rev}^{{commit}}").strip()
    scripts = {"detect.py": DETECT_PY.read_bytes()}
    scripts["detect-old.py"] = git("show", f"{rev}:flows/detect.py").encode()
    tag = ensure_inference_image(docker, lambda ok, why: None if ok else sys.exit(why))
    image, image_text = pinned(docker, tag)
    old_image, old_text = pinned(docker, args.old_image) if args.old_image else (image, "same")
    (scene,) = scenes(first_seed=FIRST_SEED, count=1)
    new = Side("new", "detect.py", image, flow_env())
    old = Side("old", "detect-old.py", old_image, {**flow_env(), "YOLO_OFFLINE": ""})
    name = f"yolobench-cold-{secrets.token_hex(4)}"
    docker.sdk.volumes.create(name)
    try:
        volume = SharedVolume(docker, name, image)
        seed(volume, scripts, scene)
        rounds(docker, name, (old, new), scene.name, args.runs)
        collect_detections(volume, (old, new))
    finally:
        docker.remove("volume", name)

    modified = git("status", "--porcelain", "--", "flows/detect.py")
    header = [
        f"`docker run --rm` (uid 1000, no network, the flow's environment) to exit: "
        f"flows/detect.py, one {scene.size[0]}x{scene.size[1]} scene, {MODEL} (fixture), "
        f"conf 0.25, imgsz 640; {args.runs} interleaved runs of each after one uncounted",
        f"old: flows/detect.py as of {rev[:12]} (`git show`), YOLO_OFFLINE empty (off); "
        f"new: the working tree's ({git('rev-parse', '--short=12', 'HEAD').strip()}"
        f"{', modified' if modified else ''})",
        f"image: {image_text}; old side's image: {old_text}",
        f"machine: {machine_line()}; load average (1/5/15 min) at start {load_before}, "
        f"at end {load_average()}",
    ]
    report(old, new, header)


if __name__ == "__main__":
    main()

"""Exported models against their PyTorch original, in the inference image (no stack).

Without the stack (pipeline_bench runs the burst through it, per format), this measures the
two parts that decide the burst, per model format (PyTorch `.pt`, OpenVINO, ONNX), each repeat
in fresh containers like the flow's tasks (uid 1000, no network, one volume):

* a warm Ultralytics process predicting N images one by one after one warm-up
  (pipeline_bench's baseline script);
* one `detect.py` batch of the N images in a fresh container, as one flow execution runs it
  (cold start, model load, N predictions, result files and annotated JPEGs).

The exports are made first by `detect.py --export` (flows/yolo-export.yml's command) and
timed. Prints min / median / max over repeats and ratios against the warm PyTorch process;
nothing is asserted. The goal of issue 15: a burst with the export >= 1.5x the warm PyTorch
process.

    .venv/bin/python -m bench.export_bench [--images 64] [--repeats 3] [--model fixture|yolo11n]

INFERENCE_IMAGE as in pipeline_bench (default yolo-inference:local; it must carry the runtimes).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from bench.common import load_average, machine_line, median, spread, table
from bench.pipeline_bench import BASELINE_SCRIPT, RANDOM_YOLO11N_SCRIPT, need, parse_result
from tests.support.engine import Docker, tar_of
from tests.support.paths import ROOT
from tests.support.stack import ensure_inference_image
from tests.support.stack.scenes import scenes
from tests.support.stack.volume import SharedVolume

FIRST_SEED = 91_000  # held-out scenes no test uploads
REFS = {"PyTorch": "{stem}.pt", "OpenVINO": "{stem}_openvino_model", "ONNX": "{stem}.onnx"}


def prepare(volume: SharedVolume, model: str, count: int) -> tuple[str, list[str]]:
    """Scenes, detect.py and the model on the volume; returns the model's stem and the
    scenes' names."""
    images = scenes(first_seed=FIRST_SEED, count=count)
    layout = "mkdir -p /data/models /data/scripts /data/results /data/bench"
    volume.run(
        f"{layout} && tar -x -C /data/bench && chown -R 1000:1000 /data",
        user="0:0",
        stdin=tar_of({scene.name: scene.data for scene in images}),
    )
    volume.run("cat > /data/scripts/detect.py", stdin=(ROOT / "flows" / "detect.py").read_bytes())
    volume.run("cat > /data/scripts/baseline.py", stdin=BASELINE_SCRIPT.encode())
    if model == "fixture":
        volume.seed_model()
        return "shapes", [scene.name for scene in images]
    volume.run("cat > /data/scripts/make_yolo11n.py", stdin=RANDOM_YOLO11N_SCRIPT.encode())
    volume.run("python /data/scripts/make_yolo11n.py /data/models/yolo11n-random.pt")
    return "yolo11n-random", [scene.name for scene in images]


def export(volume: SharedVolume, stem: str, fmt: str) -> float:
    """`detect.py --export` in a fresh container; the seconds it reports."""
    out = volume.run(
        f"python /data/scripts/detect.py --export {fmt} --data-dir /data --model models/{stem}.pt"
    )
    seconds: float = json.loads(out.strip()[2:-2])["outputs"]["seconds"]
    return seconds


def warm_ms(volume: SharedVolume, ref: str, names: list[str]) -> float:
    """Median ms per image of a warm Ultralytics process."""
    files = " ".join(f"/data/bench/{name}" for name in names)
    first = f"/data/bench/{names[0]}"  # the warm-up
    out = volume.run(
        f"python /data/scripts/baseline.py /data/models/{ref} 0.25 640 {first} {files}"
    )
    return 1000 * float(median(parse_result(out)["times"]) or 0.0)


def batch_s(volume: SharedVolume, ref: str, names: list[str]) -> float:
    """Wall seconds of one detect.py batch over the images in a fresh container."""
    jobs = " ".join(f"j{i}=bench/{name}" for i, name in enumerate(names))
    started = time.monotonic()
    volume.run(
        f"python /data/scripts/detect.py --data-dir /data --model models/{ref} --jobs {jobs}"
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=("fixture", "yolo11n"), default="fixture")
    args = parser.parse_args()
    docker = Docker()
    need(docker.available(), "no Docker engine answers")
    image = ensure_inference_image(docker, need)
    name = f"export-bench-{uuid.uuid4().hex[:8]}"
    docker("volume", "create", name)
    load_before = load_average()
    warm: dict[str, list[float]] = {label: [] for label in REFS}
    batch: dict[str, list[float]] = {label: [] for label in REFS}
    try:
        volume = SharedVolume(docker, name, image)
        stem, names = prepare(volume, args.model, args.images)
        exports = {
            fmt: [export(volume, stem, fmt) for _ in range(args.repeats)]
            for fmt in ("openvino", "onnx")
        }
        for _ in range(args.repeats):
            for label, ref in REFS.items():  # interleaved: each repeat sees the same machine
                warm[label].append(warm_ms(volume, ref.format(stem=stem), names))
                batch[label].append(batch_s(volume, ref.format(stem=stem), names))
    finally:
        docker.remove("volume", name)
    print(
        f"\n{machine_line()}; load {load_before} -> {load_average()}; {image}; "
        f"model {args.model}; {args.images} images; {args.repeats} repeats\n"
    )
    print(f"export s: OpenVINO {spread(exports['openvino'])}, ONNX {spread(exports['onnx'])}\n")
    base = median(warm["PyTorch"]) or 1.0
    rows = []
    for label in REFS:
        per_s = [args.images / s for s in batch[label]]
        ratio = [(args.images / s) / (1000 / base) for s in batch[label]]
        rows.append(
            f"{label} | {spread(warm[label], 1)} | {base / (median(warm[label]) or 1):.2f} | "
            f"{spread(batch[label], 1)} | {spread(per_s, 1)} | {spread(ratio)}"
        )
    table(
        "model | warm ms/image | warm speed vs PyTorch | batch of N, fresh container, s | "
        "batch images/s | batch vs warm PyTorch images/s (goal for exports >= 1.5)",
        rows,
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Measure inference images side by side (the numbers in docker/inference/README.md):
# size, compressed size, and a cold start in a fresh container, broken down.
#
#   docker/inference/measure.sh                          # yolo-inference:local
#   docker/inference/measure.sh IMAGE [IMAGE...]         # several images, same run
#   RUNS=5 WARM=20 docker/inference/measure.sh ...
#
# Per image and model, RUNS fresh containers (`docker run --rm`, uid 1000, like the flow)
# each time: docker run -> first Python statement, `import torch`, `from ultralytics import
# YOLO`, model load, first prediction, then WARM more predictions (their median is the warm
# ms/image) and container exit. Models: the fixture model tests/fixtures/model/shapes.pt and
# YOLO11n's architecture with random weights (yolo11n.yaml, nothing downloaded: realistic
# compute). The input is a synthetic 469x458 scene (tests/fixtures/synthetic.py, rendered in
# the container before timing starts) predicted at imgsz 640. Times are min/median/max over
# the runs. The page cache stays warm (nothing is dropped on a shared machine), so "cold"
# means a fresh container and interpreter, not a cold disk.
# Environment: RUNS (default 5), WARM (default 20), NO_SAVE=1 skips `docker save | gzip`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=docker/lib.sh
. "$here/../lib.sh"
pick_docker_client

RUNS="${RUNS:-5}"
WARM="${WARM:-20}"
images=("$@")
[ ${#images[@]} -gt 0 ] || images=("${INFERENCE_IMAGE:-yolo-inference:local}")

# Runs inside the container. Prints one JSON line; t0 is wall-clock time (the host and the
# container share the kernel clock), the rest are perf_counter deltas in seconds.
probe='
import json, sys, time
t0 = time.time(); p0 = time.perf_counter()
import torch
p1 = time.perf_counter()
from ultralytics import YOLO
p2 = time.perf_counter()
import numpy as np
sys.path.insert(0, "/fixtures")
from synthetic import render_scene
img = np.ascontiguousarray(np.asarray(render_scene(1_000_123)[0])[:, :, ::-1])
p3 = time.perf_counter()
model = YOLO(sys.argv[1])
p4 = time.perf_counter()
model.predict(img, imgsz=640, verbose=False)
p5 = time.perf_counter()
warm = []
for _ in range(int(sys.argv[2])):
    s = time.perf_counter(); model.predict(img, imgsz=640, verbose=False); warm.append(time.perf_counter() - s)
warm.sort()
print(json.dumps({"t0": t0, "torch": p1 - p0, "ultralytics": p2 - p1, "load": p4 - p3,
                  "first": p5 - p4, "warm_ms": 1000 * warm[len(warm) // 2] if warm else None,
                  "threads": torch.get_num_threads()}))
'

stats() {  # "min / median / max" of the numbers on stdin
    sort -g | awk '{v[NR] = $1} END {printf "%.2f / %.2f / %.2f", v[1], v[int((NR + 1) / 2)], v[NR]}'
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
models=(/models/shapes.pt yolo11n.yaml)
# Runs interleave the images (run 1 of each image, then run 2, ...), so that a noisy
# neighbour on a shared machine hurts every image alike.
for run in $(seq "$RUNS"); do
    for m in "${!models[@]}"; do
        for i in "${!images[@]}"; do
            start=$(date +%s.%N)
            line=$($DOCKER run --rm --user 1000:1000 -e YOLO_CONFIG_DIR=/tmp/ultralytics \
                -e YOLO_OFFLINE=1 -e MPLCONFIGDIR=/tmp/matplotlib \
                -v "$root/tests/fixtures/model/shapes.pt:/models/shapes.pt:ro" \
                -v "$root/tests/fixtures/synthetic.py:/fixtures/synthetic.py:ro" \
                "${images[$i]}" python -c "$probe" "${models[$m]}" "$WARM" 2>/dev/null | tail -n 1)
            stop=$(date +%s.%N)
            python3 -c 'import json, sys; d = json.loads(sys.argv[1]); s, e = float(sys.argv[2]), float(sys.argv[3])
print(d["t0"] - s, d["torch"], d["ultralytics"], d["load"], d["first"],
      d["torch"] + d["ultralytics"] + d["load"] + d["first"] + (d["t0"] - s), e - s, d["warm_ms"], d["threads"])' \
                "$line" "$start" "$stop" >> "$tmp/$i.$m"
        done
    done
    log "run $run/$RUNS done"
done

for i in "${!images[@]}"; do
    image="${images[$i]}"
    size=$($DOCKER image inspect -f '{{.Size}}' "$image")
    printf '== %s\nsize %.0f MB (docker image inspect)' "$image" "$(echo "$size / 1000000" | bc -l)"
    if [ "${NO_SAVE:-0}" != 1 ]; then
        printf ', %.0f MB compressed (docker save | gzip -1)' \
            "$(echo "$($DOCKER save "$image" | gzip -1 | wc -c) / 1000000" | bc -l)"
    fi
    echo
    for m in "${!models[@]}"; do
        out="$tmp/$i.$m"
        echo "-- ${models[$m]} (s; min / median / max of $RUNS fresh containers; torch threads at the end: $(awk 'NR == 1 {print $9}' "$out"))"
        for col in "1:docker run -> python" "2:import torch" "3:import ultralytics" "4:model load" \
            "5:first predict" "6:start -> first result" "7:whole docker run (incl. $WARM warm)" "8:warm ms/image"; do
            printf '  %-36s %s\n' "${col#*:}" "$(awk -v c="${col%%:*}" '{print $c}' "$out" | stats)"
        done
    done
done

#!/usr/bin/env python3
"""`make build-metrics`: build api/Dockerfile's two variants (the default `runtime` target and
`--target minimal`, from scratch) and a naive single-stage Dockerfile of the same app
(docker/naive/Dockerfile) side by side, and print one table.

For each of the three it measures, in this order:
  clean build            after `docker builder prune -af` (no layer cache, no cache mounts)
  no-op rebuild          the same build again, nothing changed
  code-change rebuild    one line appended to app/main.py
  dependency-change      one small package added to requirements.lock
  image size, layers above the base image (bytes and count; the minimal variant has no base
  image, so all of it), build context size

and checks the budgets of the default variant: layers above the base <= 60 MB, no-op rebuild
<= 3 % of its clean build, code-change rebuild <= 10 % of it, build context <= 300 KB. Exit
status 1 when one is exceeded. The builds run on temporary copies of the build inputs, so the
working tree is never modified.

WARNING: the clean builds prune the engine's whole build cache (`--keep-cache` skips that,
and then "clean" only means "no layer cache" for ours: its cache mounts stay warm; the
minimal variant's clean build then also reuses the builder stage the default one built).

Environment: PYTHON_BASE_IMAGE (default: offline/python:3.13-slim when that image exists,
else python:3.13-slim), EXTRA_CA_BUNDLE / BUILD_CA_BUNDLE (CA bundle passed as the BuildKit
secret "ca"; default /etc/ssl/certs/ca-certificates.crt when present), DOCKER (client).
Run as `python -m scripts.build_metrics` (it uses the tooling of tests/support).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.builds import build_steps, context_files, dive_report, stage_build_context
from tests.support.engine import OFFLINE_PYTHON, Docker, ca_bundle
from tests.support.paths import ROOT

OFFICIAL_PYTHON = "python:3.13-slim"

# The builds, in order; each label is both the progress line and the table's row.
STEPS = {
    "clean": "clean build",
    "noop": "no-op rebuild",
    "code": "code-change rebuild",
    "dep": "dependency-change rebuild",
}
# Our budgets by row: rebuilds as a share of our clean build, sizes in bytes. The context is
# the app's own source and two build scripts (~200 KB, with the docs pages); its budget is
# there to catch leaks (a venv, .git, data), which weigh megabytes.
SHARE_BUDGETS = {"no-op rebuild": 0.03, "code-change rebuild": 0.10}
BYTE_BUDGETS = {
    "layers above the base": (60_000_000, "60 MB"),
    "build context": (300_000, "300 KB"),
}

# Small pure-Python packages to add for the dependency-change build (the first one not
# already in the lock is used).
EXTRA_PACKAGES = ("six==1.17.0", "iniconfig==2.1.0", "tomli==2.2.1")

DOCKER = Docker()


def log(message: str) -> None:
    print(f"build-metrics: {message}", file=sys.stderr, flush=True)


@dataclass
class Variant:
    name: str
    context: Path  # the staged build inputs
    dockerfile: Path  # inside or outside the context
    app: Path  # the app's directory in the context: app/main.py, requirements.lock beside it
    tag: str
    source: Path  # the context in the working tree, measured as the daemon gets it
    target: str | None = None  # None: the Dockerfile's last stage
    builds: dict[str, tuple[float, str]] = field(default_factory=dict)  # key: seconds, cell
    image_ids: set[str] = field(default_factory=set)
    image: dict[str, Any] = field(default_factory=dict)
    context_bytes: int = 0
    context_files: int = 0
    dive: dict[str, Any] | None = None

    def build(self, key: str, base: str) -> None:
        started = time.monotonic()
        args = {"BASE_IMAGE": base}
        log = DOCKER.build(
            self.context, self.dockerfile, self.tag, args, secret=ca_bundle(), target=self.target
        )
        steps = build_steps(log)
        seconds = time.monotonic() - started
        run = sum(1 for _, cached in steps.values() if not cached)
        self.builds[key] = seconds, f"{fmt_s(seconds)} ({run}/{len(steps)} steps run)"
        self.image_ids.add(DOCKER.inspect(self.tag)["Id"])


def staged(tmp: Path) -> tuple[Variant, Variant, Variant]:
    """The default variant, the minimal one (each on its own copy: the rebuilds change it)
    and the naive build."""
    ours, minimal, naive = tmp / "ours", tmp / "minimal", tmp / "naive"
    dockerfile = stage_build_context(ours)
    # The api/ directory as it is on disk, litter included: the naive build has no
    # .dockerignore.
    shutil.copytree(ROOT / "api", naive, symlinks=True)
    shutil.copy2(ROOT / "docker" / "naive" / "Dockerfile", tmp / "naive.Dockerfile")
    return (
        Variant(
            "ours (api/Dockerfile)", ours, dockerfile, ours / "api", "yolo-api:metrics-ours", ROOT
        ),
        Variant(
            "minimal (api/Dockerfile --target minimal)",
            minimal,
            stage_build_context(minimal),
            minimal / "api",
            "yolo-api:metrics-minimal",
            ROOT,
            target="minimal",
        ),
        Variant(
            "naive (docker/naive/Dockerfile)",
            naive,
            tmp / "naive.Dockerfile",
            naive,
            "yolo-api:metrics-naive",
            ROOT / "api",
        ),
    )


def measure(variant: Variant, base: str, keep_cache: bool) -> None:
    files = context_files(DOCKER, variant.source)
    variant.context_bytes, variant.context_files = sum(files.values()), len(files)
    if not keep_cache:
        log(f"[{variant.name}] pruning the build cache")
        DOCKER("builder", "prune", "-af")
    for key, label in STEPS.items():
        log(f"[{variant.name}] {label}")
        if key == "code":
            with (variant.app / "app" / "main.py").open("a") as fh:
                fh.write(f"\n# build-metrics: code change {time.time_ns()}\n")
        elif key == "dep":
            lock_file = variant.app / "requirements.lock"
            lock = lock_file.read_text()
            present = {ln.split("==")[0].strip().lower() for ln in lock.splitlines() if "==" in ln}
            extra = next(p for p in EXTRA_PACKAGES if p.split("==")[0] not in present)
            lock_file.write_text(lock.rstrip("\n") + f"\n{extra}\n")
        variant.build(key, base)
        if key == "noop":
            variant.image = DOCKER.inspect(variant.tag)
            dive = shutil.which("dive")
            try:
                variant.dive = dive_report(dive, variant.tag) if dive else None
            except AssertionError:
                variant.dive = None


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2f} s"


def fmt_b(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} KB"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    return f"{a / b:.3f}" if b else "-"


def column(v: Variant, base_info: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """Its cells of the table by row, each with the number the ratio to naive is taken of.
    The minimal variant starts from scratch: all of it is above the base."""
    scratch = v.target == "minimal"
    size = v.image["Size"]
    above = size - (0 if scratch else base_info["Size"])
    layers = len(v.image["RootFS"]["Layers"]) - (
        0 if scratch else len(base_info["RootFS"]["Layers"])
    )
    cells: dict[str, tuple[float | None, str]] = {STEPS[k]: b for k, b in v.builds.items()}
    cells["image size"] = size, fmt_b(size)
    no_base = ", no base" if scratch else ""
    cells["layers above the base"] = above, f"{fmt_b(above)} ({layers} layers{no_base})"
    cells["build context"] = v.context_bytes, f"{fmt_b(v.context_bytes)} ({v.context_files} files)"
    if v.dive:
        cells["dive efficiency"] = None, f"{v.dive['efficiencyScore']:.4f}"
        cells["dive wasted bytes"] = v.dive["inefficientBytes"], fmt_b(v.dive["inefficientBytes"])
    return cells


def report(
    ours: Variant, minimal: Variant, naive: Variant, base: str, base_info: dict[str, Any]
) -> tuple[str, list[str]]:
    o, m, n = (column(v, base_info) for v in (ours, minimal, naive))
    mine = {row: value for row, (value, _) in o.items() if value is not None}
    clean = mine["clean build"]
    budgets = {
        row: (mine[row] <= share * clean, f"<= {share:.0%} of clean ({mine[row] / clean:.1%})")
        for row, share in SHARE_BUDGETS.items()
    }
    budgets |= {
        row: (mine[row] <= limit, f"<= {text}") for row, (limit, text) in BYTE_BUDGETS.items()
    }
    rows = [("metric", "ours", "minimal", "naive", "ours/naive", "minimal/naive", "budget (ours)")]
    for row, (value, cell) in o.items():
        if row in m and row in n:  # the dive rows only when dive ran on all three
            ok, text = budgets.get(row, (True, ""))
            verdict = f"{text}: {'OK' if ok else 'EXCEEDED'}" if text else ""
            ratios = ratio(value, n[row][0]), ratio(m[row][0], n[row][0])
            rows.append((row, cell, m[row][1], n[row][1], *ratios, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"| {' | '.join(c.ljust(w) for c, w in zip(r, widths, strict=True))} |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    base_layers = len(base_info["RootFS"]["Layers"])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    title = f"Base image: {base} ({fmt_b(base_info['Size'])}, {base_layers} layer(s)); {cpus} CPUs"
    return "\n".join([title, "", *lines]), [text for ok, text in budgets.values() if not ok]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep-cache",
        action="store_true",
        help="do not prune the build cache before the clean builds",
    )
    parser.add_argument(
        "--keep-images", action="store_true", help="keep the yolo-api:metrics-* images"
    )
    opts = parser.parse_args()

    if not DOCKER.available():
        log("no Docker engine answers (start dockerd; see docker/ci-setup.sh)")
        return 2
    base = os.environ.get("PYTHON_BASE_IMAGE") or (
        OFFLINE_PYTHON if DOCKER.image_exists(OFFLINE_PYTHON) else OFFICIAL_PYTHON
    )
    if not DOCKER.image_exists(base):
        log(f"base image {base} is not present (offline: make offline-images)")
        return 2

    with tempfile.TemporaryDirectory(prefix="build-metrics-") as tmp:
        variants = staged(Path(tmp))
        for variant in variants:
            measure(variant, base, opts.keep_cache)
    table, failures = report(*variants, base, DOCKER.inspect(base))
    print(table)
    if not opts.keep_images:
        for variant in variants:
            DOCKER.remove("image", variant.tag, *variant.image_ids)
    if failures:
        print("\nBudget exceeded: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image builds as the tests, the benchmarks and `make build-metrics` run them: the API's
build context staged apart from the working tree, BuildKit's plain progress read back, and
the inference image built by its own script."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.engine import Docker
from tests.support.paths import ROOT

Steps = dict[str, tuple[str, bool]]


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    log: str  # BuildKit's plain progress
    base: str
    target: str = "runtime"


def build_steps(log: str) -> Steps:
    """BuildKit plain progress -> {step number: (step title, cached?)}, FROM steps left out.

    Lines look like '#10 [builder 5/5] RUN ...' followed later by '#10 CACHED' when the
    step came from the cache (or '#10 DONE 12.3s' when it ran)."""
    titles = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^#(\d+) (\[[^\]]*\d+/\d+\] .*)$", log, re.M)
        if " FROM " not in m.group(2)
    }
    cached = set(re.findall(r"^#(\d+) CACHED$", log, re.M))
    return {num: (title, num in cached) for num, title in titles.items()}


def find_step(steps: Steps, needle: str) -> tuple[str, bool]:
    matches = [step for step in steps.values() if needle in step[0]]
    assert len(matches) == 1, f"expected one build step containing {needle!r}: {matches}"
    return matches[0]


def stage_build_context(dest: Path) -> Path:
    """Copy the API's build inputs (repo-root context) to dest; return dest/api/Dockerfile."""
    files = [".dockerignore", "docker/with-build-ca.sh", "docker/minimal-rootfs.sh"]
    files += ["api/Dockerfile", "api/requirements.lock"]
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "api" / "app", dest / "api" / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    return dest / "api" / "Dockerfile"


def build_inference_image(tag: str, timeout_s: float = 3600) -> str | None:
    """Build `tag` with docker/inference/build.sh (minutes); the end of its stderr on failure."""
    proc = subprocess.run(
        [str(ROOT / "docker" / "inference" / "build.sh")],
        env=dict(os.environ, INFERENCE_IMAGE=tag),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return None if proc.returncode == 0 else proc.stderr[-4000:]


def context_files(docker: Docker, context: Path) -> dict[str, int]:
    """What the daemon receives of `context` after .dockerignore (file name -> bytes),
    exported as a tar by a scratch build."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "context.tar"
        script = b"FROM scratch\nCOPY . /\n"
        docker("build", "-f", "-", "--output", f"type=tar,dest={out}", str(context), input=script)
        with tarfile.open(out) as tar:
            return {m.name: m.size for m in tar.getmembers() if m.isfile()}


def dive_report(dive: str, tag: str) -> dict[str, Any]:
    """dive's analysis of an image (efficiencyScore, inefficientBytes, ...)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dive.json"
        proc = subprocess.run(
            [dive, tag, "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, CI="true"),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        image: dict[str, Any] = json.loads(out.read_text())["image"]
        return image

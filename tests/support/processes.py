"""Commands in subprocesses, as people run them: the API's (`python -m app.bootstrap`,
uvicorn) as an operator does, with only the settings a test gives, from the code as on the
host or as the image has it; and the CLI (`yoloctl`) as a user does, without a terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from tests.support.paths import ROOT

API = ROOT / "api"
# Left out of the image's build context by the root .dockerignore (needs the host's Ultralytics).
IMAGE_LEAVES_OUT = "app/orchestrators/local.py"


def clean_env(pythonpath: Path = API, **given: str) -> dict[str, str]:
    """The test process's environment without any of the API's settings, plus `given`."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return {**env, "PYTHONPATH": str(pythonpath), **given}


def api_as_in_image(dest: Path) -> Path:
    """A copy of api/app without what the image leaves out; returns the PYTHONPATH for it."""
    assert f"api/{IMAGE_LEAVES_OUT}" in (ROOT / ".dockerignore").read_text().split()
    shutil.copytree(API / "app", dest / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / IMAGE_LEAVES_OUT).unlink()
    return dest


def run_module(
    module: str, env: dict[str, str], *args: str, timeout: float = 120, cwd: Path | None = ROOT
) -> subprocess.CompletedProcess[str]:
    """`python -m module args`, from the repository root as `make dev` runs it (or `cwd`)."""
    argv = [sys.executable, "-m", module, *args]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m yolo_cli ARGS` from the source tree (installed or not), without a terminal.
    The caller's YOLO_API_URL and YOLO_API_KEY are not passed on: only `env`'s."""
    environ = {k: v for k, v in os.environ.items() if k not in ("YOLO_API_URL", "YOLO_API_KEY")}
    environ.update(PYTHONPATH=str(ROOT / "cli"), **(env or {}))
    return run_module("yolo_cli", environ, *args, timeout=300, cwd=None)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]

"""The CLI (cli/yolo_cli) run as a user runs it, in a subprocess, against a running API."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.api.conftest import (  # noqa: F401 (fixtures)
    ADMIN_KEY,
    database_url,
    make_settings,
    shared_dir,
    template_database,
)
from tests.conftest import ROOT
from tests.support.live_api import start_api  # noqa: F401 (fixture)

sys.path.insert(0, str(ROOT / "cli"))  # the CLI from the source tree, installed or not
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault(
    "YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "ultralytics-config-tests")
)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m yolo_cli ARGS` from the source tree (installed or not), without a terminal.
    The caller's YOLO_API_URL and YOLO_API_KEY are not passed on: only `env`'s."""
    environ = {k: v for k, v in os.environ.items() if k not in ("YOLO_API_URL", "YOLO_API_KEY")}
    environ.update(PYTHONPATH=str(ROOT / "cli"), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "yolo_cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=False,
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_key(url: str, name: str) -> str:
    """A new (non-admin) API key, made over HTTP with the admin key."""
    response = httpx.post(f"{url}/v1/keys", json={"name": name}, headers=bearer(ADMIN_KEY))
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def revoke_key(url: str, name: str) -> None:
    response = httpx.delete(f"{url}/v1/keys/{name}", headers=bearer(ADMIN_KEY))
    assert response.status_code == 200, response.text

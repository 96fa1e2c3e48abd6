"""Compose projects of the repository's files, isolated from the developer's own: each one
has its own project name and sees only the compose variables it is given (never `.env`,
never the shell's settings of the same names)."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.engine import Docker, ca_bundle
from tests.support.paths import ROOT

# Relative to the checkout a project runs in (the repository, or a copy of it).
MAIN_FILES = ("docker-compose.yml",)
OFFLINE_FILES = (*MAIN_FILES, "docker-compose.offline.yml")
STANDIN_FILES = (*OFFLINE_FILES, "tests/e2e/docker-compose.e2e.yml")

# Every variable the compose files read (.env.example and the e2e override).
COMPOSE_VARS = frozenset({
    "POSTGRES_PASSWORD", "APP_DB_PASSWORD", "KESTRA_DB_PASSWORD", "KESTRA_USERNAME",
    "KESTRA_PASSWORD", "CALLBACK_TOKEN", "ADMIN_API_KEY", "MAX_UNFINISHED_JOBS_PER_KEY",
    "APP_DB_NAME", "APP_DB_USER", "KESTRA_DB_NAME",
    "KESTRA_DB_USER", "ORCHESTRATOR", "MODEL", "CONFIDENCE", "BATCH_MAX_JOBS", "BATCH_WINDOW_S",
    "LOG_LEVEL", "WEB_CONCURRENCY", "API_TARGET", "BIND_ADDRESS",
    "API_PORT", "KESTRA_PORT", "SHARED_VOLUME_NAME", "API_IMAGE", "PYTHON_BASE_IMAGE",
    "POSTGRES_IMAGE", "KESTRA_IMAGE", "INFERENCE_IMAGE", "INFERENCE_GPU_IMAGE", "BUILD_CA_BUNDLE",
    "SYSTEM_CA_BUNDLE", "ALLOW_MODEL_DOWNLOAD", "TASK_NETWORK",
    "KESTRA_STANDIN_IMAGE", "STANDIN_WORKER_THREADS", "STANDIN_VISIBILITY_DELAY_S",
    "RECONCILE_AFTER_S", "RECONCILE_INTERVAL_S", "DISPATCH_MAX_BACKOFF_S", "RETENTION_DAYS",
    "RETENTION_BATCH", "API_REPLICAS", "LB_IMAGE", "LB_BASE_IMAGE", "KESTRA_WORKER_THREADS",
    "WEBHOOK_SECRET", "WEBHOOK_ALLOWED_NETWORKS", "METRICS_ENABLED", "METRICS_PORT",
})  # fmt: skip


def secrets_env() -> dict[str, str]:
    """Fresh values for the secrets compose requires."""
    return {
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "APP_DB_PASSWORD": secrets.token_hex(12),
        "KESTRA_DB_PASSWORD": secrets.token_hex(12),
        "KESTRA_USERNAME": "admin@example.com",
        "KESTRA_PASSWORD": f"{secrets.token_hex(6)}Aa1",
        "CALLBACK_TOKEN": secrets.token_hex(16),
        "ADMIN_API_KEY": secrets.token_hex(20),
    }


def build_secret_env() -> dict[str, str]:
    """BUILD_CA_BUNDLE for stacks that build images behind a TLS-inspecting proxy."""
    bundle = ca_bundle()
    return {"BUILD_CA_BUNDLE": str(bundle)} if bundle else {}


def compose_env(base: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """`base` without any compose variable or COMPOSE_* setting, plus exactly `given`."""
    env = {k: v for k, v in base.items() if k not in COMPOSE_VARS and not k.startswith("COMPOSE_")}
    env.update(given)
    return env


def new_project(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@dataclass
class Compose:
    """`docker compose -p PROJECT -f FILE...` in `checkout`, with only `env` as its variables
    (and `env_file`'s: none unless a test made a .env as a user would)."""

    docker: Docker
    project: str
    env: dict[str, str]
    files: tuple[str, ...] = OFFLINE_FILES
    checkout: Path = field(default=ROOT)
    env_file: str = "/dev/null"

    @property
    def volume(self) -> str:
        return self.env["SHARED_VOLUME_NAME"]

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        files = [arg for name in self.files for arg in ("-f", name)]
        return self.docker(
            *("compose", "--env-file", self.env_file, "-p", self.project, *files, *args),
            timeout=timeout,
            check=check,
            env=compose_env(self.docker.env, self.env),
            cwd=self.checkout,
        )

    def ps(self) -> dict[str, dict[str, Any]]:
        """`compose ps -a` by service (compose prints a JSON array or JSON lines)."""
        text = self("ps", "-a", "--format", "json").stdout.strip()
        rows = json.loads(text) if text.startswith("[") else map(json.loads, text.splitlines())
        return {row["Service"]: row for row in rows}

    def container(self, service: str) -> str:
        rows = self.ps()
        assert service in rows, f"no container for service {service}: {sorted(rows)}"
        return str(rows[service]["Name"])

    def logs(self) -> str:
        proc = self("logs", "--no-color", "--timestamps", check=False, timeout=120)
        return proc.stdout + proc.stderr

    def down(self) -> None:
        """Remove the project with its volumes, and the shared volume by its fixed name."""
        self("down", "-v", "--remove-orphans", "-t", "30", timeout=300, check=False)
        if "SHARED_VOLUME_NAME" in self.env:
            self.docker.remove("volume", self.volume)

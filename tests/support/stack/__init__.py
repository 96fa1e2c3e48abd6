"""The whole stack under compose, with the Kestra stand-in, as the end-to-end tests and the
pipeline benchmark drive it. One object per role: `compose` (the project), `api` (the API as
its clients see it), `standin` (the stand-in's search and test controls), `volume` (the
shared volume), `sql` (the API's database); `account` (tests.support.stack.account) checks
the invariant every test ends with."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.compose import STANDIN_FILES, Compose, build_secret_env, secrets_env
from tests.support.engine import Docker
from tests.support.kestra.containers import LABEL as TASK_LABEL
from tests.support.net import free_port
from tests.support.paths import ROOT
from tests.support.stack.api import StackApi
from tests.support.stack.standin import StandinControls
from tests.support.stack.volume import SharedVolume

ARTIFACTS = ROOT / "test-artifacts"


def stack_env(project: str, images: dict[str, str]) -> dict[str, str]:
    """What every stand-in stack needs: fresh secrets, its own images (API_IMAGE,
    KESTRA_STANDIN_IMAGE, PYTHON_BASE_IMAGE, POSTGRES_IMAGE, INFERENCE_IMAGE), volume name and
    ports, and the CA bundle for its builds."""
    return {
        **secrets_env(),
        **images,
        "SHARED_VOLUME_NAME": f"{project}-shared",
        "API_PORT": str(free_port()),
        "KESTRA_PORT": str(free_port()),
        **build_secret_env(),
    }


@dataclass
class Stack:
    compose: Compose
    inference_image: str
    base_image: str
    expected_failed: set[str] = field(default_factory=set)  # jobs a test made fail

    def __post_init__(self) -> None:
        env = self.compose.env
        self.api = StackApi(f"http://127.0.0.1:{env['API_PORT']}", env["ADMIN_API_KEY"])
        self.standin = StandinControls(
            f"http://127.0.0.1:{env['KESTRA_PORT']}", env["KESTRA_USERNAME"], env["KESTRA_PASSWORD"]
        )
        self.volume = SharedVolume(self.docker, self.compose.volume, self.base_image)

    @classmethod
    def create(cls, docker: Docker, project: str, env: dict[str, str], base_image: str) -> Stack:
        compose = Compose(docker, project, env, STANDIN_FILES)
        return cls(compose, env["INFERENCE_IMAGE"], base_image)

    @property
    def docker(self) -> Docker:
        return self.compose.docker

    @property
    def env(self) -> dict[str, str]:
        return self.compose.env

    @property
    def project(self) -> str:
        return self.compose.project

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query in the API's database."""
        return self.docker.psql(self.compose.container("postgres"), "yolo", query)

    def up(self) -> None:
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", "300", timeout=1200)

    def down(self, name: str, *, keep: bool = False) -> None:
        """Keep the logs in test-artifacts/<name>-<project>.log, then remove everything,
        task containers included (all but the logs when `keep`)."""
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{name}-{self.project}.log").write_text(self.compose.logs())
        if keep:
            return
        self.compose.down()
        leftovers = self.docker.containers(label=TASK_LABEL, volume=self.volume.name)
        self.docker.remove("container", *(c.id or "" for c in leftovers))
        self.docker.remove("volume", self.volume.name)

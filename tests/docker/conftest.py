"""Fixtures of the Docker tests: the engine, base images, the API image, names.

Outside CI a missing engine or tool skips these tests; with CI=true it fails them, so CI can
never pass without having run them (docker/ci-setup.sh prepares a machine).

Environment:
  PYTHON_BASE_IMAGE   base of the API image (default: the offline stand-in when present,
                      else python:3.13-slim)
  POSTGRES_IMAGE      (default: the offline stand-in when present, else postgres:17)
  EXTRA_CA_BUNDLE     CA bundle for pip/uv in builds (default: the host bundle if present)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.builds import BuiltImage
from tests.support.engine import (
    OFFLINE_POSTGRES,
    OFFLINE_PYTHON,
    Docker,
    ca_bundle,
    engine_for_tests,
    require,
)
from tests.support.paths import ROOT


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs a Docker engine (tests/docker)")


@pytest.fixture(scope="session")
def docker() -> Docker:
    return engine_for_tests(compose=False)


@pytest.fixture(scope="session")
def compose_docker() -> Docker:
    """The engine, with a working `docker compose`."""
    return engine_for_tests(compose=True)


def _pick(docker: Docker, env_name: str, offline: str, official: str) -> str:
    ref = os.environ.get(env_name) or (offline if docker.image_exists(offline) else official)
    require(
        docker.image_exists(ref),
        f"image {ref} is not present and cannot be pulled here (make offline-images)",
    )
    return ref


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    return _pick(docker, "PYTHON_BASE_IMAGE", OFFLINE_PYTHON, "python:3.13-slim")


@pytest.fixture(scope="session")
def postgres_image(docker: Docker) -> str:
    return _pick(docker, "POSTGRES_IMAGE", OFFLINE_POSTGRES, "postgres:17")


@pytest.fixture(scope="session")
def secret_marker() -> str:
    return f"build-secret-marker-{secrets.token_hex(12)}"


@pytest.fixture(scope="session")
def marked_ca_bundle(tmp_path_factory: pytest.TempPathFactory, secret_marker: str) -> Path:
    """The CA secret for the test build, with a unique marker line appended (text outside
    PEM blocks is ignored by OpenSSL): if it leaks into any layer, a test finds it."""
    path = tmp_path_factory.mktemp("secret") / "ca.pem"
    given = ca_bundle()
    bundle = given.read_text() if given else ""
    path.write_text(f"{bundle}\n# {secret_marker}\n")
    return path


@pytest.fixture(scope="session")
def api_image(docker: Docker, base_image: str, marked_ca_bundle: Path) -> Iterator[BuiltImage]:
    """The API image, built once per run from the repository with --no-cache, so every step
    really runs (and really receives the marked secret)."""
    tag = f"yolo-api:test-{os.getpid()}"
    log = docker.build(
        ROOT,
        ROOT / "api" / "Dockerfile",
        tag,
        build_args={"BASE_IMAGE": base_image},
        secret=marked_ca_bundle,
        no_cache=True,
    )
    yield BuiltImage(tag, log, base_image)
    docker.remove("image", tag)


@pytest.fixture(scope="session")
def minimal_image(
    docker: Docker, base_image: str, marked_ca_bundle: Path, api_image: BuiltImage
) -> Iterator[BuiltImage]:
    """The minimal variant (--target minimal), built after `api_image`: their shared builder
    stage comes from that --no-cache build, only the minimal stages run here."""
    tag = f"yolo-api:test-minimal-{os.getpid()}"
    build_args = {"BASE_IMAGE": base_image}
    dockerfile = ROOT / "api" / "Dockerfile"
    log = docker.build(ROOT, dockerfile, tag, build_args, marked_ca_bundle, target="minimal")
    yield BuiltImage(tag, log, base_image, "minimal")
    docker.remove("image", tag)


@pytest.fixture(scope="session", params=["runtime", "minimal"])
def variant(request: pytest.FixtureRequest) -> BuiltImage:
    """Each variant of the API image in turn, for the tests both must pass."""
    image: BuiltImage = request.getfixturevalue(
        "api_image" if request.param == "runtime" else "minimal_image"
    )
    return image


@pytest.fixture
def unique_name() -> str:
    return f"yolotest-{secrets.token_hex(4)}"


@pytest.fixture
def cleanup(docker: Docker) -> Iterator[list[tuple[str, str]]]:
    """Register (kind, name) pairs; they are removed after the test, in reverse order."""
    items: list[tuple[str, str]] = []
    yield items
    for kind, name in reversed(items):
        docker.remove(kind, name)

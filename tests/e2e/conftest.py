"""The end-to-end stack: compose with the offline overrides and the Kestra stand-in
(tests/e2e/docker-compose.e2e.yml), the offline inference image, the fixture model.

One stack per test session, under its own compose project, volume name and host ports, so
neither a developer's stack nor tests/docker's is touched. Outside CI a missing Docker engine,
compose plugin or offline base image skips these tests; with CI=true it fails them.

Environment:
  INFERENCE_IMAGE      image the flow runs (default yolo-inference:local, built with
                       docker/inference/build.sh when missing)
  PYTHON_BASE_IMAGE    base of the API and stand-in images (default offline/python:3.13-slim)
  POSTGRES_IMAGE       (default offline/postgres:17)
  E2E_KEEP=1           leave the stack running after the tests (then `docker compose -p
                       <project> ... down -v` by hand; the project name is printed)

Recovery times measured by the fault tests are printed at the end of the run and written to
test-artifacts/e2e-recovery.json; the stack's logs go to test-artifacts/e2e-<project>.log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.builds import build_inference_image
from tests.support.compose import new_project
from tests.support.engine import (
    OFFLINE_DEBIAN,
    OFFLINE_POSTGRES,
    OFFLINE_PYTHON,
    Docker,
    engine_for_tests,
    require,
)
from tests.support.paths import ROOT
from tests.support.stack import ARTIFACTS, Stack, stack_env
from tests.support.stack.record import RECOVERY, record


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: the whole stack under docker compose (tests/e2e)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECOVERY:
        return
    terminalreporter.section("end-to-end: what happened and how long recovery took")
    for name, facts in RECOVERY.items():
        details = ", ".join(f"{k}={v}" for k, v in facts.items())
        terminalreporter.write_line(f"{name}: {details}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "e2e-recovery.json").write_text(json.dumps(RECOVERY, indent=2) + "\n")


@pytest.fixture(scope="session")
def e2e_docker() -> Docker:
    return engine_for_tests(compose=True)


@pytest.fixture(scope="session")
def inference_image(e2e_docker: Docker) -> str:
    """The offline inference image; built (a few minutes, once) when missing."""
    tag = os.environ.get("INFERENCE_IMAGE") or "yolo-inference:local"
    if not e2e_docker.image_exists(tag):
        require(
            e2e_docker.image_exists(OFFLINE_DEBIAN) or bool(os.environ.get("BASE_IMAGE")),
            f"{OFFLINE_DEBIAN} is missing (make offline-images)",
        )
        failure = build_inference_image(tag, timeout_s=1800)
        assert failure is None, f"building {tag} failed:\n{failure}"
    # One layer on top: the fixture model as the image's default weights (seconds).
    weights = f"{tag.split(':')[0]}:e2e-weights"
    e2e_docker.build(
        ROOT / "tests" / "fixtures" / "model",
        ROOT / "tests" / "e2e" / "inference-weights" / "Dockerfile",
        weights,
        build_args={"BASE_IMAGE": tag},
    )
    return weights


@pytest.fixture(scope="session")
def stack(e2e_docker: Docker, inference_image: str) -> Iterator[Stack]:
    base = os.environ.get("PYTHON_BASE_IMAGE") or OFFLINE_PYTHON
    postgres = os.environ.get("POSTGRES_IMAGE") or OFFLINE_POSTGRES
    for image in (base, postgres):
        require(
            e2e_docker.image_exists(image),
            f"image {image} is not present and cannot be pulled here (make offline-images)",
        )
    project = new_project("yoloe2e")
    images = {
        "API_IMAGE": "yolo-api:e2e",
        "KESTRA_STANDIN_IMAGE": "yolo-kestra-standin:e2e",
        "PYTHON_BASE_IMAGE": base,
        "POSTGRES_IMAGE": postgres,
        "INFERENCE_IMAGE": inference_image,
    }
    env = {
        **stack_env(project, images),
        # The default name, as a user's first stack has it: the one-shot inference-image
        # step copies the image's weights of that name (here the fixture model) to models/.
        "MODEL": "yolo11n.pt",
        # A lost callback is noticed after 10 s; Kestra back up is noticed within 5 s.
        "RECONCILE_AFTER_S": "10",
        "RECONCILE_INTERVAL_S": "2",
        "DISPATCH_MAX_BACKOFF_S": "5",
        # Batches of at most 8, so the 24-image burst needs several executions side by side
        # (the stand-in runs 3 at a time) and the cap is exercised; the API's default window.
        "BATCH_MAX_JOBS": "8",
        "BATCH_WINDOW_S": "0.25",
        "STANDIN_WORKER_THREADS": "3",
        "STANDIN_VISIBILITY_DELAY_S": "1",
        "LOG_LEVEL": "INFO",
    }
    the_stack = Stack.create(e2e_docker, project, env, base)
    print(f"\n[e2e] compose project {project}")
    started = time.monotonic()
    try:
        the_stack.up()
        record("stack up", seconds=time.monotonic() - started, project=project)
        yield the_stack
    finally:
        the_stack.down("e2e", keep=os.environ.get("E2E_KEEP") == "1")


@pytest.fixture(autouse=True)
def _faults_off(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts and ends with the stand-in's fault switches off."""
    yield
    if "stack" in request.fixturenames:
        the_stack: Stack = request.getfixturevalue("stack")
        try:
            the_stack.standin.faults(drop_callbacks=0, hold=False, fail_next=0, delay_s=0.0)
        except Exception as exc:  # the stand-in may be the thing that broke
            print(f"[e2e] could not reset the stand-in's faults: {exc!r}")

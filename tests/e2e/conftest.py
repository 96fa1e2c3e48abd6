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
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.compose import STANDIN_FILES
from tests.support.engine import OFFLINE_DEBIAN, Docker, engine_for_tests, require
from tests.support.paths import ROOT
from tests.support.stack import ARTIFACTS, Stack, ensure_inference_image
from tests.support.stack.record import RECOVERY, record
from tests.support.webhooks import SECRET as WEBHOOK_SECRET


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
    """The offline inference image, one layer on top: the fixture model as the image's
    default weights (seconds)."""
    tag = ensure_inference_image(e2e_docker, require)
    weights = f"{tag.split(':')[0]}:e2e-weights"
    e2e_docker.build(
        ROOT / "tests" / "fixtures" / "model",
        ROOT / "tests" / "e2e" / "inference-weights" / "Dockerfile",
        weights,
        build_args={"BASE_IMAGE": tag},
    )
    return weights


def e2e_env(inference_image: str) -> dict[str, str]:
    """The settings every end-to-end stack runs with."""
    return {
        "INFERENCE_IMAGE": inference_image,
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
        # Two API worker processes, each with its dispatcher and reconciler on the one
        # database: every test ends with the account (no job lost or run twice).
        "WEB_CONCURRENCY": "2",
        # The minimal API image (no shell): the compose tests in tests/docker run the default.
        "API_TARGET": "minimal",
        # Webhooks to a receiver on the host, at the gateway of the stack's network (a private
        # address in one of Docker's default pools, allowed here).
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_ALLOWED_NETWORKS": "172.16.0.0/12,192.168.0.0/16,10.0.0.0/8",
    }


def _running(the_stack: Stack) -> Iterator[Stack]:
    print(f"\n[e2e] compose project {the_stack.project}")
    try:
        record(f"{the_stack.role} stack up", seconds=the_stack.up(), project=the_stack.project)
        yield the_stack
    finally:
        the_stack.down(keep=os.environ.get("E2E_KEEP") == "1")


@pytest.fixture(scope="session")
def stack(e2e_docker: Docker, inference_image: str) -> Iterator[Stack]:
    yield from _running(Stack.create(e2e_docker, "e2e", e2e_env(inference_image), require))


@pytest.fixture(scope="module")
def scaled_stack(e2e_docker: Docker, inference_image: str) -> Iterator[Stack]:
    """docker-compose.scale.yml on top: two API replicas (one worker process each) behind
    the HAProxy load balancer on API_PORT, the images of the e2e stack reused."""
    require(e2e_docker.image_exists(OFFLINE_DEBIAN), f"{OFFLINE_DEBIAN} is missing")
    env = {
        **e2e_env(inference_image),
        "API_REPLICAS": "2",
        "WEB_CONCURRENCY": "1",
        "LB_IMAGE": "yolo-lb:scale",
        "LB_BASE_IMAGE": OFFLINE_DEBIAN,
    }
    files = (*STANDIN_FILES, "docker-compose.scale.yml")
    yield from _running(Stack.create(e2e_docker, "scale", env, require, files))


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

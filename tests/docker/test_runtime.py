"""The API container at run time, hardened as compose runs it: read-only root filesystem,
tmpfs /tmp, no capabilities, no-new-privileges, uid 1000; its HEALTHCHECK as `docker ps`
reports it."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import pytest

from tests.support.builds import BuiltImage
from tests.support.engine import Docker

pytestmark = pytest.mark.docker

HARDENING = [
    "--read-only",
    "--tmpfs=/tmp:size=64m,mode=1777",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges:true",
]
# Faster than the image's defaults (15 s); the check itself is the image's.
FAST_HEALTH = [
    "--health-interval=2s",
    "--health-timeout=2s",
    "--health-retries=2",
    "--health-start-period=60s",
]


@dataclass
class Stack:
    network: str
    volume: str
    env: list[str]

    def run(self, *args: str) -> list[str]:
        """`docker run ARGS` on the stack's network and volume, hardened, with its environment."""
        volume = f"--volume={self.volume}:/data"
        return ["run", *args, f"--network={self.network}", volume, *HARDENING, *self.env]


@pytest.fixture
def db_stack(
    docker: Docker, postgres_image: str, unique_name: str, cleanup: list[tuple[str, str]]
) -> Stack:
    """A network, a volume and a healthy Postgres; the API's environment pointing at them
    (and at a Kestra that does not exist)."""
    network, volume, pg = f"{unique_name}-net", f"{unique_name}-data", f"{unique_name}-pg"
    password = secrets.token_hex(12)
    docker("network", "create", network)
    cleanup.append(("network", network))
    docker("volume", "create", volume)
    cleanup.append(("volume", volume))
    docker(
        "run",
        "-d",
        f"--name={pg}",
        f"--network={network}",
        "--network-alias=postgres",
        f"--env=POSTGRES_PASSWORD={password}",
        # Explicit, because the official image has no HEALTHCHECK of its own.
        "--health-cmd=pg_isready -q -h 127.0.0.1 -U postgres",
        "--health-interval=2s",
        "--health-retries=30",
        postgres_image,
    )
    cleanup.append(("container", pg))
    docker.wait_status(pg, "(healthy)", timeout=120)
    settings = {
        "DATABASE_URL": f"postgresql+psycopg2://postgres:{password}@postgres:5432/postgres",
        "SHARED_DATA_DIR": "/data",
        "ORCHESTRATOR": "kestra",
        "KESTRA_URL": "http://kestra.invalid:8080",
        "KESTRA_USERNAME": "admin@example.com",
        "KESTRA_PASSWORD": f"{secrets.token_hex(8)}Aa1",
        "CALLBACK_TOKEN": secrets.token_hex(16),
        "LOG_LEVEL": "WARNING",
    }
    return Stack(network, volume, [f"--env={name}={value}" for name, value in settings.items()])


@pytest.fixture
def api(
    docker: Docker,
    variant: BuiltImage,
    db_stack: Stack,
    unique_name: str,
    cleanup: list[tuple[str, str]],
) -> str:
    """The API container (each variant in turn), started as compose starts it: the one-shot
    bootstrap first, hardened the same way (it writes only to /data)."""
    name = f"{unique_name}-api"
    docker(*db_stack.run("--rm"), variant.tag, "python", "-m", "app.bootstrap", timeout=180)
    docker(*db_stack.run("-d", f"--name={name}", *FAST_HEALTH), variant.tag)
    cleanup.append(("container", name))
    return name


def exec_py(docker: Docker, container: str, code: str) -> str:
    return docker("exec", container, "python", "-c", code).stdout


def test_healthy_once_db_is_up_then_unhealthy_when_app_cannot_answer(
    docker: Docker, api: str
) -> None:
    assert "(healthy)" in docker.wait_status(api, "(healthy)", timeout=120)

    # The app stops answering (process frozen): the image's check times out -> unhealthy.
    docker("kill", "--signal", "SIGSTOP", api)
    try:
        assert "(unhealthy)" in docker.wait_status(api, "(unhealthy)", timeout=60)
    finally:
        docker("kill", "--signal", "SIGCONT", api, check=False)
    # And it recovers on its own once the process answers again.
    assert "(healthy)" in docker.wait_status(api, "(healthy)", timeout=60)


def test_read_only_root_filesystem(docker: Docker, api: str) -> None:
    docker.wait_status(api, "(healthy)", timeout=120)
    state = docker.inspect(api, "container")
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    assert state["HostConfig"]["CapDrop"] in (["ALL"], ["all"])

    probe = (
        "import os, pathlib\n"
        "out = {}\n"
        "for d in ('/app', '/opt/venv', '/etc', '/tmp', '/data/tmp'):\n"
        "    try:\n"
        "        p = pathlib.Path(d, 'probe'); p.write_text('x'); p.unlink(); out[d] = 'ok'\n"
        "    except OSError as e:\n"
        "        out[d] = e.strerror\n"
        "out['uid'] = os.getuid()\n"
        "print(__import__('json').dumps(out))\n"
    )
    result = json.loads(exec_py(docker, api, probe))
    assert result["uid"] == 1000
    assert result["/tmp"] == "ok"
    assert result["/data/tmp"] == "ok"
    for path in ("/app", "/opt/venv", "/etc"):
        assert result[path] == "Read-only file system", result

    # Readiness from inside: database reachable, orchestrator (no Kestra here) not.
    ready = (
        "import json, urllib.request, urllib.error\n"
        "try:\n"
        "    r = urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=10)\n"
        "    print(r.status, r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code, e.read().decode())\n"
    )
    status, _, body = exec_py(docker, api, ready).partition(" ")
    checks = json.loads(body)["checks"]
    assert status == "503"
    assert checks["database"] == "ok"
    assert checks["storage"] == "ok"
    assert checks["orchestrator"].startswith("unreachable")


LOCAL_REFUSAL = (
    "ORCHESTRATOR=local runs flows/detect.py with the host's Ultralytics (make dev); "
    "this image has neither: set ORCHESTRATOR=kestra in .env"
)


def test_orchestrator_local_is_refused_in_one_line_by_bootstrap_and_the_api(
    docker: Docker, variant: BuiltImage, unique_name: str, cleanup: list[tuple[str, str]]
) -> None:
    """The image has no Local adapter: bootstrap (what stops `compose up`) and the API itself
    each say what to change in one line, and exit non-zero instead of a traceback loop."""
    volume = f"{unique_name}-data"
    docker("volume", "create", volume)
    cleanup.append(("volume", volume))
    run = ["run", "--rm", "-v", f"{volume}:/data", *HARDENING, "-e", "ORCHESTRATOR=local"]
    bootstrap = docker(*run, variant.tag, "python", "-m", "app.bootstrap", check=False)
    assert bootstrap.returncode == 1, bootstrap.stdout + bootstrap.stderr
    assert bootstrap.stderr.strip().splitlines() == [LOCAL_REFUSAL]
    assert bootstrap.stdout.strip() == ""

    api = docker(*run, variant.tag, check=False, timeout=120)  # the image's uvicorn command
    assert api.returncode != 0
    assert "Traceback" not in api.stdout + api.stderr
    refused = [json.loads(line) for line in api.stdout.splitlines() if '"api.refused"' in line]
    assert [entry["reason"] for entry in refused] == [LOCAL_REFUSAL]

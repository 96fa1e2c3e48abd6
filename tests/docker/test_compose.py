"""docker-compose.yml: valid, and with the offline overrides `api` and `postgres` come up
healthy, an upload through the containerized API is accepted and stored, and /ready says the
orchestrator is unreachable (Kestra is left out in offline mode).

Each run uses its own compose project, volume name and host port, so a developer's stack is
never touched."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.docker.conftest import BuiltImage
from tests.docker.dockerutil import ROOT, Docker, compose_env, secrets_env, tiny_png
from tests.support.net import free_port

pytestmark = pytest.mark.docker

FILES = ["-f", str(ROOT / "docker-compose.yml")]
OFFLINE_FILES = [*FILES, "-f", str(ROOT / "docker-compose.offline.yml")]


def run_compose(
    compose: list[str], args: list[str], env: dict[str, str], docker: Docker, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    # Only the variables given: neither the developer's .env (--env-file /dev/null) nor their
    # shell's settings of the same names leak in.
    full_env = compose_env(docker.env, env)
    return subprocess.run(
        [*compose, "--env-file", "/dev/null", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("files", [FILES, OFFLINE_FILES], ids=["main", "offline"])
def test_compose_config_is_valid(compose: list[str], docker: Docker, files: list[str]) -> None:
    proc = run_compose(compose, [*files, "config", "--quiet"], secrets_env(), docker)
    assert proc.returncode == 0, proc.stderr


def test_compose_refuses_to_start_without_a_required_secret(
    compose: list[str], docker: Docker
) -> None:
    env = secrets_env()
    del env["CALLBACK_TOKEN"]
    proc = run_compose(compose, [*FILES, "config", "--quiet"], env, docker)
    assert proc.returncode != 0
    assert "CALLBACK_TOKEN" in proc.stderr


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, ROOT / "docker" / "no-extra-ca.pem"),
        ({"SYSTEM_CA_BUNDLE": "/certs/system.pem"}, Path("/certs/system.pem")),
        (
            {"SYSTEM_CA_BUNDLE": "/certs/system.pem", "BUILD_CA_BUNDLE": "/certs/mine.pem"},
            Path("/certs/mine.pem"),
        ),
    ],
    ids=["none", "system", "env-wins"],
)
def test_the_build_ca_bundle_is_the_chosen_one_then_the_systems(
    compose: list[str], docker: Docker, given: dict[str, str], expected: Path
) -> None:
    """`make` passes the system bundle as SYSTEM_CA_BUNDLE; BUILD_CA_BUNDLE (.env) wins."""
    env = {**secrets_env(), **given}
    proc = run_compose(compose, [*FILES, "config", "--format", "json"], env, docker)
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(proc.stdout)["secrets"]["ca"]["file"]) == expected


def test_compose_model(compose: list[str], docker: Docker) -> None:
    env = secrets_env()
    proc = run_compose(compose, [*FILES, "config", "--format", "json"], env, docker)
    assert proc.returncode == 0, proc.stderr
    model = json.loads(proc.stdout)
    services = model["services"]
    assert set(services) >= {"api", "postgres", "kestra", "bootstrap"}
    for name in ("api", "postgres", "kestra"):
        assert services[name].get("healthcheck", {}).get("test"), name
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("api", "kestra"):
        for dep, spec in services[name]["depends_on"].items():
            one_shot = dep in ("bootstrap", "inference-image")
            expected = "service_completed_successfully" if one_shot else "service_healthy"
            assert spec["condition"] == expected, (name, dep)
    api = services["api"]
    assert api["read_only"] is True
    assert api["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in api["security_opt"]
    assert any(t.startswith("/tmp") for t in api["tmpfs"])
    for name in ("api", "kestra"):
        for port in services[name].get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
    assert model["volumes"]["shared-data"]["name"] == "yolo-shared-data"
    kestra = services["kestra"]
    assert kestra["image"].startswith("kestra/kestra:v1.3.")
    assert kestra["stop_grace_period"]
    assert kestra["user"] == "root"
    assert kestra["environment"]["ENV_SHARED_VOLUME"] == "yolo-shared-data"
    # Every image is overridable.
    overridden = run_compose(
        compose,
        [*FILES, "config", "--format", "json"],
        {
            **env,
            "API_IMAGE": "m/api:1",
            "POSTGRES_IMAGE": "m/pg:1",
            "KESTRA_IMAGE": "m/k:1",
            "PYTHON_BASE_IMAGE": "m/py:1",
            "INFERENCE_IMAGE": "m/yolo:1",
        },
        docker,
    )
    over = json.loads(overridden.stdout)["services"]
    assert over["api"]["image"] == over["bootstrap"]["image"] == "m/api:1"
    assert over["api"]["build"]["args"]["BASE_IMAGE"] == "m/py:1"
    assert over["postgres"]["image"] == "m/pg:1"
    assert over["kestra"]["image"] == "m/k:1"
    assert over["kestra"]["environment"]["ENV_YOLO_IMAGE"] == "m/yolo:1"
    # The inference image is pulled (and its weights seeded) by a one-shot step before
    # Kestra starts, not inside the first task's timeout; the tasks get no network.
    assert over["inference-image"]["image"] == "m/yolo:1"
    seed = services["inference-image"]
    assert seed["command"] == ["--seed", "yolo11n.pt", "--data-dir", "/data"]
    # A MODEL found nowhere stops the seed step (and so Kestra) unless tasks may download it.
    assert seed["environment"]["YOLO_ALLOW_DOWNLOAD"] == "false"
    assert seed["network_mode"] == "none"
    assert seed["user"] == "1000:1000"
    assert services["kestra"]["depends_on"]["inference-image"]["required"] is True
    assert kestra["environment"]["ENV_TASK_NETWORK"] == "none"
    assert "--no-tutorials" in kestra["command"]


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    url: str
    volume: str

    @property
    def admin(self) -> dict[str, str]:
        """The admin key .env gave, as a header."""
        return {"Authorization": f"Bearer {self.env['ADMIN_API_KEY']}"}


@pytest.fixture(scope="module")
def offline_stack(
    compose: list[str], docker: Docker, api_image: BuiltImage, postgres_image: str
) -> Iterator[Stack]:
    project = f"yolotest{secrets.token_hex(4)}"
    port = free_port()
    env = {
        **secrets_env(),
        # The image built by this test run (compose would otherwise build its own).
        "API_IMAGE": api_image.tag,
        "PYTHON_BASE_IMAGE": api_image.base,
        "POSTGRES_IMAGE": postgres_image,
        "SHARED_VOLUME_NAME": f"{project}-shared",
        "API_PORT": str(port),
    }
    stack = Stack(project, env, f"http://127.0.0.1:{port}", env["SHARED_VOLUME_NAME"])
    up = run_compose(
        compose,
        ["-p", project, *OFFLINE_FILES, "up", "-d", "--wait", "--wait-timeout", "240"],
        env,
        docker,
        timeout=400,
    )
    try:
        if up.returncode != 0:
            logs = run_compose(compose, ["-p", project, *OFFLINE_FILES, "logs"], env, docker)
            pytest.fail(f"compose up failed:\n{up.stderr[-4000:]}\n{logs.stdout[-6000:]}")
        yield stack
    finally:
        run_compose(
            compose,
            ["-p", project, *OFFLINE_FILES, "down", "-v", "--remove-orphans"],
            env,
            docker,
            timeout=180,
        )


def compose_ps(compose: list[str], docker: Docker, stack: Stack) -> dict[str, dict]:
    proc = run_compose(
        compose,
        ["-p", stack.project, *OFFLINE_FILES, "ps", "-a", "--format", "json"],
        stack.env,
        docker,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
    return {row["Service"]: row for row in rows}


def test_api_and_postgres_healthy(compose: list[str], docker: Docker, offline_stack: Stack) -> None:
    rows = compose_ps(compose, docker, offline_stack)
    assert rows["postgres"]["Health"] == "healthy", rows["postgres"]
    assert rows["api"]["Health"] == "healthy", rows["api"]
    assert rows["bootstrap"]["State"] == "exited"
    assert rows["bootstrap"]["ExitCode"] == 0
    assert "kestra" not in rows  # left out of a plain `up` in offline mode
    # And `docker ps` says so in its STATUS column.
    for service in ("api", "postgres"):
        assert "(healthy)" in docker.status(rows[service]["Name"])


def test_ready_reports_orchestrator_unreachable(offline_stack: Stack) -> None:
    response = httpx.get(f"{offline_stack.url}/ready", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["storage"] == "ok"
    assert body["checks"]["orchestrator"].startswith("unreachable")
    assert httpx.get(f"{offline_stack.url}/health", timeout=10).status_code == 200


def test_upload_is_accepted_and_stored(
    compose: list[str], docker: Docker, offline_stack: Stack
) -> None:
    image = tiny_png()
    response = httpx.post(
        f"{offline_stack.url}/v1/uploads",
        files=[("files", ("red.png", image, "image/png"))],
        headers=offline_stack.admin,
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job = response.json()["jobs"][0]
    assert job["image_format"] == "PNG"
    assert (job["image_width"], job["image_height"]) == (64, 48)

    # Served back byte for byte, through the API...
    served = httpx.get(
        f"{offline_stack.url}/v1/jobs/{job['id']}/image", headers=offline_stack.admin, timeout=30
    )
    assert served.status_code == 200
    assert served.content == image
    # ...stored on the shared volume, owned by uid 1000...
    rows = compose_ps(compose, docker, offline_stack)
    listing = docker(
        "exec", rows["api"]["Name"], "sh", "-c", f"stat -c '%u %s' /data/uploads/{job['id']}.png"
    ).stdout.split()
    assert listing == ["1000", str(len(image))]
    # ...and recorded in the API's database (its own role and database).
    # psql's own quoting (:'job_id'), not string formatting.
    out = docker(
        "exec",
        "-i",
        rows["postgres"]["Name"],
        "psql",
        "-U",
        "postgres",
        "-d",
        "yolo",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        f"job_id={job['id']}",
        input=b"SELECT size_bytes, sha256 FROM jobs WHERE id = :'job_id';\n",
    ).stdout.strip()
    assert out == f"{len(image)}|{hashlib.sha256(image).hexdigest()}"


def test_keys_are_required_and_made_with_the_command(
    compose: list[str], docker: Docker, offline_stack: Stack
) -> None:
    url, image = offline_stack.url, tiny_png()
    files = [("files", ("red.png", image, "image/png"))]
    refused = httpx.post(f"{url}/v1/uploads", files=files, timeout=30)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    # The README's way to give a client its own key.
    api = compose_ps(compose, docker, offline_stack)["api"]["Name"]
    made = docker("exec", api, "python", "-m", "app.keys", "create", "alice").stdout
    alice = {"Authorization": f"Bearer {made.strip().splitlines()[-1]}"}
    mine = httpx.post(f"{url}/v1/uploads", files=files, headers=alice, timeout=30)
    assert mine.status_code == 202, mine.text
    job_id = mine.json()["jobs"][0]["id"]
    admins = httpx.post(f"{url}/v1/uploads", files=files, headers=offline_stack.admin, timeout=30)
    theirs = admins.json()["jobs"][0]["id"]
    assert httpx.get(f"{url}/v1/jobs/{theirs}", headers=alice, timeout=30).status_code == 404
    assert httpx.get(f"{url}/v1/jobs/{job_id}", headers=offline_stack.admin).status_code == 200


def test_databases_are_separated(compose: list[str], docker: Docker, offline_stack: Stack) -> None:
    pg = compose_ps(compose, docker, offline_stack)["postgres"]["Name"]
    env = offline_stack.env

    def connect(user: str, password: str, db: str) -> subprocess.CompletedProcess[str]:
        return docker(
            "exec",
            "-e",
            f"PGPASSWORD={password}",
            pg,
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            user,
            "-d",
            db,
            "-tAc",
            "SELECT current_user",
            check=False,
        )

    assert connect("yolo", env["APP_DB_PASSWORD"], "yolo").stdout.strip() == "yolo"
    assert connect("kestra", env["KESTRA_DB_PASSWORD"], "kestra").stdout.strip() == "kestra"
    denied = connect("kestra", env["KESTRA_DB_PASSWORD"], "yolo")
    assert denied.returncode != 0
    assert "permission denied" in denied.stderr
    superuser = docker(
        "exec",
        pg,
        "psql",
        "-U",
        "postgres",
        "-tAc",
        "SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1",
    ).stdout.split()
    assert superuser == ["postgres"]


def test_volume_has_fixed_name_and_app_layout(
    docker: Docker, offline_stack: Stack, api_image: BuiltImage
) -> None:
    out = docker(
        "run",
        "--rm",
        "-v",
        f"{offline_stack.volume}:/data",
        "--entrypoint",
        "sh",
        api_image.tag,
        "-c",
        "stat -c '%n %u' /data/uploads /data/results /data/scripts/detect.py",
    ).stdout.split("\n")
    owners = dict(line.split() for line in out if line)
    assert owners == {
        "/data/uploads": "1000",
        "/data/results": "1000",
        "/data/scripts/detect.py": "1000",
    }
    # The same bytes as the repository's flows/detect.py.
    copied = docker(
        "run",
        "--rm",
        "-v",
        f"{offline_stack.volume}:/data",
        "--entrypoint",
        "cat",
        api_image.tag,
        "/data/scripts/detect.py",
    ).stdout
    assert copied == Path(ROOT / "flows" / "detect.py").read_text()

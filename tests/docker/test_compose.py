"""docker-compose.yml: valid, and with the offline overrides `api` and `postgres` come up
healthy, an upload through the containerized API is accepted and stored, and /ready says the
orchestrator is unreachable (Kestra is left out in offline mode).

Each run uses its own compose project, volume name and host port, so a developer's stack is
never touched."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.builds import BuiltImage
from tests.support.compose import MAIN_FILES, OFFLINE_FILES, Compose, new_project, secrets_env
from tests.support.engine import Docker
from tests.support.images import encode
from tests.support.net import free_port
from tests.support.paths import ROOT

pytestmark = pytest.mark.docker


def config(docker: Docker, env: dict[str, str], files: tuple[str, ...] = MAIN_FILES) -> Any:
    """`compose config` of the files with only `env` as variables, parsed."""
    proc = Compose(docker, new_project("yolotest"), env, files)("config", "--format", "json")
    return json.loads(proc.stdout)


@pytest.mark.parametrize(
    "files",
    [
        MAIN_FILES,
        OFFLINE_FILES,
        (*MAIN_FILES, "docker-compose.gpu.yml"),
        (*OFFLINE_FILES, "docker-compose.scale.yml"),
        (*MAIN_FILES, "docker-compose.kestra-split.yml"),
    ],
    ids=["main", "offline", "gpu", "offline-scale", "kestra-split"],
)
def test_compose_config_is_valid(compose_docker: Docker, files: tuple[str, ...]) -> None:
    Compose(compose_docker, new_project("yolotest"), secrets_env(), files)("config", "--quiet")


def test_compose_refuses_to_start_without_a_required_secret(compose_docker: Docker) -> None:
    env = secrets_env()
    del env["CALLBACK_TOKEN"]
    proc = Compose(compose_docker, new_project("yolotest"), env, MAIN_FILES)(
        "config", "--quiet", check=False
    )
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
    compose_docker: Docker, given: dict[str, str], expected: Path
) -> None:
    """`make` passes the system bundle as SYSTEM_CA_BUNDLE; BUILD_CA_BUNDLE (.env) wins."""
    model = config(compose_docker, {**secrets_env(), **given})
    assert Path(model["secrets"]["ca"]["file"]) == expected


def test_compose_model(compose_docker: Docker) -> None:
    env = secrets_env()
    model = config(compose_docker, env)
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
    # Metrics: every worker's events in a directory on that tmpfs, emptied with each start;
    # on the API's port unless METRICS_PORT is set, and no port of their own is published.
    assert api["environment"]["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert api["environment"]["METRICS_PORT"] == "0"
    assert [port["target"] for port in api["ports"]] == [8000]
    assert "METRICS_PORT" not in services["bootstrap"]["environment"]
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
    images = {
        "API_IMAGE": "m/api:1",
        "POSTGRES_IMAGE": "m/pg:1",
        "KESTRA_IMAGE": "m/k:1",
        "PYTHON_BASE_IMAGE": "m/py:1",
        "INFERENCE_IMAGE": "m/yolo:1",
    }
    over = config(compose_docker, {**env, **images})["services"]
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


def test_the_gpu_override_swaps_the_flow_path_and_the_image(compose_docker: Docker) -> None:
    """docker-compose.gpu.yml: Kestra reads flows-gpu/ (deviceRequests) in place of flows/,
    and the seed step and the tasks use INFERENCE_GPU_IMAGE. Not run here (no GPU)."""
    env = {**secrets_env(), "INFERENCE_GPU_IMAGE": "m/yolo-gpu:1"}
    model = config(compose_docker, env, (*MAIN_FILES, "docker-compose.gpu.yml"))
    services = model["services"]
    kestra = services["kestra"]
    [flows] = [v for v in kestra["volumes"] if v["target"] == "/flows"]
    assert Path(flows["source"]) == ROOT / "flows-gpu"
    assert flows["read_only"] is True
    assert kestra["environment"]["ENV_YOLO_IMAGE"] == "m/yolo-gpu:1"
    assert services["inference-image"]["image"] == "m/yolo-gpu:1"
    # The default is the CUDA build of the pinned CPU image.
    default = config(compose_docker, secrets_env(), (*MAIN_FILES, "docker-compose.gpu.yml"))
    assert default["services"]["kestra"]["environment"]["ENV_YOLO_IMAGE"] == (
        "ultralytics/ultralytics:8.4.190"
    )


def test_kestra_split_into_its_components(compose_docker: Docker) -> None:
    """docker-compose.kestra-split.yml (not run here: no Kestra image): the standalone
    server's roles as services of one image, one configuration, one database; only the
    worker has root and the Docker socket; the flows are pushed through the webserver."""
    env = {**secrets_env(), "KESTRA_WORKER_THREADS": "8"}
    services = config(compose_docker, env, (*MAIN_FILES, "docker-compose.kestra-split.yml"))[
        "services"
    ]
    roles = {
        "kestra": "webserver",
        "kestra-executor": "executor",
        "kestra-scheduler": "scheduler",
        "kestra-worker": "worker",
    }
    images = {services[name]["image"] for name in [*roles, "kestra-flows"]}
    assert len(images) == 1
    assert images.pop().startswith("kestra/kestra:v1.3.")
    database = services["kestra"]["environment"]["KESTRA_DB_HOST"]
    for name, role in roles.items():
        service = services[name]
        assert service["command"][:4] == [
            "server",
            role,
            "--config",
            "/etc/config/application.yaml",
        ]
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts["/etc/config/application.yaml"]["source"] == str(
            ROOT / "kestra" / "application.yml"
        )
        assert mounts["/app/storage"]["source"] == "kestra-data"
        assert service["environment"]["KESTRA_DB_HOST"] == database
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"], name
        worker = role == "worker"
        assert ("/var/run/docker.sock" in mounts) is worker, name
        assert ("/tmp/kestra-wd" in mounts) is worker, name
        assert (service.get("user") == "root") is worker, name
        assert bool(service.get("ports")) is (name == "kestra"), name  # the API's KESTRA_URL
    assert "--no-tutorials" in services["kestra"]["command"]
    assert services["kestra-worker"]["command"][-2:] == ["--thread", "8"]
    assert services["kestra-worker"]["environment"]["ENV_SHARED_VOLUME"] == "yolo-shared-data"
    assert set(services["kestra-worker"]["depends_on"]) == {
        "kestra",
        "bootstrap",
        "inference-image",
    }
    flows = services["kestra-flows"]
    assert flows["restart"] == "no"
    assert "flow namespace update inference /flows --no-delete" in flows["command"][0]
    assert "--server http://kestra:8080" in flows["command"][0]
    assert [v["target"] for v in flows["volumes"]] == ["/flows"]


@dataclass
class Stack:
    compose: Compose
    url: str

    @property
    def admin(self) -> dict[str, str]:
        """The admin key .env gave, as a header."""
        return {"Authorization": f"Bearer {self.compose.env['ADMIN_API_KEY']}"}


@pytest.fixture(scope="module")
def offline_stack(
    compose_docker: Docker, api_image: BuiltImage, postgres_image: str
) -> Iterator[Stack]:
    project = new_project("yolotest")
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
    stack = Stack(Compose(compose_docker, project, env), f"http://127.0.0.1:{port}")
    up = stack.compose("up", "-d", "--wait", "--wait-timeout", "240", timeout=400, check=False)
    try:
        if up.returncode != 0:
            pytest.fail(f"compose up failed:\n{up.stderr[-4000:]}\n{stack.compose.logs()[-6000:]}")
        yield stack
    finally:
        stack.compose.down()


def test_api_and_postgres_healthy(docker: Docker, offline_stack: Stack) -> None:
    rows = offline_stack.compose.ps()
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


def test_upload_is_accepted_and_stored(docker: Docker, offline_stack: Stack) -> None:
    image = encode("PNG", 64, 48, "#c81e1e")
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
    rows = offline_stack.compose.ps()
    listing = docker(
        "exec", rows["api"]["Name"], "sh", "-c", f"stat -c '%u %s' /data/uploads/{job['id']}.png"
    ).stdout.split()
    assert listing == ["1000", str(len(image))]
    # ...and recorded in the API's database (its own role and database).
    # psql's own quoting (:'job_id'), not string formatting.
    query = "SELECT size_bytes, sha256 FROM jobs WHERE id = :'job_id'"
    rows_of = docker.psql(rows["postgres"]["Name"], "yolo", query, job_id=job["id"])
    assert rows_of == [[str(len(image)), hashlib.sha256(image).hexdigest()]]


def test_keys_are_required_and_made_with_the_command(docker: Docker, offline_stack: Stack) -> None:
    url, image = offline_stack.url, encode("PNG", 64, 48, "#c81e1e")
    files = [("files", ("red.png", image, "image/png"))]
    refused = httpx.post(f"{url}/v1/uploads", files=files, timeout=30)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    # The README's way to give a client its own key.
    api = offline_stack.compose.ps()["api"]["Name"]
    made = docker("exec", api, "python", "-m", "app.keys", "create", "alice").stdout
    alice = {"Authorization": f"Bearer {made.strip().splitlines()[-1]}"}
    mine = httpx.post(f"{url}/v1/uploads", files=files, headers=alice, timeout=30)
    assert mine.status_code == 202, mine.text
    job_id = mine.json()["jobs"][0]["id"]
    admins = httpx.post(f"{url}/v1/uploads", files=files, headers=offline_stack.admin, timeout=30)
    theirs = admins.json()["jobs"][0]["id"]
    assert httpx.get(f"{url}/v1/jobs/{theirs}", headers=alice, timeout=30).status_code == 404
    assert httpx.get(f"{url}/v1/jobs/{job_id}", headers=offline_stack.admin).status_code == 200


def test_databases_are_separated(docker: Docker, offline_stack: Stack) -> None:
    pg = offline_stack.compose.ps()["postgres"]["Name"]
    env = offline_stack.compose.env

    def connect(user: str, password: str, db: str) -> subprocess.CompletedProcess[str]:
        psql = ["psql", "-h", "127.0.0.1", "-U", user, "-d", db, "-tAc", "SELECT current_user"]
        return docker("exec", "-e", f"PGPASSWORD={password}", pg, *psql, check=False)

    assert connect("yolo", env["APP_DB_PASSWORD"], "yolo").stdout.strip() == "yolo"
    assert connect("kestra", env["KESTRA_DB_PASSWORD"], "kestra").stdout.strip() == "kestra"
    denied = connect("kestra", env["KESTRA_DB_PASSWORD"], "yolo")
    assert denied.returncode != 0
    assert "permission denied" in denied.stderr
    superusers = "SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1"
    assert docker.psql(pg, "postgres", superusers) == [["postgres"]]


def test_volume_has_fixed_name_and_app_layout(
    docker: Docker, offline_stack: Stack, api_image: BuiltImage
) -> None:
    run = ["run", "--rm", "-v", f"{offline_stack.compose.volume}:/data", "--entrypoint"]
    stat = "stat -c '%n %u' /data/uploads /data/results /data/scripts/detect.py"
    out = docker(*run, "sh", api_image.tag, "-c", stat).stdout.split("\n")
    owners = dict(line.split() for line in out if line)
    assert owners == {
        "/data/uploads": "1000",
        "/data/results": "1000",
        "/data/scripts/detect.py": "1000",
    }
    # The same bytes as the repository's flows/detect.py.
    copied = docker(*run, "cat", api_image.tag, "/data/scripts/detect.py").stdout
    assert copied == (ROOT / "flows" / "detect.py").read_text()

"""Checks of kestra/application.yml: the settings the stack depends on."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support.paths import ROOT

CONFIG = ROOT / "kestra" / "application.yml"
PLACEHOLDER = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:[^}]*)?\}$")


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def test_postgres_repository_and_queue() -> None:
    cfg = load()
    ds = cfg["datasources"]["postgres"]
    assert ds["url"].startswith("jdbc:postgresql://")
    assert ds["driverClassName"] == "org.postgresql.Driver"
    assert PLACEHOLDER.match(ds["password"])
    assert ":" not in ds["password"], "no default password"
    assert cfg["kestra"]["repository"]["type"] == "postgres"
    assert cfg["kestra"]["queue"]["type"] == "postgres"


def test_storage_tmpdir_url() -> None:
    k = load()["kestra"]
    assert k["storage"] == {"type": "local", "local": {"base-path": "/app/storage"}}
    assert k["tasks"]["tmp-dir"]["path"] == "/tmp/kestra-wd/tmp"
    assert "8080" in k["url"]


def test_basic_auth_from_environment_without_defaults() -> None:
    auth = load()["kestra"]["server"]["basic-auth"]
    for key in ("username", "password"):
        assert PLACEHOLDER.match(auth[key]), auth[key]
        assert ":" not in auth[key], "no default"


def test_docker_runner_volumes_enabled() -> None:
    confs = load()["kestra"]["plugins"]["configurations"]
    docker = [c for c in confs if c["type"] == "io.kestra.plugin.scripts.runner.docker.Docker"]
    assert docker
    assert docker[0]["values"]["volume-enabled"] is True


def test_env_prefix_matches_flow() -> None:
    assert load()["kestra"]["variables"]["env-vars-prefix"] == "ENV_"
    flow = (ROOT / "flows" / "yolo-detect.yml").read_text()
    for name in ("envs.api_url", "envs.callback_token", "envs.shared_volume", "envs.yolo_image"):
        assert name in flow


def test_no_tutorial_flows_are_loaded_from_the_internet() -> None:
    assert load()["kestra"]["tutorial-flows"] == {"enabled": False}
    compose = yaml.safe_load((CONFIG.parents[1] / "docker-compose.yml").read_text())
    assert "--no-tutorials" in compose["services"]["kestra"]["command"].split()

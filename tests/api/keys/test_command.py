"""`python -m app.keys` and the first key from .env (bootstrap), as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys

from fastapi.testclient import TestClient

from app.main import create_app
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer, keyed_client
from tests.support.paths import ROOT
from tests.support.webhooks import SECRET


def run(module: str, *args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "api"), "DATABASE_URL": database_url}
    environment.pop("ADMIN_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**environment, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_create_list_revoke(make_settings: SettingsFactory, database_url: str) -> None:
    created = run("app.keys", "create", "alice", database_url=database_url)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("yk_")
    listed = run("app.keys", "list", database_url=database_url)
    assert "alice" in listed.stdout
    assert key not in listed.stdout
    with TestClient(create_app(make_settings())) as client:
        assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
        assert client.get("/v1/keys", headers=bearer(key)).status_code == 403  # not an admin
        assert run("app.keys", "revoke", "alice", database_url=database_url).returncode == 0
        assert client.get("/v1/jobs", headers=bearer(key)).status_code == 401
    again = run("app.keys", "create", "alice", database_url=database_url)
    assert again.returncode == 1
    assert "exists already" in again.stderr


def test_create_with_a_default_webhook_url(
    make_settings: SettingsFactory, database_url: str
) -> None:
    url = "https://hooks.example.com/yolo"
    refused = run("app.keys", "create", "bob", "--callback-url", url, database_url=database_url)
    assert refused.returncode == 1
    assert "WEBHOOK_SECRET is not set" in refused.stderr
    bad = "http://user:pw@hooks.example.com/"
    args = ("create", "bob", "--callback-url")
    refused = run("app.keys", *args, bad, database_url=database_url, WEBHOOK_SECRET=SECRET)
    assert refused.returncode == 1
    assert "no credentials in the URL" in refused.stderr
    created = run("app.keys", *args, url, database_url=database_url, WEBHOOK_SECRET=SECRET)
    assert created.returncode == 0, created.stderr
    with keyed_client(make_settings()) as client:
        keys = client.get("/v1/keys", headers=bearer(ADMIN_KEY)).json()["keys"]
    assert [k["callback_url"] for k in keys if k["name"] == "bob"] == [url]


def test_bootstrap_stores_the_admin_key_from_env_once_and_rotates_it(
    make_settings: SettingsFactory, database_url: str, shared_dir: object
) -> None:
    first, second = "a" * 40, "b" * 40
    # `make dev`'s Local orchestrator: bootstrap wants a MODEL it can find.
    env = {"SHARED_DATA_DIR": str(shared_dir), "MODEL": "tests/fixtures/model/shapes.pt"}
    for key in (first, first):
        done = run("app.bootstrap", database_url=database_url, ADMIN_API_KEY=key, **env)
        assert done.returncode == 0, done.stderr
    listed = run("app.keys", "list", database_url=database_url).stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["admin"]
    with TestClient(create_app(make_settings())) as client:
        assert client.get("/v1/keys", headers=bearer(first)).status_code == 200
        run("app.bootstrap", database_url=database_url, ADMIN_API_KEY=second, **env)
        assert client.get("/v1/keys", headers=bearer(first)).status_code == 401
        assert client.get("/v1/keys", headers=bearer(second)).status_code == 200


def test_a_guessable_admin_key_stops_bootstrap_with_one_line(database_url: str) -> None:
    done = run("app.bootstrap", database_url=database_url, ADMIN_API_KEY="short")
    assert done.returncode == 1
    assert "ADMIN_API_KEY must have at least 32 characters" in done.stderr
    assert "Traceback" not in done.stderr

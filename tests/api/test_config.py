"""Settings: one class from the environment; a missing secret stops start-up clearly."""

from __future__ import annotations

import base64
from ipaddress import ip_network

import pytest

from app.config import OrchestratorKind, Refusal, Settings, load_settings
from tests.support.processes import clean_env, run_module
from tests.support.webhooks import SECRET


def kestra_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in {"ORCHESTRATOR": "kestra", "CALLBACK_TOKEN": "token", **values}.items():
        monkeypatch.setenv(name, value)


def test_defaults_are_the_no_docker_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "ORCHESTRATOR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.orchestrator is OrchestratorKind.LOCAL
    assert settings.uses_sqlite


def test_kestra_mode_requires_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR", "kestra")
    monkeypatch.delenv("KESTRA_PASSWORD", raising=False)
    monkeypatch.delenv("CALLBACK_TOKEN", raising=False)
    with pytest.raises(Refusal) as exc:
        load_settings()
    assert "KESTRA_PASSWORD and CALLBACK_TOKEN must be set" in str(exc.value)


def test_server_refuses_to_start_without_the_secret() -> None:
    env = clean_env(ORCHESTRATOR="kestra", KESTRA_PASSWORD="Secret123")  # no CALLBACK_TOKEN
    proc = run_module("uvicorn", env, "app.main:app", "--port", "0")
    assert proc.returncode != 0
    assert "CALLBACK_TOKEN must be set" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr  # one line, logged by RefusalGuard


@pytest.mark.parametrize(
    ("username", "password", "words"),
    [
        ("admin", "Admin1234", "KESTRA_USERNAME must be an email address"),
        ("admin@localhost", "Admin1234", "KESTRA_USERNAME must be an email address"),
        ("admin@example.com", "Ab1", "KESTRA_PASSWORD must have 8 to 256 characters"),
        ("admin@example.com", "admin1234", "an upper-case letter"),
        ("admin@example.com", "ADMIN1234", "a lower-case letter"),
        ("admin@example.com", "AdminAdmin", "a digit"),
        ("admin@example.com", "A1" + "a" * 255, "8 to 256 characters"),
    ],
)
def test_credentials_kestra_would_refuse_stop_start_up(
    monkeypatch: pytest.MonkeyPatch, username: str, password: str, words: str
) -> None:
    kestra_env(monkeypatch, KESTRA_USERNAME=username, KESTRA_PASSWORD=password)
    with pytest.raises(Refusal) as exc:
        load_settings()
    assert words in str(exc.value)
    assert "Kestra would refuse every call" in str(exc.value)


def test_credentials_kestra_accepts_start(monkeypatch: pytest.MonkeyPatch) -> None:
    kestra_env(monkeypatch, KESTRA_USERNAME="ops@example.com", KESTRA_PASSWORD="Admin1234")
    assert load_settings().kestra_username == "ops@example.com"


@pytest.mark.parametrize(
    "secret", ["whsec_abc", "whsec_not base64!", "whsec_" + base64.b64encode(b"x" * 16).decode()]
)
def test_a_webhook_secret_not_of_24_to_64_bytes_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    with pytest.raises(Refusal) as exc:
        load_settings()
    assert "WEBHOOK_SECRET must be whsec_ followed by the base64" in str(exc.value)
    assert secret not in str(exc.value)


def test_webhook_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "")  # compose's default: webhooks off
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8, fd00::/8")
    settings = load_settings()
    assert settings.webhook_secret is None
    assert settings.webhook_networks == (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(Refusal) as exc:
        load_settings()
    assert "WEBHOOK_ALLOWED_NETWORKS" in str(exc.value)

"""GET /health and /ready."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from tests.api.factories import kestra_settings
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer
from tests.support.kestra import KestraStandin
from tests.support.net import free_port


def test_health_touches_nothing(make_settings: SettingsFactory) -> None:
    settings = make_settings(database_url="postgresql+psycopg2://x@127.0.0.1:1/none")
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json() == {"status": "ok"}


def test_ready_when_database_and_kestra_answer(kestra_client: TestClient) -> None:
    response = kestra_client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "storage": "ok", "orchestrator": "ok"}


def test_ready_is_503_with_the_reason_when_kestra_is_down(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    kestra.stop()
    with TestClient(create_app(make_settings(**kestra_settings(kestra)))) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert "cannot connect to Kestra" in checks["orchestrator"]


def test_ready_is_503_when_kestra_rejects_credentials(
    make_settings: SettingsFactory, kestra: KestraStandin
) -> None:
    settings = make_settings(**{**kestra_settings(kestra), "kestra_password": "Wrong1234"})
    with TestClient(create_app(settings)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert "credentials" in response.json()["checks"]["orchestrator"]


def test_ready_is_503_when_the_database_is_down(make_settings: SettingsFactory) -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing"
    with TestClient(create_app(make_settings(database_url=url, db_connect_timeout_s=1))) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


def test_database_down_during_a_request_is_503_with_retry_after(
    make_settings: SettingsFactory,
) -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing"
    with TestClient(create_app(make_settings(database_url=url, db_connect_timeout_s=1))) as client:
        response = client.get("/v1/jobs", headers=bearer(ADMIN_KEY))  # its check needs the db
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "database_unavailable"

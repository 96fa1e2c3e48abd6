"""Where a scrape is answered: the API's port, a port of its own held by one worker, or
nowhere; and several workers' events added up in one scrape."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Refusal
from app.main import create_app
from app.startup import check_metrics
from tests.support.api_app import SettingsFactory, keyed_client
from tests.support.metrics import scrape, scrape_port, value
from tests.support.net import free_port
from tests.support.processes import clean_env

# What one worker does: a batch of `n` jobs dispatched and a webhook delivered.
WORKER = (
    "import sys; from app.metrics.events import record_batch, record_webhook_delivery; "
    "record_batch(int(sys.argv[1])); record_webhook_delivery('delivered')"
)


def test_turned_off_it_is_a_404_in_the_one_error_shape(make_settings: SettingsFactory) -> None:
    with keyed_client(make_settings(metrics_enabled=False, metrics_port=free_port())) as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "METRICS_ENABLED" in response.json()["error"]["message"]


def test_on_its_own_port_it_is_served_there_and_not_on_the_api_port(
    make_settings: SettingsFactory,
) -> None:
    port = free_port()
    with keyed_client(make_settings(metrics_port=port)) as client:
        response = client.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        samples = scrape_port(port)
        assert value(samples, "yolo_database_up") == 1
        assert value(samples, "yolo_jobs", status="queued") == 0
    with pytest.raises(urllib.error.URLError):  # closed with the app
        scrape_port(port)


def test_the_first_worker_holds_the_port_and_the_second_goes_on_without(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(
        metrics_port=port, web_concurrency=2, prometheus_multiproc_dir=tmp_path / "metrics"
    )
    with keyed_client(settings), keyed_client(settings) as second:
        assert second.get("/health").status_code == 200
        assert value(scrape_port(port), "yolo_database_up") == 1


def test_one_worker_refuses_a_port_that_is_taken(make_settings: SettingsFactory) -> None:
    port = free_port()
    with keyed_client(make_settings(metrics_port=port)):
        app = create_app(make_settings(metrics_port=port))
        with (
            pytest.raises(Refusal, match=f"METRICS_PORT={port} is already in use"),
            TestClient(app),
        ):
            pass


def test_several_workers_need_a_directory_to_add_their_events_up(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    with pytest.raises(Refusal, match="WEB_CONCURRENCY=2 needs PROMETHEUS_MULTIPROC_DIR"):
        check_metrics(make_settings(web_concurrency=2))
    check_metrics(make_settings(web_concurrency=2, metrics_enabled=False))
    directory = tmp_path / "made" / "here"
    check_metrics(make_settings(web_concurrency=2, prometheus_multiproc_dir=directory))
    assert directory.is_dir()


def test_two_workers_events_add_up_in_one_scrape(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Two processes in prometheus_client's multiprocess mode, as two uvicorn workers are;
    a third scrapes the directory through the route."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = clean_env(PROMETHEUS_MULTIPROC_DIR=str(directory))
    for size in (3, 5):
        subprocess.run([sys.executable, "-c", WORKER, str(size)], env=env, check=True, timeout=60)
    assert len(list(directory.glob("*.db"))) >= 2
    with keyed_client(make_settings(prometheus_multiproc_dir=directory)) as client:
        samples = scrape(client)
    assert value(samples, "yolo_batch_size_count") == 2
    assert value(samples, "yolo_batch_size_sum") == 8
    assert value(samples, "yolo_batch_size_bucket", le="4.0") == 1
    assert value(samples, "yolo_webhook_deliveries_total", outcome="delivered") == 2
    assert value(samples, "yolo_jobs", status="queued") == 0  # and the state, from the database

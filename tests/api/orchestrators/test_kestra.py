"""The Kestra adapter against the HTTP stand-in that follows Kestra's documented contract."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from app.orchestrators.base import (
    ExecutionNotFound,
    ExportRequest,
    OrchestratorRejected,
    OrchestratorUnavailable,
    Phase,
    Submission,
)
from app.orchestrators.kestra import KestraOrchestrator
from tests.api.factories import kestra_settings
from tests.support.api_app import SettingsFactory
from tests.support.kestra import KestraStandin
from tests.support.net import free_port

BATCH_ID = "0e2b7c1a-3f4d-4c8e-9a6b-5d1f2e3c4b5a"
JOBS = (
    ("6f1c1c9e-8a51-4b8e-9d7e-0c7d7d3f0a11", "uploads/6f1c1c9e-8a51-4b8e-9d7e-0c7d7d3f0a11.jpg"),
    ("7a2d2d0f-9b62-4c9f-8e8f-1d8e8e4f1b22", "uploads/7a2d2d0f-9b62-4c9f-8e8f-1d8e8e4f1b22.png"),
)
SUBMISSION = Submission(BATCH_ID, JOBS, "yolo11n.pt", 0.25, 640)
EXPORT = ExportRequest("4c3b2a19-0f8e-4d7c-9b6a-5e4d3c2b1a09", "models/shapes.pt", "openvino", 640)

AdapterFactory = Callable[..., KestraOrchestrator]


@pytest.fixture
def make_adapter(make_settings: SettingsFactory, kestra: KestraStandin) -> AdapterFactory:
    """Adapters to the stand-in, with these settings overridden."""

    def factory(retry_backoff_s: float = 0.01, **overrides: Any) -> KestraOrchestrator:
        settings = make_settings(**{**kestra_settings(kestra), **overrides})
        return KestraOrchestrator(settings, retry_backoff_s=retry_backoff_s)

    return factory


@pytest.fixture
def adapter(make_adapter: AdapterFactory) -> Iterator[KestraOrchestrator]:
    orchestrator = make_adapter()
    yield orchestrator
    orchestrator.close()


def test_submit_sends_inputs_as_form_fields_and_the_batch_label(
    adapter: KestraOrchestrator, kestra: KestraStandin
) -> None:
    execution = adapter.submit(SUBMISSION)
    assert execution.batch_id == BATCH_ID
    assert execution.phase is Phase.PENDING
    stored = kestra.state.executions[execution.id]
    assert stored["inputs"] == {
        "batch_id": BATCH_ID,
        "jobs": " ".join(f"{job_id}={path}" for job_id, path in JOBS),
        "model": "yolo11n.pt",
        "confidence": 0.25,
        "image_size": 640,
    }
    assert stored["labels"] == [{"key": "batch_id", "value": BATCH_ID}]
    (create,) = [r for r in kestra.state.requests if r["method"] == "POST"]
    assert create["path"] == "/api/v1/main/executions/inference/yolo-detect"
    assert parse_qs(create["query"]) == {"labels": [f"batch_id:{BATCH_ID}"]}


def test_find_by_batch_uses_the_label(adapter: KestraOrchestrator, kestra: KestraStandin) -> None:
    assert adapter.find_by_batch(BATCH_ID) is None
    execution = adapter.submit(SUBMISSION)
    found = adapter.find_by_batch(BATCH_ID)
    assert found is not None
    assert found.id == execution.id


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("CREATED", Phase.PENDING),
        ("QUEUED", Phase.PENDING),
        ("RUNNING", Phase.RUNNING),
        ("RETRYING", Phase.RUNNING),
        ("PAUSED", Phase.RUNNING),
        ("SUCCESS", Phase.SUCCEEDED),
        ("WARNING", Phase.SUCCEEDED),
        ("FAILED", Phase.FAILED),
        ("KILLED", Phase.FAILED),
        ("CANCELLED", Phase.FAILED),
        ("SOMETHING_NEW", None),  # unknown: no phase, so it changes no job
    ],
)
def test_states_map_to_phases(
    adapter: KestraOrchestrator, kestra: KestraStandin, state: str, phase: Phase | None
) -> None:
    execution = adapter.submit(SUBMISSION)
    kestra.state.set_state(execution.id, state)
    assert adapter.get(execution.id).phase is phase


def test_failure_reason_comes_from_kestra(
    adapter: KestraOrchestrator, kestra: KestraStandin
) -> None:
    execution = adapter.submit(SUBMISSION)
    kestra.state.set_state(execution.id, "FAILED", failed_task="detect")
    reason = adapter.get(execution.id).reason or ""
    assert "ended FAILED" in reason
    assert "task 'detect' failed after 2 attempt(s)" in reason


def test_the_end_date_is_kestras_once_the_execution_has_ended(
    adapter: KestraOrchestrator, kestra: KestraStandin
) -> None:
    execution = adapter.submit(SUBMISSION)
    kestra.state.set_state(execution.id, "RUNNING")
    assert execution.ended_at is None
    assert adapter.get(execution.id).ended_at is None
    kestra.state.set_state(execution.id, "SUCCESS")
    end_date = kestra.state.executions[execution.id]["state"]["endDate"]
    assert adapter.get(execution.id).ended_at == datetime.fromisoformat(end_date)


def test_unknown_execution_is_not_found(adapter: KestraOrchestrator) -> None:
    with pytest.raises(ExecutionNotFound):
        adapter.get("doesnotexist")


@pytest.mark.parametrize(
    ("overrides", "submission", "rejection"),
    [
        ({"kestra_password": "Wrong1234"}, SUBMISSION, (401, False)),
        ({"kestra_flow_id": "nope"}, SUBMISSION, (404, False)),
        ({}, replace(SUBMISSION, jobs=((JOBS[0][0], "../../etc/passwd"),)), (422, True)),
    ],
    ids=["bad-credentials", "missing-flow", "invalid-inputs"],
)
def test_a_4xx_is_a_rejection_not_a_retry(
    make_adapter: AdapterFactory,
    kestra: KestraStandin,
    overrides: dict[str, str],
    submission: Submission,
    rejection: tuple[int, bool],
) -> None:
    adapter = make_adapter(**overrides)
    with pytest.raises(OrchestratorRejected) as exc:
        adapter.submit(submission)
    assert (exc.value.status_code, exc.value.job_fault) == rejection  # the jobs' fault on a 422
    assert kestra.state.executions == {}
    assert len(kestra.state.requests) == 1  # no retries on a 4xx


def test_disabled_flow_is_409_rejection(adapter: KestraOrchestrator, kestra: KestraStandin) -> None:
    kestra.state.flow_disabled = True
    with pytest.raises(OrchestratorRejected) as exc:
        adapter.submit(SUBMISSION)
    assert exc.value.status_code == 409


def test_5xx_is_retried_after_looking_the_label_up(
    adapter: KestraOrchestrator, kestra: KestraStandin
) -> None:
    kestra.state.faults.fail_next = 1
    execution = adapter.submit(SUBMISSION)
    assert len(kestra.state.executions) == 1
    methods = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in kestra.state.requests]
    # Created again only after looking the label up for the visibility grace.
    assert methods[0] == methods[-1] == ("POST", "yolo-detect")
    assert set(methods[1:-1]) == {("GET", "search")}
    assert execution.batch_id == BATCH_ID


# Kestra creates asynchronously: the execution may show in search only a while after.
@pytest.mark.parametrize("visibility_delay_s", [0.0, 1.5], ids=["at-once", "queued"])
@pytest.mark.parametrize(
    ("fault", "value"),
    [("create_then_fail", True), ("delay_s", 0.6)],  # answered 500, or after the read timeout
    ids=["created-then-500", "read-timeout"],
)
def test_an_unclear_create_is_looked_up_not_repeated(
    make_adapter: AdapterFactory,
    kestra: KestraStandin,
    fault: str,
    value: object,
    visibility_delay_s: float,
) -> None:
    kestra.state.visibility_delay_s = visibility_delay_s
    adapter = make_adapter(
        retry_backoff_s=0.5, kestra_visibility_grace_s=4.0, kestra_read_timeout_s=0.3
    )
    setattr(kestra.state.faults, fault, value)
    execution = adapter.submit(SUBMISSION)
    assert list(kestra.state.executions) == [execution.id]  # one execution for the batch


def test_the_queue_window_is_real_without_the_grace(
    make_adapter: AdapterFactory, kestra: KestraStandin
) -> None:
    """What the grace prevents: looking once, right away, misses the queued execution."""
    kestra.state.visibility_delay_s = 1.5
    kestra.state.faults.create_then_fail = True
    make_adapter(kestra_visibility_grace_s=0.0).submit(SUBMISSION)
    assert len(kestra.state.executions) == 2  # the batch started twice


def test_persistent_5xx_is_unavailable(adapter: KestraOrchestrator, kestra: KestraStandin) -> None:
    kestra.state.faults.fail_next = 100
    with pytest.raises(OrchestratorUnavailable):
        adapter.submit(SUBMISSION)
    assert kestra.state.executions == {}


def test_down_is_unavailable(adapter: KestraOrchestrator, kestra: KestraStandin) -> None:
    kestra.stop()
    with pytest.raises(OrchestratorUnavailable, match="cannot connect"):
        adapter.submit(SUBMISSION)
    with pytest.raises(OrchestratorUnavailable):
        adapter.ping()


@pytest.mark.parametrize(
    ("username", "password"),
    [("admin", "Admin1234"), ("admin@example.com", "admin1234"), ("admin@example.com", "Ab1")],
)
def test_the_standin_like_kestra_refuses_credentials_kestra_would_not_store(
    username: str, password: str
) -> None:
    standin = KestraStandin(free_port(), username=username, password=password)
    standin.start()
    try:
        flow = f"{standin.url}/api/v1/main/flows/inference/yolo-detect"
        answer = httpx.get(flow, auth=(username, password), timeout=5)
    finally:
        standin.stop()
    assert answer.status_code == 401  # every call, even with exactly these credentials


def test_start_export_creates_a_labelled_execution_of_the_export_flow(
    adapter: KestraOrchestrator, kestra: KestraStandin
) -> None:
    execution = adapter.start_export(EXPORT)

    assert execution.phase is Phase.PENDING
    stored = kestra.state.executions[execution.id]
    assert stored["flowId"] == "yolo-export"
    assert stored["inputs"] == {
        "export_id": EXPORT.export_id,
        "model": "models/shapes.pt",
        "format": "openvino",
        "image_size": 640,
    }
    assert stored["labels"] == [{"key": "export_id", "value": EXPORT.export_id}]
    assert adapter.get(execution.id).id == execution.id


def test_start_export_again_adopts_the_execution_unless_it_failed(
    adapter: KestraOrchestrator, kestra: KestraStandin
) -> None:
    """The reconciler starts an export again when it lost track of it: never twice at once."""
    first = adapter.start_export(EXPORT)
    kestra.state.set_state(first.id, "RUNNING")
    assert adapter.start_export(EXPORT).id == first.id
    assert adapter.start_export(replace(EXPORT, export_id=BATCH_ID)).id != first.id

    kestra.state.set_state(first.id, "FAILED", failed_task="export")
    again = adapter.start_export(EXPORT)
    assert again.id != first.id
    creates = [r for r in kestra.state.requests if r["method"] == "POST"]
    assert len(creates) == 3


def test_start_export_while_kestra_is_down_is_unavailable(
    adapter: KestraOrchestrator, kestra: KestraStandin
) -> None:
    kestra.stop()
    with pytest.raises(OrchestratorUnavailable):
        adapter.start_export(EXPORT)

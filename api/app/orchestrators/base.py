"""The orchestrator port: what the pipeline needs from whatever runs inference."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Phase(StrEnum):
    """An execution's state, reduced to what a job cares about. Each adapter maps its own
    states to these; one it does not know maps to no phase (logged, changes no job)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Submission:
    """One execution over a batch of jobs sharing their inference parameters."""

    batch_id: str
    jobs: tuple[tuple[str, str], ...]  # (job id, image path relative to the shared data dir)
    model: str
    confidence: float
    image_size: int


@dataclass(frozen=True)
class ExportRequest:
    """One export of a model of the volume (flows/yolo-export.yml, `detect.py --export`)."""

    export_id: str
    model: str  # models/<name>.pt, relative to the shared data dir
    format: str  # onnx or openvino
    image_size: int


@dataclass(frozen=True)
class Execution:
    id: str
    state: str  # the orchestrator's own name for it, shown as the job's orchestrator_state
    phase: Phase | None  # None: a state the adapter does not know
    batch_id: str | None = None
    reason: str | None = None  # why it failed, in the orchestrator's words
    ended_at: datetime | None = None  # when it reached its final state, if it has and we know


class OrchestratorError(Exception):
    """Base class; `str(exc)` is readable."""


class OrchestratorUnavailable(OrchestratorError):
    """Transient (cannot connect, timeout, 5xx): try again later."""


class OrchestratorRejected(OrchestratorError):
    """The orchestrator refused the request (4xx); retrying it won't help."""

    def __init__(self, message: str, status_code: int, *, job_fault: bool = False) -> None:
        super().__init__(message)
        self.status_code = status_code
        # True: the job's own inputs were refused (fail it). False: our configuration is
        # wrong (bad credentials, missing flow), so keep the job queued.
        self.job_fault = job_fault


class ExecutionNotFound(OrchestratorError):
    pass


class Orchestrator(Protocol):
    name: str

    def submit(self, submission: Submission) -> Execution:
        """Start one execution for the batch. Not idempotent: on retries, find_by_batch first."""

    def find_by_batch(self, batch_id: str) -> Execution | None:
        """The execution already started for this batch, if any."""

    def start_export(self, request: ExportRequest) -> Execution:
        """Start the export, or return the execution already started for its export id."""

    def get(self, execution_id: str) -> Execution: ...

    def ping(self) -> None:
        """Raise OrchestratorUnavailable when it cannot take work."""

    def close(self) -> None: ...

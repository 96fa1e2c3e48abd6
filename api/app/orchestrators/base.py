"""The orchestrator port: what the job pipeline needs from whatever runs inference."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Phase(StrEnum):
    """An execution's state, reduced to what a job cares about."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


# Kestra's execution states (the Local adapter reports in the same vocabulary, so a
# callback, a poll and a local run all go through one mapping). Unknown states are
# treated as still running: never finish a job on a state we do not understand.
_KESTRA_PHASES: dict[str, Phase] = {
    "CREATED": Phase.PENDING,
    "QUEUED": Phase.PENDING,
    "SUBMITTED": Phase.PENDING,
    "RUNNING": Phase.RUNNING,
    "PAUSED": Phase.RUNNING,
    "RESTARTED": Phase.RUNNING,
    "RETRYING": Phase.RUNNING,
    "KILLING": Phase.RUNNING,
    "BREAKPOINT": Phase.RUNNING,
    "SUCCESS": Phase.SUCCEEDED,
    "WARNING": Phase.SUCCEEDED,
    "FAILED": Phase.FAILED,
    "KILLED": Phase.FAILED,
    "CANCELLED": Phase.FAILED,
    "SKIPPED": Phase.FAILED,
    "RETRIED": Phase.FAILED,
    "RESUBMITTED": Phase.FAILED,
}


def phase_of(state: str) -> Phase:
    return _KESTRA_PHASES.get(state.upper(), Phase.RUNNING)


@dataclass(frozen=True)
class Submission:
    job_id: str
    image_path: str  # relative to the shared data dir
    model: str
    confidence: float
    image_size: int


@dataclass(frozen=True)
class Execution:
    id: str
    state: str  # the orchestrator's own state name (Kestra vocabulary)
    job_id: str | None = None
    reason: str | None = None  # why it failed, in the orchestrator's words

    @property
    def phase(self) -> Phase:
        return phase_of(self.state)


class OrchestratorError(Exception):
    """Base class; `str(exc)` is readable."""


class OrchestratorUnavailable(OrchestratorError):
    """Transient: cannot connect, timed out, or 5xx. Try again later."""


class OrchestratorRejected(OrchestratorError):
    """The orchestrator refused the request (4xx). Retrying the same request won't help."""

    def __init__(self, message: str, status_code: int, *, job_fault: bool = False) -> None:
        super().__init__(message)
        self.status_code = status_code
        # True when the job's own inputs were refused (fail the job); False for our
        # configuration (bad credentials, missing flow): keep the job queued.
        self.job_fault = job_fault


class ExecutionNotFound(OrchestratorError):
    pass


class Orchestrator(Protocol):
    name: str

    def submit(self, submission: Submission) -> Execution:
        """Start one execution for the job. Not idempotent: call find_by_job first on retries."""
        ...

    def find_by_job(self, job_id: str) -> Execution | None:
        """The execution already started for this job, if any."""
        ...

    def get(self, execution_id: str) -> Execution: ...

    def ping(self) -> None:
        """Raise OrchestratorUnavailable when it cannot take work."""
        ...

    def close(self) -> None: ...

"""Where an upload becomes a job, and the one place a job changes status.

Functions take a Session and never commit: the request (or the worker's unit of work)
that calls them owns the transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.errors import NotFound
from app.imaging import ImageInfo
from app.jobs import repository
from app.jobs.models import Job, JobStatus
from app.jobs.uploads import ReceivedFile
from app.logs import job_context
from app.orchestrators.base import Execution, Phase, Submission
from app.storage import ResultUnavailable, SharedStorage

log = logging.getLogger(__name__)

_ALLOWED: dict[JobStatus, set[JobStatus]] = {
    JobStatus.QUEUED: {
        JobStatus.SUBMITTED,
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
    },
    JobStatus.SUBMITTED: {
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.QUEUED,
    },
    JobStatus.RUNNING: {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED},
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class InferenceParams:
    model: str
    confidence: float
    image_size: int


@dataclass(frozen=True)
class AcceptedUpload:
    received: ReceivedFile
    info: ImageInfo


# Creation
def create_jobs(
    session: Session,
    storage: SharedStorage,
    uploads: Sequence[AcceptedUpload],
    params: InferenceParams,
    idempotency_key: str | None,
) -> list[Job]:
    """Move validated uploads into place and add one queued job per file.

    Files are in place before the rows can be committed, so a committed job always has its
    upload. If anything fails before the commit, the moved files are removed again.
    """
    now = utcnow()
    jobs: list[Job] = []
    try:
        for index, upload in enumerate(uploads):
            job_id = str(uuid.uuid4())
            relative = storage.upload_path(job_id, upload.info.extension)
            storage.commit_upload(upload.received.temp_path, relative)
            jobs.append(
                Job(
                    id=job_id,
                    status=JobStatus.QUEUED,
                    original_filename=upload.received.original_filename,
                    image_path=relative,
                    image_format=upload.info.format,
                    size_bytes=upload.received.size,
                    sha256=upload.received.sha256,
                    width=upload.info.width,
                    height=upload.info.height,
                    model=params.model,
                    confidence=params.confidence,
                    image_size=params.image_size,
                    idempotency_key=idempotency_key,
                    request_index=index,
                    dispatch_attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        storage.sync_dir("uploads")  # a committed job always finds its upload after a crash
        session.add_all(jobs)
        session.flush()
    except BaseException:
        storage.remove_job_files([job.image_path for job in jobs])
        raise
    for job in jobs:
        with job_context(job.id):
            log.info("job.queued", extra={"image_path": job.image_path, "bytes": job.size_bytes})
    return jobs


def remove_orphan_uploads(session: Session, storage: SharedStorage, age_s: float = 60) -> int:
    """Uploads whose job was never committed (the process died between moving the file into
    place and the commit). Younger files are left alone: their request may still commit."""
    files = storage.uploads_older_than(age_s)
    known = repository.existing_ids(session, list(files))
    orphans = [path for job_id, path in files.items() if job_id not in known]
    for path in orphans:
        path.unlink(missing_ok=True)
    return len(orphans)


def get_job(session: Session, job_id: str) -> Job:
    job = repository.get(session, job_id) if _is_uuid(job_id) else None
    if job is None:
        raise NotFound(f"No job with id {job_id}.", job_id=job_id)
    return job


def submission_for(job: Job) -> Submission:
    return Submission(job.id, job.image_path, job.model, job.confidence, job.image_size)


# The lifecycle
def transition(job: Job, target: JobStatus, now: datetime) -> bool:
    """The only function that changes a job's status; stamps the transition's time."""
    current = JobStatus(job.status)
    if target == current:
        return False
    if target not in _ALLOWED.get(current, set()):
        log.warning("job.transition_refused", extra={"from": current, "to": target})
        return False
    job.status = target
    job.updated_at = now
    if target is JobStatus.SUBMITTED:
        job.submitted_at = now
    elif target is JobStatus.RUNNING:
        job.submitted_at = job.submitted_at or now
        job.started_at = now
    elif target is JobStatus.QUEUED:
        job.execution_id = None
        job.orchestrator_state = None
        job.next_dispatch_at = now
    else:
        job.finished_at = now
    log.info("job.status", extra={"from": current, "to": target})
    return True


def mark_submitted(session: Session, job_id: str, execution: Execution) -> None:
    job = _locked(session, job_id)
    with job_context(job_id):
        if job.execution_id is None:
            job.execution_id = execution.id
            job.orchestrator_state = execution.state
        # A fast execution may already have reported back; never move a job backwards.
        if job.status == JobStatus.QUEUED:
            transition(job, JobStatus.SUBMITTED, utcnow())


def postpone_dispatch(session: Session, job_id: str, until: datetime, reason: str) -> None:
    job = _locked(session, job_id)
    if job.status == JobStatus.QUEUED:
        job.next_dispatch_at = until
        job.error = None
        log.info("job.dispatch_postponed", extra={"until": until.isoformat(), "reason": reason})


def fail(session: Session, job_id: str, reason: str) -> None:
    job = _locked(session, job_id)
    if transition(job, JobStatus.FAILED, utcnow()):
        job.error = reason


def requeue(session: Session, job_id: str, reason: str) -> None:
    """The orchestrator lost the execution: run the job again rather than lose it."""
    job = _locked(session, job_id)
    with job_context(job_id):
        if transition(job, JobStatus.QUEUED, utcnow()):
            log.warning("job.requeued", extra={"reason": reason})


def apply_execution(
    session: Session, storage: SharedStorage, job_id: str, execution: Execution
) -> Job:
    """Bring a job up to date with its execution: the one path for callbacks, polls and
    local runs. Applying the same report twice changes nothing."""
    job = _locked(session, job_id)
    with job_context(job_id):
        if JobStatus(job.status).terminal:
            return job
        if job.execution_id not in (None, execution.id):
            log.warning("job.foreign_execution_ignored", extra={"execution_id": execution.id})
            return job
        now = utcnow()
        job.execution_id = execution.id
        job.orchestrator_state = execution.state
        job.last_checked_at = now
        phase = execution.phase
        if phase is Phase.PENDING:
            transition(job, JobStatus.SUBMITTED, now)
        elif phase is Phase.RUNNING:
            transition(job, JobStatus.RUNNING, now)
        else:
            _finish(job, storage, execution, now)
        return job


def _finish(job: Job, storage: SharedStorage, execution: Execution, now: datetime) -> None:
    try:
        result: dict[str, Any] | None = storage.read_result(job.id)
        missing = ""
    except ResultUnavailable as exc:
        result, missing = None, str(exc)
    if execution.phase is Phase.SUCCEEDED and result and result.get("status") == "succeeded":
        job.detections = list(result.get("detections") or [])
        job.inference_ms = _float_or_none(result.get("inference_ms"))
        job.annotated_path = result.get("annotated_path") or None
        job.error = None
        transition(job, JobStatus.SUCCEEDED, now)
        log.info(
            "job.succeeded",
            extra={"detections": len(job.detections), "inference_ms": job.inference_ms},
        )
        return
    if result and result.get("status") == "failed" and result.get("error"):
        reason = str(result["error"])  # the detection script's own words are the clearest
    elif execution.phase is Phase.SUCCEEDED:
        reason = f"the execution succeeded but {missing or 'its result reports no success'}"
    else:
        reason = execution.reason or f"the orchestrator reported {execution.state}"
    job.error = reason
    transition(job, JobStatus.FAILED, now)
    log.info("job.failed", extra={"reason": reason, "state": execution.state})


def _locked(session: Session, job_id: str) -> Job:
    job = repository.get(session, job_id, for_update=True)
    if job is None:
        raise NotFound(f"No job with id {job_id}.", job_id=job_id)
    return job


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def backoff(attempts: int, maximum_s: float) -> timedelta:
    return timedelta(seconds=min(maximum_s, 0.5 * 2 ** min(attempts, 10)))

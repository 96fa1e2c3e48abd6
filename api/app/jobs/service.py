"""A job's life after its upload (jobs.intake): the one place its status changes, from the
dispatcher's sends, callbacks, polls and local runs. Nothing here commits: the calling request
or worker owns the transaction."""

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.errors import NotFound
from app.jobs import repository, results
from app.jobs.models import Job, JobStatus
from app.jobs.schemas import JobOut
from app.keys.service import OPEN, Principal
from app.logs import job_context
from app.metrics import events as metrics
from app.orchestrators.base import Execution, Phase, Submission
from app.storage import ResultUnavailable, SharedStorage
from app.webhooks import outbox

log = logging.getLogger(__name__)

_ENDS = {JobStatus.SUCCEEDED, JobStatus.FAILED}
_ALLOWED: dict[JobStatus, set[JobStatus]] = {
    JobStatus.QUEUED: {JobStatus.SUBMITTED, JobStatus.RUNNING, *_ENDS},
    JobStatus.SUBMITTED: {JobStatus.RUNNING, JobStatus.QUEUED, *_ENDS},
    JobStatus.RUNNING: {JobStatus.QUEUED, *_ENDS},
}

# Executions a job may run in before one that ends without its result fails it.
MAX_RUNS = 2


def utcnow() -> datetime:
    return datetime.now(UTC)


def get_job(
    session: Session, job_id: str, *, for_update: bool = False, viewer: Principal = OPEN
) -> Job:
    """The job, or 404: also for a job of another key (its existence is not revealed)."""
    job = repository.get(session, job_id, for_update=for_update) if _is_uuid(job_id) else None
    if job is None or not viewer.sees(job.owner_key_id):
        raise NotFound(f"No job with id {job_id}.", job_id=job_id)
    return job


def submission_for(batch_id: str, jobs: Sequence[Job]) -> Submission:
    first = jobs[0]  # a batch only groups jobs with the same inference parameters
    pairs = tuple((job.id, job.image_path) for job in jobs)
    return Submission(batch_id, pairs, first.model, first.confidence, first.image_size)


def transition(job: Job, target: JobStatus, now: datetime) -> bool:
    """The only function that changes a job's status; stamps the transition's time. A job
    that ends with a callback_url gets its webhook delivery in the same transaction, its body
    the job's JSON as of now (so set the job's outcome before calling this)."""
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
        job.batch_id = job.execution_id = job.orchestrator_state = None  # off to a new batch
        job.next_dispatch_at = now
    else:
        job.finished_at = now
        if job.callback_url:
            job.delivery = outbox.new_delivery(job.callback_url, JobOut.webhook_body(job), now)
    log.info("job.status", extra={"from": current, "to": target})
    metrics.record_transition(job, current, target, now)
    return True


def mark_submitted(session: Session, batch_id: str, execution: Execution) -> None:
    now = utcnow()
    for job in repository.in_batch(session, batch_id):
        with job_context(job.id):
            if job.execution_id is None:
                _attach(job, execution)
            # A fast execution may already have reported back; never move a job backwards.
            if job.status == JobStatus.QUEUED:
                transition(job, JobStatus.SUBMITTED, now)


def postpone_dispatch(session: Session, batch_id: str, until: datetime, reason: str) -> None:
    for job in repository.in_batch(session, batch_id):
        if job.status == JobStatus.QUEUED:
            job.next_dispatch_at = until
            job.error = None
    log.info("batch.dispatch_postponed", extra={"until": until.isoformat(), "reason": reason})


def fail_batch(session: Session, batch_id: str, reason: str) -> None:
    now = utcnow()
    for job in repository.in_batch(session, batch_id):
        with job_context(job.id):
            if not JobStatus(job.status).terminal:
                job.error = reason  # before the transition: the webhook's body includes it
                transition(job, JobStatus.FAILED, now)


def requeue(session: Session, job_id: str, reason: str) -> None:
    """The orchestrator lost the execution: run the job again rather than lose it."""
    job = get_job(session, job_id, for_update=True)
    with job_context(job_id):
        if transition(job, JobStatus.QUEUED, utcnow()):
            log.warning("job.requeued", extra={"reason": reason})


def apply_batch(session: Session, storage: SharedStorage, execution: Execution) -> list[Job]:
    """Update every job of the execution's batch (callbacks and local runs)."""
    jobs = repository.in_batch(session, execution.batch_id or "")
    if not jobs:
        raise NotFound(f"No jobs in batch {execution.batch_id}.")
    for job in jobs:
        _apply(job, storage, execution, via="callback")
    return list(jobs)


def apply_execution(
    session: Session, storage: SharedStorage, job_id: str, execution: Execution
) -> Job:
    """Update one job from its execution (the reconciler's polls)."""
    job = get_job(session, job_id, for_update=True)
    _apply(job, storage, execution, via="poll")
    return job


def _apply(job: Job, storage: SharedStorage, execution: Execution, via: str) -> None:
    """The one path for callbacks, polls and local runs (`via`: how the news came);
    idempotent."""
    with job_context(job.id):
        if JobStatus(job.status).terminal:
            return
        if job.execution_id not in (None, execution.id):
            log.warning("job.foreign_execution_ignored", extra={"execution_id": execution.id})
            return
        phase = execution.phase
        if phase is None:
            log.warning("job.unknown_state_ignored", extra={"state": execution.state[:32]})
            return
        now = utcnow()
        if job.execution_id is None:
            _attach(job, execution)
        job.orchestrator_state = execution.state
        job.last_checked_at = now
        if phase is Phase.PENDING:
            transition(job, JobStatus.SUBMITTED, now)
        elif phase is Phase.RUNNING:
            transition(job, JobStatus.RUNNING, now)
        else:
            _finish(job, storage, execution, now)
            if JobStatus(job.status).terminal:
                metrics.record_callback_lag(job, via, execution.ended_at, now)


def _attach(job: Job, execution: Execution) -> None:
    job.execution_id = execution.id
    job.orchestrator_state = execution.state
    job.runs += 1


def _finish(job: Job, storage: SharedStorage, execution: Execution, now: datetime) -> None:
    """Each job ends on its own result file, whatever happened to the rest of its batch."""
    outcome = _outcome(job, storage)
    if isinstance(outcome, results.Outcome) and outcome.succeeded:
        job.detections = outcome.detections
        job.inference_ms = outcome.inference_ms
        job.annotated_path = outcome.annotated_path
        job.error = None
        transition(job, JobStatus.SUCCEEDED, now)
        log.info(
            "job.succeeded",
            extra={"detections": len(job.detections), "inference_ms": job.inference_ms},
        )
        return
    if isinstance(outcome, results.Outcome):
        reason = outcome.error or "the detection failed"  # the script's own words
    elif execution.phase is Phase.SUCCEEDED:
        reason = f"the execution succeeded but {outcome}"
    elif job.runs < MAX_RUNS:
        # The execution ended before reaching this job (crash, timeout, kill): rerun it in
        # another batch rather than fail it for its neighbours' sake.
        transition(job, JobStatus.QUEUED, now)
        log.warning("job.requeued", extra={"reason": execution.reason or execution.state})
        return
    else:
        reason = execution.reason or f"the orchestrator reported {execution.state}"
    job.error = reason
    transition(job, JobStatus.FAILED, now)
    log.info("job.failed", extra={"reason": reason, "state": execution.state})


def _outcome(job: Job, storage: SharedStorage) -> results.Outcome | str:
    """The job's validated result, or in words why this batch left none. A file that is
    not a valid result of this job fails it: it cannot be told from a forged one."""
    try:
        return results.validate(storage.read_result(job.id), job)
    except (ResultUnavailable, results.StaleResult) as exc:
        return str(exc)
    except results.InvalidResult as exc:
        log.warning("job.result_invalid", extra={"reason": str(exc)})
        return results.Outcome.failed(f"the result file is invalid: {exc}")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def backoff(attempts: int, maximum_s: float) -> timedelta:
    return timedelta(seconds=min(maximum_s, 0.5 * 2 ** min(attempts, 10)))

"""Where an upload becomes a job, and the one place a job changes status.
Nothing here commits: the calling request or worker owns the transaction."""

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.errors import IdempotencyKeyReused, NotFound, TooManyFiles, TooManyJobs
from app.imaging import SUPPORTED, inspect_image
from app.jobs import repository, results
from app.jobs.models import Job, JobStatus
from app.jobs.uploads import ReceivedFile
from app.keys.service import OPEN, Principal
from app.logs import job_context
from app.models.service import Weights
from app.orchestrators.base import Execution, Phase, Submission
from app.storage import ResultUnavailable, SharedStorage

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


@dataclass(frozen=True)
class InferenceParams:
    """As the request asked, or the settings' defaults: `model` as it was named; the weights
    it means are resolved when the jobs are made (models.service.resolve)."""

    model: str
    confidence: float
    image_size: int


@dataclass(frozen=True)
class UploadRequest:
    """One accepted request body: who sent it, its files, and how to recognise a retry."""

    owner: Principal
    received: Sequence[ReceivedFile]
    params: InferenceParams
    idempotency_key: str | None  # as the client sent it (validated)

    @property
    def scoped_key(self) -> str | None:
        """Keys are per API key: two clients using the same key never meet."""
        if self.idempotency_key is None:
            return None
        return f"{self.owner.key_id or 'open'}/{self.idempotency_key}"

    @property
    def fingerprint(self) -> str:
        """The files' digests and the parameters: a retry has the same, a reuse does not."""
        parts = [repr(astuple(self.params)), *(item.sha256 for item in self.received)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def jobs_for_retry(session: Session, request: UploadRequest) -> list[Job]:
    """The jobs an earlier request with the same Idempotency-Key made, if it was this one."""
    if request.scoped_key is None:
        return []
    jobs = list(repository.by_idempotency_key(session, request.scoped_key))
    if jobs and jobs[0].request_fingerprint != request.fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used for a different request (other files or "
            "parameters); use a new key for a new request."
        )
    return jobs


def check_quota(session: Session, owner: Principal, adding: int, cap: int) -> None:
    """At most `cap` unfinished jobs per key (admin keys too). Concurrent requests of one key
    may pass it together: the cap bounds a backlog, it is not a lock."""
    if owner.key_id is None:
        return
    if adding > cap:  # could never fit: not worth a retry
        raise TooManyFiles(f"At most {cap} files per request for this key.", max_files=cap)
    unfinished = repository.count_unfinished(session, owner.key_id)
    if unfinished + adding > cap:
        raise TooManyJobs(
            f"This key has {unfinished} unfinished jobs; at most {cap} are allowed. "
            "Try again when some have finished.",
            unfinished=unfinished,
            max_unfinished=cap,
        )


def create_jobs(
    session: Session,
    storage: SharedStorage,
    request: UploadRequest,
    max_pixels: int,
    weights: Weights,
) -> list[Job]:
    """Validate files and add a queued job for each, to run with `weights`. Files are placed
    and fsynced (while being decoded) before any row is sent, so a committed job always has
    its upload and the connection is held only for INSERT and COMMIT. On failure the files
    are removed."""
    now = utcnow()
    received, params = request.received, request.params
    ids = [str(uuid.uuid4()) for _ in received]
    paths = [storage.upload_path(ids[n], SUPPORTED[r.format]) for n, r in enumerate(received)]
    try:
        for item, relative in zip(received, paths, strict=True):
            storage.place_upload(item.temp_path, relative)
        synced = storage.sync(paths)
        jobs: list[Job] = []
        for index, (job_id, item, relative) in enumerate(zip(ids, received, paths, strict=True)):
            info = inspect_image(storage.path(relative), item.format, max_pixels)
            jobs.append(
                Job(
                    id=job_id,
                    status=JobStatus.QUEUED,
                    original_filename=item.original_filename,
                    image_path=relative,
                    image_format=info.format,
                    size_bytes=item.size,
                    sha256=item.sha256,
                    width=info.width,
                    height=info.height,
                    model=weights.model,
                    model_sha256=weights.sha256,
                    confidence=params.confidence,
                    image_size=params.image_size,
                    owner_key_id=request.owner.key_id,
                    idempotency_key=request.scoped_key,
                    request_fingerprint=request.fingerprint,
                    request_index=index,
                    dispatch_attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        synced.result()  # durable before its row exists
        session.add_all(jobs)
        session.flush()
    except BaseException:
        storage.remove_job_files(paths)
        raise
    for job in jobs:
        with job_context(job.id):
            log.info("job.queued", extra={"image_path": job.image_path, "bytes": job.size_bytes})
    return jobs


def remove_orphan_uploads(session: Session, storage: SharedStorage, age_s: float = 60) -> int:
    """Remove uploads whose job never committed (a crash mid-request); younger files are
    spared, as their request may still commit."""
    files = storage.uploads_older_than(age_s)
    known = repository.existing_ids(session, list(files))
    orphans = [path for job_id, path in files.items() if job_id not in known]
    for path in orphans:
        path.unlink(missing_ok=True)
    return len(orphans)


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
        job.batch_id = job.execution_id = job.orchestrator_state = None  # off to a new batch
        job.next_dispatch_at = now
    else:
        job.finished_at = now
    log.info("job.status", extra={"from": current, "to": target})
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
            if transition(job, JobStatus.FAILED, now):
                job.error = reason


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
        _apply(job, storage, execution)
    return list(jobs)


def apply_execution(
    session: Session, storage: SharedStorage, job_id: str, execution: Execution
) -> Job:
    """Update one job from its execution (the reconciler's polls)."""
    job = get_job(session, job_id, for_update=True)
    _apply(job, storage, execution)
    return job


def _apply(job: Job, storage: SharedStorage, execution: Execution) -> None:
    """The one path for callbacks, polls and local runs; idempotent."""
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

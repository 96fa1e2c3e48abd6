"""Where jobs end: deleted by their key (DELETE /v1/jobs/{id}) or purged RETENTION_DAYS after
they finished (the reconciler). Files first, then the row, in the caller's transaction: a
crash between the two leaves a row whose files are missing (GET shows the job, its images
answer 404), which the next DELETE or purge completes; never files no row leads to. A job
the orchestrator may be running is never deleted: its container reads the upload."""

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from app.errors import JobInFlight
from app.jobs import repository, results, service
from app.jobs.models import Job, JobStatus
from app.keys.service import Principal
from app.logs import job_context
from app.storage import SharedStorage

log = logging.getLogger(__name__)


def files_of(job: Job) -> list[str]:
    """Everything of the job on the shared volume: its upload, result and annotated image."""
    return [job.image_path, results.result_path_of(job.id), results.annotated_path_of(job.id)]


def delete_job(session: Session, storage: SharedStorage, job_id: str, viewer: Principal) -> None:
    """Delete one of the viewer's jobs: 404 as GET answers (unknown, gone, another key's);
    409 while it is with the orchestrator or being sent there."""
    job = service.get_job(session, job_id, viewer=viewer)
    # The dispatcher's lock: a queued job it is not batching now cannot be sent meanwhile.
    if repository.lock_unless_locked(session, job_id) is None:
        raise JobInFlight(
            f"Job {job_id} is being sent to the orchestrator; try again in a few seconds.",
            status=job.status,
        )
    _check_not_in_flight(job)
    _remove(session, storage, [job])
    with job_context(job_id):
        log.info("job.deleted", extra={"status": job.status})


def purge_expired(
    session: Session, storage: SharedStorage, finished_before: datetime, limit: int
) -> int:
    """Delete up to `limit` jobs that finished before `finished_before`; how many."""
    jobs = repository.claim_expired(session, finished_before, limit)
    if jobs:
        _remove(session, storage, jobs)
    return len(jobs)


def _check_not_in_flight(job: Job) -> None:
    """Finished jobs, and queued ones no dispatcher has leased (an unleased job has no
    batch), may go; the rest are, or may be, with the orchestrator."""
    status = JobStatus(job.status)
    if status.terminal or (status is JobStatus.QUEUED and job.batch_id is None):
        return
    raise JobInFlight(
        f"Job {job.id} is {status} and its files are in use; delete it once it has finished "
        "(status succeeded or failed).",
        status=status,
    )


def _remove(session: Session, storage: SharedStorage, jobs: Sequence[Job]) -> None:
    storage.remove_job_files([path for job in jobs for path in files_of(job)])
    repository.delete_rows(session, [job.id for job in jobs])

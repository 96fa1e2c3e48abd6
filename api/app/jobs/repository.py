"""Queries on the jobs table. No commits: the caller owns the transaction."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session

from app.jobs.models import Job, JobStatus


def get(session: Session, job_id: str, *, for_update: bool = False) -> Job | None:
    stmt = select(Job).where(Job.id == job_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def existing_ids(session: Session, job_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start : start + 500]
        found.update(session.scalars(select(Job.id).where(Job.id.in_(chunk))))
    return found


def by_idempotency_key(session: Session, key: str) -> Sequence[Job]:
    stmt = select(Job).where(Job.idempotency_key == key).order_by(Job.request_index)
    return session.scalars(stmt).all()


def page(
    session: Session,
    *,
    limit: int,
    status: JobStatus | None,
    before: tuple[datetime, str] | None,
    owner: str | None = None,
) -> Sequence[Job]:
    """Newest first; `before` is the (created_at, id) of the previous page's last row;
    `owner`: only that key's jobs."""
    stmt = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if owner is not None:
        stmt = stmt.where(Job.owner_key_id == owner)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if before is not None:
        created_at, job_id = before
        stmt = stmt.where(
            or_(Job.created_at < created_at, (Job.created_at == created_at) & (Job.id < job_id))
        )
    return session.scalars(stmt).all()


def count_unfinished(session: Session, owner: str) -> int:
    unfinished = (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING)
    stmt = select(func.count()).where(Job.owner_key_id == owner, Job.status.in_(unfinished))
    return session.scalar(stmt) or 0


def any_in_flight(session: Session) -> bool:
    """Whether some job is with the orchestrator (submitted or running)."""
    in_flight = Job.status.in_((JobStatus.SUBMITTED, JobStatus.RUNNING))
    return bool(session.scalar(select(exists().where(in_flight))))


def claim_dispatchable(session: Session, now: datetime, limit: int) -> Sequence[Job]:
    """Queued jobs due for dispatch, locked so concurrent dispatchers skip them."""
    stmt = (
        select(Job)
        .where(Job.status == JobStatus.QUEUED)
        .where(or_(Job.next_dispatch_at.is_(None), Job.next_dispatch_at <= now))
        .order_by(Job.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()


def claim_stale_active(session: Session, checked_before: datetime, limit: int) -> Sequence[Job]:
    """Submitted/running jobs not heard of since `checked_before`."""
    stmt = (
        select(Job)
        .where(Job.status.in_((JobStatus.SUBMITTED, JobStatus.RUNNING)))
        .where(Job.updated_at <= checked_before)
        .where(or_(Job.last_checked_at.is_(None), Job.last_checked_at <= checked_before))
        .order_by(Job.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()


def in_batch(session: Session, batch_id: str) -> Sequence[Job]:
    """A batch's jobs, locked, in id order (the same lock order everywhere: no deadlocks)."""
    stmt = select(Job).where(Job.batch_id == batch_id).order_by(Job.id).with_for_update()
    return session.scalars(stmt).all()


def queued_in_batches(session: Session, batch_ids: Sequence[str]) -> Sequence[Job]:
    """Queued members of batches being resent, so each is resent whole."""
    stmt = select(Job).where(Job.batch_id.in_(batch_ids), Job.status == JobStatus.QUEUED)
    return session.scalars(stmt.with_for_update(skip_locked=True)).all()


def lock_unless_locked(session: Session, job_id: str) -> Job | None:
    """The job, locked and refreshed; None if another transaction holds it (a dispatcher
    forming a batch, say) or it is gone."""
    stmt = (
        select(Job)
        .where(Job.id == job_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one_or_none()


def claim_expired(session: Session, finished_before: datetime, limit: int) -> Sequence[Job]:
    """Finished jobs that ended before `finished_before`, locked so concurrent purges skip
    them. Unordered: the (status, created_at) index finds them (a job ends after it began)."""
    stmt = (
        select(Job)
        .where(Job.status.in_((JobStatus.SUCCEEDED, JobStatus.FAILED)))
        .where(Job.created_at < finished_before, Job.finished_at < finished_before)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()


def delete_rows(session: Session, job_ids: Sequence[str]) -> None:
    session.execute(delete(Job).where(Job.id.in_(job_ids)))

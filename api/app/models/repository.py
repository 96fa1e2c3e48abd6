"""Queries on the models table, and on the jobs that use a model. No commits: the caller
owns the transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.models import Job, JobStatus
from app.models.models import StoredModel

_UNFINISHED = (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING)


def get(session: Session, name: str, *, lock: bool = False) -> StoredModel | None:
    """`lock`: FOR UPDATE, for a push or removal (uploads of the model wait for it)."""
    stmt = select(StoredModel).where(StoredModel.name == name)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def get_shared(session: Session, name: str) -> StoredModel | None:
    """FOR SHARE: an upload's jobs commit with the digest of the weights they will load, as
    a push or removal of the model waits for them (and then sees them)."""
    stmt = select(StoredModel).where(StoredModel.name == name).with_for_update(read=True)
    return session.scalars(stmt).one_or_none()


def listed(session: Session) -> Sequence[StoredModel]:
    return session.scalars(select(StoredModel).order_by(StoredModel.name)).all()


def count_unfinished_jobs(session: Session, models: Collection[str]) -> int:
    """Jobs not yet finished whose `model` (what the flow gets) is one of `models`."""
    stmt = select(func.count()).where(Job.model.in_(models), Job.status.in_(_UNFINISHED))
    return session.scalar(stmt) or 0

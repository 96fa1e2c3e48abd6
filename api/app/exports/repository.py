"""Queries on the exports table. No commits: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.exports.models import UNFINISHED, ModelExport


def get(session: Session, export_id: str) -> ModelExport | None:
    return session.get(ModelExport, export_id)


def claim_unfinished(session: Session, limit: int) -> Sequence[ModelExport]:
    """Oldest first, locked; rows another replica holds are skipped."""
    stmt = (
        select(ModelExport)
        .where(ModelExport.state.in_(UNFINISHED))
        .order_by(ModelExport.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()

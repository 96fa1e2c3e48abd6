"""The outbox: one row per job-end webhook, added in the transaction that ends the job."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime

MAX_URL_CHARS = 1000  # fits in an upload's form field (jobs.uploads.MAX_PARAM_BYTES)


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(Base):
    __tablename__ = "webhook_deliveries"

    # The `webhook-id` header: the same on every attempt, so receivers can drop repeats.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    url: Mapped[str] = mapped_column(String(MAX_URL_CHARS))
    # The body, frozen when the job ended: every attempt sends (and signs) the same bytes.
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Due from then; while an attempt is under way, its lease (another worker skips it).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),)

"""The job row: one uploaded image and its trip through the orchestrator."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, UtcDateTime
from app.webhooks.models import MAX_URL_CHARS, Delivery


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)

    # The upload, stored under a server-generated name; the client's name is metadata only.
    original_filename: Mapped[str | None] = mapped_column(String(255))
    image_path: Mapped[str] = mapped_column(String(255))
    image_format: Mapped[str] = mapped_column(String(8))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)

    # Inference parameters, fixed when the job is created.
    model: Mapped[str] = mapped_column(String(255))  # the flow's --model
    # Of the weights a pushed model had when the job was made; None: the image's default.
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    image_size: Mapped[int] = mapped_column(Integer)

    # The API key that made the job (None: made with keys off); other keys never see it.
    owner_key_id: Mapped[str | None] = mapped_column(String(36))
    # Scoped to the owner ("<owner>/<key>"); the fingerprint tells a retry from a reuse.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    request_index: Mapped[int] = mapped_column(Integer, default=0)
    # Where its end is POSTed (the upload's `callback_url` or its key's default); the
    # delivery (app.webhooks) is added by the transition that ends the job.
    callback_url: Mapped[str | None] = mapped_column(String(MAX_URL_CHARS))
    delivery: Mapped[Delivery | None] = relationship(lazy="selectin")

    # Orchestrator bookkeeping. Jobs sent together share a batch (one execution).
    batch_id: Mapped[str | None] = mapped_column(String(36))
    execution_id: Mapped[str | None] = mapped_column(String(64))
    runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dispatch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_dispatch_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    orchestrator_state: Mapped[str | None] = mapped_column(String(32))

    error: Mapped[str | None] = mapped_column(Text)
    detections: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    inference_ms: Mapped[float | None] = mapped_column(Float)
    annotated_path: Mapped[str | None] = mapped_column(String(255))

    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        # Newest-first listing with keyset pagination, optionally by status.
        Index("ix_jobs_created_at_id", "created_at", "id"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
        # A retried upload with the same Idempotency-Key maps to the same rows.
        Index(
            "uq_jobs_idempotency_key_request_index", "idempotency_key", "request_index", unique=True
        ),
        Index("ix_jobs_execution_id", "execution_id"),
        Index("ix_jobs_batch_id", "batch_id"),
        Index("ix_jobs_owner_key_id_created_at", "owner_key_id", "created_at"),
    )

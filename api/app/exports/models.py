"""The exports row: one export of a `.pt` in models/, from request to a checked export."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime


class ExportState(StrEnum):
    QUEUED = "queued"  # not started yet (the orchestrator was unavailable): the reconciler will
    RUNNING = "running"  # an execution is exporting
    SUCCEEDED = "succeeded"  # the export is in models/ and passed the checks
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (ExportState.SUCCEEDED, ExportState.FAILED)


UNFINISHED = (ExportState.QUEUED, ExportState.RUNNING)


class ModelExport(Base):
    __tablename__ = "exports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model: Mapped[str] = mapped_column(String(128))  # the source's name in models/ (x.pt)
    model_sha256: Mapped[str] = mapped_column(String(64))  # of the source when asked
    format: Mapped[str] = mapped_column(String(16))  # onnx or openvino
    image_size: Mapped[int] = mapped_column(Integer)  # IMAGE_SIZE when asked
    name: Mapped[str] = mapped_column(String(128))  # the export's name in models/
    state: Mapped[str] = mapped_column(String(16), default=ExportState.QUEUED)
    execution_id: Mapped[str | None] = mapped_column(String(128))
    # Of the checked export (models.exports): what jobs that name it record.
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        # One unfinished export per target: two would rename over each other.
        Index(
            "uq_exports_unfinished_name",
            "name",
            unique=True,
            postgresql_where=text("state IN ('queued', 'running')"),
            sqlite_where=text("state IN ('queued', 'running')"),
        ),
        Index("ix_exports_state", "state"),
    )

"""The models row: one weights file in models/ on the shared volume, and its digest."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime


class StoredModel(Base):
    __tablename__ = "models"

    # The file's name in models/ (checked against files.NAME_PATTERN before it gets here).
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Of the file as received; jobs copy it, so each says which weights produced it.
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())  # the first push
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())  # the current weights

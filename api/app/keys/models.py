"""The api_keys row. Only a key's SHA-256 is stored; the key itself is shown once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime
from app.webhooks.models import MAX_URL_CHARS


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The key's first characters, so people can tell their keys apart in a listing.
    prefix: Mapped[str] = mapped_column(String(16))
    # Keys are 256 random bits: a plain SHA-256 cannot be reversed or guessed.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Where its jobs' ends are POSTed when an upload names no `callback_url`.
    callback_url: Mapped[str | None] = mapped_column(String(MAX_URL_CHARS))

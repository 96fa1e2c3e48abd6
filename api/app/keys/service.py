"""Issue, find and revoke API keys. Nothing here commits: the caller owns the transaction."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import BadRequest, NameTaken, NotFound
from app.keys.models import ApiKey

KEY_PREFIX = "yk_"
_PREFIX_CHARS = 10


@dataclass(frozen=True)
class Principal:
    """Who is calling. `key_id` None: keys are off (dev mode), everything is visible."""

    key_id: str | None
    name: str
    admin: bool
    callback_url: str | None = None  # the key's default for its uploads' webhooks

    def sees(self, owner_key_id: str | None) -> bool:
        return self.admin or owner_key_id == self.key_id


OPEN = Principal(key_id=None, name="open", admin=True)


def generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create(
    session: Session,
    name: str,
    *,
    admin: bool,
    raw: str | None = None,
    callback_url: str | None = None,
) -> tuple[ApiKey, str]:
    """Add a key; returns the row and the key itself (the only time it is known).
    `callback_url` is checked by the caller (app.webhooks.urls.checked_callback_url)."""
    name = name.strip()
    if not name or len(name) > 64:
        raise BadRequest("A key's name must have 1 to 64 characters.", name=name)
    if session.scalars(select(ApiKey.id).where(ApiKey.name == name)).first():
        raise NameTaken(f"A key named {name!r} exists already.", name=name)
    raw = raw or generate()
    key = ApiKey(
        id=str(uuid.uuid4()),
        name=name,
        prefix=raw[:_PREFIX_CHARS],
        key_hash=digest(raw),
        admin=admin,
        callback_url=callback_url,
        created_at=datetime.now(UTC),
    )
    session.add(key)
    session.flush()
    return key, raw


def ensure(session: Session, name: str, raw: str) -> bool:
    """Make `raw` the admin key called `name` (the one from .env): added on the first start,
    rotated when .env changes, untouched otherwise. True if anything changed."""
    hashed = digest(raw)
    key = session.scalars(select(ApiKey).where(ApiKey.name == name)).one_or_none()
    if key is None:
        create(session, name, admin=True, raw=raw)
        return True
    if key.key_hash == hashed and key.admin and key.revoked_at is None:
        return False
    key.key_hash, key.prefix, key.admin, key.revoked_at = hashed, raw[:_PREFIX_CHARS], True, None
    return True


def authenticate(session: Session, raw: str) -> Principal | None:
    stmt = select(ApiKey).where(ApiKey.key_hash == digest(raw), ApiKey.revoked_at.is_(None))
    key = session.scalars(stmt).one_or_none()
    return Principal(key.id, key.name, key.admin, key.callback_url) if key else None


def listed(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name)).all()


def revoke(session: Session, name_or_id: str) -> ApiKey:
    """Idempotent: revoking a revoked key changes nothing."""
    stmt = select(ApiKey).where((ApiKey.name == name_or_id) | (ApiKey.id == name_or_id))
    # No name holds a NUL (KeyIn), and Postgres cannot even compare one: it is not found.
    key = None if "\x00" in name_or_id else session.scalars(stmt).one_or_none()
    if key is None:
        raise NotFound(f"No key named {name_or_id!r}.", key=name_or_id)
    key.revoked_at = key.revoked_at or datetime.now(UTC)
    return key

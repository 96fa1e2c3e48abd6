"""What the key routes take and return."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.keys.models import ApiKey
from app.webhooks.models import MAX_URL_CHARS

_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"
_NAME = rf"^{_PRINTABLE}*[^\s\x00-\x1f\x7f-\x9f]{_PRINTABLE}*$"


class KeyIn(BaseModel):
    model_config = ConfigDict(strict=True)  # `"admin": 0` is not a boolean

    # Some visible character, no control characters (NUL cannot be stored; strip() would
    # remove the C0 separators \x1c-\x1f and leave an empty name).
    name: str = Field(min_length=1, max_length=64, pattern=_NAME, examples=["alice"])
    admin: bool = Field(default=False, description="May manage keys and see every job.")
    callback_url: str | None = Field(
        default=None,
        max_length=MAX_URL_CHARS,
        description="Where its jobs' ends are POSTed when an upload names no `callback_url`.",
    )


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    admin: bool
    callback_url: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls.model_validate(key)


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself. Shown this once: only its hash is stored.")


class KeyList(BaseModel):
    keys: list[KeyOut]

"""Managing API keys over HTTP (admin keys only). `python -m app.keys` does the same."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ResourcesDep, SessionDep
from app.keys import service
from app.keys.auth import AdminDep
from app.keys.schemas import KeyCreated, KeyIn, KeyList, KeyOut
from app.openapi import errors
from app.webhooks.urls import checked_callback_url

router = APIRouter(prefix="/v1/keys", tags=["keys"])
_S422 = "`invalid_request`, `invalid_callback_url`, `webhooks_unavailable`"


@router.get("", response_model=KeyList, summary="List API keys", responses=errors(403))
def list_keys(session: SessionDep, _: AdminDep) -> KeyList:
    """Every key with its name, prefix and whether it is revoked; never the keys themselves."""
    return KeyList(keys=[KeyOut.of(key) for key in service.listed(session)])


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    summary="Create an API key",
    responses=errors(400, 403, 409, s409="`name_taken`", s422=_S422),
)
def create_key(
    body: KeyIn, session: SessionDep, resources: ResourcesDep, _: AdminDep
) -> KeyCreated:
    """The answer holds the new key; it is shown this once."""
    url = body.callback_url
    if url is not None:
        checked_callback_url(url, resources.settings)
    key, raw = service.create(session, body.name, admin=body.admin, callback_url=url)
    session.commit()
    return KeyCreated(**KeyOut.of(key).model_dump(), key=raw)


@router.delete(
    "/{name_or_id}", response_model=KeyOut, summary="Revoke an API key", responses=errors(403, 404)
)
def revoke_key(name_or_id: str, session: SessionDep, _: AdminDep) -> KeyOut:
    """Requests with the key get 401 from now on; its jobs stay. Revoking twice is harmless."""
    key = service.revoke(session, name_or_id)
    session.commit()
    return KeyOut.of(key)

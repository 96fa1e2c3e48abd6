"""`Authorization: Bearer <key>` on every `/v1` route but Kestra's callback."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.deps import Resources, ResourcesDep
from app.errors import Forbidden, Unauthorized
from app.keys import service
from app.keys.service import OPEN, Principal

# In the OpenAPI as a security scheme, so /docs has an "Authorize" button.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer <key>` (see `python -m app.keys`).",
)


def principal_of(resources: Resources, key: str | None) -> Principal:
    """The caller, or 401. With REQUIRE_API_KEYS=false (dev mode) everyone is OPEN."""
    if not resources.settings.require_api_keys:
        return OPEN
    if not key:
        raise Unauthorized("An API key is required: send 'Authorization: Bearer <key>'.")
    with resources.sessions() as session:
        principal = service.authenticate(session, key)
    if principal is None:
        raise Unauthorized("The API key is not valid or has been revoked.")
    return principal


def _caller(
    resources: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    return principal_of(resources, credentials.credentials if credentials else None)


PrincipalDep = Annotated[Principal, Depends(_caller)]


def _admin(principal: PrincipalDep) -> Principal:
    if not principal.admin:
        raise Forbidden("This needs an admin key.")
    return principal


AdminDep = Annotated[Principal, Depends(_admin)]

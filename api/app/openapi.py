"""What routes declare about their error answers, so the OpenAPI lists every status."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorInfo(BaseModel):
    code: str = Field(examples=["unsupported_format"], description="Stable, for programs.")
    message: str = Field(examples=["GIF images are not supported."], description="For people.")
    details: dict[str, Any] = Field(examples=[{"detected": "GIF"}])


class ErrorOut(BaseModel):
    """The one shape of every error answer."""

    error: ErrorInfo


CODES = {
    400: "`bad_request` and the route's own 400 codes",
    401: "`unauthorized`: no API key, or not a valid one",
    403: "`forbidden`: needs an admin key",
    404: "`not_found`",
    408: "`request_timeout`: the request body stalled",
    409: "`model_in_use`: unfinished jobs use the model",
    413: "`file_too_large`, `too_many_files`, `too_many_pixels`",
    415: "`not_an_image`, `unsupported_format`",
    422: "`invalid_request`",
    429: "`too_many_jobs`: this key's cap on unfinished jobs (see `Retry-After`)",
    503: "`database_unavailable`, `orchestrator_unavailable` (see `Retry-After`)",
    507: "`insufficient_storage`: the shared volume is (nearly) full",
}
# Every /v1 route can answer these: the key check and a database that is down.
COMMON = (401, 422, 503)


def errors(*statuses: int, **texts: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses (plus COMMON); `s400="..."` overrides a text."""
    wanted = dict.fromkeys((*COMMON, *statuses))
    described = {s: texts.get(f"s{s}", CODES[s]) for s in sorted(wanted)}
    return {s: {"model": ErrorOut, "description": text} for s, text in described.items()}

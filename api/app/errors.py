"""Typed errors rendered by one handler as one JSON shape: {"error": {code, message, details}}."""

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def headers(self) -> dict[str, str] | None:
        return None


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class EmptyFile(BadRequest):
    code = "empty_file"


class NoFiles(BadRequest):
    code = "no_files"


class InvalidIdempotencyKey(BadRequest):
    code = "invalid_idempotency_key"


class InvalidModelName(BadRequest):
    code = "invalid_model_name"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class NameTaken(Conflict):
    code = "name_taken"


class ModelInUse(Conflict):
    """Unfinished jobs would load other weights than the digest they recorded, or none."""

    code = "model_in_use"


class ExportInProgress(Conflict):
    """Another export to the same name has not finished: both would write the same files."""

    code = "export_in_progress"


class JobInFlight(Conflict):
    """The job is being sent or run: its files stay until it has finished."""

    code = "job_in_flight"
    retry_after_s = 10

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class PayloadTooLarge(AppError):
    status_code = 413
    code = "file_too_large"


class BodyTooLarge(PayloadTooLarge):
    code = "payload_too_large"


class TooManyFiles(PayloadTooLarge):
    code = "too_many_files"


class TooManyPixels(PayloadTooLarge):
    code = "too_many_pixels"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_format"


class NotAnImage(UnsupportedMediaType):
    code = "not_an_image"


class NotAModel(UnsupportedMediaType):
    code = "not_a_model"


class CorruptImage(AppError):
    status_code = 422
    code = "corrupt_image"


class InvalidRequest(AppError):
    status_code = 422
    code = "invalid_request"


class UnknownModel(InvalidRequest):
    code = "unknown_model"


class InvalidCallbackUrl(InvalidRequest):
    code = "invalid_callback_url"


class WebhooksUnavailable(InvalidRequest):
    """A callback_url was named but the server has no WEBHOOK_SECRET to sign with."""

    code = "webhooks_unavailable"


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"


class TooManyJobs(AppError):
    """A key's cap on unfinished jobs; they finish on their own, so say when to try again."""

    status_code = 429
    code = "too_many_jobs"
    retry_after_s = 10

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"


class OrchestratorDown(Unavailable):
    code = "orchestrator_unavailable"


class InsufficientStorage(AppError):
    status_code = 507
    code = "insufficient_storage"


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
}
_NOSNIFF = {"X-Content-Type-Options": "nosniff"}
_DISK_FULL = "The server's storage is full; try again later."
_INTERNAL = "The server could not complete the request."


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Any = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    # Also here: a 500 is sent from outside every middleware.
    return JSONResponse(body, status_code=status, headers={**_NOSNIFF, **(headers or {})})


def _answer(exc: AppError) -> JSONResponse:
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("request.failed", extra={"code": exc.code, "reason": exc.message})
        return _answer(exc)

    @app.exception_handler(OperationalError)
    async def _database_down(_: Request, exc: OperationalError) -> JSONResponse:
        # A restarting database is a passing condition: say so, and when to try again.
        log.warning("request.database_unavailable", extra={"reason": str(exc.orig)[:200]})
        return _answer(DatabaseUnavailable("The database is unavailable; try again."))

    @app.exception_handler(OSError)
    async def _os_error(_: Request, exc: OSError) -> JSONResponse:
        # A full disk is the one OSError a client can be told about; the rest are ours.
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.error("request.disk_full", extra={"reason": exc.strerror})
            return _answer(InsufficientStorage(_DISK_FULL))
        log.exception("request.os_error")
        return _answer(AppError(_INTERNAL))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return _answer(InvalidRequest("The request is not valid.", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback after this answer; the client gets the one shape.
        return _answer(AppError(_INTERNAL))


def _allowed_methods(request: Request) -> str:
    """Starlette's 405 names the methods of the first route on the path only; a path served by
    a route per method (GET and POST /v1/keys) allows them all, and HEAD wherever GET is (the
    hardening middleware answers it)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))

"""Typed errors rendered by one handler as one JSON shape: {"error": {code, message, details}}."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class EmptyFile(BadRequest):
    code = "empty_file"


class NoFiles(BadRequest):
    code = "no_files"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "file_too_large"


class TooManyFiles(PayloadTooLarge):
    code = "too_many_files"


class TooManyPixels(PayloadTooLarge):
    code = "too_many_pixels"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_format"


class NotAnImage(UnsupportedMediaType):
    code = "not_an_image"


class CorruptImage(AppError):
    status_code = 422
    code = "corrupt_image"


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Any = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("request.failed", extra={"code": exc.code, "reason": exc.message})
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(OperationalError)
    async def _database_down(_: Request, exc: OperationalError) -> JSONResponse:
        # A restarting database is a passing condition: say so, and when to try again.
        log.warning("request.database_unavailable", extra={"reason": str(exc.orig)[:200]})
        message = "The database is unavailable; try again."
        return error_response(503, "database_unavailable", message, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        message = "The request is not valid."
        return error_response(422, "invalid_request", message, {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

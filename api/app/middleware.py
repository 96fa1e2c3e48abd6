"""One ASGI layer under every route: `nosniff` on every answer, `HEAD` wherever `GET` is,
and request bodies that are bounded in size and may not stall."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import error_response

UPLOAD_PATH = "/v1/uploads"
SMALL_BODY_BYTES = 64 * 1024  # JSON bodies (keys, callbacks) are tiny
_MULTIPART_OVERHEAD = 64 * 1024  # per file: part headers and boundaries
NOSNIFF = (b"x-content-type-options", b"nosniff")


def body_limit(path: str, settings: Settings) -> int:
    if path == UPLOAD_PATH:
        per_file = settings.max_upload_bytes + _MULTIPART_OVERHEAD
        return settings.max_files_per_request * per_file
    if path.startswith("/v1/models/"):  # PUT: the body is the weights file itself
        return settings.max_model_bytes
    return SMALL_BODY_BYTES


class HardeningMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        settings: Settings = scope["app"].state.resources.settings
        limit = body_limit(scope["path"], settings)
        sender = _Sender(send, head)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # Refused before the app (and its error handlers) is reached: answer here.
            answer = error_response(
                413, "payload_too_large", _too_large(limit), {"max_bytes": limit}
            )
            await answer(scope, receive, sender.send)
            return
        body = _BoundedBody(receive, limit, settings.body_timeout_s)
        await self.app(scope, body.receive, sender.send)


class _BoundedBody:
    """Counts the body as it arrives; a body that sends nothing for `timeout_s` ends in 408.
    After the body, `receive` only waits for the disconnect, with no timeout."""

    def __init__(self, receive: Receive, limit: int, timeout_s: float) -> None:
        self._receive, self._limit, self._timeout_s = receive, limit, timeout_s
        self._seen = 0
        self._done = False

    async def receive(self) -> Message:
        if self._done:
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), self._timeout_s)
        except TimeoutError:
            raise HTTPException(408, f"No request data for {self._timeout_s:g} s.") from None
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            self._done = not message.get("more_body", False)
            if self._seen > self._limit:
                raise HTTPException(413, _too_large(self._limit))
        return message


class _Sender:
    def __init__(self, send: Send, head: bool) -> None:
        self._send, self._head = send, head

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[Any] = list(message.get("headers", []))
            if all(name.lower() != NOSNIFF[0] for name, _ in headers):
                headers.append(NOSNIFF)
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and self._head:
            if message.get("more_body", False):
                return  # HEAD: headers as for GET, no body
            message = {**message, "body": b""}
        await self._send(message)


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None

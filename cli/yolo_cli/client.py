"""The API over HTTP: uploads, jobs and models, its one error shape turned into exceptions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

Job = dict[str, Any]
Model = dict[str, Any]
TERMINAL = frozenset({"succeeded", "failed"})
_CHUNK_BYTES = 1024 * 1024
# The API sniffs the content; the media type is only a courtesy to proxies and logs.
_MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}
_BUSY = frozenset({429, 502, 503, 504})


class ApiError(Exception):
    """Something the CLI reports in words, without a traceback."""


class Unreachable(ApiError):
    """No HTTP answer at all: connection refused, unknown host, time-out."""


class NotAuthorized(ApiError):
    """401: no API key was sent, or the API does not accept it (unknown or revoked).

    Not a `Refused`: it is about the whole run, not one file or job."""

    def __init__(self, message: str, *, key_sent: bool) -> None:
        super().__init__(message)
        self.key_sent = key_sent


class Refused(ApiError):
    """An HTTP error answer, with the API's body `{"error": {code, message, details}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any],
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s

    @property
    def busy(self) -> bool:
        """Worth retrying later: the service is overloaded or briefly away."""
        return self.status in _BUSY


class Api:
    """One HTTP client for the whole run; `retries` bounds how often a busy answer is retried.
    `api_key` is sent as `Authorization: Bearer <key>` on every request and shown nowhere:
    no message or exception of this module holds it."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if api_key is not None and not valid_api_key(api_key):
            raise ValueError("the API key must be visible ASCII characters, without spaces")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._key_sent = bool(api_key)
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(120.0, connect=5.0),
            transport=transport,
            headers=headers,
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.close()

    def upload(self, paths: list[Path], params: dict[str, str] | None = None) -> list[Job]:
        """Send `paths` in one request; the API accepts all of them or none. `params`: the
        form fields `model`, `confidence`, `image_size`, `callback_url` (the server's defaults
        if left out).

        A busy answer is retried with the same Idempotency-Key, so a request that did get
        through the first time is never turned into a second set of jobs."""
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, Refused) and exc.busy),
            stop=stop_after_attempt(self.retries + 1),
            wait=_retry_delay,
            sleep=time.sleep,
            reraise=True,  # the last answer's Refused, not tenacity's RetryError
        )
        return retrying(self._upload_once, paths, params, uuid.uuid4().hex)

    def _upload_once(self, paths: list[Path], params: dict[str, str] | None, key: str) -> list[Job]:
        with ExitStack() as stack:
            files = [
                (
                    "files",
                    (
                        path.name,
                        stack.enter_context(path.open("rb")),
                        _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                    ),
                )
                for path in paths
            ]
            body = self._call(
                "POST",
                "/v1/uploads",
                files=files,
                data=params or None,
                headers={"Idempotency-Key": key},
            )
        jobs: list[Job] = body["jobs"]
        return jobs

    def job(self, job_id: str) -> Job:
        job: Job = self._call("GET", f"/v1/jobs/{job_id}")
        return job

    def push_model(self, path: Path, name: str) -> tuple[Model, bool]:
        """Send the file as the body of PUT /v1/models/<name>, streamed, with its length (so
        the API can refuse one too large before it is sent); True if the name is new."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(path.stat().st_size),
        }
        with path.open("rb") as handle:
            response = self._send(
                "PUT", _model_path(name), content=_chunks(handle), headers=headers
            )
        model: Model = response.json()
        return model, response.status_code == 201

    def models(self) -> dict[str, Any]:
        """{"models": [...], "default": name}"""
        listing: dict[str, Any] = self._call("GET", "/v1/models")
        return listing

    def remove_model(self, name: str) -> None:
        self._send("DELETE", _model_path(name))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(_describe(exc)) from None
        if response.is_success:
            return response
        if response.status_code == 401:
            raise NotAuthorized(_refused(response).message, key_sent=self._key_sent)
        raise _refused(response)


def valid_api_key(key: str) -> bool:
    """What an HTTP header can carry as is: visible ASCII, no spaces. (Anything else would
    fail in httpx or h11, whose messages quote the header, so the key.)"""
    return bool(key) and all("!" <= char <= "~" for char in key)


def _refused(response: httpx.Response) -> Refused:
    status = response.status_code
    after = response.headers.get("retry-after", "")
    retry_after_s = float(after) if after.isdigit() else None
    try:
        error = response.json()["error"]
        return Refused(
            status, error["code"], error["message"], error.get("details") or {}, retry_after_s
        )
    except (ValueError, KeyError, TypeError):  # not the API's error shape (a proxy, say)
        text = " ".join(response.text.split())[:200]
        message = f"HTTP {status} {response.reason_phrase}: {text}".rstrip(": ")
        return Refused(status, "http_error", message, {}, retry_after_s)


def _model_path(name: str) -> str:
    return f"/v1/models/{quote(name, safe='')}"


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK_BYTES):
        yield chunk


_BACKOFF = wait_exponential(multiplier=1, exp_base=2)  # 1, 2, 4, 8 s


def _retry_delay(state: RetryCallState) -> float:
    """The server's Retry-After (capped at 30 s), else 1, 2, 4, 8 s."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, Refused) and exc.retry_after_s is not None:
        return min(exc.retry_after_s, 30.0)
    return _BACKOFF(state)


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection failed (" + (str(exc) or "refused") + ")"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    return str(exc) or type(exc).__name__

"""The CLI's HTTP client against a fake transport: retries when busy, and any error answer
turned into words."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from yolo_cli.client import Api, Refused

BUSY = {"error": {"code": "unavailable", "message": "Too many jobs waiting.", "details": {}}}


def test_a_busy_answer_is_retried_with_the_same_idempotency_key(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    keys: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        if len(keys) < 3:
            return httpx.Response(503, json=BUSY, headers={"Retry-After": "0"})
        return httpx.Response(202, json={"jobs": [{"id": "j1", "status": "queued"}]})

    with Api("http://api.test", transport=httpx.MockTransport(answer)) as api:
        assert api.upload([tmp_path / "a.png"]) == [{"id": "j1", "status": "queued"}]
    assert len(keys) == 3
    assert len(set(keys)) == 1


def test_busy_for_too_long_gives_up_with_the_apis_words(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG")

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json=BUSY, headers={"Retry-After": "0"})

    api = Api("http://api.test", retries=2, transport=httpx.MockTransport(answer))
    with api, pytest.raises(Refused) as refused:
        api.upload([tmp_path / "a.png"])
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
    assert str(refused.value) == "Too many jobs waiting."


def test_an_answer_not_in_the_apis_shape_is_still_words() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html><h1>Not Found</h1></html>")

    api = Api("http://api.test", transport=httpx.MockTransport(answer))
    with api, pytest.raises(Refused) as refused:
        api.job("j1")
    assert refused.value.code == "http_error"
    assert str(refused.value) == "HTTP 404 Not Found: <html><h1>Not Found</h1></html>"

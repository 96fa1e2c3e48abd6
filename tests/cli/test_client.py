"""The CLI's HTTP client against a fake transport: the API key on every request, retries
when busy, and any error answer turned into words."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from yolo_cli.cli import send
from yolo_cli.client import Api, NotAuthorized, Refused
from yolo_cli.output import Progress

KEY = "yk_client-test-key-0123456789"


def error(code: str, message: str, **details: Any) -> dict[str, Any]:
    """An error answer's body, in the API's shape."""
    return {"error": {"code": code, "message": message, "details": details}}


BUSY = error("unavailable", "Too many jobs waiting.")
TOO_MANY = error(
    "too_many_jobs",
    "This key has 3 unfinished jobs; at most 3 are allowed.",
    unfinished=3,
    max_unfinished=3,
)
UNAUTHORIZED = error("unauthorized", "The API key is not valid.")
UNKNOWN_MODEL = error(
    "unknown_model",
    "There is no model 'nope.pt'; the models are: yolo11n.pt.",
    model="nope.pt",
    models=["yolo11n.pt"],
)
MODEL_OUT = {"name": "my model.pt", "sha256": "ab", "size_bytes": 3}


def fake_api(answer: Callable[[httpx.Request], httpx.Response], **options: Any) -> Api:
    return Api("http://api.test", transport=httpx.MockTransport(answer), **options)


def queued(request: httpx.Request) -> httpx.Response:
    count = request.content.count(b'name="files"')
    jobs = [{"id": f"j{n}", "status": "queued"} for n in range(count)]
    return httpx.Response(202, json={"jobs": jobs})


def images(folder: Path, count: int) -> list[Path]:
    paths = [folder / f"{n}.png" for n in range(count)]
    for path in paths:
        path.write_bytes(b"\x89PNG")
    return paths


def test_a_busy_answer_is_retried_with_the_same_idempotency_key(tmp_path: Path) -> None:
    keys: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        if len(keys) < 3:
            return httpx.Response(503, json=BUSY, headers={"Retry-After": "0"})
        return httpx.Response(202, json={"jobs": [{"id": "j1", "status": "queued"}]})

    with fake_api(answer) as api:
        assert api.upload(images(tmp_path, 1)) == [{"id": "j1", "status": "queued"}]
    assert len(keys) == 3
    assert len(set(keys)) == 1


def test_busy_for_too_long_gives_up_with_the_apis_words(tmp_path: Path) -> None:
    headers = {"Retry-After": "0"}
    api = fake_api(lambda _: httpx.Response(503, json=BUSY, headers=headers), retries=2)
    with api, pytest.raises(Refused) as refused:
        api.upload(images(tmp_path, 1))
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
    assert str(refused.value) == "Too many jobs waiting."


def test_an_answer_not_in_the_apis_shape_is_still_words() -> None:
    api = fake_api(lambda _: httpx.Response(404, text="<html><h1>Not Found</h1></html>"))
    with api, pytest.raises(Refused) as refused:
        api.job("j1")
    assert refused.value.code == "http_error"
    assert str(refused.value) == "HTTP 404 Not Found: <html><h1>Not Found</h1></html>"


@pytest.mark.parametrize("key", [KEY, None])
def test_the_key_goes_in_the_authorization_header_of_every_request(
    tmp_path: Path, key: str | None
) -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return queued(request) if request.method == "POST" else httpx.Response(200, json={})

    with fake_api(answer, api_key=key) as api:
        api.upload(images(tmp_path, 1))
        api.job("j0")
    assert seen == [f"Bearer {KEY}" if key else None] * 2


@pytest.mark.parametrize("key", [KEY, None])
def test_a_401_is_not_authorized_whatever_the_call(tmp_path: Path, key: str | None) -> None:
    headers = {"WWW-Authenticate": "Bearer"}
    api = fake_api(lambda _: httpx.Response(401, json=UNAUTHORIZED, headers=headers), api_key=key)
    with api:
        for call in (lambda: api.upload(images(tmp_path, 1)), lambda: api.job("j1")):
            with pytest.raises(NotAuthorized) as refused:
                call()
            assert not isinstance(refused.value, Refused)  # not one file's or job's problem
            assert refused.value.key_sent is (key is not None)
            assert str(refused.value) == "The API key is not valid."


@pytest.mark.parametrize("key", [f"{KEY} ", f"{KEY}\n", f"{KEY}é", ""])
def test_a_key_no_header_can_carry_is_refused_without_being_quoted(key: str) -> None:
    with pytest.raises(ValueError, match="visible ASCII") as refused:
        Api("http://api.test", api_key=key)
    assert KEY not in str(refused.value)


def test_too_many_jobs_is_retried_after_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("yolo_cli.client.time.sleep", sleeps.append)
    answers = [httpx.Response(429, json=TOO_MANY, headers={"Retry-After": "7"})]

    def answer(request: httpx.Request) -> httpx.Response:
        return answers.pop() if answers else queued(request)

    with fake_api(answer) as api:
        assert api.upload(images(tmp_path, 1)) == [{"id": "j0", "status": "queued"}]
    assert sleeps == [7.0]


def test_still_too_many_jobs_stops_the_upload_and_each_file_left_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("yolo_cli.client.time.sleep", lambda seconds: None)
    sent: list[tuple[int, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.content.count(b'name="files"'), request.headers["idempotency-key"]))
        if len(sent) == 1:
            return queued(request)
        return httpx.Response(429, json=TOO_MANY, headers={"Retry-After": "10"})

    paths = images(tmp_path, 5)
    with fake_api(answer, retries=2) as api:
        rows = send(api, paths, 2, Progress(io.StringIO(), "upload", 5, enabled=False))

    # The first request of 2 files, then the second one 3 times (the same request each time),
    # and not the third: not file by file either, as for a refused file.
    assert [count for count, _ in sent] == [2, 2, 2, 2]
    assert len({key for _, key in sent[1:]}) == 1
    assert [row.file for row in rows] == [str(path) for path in paths]
    assert [row.status for row in rows] == ["queued", "queued", "refused", "refused", "refused"]
    for row in rows[2:]:
        assert row.error_code == "too_many_jobs"
        assert row.error == (
            "This key has 3 unfinished jobs; at most 3 are allowed. "
            "(not uploaded: still refused after 3 tries)"
        )


@pytest.mark.parametrize(("status", "created"), [(201, True), (200, False)])
def test_a_model_is_pushed_as_the_raw_body_with_its_length(
    tmp_path: Path, status: int, created: bool
) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"PK\x03\x04" + b"w" * (3 * 1024 * 1024))  # more than one chunk
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(status, json=MODEL_OUT)

    with fake_api(answer, api_key=KEY) as api:
        assert api.push_model(weights, "my model.pt") == (MODEL_OUT, created)
    (request,) = seen
    assert (request.method, request.url.raw_path) == ("PUT", b"/v1/models/my%20model.pt")
    assert request.headers["content-type"] == "application/octet-stream"
    assert request.headers["content-length"] == str(weights.stat().st_size)
    assert "transfer-encoding" not in request.headers  # a length: refused early if too large
    assert request.content == weights.read_bytes()


def test_removing_a_model_expects_no_body() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("DELETE", "/v1/models/m.pt")
        return httpx.Response(204)

    with fake_api(answer) as api:
        api.remove_model("m.pt")  # would raise, were it to parse the (empty) body


def test_the_upload_parameters_go_in_every_request_and_a_refusal_of_them_ends_the_run(
    tmp_path: Path,
) -> None:
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return httpx.Response(422, json=UNKNOWN_MODEL)

    params = {"model": "nope.pt", "confidence": "0.4"}
    api = fake_api(answer)
    progress = Progress(io.StringIO(), "upload", 4, enabled=False)
    with api, pytest.raises(Refused) as refused:
        send(api, images(tmp_path, 4), 2, progress, params)

    assert refused.value.code == "unknown_model"
    (body,) = bodies  # not re-sent file by file: the parameters are the same for every file
    assert b'name="model"\r\n\r\nnope.pt\r\n' in body
    assert b'name="confidence"\r\n\r\n0.4\r\n' in body
    assert body.count(b'name="files"') == 2

"""/docs (Swagger UI) and /redoc: every file they load comes from this origin, with the
content type of what it is, under a CSP that runs only this origin's scripts."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

PAGES = ["/docs", "/redoc"]
# What each referenced file must be served as (nosniff makes the browser hold to it).
TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


@pytest.mark.parametrize("path", PAGES)
def test_the_page_loads_only_files_of_this_origin(client: TestClient, path: str) -> None:
    html = client.get(path).text
    assert not re.search(r"\w+://|//", html)  # no absolute or protocol-relative URL
    assert not re.search(r"<script(?![^>]*\ssrc=)", html)  # no inline script
    files = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert any(file.endswith(".js") for file in files)
    for file in files:
        response = client.get(file)
        assert response.status_code == 200, file
        kind = response.headers["content-type"].split(";")[0]
        assert kind in TYPES[file[file.rfind(".") :]], file
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
def test_the_page_has_a_csp_that_runs_only_this_origins_scripts(
    client: TestClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = dict(
        d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "http" not in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"


def test_swagger_ui_is_served_and_needs_no_unsafe_source(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text
    assert "/openapi.json" in response.text
    assert "unsafe" not in response.headers["content-security-policy"]


def test_the_pages_are_not_operations_and_the_spec_stays_put(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc"} & set(paths)
    assert 'data-spec-url="/openapi.json"' in client.get("/docs").text
    assert 'spec-url="/openapi.json"' in client.get("/redoc").text

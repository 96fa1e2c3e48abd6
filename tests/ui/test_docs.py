"""/docs (Swagger UI) and /redoc in headless Chromium: they render the API's operations from
this origin alone, under their CSP, with no script error and no failed or foreign request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.api_app import ADMIN_KEY
from tests.support.live_api import StartApi

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request

UPLOAD_SUMMARY = "Upload one or more images for detection"


def watch(page: Page, origin: str) -> list[str]:
    """Everything that went wrong while the page ran: script errors, console errors (CSP
    violations among them), failed requests and requests to another origin."""
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def request(sent: Request) -> None:
        if not sent.url.startswith((f"{origin}/", "data:", "blob:")):
            problems.append(f"foreign: {sent.url}")

    page.on("pageerror", lambda error: problems.append(f"error: {error}"))
    page.on("console", console)
    page.on("request", request)
    page.on("requestfailed", lambda sent: problems.append(f"failed: {sent.url} {sent.failure}"))
    return problems


def test_swagger_ui_shows_the_operations_and_sends_the_key(
    keyless_page: Page, start_api: StartApi
) -> None:
    url = start_api(workers_enabled=False)
    page = keyless_page
    problems = watch(page, url)
    page.goto(f"{url}/docs")
    upload = page.locator(".opblock-post", has_text="/v1/uploads")
    upload.first.wait_for()
    assert UPLOAD_SUMMARY in upload.first.inner_text()

    page.get_by_role("button", name="Authorize").click()  # HTTPBearer: one "Value" field
    dialog = page.locator(".modal-ux")
    dialog.locator("input").fill(ADMIN_KEY)
    dialog.locator("button[type=submit]").click()
    dialog.locator(".btn-done").click()
    jobs = page.locator(".opblock-get", has=page.locator('[data-path="/v1/jobs"]'))
    jobs.locator(".opblock-summary").click()
    jobs.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: r.url.startswith(f"{url}/v1/jobs")) as answer:
        jobs.get_by_role("button", name="Execute").click()
    assert answer.value.request.headers["authorization"] == f"Bearer {ADMIN_KEY}"
    assert answer.value.status == 200
    assert problems == []


def test_redoc_shows_the_operations(keyless_page: Page, start_api: StartApi) -> None:
    url = start_api(workers_enabled=False)
    page = keyless_page
    problems = watch(page, url)
    page.goto(f"{url}/redoc")
    page.get_by_role("heading", name=UPLOAD_SUMMARY).wait_for()
    page.locator("li[data-item-id='tag/uploads']").click()  # the menu lists its operations
    page.get_by_role("menuitem", name=UPLOAD_SUMMARY).wait_for()
    page.get_by_placeholder("Search...").fill("upload")  # searched in ReDoc's blob: worker
    results = page.locator("[data-role='search:results'] li", has_text=UPLOAD_SUMMARY)
    results.first.wait_for()
    assert problems == []

"""Headless Chromium (Debian's package) driven by Playwright, for the tests of the pages.

Playwright never downloads a browser here: it launches the machine's Chromium binary. When it
or Chromium is missing the tests skip on a developer's machine and fail in CI (CI=true)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# Where the page keeps the API key a person entered (see static/index.html).
STORED_KEY = "apiKey"

# The flags that keep Chromium off the network it cannot reach here (see the machine notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(what: str) -> NoReturn:
    message = f"{what} (CI installs it: apt-get install chromium; pip install playwright)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Browser]:
    """The machine's Chromium, launched headless until the block ends."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not executable:
        _missing("Chromium is not installed")
    with sync_playwright() as playwright:
        # Playwright gives each launch a fresh, temporary --user-data-dir.
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def open_page(browser: Browser, key: str | None) -> Iterator[Page]:
    """A page in a new browser context; with `key`, the context has it stored already, as if
    a person had entered it once (kept over reloads; not put back once the page forgets it)."""
    context = browser.new_context(viewport={"width": 1000, "height": 800}, locale="en-GB")
    if key:
        store = f"localStorage.setItem('{STORED_KEY}', {json.dumps(key)})"
        context.add_init_script(
            "if (location.protocol.startsWith('http') && !sessionStorage.seeded)"
            f" {{ sessionStorage.seeded = 1; {store} }}"
        )
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()

"""The pages in headless Chromium (tests/support/browser.py) against a running API
(`start_api`, from tests/conftest.py's plugins)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.api_app import ADMIN_KEY
from tests.support.browser import chromium, open_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """The page of someone who entered the admin key before."""
    with open_page(browser, ADMIN_KEY) as page:
        yield page


@pytest.fixture
def keyless_page(browser: Browser) -> Iterator[Page]:
    """The page of someone who never entered a key in this browser."""
    with open_page(browser, None) as page:
        yield page

"""The upload page at `/`, from the package; its CSP runs only the page's own inline code."""

import re
from base64 import b64encode
from hashlib import sha256
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)
PAGE = (Path(__file__).parent / "static" / "index.html").read_text("utf-8")


def _hash(tag: str) -> str:
    (code,) = re.findall(f"<{tag}>(.*)</{tag}>", PAGE, re.S)
    return f"'sha256-{b64encode(sha256(code.encode()).digest()).decode()}'"


HEADERS = {
    "Content-Security-Policy": f"default-src 'self'; script-src {_hash('script')}; "
    # blob: for the pictures, which the page fetches with its API key (an <img> cannot send it).
    f"style-src {_hash('style')}; img-src 'self' blob:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


@router.get("/")
def page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers=HEADERS)

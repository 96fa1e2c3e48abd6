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


def page_headers(**sources: str) -> dict[str, str]:
    """A page's security headers: a CSP of `default-src 'self'`, the given directives
    (`script_src=...` is `script-src ...`) and no framing, and no Referer sent anywhere."""
    directives = [f"{name.replace('_', '-')} {value}" for name, value in sources.items()]
    policy = "; ".join(["default-src 'self'", *directives, "frame-ancestors 'none'"])
    return {"Content-Security-Policy": policy, "Referrer-Policy": "no-referrer"}


HEADERS = page_headers(
    script_src=_hash("script"),
    style_src=_hash("style"),
    # blob: for the pictures, which the page fetches with its API key (an <img> cannot send it).
    img_src="'self' blob:",
)


@router.get("/")
def page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers=HEADERS)

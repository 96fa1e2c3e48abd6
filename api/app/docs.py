"""Swagger UI at `/docs` and ReDoc at `/redoc`, from files in the image rather than a CDN (so
they work offline): our static pages, their scripts from the fastapi-offline package under
`/docs/assets`. No inline script anywhere, so the pages' CSP runs only this origin's code."""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from app.ui import page_headers

STATIC = Path(__file__).parent / "static"
ASSETS_PATH = "/docs/assets"
# The package's Swagger UI and ReDoc builds; our own scripts (static/docs/) are found first.
ASSETS = StaticFiles(directory=STATIC / "docs", packages=[("fastapi_offline", "static")])

# Both draw icons from data: URIs in their CSS. Swagger UI needs nothing else: it styles
# elements through the DOM, which style-src (here default-src 'self') does not govern.
SWAGGER_HEADERS = page_headers(script_src="'self'", img_src="'self' data:")
REDOC_HEADERS = page_headers(
    script_src="'self'",
    img_src="'self' data:",
    # ReDoc (styled-components) writes <style> elements at run time.
    style_src="'self' 'unsafe-inline'",
    # ReDoc's search index runs in a Worker it starts from a blob: URL.
    worker_src="blob:",
)

router = APIRouter(include_in_schema=False)
SWAGGER_PAGE = (STATIC / "docs.html").read_text("utf-8")
REDOC_PAGE = (STATIC / "redoc.html").read_text("utf-8")
REDOC_SCRIPT = "redoc.standalone.js"
# ReDoc 2 always draws the Redocly badge from this CDN; the CSP would refuse it (a logged
# violation, and a request attempt offline). An empty src fails at once; ReDoc then drops it.
REDOCLY_BADGE = '"https://cdn.redoc.ly/redoc/logo-mini.svg"'


def _redoc_script() -> bytes:
    source = (files("fastapi_offline") / "static" / REDOC_SCRIPT).read_text("utf-8")
    return source.replace(REDOCLY_BADGE, '""').encode()


REDOC_SCRIPT_BODY = _redoc_script()


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER_PAGE, headers=SWAGGER_HEADERS)


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC_PAGE, headers=REDOC_HEADERS)


@router.get(f"{ASSETS_PATH}/{REDOC_SCRIPT}")  # before the mount, so this route wins
def redoc_script() -> Response:
    return Response(REDOC_SCRIPT_BODY, media_type="text/javascript")


def install(app: FastAPI) -> None:
    """Serve the two pages and their assets (`app` has FastAPI's CDN pages turned off)."""
    app.include_router(router)
    app.mount(ASSETS_PATH, ASSETS, name="docs-assets")

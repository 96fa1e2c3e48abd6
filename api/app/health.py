"""Liveness and readiness."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.deps import Resources, ResourcesDep
from app.orchestrators.base import OrchestratorError

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
def health() -> dict[str, str]:
    """Touches nothing else, so a slow database never gets the API restarted."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: database, shared volume and orchestrator reachable",
    responses={503: {"description": "Not ready; `checks` says why."}},
)
def ready(resources: ResourcesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with resources.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {_first_line(exc)}"
    checks["storage"] = _storage(resources)
    try:
        resources.orchestrator.ping()
        checks["orchestrator"] = "ok"
    except OrchestratorError as exc:
        checks["orchestrator"] = f"unreachable: {exc}"
    ok = all(value == "ok" for value in checks.values())
    status = "ready" if ok else "unavailable"
    body = {"status": status, "orchestrator": resources.orchestrator.name, "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)


def _storage(resources: Resources) -> str:
    storage, minimum = resources.storage, resources.settings.min_free_bytes
    if not storage.is_writable():
        return "shared data dir not writable"
    free = storage.free_bytes()
    if free < minimum:
        return f"nearly full: {free // 2**20} MiB free, uploads need {minimum // 2**20} MiB"
    return "ok"


def _first_line(exc: SQLAlchemyError) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(cause).__name__}: {lines[0][:200]}"

"""GET /metrics on the API's port, unless METRICS_PORT serves it elsewhere or METRICS_ENABLED
is false (then 404). No API key: it shows counts and timings, never a job, key or file."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.deps import ResourcesDep
from app.errors import NotFound
from app.openapi import ErrorOut

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (no key needed)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The text format."},
        404: {
            "model": ErrorOut,
            "description": "`not_found`: METRICS_ENABLED=false, or served on METRICS_PORT",
        },
    },
)
def metrics(resources: ResourcesDep) -> Response:
    """Jobs by status, the queue, batch sizes, latencies, inference time, callback lag and
    webhook deliveries, in Prometheus's text format."""
    settings = resources.settings
    if not settings.metrics_enabled:
        raise NotFound("Metrics are turned off (METRICS_ENABLED=false).")
    if settings.metrics_port:
        raise NotFound("Metrics are served on their own port (METRICS_PORT).")
    return Response(resources.metrics.render(), media_type=CONTENT_TYPE_LATEST)

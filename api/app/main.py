"""The application: resources opened in the lifespan, routers, one error handler."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import docs, health, ui
from app.config import OrchestratorKind, Settings, load_settings
from app.db import make_engine, make_session_factory, session_scope
from app.deps import Resources
from app.errors import install_error_handlers
from app.exports import routes as export_routes
from app.jobs import routes as job_routes
from app.jobs import service
from app.jobs.intake import Intake
from app.keys import routes as key_routes
from app.logs import configure_logging
from app.metrics import routes as metrics_routes
from app.metrics.exposition import Exporter
from app.middleware import HardeningMiddleware
from app.models import routes as model_routes
from app.orchestrators.base import Execution, Orchestrator
from app.orchestrators.kestra import KestraOrchestrator
from app.startup import RefusalGuard, check_metrics, check_orchestrator
from app.storage import SharedStorage
from app.workers.deliverer import Deliverer
from app.workers.dispatcher import Dispatcher
from app.workers.reconciler import Reconciler

log = logging.getLogger(__name__)

DESCRIPTION = """
POST images, get object detections. Each image becomes a job; a Kestra flow runs Ultralytics
YOLO on it in a throwaway container and reports back.
"""
TAGS = [
    {"name": "uploads", "description": "Send images; each becomes a job."},
    {"name": "jobs", "description": "Follow jobs: detections, the upload, the annotated image."},
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "keys", "description": "API keys (admin keys only)."},
    {"name": "models", "description": "Model weights on the shared volume, chosen per upload."},
    {"name": "callbacks", "description": "Called by the Kestra flow, not by people."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conf = settings or load_settings()
        configure_logging(conf.log_level)
        check_orchestrator(conf)
        check_metrics(conf)
        resources = _open(conf)
        app.state.resources = resources
        resources.metrics.start()
        if conf.workers_enabled:
            resources.dispatcher.start()
            resources.reconciler.start()
            if resources.deliverer is not None:
                resources.deliverer.start()
        log.info("api.started", extra={"orchestrator": conf.orchestrator.value})
        if not conf.require_api_keys:
            log.warning(
                "api.open",
                extra={
                    "reason": "REQUIRE_API_KEYS=false: anyone who reaches the port may use "
                    "every route; keep it on loopback (make dev)"
                },
            )
        try:
            yield
        finally:
            resources.metrics.stop()
            resources.dispatcher.stop()
            resources.reconciler.stop()
            if resources.deliverer is not None:
                resources.deliverer.stop()
                resources.deliverer.close()
            resources.orchestrator.close()
            resources.engine.dispose()
            log.info("api.stopped")

    app = FastAPI(
        title="YOLO inference API",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN; app/docs.py serves them.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(HardeningMiddleware)
    app.add_middleware(RefusalGuard)
    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    app.include_router(job_routes.router)
    app.include_router(key_routes.router)
    app.include_router(model_routes.router)
    app.include_router(export_routes.router)
    app.include_router(ui.router)
    docs.install(app)
    return app


def _open(settings: Settings) -> Resources:
    storage = SharedStorage(settings.shared_data_dir)
    storage.prepare()
    if removed := storage.remove_stale_temp_files():
        log.info("storage.stale_temp_removed", extra={"count": removed})
    engine = make_engine(settings)
    sessions = make_session_factory(engine)

    def report(execution: Execution) -> None:
        """Local runs report through the same code path as a Kestra callback."""
        try:
            with session_scope(sessions) as session:
                service.apply_batch(session, storage, execution)
        except Exception:  # the reconciler picks the job up later
            log.exception("local.report_failed", extra={"execution_id": execution.id})

    orchestrator: Orchestrator
    if settings.orchestrator is OrchestratorKind.KESTRA:
        orchestrator = KestraOrchestrator(settings)
    else:
        # Imported here: the dev-only Local adapter needs the host's Ultralytics and is left
        # out of the image's build context.
        from app.orchestrators.local import LocalOrchestrator

        orchestrator = LocalOrchestrator(settings, report)
    dispatcher = Dispatcher(settings, sessions, orchestrator)
    intake = Intake(settings, sessions, storage, wake=dispatcher.wake)
    reconciler = Reconciler(settings, sessions, orchestrator, storage)
    deliverer = Deliverer(settings, sessions) if settings.webhook_secret else None
    metrics = Exporter(settings, sessions)
    return Resources(
        settings,
        engine,
        sessions,
        storage,
        intake,
        orchestrator,
        dispatcher,
        reconciler,
        deliverer,
        metrics,
    )


app = create_app()

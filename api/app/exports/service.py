"""An export's life: asked for by an admin (a queued row), started through the orchestrator
port (running, with its execution), finished by the reconciler, which checks the files in
models/ (models.exports) before the export counts as succeeded. Once it has, GET /v1/models
lists it and uploads may name it: the listing checks the volume itself. A restart loses
nothing: the reconciler asks again, and starts an export whose execution is unknown (a Local
subprocess dies with the API) again. Nothing here commits: the caller owns the transaction."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import ExportInProgress, NotFound
from app.exports.models import ExportState, ModelExport
from app.models import exports, files
from app.models import repository as models_repository
from app.models import service as model_service
from app.models.exports import Format, Limits, NotAnExport
from app.orchestrators.base import (
    Execution,
    ExecutionNotFound,
    ExportRequest,
    Orchestrator,
    OrchestratorError,
    Phase,
)
from app.storage import SharedStorage

log = logging.getLogger(__name__)


def create(
    session: Session,
    storage: SharedStorage,
    model: str,
    fmt: Format,
    settings: Settings,
) -> ModelExport:
    """A queued export of models/<model>; NotFound without that file, ExportInProgress while
    another export to the same name has not finished, ModelInUse while unfinished jobs use
    the export it would replace (they recorded its digest)."""
    files.check_name(model)
    path = files.stored_file(storage, model)
    if path.is_symlink() or not path.is_file():
        raise NotFound(f"There is no model {model!r} on the shared volume.", name=model)
    row = models_repository.get(session, model)
    digest = row.sha256 if row is not None else files.digest_of(path)
    if digest is None:  # removed meanwhile
        raise NotFound(f"There is no model {model!r} on the shared volume.", name=model)
    name = exports.export_name(model, fmt)
    model_service.check_unused(session, name, settings.model)
    now = datetime.now(UTC)
    export = ModelExport(
        id=str(uuid.uuid4()),
        model=model,
        model_sha256=digest,
        format=fmt,
        image_size=settings.image_size,
        name=name,
        state=ExportState.QUEUED,
        created_at=now,
        updated_at=now,
    )
    session.add(export)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ExportInProgress(
            f"An export of {model!r} to {fmt} has not finished yet; try again once it has.",
            model=model,
            format=fmt,
        ) from None
    return export


def start(orchestrator: Orchestrator, export: ModelExport) -> None:
    """Running, with its execution; left queued when the orchestrator cannot take it now."""
    request = ExportRequest(
        export.id, files.volume_path(export.model), export.format, export.image_size
    )
    try:
        execution = orchestrator.start_export(request)
    except OrchestratorError as exc:
        log.warning("export.not_started", extra={"export_id": export.id, "reason": str(exc)})
        return
    export.state, export.execution_id = ExportState.RUNNING, execution.id
    export.updated_at = datetime.now(UTC)


def advance(
    storage: SharedStorage, orchestrator: Orchestrator, limits: Limits, export: ModelExport
) -> None:
    """One reconciler step for an unfinished export. OrchestratorError (but not found) is
    raised: the orchestrator cannot answer now."""
    if export.execution_id is None:
        start(orchestrator, export)
        return
    try:
        execution = orchestrator.get(export.execution_id)
    except ExecutionNotFound:
        start(orchestrator, export)
        return
    finish(storage, limits, export, execution)


def finish(
    storage: SharedStorage, limits: Limits, export: ModelExport, execution: Execution
) -> None:
    """Succeeded once the files pass the checks; failed with the reason otherwise."""
    if execution.phase is Phase.FAILED:
        _end(
            export, ExportState.FAILED, execution.reason or f"the execution ended {execution.state}"
        )
    elif execution.phase is Phase.SUCCEEDED:
        try:
            checked = exports.check(storage, export.name, limits)
        except NotAnExport as exc:
            _end(export, ExportState.FAILED, f"the export is not usable: {exc}")
            return
        export.sha256, export.size_bytes = checked.sha256, checked.size_bytes
        _end(export, ExportState.SUCCEEDED)


def _end(export: ModelExport, state: ExportState, error: str | None = None) -> None:
    export.state, export.error, export.updated_at = state, error, datetime.now(UTC)
    log.info("export.finished", extra={"export_id": export.id, "state": state, "error": error})

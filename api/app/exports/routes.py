"""Exports of a model (admin): ask for one, follow it. The orchestrator runs it; the
reconciler finishes it (app/exports/service.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import ResourcesDep, SessionDep
from app.errors import NotFound
from app.exports import repository, service
from app.exports.schemas import ExportIn, ExportOut
from app.keys.auth import AdminDep
from app.models.routes import ModelName
from app.openapi import errors

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post(
    "/{name}/exports",
    status_code=202,
    response_model=ExportOut,
    summary="Export a model to ONNX or OpenVINO (admin)",
    responses=errors(
        400,
        403,
        404,
        409,
        422,
        s400="`invalid_model_name`: not a `.pt` name",
        s404="`not_found`: no such `.pt` in models/",
        s409="`export_in_progress`: an export to the same name has not finished; "
        "`model_in_use`: unfinished jobs use the export it would replace",
    ),
)
def export_model(
    name: ModelName,
    body: ExportIn,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    _: AdminDep,
) -> ExportOut:
    """Exports models/<name> at `IMAGE_SIZE` as `<stem>.onnx` or `<stem>_openvino_model` in
    models/ (the flow `yolo-export`, or detect.py in a subprocess with the Local
    orchestrator). 202: follow it at the Location; once `succeeded`, the export is listed and
    uploads may name it."""
    export = service.create(session, resources.storage, name, body.format, resources.settings)
    service.start(resources.orchestrator, export)
    session.commit()
    response.headers["Location"] = f"/v1/models/{name}/exports/{export.id}"
    return ExportOut.model_validate(export)


@router.get(
    "/{name}/exports/{export_id}",
    response_model=ExportOut,
    summary="An export's state (admin)",
    responses=errors(403, 404, s404="`not_found`: no such export of this model"),
)
def get_export(name: str, export_id: str, session: SessionDep, _: AdminDep) -> ExportOut:
    export = repository.get(session, export_id)
    if export is None or export.model != name:
        raise NotFound(f"There is no export {export_id!r} of {name!r}.", export_id=export_id)
    return ExportOut.model_validate(export)

"""Models on the shared volume: push (admin), list (any key), remove (admin). A `.pt` runs
code when it is loaded (pickle), so only admin keys may put one where inference loads it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.deps import Resources, ResourcesDep, SessionDep, get_resources
from app.errors import InsufficientStorage
from app.keys.auth import AdminDep, PrincipalDep
from app.models import exports, files, service
from app.models.exports import Limits
from app.models.files import NAME_PATTERN, ReceivedModel
from app.models.schemas import ModelList, ModelOut
from app.openapi import errors

router = APIRouter(prefix="/v1/models", tags=["models"])

ModelName = Annotated[
    str,
    Path(
        description="The file's name in models/: letters, digits, `.`, `_`, `-`, then `.pt`.",
        json_schema_extra={"pattern": NAME_PATTERN},  # checked by the route: 400, not 422
    ),
]
ListedName = Annotated[
    str,
    Path(
        description="A `.pt` file's name in models/, or an export's (`<stem>.onnx`, "
        "`<stem>_openvino_model`).",
        json_schema_extra={"pattern": f"{NAME_PATTERN}|{exports.NAME_PATTERN}"},
    ),
]
# The body is read as a stream, not by FastAPI, so its schema is declared here.
_WEIGHTS_BODY = {
    "requestBody": {
        "required": True,
        # torch.save writes a zip archive; nothing else is accepted (415).
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_S400 = "`invalid_model_name`: the name does not fit the pattern"


@router.get("", response_model=ModelList, summary="List the models", responses=errors())
def list_models(session: SessionDep, resources: ResourcesDep, _: PrincipalDep) -> ModelList:
    """Every pushed model with its size and digest, every export in models/ that passes the
    checks (exact files, no links, `MAX_MODEL_BYTES`, made at `IMAGE_SIZE`), and the default
    model (`MODEL`), marked as such; `source: image` when its file is part of the inference
    image (no digest)."""
    settings = resources.settings
    entries = service.available(session, resources.storage, settings.model, Limits.of(settings))
    default = next(entry.name for entry in entries if entry.default)
    return ModelList(models=[ModelOut.of(entry) for entry in entries], default=default)


@router.put(
    "/{name}",
    status_code=201,
    response_model=ModelOut,
    summary="Push a model's weights (admin)",
    responses={
        200: {"model": ModelOut, "description": "Replaced: the name had other weights."},
        **errors(
            400,
            403,
            408,
            409,
            413,
            415,
            507,
            s400=f"{_S400}; `empty_file`: no body",
            s409="`model_in_use`: unfinished jobs use other weights of this name",
            s413="`payload_too_large`: more than `MAX_MODEL_BYTES`",
            s415="`not_a_model`: not a PyTorch archive (zip with `*/data.pkl`)",
        ),
    },
    openapi_extra=_WEIGHTS_BODY,
)
async def push_model(
    name: ModelName, request: Request, response: Response, _: AdminDep
) -> ModelOut:
    """The body is the `.pt` file itself (`torch.save`'s zip archive; it is checked, never
    loaded). 201 when the name is new, 200 when it replaces other weights. The file is placed
    whole and atomically: inference sees the old weights or the new, never part of a file."""
    resources = get_resources(request)  # not as a dependency: that costs a thread hop
    files.check_name(name)
    if resources.storage.free_bytes() < resources.settings.min_free_bytes:
        raise InsufficientStorage("The server's storage is nearly full; try again later.")
    received = await files.receive(
        resources.storage, request.stream(), resources.settings.max_model_bytes
    )
    try:
        entry, created = await run_in_threadpool(_store, resources, name, received)
    finally:
        received.discard()  # unless it was placed in models/
    response.status_code = 201 if created else 200
    return ModelOut.of(entry)


def _store(resources: Resources, name: str, received: ReceivedModel) -> tuple[service.Entry, bool]:
    files.check_format(received.temp_path)
    with resources.sessions() as session:
        try:
            return _commit_store(session, resources, name, received)
        except IntegrityError:  # a concurrent first push of this name won: replace it
            session.rollback()
            return _commit_store(session, resources, name, received)


def _commit_store(
    session: Session, resources: Resources, name: str, received: ReceivedModel
) -> tuple[service.Entry, bool]:
    default = resources.settings.model
    row, created = service.store(session, resources.storage, name, received, default)
    session.commit()
    return service.entry_of(row, default), created


@router.delete(
    "/{name}",
    status_code=204,
    summary="Remove a model (admin)",
    responses=errors(
        400,
        403,
        404,
        409,
        s400=_S400,
        s404="`not_found`: no such model on the shared volume (removed already, or never pushed)",
        s409="`model_in_use`: unfinished jobs use it",
    ),
)
def remove_model(
    name: ListedName, session: SessionDep, resources: ResourcesDep, _: AdminDep
) -> Response:
    """Removes models/<name> (an export's directory as a whole), then its row. Uploads that
    name it get 422 from then on; jobs that ran with it keep its name and digest. A second
    removal gets 404."""
    if exports.format_of(name) is None:
        files.check_name(name)
    service.remove(session, resources.storage, name, resources.settings.model)
    session.commit()
    return Response(status_code=204)

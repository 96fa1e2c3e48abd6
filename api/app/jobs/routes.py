"""HTTP surface for uploads, jobs and Kestra's callback."""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import ValidationError

from app.config import Settings
from app.deps import Resources, ResourcesDep, SessionDep, get_resources
from app.errors import (
    BadRequest,
    BodyTooLarge,
    InsufficientStorage,
    InvalidIdempotencyKey,
    InvalidRequest,
    NotFound,
    OrchestratorDown,
    Unauthorized,
)
from app.jobs import repository, retention, service
from app.jobs.intake import InferenceParams, UploadRequest
from app.jobs.models import Job, JobStatus
from app.jobs.schemas import (
    MAX_MODEL_CHARS,
    CallbackAck,
    JobOut,
    JobPage,
    KestraCallback,
    UploadAccepted,
    UploadOptions,
)
from app.jobs.uploads import UploadReceiver
from app.keys.auth import PrincipalDep
from app.keys.service import Principal
from app.models import exports, files
from app.openapi import errors
from app.orchestrators.base import ExecutionNotFound, OrchestratorError
from app.webhooks.models import MAX_URL_CHARS
from app.webhooks.urls import checked_callback_url, require_webhooks

router = APIRouter()

MAX_IDEMPOTENCY_KEY_CHARS = 200
CALLBACK_MAX_BYTES = 4096
# `<microseconds since 1970 (UTC)>_<job id>`: every string of this shape is a cursor.
CURSOR_PATTERN = r"^(?:[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The body is read as a stream, not by FastAPI, so its schema is declared here.
_FILES = {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}
_PARAMS = {
    "model": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_MODEL_CHARS,
        "pattern": f"{files.NAME_PATTERN}|{exports.NAME_PATTERN}",
        "description": "A name from `GET /v1/models` (default: the server's `MODEL`).",
    },
    "confidence": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "Minimum confidence of a detection (default: `CONFIDENCE`).",
    },
    "image_size": {
        "type": "integer",
        "minimum": 32,
        "maximum": 4096,
        "description": "Inference size in pixels (default: `IMAGE_SIZE`).",
    },
    "callback_url": {
        "type": "string",
        "format": "uri",
        "maxLength": MAX_URL_CHARS,
        "description": "http(s) URL that each job's JSON is POSTed to when it ends, signed "
        "per Standard Webhooks (default: the key's; none without).",
    },
}
_FORM = {"type": "object", "required": ["files"], "properties": {"files": _FILES, **_PARAMS}}
_IMAGE_TYPES = "image/jpeg, image/png, image/webp"
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": _FORM,
                "encoding": {"files": {"contentType": _IMAGE_TYPES}},
            }
        },
    }
}
_CALLBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": KestraCallback.model_json_schema()}},
    }
}


@router.post(
    "/v1/uploads",
    status_code=202,
    response_model=UploadAccepted,
    tags=["uploads"],
    summary="Upload one or more images for detection",
    responses=errors(
        400,
        408,
        413,
        415,
        429,
        507,
        s400="`empty_file`, `no_files`, `bad_request`, `invalid_idempotency_key`",
        s422="`corrupt_image`, `idempotency_key_reused`, `unknown_model`, `invalid_request`, "
        "`invalid_callback_url`, `webhooks_unavailable`",
    ),
    openapi_extra=_UPLOAD_BODY,
)
async def upload(
    request: Request,
    response: Response,
    owner: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            description=f"1-{MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters.",
            # Declared, not enforced by FastAPI: _checked_idempotency_key answers 400 itself.
            json_schema_extra={"pattern": f"^[!-~]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}$"},
        ),
    ] = None,
) -> UploadAccepted:
    """Send images in the multipart field `files` (JPEG, PNG or WebP). Each becomes a
    queued job; the text fields `model`, `confidence` and `image_size` choose how it runs
    (each left out is the server's default); `callback_url` names where each job's JSON is
    POSTed when it ends (the key's default if left out). A request is all or nothing: if any
    file or field is refused, nothing is kept.
    Repeat a request with the same `Idempotency-Key` to get the same jobs back; the same key
    with other files or parameters is refused (422)."""
    resources = get_resources(request)  # not as a dependency: that costs a thread hop
    settings, storage = resources.settings, resources.storage
    key = _checked_idempotency_key(idempotency_key)
    if storage.free_bytes() < settings.min_free_bytes:
        raise InsufficientStorage("The server's storage is nearly full; try again later.")
    limits = settings.max_upload_bytes, settings.max_files_per_request
    with UploadReceiver(storage, *limits) as receiver:  # its temp files go on leaving
        received = await receiver.receive(request.headers.get("content-type", ""), request.stream())
        params, callback_url = _params(receiver.params, settings, owner)
        upload = UploadRequest(owner, received, params, key, callback_url)
        jobs = await run_in_threadpool(resources.intake.accept, upload)
    if len(jobs) == 1:
        response.headers["Location"] = f"/v1/jobs/{jobs[0].id}"
    return UploadAccepted(jobs=_out(jobs))


def _params(
    fields: dict[str, str], settings: Settings, owner: Principal
) -> tuple[InferenceParams, str | None]:
    """The form's parameters, checked; the settings' for those left out. The callback URL as
    named (None: the key's default applies, if it has one)."""
    try:
        options = UploadOptions.model_validate(fields)
    except ValidationError as exc:
        problems = [{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        words = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(f"The form fields are not valid: {words}.", errors=problems) from None
    params = InferenceParams(
        settings.model if options.model is None else options.model,
        settings.confidence if options.confidence is None else options.confidence,
        settings.image_size if options.image_size is None else options.image_size,
    )
    named = options.callback_url
    if named is not None:
        checked_callback_url(named, settings)
    elif owner.callback_url is not None:
        require_webhooks(settings)  # the key's URL was checked when it was set
    return params, named


def _out(jobs: Sequence[Job]) -> list[JobOut]:
    return [JobOut.of(job) for job in jobs]


def _checked_idempotency_key(value: str | None) -> str | None:
    """Visible ASCII only: an empty, blank, non-ASCII (decoded as Latin-1 by HTTP servers)
    or over-long key would silently match other requests or be stored garbled."""
    if value is None:
        return None
    if not (0 < len(value) <= MAX_IDEMPOTENCY_KEY_CHARS) or not all(
        "!" <= ch <= "~" for ch in value
    ):
        raise InvalidIdempotencyKey(
            f"An Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII "
            "characters (no spaces).",
            max_chars=MAX_IDEMPOTENCY_KEY_CHARS,
        )
    return value


@router.get(
    "/v1/jobs",
    response_model=JobPage,
    tags=["jobs"],
    summary="List jobs, newest first",
    responses=errors(400, s400="`bad_request`: the cursor is not valid"),
)
def list_jobs(
    session: SessionDep,
    viewer: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, json_schema_extra={"pattern": CURSOR_PATTERN})
    ] = None,
    status: JobStatus | None = None,
) -> JobPage:
    """Page through this key's jobs (an admin key: everyone's) with `limit` and the
    `next_cursor` of the previous page; optionally only those in one `status`."""
    owner = None if viewer.admin else viewer.key_id
    before = _decode_cursor(cursor)
    jobs = repository.page(session, limit=limit, status=status, before=before, owner=owner)
    next_cursor = _encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(jobs) == limit else None
    return JobPage(jobs=_out(jobs), next_cursor=next_cursor)


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobOut,
    tags=["jobs"],
    summary="One job",
    responses=errors(404),
)
def get_job(job_id: str, session: SessionDep, viewer: PrincipalDep) -> JobOut:
    """Status, timestamps, the Kestra execution id and, once done, the detections."""
    return JobOut.of(service.get_job(session, job_id, viewer=viewer))


@router.get(
    "/v1/jobs/{job_id}/image",
    tags=["jobs"],
    summary="The uploaded image",
    response_class=FileResponse,
    responses=errors(404),
)
def get_image(
    job_id: str, session: SessionDep, resources: ResourcesDep, viewer: PrincipalDep
) -> FileResponse:
    job = service.get_job(session, job_id, viewer=viewer)
    media_type = f"image/{job.image_format.lower()}"  # JPEG, PNG or WEBP
    return FileResponse(_served(resources, job.image_path, job_id), media_type=media_type)


@router.get(
    "/v1/jobs/{job_id}/annotated",
    tags=["jobs"],
    summary="The image with the detections drawn",
    response_class=FileResponse,
    responses=errors(404),
)
def get_annotated(
    job_id: str, session: SessionDep, resources: ResourcesDep, viewer: PrincipalDep
) -> FileResponse:
    job = service.get_job(session, job_id, viewer=viewer)
    if not job.annotated_path:
        raise NotFound(
            f"Job {job_id} has no annotated image (status: {job.status}).", status=job.status
        )
    return FileResponse(_served(resources, job.annotated_path, job_id), media_type="image/jpeg")


@router.delete(
    "/v1/jobs/{job_id}",
    status_code=204,
    tags=["jobs"],
    summary="Delete a job and its files",
    responses=errors(
        404,
        409,
        s404="`not_found`: no such job of this key: unknown, deleted already (so a repeated "
        "DELETE gets 404, the job being gone either way), or another key's",
        s409="`job_in_flight`: submitted, running or being sent; retry once it has finished "
        "(see `Retry-After`)",
    ),
)
def delete_job(
    job_id: str, session: SessionDep, resources: ResourcesDep, viewer: PrincipalDep
) -> Response:
    """Removes the job's upload, result and annotated image, then its row. A queued job not
    yet sent is cancelled this way; a job with the orchestrator is refused (409) until it has
    finished, since its container reads the upload. Idempotent: afterwards the job is gone,
    and a repeated DELETE answers 404 like GET does (a 404 on DELETE means there is nothing
    of this key's left to delete). The job's Idempotency-Key goes with it: a retried upload
    gets back only the jobs still there, or new ones if none is."""
    retention.delete_job(session, resources.storage, job_id, viewer)
    session.commit()
    return Response(status_code=204)


def _served(resources: Resources, relative: str, job_id: str) -> Path:
    path = resources.storage.served_file(relative)
    if path is None:
        raise NotFound(f"The file of job {job_id} is missing.")
    return path


@router.post(
    "/v1/callbacks/kestra",
    status_code=202,
    response_model=CallbackAck,
    tags=["callbacks"],
    summary="Kestra reports an execution's final state",
    responses=errors(404, 408, 413, s401="`unauthorized`: not the callback token"),
    openapi_extra=_CALLBACK_BODY,
)
async def kestra_callback(request: Request) -> CallbackAck:
    """Called by the flow's `afterExecution` task with `Authorization: Bearer <CALLBACK_TOKEN>`.
    A hint, not the truth: the execution's state is asked of the orchestrator before any job
    changes. Idempotent: the same callback twice changes nothing."""
    resources = get_resources(request)
    _check_token(resources, request.headers.get("authorization"))  # before reading the body
    body = await _callback_body(request)
    return await run_in_threadpool(_apply_callback, resources, body)


async def _callback_body(request: Request) -> KestraCallback:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > CALLBACK_MAX_BYTES:
            raise BodyTooLarge(f"A callback body has at most {CALLBACK_MAX_BYTES} bytes.")
    try:
        return KestraCallback.model_validate_json(raw)
    except ValidationError as exc:
        problems = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise InvalidRequest("The callback body is not valid.", errors=problems) from None


def _apply_callback(resources: Resources, body: KestraCallback) -> CallbackAck:
    try:
        execution = resources.orchestrator.get(body.execution_id)
    except ExecutionNotFound:
        raise NotFound(f"No execution {body.execution_id}.") from None
    except OrchestratorError as exc:
        raise OrchestratorDown(f"The orchestrator cannot confirm the execution: {exc}") from None
    if execution.batch_id != body.batch_id:
        raise NotFound(f"Execution {body.execution_id} did not run batch {body.batch_id}.")
    with resources.sessions() as session:
        jobs = service.apply_batch(session, resources.storage, execution)
        session.commit()
        return CallbackAck(batch_id=body.batch_id, jobs={j.id: JobStatus(j.status) for j in jobs})


def _check_token(resources: Resources, authorization: str | None) -> None:
    token = resources.settings.callback_token
    scheme, _, presented = (authorization or "").partition(" ")
    if (
        token is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(presented.encode(), token.get_secret_value().encode())
    ):
        raise Unauthorized("A valid callback token is required.")


def _encode_cursor(created_at: datetime, job_id: str) -> str:
    return f"{(created_at - _EPOCH) // timedelta(microseconds=1)}_{job_id}"


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """Only what _encode_cursor makes: checked here, so a bad one is a 400 like before."""
    if not cursor:
        return None
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise BadRequest("The cursor is not valid.")
    micros, job_id = cursor.split("_", 1)
    return _EPOCH + timedelta(microseconds=int(micros)), job_id

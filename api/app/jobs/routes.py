"""HTTP surface for uploads and jobs."""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from app.deps import Resources, ResourcesDep, SessionDep, get_resources
from app.errors import BadRequest, NotFound, PayloadTooLarge, Unauthorized
from app.jobs import repository, service
from app.jobs.models import JobStatus
from app.jobs.schemas import CallbackAck, JobOut, JobPage, KestraCallback, UploadAccepted
from app.jobs.uploads import ReceivedFile, UploadReceiver
from app.orchestrators.base import Execution

router = APIRouter()

_MULTIPART_OVERHEAD = 64 * 1024


class ErrorInfo(BaseModel):
    code: str = Field(examples=["unsupported_format"], description="Stable, for programs.")
    message: str = Field(examples=["GIF images are not supported."], description="For people.")
    details: dict[str, Any] = Field(examples=[{"detected": "GIF"}])


class ErrorOut(BaseModel):
    """The one shape of every error answer."""

    error: ErrorInfo


_CODES = {
    400: "`empty_file`, `no_files`, `bad_request`",
    401: "`unauthorized`",
    404: "`not_found`",
    413: "`file_too_large`, `too_many_files`, `too_many_pixels`",
    415: "`not_an_image`, `unsupported_format`",
}


# The body is read as a stream, not by FastAPI, so its schema is declared here.
_FILES = {"type": "array", "items": {"type": "string", "format": "binary"}}
_FORM = {"type": "object", "required": ["files"], "properties": {"files": _FILES}}
_UPLOAD_BODY = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _FORM}}}
}


def _errors(*codes: int, invalid: str = "`invalid_request`") -> dict[int | str, dict[str, Any]]:
    answers = {code: _CODES[code] for code in codes} | {422: invalid}
    return {code: {"model": ErrorOut, "description": text} for code, text in answers.items()}


@router.post(
    "/v1/uploads",
    status_code=202,
    response_model=UploadAccepted,
    tags=["uploads"],
    summary="Upload one or more images for detection",
    responses=_errors(400, 413, 415, invalid="`corrupt_image`, `invalid_request`"),
    openapi_extra=_UPLOAD_BODY,
)
async def upload(
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> UploadAccepted:
    """Send images in the multipart field `files` (JPEG, PNG or WebP). Each becomes a
    queued job. A request is all or nothing: if any file is refused, nothing is kept.
    Repeat a request with the same `Idempotency-Key` to get the same jobs back."""
    resources = get_resources(request)  # not as a dependency: that costs a thread hop
    settings = resources.settings
    if idempotency_key:
        existing = await run_in_threadpool(_jobs_for_key, resources, idempotency_key)
        if existing:
            return _accepted(response, existing)
    declared = request.headers.get("content-length", "")
    limit = settings.max_files_per_request * (settings.max_upload_bytes + _MULTIPART_OVERHEAD)
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request is larger than {limit} bytes.", max_bytes=limit)
    receiver = UploadReceiver(
        resources.storage, settings.max_upload_bytes, settings.max_files_per_request
    )
    received = await receiver.receive(request.headers.get("content-type", ""), request.stream())
    try:
        jobs = await run_in_threadpool(_create, resources, received, idempotency_key)
    finally:
        receiver.discard()  # temp files that were not moved into uploads/
    resources.dispatcher.wake()
    return _accepted(response, jobs)


def _create(resources: Resources, received: list[ReceivedFile], key: str | None) -> list[JobOut]:
    settings = resources.settings
    params = service.InferenceParams(settings.model, settings.confidence, settings.image_size)
    with resources.sessions() as session:
        jobs = []
        try:
            jobs = service.create_jobs(
                session, resources.storage, received, params, key, settings.max_image_pixels
            )
            session.commit()
        except IntegrityError:
            # A concurrent retry with the same Idempotency-Key won the race: theirs stand.
            session.rollback()
            resources.storage.remove_job_files([job.image_path for job in jobs])
            return _jobs_for_key(resources, key or "")
        except BaseException:
            resources.storage.remove_job_files([job.image_path for job in jobs])
            raise
        return [JobOut.of(job) for job in jobs]


def _jobs_for_key(resources: Resources, key: str) -> list[JobOut]:
    with resources.sessions() as session:
        return [JobOut.of(job) for job in repository.by_idempotency_key(session, key)]


def _accepted(response: Response, jobs: list[JobOut]) -> UploadAccepted:
    if len(jobs) == 1:
        response.headers["Location"] = f"/v1/jobs/{jobs[0].id}"
    return UploadAccepted(jobs=jobs)


@router.get(
    "/v1/jobs",
    response_model=JobPage,
    tags=["jobs"],
    summary="List jobs, newest first",
    responses=_errors(),
)
def list_jobs(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status: JobStatus | None = None,
) -> JobPage:
    """Page through jobs with `limit` and the `next_cursor` of the previous page;
    optionally only those in one `status`."""
    jobs = repository.page(session, limit=limit, status=status, before=_decode_cursor(cursor))
    next_cursor = _encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(jobs) == limit else None
    return JobPage(jobs=[JobOut.of(job) for job in jobs], next_cursor=next_cursor)


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobOut,
    tags=["jobs"],
    summary="One job",
    responses=_errors(404),
)
def get_job(job_id: str, session: SessionDep) -> JobOut:
    """Status, timestamps, the Kestra execution id and, once done, the detections."""
    return JobOut.of(service.get_job(session, job_id))


@router.get(
    "/v1/jobs/{job_id}/image",
    tags=["jobs"],
    summary="The uploaded image",
    response_class=FileResponse,
    responses=_errors(404),
)
def get_image(job_id: str, session: SessionDep, resources: ResourcesDep) -> FileResponse:
    job = service.get_job(session, job_id)
    media_type = f"image/{job.image_format.lower()}"  # JPEG, PNG or WEBP
    return FileResponse(resources.storage.path(job.image_path), media_type=media_type)


@router.get(
    "/v1/jobs/{job_id}/annotated",
    tags=["jobs"],
    summary="The image with the detections drawn",
    response_class=FileResponse,
    responses=_errors(404),
)
def get_annotated(job_id: str, session: SessionDep, resources: ResourcesDep) -> FileResponse:
    job = service.get_job(session, job_id)
    if not job.annotated_path:
        raise NotFound(
            f"Job {job_id} has no annotated image (status: {job.status}).", status=job.status
        )
    path = resources.storage.path(job.annotated_path)
    if not path.is_file():
        raise NotFound(f"The annotated image of job {job_id} is missing.")
    return FileResponse(path, media_type="image/jpeg")


@router.post(
    "/v1/callbacks/kestra",
    status_code=202,
    response_model=CallbackAck,
    tags=["callbacks"],
    summary="Kestra reports an execution's final state",
    responses=_errors(401, 404),
)
def kestra_callback(
    body: KestraCallback,
    session: SessionDep,
    resources: ResourcesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> CallbackAck:
    """Called by the flow's `afterExecution` task with `Authorization: Bearer <CALLBACK_TOKEN>`.
    Idempotent: the same callback twice changes nothing."""
    _check_token(resources, authorization)
    execution = Execution(body.execution_id, body.state, body.batch_id)
    jobs = service.apply_batch(session, resources.storage, execution)
    session.commit()
    return CallbackAck(batch_id=body.batch_id, jobs={job.id: JobStatus(job.status) for job in jobs})


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
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("The cursor is not valid.") from None

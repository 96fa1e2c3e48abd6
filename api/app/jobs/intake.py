"""Where an upload becomes queued jobs, as one unit of work: the files placed and the rows
committed together, or neither, whatever fails; then the dispatcher is woken. A crash midway
can leave only files without rows, which the reconciler sweeps (remove_orphan_uploads)."""

import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import IdempotencyKeyReused, TooManyFiles, TooManyJobs
from app.imaging import SUPPORTED, ImageInfo, inspect_image
from app.jobs import repository
from app.jobs.models import Job, JobStatus
from app.jobs.service import utcnow
from app.jobs.uploads import ReceivedFile
from app.keys.service import Principal
from app.logs import job_context
from app.models import service as model_service
from app.models.exports import Limits
from app.models.service import Weights
from app.storage import SharedStorage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceParams:
    """As the request asked, or the settings' defaults: `model` as it was named; the weights
    it means are resolved when the jobs are made (models.service.resolve)."""

    model: str
    confidence: float
    image_size: int


@dataclass(frozen=True)
class UploadRequest:
    """One accepted request body: who sent it, its files, and how to recognise a retry."""

    owner: Principal
    received: Sequence[ReceivedFile]
    params: InferenceParams
    idempotency_key: str | None  # as the client sent it (validated)
    callback_url: str | None = None  # as the form named it (validated)

    @property
    def scoped_key(self) -> str | None:
        """Keys are per API key: two clients using the same key never meet."""
        if self.idempotency_key is None:
            return None
        return f"{self.owner.key_id or 'open'}/{self.idempotency_key}"

    @property
    def fingerprint(self) -> str:
        """The files' digests, the parameters and the callback URL: a retry has the same, a
        reuse does not."""
        named = [f"callback_url={self.callback_url}"] if self.callback_url else []
        parts = [repr(astuple(self.params)), *named, *(item.sha256 for item in self.received)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class _Upload:
    """A received file, the job it becomes and where its file goes."""

    job_id: str
    index: int  # its place in the request
    file: ReceivedFile
    path: str  # relative to the shared data dir

    @classmethod
    def new(cls, storage: SharedStorage, index: int, file: ReceivedFile) -> "_Upload":
        job_id = str(uuid.uuid4())
        return cls(job_id, index, file, storage.upload_path(job_id, SUPPORTED[file.format]))


@dataclass(frozen=True)
class Intake:
    """What accepting uploads needs, opened once in the lifespan. `wake` is called after each
    commit that queued jobs: the one way the dispatcher hears of new work before its interval."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: SharedStorage
    wake: Callable[[], None]

    def accept(self, request: UploadRequest) -> list[Job]:
        """A retry gets its jobs back (a reuse of its key: 422); otherwise new queued jobs."""
        with self.sessions() as session:
            if existing := jobs_for_retry(session, request):
                return existing
            try:
                jobs = self._commit(session, request)
            except IntegrityError:
                # A concurrent retry with the same Idempotency-Key won the race: theirs stand.
                session.rollback()
                if winners := jobs_for_retry(session, request):
                    return winners
                raise
        self.wake()
        return jobs

    def _commit(self, session: Session, request: UploadRequest) -> list[Job]:
        """Files placed and rows committed; on any failure the files are removed (the rows
        go with the session's rollback)."""
        settings, storage = self.settings, self.storage
        params = request.params
        limits = Limits.of(settings)
        weights = model_service.resolve(
            session, storage, settings.model, params.model, limits, params.image_size
        )
        cap = settings.max_unfinished_jobs_per_key
        check_quota(session, request.owner, len(request.received), cap)
        uploads = [_Upload.new(storage, index, item) for index, item in enumerate(request.received)]
        try:
            jobs = self._add_jobs(session, request, uploads, weights)
            session.commit()
        except BaseException:
            storage.remove_job_files([upload.path for upload in uploads])
            raise
        for job in jobs:
            with job_context(job.id):
                log.info(
                    "job.queued", extra={"image_path": job.image_path, "bytes": job.size_bytes}
                )
        return jobs

    def _add_jobs(
        self, session: Session, request: UploadRequest, uploads: list[_Upload], weights: Weights
    ) -> list[Job]:
        """Files are placed and fsynced (while being decoded) before any row is sent, so a
        committed job always has its upload and the connection is held only for INSERT and
        COMMIT."""
        storage, now = self.storage, utcnow()
        for upload in uploads:
            storage.place_upload(upload.file.temp_path, upload.path)
        synced = storage.sync([upload.path for upload in uploads])
        jobs = []
        for upload in uploads:
            path, fmt = storage.path(upload.path), upload.file.format
            info = inspect_image(path, fmt, self.settings.max_image_pixels)
            jobs.append(_new_job(request, upload, info, weights, now))
        synced.result()  # durable before its row exists
        session.add_all(jobs)
        session.flush()
        return jobs


def _new_job(
    request: UploadRequest, upload: _Upload, info: ImageInfo, weights: Weights, now: datetime
) -> Job:
    """The queued job of one of the request's files, to run with `weights`."""
    item, params = upload.file, request.params
    return Job(
        id=upload.job_id,
        status=JobStatus.QUEUED,
        original_filename=item.original_filename,
        image_path=upload.path,
        image_format=info.format,
        size_bytes=item.size,
        sha256=item.sha256,
        width=info.width,
        height=info.height,
        model=weights.model,
        model_sha256=weights.sha256,
        confidence=params.confidence,
        image_size=params.image_size,
        owner_key_id=request.owner.key_id,
        idempotency_key=request.scoped_key,
        request_fingerprint=request.fingerprint,
        request_index=upload.index,
        callback_url=request.callback_url or request.owner.callback_url,
        delivery=None,  # added when it ends; known now, so never loaded
        dispatch_attempts=0,
        created_at=now,
        updated_at=now,
    )


def jobs_for_retry(session: Session, request: UploadRequest) -> list[Job]:
    """The jobs an earlier request with the same Idempotency-Key made, if it was this one."""
    if request.scoped_key is None:
        return []
    jobs = list(repository.by_idempotency_key(session, request.scoped_key))
    if jobs and jobs[0].request_fingerprint != request.fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used for a different request (other files or "
            "parameters); use a new key for a new request."
        )
    return jobs


def check_quota(session: Session, owner: Principal, adding: int, cap: int) -> None:
    """At most `cap` unfinished jobs per key (admin keys too). Concurrent requests of one key
    may pass it together: the cap bounds a backlog, it is not a lock."""
    if owner.key_id is None:
        return
    if adding > cap:  # could never fit: not worth a retry
        raise TooManyFiles(f"At most {cap} files per request for this key.", max_files=cap)
    unfinished = repository.count_unfinished(session, owner.key_id)
    if unfinished + adding > cap:
        raise TooManyJobs(
            f"This key has {unfinished} unfinished jobs; at most {cap} are allowed. "
            "Try again when some have finished.",
            unfinished=unfinished,
            max_unfinished=cap,
        )


def remove_orphan_uploads(session: Session, storage: SharedStorage, age_s: float = 60) -> int:
    """Remove uploads whose job never committed (a crash mid-request); younger files are
    spared, as their request may still commit."""
    files = storage.uploads_older_than(age_s)
    known = repository.existing_ids(session, list(files))
    orphans = [path for job_id, path in files.items() if job_id not in known]
    for path in orphans:
        path.unlink(missing_ok=True)
    return len(orphans)

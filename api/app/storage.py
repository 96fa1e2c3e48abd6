"""Files on the shared volume, mounted by the API and every inference container. Layout
(relative to SHARED_DATA_DIR, the same in the containers):
    tmp/<random>.part               uploads being received (read by nobody else)
    uploads/<job_id>.<ext>          accepted uploads, renamed whole from tmp/
    results/<job_id>.json           detection result written by flows/detect.py
    results/<job_id>.annotated.jpg  the upload with boxes drawn
"""

import contextlib
import os
import shutil
import stat
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_SUBDIRS = ("tmp", "uploads", "results", "models")
MAX_RESULT_BYTES = 8 * 1024 * 1024  # 10,000 detections take ~1.5 MB
# A live upload writes to its temp file at least every BODY_TIMEOUT_S (30 s by default);
# one untouched for an hour belongs to a process that is gone.
STALE_TEMP_AGE_S = 3600.0


class ResultUnavailable(Exception):
    """The result file is missing, unreadable, too large or not a plain file."""


@dataclass
class TempUpload:
    path: Path
    handle: BinaryIO

    def discard(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


class SharedStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def prepare(self) -> None:
        for sub in _SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def remove_stale_temp_files(self, older_than_s: float = STALE_TEMP_AGE_S) -> int:
        """Partial uploads of a process that died mid-request. Only old ones: another worker
        or replica on the same volume may be writing a fresh one right now."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in (self.root / "tmp").glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def open_temp(self) -> TempUpload:
        # Same filesystem as uploads/, so the final rename is atomic.
        path = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
        return TempUpload(path, path.open("xb"))

    def place_upload(self, temp_path: Path, relative: str) -> None:
        """Rename before the fsync: one journal commit then carries data and name (an orphan,
        swept if its job never commits)."""
        os.chmod(temp_path, 0o644)  # inference containers read it
        os.replace(temp_path, self.path(relative))

    def sync(self, relatives: list[str]) -> Future[None]:
        """fsync files, then their directory, in the background; wait before committing. The
        kernel batches concurrent fsyncs (one flusher thread measured 4x slower)."""
        paths = [self.path(relative) for relative in relatives]
        return _syncer.submit(_fsync, *paths, *dict.fromkeys(p.parent for p in paths))

    def uploads_older_than(self, age_s: float) -> dict[str, Path]:
        """Stored uploads older than age_s, by job id (the file stem)."""
        cutoff = time.time() - age_s
        return {
            p.stem: p
            for p in (self.root / "uploads").iterdir()
            if p.is_file() and p.stat().st_mtime < cutoff
        }

    @staticmethod
    def upload_path(job_id: str, extension: str) -> str:
        return f"uploads/{job_id}.{extension}"

    def read_result(self, job_id: str) -> bytes:
        """The bytes of results/<job_id>.json: a plain file (not a link), bounded in size."""
        try:
            fd = os.open(self._own("results", f"{job_id}.json"), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ResultUnavailable("the inference produced no result file") from None
        except OSError as exc:
            raise ResultUnavailable(f"the result file cannot be opened ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ResultUnavailable("the result file is not a plain file")
            data = handle.read(MAX_RESULT_BYTES + 1)
        if len(data) > MAX_RESULT_BYTES:
            raise ResultUnavailable(f"the result file is larger than {MAX_RESULT_BYTES} bytes")
        return data

    def served_file(self, relative: str) -> Path | None:
        """A stored file to send to a client: a plain file where the job's row says, never
        through a link (which could point at another job's files or the database)."""
        path = self.path(relative)
        try:
            mode = path.lstat().st_mode
        except OSError:
            return None
        unlinked = self.root / relative == path  # no link on the way either
        return path if stat.S_ISREG(mode) and unlinked else None

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def remove_job_files(self, relatives: list[str]) -> None:
        """Remove each stored file: a link itself, never what it points at; a directory in a
        file's place (anything can write to the volume) with what is in it; a missing one is
        fine."""
        for relative in relatives:
            folder, _, name = relative.rpartition("/")
            path = self._own(folder, name)
            try:
                path.unlink(missing_ok=True)
            except IsADirectoryError:
                shutil.rmtree(path)

    def path(self, relative: str) -> Path:
        """Resolve a stored relative path; refuse anything outside the root."""
        resolved = (self.root / relative).resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"path escapes the shared data dir: {relative!r}")
        return resolved

    def _own(self, subdir: str, name: str) -> Path:
        """A file of the layout, its path not resolved (so never through a link)."""
        if subdir not in _SUBDIRS or "/" in name or name.startswith("."):
            raise ValueError(f"not a file of the layout: {subdir}/{name}")
        return self.root / subdir / name

    def is_writable(self) -> bool:
        return os.access(self.root / "uploads", os.W_OK)


_syncer = ThreadPoolExecutor(16, "fsync")


def _fsync(*paths: Path) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

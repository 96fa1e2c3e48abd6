"""Files on the shared volume, which the API and every inference container mount.

Layout (relative to SHARED_DATA_DIR, the same relative paths inside the containers):
    tmp/<random>.part                 uploads being received (never read by anyone else)
    uploads/<job_id>.<ext>            accepted uploads, renamed in whole from tmp/
    results/<job_id>.json             detection result written by flows/detect.py
    results/<job_id>.annotated.jpg    the upload with boxes drawn
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

RESULT_SCHEMA_VERSION = 1
_SUBDIRS = ("tmp", "uploads", "results", "models")


class ResultUnavailable(Exception):
    """The result file is missing, unreadable or of an unknown schema."""


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

    def remove_stale_temp_files(self) -> int:
        """Partial uploads of a process that died mid-request; nobody else reads tmp/."""
        removed = 0
        for path in (self.root / "tmp").glob("*.part"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    # Uploads
    def open_temp(self) -> TempUpload:
        # Same filesystem as uploads/, so the final rename is atomic.
        path = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
        return TempUpload(path, path.open("xb"))

    def commit_upload(self, temp_path: Path, relative: str) -> None:
        """Durably move a received file into place (call sync_dir afterwards)."""
        target = self.path(relative)
        _fsync(temp_path)  # the bytes reach the disk before the name does
        os.chmod(temp_path, 0o644)  # inference containers read it
        os.replace(temp_path, target)

    def sync_dir(self, sub: str) -> None:
        """Make renames into `sub` durable: once per request, not per file."""
        _fsync(self.root / sub)

    def uploads_older_than(self, age_s: float) -> dict[str, Path]:
        """Stored uploads by job id (the file stem), left alone while younger than age_s."""
        cutoff = time.time() - age_s
        return {
            p.stem: p
            for p in (self.root / "uploads").iterdir()
            if p.is_file() and p.stat().st_mtime < cutoff
        }

    @staticmethod
    def upload_path(job_id: str, extension: str) -> str:
        return f"uploads/{job_id}.{extension}"

    # Results
    @staticmethod
    def result_path(job_id: str) -> str:
        return f"results/{job_id}.json"

    def read_result(self, job_id: str) -> dict[str, Any]:
        try:
            data = json.loads(self.path(self.result_path(job_id)).read_text("utf-8"))
        except FileNotFoundError:
            raise ResultUnavailable("the inference produced no result file") from None
        except (OSError, ValueError) as exc:
            raise ResultUnavailable(f"the result file is unreadable ({exc})") from None
        if not isinstance(data, dict) or data.get("schema_version") != RESULT_SCHEMA_VERSION:
            raise ResultUnavailable("the result file has an unknown schema version")
        return data

    def remove_job_files(self, relatives: list[str]) -> None:
        for relative in relatives:
            self.path(relative).unlink(missing_ok=True)

    def path(self, relative: str) -> Path:
        """Resolve a stored relative path, refusing anything outside the root."""
        resolved = (self.root / relative).resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"path escapes the shared data dir: {relative!r}")
        return resolved

    def is_writable(self) -> bool:
        return os.access(self.root / "uploads", os.W_OK)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

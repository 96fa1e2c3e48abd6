"""Weights files in models/ on the shared volume: received as a stream into tmp/, checked
to be a PyTorch archive without loading it, then placed atomically."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from app.errors import BodyTooLarge, EmptyFile, InvalidModelName, NotAModel
from app.storage import SharedStorage

MODELS_DIR = "models"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.pt$"
_NAME = re.compile(NAME_PATTERN)
_PICKLE = "data.pkl"
_digests: dict[tuple[Path, int, int], str] = {}  # (file, size, mtime_ns) -> sha256


@dataclass
class ReceivedModel:
    temp_path: Path
    size: int
    sha256: str

    def discard(self) -> None:
        """Remove the temp file unless it was placed (renamed away)."""
        self.temp_path.unlink(missing_ok=True)


def is_valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check_name(name: str) -> None:
    if not is_valid_name(name):
        raise InvalidModelName(
            "A model's name is 1 to 100 letters, digits, '.', '_' or '-' (starting with a "
            "letter or digit) followed by '.pt'.",
            name=name[:200],
            pattern=NAME_PATTERN,
        )


def volume_path(name: str) -> str:
    """What the flow gets as --model: relative to the shared data dir."""
    return f"{MODELS_DIR}/{name}"


def stored_file(storage: SharedStorage, name: str) -> Path:
    """models/<name>, not resolved: a link there is replaced or removed, never followed."""
    return storage.root / MODELS_DIR / name


async def receive(
    storage: SharedStorage, body: AsyncIterator[bytes], max_bytes: int
) -> ReceivedModel:
    """Stream the body into tmp/, counting and hashing it; over `max_bytes` nothing is kept."""
    temp = storage.open_temp()
    digest, size = hashlib.sha256(), 0
    try:
        async for chunk in body:
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(
                    f"A model may have at most {max_bytes} bytes.", max_bytes=max_bytes
                )
            digest.update(chunk)
            temp.handle.write(chunk)
        temp.handle.close()
        if size == 0:
            raise EmptyFile("The request body is empty: send the .pt file as the body.")
    except BaseException:
        temp.discard()
        raise
    return ReceivedModel(temp.path, size, digest.hexdigest())


def check_format(path: Path) -> None:
    """A `.pt` written by torch.save is a zip archive with `<folder>/data.pkl`. Only the zip's
    directory is read: the pickle inside runs code when loaded, so it is never loaded here."""
    if not _is_torch_archive(path):
        raise NotAModel(
            "The file is not a PyTorch model (a .pt file written by torch.save is a zip "
            f"archive with a '{_PICKLE}').",
            expected="zip archive with */data.pkl",
        )


def place(storage: SharedStorage, received: ReceivedModel, name: str) -> None:
    """fsync the file, rename it over models/<name> (atomic: a reader sees the old weights or
    the new, never part of either), then fsync the directory so the rename is durable."""
    target = stored_file(storage, name)
    _fsync(received.temp_path)
    os.chmod(received.temp_path, 0o644)  # inference containers read it
    os.replace(received.temp_path, target)
    _fsync(target.parent)


def remove(storage: SharedStorage, name: str) -> bool:
    """True if there was a file to remove. A directory (an OpenVINO export) is renamed away
    first, so it disappears whole; a link is removed, never followed."""
    path = stored_file(storage, name)
    try:
        if path.is_dir() and not path.is_symlink():
            gone = path.with_name(f".removed-{uuid.uuid4().hex}")
            path.rename(gone)
            shutil.rmtree(gone)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True


def digest_of(path: Path) -> str | None:
    """sha256 of a file not pushed through the API (e.g. the default model's weights that
    Ultralytics downloaded into models/); None if there is none. Remembered per size and
    mtime, so an unchanged file is read once per process."""
    try:
        info = path.stat()
    except OSError:
        return None
    key = (path, info.st_size, info.st_mtime_ns)
    if key not in _digests:
        with path.open("rb") as handle:
            _digests[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _digests[key]


def _is_torch_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return False
    return any(_is_pickle_member(name) for name in names)


def _is_pickle_member(name: str) -> bool:
    folder, _, rest = name.partition("/")
    return bool(folder) and rest == _PICKLE


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

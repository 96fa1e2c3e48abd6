"""The shared volume: uploads are renamed into place, then fsynced off the request thread."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

import app.storage
from app.storage import SharedStorage


@pytest.fixture
def storage(tmp_path: Path) -> SharedStorage:
    shared = SharedStorage(tmp_path)
    shared.prepare()
    return shared


def received(storage: SharedStorage, data: bytes = b"\xff\xd8\xff data") -> Path:
    temp = storage.open_temp()
    temp.handle.write(data)
    temp.handle.close()
    return temp.path


def test_place_upload_renames_a_readable_file(storage: SharedStorage) -> None:
    temp = received(storage)
    storage.place_upload(temp, "uploads/a.jpg")
    target = storage.root / "uploads" / "a.jpg"
    assert not temp.exists()
    assert target.read_bytes() == b"\xff\xd8\xff data"
    assert target.stat().st_mode & 0o777 == 0o644


def test_sync_fsyncs_every_file_then_their_directory_once(
    storage: SharedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = app.storage._fsync

    def recording(*paths: Path) -> None:
        real(*paths)
        synced.extend(paths)

    monkeypatch.setattr(app.storage, "_fsync", recording)
    for name in ("a.jpg", "b.png"):
        storage.place_upload(received(storage), f"uploads/{name}")
    storage.sync(["uploads/a.jpg", "uploads/b.png"]).result(timeout=10)
    uploads = storage.root / "uploads"
    assert synced == [uploads / "a.jpg", uploads / "b.png", uploads]


def test_a_failed_fsync_is_raised_to_the_waiter(
    storage: SharedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*paths: Path) -> None:
        raise OSError(errno.EIO, "I/O error", str(paths[0]))

    monkeypatch.setattr(app.storage, "_fsync", failing)
    storage.place_upload(received(storage), "uploads/a.jpg")
    with pytest.raises(OSError, match="I/O error"):
        storage.sync(["uploads/a.jpg"]).result(timeout=10)


def test_a_vanished_file_fails_only_its_own_sync(storage: SharedStorage) -> None:
    storage.place_upload(received(storage), "uploads/kept.jpg")
    gone = storage.sync(["uploads/missing.jpg"])
    kept = storage.sync(["uploads/kept.jpg"])
    with pytest.raises(FileNotFoundError):
        gone.result(timeout=10)
    assert kept.result(timeout=10) is None


def test_only_partial_uploads_untouched_for_an_hour_are_removed(storage: SharedStorage) -> None:
    """Another worker or replica starting up must not remove an upload being received."""
    live, dead = received(storage), received(storage)
    long_ago = time.time() - app.storage.STALE_TEMP_AGE_S - 1
    os.utime(dead, (long_ago, long_ago))
    assert storage.remove_stale_temp_files() == 1
    assert live.exists()
    assert not dead.exists()

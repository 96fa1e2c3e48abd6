"""Weights files: what counts as a PyTorch archive (read from the zip's directory, never
unpickled), the streaming receiver's own limit, and digests of files pushed by hand."""

from __future__ import annotations

import asyncio
import hashlib
import io
import pickle
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.errors import BodyTooLarge, EmptyFile, NotAModel
from app.models import files
from app.storage import SharedStorage
from tests.support.paths import FIXTURE_MODEL


class _Trap:
    """Unpickling this creates the marker file: proof that nobody loaded the pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_archives_written_by_torch_save_and_ultralytics_are_models(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    saved = tmp_path / "saved.pt"
    torch.save({"weights": torch.zeros(3)}, saved)

    files.check_format(saved)
    files.check_format(FIXTURE_MODEL)  # an Ultralytics checkpoint


def test_torch_saves_legacy_format_is_not_accepted(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    legacy = tmp_path / "legacy.pt"
    torch.save({"weights": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)

    with pytest.raises(NotAModel):
        files.check_format(legacy)


def test_the_pickle_inside_is_never_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    archive = tmp_path / "trap.pt"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("trap/data.pkl", pickle.dumps(_Trap(marker)))

    files.check_format(archive)

    assert not marker.exists()


def test_a_zip_whose_directory_points_outside_the_file_is_not_a_model(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("w/data.pkl", b"x")
    data = bytearray(buffer.getvalue())
    end = data.rindex(b"PK\x05\x06")
    data[end + 12 : end + 16] = (2**31).to_bytes(4, "little")  # the directory's size
    crafted = tmp_path / "crafted.pt"
    crafted.write_bytes(bytes(data))

    with pytest.raises(NotAModel):
        files.check_format(crafted)


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def test_receive_counts_hashes_and_stores_the_body_in_tmp(tmp_path: Path) -> None:
    storage = SharedStorage(tmp_path)
    storage.prepare()

    received = asyncio.run(files.receive(storage, _body(b"ab", b"cd"), max_bytes=4))

    assert received.temp_path.parent == storage.root / "tmp"
    assert received.temp_path.read_bytes() == b"abcd"
    assert (received.size, received.sha256) == (4, hashlib.sha256(b"abcd").hexdigest())


@pytest.mark.parametrize(
    ("chunks", "error"),
    [((b"ab", b"cd", b"e"), BodyTooLarge), ((), EmptyFile)],
    ids=["over-the-limit", "empty"],
)
def test_a_refused_body_leaves_nothing_in_tmp(
    tmp_path: Path, chunks: tuple[bytes, ...], error: type[Exception]
) -> None:
    storage = SharedStorage(tmp_path)
    storage.prepare()

    with pytest.raises(error):
        asyncio.run(files.receive(storage, _body(*chunks), max_bytes=4))

    assert list((tmp_path / "tmp").iterdir()) == []


def test_digest_of_a_file_follows_its_changes(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    assert files.digest_of(path) is None
    path.write_bytes(b"one")
    assert files.digest_of(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"other")
    assert files.digest_of(path) == hashlib.sha256(b"other").hexdigest()

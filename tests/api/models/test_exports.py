"""Exports in models/ (app/models/exports.py): the ones Ultralytics makes pass, with one digest
over their files; anything else named like one (other size, links, other files, too big, not
a detection export, not ONNX at all) is refused with the reason."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from app.models import exports
from app.models.exports import Limits, NotAnExport
from app.storage import SharedStorage
from tests.support.detect import EXPORTS
from tests.support.paths import FIXTURE_MODEL

pytestmark = pytest.mark.slow  # real exports (once per session)

LIMITS = Limits(image_size=640, max_bytes=50 * 1024 * 1024)
ONNX, OPENVINO = "shapes.onnx", "shapes_openvino_model"


@pytest.fixture
def storage(tmp_path: Path, exports_in: Callable[[Path], None]) -> SharedStorage:
    exports_in(tmp_path / "data")
    return SharedStorage(tmp_path / "data")


def models(storage: SharedStorage) -> Path:
    return storage.root / "models"


def refusal(storage: SharedStorage, name: str, limits: Limits = LIMITS) -> str:
    with pytest.raises(NotAnExport) as refused:
        exports.check(storage, name, limits)
    return str(refused.value)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("shapes.onnx", "onnx"),
        ("my.model-2_openvino_model", "openvino"),
        ("shapes.pt", None),
        ("shapes_openvino_model.xml", None),
        (".hidden.onnx", None),
        ("_openvino_model", None),
        ("a/b.onnx", None),
    ],
)
def test_only_ultralytics_export_names_are_exports(name: str, fmt: str | None) -> None:
    assert exports.format_of(name) == fmt


def test_the_exports_ultralytics_makes_pass_with_one_digest_over_their_files(
    storage: SharedStorage, tmp_path: Path, exports_in: Callable[[Path], None]
) -> None:
    assert exports.names_on_volume(storage) == [ONNX, OPENVINO]
    onnx, openvino = (exports.check(storage, name, LIMITS) for name in (ONNX, OPENVINO))

    assert (onnx.format, onnx.size_bytes) == ("onnx", (models(storage) / ONNX).stat().st_size)
    files = list((models(storage) / OPENVINO).iterdir())
    assert (openvino.format, openvino.size_bytes) == (
        "openvino",
        sum(f.stat().st_size for f in files),
    )
    exports_in(tmp_path / "copy")  # the same files elsewhere: the same digests
    copy = SharedStorage(tmp_path / "copy")
    assert [exports.check(copy, name, LIMITS).sha256 for name in (ONNX, OPENVINO)] == [
        onnx.sha256,
        openvino.sha256,
    ]

    weights = models(storage) / OPENVINO / "shapes.bin"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))  # same size, other content: another digest
    assert exports.check(storage, OPENVINO, LIMITS).sha256 != openvino.sha256


def test_an_export_made_at_another_size_than_image_size_is_refused(
    storage: SharedStorage,
) -> None:
    for name in (ONNX, OPENVINO):
        assert "not IMAGE_SIZE 320" in refusal(storage, name, Limits(320, LIMITS.max_bytes))


def test_an_export_over_max_model_bytes_is_refused(storage: SharedStorage) -> None:
    size = exports.check(storage, OPENVINO, LIMITS).size_bytes
    assert "more than" in refusal(storage, OPENVINO, Limits(640, size - 1))
    assert exports.check(storage, OPENVINO, Limits(640, size)).size_bytes == size


def _link_the_onnx(models: Path) -> None:
    (models / ONNX).rename(models / "elsewhere.bin")
    (models / ONNX).symlink_to("elsewhere.bin")


def _link_the_directory(models: Path) -> None:
    (models / OPENVINO).rename(models / "elsewhere")
    (models / OPENVINO).symlink_to("elsewhere")


def _link_a_file(models: Path) -> None:
    bin_file = models / OPENVINO / "shapes.bin"
    bin_file.rename(models / "shapes.bin")
    bin_file.symlink_to(models / "shapes.bin")


def _add_a_file(models: Path) -> None:
    (models / OPENVINO / "extra.txt").write_text("x")


def _remove_the_metadata(models: Path) -> None:
    (models / OPENVINO / "metadata.yaml").unlink()


def _rename_the_files(models: Path) -> None:
    for suffix in (".xml", ".bin"):
        (models / OPENVINO / f"shapes{suffix}").rename(models / OPENVINO / f"other{suffix}")


def _make_it_segment(models: Path) -> None:
    metadata = models / OPENVINO / "metadata.yaml"
    metadata.write_text(metadata.read_text().replace("task: detect", "task: segment"))


def _bad_yaml(models: Path) -> None:
    (models / OPENVINO / "metadata.yaml").write_text("imgsz: [640, 640\n")


def _not_onnx(models: Path) -> None:
    shutil.copy(FIXTURE_MODEL, models / ONNX)  # a zip, not a protobuf


def _onnx_is_a_directory(models: Path) -> None:
    (models / ONNX).unlink()
    (models / ONNX).mkdir()


@pytest.mark.parametrize(
    ("tamper", "name", "reason"),
    [
        (_link_the_onnx, ONNX, "not a regular file"),
        (_link_the_directory, OPENVINO, "not a directory"),
        (_link_a_file, OPENVINO, "not a regular file"),
        (_add_a_file, OPENVINO, "not exactly"),
        (_remove_the_metadata, OPENVINO, "not exactly"),
        (_rename_the_files, OPENVINO, "not exactly"),
        (_make_it_segment, OPENVINO, "not a detection model"),
        (_bad_yaml, OPENVINO, "is not YAML"),
        (_not_onnx, ONNX, "not an ONNX model"),
        (_onnx_is_a_directory, ONNX, "not a regular file"),
    ],
)
def test_anything_else_named_like_an_export_is_refused(
    storage: SharedStorage, tamper: Callable[[Path], None], name: str, reason: str
) -> None:
    exports.check(storage, name, LIMITS)  # passes first (and is remembered)
    tamper(models(storage))

    assert reason in refusal(storage, name)
    assert exports.find(storage, name, LIMITS) is None


def test_exports_names_match_what_detect_py_writes() -> None:
    assert sorted(Path(path).name for path in EXPORTS.values()) == [ONNX, OPENVINO]
    assert {exports.format_of(Path(path).name) for path in EXPORTS.values()} == set(EXPORTS)

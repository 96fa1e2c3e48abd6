"""Models exported by Ultralytics (flows/README.md, "Exported models") found in models/ on
the shared volume: `<stem>.onnx`, or the directory `<stem>_openvino_model/` holding exactly
`<stem>.xml`, `<stem>.bin` and `metadata.yaml`. One is usable only once it has been checked
here: the exact files, no links, at most MAX_MODEL_BYTES in all, a detection model whose
recorded input size is IMAGE_SIZE (an export runs at its own size only). The model is never
loaded: the metadata is read from the ONNX protobuf or the YAML file."""

from __future__ import annotations

import ast
import hashlib
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from app.config import Settings
from app.models.files import MODELS_DIR
from app.storage import SharedStorage

log = logging.getLogger(__name__)

Format = Literal["onnx", "openvino"]
OPENVINO_SUFFIX = "_openvino_model"
_STEM = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
NAME_PATTERN = rf"^{_STEM}(?:\.onnx|{OPENVINO_SUFFIX})$"
_NAME = re.compile(NAME_PATTERN)
_METADATA = "metadata.yaml"
_ONNX_METADATA_PROPS = 14  # ModelProto.metadata_props: repeated {1: key, 2: value}
_CHUNK = 1024 * 1024


class NotAnExport(Exception):
    """The files in models/ are not an export this API runs; `str(exc)` says why."""


@dataclass(frozen=True)
class Limits:
    image_size: int  # IMAGE_SIZE: the input size an export must have been made at
    max_bytes: int  # MAX_MODEL_BYTES, over all of an export's files

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.image_size, settings.max_model_bytes)


@dataclass(frozen=True)
class Export:
    name: str
    format: Format
    size_bytes: int
    sha256: str  # over the files, in name order: name, size, content each


# (name, ((file, size, mtime_ns, inode), ...), limits) -> the checked export
_checked: dict[tuple[object, ...], Export | NotAnExport] = {}


def export_name(model: str, fmt: Format) -> str:
    """What Ultralytics (detect.py --export) names the export of models/<model> (`x.pt`)."""
    stem = model.removesuffix(".pt")
    return f"{stem}.onnx" if fmt == "onnx" else f"{stem}{OPENVINO_SUFFIX}"


def format_of(name: str) -> Format | None:
    """The format a name in models/ has as an export; None if it is not an export's name."""
    if _NAME.fullmatch(name) is None:
        return None
    return "onnx" if name.endswith(".onnx") else "openvino"


def names_on_volume(storage: SharedStorage) -> list[str]:
    """The entries of models/ named like an export (checked or not)."""
    try:
        entries = [path.name for path in (storage.root / MODELS_DIR).iterdir()]
    except FileNotFoundError:
        return []
    return sorted(name for name in entries if format_of(name) is not None)


def check(storage: SharedStorage, name: str, limits: Limits) -> Export:
    """The export models/<name>, checked; NotAnExport if it is not one this API may run.
    The verdict is remembered per file size, mtime and inode, so an unchanged export is read
    once (a listing checks every export each time)."""
    fmt = format_of(name)
    if fmt is None:
        raise NotAnExport(f"{name!r} is not named <stem>.onnx or <stem>{OPENVINO_SUFFIX}.")
    try:
        files = _files(storage.root / MODELS_DIR / name, fmt)
        key = (name, tuple(_signature(path) for path in files), limits)
        if key not in _checked:
            _checked[key] = _verdict(name, fmt, files, limits)
    except OSError as exc:  # e.g. replaced while being read: the next look sees the new one
        raise NotAnExport(f"{name} cannot be read: {exc.strerror or exc}") from None
    verdict = _checked[key]
    if isinstance(verdict, NotAnExport):
        raise NotAnExport(str(verdict))
    return verdict


def find(storage: SharedStorage, name: str, limits: Limits) -> Export | None:
    """The export models/<name> if it passes the checks (a refusal is logged once, when the
    files are first seen)."""
    try:
        return check(storage, name, limits)
    except NotAnExport:
        return None


def _files(path: Path, fmt: Format) -> list[Path]:
    """The export's regular files, exactly as the format has them; links are refused."""
    if fmt == "onnx":
        _regular(path)
        return [path]
    info = _lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NotAnExport(f"{path.name} is not a directory.")
    stem = path.name.removesuffix(OPENVINO_SUFFIX)
    expected = sorted([f"{stem}.xml", f"{stem}.bin", _METADATA])
    found = sorted(entry.name for entry in path.iterdir())
    if found != expected:
        raise NotAnExport(f"{path.name} holds {found}, not exactly {expected}.")
    files = [path / entry for entry in expected]
    for file in files:
        _regular(file)
    return files


def _regular(path: Path) -> None:
    if not stat.S_ISREG(_lstat(path).st_mode):
        raise NotAnExport(f"{path.name} is not a regular file (a link or a directory).")


def _lstat(path: Path) -> Any:
    try:
        return path.lstat()
    except FileNotFoundError as exc:
        raise NotAnExport(f"{path.name} does not exist.") from exc


def _signature(path: Path) -> tuple[str, int, int, int]:
    info = path.lstat()
    return (str(path), info.st_size, info.st_mtime_ns, info.st_ino)


def _verdict(name: str, fmt: Format, files: list[Path], limits: Limits) -> Export | NotAnExport:
    try:
        return _inspect(name, fmt, files, limits)
    except NotAnExport as exc:
        log.warning("model.export_refused", extra={"model": name, "reason": str(exc)})
        return exc


def _inspect(name: str, fmt: Format, files: list[Path], limits: Limits) -> Export:
    size = sum(path.lstat().st_size for path in files)
    if size > limits.max_bytes:
        raise NotAnExport(f"{name} has {size} bytes, more than {limits.max_bytes}.")
    metadata = _onnx_metadata(files[0]) if fmt == "onnx" else _yaml_metadata(files)
    _check_metadata(name, metadata, limits.image_size)
    return Export(name, fmt, size, _digest(files))


def _onnx_metadata(path: Path) -> dict[str, Any]:
    """The metadata Ultralytics embeds in an ONNX model (string values, as Python literals),
    read as protobuf fields without the ONNX schema."""
    try:
        props = [
            _fields(data)
            for number, data in _fields(path.read_bytes())
            if number == _ONNX_METADATA_PROPS
        ]
        pairs = [(dict(prop).get(1), dict(prop).get(2)) for prop in props]
        return {
            key.decode(): _literal(value.decode())
            for key, value in pairs
            if isinstance(key, bytes) and isinstance(value, bytes)
        }
    except (DecodeError, UnicodeDecodeError) as exc:
        raise NotAnExport(f"{path.name} is not an ONNX model.") from exc


def _fields(data: object) -> list[tuple[int, object]]:
    """A protobuf message's top-level fields (number, value), in order; [] if not bytes."""
    if not isinstance(data, bytes):
        return []
    message = empty_pb2.Empty()
    message.ParseFromString(data)
    fields = UnknownFieldSet(message)
    return [(fields[i].field_number, fields[i].data) for i in range(len(fields))]


def _literal(value: str) -> object:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value


def _yaml_metadata(files: list[Path]) -> dict[str, Any]:
    path = next(file for file in files if file.name == _METADATA)
    try:
        metadata = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise NotAnExport(f"{path.parent.name}/{_METADATA} is not YAML.") from exc
    if not isinstance(metadata, dict):
        raise NotAnExport(f"{path.parent.name}/{_METADATA} is not a mapping.")
    return metadata


def _check_metadata(name: str, metadata: dict[str, Any], image_size: int) -> None:
    if metadata.get("task") != "detect":
        raise NotAnExport(f"{name} is not a detection model (task {metadata.get('task')!r}).")
    size = metadata.get("imgsz")
    if size != [image_size, image_size]:
        raise NotAnExport(
            f"{name} was exported for {size!r} images, not IMAGE_SIZE {image_size}: export "
            f"it again at {image_size}."
        )


def _digest(files: list[Path]) -> str:
    """One sha256 over the files in name order, each as its name, its size, then its bytes."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda file: file.name):
        digest.update(f"{path.name}\0{path.lstat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()

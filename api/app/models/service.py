"""The models the stack can use: weights pushed into models/ (a row each, with its digest),
exports in models/ that pass the checks of models.exports, and the default MODEL, whose file
may live in the inference image rather than on the volume. Nothing here commits: the calling
route owns the transaction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from app.errors import InvalidRequest, ModelInUse, NotFound, UnknownModel
from app.models import exports, files, repository
from app.models.exports import Limits
from app.models.files import MODELS_DIR, ReceivedModel
from app.models.models import StoredModel
from app.storage import SharedStorage

Source = Literal["volume", "image"]
Format = Literal["pytorch", "onnx", "openvino"]


@dataclass(frozen=True)
class Weights:
    """What a job runs with: the flow's --model, and the digest of the file it names."""

    model: str
    sha256: str | None  # None: the default model from the inference image


@dataclass(frozen=True)
class Entry:
    """One model as listed."""

    name: str
    source: Source
    default: bool
    format: Format = "pytorch"
    size_bytes: int | None = None
    sha256: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def name_in_models(model: str) -> str | None:
    """The file in models/ a model reference means (`x.pt` or `models/x.pt`), if any."""
    name = model.removeprefix(f"{MODELS_DIR}/")
    return name if files.is_valid_name(name) else None


def available(
    session: Session, storage: SharedStorage, default: str, limits: Limits
) -> list[Entry]:
    """Every pushed model whose file is there, every export that passes the checks, and the
    default, by name."""
    entries = {
        row.name: entry_of(row, default)
        for row in repository.listed(session)
        if files.stored_file(storage, row.name).is_file()
    }
    for name in exports.names_on_volume(storage):
        if export := exports.find(storage, name, limits):
            entries[name] = _export_entry(export, default)
    if name_in_models(default) not in entries:
        fallback = _default_entry(storage, default)
        entries[fallback.name] = fallback
    return sorted(entries.values(), key=lambda entry: entry.name)


def entry_of(row: StoredModel, default: str) -> Entry:
    return Entry(
        name=row.name,
        source="volume",
        default=row.name == name_in_models(default),
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def resolve(
    session: Session,
    storage: SharedStorage,
    default: str,
    requested: str,
    limits: Limits,
    image_size: int,
) -> Weights:
    """The weights an upload asked for, or UnknownModel naming the models there are. The row
    stays share-locked until the jobs commit, so a push or removal of it waits for them. An
    export runs at the size it was made at (IMAGE_SIZE) only: another `image_size` is 422."""
    export_name = requested.removeprefix(f"{MODELS_DIR}/")
    if exports.format_of(export_name) and (export := exports.find(storage, export_name, limits)):
        if image_size != limits.image_size:
            raise InvalidRequest(
                f"The export {export.name} takes {limits.image_size}x{limits.image_size} "
                f"images only; this upload asks for image_size {image_size}.",
                model=export.name,
                image_size=limits.image_size,
            )
        return Weights(files.volume_path(export.name), export.sha256)
    name = name_in_models(requested)
    if name is not None:
        row = repository.get_shared(session, name)
        if row is not None and files.stored_file(storage, name).is_file():
            return Weights(files.volume_path(name), row.sha256)
    if _same_model(requested, default):
        path = _default_file(storage, default)
        return Weights(default, files.digest_of(path) if path else None)
    names = [entry.name for entry in available(session, storage, default, limits)]
    raise UnknownModel(
        f"There is no model {requested!r}; the models are: {', '.join(names)}.",
        model=requested,
        models=names,
    )


def store(
    session: Session, storage: SharedStorage, name: str, received: ReceivedModel, default: str
) -> tuple[StoredModel, bool]:
    """Record the received weights as models/<name> and place the file; True if the name is
    new. The row is written first: a concurrent first push of the same name fails on it
    (IntegrityError) before its file moves."""
    now = datetime.now(UTC)
    row = repository.get(session, name, lock=True)
    if row is None or row.sha256 != received.sha256:  # the same weights again change nothing
        check_unused(session, name, default)
    created = row is None
    if row is None:
        row = StoredModel(name=name, created_at=now)
        session.add(row)
    row.sha256, row.size_bytes, row.updated_at = received.sha256, received.size, now
    session.flush()
    files.place(storage, received, name)
    return row, created


def remove(session: Session, storage: SharedStorage, name: str, default: str) -> None:
    """Remove models/<name>: the file, then the row (a row without its file is neither listed
    nor used, and a second removal deletes it). NotFound when there is neither."""
    row = repository.get(session, name, lock=True)
    if row is None and not os.path.lexists(files.stored_file(storage, name)):
        hint = " (the default model is part of the inference image)" if name == default else ""
        raise NotFound(f"There is no model {name!r} on the shared volume{hint}.", name=name)
    check_unused(session, name, default)
    files.remove(storage, name)
    if row is not None:
        session.delete(row)
        session.flush()


def _export_entry(export: exports.Export, default: str) -> Entry:
    return Entry(
        name=export.name,
        source="volume",
        default=False,  # MODEL names weights (a `.pt` or an Ultralytics name)
        format=export.format,
        size_bytes=export.size_bytes,
        sha256=export.sha256,
    )


def check_unused(session: Session, name: str, default: str) -> None:
    """Unfinished jobs would load other weights than the digest they recorded, or none."""
    models = {files.volume_path(name)} | ({default} if _same_model(default, name) else set())
    if unfinished := repository.count_unfinished_jobs(session, models):
        raise ModelInUse(
            f"{unfinished} unfinished jobs use the model {name!r}; try again once they have "
            "finished.",
            name=name,
            unfinished=unfinished,
        )


def _same_model(a: str, b: str) -> bool:
    """`x.pt` and `models/x.pt` are the same file in models/."""
    return (name_in_models(a) or a) == (name_in_models(b) or b)


def _default_file(storage: SharedStorage, default: str) -> Path | None:
    """models/<default> when the default is a name or path in models/ and the file is there."""
    name = name_in_models(default)
    path = files.stored_file(storage, name) if name else None
    return path if path is not None and path.is_file() else None


def _default_entry(storage: SharedStorage, default: str) -> Entry:
    path = _default_file(storage, default)
    if path is None:
        return Entry(name=default, source="image", default=True)
    return Entry(
        name=path.name,
        source="volume",
        default=True,
        size_bytes=path.stat().st_size,
        sha256=files.digest_of(path),
    )

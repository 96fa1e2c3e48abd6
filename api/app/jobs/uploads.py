"""Receive `multipart/form-data` uploads as a stream, straight into temp files.

Starlette's form parser would spool whole files first; here limits apply as the body arrives,
and the first bytes are sniffed before the rest is stored. Nothing is held whole in memory:
besides the files, only the few small parameter fields are kept (bounded), others dropped."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import (
    BadRequest,
    EmptyFile,
    InvalidRequest,
    NoFiles,
    PayloadTooLarge,
    TooManyFiles,
)
from app.imaging import sniff_format
from app.storage import SharedStorage, TempUpload

FILE_FIELD = "files"
PARAM_FIELDS = ("model", "confidence", "image_size", "callback_url")
MAX_PARAM_BYTES = 1024  # per parameter field; a callback URL has at most 1000 characters
_SNIFF_BYTES = 16
_MAX_HEADER_BYTES = 8 * 1024
_MAX_FILENAME_CHARS = 255


@dataclass
class ReceivedFile:
    temp_path: Path
    original_filename: str | None
    size: int
    sha256: str
    format: str  # sniffed


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    filename: str | None = None
    temp: TempUpload | None = None
    size: int = 0
    head: bytes = b""
    format: str = ""
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    param: str | None = None  # one of PARAM_FIELDS, being captured
    value: bytes = b""


def sanitize_filename(raw: bytes | None) -> str | None:
    """The client's name, for display only: last path segment, printable, bounded."""
    if not raw:
        return None
    text = unicodedata.normalize("NFC", raw.decode("utf-8", errors="replace"))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    if text in ("", ".", ".."):
        return None
    return text[:_MAX_FILENAME_CHARS]


class UploadReceiver:
    """Drives python-multipart's push parser over one request's body. Used as a context:
    on leaving it, every temp file not moved into uploads/ is removed (all, on a failure)."""

    def __init__(self, storage: SharedStorage, max_bytes: int, max_files: int) -> None:
        self._storage = storage
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._files: list[ReceivedFile] = []
        self.params: dict[str, str] = {}  # the PARAM_FIELDS sent, as text
        self._temps: list[TempUpload] = []
        self._part = _Part()
        self._header_field = self._header_value = b""
        self._header_bytes = 0

    async def receive(self, content_type: str, body: AsyncIterator[bytes]) -> list[ReceivedFile]:
        mime, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if mime != b"multipart/form-data" or not boundary:
            raise BadRequest(
                f"Send the images as multipart/form-data in the field '{FILE_FIELD}'.",
                content_type=content_type,
            )
        parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )
        try:
            async for chunk in body:
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise BadRequest("The multipart body is malformed.", reason=str(exc)) from None
        if self._part.temp is not None or self._part.param is not None:  # inside a part
            raise BadRequest("The multipart body ended before the last part was complete.")
        if not self._files:
            raise NoFiles(f"No file found in the form field '{FILE_FIELD}'.")
        return self._files

    def __enter__(self) -> UploadReceiver:
        return self

    def __exit__(self, *_: object) -> None:
        for temp in self._temps:
            temp.discard()
        self._temps.clear()

    def _on_part_begin(self) -> None:
        self._part = _Part()
        self._header_bytes = 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._part.headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._part.headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("latin-1")
        if name in PARAM_FIELDS:
            if name in self.params:
                raise _invalid_param(name, "the field is given more than once")
            self._part.param = name
            return
        if name != FILE_FIELD:
            return  # other fields are ignored (their data is dropped as it streams)
        # A part of the field is a file with or without a filename (RFC 7578: "SHOULD").
        if len(self._files) >= self._max_files:
            raise TooManyFiles(
                f"At most {self._max_files} files per request.", max_files=self._max_files
            )
        self._part.filename = sanitize_filename(params.get(b"filename"))
        self._part.temp = self._storage.open_temp()
        self._temps.append(self._part.temp)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part.param is not None:
            self._capture(part, data[start:end])
            return
        if part.temp is None:
            return
        chunk = data[start:end]
        part.size += len(chunk)
        if part.size > self._max_bytes:
            raise PayloadTooLarge(
                f"Each file may have at most {self._max_bytes} bytes.",
                max_bytes=self._max_bytes,
                filename=part.filename,
            )
        if len(part.head) < _SNIFF_BYTES:
            part.head += chunk[: _SNIFF_BYTES - len(part.head)]
            if len(part.head) >= _SNIFF_BYTES:
                part.format = sniff_format(part.head)  # refuse a non-image before the rest
        part.digest.update(chunk)
        part.temp.handle.write(chunk)

    def _on_part_end(self) -> None:
        part = self._part
        if part.param is not None:
            self.params[part.param] = _text(part.param, part.value)
            self._part = _Part()
            return
        if part.temp is None:
            return
        # No fsync on the event loop: it is synced once moved into uploads/, before commit.
        part.temp.handle.close()
        if part.size == 0:
            raise EmptyFile("An uploaded file is empty.", filename=part.filename)
        fmt = part.format or sniff_format(part.head)
        self._files.append(
            ReceivedFile(part.temp.path, part.filename, part.size, part.digest.hexdigest(), fmt)
        )
        self._part = _Part()

    @staticmethod
    def _capture(part: _Part, chunk: bytes) -> None:
        assert part.param is not None
        part.value += chunk
        if len(part.value) > MAX_PARAM_BYTES:
            raise _invalid_param(part.param, f"at most {MAX_PARAM_BYTES} bytes")

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > _MAX_HEADER_BYTES:
            raise BadRequest("A multipart part has oversized headers.")


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_param(name, "not UTF-8 text") from None


def _invalid_param(name: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"The form field '{name}' is not valid: {why}.",
        errors=[{"loc": ["body", name], "msg": why}],
    )

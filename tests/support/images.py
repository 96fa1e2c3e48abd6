"""Images for upload tests: valid bytes in each format, hostile ones, photos stored turned
with the EXIF orientation that shows them upright (as cameras store them), and synthetic
scenes with known objects saved as files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

from tests.fixtures.synthetic import HELD_OUT_SEED_START, GroundTruth, render_scene


def encode(
    fmt: str, width: int = 64, height: int = 48, color: str | tuple[int, int, int] = "red"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width x height` pixels (a decompression bomb's calling
    card) followed by far too little pixel data: decoding it would fail as corrupt, so a
    "too many pixels" answer proves only the header was read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- EXIF orientation

#: What a camera does to the upright scene to store it with EXIF orientation N (the inverse of
#: what a viewer, OpenCV or `ImageOps.exif_transpose` does to show it): 6 and 8 are a phone held
#: upright, its sensor read sideways.
STORED_AS: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


def tiff_orientation(
    value: int, *, big_endian: bool = False, kind: int = 3, count: int = 1, ifd1: bool = False
) -> bytes:
    """An EXIF (TIFF) block whose only orientation entry says `value`, written as a TIFF
    field of type `kind` (3 SHORT, 4 LONG, ...) with `count` values; with `ifd1` the entry is
    in IFD1 (the thumbnail's) and IFD0 has only a Make."""
    e = ">" if big_endian else "<"
    value_field = struct.pack(e + "I", value) if kind == 4 else struct.pack(e + "HH", value, 0)

    def ifd(entries: list[bytes], next_ifd: int) -> bytes:
        return (
            struct.pack(e + "H", len(entries)) + b"".join(entries) + struct.pack(e + "I", next_ifd)
        )

    head = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    entry = struct.pack(e + "HHI", 0x0112, kind, count) + value_field
    if ifd1:
        make = struct.pack(e + "HHI", 0x010F, 2, 4) + b"cam\x00"
        return head + ifd([make], 8 + 18) + ifd([entry], 0)
    return head + ifd([entry], 0)


def as_stored(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for `upright` shown with EXIF `orientation`."""
    turn = STORED_AS[orientation]
    return upright.copy() if turn is None else upright.transpose(turn)


def oriented(
    upright: Image.Image, orientation: int | None, fmt: str = "JPEG", *, exif: bytes | None = None
) -> bytes:
    """`fmt` bytes that a viewer shows as `upright`: stored turned, with EXIF `orientation`
    (None: no EXIF at all, stored upright). `exif` replaces the EXIF block written (its
    pixels are still stored for `orientation`)."""
    image = as_stored(upright, orientation or 1)
    options: dict[str, object] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if orientation is not None or exif is not None:
        block = exif if exif is not None else tiff_orientation(orientation or 1)
        # A JPEG's APP1 segment starts with "Exif\0\0"; PNG's eXIf and WebP's EXIF chunks
        # hold the TIFF block alone.
        options["exif"] = (b"Exif\x00\x00" + block) if fmt == "JPEG" else block
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def frame_of(shown: Image.Image, upright: Image.Image) -> int:
    """Which flip or turn of `upright` the picture `shown` is (1: upright itself; as EXIF
    numbers them, i.e. `as_stored(upright, n)`), by the smallest mean difference at a quarter
    of the size, so that drawn boxes, labels and compression hardly count. Candidates of
    another aspect ratio are out; others are scaled to `shown`'s size."""
    import numpy as np

    def small(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB").reduce(4), dtype=np.int16)

    width, height = shown.size
    differences = {}
    for orientation in STORED_AS:
        candidate = as_stored(upright, orientation)
        if abs(candidate.width / candidate.height - width / height) > 0.02:
            continue
        candidate = candidate.resize(shown.size, Image.Resampling.BOX)
        differences[orientation] = float(np.abs(small(shown) - small(candidate)).mean())
    assert differences, f"no flip or turn of {upright.size} has the shape of {shown.size}"
    return min(differences, key=differences.__getitem__)


# --------------------------------------------------------------------------- synthetic scenes


def scene_file(
    path: Path, seed: int, *, width: int | None = None, height: int | None = None
) -> list[GroundTruth]:
    """Held-out scene `seed` (counted from HELD_OUT_SEED_START) saved as `path`, in the format
    its suffix names (JPEG at quality 92); the objects in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image, truth = render_scene(HELD_OUT_SEED_START + seed, width=width, height=height)
    image.save(path, quality=92)
    return truth

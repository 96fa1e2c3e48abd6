"""Decide whether bytes on disk are an image we accept, cheaply and without trusting the client.
Cheapest first: magic bytes, the header (a bomb is refused before decoding), then a
reduced-scale decode to catch corrupt files."""

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.errors import CorruptImage, NotAnImage, TooManyPixels, UnsupportedMediaType

# Format -> file extension: what Ultralytics/OpenCV in the flow decode reliably.
SUPPORTED = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
SUPPORTED_TEXT = "JPEG, PNG and WebP"

# Image formats we recognise but refuse, for a clearer message than "not an image".
_OTHER_IMAGE_MAGIC = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x01\x00": "ICO",
    b"8BPS": "PSD",
}


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def sniff_format(head: bytes) -> str:
    """Name the format from the first bytes, or raise a 415 error."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:12] in (b"ftypavif", b"ftypheic", b"ftypheix", b"ftypmif1"):
        other = "AVIF/HEIF"
    else:
        other = next(
            (name for magic, name in _OTHER_IMAGE_MAGIC.items() if head.startswith(magic)), ""
        )
    if other:
        raise UnsupportedMediaType(
            f"{other} images are not supported; upload {SUPPORTED_TEXT}.",
            detected=other,
            supported=list(SUPPORTED),
        )
    raise NotAnImage(
        f"The file is not an image; upload {SUPPORTED_TEXT}.", supported=list(SUPPORTED)
    )


def inspect_image(path: Path, fmt: str, max_pixels: int) -> ImageInfo:
    """Validate a file of the sniffed `fmt`; raise a typed 4xx error if bad."""
    try:
        with warnings.catch_warnings():
            # We enforce our own (lower) pixel limit below, from the header alone.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=[fmt]) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise _too_many_pixels(width, height, max_pixels)
                if fmt == "JPEG":
                    # At 1/8 scale every entropy-coded byte is still read (truncation is
                    # caught) for a fraction of the cost.
                    img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                img.load()
    except Image.DecompressionBombError:
        raise _too_many_pixels(0, 0, max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # Pillow names the file it read: keep server paths out of the answer.
        reason = str(exc).replace(str(path), path.name)
        raise CorruptImage(
            f"The {fmt} file is truncated or corrupt and cannot be decoded.", reason=reason
        ) from None
    return ImageInfo(fmt, width, height)


def _too_many_pixels(width: int, height: int, max_pixels: int) -> TooManyPixels:
    size = f"{width}x{height} " if width else ""
    return TooManyPixels(
        f"The image {size}has more than {max_pixels} pixels.",
        width=width,
        height=height,
        max_pixels=max_pixels,
    )

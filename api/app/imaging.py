"""Decide whether bytes on disk are an image we accept, cheaply and without trusting the client.
Cheapest first: magic bytes, the header (a bomb is refused before decoding), then a
reduced-scale decode to catch corrupt files.

Width and height are those of the frame the detections are in: the image as OpenCV decodes it
for Ultralytics (flows/detect.py), which applies the EXIF orientation of JPEG, PNG and WebP
files. A phone photo held upright is stored sideways with orientation 6 or 8, so for
orientations 5-8 the stored width and height swap. The file itself is never rewritten."""

import struct
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
    width: int  # of the oriented frame (what detections, annotated image and page use)
    height: int
    orientation: int = 1  # EXIF orientation 1-8 as OpenCV applies it; 1 when none


_EXIF_ORIENTATION = 0x0112


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
                # Read after load(): a PNG's eXIf chunk may follow the pixel data.
                orientation = exif_orientation(img.info.get("exif"))
    except Image.DecompressionBombError:
        raise _too_many_pixels(0, 0, max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # Pillow names the file it read: keep server paths out of the answer.
        reason = str(exc).replace(str(path), path.name)
        raise CorruptImage(
            f"The {fmt} file is truncated or corrupt and cannot be decoded.", reason=reason
        ) from None
    if orientation >= 5:  # transposed or turned by 90 degrees
        width, height = height, width
    return ImageInfo(fmt, width, height, orientation)


def exif_orientation(exif: object) -> int:
    """The EXIF orientation (1-8) OpenCV applies when it decodes the image, from the EXIF
    block Pillow found in the header (`img.info["exif"]`): 1 when there is none or it is not
    one OpenCV reads.

    Deliberately not `img.getexif()`: Pillow also takes an orientation from XMP and from PNG
    text chunks ("Raw profile type exif"), which OpenCV ignores, and reads the tag by its
    type, where OpenCV reads 16 bits (see `_tiff_orientation`)."""
    if not isinstance(exif, bytes):
        return 1
    # JPEG: the APP1 segment starts with "Exif\0\0"; WebP: its EXIF chunk may; PNG: Pillow puts
    # it before the eXIf chunk, which must start with the TIFF header itself (libpng ignores a
    # chunk with the prefix: it is then left over here and fails the header check).
    data = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    return _tiff_orientation(data)


def _tiff_orientation(data: bytes) -> int:
    """OpenCV's reading (imgcodecs ExifReader): a TIFF header ("II" or "MM", then 42), the
    first orientation entry of IFD0, its 16-bit value at the entry's value field whatever the
    declared type; anything out of bounds or outside 1-8 is no orientation."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if data[:2] == b"II" else ">"
    magic, ifd = struct.unpack_from(order + "HI", data, 2)
    if magic != 42 or ifd + 2 > len(data):
        return 1
    (count,) = struct.unpack_from(order + "H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if entry + 10 > len(data):
            return 1
        (tag,) = struct.unpack_from(order + "H", data, entry)
        if tag == _EXIF_ORIENTATION:
            (value,) = struct.unpack_from(order + "H", data, entry + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def _too_many_pixels(width: int, height: int, max_pixels: int) -> TooManyPixels:
    size = f"{width}x{height} " if width else ""
    return TooManyPixels(
        f"The image {size}has more than {max_pixels} pixels.",
        width=width,
        height=height,
        max_pixels=max_pixels,
    )

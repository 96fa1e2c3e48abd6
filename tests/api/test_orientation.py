"""Phone photos: one frame for every image. OpenCV (which Ultralytics decodes with in
flows/detect.py) applies the EXIF orientation of JPEG, PNG and WebP files, so the detections
are in the frame of the image turned upright; the API reports that frame's width and height
(5-8 swap the stored ones), keeps the upload byte for byte, and a rotated photo's detections
match the scene as it is shown, are accepted by the result checks and fit the annotated image.

The test images are stored the way a camera stores them: the pixels of the upright scene
turned (tests/support/images.py `as_stored`) with the orientation that turns them back."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin

from app.imaging import inspect_image, sniff_format
from tests.api.factories import detected
from tests.fixtures.synthetic import CLASS_NAMES, HELD_OUT_SEED_START, boxes_of, match, render_scene
from tests.support.images import EXTENSIONS, as_stored, frame_of, oriented, tiff_orientation
from tests.support.paths import FIXTURE_MODEL
from tests.support.yolo import predict

ORIENTATIONS = range(1, 9)
FORMATS = ("JPEG", "PNG", "WEBP")


def opencv_size(data: bytes) -> tuple[int, int]:
    """Width and height of the image as Ultralytics decodes it (IMREAD_COLOR)."""
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    return decoded.shape[1], decoded.shape[0]


def inspect(tmp_path: Path, data: bytes) -> tuple[int, int, int]:
    fmt = sniff_format(data[:16])
    path = tmp_path / f"image.{EXTENSIONS[fmt]}"
    path.write_bytes(data)
    info = inspect_image(path, fmt, max_pixels=10_000_000)
    return info.width, info.height, info.orientation


# ------------------------------------------------------------------ the frame, without the API

UPRIGHT = Image.new("RGB", (90, 60), "white")  # wider than tall: 5-8 swap the stored size
SIDEWAYS = as_stored(UPRIGHT, 6)  # 60 x 90, what OpenCV shows as 90 x 60 with orientation 6

# EXIF that OpenCV reads (or not) in ways that differ from Pillow's getexif() or from
# browsers: (what is written, the orientation OpenCV applies to the sideways pixels).
EXIF_CASES = {
    "big-endian": (tiff_orientation(6, big_endian=True), 6),
    "LONG, little-endian": (tiff_orientation(6, kind=4), 6),  # its low 16 bits come first
    "LONG, big-endian": (tiff_orientation(6, kind=4, big_endian=True), 1),  # high 16 bits: 0
    "two values": (tiff_orientation(6, count=2), 6),
    "only in IFD1": (tiff_orientation(6, ifd1=True), 1),
    "0": (tiff_orientation(0), 1),
    "9": (tiff_orientation(9), 1),
    "not TIFF": (b"II*\x00\xff\xff\x00\x00garbage", 1),
    "wrong magic": (tiff_orientation(6)[:2] + b"\x2b\x00" + tiff_orientation(6)[4:], 1),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("orientation", [None, *ORIENTATIONS])
def test_the_size_is_that_of_the_frame_opencv_decodes(
    tmp_path: Path, fmt: str, orientation: int | None
) -> None:
    data = oriented(UPRIGHT, orientation, fmt)
    stored = (60, 90) if (orientation or 1) >= 5 else (90, 60)
    assert Image.open(io.BytesIO(data)).size == stored
    assert inspect(tmp_path, data) == (90, 60, orientation or 1)
    assert opencv_size(data) == (90, 60)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", EXIF_CASES)
def test_unusual_exif_is_read_as_opencv_reads_it(tmp_path: Path, fmt: str, case: str) -> None:
    exif, applied = EXIF_CASES[case]
    data = oriented(UPRIGHT, 6, fmt, exif=exif)  # sideways pixels, EXIF as written
    width, height = SIDEWAYS.size if applied == 1 else UPRIGHT.size
    assert inspect(tmp_path, data) == (width, height, applied)
    assert opencv_size(data) == (width, height)


def test_orientations_opencv_ignores_and_pillow_does_not(tmp_path: Path) -> None:
    """XMP (tiff:Orientation) and PNG text chunks (ImageMagick's "Raw profile type exif") turn
    the image for Pillow's getexif()/exif_transpose, not for OpenCV: the stored frame."""
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='
        b'"http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    buffer = io.BytesIO()
    SIDEWAYS.save(buffer, format="JPEG", xmp=xmp)
    with_xmp = buffer.getvalue()
    assert Image.open(io.BytesIO(with_xmp)).getexif().get(0x0112) == 6

    raw = (b"Exif\x00\x00" + tiff_orientation(6)).hex()
    text = PngImagePlugin.PngInfo()
    text.add_text("Raw profile type exif", f"\nexif\n{len(raw) // 2:8d}\n{raw}\n", zip=True)
    buffer = io.BytesIO()
    SIDEWAYS.save(buffer, format="PNG", pnginfo=text)
    with_text = buffer.getvalue()
    assert Image.open(io.BytesIO(with_text)).getexif().get(0x0112) == 6

    for data in (with_xmp, with_text):
        assert inspect(tmp_path, data) == (60, 90, 1)
        assert opencv_size(data) == (60, 90)


def test_a_png_exif_chunk_after_the_pixels_counts(tmp_path: Path) -> None:
    """OpenCV (libpng) reads an eXIf chunk that follows the image data too."""
    data = oriented(UPRIGHT, 6, "PNG")
    start = data.index(b"eXIf") - 4
    length = int.from_bytes(data[start : start + 4], "big")
    chunk, rest = data[start : start + 12 + length], data[:start] + data[start + 12 + length :]
    iend = rest.index(b"IEND") - 4
    moved = rest[:iend] + chunk + rest[iend:]
    assert moved.index(b"eXIf") > moved.index(b"IDAT")
    assert inspect(tmp_path, moved) == (90, 60, 6)
    assert opencv_size(moved) == (90, 60)


# ------------------------------------------------------------------ uploads


@pytest.mark.parametrize("orientation", [None, *ORIENTATIONS])
def test_uploads_report_the_oriented_size_and_keep_the_bytes(
    client: TestClient, shared_dir: Path, orientation: int | None
) -> None:
    image, _ = render_scene(HELD_OUT_SEED_START + 7100, width=200, height=120)
    sent = {fmt: oriented(image, orientation, fmt) for fmt in FORMATS}
    files = [("files", (f"photo.{EXTENSIONS[fmt]}", data)) for fmt, data in sent.items()]
    response = client.post("/v1/uploads", files=files)
    assert response.status_code == 202, response.text
    for job, (fmt, data) in zip(response.json()["jobs"], sent.items(), strict=True):
        assert (job["image_width"], job["image_height"]) == (200, 120), (fmt, orientation)
        assert job["image_format"] == fmt
        assert job["sha256"] == hashlib.sha256(data).hexdigest()
        stored = shared_dir / "uploads" / f"{job['id']}.{EXTENSIONS[fmt]}"
        assert stored.read_bytes() == data  # never rewritten
        served = client.get(f"/v1/jobs/{job['id']}/image")
        assert served.status_code == 200
        assert served.content == data


# ------------------------------------------------------------------ end to end, real inference

PIPELINE_CASES = [("JPEG", o) for o in (None, *ORIENTATIONS)] + [
    (fmt, o) for fmt in ("PNG", "WEBP") for o in (3, 5, 6, 8)
]


@pytest.mark.slow
def test_rotated_photos_are_detected_in_the_frame_they_are_shown_in(
    local_client: TestClient, shared_dir: Path
) -> None:
    from ultralytics.models import YOLO

    scenes = [
        render_scene(HELD_OUT_SEED_START + 7200 + k, width=560, height=400)
        for k in range(len(PIPELINE_CASES))
    ]
    files = [
        ("files", (f"{k}.{EXTENSIONS[fmt]}", oriented(image, orientation, fmt)))
        for k, ((fmt, orientation), (image, _)) in enumerate(
            zip(PIPELINE_CASES, scenes, strict=True)
        )
    ]
    jobs = detected(local_client, files)

    model = YOLO(str(FIXTURE_MODEL))
    for job, case, (image, truth) in zip(jobs, PIPELINE_CASES, scenes, strict=True):
        # Succeeded: the result checks accepted every box as inside the job's image.
        assert job["status"] == "succeeded", (case, job["error"])
        assert (job["image_width"], job["image_height"]) == image.size == (560, 400), case
        detections = job["detections"]
        # The upright scene's boxes.
        assert match(truth, boxes_of(detections))["ok"], (case, truth, detections)
        assert all(d["class_name"] == CLASS_NAMES[d["class_id"]] for d in detections)

        # Ultralytics itself on the stored file: the same frame, box for box.
        (stored,) = (shared_dir / "uploads").glob(f"{job['id']}.*")
        direct = predict(model, stored)
        assert direct.orig_shape == (400, 560), case
        assert direct.classes == [d["class_id"] for d in detections]
        for row, d in zip(direct.xyxy, detections, strict=True):
            assert row == pytest.approx([d["box"][k] for k in ("x1", "y1", "x2", "y2")], abs=0.01)

        annotated = local_client.get(job["annotated_url"])
        assert annotated.status_code == 200
        assert Image.open(io.BytesIO(annotated.content)).size == (560, 400), case
        # ... and it shows the upright scene (with the boxes), not the stored pixels.
        assert frame_of(Image.open(io.BytesIO(annotated.content)), image) == 1, case

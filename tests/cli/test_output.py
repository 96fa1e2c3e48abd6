"""What the CLI prints, without a server: the progress bar and the results table."""

from __future__ import annotations

import io

from yolo_cli.output import Progress, Row, render_models, render_table


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    stream = Terminal()
    progress = Progress(stream, "detect", 4)
    for done in (0, 1, 1, 4):
        progress.update(done, "1 failed" if done == 4 else "")
    progress.close()
    assert stream.getvalue() == (
        "\rdetect [------------------------------] 0/4"
        "\rdetect [#######-----------------------] 1/4"
        "\rdetect [##############################] 4/4 1 failed\n"
    )


def test_progress_writes_a_line_per_change_in_a_log() -> None:
    stream = io.StringIO()
    progress = Progress(stream, "upload", 2)
    for done in (1, 1, 2):
        progress.update(done)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "upload [###############---------------] 1/2",
        "upload [##############################] 2/2",
    ]


def test_quiet_progress_prints_nothing() -> None:
    stream = Terminal()
    progress = Progress(stream, "upload", 2, enabled=False)
    progress.update(2)
    progress.close()
    assert stream.getvalue() == ""


def test_the_table_counts_classes_and_notes_problems() -> None:
    detection = {"class_id": 0, "class_name": "circle", "confidence": 0.9, "box": {}}
    square = {**detection, "class_name": "square"}
    job = {"id": "j1", "status": "succeeded", "detections": [detection, square, detection]}
    rows = [
        Row("a.png", job),
        Row("b.txt", error="The file is not an image.", error_code="not_an_image"),
    ]
    assert render_table(rows).splitlines() == [
        "FILE   JOB  STATUS     DETECTIONS  CLASSES             NOTE",
        "a.png  j1   succeeded  3           2 circle, 1 square",
        "b.txt  -    refused    -           -                   The file is not an image.",
    ]


def test_models_table_shortens_digests_and_marks_the_default() -> None:
    fields = ("name", "source", "default", "size_bytes", "sha256", "updated_at")
    digest = "9b1c0c2e4f6a" + "0" * 52
    rows = [
        ("shapes.pt", "volume", False, 1174667, digest, "2026-12-02T10:00:00.123456Z"),
        ("yolo11n.pt", "image", True, None, None, None),
        ("tiny.pt", "volume", False, 999, "ab", "2026-12-03T00:00:00Z"),
        ("tiny.onnx", "volume", False, 999, "cd", None),
    ]
    models = [dict(zip(fields, row, strict=True)) for row in rows]
    models[3]["format"] = "onnx"  # the others as an older API lists them: no format
    assert render_models({"default": "yolo11n.pt", "models": models}).splitlines() == [
        "NAME        SOURCE  FORMAT   DEFAULT  SIZE    SHA256        PUSHED",
        "shapes.pt   volume  pytorch  -        1.2 MB  9b1c0c2e4f6a  2026-12-02 10:00",
        "yolo11n.pt  image   pytorch  yes      -       -             -",
        "tiny.pt     volume  pytorch  -        999 B   ab            2026-12-03 00:00",
        "tiny.onnx   volume  onnx     -        999 B   cd            -",
    ]

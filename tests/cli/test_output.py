"""What the CLI prints, without a server: the progress bar and the results table."""

from __future__ import annotations

import io

from yolo_cli.output import Progress, Row, render_table


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
    rows = [
        Row(
            "a.png",
            {"id": "j1", "status": "succeeded", "detections": [detection, square, detection]},
        ),
        Row("b.txt", error="The file is not an image.", error_code="not_an_image"),
    ]
    assert render_table(rows).splitlines() == [
        "FILE   JOB  STATUS     DETECTIONS  CLASSES             NOTE",
        "a.png  j1   succeeded  3           2 circle, 1 square",
        "b.txt  -    refused    -           -                   The file is not an image.",
    ]

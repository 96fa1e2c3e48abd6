"""What the CLI prints: a progress bar on stderr, results and models as a table or JSON on
stdout."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO

from yolo_cli.client import Job, Model


@dataclass
class Row:
    """One file or job of the run: the API's job, or why there is none."""

    file: str
    job: Job | None = None
    error: str | None = None
    error_code: str | None = None
    no_job: str = "refused"  # the status shown when there is no job

    @property
    def status(self) -> str:
        return str(self.job["status"]) if self.job else self.no_job

    @property
    def ok(self) -> bool:
        return self.job is not None and self.error is None and self.status != "failed"

    def as_dict(self) -> dict[str, Any]:
        job = self.job or {}
        return {
            "file": self.file,
            "job_id": job.get("id"),
            "status": self.status,
            "error": self.error or job.get("error"),
            "error_code": self.error_code,
            "detections": job.get("detections"),
        }


class Progress:
    """`label [#####-----] 3/10 note` on one line rewritten in place on a terminal; in a log
    (stderr not a terminal), one line each time the count or the note changes."""

    WIDTH = 30

    def __init__(self, stream: TextIO, label: str, total: int, *, enabled: bool = True) -> None:
        self._stream = stream
        self._label = label
        self._total = max(total, 1)
        self._enabled = enabled
        self._tty = stream.isatty()
        self._last = ""

    def update(self, done: int, note: str = "") -> None:
        filled = self.WIDTH * done // self._total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"{self._label} [{bar}] {done}/{self._total} {note}".rstrip()
        if not self._enabled or line == self._last:
            return
        if self._tty:
            self._stream.write("\r" + line.ljust(len(self._last)))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._last = line

    def close(self) -> None:
        if self._enabled and self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


def render_json(rows: list[Row]) -> str:
    return json.dumps([row.as_dict() for row in rows], indent=2)


def render_table(rows: list[Row]) -> str:
    header = ["FILE", "JOB", "STATUS", "DETECTIONS", "CLASSES"]
    notes = any(row.error or (row.job or {}).get("error") for row in rows)
    lines = [[*header, "NOTE"] if notes else header]
    for row in rows:
        detections = (row.job or {}).get("detections")
        cells = [
            row.file,
            (row.job or {}).get("id", "-"),
            row.status,
            "-" if detections is None else str(len(detections)),
            _classes(detections or []),
        ]
        if notes:
            cells.append(row.error or (row.job or {}).get("error") or "")
        lines.append(cells)
    return _columns(lines)


def render_models(listing: dict[str, Any]) -> str:
    """The models as a table: digests shortened to 12 characters (--json has them whole)."""
    lines = [["NAME", "SOURCE", "FORMAT", "DEFAULT", "SIZE", "SHA256", "PUSHED"]]
    for model in listing["models"]:
        lines.append(
            [
                model["name"],
                model["source"],
                model.get("format", "pytorch"),  # an older API lists `.pt` files only
                "yes" if model["default"] else "-",
                _size(model["size_bytes"]),
                (model["sha256"] or "-")[:12],
                _when(model["updated_at"]),
            ]
        )
    return _columns(lines)


def render_pushed(model: Model, created: bool) -> str:
    verb = "pushed" if created else "replaced"
    return f"{verb} {model['name']}: {_size(model['size_bytes'])}, sha256 {model['sha256']}"


def _columns(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _size(size: int | None) -> str:
    """`1.2 MB` (decimal units)."""
    if size is None:
        return "-"
    if size < 1000:
        return f"{size} B"
    value, units = size / 1000, ["KB", "MB", "GB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"


def _when(timestamp: str | None) -> str:
    """`2026-12-02T10:00:00.123Z` -> `2026-12-02 10:00` (UTC)."""
    return timestamp[:16].replace("T", " ") if timestamp else "-"


def _classes(detections: list[dict[str, Any]]) -> str:
    """`2 circle, 1 square`: how many of each class, by name."""
    counts = Counter(str(d["class_name"]) for d in detections)
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "-"

"""flows/detect.py run as the orchestrators run it: a subprocess on a data directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support.paths import FIXTURE_MODEL, ROOT

DETECT_PY = ROOT / "flows" / "detect.py"
OUTPUTS_LINE = re.compile(r"^::(\{.*\})::$")
# The fixture model's exports in a data dir, by format (detect.py's export mode).
EXPORTS = {"onnx": "models/shapes.onnx", "openvino": "models/shapes_openvino_model"}
Process = subprocess.CompletedProcess[str]


def run_detect(
    data_dir: Path,
    *args: str,
    env: Mapping[str, str] = {},
    unset: Iterable[str] = (),
    wrapper: str | None = None,
) -> Process:
    """detect.py as the orchestrators run it, offline unless `unset`; or under `wrapper`, code
    for ``python -c`` that takes detect.py's path and then its arguments."""
    full_env = {**os.environ, "YOLO_OFFLINE": "1", **env}
    for name in unset:
        full_env.pop(name, None)
    command = [sys.executable, *(["-c", wrapper] if wrapper else []), str(DETECT_PY)]
    return subprocess.run(
        [*command, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def jobs_args(*pairs: tuple[str, str]) -> list[str]:
    return ["--jobs", *(f"{job}={rel}" for job, rel in pairs)]


def fresh_data_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "uploads").mkdir()
    (root / "models").mkdir()
    shutil.copy(FIXTURE_MODEL, root / "models" / "shapes.pt")
    return root


def load_result(data_dir: Path, job: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((data_dir / "results" / f"{job}.json").read_text())
    return result


def outputs_of(proc: Process) -> dict[str, Any]:
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be exactly the outputs line, got {proc.stdout!r}"
    m = OUTPUTS_LINE.match(lines[0])
    assert m, lines[0]
    payload = json.loads(m.group(1))
    assert set(payload) == {"outputs"}
    outputs: dict[str, Any] = payload["outputs"]
    return outputs


def export_fixture_model(data_dir: Path, fmt: str, imgsz: int = 640) -> Path:
    """models/shapes.pt of `data_dir` (fresh_data_dir) exported by Ultralytics through
    detect.py's export mode, its outputs line checked; the export's path."""
    proc = run_detect(
        data_dir, "--export", fmt, "--model", "models/shapes.pt", "--imgsz", str(imgsz)
    )
    assert proc.returncode == 0, proc.stderr
    outputs = outputs_of(proc)
    expected = {"model": EXPORTS[fmt], "format": fmt, "imgsz": imgsz}
    assert outputs == {**expected, "seconds": outputs["seconds"]}
    return data_dir / EXPORTS[fmt]

"""flows-gpu/yolo-detect.yml is flows/yolo-detect.yml with the GPU lines and nothing else, so
the two cannot drift: any edit of one without the other fails here."""

from __future__ import annotations

import difflib

from tests.support.paths import ROOT

CPU = ROOT / "flows" / "yolo-detect.yml"
GPU = ROOT / "flows-gpu" / "yolo-detect.yml"


def _changes() -> tuple[list[str], list[str]]:
    """The lines only the CPU flow has, and those only the GPU flow has."""
    diff = difflib.ndiff(CPU.read_text().splitlines(), GPU.read_text().splitlines())
    lines = [line for line in diff if line[:2] in ("- ", "+ ")]
    return [x[2:] for x in lines if x[0] == "-"], [x[2:] for x in lines if x[0] == "+"]


def test_the_gpu_flow_differs_only_in_its_gpu_lines() -> None:
    removed, added = _changes()
    cpu_image = "ultralytics/ultralytics:8.4.190-cpu"
    assert [line.strip() for line in removed] == [
        f"containerImage: \"{{{{ envs.yolo_image ?? '{cpu_image}' }}}}\""
    ]
    code = [line.strip() for line in added if not line.lstrip().startswith("#")]
    assert code == [
        "containerImage: \"{{ envs.yolo_image ?? 'ultralytics/ultralytics:8.4.190' }}\"",
        "deviceRequests:",
        "- driver: nvidia",
        "count: -1",
        "capabilities:",
        "- - gpu",
    ]
    # The added comments are the header and the lines marked GPU.
    comments = [line.strip() for line in added if line.lstrip().startswith("#")]
    assert comments[0].startswith("# GPU variant of flows/yolo-detect.yml")
    assert sum(line.startswith("# GPU:") for line in comments) == 2

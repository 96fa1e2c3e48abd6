"""Contract checks of flows/yolo-export.yml: its inputs let nothing reach the shell line that
detect.py's export mode would not take, its command line parses with that mode's own parser,
and its task runs like yolo-detect's (the stand-in runs it for real: tests/e2e)."""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows import detect
from tests.flows.test_flow_yaml import PEBBLE, render
from tests.support.paths import ROOT

FLOWS = ROOT / "flows"


@pytest.fixture(scope="module")
def flow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FLOWS / "yolo-export.yml").read_text())
    return loaded


def _validator(flow: dict[str, Any], name: str) -> re.Pattern[str]:
    (spec,) = [i for i in flow["inputs"] if i["id"] == name]
    return re.compile(spec["validator"])


def test_inputs_refuse_what_the_export_mode_refuses(flow: dict[str, Any]) -> None:
    model, fmt = _validator(flow, "model"), _validator(flow, "format")
    parser = detect.build_export_parser()
    for good in ["models/shapes.pt", "models/my-model_2.v1.pt"]:
        assert model.fullmatch(good), good
        parser.parse_args(["--export", "onnx", "--data-dir", "/data", "--model", good])
    for bad in [
        "shapes.pt",
        "models/../x.pt",
        "models/.x.pt",
        "models/a b.pt",
        "models/x.pt;id",
        "models/x.onnx",
        "models/$(id).pt",
        "models/x.pt\n--x",
    ]:
        assert not model.fullmatch(bad), bad
    assert [f for f in ["onnx", "openvino", "tflite", "onnx;id"] if fmt.fullmatch(f)] == list(
        detect.FORMATS
    )


def test_command_line_parses_with_the_export_mode(flow: dict[str, Any]) -> None:
    (task,) = flow["tasks"]
    (command,) = task["commands"]
    sample = {
        "inputs.model": "models/shapes.pt",
        "inputs.format": "openvino",
        "inputs.image_size": "640",
    }
    argv = shlex.split(render(command, sample))
    assert argv[:2] == ["python", "/data/scripts/detect.py"]
    args = detect.build_export_parser().parse_args(argv[2:])
    assert (args.format, args.data_dir, args.model, args.imgsz) == (
        "openvino",
        Path("/data"),
        "models/shapes.pt",
        640,
    )
    assert sorted(PEBBLE.findall(command)) == sorted(sample)


def test_the_task_runs_like_yolo_detects(flow: dict[str, Any]) -> None:
    (task,) = flow["tasks"]
    detect_flow = yaml.safe_load((FLOWS / "yolo-detect.yml").read_text())
    (detect_task,) = detect_flow["tasks"]
    runner, detect_runner = task["taskRunner"], detect_task["taskRunner"]
    for key in ("type", "pullPolicy", "user", "volumes", "delete"):
        assert runner[key] == detect_runner[key], key
    assert runner["networkMode"] == "none"  # exporting never downloads anything
    assert task["containerImage"] == detect_task["containerImage"]
    assert task["timeout"] == "PT10M"
    assert (flow["namespace"], flow["id"]) == ("inference", "yolo-export")
    assert _validator(flow, "export_id").fullmatch(str(uuid.uuid4()))

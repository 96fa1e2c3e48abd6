"""Contract checks of flows/yolo-detect.yml (Kestra cannot run here).

The flow is parsed as YAML and checked against what the API, detect.py and
kestra/application.yml rely on; its detect command line is rendered with
sample inputs and parsed with detect.py's own argparse parser.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FLOW_YML = REPO / "flows" / "yolo-detect.yml"
DETECT_PY = REPO / "flows" / "detect.py"

PEBBLE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
ISO_DURATION = re.compile(r"^PT(\d+H)?(\d+M)?(\d+(\.\d+)?S)?$")


@pytest.fixture(scope="module")
def flow() -> dict:
    return yaml.safe_load(FLOW_YML.read_text())


@pytest.fixture(scope="module")
def detect_parser():
    spec = importlib.util.spec_from_file_location("flows_detect", DETECT_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing detect.py does not import ultralytics
    return module.build_parser()


@pytest.fixture(scope="module")
def inputs(flow) -> dict:
    return {i["id"]: i for i in flow["inputs"]}


@pytest.fixture(scope="module")
def task(flow) -> dict:
    assert len(flow["tasks"]) == 1
    return flow["tasks"][0]


def render(template: str, values: dict[str, str]) -> str:
    """Replace each ``{{ expr }}`` by ``values[expr]`` (a tiny stand-in for Pebble)."""

    def sub(m: re.Match) -> str:
        expr = m.group(1)
        assert expr in values, f"unexpected expression {{{{ {expr} }}}} in {template!r}"
        return values[expr]

    return PEBBLE.sub(sub, template)


def test_identity(flow):
    assert flow["id"] == "yolo-detect"
    assert flow["namespace"] == "inference"


def test_inputs(inputs):
    assert list(inputs) == ["job_id", "image_path", "model", "confidence", "image_size"]
    types = {k: v["type"] for k, v in inputs.items()}
    assert types == {"job_id": "STRING", "image_path": "STRING", "model": "STRING",
                     "confidence": "FLOAT", "image_size": "INT"}  # fmt: skip
    assert "defaults" not in inputs["job_id"]
    assert "defaults" not in inputs["image_path"]
    assert inputs["model"]["defaults"] == "yolo11n.pt"
    assert inputs["confidence"]["defaults"] == 0.25
    assert inputs["image_size"]["defaults"] == 640
    assert inputs["confidence"]["min"] <= 0.25 <= inputs["confidence"]["max"] <= 1
    assert inputs["image_size"]["min"] <= 640 <= inputs["image_size"]["max"]


def test_input_validators(inputs):
    job = re.compile(inputs["job_id"]["validator"])
    assert job.fullmatch(str(uuid.uuid4()))
    assert job.fullmatch(str(uuid.uuid4()).upper())
    for bad in ["", "abc", "../etc", str(uuid.uuid4()) + " ; rm -rf /", str(uuid.uuid4()) + "\n"]:
        assert not job.fullmatch(bad), bad

    image = re.compile(inputs["image_path"]["validator"])
    assert inputs["image_path"]["validator"] == "^uploads/[A-Za-z0-9._-]+$"
    assert image.fullmatch(f"uploads/{uuid.uuid4()}.jpg")
    for bad in [
        "/data/uploads/a.jpg",
        "uploads/../x/y.jpg",
        "uploads/a b.jpg",
        "uploads/$(id).jpg",
        "other/a.jpg",
    ]:
        assert not image.fullmatch(bad), bad

    model = re.compile(inputs["model"]["validator"])
    for good in ["yolo11n.pt", "models/shapes.pt", "/data/models/x.pt"[1:]]:
        assert model.fullmatch(good), good
    for bad in ["a b.pt", "x;id", "$(id)", "`id`", "-rf", "m.pt\n--x"]:
        assert not model.fullmatch(bad), bad


def test_task_and_runner(task):
    assert task["id"] == "detect"
    assert task["type"] == "io.kestra.plugin.scripts.python.Commands"
    image = task["containerImage"]
    assert "envs." in image
    assert "??" in image
    assert "'ultralytics/ultralytics:latest-cpu'" in image
    runner = task["taskRunner"]
    assert runner["type"] == "io.kestra.plugin.scripts.runner.docker.Docker"
    assert runner["pullPolicy"] == "IF_NOT_PRESENT"
    assert runner["user"] == "1000:1000"
    assert runner["delete"] is True
    assert "networkMode" not in runner  # default bridge: the container calls no compose service
    (volume,) = runner["volumes"]
    source, target = volume.rsplit(":", 1)
    assert target == "/data"
    assert "envs." in source
    assert "'yolo-shared-data'" in source
    env = task["env"]
    assert env["YOLO_CONFIG_DIR"].startswith("/tmp/")


def test_timeout_and_bounded_retry(task, flow):
    assert ISO_DURATION.match(task["timeout"])
    retry = task["retry"]
    assert retry["type"] == "constant"
    assert 1 <= retry["maxAttempts"] <= 3
    assert ISO_DURATION.match(retry["interval"])


def test_command_line_matches_detect_cli(task, inputs, detect_parser):
    (command,) = task["commands"]
    sample = {
        "inputs.job_id": str(uuid.uuid4()),
        "inputs.image_path": "uploads/a1b2.jpg",
        "inputs.model": inputs["model"]["defaults"],
        "inputs.confidence": str(inputs["confidence"]["defaults"]),
        "inputs.image_size": str(inputs["image_size"]["defaults"]),
    }
    argv = shlex.split(render(command, sample))
    assert argv[:2] == ["python", "/data/scripts/detect.py"]
    known = {opt for action in detect_parser._actions for opt in action.option_strings}
    flags = [a for a in argv[2:] if a.startswith("--")]
    assert flags
    assert set(flags) <= known, set(flags) - known
    required = {a.option_strings[0] for a in detect_parser._actions if a.required}
    assert required <= set(flags)
    args = detect_parser.parse_args(argv[2:])
    assert args.data_dir == "/data"
    assert args.job_id == sample["inputs.job_id"]
    assert args.image == sample["inputs.image_path"]
    assert args.model == "yolo11n.pt"
    assert args.conf == 0.25
    assert args.imgsz == 640
    # Every input reaches the command line exactly once.
    assert sorted(PEBBLE.findall(command)) == sorted(sample)


def test_flow_outputs(flow):
    outputs = {o["id"]: o for o in flow["outputs"]}
    assert set(outputs) == {"result_path", "annotated_path", "detections"}
    assert outputs["detections"]["type"] == "INT"
    for key, out in outputs.items():
        expr = PEBBLE.fullmatch(out["value"].strip()).group(1)
        assert expr.startswith(f"outputs.detect.vars.{key} ??"), (
            expr
        )  # with a fallback for failed runs


def test_after_execution_callback(flow, inputs):
    (cb,) = flow["afterExecution"]
    assert cb["type"] == "io.kestra.plugin.core.http.Request"
    assert cb["method"] == "POST"
    assert cb["uri"].endswith("/v1/callbacks/kestra")
    assert "envs.api_url" in cb["uri"]
    assert "'http://api:8000'" in cb["uri"]
    assert cb["contentType"] == "application/json"
    auth = cb["options"]["auth"]
    assert auth["type"] == "BEARER"
    assert PEBBLE.fullmatch(auth["token"]).group(1) == "envs.callback_token"
    timeouts = cb["options"]["timeout"]
    assert ISO_DURATION.match(timeouts["connectTimeout"])
    assert ISO_DURATION.match(timeouts["readIdleTimeout"])
    assert ISO_DURATION.match(cb["timeout"])
    assert cb["retry"]["type"] == "constant"
    assert 1 <= cb["retry"]["maxAttempts"] <= 5

    job = str(uuid.uuid4())
    body = render(
        cb["body"],
        {
            "inputs.job_id": job,
            "execution.id": "4wjtkzwVGBM9yKnjm3yv8r",
            "execution.state": "FAILED",
        },
    )
    assert json.loads(body) == {
        "job_id": job,
        "execution_id": "4wjtkzwVGBM9yKnjm3yv8r",
        "state": "FAILED",
    }


def test_yaml_has_no_machine_paths():
    text = FLOW_YML.read_text()
    assert "/work/" not in text
    assert "/root/" not in text

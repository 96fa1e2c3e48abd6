"""Contract checks of flows/yolo-detect.yml (Kestra cannot run here).

The flow is parsed as YAML and checked against what the API, detect.py and
kestra/application.yml rely on; its detect command line is rendered with
sample inputs and parsed with detect.py's own argparse parser.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from typing import Any

import pytest
import yaml

from flows import detect  # importing detect.py does not import ultralytics
from tests.support.paths import ROOT

FLOW_YML = ROOT / "flows" / "yolo-detect.yml"

PEBBLE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
ISO_DURATION = re.compile(r"^PT(\d+H)?(\d+M)?(\d+(\.\d+)?S)?$")


@pytest.fixture(scope="module")
def flow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(FLOW_YML.read_text())
    return loaded


@pytest.fixture(scope="module")
def inputs(flow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in flow["inputs"]}


@pytest.fixture(scope="module")
def task(flow: dict[str, Any]) -> dict[str, Any]:
    assert len(flow["tasks"]) == 1
    only: dict[str, Any] = flow["tasks"][0]
    return only


def render(template: str, values: dict[str, str]) -> str:
    """Replace each ``{{ expr }}`` by ``values[expr]`` (a tiny stand-in for Pebble)."""

    def sub(m: re.Match[str]) -> str:
        expr = m.group(1)
        assert expr in values, f"unexpected expression {{{{ {expr} }}}} in {template!r}"
        return values[expr]

    return PEBBLE.sub(sub, template)


def expression(template: str) -> str:
    """The ``expr`` of a template that is exactly one ``{{ expr }}``."""
    m = PEBBLE.fullmatch(template)
    assert m, template
    return m.group(1)


def test_identity(flow: dict[str, Any]) -> None:
    assert flow["id"] == "yolo-detect"
    assert flow["namespace"] == "inference"


UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def jobs_list(count: int, ext: str = "jpg") -> str:
    """A `jobs` input as the API builds it: `<job_id>=<image_path>` joined by spaces."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    return " ".join(f"{job}=uploads/{job}.{ext}" for job in ids)


def test_inputs(inputs: dict[str, dict[str, Any]]) -> None:
    assert list(inputs) == ["batch_id", "jobs", "model", "confidence", "image_size"]
    types = {k: v["type"] for k, v in inputs.items()}
    assert types == {"batch_id": "STRING", "jobs": "STRING", "model": "STRING",
                     "confidence": "FLOAT", "image_size": "INT"}  # fmt: skip
    assert "defaults" not in inputs["batch_id"]
    assert "defaults" not in inputs["jobs"]
    assert inputs["model"]["defaults"] == "yolo11n.pt"
    assert inputs["confidence"]["defaults"] == 0.25
    assert inputs["image_size"]["defaults"] == 640
    assert inputs["confidence"]["min"] <= 0.25 <= inputs["confidence"]["max"] <= 1
    assert inputs["image_size"]["min"] <= 640 <= inputs["image_size"]["max"]


def test_batch_id_validator(inputs: dict[str, dict[str, Any]]) -> None:
    batch = re.compile(inputs["batch_id"]["validator"])
    assert inputs["batch_id"]["validator"] == f"^{UUID}$"
    assert batch.fullmatch(str(uuid.uuid4()))
    assert batch.fullmatch(str(uuid.uuid4()).upper())
    for bad in ["", "abc", "../etc", str(uuid.uuid4()) + " ; rm -rf /", str(uuid.uuid4()) + "\n"]:
        assert not batch.fullmatch(bad), bad


def test_jobs_validator_accepts_what_the_api_sends(inputs: dict[str, dict[str, Any]]) -> None:
    validator = inputs["jobs"]["validator"]
    # Anchored, so it means the same to Java's find() as to matches().
    assert validator.startswith("^")
    assert validator.endswith("$")
    jobs = re.compile(validator)
    for count in (1, 2, 32):
        for ext in ("jpg", "png", "webp"):
            value = jobs_list(count, ext)
            assert jobs.fullmatch(value), value
    job = str(uuid.uuid4())
    for good in [f"{job.upper()}=uploads/{job}.JPG", f"{job}=uploads/a_b-c.d.png"]:
        assert jobs.fullmatch(good), good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "{j}",  # no image
        "{j}=",  # empty image
        "=uploads/{j}.jpg",  # no job id
        "abc=uploads/{j}.jpg",  # job id not a UUID
        "{j}=/data/uploads/{j}.jpg",  # absolute
        "{j}=uploads/../x.jpg",
        "{j}=uploads/..",
        "{j}=uploads/.",
        "{j}=uploads/.hidden.jpg",
        "{j}=other/{j}.jpg",
        "{j}=uploads/sub/{j}.jpg",
        "{j}=uploads/a b.jpg",
        "{j}=uploads/{j}.jpg ",  # trailing space: an empty entry
        " {j}=uploads/{j}.jpg",
        "{j}=uploads/{j}.jpg  {k}=uploads/{k}.jpg",  # two spaces
        "{j}=uploads/{j}.jpg\t{k}=uploads/{k}.jpg",
        "{j}=uploads/{j}.jpg\n{k}=uploads/{k}.jpg",
        "{j}=uploads/{j}.jpg\n",
        "{j}=uploads/{j}.jpg;id",
        "{j}=uploads/{j}.jpg && id",
        "{j}=uploads/{j}.jpg | id",
        "{j}=uploads/$(id).jpg",
        "{j}=uploads/`id`.jpg",
        "{j}=uploads/{j}.jpg>x",
        "{j}=uploads/{j}.jpg --model x.pt",  # no option smuggling
        "{j}=uploads/'a'.jpg",
        "{j}=uploads/{j}.jpg,{k}=uploads/{k}.jpg",
    ],
)
def test_jobs_validator_refuses_anything_else(inputs: dict[str, dict[str, Any]], bad: str) -> None:
    j, k = str(uuid.uuid4()), str(uuid.uuid4())
    value = bad.replace("{j}", j).replace("{k}", k)
    assert not re.fullmatch(inputs["jobs"]["validator"], value), value


def test_other_input_validators(inputs: dict[str, dict[str, Any]]) -> None:
    model = re.compile(inputs["model"]["validator"])
    for good in ["yolo11n.pt", "models/shapes.pt", "/data/models/x.pt"[1:]]:
        assert model.fullmatch(good), good
    for bad in ["a b.pt", "x;id", "$(id)", "`id`", "-rf", "m.pt\n--x"]:
        assert not model.fullmatch(bad), bad


def test_task_and_runner(task: dict[str, Any]) -> None:
    assert task["id"] == "detect"
    assert task["type"] == "io.kestra.plugin.scripts.python.Commands"
    image = task["containerImage"]
    assert "envs." in image
    assert "??" in image
    assert "'ultralytics/ultralytics:8.4.190-cpu'" in image
    runner = task["taskRunner"]
    assert runner["type"] == "io.kestra.plugin.scripts.runner.docker.Docker"
    assert runner["pullPolicy"] == "IF_NOT_PRESENT"
    assert runner["user"] == "1000:1000"
    assert runner["delete"] is True
    # No network unless downloads are allowed: the container calls no service at all.
    assert runner["networkMode"] == "{{ envs.task_network ?? 'none' }}"
    assert task["env"]["YOLO_ALLOW_DOWNLOAD"] == "{{ envs.allow_model_download ?? 'false' }}"
    (volume,) = runner["volumes"]
    source, target = volume.rsplit(":", 1)
    assert target == "/data"
    assert "envs." in source
    assert "'yolo-shared-data'" in source
    assert task["env"]["YOLO_CONFIG_DIR"].startswith("/tmp/")


def test_timeout_and_bounded_retry(task: dict[str, Any], flow: dict[str, Any]) -> None:
    assert ISO_DURATION.match(task["timeout"])
    retry = task["retry"]
    assert retry["type"] == "constant"
    assert 1 <= retry["maxAttempts"] <= 3
    assert ISO_DURATION.match(retry["interval"])


@pytest.mark.parametrize("count", [1, 3, 32])
def test_command_line_matches_detect_cli(
    task: dict[str, Any], inputs: dict[str, dict[str, Any]], count: int
) -> None:
    detect_parser = detect.build_parser()
    (command,) = task["commands"]
    jobs = jobs_list(count)
    sample = {
        "inputs.batch_id": str(uuid.uuid4()),
        "inputs.jobs": jobs,
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
    assert args.batch_id == sample["inputs.batch_id"]
    # The jobs list becomes one argument per job, in order.
    assert args.jobs == [tuple(entry.split("=", 1)) for entry in jobs.split(" ")]
    assert len(args.jobs) == count
    assert args.model == "yolo11n.pt"
    assert args.conf == 0.25
    assert args.imgsz == 640
    # Every input reaches the command line exactly once.
    assert sorted(PEBBLE.findall(command)) == sorted(sample)


def test_flow_outputs(flow: dict[str, Any]) -> None:
    outputs = {o["id"]: o for o in flow["outputs"]}
    assert set(outputs) == {"succeeded", "failed", "jobs"}
    for key, out in outputs.items():
        assert out["type"] == "INT", key
        expr = expression(out["value"].strip())
        # With a fallback for failed runs (no outputs line): an unresolved reference would
        # add "Failed to render output values" and hide the real error.
        assert expr == f"outputs.detect.vars.{key} ?? 0", expr


def test_after_execution_callback(flow: dict[str, Any]) -> None:
    (cb,) = flow["afterExecution"]
    assert cb["type"] == "io.kestra.plugin.core.http.Request"
    assert cb["method"] == "POST"
    assert cb["uri"].endswith("/v1/callbacks/kestra")
    assert "envs.api_url" in cb["uri"]
    assert "'http://api:8000'" in cb["uri"]
    assert cb["contentType"] == "application/json"
    auth = cb["options"]["auth"]
    assert auth["type"] == "BEARER"
    assert expression(auth["token"]) == "envs.callback_token"
    timeouts = cb["options"]["timeout"]
    assert ISO_DURATION.match(timeouts["connectTimeout"])
    assert ISO_DURATION.match(timeouts["readIdleTimeout"])
    assert ISO_DURATION.match(cb["timeout"])
    assert cb["retry"]["type"] == "constant"
    assert 1 <= cb["retry"]["maxAttempts"] <= 5

    batch, execution = str(uuid.uuid4()), "4wjtkzwVGBM9yKnjm3yv8r"
    sample = {"inputs.batch_id": batch, "execution.id": execution, "execution.state": "FAILED"}
    body = json.loads(render(cb["body"], sample))
    assert body == {"batch_id": batch, "execution_id": execution, "state": "FAILED"}


def test_yaml_has_no_machine_paths() -> None:
    text = FLOW_YML.read_text()
    assert "/work/" not in text
    assert "/root/" not in text

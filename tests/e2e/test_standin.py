"""The Kestra stand-in's executor mode without Docker: what it accepts of a flow, how it
renders expressions, and what it asks the Docker engine and the API for (a fake engine and a
fake HTTP client record it). The end-to-end tests run the same code for real."""

from __future__ import annotations

import copy
import functools
import json
import operator
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
import requests
import yaml
from docker import DockerClient
from docker.errors import APIError, ImageNotFound
from docker.types import DeviceRequest
from fastapi.testclient import TestClient

from tests.support.engine import OFFLINE_DEBIAN, engine_for_tests, require
from tests.support.kestra.__main__ import main, read_config
from tests.support.kestra.api import build_app, validate_inputs
from tests.support.kestra.containers import TaskContainers
from tests.support.kestra.executor import ExecutorConfig, FlowExecutor
from tests.support.kestra.flow import check_flow, load_flows
from tests.support.kestra.pebble import RenderError, Unsupported, render
from tests.support.kestra.state import TERMINAL, StandinState, jobs_of
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
FLOW = yaml.safe_load((ROOT / "flows" / "yolo-detect.yml").read_text())
(GPU_FLOW,) = load_flows(ROOT / "flows-gpu")  # docker-compose.gpu.yml's flow path
# What `docker run --gpus all` sends; the GPU flow's one difference Docker sees.
ALL_GPUS = DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])
BATCH_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
JOB_IDS = ["3f1c2b7e-1d2a-4c5b-9e8f-0a1b2c3d4e5f", "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"]
JOBS = " ".join(f"{job}=uploads/{job}.jpg" for job in JOB_IDS)
ENVS = {
    "yolo_image": "yolo-inference:test",
    "shared_volume": "vol-test",
    "api_url": "http://api.test:8000",
    "callback_token": "tok-123",
}
OUTPUTS = {"batch_id": BATCH_ID, "jobs": 2, "succeeded": 1, "failed": 1}
DETECT_STDOUT = "progress text\n::" + json.dumps({"outputs": OUTPUTS}) + "::\n"


@pytest.mark.parametrize("name", ["yolo-detect.yml", "yolo-export.yml"])
def test_the_repository_flows_are_accepted(name: str) -> None:
    check_flow(yaml.safe_load((ROOT / "flows" / name).read_text()))


def _variant(path: list[Any], value: Any) -> dict[str, Any]:
    flow: dict[str, Any] = copy.deepcopy(FLOW)
    functools.reduce(operator.getitem, path[:-1], flow)[path[-1]] = value
    return flow


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (["errors"], [], "errors not emulated"),
        (["tasks", 0, "type"], "io.kestra.plugin.scripts.shell.Commands", "not emulated"),
        (["tasks", 0, "beforeCommands"], ["pip install x"], "beforeCommands not emulated"),
        (["tasks", 0, "taskRunner", "cpu"], {"cpus": 1}, "cpu not emulated"),
        (["tasks", 0, "containerImage"], "{{ envs.yolo_image | lower }}", "Pebble subset"),
        (["tasks", 0, "commands"], ["echo {{ inputs.nope }}"], "not a declared input"),
        (["tasks", 0, "commands"], ["echo {{ outputs.detect.exitCode }}"], "renders inputs"),
        (["tasks", 0, "commands"], ["echo {{ flow.id }}"], "'flow' is not emulated"),
        (["tasks", 0, "commands"], ["{% if x %}"], "tags"),
        (["tasks", 0, "retry", "type"], "exponential", "only type 'constant'"),
        (["tasks", 0, "timeout"], "10 minutes", "ISO-8601"),
        (["tasks", 0, "timeout"], "P1W", "ISO-8601"),  # not in Java's Duration grammar
        (["tasks", 0, "retry", "maxDuration"], "PT1H", "maxDuration not emulated"),
        (["inputs", 0, "type"], "BOOLEAN", "not emulated"),
        (["inputs", 3, "validator"], "^0", "STRING input's property"),
        (["afterExecution", 0, "options", "auth", "type"], "OAUTH", "not emulated"),
        (["outputs", 0, "value"], "{{ 'a' ~ inputs.batch_id ?? 'b' }}", "parentheses"),
        (["outputs", 0, "value"], "{{ inputs.jobs | split(' ') | length }}", "Pebble subset"),
        (["afterExecution", 0, "body"], '{"job_id": "{{ inputs.job_id }}"}', "not a declared"),
    ],
)
def test_constructs_it_does_not_emulate_are_refused(
    path: list[Any], value: Any, complaint: str
) -> None:
    with pytest.raises(Unsupported, match=re.escape(complaint)):
        check_flow(_variant(path, value))


def test_rendering_follows_kestra_strict_variables() -> None:
    context = {"inputs": {"n": 640, "c": 0.25}, "envs": {}, "outputs": {}, "execution": {}}
    line = render("--imgsz {{ inputs.n }} --conf {{inputs.c}}", context)
    assert line == "--imgsz 640 --conf 0.25"
    assert render("{{ envs.image ?? 'default:tag' }}", context) == "default:tag"
    assert render("{{ outputs.t.vars.x ?? 0 }}", context) == "0"
    # Only what flows/yolo-detect.yml uses is rendered: `~` and parentheses are refused.
    with pytest.raises(Unsupported, match="Pebble subset"):
        render("{{ outputs.t.vars.x ?? ('r/' ~ inputs.n ~ '.json') }}", context)
    with pytest.raises(RenderError, match=r"Unable to find `envs\.token`"):
        render("Bearer {{ envs.token }}", context)


def test_configuration_placeholders_come_from_the_environment() -> None:
    config = ROOT / "kestra" / "application.yml"
    env = {
        "KESTRA_DB_PASSWORD": "x",
        "KESTRA_BASIC_AUTH_USERNAME": "a@example.com",
        "KESTRA_BASIC_AUTH_PASSWORD": "Secret123",
    }
    settings = read_config(config, env)
    assert (settings.username, settings.password) == ("a@example.com", "Secret123")
    assert settings.env_prefix == "ENV_"
    assert settings.volumes_enabled is True
    assert settings.storage == Path("/app/storage")
    assert settings.tutorials is False
    with pytest.raises(SystemExit, match="KESTRA_BASIC_AUTH_PASSWORD"):
        read_config(config, {k: v for k, v in env.items() if "PASSWORD" not in k or "DB" in k})


def test_tutorial_flows_must_be_switched_off(tmp_path: Path) -> None:
    # Kestra would fetch them from the internet at start; the stand-in cannot, so it refuses.
    config, flows = tmp_path / "application.yml", tmp_path / "flows"
    flows.mkdir()
    auth = {"username": "a@example.com", "password": "Secret123"}
    config.write_text(yaml.safe_dump({"kestra": {"server": {"basic-auth": auth}}}))
    argv = ["server", "standalone", "--config", str(config), "--flow-path", str(flows)]
    with pytest.raises(SystemExit, match="tutorial-flows"):
        main(argv)
    with pytest.raises(SystemExit, match="no flow in"):  # past the tutorials check
        main([*argv, "--no-tutorials"])


class FakeDocker:
    """The Docker SDK's client as the stand-in uses it; records the calls. Each container
    exits with the next scripted (code, stdout); code None: still running at the timeout."""

    def __init__(self, script: list[tuple[int | None, str]], pull_s: float | None = None) -> None:
        self.script = script
        self.pull_s = pull_s  # None: the image is local; otherwise pulling it takes pull_s
        self.created: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.waited: list[float | None] = []
        self.out: dict[str, str] = {}
        self.images = SimpleNamespace(get=self._image, pull=self._pull)
        self.containers = SimpleNamespace(create=self._create, list=lambda **_: [])

    def _image(self, image: str) -> None:
        if self.pull_s is not None:
            raise ImageNotFound(image)

    def _pull(self, image: str) -> None:
        time.sleep(self.pull_s or 0)
        self.calls.append(("pull", image))

    def _create(self, **kwargs: Any) -> SimpleNamespace:
        self.created.append(kwargs)
        container = f"c{len(self.created)}"
        self.calls.append(("create", container))
        record = self.calls.append
        return SimpleNamespace(
            id=container,
            start=lambda: record(("start", container)),
            wait=lambda timeout: self._wait(container, timeout),
            logs=lambda stdout, stderr: (
                self.out.get(container, "") if stdout else "some stderr\n"
            ).encode(),
            kill=lambda: record(("kill", container)),
            remove=lambda **_: record(("remove", container)),
        )

    def _wait(self, container: str, timeout: float | None) -> dict[str, int]:
        self.waited.append(timeout)
        if ("kill", container) in self.calls:
            return {"StatusCode": 137}
        code, out = self.script.pop(0)
        self.out[container] = out
        self.calls.append(("wait", container))
        if code is None:  # what the SDK raises when its unix socket times out
            raise requests.exceptions.ConnectionError("Read timed out.")
        return {"StatusCode": code}


def _run(
    docker: FakeDocker,
    monkeypatch: pytest.MonkeyPatch,
    *,
    volumes_enabled: bool = True,
    drop: int = 0,
    api_status: int = 202,
    task_timeout: str | None = None,
    flow: dict[str, Any] = FLOW,
) -> tuple[StandinState, dict[str, Any], list[dict[str, Any]]]:
    flow = copy.deepcopy(flow)
    flow["tasks"][0]["retry"]["interval"] = "PT0S"  # no 15 s wait in a unit test
    if task_timeout is not None:
        flow["tasks"][0]["timeout"] = task_timeout
    flow["afterExecution"][0]["retry"]["interval"] = "PT0S"
    sent: list[dict[str, Any]] = []

    def fake_request(method: str, url: str, **kwargs: Any) -> httpx.Response:
        sent.append({"method": method, "url": url, **kwargs})
        return httpx.Response(api_status, json={})

    monkeypatch.setattr(httpx, "request", fake_request)
    state = StandinState([flow], "u@example.com", "Passw0rd")
    state.faults.drop_callbacks = drop
    config = ExecutorConfig(envs=ENVS, volumes_enabled=volumes_enabled, threads=1)
    executor = FlowExecutor(state, lambda: cast(DockerClient, docker), config)
    inputs, errors = validate_inputs(
        state.checked["inference", "yolo-detect"].inputs, {"batch_id": BATCH_ID, "jobs": JOBS}
    )
    assert not errors
    execution: dict[str, Any] = {
        "id": "exec1",
        "namespace": "inference",
        "flowId": "yolo-detect",
        "inputs": inputs,
        "outputs": {},
        "labels": [{"key": "batch_id", "value": BATCH_ID}],
        "state": {"current": "CREATED", "histories": []},
        "taskRunList": [],
    }
    state.executions["exec1"] = execution
    executor.start()
    executor.submit("exec1")
    wait_until(
        lambda: execution["state"]["current"] in TERMINAL, 10, what="the execution", interval_s=0.02
    )
    executor.stop()  # returns once the running execution is done, afterExecution included
    return state, execution, sent


def test_a_successful_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    docker = FakeDocker([(0, DETECT_STDOUT)])
    state, execution, sent = _run(docker, monkeypatch)
    [body] = docker.created
    assert body["image"] == "yolo-inference:test"
    assert body["entrypoint"] == [""]
    assert body["command"][:2] == ["/bin/sh", "-c"]
    assert body["command"][2] == (
        f"python /data/scripts/detect.py --data-dir /data --batch-id {BATCH_ID} "
        f"--model yolo11n.pt --conf 0.25 --imgsz 640 --jobs {JOBS}"
    )
    assert body["user"] == "1000:1000"
    assert body["volumes"] == ["vol-test:/data"]
    assert body["device_requests"] is None  # the CPU flow asks for no device
    assert "YOLO_CONFIG_DIR=/tmp/ultralytics" in body["environment"]
    assert ("remove", "c1") in docker.calls  # delete: true
    assert [h["state"] for h in execution["state"]["histories"]] == ["RUNNING", "SUCCESS"]
    # The flow's outputs, typed: one job succeeded, one failed, and the execution succeeded.
    assert execution["outputs"] == {"succeeded": 1, "failed": 1, "jobs": 2}
    [callback] = sent
    assert callback["method"] == "POST"
    assert callback["url"] == "http://api.test:8000/v1/callbacks/kestra"
    assert callback["headers"]["Authorization"] == "Bearer tok-123"
    assert callback["headers"]["Content-Type"] == "application/json"
    assert json.loads(callback["content"]) == {
        "batch_id": BATCH_ID,
        "execution_id": "exec1",
        "state": "SUCCESS",
    }
    assert state.containers[0]["removed"] is True


def test_the_gpu_flow_asks_docker_for_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    docker = FakeDocker([(0, DETECT_STDOUT)])
    _, execution, _ = _run(docker, monkeypatch, flow=GPU_FLOW)
    [body] = docker.created
    assert body["device_requests"] == [ALL_GPUS]
    assert body["image"] == "yolo-inference:test"  # envs.yolo_image, as in the CPU flow
    assert execution["state"]["current"] == "SUCCESS"


@pytest.mark.docker
def test_docker_gets_the_gpu_request_and_refuses_it_without_the_nvidia_toolkit() -> None:
    """On the real engine (no GPU here): the container is created with the exact
    HostConfig.DeviceRequests, and starting it fails as it does on any host without the
    NVIDIA Container Toolkit. Nothing runs."""
    engine = engine_for_tests(compose=False)
    require(engine.image_exists(OFFLINE_DEBIAN), f"{OFFLINE_DEBIAN} is missing")
    flow = copy.deepcopy(GPU_FLOW)
    flow["tasks"][0]["taskRunner"]["delete"] = False  # kept, to be inspected
    task = check_flow(flow).tasks[0]
    state = StandinState([flow], "u@example.com", "Passw0rd")
    containers = TaskContainers(state, lambda: engine.sdk, volumes_enabled=False)
    inputs = {"batch_id": BATCH_ID, "jobs": JOBS, "model": "m.pt", "confidence": 0.5}
    inputs["image_size"] = 64
    context = {"envs": {"yolo_image": OFFLINE_DEBIAN}, "inputs": inputs}
    try:
        with pytest.raises(APIError, match='could not select device driver "nvidia"'):
            containers.run("exec-gpu", task, 1, lambda template: render(template, context))
        [record] = state.containers
        host = engine.inspect(record["containerId"], "container")["HostConfig"]
        [request] = host["DeviceRequests"]
        assert request["Driver"] == "nvidia"
        assert request["Count"] == -1
        assert request["Capabilities"] == [["gpu"]]
    finally:
        containers.remove_leftovers("exec-gpu")


def test_a_failing_task_is_retried_then_fails_the_execution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docker = FakeDocker([(1, ""), (1, "")])
    _, execution, sent = _run(docker, monkeypatch)
    assert execution["state"]["current"] == "FAILED"
    detect = execution["taskRunList"][0]
    assert [a["state"]["current"] for a in detect["attempts"]] == ["FAILED", "FAILED"]
    assert "RETRYING" in [h["state"] for h in detect["state"]["histories"]]
    # Outputs fall back to their ?? defaults; the callback says FAILED.
    assert execution["outputs"] == {"succeeded": 0, "failed": 0, "jobs": 0}
    assert json.loads(sent[0]["content"])["state"] == "FAILED"


def test_a_timeout_kills_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    docker = FakeDocker([(None, ""), (0, DETECT_STDOUT)])
    _, execution, _ = _run(docker, monkeypatch)
    assert ("kill", "c1") in docker.calls
    assert execution["state"]["current"] == "SUCCESS"  # the retry's second attempt worked


def test_the_pull_counts_inside_the_task_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # As Kestra's WorkerTaskCallable: a pull longer than the timeout fails the attempt.
    docker = FakeDocker([], pull_s=1.2)
    _, execution, _ = _run(docker, monkeypatch, task_timeout="PT1S")
    assert execution["state"]["current"] == "FAILED"
    assert docker.created == []  # timed out before any container started
    assert [c for c in docker.calls if c[0] == "pull"] == [("pull", "yolo-inference:test")] * 2


def test_the_container_gets_what_the_pull_left_of_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docker = FakeDocker([(0, DETECT_STDOUT)], pull_s=0.5)
    _, execution, _ = _run(docker, monkeypatch, task_timeout="PT3S")
    assert execution["state"]["current"] == "SUCCESS"
    [waited] = docker.waited
    assert waited is not None
    assert waited <= 3.0 - 0.5  # not the whole timeout: the pull used part of it


def test_volumes_are_dropped_without_volume_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    docker = FakeDocker([(0, DETECT_STDOUT)])
    _run(docker, monkeypatch, volumes_enabled=False)
    assert docker.created[0]["volumes"] == []


def test_dropped_callback_is_never_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    docker = FakeDocker([(0, DETECT_STDOUT)])
    state, execution, sent = _run(docker, monkeypatch, drop=1)
    assert sent == []
    assert state.callbacks == [{"executionId": "exec1", "state": "SUCCESS", "dropped": True}]
    assert execution["state"]["current"] == "SUCCESS"


def test_a_failing_callback_keeps_the_final_state(monkeypatch: pytest.MonkeyPatch) -> None:
    docker = FakeDocker([(0, DETECT_STDOUT)])
    _, execution, sent = _run(docker, monkeypatch, api_status=500)
    assert len(sent) == 3  # maxAttempts of notify_api
    assert execution["state"]["current"] == "SUCCESS"
    notify = execution["taskRunList"][-1]
    assert notify["taskId"] == "notify_api"
    assert notify["state"]["current"] == "FAILED"


def test_stdout_and_stderr_are_read_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK demultiplexes the log stream: outputs come from stdout only, stderr is logged.
    docker = FakeDocker([(0, DETECT_STDOUT)])
    state, execution, _ = _run(docker, monkeypatch)
    assert "stdout: progress text" in state.logs["exec1"]
    assert "stderr: some stderr" in state.logs["exec1"]
    assert execution["taskRunList"][0]["outputs"]["vars"] == OUTPUTS


def test_jobs_input_validation_and_lookup_by_job_and_batch() -> None:
    """What the API sends is accepted (and anything else refused with 422's reasons); an
    execution is found by its batch label and by any job of its `jobs` input."""
    declared = check_flow(FLOW).inputs
    inputs, errors = validate_inputs(
        declared, {"batch_id": BATCH_ID, "jobs": JOBS, "confidence": "0.5"}
    )
    assert not errors
    assert inputs["jobs"] == JOBS
    assert inputs["confidence"] == 0.5
    assert (inputs["model"], inputs["image_size"]) == ("yolo11n.pt", 640)
    for bad in ["", f"{JOB_IDS[0]}=uploads/x.jpg;id", f"{JOB_IDS[0]}=/etc/passwd", JOB_IDS[0]]:
        _, errors = validate_inputs(declared, {"batch_id": BATCH_ID, "jobs": bad})
        assert [e.split(":")[0] for e in errors] == ["jobs"], bad
    _, errors = validate_inputs(declared, {"batch_id": BATCH_ID})
    assert errors == ["jobs: missing required input"]

    state = StandinState([copy.deepcopy(FLOW)], "u@example.com", "Passw0rd")
    for execution_id, batch, jobs in [("e1", BATCH_ID, JOBS), ("e2", "other", "x=uploads/y")]:
        state.executions[execution_id] = {
            "id": execution_id,
            "namespace": "inference",
            "flowId": "yolo-detect",
            "inputs": {"batch_id": batch, "jobs": jobs},
            "labels": [{"key": "batch_id", "value": batch}],
        }
    assert jobs_of(state.executions["e1"]) == {job: f"uploads/{job}.jpg" for job in JOB_IDS}
    # By batch: the label search the API runs.
    with TestClient(build_app(state)) as client:
        search = client.get(
            "/api/v1/main/executions/search",
            params={"filters[labels][EQUALS][batch_id]": BATCH_ID},
            auth=("u@example.com", "Passw0rd"),
        )
    assert [e["id"] for e in search.json()["results"]] == ["e1"]
    for job in JOB_IDS:
        assert [e["id"] for e in state.by_job(job)] == ["e1"]
    assert state.by_job("uploads") == []
    assert [e["id"] for e in state.by_job("x")] == ["e2"]

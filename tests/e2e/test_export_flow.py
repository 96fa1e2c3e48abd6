"""flows/yolo-export.yml for real under the Kestra stand-in's executor: executions created
over Kestra's REST API run `detect.py --export` in ephemeral containers of the inference image
(uid 1000, the shared volume, no network), the exports land in models/ and detect.py runs them
in the same image. No compose stack: the executor runs in this process on the real Docker
engine."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.fixtures import synthetic
from tests.support.engine import Docker, require
from tests.support.kestra.api import FLOWS_DIR, build_app
from tests.support.kestra.executor import ExecutorConfig, FlowExecutor
from tests.support.kestra.state import TERMINAL, StandinState
from tests.support.paths import ROOT
from tests.support.stack import ensure_inference_image
from tests.support.stack.volume import SharedVolume
from tests.support.wait import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
AUTH = ("u@example.com", "Passw0rd")
EXPORTS = {"onnx": "models/shapes.onnx", "openvino": "models/shapes_openvino_model"}


@pytest.fixture
def volume(e2e_docker: Docker) -> Iterator[SharedVolume]:
    """A fresh volume laid out as bootstrap leaves it (scripts/detect.py, uploads/, results/),
    with models/shapes.pt."""
    image = ensure_inference_image(e2e_docker, require)
    name = f"yolo-export-test-{uuid.uuid4().hex[:8]}"
    e2e_docker("volume", "create", name)
    vol = SharedVolume(e2e_docker, name, image)
    try:
        layout = "mkdir /data/scripts /data/models /data/uploads /data/results"
        vol.run(f"{layout} && chown 1000:1000 /data/*", user="0")
        vol.run("cat > /data/scripts/detect.py", stdin=(ROOT / "flows" / "detect.py").read_bytes())
        vol.seed_model()
        yield vol
    finally:
        e2e_docker.remove("volume", name)


def _export(client: TestClient, state: StandinState, fmt: str) -> dict[str, Any]:
    form = {"export_id": str(uuid.uuid4()), "model": "models/shapes.pt", "format": fmt}
    answer = client.post(
        "/api/v1/main/executions/inference/yolo-export",
        data=form,
        files={"_": ("", b"")},
        auth=AUTH,
    )
    assert answer.status_code == 200, answer.text
    execution = state.executions[answer.json()["id"]]
    wait_until(lambda: execution["state"]["current"] in TERMINAL, 300, what="the export")
    return execution


def test_the_export_flow_runs_in_the_inference_image(
    e2e_docker: Docker, volume: SharedVolume
) -> None:
    flows = [yaml.safe_load(path.read_text()) for path in sorted(FLOWS_DIR.glob("*.yml"))]
    state = StandinState(flows, *AUTH)
    envs = {"yolo_image": volume.image, "shared_volume": volume.name}
    config = ExecutorConfig(envs=envs, volumes_enabled=True, threads=1)
    executor = FlowExecutor(state, lambda: e2e_docker.sdk, config)
    executor.start()
    try:
        with TestClient(build_app(state)) as client:
            bad = {"export_id": str(uuid.uuid4()), "model": "models/x.pt;id", "format": "onnx"}
            refused = client.post(
                "/api/v1/main/executions/inference/yolo-export",
                data=bad,
                files={"_": ("", b"")},
                auth=AUTH,
            )
            assert refused.status_code == 422  # nothing pasted into a shell line
            done = {fmt: _export(client, state, fmt) for fmt in EXPORTS}
    finally:
        executor.stop()
    for fmt, execution in done.items():
        assert execution["state"]["current"] == "SUCCESS", state.logs.get(execution["id"])
        assert execution["outputs"] == {"model": EXPORTS[fmt], "format": fmt}
    for container in state.containers:
        assert (container["user"], container["network"]) == ("1000:1000", "none"), container
    listing = volume.run("cd /data/models && find . -type f -o -type d | sort").split()
    assert listing == [
        ".",
        "./shapes.onnx",
        "./shapes.pt",
        "./shapes_openvino_model",
        "./shapes_openvino_model/metadata.yaml",
        "./shapes_openvino_model/shapes.bin",
        "./shapes_openvino_model/shapes.xml",
    ]  # no temp directory left
    # detect.py runs each export in the same image and finds the scene's objects.
    image, truth = synthetic.render_scene(synthetic.HELD_OUT_SEED_START + 900)
    png = io.BytesIO()
    image.save(png, format="PNG")
    volume.run("cat > /data/uploads/scene.png", stdin=png.getvalue())
    for fmt, model in EXPORTS.items():
        volume.run(
            f"python /data/scripts/detect.py --data-dir /data --model {model} "
            f"--jobs {fmt}=uploads/scene.png >&2"
        )
        result = json.loads(volume.run(f"cat /data/results/{fmt}.json"))
        assert result["status"] == "succeeded", result
        assert synthetic.match(truth, synthetic.boxes_of(result["detections"]))["ok"], result

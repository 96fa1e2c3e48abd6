"""Refusals at start: ORCHESTRATOR=local where the Local adapter is not, a MODEL the
detection script would not find (by file paths only), and how the API reports a refusal
under a real uvicorn: one JSON line, no traceback, a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import startup
from app.config import Refusal, Settings
from app.main import create_app
from app.startup import check_model, check_orchestrator, local_model_found
from tests.support.net import free_port
from tests.support.paths import FIXTURE_MODEL
from tests.support.processes import api_as_in_image, clean_env, lines, run_module

LOCAL_REFUSAL = "ORCHESTRATOR=local runs flows/detect.py with the host's Ultralytics"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory and official-image folder: nothing is found by accident."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(startup, "OFFICIAL_IMAGE_WORKDIR", tmp_path / "ultralytics")
    (tmp_path / "shared" / "models").mkdir(parents=True)
    (tmp_path / "ultralytics").mkdir()
    return tmp_path


def local(workdir: Path, **values: Any) -> Settings:
    return Settings(shared_data_dir=workdir / "shared", orchestrator="local", **values)


@pytest.mark.parametrize(
    ("model", "file"),
    [
        ("pushed.pt", "shared/models/pushed.pt"),
        ("models/pushed.pt", "shared/models/pushed.pt"),
        ("top.pt", "shared/top.pt"),
        ("here/w.pt", "here/w.pt"),
        ("yolo11n.pt", "ultralytics/yolo11n.pt"),
    ],
    ids=["models-dir", "models-path", "data-dir", "cwd-path", "shipped"],
)
def test_found_where_the_detection_script_looks(workdir: Path, model: str, file: str) -> None:
    assert not local_model_found(local(workdir, model=model))
    (workdir / file).parent.mkdir(parents=True, exist_ok=True)
    (workdir / file).write_bytes(b"weights")
    assert local_model_found(local(workdir, model=model))


def test_an_absolute_path_must_be_a_file(workdir: Path) -> None:
    assert local_model_found(local(workdir, model=str(FIXTURE_MODEL)))
    assert not local_model_found(local(workdir, model=str(workdir / "none.pt")))


def test_only_a_bare_name_may_be_downloaded(workdir: Path) -> None:
    assert local_model_found(local(workdir, model="yolo11n.pt", allow_model_download=True))
    assert not local_model_found(local(workdir, model="a/b.pt", allow_model_download=True))
    assert not local_model_found(local(workdir, model=" ", allow_model_download=True))


def test_check_model_leaves_kestra_to_the_inference_image(workdir: Path) -> None:
    check_model(
        Settings(
            shared_data_dir=workdir / "shared",
            orchestrator="kestra",
            kestra_password="Secret123",
            callback_token="token",
            model="nowhere.pt",
        )
    )
    with pytest.raises(Refusal, match=r"^MODEL=nowhere\.pt is not in "):
        check_model(local(workdir, model="nowhere.pt"))


def test_the_local_adapter_is_there_on_the_host(workdir: Path) -> None:
    check_orchestrator(local(workdir))


def test_without_the_local_adapter_the_api_refuses_at_start(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(startup, "LOCAL_ADAPTER", "app.orchestrators.left_out")
    settings = local(workdir, database_url=f"sqlite:///{workdir / 'db.sqlite3'}")
    with (
        pytest.raises(Refusal, match=r"set ORCHESTRATOR=kestra in \.env$"),
        TestClient(create_app(settings)),
    ):
        pass


def test_uvicorn_exits_with_the_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The image's command, on the code the image has: ORCHESTRATOR=local cannot run."""
    image = api_as_in_image(tmp_path / "image")
    env = clean_env(image, ORCHESTRATOR="local", SHARED_DATA_DIR=str(tmp_path / "shared"))
    done = run_module("uvicorn", env, "app.main:app", "--port", str(free_port()))
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    logged = [json.loads(line) for line in lines(done.stdout)]
    refused = [entry for entry in logged if entry["event"] == "api.refused"]
    assert len(refused) == 1, logged
    assert refused[0]["level"] == "error"
    assert refused[0]["reason"].startswith(LOCAL_REFUSAL)
    # Besides uvicorn's own "startup failed" line, nothing else is an error.
    others = [e["event"] for e in logged if e["level"] == "error" and e is not refused[0]]
    assert others == ["Application startup failed. Exiting."]

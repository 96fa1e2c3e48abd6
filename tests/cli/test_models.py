"""`yoloctl models push|list|rm` and `yoloctl upload --model --conf --imgsz --callback-url`
against a running API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from tests.fixtures.synthetic import boxes_of, match
from tests.support.api_app import ADMIN_KEY, bearer
from tests.support.images import encode, scene_file
from tests.support.live_api import StartApi, api_jobs, new_key
from tests.support.paths import FIXTURE_MODEL, ROOT
from tests.support.processes import run_cli
from tests.support.webhooks import webhook_settings

DIGEST = hashlib.sha256(FIXTURE_MODEL.read_bytes()).hexdigest()
ADMIN = {"YOLO_API_KEY": ADMIN_KEY}
PUSH = ("models", "push", str(FIXTURE_MODEL))


def listing(url: str) -> dict[str, dict[str, object]]:
    body = httpx.get(f"{url}/v1/models", headers=bearer(ADMIN_KEY)).json()
    return {model["name"]: model for model in body["models"]}


def test_push_list_and_remove_a_model(start_api: StartApi) -> None:
    url = start_api(workers_enabled=False)

    pushed = run_cli(*PUSH, "--url", url, env=ADMIN)
    copy = run_cli("--url", url, *PUSH, "--name", "copy.pt", env=ADMIN)
    again = run_cli(*PUSH, "--name", "copy.pt", "--url", url, env=ADMIN)
    table = run_cli("models", "list", "--url", url, env=ADMIN)
    as_json = run_cli("models", "list", "--json", "--url", url, env=ADMIN)

    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout == f"pushed shapes.pt: 1.2 MB, sha256 {DIGEST}\n"
    assert copy.stdout.startswith("pushed copy.pt: ")
    assert again.stdout.startswith("replaced copy.pt: ")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["NAME", "SOURCE", "FORMAT", "DEFAULT", "SIZE", "SHA256", "PUSHED"]
    assert lines[0].split()[:2] == [str(FIXTURE_MODEL), "image"]  # the default, from the image
    assert lines[1].split()[:7] == ["copy.pt", "volume", "pytorch", "-", "1.2", "MB", DIGEST[:12]]
    assert lines[2].split()[:7] == ["shapes.pt", "volume", "pytorch", "-", "1.2", "MB", DIGEST[:12]]
    listed = json.loads(as_json.stdout)
    assert listed["default"] == str(FIXTURE_MODEL)
    assert [model["sha256"] for model in listed["models"]] == [None, DIGEST, DIGEST]

    removed = run_cli("models", "rm", "copy.pt", "--url", url, env=ADMIN)
    twice = run_cli("models", "rm", "copy.pt", "--url", url, env=ADMIN)

    assert (removed.returncode, removed.stdout) == (0, "removed copy.pt\n")
    assert twice.returncode == 1
    assert twice.stderr == "yoloctl: There is no model 'copy.pt' on the shared volume.\n"
    assert sorted(listing(url)) == sorted([str(FIXTURE_MODEL), "shapes.pt"])


def test_refused_pushes_say_why_and_exit_1(start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(workers_enabled=False)
    image = tmp_path / "photo.pt"
    image.write_bytes(encode("PNG"))
    user = new_key(url, "user")

    not_a_model = run_cli("models", "push", str(image), "--url", url, env=ADMIN)
    bad_name = run_cli(*PUSH, "--name", "weights", "--url", url, env=ADMIN)
    not_admin = run_cli(*PUSH, "--url", url, "--api-key", user)
    missing = run_cli("models", "push", str(tmp_path / "none.pt"), "--url", url, env=ADMIN)

    assert not_a_model.returncode == bad_name.returncode == not_admin.returncode == 1
    assert not_a_model.stderr.startswith("yoloctl: The file is not a PyTorch model")
    assert bad_name.stderr.startswith("yoloctl: A model's name is 1 to 100 letters")
    assert not_admin.stderr == "yoloctl: This needs an admin key.\n"
    assert missing.returncode == 2
    assert missing.stderr == f"yoloctl: {tmp_path}/none.pt: no such file\n"
    assert sorted(listing(url)) == [str(FIXTURE_MODEL)]
    # Any key may list.
    assert run_cli("models", "list", "--url", url, "--api-key", user).returncode == 0


@pytest.mark.slow
def test_upload_with_a_pushed_model_runs_with_its_weights(
    start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api(model=str(ROOT / "no-such-model.pt"))  # the default would fail
    truth = scene_file(tmp_path / "a.png", 7200)
    pushed = run_cli(*PUSH, "--name", "mine.pt", "--url", url, env=ADMIN)
    assert pushed.returncode == 0, pushed.stderr

    model = ["--model", "mine.pt", "--conf", "0.3", "--imgsz", "640"]
    result = run_cli(
        "upload", str(tmp_path / "a.png"), *model, "--wait", "--json", "--url", url, env=ADMIN
    )

    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["status"] == "succeeded", row
    assert match(truth, boxes_of(row["detections"]))["ok"], row
    (job,) = api_jobs(url)
    assert (job["model"], job["model_sha256"]) == ("models/mine.pt", DIGEST)
    assert (job["confidence"], job["image_size"]) == (0.3, 640)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "nope.pt"], "There is no model 'nope.pt'; the models are: {model}."),
        (["--conf", "1.5"], "The form fields are not valid: confidence: "),
        (["--imgsz", "16"], "The form fields are not valid: image_size: "),
        (["--callback-url", "https://example.com/"], "This server sends no webhooks"),
    ],
    ids=["unknown-model", "confidence", "image-size", "callback-url"],
)
def test_parameters_the_api_refuses_end_the_run_with_its_words(
    start_api: StartApi, tmp_path: Path, options: list[str], message: str
) -> None:
    url = start_api(workers_enabled=False)
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(encode("PNG"))

    result = run_cli("upload", str(tmp_path), *options, "--batch", "2", "--url", url, env=ADMIN)

    assert (result.returncode, result.stdout) == (2, "")
    expected = f"yoloctl: the API at {url} answered: " + message.format(model=FIXTURE_MODEL)
    assert result.stderr.startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    assert api_jobs(url) == []


def test_a_model_over_the_servers_limit_is_refused_by_its_length(
    start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api(workers_enabled=False, max_model_bytes=64 * 1024)
    big = tmp_path / "big.pt"
    big.write_bytes(b"\0" * (20 * 1024 * 1024))

    result = run_cli("models", "push", str(big), "--url", url, env=ADMIN)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "yoloctl: The request body is larger than 65536 bytes.\n"
    assert sorted(listing(url)) == [str(FIXTURE_MODEL)]


def test_upload_names_a_callback_url(start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(workers_enabled=False, **webhook_settings())
    (tmp_path / "a.png").write_bytes(encode("PNG"))
    hook = "https://hooks.example.com/yolo"
    result = run_cli(
        "upload", str(tmp_path / "a.png"), "--callback-url", hook, "--url", url, env=ADMIN
    )
    assert result.returncode == 0, result.stderr
    (job,) = api_jobs(url)
    assert job["webhook"]["url"] == hook
    assert job["webhook"]["state"] == "pending"

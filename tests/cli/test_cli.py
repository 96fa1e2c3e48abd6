"""`yoloctl` against a running API: files and folders in, detections out, honest exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import run_cli
from tests.conftest import ROOT
from tests.fixtures.synthetic import HELD_OUT_SEED_START, GroundTruth, match, render_scene
from tests.support.images import encode
from tests.support.live_api import StartApi
from tests.support.net import free_port


def scene(path: Path, seed: int) -> list[GroundTruth]:
    path.parent.mkdir(parents=True, exist_ok=True)
    image, truth = render_scene(HELD_OUT_SEED_START + seed)
    image.save(path, quality=92)
    return truth


def boxes(detections: list[dict[str, object]]) -> list[tuple[object, list[object]]]:
    return [(d["class_id"], list(d["box"].values())) for d in detections]  # type: ignore[attr-defined]


def api_jobs(url: str) -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = httpx.get(f"{url}/v1/jobs").json()["jobs"]
    return jobs


@pytest.mark.slow
def test_upload_a_folder_and_wait_prints_the_detections(
    start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api()
    folder = tmp_path / "photos"
    truths = {
        str(folder / "a.png"): scene(folder / "a.png", 7100),
        str(folder / "trip" / "B.JPG"): scene(folder / "trip" / "B.JPG", 7101),
    }
    scene(folder / ".cache" / "hidden.png", 7102)  # hidden: skipped
    (folder / "notes.txt").write_text("not an image name: skipped")

    result = run_cli("upload", str(folder), "--wait", "--json", "--url", url)

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert sorted(row["file"] for row in rows) == sorted(truths)
    for row in rows:
        assert row["status"] == "succeeded", row
        assert row["error"] is None
        assert match(truths[row["file"]], boxes(row["detections"]))["ok"], row
    assert "upload [##############################] 2/2" in result.stderr
    assert "detect [##############################] 2/2" in result.stderr
    assert "Traceback" not in result.stderr

    # The same jobs by id, as a table, with the URL from the environment.
    ids = [row["job_id"] for row in rows]
    table = run_cli("status", *ids, env={"YOLO_API_URL": url})
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["FILE", "JOB", "STATUS", "DETECTIONS", "CLASSES"]
    for job_id, row in zip(ids, rows, strict=True):
        (line,) = [line for line in lines if job_id in line]
        assert re.search(rf"succeeded\s+{len(row['detections'])}\s+\d+ [a-z]+", line), line


@pytest.mark.slow
def test_a_failed_job_exits_non_zero_and_says_why(start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(model=str(ROOT / "no-such-model.pt"))
    scene(tmp_path / "a.png", 7110)

    result = run_cli("upload", str(tmp_path / "a.png"), "--wait", "--url", url)

    assert result.returncode == 1
    header, line = result.stdout.splitlines()
    assert header.split() == ["FILE", "JOB", "STATUS", "DETECTIONS", "CLASSES", "NOTE"]
    assert " failed " in line
    assert "no-such-model.pt" in line
    assert "1/1 1 failed" in result.stderr


def test_a_refused_file_is_named_and_the_others_are_still_uploaded(
    start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api(workers_enabled=False)
    (tmp_path / "a.png").write_bytes(encode("PNG"))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "b.webp").write_bytes(encode("WEBP"))
    files = [str(tmp_path / name) for name in ("a.png", "notes.txt", "b.webp")]

    result = run_cli("upload", *files, "--json", "--url", url)

    # The API refuses a whole request for one bad file; the CLI re-sends the files one by one.
    assert result.returncode == 1
    rows = {row["file"]: row for row in json.loads(result.stdout)}
    assert [rows[f]["status"] for f in files] == ["queued", "refused", "queued"]
    refused = rows[files[1]]
    assert refused["error_code"] == "not_an_image"
    assert refused["error"].startswith("The file is not an image")
    assert refused["job_id"] is None
    assert sorted(job["filename"] for job in api_jobs(url)) == ["a.png", "b.webp"]


def test_batches_shrink_to_the_servers_limit(start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(workers_enabled=False, max_files_per_request=2)
    for k in range(5):
        (tmp_path / f"{k}.png").write_bytes(encode("PNG", color=(k * 40, 0, 0)))

    result = run_cli("upload", str(tmp_path), "--batch", "8", "--json", "--url", url)

    assert result.returncode == 0, result.stderr
    assert [row["status"] for row in json.loads(result.stdout)] == ["queued"] * 5
    assert len(api_jobs(url)) == 5


def test_an_unreachable_api_is_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(encode("PNG"))
    url = f"http://127.0.0.1:{free_port()}"

    result = run_cli("upload", str(tmp_path), "--wait", "--url", url)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"yoloctl: cannot reach the API at {url}: connection failed")
    assert "Is it running? Point to it with --url or YOLO_API_URL." in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upload", "{tmp}/nowhere"], "yoloctl: {tmp}/nowhere: no such file or folder\n"),
        (
            ["upload", "{tmp}"],
            "yoloctl: no images found (looked for .jpg, .jpeg, .png and .webp files)\n",
        ),
    ],
    ids=["missing-path", "empty-folder"],
)
def test_nothing_to_upload_is_a_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    assert result.stderr == message.format(tmp=tmp_path)


def test_the_cli_installs_on_its_own_with_httpx_only(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "cli" / "pyproject.toml").read_text())["project"]
    assert [dep.split(">")[0] for dep in project["dependencies"]] == ["httpx"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT / "cli"),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("yolo_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    assert "yolo_cli/__main__.py" in names
    assert "yoloctl = yolo_cli.cli:main" in entry_points.decode()
    # Running it loads none of the server's packages.
    probe = run_cli("--version")
    assert probe.returncode == 0
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, yolo_cli.cli; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT / "cli")},
    ).stdout.split()
    server_side = {"app", "fastapi", "starlette", "sqlalchemy", "pydantic", "uvicorn", "PIL"}
    assert server_side.isdisjoint(loaded)

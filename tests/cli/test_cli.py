"""`yoloctl` against a running API: files and folders in, detections out, honest exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.synthetic import boxes_of, match
from tests.support.api_app import ADMIN_KEY
from tests.support.images import encode, scene_file
from tests.support.live_api import StartApi, api_jobs, new_key, revoke_key
from tests.support.net import free_port
from tests.support.paths import ROOT
from tests.support.processes import run_cli


@pytest.mark.slow
def test_upload_a_folder_and_wait_prints_the_detections(
    start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api()
    folder = tmp_path / "photos"
    truths = {
        str(folder / "a.png"): scene_file(folder / "a.png", 7100),
        str(folder / "trip" / "B.JPG"): scene_file(folder / "trip" / "B.JPG", 7101),
    }
    scene_file(folder / ".cache" / "hidden.png", 7102)  # hidden: skipped
    (folder / "notes.txt").write_text("not an image name: skipped")

    result = run_cli(
        "upload", str(folder), "--wait", "--json", "--url", url, "--api-key", ADMIN_KEY
    )

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert sorted(row["file"] for row in rows) == sorted(truths)
    for row in rows:
        assert row["status"] == "succeeded", row
        assert row["error"] is None
        assert match(truths[row["file"]], boxes_of(row["detections"]))["ok"], row
    assert "upload [##############################] 2/2" in result.stderr
    assert "detect [##############################] 2/2" in result.stderr
    assert "Traceback" not in result.stderr

    # The same jobs by id, as a table, with the URL and the key from the environment.
    ids = [row["job_id"] for row in rows]
    table = run_cli("status", *ids, env={"YOLO_API_URL": url, "YOLO_API_KEY": ADMIN_KEY})
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["FILE", "JOB", "STATUS", "DETECTIONS", "CLASSES"]
    for job_id, row in zip(ids, rows, strict=True):
        (line,) = [line for line in lines if job_id in line]
        assert re.search(rf"succeeded\s+{len(row['detections'])}\s+\d+ [a-z]+", line), line


@pytest.mark.slow
def test_a_failed_job_exits_non_zero_and_says_why(start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(model=str(ROOT / "no-such-model.pt"))
    scene_file(tmp_path / "a.png", 7110)

    result = run_cli(
        "upload", str(tmp_path / "a.png"), "--wait", "--url", url, env={"YOLO_API_KEY": ADMIN_KEY}
    )

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

    result = run_cli("upload", *files, "--json", "--url", url, env={"YOLO_API_KEY": ADMIN_KEY})

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

    result = run_cli(
        "upload", str(tmp_path), "--batch", "8", "--json", "--url", url, "--api-key", ADMIN_KEY
    )

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
    ("path", "message"),
    [
        ("{tmp}/nowhere", "yoloctl: {tmp}/nowhere: no such file or folder\n"),
        ("{tmp}", "yoloctl: no images found (looked for .jpg, .jpeg, .png and .webp files)\n"),
    ],
    ids=["missing-path", "empty-folder"],
)
def test_nothing_to_upload_is_a_usage_error(tmp_path: Path, path: str, message: str) -> None:
    result = run_cli("upload", path.format(tmp=tmp_path))
    assert result.returncode == 2
    assert result.stderr == message.format(tmp=tmp_path)


def test_the_cli_installs_on_its_own_with_httpx_and_tenacity_only(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "cli" / "pyproject.toml").read_text())["project"]
    assert [dep.split(">")[0] for dep in project["dependencies"]] == ["httpx", "tenacity"]
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", tmp_path, ROOT / "cli"], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("yolo_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    assert "yolo_cli/__main__.py" in names
    assert "yoloctl = yolo_cli.cli:main" in entry_points.decode()
    # Running it loads none of the server's packages.
    assert run_cli("--version").returncode == 0
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, yolo_cli.cli; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT / "cli")},
    ).stdout.split()
    server_side = {"app", "fastapi", "starlette", "sqlalchemy", "pydantic", "uvicorn", "PIL"}
    assert server_side.isdisjoint(loaded)


# API keys: every request carries one, from --api-key or YOLO_API_KEY.

WRONG_KEY = "yk_not-a-key-of-this-api-0123456789"
KEY_HINT = "pass --api-key KEY or set YOLO_API_KEY."


def an_image(tmp_path: Path, name: str = "a.png") -> str:
    path = tmp_path / name
    path.write_bytes(encode("PNG"))
    return str(path)


def job_id_of(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    return str(row["job_id"])


def test_the_key_comes_from_the_option_or_the_environment_and_the_option_wins(
    start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api(workers_enabled=False)
    image = an_image(tmp_path)
    alice = new_key(url, "alice")

    upload = ("upload", image, "--json", "--url", url)
    by_env = run_cli(*upload, env={"YOLO_API_KEY": alice})
    by_option = run_cli(*upload, "--api-key", alice, env={"YOLO_API_KEY": WRONG_KEY})
    wrong_option = run_cli(*upload, "--api-key", WRONG_KEY, env={"YOLO_API_KEY": alice})

    ids = {job_id_of(by_env), job_id_of(by_option)}
    assert {str(job["id"]) for job in api_jobs(url, alice)} == ids  # both jobs are alice's
    assert wrong_option.returncode == 2
    assert "did not accept the API key" in wrong_option.stderr
    assert len(api_jobs(url)) == 2  # the refused run uploaded nothing


@pytest.mark.parametrize("command", ["upload", "status"])
@pytest.mark.parametrize("key", ["missing", "wrong", "revoked"])
def test_without_a_valid_key_one_line_says_how_to_give_one(
    start_api: StartApi, tmp_path: Path, command: str, key: str
) -> None:
    url = start_api(workers_enabled=False)
    target = an_image(tmp_path) if command == "upload" else "00000000-0000-4000-8000-000000000000"
    env = {}
    if key == "wrong":
        env["YOLO_API_KEY"] = WRONG_KEY
    elif key == "revoked":
        env["YOLO_API_KEY"] = new_key(url, "leaver")
        revoke_key(url, "leaver")

    result = run_cli(command, target, "--wait", "--url", url, env=env)

    expected = (
        f"yoloctl: the API at {url} wants an API key; {KEY_HINT}\n"
        if key == "missing"
        else f"yoloctl: the API at {url} did not accept the API key (unknown or revoked); "
        f"to use another, {KEY_HINT}\n"
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, "", expected)
    assert api_jobs(url) == []


def test_the_key_never_appears_in_what_the_cli_prints(start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(workers_enabled=False)
    key = new_key(url, "secret-holder")
    image = an_image(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    notes = str(tmp_path / "notes.txt")
    dead = f"http://127.0.0.1:{free_port()}"
    job_id = job_id_of(run_cli("upload", image, "--json", "--url", url, "--api-key", key))

    runs = [
        run_cli("upload", image, notes, "--json", "--url", url, "--api-key", key),
        run_cli("upload", image, notes, "--url", url, env={"YOLO_API_KEY": key}),
        run_cli("status", job_id, "--json", "--url", url, "--api-key", key),
        run_cli("status", job_id, "--wait", "--timeout", "0.2", "--url", url, "--api-key", key),
        run_cli("--api-key", key, "upload", "--help", env={"YOLO_API_KEY": key}),
        run_cli("upload", image, "--url", dead, "--api-key", key),  # unreachable
        run_cli("upload", image, "--url", url, "--api-key", key + "x"),  # not a key
        run_cli("upload", image, "--url", url, "--api-key", key + " é"),  # not a header
        run_cli("upload", image, "--batch", "0", "--api-key", key),  # bad arguments
    ]

    assert [run.returncode for run in runs] == [1, 1, 0, 1, 0, 2, 2, 2, 2]
    assert "No job with id" not in runs[2].stdout
    assert runs[7].stderr == (
        "yoloctl: the API key has spaces or characters that are not ASCII; "
        "check --api-key or YOLO_API_KEY\n"
    )
    for run in runs:
        printed = run.stdout + run.stderr
        assert key not in printed
        assert key.removeprefix("yk_")[:8] not in printed  # not even a part of it
        assert "Traceback" not in printed


def test_global_options_go_before_or_after_the_command(start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(workers_enabled=False)
    image = an_image(tmp_path)
    # A --url that got lost would fall back to this, and fail.
    env = {"YOLO_API_URL": f"http://127.0.0.1:{free_port()}"}
    options = ["--url", url, "--api-key", ADMIN_KEY, "--json", "-q"]

    before = run_cli(*options, "upload", image, env=env)
    after = run_cli("upload", image, *options, env=env)
    job_id = job_id_of(before)
    mixed = run_cli("--url", url, "--json", "status", job_id, "--api-key", ADMIN_KEY, env=env)

    for result in (before, after, mixed):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # -q, before or after
        (row,) = json.loads(result.stdout)  # --json, before or after
        assert row["status"] == "queued"
    assert json.loads(mixed.stdout)[0]["job_id"] == job_id
    assert len(api_jobs(url)) == 2


def test_another_keys_job_is_not_found(start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(workers_enabled=False)
    alice, bob = new_key(url, "alice"), new_key(url, "bob")
    job_id = job_id_of(
        run_cli("upload", an_image(tmp_path), "--json", "--url", url, "--api-key", alice)
    )

    mine = run_cli("status", job_id, "--json", "--url", url, "--api-key", alice)
    theirs = run_cli("status", job_id, "--json", "--url", url, "--api-key", bob)
    table = run_cli("status", job_id, "--url", url, env={"YOLO_API_KEY": bob})

    assert mine.returncode == 0, mine.stderr
    assert json.loads(mine.stdout)[0]["status"] == "queued"
    assert theirs.returncode == 1
    assert json.loads(theirs.stdout) == [
        {
            "file": job_id,
            "job_id": None,
            "status": "unknown",
            "error": f"No job with id {job_id}.",
            "error_code": "not_found",
            "detections": None,
        }
    ]
    assert table.returncode == 1
    (line,) = table.stdout.splitlines()[1:]
    assert line.split() == [job_id, "-", "unknown", "-", "-", *f"No job with id {job_id}.".split()]

"""Every command in README.md's shell blocks runs in CI, verbatim, or is named here with the
reason it cannot. Substitutions, the ones a reader makes: `127.0.0.1:8000` and
`api.internal:8000` become the server under test (a free port), `JOB_ID`, `JOB_ID...`,
`NEXT_CURSOR` and `yk_...` the values this run made, files the commands name (street.jpg,
photos/, best.pt, ...) are fixture scenes and the fixture model, `cp .env.example .env` is
followed by filling in the secrets as the README says, and YOLO_API_URL points yoloctl's
default at the server. Each session works in a copy of the repository."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures import synthetic
from tests.readme.readme import Command, commands, in_section, strip_comment
from tests.readme.shell import Shell, copy_repository, path_with
from tests.support.compose import STANDIN_FILES, Compose, compose_env, new_project, secrets_env
from tests.support.engine import engine_for_tests
from tests.support.net import free_port
from tests.support.paths import FIXTURE_MODEL, ROOT
from tests.support.wait import wait_until

TWO = "The two commands"
OFFLINE = "No registry, or a TLS-inspecting proxy?"
DEV = "Without Docker: `make dev`"
KEYS = "API keys"
MODELS = "Your own model"
CURL = "The API, with curl"
CLI = "The command line: `yoloctl`"
AIRGAP = "Air-gapped hosts"
ARTIFACTS = ROOT / "test-artifacts"

# Commands that cannot run on a machine like CI's, by the start of their text.
NOT_RUN = {
    "docker compose up": "pulls kestra/kestra and ultralytics/ultralytics from Docker Hub, and "
    "no registry answers here; the offline block is run instead",
    "make test": "the command CI runs (.ci/run); running it from itself would recurse",
    "ALLOW_MODEL_DOWNLOAD=true make dev": "Ultralytics downloads yolo11n.pt from GitHub, which "
    "CI machines cannot reach; the next line runs make dev on the fixture model",
    'curl -H "Authorization: Bearer $CALLBACK_TOKEN"': "a hint about an execution the "
    "orchestrator must know; the e2e suite's flow sends this request through the stand-in",
}
# Sections whose every other command a test below runs.
RUN = {TWO, OFFLINE, DEV, KEYS, MODELS, CURL, CLI, AIRGAP}


def not_run(command: Command) -> bool:
    return any(command.text.startswith(prefix) for prefix in NOT_RUN)


def to_run(section: str) -> list[Command]:
    return [c for c in in_section(section) if not not_run(c)]


def test_every_readme_command_is_run_or_named_with_a_reason() -> None:
    found = commands()
    assert [c.text for c in found if c.section not in RUN] == []
    for prefix in NOT_RUN:
        assert any(c.text.startswith(prefix) for c in found), f"stale exception: {prefix}"


def test_comments_and_continuations_are_read_like_a_shell() -> None:
    assert strip_comment("make dev   # port 8000") == "make dev"
    assert strip_comment("curl -H 'a # b' x") == "curl -H 'a # b' x"
    assert strip_comment("curl url#frag") == "curl url#frag"
    (one,) = commands("# T\n```sh\ncurl -d '{}' \\\n  http://x  # c\n```\n")
    assert (one.section, one.line, one.text) == ("T", 3, "curl -d '{}' http://x")


# --- the dev server: make dev, curl, yoloctl, models ----------------------------------------


def _scene_files(where: Path) -> None:
    names = ["street.jpg", "dog.png", "a.png", "extra.jpg", "photos/x.png", "photos/trip/b.jpg"]
    for seed, name in enumerate(names, start=synthetic.HELD_OUT_SEED_START + 500):
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        synthetic.render_scene(seed)[0].save(where / name)
    shutil.copyfile(FIXTURE_MODEL, where / "best.pt")


def _wait_for(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    def answers() -> bool:
        assert server.poll() is None, f"the server exited:\n{log.read_text()[-4000:]}"
        return httpx.get(url, timeout=2).status_code == 200

    try:
        wait_until(answers, timeout, what=url, ignore=(httpx.TransportError,))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log.read_text()[-4000:]}") from None


def _finished(api: httpx.Client, ids: list[str], timeout: float = 300) -> None:
    def states() -> set[str]:
        now = {api.get(f"/v1/jobs/{i}").json()["status"] for i in ids}
        assert "failed" not in now, now
        return now

    wait_until(states, timeout, what="jobs to succeed", until=lambda now: now <= {"succeeded"})


def _page_worth(api: httpx.Client, where: Path) -> list[str]:
    """21 jobs, so that `limit=20` has a next page (setup, not a README command)."""
    ids: list[str] = []
    for start in (0, 16):
        files = [
            ("files", (f"s{i}.png", (where / "a.png").read_bytes(), "image/png"))
            for i in range(start, min(start + 16, 21))
        ]
        answer = api.post("/v1/uploads", files=files)
        assert answer.status_code == 202, answer.text
        ids += [job["id"] for job in answer.json()["jobs"]]
    return ids


@pytest.fixture
def dev_shell(tmp_path: Path) -> Iterator[tuple[Shell, str]]:
    repo = copy_repository(tmp_path / "repo")
    _scene_files(repo)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ("YOLO_", "DATABASE_", "SHARED_DATA_DIR", "MODEL", "ORCHESTRATOR", "REQUIRE_API")
    env = {k: v for k, v in os.environ.items() if not k.startswith(settings)}
    env |= {"PATH": path_with(tmp_path / "venv" / "bin"), "PORT": str(port), "YOLO_API_URL": url}
    env.pop("VIRTUAL_ENV", None)
    shell = Shell(
        repo, env, {"127.0.0.1:8000": f"127.0.0.1:{port}", "api.internal:8000": f"127.0.0.1:{port}"}
    )
    (start,) = to_run(DEV)
    server = shell.start(start)
    try:
        _wait_for(f"{url}/health", server, repo / "server.log", timeout=120)
        yield shell, url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


@pytest.mark.slow
def test_the_dev_server_commands_work_as_written(dev_shell: tuple[Shell, str]) -> None:
    shell, url = dev_shell
    with httpx.Client(base_url=url, timeout=30) as api:
        ids = _page_worth(api, shell.cwd)
        _finished(api, ids)
        cursor = api.get("/v1/jobs", params={"limit": 20}).json()["next_cursor"]
        assert cursor
        shell.subs |= {"JOB_ID...": " ".join(ids[:3]), "JOB_ID": ids[0], "NEXT_CURSOR": cursor}
        shell.subs["yk_..."] = "yk_" + secrets.token_urlsafe(32)  # keys are off in make dev
        for section in (CURL, CLI, MODELS):
            for command in to_run(section):
                shell.run(command)
        assert (shell.cwd / "annotated.jpg").read_bytes()[:2] == b"\xff\xd8"
        assert "succeeded" in (shell.cwd / "results.json").read_text()
        newest = api.get("/v1/jobs", params={"limit": 2}).json()["jobs"]  # photos/: 2 files
        assert {job["model"] for job in newest} == {"models/mine.pt"}


# --- the offline stack, the stand-in, API keys ------------------------------------------------


def _fill_env(env_file: Path, values: dict[str, str]) -> None:
    """What the README asks after `cp .env.example .env`: every empty value set."""
    lines = []
    for line in env_file.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and not value:
            line = f"{name}={values[name]}"
        lines.append(line)
    env_file.write_text("\n".join(lines) + "\n")


@pytest.fixture
def stack_shell(tmp_path: Path) -> Iterator[Shell]:
    docker = engine_for_tests(compose=True)
    repo = copy_repository(tmp_path / "repo")
    _scene_files(repo)
    project = new_project("readme")
    port = free_port()
    env = compose_env(docker.env, {"COMPOSE_PROJECT_NAME": project})
    env = {k: v for k, v in env.items() if not k.startswith("YOLO_")}
    env |= {"PATH": path_with(repo / ".venv" / "bin"), "YOLO_API_URL": f"http://127.0.0.1:{port}"}
    shell = Shell(repo, env, {"127.0.0.1:8000": f"127.0.0.1:{port}", "@port": str(port)})
    try:
        yield shell
    finally:
        # The stack as the README made it: the copy's .env and the stand-in's files.
        volume = {"SHARED_VOLUME_NAME": f"{project}-shared"}
        stack = Compose(docker, project, volume, STANDIN_FILES, repo, str(repo / ".env"))
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{project}.log").write_text(stack.logs())
        stack.down()
        for archive in repo.glob("stack.tar*"):  # over a GB: not left for pytest's tmp dirs
            archive.unlink()


def _ps(shell: Shell) -> dict[str, str]:
    """Service -> `docker ps` status of this stack's containers."""
    out = subprocess.run(
        ["docker", "compose", "ps", "-a", "--format", "{{.Service}}\t{{.Status}}"],
        cwd=shell.cwd, env=shell.env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


@pytest.mark.docker
def test_the_offline_block_gives_a_healthy_stack_and_the_standin_detections(
    stack_shell: Shell,
) -> None:
    shell = stack_shell
    port = shell.subs.pop("@port")
    project = shell.env["COMPOSE_PROJECT_NAME"]
    cp, offline_images, up_offline = to_run(OFFLINE)[:3]
    shell.run(cp)
    values = secrets_env()
    _fill_env(shell.cwd / ".env", values)
    with (shell.cwd / ".env").open("a") as env_file:
        # This run's own port, volume and image tag, so a developer's stack is never touched.
        env_file.write(f"API_PORT={port}\nKESTRA_PORT={free_port()}\n")
        env_file.write(f"SHARED_VOLUME_NAME={project}-shared\nAPI_IMAGE=yolo-api:readme\n")
    shell.env |= {"YOLO_API_KEY": values["ADMIN_API_KEY"]}
    shell.run(offline_images)
    shell.run(up_offline)
    status = _ps(shell)
    assert "(healthy)" in status["api"], status
    assert "(healthy)" in status["postgres"], status
    ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
    assert ready.status_code == 503, ready.text
    assert "orchestrator" in ready.text

    up_standin, install, upload, down = to_run(OFFLINE)[3:]
    for command in (up_standin, install, upload):
        shell.run(command, timeout=2400)
    assert "(healthy)" in _ps(shell)["kestra"]
    for command in to_run(KEYS):
        out = shell.run(command)
        if "app.keys create" in command.text:
            shell.subs["yk_..."] = next(w for w in out.split() if w.startswith("yk_"))
    shell.run(down)
    assert not [s for s in _ps(shell).values() if s.startswith("Up")]

    export, load = to_run(AIRGAP)  # the whole round trip, images removed: tests/docker
    shell.run(export)
    assert "kestra/kestra" in shell.run(load)  # named as left out: not on this engine
    assert "(healthy)" in _ps(shell)["api"]

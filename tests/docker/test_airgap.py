"""scripts/airgap.py: every image of the stack exported into one archive with a manifest,
the images removed from the engine, the archive loaded back (digests and ids checked) and the
stack brought up from it with nothing built or pulled.

The images exported are made by this test: each real image (the API image this run built,
the offline Postgres image, the inference image when the engine has it) with one more layer
holding a random marker, under a tag of this test. `docker rmi` of those tags deletes the
images themselves (ids and marker layers), so `docker load` has to bring them back, while the
real tags the other tests use stay. The layers below the marker stay on the engine, shared
with the real images: docker load reads them from the archive but has nothing to restore.

Kestra's image is never on this engine (no registry provides it): the manifest must name it
as missing, and the stack must come up without it. Own compose project, volume and port."""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.builds import BuiltImage
from tests.support.compose import Compose, compose_env, new_project, secrets_env
from tests.support.engine import Docker, tar_of
from tests.support.net import free_port
from tests.support.paths import ROOT

AIRGAP = ROOT / "scripts" / "airgap.py"
KESTRA_DEFAULT = "kestra/kestra:v1.3.39"
INFERENCE_LOCAL = "yolo-inference:local"


def airgap(
    *args: str, env: dict[str, str], base: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, with only the compose variables given (no .env)."""
    argv = [sys.executable, str(AIRGAP), *args, "--env-file", "/dev/null"]
    return subprocess.run(
        argv, cwd=ROOT, env=compose_env(base, env), capture_output=True, text=True, timeout=timeout
    )


# --- without an engine: a damaged archive is refused before docker is called -----------------


def load_without_docker(archive: Path) -> subprocess.CompletedProcess[str]:
    """`load --no-up` with a docker client that cannot run: the checks must come first."""
    env = {"DOCKER": str(archive.parent / "no-docker")}
    return airgap("load", str(archive), "--no-up", env=env, base={"PATH": "/usr/bin:/bin"})


def fake_archive(path: Path, payload: bytes, claimed: bytes) -> None:
    """An archive whose manifest claims `claimed` while images.tar holds `payload`."""
    claim = {"sha256": hashlib.sha256(claimed).hexdigest(), "size": len(claimed)}
    manifest = {
        "format": "yolo-stack-airgap/1",
        "images": [],
        "missing": [],
        "payload": {"name": "images.tar", **claim},
    }
    files = {"images.tar": payload, "manifest.json": json.dumps(manifest).encode()}
    path.write_bytes(tar_of(files))


def test_a_corrupt_payload_is_refused_before_anything_is_loaded(tmp_path: Path) -> None:
    archive = tmp_path / "stack.tar"
    fake_archive(archive, payload=b"not the images" * 100, claimed=b"the images" * 100)
    proc = load_without_docker(archive)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "images.tar is corrupt" in proc.stderr
    assert "nothing loaded" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_archive_that_does_not_match_its_sha256_file_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "stack.tar"
    fake_archive(archive, payload=b"images" * 100, claimed=b"images" * 100)
    (tmp_path / "stack.tar.sha256").write_text(f"{'0' * 64}  stack.tar\n")
    proc = load_without_docker(archive)
    assert proc.returncode == 1
    assert f"stack.tar.sha256 says {'0' * 64}" in proc.stderr


# --- the round trip on the engine --------------------------------------------------------------


@dataclass
class Exported:
    archive: Path
    manifest: dict[str, Any]
    output: str
    env: dict[str, str]  # the compose variables of the export and of the stack
    tags: dict[str, str]  # role (api, postgres, inference) -> test tag exported
    absent: dict[str, str]  # role (kestra, maybe inference) -> tag the engine lacks
    seconds: float

    def entry(self, tag: str) -> dict[str, Any]:
        entries: list[dict[str, Any]] = self.manifest["images"]
        (entry,) = [e for e in entries if e["tag"] == tag]
        return entry


def marked(docker: Docker, base: str, tag: str, context: Path) -> str:
    """`base` plus one layer with a random marker, tagged `tag`; returns its image id."""
    context.mkdir()
    (context / "marker").write_text(secrets.token_hex(16))
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY marker /airgap-marker\n")
    docker.build(context, context / "Dockerfile", tag, build_args={"BASE": base})
    return str(docker.inspect(tag)["Id"])


@pytest.fixture(scope="module")
def exported(
    compose_docker: Docker,
    api_image: BuiltImage,
    postgres_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Exported]:
    docker = compose_docker
    prefix = new_project("yoloairgap")
    work = tmp_path_factory.mktemp("airgap")
    bases = {"api": api_image.tag, "postgres": postgres_image}
    absent = {"kestra": KESTRA_DEFAULT}
    if docker.image_exists(KESTRA_DEFAULT):
        absent["kestra"] = f"{prefix}/kestra:absent"
    if docker.image_exists(INFERENCE_LOCAL):
        bases["inference"] = INFERENCE_LOCAL
    else:
        absent["inference"] = f"{prefix}/inference:absent"
    tags = {role: f"{prefix}/{role}:test" for role in bases}
    try:
        for role, base in bases.items():
            marked(docker, base, tags[role], work / role)
        images = {**tags, **absent}
        env = {
            "API_IMAGE": images["api"],
            "POSTGRES_IMAGE": images["postgres"],
            "INFERENCE_IMAGE": images["inference"],
            "PYTHON_BASE_IMAGE": api_image.base,
            "DOCKER": shlex.join(docker.cmd),
        }
        if absent["kestra"] != KESTRA_DEFAULT:
            env["KESTRA_IMAGE"] = absent["kestra"]
        archive = work / "stack.tar"
        started = time.monotonic()
        # No secrets given: an export needs only the image names.
        proc = airgap("export", str(archive), env=env, base=docker.env)
        seconds = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with tarfile.open(archive) as tar:
            stream = tar.extractfile("manifest.json")
            assert stream is not None
            manifest = json.load(stream)
        print(f"\n[airgap] export: {archive.stat().st_size / 1e6:.0f} MB in {seconds:.1f} s")
        yield Exported(archive, manifest, proc.stdout, env, tags, absent, seconds)
    finally:
        docker.remove("image", *tags.values())
        for path in work.glob("stack.tar*"):
            path.unlink()


@pytest.mark.docker
def test_export_lists_every_image_and_names_the_missing_ones(
    docker: Docker, exported: Exported
) -> None:
    manifest = exported.manifest
    assert manifest["format"] == "yolo-stack-airgap/1"
    assert manifest["compose"]["files"] == ["docker-compose.yml", "docker-compose.offline.yml"]
    assert {e["tag"] for e in manifest["images"]} == set(exported.tags.values())
    services = {
        "api": ["api", "bootstrap"],
        "postgres": ["postgres"],
        "inference": ["inference-image"],
        "kestra": ["kestra"],
    }
    for role, tag in exported.tags.items():
        entry = exported.entry(tag)
        info = docker.inspect(tag)
        assert entry["id"] == info["Id"], role
        assert entry["size"] == info["Size"] > 0, role
        assert entry["repo_digests"] == (info.get("RepoDigests") or []), role
        assert entry["platform"] == f"{info['Os']}/{info['Architecture']}", role
        assert entry["services"] == services[role]
        assert entry["tag"] in exported.output
    missing = {e["tag"]: e for e in manifest["missing"]}
    assert set(missing) == set(exported.absent.values())
    kestra = missing[exported.absent["kestra"]]
    assert kestra["services"] == ["kestra"]
    assert kestra["variable"] == "KESTRA_IMAGE"
    assert (
        f"not on this engine: {kestra['tag']} (service kestra; pull it on a connected machine, "
        "or set KESTRA_IMAGE=" in exported.output
    )
    # The digests: of images.tar in the manifest, of the whole archive beside it.
    with tarfile.open(exported.archive) as tar:
        assert tar.getnames() == ["images.tar", "manifest.json"]
        stream = tar.extractfile("images.tar")
        assert stream is not None
        payload = hashlib.sha256()
        while chunk := stream.read(1 << 20):
            payload.update(chunk)
    assert manifest["payload"]["sha256"] == payload.hexdigest()
    with exported.archive.open("rb") as archive:
        whole = hashlib.file_digest(archive, "sha256").hexdigest()
    sidecar = exported.archive.with_name("stack.tar.sha256").read_text()
    assert sidecar == f"{whole}  stack.tar\n"
    assert f"sha256 {whole}" in exported.output


@pytest.mark.docker
def test_exporting_with_require_all_fails_and_writes_nothing(
    docker: Docker, exported: Exported, tmp_path: Path
) -> None:
    archive = tmp_path / "strict.tar"
    proc = airgap("export", str(archive), "--require-all", env=exported.env, base=docker.env)
    assert proc.returncode == 1
    assert f"not on this engine: {exported.absent['kestra']}" in proc.stdout
    assert "--require-all" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.docker
def test_load_restores_the_images_and_the_stack_comes_up_from_them(
    docker: Docker, exported: Exported
) -> None:
    ids = {tag: exported.entry(tag)["id"] for tag in exported.tags.values()}
    for tag, image_id in ids.items():
        docker("rmi", tag)
        assert not docker.image_exists(image_id), f"{tag}: image still on the engine"
    project = new_project("yoloairgap")
    port = free_port()
    env = {
        **exported.env,
        **secrets_env(),
        "SHARED_VOLUME_NAME": f"{project}-shared",
        "API_PORT": str(port),
        "KESTRA_PORT": str(free_port()),
    }
    stack = Compose(docker, project, env)
    try:
        started = time.monotonic()
        proc = airgap("load", str(exported.archive), "-p", project, env=env, base=docker.env)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            logs = stack.logs()
            pytest.fail(f"load failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}\n{logs[-6000:]}")
        print(f"\n[airgap] load + up: {seconds:.1f} s\n{proc.stdout}")
        for tag, image_id in ids.items():
            assert docker.inspect(tag)["Id"] == image_id, tag
        assert "stack.tar: sha256 matches stack.tar.sha256" in proc.stdout
        assert "images.tar: sha256 matches the manifest" in proc.stdout
        assert "image ids match the manifest" in proc.stdout
        for tag in ids:
            assert f"Loaded image: {tag}" in proc.stdout
        assert "up: api, bootstrap, postgres" in proc.stdout
        assert f"left out: kestra (its image {exported.absent['kestra']} is neither" in proc.stdout
        if "inference" in exported.tags:
            assert "left out: inference-image (one-shot step for kestra)" in proc.stdout

        rows = stack.ps()
        assert set(rows) == {"postgres", "bootstrap", "api"}
        assert rows["postgres"]["Health"] == "healthy", rows["postgres"]
        assert rows["api"]["Health"] == "healthy", rows["api"]
        assert (rows["bootstrap"]["State"], rows["bootstrap"]["ExitCode"]) == ("exited", 0)
        # Nothing built or pulled: every container runs the very image of the archive (a
        # build would have given the tag a new id).
        role_of = {"postgres": "postgres", "bootstrap": "api", "api": "api"}
        for service, row in rows.items():
            image_id = docker.inspect(row["Name"], kind="container")["Image"]
            assert image_id == ids[exported.tags[role_of[service]]], service
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert response.status_code == 200, response.text
    finally:
        stack.down()

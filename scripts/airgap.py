#!/usr/bin/env python3
"""Air-gapped installs: every image the stack needs in one archive, and the stack brought up
from it on a host with no registry.

  airgap.py export ARCHIVE
      The images the compose model names, with every profile (so Kestra and the inference
      image too), as the environment and .env resolve them (`docker compose config`), saved
      with `docker save` into ARCHIVE: a tar of two members,
        images.tar     the `docker save` stream of every image this engine has;
        manifest.json  per image its services, tag, image id, repo digests, size and
                       platform; the images this engine does not have (named, with what to
                       do about them); the sha256 and size of images.tar.
      ARCHIVE.sha256 is written beside it (`sha256sum -c` format). A missing image is named
      in the manifest and the output, and the export still succeeds (--require-all: fails,
      writing nothing).

  airgap.py load ARCHIVE
      Checks ARCHIVE against ARCHIVE.sha256 when that is beside it and images.tar against the
      manifest, `docker load`s it, checks each tag now has the manifest's image id, then runs
      `docker compose up -d --wait --no-build --pull never` for the services whose images are
      on the engine (and what they depend on), naming the ones left out. Nothing is built or
      pulled. --no-up stops after the id check.

Compose files: docker-compose.yml + docker-compose.offline.yml of this repository (-f to
change), with the environment and .env (--env-file) as `docker compose` reads them. DOCKER
names the docker client (default: docker). Standard library only.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILES = ("docker-compose.yml", "docker-compose.offline.yml")
FORMAT = "yolo-stack-airgap/1"
MANIFEST = "manifest.json"
PAYLOAD = "images.tar"
CHUNK = 1 << 20
# Stands in for the secrets compose requires when only image names are wanted (export).
PLACEHOLDER = "airgap-placeholder"


class AirgapError(Exception):
    """A failure the user can act on: printed without a traceback, exit status 1."""


def say(message: str) -> None:
    print(message, flush=True)


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


# --- docker and compose ---------------------------------------------------------------------


def docker_cmd() -> list[str]:
    return shlex.split(os.environ.get("DOCKER") or "docker")


def docker(*args: str, env: dict[str, str] | None = None) -> str:
    """The output of `docker ARGS`; AirgapError with the end of its stderr when it fails."""
    proc = subprocess.run(
        [*docker_cmd(), *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise AirgapError(f"docker {shlex.join(args)} failed:\n{proc.stderr.strip()[-3000:]}")
    return proc.stdout


@dataclass(frozen=True)
class Compose:
    files: tuple[Path, ...]
    options: tuple[str, ...]  # --env-file, --project-name when given

    def args(self, *rest: str) -> list[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        # Every profile: Kestra and the inference image are in "kestra" offline.
        return ["compose", *self.options, *files, "--profile", "*", *rest]

    def json(self, *rest: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(docker(*self.args(*rest), env=env))
        return data

    def shown_files(self) -> list[str]:
        return [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name for p in self.files]


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    variable: str | None  # the variable naming its image, e.g. API_IMAGE
    builds: bool
    one_shot: bool
    needs: tuple[str, ...]  # required dependencies


def placeholder_env(compose: Compose) -> dict[str, str]:
    """The environment with a placeholder for each required variable left unset: secrets
    never name an image, and an export should not need a filled-in .env."""
    variables = compose.json("config", "--variables", "--format", "json")
    unset = [n for n, spec in variables.items() if spec.get("Required") and not os.environ.get(n)]
    return {**os.environ, **dict.fromkeys(unset, PLACEHOLDER)}


def image_variable(raw: str) -> str | None:
    match = re.search(r"\$\{?([A-Za-z_]\w*)", raw)
    return match.group(1) if match else None


def services(compose: Compose, *, placeholders: bool) -> list[Service]:
    """The services of the compose model with every profile, images resolved."""
    env = placeholder_env(compose) if placeholders else None
    model = compose.json("config", "--format", "json", env=env)
    raw = compose.json("config", "--no-interpolate", "--format", "json")["services"]
    out = []
    for name, spec in model["services"].items():
        needs = [
            d for d, dep in (spec.get("depends_on") or {}).items() if dep.get("required", True)
        ]
        out.append(
            Service(
                name=name,
                image=spec.get("image") or f"{model['name']}-{name}",
                variable=image_variable(str(raw.get(name, {}).get("image", ""))),
                builds="build" in spec,
                one_shot=spec.get("restart", "no") == "no",
                needs=tuple(sorted(needs)),
            )
        )
    return out


def inspect(tag: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(docker("image", "inspect", tag))[0]
    except AirgapError:
        return None  # not on this engine
    return data


# --- archive format -------------------------------------------------------------------------


def copy(src: IO[bytes], dst: IO[bytes] | None = None) -> tuple[str, int]:
    """Read src to its end in chunks, writing them to dst when given: (sha256, size)."""
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if dst is not None:
            dst.write(chunk)
    return digest.hexdigest(), size


def streamed(
    *args: str, feed: IO[bytes] | None = None, sink: IO[bytes] | None = None
) -> tuple[str, int, str]:
    """`docker ARGS` with feed copied to its stdin, or its stdout copied into sink, in chunks
    (the images: gigabytes): (sha256 and size of what went through, the rest of its output).
    Raises with that output when it fails."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [*docker_cmd(), *args],
            stdin=subprocess.PIPE if feed else None,
            stdout=subprocess.PIPE if sink else log,
            stderr=log,
        )
        pipe = proc.stdin or proc.stdout
        assert pipe is not None
        try:
            sha256, size = copy(feed, pipe) if feed else copy(pipe, sink)
        except BrokenPipeError:
            sha256, size = "", 0  # docker stopped early: its exit status and output say why
        finally:
            pipe.close()
        status = proc.wait()
        log.seek(0)
        text = log.read().decode(errors="replace").strip()
    if status != 0:
        raise AirgapError(f"docker {args[0]} failed:\n{text}")
    return sha256, size, text


def write_archive(path: Path, tags: Sequence[str], manifest: dict[str, Any]) -> None:
    """images.tar first, streamed (its header is rewritten once the size is known: no
    temporary copy of gigabytes), then manifest.json with images.tar's digest."""
    partial = path.with_name(path.name + ".partial")
    payload = tarfile.TarInfo(PAYLOAD)
    payload.mtime = int(time.time())
    try:
        with partial.open("wb") as out:
            # GNU format: sizes past 8 GiB still fit in the 512-byte header.
            out.write(payload.tobuf(format=tarfile.GNU_FORMAT))
            sha256, payload.size, _ = streamed("save", *tags, sink=out)
            out.write(b"\0" * (-payload.size % tarfile.BLOCKSIZE))
            end = out.tell()
            out.seek(0)
            out.write(payload.tobuf(format=tarfile.GNU_FORMAT))
            out.seek(end)
            manifest["payload"] = {"name": PAYLOAD, "sha256": sha256, "size": payload.size}
            data = json.dumps(manifest, indent=2).encode() + b"\n"
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(data), payload.mtime
            with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
                tar.addfile(info, io.BytesIO(data))  # then the end-of-archive blocks
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def sha256_of(path: Path) -> str:
    with path.open("rb") as stream:
        return copy(stream)[0]


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


# --- export ---------------------------------------------------------------------------------


def missing_hint(service: Service, compose: Compose) -> str:
    if service.builds:
        files = " ".join(f"-f {f}" for f in compose.shown_files())
        first = f"build it first: docker compose {files} build {service.name}"
    else:
        first = "pull it on a connected machine"
    if service.variable:
        return f"{first}, or set {service.variable}=an image this engine has"
    return first


def services_of(entry: dict[str, Any]) -> str:
    names: list[str] = entry["services"]
    return f"service{'s' if len(names) > 1 else ''} {', '.join(names)}"


def image_entries(
    found: list[Service], compose: Compose
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(exported, missing) manifest entries, one per tag."""
    exported, missing = [], []
    for tag in sorted({s.image for s in found}):
        users = [s for s in found if s.image == tag]
        entry: dict[str, Any] = {
            "tag": tag,
            "services": [s.name for s in users],
            "variable": users[0].variable,
        }
        info = inspect(tag)
        if info is None:
            missing.append({**entry, "hint": missing_hint(users[0], compose)})
            continue
        platform = "/".join(x for x in (info.get("Os"), info.get("Architecture")) if x)
        exported.append(
            {
                **entry,
                "id": info["Id"],
                "repo_digests": info.get("RepoDigests") or [],
                "size": info["Size"],
                "platform": platform,
            }
        )
    return exported, missing


def export(args: argparse.Namespace, compose: Compose) -> int:
    started = time.monotonic()
    archive = Path(args.archive)
    exported, missing = image_entries(services(compose, placeholders=True), compose)
    for entry in exported:
        names = ", ".join(entry["services"])
        say(f"  {entry['tag']:<40} {names:<18} {entry['id'][7:19]}  {mb(entry['size'])}")
    for entry in missing:
        say(f"not on this engine: {entry['tag']} ({services_of(entry)}; {entry['hint']})")
    if missing and args.require_all:
        raise AirgapError(f"--require-all: {len(missing)} image(s) missing; nothing written")
    if not exported:
        raise AirgapError("none of the stack's images is on this engine; nothing written")
    manifest = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "compose": {"files": compose.shown_files(), "profiles": "*"},
        "images": exported,
        "missing": missing,
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    write_archive(archive, [e["tag"] for e in exported], manifest)
    sha256, size = sha256_of(archive), archive.stat().st_size
    sidecar(archive).write_text(f"{sha256}  {archive.name}\n")
    took = time.monotonic() - started
    say(f"wrote {archive}: {len(exported)} image(s), {mb(size)}, sha256 {sha256}, {took:.1f} s")
    say(f"  (and {sidecar(archive).name}; missing from it: {len(missing)})")
    return 0


# --- load -----------------------------------------------------------------------------------


def check_sidecar(archive: Path) -> None:
    path = sidecar(archive)
    if not path.exists():
        say(f"no {path.name} beside the archive: only the manifest's digest is checked")
        return
    expected, actual = path.read_text().split()[0], sha256_of(archive)
    if actual != expected:
        raise AirgapError(f"{archive}: sha256 {actual}, {path.name} says {expected}")
    say(f"{archive.name}: sha256 matches {path.name}")


def member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        stream = tar.extractfile(name)
    except KeyError as exc:
        raise AirgapError(f"not an archive of airgap.py export: {exc}") from exc
    assert stream is not None
    return stream


def read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    """The manifest, once images.tar is found to match the digest it gives."""
    manifest: dict[str, Any] = json.load(member(tar, MANIFEST))
    payload = member(tar, PAYLOAD)
    if manifest.get("format") != FORMAT:
        raise AirgapError(f"unknown archive format {manifest.get('format')!r} (want {FORMAT})")
    sha256, size = copy(payload)
    want = manifest["payload"]
    if (sha256, size) != (want["sha256"], want["size"]):
        raise AirgapError(
            f"{PAYLOAD} is corrupt: sha256 {sha256} ({size} bytes), the manifest says "
            f"{want['sha256']} ({want['size']} bytes); nothing loaded"
        )
    say(f"{PAYLOAD}: sha256 matches the manifest ({mb(size)})")
    return manifest


def check_tags(found: list[Service], manifest: dict[str, Any]) -> None:
    """Compose must name, for each service, the tag the archive carries for it."""
    carried = {s: e["tag"] for e in manifest["images"] for s in e["services"]}
    wrong = [
        f"service {s.name}: compose names {s.image} here, the archive has "
        f"{carried[s.name]} (set {s.variable or 'its image'}={carried[s.name]})"
        for s in found
        if carried.get(s.name, s.image) != s.image
    ]
    if wrong:
        raise AirgapError("the compose model does not match the archive:\n  " + "\n  ".join(wrong))


def check_ids(manifest: dict[str, Any]) -> None:
    wrong = []
    for entry in manifest["images"]:
        info = inspect(entry["tag"])
        found = info["Id"] if info else "nothing"
        if found != entry["id"]:
            wrong.append(f"{entry['tag']}: {found}, the manifest says {entry['id']}")
    if wrong:
        raise AirgapError("image ids do not match the manifest:\n  " + "\n  ".join(wrong))
    say(f"image ids match the manifest: {', '.join(e['tag'] for e in manifest['images'])}")


def plan(found: list[Service]) -> tuple[list[str], dict[str, str]]:
    """(services to start, {service left out: why}). A service can start when its image is on
    the engine and everything it needs can; a one-shot step is started only for a service
    that needs it (or when none needs it at all)."""
    by_name = {s.name: s for s in found}
    users = {s.name: [u.name for u in found if s.name in u.needs] for s in found}
    left_out: dict[str, str] = {}

    @functools.cache
    def can_start(name: str) -> bool:
        service = by_name[name]
        if inspect(service.image) is None:
            left_out[name] = f"its image {service.image} is neither in the archive nor here"
            return False
        blocked = next((dep for dep in service.needs if not can_start(dep)), None)
        if blocked:
            left_out[name] = f"needs {blocked}, which is left out"
        return blocked is None

    def with_needs(name: str) -> set[str]:
        return {name}.union(*(with_needs(dep) for dep in by_name[name].needs))

    chosen = [s.name for s in found if can_start(s.name) and not (s.one_shot and users[s.name])]
    targets = set().union(*map(with_needs, chosen))
    for name in sorted(n for n in by_name if can_start(n) and n not in targets):
        left_out[name] = f"one-shot step for {', '.join(users[name])}"
    return [s.name for s in found if s.name in targets], left_out


def load(args: argparse.Namespace, compose: Compose) -> int:
    started = time.monotonic()
    archive = Path(args.archive)
    check_sidecar(archive)
    with tarfile.open(archive, "r:") as tar:
        manifest = read_manifest(tar)
        for entry in manifest["missing"]:
            say(f"not in the archive: {entry['tag']} ({services_of(entry)})")
        found = [] if args.no_up else services(compose, placeholders=False)
        check_tags(found, manifest)
        say(streamed("load", feed=member(tar, PAYLOAD))[2])
    check_ids(manifest)
    say(f"loaded in {time.monotonic() - started:.1f} s")
    if args.no_up:
        return 0
    targets, left_out = plan(found)
    if not targets:
        raise AirgapError("no service can start from what is on the engine")
    up = ["up", "-d", "--wait", "--wait-timeout", str(args.wait_timeout), "--no-build"]
    proc = subprocess.run(
        [*docker_cmd(), *compose.args(*up, "--pull", "never", *targets)], cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        raise AirgapError(
            f"docker compose up exited {proc.returncode}: its output is above, and "
            f"`docker {shlex.join(compose.args('logs'))}` says why"
        )
    say(f"up: {', '.join(targets)} ({time.monotonic() - started:.1f} s since the start)")
    for name, why in left_out.items():
        say(f"left out: {name} ({why})")
    return 0


# --- command line ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("archive", help="the archive (a tar; ARCHIVE.sha256 goes beside it)")
    common.add_argument(
        "-f",
        "--file",
        action="append",
        type=Path,
        help="compose file (repeatable; default: " + " + ".join(DEFAULT_FILES) + ")",
    )
    common.add_argument("--env-file", help="as for docker compose (default: .env of the repo)")
    sub = top.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", parents=[common], help="save the stack's images")
    exp.add_argument("--require-all", action="store_true", help="fail if any image is missing")
    imp = sub.add_parser("load", parents=[common], help="load an archive and start the stack")
    imp.add_argument("-p", "--project-name", help="compose project (default: the model's name)")
    imp.add_argument("--no-up", action="store_true", help="load and check only")
    imp.add_argument("--wait-timeout", type=int, default=300, help="seconds (default 300)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    files = tuple(p.resolve() for p in args.file or [ROOT / f for f in DEFAULT_FILES])
    given = {"--env-file": args.env_file, "--project-name": getattr(args, "project_name", None)}
    compose = Compose(files, tuple(a for opt, v in given.items() if v for a in (opt, v)))
    try:
        return export(args, compose) if args.command == "export" else load(args, compose)
    except AirgapError as exc:
        print(f"airgap: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

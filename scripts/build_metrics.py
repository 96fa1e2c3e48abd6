#!/usr/bin/env python3
"""`make build-metrics`: build api/Dockerfile and a naive single-stage Dockerfile of the same
app (docker/naive/Dockerfile) side by side, and print one table.

For each of the two it measures, in this order:
  clean build            after `docker builder prune -af` (no layer cache, no cache mounts)
  no-op rebuild          the same build again, nothing changed
  code-change rebuild    one line appended to app/main.py
  dependency-change      one small package added to requirements.lock
  image size, layers above the base image (bytes and count), build context size

and checks our budgets: layers above the base <= 60 MB, no-op rebuild <= 3 % of our clean
build, code-change rebuild <= 10 % of it, build context <= 200 KB. Exit status 1 when one is
exceeded. The builds run on temporary copies of the build inputs, so the working tree is
never modified.

WARNING: the clean builds prune the engine's whole build cache (`--keep-cache` skips that,
and then "clean" only means "no layer cache" for ours: its cache mounts stay warm).

Environment: PYTHON_BASE_IMAGE (default: offline/python:3.13-slim when that image exists,
else python:3.13-slim), EXTRA_CA_BUNDLE / BUILD_CA_BUNDLE (CA bundle passed as the BuildKit
secret "ca"; default /etc/ssl/certs/ca-certificates.crt when present), DOCKER (client).
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_PYTHON = "offline/python:3.13-slim"
OFFICIAL_PYTHON = "python:3.13-slim"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

BUDGET_LAYERS_BYTES = 60_000_000
BUDGET_NOOP_RATIO = 0.03
BUDGET_CODE_RATIO = 0.10
# The context is the app's own source (~135 KB with API keys); the budget is there to catch
# leaks (a venv, .git, data), which weigh megabytes.
BUDGET_CONTEXT_BYTES = 200_000

# Small pure-Python packages to add for the dependency-change build (the first one not
# already in the lock is used).
EXTRA_PACKAGES = ("six==1.17.0", "iniconfig==2.1.0", "tomli==2.2.1")


def docker_client() -> tuple[list[str], dict[str, str]]:
    """A client that builds with BuildKit: one with buildx, else Debian's 20.10 client."""
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    if os.environ.get("DOCKER"):
        return shlex.split(os.environ["DOCKER"]), env
    found = shutil.which("docker")
    if found:
        probe = subprocess.run([found, "buildx", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [found], env
    if Path("/usr/bin/docker").exists():
        return ["/usr/bin/docker"], env
    return ["docker"], env


DOCKER, DOCKER_ENV = docker_client()


def docker(
    *args: str, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [*DOCKER, *args], env=DOCKER_ENV, capture_output=True, input=input, check=False
    )
    if check and proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).decode(errors="replace")[-4000:]
        raise SystemExit(f"docker {' '.join(args[:3])} ... failed:\n{tail}")
    return proc


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


def inspect(ref: str) -> dict:
    return json.loads(docker("image", "inspect", ref).stdout)[0]


def ca_bundle() -> Path | None:
    for name in ("EXTRA_CA_BUNDLE", "BUILD_CA_BUNDLE"):
        if os.environ.get(name):
            return Path(os.environ[name])
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None


@dataclass
class Build:
    seconds: float
    log: str
    steps: int = 0
    executed: int = 0

    @classmethod
    def parse(cls, seconds: float, log: str) -> Build:
        # BuildKit plain progress: "#7 [runtime 3/6] COPY ..." then "#7 CACHED" or "#7 DONE".
        steps = {m.group(1) for m in re.finditer(r"^#(\d+) \[[^\]]*\d+/\d+\] (?!FROM )", log, re.M)}
        cached = {m.group(1) for m in re.finditer(r"^#(\d+) CACHED$", log, re.M)}
        return cls(seconds, log, len(steps), len(steps - cached))


@dataclass
class Variant:
    name: str
    dockerfile: Path  # inside or outside the context
    context: Path
    code_file: Path
    lock_file: Path
    tag: str
    results: dict[str, Build] = field(default_factory=dict)
    image_ids: set[str] = field(default_factory=set)
    image: dict = field(default_factory=dict)
    context_bytes: int = 0
    context_files: int = 0
    dive: dict | None = None


def build(variant: Variant, base: str) -> Build:
    args = [
        "build",
        "--progress=plain",
        "-f",
        str(variant.dockerfile),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        variant.tag,
    ]
    ca = ca_bundle()
    if ca is not None:
        args += ["--secret", f"id=ca,src={ca}"]
    started = time.monotonic()
    proc = docker(*args, str(variant.context))
    seconds = time.monotonic() - started
    variant.image_ids.add(inspect(variant.tag)["Id"])
    return Build.parse(seconds, (proc.stdout + proc.stderr).decode(errors="replace"))


def measure_context(context: Path) -> tuple[int, int]:
    """Bytes and files of what the daemon receives: the context after .dockerignore,
    exported by a scratch build as a tar."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "context.tar"
        docker(
            "build",
            "-f",
            "-",
            "--output",
            f"type=tar,dest={out}",
            str(context),
            input=b"FROM scratch\nCOPY . /\n",
        )
        total = files = 0
        with tarfile.open(out) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    total += member.size
                    files += 1
        return total, files


def run_dive(tag: str) -> dict | None:
    dive = shutil.which("dive")
    if dive is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dive.json"
        proc = subprocess.run(
            [dive, tag, "--json", str(out)],
            capture_output=True,
            env=dict(os.environ, CI="true"),
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            return None
        return json.loads(out.read_text())["image"]


def stage_ours(tmp: Path) -> Variant:
    ctx = tmp / "ours"
    (ctx / "api").mkdir(parents=True)
    shutil.copy2(ROOT / ".dockerignore", ctx / ".dockerignore")
    for name in ("Dockerfile", "requirements.lock"):
        shutil.copy2(ROOT / "api" / name, ctx / "api" / name)
    shutil.copytree(
        ROOT / "api" / "app", ctx / "api" / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    return Variant(
        "ours (api/Dockerfile)",
        ctx / "api" / "Dockerfile",
        ctx,
        ctx / "api" / "app" / "main.py",
        ctx / "api" / "requirements.lock",
        "yolo-api:metrics-ours",
    )


def stage_naive(tmp: Path) -> Variant:
    ctx = tmp / "naive"
    # The api/ directory as it is on disk, litter included: the naive build has no
    # .dockerignore.
    shutil.copytree(ROOT / "api", ctx, symlinks=True)
    dockerfile = tmp / "naive.Dockerfile"
    shutil.copy2(ROOT / "docker" / "naive" / "Dockerfile", dockerfile)
    return Variant(
        "naive (docker/naive/Dockerfile)",
        dockerfile,
        ctx,
        ctx / "app" / "main.py",
        ctx / "requirements.lock",
        "yolo-api:metrics-naive",
    )


def prune() -> None:
    docker("builder", "prune", "-af")


def measure(variant: Variant, base: str, keep_cache: bool, log) -> None:
    if not keep_cache:
        log(f"[{variant.name}] pruning the build cache")
        prune()
    log(f"[{variant.name}] clean build")
    variant.results["clean"] = build(variant, base)
    log(f"[{variant.name}] no-op rebuild")
    variant.results["noop"] = build(variant, base)
    variant.image = inspect(variant.tag)
    variant.dive = run_dive(variant.tag)

    log(f"[{variant.name}] code-change rebuild")
    with variant.code_file.open("a") as fh:
        fh.write(f"\n# build-metrics: code change {time.time_ns()}\n")
    variant.results["code"] = build(variant, base)

    log(f"[{variant.name}] dependency-change rebuild")
    lock = variant.lock_file.read_text()
    present = {line.split("==")[0].strip().lower() for line in lock.splitlines() if "==" in line}
    extra = next(p for p in EXTRA_PACKAGES if p.split("==")[0] not in present)
    variant.lock_file.write_text(lock.rstrip("\n") + f"\n{extra}\n")
    variant.results["dep"] = build(variant, base)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2f} s"


def fmt_b(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} KB"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "-"


def report(ours: Variant, naive: Variant, base: str, base_info: dict) -> tuple[str, list[str]]:
    failures: list[str] = []
    base_size = base_info["Size"]
    base_layers = len(base_info["RootFS"]["Layers"])
    clean = ours.results["clean"].seconds

    def above(v: Variant) -> tuple[int, int]:
        return v.image["Size"] - base_size, len(v.image["RootFS"]["Layers"]) - base_layers

    def check(ok: bool, text: str) -> str:
        if not ok:
            failures.append(text)
        return f"{text}: {'OK' if ok else 'EXCEEDED'}"

    rows: list[tuple[str, str, str, str, str]] = []

    def timing(key: str, label: str, budget: str = "") -> None:
        o, n = ours.results[key], naive.results[key]
        ours_cell = f"{fmt_s(o.seconds)} ({o.executed}/{o.steps} steps run)"
        naive_cell = f"{fmt_s(n.seconds)} ({n.executed}/{n.steps} steps run)"
        rows.append((label, ours_cell, naive_cell, ratio(o.seconds, n.seconds), budget))

    timing("clean", "clean build")
    noop = ours.results["noop"].seconds
    timing(
        "noop",
        "no-op rebuild",
        check(noop <= BUDGET_NOOP_RATIO * clean, f"<= 3% of clean ({noop / clean:.1%})"),
    )
    code = ours.results["code"].seconds
    timing(
        "code",
        "code-change rebuild",
        check(code <= BUDGET_CODE_RATIO * clean, f"<= 10% of clean ({code / clean:.1%})"),
    )
    timing("dep", "dependency-change rebuild")

    rows.append(
        (
            "image size",
            fmt_b(ours.image["Size"]),
            fmt_b(naive.image["Size"]),
            ratio(ours.image["Size"], naive.image["Size"]),
            "",
        )
    )
    (ob, ol), (nb, nl) = above(ours), above(naive)
    rows.append(
        (
            "layers above the base",
            f"{fmt_b(ob)} ({ol} layers)",
            f"{fmt_b(nb)} ({nl} layers)",
            ratio(ob, nb),
            check(ob <= BUDGET_LAYERS_BYTES, "<= 60 MB"),
        )
    )
    rows.append(
        (
            "build context",
            f"{fmt_b(ours.context_bytes)} ({ours.context_files} files)",
            f"{fmt_b(naive.context_bytes)} ({naive.context_files} files)",
            ratio(ours.context_bytes, naive.context_bytes),
            check(ours.context_bytes <= BUDGET_CONTEXT_BYTES, "<= 200 KB"),
        )
    )
    if ours.dive and naive.dive:
        rows.append(
            (
                "dive efficiency",
                f"{ours.dive['efficiencyScore']:.4f}",
                f"{naive.dive['efficiencyScore']:.4f}",
                "",
                "",
            )
        )
        rows.append(
            (
                "dive wasted bytes",
                fmt_b(ours.dive["inefficientBytes"]),
                fmt_b(naive.dive["inefficientBytes"]),
                ratio(ours.dive["inefficientBytes"], naive.dive["inefficientBytes"]),
                "",
            )
        )

    header = ("metric", "ours", "naive", "ours/naive", "budget (ours)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"Base image: {base} ({fmt_b(base_size)}, {base_layers} layer(s)); {cpus} CPUs",
        "",
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |" for r in rows
    ]
    return "\n".join(lines), failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep-cache",
        action="store_true",
        help="do not prune the build cache before the clean builds",
    )
    parser.add_argument(
        "--keep-images", action="store_true", help="keep the yolo-api:metrics-* images"
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    opts = parser.parse_args()

    def log(msg: str) -> None:
        print(f"build-metrics: {msg}", file=sys.stderr, flush=True)

    if docker("info", check=False).returncode != 0:
        log("no Docker engine answers (start dockerd; see docker/ci-setup.sh)")
        return 2
    base = os.environ.get("PYTHON_BASE_IMAGE") or (
        OFFLINE_PYTHON if image_exists(OFFLINE_PYTHON) else OFFICIAL_PYTHON
    )
    if not image_exists(base):
        log(f"base image {base} is not present (offline: make offline-images)")
        return 2
    base_info = inspect(base)

    with tempfile.TemporaryDirectory(prefix="build-metrics-") as tmpdir:
        tmp = Path(tmpdir)
        ours, naive = stage_ours(tmp), stage_naive(tmp)
        ours.context_bytes, ours.context_files = measure_context(ROOT)
        naive.context_bytes, naive.context_files = measure_context(ROOT / "api")
        for variant in (ours, naive):
            measure(variant, base, opts.keep_cache, log)

    table, failures = report(ours, naive, base, base_info)
    print(table)
    if opts.json:
        opts.json.write_text(
            json.dumps(
                {
                    "base": base,
                    "context_bytes": {"ours": ours.context_bytes, "naive": naive.context_bytes},
                    "image_bytes": {"ours": ours.image["Size"], "naive": naive.image["Size"]},
                    "base_bytes": base_info["Size"],
                    "seconds": {
                        v.name: {k: b.seconds for k, b in v.results.items()} for v in (ours, naive)
                    },
                    "dive": {"ours": ours.dive, "naive": naive.dive},
                    "failures": failures,
                },
                indent=2,
            )
        )
    if not opts.keep_images:
        for variant in (ours, naive):
            docker("rmi", variant.tag, check=False)
            for image_id in variant.image_ids:
                docker("rmi", image_id, check=False)
    if failures:
        print("\nBudget exceeded: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

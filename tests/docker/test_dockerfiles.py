"""Static checks of the Dockerfiles: hadolint clean, every ignore justified, and the
properties the issue asks of api/Dockerfile that can be read off the file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.engine import require_tool
from tests.support.paths import ROOT

DOCKERFILES = sorted(
    p.relative_to(ROOT)
    for pattern in ("api/Dockerfile", "docker/**/Dockerfile", "tests/e2e/*/Dockerfile")
    for p in ROOT.glob(pattern)
)
API_DOCKERFILE = (ROOT / "api" / "Dockerfile").read_text()


@pytest.mark.docker
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=str)
def test_hadolint_clean(dockerfile: Path) -> None:
    hadolint = require_tool("hadolint")
    argv = [hadolint, "--no-color", str(dockerfile)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=str)
def test_every_hadolint_ignore_is_justified(dockerfile: Path) -> None:
    lines = (ROOT / dockerfile).read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"#\s*hadolint\s+(global\s+)?ignore=", line):
            before = [prev for prev in lines[max(0, i - 6) : i] if prev.startswith("#")]
            assert before, f"{dockerfile}:{i + 1}: ignore without a comment saying why"


def test_no_syntax_directive() -> None:
    # A `# syntax=` line makes BuildKit pull a frontend image: impossible without a registry.
    for dockerfile in DOCKERFILES:
        assert not re.search(r"^#\s*syntax\s*=", (ROOT / dockerfile).read_text(), re.M)


def test_api_dockerfile_shape() -> None:
    text = API_DOCKERFILE
    assert re.search(r"^ARG BASE_IMAGE=python:3\.13-slim$", text, re.M)
    stages = re.findall(r"^FROM \$\{BASE_IMAGE\} AS (\w+)$", text, re.M)
    assert {"builder", "runtime"} <= set(stages)
    assert stages[-1] == "runtime"
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    assert "--mount=type=cache" in text
    assert "--mount=type=secret,id=ca" in text
    # Lock before code: the dependency install precedes every COPY of the source.
    assert text.index("COPY api/requirements.lock") < text.index("uv pip sync")
    assert text.index("uv pip sync") < text.index("COPY api/app")
    # Both variants: the default (`runtime`, last) and `minimal` (an empty base).
    minimal = text[text.index("FROM scratch AS minimal") : text.index("AS runtime")]
    runtime = text[text.index("AS runtime") :]
    assert "COPY --from=minimal-rootfs /rootfs /" in minimal
    assert runtime.index("install -d -o 1000 -g 1000") < runtime.index("USER 1000")
    for stage in (minimal, runtime):
        assert re.search(r"^USER 1000:1000$", stage, re.M)
        assert re.search(r"^CMD \[\"uvicorn\", \"app\.main:app\"", stage, re.M)
        assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"-c\", .*urllib", stage, re.M)
    assert "curl" not in re.sub(r"#.*", "", text)
    for var in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"):
        assert var in text
    assert "org.opencontainers.image.title" in text


def test_dockerignore_keeps_secrets_and_litter_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    # Allowlist: exclude everything first, then let back in only what the image copies.
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert allowed == {
        "api/app",
        "api/requirements.lock",
        "docker/with-build-ca.sh",
        "docker/minimal-rootfs.sh",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=str)
def test_downloads_trust_the_ca_secret_only_through_the_one_helper(dockerfile: Path) -> None:
    """The CA step is written once (docker/with-build-ca.sh): a Dockerfile mounts the secret
    and runs its downloads through the helper, never reads the secret itself. The naive
    comparison image (docker/naive) is the exception it exists to be."""
    text = re.sub(r"#.*", "", (ROOT / dockerfile).read_text())
    if "--mount=type=secret,id=ca" not in text or dockerfile.parts[:2] == ("docker", "naive"):
        return
    assert "/run/secrets/ca" not in text
    helper = "--mount=type=bind,source=docker/with-build-ca.sh,target=/with-build-ca.sh"
    for run in re.split(r"^RUN ", text, flags=re.M)[1:]:
        if "--mount=type=secret,id=ca" in run:
            assert helper in run, run[:300]
            assert "sh /with-build-ca.sh " in run, run[:300]

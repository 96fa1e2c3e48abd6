"""Layer caching of api/Dockerfile, asserted from BuildKit's own build output: a no-op
rebuild runs nothing, a code-only change does not re-run the dependency install.

The builds run on a temporary copy of the build inputs, never on the working tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.builds import (
    BuiltImage,
    build_steps,
    context_files,
    find_step,
    stage_build_context,
)
from tests.support.engine import Docker
from tests.support.paths import ROOT

pytestmark = pytest.mark.docker

DEPENDENCY_INSTALL = "uv pip sync"


BUILD_SCRIPTS = ("docker/with-build-ca.sh", "docker/minimal-rootfs.sh")  # bind-mounted by RUNs


def test_context_is_small(docker: Docker) -> None:
    """What the daemon receives after .dockerignore."""
    files = context_files(docker, ROOT)
    total = sum(files.values())
    assert total <= 300_000, f"build context is {total} bytes"  # scripts/build_metrics.py
    names = set(files)
    assert "api/requirements.lock" in names
    assert "api/app/main.py" in names
    leaked = [
        n
        for n in names
        if not (n.startswith("api/") or n in BUILD_SCRIPTS)
        or re.search(r"(^|/)(\.env|\.git|tests|__pycache__|shared-data)(/|$)", n)
        or n.endswith((".pyc", ".egg-info"))
    ]
    assert leaked == []


def test_noop_rebuild_fully_cached_and_code_change_skips_dependency_install(
    docker: Docker,
    api_image: BuiltImage,
    marked_ca_bundle: Path,
    tmp_path: Path,
    unique_name: str,
) -> None:
    dockerfile = stage_build_context(tmp_path)
    tag = f"yolo-api:{unique_name}"
    args = {"BASE_IMAGE": api_image.base}

    def build() -> dict[str, tuple[str, bool]]:
        log = docker.build(tmp_path, dockerfile, tag, build_args=args, secret=marked_ca_bundle)
        steps = build_steps(log)
        assert steps, log
        return steps

    try:
        # Same inputs as the session's image: everything from the cache already.
        build()
        noop = build()
        ran = [title for title, cached in noop.values() if not cached]
        assert ran == [], f"no-op rebuild ran steps: {ran}"

        main = tmp_path / "api" / "app" / "main.py"
        # Unique per run: the same change made by an earlier run would be in the cache.
        main.write_text(main.read_text() + f"\n# a code-only change {unique_name}\n")
        changed = build()
        install_title, install_cached = find_step(changed, DEPENDENCY_INSTALL)
        assert install_cached, f"dependency install re-ran on a code change: {install_title}"
        _, code_cached = find_step(changed, "COPY api/app")
        assert not code_cached, "the code layer should have been rebuilt"
        ran = sorted(title for title, cached in changed.values() if not cached)
        assert all("COPY api/app" in title for title in ran), ran
    finally:
        docker.remove("image", tag)

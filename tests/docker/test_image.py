"""The API image itself: who it runs as, what it does not contain, what dive thinks of it."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.builds import BuiltImage, dive_report
from tests.support.engine import Docker, require_tool
from tests.support.paths import ROOT

pytestmark = pytest.mark.docker

LAYER_BUDGET_BYTES = 60_000_000


def sh(docker: Docker, image: str, script: str, user: str = "0") -> str:
    """Run a shell script in a throwaway container of image (entrypoint bypassed)."""
    proc = docker("run", "--rm", "--user", user, "--entrypoint", "sh", image, "-c", script)
    return proc.stdout


def test_runs_as_uid_1000(docker: Docker, api_image: BuiltImage) -> None:
    config = docker.inspect(api_image.tag)["Config"]
    assert config["User"] == "1000:1000"
    out = docker("run", "--rm", "--entrypoint", "id", api_image.tag).stdout
    assert out.startswith("uid=1000(app) gid=1000(app)"), out


def test_shared_data_mount_point_owned_by_app(docker: Docker, api_image: BuiltImage) -> None:
    out = sh(docker, api_image.tag, "stat -c '%u:%g %a' /data")
    assert out.strip() == "1000:1000 755"


def test_code_is_not_writable_by_the_app(docker: Docker, api_image: BuiltImage) -> None:
    # Even without --read-only, uid 1000 cannot modify its own code or dependencies.
    out = sh(
        docker,
        api_image.tag,
        "for p in /app /app/app /app/app/main.py /opt/venv /opt/venv/bin; do "
        '[ -w "$p" ] && echo "writable: $p"; done; true',
        user="1000",
    )
    assert out == ""


def test_no_compiler_or_build_tools(docker: Docker, api_image: BuiltImage) -> None:
    tools = "gcc cc c++ g++ cpp clang ld as make strip pg_config uv pip pip3"
    out = sh(docker, api_image.tag, f"for t in {tools}; do command -v $t; done; true")
    # The official base ships pip in /usr/local; that one is the base's, not ours.
    base_out = sh(docker, api_image.base, f"for t in {tools}; do command -v $t; done; true")
    added = set(out.split()) - set(base_out.split())
    assert added == set(), f"build tools in the final image: {sorted(added)}"
    assert not any(path.startswith("/opt/venv") for path in out.split())


def test_no_headers_added_to_the_base(docker: Docker, api_image: BuiltImage) -> None:
    find = "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o -name '*.h' -print"
    ours = set(sh(docker, api_image.tag, find).split())
    base = set(sh(docker, api_image.base, find).split())
    assert ours - base == set(), f"headers added by our layers: {sorted(ours - base)[:20]}"


def test_no_package_manager_cache_or_leftovers(docker: Docker, api_image: BuiltImage) -> None:
    script = r"""
        find /root/.cache /home /tmp -mindepth 1 2>/dev/null
        find /var/cache/apt -type f \( -name '*.deb' -o -name '*.bin' \) 2>/dev/null
        find /var/lib/apt/lists -type f ! -name lock 2>/dev/null
        ls -d /opt/uv /build /opt/venv/bin/pip* /opt/venv/bin/uv /opt/venv/bin/uvx 2>/dev/null
        find /opt/venv -maxdepth 4 -type d \( -name 'pip' -o -name 'uv' \) -path '*site-packages*'
        find /opt/venv -type d \( -name tests -o -name test \) -path '*site-packages*'
        find / -xdev -name .git -not -path '/proc/*'
        find /app -name '__pycache__' -o -name '*.pyc'
        true
    """
    out = sh(docker, api_image.tag, script)
    assert out.strip() == "", f"leftovers in the final image:\n{out}"


def test_runtime_libraries_load(docker: Docker, api_image: BuiltImage) -> None:
    # psycopg2 against libpq, Pillow with exactly the codecs the API accepts.
    code = (
        "import psycopg2, PIL.features as f, app.main; "
        "print(psycopg2.__libpq_version__ > 0, f.check('jpg'), f.check('webp'), f.check('zlib'))"
    )
    run = ["run", "--rm", "--read-only", "--tmpfs=/tmp", "--entrypoint=python", api_image.tag]
    out = docker(*run, "-c", code).stdout
    assert out.split() == ["True", "True", "True", "True"]


def test_no_secret_in_history_or_layers(
    docker: Docker, api_image: BuiltImage, secret_marker: str, tmp_path: Path
) -> None:
    # The build received the CA bundle + marker as a BuildKit secret: it must appear nowhere.
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", api_image.tag).stdout
    assert secret_marker not in history
    config = docker.inspect(api_image.tag)["Config"]
    env_names = {item.split("=", 1)[0] for item in config.get("Env") or []}
    assert not {n for n in env_names if any(s in n for s in ("PASSWORD", "TOKEN", "SECRET"))}

    archive = tmp_path / "image.tar"
    docker("save", "-o", str(archive), api_image.tag)
    needle = secret_marker.encode()
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.name.endswith("layer.tar"):
                continue
            layer = outer.extractfile(member)
            assert layer is not None
            with tarfile.open(fileobj=layer) as inner:
                for item in inner.getmembers():
                    if item.isfile():
                        data = inner.extractfile(item)
                        assert data is not None
                        assert needle not in data.read(), f"secret found in {item.name}"


def test_layers_above_base_within_budget(docker: Docker, api_image: BuiltImage) -> None:
    ours = docker.inspect(api_image.tag)
    base = docker.inspect(api_image.base)
    assert ours["RootFS"]["Layers"][: len(base["RootFS"]["Layers"])] == base["RootFS"]["Layers"]
    above = ours["Size"] - base["Size"]
    assert above <= LAYER_BUDGET_BYTES, f"{above / 1e6:.1f} MB above the base"


def test_dive_efficiency(docker: Docker, api_image: BuiltImage) -> None:
    dive = require_tool("dive")
    image = dive_report(dive, api_image.tag)
    assert image["efficiencyScore"] >= 0.99, image
    assert image["inefficientBytes"] < 1_000_000, image
    # And dive's own CI gate agrees.
    gate = [dive, api_image.tag, "--ci", "--lowestEfficiency=0.99", "--highestWastedBytes=1MB"]
    env = {**docker.env, "CI": "true"}
    proc = subprocess.run(gate, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]

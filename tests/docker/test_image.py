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
MINIMAL_BUDGET_BYTES = 110_000_000
BUILD_TOOLS: tuple[str, ...] = ("gcc", "cc", "c++", "g++", "cpp", "clang", "ld", "as", "make")
BUILD_TOOLS += ("strip", "pg_config", "uv", "pip", "pip3")
# Probes are Python, not shell: the minimal variant has no shell at all. WALK is `find / -xdev`
# (other filesystems such as /proc left out).
WALK = """
import glob, os
def walk():
    device = os.stat("/").st_dev
    for top, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == device]
        yield top, dirs, files
"""
LEFTOVERS = (
    WALK
    + """
found = []
for d in ("/root/.cache", "/home", "/tmp"):
    found += [p for p in glob.glob(d + "/**", recursive=True) if p.rstrip("/") != d]
found += glob.glob("/var/cache/apt/**/*.deb", recursive=True)
found += glob.glob("/var/cache/apt/**/*.bin", recursive=True)
found += [p for p in glob.glob("/var/lib/apt/lists/*") if os.path.basename(p) != "lock"]
for pattern in ("/opt/uv", "/build", "/opt/venv/bin/pip*", "/opt/venv/bin/uv", "/opt/venv/bin/uvx"):
    found += glob.glob(pattern)
site = glob.glob("/opt/venv/lib/python3*/site-packages")[0]
found += [p for p in glob.glob(site + "/*/") if os.path.basename(p[:-1]) in ("pip", "uv")]
found += [p for p in glob.glob(site + "/**/", recursive=True)
          if os.path.basename(p[:-1]) in ("test", "tests")]
found += [os.path.join(top, d) for top, dirs, _ in walk() for d in dirs if d == ".git"]
found += glob.glob("/app/**/__pycache__", recursive=True)
found += glob.glob("/app/**/*.pyc", recursive=True)
print("\\n".join(found))
"""
)
HEADERS = (
    WALK
    + """
for top, _, files in walk():
    print(*(os.path.join(top, f) for f in files if f.endswith(".h")), sep="\\n")
"""
)


def py(docker: Docker, image: str, code: str, user: str | None = None) -> str:
    """Run Python code in a throwaway container of `image` (entrypoint bypassed)."""
    as_user = [f"--user={user}"] if user else []
    return docker("run", "--rm", *as_user, "--entrypoint=python3", image, "-c", code).stdout


def which(docker: Docker, image: str, names: tuple[str, ...]) -> set[str]:
    """The commands of `names` found on the image's PATH."""
    code = f"import shutil; print(*filter(None, map(shutil.which, {names!r})))"
    return set(py(docker, image, code).split())


def test_runs_as_uid_1000(docker: Docker, variant: BuiltImage) -> None:
    assert docker.inspect(variant.tag)["Config"]["User"] == "1000:1000"
    code = "import os, pwd, grp; uid, gid = os.getuid(), os.getgid(); "
    code += "print(uid, gid, pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name)"
    assert py(docker, variant.tag, code).split() == ["1000", "1000", "app", "app"]


def test_shared_data_mount_point_owned_by_app(docker: Docker, variant: BuiltImage) -> None:
    code = "import os; s = os.stat('/data'); print(f'{s.st_uid}:{s.st_gid} {s.st_mode & 0o7777:o}')"
    assert py(docker, variant.tag, code, user="0").strip() == "1000:1000 755"


def test_code_is_not_writable_by_the_app(docker: Docker, variant: BuiltImage) -> None:
    # Even without --read-only, uid 1000 cannot modify its own code or dependencies.
    paths = ("/app", "/app/app", "/app/app/main.py", "/opt/venv", "/opt/venv/bin")
    code = f"import os; print(*(p for p in {paths!r} if os.access(p, os.W_OK)))"
    assert py(docker, variant.tag, code, user="1000").strip() == ""


def test_no_compiler_or_build_tools(docker: Docker, variant: BuiltImage) -> None:
    found = which(docker, variant.tag, BUILD_TOOLS)
    # The official base ships pip in /usr/local; that one is the base's, not ours.
    added = found - which(docker, variant.base, BUILD_TOOLS)
    assert added == set(), f"build tools in the final image: {sorted(added)}"
    assert not any(path.startswith("/opt/venv") for path in found)


def test_the_minimal_variant_has_no_shell_or_package_manager(
    docker: Docker, minimal_image: BuiltImage
) -> None:
    tools = ("sh", "bash", "dash", "apt", "apt-get", "dpkg", "ls", "cat", "id", "env")
    assert which(docker, minimal_image.tag, tools) == set()
    paths = ("/bin/sh", "/usr/bin/dpkg", "/var/lib/dpkg")
    code = f"import os; print(*(p for p in {paths!r} if os.path.lexists(p)))"
    assert py(docker, minimal_image.tag, code).strip() == ""


def test_no_headers_added_to_the_base(docker: Docker, variant: BuiltImage) -> None:
    ours = set(py(docker, variant.tag, HEADERS, user="0").split())
    base = set(py(docker, variant.base, HEADERS, user="0").split())
    assert ours - base == set(), f"headers added by our layers: {sorted(ours - base)[:20]}"


def test_no_package_manager_cache_or_leftovers(docker: Docker, variant: BuiltImage) -> None:
    out = py(docker, variant.tag, LEFTOVERS, user="0")
    assert out.strip() == "", f"leftovers in the final image:\n{out}"


def test_runtime_libraries_load(docker: Docker, variant: BuiltImage) -> None:
    # psycopg2 against libpq, Pillow with exactly the codecs the API accepts.
    code = (
        "import psycopg2, PIL.features as f, app.main; "
        "print(psycopg2.__libpq_version__ > 0, f.check('jpg'), f.check('webp'), f.check('zlib'))"
    )
    run = ["run", "--rm", "--read-only", "--tmpfs=/tmp", "--entrypoint=python", variant.tag]
    out = docker(*run, "-c", code).stdout
    assert out.split() == ["True", "True", "True", "True"]


def test_no_secret_in_history_or_layers(
    docker: Docker, variant: BuiltImage, secret_marker: str, tmp_path: Path
) -> None:
    # The build received the CA bundle + marker as a BuildKit secret: it must appear nowhere.
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", variant.tag).stdout
    assert secret_marker not in history
    config = docker.inspect(variant.tag)["Config"]
    env_names = {item.split("=", 1)[0] for item in config.get("Env") or []}
    assert not {n for n in env_names if any(s in n for s in ("PASSWORD", "TOKEN", "SECRET"))}

    archive = tmp_path / "image.tar"
    docker("save", "-o", str(archive), variant.tag)
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


def test_the_minimal_variant_is_within_its_budget(
    docker: Docker, minimal_image: BuiltImage
) -> None:
    size = docker.inspect(minimal_image.tag)["Size"]
    assert size <= MINIMAL_BUDGET_BYTES, f"{size / 1e6:.1f} MB"


def test_dive_efficiency(docker: Docker, variant: BuiltImage) -> None:
    dive = require_tool("dive")
    image = dive_report(dive, variant.tag)
    assert image["efficiencyScore"] >= 0.99, image
    assert image["inefficientBytes"] < 1_000_000, image
    # And dive's own CI gate agrees.
    gate = [dive, variant.tag, "--ci", "--lowestEfficiency=0.99", "--highestWastedBytes=1MB"]
    env = {**docker.env, "CI": "true"}
    proc = subprocess.run(gate, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]

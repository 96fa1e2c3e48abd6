"""flows/detect.py and a bare model name: the volume's models/, then the weights the image
ships, and a download only when allowed; `--seed` puts the image's weights on the volume."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import detect
from tests.support.detect import Process, run_detect
from tests.support.paths import FIXTURE_MODEL

# detect.py with the official images' weights folder (OFFICIAL_IMAGE_WORKDIR) at $IMAGE_WORKDIR.
SEED_WRAPPER = """
import importlib.util, os, pathlib, sys
spec = importlib.util.spec_from_file_location("d", sys.argv[1])
d = sys.modules["d"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(d)
d.OFFICIAL_IMAGE_WORKDIR = pathlib.Path(os.environ["IMAGE_WORKDIR"])
sys.exit(d.main(sys.argv[2:]))
"""


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data dir, with the official images' weights folder beside it (tmp_path/ultralytics)."""
    monkeypatch.setattr(detect, "OFFICIAL_IMAGE_WORKDIR", tmp_path / "ultralytics")
    monkeypatch.delenv("YOLO_ALLOW_DOWNLOAD", raising=False)
    (tmp_path / "data" / "models").mkdir(parents=True)
    (tmp_path / "ultralytics").mkdir()
    return tmp_path / "data"


def batch_of(data: Path, model: str) -> detect.Config:
    """The Config of a batch run with `model`, as detect.py builds it from argv and the env."""
    return detect.parse_config(["--data-dir", str(data), "--model", model, "--jobs", "j=x.jpg"])


def test_the_volumes_copy_comes_first(data: Path, tmp_path: Path) -> None:
    (data / "models" / "yolo11n.pt").write_bytes(b"pushed")
    (tmp_path / "ultralytics" / "yolo11n.pt").write_bytes(b"shipped")
    found = detect._resolve_model(batch_of(data, "yolo11n.pt"))
    assert Path(found) == (data / "models" / "yolo11n.pt").resolve()


def test_then_the_weights_the_image_ships(data: Path, tmp_path: Path) -> None:
    (tmp_path / "ultralytics" / "yolo11n.pt").write_bytes(b"shipped")
    found = detect._resolve_model(batch_of(data, "yolo11n.pt"))
    assert Path(found) == (tmp_path / "ultralytics" / "yolo11n.pt").resolve()


def test_a_missing_model_says_how_to_add_one(data: Path) -> None:
    with pytest.raises(detect.DetectError) as exc:
        detect._resolve_model(batch_of(data, "yolo11n.pt"))
    assert "yoloctl models push" in str(exc.value)
    assert "ALLOW_MODEL_DOWNLOAD=true" in str(exc.value)


def test_a_download_only_when_allowed(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_ALLOW_DOWNLOAD", "true")
    assert detect._resolve_model(batch_of(data, "yolo11n.pt")) == "yolo11n.pt"


def seed(data: Path, name: str, workdir: Path, allow_download: bool = False) -> Process:
    """`detect.py --seed NAME`, with the official images' folder at `workdir`."""
    env = {"IMAGE_WORKDIR": str(workdir), "YOLO_ALLOW_DOWNLOAD": "true"}
    unset = () if allow_download else ("YOLO_ALLOW_DOWNLOAD",)
    return run_detect(data, "--seed", name, env=env, unset=unset, wrapper=SEED_WRAPPER)


def test_seed_copies_the_shipped_weights_once(data: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "ultralytics"
    (workdir / "yolo11n.pt").write_bytes(FIXTURE_MODEL.read_bytes())
    first = seed(data, "yolo11n.pt", workdir)
    assert first.returncode == 0, first.stderr
    assert (data / "models" / "yolo11n.pt").read_bytes() == FIXTURE_MODEL.read_bytes()
    assert (data / "models" / "yolo11n.pt").stat().st_mode & 0o777 == 0o644
    (workdir / "yolo11n.pt").write_bytes(b"a newer image")
    again = seed(data, "yolo11n.pt", workdir)
    assert again.returncode == 0
    assert "already" in again.stderr
    assert (data / "models" / "yolo11n.pt").read_bytes() == FIXTURE_MODEL.read_bytes()  # kept


def test_seed_of_a_name_found_nowhere_stops_with_one_line(data: Path, tmp_path: Path) -> None:
    done = seed(data, "custom.pt", tmp_path / "nowhere")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "detect.py: error: MODEL=custom.pt is neither on the shared volume (models/custom.pt) "
        "nor in the inference image, and downloads are off: push it with `yoloctl models "
        "push`, set MODEL in .env to a model that is there, or set ALLOW_MODEL_DOWNLOAD=true "
        "with TASK_NETWORK=bridge"
    ]
    assert list((data / "models").iterdir()) == []


def test_seed_of_a_missing_path_stops_without_offering_a_download(
    data: Path, tmp_path: Path
) -> None:
    done = seed(data, "models/custom.pt", tmp_path / "nowhere", allow_download=True)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("detect.py: error: MODEL=models/custom.pt is not a file")
    assert "yoloctl models push" in line
    assert "ALLOW_MODEL_DOWNLOAD" not in line


def test_seed_of_a_name_tasks_may_download_is_not_an_error(data: Path, tmp_path: Path) -> None:
    done = seed(data, "custom.pt", tmp_path / "nowhere", allow_download=True)
    assert done.returncode == 0, done.stderr
    assert "ships no custom.pt; tasks may download it" in done.stderr
    assert list((data / "models").iterdir()) == []


def test_seed_of_a_pushed_model_is_not_an_error(data: Path, tmp_path: Path) -> None:
    (data / "models" / "custom.pt").write_bytes(FIXTURE_MODEL.read_bytes())
    done = seed(data, "models/custom.pt", tmp_path / "nowhere")
    assert done.returncode == 0, done.stderr
    assert "already" in done.stderr

"""`python -m app.bootstrap` refuses a configuration it cannot run with one line on stderr,
before it changes anything; a configuration it can run gets the database and the volume."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.processes import api_as_in_image, clean_env, lines, run_module

FIXTURE_MODEL = "tests/fixtures/model/shapes.pt"  # relative to the repository root (cwd)
UNREACHABLE = "postgresql+psycopg2://u:secretpw@127.0.0.1:1/x"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """`make dev`'s settings on a fresh volume and SQLite file, with a model that exists."""
    return clean_env(
        SHARED_DATA_DIR=str(tmp_path / "shared"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}",
        MODEL=FIXTURE_MODEL,
    )


def refusal(env: dict[str, str]) -> str:
    done = run_module("app.bootstrap", env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert lines(done.stdout) == []
    [line] = lines(done.stderr)
    return line


def test_a_configuration_it_can_run_is_bootstrapped(env: dict[str, str]) -> None:
    done = run_module("app.bootstrap", env)
    assert done.returncode == 0, done.stderr
    assert (Path(env["SHARED_DATA_DIR"]) / "models").is_dir()
    assert Path(env["DATABASE_URL"].removeprefix("sqlite:///")).is_file()


def test_orchestrator_local_in_the_image_says_to_set_kestra(
    env: dict[str, str], tmp_path: Path
) -> None:
    image = api_as_in_image(tmp_path / "image")
    line = refusal({**env, "PYTHONPATH": str(image), "ORCHESTRATOR": "local"})
    assert line == (
        "ORCHESTRATOR=local runs flows/detect.py with the host's Ultralytics (make dev); "
        "this image has neither: set ORCHESTRATOR=kestra in .env"
    )
    assert not Path(env["SHARED_DATA_DIR"]).exists()  # refused before changing anything


def test_a_model_name_found_nowhere_says_how_to_get_one(env: dict[str, str]) -> None:
    line = refusal({**env, "MODEL": "nowhere.pt"})
    models = Path(env["SHARED_DATA_DIR"]) / "models"
    assert line.startswith(f"MODEL=nowhere.pt is not in {models}/")
    assert f"copy the weights to {models / 'nowhere.pt'}" in line
    assert f"MODEL={FIXTURE_MODEL}" in line
    assert "ALLOW_MODEL_DOWNLOAD=true" in line


def test_a_model_path_that_is_no_file_is_refused(env: dict[str, str]) -> None:
    line = refusal({**env, "MODEL": "models/missing.pt"})
    assert line.startswith("MODEL=models/missing.pt is not a file")
    assert "ALLOW_MODEL_DOWNLOAD" not in line  # a path is never downloaded


def test_an_unreachable_database_is_named_after_db_wait_s(env: dict[str, str]) -> None:
    started = time.monotonic()
    line = refusal({**env, "DATABASE_URL": UNREACHABLE, "DB_WAIT_S": "2"})
    elapsed = time.monotonic() - started
    assert line.startswith("DATABASE_URL: the database at 127.0.0.1:1 did not answer")
    assert "DB_WAIT_S=2 s" in line
    assert "check that it is running" in line
    assert "secretpw" not in line
    assert 2 <= elapsed < 30  # waited, but boundedly

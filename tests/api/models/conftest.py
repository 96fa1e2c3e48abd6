"""The fixture model's real exports (Ultralytics, through detect.py's export mode), made once."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.detect import EXPORTS, export_fixture_model, fresh_data_dir


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose models/ holds shapes.pt and its exports at 640, both formats."""
    root = fresh_data_dir(tmp_path_factory.mktemp("exported") / "data")
    for fmt in EXPORTS:
        export_fixture_model(root, fmt)
    return root


@pytest.fixture
def exports_in(exported: Path) -> Callable[[Path], None]:
    """Copies the exports into a data dir's models/ (made if missing)."""

    def copy(data_dir: Path) -> None:
        for name in EXPORTS.values():
            source, target = exported / name, data_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)

    return copy

"""Where things are in the repository, for tests and tooling run from any directory."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The small detector trained on tests/fixtures/synthetic.py's scenes (tests/fixtures/README.md).
FIXTURE_MODEL = ROOT / "tests" / "fixtures" / "model" / "shapes.pt"

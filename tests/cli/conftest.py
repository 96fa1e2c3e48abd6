"""The CLI's own tests import yolo_cli from the source tree, installed or not. Running the CLI
(tests/support/processes.py `run_cli`) against a running API (`start_api`) needs no more."""

from __future__ import annotations

import sys

from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "cli"))

"""The suite's set-up: the API package importable, Ultralytics kept offline, and the fixtures
every test directory shares, registered as plugins: the API in the test process
(tests/support/api_app.py) and on a loopback port (tests/support/live_api.py)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "api"))  # the API package (`app`), as installed by `make install`

# Never let Ultralytics reach for the network or write into the user's home.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault(
    "YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "ultralytics-config-tests")
)

pytest_plugins = ["tests.support.api_app", "tests.support.live_api"]

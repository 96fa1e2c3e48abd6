"""Shared set-up for the flow tests (detect.py, the Kestra flow and its configuration)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Never let Ultralytics reach for the network or write into the user's home.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault(
    "YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "ultralytics-config-tests")
)

"""Helpers shared by the benchmark scripts: spreads over repeats and the machine they ran on.

Standard library only, so any bench script (and any Python) can import it.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path


def spread(values: Sequence[float], digits: int = 2, unit: str = "", signed: bool = False) -> str:
    """'min / median / max' of the values (one value: just that), or 'n/a' when empty;
    `signed` writes a + before positive numbers."""
    if not values:
        return "n/a"
    form = f"{'+' if signed else ''}.{digits}f"
    picked = (
        [values[0]] if len(values) == 1 else [min(values), statistics.median(values), max(values)]
    )
    return " / ".join(format(v, form) for v in picked) + unit


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError):
        pass
    return None


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_line() -> str:
    """One line describing the host: cores, CPU model, memory, kernel."""
    memory = memory_gb()
    parts = [
        f"{os.cpu_count()} cores",
        cpu_model(),
        f"{memory:.0f} GB RAM" if memory else "",
        f"{platform.system()} {platform.release()}",
    ]
    return ", ".join(p for p in parts if p)

"""Helpers shared by the benchmark scripts: spreads over repeats, Markdown tables and the
machine they ran on.

Standard library only, so any bench script (and any Python) can import it.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Sequence
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


def table(header: str, rows: Iterable[str]) -> None:
    """Print a Markdown table; the header and each row are cells joined by ' | '."""
    print(f"| {header} |")
    print("|" + "---|" * len(header.split(" | ")))
    for row in rows:
        print(f"| {row} |")


def _proc_value(path: str, key: str) -> str | None:
    """The value of `key` in a 'key: value' file of /proc (Linux), else None."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_line() -> str:
    """One line describing the host: cores, CPU model, memory, kernel."""
    memory = _proc_value("/proc/meminfo", "MemTotal:")  # e.g. '24576000 kB'
    parts = [
        f"{os.cpu_count()} cores",
        _proc_value("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        f"{int(memory.split()[0]) / 1024 / 1024:.0f} GB RAM" if memory else "",
        f"{platform.system()} {platform.release()}",
    ]
    return ", ".join(p for p in parts if p)

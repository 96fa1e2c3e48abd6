"""What the end-to-end tests measured (printed at the end of the run by tests/e2e)."""

from __future__ import annotations

from typing import Any

RECOVERY: dict[str, dict[str, Any]] = {}


def record(name: str, **facts: Any) -> None:
    """Keep a measurement for the summary (seconds rounded to 0.1)."""
    RECOVERY[name] = {k: round(v, 1) if isinstance(v, float) else v for k, v in facts.items()}
    print(f"\n[e2e] {name}: {RECOVERY[name]}")

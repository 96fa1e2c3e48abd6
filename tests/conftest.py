"""Shared fixtures: the repository's paths and one throwaway Postgres for the whole run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "api"))  # the API package (`app`), as installed by `make install`


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """The Postgres server of TEST_DATABASE_URL or DATABASE_URL when given (its user must be
    allowed to create databases: each test gets its own, cloned from a migrated template);
    otherwise a cluster started from the machine's PostgreSQL binaries, removed afterwards."""
    given = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if given.startswith("postgresql"):
        yield given
        return
    from tests.support.postgres import ThrowawayCluster

    cluster = ThrowawayCluster()
    cluster.start()
    try:
        yield cluster.admin_url
    finally:
        cluster.destroy()

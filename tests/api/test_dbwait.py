"""Bootstrap's wait for the database: bounded by DB_WAIT_S, then one line naming host:port
from DATABASE_URL, never its password."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.exc import OperationalError

from app.config import Refusal, Settings
from app.dbwait import unreachable, wait_for_database


def server(url: str, wait_s: float = 0) -> Settings:
    return Settings(database_url=url, db_wait_s=wait_s)


def test_a_refused_port_is_retried_until_db_wait_s_then_refused() -> None:
    started = time.monotonic()
    with pytest.raises(Refusal) as exc:
        wait_for_database(server("postgresql+psycopg2://u:secretpw@127.0.0.1:1/x", 1.5))
    assert 1.5 <= time.monotonic() - started < 15
    assert str(exc.value).startswith("DATABASE_URL: the database at 127.0.0.1:1 did not answer")
    assert "DB_WAIT_S=1.5 s (Connection refused)" in str(exc.value)
    assert "secretpw" not in str(exc.value)


def test_a_reachable_database_returns_at_once(database_url: str) -> None:
    started = time.monotonic()
    wait_for_database(server(database_url, 30))
    assert time.monotonic() - started < 5


def test_sqlite_is_not_waited_for() -> None:
    wait_for_database(server("sqlite:////nonexistent/dir/db.sqlite3", 30))


def test_the_message_has_the_default_port_and_hides_the_password() -> None:
    error = OperationalError("connect", {}, Exception('password "hunter2" rejected: hunter2'))
    line = unreachable(server("postgresql+psycopg2://yolo:hunter2@postgres/yolo"), error)
    assert "the database at postgres:5432" in line
    assert "hunter2" not in line
    assert "\n" not in line

"""Bootstrap's bounded wait for a database server that is still starting (DB_WAIT_S)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from app.config import Refusal, Settings
from app.db import make_engine

RETRY_EVERY_S = 1.0
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


def wait_for_database(settings: Settings) -> None:
    """Return once a connection opens; after DB_WAIT_S, refuse naming where it looked."""
    if settings.uses_sqlite:
        return  # a file opens or fails at once: nothing to wait for
    engine = make_engine(settings)
    retrying = Retrying(
        stop=stop_after_delay(settings.db_wait_s),
        wait=wait_fixed(RETRY_EVERY_S),
        retry=retry_if_exception_type(OperationalError),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt, engine.connect():
                pass
    except OperationalError as exc:
        raise Refusal(unreachable(settings, exc)) from None
    finally:
        engine.dispose()


def unreachable(settings: Settings, exc: OperationalError) -> str:
    """host:port from DATABASE_URL and the driver's reason; the password is never shown."""
    url = make_url(settings.database_url)
    port = url.port or _DEFAULT_PORTS.get(url.get_backend_name())
    where = f"{url.host or 'localhost'}:{port or 'its default port'}"
    return (
        f"DATABASE_URL: the database at {where} did not answer within "
        f"DB_WAIT_S={settings.db_wait_s:g} s ({_reason(exc, url.password)}): check that it is "
        "running and reachable from here, and the host, port and credentials in DATABASE_URL"
    )


def _reason(exc: OperationalError, password: str | None) -> str:
    """The last clause of the driver's first line, e.g. 'Connection refused'."""
    lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
    reason = " ".join(lines[0].rsplit(": ", 1)[-1].split())[:200]
    return reason.replace(password, "***") if password else reason

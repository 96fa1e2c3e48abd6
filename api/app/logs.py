"""Structured logs: one JSON object per line, carrying the job and batch ids."""

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_Fields = tuple[tuple[str, str], ...]
_context: contextvars.ContextVar[_Fields] = contextvars.ContextVar("log_context", default=())

# Attributes every LogRecord has; anything else was passed through `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def _tagged(key: str, value: str) -> Iterator[None]:
    token = _context.set((*_context.get(), (key, value)))
    try:
        yield
    finally:
        _context.reset(token)


def job_context(job_id: str) -> contextlib.AbstractContextManager[None]:
    """Tag log lines emitted inside the block with this job id."""
    return _tagged("job_id", job_id)


def batch_context(batch_id: str) -> contextlib.AbstractContextManager[None]:
    """Tag log lines emitted inside the block with this batch (one execution's jobs)."""
    return _tagged("batch_id", batch_id)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_context.get())  # inner values win: later pairs overwrite
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Uvicorn's access log duplicates what the app logs; keep its errors.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True

"""What the stand-in knows: executions (Kestra's JSON), the test faults, and, in executor
mode, the containers and callbacks it ran; kept in one JSON file so a restart finds them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tests.support.kestra.flow import Flow, check_flow
from tests.support.kestra.pebble import Unsupported

TERMINAL = frozenset(
    {"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "RETRIED", "SKIPPED", "RESUBMITTED"}
)
_STORED = ("executions", "containers", "callbacks")  # and the faults
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def short_id() -> str:
    return uuid.uuid4().hex[:22]


def push_state(state: dict[str, Any], current: str) -> dict[str, Any]:
    """Kestra's state object: the current state, its history and, once terminal, endDate."""
    state["current"] = current
    state.setdefault("histories", []).append({"state": current, "date": now()})
    if current in TERMINAL:
        state["endDate"] = now()
    return state


def jobs_of(execution: Mapping[str, Any]) -> dict[str, str]:
    """Job id -> image path, from an execution's `jobs` input (`<job_id>=<image_path>`
    entries separated by spaces, as the flow's validator lets through); {} without one."""
    jobs = (execution.get("inputs") or {}).get("jobs")
    if not isinstance(jobs, str):
        return {}
    return dict(entry.partition("=")[::2] for entry in jobs.split())


class Faults(BaseModel):
    """Misbehaviour the tests switch on (in-process, or over HTTP at /_standin/faults)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    fail_next: int = 0  # answer the next N API requests with `fail_status`
    fail_status: int = 503
    delay_s: float = 0.0  # sleep before answering creations (timeouts)
    create_then_fail: bool = False  # create the execution, then answer 500 anyway
    # Executor mode only.
    drop_callbacks: int = 0  # skip afterExecution for the next N executions
    hold: bool = False  # accept executions but start none until released


@dataclass
class StandinState:
    """Everything the API answers from and the executor changes, behind one lock."""

    flows: list[dict[str, Any]]  # as read from the flow files
    username: str
    password: str
    # The flows by (namespace, id); one that is not emulated is refused (Unsupported).
    checked: dict[tuple[str, str], Flow] = field(init=False)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    flow_disabled: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Executor mode: what ran, for the tests and for humans reading `docker logs`.
    containers: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, list[str]] = field(default_factory=dict)
    base_url: str = "http://kestra/"
    store: Path | None = None  # executor mode: where the state survives restarts
    # Kestra's create only puts the execution on a queue: search and GET find it once the
    # executor has written it to the repository (ExecutionController.createExecution).
    visibility_delay_s: float = 0.0
    visible_at: dict[str, float] = field(default_factory=dict)  # monotonic clock
    # What the executor does (executor mode).
    on_created: Callable[[str], None] = lambda _: None
    on_faults: Callable[[], None] = lambda: None

    def __post_init__(self) -> None:
        checked = [check_flow(raw) for raw in self.flows]
        self.checked = {(flow.namespace, flow.id): flow for flow in checked}
        if len(self.checked) != len(checked):
            raise Unsupported("two flow files declare the same namespace and id")

    def raw_flow(self, namespace: str, flow_id: str) -> dict[str, Any] | None:
        return next(
            (f for f in self.flows if (f.get("namespace"), f.get("id")) == (namespace, flow_id)),
            None,
        )

    @property
    def credentials_valid(self) -> bool:
        """Kestra 1.3 (BasicAuthService) stores configured credentials only if the username is
        an email and the password has 8-256 characters with a lower-case letter, an
        upper-case letter and a digit; otherwise every API call is 401, whatever is sent."""
        return bool(
            _EMAIL.fullmatch(self.username)
            and 8 <= len(self.password) <= 256
            and all(re.search(kind, self.password) for kind in ("[a-z]", "[A-Z]", "[0-9]"))
        )

    def visible(self, execution_id: str) -> bool:
        return time.monotonic() >= self.visible_at.get(execution_id, 0.0)

    @contextlib.contextmanager
    def change(self) -> Iterator[None]:
        """Hold the lock while changing something, then persist it."""
        with self.lock:
            yield
            self.save()

    def set_state(self, execution_id: str, state: str, *, failed_task: str | None = None) -> None:
        """Move an execution to `state` (in-process tests play Kestra's executor this way)."""
        with self.change():
            execution = self.executions[execution_id]
            push_state(execution["state"], state)
            if failed_task:
                execution["taskRunList"] = [
                    {
                        "id": short_id(),
                        "taskId": failed_task,
                        "state": {"current": state},
                        "attempts": [{"state": {"current": state}}] * 2,
                        "outputs": {},
                    }
                ]

    def by_job(self, job_id: str) -> list[dict[str, Any]]:
        """The executions that ran (or will run) this job: its id is in their `jobs` input."""
        with self.lock:
            return [e for e in self.executions.values() if job_id in jobs_of(e)]

    def save(self) -> None:
        if self.store is None:
            return
        with self.lock:  # one writer at a time: they share the temp file
            data = {name: getattr(self, name) for name in _STORED}
            tmp = self.store.with_name(self.store.name + ".tmp")
            tmp.write_text(json.dumps({**data, "faults": self.faults.model_dump()}))
            os.replace(tmp, self.store)

    def load(self) -> None:
        if self.store is None or not self.store.exists():
            return
        data = json.loads(self.store.read_text())
        with self.lock:
            for name in _STORED:
                setattr(self, name, data.get(name, getattr(self, name)))
            self.faults = Faults.model_validate(data.get("faults", {}))

    def log(self, execution_id: str, message: str, *, task: str | None = None) -> None:
        with self.lock:
            self.logs.setdefault(execution_id, []).append(message)
        print(f"[{execution_id}]{f' {task}' if task else ''} {message}", flush=True)

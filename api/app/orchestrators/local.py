"""Local adapter for development without Docker or Kestra.

Runs the same detection script as the flow (flows/detect.py) in a subprocess on the same
files, and reports the outcome in the port's phases through the same code path a Kestra
callback takes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from app.logs import batch_context
from app.orchestrators.base import (
    Execution,
    ExecutionNotFound,
    ExportRequest,
    OrchestratorUnavailable,
    Phase,
    Submission,
)

log = logging.getLogger(__name__)

Reporter = Callable[[Execution], None]


class LocalOrchestrator:
    name = "local"

    def __init__(self, settings: Settings, reporter: Reporter) -> None:
        self._python = settings.local_python
        self._script = settings.local_detect_script.resolve()
        self._data_dir = settings.shared_data_dir.resolve()
        self._timeout_s = settings.local_timeout_s
        allow = "true" if settings.allow_model_download else "false"
        self._env = {**os.environ, "YOLO_ALLOW_DOWNLOAD": allow}
        self._reporter = reporter
        self._pool = ThreadPoolExecutor(settings.local_max_parallel, thread_name_prefix="local-run")
        self._executions: dict[str, Execution] = {}
        self._exports: dict[str, str] = {}  # export id -> its execution's id
        self._lock = threading.Lock()

    def submit(self, submission: Submission) -> Execution:
        execution = _execution(f"local-{uuid.uuid4().hex}", Phase.PENDING, submission.batch_id)
        self._set(execution)
        self._pool.submit(self._run, execution, submission)
        return execution

    def start_export(self, request: ExportRequest) -> Execution:
        """`detect.py --export` in a subprocess. Not reported: the reconciler asks `get`
        (after a restart the execution is unknown, and the reconciler starts it again)."""
        with self._lock:
            running = self._exports.get(request.export_id)
            if running is not None and self._executions[running].phase is not Phase.FAILED:
                return self._executions[running]
        execution = _execution(f"local-{uuid.uuid4().hex}", Phase.PENDING)
        with self._lock:
            self._executions[execution.id] = execution
            self._exports[request.export_id] = execution.id
        self._pool.submit(self._run_export, execution.id, request)
        return execution

    def find_by_batch(self, batch_id: str) -> Execution | None:
        with self._lock:
            return next((e for e in self._executions.values() if e.batch_id == batch_id), None)

    def get(self, execution_id: str) -> Execution:
        with self._lock:
            execution = self._executions.get(execution_id)
        if execution is None:
            # Executions live in this process only; after a restart they are gone.
            raise ExecutionNotFound(f"no local execution {execution_id}")
        return execution

    def ping(self) -> None:
        if not self._script.is_file():
            raise OrchestratorUnavailable(f"detection script not found: {self._script}")
        if not Path(self._python).exists():
            raise OrchestratorUnavailable(f"python interpreter not found: {self._python}")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # The run
    def _run(self, execution: Execution, submission: Submission) -> None:
        with batch_context(submission.batch_id):
            self._set(_execution(execution.id, Phase.RUNNING, submission.batch_id))
            self._reporter(self.get(execution.id))
            final = self._execute(execution.id, submission)
            self._set(final)
            log.info("local.finished", extra={"execution_id": final.id, "state": final.state})
            self._reporter(final)

    def _run_export(self, execution_id: str, request: ExportRequest) -> None:
        self._set(_execution(execution_id, Phase.RUNNING))
        command = [
            self._python,
            str(self._script),
            "--export",
            request.format,
            "--data-dir",
            str(self._data_dir),
            "--model",
            request.model,
            "--imgsz",
            str(request.image_size),
        ]
        final = self._outcome(execution_id, None, command, "export")
        self._set(final)
        log.info("local.export_finished", extra={"execution_id": final.id, "state": final.state})

    def _execute(self, execution_id: str, submission: Submission) -> Execution:
        command = [
            self._python,
            str(self._script),
            "--data-dir",
            str(self._data_dir),
            "--batch-id",
            submission.batch_id,
            "--model",
            submission.model,
            "--conf",
            repr(submission.confidence),
            "--imgsz",
            str(submission.image_size),
            "--jobs",
            *(f"{job_id}={path}" for job_id, path in submission.jobs),
        ]
        return self._outcome(execution_id, submission.batch_id, command, "detection")

    def _outcome(
        self, execution_id: str, batch_id: str | None, command: list[str], what: str
    ) -> Execution:
        """Run detect.py's `command`; its exit status as the phase, its last stderr line as
        the reason."""
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                check=False,
                env=self._env,
            )
        except subprocess.TimeoutExpired:
            return _execution(
                execution_id,
                Phase.FAILED,
                batch_id,
                f"the {what} script timed out after {self._timeout_s:.0f} s",
            )
        except OSError as exc:
            return _execution(
                execution_id,
                Phase.FAILED,
                batch_id,
                f"cannot start the {what} script: {exc}",
            )
        if proc.returncode == 0:
            return _execution(execution_id, Phase.SUCCEEDED, batch_id)
        last_line = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return _execution(
            execution_id,
            Phase.FAILED,
            batch_id,
            f"the {what} script exited {proc.returncode}: {last_line}",
        )

    def _set(self, execution: Execution) -> None:
        with self._lock:
            self._executions[execution.id] = execution


def _execution(
    execution_id: str, phase: Phase, batch_id: str | None = None, reason: str | None = None
) -> Execution:
    """A subprocess has no states of its own: the phase's name is the state; a final one
    ends now."""
    final = phase in (Phase.SUCCEEDED, Phase.FAILED)
    ended_at = datetime.now(UTC) if final else None
    return Execution(execution_id, phase.value, phase, batch_id, reason, ended_at)

"""Kestra adapter: one httpx client for Kestra's REST API (OSS 1.x, tenant `main`)."""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    after_nothing,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_incrementing,
)

from app.config import Settings
from app.orchestrators.base import (
    Execution,
    ExecutionNotFound,
    ExportRequest,
    OrchestratorRejected,
    OrchestratorUnavailable,
    Phase,
    Submission,
)

log = logging.getLogger(__name__)

BATCH_LABEL = "batch_id"
EXPORT_LABEL = "export_id"
SEARCH_EVERY_S = 0.25  # while a new execution may still be queued (the visibility grace)
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
# Kestra's states as the port's phases. An unknown one has no phase: it is logged and changes
# nothing (never finish a job on a state we do not understand).
_PHASES: dict[str, Phase] = {
    state: phase
    for phase, states in (
        (Phase.PENDING, "CREATED QUEUED SUBMITTED"),
        (Phase.RUNNING, "RUNNING PAUSED RESTARTED RETRYING KILLING BREAKPOINT"),
        (Phase.SUCCEEDED, "SUCCESS WARNING"),
        (Phase.FAILED, "FAILED KILLED CANCELLED SKIPPED RETRIED RESUBMITTED"),
    )
    for state in states.split()
}
_EXPLAINED = ("FAILED", "KILLED", "CANCELLED")  # states whose task runs say what went wrong


class _Transient(OrchestratorUnavailable):
    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        super().__init__(message)
        # False only when the request provably never reached Kestra (connect failed).
        self.maybe_sent = maybe_sent


class KestraOrchestrator:
    name = "kestra"

    def __init__(
        self, settings: Settings, *, retry_attempts: int = 3, retry_backoff_s: float = 0.5
    ) -> None:
        password = settings.kestra_password.get_secret_value() if settings.kestra_password else ""
        connect_s, read_s = settings.kestra_connect_timeout_s, settings.kestra_read_timeout_s
        self._client = httpx.Client(
            base_url=settings.kestra_url.rstrip("/"),
            auth=httpx.BasicAuth(settings.kestra_username, password),
            timeout=httpx.Timeout(connect=connect_s, read=read_s, write=read_s, pool=connect_s),
        )
        self._namespace = settings.kestra_namespace
        self._flow_id = settings.kestra_flow_id
        self._export_flow_id = settings.kestra_export_flow_id
        self._attempts = retry_attempts
        self._backoff_s = retry_backoff_s
        self._grace_s = settings.kestra_visibility_grace_s
        # Batches whose create may have reached Kestra without an answer, and when: Kestra
        # queues a new execution, so search finds it only a little later.
        self._unclear: dict[str, float] = {}

    def submit(self, submission: Submission) -> Execution:
        """Create an execution labelled with the batch id. A connect failure is just retried
        (nothing reached Kestra); after a timeout or 5xx it may exist: look its label up first."""
        retrying = self._retrying(after=_log_submit_retry)
        return retrying(self._adopt_or_create, submission)

    def find_by_batch(self, batch_id: str) -> Execution | None:
        """The batch's execution. After an unclear create of this batch, keep looking until
        the grace has passed since it (KESTRA_VISIBILITY_GRACE_S): Kestra shows a new
        execution to search only once it has left its queue, and "not found" before then
        would start the batch twice."""
        since = self._unclear.get(batch_id)
        deadline = time.monotonic() if since is None else since + self._grace_s
        polling = Retrying(
            retry=retry_if_result(lambda found: found is None),
            stop=stop_after_delay(max(deadline - time.monotonic(), 0.0)),
            wait=lambda _: min(SEARCH_EVERY_S, max(deadline - time.monotonic(), 0.0)),
            retry_error_callback=lambda _: None,  # the grace is over: not found
        )
        found = polling(self._search_batch, batch_id)
        self._unclear.pop(batch_id, None)
        return found

    def _search_batch(self, batch_id: str) -> Execution | None:
        return self._search(self._flow_id, BATCH_LABEL, batch_id)

    def _search(self, flow_id: str, label: str, value: str) -> Execution | None:
        params = {
            "filters[namespace][EQUALS]": self._namespace,
            "filters[flowId][EQUALS]": flow_id,
            f"filters[labels][EQUALS][{label}]": value,
            "size": "25",
        }
        body = self._read("/api/v1/main/executions/search", params)
        found = [self._parse(e) for e in body.get("results", []) if _label(e, label) == value]
        # Prefer one that is alive or succeeded over a failed duplicate.
        return min(found, key=lambda e: e.phase is Phase.FAILED, default=None)

    def start_export(self, request: ExportRequest) -> Execution:
        """The export flow's execution labelled with the export id: one that is alive or
        succeeded is adopted, else one is created (once: a transient failure is raised, and
        the reconciler's next call searches again)."""
        found = self._search(self._export_flow_id, EXPORT_LABEL, request.export_id)
        if found is not None and found.phase is not Phase.FAILED:
            return found
        fields = {
            "export_id": request.export_id,
            "model": request.model,
            "format": request.format,
            "image_size": str(request.image_size),
        }
        body = self._request(
            "POST",
            f"/api/v1/main/executions/{self._namespace}/{self._export_flow_id}",
            params={"labels": f"{EXPORT_LABEL}:{request.export_id}"},
            files=[(name, (None, value)) for name, value in fields.items()],
        )
        return self._parse(body)

    def get(self, execution_id: str) -> Execution:
        try:
            body = self._read(f"/api/v1/main/executions/{execution_id}")
        except OrchestratorRejected as exc:
            if exc.status_code == 404:
                raise ExecutionNotFound(f"Kestra has no execution {execution_id}") from None
            raise
        return self._parse(body)

    def ping(self) -> None:
        """Reachable, credentials accepted, and our flow is loaded."""
        try:
            self._request("GET", f"/api/v1/main/flows/{self._namespace}/{self._flow_id}")
        except OrchestratorRejected as exc:
            raise OrchestratorUnavailable(str(exc)) from None

    def close(self) -> None:
        self._client.close()

    def _adopt_or_create(self, submission: Submission) -> Execution:
        """One attempt: never create again while an earlier create may have reached Kestra."""
        batch_id = submission.batch_id
        if batch_id in self._unclear:
            try:
                found = self.find_by_batch(batch_id)
            except _Transient as exc:  # it had its own retries: end here, as unavailable
                raise OrchestratorUnavailable(str(exc)) from None
            if found is not None:
                return found
        try:
            return self._create(submission)
        except _Transient as exc:
            if exc.maybe_sent:
                self._unclear[batch_id] = time.monotonic()
            raise

    def _create(self, submission: Submission) -> Execution:
        # Kestra takes inputs as multipart/form-data, one plain field per input id; the flow
        # validates `jobs` (space-separated job_id=image_path pairs).
        fields = {
            "batch_id": submission.batch_id,
            "jobs": " ".join(f"{job_id}={path}" for job_id, path in submission.jobs),
            "model": submission.model,
            "confidence": repr(submission.confidence),
            "image_size": str(submission.image_size),
        }
        files = [(name, (None, value)) for name, value in fields.items()]
        body = self._request(
            "POST",
            f"/api/v1/main/executions/{self._namespace}/{self._flow_id}",
            params={"labels": f"{BATCH_LABEL}:{submission.batch_id}"},
            files=files,
        )
        return self._parse(body)

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise _Transient(f"cannot connect to Kestra: {exc}", maybe_sent=False) from None
        except httpx.TransportError as exc:  # timeouts, resets mid-request
            raise _Transient(f"Kestra did not answer: {exc!r}", maybe_sent=True) from None
        if response.status_code in _TRANSIENT_STATUS:
            raise _Transient(f"Kestra answered {response.status_code}", maybe_sent=True)
        if response.status_code >= 400:
            raise self._rejection(response)
        try:
            data = response.json()
        except ValueError:
            raise _Transient(
                "Kestra answered with a body that is not JSON", maybe_sent=True
            ) from None
        return data if isinstance(data, dict) else {}

    def _read(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """Reads are safe to repeat on transient failures, a few times."""
        return self._retrying()(self._request, "GET", path, params=params)

    def _retrying(self, after: Callable[[RetryCallState], None] = after_nothing) -> Retrying:
        """The budget for one call: transient failures only, each wait longer."""
        return Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_incrementing(start=self._backoff_s, increment=self._backoff_s),
            after=after,
            reraise=True,
        )

    @staticmethod
    def _rejection(response: httpx.Response) -> OrchestratorRejected:
        status = response.status_code
        detail = response.text[:300].strip()
        if status in (401, 403):
            return OrchestratorRejected(
                f"Kestra rejected our credentials ({status}); "
                "check KESTRA_USERNAME and KESTRA_PASSWORD",
                status,
            )
        if status == 404:
            return OrchestratorRejected(f"Kestra: not found ({detail or 'no detail'})", status)
        if status == 409:
            return OrchestratorRejected(f"Kestra: the flow is disabled ({detail})", status)
        return OrchestratorRejected(
            f"Kestra refused the request ({status}): {detail}",
            status,
            job_fault=status in (400, 422),
        )

    @staticmethod
    def _parse(body: dict[str, Any]) -> Execution:
        labels = {item.get("key"): item.get("value") for item in body.get("labels") or []}
        state_object = body.get("state") or {}
        state = state_object.get("current", "CREATED")
        return Execution(
            id=str(body["id"]),
            state=state,
            phase=_PHASES.get(state.upper()),
            batch_id=labels.get(BATCH_LABEL),
            reason=_failure_reason(body) if state in _EXPLAINED else None,
            ended_at=_instant(state_object.get("endDate")),
        )


def _label(body: dict[str, Any], key: str) -> object:
    labels = body.get("labels") or []
    return next((item.get("value") for item in labels if item.get("key") == key), None)


def _instant(value: object) -> datetime | None:
    """Kestra's ISO-8601 instant (`...Z`, up to nanoseconds), or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _log_submit_retry(attempt: RetryCallState) -> None:
    reason = attempt.outcome.exception() if attempt.outcome else None
    log.warning(
        "kestra.submit_retry", extra={"attempt": attempt.attempt_number, "reason": str(reason)}
    )


def _failure_reason(body: dict[str, Any]) -> str:
    """Kestra's account of a failure: which task ended how, after how many attempts."""
    state = body["state"]["current"]
    parts = []
    for run in body.get("taskRunList") or []:
        run_state = (run.get("state") or {}).get("current")
        if run_state in ("FAILED", "KILLED"):
            attempts = len(run.get("attempts") or []) or 1
            parts.append(
                f"task '{run.get('taskId')}' {run_state.lower()} after {attempts} attempt(s)"
            )
    detail = "; ".join(parts) if parts else "no task details"
    return f"Kestra execution {body['id']} ended {state}: {detail}"

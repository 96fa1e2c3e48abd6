"""Send queued jobs to the orchestrator. Nothing is lost if it is down or we crash.

A job is committed as `queued` before anything is sent. Each dispatch attempt is counted
(and the job leased) in its own transaction first, so after a crash or an unclear answer
(timeout, 5xx) the next attempt looks the job's execution up by label instead of starting a
second one.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.jobs import repository, service
from app.logs import job_context
from app.orchestrators.base import (
    Orchestrator,
    OrchestratorRejected,
    OrchestratorUnavailable,
    Submission,
)
from app.workers.periodic import Worker

log = logging.getLogger(__name__)


class Dispatcher(Worker):
    name = "dispatcher"

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], orchestrator: Orchestrator
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._orchestrator = orchestrator
        super().__init__(settings.dispatch_interval_s)

    def run_once(self) -> int:
        now = service.utcnow()
        lease = timedelta(seconds=self._settings.dispatch_lease_s)
        with session_scope(self._sessions) as session:
            claimed = repository.claim_dispatchable(
                session, now, self._settings.dispatch_batch_size
            )
            work: list[tuple[Submission, int]] = []
            for job in claimed:
                job.dispatch_attempts += 1
                job.next_dispatch_at = now + lease  # another dispatcher skips it meanwhile
                work.append((service.submission_for(job), job.dispatch_attempts))
        for index, (submission, attempts) in enumerate(work):
            with job_context(submission.job_id):
                reachable = self._dispatch(submission, attempts)
            if not reachable:
                # Don't spend the orchestrator's timeouts on every job of the batch.
                for later, later_attempts in work[index + 1 :]:
                    with job_context(later.job_id):
                        self._postpone(later.job_id, later_attempts, "orchestrator unavailable")
                break
        return len(work)

    def _dispatch(self, submission: Submission, attempts: int) -> bool:
        """Dispatch one job; False when the orchestrator could not be reached."""
        job_id = submission.job_id
        try:
            execution = None
            if attempts > 1:  # an earlier attempt may have started it: never start twice
                execution = self._orchestrator.find_by_job(job_id)
            if execution is None:
                execution = self._orchestrator.submit(submission)
        except OrchestratorUnavailable as exc:
            self._postpone(job_id, attempts, str(exc))
            return False
        except OrchestratorRejected as exc:
            if exc.job_fault:
                with session_scope(self._sessions) as session:
                    service.fail(session, job_id, f"the orchestrator refused the job: {exc}")
                return True
            # Our configuration is wrong (credentials, flow missing): keep the job queued.
            log.error("dispatch.rejected", extra={"reason": str(exc)})
            self._postpone(job_id, 10**6, str(exc))
            return True
        with session_scope(self._sessions) as session:
            service.mark_submitted(session, job_id, execution)
        log.info("dispatch.submitted", extra={"execution_id": execution.id})
        return True

    def _postpone(self, job_id: str, attempts: int, reason: str) -> None:
        until = service.utcnow() + service.backoff(attempts, self._settings.dispatch_max_backoff_s)
        log.warning("dispatch.deferred", extra={"reason": reason, "until": until.isoformat()})
        with session_scope(self._sessions) as session:
            service.postpone_dispatch(session, job_id, until, reason)

"""Send queued jobs to the orchestrator in micro-batches: jobs with the same inference
parameters share one execution (one container, one model load), up to BATCH_MAX_JOBS; a partial
batch leaves once its oldest job waited BATCH_WINDOW_S. Each attempt is committed (jobs leased,
batch id set) before sending, so after a crash or unclear answer the batch is resent whole under
its id, after a label lookup: never started twice, never lost."""

import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.jobs import repository, service
from app.jobs.models import Job
from app.logs import batch_context
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
        self._window = timedelta(seconds=settings.batch_window_s)
        self._hold_until: datetime | None = None  # when held jobs fill their window
        super().__init__(settings.dispatch_interval_s)

    def run_once(self) -> int:
        """Send what is due, as batches; return how many jobs were sent."""
        now = service.utcnow()
        lease = timedelta(seconds=self._settings.dispatch_lease_s)
        with session_scope(self._sessions) as session:
            batches = self._form_batches(session, now)
            work: list[tuple[Submission, bool, int]] = []
            for batch_id, (jobs, resend) in batches.items():
                for job in jobs:
                    job.batch_id = batch_id
                    job.dispatch_attempts += 1
                    job.next_dispatch_at = now + lease  # another dispatcher skips it meanwhile
                attempts = max(job.dispatch_attempts for job in jobs)
                work.append((service.submission_for(batch_id, jobs), resend, attempts))
        for index, (submission, resend, attempts) in enumerate(work):
            with batch_context(submission.batch_id):
                reachable = self._dispatch(submission, resend, attempts)
            if not reachable:
                # Don't wait out the orchestrator's timeouts for every batch of the round.
                for later, _, later_attempts in work[index + 1 :]:
                    with batch_context(later.batch_id):
                        self._postpone(later.batch_id, later_attempts, "orchestrator unavailable")
                break
        return sum(len(submission.jobs) for submission, _, _ in work)

    def next_wait_s(self) -> float:
        """Sleep until held jobs fill their window, or one interval (an upload wakes us)."""
        if self._hold_until is None:
            return super().next_wait_s()
        remaining = (self._hold_until - service.utcnow()).total_seconds()
        return min(max(remaining, 0.005), super().next_wait_s())

    def _form_batches(self, session: Session, now: datetime) -> dict[str, tuple[list[Job], bool]]:
        """Claim due jobs, grouped: batch id -> (jobs, resend of an earlier attempt)."""
        limit = self._settings.batch_max_jobs
        due = repository.claim_dispatchable(session, now, limit)
        self._hold_until = None
        batches: dict[str, tuple[list[Job], bool]] = {}
        # Batches whose earlier attempt failed or was unclear: resend whole, under their id.
        earlier = sorted({job.batch_id for job in due if job.batch_id is not None})
        if earlier:
            members = {job.id: job for job in due if job.batch_id is not None}
            members.update({job.id: job for job in repository.queued_in_batches(session, earlier)})
            for job in sorted(members.values(), key=lambda j: (j.created_at, j.id)):
                assert job.batch_id is not None
                batches.setdefault(job.batch_id, ([], True))[0].append(job)
        fresh = [job for job in due if job.batch_id is None]
        if fresh and len(fresh) < limit:
            ready_at = min(job.created_at for job in fresh) + self._window
            if ready_at > now:  # not full, not old enough: wait for more
                self._hold_until = ready_at
                return batches
        groups: defaultdict[tuple[str, float, int], list[Job]] = defaultdict(list)
        for job in fresh:  # in creation order: one group can't leave its elders behind
            groups[(job.model, job.confidence, job.image_size)].append(job)
        for group in groups.values():
            for start in range(0, len(group), limit):
                batches[str(uuid.uuid4())] = (group[start : start + limit], False)
        return batches

    def _dispatch(self, submission: Submission, resend: bool, attempts: int) -> bool:
        """False when the orchestrator could not be reached."""
        batch_id = submission.batch_id
        try:
            execution = None
            if resend:  # an earlier attempt may have started it: never start twice
                execution = self._orchestrator.find_by_batch(batch_id)
            if execution is None:
                execution = self._orchestrator.submit(submission)
        except OrchestratorUnavailable as exc:
            self._postpone(batch_id, attempts, str(exc))
            return False
        except OrchestratorRejected as exc:
            if exc.job_fault:
                with session_scope(self._sessions) as session:
                    service.fail_batch(
                        session, batch_id, f"the orchestrator refused the job: {exc}"
                    )
                return True
            # Our configuration is wrong (credentials, flow missing): keep the jobs queued.
            log.error("dispatch.rejected", extra={"reason": str(exc)})
            self._postpone(batch_id, 10**6, str(exc))
            return True
        with session_scope(self._sessions) as session:
            service.mark_submitted(session, batch_id, execution)
        log.info(
            "dispatch.submitted", extra={"execution_id": execution.id, "jobs": len(submission.jobs)}
        )
        return True

    def _postpone(self, batch_id: str, attempts: int, reason: str) -> None:
        until = service.utcnow() + service.backoff(attempts, self._settings.dispatch_max_backoff_s)
        log.warning("dispatch.deferred", extra={"reason": reason, "until": until.isoformat()})
        with session_scope(self._sessions) as session:
            service.postpone_dispatch(session, batch_id, until, reason)

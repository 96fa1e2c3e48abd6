"""Send queued jobs to the orchestrator in micro-batches: jobs with the same inference
parameters share one execution (one container, one model load), up to BATCH_MAX_JOBS. While
other jobs are with the orchestrator, a partial batch waits for company until its oldest job
waited BATCH_WINDOW_S; on an idle stack nothing would run beside it, so it leaves at once (a
lone upload never waits, and a burst groups behind its first job). Each attempt is committed
(jobs leased, batch id set) before sending, so after a crash or unclear answer the batch is
resent whole under its id, after a label lookup: never started twice, never lost."""

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.jobs import repository, service
from app.jobs.models import Job
from app.logs import batch_context
from app.metrics.events import record_batch
from app.orchestrators.base import (
    Orchestrator,
    OrchestratorRejected,
    OrchestratorUnavailable,
    Submission,
)
from app.workers.periodic import Worker

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    """Claimed jobs that travel together; `resend`: an earlier attempt may have started it."""

    jobs: list[Job]
    resend: bool


class Plan(NamedTuple):
    """A round's batches, by batch id, and when jobs held for their window fill it."""

    batches: dict[str, Batch]
    hold_until: datetime | None


class Dispatch(NamedTuple):
    """One leased batch on its way to the orchestrator."""

    submission: Submission
    resend: bool  # look it up before starting it: never start twice
    attempts: int  # the most any of its jobs has had (sets the back-off)


class Dispatcher(Worker):
    name = "dispatcher"

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], orchestrator: Orchestrator
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._orchestrator = orchestrator
        self._window = timedelta(seconds=settings.batch_window_s)
        self._hold_until: datetime | None = None  # from the last round's plan
        super().__init__(settings.dispatch_interval_s)

    def run_once(self) -> int:
        """Send what is due, as batches; return how many jobs were sent."""
        now = service.utcnow()
        self._hold_until = None  # a failed round waits a whole interval
        with session_scope(self._sessions) as session:
            plan = self._form_batches(session, now)
            work = [self._lease(batch_id, batch, now) for batch_id, batch in plan.batches.items()]
        self._hold_until = plan.hold_until
        self._send(work)
        return sum(len(item.submission.jobs) for item in work)

    def next_wait_s(self) -> float:
        """Sleep until held jobs fill their window, or one interval (an upload wakes us)."""
        if self._hold_until is None:
            return super().next_wait_s()
        remaining = (self._hold_until - service.utcnow()).total_seconds()
        return min(max(remaining, 0.005), super().next_wait_s())

    def _lease(self, batch_id: str, batch: Batch, now: datetime) -> Dispatch:
        """Count the attempt and lease the jobs (committed before anything is sent)."""
        lease_until = now + timedelta(seconds=self._settings.dispatch_lease_s)
        for job in batch.jobs:
            job.batch_id = batch_id
            job.dispatch_attempts += 1
            job.next_dispatch_at = lease_until  # another dispatcher skips it meanwhile
        attempts = max(job.dispatch_attempts for job in batch.jobs)
        return Dispatch(service.submission_for(batch_id, batch.jobs), batch.resend, attempts)

    def _send(self, work: list[Dispatch]) -> None:
        for index, item in enumerate(work):
            with batch_context(item.submission.batch_id):
                reachable = self._dispatch(item)
            if not reachable:
                # Don't wait out the orchestrator's timeouts for every batch of the round.
                for later in work[index + 1 :]:
                    with batch_context(later.submission.batch_id):
                        self._postpone(
                            later.submission.batch_id, later.attempts, "orchestrator unavailable"
                        )
                return

    def _form_batches(self, session: Session, now: datetime) -> Plan:
        """Claim due jobs: earlier batches to resend whole, then fresh ones unless held."""
        due = repository.claim_dispatchable(session, now, self._settings.batch_max_jobs)
        batches = _resends(session, due)
        fresh = [job for job in due if job.batch_id is None]
        hold_until = self._held_until(session, fresh, now)
        if hold_until is None:
            batches.update(self._fresh_batches(fresh))
        return Plan(batches, hold_until)

    def _held_until(self, session: Session, fresh: list[Job], now: datetime) -> datetime | None:
        """When a partial batch's oldest job has waited its window, if that is still ahead and
        the orchestrator is busy with other jobs (on an idle stack waiting gains nothing)."""
        if not fresh or len(fresh) >= self._settings.batch_max_jobs:
            return None
        ready_at = min(job.created_at for job in fresh) + self._window
        if ready_at <= now or not repository.any_in_flight(session):
            return None
        return ready_at

    def _fresh_batches(self, fresh: list[Job]) -> dict[str, Batch]:
        """Jobs with the same inference parameters, in creation order, up to the batch size."""
        limit = self._settings.batch_max_jobs
        groups: defaultdict[tuple[str, float, int], list[Job]] = defaultdict(list)
        for job in fresh:  # in creation order: one group can't leave its elders behind
            groups[(job.model, job.confidence, job.image_size)].append(job)
        return {
            str(uuid.uuid4()): Batch(group[start : start + limit], False)
            for group in groups.values()
            for start in range(0, len(group), limit)
        }

    def _dispatch(self, item: Dispatch) -> bool:
        """False when the orchestrator could not be reached."""
        batch_id = item.submission.batch_id
        try:
            execution = None
            if item.resend:  # an earlier attempt may have started it: never start twice
                execution = self._orchestrator.find_by_batch(batch_id)
            if execution is None:
                execution = self._orchestrator.submit(item.submission)
        except OrchestratorUnavailable as exc:
            self._postpone(batch_id, item.attempts, str(exc))
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
        record_batch(len(item.submission.jobs))
        log.info(
            "dispatch.submitted",
            extra={"execution_id": execution.id, "jobs": len(item.submission.jobs)},
        )
        return True

    def _postpone(self, batch_id: str, attempts: int, reason: str) -> None:
        until = service.utcnow() + service.backoff(attempts, self._settings.dispatch_max_backoff_s)
        log.warning("dispatch.deferred", extra={"reason": reason, "until": until.isoformat()})
        with session_scope(self._sessions) as session:
            service.postpone_dispatch(session, batch_id, until, reason)


def _resends(session: Session, due: Sequence[Job]) -> dict[str, Batch]:
    """Batches whose earlier attempt failed or was unclear, whole and under their id."""
    earlier = sorted({job.batch_id for job in due if job.batch_id is not None})
    if not earlier:
        return {}
    members = {job.id: job for job in due if job.batch_id is not None}
    members.update({job.id: job for job in repository.queued_in_batches(session, earlier)})
    batches: dict[str, Batch] = {}
    for job in sorted(members.values(), key=lambda j: (j.created_at, j.id)):
        assert job.batch_id is not None
        batches.setdefault(job.batch_id, Batch([], True)).jobs.append(job)
    return batches

"""Finish jobs whose callback never came, by asking the orchestrator directly."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.jobs import repository, service
from app.logs import job_context
from app.orchestrators.base import ExecutionNotFound, Orchestrator, OrchestratorError
from app.storage import SharedStorage
from app.workers.periodic import Worker

log = logging.getLogger(__name__)
ORPHAN_SWEEP_EVERY_S = 60.0


class Reconciler(Worker):
    name = "reconciler"

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        orchestrator: Orchestrator,
        storage: SharedStorage,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._orchestrator = orchestrator
        self._storage = storage
        super().__init__(settings.reconcile_interval_s)
        self._next_sweep = 0.0

    def run_once(self) -> int:
        self._sweep_orphans()
        now = service.utcnow()
        quiet_since = now - timedelta(seconds=self._settings.reconcile_after_s)
        with session_scope(self._sessions) as session:
            stale = repository.claim_stale_active(
                session, quiet_since, self._settings.dispatch_batch_size
            )
            work = []
            for job in stale:
                job.last_checked_at = now
                work.append((job.id, job.execution_id))
        for job_id, execution_id in work:
            with job_context(job_id):
                self._reconcile(job_id, execution_id)
        return 0  # polling is never urgent: wait a full interval between rounds

    def _sweep_orphans(self) -> None:
        """Uploads left without a job by a crash mid-request; once a minute is plenty."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + ORPHAN_SWEEP_EVERY_S
        with session_scope(self._sessions) as session:
            removed = service.remove_orphan_uploads(session, self._storage, ORPHAN_SWEEP_EVERY_S)
        if removed:
            log.info("storage.orphan_uploads_removed", extra={"count": removed})

    def _reconcile(self, job_id: str, execution_id: str | None) -> None:
        try:
            execution = (
                self._orchestrator.get(execution_id)
                if execution_id
                else self._orchestrator.find_by_job(job_id)
            )
        except ExecutionNotFound:
            execution = None
        except OrchestratorError as exc:
            log.warning("reconcile.unavailable", extra={"reason": str(exc)})
            return
        with session_scope(self._sessions) as session:
            if execution is None:
                service.requeue(session, job_id, "the orchestrator has no record of the execution")
            else:
                service.apply_execution(session, self._storage, job_id, execution)

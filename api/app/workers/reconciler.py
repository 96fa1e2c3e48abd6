"""Finish jobs whose callback never came, by asking the orchestrator directly; move exports
on (start them, or finish them once their execution has ended); sweep files no job owns;
purge jobs past their retention (RETENTION_DAYS)."""

import logging
import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.exports import repository as exports_repository
from app.exports import service as exports_service
from app.jobs import intake, repository, retention, service
from app.logs import job_context
from app.models.exports import Limits
from app.orchestrators.base import Execution, ExecutionNotFound, Orchestrator, OrchestratorError
from app.storage import SharedStorage
from app.workers.periodic import Worker

log = logging.getLogger(__name__)
ORPHAN_SWEEP_EVERY_S = 60.0
PAGE = 100  # stale jobs looked at per round


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
        self._reconcile_stale()
        self.advance_exports()
        self.purge_expired()
        return 0  # polling is never urgent: wait a full interval between rounds

    def purge_expired(self) -> int:
        """Delete up to RETENTION_BATCH jobs finished RETENTION_DAYS ago (0: keep them all),
        claimed with SKIP LOCKED so each worker purges other jobs; how many."""
        days = self._settings.retention_days
        if not days:
            return 0
        cutoff = service.utcnow() - timedelta(days=days)
        limit = self._settings.retention_batch
        with session_scope(self._sessions) as session:
            purged = retention.purge_expired(session, self._storage, cutoff, limit)
        if purged:
            log.info("retention.purged", extra={"count": purged, "cutoff": cutoff.isoformat()})
        return purged

    def advance_exports(self) -> None:
        """Each unfinished export, one step; the round ends where the orchestrator cannot
        answer (what was done is kept)."""
        limits = Limits.of(self._settings)
        with session_scope(self._sessions) as session:
            for export in exports_repository.claim_unfinished(session, PAGE):
                try:
                    exports_service.advance(self._storage, self._orchestrator, limits, export)
                except OrchestratorError as exc:
                    log.warning("reconcile.export_unavailable", extra={"reason": str(exc)})
                    return

    def _reconcile_stale(self) -> None:
        """Ask about submitted/running jobs not heard of for RECONCILE_AFTER_S."""
        now = service.utcnow()
        quiet_since = now - timedelta(seconds=self._settings.reconcile_after_s)
        with session_scope(self._sessions) as session:
            stale = repository.claim_stale_active(session, quiet_since, PAGE)
            work = []
            for job in stale:
                job.last_checked_at = now
                work.append((job.id, job.execution_id, job.batch_id))
        asked: dict[tuple[str | None, str | None], Execution | None] = {}
        for job_id, execution_id, batch_id in work:
            with job_context(job_id):
                key = (execution_id, batch_id)
                if key not in asked:  # one question per execution, not per job
                    try:
                        asked[key] = self._ask(execution_id, batch_id)
                    except OrchestratorError as exc:
                        log.warning("reconcile.unavailable", extra={"reason": str(exc)})
                        return
                self._reconcile(job_id, asked[key])

    def _sweep_orphans(self) -> None:
        """Remove orphan uploads and stale partial ones; once a minute is plenty."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + ORPHAN_SWEEP_EVERY_S
        with session_scope(self._sessions) as session:
            removed = intake.remove_orphan_uploads(session, self._storage, ORPHAN_SWEEP_EVERY_S)
        if removed:
            log.info("storage.orphan_uploads_removed", extra={"count": removed})
        if removed := self._storage.remove_stale_temp_files():
            log.info("storage.stale_temp_removed", extra={"count": removed})

    def _ask(self, execution_id: str | None, batch_id: str | None) -> Execution | None:
        try:
            if execution_id:
                return self._orchestrator.get(execution_id)
            return self._orchestrator.find_by_batch(batch_id) if batch_id else None
        except ExecutionNotFound:
            return None

    def _reconcile(self, job_id: str, execution: Execution | None) -> None:
        with session_scope(self._sessions) as session:
            if execution is None:
                service.requeue(session, job_id, "the orchestrator has no record of the execution")
            else:
                service.apply_execution(session, self._storage, job_id, execution)

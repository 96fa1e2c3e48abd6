"""Deliver job-end webhooks from the outbox (app.webhooks). Each attempt is leased and counted
in its own committed transaction before the POST (SKIP LOCKED: with several uvicorn workers
each row goes to one of them), and its outcome recorded in another. A crash mid-attempt leaves
the row to be sent again, under the same webhook-id, once its lease runs out: at least once,
never more than WEBHOOK_MAX_ATTEMPTS attempts."""

import logging
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.jobs.service import utcnow
from app.logs import job_context
from app.webhooks import outbox
from app.webhooks.models import Delivery, DeliveryState
from app.webhooks.sender import Outcome, Sender
from app.workers.periodic import Worker

log = logging.getLogger(__name__)
_LOST = "the last attempt's outcome was lost (the process stopped during it)"


class Attempt(NamedTuple):
    """One leased delivery on its way."""

    delivery_id: str
    job_id: str
    url: str
    payload: str
    attempts: int  # counting this one


class Deliverer(Worker):
    name = "webhooks"

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._sender = Sender(settings)
        self._policy = outbox.RetryPolicy(settings)
        # Longer than an attempt can take (resolution, connect, write, read).
        self._lease = timedelta(seconds=4 * settings.webhook_timeout_s + 30)
        super().__init__(settings.webhook_interval_s)

    def run_once(self) -> int:
        """Make one due attempt, if any; return how many rows were handled."""
        now = utcnow()
        with session_scope(self._sessions) as session:
            claimed = outbox.claim_due(session, now, limit=1)
            spent = [d for d in claimed if d.attempts >= self._policy.max_attempts]
            for lost in spent:
                # Its last attempt was leased, but its outcome never recorded (a crash).
                outbox.record(lost, Outcome(False, _LOST), self._policy, now)
            work = [self._take(d, now) for d in claimed if d not in spent]
        for attempt in work:
            with job_context(attempt.job_id):
                self._record(attempt, self._attempt(attempt))
        return len(claimed)

    def _attempt(self, attempt: Attempt) -> Outcome:
        try:
            return self._sender.send(attempt.delivery_id, attempt.url, attempt.payload)
        except Exception as exc:  # a bug must not leave the row leased for good
            log.exception("webhook.attempt_crashed")
            return Outcome(False, f"internal error: {type(exc).__name__}")

    def close(self) -> None:
        self._sender.close()

    def _take(self, delivery: Delivery, now: datetime) -> Attempt:
        """Count the attempt and lease the row (committed before anything is sent)."""
        delivery.attempts += 1
        delivery.next_attempt_at = now + self._lease
        return Attempt(
            delivery.id, delivery.job_id, delivery.url, delivery.payload, delivery.attempts
        )

    def _record(self, attempt: Attempt, outcome: Outcome) -> None:
        with session_scope(self._sessions) as session:
            delivery = outbox.get_locked(session, attempt.delivery_id)
            if delivery is None or delivery.state != DeliveryState.PENDING:
                return
            # A late failure must not reschedule a newer attempt that took over our lease.
            if outcome.delivered or delivery.attempts == attempt.attempts:
                outbox.record(delivery, outcome, self._policy, utcnow())

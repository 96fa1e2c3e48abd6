"""The outbox's rows: added with the job's end (jobs.service.transition), claimed by one
worker at a time (SELECT ... FOR UPDATE SKIP LOCKED), and the outcome of each attempt recorded
by `record`, the one place a delivery's state changes. Nothing here commits: the caller owns
the transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from app.config import Settings
from app.metrics.events import record_webhook_delivery
from app.webhooks.models import Delivery, DeliveryState
from app.webhooks.sender import Outcome

log = logging.getLogger(__name__)


def new_delivery(url: str, payload: str, now: datetime) -> Delivery:
    """A pending delivery, due at once; its id is the `webhook-id` of every attempt."""
    return Delivery(
        id=f"msg_{uuid.uuid4().hex}",
        url=url,
        payload=payload,
        state=DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


def claim_due(session: Session, now: datetime, limit: int) -> Sequence[Delivery]:
    """Pending deliveries due now, locked so concurrent workers skip them."""
    stmt = (
        select(Delivery)
        .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()


def get_locked(session: Session, delivery_id: str) -> Delivery | None:
    stmt = select(Delivery).where(Delivery.id == delivery_id).with_for_update()
    return session.scalars(stmt).one_or_none()


class RetryPolicy:
    """WEBHOOK_MAX_ATTEMPTS attempts; between them tenacity's exponential back-off with jitter
    (from WEBHOOK_BACKOFF_S, doubling, at most WEBHOOK_MAX_BACKOFF_S), kept in the row as
    next_attempt_at so it holds across restarts."""

    def __init__(self, settings: Settings) -> None:
        self.max_attempts = settings.webhook_max_attempts
        self._wait = wait_exponential_jitter(
            multiplier=settings.webhook_backoff_s,
            max=settings.webhook_max_backoff_s,
            jitter=settings.webhook_backoff_s,
        )

    def delay(self, attempts: int) -> timedelta:
        """How long to wait after the `attempts`-th failed attempt."""
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = attempts
        return timedelta(seconds=self._wait(state))


def record(delivery: Delivery, outcome: Outcome, policy: RetryPolicy, now: datetime) -> None:
    """The one place an attempt's outcome lands: delivered, retried later, or failed for good
    after the last attempt; each counted in yolo_webhook_deliveries_total by that outcome."""
    delivery.updated_at = now
    extra = {"webhook_id": delivery.id, "job_id": delivery.job_id, "attempts": delivery.attempts}
    if outcome.delivered:
        delivery.state = DeliveryState.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        delivery.last_error = None
        log.info("webhook.delivered", extra=extra)
        record_webhook_delivery("delivered")
        return
    delivery.last_error = outcome.error
    if delivery.attempts >= policy.max_attempts:
        delivery.state = DeliveryState.FAILED
        delivery.next_attempt_at = None
        log.warning("webhook.failed", extra={**extra, "reason": outcome.error})
        record_webhook_delivery("failed")
        return
    delivery.next_attempt_at = now + policy.delay(delivery.attempts)
    log.info(
        "webhook.retry",
        extra={**extra, "reason": outcome.error, "at": delivery.next_attempt_at.isoformat()},
    )
    record_webhook_delivery("retrying")

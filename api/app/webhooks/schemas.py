"""A job's webhook as its owner sees it (in the job's JSON)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.webhooks.models import Delivery, DeliveryState


class WebhookOut(BaseModel):
    url: str
    state: DeliveryState = Field(
        description="`pending` until a 2xx answer (`delivered`) or the last attempt (`failed`)."
    )
    attempts: int
    last_error: str | None = Field(description="Why the last attempt did not deliver it.")
    next_attempt_at: datetime | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, url: str | None, delivery: Delivery | None) -> WebhookOut | None:
        """None without a URL; pending with no attempt while the job has not ended."""
        if delivery is not None:
            return cls.model_validate(delivery, from_attributes=True)
        if url is None:
            return None
        return cls(
            url=url,
            state=DeliveryState.PENDING,
            attempts=0,
            last_error=None,
            next_attempt_at=None,
            delivered_at=None,
        )

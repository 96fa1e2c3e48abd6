"""Events, counted where they happen: batch sizes, dispatch and end-to-end latency, inference
time, callback lag, webhook deliveries. With several uvicorn workers prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR) writes each worker's values to files that one
scrape adds up. Job observations wait for their transaction's commit: a rolled-back change
is not counted, and the retry that makes it again is counted once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session, object_session

from app.jobs.models import Job, JobStatus

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
INFERENCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ENDS = (JobStatus.SUCCEEDED, JobStatus.FAILED)
VIAS = ("callback", "poll")  # how the API learned that an execution ended
_PENDING = "metrics.pending"  # Session.info key: observations waiting for the commit


class Events:
    """The event metrics of this process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batch_size = Histogram(
            "yolo_batch_size",
            "Jobs per execution sent to the orchestrator.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.dispatch_latency = Histogram(
            "yolo_dispatch_latency_seconds",
            "From a job's upload to its leaving the queue for the orchestrator.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "yolo_job_duration_seconds",
            "End to end: from a job's upload to its final state, by that state.",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "yolo_inference_seconds",
            "Model inference time of a succeeded job, as the detection script measured it.",
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self.callback_lag = Histogram(
            "yolo_callback_lag_seconds",
            "From an execution's end (the orchestrator's end date) to the API recording a "
            "job's final state from it; via: callback, or poll (the reconciler, when no "
            "callback came).",
            ["via"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "yolo_webhook_deliveries",
            "Webhook delivery attempts, by outcome: delivered, retrying (failed, tried again "
            "later) or failed (the last attempt failed).",
            ["outcome"],
            registry=self.registry,
        )
        for status in ENDS:  # shown at zero before the first one
            self.job_duration.labels(status.value)
        for via in VIAS:
            self.callback_lag.labels(via)


@cache
def events() -> Events:
    """Created on first use (the lifespan's), not at import: in multiprocess mode creating
    them writes files into PROMETHEUS_MULTIPROC_DIR, which start-up checks first."""
    return Events()


def record_batch(size: int) -> None:
    """A batch of `size` jobs was handed to the orchestrator."""
    events().batch_size.observe(size)


def record_webhook_delivery(outcome: str) -> None:
    """One webhook delivery attempt ended with `outcome` (app.webhooks.outbox.record)."""
    events().webhook_deliveries.labels(outcome).inc()


def record_transition(job: Job, source: JobStatus, target: JobStatus, now: datetime) -> None:
    """`job` moved from `source` to `target` at `now` (jobs.service.transition)."""
    metrics = events()
    observations: list[Callable[[], None]] = []
    waited_s = _seconds(job.created_at, now)
    if source is JobStatus.QUEUED and target in (JobStatus.SUBMITTED, JobStatus.RUNNING):
        observations.append(lambda: metrics.dispatch_latency.observe(waited_s))
    if target in ENDS:
        duration = metrics.job_duration.labels(target.value)
        observations.append(lambda: duration.observe(waited_s))
    if target is JobStatus.SUCCEEDED and job.inference_ms is not None:
        inference_s = job.inference_ms / 1000
        observations.append(lambda: metrics.inference.observe(inference_s))
    for observe in observations:
        _after_commit(job, observe)


def record_callback_lag(job: Job, via: str, ended_at: datetime | None, now: datetime) -> None:
    """`job` got its final state at `now` from an execution that ended at `ended_at`
    (unknown: nothing is observed; a clock ahead of ours counts as no lag)."""
    if ended_at is None:
        return
    lag = events().callback_lag.labels(via)
    lag_s = _seconds(ended_at, now)
    _after_commit(job, lambda: lag.observe(lag_s))


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


def _after_commit(job: Job, observe: Callable[[], None]) -> None:
    session = object_session(job)
    if session is None:
        observe()
        return
    session.info.setdefault(_PENDING, []).append(observe)


@event.listens_for(Session, "after_commit")
def _observe_committed(session: Session) -> None:
    for observe in session.info.pop(_PENDING, []):
        observe()


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)

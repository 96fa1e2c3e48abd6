"""The jobs' state, read from the database at each scrape: right across workers and restarts.
One grouped query over the jobs table (its cost grows with the table: README, Metrics)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.jobs.models import Job, JobStatus
from app.jobs.service import utcnow

log = logging.getLogger(__name__)


class JobStateCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "yolo_database_up", "1 when this scrape could read the jobs' state, else 0."
        )
        try:
            with self._sessions() as session:
                rows = session.execute(
                    select(Job.status, func.count(), func.min(Job.created_at)).group_by(Job.status)
                ).all()
        except SQLAlchemyError as exc:
            log.warning("metrics.database_unavailable", extra={"reason": str(exc)[:200]})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        counts = {status: count for status, count, _ in rows}
        jobs = GaugeMetricFamily("yolo_jobs", "Jobs by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], counts.get(status.value, 0))
        yield jobs
        oldest = next((first for status, _, first in rows if status == JobStatus.QUEUED), None)
        yield GaugeMetricFamily(
            "yolo_queue_depth", "Jobs waiting to be sent (queued).", counts.get(JobStatus.QUEUED, 0)
        )
        yield GaugeMetricFamily(
            "yolo_queue_oldest_age_seconds",
            "Age of the oldest queued job; 0 when none is queued.",
            max((utcnow() - oldest).total_seconds(), 0.0) if oldest else 0.0,
        )

"""What a scrape costs with many jobs: printed, never asserted (run with -s to see it)."""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, text

from app.jobs.models import Job, JobStatus
from app.jobs.service import utcnow
from tests.support.api_app import resources_of
from tests.support.metrics import scrape, value

STATUSES = list(JobStatus)
# A stack that keeps up: of every 100 jobs, one in each unfinished status and 3 failed.
MIX = [JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING, *[JobStatus.FAILED] * 3]
MIX += [JobStatus.SUCCEEDED] * (100 - len(MIX))
SCRAPES = 20


def add_jobs(client: TestClient, count: int) -> None:
    """`count` rows in the MIX of statuses (volume only: no transition is the subject)."""
    now = utcnow()
    rows = [
        {
            "id": str(uuid.uuid4()),
            "status": MIX[i % len(MIX)].value,
            "image_path": "uploads/x.png",
            "image_format": "PNG",
            "size_bytes": 1,
            "sha256": "0" * 64,
            "width": 1,
            "height": 1,
            "model": "m.pt",
            "confidence": 0.25,
            "image_size": 640,
            "created_at": now - timedelta(seconds=i),
            "updated_at": now,
        }
        for i in range(count)
    ]
    with resources_of(client).sessions() as session:
        session.execute(insert(Job), rows)
        session.execute(text("ANALYZE jobs"))
        session.commit()


def test_scrape_cost(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    report = []
    total = 0
    for added in (0, 10_000, 90_000):
        if added:
            add_jobs(client, added)
        total += added
        assert sum(value(scrape(client), "yolo_jobs", status=s) for s in STATUSES) == total
        times = []
        for _ in range(SCRAPES):
            start = time.perf_counter()
            scrape(client)
            times.append(time.perf_counter() - start)
        report.append((total, statistics.median(times) * 1000))
    with resources_of(client).sessions() as session:
        plan = session.execute(
            text("EXPLAIN SELECT status, count(*), min(created_at) FROM jobs GROUP BY status")
        ).scalars()
        plan_text = " | ".join(line.strip() for line in plan)
    with capsys.disabled():
        for jobs, ms in report:
            print(f"\nscrape of /metrics with {jobs} jobs: median {ms:.1f} ms of {SCRAPES}")
        print(f"10x the jobs: {report[2][1] / report[1][1]:.1f}x the time")
        print(f"plan: {plan_text}")

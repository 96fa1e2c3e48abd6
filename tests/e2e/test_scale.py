"""docker-compose.scale.yml: two API replicas behind one port (HAProxy, docker/lb/). The
uploads go through the balancer to both replicas; both dispatch and reconcile on the one
database; every job ends exactly once (the account)."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from docker.models.containers import Container

from tests.support.stack import Stack
from tests.support.stack.account import account
from tests.support.stack.record import record
from tests.support.stack.scenes import chunks, scenes

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


def _replicas(stack: Stack, service: str) -> list[Container]:
    project = stack.docker.containers(label=f"com.docker.compose.project={stack.project}")
    return [c for c in project if c.labels.get("com.docker.compose.service") == service]


def _submitted_by(container: Container) -> int:
    """How many jobs this replica's dispatcher handed to Kestra (its log's transitions)."""
    count = 0
    for line in container.logs(stdout=True, stderr=True).decode("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        count += entry.get("event") == "job.status" and entry.get("to") == "submitted"
    return count


def test_two_replicas_behind_one_port_share_the_burst_and_every_job_ends_once(
    scaled_stack: Stack,
) -> None:
    stack = scaled_stack
    replicas = _replicas(stack, "api")
    assert len(replicas) == int(stack.env["API_REPLICAS"]) == 2
    for container in [*replicas, *_replicas(stack, "lb")]:
        assert "(healthy)" in stack.docker.status(container.name or ""), container.name
    # Only the balancer publishes a port.
    assert all(not c.attrs["HostConfig"]["PortBindings"] for c in replicas)

    batch = scenes(first_seed=7000, count=16)
    started = time.monotonic()
    ids = [job["id"] for part in chunks(batch, 2) for job in stack.api.upload(part)]
    assert len(set(ids)) == len(batch)
    # Round robin: the eight requests went to both replicas.
    served = Counter(stack.api.served_by)
    assert len(served) == 2, served
    assert "" not in served, served
    done = stack.api.wait_terminal(ids, timeout=600)
    elapsed = time.monotonic() - started
    assert {job["status"] for job in done.values()} == {"succeeded"}
    facts = account(stack)  # none lost, none run twice, no stray file or container
    assert set(facts["executions_per_job"]) == set(ids)
    record(
        "two API replicas behind one port",
        images=len(ids),
        requests_per_replica=sorted(served.values()),
        jobs_submitted_per_replica=sorted(_submitted_by(c) for c in replicas),
        executions=len({e["id"] for runs in facts["executions"].values() for e in runs}),
        seconds_to_all_succeeded=elapsed,
    )

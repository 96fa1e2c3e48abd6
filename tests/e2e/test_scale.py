"""docker-compose.scale.yml: two API replicas behind one port (HAProxy, docker/lb/). The
uploads go through the balancer to both replicas; both dispatch and reconcile on the one
database; every job ends exactly once (the account)."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections import Counter

import httpx
import pytest
from docker.models.containers import Container

from tests.support.stack import Stack
from tests.support.stack.account import account
from tests.support.stack.record import record
from tests.support.stack.scenes import chunks, scenes
from tests.support.wait import wait_until

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


def _answering(stack: Stack, requests: int = 6) -> set[str]:
    """The replica slots that answered `requests` health checks through the balancer."""
    with httpx.Client(base_url=stack.api.url, timeout=10) as client:
        return {client.get("/health").headers.get("x-served-by", "") for _ in range(requests)}


def test_a_stopped_replica_leaves_the_rotation_and_no_upload_is_lost(
    scaled_stack: Stack,
) -> None:
    """One replica stopped (`docker stop`: its jobs in flight are the other's to finish): the
    balancer takes it out, every upload lands on the other one, and it comes back in."""
    stack = scaled_stack
    both = _answering(stack)
    assert len(both) == 2, both
    stopped = _replicas(stack, "api")[0]
    stopped_at = time.monotonic()
    stopped.stop(timeout=30)
    try:
        wait_until(lambda: len(_answering(stack)) == 1, 60, what="the balancer to drop it")
        dropped_s = time.monotonic() - stopped_at
        before = len(stack.api.served_by)
        batch = scenes(first_seed=7100, count=8)
        ids = []
        for part in chunks(batch, 2):  # a client retries with its Idempotency-Key
            upload = functools.partial(stack.api.upload, part, key=str(uuid.uuid4()))
            ids += [
                job["id"]
                for job in wait_until(
                    upload, 60, what="an upload", ignore=(httpx.HTTPError, AssertionError)
                )
            ]
        assert len(set(stack.api.served_by[before:])) == 1, stack.api.served_by[before:]
        done = stack.api.wait_terminal(ids, timeout=300)
        assert {job["status"] for job in done.values()} == {"succeeded"}
    finally:
        started_at = time.monotonic()
        stopped.start()
    # Back, maybe with another address and so another slot name.
    wait_until(lambda: len(_answering(stack)) == 2, 120, what="the replica back in the rotation")
    account(stack)
    record(
        "one API replica stopped",
        images=len(ids),
        out_of_rotation_after_s=dropped_s,
        back_in_rotation_after_start_s=time.monotonic() - started_at,
    )

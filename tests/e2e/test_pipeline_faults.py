"""Faults on the whole stack. Each test ends with every job accounted for (`Stack.account`:
none lost, none duplicated, no orphan file or row) and records how long recovery took."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.fixtures import synthetic
from tests.support.stack import Stack
from tests.support.stack.account import account
from tests.support.stack.record import record
from tests.support.stack.scenes import chunks, scenes
from tests.support.stack.standin import jobs_of
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


def _all_succeeded(stack: Stack, jobs: Iterable[dict[str, Any]]) -> None:
    """Every job succeeded and found the objects its scene really has."""
    for job in jobs:
        assert job["status"] == "succeeded", job
        found = [
            (d["class_id"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")])
            for d in job["detections"]
        ]
        assert synthetic.match(stack.api.scene_of[job["id"]].truth, found)["ok"], job


def test_orchestrator_stopped_during_a_burst_then_started(stack: Stack) -> None:
    before = len(stack.standin.task_containers())
    first = []
    for part in chunks(scenes(first_seed=4000, count=8), 4):
        first += stack.api.upload(part)
    # Stop Kestra while it is busy with the burst.
    wait_until(lambda: len(stack.standin.task_containers()) > before, 120, what="a task container")
    stop_started = time.monotonic()
    stack.compose("stop", "kestra", timeout=420)
    stopped = time.monotonic()
    status, body = stack.api.ready()
    assert status == 503, body
    assert body["checks"]["orchestrator"].startswith("unreachable"), body
    # Uploads are still accepted and wait, queued.
    second = stack.api.upload(scenes(first_seed=4100, count=4))
    time.sleep(3)
    assert {stack.api.job(j["id"])["status"] for j in second} == {"queued"}
    restart = time.monotonic()
    stack.compose("start", "kestra")
    wait_until(lambda: stack.api.ready()[0] == 200, 120, what="/ready 200 after Kestra is back")
    ready_after = time.monotonic() - restart
    ids = [j["id"] for j in first + second]
    done = stack.api.wait_terminal(ids, timeout=400)
    all_done = time.monotonic() - restart
    _all_succeeded(stack, done.values())
    facts = account(stack)
    # A graceful stop lets running executions finish and keeps queued ones: nothing re-ran.
    assert all(facts["executions_per_job"][i] == 1 for i in ids), facts
    record(
        "kestra stopped mid-burst",
        jobs=len(ids),
        stop_drained_s=stopped - stop_started,
        down_s=restart - stopped,
        ready_after_start_s=ready_after,
        all_succeeded_after_start_s=all_done,
    )


def test_api_killed_mid_burst_and_restarted(stack: Stack) -> None:
    batch = scenes(first_seed=5000, count=12)
    requests = [(str(uuid.uuid4()), part) for part in chunks(batch, 2)]
    accepted = threading.Event()
    killed = threading.Event()
    failures: list[str] = []

    def uploader() -> None:
        for index, (key, part) in enumerate(requests):
            # A client retrying with its Idempotency-Key until it gets an answer.
            try:
                wait_until(
                    functools.partial(stack.api.upload, part, key=key),
                    180,
                    what=f"request {index} to be accepted",
                    ignore=(httpx.HTTPError, AssertionError),
                )
            except AssertionError as exc:
                failures.append(f"request {index}: {exc}")
                return
            if index == 2:
                accepted.set()
                killed.wait(30)  # the kill lands between two requests, never inside one
            time.sleep(0.3)

    thread = threading.Thread(target=uploader, daemon=True)
    thread.start()
    assert accepted.wait(120), failures
    before = len(stack.standin.task_containers())
    wait_until(lambda: len(stack.standin.task_containers()) > before, 120, what="a task container")
    api = stack.compose.container("api")
    restarts = stack.docker.inspect(api, "container")["RestartCount"]
    pid = stack.docker.inspect(api, "container")["State"]["Pid"]
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would: Docker's restart policy applies
    killed.set()
    wait_until(lambda: not stack.api.healthy(), 20, interval_s=0.1, what="the API to go down")
    wait_until(stack.api.healthy, 120, interval_s=0.2, what="the API to come back on its own")
    back = time.monotonic() - killed_at
    thread.join(240)
    assert not failures, failures
    state = stack.docker.inspect(api, "container")
    assert state["RestartCount"] == restarts + 1, state["State"]
    ids = [job_id for job_id, job in stack.api.jobs.items() if stack.api.scene_of[job_id] in batch]
    assert len(ids) == len(batch)
    done = stack.api.wait_terminal(ids, timeout=400)
    all_done = time.monotonic() - killed_at
    _all_succeeded(stack, done.values())
    # Retried requests got their jobs back instead of new ones.
    # Stored as "<owner key id>/<Idempotency-Key>" (keys are per API key).
    per_key = dict(
        stack.sql(
            "SELECT substr(idempotency_key, strpos(idempotency_key, '/') + 1), count(*) "
            "FROM jobs GROUP BY 1"
        )
    )
    for key, part in requests:
        assert per_key[key] == str(len(part)), (key, per_key.get(key))
    facts = account(stack)
    record(
        "api SIGKILLed mid-burst",
        jobs=len(ids),
        api_back_s=back,
        all_succeeded_after_kill_s=all_done,
        executions_per_job_max=max(facts["executions_per_job"][i] for i in ids),
    )


def _held_executions(stack: Stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    """With the stand-in holding executions: wait until every job is in one; by id."""
    wait_until(
        lambda: all(stack.standin.executions(i) for i in ids), 60, what="executions of the jobs"
    )
    return {e["id"]: e for i in ids for e in stack.standin.executions(i)}


def test_lost_callback_is_finished_by_the_reconciler(stack: Stack) -> None:
    # Drop the callback of every execution the jobs run in (one per batch; how many
    # batches the API makes of them is its business, so count them while held).
    stack.standin.faults(hold=True)
    jobs = stack.api.upload(scenes(first_seed=6000, count=3))
    ids = [j["id"] for j in jobs]
    executions = _held_executions(stack, ids)
    stack.standin.faults(drop_callbacks=len(executions), hold=False)
    done = stack.api.wait_terminal(ids, timeout=180)
    _all_succeeded(stack, done.values())
    assert stack.standin.faults()["drop_callbacks"] == 0
    callbacks = stack.standin.callbacks()
    lags = []
    for job in done.values():
        sent = [c for c in callbacks if c["executionId"] == job["execution_id"]]
        assert [c["dropped"] for c in sent] == [True], sent  # never called back...
        execution = stack.standin.executions(job["id"])[0]
        ended = datetime.fromisoformat(execution["state"]["endDate"])
        lags.append((datetime.fromisoformat(job["finished_at"]) - ended).total_seconds())
    account(stack)
    record(
        "callback lost",
        jobs=len(ids),
        executions=len(executions),
        finished_after_execution_end_s_max=max(lags),
        reconcile_after_s=float(stack.env["RECONCILE_AFTER_S"]),
    )


def test_inference_failures_fail_the_job_readably_and_later_jobs_succeed(stack: Stack) -> None:
    # 1. The model's weights on the shared volume are broken (a bad push, a full disk): the
    #    batch as a whole cannot run. Kestra retries it once, then every job of it fails
    #    with detect.py's reason.
    model = stack.env["MODEL"]
    stack.volume.run(
        f"mv /data/models/{model} /data/models/{model}.away && "
        f"printf 'not a model' > /data/models/{model}"
    )
    try:
        started = time.monotonic()
        bad_model = stack.api.upload(scenes(first_seed=7000, count=2))
        bad_model_ids = [j["id"] for j in bad_model]
        failed = stack.api.wait_terminal(bad_model_ids, timeout=180)
        model_failed_s = time.monotonic() - started
    finally:
        stack.volume.run(f"mv /data/models/{model}.away /data/models/{model}")
    for job in failed.values():
        assert job["status"] == "failed", job
        assert job["error"].startswith(f"The model {model} could not be loaded: "), job
    batches = {e["id"]: e for i in bad_model_ids for e in stack.standin.executions(i)}
    for execution in batches.values():
        assert execution["state"]["current"] == "FAILED"
        assert execution["outputs"] == {"jobs": 0, "succeeded": 0, "failed": 0}  # ?? 0
        [detect] = [run for run in execution["taskRunList"] if run["taskId"] == "detect"]
        assert len(detect["attempts"]) == 2  # the flow's retry: maxAttempts 2
        runs = [c for c in stack.standin.task_containers() if c["executionId"] == execution["id"]]
        assert [c["exitCode"] for c in runs] == [1, 1]
        assert all(c["removed"] for c in runs)

    # 2. One upload of a batch the container cannot decode (the stored file is replaced on
    #    the volume while Kestra holds the execution): that job fails, readably, and the
    #    others of the same batch (same execution, same container) succeed.
    stack.standin.faults(hold=True)
    mixed = stack.api.upload(scenes(first_seed=7100, count=3))
    mixed_ids = [j["id"] for j in mixed]
    _held_executions(stack, mixed_ids)
    bad_image = mixed[1]
    [stored] = [
        p for p in stack.volume.files()["uploads"] if p.startswith(f"uploads/{bad_image['id']}.")
    ]
    stack.volume.run(f"cat > /data/{stored}", stdin=b"\x00 not an image " * 64)
    started = time.monotonic()
    stack.standin.faults(hold=False)
    finished = stack.api.wait_terminal(mixed_ids, timeout=180)
    image_failed_s = time.monotonic() - started
    failed_image = finished[bad_image["id"]]
    assert failed_image["status"] == "failed", failed_image
    expected = f"The image {stored} could not be decoded as an image."
    assert failed_image["error"] == expected, failed_image
    [execution] = stack.standin.executions(bad_image["id"])
    neighbours = [i for i in jobs_of(execution) if i != bad_image["id"]]
    assert neighbours, f"the undecodable upload ran alone: {jobs_of(execution)}"
    _all_succeeded(stack, [finished[i] for i in mixed_ids if i != bad_image["id"]])
    # A per-job failure is not a task failure: no retry, the execution succeeds and counts it.
    assert execution["state"]["current"] == "SUCCESS"
    assert execution["outputs"] == {
        "jobs": len(neighbours) + 1,
        "succeeded": len(neighbours),
        "failed": 1,
    }
    runs = [c for c in stack.standin.task_containers() if c["executionId"] == execution["id"]]
    assert [c["exitCode"] for c in runs] == [0]

    # 3. The next jobs are not affected.
    jobs = stack.api.upload(scenes(first_seed=7200, count=2))
    done = stack.api.wait_terminal([j["id"] for j in jobs], timeout=180)
    _all_succeeded(stack, done.values())
    account(stack, expect_failed={*bad_model_ids, bad_image["id"]})
    record(
        "inference fails",
        bad_model_failed_after_s=model_failed_s,
        bad_model_attempts_each=2,
        undecodable_failed_after_s=image_failed_s,
        undecodable_batch_size=len(neighbours) + 1,
    )


def test_postgres_restart_api_recovers_on_its_own(stack: Stack) -> None:
    in_flight = stack.api.upload(scenes(first_seed=8000, count=4))
    seen: list[tuple[float, int]] = []
    stop_polling = threading.Event()

    def ready() -> tuple[int, dict[str, Any]]:
        # One timeline for the poller and the waits below: the outage can be shorter than
        # the poller's period, and the waits are what is sure to see it.
        answer = stack.api.ready()
        seen.append((time.monotonic(), answer[0]))
        return answer

    def poll_ready() -> None:
        while not stop_polling.is_set():
            ready()
            time.sleep(0.25)

    poller = threading.Thread(target=poll_ready, daemon=True)
    poller.start()
    try:
        stop_at = time.monotonic()
        stack.compose("stop", "postgres", timeout=120)
        _, body = wait_until(
            ready, 30, what="/ready 503 without Postgres", until=lambda r: r[0] == 503
        )
        assert body["checks"]["database"].startswith("unreachable"), body
        noticed = time.monotonic() - stop_at
        # An upload while the database is down is refused as a whole and leaves no file.
        with stack.api.client() as client:
            batch = scenes(first_seed=8050, count=1)
            refused = client.post(
                "/v1/uploads", files=[("files", (batch[0].name, batch[0].data, "image/jpeg"))]
            )
        assert refused.status_code >= 500, refused.text
        start_at = time.monotonic()
        stack.compose("start", "postgres", timeout=120)
        wait_until(lambda: ready()[0] == 200, 120, interval_s=0.25, what="/ready 200 again")
        recovered = time.monotonic() - start_at
    finally:
        stop_polling.set()
        poller.join(10)
    statuses = [code for _, code in sorted(seen)]
    assert 503 in statuses, statuses
    assert statuses[-1] == 200, statuses
    assert 200 in statuses[statuses.index(503) :], statuses  # 503 then 200
    done = stack.api.wait_terminal([j["id"] for j in in_flight], timeout=300)
    later = stack.api.upload(scenes(first_seed=8100, count=3))
    done.update(stack.api.wait_terminal([j["id"] for j in later], timeout=300))
    _all_succeeded(stack, done.values())
    account(stack)
    record(
        "postgres restarted",
        ready_503_after_stop_s=noticed,
        ready_200_after_start_s=recovered,
        refused_upload_status=refused.status_code,
        jobs=len(done),
    )

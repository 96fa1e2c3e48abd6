"""The whole path under compose: API (micro-batching dispatcher) -> Kestra (the stand-in,
running flows/yolo-detect.yml) -> one ephemeral inference container per batch on the shared
volume -> callback -> Postgres."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from tests.fixtures import synthetic
from tests.support.metrics import change, scrape
from tests.support.paths import FIXTURE_MODEL
from tests.support.stack import Stack
from tests.support.stack.account import account
from tests.support.stack.record import record
from tests.support.stack.scenes import chunks, decode_jpeg, scenes
from tests.support.stack.standin import jobs_of

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


def test_every_service_is_healthy(stack: Stack) -> None:
    for service in ("postgres", "api", "kestra"):
        status = stack.docker.status(stack.compose.container(service))
        assert "(healthy)" in status, (service, status)
    bootstrap = stack.docker.inspect(stack.compose.container("bootstrap"), "container")
    assert bootstrap["State"]["Status"] == "exited"
    assert bootstrap["State"]["ExitCode"] == 0
    # The kestra service is the stand-in, with Kestra's own configuration and the flow.
    kestra = stack.docker.inspect(stack.compose.container("kestra"), "container")
    assert kestra["Config"]["Image"] == stack.env["KESTRA_STANDIN_IMAGE"]
    mounts = {m["Destination"] for m in kestra["Mounts"]}
    assert {"/var/run/docker.sock", "/flows", "/etc/config/application.yaml"} <= mounts
    code, body = stack.api.ready()
    assert code == 200, body
    assert body["checks"] == {"database": "ok", "storage": "ok", "orchestrator": "ok"}


def test_burst_is_batched_and_every_job_succeeds_in_a_throwaway_container(stack: Stack) -> None:
    batch = scenes(first_seed=3000, count=24)
    with stack.api.client() as client:
        before = scrape(client)
    started = time.monotonic()
    jobs = []
    for part in chunks(batch, 4):  # several images per request
        jobs += stack.api.upload(part)
    ids = [job["id"] for job in jobs]
    assert len(set(ids)) == 24
    done = stack.api.wait_terminal(ids, timeout=600)
    elapsed = time.monotonic() - started

    containers = stack.standin.task_containers()
    max_jobs = int(stack.env["BATCH_MAX_JOBS"])
    ran_in: dict[str, dict[str, Any]] = {}  # execution id -> execution
    image_paths = dict(stack.sql("SELECT id, image_path FROM jobs"))
    with stack.api.client() as client:
        for job_id, job in done.items():
            scene = stack.api.scene_of[job_id]
            # Succeeded, with the objects the scene really has.
            assert job["status"] == "succeeded", job
            assert job["model"] == stack.env["MODEL"]
            assert (job["image_width"], job["image_height"]) == scene.size
            found = [
                (d["class_id"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")])
                for d in job["detections"]
            ]
            matched = synthetic.match(scene.truth, found)
            assert matched["ok"], (job_id, scene.name, matched)
            # The annotated image is served.
            annotated = client.get(f"/v1/jobs/{job_id}/annotated")
            assert annotated.status_code == 200
            assert annotated.headers["content-type"] == "image/jpeg"
            assert decode_jpeg(annotated.content) == scene.size
            # One execution of the flow ran the job, in a batch with others (at most
            # BATCH_MAX_JOBS); it found that execution again by its batch label; it ran in
            # one container that is gone now.
            executions = stack.standin.executions(job_id)
            assert [e["id"] for e in executions] == [job["execution_id"]]
            execution = executions[0]
            ran_in[execution["id"]] = execution
            assert execution["state"]["current"] == "SUCCESS"
            batch_jobs = jobs_of(execution)
            assert job_id in batch_jobs
            assert len(batch_jobs) <= max_jobs, batch_jobs
            assert f"{job_id}={image_paths[job_id]}" in execution["inputs"]["jobs"].split(" ")
            assert execution["outputs"] == {
                "jobs": len(batch_jobs),
                "succeeded": len(batch_jobs),
                "failed": 0,
            }
            [labelled] = stack.standin.batch_executions(execution["inputs"]["batch_id"])
            assert labelled["id"] == execution["id"]
            ran = [c for c in containers if c["executionId"] == execution["id"]]
            assert len(ran) == 1, ran
            assert ran[0]["image"] == stack.inference_image
            assert ran[0]["user"] == "1000:1000"
            assert ran[0]["binds"] == [f"{stack.volume.name}:/data"]
            assert ran[0]["exitCode"] == 0
            assert ran[0]["removed"] is True
            gone = stack.docker("container", "inspect", ran[0]["containerId"], check=False)
            assert gone.returncode != 0
            assert "No such" in gone.stderr

    # The results are in Postgres (the API's own database).
    rows = {
        r[0]: r[1:]
        for r in stack.sql(
            "SELECT id, status, json_array_length(detections), execution_id FROM jobs"
        )
        if r[0] in done
    }
    for job_id, job in done.items():
        assert rows[job_id] == ["succeeded", str(len(job["detections"])), job["execution_id"]]
    # Written on the shared volume by the container's uid 1000, which the API also runs as.
    owners = stack.volume.run(
        "stat -c '%u' " + " ".join(f"/data/results/{i}.json" for i in ids) + " | sort -u"
    )
    assert owners.split() == ["1000"]
    # Micro-batched: the burst ran in fewer executions (and containers) than jobs, every job
    # in exactly one of them.
    batched = sorted(job_id for execution in ran_in.values() for job_id in jobs_of(execution))
    assert batched == sorted(ids)
    assert len(ran_in) < len(ids), {e: jobs_of(x) for e, x in ran_in.items()}
    # Both workers dispatched and recorded; one scrape adds them up (multiprocess mode).
    with stack.api.client() as client:
        after = scrape(client)
    assert change(before, after, "yolo_jobs", status="succeeded") == len(ids)
    assert change(before, after, "yolo_batch_size_count") == len(ran_in)
    assert change(before, after, "yolo_batch_size_sum") == len(ids)
    assert change(before, after, "yolo_dispatch_latency_seconds_count") == len(ids)
    assert change(before, after, "yolo_job_duration_seconds_count", status="succeeded") == len(ids)
    assert change(before, after, "yolo_inference_seconds_count") == len(ids)
    lag = "yolo_callback_lag_seconds_count"
    polled = change(before, after, lag, via="poll")
    assert change(before, after, lag, via="callback") + polled == len(ids)
    files = stack.docker(
        "exec", stack.compose.container("api"), "python", "-c",
        "import os; print(*os.listdir('/tmp/metrics'))",
    ).stdout.split()  # fmt: skip
    assert len({name.rsplit("_", 1)[-1] for name in files}) >= 2, files  # <kind>_<pid>.db
    account(stack)
    record(
        "burst",
        images=len(ids),
        requests=6,
        executions=len(ran_in),
        batch_sizes=sorted(len(jobs_of(e)) for e in ran_in.values()),
        seconds_to_all_succeeded=elapsed,
    )


def test_the_default_model_name_runs_on_the_images_own_weights_without_network(
    stack: Stack,
) -> None:
    """The user's day one: MODEL=yolo11n.pt, nothing pushed, no network in any task."""
    assert stack.env["MODEL"] == "yolo11n.pt"
    # The one-shot compose step had the image locally and copied the weights it ships.
    seeded = stack.docker.inspect(stack.compose.container("inference-image"), "container")
    assert seeded["State"]["ExitCode"] == 0, seeded["State"]
    fixture = FIXTURE_MODEL.read_bytes()
    on_volume = stack.volume.run("sha256sum /data/models/yolo11n.pt").split()[0]
    assert on_volume == hashlib.sha256(fixture).hexdigest()
    batch = scenes(first_seed=3900, count=2)
    ids = [job["id"] for job in stack.api.upload(batch)]
    for job in stack.api.wait_terminal(ids, timeout=300).values():
        assert job["status"] == "succeeded", job
        assert job["model"] == "yolo11n.pt"
    executions = {e["id"] for job_id in ids for e in stack.standin.executions(job_id)}
    runs = [c for c in stack.standin.task_containers() if c["executionId"] in executions]
    assert runs
    assert {c["network"] for c in runs} == {"none"}

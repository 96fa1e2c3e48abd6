"""The invariant every end-to-end test ends with: every job accounted for."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.kestra.containers import LABEL as TASK_LABEL
from tests.support.stack.standin import jobs_of

if TYPE_CHECKING:
    from tests.support.stack import Stack

Rows = dict[str, dict[str, Any]]


def account(stack: Stack, *, expect_failed: Iterable[str] = ()) -> dict[str, Any]:
    """None lost, none duplicated, no orphan file or row.

    * every job a client was given is in Postgres, and Postgres has no other job;
    * every job is succeeded, or failed for the ones a test made fail (expect_failed is
      remembered for the later tests);
    * every execution ran a batch of known jobs, labelled with its batch id; one that
      succeeded accounts for each of its jobs in its outputs (succeeded + failed);
    * no job ran to success in more than one execution, and none has a live
      execution; no task container is left;
    * the files on the volume are exactly those of the jobs: each upload has its row and
      each row its upload; each result (JSON, annotated JPEG) belongs to a job, each
      succeeded job has both; no partial upload in tmp/.
    """
    stack.expected_failed |= set(expect_failed)
    rows = _rows(stack)
    _check_rows(stack, rows)
    executions_of = _executions_of(stack, rows)
    runs = _check_runs(executions_of)
    leftovers = stack.docker.containers(label=TASK_LABEL, volume=stack.volume.name)
    assert not leftovers, f"task containers left behind: {[c.name for c in leftovers]}"
    _check_files(stack, rows)
    return {"jobs": len(rows), "executions_per_job": runs, "executions": executions_of}


def _rows(stack: Stack) -> Rows:
    query = "SELECT id, status, image_path, coalesce(annotated_path, '') FROM jobs"
    return {
        r[0]: {"status": r[1], "image_path": r[2], "annotated_path": r[3] or None}
        for r in stack.sql(query)
    }


def _check_rows(stack: Stack, rows: Rows) -> None:
    seen = stack.api.jobs
    lost = sorted(set(seen) - set(rows))
    assert not lost, f"jobs acknowledged to a client but not in Postgres: {lost}"
    unknown = sorted(set(rows) - set(seen))
    assert not unknown, f"jobs in Postgres that no client was given: {unknown}"
    wrong = {
        job_id: row["status"]
        for job_id, row in rows.items()
        if row["status"] != ("failed" if job_id in stack.expected_failed else "succeeded")
    }
    assert not wrong, f"jobs not in their expected final status: {wrong}"


def _executions_of(stack: Stack, rows: Rows) -> dict[str, list[dict[str, Any]]]:
    executions_of: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in rows}
    for execution in stack.standin.all_executions():
        batch = jobs_of(execution)
        assert batch, f"execution {execution['id']} ran no job: {execution['inputs']}"
        entries = [entry.partition("=")[0] for entry in execution["inputs"]["jobs"].split()]
        assert len(set(entries)) == len(entries), execution["inputs"]  # no job twice in one run
        strangers = sorted(set(batch) - set(rows))
        assert not strangers, f"execution {execution['id']} ran unknown jobs {strangers}"
        label = {"key": "batch_id", "value": execution["inputs"]["batch_id"]}
        assert label in execution["labels"], execution["labels"]
        if execution["state"]["current"] == "SUCCESS":
            outputs = execution["outputs"]
            assert outputs["jobs"] == len(batch), (execution["id"], outputs)
            assert outputs["succeeded"] + outputs["failed"] == len(batch), outputs
        for job_id in batch:
            executions_of[job_id].append(execution)
    return executions_of


def _check_runs(executions_of: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    runs = {}
    for job_id, executions in executions_of.items():
        states = [e["state"]["current"] for e in executions]
        assert states.count("SUCCESS") <= 1, f"job {job_id} succeeded twice: {states}"
        live = [s for s in states if s not in ("SUCCESS", "FAILED", "KILLED")]
        assert not live, f"job {job_id} still has live executions: {states}"
        runs[job_id] = len(executions)
    return runs


def _check_files(stack: Stack, rows: Rows) -> None:
    files = stack.volume.files()
    assert not files["tmp"], f"partial uploads left in tmp/: {files['tmp']}"
    uploads = {row["image_path"] for row in rows.values()}
    assert files["uploads"] == uploads, (
        f"orphan uploads: {sorted(files['uploads'] - uploads)}; "
        f"rows without upload: {sorted(uploads - files['uploads'])}"
    )
    results = files["results"]
    owners = {Path(p).name.split(".", 1)[0] for p in results}
    assert owners <= set(rows), f"result files of no job: {sorted(owners - set(rows))}"
    for job_id, row in rows.items():
        if row["status"] == "succeeded":
            assert f"results/{job_id}.json" in results, job_id
            assert row["annotated_path"] in results, (job_id, row["annotated_path"])
        else:
            assert f"results/{job_id}.annotated.jpg" not in results, job_id

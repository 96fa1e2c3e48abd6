"""Where jobs end (app/jobs/retention.py): DELETE /v1/jobs/{id} and the reconciler's purge of
jobs finished RETENTION_DAYS ago; files first, then rows, never under a running container."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.jobs import repository
from app.jobs.models import Job
from app.jobs.results import annotated_path_of
from app.jobs.service import utcnow
from tests.api.factories import (
    DETECTION,
    callback,
    job_count,
    kestra_settings,
    stored_files,
    submitted_batch,
    upload,
    write_result,
    write_success,
)
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer, issue_key, keyed_client
from tests.support.api_app import resources_of as res
from tests.support.images import encode
from tests.support.kestra import KestraStandin

DAYS = 7
RetainingClient = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def retaining(make_settings: SettingsFactory, kestra: KestraStandin) -> RetainingClient:
    """Clients of apps on one database that send jobs to the stand-in and keep finished jobs
    for DAYS days (RETENTION_DAYS)."""

    def client(**overrides: Any) -> AbstractContextManager[TestClient]:
        values = {"retention_days": DAYS, "max_files_per_request": 8, **overrides}
        settings = {**kestra_settings(kestra), **values}
        return keyed_client(make_settings(**settings))

    return client


@pytest.fixture
def retained(retaining: RetainingClient) -> Iterator[TestClient]:
    with retaining() as client:
        yield client


def finished(
    client: TestClient, kestra: KestraStandin, count: int, *, fail: bool = False
) -> list[str]:
    """`count` jobs run as one batch that ended on their own result files (and annotated
    images): succeeded, or failed by the detection script."""
    ids, batch_id = submitted_batch(client, count)
    for job_id in ids:
        if fail:
            write_result(client, job_id, status="failed", error="the image could not be read")
            continue
        write_success(client, job_id, [DETECTION], annotated_path=annotated_path_of(job_id))
        (res(client).storage.root / annotated_path_of(job_id)).write_bytes(b"drawn")
    ended = callback(client, kestra, batch_id, "SUCCESS")
    assert set(ended.values()) == {"failed" if fail else "succeeded"}
    return ids


def age(client: TestClient, ids: list[str], days: float) -> None:
    """The jobs were made and (if finished) ended `days` ago."""
    then = utcnow() - timedelta(days=days)
    with res(client).sessions() as session:
        stmt = update(Job).where(Job.id.in_(ids))
        session.execute(stmt.values(created_at=then))
        session.execute(stmt.where(Job.finished_at.is_not(None)).values(finished_at=then))
        session.commit()


def files_of(shared_dir: Path, job_id: str) -> list[str]:
    return [f for f in stored_files(shared_dir) if job_id in f]


def remaining(client: TestClient) -> set[str]:
    with res(client).sessions() as session:
        return set(session.scalars(select(Job.id)))


# --- DELETE /v1/jobs/{id} -----------------------------------------------------------------


def test_delete_removes_the_files_then_the_row(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    (job_id,) = finished(kestra_client, kestra, 1)
    (kept,) = upload(kestra_client)
    assert len(files_of(shared_dir, job_id)) == 3  # upload, result, annotated image
    response = kestra_client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 204, response.text
    assert files_of(shared_dir, job_id) == []
    assert remaining(kestra_client) == {kept}
    assert len(files_of(shared_dir, kept)) == 1
    assert kestra_client.get(f"/v1/jobs/{job_id}").status_code == 404


def test_a_link_in_a_files_place_goes_not_what_it_points_at(
    kestra_client: TestClient, shared_dir: Path
) -> None:
    """Anything can write to the volume: a link (or a directory) named like one of the job's
    files is removed itself; another job's upload it points at stays."""
    job_id, other = upload(kestra_client, 2)
    other_upload = shared_dir / "uploads" / f"{other}.png"
    (shared_dir / annotated_path_of(job_id)).symlink_to(other_upload)
    (shared_dir / "results" / f"{job_id}.json").mkdir()
    (shared_dir / "results" / f"{job_id}.json" / "inside").write_bytes(b"x")
    assert kestra_client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert stored_files(shared_dir) == [f"uploads/{other}.png"]
    assert not (shared_dir / annotated_path_of(job_id)).is_symlink()
    assert not (shared_dir / "results" / f"{job_id}.json").exists()


def test_a_repeated_delete_answers_404_like_get(kestra_client: TestClient) -> None:
    (job_id,) = upload(kestra_client)
    assert kestra_client.delete(f"/v1/jobs/{job_id}").status_code == 204
    for method in ("DELETE", "GET"):
        again = kestra_client.request(method, f"/v1/jobs/{job_id}")
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "not_found"
    assert kestra_client.delete("/v1/jobs/not-a-job").status_code == 404


def test_another_keys_job_is_404_and_stays(kestra_client: TestClient, shared_dir: Path) -> None:
    (job_id,) = upload(kestra_client)
    other = bearer(issue_key(kestra_client, "other"))
    response = kestra_client.delete(f"/v1/jobs/{job_id}", headers=other)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert len(files_of(shared_dir, job_id)) == 1
    assert kestra_client.get(f"/v1/jobs/{job_id}").status_code == 200
    admin = kestra_client.delete(f"/v1/jobs/{job_id}", headers=bearer(ADMIN_KEY))
    assert admin.status_code == 204


def test_a_queued_job_not_yet_sent_is_cancelled(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    (job_id,) = upload(kestra_client)
    assert kestra_client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert res(kestra_client).dispatcher.run_once() == 0
    assert kestra.state.executions == {}
    assert stored_files(shared_dir) == []


def test_a_job_with_the_orchestrator_is_refused_until_it_has_finished(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    (job_id,), batch_id = submitted_batch(kestra_client, 1)
    for state in ("SUBMITTED", "RUNNING"):
        if state == "RUNNING":
            callback(kestra_client, kestra, batch_id, "RUNNING")
        response = kestra_client.delete(f"/v1/jobs/{job_id}")
        assert response.status_code == 409, state
        error = response.json()["error"]
        assert (error["code"], error["details"]["status"]) == ("job_in_flight", state.lower())
        assert "once it has finished" in error["message"]
        assert response.headers["Retry-After"] == "10"
        assert files_of(shared_dir, job_id) == [f"uploads/{job_id}.png"]
    write_success(kestra_client, job_id, [DETECTION])
    callback(kestra_client, kestra, batch_id, "SUCCESS")
    assert kestra_client.delete(f"/v1/jobs/{job_id}").status_code == 204


def test_a_job_being_sent_is_refused(
    kestra_client: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    """Claimed by a dispatcher forming a batch (its lock), or leased to a batch whose send
    had an unclear answer (it may have started): either way a container may read it."""
    (job_id,) = upload(kestra_client)
    with res(kestra_client).sessions() as dispatcher:
        assert repository.claim_dispatchable(dispatcher, utcnow(), 10)
        busy = kestra_client.delete(f"/v1/jobs/{job_id}")
        assert (busy.status_code, busy.json()["error"]["code"]) == (409, "job_in_flight")
        assert "being sent" in busy.json()["error"]["message"]
    kestra.stop()  # the send fails: the job stays queued, leased to its batch
    res(kestra_client).dispatcher.run_once()
    leased = kestra_client.get(f"/v1/jobs/{job_id}").json()
    assert (leased["status"], leased["batch_id"] is not None) == ("queued", True)
    assert kestra_client.delete(f"/v1/jobs/{job_id}").status_code == 409
    assert len(files_of(shared_dir, job_id)) == 1


def test_a_delete_that_failed_after_the_files_is_completed_by_the_next(
    kestra_client: TestClient,
    kestra: KestraStandin,
    shared_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (job_id,) = finished(kestra_client, kestra, 1)

    def crash(*_: object) -> None:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(repository, "delete_rows", crash)
        with pytest.raises(RuntimeError):  # the request dies (TestClient re-raises)
            kestra_client.delete(f"/v1/jobs/{job_id}")
    assert files_of(shared_dir, job_id) == []
    job = kestra_client.get(f"/v1/jobs/{job_id}")  # the row, with its files gone
    assert (job.status_code, job.json()["status"]) == (200, "succeeded")
    for image in ("image", "annotated"):
        missing = kestra_client.get(f"/v1/jobs/{job_id}/{image}")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert kestra_client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert job_count(kestra_client) == 0


def test_the_idempotency_key_goes_with_the_jobs(kestra_client: TestClient) -> None:
    """A retry gets back the jobs still there; once none is, the same request makes new ones."""
    files = [("files", (f"{i}.png", encode("PNG", 40 + i, 30))) for i in range(2)]
    headers = {"Idempotency-Key": "retention-1"}

    def send() -> list[str]:
        response = kestra_client.post("/v1/uploads", files=files, headers=headers)
        assert response.status_code == 202, response.text
        return [job["id"] for job in response.json()["jobs"]]

    first, second = send()
    assert kestra_client.delete(f"/v1/jobs/{first}").status_code == 204
    assert send() == [second]
    assert kestra_client.delete(f"/v1/jobs/{second}").status_code == 204
    assert not set(send()) & {first, second}


def test_the_openapi_says_what_a_repeated_delete_answers(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/jobs/{job_id}"]["delete"]
    assert {"204", "404", "409"} <= set(operation["responses"])
    assert "repeated DELETE gets 404" in operation["responses"]["404"]["description"]
    assert "job_in_flight" in operation["responses"]["409"]["description"]


# --- RETENTION_DAYS: the reconciler's purge ------------------------------------------------


def test_the_purge_removes_old_finished_jobs_and_nothing_else(
    retained: TestClient, kestra: KestraStandin, shared_dir: Path
) -> None:
    old = finished(retained, kestra, 2) + finished(retained, kestra, 1, fail=True)
    recent = finished(retained, kestra, 1)
    in_flight, _ = submitted_batch(retained, 1)
    queued = upload(retained)
    age(retained, old, DAYS + 1)
    age(retained, in_flight + queued, DAYS * 10)  # old, but not finished
    age(retained, recent, DAYS - 1)
    kept_files = [f for f in stored_files(shared_dir) if not any(j in f for j in old)]
    res(retained).reconciler.run_once()
    assert remaining(retained) == {*recent, *in_flight, *queued}
    assert stored_files(shared_dir) == kept_files


def test_the_purge_is_bounded_per_pass(retaining: RetainingClient, kestra: KestraStandin) -> None:
    with retaining(retention_batch=2) as client:
        old = finished(client, kestra, 5)
        age(client, old, DAYS + 1)
        passes = [res(client).reconciler.purge_expired() for _ in range(4)]
        assert passes == [2, 2, 1, 0]
        assert remaining(client) == set()


def test_retention_off_keeps_every_job(kestra_client: TestClient, kestra: KestraStandin) -> None:
    old = finished(kestra_client, kestra, 1)
    age(kestra_client, old, 10_000)
    res(kestra_client).reconciler.run_once()
    assert remaining(kestra_client) == set(old)


@pytest.mark.parametrize("crash_at", ["rows", "files"])
def test_a_purge_that_crashed_midway_is_completed_by_the_next_pass(
    retaining: RetainingClient,
    kestra: KestraStandin,
    shared_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    crash_at: str,
) -> None:
    """Killed after the files are gone and before the rows are (`rows`), or partway through
    the files (`files`): the transaction rolls back, the rows stay, and the next pass removes
    what is left; other jobs are not touched."""
    with retaining(retention_batch=10) as client:
        old = finished(client, kestra, 3)
        age(client, old, DAYS + 1)
        others = finished(client, kestra, 1) + upload(client)
        kept_files = [f for f in stored_files(shared_dir) if not any(j in f for j in old)]
        storage = res(client).storage
        remove_files = storage.remove_job_files

        def crash_after_files(*_: object) -> None:
            raise RuntimeError("killed before the rows were deleted")

        def crash_in_files(relatives: list[str]) -> None:
            remove_files(relatives[:4])
            raise OSError("killed partway through the files")

        with monkeypatch.context() as patch:
            if crash_at == "rows":
                patch.setattr(repository, "delete_rows", crash_after_files)
            else:
                patch.setattr(storage, "remove_job_files", crash_in_files)
            with pytest.raises((RuntimeError, OSError)):
                res(client).reconciler.purge_expired()
        assert remaining(client) == {*old, *others}
        left = [f for f in stored_files(shared_dir) if any(j in f for j in old)]
        assert len(left) == (0 if crash_at == "rows" else 5)
        res(client).reconciler.run_once()
        assert remaining(client) == set(others)
        assert stored_files(shared_dir) == kept_files


def test_two_workers_purge_each_job_once(
    retaining: RetainingClient,
    kestra: KestraStandin,
    shared_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each uvicorn worker's reconciler purges. Both hold their claims at once (they meet
    before removing files): SKIP LOCKED hands them different jobs, where a plain lock would
    make one wait for the other (the barrier breaks) and none would purge some jobs twice."""
    with retaining(retention_batch=3) as one, retaining(retention_batch=3) as two:
        old = finished(one, kestra, 6)
        age(one, old, DAYS + 1)
        claimed = threading.Barrier(2, timeout=10)
        for client in (one, two):
            storage = res(client).storage

            def remove(relatives: list[str], remove: Any = storage.remove_job_files) -> None:
                claimed.wait()
                remove(relatives)

            monkeypatch.setattr(storage, "remove_job_files", remove)
        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(lambda c: res(c).reconciler.purge_expired(), (one, two)))
        assert counts == [3, 3]
        assert remaining(one) == set()
        assert stored_files(shared_dir) == []

"""The stack's API as its clients see it, with the admin key (which sees every job); it
remembers every job a client was given, for the final account."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.stack.scenes import Scene
from tests.support.wait import wait_until

TERMINAL = {"succeeded", "failed"}
LIVE = ("queued", "submitted", "running")  # in the order a job moves through them


@dataclass
class StackApi:
    url: str
    admin_key: str
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # every job a client saw
    scene_of: dict[str, Scene] = field(default_factory=dict)
    served_by: list[str] = field(default_factory=list)  # X-Served-By of each upload (a balancer's)

    def client(self, timeout: float = 30) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=auth)

    def upload(
        self, batch: Sequence[Scene], key: str | None = None, form: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """`form`: the upload's other fields (callback_url, model, ...)."""
        headers = {"Idempotency-Key": key} if key else {}
        files = [("files", (s.name, s.data, "application/octet-stream")) for s in batch]
        with self.client() as client:
            response = client.post("/v1/uploads", files=files, headers=headers, data=form)
        assert response.status_code == 202, f"{response.status_code} {response.text}"
        self.served_by.append(response.headers.get("x-served-by", ""))
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        assert len(jobs) == len(batch)
        for scene, job in zip(batch, jobs, strict=True):
            self.jobs[job["id"]] = job
            self.scene_of[job["id"]] = scene
        return jobs

    def job(self, job_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def live(self) -> dict[str, str]:
        """Every job not yet succeeded or failed -> its status. The statuses are listed in the
        order a job moves through them, so a job moving on while we ask is still seen."""
        found: dict[str, str] = {}
        with self.client() as client:
            for status in LIVE:
                params = {"status": status, "limit": "200"}
                while True:
                    body = client.get("/v1/jobs", params=params).raise_for_status().json()
                    found |= {job["id"]: status for job in body["jobs"]}
                    if not body["next_cursor"]:
                        break
                    params["cursor"] = body["next_cursor"]
        return found

    def wait_terminal(self, job_ids: Iterable[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Poll until every job is succeeded or failed; the API may be down meanwhile. Each
        poll reads the lists of live jobs and only the other jobs one by one, each once, so
        that waiting for a burst adds little load to the stack it measures."""
        seen = dict.fromkeys(job_ids, "unknown")
        done: dict[str, dict[str, Any]] = {}

        def finished() -> bool:
            live = self.live()
            seen.update({job_id: live[job_id] for job_id in seen if job_id in live})
            for job_id in sorted(set(seen) - set(done) - set(live)):
                job = self.job(job_id)
                seen[job_id] = job["status"]
                if job["status"] in TERMINAL:
                    done[job_id] = job
            return len(done) == len(seen)

        try:
            wait_until(
                finished, timeout, what="jobs to finish", ignore=(httpx.HTTPError, AssertionError)
            )
        except AssertionError as exc:
            pending = {job_id: seen[job_id] for job_id in set(seen) - set(done)}
            raise AssertionError(f"{exc}; not finished: {pending}") from None
        return done

    def export(self, model: str, fmt: str, timeout: float) -> dict[str, Any]:
        """Ask for an export of models/<model> (POST /v1/models/<model>/exports) and poll its
        Location until it has succeeded or failed; that last state."""
        with self.client() as client:
            response = client.post(f"/v1/models/{model}/exports", json={"format": fmt})
            assert response.status_code == 202, f"{response.status_code} {response.text}"
            location = response.headers["location"]

            def state() -> dict[str, Any]:
                body: dict[str, Any] = client.get(location).raise_for_status().json()
                return body

            return wait_until(
                state,
                timeout,
                what=f"the {fmt} export of {model}",
                until=lambda export: export["state"] in TERMINAL,
                ignore=(httpx.HTTPError,),
            )

    def ready(self) -> tuple[int, dict[str, Any]]:
        try:
            with self.client(timeout=10) as client:
                response = client.get("/ready")
            return response.status_code, response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return 0, {"error": repr(exc)}

    def healthy(self) -> bool:
        try:
            with self.client(timeout=3) as client:
                return client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

"""The Kestra stand-in of a stack, seen from outside: Kestra's own search API (as the API
uses it) and the stand-in's test controls (faults, task containers, callbacks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.kestra import jobs_of as _jobs_of


def jobs_of(execution: dict[str, Any]) -> list[str]:
    """The job ids an execution ran, in order."""
    return list(_jobs_of(execution))


@dataclass
class StandinControls:
    url: str
    username: str
    password: str

    def client(self, timeout: float = 15) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(self.username, self.password), timeout=timeout)

    def faults(self, **values: Any) -> dict[str, Any]:
        with self.client() as client:
            response = client.post("/_standin/faults", json=values)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def task_containers(self) -> list[dict[str, Any]]:
        return self._get("/_standin/containers")

    def callbacks(self) -> list[dict[str, Any]]:
        return self._get("/_standin/callbacks")

    def _get(self, path: str) -> list[dict[str, Any]]:
        with self.client() as client:
            body: list[dict[str, Any]] = client.get(path).json()
        return body

    def all_executions(self) -> list[dict[str, Any]]:
        """Every execution of the flow (the stand-in keeps them all; a session has < 1000)."""
        return self._search({"size": "1000"})

    def executions(self, job_id: str) -> list[dict[str, Any]]:
        """The executions that ran this job: it is listed in their `jobs` input."""
        return [e for e in self.all_executions() if job_id in jobs_of(e)]

    def batch_executions(self, batch_id: str) -> list[dict[str, Any]]:
        """The executions labelled with this batch id, found as the API finds them."""
        return self._search({"filters[labels][EQUALS][batch_id]": batch_id, "size": "50"})

    def _search(self, params: dict[str, str]) -> list[dict[str, Any]]:
        flow = {"filters[namespace][EQUALS]": "inference", "filters[flowId][EQUALS]": "yolo-detect"}
        with self.client() as client:
            response = client.get("/api/v1/main/executions/search", params={**flow, **params})
        assert response.status_code == 200, response.text
        body = response.json()
        results: list[dict[str, Any]] = body["results"]
        assert len(results) == body["total"], "more executions than one search page"
        return results

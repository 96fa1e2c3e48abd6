"""A stand-in for Kestra's REST API, for tests only (Kestra cannot be installed here).

It follows the documented OSS 1.x contract (../shared/reference/kestra.md): everything under
`/api/v1/main/...`, HTTP basic auth, executions created from multipart/form-data whose plain
fields are the flow's inputs, `labels=key:value` query parameters, execution JSON with
`state.current`/`histories`, 401/404/409/422 as Kestra answers them, and `/health` on the
management port. It reads the repository's own flow file to know the flow's id, namespace
and inputs, so a drifting flow or client breaks the tests.

What it does not emulate: running tasks (tests move executions through states with
`finish()`/`start()`), the UI, triggers, namespace files, pagination beyond `size`.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

FLOW_FILE = Path(__file__).resolve().parents[2] / "flows" / "yolo-detect.yml"
TERMINAL = {
    "SUCCESS",
    "WARNING",
    "FAILED",
    "KILLED",
    "CANCELLED",
    "RETRIED",
    "SKIPPED",
    "RESUBMITTED",
}


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Faults:
    """Misbehaviour the tests switch on."""

    fail_next: int = 0  # answer the next N API requests with `fail_status`
    fail_status: int = 503
    delay_s: float = 0.0  # sleep before answering creations (timeouts)
    create_then_fail: bool = False  # create the execution, then answer 500 anyway


@dataclass
class StandinState:
    flow: dict[str, Any]
    username: str
    password: str
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    flow_disabled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- test controls -----------------------------------------------------------------
    def set_state(self, execution_id: str, state: str, *, failed_task: str | None = None) -> None:
        with self.lock:
            execution = self.executions[execution_id]
            execution["state"]["current"] = state
            execution["state"]["histories"].append({"state": state, "date": _now()})
            if state in TERMINAL:
                execution["state"]["endDate"] = _now()
            if failed_task:
                execution["taskRunList"] = [
                    {
                        "id": uuid.uuid4().hex[:22],
                        "taskId": failed_task,
                        "state": {"current": state},
                        "attempts": [{"state": {"current": state}}] * 2,
                        "outputs": {},
                    }
                ]

    def by_job(self, job_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                e
                for e in self.executions.values()
                if {"key": "job_id", "value": job_id} in e["labels"]
            ]


def build_app(state: StandinState) -> FastAPI:
    flow = state.flow
    app = FastAPI()

    @app.middleware("http")
    async def _auth_and_faults(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if not path.startswith("/api/v1/"):
            return await call_next(request)
        state.requests.append(
            {"method": request.method, "path": path, "query": str(request.url.query)}
        )
        if request.headers.get("authorization") != _basic(state.username, state.password):
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        if state.faults.fail_next > 0:
            state.faults.fail_next -= 1
            return JSONResponse(
                {"message": "injected failure"}, status_code=state.faults.fail_status
            )
        return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "UP"}

    @app.get("/api/v1/main/flows/{namespace}/{flow_id}")
    def get_flow(namespace: str, flow_id: str) -> JSONResponse:
        if (namespace, flow_id) != (flow["namespace"], flow["id"]):
            return JSONResponse({"message": f"Flow {namespace}.{flow_id} not found"}, 404)
        return JSONResponse({**flow, "disabled": state.flow_disabled})

    @app.post("/api/v1/main/executions/{namespace}/{flow_id}")
    async def create(namespace: str, flow_id: str, request: Request) -> JSONResponse:
        if (namespace, flow_id) != (flow["namespace"], flow["id"]):
            return JSONResponse({"message": f"Flow {namespace}.{flow_id} not found"}, 404)
        if state.flow_disabled:
            return JSONResponse({"message": "Cannot execute a disabled flow"}, 409)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return JSONResponse({"message": "Unsupported Media Type"}, 415)
        form = await request.form()
        raw = {key: value for key, value in form.items() if not isinstance(value, UploadFile)}
        inputs, errors = _validate_inputs(flow.get("inputs") or [], raw)
        if errors:
            return JSONResponse({"message": "Invalid entity: " + "; ".join(errors)}, 422)
        labels = []
        for item in request.query_params.getlist("labels"):
            key, sep, value = item.partition(":")
            if not sep:
                return JSONResponse({"message": f"Invalid label {item!r}"}, 400)
            labels.append({"key": key, "value": value})
        if state.faults.delay_s:
            time.sleep(state.faults.delay_s)
        execution = {
            "id": uuid.uuid4().hex[:22],
            "namespace": namespace,
            "flowId": flow_id,
            "flowRevision": 1,
            "inputs": inputs,
            "outputs": {},
            "labels": labels,
            "state": {
                "current": "CREATED",
                "startDate": _now(),
                "histories": [{"state": "CREATED", "date": _now()}],
            },
            "taskRunList": [],
        }
        with state.lock:
            state.executions[execution["id"]] = execution
        if state.faults.create_then_fail:
            state.faults.create_then_fail = False
            return JSONResponse({"message": "Internal Server Error"}, 500)
        return JSONResponse({**execution, "url": f"http://kestra/executions/{execution['id']}"})

    @app.get("/api/v1/main/executions/search")
    def search(request: Request) -> dict[str, Any]:
        params = request.query_params
        wanted = {
            m.group(1): value
            for key, value in params.multi_items()
            if (m := re.fullmatch(r"filters\[labels\]\[EQUALS\]\[(.+)\]", key))
        }
        namespace = params.get("filters[namespace][EQUALS]")
        flow_id = params.get("filters[flowId][EQUALS]")
        size = int(params.get("size", "10"))
        with state.lock:
            found = [
                e
                for e in state.executions.values()
                if (namespace is None or e["namespace"] == namespace)
                and (flow_id is None or e["flowId"] == flow_id)
                and all({"key": k, "value": v} in e["labels"] for k, v in wanted.items())
            ]
        return {"results": found[:size], "total": len(found)}

    @app.get("/api/v1/main/executions/{execution_id}")
    def get_execution(execution_id: str) -> JSONResponse:
        with state.lock:
            execution = state.executions.get(execution_id)
        if execution is None:
            return JSONResponse({"message": f"Execution {execution_id} not found"}, 404)
        return JSONResponse(execution)

    @app.delete("/api/v1/main/executions/{execution_id}/kill")
    def kill(execution_id: str) -> JSONResponse:
        if execution_id not in state.executions:
            return JSONResponse({"message": "not found"}, 404)
        state.set_state(execution_id, "KILLING")
        state.set_state(execution_id, "KILLED")
        return JSONResponse({}, 202)

    return app


def _basic(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _validate_inputs(
    declared: list[dict[str, Any]], raw: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Kestra checks inputs against the flow before creating anything (422 otherwise)."""
    inputs: dict[str, Any] = {}
    errors: list[str] = []
    for spec in declared:
        name, kind = spec["id"], spec["type"]
        value = raw.get(name, spec.get("defaults"))
        if value is None:
            if spec.get("required", True):
                errors.append(f"{name}: missing required input")
            continue
        try:
            if kind == "STRING":
                value = str(value)
                if "validator" in spec and not re.fullmatch(spec["validator"], value):
                    errors.append(f"{name}: does not match {spec['validator']}")
            elif kind == "INT":
                value = int(value)
            elif kind == "FLOAT":
                value = float(value)
            elif kind == "BOOLEAN":
                value = str(value).lower() == "true"
            else:
                raise ValueError(f"input type {kind} not emulated")
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
        inputs[name] = value
    unknown = set(raw) - {spec["id"] for spec in declared}
    inputs.update({k: raw[k] for k in unknown})  # Kestra ignores undeclared inputs
    return inputs, errors


class KestraStandin:
    """Runs the stand-in on loopback in a background thread; can be stopped and restarted
    on the same port to play 'Kestra is down'."""

    def __init__(
        self,
        port: int,
        username: str = "admin@example.com",
        password: str = "Admin1234",
        flow_file: Path = FLOW_FILE,
    ) -> None:
        self.port = port
        self.state = StandinState(yaml.safe_load(flow_file.read_text()), username, password)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = uvicorn.Config(
            build_app(self.state),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Kestra stand-in did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = None

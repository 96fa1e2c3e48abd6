"""A stand-in for Kestra, for tests only (Kestra cannot be installed here).

It follows the documented OSS 1.x contract (../shared/reference/kestra.md): everything under
`/api/v1/main/...`, HTTP basic auth, executions created from multipart/form-data whose plain
fields are the flow's inputs, `labels=key:value` query parameters, execution JSON with
`state.current`/`histories` and `taskRunList`, 401/404/409/422 as Kestra answers them, and
`/health` on the management port. It reads the repository's own flow file to know the flow's
id, namespace and inputs, so a drifting flow or client breaks the tests.

Two modes:

* **In-process** (`KestraStandin`, used by tests/api): nothing runs; tests move executions
  through states with `state.set_state()`.
* **Executor** (`python -m tests.support.kestra_standin server standalone --config FILE
  --flow-path DIR`, the image of tests/e2e/kestra-standin): a service that takes the place of
  the `kestra` compose service and *executes the flow file* the way Kestra does:

  - reads Kestra's own configuration file (kestra/application.yml, Micronaut `${VAR}` /
    `${VAR:default}` placeholders from the environment): basic auth, `env-vars-prefix`
    (`ENV_X` -> `{{ envs.x }}`), the Docker runner's `volume-enabled` flag (volumes are
    silently dropped without it, as Kestra does), the storage base path (executions are
    kept there, so they survive a restart), `kestra.url`;
  - refuses at start-up any flow construct it does not emulate (tests/support/kestra_flow.py)
    and renders the flow's Pebble subset (inputs, envs, outputs.TASK.vars, execution.id/state,
    `~`, `??`) with Kestra's strict-variable semantics;
  - runs `io.kestra.plugin.scripts.python.Commands` with the Docker task runner through the
    Docker Engine API on /var/run/docker.sock: pullPolicy, the rendered `containerImage`,
    `user`, `volumes` (binds), `networkMode`, task `env`, `commands` joined by newlines as
    the argument of `/bin/sh -c` (entrypoint reset), a fresh root-owned working directory;
    the container is removed afterwards when `delete` is true (the default); stdout lines
    `::{"outputs": {...}}::` become `outputs.TASK.vars`; `timeout` (per attempt, the image
    pull included, as Kestra's WorkerTaskCallable: the container is killed) and `retry`
    (constant interval, maxAttempts) apply; attempts are listed in `taskRunList`;
  - sets the flow's `outputs` (typed), the execution's states (CREATED -> RUNNING ->
    SUCCESS | FAILED | KILLED) with histories, then runs `afterExecution`
    `io.kestra.plugin.core.http.Request` tasks with `execution.state` = the final state
    (bearer/basic auth, connect/read timeouts, task timeout and retry; an HTTP status >= 400
    fails the attempt; a failure there does not change the execution's state);
  - stops gracefully on SIGTERM: the HTTP ports close, running executions finish (callbacks
    included), queued ones stay CREATED on disk and run after the next start. Executions
    left RUNNING by a crash are restarted from their first unfinished task; containers they
    left behind are removed first.

  Like Kestra (both modes): credentials Kestra would not store (username not an email, a
  weak password) make every API call 401; a created execution is found by search and GET
  only `visibility_delay_s` (`STANDIN_VISIBILITY_DELAY_S`) after its create was answered,
  as Kestra's asynchronous create through its queue.

  Fault switches for the end-to-end tests: `GET/POST /_standin/faults` (basic auth) with
  `drop_callbacks` (skip the afterExecution tasks of the next N executions: the callback
  never arrives), `hold` (accept executions but start none until released), and the
  in-process ones (`fail_next`, `fail_status`, `delay_s`, `create_then_fail`).
  `GET /_standin/containers` lists every task container it ran (id, image, user, binds,
  network, exit code, removed), `GET /_standin/callbacks` every afterExecution attempt, and
  `GET /api/v1/main/logs/{executionId}` the task logs.

What it does not emulate (either mode): the UI; triggers, schedules, webhooks; subflows,
flowable tasks, `errors`/`finally`, concurrency limits and QUEUED; namespace files,
`inputFiles`/`outputFiles`, FILE inputs and internal storage (`kestra://` URIs); Pebble
beyond the subset above; retry types other than constant, `maxDuration`, and the RETRYING
execution state (the task run shows RETRYING, the execution stays RUNNING); flow revisions
and flow CRUD/validation endpoints; its own database (executions live in a JSON file, not in
Postgres: a Postgres restart does not touch the stand-in, whereas real Kestra depends on its
database); worker/executor separation and the queue; container log streaming while a task
runs (logs are read when it ends); image pull authentication; pagination beyond `size`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import os
import re
import secrets
import signal
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

try:
    from tests.support import kestra_flow
except ImportError:  # pragma: no cover - run as a plain script
    import kestra_flow  # type: ignore[no-redef]


def _repo_flow_file() -> Path:
    here = Path(__file__).resolve()
    if len(here.parents) > 2:
        candidate = here.parents[2] / "flows" / "yolo-detect.yml"
        if candidate.exists():
            return candidate
    return Path("/flows/yolo-detect.yml")


FLOW_FILE = _repo_flow_file()
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
OUTPUTS_LINE = re.compile(r"^::(\{.*\})::$")


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _short_id() -> str:
    return uuid.uuid4().hex[:22]


@dataclass
class Faults:
    """Misbehaviour the tests switch on."""

    fail_next: int = 0  # answer the next N API requests with `fail_status`
    fail_status: int = 503
    delay_s: float = 0.0  # sleep before answering creations (timeouts)
    create_then_fail: bool = False  # create the execution, then answer 500 anyway
    # Executor mode only.
    drop_callbacks: int = 0  # skip afterExecution for the next N executions
    hold: bool = False  # accept executions but start none until released


@dataclass
class StandinState:
    flow: dict[str, Any]
    username: str
    password: str
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    flow_disabled: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Executor mode: what ran, for the tests and for humans reading `docker logs`.
    containers: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    base_url: str = "http://kestra/"
    store: Path | None = None  # executor mode: where the state survives restarts
    # Kestra's create only puts the execution on a queue: search and GET find it once the
    # executor has written it to the repository (ExecutionController.createExecution).
    visibility_delay_s: float = 0.0
    visible_at: dict[str, float] = field(default_factory=dict)  # monotonic clock
    on_created: Callable[[str], None] | None = None
    on_kill: Callable[[str], None] | None = None
    on_faults: Callable[[], None] | None = None

    @property
    def credentials_valid(self) -> bool:
        """Kestra 1.3 (BasicAuthService) stores configured credentials only if the username is
        an email and the password has 8-256 characters with a lower-case letter, an
        upper-case letter and a digit; otherwise every API call is 401, whatever is sent."""
        password = self.password
        return bool(
            _EMAIL.fullmatch(self.username)
            and 8 <= len(password) <= 256
            and re.search("[a-z]", password)
            and re.search("[A-Z]", password)
            and re.search("[0-9]", password)
        )

    def visible(self, execution_id: str) -> bool:
        return time.monotonic() >= self.visible_at.get(execution_id, 0.0)

    # --- test controls -----------------------------------------------------------------
    def set_state(self, execution_id: str, state: str, *, failed_task: str | None = None) -> None:
        with self.lock:
            execution = self.executions[execution_id]
            _push_state(execution["state"], state)
            if failed_task:
                execution["taskRunList"] = [
                    {
                        "id": _short_id(),
                        "taskId": failed_task,
                        "state": {"current": state},
                        "attempts": [{"state": {"current": state}}] * 2,
                        "outputs": {},
                    }
                ]
            self.save()

    def by_job(self, job_id: str) -> list[dict[str, Any]]:
        """The executions that ran (or will run) this job: its id is in their `jobs` input."""
        with self.lock:
            return [e for e in self.executions.values() if job_id in jobs_of(e)]

    def by_batch(self, batch_id: str) -> list[dict[str, Any]]:
        """The executions labelled batch_id:<batch_id> (what the API searches for)."""
        with self.lock:
            return [
                e
                for e in self.executions.values()
                if {"key": "batch_id", "value": batch_id} in e["labels"]
            ]

    # --- persistence (executor mode) ---------------------------------------------------
    def save(self) -> None:
        if self.store is None:
            return
        with self.lock:  # one writer at a time: they share the temp file
            data = json.dumps(
                {
                    "executions": self.executions,
                    "containers": self.containers,
                    "callbacks": self.callbacks,
                    "faults": asdict(self.faults),
                }
            )
            tmp = self.store.with_name(self.store.name + ".tmp")
            tmp.write_text(data)
            os.replace(tmp, self.store)

    def load(self) -> None:
        if self.store is None or not self.store.exists():
            return
        data = json.loads(self.store.read_text())
        with self.lock:
            self.executions = data.get("executions", {})
            self.containers = data.get("containers", [])
            self.callbacks = data.get("callbacks", [])
            self.faults = Faults(**data.get("faults", {}))

    def log(self, execution_id: str, message: str, *, task: str | None = None) -> None:
        entry = {"timestamp": _now(), "level": "INFO", "taskId": task, "message": message}
        with self.lock:
            self.logs.setdefault(execution_id, []).append(entry)
        print(f"[{execution_id}]{f' {task}' if task else ''} {message}", flush=True)


def jobs_of(execution: Mapping[str, Any]) -> dict[str, str]:
    """Job id -> image path, from an execution's `jobs` input (`<job_id>=<image_path>`
    entries separated by spaces, as the flow's validator lets through); {} without one."""
    jobs = (execution.get("inputs") or {}).get("jobs")
    if not isinstance(jobs, str):
        return {}
    return dict(entry.partition("=")[::2] for entry in jobs.split())


def _push_state(state: dict[str, Any], current: str) -> None:
    state["current"] = current
    state.setdefault("histories", []).append({"state": current, "date": _now()})
    if current in TERMINAL:
        state["endDate"] = _now()


def build_app(state: StandinState) -> FastAPI:
    flow = state.flow
    app = FastAPI()

    @app.middleware("http")
    async def _auth_and_faults(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if path == "/api/v1/configs":  # unauthenticated in Kestra too
            return await call_next(request)
        if path.startswith("/_standin/"):
            if request.headers.get("authorization") != _basic(state.username, state.password):
                return JSONResponse({"message": "Unauthorized"}, status_code=401)
            return await call_next(request)
        if not path.startswith("/api/v1/"):
            return await call_next(request)
        state.requests.append(
            {"method": request.method, "path": path, "query": str(request.url.query)}
        )
        if not state.credentials_valid or request.headers.get("authorization") != _basic(
            state.username, state.password
        ):
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

    @app.get("/api/v1/configs")
    def configs() -> dict[str, Any]:
        return {"version": "stand-in", "isBasicAuthEnabled": True}

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
            "id": _short_id(),
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
            state.visible_at[execution["id"]] = time.monotonic() + state.visibility_delay_s
            state.save()
            answer = copy.deepcopy(execution)
        if state.on_created is not None:
            state.on_created(execution["id"])
        if state.faults.create_then_fail:
            state.faults.create_then_fail = False
            return JSONResponse({"message": "Internal Server Error"}, 500)
        url = f"{state.base_url.rstrip('/')}/ui/main/executions/{namespace}/{flow_id}/"
        return JSONResponse({**answer, "url": url + answer["id"]})

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
                copy.deepcopy(e)
                for e in state.executions.values()
                if state.visible(e["id"])
                and (namespace is None or e["namespace"] == namespace)
                and (flow_id is None or e["flowId"] == flow_id)
                and all({"key": k, "value": v} in e["labels"] for k, v in wanted.items())
            ]
        return {"results": found[:size], "total": len(found)}

    @app.get("/api/v1/main/executions/{execution_id}")
    def get_execution(execution_id: str) -> JSONResponse:
        with state.lock:
            execution = copy.deepcopy(state.executions.get(execution_id))
        if execution is None or not state.visible(execution_id):
            return JSONResponse({"message": f"Execution {execution_id} not found"}, 404)
        return JSONResponse(execution)

    @app.delete("/api/v1/main/executions/{execution_id}/kill")
    def kill(execution_id: str) -> JSONResponse:
        if execution_id not in state.executions:
            return JSONResponse({"message": "not found"}, 404)
        if state.on_kill is not None:
            state.on_kill(execution_id)
        else:
            state.set_state(execution_id, "KILLING")
            state.set_state(execution_id, "KILLED")
        return JSONResponse({}, 202)

    @app.get("/api/v1/main/logs/{execution_id}")
    def logs(execution_id: str) -> list[dict[str, Any]]:
        with state.lock:
            return list(state.logs.get(execution_id, []))

    # --- test controls over HTTP (executor mode; same basic auth) ------------------------
    @app.get("/_standin/faults")
    def get_faults() -> dict[str, Any]:
        return asdict(state.faults)

    @app.post("/_standin/faults")
    async def set_faults(request: Request) -> JSONResponse:
        body = await request.json()
        known = {f.name: f.type for f in fields(Faults)}
        unknown = sorted(set(body) - set(known))
        if unknown:
            return JSONResponse({"message": f"unknown faults: {', '.join(unknown)}"}, 400)
        with state.lock:
            for key, value in body.items():
                setattr(state.faults, key, value)
            state.save()
        if state.on_faults is not None:
            state.on_faults()
        return JSONResponse(asdict(state.faults))

    @app.get("/_standin/containers")
    def containers() -> list[dict[str, Any]]:
        with state.lock:
            return copy.deepcopy(state.containers)

    @app.get("/_standin/callbacks")
    def callbacks() -> list[dict[str, Any]]:
        with state.lock:
            return copy.deepcopy(state.callbacks)

    return app


def _basic(username: str, password: str) -> str:
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
        else:
            if kind in ("INT", "FLOAT"):
                if "min" in spec and value < spec["min"]:
                    errors.append(f"{name}: must be >= {spec['min']}")
                if "max" in spec and value > spec["max"]:
                    errors.append(f"{name}: must be <= {spec['max']}")
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
        self._server, self._thread = _serve_in_thread(build_app(self.state), "127.0.0.1", self.port)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = None


def _serve_in_thread(app: FastAPI, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn in a thread (it installs no signal handlers there); returns once it listens."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"http-{port}")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the Kestra stand-in did not start on port {port}")
        time.sleep(0.02)
    return server, thread


# =========================================================================== executor mode


class DockerFailure(RuntimeError):
    pass


class DockerEngine:
    """The few Docker Engine API calls Kestra's Docker task runner makes, over the socket."""

    def __init__(self, socket_path: str = "/var/run/docker.sock") -> None:
        self.socket_path = socket_path
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=socket_path),
            base_url="http://docker",
            timeout=httpx.Timeout(60.0),
        )

    def _call(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DockerFailure(f"Docker engine at {self.socket_path}: {exc!r}") from None
        if response.status_code not in ok:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise DockerFailure(f"{method} {path}: {response.status_code} {message}".strip())
        return response

    def ping(self) -> None:
        self._call("GET", "/_ping")

    def image_present(self, image: str) -> bool:
        return self._call("GET", f"/images/{image}/json", ok=(200, 404)).status_code == 200

    def pull(self, image: str) -> None:
        name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        params = {"fromImage": name or image, "tag": tag or "latest"}
        response = self._call("POST", "/images/create", params=params, timeout=600.0)
        for line in response.text.splitlines():
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if "error" in message:
                    raise DockerFailure(f"pulling {image}: {message['error']}")

    def create(self, name: str, body: dict[str, Any]) -> str:
        response = self._call("POST", "/containers/create", params={"name": name}, json=body)
        return str(response.json()["Id"])

    def start(self, container: str) -> None:
        self._call("POST", f"/containers/{container}/start", ok=(204, 304))

    def wait(self, container: str, timeout_s: float) -> int | None:
        """The exit code, or None when the container is still running after timeout_s."""
        try:
            response = self._client.post(
                f"/containers/{container}/wait",
                timeout=httpx.Timeout(10.0, read=max(timeout_s, 0.1)),
            )
        except httpx.ReadTimeout:
            return None
        except httpx.TransportError as exc:
            raise DockerFailure(f"waiting for {container[:12]}: {exc!r}") from None
        if response.status_code != 200:
            raise DockerFailure(f"waiting for {container[:12]}: {response.text}")
        return int(response.json()["StatusCode"])

    def logs(self, container: str) -> tuple[str, str]:
        """stdout and stderr of a container created without a TTY (multiplexed stream)."""
        raw = self._call(
            "GET", f"/containers/{container}/logs", params={"stdout": 1, "stderr": 1}
        ).content
        out, err = bytearray(), bytearray()
        pos = 0
        while pos + 8 <= len(raw):
            stream, size = raw[pos], struct.unpack(">I", raw[pos + 4 : pos + 8])[0]
            chunk = raw[pos + 8 : pos + 8 + size]
            (err if stream == 2 else out).extend(chunk)
            pos += 8 + size
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def kill(self, container: str) -> None:
        self._call("POST", f"/containers/{container}/kill", ok=(204, 404, 409))

    def remove(self, container: str) -> None:
        self._call("DELETE", f"/containers/{container}", params={"force": 1, "v": 1}, ok=(204, 404))

    def inspect(self, container: str) -> dict[str, Any] | None:
        response = self._call("GET", f"/containers/{container}/json", ok=(200, 404))
        return response.json() if response.status_code == 200 else None

    def by_label(self, label: str) -> list[str]:
        filters = json.dumps({"label": [label]})
        response = self._call("GET", "/containers/json", params={"all": 1, "filters": filters})
        return [str(c["Id"]) for c in response.json()]


@dataclass
class ExecutorConfig:
    envs: dict[str, str]
    volumes_enabled: bool
    threads: int = 4
    drain_timeout_s: float = 330.0


class _AttemptFailed(Exception):
    """One attempt of a task failed; `outputs` is what it produced anyway."""

    def __init__(self, message: str, outputs: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outputs = outputs


class FlowExecutor:
    """Runs executions of the (single) flow, one per worker thread."""

    LABEL = "io.kestra.standin.execution"

    def __init__(self, state: StandinState, engine: DockerEngine, config: ExecutorConfig) -> None:
        self.state = state
        self.engine = engine
        self.config = config
        self.flow = state.flow
        self._queue: deque[str] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._killed: set[str] = set()
        self._running: dict[str, str] = {}  # execution id -> container id
        self._workers: list[threading.Thread] = []
        state.on_created = self.submit
        state.on_kill = self.kill
        state.on_faults = self.poke

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._resume()
        except DockerFailure as exc:
            print(f"WARNING: could not clean up after the last run: {exc}", flush=True)
        for index in range(self.config.threads):
            worker = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        """Start nothing new; let running executions finish (callbacks included)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + self.config.drain_timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.state.save()

    def submit(self, execution_id: str) -> None:
        with self._cond:
            self._queue.append(execution_id)
            self._cond.notify()

    def poke(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def kill(self, execution_id: str) -> None:
        with self.state.lock:
            execution = self.state.executions[execution_id]
            if execution["state"]["current"] in TERMINAL:
                return
            self._killed.add(execution_id)
            _push_state(execution["state"], "KILLING")
            self.state.save()
            container = self._running.get(execution_id)
        if container:
            with contextlib.suppress(DockerFailure):
                self.engine.kill(container)
        self.poke()

    def _resume(self) -> None:
        """After a restart: queued executions run; interrupted ones start their task again."""
        with self.state.lock:
            pending = [
                e for e in self.state.executions.values() if e["state"]["current"] not in TERMINAL
            ]
        pending.sort(key=lambda e: e["state"].get("startDate", ""))
        for execution in pending:
            execution_id = execution["id"]
            if execution["state"]["current"] != "CREATED":
                for container in self.engine.by_label(f"{self.LABEL}={execution_id}"):
                    self.engine.remove(container)
                    self._mark_removed(container)
                with self.state.lock:
                    execution["taskRunList"] = [
                        run
                        for run in execution["taskRunList"]
                        if run["state"]["current"] in TERMINAL
                    ]
                self.state.log(execution_id, "interrupted by a restart: running it again")
            self.submit(execution_id)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (self.state.faults.hold or not self._queue):
                    self._cond.wait(1.0)
                if self._stopping:
                    return
                execution_id = self._queue.popleft()
            try:
                self._run(execution_id)
            except Exception as exc:  # never lose a worker; the execution fails loudly
                self.state.log(execution_id, f"stand-in error: {exc!r}")
                with self.state.lock:
                    execution = self.state.executions[execution_id]
                    if execution["state"]["current"] not in TERMINAL:
                        _push_state(execution["state"], "FAILED")
                    self.state.save()

    # --- one execution -----------------------------------------------------------------
    def _context(self, execution: dict[str, Any], final_state: str | None) -> dict[str, Any]:
        outputs = {
            run["taskId"]: {"vars": run["outputs"].get("vars", {})}
            for run in execution["taskRunList"]
            if run.get("outputs", {}).get("vars") is not None
        }
        return {
            "inputs": execution["inputs"],
            "envs": self.config.envs,
            "outputs": outputs,
            "execution": {"id": execution["id"], "state": final_state or "RUNNING"},
        }

    def _run(self, execution_id: str) -> None:
        state = self.state
        with state.lock:
            execution = state.executions[execution_id]
            if execution["state"]["current"] in TERMINAL:
                return
            if execution["state"]["current"] != "RUNNING":
                _push_state(execution["state"], "RUNNING")
            state.save()
        failed = False
        done = {r["taskId"] for r in execution["taskRunList"] if r["state"]["current"] in TERMINAL}
        for task in self.flow["tasks"]:
            if task["id"] in done:
                continue
            if execution_id in self._killed:
                break
            run = self._run_task(execution, task, final_state=None)
            if run["state"]["current"] != "SUCCESS":
                failed = True
                break
        final = "KILLED" if execution_id in self._killed else ("FAILED" if failed else "SUCCESS")
        outputs, output_error = self._flow_outputs(execution)
        if output_error:
            state.log(execution_id, f"Failed to render output values: {output_error}")
            final = "FAILED" if final == "SUCCESS" else final
        with state.lock:
            execution["outputs"] = outputs
            _push_state(execution["state"], final)
            state.save()
        state.log(execution_id, f"execution ended {final}")
        self._after_execution(execution, final)

    def _flow_outputs(self, execution: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        context = self._context(execution, None)
        values: dict[str, Any] = {}
        try:
            for output in self.flow.get("outputs") or []:
                text = kestra_flow.render(output["value"], context)
                values[output["id"]] = _typed(text, output["type"])
        except (kestra_flow.RenderError, ValueError) as exc:
            return {}, str(exc)
        return values, None

    def _after_execution(self, execution: dict[str, Any], final: str) -> None:
        tasks = self.flow.get("afterExecution") or []
        if not tasks:
            return
        with self.state.lock:
            drop = self.state.faults.drop_callbacks > 0
            if drop:
                self.state.faults.drop_callbacks -= 1
        if drop:
            self.state.log(execution["id"], "fault: afterExecution dropped (no callback sent)")
            with self.state.lock:
                self.state.callbacks.append(
                    {"executionId": execution["id"], "state": final, "dropped": True}
                )
                self.state.save()
            return
        for task in tasks:
            self._run_task(execution, task, final_state=final)

    def _run_task(
        self, execution: dict[str, Any], task: dict[str, Any], *, final_state: str | None
    ) -> dict[str, Any]:
        state = self.state
        run: dict[str, Any] = {
            "id": _short_id(),
            "executionId": execution["id"],
            "namespace": execution["namespace"],
            "flowId": execution["flowId"],
            "taskId": task["id"],
            "parentTaskRunId": None,
            "value": None,
            "attempts": [],
            "outputs": {},
            "state": {"current": "CREATED", "startDate": _now(), "histories": []},
        }
        _push_state(run["state"], "CREATED")
        with state.lock:
            execution["taskRunList"].append(run)
            _push_state(run["state"], "RUNNING")
            state.save()
        retry = task.get("retry") or {}
        interval = kestra_flow.duration_s(retry.get("interval", "PT0S"), "retry.interval")
        attempts = kestra_flow.max_attempts(task)
        timeout = kestra_flow.duration_s(task["timeout"], "timeout") if "timeout" in task else None
        for number in range(1, attempts + 1):
            attempt: dict[str, Any] = {"state": {"current": "RUNNING", "startDate": _now()}}
            attempt["state"]["histories"] = [{"state": "RUNNING", "date": _now()}]
            with state.lock:
                run["attempts"].append(attempt)
                state.save()
            try:
                context = self._context(execution, final_state)
                if task["type"] == kestra_flow.COMMANDS_TASK:
                    outputs = self._commands(execution, task, context, number, timeout)
                else:
                    outputs = self._request(execution, task, context, number, timeout, final_state)
            except (_AttemptFailed, kestra_flow.RenderError, DockerFailure) as exc:
                state.log(execution["id"], f"attempt {number} failed: {exc}", task=task["id"])
                with state.lock:
                    _push_state(attempt["state"], "FAILED")
                    if isinstance(exc, _AttemptFailed) and exc.outputs is not None:
                        run["outputs"] = exc.outputs
                    state.save()
                if number < attempts and execution["id"] not in self._killed:
                    with state.lock:
                        _push_state(run["state"], "RETRYING")
                        state.save()
                    time.sleep(interval)
                    with state.lock:
                        _push_state(run["state"], "RUNNING")
                        state.save()
                    continue
                final = "KILLED" if execution["id"] in self._killed else "FAILED"
                with state.lock:
                    _push_state(run["state"], final)
                    state.save()
                return run
            with state.lock:
                run["outputs"] = outputs
                _push_state(attempt["state"], "SUCCESS")
                _push_state(run["state"], "SUCCESS")
                state.save()
            return run
        raise AssertionError("unreachable")

    # --- io.kestra.plugin.scripts.python.Commands on the Docker runner ------------------
    def _commands(
        self,
        execution: dict[str, Any],
        task: dict[str, Any],
        context: Mapping[str, Any],
        attempt: int,
        timeout: float | None,
    ) -> dict[str, Any]:
        render = kestra_flow.render
        runner = task["taskRunner"]
        image = render(task["containerImage"], context)
        commands = render(task["commands"], context)
        env = {str(k): str(v) for k, v in render(task.get("env") or {}, context).items()}
        user = render(runner.get("user", ""), context)
        volumes = render(runner.get("volumes") or [], context)
        if volumes and not self.config.volumes_enabled:
            volumes = []  # what Kestra does without volume-enabled: silently nothing
        # Kestra's task timeout wraps the whole run (WorkerTaskCallable): the pull counts.
        deadline = None if timeout is None else time.monotonic() + timeout
        policy = runner.get("pullPolicy", "IF_NOT_PRESENT")
        present = self.engine.image_present(image)
        if policy == "ALWAYS" or (policy == "IF_NOT_PRESENT" and not present):
            self.state.log(execution["id"], f"pulling {image}", task=task["id"])
            self.engine.pull(image)
        elif policy == "NEVER" and not present:
            raise _AttemptFailed(f"image {image} is not present and pullPolicy is NEVER")
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise _AttemptFailed(f"Timeout after {task['timeout']} (pulling {image})")
        name = f"kestra-standin-{execution['id']}-{task['id']}-{attempt}-{secrets.token_hex(3)}"
        body: dict[str, Any] = {
            "Image": image,
            "Entrypoint": [""],
            "Cmd": ["/bin/sh", "-c", "\n".join(commands)],
            "Env": [f"{k}={v}" for k, v in env.items()],
            "User": user,
            # Kestra's working directory: created by Docker, owned by root.
            "WorkingDir": f"/kestra-wd/{secrets.token_hex(8)}",
            "Labels": {
                self.LABEL: execution["id"],
                "io.kestra.standin.task": task["id"],
                "io.kestra.standin.attempt": str(attempt),
            },
            "HostConfig": {"Binds": volumes, "AutoRemove": False},
        }
        if runner.get("networkMode"):
            body["HostConfig"]["NetworkMode"] = render(runner["networkMode"], context)
        container = self.engine.create(name, body)
        record = {
            "executionId": execution["id"],
            "taskId": task["id"],
            "attempt": attempt,
            "containerId": container,
            "name": name,
            "image": image,
            "user": user,
            "binds": volumes,
            "network": body["HostConfig"].get("NetworkMode", "default"),
            "startedAt": _now(),
            "exitCode": None,
            "removed": False,
        }
        with self.state.lock:
            self.state.containers.append(record)
            self._running[execution["id"]] = container
            self.state.save()
        self.state.log(execution["id"], f"container {container[:12]} ({image})", task=task["id"])
        try:
            self.engine.start(container)
            code = self.engine.wait(container, left if left is not None else 10**6)
            if code is None:
                self.engine.kill(container)
                self.engine.wait(container, 30)
            stdout, stderr = self.engine.logs(container)
        finally:
            with self.state.lock:
                self._running.pop(execution["id"], None)
                record["finishedAt"] = _now()
                self.state.save()
            if runner.get("delete", True):
                self.engine.remove(container)
                self._mark_removed(container)
        for line in stderr.splitlines()[-20:]:
            self.state.log(execution["id"], f"stderr: {line}", task=task["id"])
        variables: dict[str, Any] = {}
        for line in stdout.splitlines():
            match = OUTPUTS_LINE.match(line.strip())
            if match:
                with contextlib.suppress(ValueError, AttributeError):
                    variables.update(json.loads(match.group(1)).get("outputs") or {})
            elif line.strip():
                self.state.log(execution["id"], f"stdout: {line}", task=task["id"])
        with self.state.lock:
            record["exitCode"] = code
            self.state.save()
        if execution["id"] in self._killed:
            raise _AttemptFailed("killed", {"vars": variables, "exitCode": code})
        if code is None:
            raise _AttemptFailed(f"Timeout after {task['timeout']}")
        outputs = {"vars": variables, "exitCode": code}
        if code != 0:
            raise _AttemptFailed(f"Command failed with exit code {code}", outputs)
        return outputs

    def _mark_removed(self, container: str) -> None:
        with self.state.lock:
            for record in self.state.containers:
                if record["containerId"] == container:
                    record["removed"] = True
            self.state.save()

    # --- io.kestra.plugin.core.http.Request ---------------------------------------------
    def _request(
        self,
        execution: dict[str, Any],
        task: dict[str, Any],
        context: Mapping[str, Any],
        attempt: int,
        timeout: float | None,
        final_state: str | None,
    ) -> dict[str, Any]:
        render = kestra_flow.render
        options = task.get("options") or {}
        headers = {str(k): str(v) for k, v in render(task.get("headers") or {}, context).items()}
        if "contentType" in task:
            headers["Content-Type"] = render(task["contentType"], context)
        auth = options.get("auth")
        if auth and auth["type"] == "BEARER":
            headers["Authorization"] = "Bearer " + render(auth["token"], context)
        elif auth and auth["type"] == "BASIC":
            headers["Authorization"] = _basic(
                render(auth["username"], context), render(auth["password"], context)
            )
        limits = options.get("timeout") or {}
        connect = kestra_flow.duration_s(limits.get("connectTimeout", "PT10S"), "connectTimeout")
        read = kestra_flow.duration_s(limits.get("readIdleTimeout", "PT5M"), "readIdleTimeout")
        if timeout is not None:
            connect, read = min(connect, timeout), min(read, timeout)
        uri = render(task["uri"], context)
        body = render(task.get("body", ""), context)
        record: dict[str, Any] = {
            "executionId": execution["id"],
            "taskId": task["id"],
            "attempt": attempt,
            "state": final_state,
            "uri": uri,
            "dropped": False,
            "at": _now(),
        }
        try:
            response = httpx.request(
                str(task.get("method", "GET")),
                uri,
                content=body.encode(),
                headers=headers,
                timeout=httpx.Timeout(read, connect=connect),
            )
        except httpx.HTTPError as exc:
            record["error"] = repr(exc)
            self._record_callback(record)
            raise _AttemptFailed(f"{task.get('method', 'GET')} {uri}: {exc!r}") from None
        record["status"] = response.status_code
        self._record_callback(record)
        line = f"{task.get('method')} {uri} -> {response.status_code}"
        self.state.log(execution["id"], line, task=task["id"])
        if response.status_code >= 400 and not options.get("allowFailed", False):
            raise _AttemptFailed(f"Failed http request with response code '{response.status_code}'")
        return {"vars": {"code": response.status_code, "body": response.text[:2000]}}

    def _record_callback(self, record: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.callbacks.append(record)
            self.state.save()


def _typed(text: Any, kind: str) -> Any:
    if kind == "STRING":
        return str(text)
    if kind == "INT":
        return int(str(text))
    if kind == "FLOAT":
        return float(str(text))
    if kind == "BOOLEAN":
        return str(text).lower() == "true"
    raise kestra_flow.Unsupported(f"output type {kind}")


# --- Kestra's configuration file -------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.-]+)(?::([^}]*))?\}")


def resolve_placeholders(value: Any, env: Mapping[str, str]) -> Any:
    """Micronaut `${NAME}` / `${NAME:default}`; a missing NAME without default is fatal."""
    if isinstance(value, dict):
        return {k: resolve_placeholders(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_placeholders(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise SystemExit(f"Could not resolve placeholder ${{{name}}}")
        return default

    return _PLACEHOLDER.sub(sub, value)


@dataclass
class ServerSettings:
    username: str
    password: str
    env_prefix: str
    volumes_enabled: bool
    storage: Path
    url: str


def read_config(path: Path, env: Mapping[str, str]) -> ServerSettings:
    config = resolve_placeholders(yaml.safe_load(path.read_text()) or {}, env)
    kestra = config.get("kestra") or {}
    auth = (kestra.get("server") or {}).get("basic-auth") or {}
    if not auth.get("username") or not auth.get("password"):
        raise SystemExit("kestra.server.basic-auth username/password are required (Kestra 1.x)")
    plugins = (kestra.get("plugins") or {}).get("configurations") or []
    volumes_enabled = any(
        item.get("type") == kestra_flow.DOCKER_RUNNER
        and (item.get("values") or {}).get("volume-enabled") is True
        for item in plugins
    )
    storage = ((kestra.get("storage") or {}).get("local") or {}).get("base-path", "/app/storage")
    return ServerSettings(
        username=str(auth["username"]),
        password=str(auth["password"]),
        env_prefix=str((kestra.get("variables") or {}).get("env-vars-prefix", "ENV_")),
        volumes_enabled=volumes_enabled,
        storage=Path(storage),
        url=str(kestra.get("url", "http://localhost:8080/")),
    )


def load_flow(flow_path: Path) -> dict[str, Any]:
    files = sorted([*flow_path.glob("**/*.yml"), *flow_path.glob("**/*.yaml")])
    if len(files) != 1:
        raise SystemExit(f"the stand-in runs exactly one flow; found {len(files)} in {flow_path}")
    flow = yaml.safe_load(files[0].read_text())
    try:
        kestra_flow.check_flow(flow)
    except kestra_flow.Unsupported as exc:
        raise SystemExit(f"{files[0]}: {exc}") from None
    return flow  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kestra stand-in (tests only)")
    parser.add_argument("command", nargs="*", help="server standalone (as Kestra's CLI)")
    parser.add_argument("-c", "--config", type=Path, required=True)
    parser.add_argument("--flow-path", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--management-port", type=int, default=8081)
    # Kestra's switch; the stand-in never loads tutorial flows either way.
    parser.add_argument("--no-tutorials", action="store_true")
    args = parser.parse_args(argv)
    if args.command not in (["server", "standalone"], ["server", "local"]):
        parser.error("expected `server standalone`")
    env = dict(os.environ)
    settings = read_config(args.config, env)
    flow = load_flow(args.flow_path)
    envs = {
        k[len(settings.env_prefix) :].lower(): v
        for k, v in env.items()
        if k.startswith(settings.env_prefix)
    }
    settings.storage.mkdir(parents=True, exist_ok=True)
    state = StandinState(flow, settings.username, settings.password)
    state.base_url = settings.url
    state.visibility_delay_s = float(os.environ.get("STANDIN_VISIBILITY_DELAY_S", "0"))
    state.store = settings.storage / "standin-state.json"
    state.load()
    engine = DockerEngine(os.environ.get("DOCKER_SOCKET", "/var/run/docker.sock"))
    try:
        engine.ping()
    except DockerFailure as exc:
        print(f"WARNING: {exc}: tasks will fail until the engine answers", flush=True)
    executor = FlowExecutor(
        state,
        engine,
        ExecutorConfig(
            envs=envs,
            volumes_enabled=settings.volumes_enabled,
            threads=int(os.environ.get("STANDIN_WORKER_THREADS", "4")),
            drain_timeout_s=float(os.environ.get("STANDIN_DRAIN_TIMEOUT_S", "330")),
        ),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    executor.start()
    management = FastAPI()

    @management.get("/health")
    @management.get("/health/liveness")
    @management.get("/health/readiness")
    def health() -> dict[str, str]:
        return {"status": "UP"}

    api_server, _ = _serve_in_thread(build_app(state), "0.0.0.0", args.port)
    mgmt_server, _ = _serve_in_thread(management, "0.0.0.0", args.management_port)
    volumes = "enabled" if settings.volumes_enabled else "IGNORED (volume-enabled is not set)"
    print(
        f"Kestra stand-in: flow {flow['namespace']}.{flow['id']}, API :{args.port}, "
        f"management :{args.management_port}, task volumes {volumes}",
        flush=True,
    )
    stop.wait()
    print("stopping: no new executions; waiting for running ones", flush=True)
    api_server.should_exit = True
    mgmt_server.should_exit = True
    executor.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

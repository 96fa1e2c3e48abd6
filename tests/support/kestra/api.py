"""Kestra's REST API (OSS 1.x, tenant `main`) as far as the stack uses it, answered the way
Kestra answers (401/404/409/415/422), the stand-in's own `/_standin/` test controls, and
uvicorn serving them in a thread. The routes find the state in `app.state.standin`."""

from __future__ import annotations

import base64
import copy
import re
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from tests.support.kestra.flow import TYPES, Input, load_flows
from tests.support.kestra.state import Faults, StandinState, now, push_state, short_id

# The repository's flows, which the in-process stand-in serves.
FLOWS_DIR = Path(__file__).resolve().parents[3] / "flows"
router = APIRouter()
_LABEL_FILTER = re.compile(r"filters\[labels\]\[EQUALS\]\[(.+)\]")


def _standin(request: Request) -> StandinState:
    return cast(StandinState, request.app.state.standin)


State = Annotated[StandinState, Depends(_standin)]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Basic auth on the API and the test controls (not /api/v1/configs, open in Kestra too),
    then the injected API failures; every API request is recorded for the tests."""
    state, path = _standin(request), request.url.path
    api = path.startswith("/api/v1/") and path != "/api/v1/configs"
    if not api and not path.startswith("/_standin/"):
        return await call_next(request)
    if api:
        state.requests.append({"method": request.method, "path": path, "query": request.url.query})
    credentials = base64.b64encode(f"{state.username}:{state.password}".encode()).decode()
    if request.headers.get("authorization") != f"Basic {credentials}" or (
        api and not state.credentials_valid
    ):
        return _error(401, "Unauthorized")
    if api and state.faults.fail_next > 0:
        state.faults.fail_next -= 1
        return _error(state.faults.fail_status, "injected failure")
    return await call_next(request)


def validate_inputs(declared: list[Input], raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Kestra checks inputs against the flow before creating anything (422 otherwise)."""
    inputs: dict[str, Any] = {k: v for k, v in raw.items() if k not in {s.id for s in declared}}
    errors: list[str] = []
    for spec in declared:
        value = raw.get(spec.id, spec.defaults)
        if value is None:
            errors.append(f"{spec.id}: missing required input")
            continue
        try:
            inputs[spec.id] = value = TYPES[spec.type](value)
        except ValueError as exc:
            errors.append(f"{spec.id}: {exc}")
            continue
        if spec.validator is not None and not spec.validator.fullmatch(value):
            errors.append(f"{spec.id}: does not match {spec.validator.pattern}")
        if spec.min is not None and value < spec.min:
            errors.append(f"{spec.id}: must be >= {spec.min}")
        if spec.max is not None and value > spec.max:
            errors.append(f"{spec.id}: must be <= {spec.max}")
    return inputs, errors


def _unknown_flow(state: StandinState, namespace: str, flow_id: str) -> JSONResponse | None:
    if (namespace, flow_id) in state.checked:
        return None
    return _error(404, f"Flow {namespace}.{flow_id} not found")


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "UP"}


@router.get("/api/v1/configs")
def configs() -> dict[str, Any]:
    return {"version": "stand-in", "isBasicAuthEnabled": True}


@router.get("/api/v1/main/flows/{namespace}/{flow_id}")
def get_flow(namespace: str, flow_id: str, state: State) -> JSONResponse:
    missing = _unknown_flow(state, namespace, flow_id)
    raw = state.raw_flow(namespace, flow_id)
    return missing or JSONResponse({**(raw or {}), "disabled": state.flow_disabled})


@router.post("/api/v1/main/executions/{namespace}/{flow_id}")
async def create(namespace: str, flow_id: str, request: Request, state: State) -> JSONResponse:
    """Multipart form fields are the inputs, `labels=key:value` query parameters the labels."""
    if missing := _unknown_flow(state, namespace, flow_id):
        return missing
    if state.flow_disabled:
        return _error(409, "Cannot execute a disabled flow")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return _error(415, "Unsupported Media Type")
    form = await request.form()
    raw = {key: value for key, value in form.items() if not isinstance(value, UploadFile)}
    inputs, errors = validate_inputs(state.checked[(namespace, flow_id)].inputs, raw)
    if errors:
        return _error(422, "Invalid entity: " + "; ".join(errors))
    labels = [item.partition(":") for item in request.query_params.getlist("labels")]
    if bad := [key for key, sep, _ in labels if not sep]:
        return _error(400, f"Invalid label {bad[0]!r}")
    time.sleep(state.faults.delay_s)
    execution: dict[str, Any] = {
        "id": short_id(),
        "namespace": namespace,
        "flowId": flow_id,
        "flowRevision": 1,
        "inputs": inputs,
        "outputs": {},
        "labels": [{"key": key, "value": value} for key, _, value in labels],
        "state": push_state({"startDate": now()}, "CREATED"),
        "taskRunList": [],
    }
    with state.change():
        state.executions[execution["id"]] = execution
        state.visible_at[execution["id"]] = time.monotonic() + state.visibility_delay_s
        answer = copy.deepcopy(execution)
    state.on_created(execution["id"])
    if state.faults.create_then_fail:
        state.faults.create_then_fail = False
        return _error(500, "Internal Server Error")
    url = f"{state.base_url.rstrip('/')}/ui/main/executions/{namespace}/{flow_id}/{answer['id']}"
    return JSONResponse({**answer, "url": url})


@router.get("/api/v1/main/executions/search")
def search(request: Request, state: State) -> dict[str, Any]:
    params = request.query_params
    wanted = [
        {"key": m.group(1), "value": value}
        for key, value in params.multi_items()
        if (m := _LABEL_FILTER.fullmatch(key))
    ]
    namespace = params.get("filters[namespace][EQUALS]")
    flow_id = params.get("filters[flowId][EQUALS]")
    with state.lock:
        found = [
            copy.deepcopy(e)
            for e in state.executions.values()
            if state.visible(e["id"])
            and namespace in (None, e["namespace"])
            and flow_id in (None, e["flowId"])
            and all(label in e["labels"] for label in wanted)
        ]
    return {"results": found[: int(params.get("size", "10"))], "total": len(found)}


@router.get("/api/v1/main/executions/{execution_id}")
def get_execution(execution_id: str, state: State) -> JSONResponse:
    with state.lock:
        execution = copy.deepcopy(state.executions.get(execution_id))
    if execution is None or not state.visible(execution_id):
        return _error(404, f"Execution {execution_id} not found")
    return JSONResponse(execution)


@router.post("/_standin/faults")
async def set_faults(request: Request, state: State) -> JSONResponse:
    """Switch faults on or off; unknown names or wrong types are refused (400)."""
    body = await request.json()
    try:
        with state.change():
            state.faults = Faults.model_validate({**state.faults.model_dump(), **body})
    except ValidationError as exc:
        return _error(400, f"bad faults: {exc}")
    state.on_faults()
    return JSONResponse(state.faults.model_dump())


@router.get("/_standin/{kind}")
def records(kind: Literal["containers", "callbacks"], state: State) -> list[dict[str, Any]]:
    """The task containers or the afterExecution requests the executor ran."""
    with state.lock:
        return copy.deepcopy(getattr(state, kind))


def build_app(state: StandinState) -> FastAPI:
    app = FastAPI()
    app.state.standin = state
    app.middleware("http")(guard)
    app.include_router(router)
    return app


def management_app() -> FastAPI:
    """Kestra's management port: health only."""
    app = FastAPI()
    for path in ("/health", "/health/liveness", "/health/readiness"):
        app.get(path)(health)
    return app


def serve_in_thread(app: FastAPI, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn in a thread (it installs no signal handlers there); returns once it listens."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"http-{port}")
    thread.start()
    Retrying(
        stop=stop_after_delay(10),
        wait=wait_fixed(0.02),
        retry=retry_if_result(lambda settled: not settled),
        retry_error_callback=lambda _: False,
    )(lambda: server.started or not thread.is_alive())
    if not server.started:
        raise RuntimeError(f"the Kestra stand-in did not start on port {port}")
    return server, thread


class KestraStandin:
    """The API on loopback in a thread, nothing executed; `stop()` then `start()` on the same
    port plays 'Kestra is down'."""

    def __init__(
        self, port: int, username: str = "admin@example.com", password: str = "Admin1234"
    ) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.state = StandinState(load_flows(FLOWS_DIR), username, password)
        self._serving: tuple[uvicorn.Server, threading.Thread] | None = None

    def start(self) -> None:
        self._serving = serve_in_thread(build_app(self.state), "127.0.0.1", self.port)

    def stop(self) -> None:
        if self._serving is not None:
            self._serving[0].should_exit = True
            self._serving[1].join(10)
        self._serving = None

"""The flow file as the stand-in reads it: every property, task type and runner option it
emulates is declared here, and anything else is refused before anything runs."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from tests.support.kestra.pebble import Unsupported, references

DOCKER_RUNNER = "io.kestra.plugin.scripts.runner.docker.Docker"
# Input and output types (what the flow declares) and how a value becomes one.
TYPES: dict[str, type] = {"STRING": str, "INT": int, "FLOAT": float}
# Java's Duration.parse grammar, which Kestra uses: days, hours, minutes, seconds, in order.
_JAVA_DURATION = re.compile(r"P(?!$)(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?")
_TIMEDELTA = TypeAdapter(datetime.timedelta)


def _seconds(value: Any) -> float:
    """An ISO-8601 duration such as PT10M, in seconds."""
    if not isinstance(value, str) or not _JAVA_DURATION.fullmatch(value):
        raise ValueError(f"{value!r} is not an ISO-8601 duration the stand-in reads")
    return _TIMEDELTA.validate_python(value).total_seconds()


Seconds = Annotated[float, BeforeValidator(_seconds)]


class _Strict(BaseModel):
    """Kestra's camelCase properties; no unknown ones, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, alias_generator=to_camel)


class _Item(_Strict):
    id: str
    description: str = ""


class Input(_Item):  # required: Kestra's default (true)
    type: Literal["STRING", "INT", "FLOAT"]
    defaults: str | int | float | None = None
    validator: re.Pattern[str] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> Input:
        if self.validator is not None and self.type != "STRING":
            raise ValueError("validator is a STRING input's property")
        if self.type == "STRING" and (self.min, self.max) != (None, None):
            raise ValueError("min and max are INT and FLOAT inputs' properties")
        return self


class Output(_Item):
    type: Literal["STRING", "INT", "FLOAT"]
    value: str


class Retry(_Strict):
    type: Literal["constant"]
    interval: Seconds = 0.0
    max_attempts: int = Field(gt=0)


class _Task(_Item):
    timeout: Seconds | None = None  # per attempt
    retry: Retry | None = None


class DeviceRequest(_Strict):
    """Kestra's DeviceRequest, passed to Docker's HostConfig.DeviceRequests (GPUs: `docker run
    --gpus all` is driver nvidia, count -1, capabilities [[gpu]]). Kestra renders each field
    (Property<...>); the stand-in renders the strings and takes the rest as literals."""

    driver: str | None = None
    count: int | None = None  # -1: all devices
    device_ids: list[str] | None = None
    capabilities: list[list[str]] | None = None  # an OR list of AND lists
    options: dict[str, str] | None = None


class DockerRunner(_Strict):
    type: Literal["io.kestra.plugin.scripts.runner.docker.Docker"]
    pull_policy: Literal["IF_NOT_PRESENT", "ALWAYS", "NEVER"] = "IF_NOT_PRESENT"
    user: str = ""
    volumes: list[Annotated[str, Field(pattern=r"^[^:]+:[^:]+(:[^:]+)?$")]] = []  # src:dst[:mode]
    delete: bool = True
    network_mode: str | None = None
    device_requests: list[DeviceRequest] = []  # a plain list in Kestra: not one expression


class CommandsTask(_Task):
    type: Literal["io.kestra.plugin.scripts.python.Commands"]
    container_image: str
    task_runner: DockerRunner
    env: dict[str, str] = {}
    commands: list[str] = Field(min_length=1)


class Bearer(_Strict):
    type: Literal["BEARER"]
    token: str


class HttpTimeout(_Strict):
    connect_timeout: Seconds = 10.0
    read_idle_timeout: Seconds = 300.0


class RequestOptions(_Strict):  # allowFailed: Kestra's default (false)
    auth: Bearer | None = None
    timeout: HttpTimeout = HttpTimeout()


class RequestTask(_Task):
    type: Literal["io.kestra.plugin.core.http.Request"]
    uri: str
    method: str = "GET"
    content_type: str | None = None
    body: str = ""
    options: RequestOptions = RequestOptions()


class Flow(_Item):
    namespace: str
    inputs: list[Input] = []
    tasks: list[CommandsTask] = Field(min_length=1)
    outputs: list[Output] = []
    after_execution: list[RequestTask] = []


def _complaint(error: ErrorDetails) -> str:
    *parent, field = error["loc"] or ("flow",)
    where = ".".join(str(part) for part in parent) or "flow"
    if error["type"] == "extra_forbidden":
        return f"{where}: {field} not emulated by the Kestra stand-in"
    if error["type"] == "literal_error":
        expected = (error.get("ctx") or {})["expected"]
        return f"{where}: {field} {error['input']!r} is not emulated (only {field} {expected})"
    return f"{where}.{field}: {error['msg'].removeprefix('Value error, ')}"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, (dict, list)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def check_flow(raw: Any) -> Flow:
    """The flow, unless it uses something the stand-in does not emulate (Unsupported). Every
    expression must render, name a declared input and only tasks that ran before."""
    try:
        flow = Flow.model_validate(raw)
    except ValidationError as exc:
        raise Unsupported("; ".join(_complaint(error) for error in exc.errors())) from None
    inputs, ran = {spec.id for spec in flow.inputs}, []
    for section in ("tasks", "afterExecution", "outputs"):
        for item in raw.get(section) or []:
            values = [v for k, v in item.items() if k not in ("id", "type", "description")]
            for ref in (ref for text in _strings(values) for ref in references(text)):
                kind, name, *_ = ref.path.split(".")
                where = f"{section}.{item['id']}: {ref.path}"
                if kind == "inputs" and name not in inputs:
                    raise Unsupported(f"{where} is not a declared input")
                if kind == "outputs" and name not in ran:
                    raise Unsupported(f"{where} names no task that ran before")
            ran += [item["id"]] if section != "outputs" else []
    return flow


def load_flows(flow_path: Path) -> list[dict[str, Any]]:
    """The flows under `--flow-path` (YAML files, as Kestra). Kestra skips an invalid flow
    with a WARN; the stand-in refuses to start instead."""
    files = sorted([*flow_path.glob("**/*.yml"), *flow_path.glob("**/*.yaml")])
    if not files:
        raise SystemExit(f"no flow in {flow_path}")
    flows: list[dict[str, Any]] = []
    for path in files:
        flows.append(yaml.safe_load(path.read_text()))
        try:
            check_flow(flows[-1])
        except Unsupported as exc:
            raise SystemExit(f"{path}: {exc}") from None
    return flows

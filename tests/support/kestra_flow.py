"""The part of Kestra that reads a flow file, for the Kestra stand-in (tests only).

Two things live here:

* a renderer for the subset of Pebble (Kestra's template language) that
  ``flows/yolo-detect.yml`` uses: ``{{ ... }}`` holding references
  (``inputs.X``, ``envs.X``, ``outputs.TASK.vars.KEY``, ``execution.id``,
  ``execution.state``), string and number literals, ``~`` (concatenation),
  ``??`` (null-coalescing: the right side when the left is undefined or null)
  and parentheses. Like Kestra (strict variables), an undefined reference
  outside ``??`` is an error. Anything else (filters, functions, tags,
  comparisons, indexing, other variables, mixing ``~`` and ``??`` without
  parentheses) raises :class:`Unsupported`: the flow must not drift into
  something only real Kestra would evaluate.
* :func:`check_flow`, which walks the flow and refuses every flow property,
  task type, task property and runner property the stand-in does not emulate,
  and every expression it cannot render, before anything runs.

Standard library only (plus the flow dict the caller loaded with PyYAML).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

COMMANDS_TASK = "io.kestra.plugin.scripts.python.Commands"
REQUEST_TASK = "io.kestra.plugin.core.http.Request"
DOCKER_RUNNER = "io.kestra.plugin.scripts.runner.docker.Docker"

# Properties the stand-in understands, per object. Anything else in the flow is refused.
FLOW_KEYS = {"id", "namespace", "description", "inputs", "tasks", "outputs", "afterExecution"}
INPUT_KEYS = {"id", "type", "description", "defaults", "required", "validator", "min", "max"}
INPUT_TYPES = {"STRING", "INT", "FLOAT", "BOOLEAN"}
OUTPUT_KEYS = {"id", "type", "value", "description"}
OUTPUT_TYPES = {"STRING", "INT", "FLOAT", "BOOLEAN"}
COMMANDS_KEYS = {
    "id",
    "type",
    "description",
    "containerImage",
    "taskRunner",
    "env",
    "commands",
    "timeout",
    "retry",
}
RUNNER_KEYS = {"type", "pullPolicy", "user", "volumes", "delete", "networkMode"}
PULL_POLICIES = {"IF_NOT_PRESENT", "ALWAYS", "NEVER"}
REQUEST_KEYS = {
    "id",
    "type",
    "description",
    "uri",
    "method",
    "contentType",
    "body",
    "headers",
    "options",
    "timeout",
    "retry",
}
REQUEST_OPTION_KEYS = {"auth", "timeout", "allowFailed"}
AUTH_KEYS = {"BEARER": {"type", "token"}, "BASIC": {"type", "username", "password"}}
HTTP_TIMEOUT_KEYS = {"connectTimeout", "readIdleTimeout"}
RETRY_KEYS = {"type", "interval", "maxAttempts", "maxAttempt", "maxDuration"}
ROOTS = {"inputs", "envs", "outputs", "execution"}
EXECUTION_FIELDS = {"id", "state"}


class Unsupported(ValueError):
    """The flow uses something the stand-in does not emulate (it refuses to guess)."""


class RenderError(ValueError):
    """A valid expression could not be rendered (Kestra fails the task the same way)."""


# --------------------------------------------------------------------------- durations

_DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


def duration_s(value: Any, where: str) -> float:
    """An ISO-8601 duration such as PT10M or PT15S, in seconds."""
    text = str(value)
    match = _DURATION.fullmatch(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise Unsupported(f"{where}: {text!r} is not an ISO-8601 duration the stand-in reads")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


# --------------------------------------------------------------------------- expressions

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>\?\?|~|\.|\(|\))
    )""",
    re.X,
)
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)


class _Undefined:
    """What an unresolved reference evaluates to (only ``??`` may swallow it)."""

    def __init__(self, path: str) -> None:
        self.path = path


@dataclass(frozen=True)
class Literal:
    value: str | int | float


@dataclass(frozen=True)
class Ref:
    path: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Concat:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Coalesce:
    parts: tuple[Any, ...]


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        match = _TOKEN.match(expr, pos)
        if not match or match.end() == pos:
            raise Unsupported(
                f"{{{{ {expr.strip()} }}}}: {expr[pos:].strip()[:20]!r} is not part of the "
                "Pebble subset the stand-in renders (references, literals, ~, ??, parentheses)"
            )
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr.strip()
        self.tokens = _tokens(expr)
        self.pos = 0

    def fail(self, why: str) -> Unsupported:
        return Unsupported(f"{{{{ {self.expr} }}}}: {why}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end of expression")
        self.pos += 1
        return token

    def parse(self) -> Any:
        if not self.tokens:
            raise self.fail("empty expression")
        node = self.expression()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def expression(self) -> Any:
        parts = [self.operand()]
        ops: set[str] = set()
        while (token := self.peek()) is not None and token[1] in ("??", "~"):
            ops.add(self.take()[1])
            parts.append(self.operand())
        if len(ops) > 1:
            raise self.fail(
                "mixes ~ and ?? without parentheses; Pebble's precedence is not emulated, "
                "so group them explicitly"
            )
        if not ops:
            return parts[0]
        return Coalesce(tuple(parts)) if ops == {"??"} else Concat(tuple(parts))

    def operand(self) -> Any:
        kind, text = self.take()
        if text == "(":
            node = self.expression()
            if self.take()[1] != ")":
                raise self.fail("missing ')'")
            return node
        if kind == "string":
            return Literal(_unquote(text))
        if kind == "number":
            return Literal(float(text) if "." in text else int(text))
        if kind == "name":
            path = [text]
            while (token := self.peek()) is not None and token[1] == ".":
                self.take()
                name_kind, name = self.take()
                if name_kind != "name":
                    raise self.fail(f"expected a name after '.', got {name!r}")
                path.append(name)
            return self._check_ref(Ref(tuple(path)))
        raise self.fail(f"unexpected {text!r}")

    def _check_ref(self, ref: Ref) -> Ref:
        root = ref.path[0]
        if root not in ROOTS:
            raise self.fail(
                f"variable {root!r} is not emulated (only {', '.join(sorted(ROOTS))}); "
                "literals true/false/null and functions are not either"
            )
        shapes = {
            "inputs": len(ref.path) == 2,
            "envs": len(ref.path) == 2,
            "execution": len(ref.path) == 2 and ref.path[1] in EXECUTION_FIELDS,
            "outputs": len(ref.path) == 4 and ref.path[2] == "vars",
        }
        if not shapes[root]:
            raise self.fail(
                f"{ref.text!r}: the stand-in renders inputs.<id>, envs.<name>, "
                "outputs.<task>.vars.<key>, execution.id and execution.state only"
            )
        return ref


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def parse_template(template: str) -> list[Any]:
    """Split a string into literal text and parsed expressions; raise Unsupported."""
    if "{%" in template or "{#" in template:
        raise Unsupported(f"{template!r}: Pebble tags and comments are not emulated")
    pieces: list[Any] = []
    pos = 0
    for match in _TEMPLATE.finditer(template):
        pieces.append(template[pos : match.start()])
        pieces.append(_Parser(match.group(1)).parse())
        pos = match.end()
    rest = template[pos:]
    if "{{" in rest or "}}" in rest:
        raise Unsupported(f"{template!r}: unbalanced {{{{ }}}}")
    pieces.append(rest)
    return [p for p in pieces if p != ""]


def references(template: str) -> Iterator[Ref]:
    def walk(node: Any) -> Iterator[Ref]:
        if isinstance(node, Ref):
            yield node
        elif isinstance(node, (Concat, Coalesce)):
            for part in node.parts:
                yield from walk(part)

    for piece in parse_template(template):
        if not isinstance(piece, str):
            yield from walk(piece)


def _lookup(context: Mapping[str, Any], ref: Ref) -> Any:
    value: Any = context
    for name in ref.path:
        if not isinstance(value, Mapping) or name not in value or value[name] is None:
            return _Undefined(ref.text)
        value = value[name]
    return value


def _evaluate(node: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Ref):
        return _lookup(context, node)
    if isinstance(node, Coalesce):
        for part in node.parts:
            value = _evaluate(part, context)
            if not isinstance(value, _Undefined):
                return value
        return value
    if isinstance(node, Concat):
        values = [_evaluate(part, context) for part in node.parts]
        for value in values:
            if isinstance(value, _Undefined):
                return value
        return "".join(_to_text(v) for v in values)
    raise AssertionError(node)


def _to_text(value: Any) -> str:
    """How Pebble prints a value (Java's toString for the types inputs and outputs have)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e7:
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        raise RenderError("rendering a map or list into a string is not emulated")
    return str(value)


def render(template: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``template`` (lists and maps are walked); other scalars
    are returned as they are. Raises RenderError for undefined references."""
    if isinstance(template, str):
        out = []
        for piece in parse_template(template):
            if isinstance(piece, str):
                out.append(piece)
                continue
            value = _evaluate(piece, context)
            if isinstance(value, _Undefined):
                raise RenderError(
                    f"Unable to find `{value.path}` used in the expression `{template.strip()}`"
                )
            out.append(_to_text(value))
        return "".join(out)
    if isinstance(template, list):
        return [render(item, context) for item in template]
    if isinstance(template, dict):
        return {key: render(value, context) for key, value in template.items()}
    return template


# --------------------------------------------------------------------------- the flow


def _refuse_unknown(obj: Any, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise Unsupported(f"{where}: expected a map, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise Unsupported(f"{where}: {', '.join(unknown)} not emulated by the Kestra stand-in")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def check_retry(retry: Any, where: str) -> None:
    _refuse_unknown(retry, RETRY_KEYS, f"{where}.retry")
    if retry.get("type") != "constant":
        raise Unsupported(f"{where}.retry: only type 'constant' is emulated")
    duration_s(retry.get("interval", "PT0S"), f"{where}.retry.interval")
    if "maxDuration" in retry:
        raise Unsupported(f"{where}.retry.maxDuration is not emulated")
    attempts = retry.get("maxAttempts", retry.get("maxAttempt"))
    if not isinstance(attempts, int) or attempts < 1:
        raise Unsupported(f"{where}.retry: maxAttempts must be a positive integer")


def max_attempts(task: Mapping[str, Any]) -> int:
    retry = task.get("retry") or {}
    return int(retry.get("maxAttempts", retry.get("maxAttempt", 1)))


def _check_commands(task: dict[str, Any], where: str) -> None:
    _refuse_unknown(task, COMMANDS_KEYS, where)
    for key in ("containerImage", "commands", "taskRunner"):
        if key not in task:
            raise Unsupported(f"{where}: {key} is required by the stand-in")
    runner = task["taskRunner"]
    _refuse_unknown(runner, RUNNER_KEYS, f"{where}.taskRunner")
    if runner.get("type") != DOCKER_RUNNER:
        raise Unsupported(f"{where}.taskRunner: only {DOCKER_RUNNER} is emulated")
    if runner.get("pullPolicy", "IF_NOT_PRESENT") not in PULL_POLICIES:
        raise Unsupported(f"{where}.taskRunner.pullPolicy: {runner.get('pullPolicy')!r}")
    if not isinstance(runner.get("delete", True), bool):
        raise Unsupported(f"{where}.taskRunner.delete must be a boolean")
    if not isinstance(task["commands"], list) or not task["commands"]:
        raise Unsupported(f"{where}.commands must be a non-empty list")
    if not isinstance(task.get("env", {}), dict):
        raise Unsupported(f"{where}.env must be a map")
    for volume in runner.get("volumes") or []:
        if not isinstance(volume, str) or volume.count(":") not in (1, 2):
            raise Unsupported(f"{where}.taskRunner.volumes: {volume!r} is not src:dst[:mode]")


def _check_request(task: dict[str, Any], where: str) -> None:
    _refuse_unknown(task, REQUEST_KEYS, where)
    if "uri" not in task:
        raise Unsupported(f"{where}: uri is required")
    options = task.get("options") or {}
    _refuse_unknown(options, REQUEST_OPTION_KEYS, f"{where}.options")
    if "auth" in options:
        auth_type = str(options["auth"].get("type", ""))
        if auth_type not in AUTH_KEYS:
            raise Unsupported(f"{where}.options.auth.type {auth_type!r} is not emulated")
        _refuse_unknown(options["auth"], AUTH_KEYS[auth_type], f"{where}.options.auth")
    if "timeout" in options:
        _refuse_unknown(options["timeout"], HTTP_TIMEOUT_KEYS, f"{where}.options.timeout")
        for key, value in options["timeout"].items():
            duration_s(value, f"{where}.options.timeout.{key}")
    if not isinstance(task.get("headers", {}), dict):
        raise Unsupported(f"{where}.headers must be a map")


def check_flow(flow: Any) -> None:
    """Refuse the flow unless every part of it is emulated and every expression renders."""
    _refuse_unknown(flow, FLOW_KEYS, "flow")
    for key in ("id", "namespace", "tasks"):
        if key not in flow:
            raise Unsupported(f"flow: {key} is required")
    inputs = {}
    for spec in flow.get("inputs") or []:
        where = f"inputs.{spec.get('id')}"
        _refuse_unknown(spec, INPUT_KEYS, where)
        if spec.get("type") not in INPUT_TYPES:
            raise Unsupported(f"{where}: input type {spec.get('type')!r} is not emulated")
        if "validator" in spec:
            re.compile(spec["validator"])
        inputs[spec["id"]] = spec
    seen_tasks: list[str] = []
    task_lists = [("tasks", flow["tasks"]), ("afterExecution", flow.get("afterExecution") or [])]
    for section, tasks in task_lists:
        if not isinstance(tasks, list) or (section == "tasks" and not tasks):
            raise Unsupported(f"{section} must be a non-empty list")
        for task in tasks:
            where = f"{section}.{task.get('id')}"
            kind = task.get("type")
            if section == "tasks" and kind == COMMANDS_TASK:
                _check_commands(task, where)
            elif section == "afterExecution" and kind == REQUEST_TASK:
                _check_request(task, where)
            else:
                raise Unsupported(f"{where}: task type {kind!r} is not emulated in {section}")
            if "timeout" in task:
                duration_s(task["timeout"], f"{where}.timeout")
            if "retry" in task:
                check_retry(task["retry"], where)
            _check_expressions(task, where, inputs, seen_tasks)
            seen_tasks.append(task["id"])
    for output in flow.get("outputs") or []:
        where = f"outputs.{output.get('id')}"
        _refuse_unknown(output, OUTPUT_KEYS, where)
        if output.get("type") not in OUTPUT_TYPES:
            raise Unsupported(f"{where}: output type {output.get('type')!r} is not emulated")
        _check_expressions(output, where, inputs, seen_tasks)


def _check_expressions(
    obj: dict[str, Any], where: str, inputs: dict[str, Any], tasks: list[str]
) -> None:
    for key, value in obj.items():
        if key in ("id", "type", "description"):
            continue
        for text in _strings(value):
            for ref in references(text):
                root = ref.path[0]
                if root == "inputs" and ref.path[1] not in inputs:
                    raise Unsupported(f"{where}: {ref.text} is not a declared input")
                if root == "outputs" and ref.path[1] not in tasks:
                    raise Unsupported(f"{where}: {ref.text} names no task that ran before")

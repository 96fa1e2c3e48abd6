"""The Pebble subset flows/yolo-detect.yml uses: one reference (`inputs.<id>`, `envs.<name>`,
`outputs.<task>.vars.<key>`, `execution.id`, `execution.state`), optionally `?? 'text'` or
`?? <integer>` (the literal when the reference is undefined or null). As with Kestra's strict
variables, an undefined reference without `??` fails the render. Anything else (filters,
functions, tags, operators, `~`, parentheses, other variables) is refused at load."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_EXPRESSION = re.compile(
    rf"\s*(?P<ref>{_NAME}(?:\.{_NAME})*)\s*(?:\?\?\s*(?:'(?P<text>[^'\\]*)'|(?P<number>\d+))\s*)?"
)
_REFERENCE = re.compile(
    rf"(?:inputs|envs)\.{_NAME}|execution\.(?:id|state)|outputs\.{_NAME}\.vars\.{_NAME}"
)
_VARIABLES = ("envs", "execution", "inputs", "outputs")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)


class Unsupported(ValueError):
    """The flow uses something the stand-in does not emulate (it refuses to guess)."""


class RenderError(ValueError):
    """A valid expression could not be rendered (Kestra fails the task the same way)."""


@dataclass(frozen=True)
class Expression:
    """`path` or `path ?? default`; `default` is None without `??` (there is no null literal)."""

    path: str
    default: str | int | None


def _expression(text: str) -> Expression:
    shown = f"{{{{ {text.strip()} }}}}"
    if not (match := _EXPRESSION.fullmatch(text)):
        raise Unsupported(
            f"{shown} is not part of the Pebble subset the stand-in renders: a reference, "
            "optionally `?? 'text'` or `?? <integer>` (no filters, functions, operators, `~` "
            "or parentheses)"
        )
    if (variable := match["ref"].split(".")[0]) not in _VARIABLES:
        raise Unsupported(
            f"{shown}: variable {variable!r} is not emulated (only {', '.join(_VARIABLES)}); "
            "literals true/false/null and functions are not either"
        )
    if not _REFERENCE.fullmatch(match["ref"]):
        raise Unsupported(
            f"{match['ref']!r}: the stand-in renders inputs.<id>, envs.<name>, "
            "outputs.<task>.vars.<key>, execution.id and execution.state only"
        )
    number = match["number"]
    return Expression(match["ref"], int(number) if number else match["text"])


def parse(template: str) -> list[str | Expression]:
    """Literal text and expressions, in order; raises Unsupported for anything else."""
    if "{%" in template or "{#" in template:
        raise Unsupported(f"{template!r}: Pebble tags and comments are not emulated")
    parts = _TEMPLATE.split(template)  # text, expression, text, ..., text
    if any("{{" in text or "}}" in text for text in parts[::2]):
        raise Unsupported(f"{template!r}: unbalanced {{{{ }}}}")
    pieces = [_expression(part) if i % 2 else part for i, part in enumerate(parts)]
    return [piece for piece in pieces if piece != ""]


def references(template: str) -> Iterator[Expression]:
    return (piece for piece in parse(template) if isinstance(piece, Expression))


def _text(value: Any) -> str:
    """How Pebble prints a value (Java's toString for the types inputs and outputs have)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise RenderError("rendering a map or list into a string is not emulated")
    return str(value)


def render(template: str, context: Mapping[str, Any]) -> str:
    """The template with its expressions evaluated; RenderError for undefined references."""
    out = []
    for piece in parse(template):
        if isinstance(piece, Expression):
            value: Any = context
            for name in piece.path.split("."):
                value = value.get(name) if isinstance(value, Mapping) else None
            if (value := piece.default if value is None else value) is None:
                raise RenderError(
                    f"Unable to find `{piece.path}` used in the expression `{template.strip()}`"
                )
            piece = _text(value)
        out.append(piece)
    return "".join(out)

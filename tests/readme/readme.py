"""README.md's shell blocks as commands, for the tests that run them verbatim."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.support.paths import ROOT

README = ROOT / "README.md"
_FENCE = re.compile(r"^```sh\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Command:
    section: str  # the nearest heading above the block, without the #s
    line: int  # 1-based line of the README where the command starts
    text: str  # continuation lines joined, the trailing comment left out


def strip_comment(line: str) -> str:
    """`line` without a `#` comment that stands outside quotes after a blank."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _heading_at(text: str, offset: int) -> str:
    headings = re.findall(r"^#+ (.+)$", text[:offset], re.M)
    return headings[-1] if headings else ""


def _block_commands(section: str, first_line: int, body: str) -> list[Command]:
    out: list[Command] = []
    pending: list[str] = []
    start = first_line
    for number, raw in enumerate(body.splitlines(), start=first_line):
        line = strip_comment(raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        joined = " ".join([*pending, line.strip()]).strip()
        pending = []
        if joined:
            out.append(Command(section, start, joined))
    return out


def commands(text: str | None = None) -> list[Command]:
    """Every command of every ```sh block, in README order."""
    text = README.read_text() if text is None else text
    out: list[Command] = []
    for match in _FENCE.finditer(text):
        first_line = text.count("\n", 0, match.start(1)) + 1
        out += _block_commands(_heading_at(text, match.start()), first_line, match.group(1))
    return out


def in_section(section: str) -> list[Command]:
    found = [c for c in commands() if c.section == section]
    assert found, f"README has no shell block under a heading {section!r}"
    return found

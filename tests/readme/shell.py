"""Runs README commands verbatim in a copy of the repository, with the few substitutions a
reader makes (placeholders such as JOB_ID, and the port of the server under test)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.readme.readme import Command
from tests.support.paths import ROOT

# A JSON answer in the error shape: a README command that gets one did not work.
_ERROR_SHAPE = re.compile(r'\{"error":\s*\{"code"')


def copy_repository(target: Path) -> Path:
    """The tracked and untracked-but-not-ignored files of this checkout, with `.venv` linked
    to this checkout's venv; no file is newer than that venv, so make uses it as it is
    (reinstalling from the copy would point the venv's editable installs at the copy)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    installed = (ROOT / ".venv" / ".installed").stat().st_mtime_ns
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
            when = min(source.stat().st_mtime_ns, installed)
            os.utime(target / name, ns=(when, when))
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


@dataclass
class Shell:
    """bash in `cwd` with `env`; `subs` maps README placeholders to this run's values."""

    cwd: Path
    env: dict[str, str]
    subs: dict[str, str] = field(default_factory=dict)
    ran: list[Command] = field(default_factory=list)

    def text_of(self, command: Command) -> str:
        text = command.text
        for placeholder in sorted(self.subs, key=len, reverse=True):
            text = text.replace(placeholder, self.subs[placeholder])
        return text

    def run(self, command: Command, timeout: float = 900) -> str:
        """Run it; a non-zero exit or an error-shaped answer fails the test. Returns stdout."""
        text = self.text_of(command)
        self.ran.append(command)
        if text.startswith("export ") and " " not in text[7:]:
            name, _, value = text[7:].partition("=")
            self.env[name] = value
            return ""
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-ec", text],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        where = f"README.md:{command.line}: {command.text}\n(run as: {text})"
        assert proc.returncode == 0, (
            f"{where}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
        assert not _ERROR_SHAPE.search(proc.stdout), f"{where}\n{proc.stdout[-3000:]}"
        return proc.stdout

    def start(self, command: Command) -> subprocess.Popen[bytes]:
        """A long-running command (a server), in its own process group."""
        self.ran.append(command)
        return subprocess.Popen(
            ["bash", "-ec", self.text_of(command)],
            cwd=self.cwd, env=self.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=(self.cwd / "server.log").open("wb"),
        )  # fmt: skip


def path_with(*dirs: Path) -> str:
    return os.pathsep.join([*map(str, dirs), os.environ.get("PATH", "")])

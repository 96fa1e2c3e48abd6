"""A throwaway PostgreSQL cluster for the test run, from the machine's PostgreSQL binaries."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.net import free_port


def _find_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"PostgreSQL binary {name!r} not found (install postgresql)")


class ThrowawayCluster:
    """initdb + pg_ctl in a temp dir, on a free loopback port, tuned for tests (no fsync)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="yolo-pg-"))
        self.data = self.root / "data"
        # initdb refuses to run as root: run the server as the `postgres` system user then.
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run("initdb", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run("pg_ctl", "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def destroy(self) -> None:
        self._run("pg_ctl", "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, binary: str, *args: str, check: bool = True) -> None:
        """`binary -D DATA ARGS` (initdb and pg_ctl both take the data directory so)."""
        argv = [*self._as_user, _find_binary(binary), "-D", str(self.data), *args]
        subprocess.run(argv, check=check, capture_output=True, timeout=120)

"""The shared volume of a stack, read and written as uid 1000 from a throwaway container."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from tests.support.engine import Docker
from tests.support.paths import FIXTURE_MODEL


@dataclass
class SharedVolume:
    docker: Docker
    name: str
    image: str  # any image with /bin/sh (the stack's Python base)

    def run(self, script: str, *, user: str = "1000:1000", stdin: bytes | None = None) -> str:
        """Run a shell script with the volume on /data (no network); its stdout."""
        argv = ["run", "--rm", "-i", "--user", user, "--network", "none"]
        argv += ["-v", f"{self.name}:/data", "--entrypoint", "/bin/sh", self.image, "-c", script]
        proc = subprocess.run(
            [*self.docker.cmd, *argv],
            input=stdin,
            capture_output=True,
            env=self.docker.env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout.decode()

    def files(self) -> dict[str, set[str]]:
        """Every file under uploads/, results/ and tmp/."""
        out = self.run("cd /data && find uploads results tmp -type f | sort")
        listing: dict[str, set[str]] = {"uploads": set(), "results": set(), "tmp": set()}
        for line in out.splitlines():
            listing[line.split("/", 1)[0]].add(line)
        return listing

    def seed_model(self) -> None:
        """The fixture model as models/shapes.pt."""
        self.run("cat > /data/models/shapes.pt", stdin=FIXTURE_MODEL.read_bytes())

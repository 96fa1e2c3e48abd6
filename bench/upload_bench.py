"""Upload path benchmark: POST /v1/uploads of the real API vs a bare streaming endpoint.

Both run under the same uvicorn settings on loopback (one worker each; asyncio loop and
h11, as in the API image, which has neither uvloop nor httptools; no access log), driven
by the same client in the same run, alternating, so the ratio is what matters (this
machine's timings are noisy). One ~200 KB JPEG per request, at concurrency 1, 8 and 32;
min/median/max over repeats. The API uses a throwaway Postgres (tuned for tests: no fsync,
so its commits are cheaper than in production) and no background workers.

The client shares the CPUs with the servers, so it is kept light: raw keep-alive HTTP/1.1
over asyncio streams with the request bytes built once (httpx cost 2.5-12 ms of CPU per
request here, more than the bare server itself, and its pool collapsed at 32
connections). CPU ms/req is measured per process (the API's includes its Postgres
backends), which is less noisy than req/s on a shared machine. `--pin` puts the client on
a CPU of its own. Prints a table; asserts nothing.

    .venv/bin/python bench/upload_bench.py [--requests 200] [--repeats 3] [--api-dir DIR] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port  # noqa: E402
from tests.support.postgres import ThrowawayCluster  # noqa: E402

_CLK = os.sysconf("SC_CLK_TCK")


def jpeg_of_about(target_bytes: int) -> bytes:
    """A noisy photo-like JPEG close to `target_bytes`."""
    rng = np.random.default_rng(7)
    side = 256
    while True:
        base = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(base).save(buffer, format="JPEG", quality=85)
        if buffer.tell() >= target_bytes:
            return buffer.getvalue()
        side += 32


BENCH_KEY = "yk_bench-" + "0" * 32


def upload_request(port: int, payload: bytes) -> bytes:
    """The whole HTTP request, built once: what `curl -H 'Authorization: Bearer KEY'
    -F files=@photo.jpg` sends (the bare endpoint ignores the key)."""
    boundary = "bench-4f1d2c"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {BENCH_KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # server CPU per request
    client_cpu_ms: float


@dataclass
class Server:
    port: int
    pid: int
    postmaster: int | None = None  # the API's Postgres backends are part of its cost

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) of the server process and its Postgres backends."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.parent.name)
            if pid == self.pid or (self.postmaster and int(fields[1]) == self.postmaster):
                found[pid] = (int(fields[11]) + int(fields[12])) / _CLK
        return found


@contextmanager
def server(app: str, env: dict[str, str], cwd: Path, cpus: set[int] | None) -> Iterator[Server]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--loop", "asyncio", "--http", "h11", "--log-level", "warning", "--no-access-log"],
        cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{app} did not start") from None
                time.sleep(0.1)
        yield Server(port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    writer.write(request)
    await writer.drain()
    status = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if b" 202 " not in status:
        raise RuntimeError(f"{status!r} {body[:200]!r}")
    return body


async def drive(target: Server, request: bytes, concurrency: int, total: int) -> Run:
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        try:
            for _ in queue:
                start = time.perf_counter()
                await _exchange(reader, writer, request)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    cpu_before, client_before = target.cpu(), _own_cpu()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_after = target.cpu()  # backends started during the run count from zero
    cpu = sum(t - cpu_before.get(pid, 0.0) for pid, t in cpu_after.items()) * 1000 / total
    client = (_own_cpu() - client_before) * 1000 / total
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Run(total / elapsed, statistics.median(latencies) * 1000, p99 * 1000, cpu, client)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fmt(values: list[float], digits: int = 1) -> str:
    return "/".join(
        f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--api-dir", type=Path, default=ROOT / "api", help="the directory holding `app`"
    )
    parser.add_argument(
        "--pin", action="store_true", help="client on the last CPU, both servers on the others"
    )
    args = parser.parse_args()
    api_dir = args.api_dir.resolve()
    sys.path.insert(0, str(api_dir))

    payload = jpeg_of_about(200_000)
    server_cpus: set[int] | None = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        server_cpus = set(cpus[:-1])
    cluster = ThrowawayCluster()
    cluster.start()
    tmp = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    try:
        from app.bootstrap import add_admin_key, migrate
        from app.config import Settings

        migrate(cluster.admin_url)
        add_admin_key(Settings(database_url=cluster.admin_url, admin_api_key=BENCH_KEY))
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        api_env = {
            "DATABASE_URL": cluster.admin_url,
            "SHARED_DATA_DIR": str(tmp / "api"),
            "WORKERS_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
            # Nothing is dispatched here: every upload stays unfinished.
            "MAX_UNFINISHED_JOBS_PER_KEY": "100000000",
        }
        bare_env = {"BARE_DATA_DIR": str(tmp / "bare")}
        results: dict[tuple[str, int], list[Run]] = {}
        with (
            server("app.main:app", api_env, api_dir, server_cpus) as api,
            server("bare_app:app", bare_env, ROOT / "bench", server_cpus) as bare,
        ):
            api.postmaster = postmaster
            targets = {"api": api, "bare": bare}
            for target in targets.values():  # warm-up
                asyncio.run(drive(target, upload_request(target.port, payload), 4, 40))
            for _ in range(args.repeats):
                for concurrency in args.concurrency:
                    for name, target in targets.items():
                        request = upload_request(target.port, payload)
                        run = asyncio.run(drive(target, request, concurrency, args.requests))
                        results.setdefault((name, concurrency), []).append(run)
    finally:
        cluster.destroy()

    pinned = f"; client pinned to CPU {max(os.sched_getaffinity(0))}" if args.pin else ""
    print(
        f"\nUpload path: {len(payload) / 1000:.0f} KB JPEG per request, {args.requests} "
        f"requests x {args.repeats} repeats, min/median/max; {os.cpu_count()} CPUs{pinned}"
    )
    print(
        "| concurrency | api req/s | bare req/s | api/bare (median) | api p50 ms | api p99 ms "
        "| bare p50 ms | bare p99 ms | CPU ms/req api / bare / client |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        api_runs, bare_runs = results[("api", concurrency)], results[("bare", concurrency)]

        def col(runs: list[Run], metric: str) -> list[float]:
            return [getattr(r, metric) for r in runs]

        ratio = statistics.median(col(api_runs, "rps")) / statistics.median(col(bare_runs, "rps"))
        cpu = " / ".join(
            f"{statistics.median(values):.2f}"
            for values in (
                col(api_runs, "cpu_ms"),
                col(bare_runs, "cpu_ms"),
                col(api_runs + bare_runs, "client_cpu_ms"),
            )
        )
        cells = [
            str(concurrency),
            fmt(col(api_runs, "rps")),
            fmt(col(bare_runs, "rps")),
            f"{ratio:.2f}",
            fmt(col(api_runs, "p50_ms")),
            fmt(col(api_runs, "p99_ms")),
            fmt(col(bare_runs, "p50_ms")),
            fmt(col(bare_runs, "p99_ms")),
            cpu,
        ]
        print("| " + " | ".join(cells) + " |")
    print("Goals: api/bare >= 0.5; api p99 <= 50 ms at concurrency 8.")


if __name__ == "__main__":
    main()

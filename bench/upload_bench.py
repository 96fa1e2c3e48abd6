"""Upload path benchmark: POST /v1/uploads of the real API vs a bare streaming endpoint
(bench/bare_app.py); BENCHMARKS.md (table 1) describes the setup in full and has the results.

Both run under the same uvicorn settings on loopback (1 and 2 worker processes by default;
asyncio loop and h11, as in the API image; no access log), driven alternately by the same
client; the API has a throwaway Postgres (no fsync) and no background workers. The client
shares the CPUs with the servers, so it is light: raw keep-alive HTTP/1.1 over asyncio streams
with the request bytes built once (httpx's client cost more CPU per request than the bare
server, and its pool collapsed at 32 connections). CPU ms/req is measured per process tree
(the API's includes its Postgres backends), less noisy than req/s on a shared machine. `--pin`
puts the client on a CPU of its own. Prints a table; asserts nothing.

    .venv/bin/python -m bench.upload_bench [--requests 200] [--repeats 3] [--workers 1 2]
        [--api-dir DIR] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.common import spread, table
from tests.support.net import free_port
from tests.support.paths import ROOT
from tests.support.postgres import ThrowawayCluster
from tests.support.wait import wait_until

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
    request = httpx.Request(
        "POST",
        f"http://127.0.0.1:{port}/v1/uploads",
        headers={"Authorization": f"Bearer {BENCH_KEY}"},
        files={"files": ("photo.jpg", payload, "image/jpeg")},
    )
    body = request.read()
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    return f"POST /v1/uploads HTTP/1.1\r\n{head}\r\n".encode() + body


@dataclass
class Server:
    port: int
    pid: int
    postmaster: int | None = None  # the API's Postgres backends are part of its cost

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) of the server, its worker processes and its Postgres
        backends."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.parent.name)
            if pid == self.pid or int(fields[1]) in (self.pid, self.postmaster):
                found[pid] = (int(fields[11]) + int(fields[12])) / _CLK
        return found


@contextmanager
def server(
    app: str, env: dict[str, str], cwd: Path, cpus: set[int] | None, workers: int
) -> Iterator[Server]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--loop", "asyncio", "--http", "h11", "--log-level", "warning", "--no-access-log",
         "--workers", str(workers)],
        cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{app} exited at start")
        urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1).close()
        return True

    try:
        wait_until(answers, 30, what=f"{app} to start", interval_s=0.1, ignore=(OSError,))
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


async def drive(target: Server, request: bytes, concurrency: int, total: int) -> dict[str, float]:
    """`total` requests over `concurrency` connections: req/s, p50 and p99 latency, CPU per
    request of the server and of this client."""
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

    cpu_before, client_before = target.cpu(), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_after = target.cpu()  # backends started during the run count from zero
    cpu = sum(t - cpu_before.get(pid, 0.0) for pid, t in cpu_after.items()) * 1000 / total
    client = (time.process_time() - client_before) * 1000 / total
    latencies.sort()
    return {
        "rps": total / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "cpu_ms": cpu,
        "client_cpu_ms": client,
    }


Results = dict[tuple[str, int, int, str], list[float]]  # (server, workers, concurrency, metric)


def row(results: Results, w: int, c: int) -> str:
    """The table's line for `w` workers at concurrency `c`."""

    def med(name: str, metric: str) -> float:
        return statistics.median(results[name, w, c, metric])

    def fmt(name: str, metric: str) -> str:
        return spread(results[name, w, c, metric], 1)

    client = results["api", w, c, "client_cpu_ms"] + results["bare", w, c, "client_cpu_ms"]
    return (
        f"{w} | {c} | {fmt('api', 'rps')} | {fmt('bare', 'rps')} "
        f"| {med('api', 'rps') / med('bare', 'rps'):.2f} | {fmt('api', 'p50_ms')} "
        f"| {fmt('api', 'p99_ms')} | {fmt('bare', 'p50_ms')} | {fmt('bare', 'p99_ms')} "
        f"| {med('api', 'cpu_ms'):.2f} / {med('bare', 'cpu_ms'):.2f} "
        f"/ {statistics.median(client):.2f}"
    )


def measure(
    results: Results,
    workers: int,
    targets: dict[str, Server],
    payload: bytes,
    args: argparse.Namespace,
) -> None:
    """Warm both servers up, then alternate between them at each concurrency, `repeats` times."""
    for target in targets.values():
        asyncio.run(drive(target, upload_request(target.port, payload), 4, 40))
    for _ in range(args.repeats):
        for concurrency in args.concurrency:
            for name, target in targets.items():
                request = upload_request(target.port, payload)
                run = asyncio.run(drive(target, request, concurrency, args.requests))
                for metric, value in run.items():
                    results[name, workers, concurrency, metric].append(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
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
    results: Results = defaultdict(list)
    try:
        from app.bootstrap import add_admin_key, migrate
        from app.config import Settings

        migrate(cluster.admin_url)
        add_admin_key(Settings(database_url=cluster.admin_url, admin_api_key=BENCH_KEY))
        api_env = {
            "DATABASE_URL": cluster.admin_url,
            "SHARED_DATA_DIR": str(tmp / "api"),
            "WORKERS_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
            # Nothing is dispatched here: every upload stays unfinished.
            "MAX_UNFINISHED_JOBS_PER_KEY": "100000000",
        }
        bare_env = {"BARE_DATA_DIR": str(tmp / "bare")}
        for workers in args.workers:
            with (
                server("app.main:app", api_env, api_dir, server_cpus, workers) as api,
                server("bare_app:app", bare_env, ROOT / "bench", server_cpus, workers) as bare,
            ):
                api.postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
                measure(results, workers, {"api": api, "bare": bare}, payload, args)
    finally:
        cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)

    pinned = f"; client pinned to CPU {max(os.sched_getaffinity(0))}" if args.pin else ""
    print(
        f"\nUpload path: {len(payload) / 1000:.0f} KB JPEG per request, {args.requests} "
        f"requests x {args.repeats} repeats, min/median/max; {os.cpu_count()} CPUs{pinned}"
    )
    table(
        "workers | concurrency | api req/s | bare req/s | api/bare (median) | api p50 ms "
        "| api p99 ms | bare p50 ms | bare p99 ms | CPU ms/req api / bare / client",
        (row(results, w, c) for w in args.workers for c in args.concurrency),
    )
    print("Goals: api/bare >= 0.5; api p99 <= 50 ms at concurrency 8.")


if __name__ == "__main__":
    main()

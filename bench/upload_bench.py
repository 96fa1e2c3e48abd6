"""Upload path benchmark: POST /v1/uploads of the real API vs a bare streaming endpoint.

Both run under the same uvicorn settings on loopback, driven by the same httpx client in
the same run, alternating, so the ratio is what matters (this machine's timings are
noisy). One ~200 KB JPEG per request, at concurrency 1, 8 and 32; min/median/max over
repeats. The API uses a throwaway Postgres and no background workers (only the upload path
is measured). Prints a table; asserts nothing.

    .venv/bin/python bench/upload_bench.py [--requests 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "api"))

from tests.support.net import free_port  # noqa: E402
from tests.support.postgres import ThrowawayCluster  # noqa: E402


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


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float


@contextmanager
def server(app: str, env: dict[str, str], cwd: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/docs", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{app} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def drive(url: str, payload: bytes, concurrency: int, total: int) -> Run:
    latencies: list[float] = []
    queue = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for _ in queue:
                start = time.perf_counter()
                response = await client.post(
                    "/v1/uploads", files={"files": ("photo.jpg", payload, "image/jpeg")}
                )
                latencies.append(time.perf_counter() - start)
                if response.status_code != 202:
                    raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Run(total / elapsed, statistics.median(latencies) * 1000, p99 * 1000)


def fmt(values: list[float], digits: int = 1) -> str:
    return "/".join(
        f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    payload = jpeg_of_about(200_000)
    cluster = ThrowawayCluster()
    cluster.start()
    tmp = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    try:
        from app.bootstrap import migrate

        migrate(cluster.admin_url)
        api_env = {
            "DATABASE_URL": cluster.admin_url,
            "SHARED_DATA_DIR": str(tmp / "api"),
            "WORKERS_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
        }
        bare_env = {"BARE_DATA_DIR": str(tmp / "bare")}
        results: dict[tuple[str, int], list[Run]] = {}
        with (
            server("app.main:app", api_env, ROOT / "api") as api_url,
            server("bare_app:app", bare_env, ROOT / "bench") as bare_url,
        ):
            for url in (api_url, bare_url):  # warm-up
                asyncio.run(drive(url, payload, 4, 40))
            for _ in range(args.repeats):
                for concurrency in args.concurrency:
                    for name, url in (("api", api_url), ("bare", bare_url)):
                        run = asyncio.run(drive(url, payload, concurrency, args.requests))
                        results.setdefault((name, concurrency), []).append(run)
    finally:
        cluster.destroy()

    print(
        f"\nUpload path: {len(payload) / 1000:.0f} KB JPEG per request, {args.requests} "
        f"requests x {args.repeats} repeats, min/median/max; {os.cpu_count()} CPUs"
    )
    print(
        "| concurrency | api req/s | bare req/s | api/bare (median) | api p50 ms | api p99 ms "
        "| bare p99 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        api, bare = results[("api", concurrency)], results[("bare", concurrency)]
        ratio = statistics.median(r.rps for r in api) / statistics.median(r.rps for r in bare)
        print(
            f"| {concurrency} | {fmt([r.rps for r in api])} | {fmt([r.rps for r in bare])} "
            f"| {ratio:.2f} | {fmt([r.p50_ms for r in api])} | {fmt([r.p99_ms for r in api])} "
            f"| {fmt([r.p99_ms for r in bare])} |"
        )
    print("Goals: api/bare >= 0.5; api p99 <= 50 ms at concurrency 8.")


if __name__ == "__main__":
    main()

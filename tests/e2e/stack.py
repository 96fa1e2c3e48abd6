"""Driving the whole stack under compose for the end-to-end tests: compose, the API, the
Kestra stand-in's test controls, Postgres and the shared volume, and the one invariant every
test ends with (`Stack.account`)."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.docker.dockerutil import COMPOSE_VARS, ROOT, Docker, compose_env
from tests.fixtures import synthetic
from tests.support import kestra_standin

COMPOSE_FILES = [
    ROOT / "docker-compose.yml",
    ROOT / "docker-compose.offline.yml",
    ROOT / "tests" / "e2e" / "docker-compose.e2e.yml",
]
TERMINAL = {"succeeded", "failed"}
TASK_LABEL = "io.kestra.standin.execution"
# The compose variables plus the e2e override's own.
E2E_COMPOSE_VARS = COMPOSE_VARS | {
    "KESTRA_STANDIN_IMAGE",
    "STANDIN_WORKER_THREADS",
    "STANDIN_VISIBILITY_DELAY_S",
    "RECONCILE_AFTER_S",
    "RECONCILE_INTERVAL_S",
    "DISPATCH_MAX_BACKOFF_S",
}


# What the tests measured (printed at the end of the run by conftest.py).
RECOVERY: dict[str, dict[str, Any]] = {}


def record(name: str, **facts: Any) -> None:
    """Keep a measurement for the summary (seconds rounded to 0.1)."""
    RECOVERY[name] = {k: round(v, 1) if isinstance(v, float) else v for k, v in facts.items()}
    print(f"\n[e2e] {name}: {RECOVERY[name]}")


@dataclass
class Scene:
    """An image with known objects, as uploaded."""

    name: str
    data: bytes
    truth: list[synthetic.GroundTruth]
    size: tuple[int, int]


def scenes(first_seed: int, count: int) -> list[Scene]:
    """Held-out synthetic scenes, alternately JPEG and PNG."""
    out = []
    for offset in range(count):
        seed = synthetic.HELD_OUT_SEED_START + first_seed + offset
        image, truth = synthetic.render_scene(seed)
        buffer = io.BytesIO()
        if offset % 2:
            image.save(buffer, format="PNG")
            name = f"scene-{seed}.png"
        else:
            image.save(buffer, format="JPEG", quality=92)
            name = f"scene-{seed}.jpg"
        out.append(Scene(name, buffer.getvalue(), truth, image.size))
    return out


def build_inference_image(tag: str, timeout_s: float = 3600) -> str | None:
    """Build `tag` with docker/inference/build.sh (minutes); the end of its stderr on failure."""
    proc = subprocess.run(
        [str(ROOT / "docker" / "inference" / "build.sh")],
        env=dict(os.environ, INFERENCE_IMAGE=tag),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return None if proc.returncode == 0 else proc.stderr[-4000:]


def jobs_of(execution: dict[str, Any]) -> list[str]:
    """The job ids an execution ran, in order."""
    return list(kestra_standin.jobs_of(execution))


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def until(
    check: Callable[[], Any], timeout: float, every: float = 0.5, what: str = "condition"
) -> Any:
    """Call check until it returns something truthy; return that, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Stack:
    docker: Docker
    compose_cmd: list[str]
    project: str
    env: dict[str, str]
    inference_image: str
    base_image: str
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # every job a client saw
    scene_of: dict[str, Scene] = field(default_factory=dict)
    expected_failed: set[str] = field(default_factory=set)  # jobs a test made fail

    # --- compose -------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    @property
    def kestra_url(self) -> str:
        return f"http://127.0.0.1:{self.env['KESTRA_PORT']}"

    @property
    def volume(self) -> str:
        return self.env["SHARED_VOLUME_NAME"]

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        full_env = compose_env(self.docker.env, self.env, E2E_COMPOSE_VARS)
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        proc = subprocess.run(
            [*self.compose_cmd, "--env-file", "/dev/null", "-p", self.project, *files, *args],
            cwd=ROOT,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def container(self, service: str) -> str:
        out = self.compose("ps", "-a", "--format", "json", service).stdout.strip()
        rows = json.loads(out) if out.startswith("[") else [json.loads(x) for x in out.splitlines()]
        assert rows, f"no container for service {service}"
        return str(rows[0]["Name"])

    def logs(self) -> str:
        proc = self.compose("logs", "--no-color", "--timestamps", check=False, timeout=120)
        return proc.stdout + proc.stderr

    # --- the API ---------------------------------------------------------------------------
    def client(self, timeout: float = 30) -> httpx.Client:
        """The API with the admin key from the stack's .env (it sees every job)."""
        auth = {"Authorization": f"Bearer {self.env['ADMIN_API_KEY']}"}
        return httpx.Client(base_url=self.api_url, timeout=timeout, headers=auth)

    def upload(self, batch: Sequence[Scene], key: str | None = None) -> list[dict[str, Any]]:
        headers = {"Idempotency-Key": key} if key else {}
        files = [("files", (s.name, s.data, "application/octet-stream")) for s in batch]
        with self.client() as client:
            response = client.post("/v1/uploads", files=files, headers=headers)
        assert response.status_code == 202, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        self.remember(batch, jobs)
        return jobs

    def remember(self, batch: Sequence[Scene], jobs: list[dict[str, Any]]) -> None:
        assert len(jobs) == len(batch)
        for scene, job in zip(batch, jobs, strict=True):
            self.jobs[job["id"]] = job
            self.scene_of[job["id"]] = scene

    def job(self, job_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_terminal(self, job_ids: Iterable[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Poll until every job is succeeded or failed; tolerate the API being down."""
        pending = set(job_ids)
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for job_id in sorted(pending):
                try:
                    job = self.job(job_id)
                except (httpx.HTTPError, AssertionError):
                    break  # API restarting: try again shortly
                if job["status"] in TERMINAL:
                    done[job_id] = job
                    pending.discard(job_id)
            if not pending:
                break
            if time.monotonic() > deadline:
                states = {}
                for job_id in pending:
                    try:
                        states[job_id] = self.job(job_id)["status"]
                    except (httpx.HTTPError, AssertionError) as exc:
                        states[job_id] = repr(exc)
                raise AssertionError(f"jobs not finished after {timeout:.0f} s: {states}")
            time.sleep(0.5)
        return done

    def ready(self) -> tuple[int, dict[str, Any]]:
        try:
            with self.client(timeout=10) as client:
                response = client.get("/ready")
            return response.status_code, response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return 0, {"error": repr(exc)}

    def healthy(self) -> bool:
        try:
            with self.client(timeout=3) as client:
                return client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    # --- the Kestra stand-in -----------------------------------------------------------------
    def kestra(self, timeout: float = 15) -> httpx.Client:
        auth = (self.env["KESTRA_USERNAME"], self.env["KESTRA_PASSWORD"])
        return httpx.Client(base_url=self.kestra_url, auth=auth, timeout=timeout)

    def faults(self, **values: Any) -> dict[str, Any]:
        with self.kestra() as client:
            response = client.post("/_standin/faults", json=values)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def task_containers(self) -> list[dict[str, Any]]:
        with self.kestra() as client:
            body: list[dict[str, Any]] = client.get("/_standin/containers").json()
        return body

    def callbacks(self) -> list[dict[str, Any]]:
        with self.kestra() as client:
            body: list[dict[str, Any]] = client.get("/_standin/callbacks").json()
        return body

    def all_executions(self) -> list[dict[str, Any]]:
        """Every execution of the flow (the stand-in keeps them all; a session has < 1000)."""
        return self._search({"size": "1000"})

    def executions(self, job_id: str) -> list[dict[str, Any]]:
        """The executions that ran this job: it is listed in their `jobs` input."""
        return [e for e in self.all_executions() if job_id in jobs_of(e)]

    def batch_executions(self, batch_id: str) -> list[dict[str, Any]]:
        """The executions labelled with this batch id, found as the API finds them."""
        return self._search({"filters[labels][EQUALS][batch_id]": batch_id, "size": "50"})

    def _search(self, params: dict[str, str]) -> list[dict[str, Any]]:
        params = {
            "filters[namespace][EQUALS]": "inference",
            "filters[flowId][EQUALS]": "yolo-detect",
            **params,
        }
        with self.kestra() as client:
            response = client.get("/api/v1/main/executions/search", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        results: list[dict[str, Any]] = body["results"]
        assert len(results) == body["total"], "more executions than one search page"
        return results

    # --- Postgres and the shared volume ------------------------------------------------------
    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query in the API's database, as psql's unaligned text (| separated)."""
        proc = self.docker(
            "exec",
            "-i",
            self.container("postgres"),
            "psql",
            "-U",
            "postgres",
            "-d",
            "yolo",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            input=(query.rstrip(";") + ";\n").encode(),
        )
        return [line.split("|") for line in proc.stdout.splitlines() if line]

    def volume_run(
        self, script: str, *, user: str = "1000:1000", stdin: bytes | None = None
    ) -> str:
        """Run a shell script in a throwaway container with the shared volume on /data."""
        proc = subprocess.run(
            [
                *self.docker.cmd,
                "run",
                "--rm",
                "-i",
                "--user",
                user,
                "--network",
                "none",
                "-v",
                f"{self.volume}:/data",
                "--entrypoint",
                "/bin/sh",
                self.base_image,
                "-c",
                script,
            ],
            input=stdin,
            capture_output=True,
            env=self.docker.env,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout.decode()

    def files(self) -> dict[str, set[str]]:
        """Every file under uploads/, results/ and tmp/ of the shared volume."""
        out = self.volume_run("cd /data && find uploads results tmp -type f | sort")
        listing: dict[str, set[str]] = {"uploads": set(), "results": set(), "tmp": set()}
        for line in out.splitlines():
            top = line.split("/", 1)[0]
            listing[top].add(line)
        return listing

    def seed_model(self) -> None:
        model = (ROOT / "tests" / "fixtures" / "model" / "shapes.pt").read_bytes()
        self.volume_run("cat > /data/models/shapes.pt", stdin=model)

    # --- the invariant -------------------------------------------------------------------------
    def account(self, *, expect_failed: Iterable[str] = ()) -> dict[str, Any]:
        """Every job accounted for: none lost, none duplicated, no orphan file or row.

        * every job a client was given is in Postgres, and Postgres has no other job;
        * every job is succeeded, or failed for the ones a test made fail (expect_failed is
          remembered for the later tests);
        * every execution ran a batch of known jobs, labelled with its batch id; one that
          succeeded accounts for each of its jobs in its outputs (succeeded + failed);
        * no job ran to success in more than one execution, and none has a live
          execution; no task container is left;
        * the files on the volume are exactly those of the jobs: each upload has its row and
          each row its upload; each result (JSON, annotated JPEG) belongs to a job, each
          succeeded job has both; no partial upload in tmp/.
        """
        self.expected_failed |= set(expect_failed)
        expect_failed = self.expected_failed
        rows = {
            r[0]: {"status": r[1], "image_path": r[2], "annotated_path": r[3] or None}
            for r in self.sql(
                "SELECT id, status, image_path, coalesce(annotated_path, '') FROM jobs"
            )
        }
        lost = sorted(set(self.jobs) - set(rows))
        assert not lost, f"jobs acknowledged to a client but not in Postgres: {lost}"
        unknown = sorted(set(rows) - set(self.jobs))
        assert not unknown, f"jobs in Postgres that no client was given: {unknown}"
        statuses = {job_id: row["status"] for job_id, row in rows.items()}
        wrong = {
            job_id: status
            for job_id, status in statuses.items()
            if status != ("failed" if job_id in expect_failed else "succeeded")
        }
        assert not wrong, f"jobs not in their expected final status: {wrong}"

        executions_of: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in rows}
        for execution in self.all_executions():
            batch = jobs_of(execution)
            assert batch, f"execution {execution['id']} ran no job: {execution['inputs']}"
            assert len(set(batch)) == len(batch), execution["inputs"]
            strangers = sorted(set(batch) - set(rows))
            assert not strangers, f"execution {execution['id']} ran unknown jobs {strangers}"
            label = {"key": "batch_id", "value": execution["inputs"]["batch_id"]}
            assert label in execution["labels"], execution["labels"]
            if execution["state"]["current"] == "SUCCESS":
                outputs = execution["outputs"]
                assert outputs["jobs"] == len(batch), (execution["id"], outputs)
                assert outputs["succeeded"] + outputs["failed"] == len(batch), outputs
            for job_id in batch:
                executions_of[job_id].append(execution)
        runs = {}
        for job_id, executions in executions_of.items():
            states = [e["state"]["current"] for e in executions]
            assert states.count("SUCCESS") <= 1, f"job {job_id} succeeded twice: {states}"
            live = [s for s in states if s not in ("SUCCESS", "FAILED", "KILLED")]
            assert not live, f"job {job_id} still has live executions: {states}"
            runs[job_id] = len(executions)
        leftovers = self.docker(
            "ps", "-aq", "--filter", f"label={TASK_LABEL}", "--filter", f"volume={self.volume}"
        ).stdout.split()
        assert not leftovers, f"task containers left behind: {leftovers}"

        files = self.files()
        assert not files["tmp"], f"partial uploads left in tmp/: {files['tmp']}"
        uploads = {row["image_path"] for row in rows.values()}
        assert files["uploads"] == uploads, (
            f"orphan uploads: {sorted(files['uploads'] - uploads)}; "
            f"rows without upload: {sorted(uploads - files['uploads'])}"
        )
        results = files["results"]
        owners = {Path(p).name.split(".", 1)[0] for p in results}
        assert owners <= set(rows), f"result files of no job: {sorted(owners - set(rows))}"
        for job_id, row in rows.items():
            if row["status"] == "succeeded":
                assert f"results/{job_id}.json" in results, job_id
                assert row["annotated_path"] in results, (job_id, row["annotated_path"])
            else:
                assert f"results/{job_id}.annotated.jpg" not in results, job_id
        return {"jobs": len(rows), "executions_per_job": runs, "executions": executions_of}


def decode_jpeg(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "JPEG"
        return image.size


def new_project() -> str:
    return f"yoloe2e{secrets.token_hex(4)}"


def new_key() -> str:
    return str(uuid.uuid4())


def env_flag(name: str, default: str) -> str:
    return os.environ.get(name) or default

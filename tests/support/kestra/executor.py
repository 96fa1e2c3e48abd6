"""Executor mode: runs executions of the flow as Kestra's executor and worker do."""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from docker import DockerClient

from tests.support.kestra.containers import DOCKER_ERRORS, TaskContainers
from tests.support.kestra.flow import TYPES, CommandsTask, RequestTask, Retry
from tests.support.kestra.pebble import RenderError, render
from tests.support.kestra.state import TERMINAL, StandinState, now, push_state, short_id


@dataclass
class ExecutorConfig:
    envs: dict[str, str]  # what the flow sees as `envs`
    volumes_enabled: bool  # the Docker runner's volume-enabled flag
    threads: int = 4
    drain_timeout_s: float = 330.0  # within compose's stop_grace_period (6m)


class AttemptFailed(Exception):
    """One attempt of a task failed; `outputs` is what it produced anyway."""

    def __init__(self, message: str, outputs: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outputs = outputs


FAILURES = (AttemptFailed, RenderError, *DOCKER_ERRORS)


def _ended(item: dict[str, Any]) -> bool:
    """An execution or task run in a terminal state."""
    return item["state"]["current"] in TERMINAL


class FlowExecutor:
    """Runs executions of the flows, `threads` at a time: CREATED -> RUNNING ->
    SUCCESS | FAILED with histories; every attempt of a task in `taskRunList` (`timeout` per
    attempt, constant `retry`: the task run shows RETRYING, the execution stays RUNNING); the
    flow's typed `outputs`; then the `afterExecution` Request tasks with `execution.state` =
    the final state (their failure does not change it). On stop, running executions finish
    (callbacks included) and queued ones stay CREATED for the next start; ones a crash left
    RUNNING start again from their first unfinished task, once the containers they left
    behind are removed."""

    def __init__(
        self, state: StandinState, docker: Callable[[], DockerClient], config: ExecutorConfig
    ) -> None:
        self.state = state
        self.config = config
        self.containers = TaskContainers(state, docker, config.volumes_enabled)
        self._queue: deque[str] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._workers: list[threading.Thread] = []
        state.on_created, state.on_faults = self.submit, self.poke

    def start(self) -> None:
        try:
            self._resume()
        except DOCKER_ERRORS as exc:
            print(f"WARNING: could not clean up after the last run: {exc}", flush=True)
        for index in range(self.config.threads):
            worker = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        """Start nothing new; let running executions finish (callbacks included)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + self.config.drain_timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.state.save()

    def submit(self, execution_id: str) -> None:
        with self._cond:
            self._queue.append(execution_id)
            self._cond.notify()

    def poke(self) -> None:
        """Wake the workers (a fault changed: `hold` may have been released)."""
        with self._cond:
            self._cond.notify_all()

    def _resume(self) -> None:
        """After a restart: queued executions run; interrupted ones start their task again."""
        with self.state.lock:
            pending = [e for e in self.state.executions.values() if not _ended(e)]
        for execution in sorted(pending, key=lambda e: str(e["state"].get("startDate", ""))):
            if execution["state"]["current"] != "CREATED":
                self.containers.remove_leftovers(execution["id"])
                with self.state.change():
                    execution["taskRunList"] = [r for r in execution["taskRunList"] if _ended(r)]
                self.state.log(execution["id"], "interrupted by a restart: running it again")
            self.submit(execution["id"])

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (self.state.faults.hold or not self._queue):
                    self._cond.wait(1.0)
                if self._stopping:
                    return
                execution_id = self._queue.popleft()
            try:
                self._run(execution_id)
            except Exception as exc:  # never lose a worker; the execution fails loudly
                self.state.log(execution_id, f"stand-in error: {exc!r}")
                with self.state.change():
                    execution = self.state.executions[execution_id]
                    if not _ended(execution):
                        push_state(execution["state"], "FAILED")

    def _context(self, execution: dict[str, Any], final_state: str | None) -> dict[str, Any]:
        outputs = {
            run["taskId"]: {"vars": run["outputs"]["vars"]}
            for run in execution["taskRunList"]
            if run.get("outputs", {}).get("vars") is not None
        }
        return {
            "inputs": execution["inputs"],
            "envs": self.config.envs,
            "outputs": outputs,
            "execution": {"id": execution["id"], "state": final_state or "RUNNING"},
        }

    def _run(self, execution_id: str) -> None:
        with self.state.change():
            execution = self.state.executions[execution_id]
            if _ended(execution):
                return
            if execution["state"]["current"] != "RUNNING":
                push_state(execution["state"], "RUNNING")
        flow = self.state.checked[(execution["namespace"], execution["flowId"])]
        done = {run["taskId"] for run in execution["taskRunList"] if _ended(run)}
        # Task by task until one does not succeed.
        succeeded = all(
            task.id in done
            or self._run_task(execution, task, None)["state"]["current"] == "SUCCESS"
            for task in flow.tasks
        )
        final = "SUCCESS" if succeeded else "FAILED"
        context = self._context(execution, None)
        try:
            outputs = {o.id: TYPES[o.type](render(o.value, context)) for o in flow.outputs}
        except ValueError as exc:  # RenderError included
            self.state.log(execution_id, f"Failed to render output values: {exc}")
            outputs, final = {}, "FAILED"
        with self.state.change():
            execution["outputs"] = outputs
            push_state(execution["state"], final)
        self.state.log(execution_id, f"execution ended {final}")
        self._after_execution(execution, final, flow.after_execution)

    def _after_execution(
        self, execution: dict[str, Any], final: str, tasks: list[RequestTask]
    ) -> None:
        if not tasks:
            return
        with self.state.change():
            if self.state.faults.drop_callbacks > 0:
                self.state.faults.drop_callbacks -= 1
                dropped = {"executionId": execution["id"], "state": final, "dropped": True}
                self.state.callbacks.append(dropped)
                self.state.log(execution["id"], "fault: afterExecution dropped (no callback sent)")
                return
        for task in tasks:
            self._run_task(execution, task, final)

    def _run_task(
        self, execution: dict[str, Any], task: CommandsTask | RequestTask, final: str | None
    ) -> dict[str, Any]:
        """One task run in taskRunList: attempt after attempt at the retry's constant interval
        (the run shows RETRYING meanwhile) until one succeeds or none is left."""
        run: dict[str, Any] = {
            "id": short_id(),
            "executionId": execution["id"],
            "namespace": execution["namespace"],
            "flowId": execution["flowId"],
            "taskId": task.id,
            "attempts": [],
            "outputs": {},
            "state": push_state({"startDate": now()}, "CREATED"),
        }
        with self.state.change():
            execution["taskRunList"].append(run)
        retry = task.retry or Retry.model_validate({"type": "constant", "maxAttempts": 1})
        for number in range(1, retry.max_attempts + 1):
            attempt = {"state": push_state({"startDate": now()}, "RUNNING")}
            with self.state.change():
                push_state(run["state"], "RUNNING")
                run["attempts"].append(attempt)
            context = self._context(execution, final)
            try:
                if isinstance(task, CommandsTask):
                    outputs = self._commands(execution["id"], task, number, context)
                else:
                    outputs = self._request(execution["id"], task, number, context)
            except FAILURES as exc:
                self.state.log(execution["id"], f"attempt {number} failed: {exc}", task=task.id)
                last = number == retry.max_attempts
                with self.state.change():
                    push_state(attempt["state"], "FAILED")
                    if isinstance(exc, AttemptFailed) and exc.outputs is not None:
                        run["outputs"] = exc.outputs
                    push_state(run["state"], "FAILED" if last else "RETRYING")
                if last:
                    break
                time.sleep(retry.interval)
            else:
                with self.state.change():
                    run["outputs"] = outputs
                    push_state(attempt["state"], "SUCCESS")
                    push_state(run["state"], "SUCCESS")
                break
        return run

    def _commands(
        self, execution_id: str, task: CommandsTask, attempt: int, context: dict[str, Any]
    ) -> dict[str, Any]:
        """io.kestra.plugin.scripts.python.Commands on the Docker task runner."""
        in_context = functools.partial(render, context=context)
        code, variables = self.containers.run(execution_id, task, attempt, in_context)
        outputs = {"vars": variables, "exitCode": code}
        if code is None:
            raise AttemptFailed(f"Timeout after {task.timeout} s")
        if code != 0:
            raise AttemptFailed(f"Command failed with exit code {code}", outputs)
        return outputs

    def _request(
        self, execution_id: str, task: RequestTask, attempt: int, context: dict[str, Any]
    ) -> dict[str, Any]:
        """io.kestra.plugin.core.http.Request (an afterExecution task here: `execution.state` is
        the final state): an HTTP status >= 400 fails the attempt."""
        in_context = functools.partial(render, context=context)
        headers: dict[str, str] = {}
        if task.content_type is not None:
            headers["Content-Type"] = in_context(task.content_type)
        if task.options.auth is not None:
            headers["Authorization"] = "Bearer " + in_context(task.options.auth.token)
        limits, cap = task.options.timeout, task.timeout if task.timeout is not None else 1e9
        timeout = httpx.Timeout(
            min(limits.read_idle_timeout, cap), connect=min(limits.connect_timeout, cap)
        )
        uri, body = in_context(task.uri), in_context(task.body)
        record: dict[str, Any] = {
            "executionId": execution_id,
            "taskId": task.id,
            "attempt": attempt,
            "state": context["execution"]["state"],
            "uri": uri,
            "dropped": False,
            "at": now(),
        }
        try:
            response = httpx.request(
                task.method, uri, content=body, headers=headers, timeout=timeout
            )
            record["status"] = response.status_code
        except httpx.HTTPError as exc:
            record["error"] = repr(exc)
            raise AttemptFailed(f"{task.method} {uri}: {exc!r}") from None
        finally:
            with self.state.change():
                self.state.callbacks.append(record)
        self.state.log(execution_id, f"{task.method} {uri} -> {response.status_code}", task=task.id)
        if response.status_code >= 400:
            raise AttemptFailed(f"Failed http request with response code '{response.status_code}'")
        return {"vars": {"code": response.status_code, "body": response.text[:2000]}}

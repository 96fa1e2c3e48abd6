"""A Commands task on the Docker task runner, through the Docker SDK, as Kestra runs it: the
image pulled per `pullPolicy`, a fresh container (entrypoint reset, the commands joined by
newlines as the argument of `/bin/sh -c`, a new root-owned working directory, `volumes` only
with the runner's volume-enabled flag, `deviceRequests` as HostConfig.DeviceRequests), the
task timeout counted from before the pull (Kestra's WorkerTaskCallable wraps the whole task;
the container is killed), stdout lines `::{"outputs": {...}}::` as the task's vars, the
container removed when `delete` is true. Logs are read once the container ends."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from docker import DockerClient
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout, RequestException

from tests.support.kestra.flow import CommandsTask, DockerRunner
from tests.support.kestra.state import StandinState, now

LABEL = "io.kestra.standin.execution"  # on every task container: its execution's id
DOCKER_ERRORS = (DockerException, RequestException)
OUTPUTS_LINE = re.compile(r"^::(\{.*\})::$")


def _wait(container: Container, left: float | None) -> int | None:
    """The exit code, or None once `left` seconds are over (the container is then killed)."""
    try:
        return int(container.wait(timeout=left)["StatusCode"])
    except (ReadTimeout, RequestsConnectionError):  # how the SDK's unix socket times out
        with contextlib.suppress(APIError):
            container.kill()
        container.wait(timeout=30)
        return None


def _outputs(stdout: str, log: Callable[[str], None]) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for line in stdout.splitlines():
        if match := OUTPUTS_LINE.match(line.strip()):
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                variables.update(json.loads(match.group(1)).get("outputs") or {})
        elif line.strip():
            log(f"stdout: {line}")
    return variables


def device_requests(runner: DockerRunner, render: Callable[[str], str]) -> list[DeviceRequest]:
    """The runner's deviceRequests as the Docker SDK takes them (HostConfig.DeviceRequests)."""
    return [
        DeviceRequest(
            driver=render(request.driver or ""),
            count=request.count or 0,
            device_ids=[render(device) for device in request.device_ids or []],
            capabilities=request.capabilities or [],
            options=request.options or {},
        )
        for request in runner.device_requests
    ]


class TaskContainers:
    """Runs task containers and records them in the state."""

    def __init__(
        self, state: StandinState, docker: Callable[[], DockerClient], volumes_enabled: bool
    ) -> None:
        self.state = state
        self.docker = docker
        self.volumes_enabled = volumes_enabled

    def run(
        self, execution_id: str, task: CommandsTask, attempt: int, render: Callable[[str], str]
    ) -> tuple[int | None, dict[str, Any]]:
        """The exit code (None: timed out) and the vars the task printed."""
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        log = functools.partial(self.state.log, execution_id, task=task.id)
        runner = task.task_runner
        image, user = render(task.container_image), render(runner.user)
        network = None if runner.network_mode is None else render(runner.network_mode)
        volumes = [render(volume) for volume in runner.volumes]
        volumes = volumes if self.volumes_enabled else []  # what Kestra does: silently none
        client = self.docker()
        self._pull(client, image, runner.pull_policy, log)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            log(f"timed out pulling {image}")
            return None, {}
        name = f"kestra-standin-{execution_id}-{task.id}-{attempt}-{secrets.token_hex(3)}"
        container = client.containers.create(
            image=image,
            name=name,
            entrypoint=[""],
            command=["/bin/sh", "-c", "\n".join(render(line) for line in task.commands)],
            environment=[f"{key}={render(value)}" for key, value in task.env.items()],
            user=user,
            volumes=volumes,
            working_dir=f"/kestra-wd/{secrets.token_hex(8)}",  # created by Docker, root-owned
            network_mode=network,
            device_requests=device_requests(runner, render) or None,
            labels={LABEL: execution_id},
        )
        record: dict[str, Any] = {
            "executionId": execution_id,
            "taskId": task.id,
            "attempt": attempt,
            "containerId": container.id,
            "name": name,
            "image": image,
            "user": user,
            "binds": volumes,
            "network": network or "default",
            "startedAt": now(),
            "exitCode": None,
            "removed": False,
        }
        with self.state.change():
            self.state.containers.append(record)
        log(f"container {str(container.id)[:12]} ({image})")
        try:
            container.start()
            code = _wait(container, left)
            stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            stderr = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        finally:
            with self.state.change():
                record["finishedAt"] = now()
            if runner.delete:
                self._remove(container)
        with self.state.change():
            record["exitCode"] = code
        for line in stderr.splitlines()[-20:]:
            log(f"stderr: {line}")
        return code, _outputs(stdout, log)

    def remove_leftovers(self, execution_id: str) -> None:
        """The containers a crash left behind for this execution."""
        label = f"{LABEL}={execution_id}"
        for container in self.docker().containers.list(all=True, filters={"label": label}):
            self._remove(container)

    def _pull(
        self, client: DockerClient, image: str, policy: str, log: Callable[[str], None]
    ) -> None:
        if policy != "ALWAYS":
            with contextlib.suppress(ImageNotFound):
                client.images.get(image)
                return
            if policy == "NEVER":
                raise DockerException(f"image {image} is absent and pullPolicy is NEVER")
        log(f"pulling {image}")
        client.images.pull(image)

    def _remove(self, container: Container) -> None:
        with contextlib.suppress(NotFound):
            container.remove(force=True, v=True)
        with self.state.change():
            for record in self.state.containers:
                if record["containerId"] == container.id:
                    record["removed"] = True

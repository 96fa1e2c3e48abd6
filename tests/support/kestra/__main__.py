"""`python -m tests.support.kestra server standalone --config FILE --flow-path DIR`: the
stand-in in place of the `kestra` compose service, with Kestra's command line, reading Kestra's
own configuration file and flow directory as Kestra reads them. Stops gracefully on SIGTERM."""

from __future__ import annotations

import argparse
import functools
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import yaml

from tests.support.kestra.api import build_app, management_app, serve_in_thread
from tests.support.kestra.containers import DOCKER_ERRORS
from tests.support.kestra.executor import ExecutorConfig, FlowExecutor
from tests.support.kestra.flow import DOCKER_RUNNER, load_flows
from tests.support.kestra.pebble import Unsupported
from tests.support.kestra.state import StandinState

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.-]+)(?::([^}]*))?\}")


def resolve_placeholders(value: Any, env: Mapping[str, str]) -> Any:
    """Micronaut `${NAME}` / `${NAME:default}`; a missing NAME without default is fatal."""
    if isinstance(value, dict):
        return {k: resolve_placeholders(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_placeholders(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.groups()
        if name not in env and default is None:
            raise SystemExit(f"Could not resolve placeholder ${{{name}}}")
        return env.get(name, default)

    return _PLACEHOLDER.sub(sub, value)


@dataclass
class ServerSettings:
    username: str
    password: str
    env_prefix: str
    volumes_enabled: bool
    storage: Path
    url: str
    tutorials: bool  # kestra.tutorial-flows.enabled (Kestra's default: true)


def _at(config: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The setting at a dotted path; an unset or empty section counts as missing."""
    *sections, key = path.split(".")
    for section in sections:
        config = config.get(section) or {}
    return config.get(key, default)


def read_config(path: Path, env: Mapping[str, str]) -> ServerSettings:
    config = resolve_placeholders(yaml.safe_load(path.read_text()) or {}, env)
    auth = _at(config, "kestra.server.basic-auth") or {}
    if not auth.get("username") or not auth.get("password"):
        raise SystemExit("kestra.server.basic-auth username/password are required (Kestra 1.x)")
    plugins = _at(config, "kestra.plugins.configurations") or []
    return ServerSettings(
        username=str(auth["username"]),
        password=str(auth["password"]),
        env_prefix=str(_at(config, "kestra.variables.env-vars-prefix", "ENV_")),
        volumes_enabled=any(
            item.get("type") == DOCKER_RUNNER
            and (item.get("values") or {}).get("volume-enabled") is True
            for item in plugins
        ),
        storage=Path(_at(config, "kestra.storage.local.base-path", "/app/storage")),
        url=str(_at(config, "kestra.url", "http://localhost:8080/")),
        tutorials=str(_at(config, "kestra.tutorial-flows.enabled", True)).lower() != "false",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kestra stand-in (tests only)")
    parser.add_argument("command", choices=["server"])  # Kestra's CLI: server standalone
    parser.add_argument("mode", choices=["standalone", "local"])
    parser.add_argument("-c", "--config", type=Path, required=True)
    parser.add_argument("--flow-path", type=Path, required=True)
    parser.add_argument("--no-tutorials", action="store_true", help="load no tutorial flows")
    args, env = parser.parse_args(argv), dict(os.environ)
    settings = read_config(args.config, env)
    if settings.tutorials and not args.no_tutorials:
        raise SystemExit(
            "Kestra would load its tutorial flows from the internet at start "
            "(FlowAutoLoaderService): set kestra.tutorial-flows.enabled: false or pass "
            "--no-tutorials"
        )
    try:
        state = StandinState(load_flows(args.flow_path), settings.username, settings.password)
    except Unsupported as exc:
        raise SystemExit(f"{args.flow_path}: {exc}") from None
    state.base_url = settings.url
    state.visibility_delay_s = float(env.get("STANDIN_VISIBILITY_DELAY_S", "0"))
    settings.storage.mkdir(parents=True, exist_ok=True)
    state.store = settings.storage / "standin-state.json"
    state.load()
    docker_client = functools.cache(docker.from_env)  # connects once the engine answers
    try:
        docker_client().ping()
    except DOCKER_ERRORS as exc:
        print(f"WARNING: {exc}: tasks will fail until the Docker engine answers", flush=True)
    prefix = settings.env_prefix  # ENV_X is what the flow sees as `envs.x`
    executor = FlowExecutor(
        state,
        docker_client,
        ExecutorConfig(
            envs={k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)},
            volumes_enabled=settings.volumes_enabled,
            threads=int(env.get("STANDIN_WORKER_THREADS", "4")),
        ),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    executor.start()
    api, _ = serve_in_thread(build_app(state), "0.0.0.0", 8080)
    management, _ = serve_in_thread(management_app(), "0.0.0.0", 8081)
    volumes = "enabled" if settings.volumes_enabled else "IGNORED (volume-enabled is not set)"
    print(
        f"Kestra stand-in: flows {', '.join('.'.join(key) for key in state.checked)}, "
        f"API :8080, management :8081, task volumes {volumes}",
        flush=True,
    )
    stop.wait()
    print("stopping: no new executions; waiting for running ones", flush=True)
    api.should_exit = management.should_exit = True
    executor.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One settings object, read from environment variables once at start-up."""

from __future__ import annotations

import base64
import binascii
import re
import sys
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated

from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_ADMIN_KEY_CHARS = 32  # guessable keys are refused at start


class Refusal(Exception):
    """A configuration this process cannot run, in one line saying what to change (bootstrap
    prints it and exits 1; the API logs it: app.startup.RefusalGuard)."""


def kestra_credentials_problem(username: str, password: str) -> str | None:
    """Kestra 1.3's own rules for basic auth (BasicAuthService): it refuses others, and then
    answers every call with 401 for good."""
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", username):
        return "KESTRA_USERNAME must be an email address"
    rules = (
        8 <= len(password) <= 256,
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
    )
    if not all(rules):
        return (
            "KESTRA_PASSWORD must have 8 to 256 characters with a lower-case letter, "
            "an upper-case letter and a digit"
        )
    return None


class OrchestratorKind(StrEnum):
    LOCAL = "local"
    KESTRA = "kestra"


class Settings(BaseSettings):
    """Every knob of the API. Names are the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    # Storage. SQLite is only the default of the no-Docker dev mode; compose sets Postgres.
    database_url: str = "sqlite:///./shared-data/dev.sqlite3"
    db_pool_size: int = 5
    db_connect_timeout_s: int = 5
    # Bootstrap waits this long for a database server that is still starting, then refuses.
    db_wait_s: float = Field(default=30.0, ge=0.0)
    shared_data_dir: Path = Path("shared-data")

    orchestrator: OrchestratorKind = OrchestratorKind.LOCAL
    kestra_url: str = "http://localhost:8080"
    kestra_username: str = "admin@example.com"
    kestra_password: SecretStr | None = None
    kestra_namespace: str = "inference"
    kestra_flow_id: str = "yolo-detect"
    kestra_export_flow_id: str = "yolo-export"  # flows/yolo-export.yml
    kestra_connect_timeout_s: float = 3.0
    kestra_read_timeout_s: float = 10.0
    # After a create whose answer was lost, how long its execution may stay invisible to
    # search (Kestra creates asynchronously) before the batch is sent again.
    kestra_visibility_grace_s: float = Field(default=10.0, ge=0.0)
    # The Bearer token Kestra's afterExecution callback presents.
    callback_token: SecretStr | None = None

    # Every /v1 route but the callback wants `Authorization: Bearer <key>`. Off only in the
    # no-Docker dev mode on loopback (`make dev`), which says so at start.
    require_api_keys: bool = True
    # The first admin key, from .env; bootstrap stores its hash (more: `python -m app.keys`).
    admin_api_key: SecretStr | None = None
    # Per key: jobs not yet finished. Past it an upload gets 429 with Retry-After.
    max_unfinished_jobs_per_key: int = Field(default=1000, ge=1)

    # Local orchestrator: the same detection script, as a subprocess.
    local_python: str = Field(default_factory=lambda: sys.executable)
    local_detect_script: Path = Path("flows/detect.py")
    local_max_parallel: int = 1
    local_timeout_s: float = 600.0
    # Bootstrap copies it onto the shared volume, where inference containers run it.
    detect_script_source: Path | None = None

    # Passed to the flow
    model: str = "yolo11n.pt"
    # A bare model name found neither in models/ nor in the inference image is downloaded by
    # Ultralytics only if this is on (Local orchestrator; compose passes it to the flow).
    allow_model_download: bool = False
    confidence: float = Field(default=0.25, ge=0.0, le=1.0)
    image_size: int = Field(default=640, ge=32, le=4096)

    max_upload_bytes: int = 20 * 1024 * 1024
    # A model's weights (PUT /v1/models/{name}), enforced while the body streams in.
    max_model_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_image_pixels: int = 40_000_000
    max_files_per_request: int = 16
    # A request body that sends nothing for this long is answered 408.
    body_timeout_s: float = Field(default=30.0, gt=0)
    # Below this much free space on the shared volume uploads get 507 and /ready says so.
    min_free_bytes: int = Field(default=256 * 1024 * 1024, ge=0)

    workers_enabled: bool = True
    dispatch_interval_s: float = 1.0
    batch_max_jobs: int = Field(default=32, ge=1, le=256)
    batch_window_s: float = Field(default=0.25, ge=0.0, le=60.0)
    dispatch_lease_s: float = 60.0
    dispatch_max_backoff_s: float = 30.0
    reconcile_interval_s: float = 5.0
    # Poll a submitted/running job whose callback has not come after this long.
    reconcile_after_s: float = 30.0
    # The reconciler deletes finished jobs (files, then rows) this many days after they
    # ended, at most retention_batch per pass; 0 keeps every job.
    retention_days: int = Field(default=0, ge=0, le=36500)
    retention_batch: int = Field(default=100, ge=1, le=10_000)

    # Webhooks: a job's end POSTed to the upload's (or its key's) callback_url, signed per
    # Standard Webhooks with this secret: `whsec_` + base64 of 24-64 random bytes. Unset:
    # uploads and keys that name a callback_url are refused.
    webhook_secret: SecretStr | None = None
    # Comma-separated CIDRs a callback may reach although private, loopback, link-local or
    # otherwise not public (e.g. 10.0.0.0/8); every other such address is refused (SSRF).
    webhook_allowed_networks: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()
    # Attempts per delivery; between them an exponential back-off with jitter.
    webhook_max_attempts: int = Field(default=10, ge=1, le=100)
    webhook_backoff_s: float = Field(default=5.0, gt=0)
    webhook_max_backoff_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_interval_s: float = Field(default=1.0, gt=0)

    log_level: str = "INFO"

    # Prometheus metrics: at /metrics on the API's port (no key), on a port of their own
    # (METRICS_PORT, bound to METRICS_HOST by one worker), or not at all.
    metrics_enabled: bool = True
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: the API's own port
    metrics_host: str = "127.0.0.1"
    # prometheus_client's multiprocess mode (the library reads this variable itself): an
    # empty directory, emptied before the server starts, where each worker writes its events.
    prometheus_multiproc_dir: Path | None = None
    # uvicorn's worker processes (uvicorn reads WEB_CONCURRENCY itself; read here to check
    # that several workers' events can be added up).
    web_concurrency: int = Field(default=1, ge=1)

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # empty in .env: webhooks off
        if not 24 <= len(webhook_key(value)) <= 64:
            raise ValueError(
                "WEBHOOK_SECRET must be whsec_ followed by the base64 of 24 to 64 random bytes "
                '(e.g. echo "whsec_$(openssl rand -base64 32)")'
            )
        return value

    @model_validator(mode="after")
    def _require_secrets(self) -> Settings:
        if self.orchestrator is OrchestratorKind.KESTRA:
            given = {"KESTRA_PASSWORD": self.kestra_password, "CALLBACK_TOKEN": self.callback_token}
            missing = [k for k, v in given.items() if v is None or not v.get_secret_value()]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} must be set when ORCHESTRATOR=kestra "
                    "(see .env.example)"
                )
            password = self.kestra_password.get_secret_value() if self.kestra_password else ""
            if problem := kestra_credentials_problem(self.kestra_username, password):
                raise ValueError(f"{problem}: Kestra would refuse every call (401)")
        key = self.admin_api_key.get_secret_value() if self.admin_api_key else ""
        if key and len(key) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"ADMIN_API_KEY must have at least {MIN_ADMIN_KEY_CHARS} characters "
                "(e.g. openssl rand -hex 32)"
            )
        return self

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def webhook_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return tuple(self.webhook_allowed_networks)


def webhook_key(secret: SecretStr) -> bytes:
    """The secret's bytes (empty if it is not `whsec_` + base64)."""
    text = secret.get_secret_value().removeprefix("whsec_")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def load_settings() -> Settings:
    """Read the environment; exit with a readable message if it is incomplete."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = (f"{_variable(e['loc'])}: {_message(e['msg'])}" for e in exc.errors())
        raise Refusal(f"Invalid configuration: {'; '.join(problems)}") from None


def _message(msg: str) -> str:
    return msg.removeprefix("Value error, ")  # pydantic's prefix for our validators' words


def _variable(loc: tuple[int | str, ...]) -> str:
    """A field's environment variable (model-wide checks have no field)."""
    return ".".join(str(part).upper() for part in loc) or "settings"

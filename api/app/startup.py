"""Refusals at start: a configuration this process cannot run stops it with one line saying
what to change, never a traceback. Bootstrap prints the line and exits 1; the API logs it
(RefusalGuard) and uvicorn exits with its startup-failure status."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import OrchestratorKind, Refusal, Settings
from app.logs import configure_logging
from app.models.files import MODELS_DIR

log = logging.getLogger(__name__)

LOCAL_ADAPTER = "app.orchestrators.local"
# Where the official inference images keep their default weights (flows/detect.py looks too).
OFFICIAL_IMAGE_WORKDIR = Path("/ultralytics")
FIXTURE_MODEL = "tests/fixtures/model/shapes.pt"


def check_orchestrator(settings: Settings) -> None:
    """The Local adapter is left out of the image (.dockerignore): say so instead of failing on
    its import."""
    if settings.orchestrator is not OrchestratorKind.LOCAL:
        return
    if importlib.util.find_spec(LOCAL_ADAPTER) is None:
        raise Refusal(
            "ORCHESTRATOR=local runs flows/detect.py with the host's Ultralytics (make dev); "
            "this image has neither: set ORCHESTRATOR=kestra in .env"
        )


def check_metrics(settings: Settings) -> None:
    """Several workers count events each in their own process: one scrape sees them all only
    through prometheus_client's multiprocess directory, made here if missing."""
    directory = settings.prometheus_multiproc_dir
    if not settings.metrics_enabled:
        return
    if directory is None:
        if settings.web_concurrency > 1:
            raise Refusal(
                f"WEB_CONCURRENCY={settings.web_concurrency} needs PROMETHEUS_MULTIPROC_DIR "
                "(an empty directory, e.g. on a tmpfs) so /metrics counts every worker, "
                "or METRICS_ENABLED=false"
            )
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Refusal(
            f"PROMETHEUS_MULTIPROC_DIR={directory} cannot be made: {exc.strerror}"
        ) from None


def check_model(settings: Settings) -> None:
    """ORCHESTRATOR=local: MODEL must be found on this host the way flows/detect.py finds it.
    (With Kestra the inference image has the weights: its one-shot seed step checks.)"""
    if settings.orchestrator is not OrchestratorKind.LOCAL or local_model_found(settings):
        return
    model, models = settings.model, settings.shared_data_dir / MODELS_DIR
    if _is_path(model):  # never downloaded, only looked up
        raise Refusal(
            f"MODEL={model} is not a file (a relative path is looked up in SHARED_DATA_DIR, "
            f"then in the current directory): set MODEL to a .pt file or a name in {models}/"
        )
    raise Refusal(
        f"MODEL={model} is not in {models}/ nor shipped with the installed ultralytics, and "
        f"ALLOW_MODEL_DOWNLOAD is off: copy the weights to {models / model}, set MODEL to a "
        f".pt file (e.g. MODEL={FIXTURE_MODEL}), or set ALLOW_MODEL_DOWNLOAD=true"
    )


def local_model_found(settings: Settings) -> bool:
    """flows/detect.py's _resolve_model by file paths alone: the API never imports ML code."""
    model, data_dir = settings.model, settings.shared_data_dir
    path = Path(model)
    if not model.strip():
        return False
    if path.is_absolute():
        return path.is_file()
    if (data_dir / path).is_file():
        return True
    if _is_path(model):
        return path.is_file()  # relative to the current directory, which the subprocess shares
    if (data_dir / MODELS_DIR / path).is_file() or shipped_weights(model) is not None:
        return True
    return settings.allow_model_download


def _is_path(model: str) -> bool:
    """A name with a directory part (or an absolute one) is a file, never a download."""
    path = Path(model)
    return path.is_absolute() or len(path.parts) > 1


def shipped_weights(name: str) -> Path | None:
    """Weights beside the installed ultralytics package or in the official images' folder;
    finding the package does not import it."""
    spec = importlib.util.find_spec("ultralytics")
    roots = [Path(spec.origin).resolve().parents[1]] if spec and spec.origin else []
    for root in (*roots, OFFICIAL_IMAGE_WORKDIR):
        if (root / name).is_file():
            return root / name
    return None


class RefusalGuard:
    """Lifespan only: Starlette reports a failed startup with its traceback, which uvicorn
    logs; for a Refusal, the one line is logged instead and the failure is sent bare."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold_failure(message: Message) -> None:
            # Sent before the exception is re-raised: kept until we know what it was.
            if message["type"] == "lifespan.startup.failed":
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_failure)
        except Refusal as exc:
            if not logging.getLogger().handlers:  # the settings themselves were refused
                configure_logging("INFO")
            log.error("api.refused", extra={"reason": str(exc)})
            held[:] = [{"type": "lifespan.startup.failed", "message": ""}]
            raise  # uvicorn stays quiet about it: the failure was sent first
        finally:
            for message in held:
                await send(message)

"""Request-scoped dependencies, as Annotated aliases: route signatures stay short and typed."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.jobs.intake import Intake
from app.metrics.exposition import Exporter
from app.orchestrators.base import Orchestrator
from app.storage import SharedStorage
from app.workers.deliverer import Deliverer
from app.workers.dispatcher import Dispatcher
from app.workers.reconciler import Reconciler


@dataclass
class Resources:
    """Everything opened in the lifespan and closed at shutdown."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: SharedStorage
    intake: Intake
    orchestrator: Orchestrator
    dispatcher: Dispatcher
    reconciler: Reconciler
    deliverer: Deliverer | None  # None: WEBHOOK_SECRET unset, no webhooks
    metrics: Exporter


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_session(resources: ResourcesDep) -> Iterator[Session]:
    # The route commits explicitly; anything uncommitted is rolled back on close.
    with resources.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

"""Schemathesis against the app in-process (ASGI, no network) on Postgres, with all of its
default checks: every operation on its own (examples, coverage and fuzzing phases, valid and
invalid data), then stateful sequences along the links schemathesis infers from the schema (an
upload's jobs into GET /v1/jobs/{job_id} and its image, a created key into its DELETE, ...).
Bounded and derandomized: the same cases on every run, in about a minute."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import AuthContext, Case, Response
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Receive, Scope, Send

from app.db import Base, make_engine, make_session_factory, session_scope
from app.keys import service as keys
from app.main import create_app
from app.storage import SharedStorage
from tests.api.factories import torch_archive
from tests.support.api_app import ADMIN_KEY, CALLBACK_TOKEN, SettingsFactory
from tests.support.images import encode

AnyCase = Case[Any]  # a case of any operation

ADMIN_NAME = "admin"  # what bootstrap names the ADMIN_API_KEY it stores
CALLBACK_PATH = "/v1/callbacks/kestra"
EXAMPLES_PER_OPERATION = 50  # fuzzing phase; the examples and coverage phases add their own
SCENARIOS = 40
STEPS_PER_SCENARIO = 8

# Upload parts the schema declares as JPEG, PNG or WebP (`encoding.contentType`) get real
# images of these types; schemathesis has no generator of its own for image media types.
for _media_type, _format in (("image/jpeg", "JPEG"), ("image/png", "PNG"), ("image/webp", "WEBP")):
    schemathesis.openapi.media_type(
        _media_type,
        st.builds(functools.partial(encode, _format), st.integers(1, 64), st.integers(1, 64)),
    )


def _weights(folder: str) -> bytes:
    """All the API looks at in a `.pt`: `<folder>/data.pkl`; this pickle is an empty dict."""
    return torch_archive(f"{folder}/data.pkl", content=b"\x80\x02}q\x00.")


# Model weights, for a body the schema declares as `application/zip`.
schemathesis.openapi.media_type(
    "application/zip", st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).map(_weights)
)


class _AppOfTheTest:
    """The ASGI app schemathesis sends every request to, its own probes (a retry without the
    key, ...) included. It has to come with the schema, which is loaded at import; each test
    points it at the app on its own database."""

    app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "only tests with the `api` fixture send requests"
        await self.app(scope, receive, send)


app_of_the_test = _AppOfTheTest()
# An upload may name a model: any name of the right shape is valid data, but only the pushed
# ones (and the default) exist, so for that operation 422 `unknown_model` is an answer to
# valid data too (issue: unknown model -> 422 naming the ones there are).
UPLOAD_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
_CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path": "/v1/uploads",
                "include-method": "POST",
                "checks": {"positive_data_acceptance": {"expected-statuses": UPLOAD_STATUSES}},
            }
        ]
    }
)
# The document the app serves at /openapi.json; building it needs no settings or database.
schema = schemathesis.openapi.from_dict(create_app().openapi(), config=_CONFIG)
schema.app = app_of_the_test  # as schemathesis.openapi.from_asgi does


@schema.auth(refresh_interval=None, retry_on=[])  # no caching, no re-login after a 401
class _Credentials:
    """The callback token on Kestra's callback, the admin key everywhere else (it may manage
    keys and sees every job). Cases that test a missing or wrong key do not get it."""

    def get(self, case: AnyCase, ctx: AuthContext) -> str:
        return CALLBACK_TOKEN if case.operation.path == CALLBACK_PATH else ADMIN_KEY

    def set(self, case: AnyCase, data: str, ctx: AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


def _bounded(max_examples: int, *, stateful_step_count: int = 50) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        stateful_step_count=stateful_step_count,
        deadline=None,
        derandomize=True,
        database=None,  # no example database: a run does not depend on earlier ones
        # The app and its database belong to the test and serve all of its examples; each
        # example starts from a reset database (Api.reset).
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@dataclass
class Api:
    app: FastAPI
    sessions: sessionmaker[Session]
    shared_dir: Path

    def reset(self) -> None:
        """As bootstrap leaves things: no rows but the admin key, empty directories on the
        shared volume. Before each example and each scenario, so none sees another's leftovers
        (a taken key name, a pushed model) and Hypothesis can replay and shrink what it finds."""
        with session_scope(self.sessions) as session:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(table.delete())
            keys.ensure(session, ADMIN_NAME, ADMIN_KEY)
        for child in self.shared_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        SharedStorage(self.shared_dir).prepare()

    def restore_admin_key(self) -> None:
        """Before each step of a scenario: a generated DELETE /v1/keys/admin revokes the key
        the cases send; it is put back (as bootstrap does) so it never stays revoked."""
        with session_scope(self.sessions) as session:
            keys.ensure(session, ADMIN_NAME, ADMIN_KEY)


@pytest.fixture
def api(make_settings: SettingsFactory) -> Iterator[Api]:
    """A new app on a new database for each test (each operation). Schemathesis' ASGI
    transport runs the app's lifespan from the first request; it is ended here, before the
    database is dropped."""
    settings = make_settings(workers_enabled=False)  # nothing runs behind the requests' backs
    engine = make_engine(settings)
    api = Api(create_app(settings), make_session_factory(engine), settings.shared_data_dir)
    app_of_the_test.app = api.app
    try:
        api.reset()
        yield api
    finally:
        try:
            asgi.shutdown_lifespans()
        finally:
            app_of_the_test.app = None
            engine.dispose()


@_bounded(EXAMPLES_PER_OPERATION)
@schema.parametrize()
def test_every_operation_answers_as_documented(case: AnyCase, api: Api) -> None:
    api.reset()
    case.call_and_validate()


def test_sequences_of_operations_answer_as_documented(api: Api) -> None:
    answers: set[tuple[str, int]] = set()  # (operation, status) of every step

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            api.reset()

        def before_call(self, case: AnyCase) -> None:
            api.restore_admin_key()

        def after_call(self, response: Response, case: AnyCase) -> None:
            super().after_call(response, case)
            answers.add((case.operation.label, response.status_code))

    Sequences.run(settings=_bounded(SCENARIOS, stateful_step_count=STEPS_PER_SCENARIO))
    # The links were followed into real jobs, not only random ids: an operation on one job
    # (GET, its image, DELETE, ...) succeeded.
    on_a_job = [(op, status) for op, status in answers if "/v1/jobs/{job_id}" in op]
    assert any(200 <= status < 300 for _, status in on_a_job), sorted(answers)

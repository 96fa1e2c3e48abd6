"""Which weights a model name means: pushed files, the default as a name or as a path in
models/, and the default from the inference image."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.errors import UnknownModel
from app.models import service
from app.models.service import Weights
from tests.api.factories import push_model, torch_archive, upload
from tests.support.api_app import SettingsFactory, keyed_client, resources_of


def resolve(client: TestClient, requested: str) -> Weights:
    resources = resources_of(client)
    with resources.sessions() as session:
        return service.resolve(session, resources.storage, resources.settings.model, requested)


def names(client: TestClient) -> list[tuple[str, str, bool]]:
    resources = resources_of(client)
    with resources.sessions() as session:
        entries = service.available(session, resources.storage, resources.settings.model)
    return [(entry.name, entry.source, entry.default) for entry in entries]


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("x.pt", "x.pt"),
        ("models/x.pt", "x.pt"),
        ("yolo11n", None),
        ("a/b.pt", None),
        ("/x.pt", None),
    ],
)
def test_a_reference_names_a_file_in_models_only_as_name_or_models_path(
    model: str, name: str | None
) -> None:
    assert service.name_in_models(model) == name


def test_a_default_given_as_a_path_in_models_is_that_file(
    make_settings: SettingsFactory, shared_dir: Path
) -> None:
    """As compose's e2e stack sets it: MODEL=models/shapes.pt, copied there by hand."""
    (shared_dir / "models").mkdir()
    (shared_dir / "models" / "shapes.pt").write_bytes(b"by hand")
    digest = hashlib.sha256(b"by hand").hexdigest()
    with keyed_client(make_settings(model="models/shapes.pt")) as client:
        assert names(client) == [("shapes.pt", "volume", True)]
        for requested in ("models/shapes.pt", "shapes.pt"):
            assert resolve(client, requested) == Weights("models/shapes.pt", digest)

        pushed = torch_archive()
        push_model(client, "shapes.pt", pushed)
        assert names(client) == [("shapes.pt", "volume", True)]
        assert resolve(client, "models/shapes.pt").sha256 == hashlib.sha256(pushed).hexdigest()


def test_a_default_outside_models_is_only_known_by_its_own_name(
    make_settings: SettingsFactory,
) -> None:
    with keyed_client(make_settings(model="/opt/weights/best.pt")) as client:
        assert names(client) == [("/opt/weights/best.pt", "image", True)]
        assert resolve(client, "/opt/weights/best.pt") == Weights("/opt/weights/best.pt", None)
        with pytest.raises(UnknownModel):
            resolve(client, "best.pt")


def test_pushing_the_default_name_waits_for_the_default_models_jobs(client: TestClient) -> None:
    """Queued jobs of a bare default name would load models/<name> once it is there."""
    upload(client)
    refused = push_model(client, "yolo11n.pt")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "model_in_use"
    assert push_model(client, "other.pt").status_code == 201

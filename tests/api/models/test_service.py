"""Which weights a model name means: pushed files, the default as a name or as a path in
models/, and the default from the inference image."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.errors import InvalidRequest, UnknownModel
from app.models import exports, service
from app.models.exports import Limits
from app.models.service import Weights
from tests.api.factories import push_model, torch_archive, upload
from tests.support.api_app import SettingsFactory, keyed_client, resources_of


def resolve(client: TestClient, requested: str, image_size: int | None = None) -> Weights:
    resources = resources_of(client)
    settings = resources.settings
    size = settings.image_size if image_size is None else image_size
    with resources.sessions() as session:
        return service.resolve(
            session, resources.storage, settings.model, requested, Limits.of(settings), size
        )


def names(client: TestClient) -> list[tuple[str, str, bool]]:
    resources = resources_of(client)
    settings = resources.settings
    with resources.sessions() as session:
        entries = service.available(session, resources.storage, settings.model, Limits.of(settings))
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


@pytest.mark.slow  # real exports (once per session)
def test_exports_in_models_are_listed_and_resolved_only_once_checked(
    client: TestClient, shared_dir: Path, exports_in: Callable[[Path], None]
) -> None:
    """Real exports of the fixture model: listed with their format and digest; a file named
    like an export that is not one is neither listed nor resolved."""
    exports_in(shared_dir)
    (shared_dir / "models" / "junk.onnx").write_bytes(b"not a model")
    storage, limits = resources_of(client).storage, Limits.of(resources_of(client).settings)
    names = ("shapes.onnx", "shapes_openvino_model")
    digests = {name: exports.check(storage, name, limits).sha256 for name in names}

    listed = client.get("/v1/models").json()["models"]

    assert [(m["name"], m["format"], m["sha256"]) for m in listed] == [
        ("shapes.onnx", "onnx", digests["shapes.onnx"]),
        ("shapes_openvino_model", "openvino", digests["shapes_openvino_model"]),
        ("yolo11n.pt", "pytorch", None),
    ]
    for name, digest in digests.items():
        for requested in (name, f"models/{name}"):
            assert resolve(client, requested) == Weights(f"models/{name}", digest)
    with pytest.raises(UnknownModel):
        resolve(client, "junk.onnx")
    with pytest.raises(InvalidRequest, match="takes 640x640 images only"):
        resolve(client, "shapes.onnx", image_size=320)

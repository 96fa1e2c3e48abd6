"""The OpenAPI document: valid, readable (tags, summaries, examples) and honest about errors."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from openapi_spec_validator import validate

ERROR_REF = "#/components/schemas/ErrorOut"


def operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_the_document_is_valid_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    validate(spec)
    assert spec["openapi"].startswith("3.")


def test_every_operation_has_a_tag_and_a_summary(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for name, operation in operations(spec):
        assert operation.get("tags"), name
        assert operation.get("summary"), name
    described = {tag["name"] for tag in spec["tags"] if tag.get("description")}
    used = {tag for _, operation in operations(spec) for tag in operation["tags"]}
    assert used <= described


def test_every_error_answer_is_documented_with_the_one_error_shape(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for name, operation in operations(spec):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")) or name == "GET /ready":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (name, status)
            assert "`" in response["description"], (name, status)  # names the codes
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's default 422 is not what we send
    info = schemas["ErrorInfo"]["properties"]
    assert set(info) == {"code", "message", "details"}
    assert all(field.get("examples") for field in info.values())


def test_documented_error_shape_is_what_the_api_sends(client: TestClient) -> None:
    for response in (
        client.get("/v1/jobs/nope"),
        client.get("/v1/jobs?limit=0"),
        client.post("/v1/uploads", files={"files": ("a.txt", b"hello")}),
    ):
        assert set(response.json()) == {"error"}
        assert set(response.json()["error"]) == {"code", "message", "details"}


def test_the_upload_and_job_schemas_carry_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["schemas"]["JobOut"]["example"]["status"] == "succeeded"
    upload = spec["paths"]["/v1/uploads"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]

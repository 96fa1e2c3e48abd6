"""What the model routes return. Field names are part of the public contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.service import Entry

_EXAMPLE: dict[str, Any] = {
    "name": "shapes.pt",
    "source": "volume",
    "default": False,
    "format": "pytorch",
    "size_bytes": 1174667,
    "sha256": "9b1c0c2e4f6a8d0e2f4a6c8e0a2c4e6f8a0c2e4f6a8c0e2a4c6e8f0a2c4e6f8a",
    "created_at": "2026-12-02T10:00:00Z",
    "updated_at": "2026-12-02T10:00:00Z",
}


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": _EXAMPLE})

    name: str = Field(description="Pass it as the `model` field of an upload.")
    source: Literal["volume", "image"] = Field(
        description="`volume`: the file models/<name> on the shared volume; `image`: the "
        "default model, from the inference image (or an Ultralytics name)."
    )
    default: bool = Field(description="What an upload that names no model runs with.")
    format: Literal["pytorch", "onnx", "openvino"] = Field(
        description="`pytorch`: weights (`.pt`); `onnx`, `openvino`: an export in models/ "
        "(`<stem>.onnx`, `<stem>_openvino_model`), which runs at `IMAGE_SIZE` only."
    )
    size_bytes: int | None
    sha256: str | None = Field(description="Of the weights; jobs record it as `model_sha256`.")
    created_at: datetime | None = Field(description="When the name was first pushed.")
    updated_at: datetime | None = Field(description="When these weights were pushed.")

    @classmethod
    def of(cls, entry: Entry) -> ModelOut:
        return cls.model_validate(entry)


class ModelList(BaseModel):
    models: list[ModelOut]
    default: str = Field(description="The name of the default model.")

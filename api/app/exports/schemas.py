"""What the export routes take and return. Field names are part of the public contract."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["onnx", "openvino"] = Field(
        description="`onnx` (ONNX Runtime) or `openvino` (OpenVINO IR)."
    )


class ExportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    model: str = Field(description="The exported `.pt` in models/.")
    model_sha256: str = Field(description="Its digest when the export was asked for.")
    format: Literal["onnx", "openvino"]
    image_size: int = Field(description="`IMAGE_SIZE`: the export takes only this size.")
    name: str = Field(description="The export's name in models/: name it in uploads.")
    state: Literal["queued", "running", "succeeded", "failed"] = Field(
        description="`queued`: the orchestrator could not take it yet (retried); `succeeded`: "
        "the files passed the checks, and `GET /v1/models` lists them."
    )
    execution_id: str | None
    sha256: str | None = Field(description="Of the checked export; jobs record it.")
    size_bytes: int | None
    error: str | None = Field(description="Why it failed.")
    created_at: datetime
    updated_at: datetime

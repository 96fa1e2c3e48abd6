"""What the HTTP API returns. Field names are part of the public contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from app.jobs.models import Job, JobStatus
from app.webhooks.models import MAX_URL_CHARS
from app.webhooks.schemas import WebhookOut


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    class_id: int
    class_name: str
    confidence: float
    box: Box = Field(description="Pixels of the original image.")


_BOX = {"x1": 12.5, "y1": 40.0, "x2": 120.3, "y2": 300.8}
_EXAMPLE: dict[str, Any] = {
    "id": "0b6f5f0e-5c2a-4d55-9a43-8a1d2f0f9a10",
    "status": "succeeded",
    "filename": "street.jpg",
    "image_width": 640,
    "image_height": 480,
    "model": "yolo11n.pt",
    "model_sha256": None,
    "inference_ms": 73.2,
    "detections": [{"class_id": 0, "class_name": "person", "confidence": 0.91, "box": _BOX}],
}


class JobOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": _EXAMPLE})

    id: str
    status: JobStatus
    filename: str | None = Field(
        validation_alias="original_filename",
        description="The client's file name, kept as metadata only.",
    )
    image_format: str
    image_width: int = Field(validation_alias="width")
    image_height: int = Field(validation_alias="height")
    size_bytes: int
    sha256: str
    model: str = Field(description="What the flow loaded: `models/<name>`, or the default.")
    model_sha256: str | None = Field(
        description="The digest of the weights it ran with (None: the inference image's "
        "default model)."
    )
    confidence: float
    image_size: int
    batch_id: str | None = Field(description="Jobs sent together in one execution share it.")
    execution_id: str | None = Field(description="The orchestrator's (Kestra's) execution id.")
    orchestrator_state: str | None
    error: str | None = Field(description="Why the job failed, in words.")
    detections: list[Detection] | None
    inference_ms: float | None
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    annotated_path: str | None = Field(exclude=True)
    webhook: WebhookOut | None = Field(
        default=None,
        description="Where the job's end is POSTed (its `callback_url`) and how that went; "
        "null without one.",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def image_url(self) -> str:
        return f"/v1/jobs/{self.id}/image"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def annotated_url(self) -> str | None:
        return f"/v1/jobs/{self.id}/annotated" if self.annotated_path else None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        out = cls.model_validate(job, from_attributes=True)
        out.webhook = WebhookOut.of(job.callback_url, job.delivery)
        return out

    @classmethod
    def webhook_body(cls, job: Job) -> str:
        """What a webhook POSTs: the job's JSON less its `webhook` (its own delivery)."""
        return cls.model_validate(job, from_attributes=True).model_dump_json(exclude={"webhook"})


MAX_MODEL_CHARS = 255


class UploadOptions(BaseModel):
    """The form fields of an upload besides `files`; each left out is the server's setting."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str | None = Field(default=None, min_length=1, max_length=MAX_MODEL_CHARS)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    image_size: int | None = Field(default=None, ge=32, le=4096)
    callback_url: str | None = Field(default=None, max_length=MAX_URL_CHARS)


class UploadAccepted(BaseModel):
    jobs: list[JobOut]


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class KestraCallback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="The execution's `batch_id` input.",
    )
    # Kestra's ids are short base62 strings; nothing else goes into a URL we call.
    execution_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    state: str = Field(
        max_length=32, description="Kestra's final state: a hint, confirmed with Kestra."
    )


class CallbackAck(BaseModel):
    batch_id: str
    jobs: dict[str, JobStatus] = Field(description="Each job of the batch and its status.")

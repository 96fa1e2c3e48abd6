"""What the HTTP API returns. Field names are part of the public contract."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.models import Job, JobStatus


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


class JobOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "0b6f5f0e-5c2a-4d55-9a43-8a1d2f0f9a10",
                "status": "succeeded",
                "filename": "street.jpg",
                "image_width": 640,
                "image_height": 480,
                "model": "yolo11n.pt",
                "inference_ms": 73.2,
                "detections": [
                    {
                        "class_id": 0,
                        "class_name": "person",
                        "confidence": 0.91,
                        "box": {"x1": 12.5, "y1": 40.0, "x2": 120.3, "y2": 300.8},
                    }
                ],
            }
        }
    )

    id: str
    status: JobStatus
    filename: str | None = Field(description="The client's file name, kept as metadata only.")
    image_format: str
    image_width: int
    image_height: int
    size_bytes: int
    sha256: str
    model: str
    confidence: float
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
    image_url: str
    annotated_url: str | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            status=JobStatus(job.status),
            filename=job.original_filename,
            image_format=job.image_format,
            image_width=job.width,
            image_height=job.height,
            size_bytes=job.size_bytes,
            sha256=job.sha256,
            model=job.result_model or job.model,
            confidence=job.confidence,
            execution_id=job.execution_id,
            orchestrator_state=job.orchestrator_state,
            error=job.error,
            detections=[Detection.model_validate(d) for d in job.detections]
            if job.detections is not None
            else None,
            inference_ms=job.inference_ms,
            created_at=job.created_at,
            submitted_at=job.submitted_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
            image_url=f"/v1/jobs/{job.id}/image",
            annotated_url=f"/v1/jobs/{job.id}/annotated" if job.annotated_path else None,
        )


class UploadAccepted(BaseModel):
    jobs: list[JobOut]


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class KestraCallback(BaseModel):
    job_id: str = Field(max_length=64)
    execution_id: str = Field(max_length=64)
    state: str = Field(max_length=32, description="Kestra's final execution state.")


class CallbackAck(BaseModel):
    job_id: str
    status: JobStatus

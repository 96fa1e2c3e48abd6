"""The result file flows/detect.py writes (results/<job_id>.json), checked at the boundary.
Anything that can write to the shared volume can write this file, so nothing in it is taken
on trust: types, ranges, the ids, boxes inside the image and the paths it names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.jobs.models import Job

MAX_DETECTIONS = 10_000
# Boxes may overhang the image by rounding; more than this is not a box of this image.
_BOX_SLACK_PX = 2.0


class InvalidResult(Exception):
    """The file is not a result of this job; `str(exc)` says why, in words."""


class StaleResult(Exception):
    """A result of this job from an earlier batch: this batch has not written one."""


class _Box(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    x1: float
    y1: float
    x2: float
    y2: float

    @model_validator(mode="after")
    def _ordered(self) -> _Box:
        if self.x1 > self.x2 or self.y1 > self.y2:
            raise ValueError("a box's corners are out of order")
        return self


class _Detection(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    class_id: int = Field(ge=0, le=100_000)
    class_name: str = Field(min_length=1, max_length=200)
    confidence: float = Field(ge=0.0, le=1.0)
    box: _Box


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    schema_version: Literal[1]
    job_id: str
    batch_id: str | None
    status: Literal["succeeded", "failed"]
    error: str | None = Field(default=None, max_length=2000)
    inference_ms: float | None = Field(default=None, ge=0.0)
    detections: list[_Detection] = Field(default_factory=list, max_length=MAX_DETECTIONS)
    class_names: dict[int, str] = Field(default_factory=dict, max_length=100_000)
    annotated_path: str | None = None


class Outcome(BaseModel):
    """What a job keeps of a valid result."""

    succeeded: bool
    error: str | None
    inference_ms: float | None
    detections: list[dict[str, Any]]
    annotated_path: str | None

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls(
            succeeded=False, error=error, inference_ms=None, detections=[], annotated_path=None
        )


def annotated_path_of(job_id: str) -> str:
    return f"results/{job_id}.annotated.jpg"


def result_path_of(job_id: str) -> str:
    return f"results/{job_id}.json"


def validate(raw: bytes, job: Job) -> Outcome:
    """The job's outcome from its result file's bytes, or InvalidResult."""
    try:
        result = _Result.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise InvalidResult(f"{where}: {first['msg']}") from None
    _check_ids(result, job)
    if result.status == "failed":
        return Outcome.failed(result.error or "the detection script reported a failure")
    _check_detections(result, job)
    if result.annotated_path not in (None, annotated_path_of(job.id)):
        raise InvalidResult("annotated_path is not this job's annotated image")
    return Outcome(
        succeeded=True,
        error=None,
        inference_ms=result.inference_ms,
        detections=[d.model_dump() for d in result.detections],
        annotated_path=result.annotated_path,
    )


def _check_ids(result: _Result, job: Job) -> None:
    if result.job_id != job.id:
        raise InvalidResult("job_id is not this job's")
    if result.batch_id != job.batch_id:
        raise StaleResult("the inference wrote no result for this batch")


def _check_detections(result: _Result, job: Job) -> None:
    for n, det in enumerate(result.detections):
        if result.class_names.get(det.class_id) != det.class_name:
            raise InvalidResult(f"detections.{n}: class {det.class_id} is not one of the model's")
        box = det.box
        inside = (
            box.x1 >= -_BOX_SLACK_PX
            and box.x2 <= job.width + _BOX_SLACK_PX
            and box.y1 >= -_BOX_SLACK_PX
            and box.y2 <= job.height + _BOX_SLACK_PX
        )
        if not inside:
            raise InvalidResult(
                f"detections.{n}: the box lies outside the {job.width}x{job.height} image"
            )

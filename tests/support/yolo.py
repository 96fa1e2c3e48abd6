"""Ultralytics itself, called as flows/detect.py calls it: the reference that the pipeline's
detections are compared with, box for box."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ultralytics.models import YOLO


class Prediction(NamedTuple):
    orig_shape: tuple[int, ...]  # (height, width) of the image as decoded
    classes: list[int]
    xyxy: list[list[float]]
    conf: list[float]


def predict(model: YOLO, image: Path, *, conf: float = 0.25, imgsz: int = 640) -> Prediction:
    """`model` on one image file, with the confidence and size the API tests' settings give."""
    from ultralytics.engine.results import Results

    (result,) = model.predict(str(image), conf=conf, imgsz=imgsz, verbose=False)
    assert isinstance(result, Results)
    boxes = result.boxes
    assert boxes is not None
    return Prediction(
        tuple(result.orig_shape),
        [int(c) for c in boxes.cls.tolist()],
        boxes.xyxy.tolist(),
        boxes.conf.tolist(),
    )

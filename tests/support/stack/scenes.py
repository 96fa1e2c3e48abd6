"""Images with known objects (held-out synthetic scenes), as the stack's clients upload them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from tests.fixtures import synthetic

T = TypeVar("T")


@dataclass
class Scene:
    name: str
    data: bytes
    truth: list[synthetic.GroundTruth]
    size: tuple[int, int]


def scenes(first_seed: int, count: int) -> list[Scene]:
    """Held-out synthetic scenes, alternately JPEG and PNG."""
    out = []
    for offset in range(count):
        seed = synthetic.HELD_OUT_SEED_START + first_seed + offset
        image, truth = synthetic.render_scene(seed)
        buffer = io.BytesIO()
        kind, suffix = ("PNG", "png") if offset % 2 else ("JPEG", "jpg")
        image.save(buffer, format=kind, quality=92)  # PNG has no quality setting: ignored
        out.append(Scene(f"scene-{seed}.{suffix}", buffer.getvalue(), truth, image.size))
    return out


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def decode_jpeg(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "JPEG"
        return image.size

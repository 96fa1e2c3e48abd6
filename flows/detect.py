#!/usr/bin/env python3
"""Run Ultralytics YOLO on a batch of uploaded images (model loaded once) and write one result
per job below the data directory.

The inference step of the stack, run by the Kestra flow inside the inference container and by
the API's Local orchestrator as a subprocess on the host. Its command line, the files it writes,
its stdout and its exit status are a contract with the API: flows/README.md describes them. It
needs ultralytics (with its numpy and OpenCV) and the standard library only.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ultralytics.engine.results import Results
    from ultralytics.models import YOLO

SCHEMA_VERSION = 1
RESULTS_DIR = "results"
MODELS_DIR = "models"
OPENVINO_SUFFIX = "_openvino_model"  # Ultralytics' name for an OpenVINO export's directory
DEFAULT_CONF = 0.25
DEFAULT_IMGSZ = 640
# Where the official ultralytics/ultralytics images keep their default weights (their WORKDIR).
OFFICIAL_IMAGE_WORKDIR = Path("/ultralytics")
_JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ID_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


class DetectError(Exception):
    """A failure with a message meant for people (one readable sentence)."""


@dataclass(frozen=True)
class Config:
    """One run's settings, read once from the command line and the environment."""

    data_dir: Path
    model: str  # as given: copied into every result
    batch_id: str | None = None
    conf: float = DEFAULT_CONF
    imgsz: int = DEFAULT_IMGSZ
    jobs: tuple[tuple[str, str], ...] = ()  # (job id, image path relative to data_dir)
    allow_download: bool = False  # YOLO_ALLOW_DOWNLOAD: Ultralytics may download a named model

    def result_path(self, job_id: str) -> Path:
        return self.data_dir / RESULTS_DIR / f"{job_id}.json"

    def annotated_path(self, job_id: str) -> Path:
        return self.data_dir / annotated_rel(job_id)


@dataclass
class Job:
    """One job of the batch and what became of it."""

    job_id: str
    image: str  # as given, relative to the data dir
    path: Path | None = None  # resolved and checked
    status: str | None = None  # "succeeded" or "failed" once its result is written
    unwritten: bool = False  # its result could not be written (the batch exits 1)


def annotated_rel(job_id: str) -> str:
    return f"{RESULTS_DIR}/{job_id}.annotated.jpg"


# --------------------------------------------------------------------------- setup


def _prepare_environment() -> None:
    """Point Ultralytics/matplotlib config dirs at a writable place.

    Must run before ``import ultralytics``: it reads YOLO_CONFIG_DIR at import
    time and otherwise tries ``~/.config`` (read-only for uid 1000 in the
    task container).
    """
    base = Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    if not os.environ.get("YOLO_CONFIG_DIR"):
        os.environ["YOLO_CONFIG_DIR"] = str(base / f"ultralytics-config-{uid}")
    if not os.environ.get("MPLCONFIGDIR"):
        os.environ["MPLCONFIGDIR"] = str(base / f"matplotlib-{uid}")
    # Ultralytics' offline switch: no "am I online" probes, which only cost time in a container
    # without a network. Left alone when a named model may be downloaded.
    if not _downloads_allowed():
        os.environ.setdefault("YOLO_OFFLINE", "1")
    # ONNX Runtime's opt-out of its telemetry (on Linux too in recent releases): no device id
    # is written and nothing is sent, wherever an ONNX export runs.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _downloads_allowed() -> bool:
    return os.environ.get("YOLO_ALLOW_DOWNLOAD", "").lower() in ("1", "true", "yes")


def _job_id(value: str) -> str:
    if not _JOB_ID_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"must be {_ID_RULE}")
    return value


def _job_spec(value: str) -> tuple[str, str]:
    job_id, sep, image = value.partition("=")
    if not sep or not image:
        raise argparse.ArgumentTypeError(f"{value!r} is not JOB_ID=REL_PATH")
    if not _JOB_ID_RE.fullmatch(job_id):
        raise argparse.ArgumentTypeError(f"job id {job_id!r}: must be {_ID_RULE}")
    return job_id, image


def _confidence(value: str) -> float:
    try:
        conf = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not (0.0 <= conf <= 1.0) or math.isnan(conf):
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return conf


def _image_size(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 32 <= size <= 8192:
        raise argparse.ArgumentTypeError("must be between 32 and 8192")
    return size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="detect.py",
        description=(
            "Run YOLO on a batch of images below DATA_DIR (model loaded once); "
            "write results/<job_id>.json per job."
        ),
    )
    p.add_argument("--data-dir", required=True, help="shared data directory (e.g. /data)")
    p.add_argument(
        "--batch-id",
        type=_job_id,
        default=None,
        help="batch id, copied into every result; makes a re-run skip jobs already succeeded",
    )
    p.add_argument(
        "--model",
        required=True,
        help="model path (absolute or relative to --data-dir) or Ultralytics name",
    )
    p.add_argument(
        "--conf",
        type=_confidence,
        default=DEFAULT_CONF,
        help=f"confidence threshold (default {DEFAULT_CONF})",
    )
    p.add_argument(
        "--imgsz",
        type=_image_size,
        default=DEFAULT_IMGSZ,
        help=f"inference image size (default {DEFAULT_IMGSZ})",
    )
    p.add_argument(
        "--jobs",
        required=True,
        nargs="+",
        action="extend",  # --jobs given twice adds to the list instead of replacing it
        type=_job_spec,
        metavar="JOB_ID=REL_PATH",
        help="the jobs, in order: job id and image path relative to --data-dir, "
        "e.g. 3f1c...=uploads/3f1c....jpg",
    )
    return p


def parse_config(argv: list[str]) -> Config:
    """The run's Config; exits 2 on bad usage (a job id given twice included)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    seen: set[str] = set()
    for job_id, _image in args.jobs:
        if job_id in seen:
            parser.error(f"argument --jobs: job id {job_id} is given more than once")
        seen.add(job_id)
    return Config(
        data_dir=Path(args.data_dir),
        model=args.model,
        batch_id=args.batch_id,
        conf=args.conf,
        imgsz=args.imgsz,
        jobs=tuple(args.jobs),
        allow_download=_downloads_allowed(),
    )


# --------------------------------------------------------------------------- helpers


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    _atomic_write(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


def _resolve_image(data_dir: Path, rel: str) -> Path:
    if not rel or os.path.isabs(rel) or rel.startswith("~"):
        raise DetectError(f"The image path {rel!r} must be relative to the data directory.")
    root = data_dir.resolve()
    candidate = Path(os.path.realpath(root / rel))
    if candidate != root and root not in candidate.parents:
        raise DetectError(f"The image path {rel!r} points outside the data directory.")
    if not candidate.exists():
        raise DetectError(f"The image {rel} does not exist in the data directory.")
    if not candidate.is_file():
        raise DetectError(f"The image path {rel} is not a file.")
    return candidate


def _check_decodable(path: Path, rel: str) -> None:
    """Fail readably on files OpenCV cannot decode the way Ultralytics' image reader does.

    For JPEG, PNG and WebP ``ultralytics.utils.patches.imread`` is
    ``cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)``: the same call here
    (without importing ultralytics, so a batch of bad images never loads it). IMREAD_COLOR
    applies the file's EXIF orientation, as prediction will.
    """
    import cv2
    import numpy as np

    try:
        data = np.fromfile(str(path), np.uint8)
        probe = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except Exception:
        probe = None
    if probe is None or probe.size == 0:
        raise DetectError(f"The image {rel} could not be decoded as an image.")


def _resolve_model(config: Config) -> str:
    """Return what to pass to ``YOLO()`` for ``--model``.

    * absolute path: used as is (must exist);
    * relative path that exists below the data dir: that file;
    * other path with a directory part: must exist relative to the current
      directory, else it is an error (never sent to Ultralytics' downloader);
    * bare name (``yolo11n.pt``): ``DATA_DIR/models/<name>`` if present, else the
      weights the inference image ships under that name (``shipped_weights``);
      only when downloads are allowed is it handed to Ultralytics as given,
      which may download it (into a writable models cache, see ``load_model``).
    """
    model, data_dir = config.model, config.data_dir
    if not model.strip():
        raise DetectError("The model name is empty.")
    p = Path(model)
    if p.is_absolute():
        if not _is_model(p):
            raise DetectError(f"The model file {model} does not exist.")
        return str(p)
    under_data = data_dir / p
    if _is_model(under_data):
        return str(under_data.resolve())
    if len(p.parts) > 1:
        if _is_model(p):
            return str(p.resolve())
        raise DetectError(f"The model file {model} does not exist in the data directory.")
    cached = data_dir / MODELS_DIR / p
    if _is_model(cached):
        return str(cached.resolve())
    shipped = shipped_weights(model)
    if shipped is not None:
        return str(shipped)
    if config.allow_download:
        return model
    raise DetectError(
        f"The model {model} is neither on the shared volume (models/{model}) nor in the "
        "inference image. Add it with `yoloctl models push` (PUT /v1/models/NAME), or set "
        "ALLOW_MODEL_DOWNLOAD=true to let Ultralytics download it."
    )


def _is_model(path: Path) -> bool:
    """A weights or ONNX file, or an OpenVINO export's directory."""
    return path.is_file() or (path.is_dir() and path.name.endswith(OPENVINO_SUFFIX))


def export_format(model_ref: str) -> str | None:
    """The export format of a resolved model reference, None for PyTorch weights."""
    if model_ref.endswith(".onnx"):
        return "onnx"
    if model_ref.rstrip("/").endswith(OPENVINO_SUFFIX):
        return "openvino"
    return None


def check_export_size(model_ref: str, imgsz: int) -> None:
    """Refuse an export whose fixed input size is not ``imgsz``. Ultralytics would otherwise
    run it at its export size whatever ``imgsz`` says (the predictor takes the size from the
    export's metadata), so the boxes would not be those of ``predict(imgsz=IMGSZ)``. Reads
    the metadata Ultralytics embeds (ONNX) or writes beside the export (OpenVINO's
    metadata.yaml) without loading the model."""
    from ultralytics.nn.backends.base import BaseBackend

    meta = BaseBackend.read_metadata(model_ref)
    args, size = meta.get("args", {}), meta.get("imgsz")
    args = ast.literal_eval(args) if isinstance(args, str) else args
    size = ast.literal_eval(size) if isinstance(size, str) else size
    if isinstance(args, dict) and args.get("dynamic"):
        return
    if not isinstance(size, list) or len(size) != 2:
        raise DetectError(f"The export {Path(model_ref).name} records no input size.")
    if size != [imgsz, imgsz]:
        raise DetectError(
            f"The export {Path(model_ref).name} takes {size[1]}x{size[0]} images only, and "
            f"this batch asks for imgsz {imgsz}: export the model again at {imgsz}, or set "
            f"the image size to {size[0]}."
        )


def shipped_weights(name: str) -> Path | None:
    """The weights file the inference image ships as ``name``, if any: beside the installed
    ultralytics package (the official images install it from /ultralytics, where their
    Dockerfiles ADD the default weights), else in the official images' WORKDIR. Finding the
    package does not import it."""
    spec = importlib.util.find_spec("ultralytics")
    roots = [Path(spec.origin).resolve().parents[1]] if spec and spec.origin else []
    for root in (*roots, OFFICIAL_IMAGE_WORKDIR):
        if (root / name).is_file():
            return (root / name).resolve()
    return None


def _download_dir(data_dir: Path) -> Path | None:
    """A writable directory where Ultralytics may download a named model."""
    for d in (data_dir / MODELS_DIR, Path(tempfile.gettempdir()) / "ultralytics-models"):
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK | os.X_OK):
                return d
        except OSError:
            continue
    return None


def _readable(exc: BaseException) -> str:
    """One line of text from an exception, without Ultralytics' emoji."""
    text = "".join(ch for ch in str(exc) if unicodedata.category(ch) != "So")
    text = " ".join(text.split()) or exc.__class__.__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return text


def load_model(model_ref: str, data_dir: Path) -> YOLO:
    """Load a YOLO model (a bare name may be downloaded into a writable dir)."""
    from ultralytics.models import YOLO

    if export_format(model_ref) is not None:
        # An export carries no task in the file name Ultralytics guesses it from.
        return _without_warmup(YOLO(model_ref, task="detect"))
    if os.sep in model_ref or Path(model_ref).is_file():
        return _without_warmup(YOLO(model_ref))
    # Bare Ultralytics name not found locally: Ultralytics downloads into the
    # current directory, which in the Kestra container is a root-owned working
    # dir. Download into a writable cache instead (DATA_DIR/models first).
    target = _download_dir(data_dir)
    cwd = os.getcwd()
    try:
        if target is not None:
            os.chdir(target)
        return _without_warmup(YOLO(model_ref))
    finally:
        os.chdir(cwd)


def _without_warmup(model: YOLO) -> YOLO:
    """Skip the predictor's warm-up, through its documented ``on_predict_start`` callback and
    ``done_warmup`` attribute. On the CPU, warming up a PyTorch model runs nothing: it only
    imports torchvision so that NMS takes torchvision's kernel, about 1 s of every container's
    start. Without it Ultralytics uses its own NMS, which gives the same boxes (tested on the
    fixture scenes). Elsewhere the first image simply pays the warm-up pass itself."""

    def skip(predictor: Any) -> None:
        predictor.done_warmup = True

    model.add_callback("on_predict_start", skip)
    return model


# --------------------------------------------------------------------------- detection


def detect_image(model: YOLO, config: Config, job: Job) -> dict[str, Any]:
    """Detect objects in one (already checked) image, write the annotated JPEG and return
    the result dict.

    Raises DetectError for problems worth a readable message.
    """
    from ultralytics.engine.results import Results

    assert job.path is not None
    results = model.predict(str(job.path), conf=config.conf, imgsz=config.imgsz, verbose=False)
    r = next(iter(results), None)
    if not isinstance(r, Results):
        raise DetectError(f"Ultralytics returned no result for {job.image}.")
    height, width = (int(v) for v in r.orig_shape[:2])
    detections = _detections(r)
    _write_annotated(r, config, job)
    inference_ms = r.speed.get("inference")
    return {
        "schema_version": SCHEMA_VERSION,
        "job_id": job.job_id,
        "batch_id": config.batch_id,
        "status": "succeeded",
        "model": config.model,
        "image": {"path": job.image, "width": width, "height": height},
        "inference_ms": round(float(inference_ms or 0.0), 2),
        "detections": detections,
        "class_names": {str(k): str(v) for k, v in r.names.items()},
        "annotated_path": annotated_rel(job.job_id),
    }


def _detections(r: Results) -> list[dict[str, Any]]:
    """The boxes in Ultralytics' order, class ids named, rounded as the result file has them."""
    boxes = r.boxes
    if boxes is None or not len(boxes):
        return []
    found = zip(boxes.cls.tolist(), boxes.conf.tolist(), boxes.xyxy.tolist(), strict=True)
    return [
        {
            "class_id": int(cls),
            "class_name": str(r.names.get(int(cls), int(cls))),
            "confidence": round(float(score), 4),
            "box": {
                k: round(float(v), 2) for k, v in zip(("x1", "y1", "x2", "y2"), xyxy, strict=True)
            },
        }
        for cls, score, xyxy in found
    ]


def _write_annotated(r: Results, config: Config, job: Job) -> None:
    """``result.plot()`` as JPEG: OpenCV text for ASCII names, so no font is downloaded."""
    import cv2

    plotted = r.plot()  # BGR numpy array
    height, width = r.orig_shape[:2]
    if tuple(plotted.shape[:2]) != (height, width):  # never seen: the one-frame contract
        raise DetectError(
            f"The annotated image is {plotted.shape[1]}x{plotted.shape[0]}, "
            f"not the {width}x{height} of {job.image}."
        )
    ok, buf = cv2.imencode(".jpg", plotted, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    if not ok:
        raise DetectError("The annotated image could not be encoded as JPEG.")
    try:
        _atomic_write(config.annotated_path(job.job_id), buf.tobytes())
    except OSError as exc:
        raise DetectError(f"The annotated image could not be written: {_readable(exc)}") from exc


# --------------------------------------------------------------------------- the batch


def _log(message: str) -> None:
    print(f"detect.py: {message}", file=sys.stderr, flush=True)


def _already_succeeded(config: Config, job: Job) -> bool:
    """True when an earlier run of this same batch wrote this job's success."""
    if config.batch_id is None:
        return False
    try:
        previous = json.loads(config.result_path(job.job_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(previous, dict)
        and previous.get("status") == "succeeded"
        and previous.get("batch_id") == config.batch_id
        and previous.get("job_id") == job.job_id
        and config.annotated_path(job.job_id).is_file()
    )


def _fail(config: Config, job: Job, message: str) -> None:
    """Write the job's failed result (and say so on stderr)."""
    _log(f"job {job.job_id} failed: {message}")
    failed = {
        "schema_version": SCHEMA_VERSION,
        "job_id": job.job_id,
        "batch_id": config.batch_id,
        "status": "failed",
        "error": message,
    }
    try:
        _write_json(config.result_path(job.job_id), failed)
    except OSError as exc:
        _log(f"error: could not write {RESULTS_DIR}/{job.job_id}.json: {exc}")
        job.unwritten = True
        return
    job.status = "failed"


def _checked(config: Config, jobs: list[Job]) -> list[Job]:
    """The jobs left to predict: not done in this batch yet, with an image that exists inside
    the data dir and decodes; the others get their failed result now."""
    todo: list[Job] = []
    for job in jobs:
        if _already_succeeded(config, job):
            job.status = "succeeded"
            _log(f"job {job.job_id} already succeeded in batch {config.batch_id}; not run again")
            continue
        try:
            job.path = _resolve_image(config.data_dir, job.image)
            _check_decodable(job.path, job.image)
        except DetectError as exc:
            _fail(config, job, str(exc))
            continue
        todo.append(job)
    return todo


def _load(config: Config) -> YOLO:
    model_ref = _resolve_model(config)
    try:
        if export_format(model_ref) is not None:
            check_export_size(model_ref, config.imgsz)
        return load_model(model_ref, config.data_dir)
    except DetectError:
        raise
    except Exception as exc:
        raise DetectError(
            f"The model {config.model} could not be loaded: {_readable(exc)}"
        ) from exc


def _predict(model: YOLO, config: Config, job: Job) -> None:
    """Predict one job and write its results; any problem fails this job only."""
    started = time.monotonic()
    try:
        try:
            result = detect_image(model, config, job)
        except DetectError:
            raise
        except Exception as exc:
            raise DetectError(f"Detection failed for {job.image}: {_readable(exc)}") from exc
        try:
            _write_json(config.result_path(job.job_id), result)
        except OSError as exc:
            with contextlib.suppress(OSError):
                config.annotated_path(job.job_id).unlink()  # none beside a failed result
            raise DetectError(f"The result could not be written: {_readable(exc)}") from exc
    except DetectError as exc:
        _fail(config, job, str(exc))
        return
    job.status = "succeeded"
    ms = (time.monotonic() - started) * 1000
    _log(
        f"job {job.job_id} succeeded in {ms:.0f} ms "
        f"({len(result['detections'])} detections, inference {result['inference_ms']} ms)"
    )


def _predict_all(config: Config, todo: list[Job]) -> bool:
    """Load the model once and predict each job; False when the model cannot be loaded (then
    every job here fails with the reason, and the exit status lets the orchestrator retry)."""
    loading = time.monotonic()
    try:
        model = _load(config)
    except DetectError as exc:
        _log(f"error: {exc}")
        for job in todo:
            _fail(config, job, str(exc))
        return False
    _log(f"model {config.model} loaded in {time.monotonic() - loading:.1f} s")
    for job in todo:
        _predict(model, config, job)
    return True


def run(config: Config, out: TextIO) -> int:
    """Run the batch; ``out`` receives the Kestra outputs line. Returns the exit code."""
    started = time.monotonic()
    jobs = [Job(job_id, image) for job_id, image in config.jobs]
    if not config.data_dir.is_dir():
        _log(f"error: The data directory {config.data_dir} does not exist.")
        return 1
    todo = _checked(config, jobs)  # cheap checks first: no model load unless a job needs it
    if todo and not _predict_all(config, todo):
        return 1
    succeeded = sum(job.status == "succeeded" for job in jobs)
    failed = sum(job.status == "failed" for job in jobs)
    _log(
        f"batch {config.batch_id}: {len(jobs)} jobs, {succeeded} succeeded, {failed} failed "
        f"in {time.monotonic() - started:.1f} s"
    )
    if any(job.unwritten for job in jobs):
        return 1
    outputs = {
        "batch_id": config.batch_id,
        "jobs": len(jobs),
        "succeeded": succeeded,
        "failed": failed,
    }
    out.write("::" + json.dumps({"outputs": outputs}) + "::\n")
    out.flush()
    return 0


# --------------------------------------------------------------------------- export


FORMATS = ("onnx", "openvino")
_EXPORT_MODEL_RE = re.compile(rf"{MODELS_DIR}/([A-Za-z0-9][A-Za-z0-9._-]{{0,99}})\.pt")


def _export_model(value: str) -> str:
    if not _EXPORT_MODEL_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not {MODELS_DIR}/<name>.pt")
    return value


def export_name(model: str, fmt: str) -> str:
    """``models/<stem>.onnx`` or ``models/<stem>_openvino_model``: Ultralytics' own names."""
    stem = model.removeprefix(f"{MODELS_DIR}/").removesuffix(".pt")
    return f"{MODELS_DIR}/{stem}.onnx" if fmt == "onnx" else f"{MODELS_DIR}/{stem}{OPENVINO_SUFFIX}"


def export(data_dir: Path, model: str, fmt: str, imgsz: int) -> str:
    """Export ``model`` and rename the result into place; returns its name (``export_name``)."""
    from ultralytics.models import YOLO

    source = data_dir / model
    if not source.is_file():
        raise DetectError(f"The model file {model} does not exist in the data directory.")
    target = data_dir / export_name(model, fmt)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
    try:
        # Ultralytics writes the export beside the weights: a copy in the temp dir.
        weights = shutil.copyfile(source, work / source.name)
        try:
            made = Path(YOLO(str(weights)).export(format=fmt, imgsz=imgsz))
        except Exception as exc:
            raise DetectError(f"Exporting {model} to {fmt} failed: {_readable(exc)}") from exc
        for path in (made, *made.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        _replace(made, target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return export_name(model, fmt)


def _replace(made: Path, target: Path, work: Path) -> None:
    """Rename ``made`` to ``target``; an earlier export there is moved into ``work`` first (a
    directory cannot replace a non-empty one in one rename)."""
    if target.is_dir() and not target.is_symlink():
        target.rename(work / "previous")
    os.replace(made, target)


def _run_export(data_dir: Path, model: str, fmt: str, imgsz: int, out: TextIO) -> int:
    started = time.monotonic()
    try:
        name = export(data_dir, model, fmt, imgsz)
    except (DetectError, OSError) as exc:
        _log(f"error: {_readable(exc)}")
        return 1
    seconds = round(time.monotonic() - started, 2)
    _log(f"{model} -> {name} in {seconds} s")
    outputs = {"model": name, "format": fmt, "imgsz": imgsz, "seconds": seconds}
    out.write("::" + json.dumps({"outputs": outputs}) + "::\n")
    out.flush()
    return 0


def build_export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="detect.py --export")
    p.add_argument("--export", required=True, choices=FORMATS, dest="format")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--model", required=True, type=_export_model, help="models/<name>.pt")
    p.add_argument("--imgsz", type=_image_size, default=DEFAULT_IMGSZ, help="fixed input size")
    return p


def export_main(argv: list[str]) -> int:
    """``detect.py --export onnx|openvino --data-dir DIR --model models/<name>.pt [--imgsz N]``:
    export a model of the volume with Ultralytics at a fixed input size and rename the export
    into ``models/`` once complete (the flow ``yolo-export`` runs it; flows/README.md). Exit
    0 with one outputs line on stdout, 1 with one line on stderr (nothing left behind), 2 on
    bad usage."""
    args = build_export_parser().parse_args(argv)
    data_dir: Path = args.data_dir
    model: str = args.model
    fmt: str = args.format
    imgsz: int = args.imgsz
    if not data_dir.is_dir():
        _log(f"error: The data directory {data_dir} does not exist.")
        return 1
    _prepare_environment()
    return _with_stdout_kept(lambda out: _run_export(data_dir, model, fmt, imgsz, out))


def seed(argv: list[str]) -> int:
    """``detect.py --seed NAME --data-dir DIR``: copy the weights the image ships as NAME to
    ``DIR/models/NAME`` unless a file is there already (compose runs it once, before Kestra
    runs any task, in the inference image). Nothing to copy is fine while NAME is found
    otherwise (``_resolve_model``); a NAME found nowhere exits 1, so compose starts no Kestra
    whose every task would fail."""
    p = argparse.ArgumentParser(prog="detect.py --seed")
    p.add_argument("--seed", required=True, metavar="NAME")
    p.add_argument("--data-dir", required=True, type=Path)
    args = p.parse_args(argv)
    name = Path(args.seed).name
    target = args.data_dir / MODELS_DIR / name
    shipped = shipped_weights(name)
    if target.is_file():
        print(f"models/{name} is on the shared volume already", file=sys.stderr)
    elif shipped is not None:
        _atomic_write(target, shipped.read_bytes())
        print(f"copied {shipped} to models/{name}", file=sys.stderr)
    else:
        config = Config(args.data_dir, args.seed, allow_download=_downloads_allowed())
        try:
            found = _resolve_model(config)
        except DetectError:
            _log(f"error: {_unseeded(args.seed)}")
            return 1
        how = f"use {found}" if Path(found).is_file() else "may download it"
        print(f"the image ships no {name}; tasks {how}", file=sys.stderr)
    return 0


def _unseeded(model: str) -> str:
    """What to change when MODEL is found nowhere (one line: the compose step's only output)."""
    path = Path(model)
    if path.is_absolute() or len(path.parts) > 1:  # a path: looked up, never downloaded
        return (
            f"MODEL={model} is not a file on the shared volume: push it with `yoloctl models "
            "push`, or set MODEL in .env to a model that is there"
        )
    return (
        f"MODEL={model} is neither on the shared volume (models/{model}) nor in the "
        "inference image, and downloads are off: push it with `yoloctl models push`, set "
        "MODEL in .env to a model that is there, or set ALLOW_MODEL_DOWNLOAD=true with "
        "TASK_NETWORK=bridge"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--seed" in argv:
        return seed(argv)
    if "--export" in argv:
        return export_main(argv)
    config = parse_config(argv)  # exits 2 on bad usage
    _prepare_environment()
    return _with_stdout_kept(lambda out: run(config, out))


def _with_stdout_kept(body: Callable[[TextIO], int]) -> int:
    """Keep stdout for the single Kestra outputs line: while ``body`` imports and runs
    Ultralytics, file descriptor 1 (and sys.stdout) point to stderr; ``body`` gets the real
    stdout as a stream."""
    sys.stdout.flush()
    saved_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(saved_fd), "w", encoding="utf-8") as real_stdout:
            return body(real_stdout)
    finally:
        sys.stdout.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)


if __name__ == "__main__":
    sys.exit(main())

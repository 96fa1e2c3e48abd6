"""`yoloctl upload PATH...`, `yoloctl status JOB_ID...` and `yoloctl models push|list|rm`:
the API from a shell.

Exit codes: 0 every file was accepted (and, with --wait, every job succeeded); 1 a file or
model was refused or a job failed or did not finish in time; 2 the command could not run (bad
arguments such as an unknown --model, no images found, the API unreachable, no valid API key).

The API key (--api-key, else $YOLO_API_KEY) goes in the Authorization header and nowhere
else: no message, table or JSON shows it. The options that are not about one command
(--url, --api-key, --wait, --timeout, --json, --quiet) go before or after the command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from yolo_cli import __version__
from yolo_cli.client import (
    TERMINAL,
    Api,
    ApiError,
    NotAuthorized,
    Refused,
    Unreachable,
    valid_api_key,
)
from yolo_cli.output import (
    Progress,
    Row,
    render_json,
    render_models,
    render_pushed,
    render_table,
)

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
DEFAULT_URL = "http://127.0.0.1:8000"
KEY_HINT = "pass --api-key KEY or set YOLO_API_KEY"
# Refusals of a request's parameters (--model, --conf, --imgsz, --callback-url): the same
# for every file.
REQUEST_ERRORS = frozenset(
    {"unknown_model", "invalid_request", "invalid_callback_url", "webhooks_unavailable"}
)


class UsageError(Exception):
    """A mistake in the command line, reported as such."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except UsageError as exc:
        return _fail(str(exc))
    except NotAuthorized as exc:
        if exc.key_sent:
            return _fail(
                f"the API at {args.url} did not accept the API key (unknown or revoked); "
                f"to use another, {KEY_HINT}."
            )
        return _fail(f"the API at {args.url} wants an API key; {KEY_HINT}.")
    except Unreachable as exc:
        return _fail(
            f"cannot reach the API at {args.url}: {exc}.\n"
            "Is it running? Point to it with --url or YOLO_API_URL."
        )
    except ApiError as exc:
        return _fail(f"the API at {args.url} answered: {exc}")
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)


def upload(args: argparse.Namespace) -> int:
    paths = find_images(args.paths)
    params = _upload_params(args)
    with _api(args) as api:
        rows = send(api, paths, args.batch, _progress(args, "upload", len(paths)), params)
        if args.wait:
            wait(api, rows, args.timeout, _progress(args, "detect", len(rows)))
    return _report(args, rows)


def status(args: argparse.Namespace) -> int:
    with _api(args) as api:
        rows = [_row_of(api, job_id) for job_id in args.job_ids]
        if args.wait:
            wait(api, rows, args.timeout, _progress(args, "detect", len(rows)))
    return _report(args, rows)


def models_push(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{args.file}: no such file")
    with _api(args) as api:
        try:
            model, created = api.push_model(path, args.name or path.name)
        except Refused as exc:
            return _fail(exc.message, code=EXIT_FAILED)
    print(json.dumps(model, indent=2) if args.json else render_pushed(model, created))
    return EXIT_OK


def models_list(args: argparse.Namespace) -> int:
    with _api(args) as api:
        listing = api.models()
    print(json.dumps(listing, indent=2) if args.json else render_models(listing))
    return EXIT_OK


def models_rm(args: argparse.Namespace) -> int:
    with _api(args) as api:
        try:
            api.remove_model(args.name)
        except Refused as exc:
            return _fail(exc.message, code=EXIT_FAILED)
    removed = {"name": args.name, "removed": True}
    print(json.dumps(removed) if args.json else f"removed {args.name}")
    return EXIT_OK


def find_images(arguments: Iterable[str]) -> list[Path]:
    """Files as given (the API says what is wrong with a non-image), and the JPEG, PNG and
    WebP files under each folder, recursively, in name order; hidden entries are skipped."""
    found: dict[Path, None] = {}
    for argument in arguments:
        path = Path(argument)
        if path.is_file():
            found[path] = None
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.suffix.lower() in IMAGE_SUFFIXES and child.is_file() and not hidden:
                    found[child] = None
        else:
            raise UsageError(f"{argument}: no such file or folder")
    if not found:
        raise UsageError("no images found (looked for .jpg, .jpeg, .png and .webp files)")
    return list(found)


def send(
    api: Api,
    paths: list[Path],
    batch: int,
    progress: Progress,
    params: dict[str, str] | None = None,
) -> list[Row]:
    """Upload in requests of at most `batch` files, each with the form fields `params`. The
    API refuses a whole request when one file is bad, so a refused request is re-sent file by
    file to name the culprit; a refusal of the parameters ends the run (Refused is raised).

    A 429 (the key's cap on unfinished jobs) is retried by `api.upload` after Retry-After;
    if it is still refused, nothing more is sent and every file not uploaded says why."""
    rows: list[Row] = []
    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    while chunks:
        chunk = chunks.pop(0)
        try:
            jobs = api.upload(chunk, params)
        except Refused as exc:
            if exc.code in REQUEST_ERRORS:
                raise
            message = exc.message
            if exc.status == 429:  # still, after api.upload's retries: send nothing more
                chunk += [path for rest in chunks for path in rest]
                chunks.clear()
                message += f" (not uploaded: still refused after {api.retries + 1} tries)"
            elif len(chunk) > 1 and 400 <= exc.status < 500:
                size = int(exc.details.get("max_files", 1)) if exc.code == "too_many_files" else 1
                chunks[:0] = [chunk[i : i + size] for i in range(0, len(chunk), size)]
                continue
            rows += [Row(str(path), error=message, error_code=exc.code) for path in chunk]
        else:
            rows += [Row(str(path), job) for path, job in zip(chunk, jobs, strict=True)]
        progress.update(len(rows), _refused_note(rows))
    progress.close()
    return rows


def wait(api: Api, rows: list[Row], timeout_s: float, progress: Progress) -> None:
    """Poll the unfinished jobs until each has succeeded or failed, or `timeout_s` passes."""
    pending = [(row, row.job["id"]) for row in rows if row.job and row.status not in TERMINAL]

    def poll() -> list[tuple[Row, str]]:
        for row, job_id in list(pending):
            row.job = api.job(job_id)
            if row.status in TERMINAL:
                pending.remove((row, job_id))
        failed = sum(row.status in ("failed", "refused") for row in rows)
        progress.update(len(rows) - len(pending), f"{failed} failed" if failed else "")
        return pending

    polling = Retrying(
        retry=retry_if_result(bool),  # some job is still unfinished
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.5),
        sleep=time.sleep,
        retry_error_callback=lambda _state: pending,  # out of time: the jobs left
    )
    for row, _ in polling(poll):
        row.error = f"still {row.status} after {timeout_s:g} s (not waiting any longer)"
    progress.close()


def _api(args: argparse.Namespace) -> Api:
    """The client, with the key of --api-key, else of $YOLO_API_KEY (an empty one: none)."""
    given = args.api_key if args.api_key is not None else os.environ.get("YOLO_API_KEY", "")
    key = given.strip()
    if key and not valid_api_key(key):
        raise UsageError(  # without the key: it may be a secret that was pasted wrong
            "the API key has spaces or characters that are not ASCII; check --api-key or "
            "YOLO_API_KEY"
        )
    return Api(args.url, api_key=key or None)


def _upload_params(args: argparse.Namespace) -> dict[str, str]:
    given = {
        "model": args.model,
        "confidence": args.conf,
        "image_size": args.imgsz,
        "callback_url": args.callback_url,
    }
    return {field: str(value) for field, value in given.items() if value is not None}


def _row_of(api: Api, job_id: str) -> Row:
    try:
        job = api.job(job_id)
    except Refused as exc:
        return Row(job_id, error=exc.message, error_code=exc.code, no_job="unknown")
    return Row(job.get("filename") or job_id, job)


def _report(args: argparse.Namespace, rows: list[Row]) -> int:
    print(render_json(rows) if args.json else render_table(rows))
    return EXIT_OK if all(row.ok for row in rows) else EXIT_FAILED


def _refused_note(rows: list[Row]) -> str:
    refused = sum(row.job is None for row in rows)
    return f"{refused} refused" if refused else ""


def _progress(args: argparse.Namespace, label: str, total: int) -> Progress:
    return Progress(sys.stderr, label, total, enabled=not args.quiet)


def _fail(message: str, code: int = EXIT_ERROR) -> int:
    print(f"yoloctl: {message}", file=sys.stderr)
    return code


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """The options of every command, as a parent parser. The top-level parser gets them with
    their defaults; each command's parser gets a copy with no defaults (SUPPRESS), so that an
    option given before the command is not overwritten by the command's default, and one
    given after it still counts."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("options of every command (before or after it)")
    group.add_argument(
        "--url",
        default=default(os.environ.get("YOLO_API_URL", DEFAULT_URL)),
        help=f"the API's base URL (default: $YOLO_API_URL or {DEFAULT_URL})",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=default(None),  # None: $YOLO_API_KEY, read when the command runs
        help="the API key, sent as 'Authorization: Bearer KEY' (default: $YOLO_API_KEY, "
        "which keeps it out of the process list and shell history)",
    )
    group.add_argument(
        "--wait",
        action="store_true",
        default=default(False),
        help="wait until every job has finished",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(600.0),
        help="seconds to wait at most (default: 600)",
    )
    group.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON instead of a table"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default(False), help="no progress bar"
    )
    return options


def _parser() -> argparse.ArgumentParser:
    common = _global_options(suppress=True)
    parser = argparse.ArgumentParser(
        prog="yoloctl",
        description="Object detection with the YOLO inference API.",
        epilog="exit status: 0 all accepted (with --wait: all succeeded); 1 a file or model was "
        "refused or a job failed or timed out; 2 bad arguments, no images, the API unreachable, "
        "or no valid API key",
        parents=[_global_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("upload", parents=[common], help="upload images or folders of images")
    up.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    up.add_argument(
        "--batch",
        type=_positive,
        default=8,
        help="files per request (default: 8; lowered to the server's limit if it is smaller)",
    )
    up.add_argument(
        "--model", metavar="NAME", help="a model of `yoloctl models list` (default: the server's)"
    )
    up.add_argument(
        "--conf", type=float, metavar="C", help="minimum confidence, 0-1 (default: the server's)"
    )
    up.add_argument(
        "--imgsz",
        type=int,
        metavar="PIXELS",
        help="inference size, 32-4096 (default: the server's)",
    )
    up.add_argument(
        "--callback-url",
        metavar="URL",
        help="POST each job's JSON here when it ends, signed (default: the key's, if any)",
    )
    up.set_defaults(command=upload)

    st = commands.add_parser("status", parents=[common], help="show jobs by id")
    st.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    st.set_defaults(command=status)
    _add_models(commands, common)
    return parser


def _add_models(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    models = commands.add_parser(
        "models",
        parents=[common],
        help="the models uploads may choose (push and rm need an admin key)",
    )
    actions = models.add_subparsers(required=True, metavar="ACTION")
    push = actions.add_parser(
        "push", parents=[common], help="push a .pt file (replaces the model of that name)"
    )
    push.add_argument("file", metavar="FILE")
    push.add_argument("--name", help="the model's name (default: the file's name)")
    push.set_defaults(command=models_push)
    listing = actions.add_parser("list", parents=[common], help="list the models")
    listing.set_defaults(command=models_list)
    rm = actions.add_parser("rm", parents=[common], help="remove a model")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(command=models_rm)

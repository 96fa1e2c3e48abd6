"""The command line as parsed, without a server: the options of every command go before or
after it, and one given before is not reset by the command's defaults."""

from __future__ import annotations

import pytest
from yolo_cli.cli import DEFAULT_URL, _parser

GLOBAL = ["--url", "http://x", "--api-key", "yk_k", "--wait", "--timeout", "3", "--json", "-q"]
PARSED = {
    "url": "http://x",
    "api_key": "yk_k",
    "wait": True,
    "timeout": 3.0,
    "json": True,
    "quiet": True,
}
DEFAULTS = {
    "url": DEFAULT_URL,
    "api_key": None,
    "wait": False,
    "timeout": 600.0,
    "json": False,
    "quiet": False,
}


def parsed(*argv: str) -> dict[str, object]:
    values = vars(_parser().parse_args(argv))
    return {name: values[name] for name in PARSED}


# The global options before, after, between or around the command's own words.
PLACES = {
    "before": [*GLOBAL, "upload", "a.png"],
    "after": ["upload", "a.png", *GLOBAL],
    "between": ["upload", *GLOBAL, "a.png"],
    "split": [*GLOBAL[:4], "upload", "a.png", *GLOBAL[4:]],
    "split-status": [*GLOBAL[4:], "status", "j1", *GLOBAL[:4]],
    "models-before": [*GLOBAL, "models", "list"],
    "models-after": ["models", "list", *GLOBAL],
    "models-between": ["models", *GLOBAL, "push", "a.pt"],
    "models-split": [*GLOBAL[:4], "models", "rm", "a.pt", *GLOBAL[4:]],
}


@pytest.mark.parametrize("argv", PLACES.values(), ids=PLACES.keys())
def test_every_global_option_goes_before_or_after_the_command(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YOLO_API_URL", raising=False)
    assert parsed(*argv) == PARSED


@pytest.mark.parametrize("command", [["upload", "a.png"], ["status", "j1"]])
def test_without_options_the_defaults(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOLO_API_URL", raising=False)
    monkeypatch.setenv("YOLO_API_KEY", "yk_from-env")  # read when the command runs, not here
    assert parsed(*command) == DEFAULTS


def test_after_the_command_wins_over_before() -> None:
    assert parsed("--url", "http://before", "upload", "a.png", "--url", "http://after")["url"] == (
        "http://after"
    )


def test_the_url_of_the_environment_is_the_default_before_and_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YOLO_API_URL", "http://env")
    assert parsed("upload", "a.png")["url"] == "http://env"
    assert parsed("--url", "http://given", "upload", "a.png")["url"] == "http://given"
    assert parsed("upload", "a.png", "--url", "http://given")["url"] == "http://given"


def test_the_batch_the_model_and_its_parameters_are_upload_options() -> None:
    model = ["--model", "mine.pt", "--conf", "0.4", "--imgsz", "640"]
    values = vars(_parser().parse_args(["upload", "a.png", "--batch", "2", *model]))
    assert [values[k] for k in ("batch", "model", "conf", "imgsz")] == [2, "mine.pt", 0.4, 640]
    defaults = vars(_parser().parse_args(["upload", "a.png"]))
    assert (defaults["model"], defaults["conf"], defaults["imgsz"]) == (None, None, None)


@pytest.mark.parametrize("option", ["--batch=2", "--model=mine.pt"])
def test_an_upload_option_before_the_command_is_refused(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args([option, "upload", "a.png"])
    assert exited.value.code == 2
    assert f"unrecognized arguments: {option}" in capsys.readouterr().err

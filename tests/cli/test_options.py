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


@pytest.mark.parametrize(
    "argv",
    [
        [*GLOBAL, "upload", "a.png"],
        ["upload", "a.png", *GLOBAL],
        ["upload", *GLOBAL, "a.png"],
        [*GLOBAL[:4], "upload", "a.png", *GLOBAL[4:]],
        [*GLOBAL[4:], "status", "j1", *GLOBAL[:4]],
    ],
    ids=["before", "after", "between", "split", "split-status"],
)
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


def test_batch_is_an_upload_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert vars(_parser().parse_args(["upload", "a.png", "--batch", "2"]))["batch"] == 2
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["--batch=2", "upload", "a.png"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --batch" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [*GLOBAL, "models", "list"],
        ["models", "list", *GLOBAL],
        ["models", *GLOBAL, "push", "a.pt"],
        [*GLOBAL[:4], "models", "rm", "a.pt", *GLOBAL[4:]],
    ],
    ids=["before", "after", "between", "split"],
)
def test_the_models_commands_take_the_global_options_anywhere(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YOLO_API_URL", raising=False)
    assert parsed(*argv) == PARSED


def test_the_model_and_its_parameters_are_upload_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    given = ["upload", "a.png", "--model", "mine.pt", "--conf", "0.4", "--imgsz", "640"]
    values = vars(_parser().parse_args(given))
    assert (values["model"], values["conf"], values["imgsz"]) == ("mine.pt", 0.4, 640)
    defaults = vars(_parser().parse_args(["upload", "a.png"]))
    assert (defaults["model"], defaults["conf"], defaults["imgsz"]) == (None, None, None)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--model=mine.pt", "upload", "a.png"])
    assert "unrecognized arguments: --model" in capsys.readouterr().err

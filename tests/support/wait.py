"""One way to wait for something in tests, benchmarks and scripts: poll with tenacity."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

T = TypeVar("T")


def wait_until(
    poll: Callable[[], T],
    timeout_s: float,
    *,
    what: str,
    interval_s: float = 0.5,
    until: Callable[[T], object] = bool,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `poll` until `until(value)` holds and return that value; exceptions listed in
    `ignore` mean "not yet". After `timeout_s`: AssertionError naming `what` and the last
    value or exception seen."""
    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry=retry_if_exception_type(ignore) | retry_if_result(lambda value: not until(value)),
    )
    try:
        return retrying(poll)
    except RetryError as exc:
        last = exc.last_attempt
        seen = repr(last.exception()) if last.failed else repr(last.result())
        raise AssertionError(
            f"timed out after {timeout_s:g} s waiting for {what}; last: {seen}"
        ) from None

"""A job through the whole stack ends in a signed webhook: the API container POSTs it to a
receiver on the host (at the stack network's gateway), which verifies it with the
`standardwebhooks` library."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Stack
from tests.support.stack.scenes import scenes
from tests.support.wait import wait_until
from tests.support.webhooks import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def host_receiver(stack: Stack) -> Iterator[Receiver]:
    api = stack.docker.inspect(stack.compose.container("api"), "container")
    (network,) = api["NetworkSettings"]["Networks"].values()
    receiver = Receiver(bind=network["Gateway"]).start()
    yield receiver
    receiver.stop()


def test_a_finished_job_reaches_the_receiver_signed(stack: Stack, host_receiver: Receiver) -> None:
    (job,) = stack.api.upload(
        scenes(first_seed=5100, count=1), form={"callback_url": host_receiver.url("/e2e")}
    )
    done = stack.api.wait_terminal([job["id"]], timeout=300)[job["id"]]
    assert done["status"] == "succeeded", done
    wait_until(
        lambda: stack.api.job(job["id"])["webhook"],
        60,
        what="the webhook delivered",
        until=lambda webhook: webhook["state"] == "delivered",
    )
    (received,) = host_receiver.received  # its signature verified
    assert host_receiver.forged == []
    assert received.path == "/e2e"
    assert received.job["id"] == job["id"]
    assert received.job["detections"] == done["detections"]

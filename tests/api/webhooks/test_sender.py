"""One attempt over https to a name pinned to its checked address: the TLS server name and
the certificate check are still the name's."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.webhooks.sender import Sender
from tests.support.api_app import SettingsFactory
from tests.support.webhooks import Receiver, webhook_settings


def certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` and its key (the openssl command line)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    cert, key = certificate(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver = Receiver(tls=context).start()
    yield receiver, cert
    receiver.stop()


def test_https_to_the_checked_address_keeps_the_name_for_tls(
    make_settings: SettingsFactory, https_receiver: tuple[Receiver, Path], tmp_path: Path
) -> None:
    receiver, cert = https_receiver
    settings = make_settings(**webhook_settings())
    url = receiver.url(host="localhost")
    sender = Sender(settings, verify=ssl.create_default_context(cafile=cert))
    try:
        assert sender.send("msg_1", url, '{"id": "1"}').delivered
    finally:
        sender.close()
    assert receiver.server_names == ["localhost"]
    assert [(r.webhook_id, r.host) for r in receiver.received] == [
        ("msg_1", f"localhost:{receiver.port}")
    ]
    other, _ = certificate(tmp_path, "other.test")  # trusted, but for another name
    sender = Sender(settings, verify=ssl.create_default_context(cafile=other))
    try:
        outcome = sender.send("msg_2", url, '{"id": "2"}')
    finally:
        sender.close()
    assert not outcome.delivered
    assert "CERTIFICATE_VERIFY_FAILED" in (outcome.error or "")
    assert len(receiver.received) == 1

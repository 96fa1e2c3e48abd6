"""Where webhooks may go: refused at the boundary (422 in the error shape, nothing stored) or,
for names that resolve to private addresses, at delivery (SSRF); redirects are not followed;
the request goes to the address that was checked."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.webhooks.urls import allowed, resolve
from tests.api.factories import (
    assert_refused,
    deliver_until,
    ended_job,
    kestra_settings,
)
from tests.support.api_app import ADMIN_KEY, SettingsFactory, bearer, keyed_client
from tests.support.images import encode
from tests.support.kestra import KestraStandin
from tests.support.webhooks import Receiver, webhook_settings

FILES = [("files", ("a.png", encode("PNG", 40, 30)))]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "http://user:secret@example.com/hook",
        "http://@example.com/hook",
        "https:///hook",
        "example.com/hook",
        "http://example.com:99999/hook",
        "http://example.com/hook#part",
        "http://exa mple.com/hook",
        "http://10.0.0.7/hook",  # private; only 127.0.0.0/8 is allowed here
        "http://169.254.169.254/latest/meta-data",
        "http://[::2]/hook",
        "http://[::ffff:192.168.1.1]/hook",
        "http://224.0.0.1/hook",
        "http://example.com/" + "a" * 1000,
    ],
)
def test_an_upload_with_a_bad_callback_url_is_refused(
    webhook_client: TestClient, shared_dir: Path, url: str
) -> None:
    response = webhook_client.post("/v1/uploads", files=FILES, data={"callback_url": url})
    code = "invalid_request" if len(url) > 1000 else "invalid_callback_url"
    assert_refused(webhook_client, shared_dir, response, 422, code)


def test_a_callback_url_without_webhook_secret_is_refused(
    client: TestClient, shared_dir: Path
) -> None:
    data = {"callback_url": "https://example.com/hook"}
    response = client.post("/v1/uploads", files=FILES, data=data)
    body = assert_refused(client, shared_dir, response, 422, "webhooks_unavailable")
    assert "WEBHOOK_SECRET" in body["error"]["message"]


def test_a_key_with_a_bad_default_url_is_refused(webhook_client: TestClient) -> None:
    body = {"name": "bad-hook", "callback_url": "http://user:pw@example.com/"}
    response = webhook_client.post("/v1/keys", json=body, headers=bearer(ADMIN_KEY))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_callback_url"
    names = [
        k["name"] for k in webhook_client.get("/v1/keys", headers=bearer(ADMIN_KEY)).json()["keys"]
    ]
    assert "bad-hook" not in names


def test_a_name_that_resolves_to_loopback_is_refused_without_the_allow_list(
    make_settings: SettingsFactory, kestra: KestraStandin, receiver: Receiver
) -> None:
    settings = make_settings(
        **kestra_settings(kestra), **webhook_settings(webhook_allowed_networks="")
    )
    with keyed_client(settings) as client:
        job_id = ended_job(client, kestra, receiver.url(host="localhost"))
        webhook = deliver_until(client, job_id, "pending")
        while webhook["attempts"] == 0:
            webhook = deliver_until(client, job_id, "pending")
    assert webhook["last_error"].startswith("refused: localhost resolves to ")
    assert "not a public address" in webhook["last_error"]
    assert receiver.received == []


def test_a_redirect_is_not_followed(
    webhook_client: TestClient, kestra: KestraStandin, receiver: Receiver
) -> None:
    receiver.statuses = [307]
    job_id = ended_job(webhook_client, kestra, receiver.url())
    webhook = deliver_until(webhook_client, job_id, "delivered")  # the retry, at the same URL
    assert [r.path for r in receiver.received] == ["/hook", "/hook"]
    assert webhook["attempts"] == 2


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert not allowed(ip_address(address), [])


def test_public_and_allowed_addresses_pass() -> None:
    assert allowed(ip_address("8.8.8.8"), [])
    assert allowed(ip_address("2606:4700:4700::1111"), [])
    assert allowed(ip_address("10.1.2.3"), [ip_network("10.0.0.0/8")])
    assert allowed(ip_address("::ffff:10.1.2.3"), [ip_network("10.0.0.0/8")])


def test_the_request_goes_to_the_address_that_was_checked() -> None:
    """DNS rebinding: the name is resolved once, checked, and the URL pinned to that address;
    the name stays in the Host header (and is the TLS server name for https)."""
    loopback = [ip_network("127.0.0.0/8"), ip_network("::1/128")]
    target = resolve("https://localhost:8443/hook?x=1", loopback)
    assert str(target.url) in ("https://127.0.0.1:8443/hook?x=1", "https://[::1]:8443/hook?x=1")
    assert (target.host, target.host_header) == ("localhost", "localhost:8443")

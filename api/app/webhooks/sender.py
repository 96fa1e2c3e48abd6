"""One attempt of one delivery: the frozen body, signed per Standard Webhooks (the
`standardwebhooks` package, the specification's reference library), POSTed to the address
app.webhooks.urls checked. One client for the process: short timeouts, no redirects followed,
no proxies from the environment (they would connect elsewhere than the checked address) and no
kept-alive connections (a pooled TLS connection must not serve another host name)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from app.config import Settings
from app.webhooks.urls import RefusedAddress, resolve

USER_AGENT = "yolo-api-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: delivered (a 2xx) or, in words, why not."""

    delivered: bool
    error: str | None = None


class Sender:
    def __init__(self, settings: Settings, verify: ssl.SSLContext | bool = True) -> None:
        """`verify`: how to check https receivers' certificates (default: the system's CAs
        as httpx knows them; tests pass their own CA)."""
        assert settings.webhook_secret is not None
        self._signer = Webhook(settings.webhook_secret.get_secret_value())
        self._networks = settings.webhook_networks
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.webhook_timeout_s),
            follow_redirects=False,
            trust_env=False,
            verify=verify,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._client.close()

    def headers(self, message_id: str, body: str, now: datetime) -> dict[str, str]:
        """The three Standard Webhooks headers; a new timestamp and signature per attempt."""
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(message_id, now, body),
        }

    def send(self, message_id: str, url: str, body: str) -> Outcome:
        try:
            target = resolve(url, self._networks)
        except RefusedAddress as exc:
            return Outcome(False, f"refused: {exc}")
        except OSError as exc:  # the name does not resolve
            return Outcome(False, str(exc))
        headers = {
            **self.headers(message_id, body, datetime.now(UTC)),
            "Content-Type": "application/json",
            "Host": target.host_header,
        }
        request = self._client.build_request(
            "POST",
            target.url,
            content=body.encode(),
            headers=headers,
            extensions={"sni_hostname": target.host},
        )
        try:
            # The answer's body is never read: only its status counts.
            response = self._client.send(request, stream=True)
            response.close()
        except httpx.HTTPError as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            return Outcome(True)
        if response.is_redirect:
            return Outcome(False, f"HTTP {response.status_code} (redirects are not followed)")
        return Outcome(False, f"HTTP {response.status_code}")

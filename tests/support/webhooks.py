"""A webhook receiver for tests: a real HTTP server on a loopback port that checks every
request's Standard Webhooks signature with the `standardwebhooks` library (as a client of the
API would) and answers with the statuses it is told, 200 once they run out. It can stop and
start again on the same port (a receiver that goes down and comes back)."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.net import free_port

SECRET = "whsec_" + base64.b64encode(b"test-webhook-secret-of-32-bytes!").decode()


def webhook_settings(**overrides: Any) -> dict[str, Any]:
    """Webhooks on, loopback allowed (the test receiver), back-offs of milliseconds."""
    return {
        "webhook_secret": SECRET,
        "webhook_allowed_networks": "127.0.0.0/8,::1/128",
        "webhook_backoff_s": 0.01,
        "webhook_max_backoff_s": 0.05,
        "webhook_timeout_s": 2.0,
        **overrides,
    }


@dataclass(frozen=True)
class Received:
    path: str
    webhook_id: str
    host: str
    job: dict[str, Any]  # the verified body


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Receiver:
    def __init__(
        self, secret: str = SECRET, bind: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.bind = bind  # e2e: the gateway of the stack's network, which containers reach
        self.tls = tls  # https with this server context
        self.server_names: list[str | None] = []  # the TLS clients' SNI
        self.port = free_port()
        self.received: list[Received] = []
        self.forged: list[str] = []  # bodies whose signature did not verify
        self.statuses: list[int] = []  # answers to give, in order; then 200
        self._verifier = Webhook(secret)
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.bind}:{self.port}{path}"

    def start(self) -> Receiver:
        """Listen on 127.0.0.1 and, where the machine has IPv6, on ::1 (`localhost` may
        resolve to either first)."""
        self._servers = [ThreadingHTTPServer((self.bind, self.port), self._handler())]
        if self.bind == "127.0.0.1":
            with contextlib.suppress(OSError):  # no IPv6 here
                self._servers.append(_IPv6Server(("::1", self.port), self._handler()))
        for server in self._servers:
            if self.tls is not None:
                self.tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
                server.socket = self.tls.wrap_socket(server.socket, server_side=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: connections to the port are refused until `start`."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            try:
                job = self._verifier.verify(body, headers)
            except WebhookVerificationError:
                self.forged.append(body.decode(errors="replace"))
                return 401
            entry = Received(path, headers["webhook-id"], headers.get("host", ""), job)
            self.received.append(entry)
            return self.statuses.pop(0) if self.statuses else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._answer(self.path, headers, body)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.url("/elsewhere"))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        return Handler

    def ids(self) -> list[str]:
        with self._lock:
            return [entry.webhook_id for entry in self.received]

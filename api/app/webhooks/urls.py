"""Where a webhook may go. At the boundary (an upload's `callback_url`, a key's default):
http(s), a host, no credentials, no fragment. At delivery: every address the host resolves to
must be public or in WEBHOOK_ALLOWED_NETWORKS (SSRF), and the request is sent to the address
that was checked (app.webhooks.sender), so a DNS answer that changes in between (rebinding)
cannot redirect it."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import urlsplit

import httpx

from app.config import Settings
from app.errors import InvalidCallbackUrl, WebhooksUnavailable
from app.webhooks.models import MAX_URL_CHARS

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


class RefusedAddress(Exception):
    """The host is, or resolves to, an address webhooks may not reach."""


@dataclass(frozen=True)
class Target:
    """A checked URL: `url` names the address to connect to, `host` the original host (the
    Host header and, for https, the name the certificate must carry)."""

    url: httpx.URL
    host: str
    host_header: str


def require_webhooks(settings: Settings) -> None:
    """422 unless this server can sign webhooks."""
    if settings.webhook_secret is None:
        raise WebhooksUnavailable(
            "This server sends no webhooks (WEBHOOK_SECRET is not set); leave out callback_url."
        )


def checked_callback_url(value: str, settings: Settings) -> str:
    """`value` if webhooks may use it, else 422 in the error shape (nothing is stored)."""
    require_webhooks(settings)
    problem = _problem(value)
    if problem is None:
        host = urlsplit(value).hostname or ""
        literal = _ip_literal(host)
        if literal is not None and not allowed(literal, settings.webhook_networks):
            problem = f"{literal} is not a public address"
    if problem:
        raise InvalidCallbackUrl(
            f"The callback_url is not valid: {problem}.",
            errors=[{"loc": ["body", "callback_url"], "msg": problem}],
        )
    return value


def _problem(value: str) -> str | None:
    if not 0 < len(value) <= MAX_URL_CHARS:
        return f"it must have 1 to {MAX_URL_CHARS} characters"
    if not value.isascii() or any(ch <= " " or ch == "\x7f" for ch in value):
        return "only visible ASCII characters (no spaces; encode others)"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "the scheme must be http or https"
    if "@" in parts.netloc:
        return "no credentials in the URL (user:password@)"
    if not parts.hostname:
        return "the URL has no host"
    if parts.fragment or value.endswith("#"):
        return "no fragment (#...)"
    return None


def allowed(address: Address, networks: Sequence[Network]) -> bool:
    """Public unicast, or in one of `networks`."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in networks):
        return True
    return address.is_global and not (address.is_multicast or address.is_reserved)


def resolve(url: str, networks: Sequence[Network]) -> Target:
    """The URL pinned to its host's first address, once every address passed `allowed`."""
    parsed = httpx.URL(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    literal = _ip_literal(host)
    addresses = [literal] if literal else _lookup(host, port)
    refused = [a for a in addresses if not allowed(a, networks)]
    if refused:
        raise RefusedAddress(
            f"{host} resolves to {refused[0]}, which is not a public address "
            "(WEBHOOK_ALLOWED_NETWORKS may allow it)"
        )
    header = parsed.netloc.decode("ascii")
    return Target(parsed.copy_with(host=str(addresses[0])), host, header)


def _lookup(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc.strerror}") from None
    found = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not found:
        raise OSError(f"{host} has no address")
    return list(dict.fromkeys(found))


def _ip_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None

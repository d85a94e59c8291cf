"""Trusted proxy headers: who the client really is, and over which scheme.

Invariants:
- Pure functions over an ASGI header list (names lower-cased, as ASGI
  requires of scope headers) and the peer address; no I/O, no logging. The
  server calls `forwarded_client` only on listeners with `proxy_headers` on,
  so listeners without it pay nothing.
- Forwarded headers count only when the direct peer is a trusted proxy.
  X-Forwarded-For is read from the right: each trusted proxy appends the
  address it received from, so the right-most entries are facts vouched for
  by our proxies and everything left of the first untrusted address is
  whatever the client chose to send. That address is the client; spoofed
  left-most values never win. When every entry is a trusted proxy, the
  left-most one is the origin.
- A value we cannot read (not an IP address, an empty entry, an unknown
  scheme) changes nothing: the peer address or the scheme stays as it was.
  A bad header must never turn into a wrong client address.
- A Unix-socket peer (no address) is trusted. Only processes that may open
  the socket file can connect, so `unix_mode` and the folder's permissions
  already decide who is local; a reverse proxy on the same host is exactly
  what such a socket is for, and there is no address that could be listed
  in `forwarded_allow_ips` for it.
- IPv4-mapped IPv6 peers ("::ffff:10.0.0.1", seen on dual-stack "[::]"
  listeners) are judged by their IPv4 address as well.
- Trust is cached per host string in a small dict cleared when full: cheap
  on the hot path, bounded against X-Forwarded-For entries chosen by
  clients.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = ["TrustedProxies", "forwarded_client", "parse_address"]

_CACHE_SIZE = 512

# X-Forwarded-Proto value → (scheme for HTTP, scheme for WebSocket).
_PROTO = {
    "http": ("http", "ws"),
    "ws": ("http", "ws"),
    "https": ("https", "wss"),
    "wss": ("https", "wss"),
}
_WEBSOCKET_SCHEMES = frozenset(("ws", "wss"))


class TrustedProxies:
    """The networks whose forwarded headers are believed (`forwarded_allow_ips`)."""

    __slots__ = ("_cache", "_v4", "_v6")

    def __init__(self, networks: Sequence[IPv4Network | IPv6Network]) -> None:
        self._v4 = tuple(n for n in networks if isinstance(n, IPv4Network))
        self._v6 = tuple(n for n in networks if isinstance(n, IPv6Network))
        self._cache: dict[str, bool] = {}

    def trusts(self, host: str | None) -> bool:
        """Whether `host` (a peer or X-Forwarded-For entry) is a trusted proxy."""
        if host is None:
            return True  # a Unix-socket peer: see the module docstring
        cached = self._cache.get(host)
        if cached is None:
            cached = self._judge(host)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[host] = cached
        return cached

    def _judge(self, host: str) -> bool:
        address = parse_address(host)
        if address is None:
            return False
        if isinstance(address, IPv6Address):
            if any(address in network for network in self._v6):
                return True
            address = address.ipv4_mapped
            if address is None:
                return False
        return any(address in network for network in self._v4)


def forwarded_client(
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    scheme: str,
    proxies: TrustedProxies,
) -> tuple[tuple[str, int] | None, str]:
    """`(client, scheme)` for the scope, after X-Forwarded-For and X-Forwarded-Proto.

    `scheme` is the connection's own ("http", "https", "ws" or "wss"); a
    forwarded proto is mapped onto the same family, so a WebSocket behind a
    TLS-terminating proxy becomes "wss" and an HTTP request "https".
    """
    if not proxies.trusts(client[0] if client is not None else None):
        return client, scheme
    forwarded_for: list[bytes] = []
    forwarded_proto: list[bytes] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"x-forwarded-proto":
            forwarded_proto.append(value)
    if forwarded_proto:
        first = b",".join(forwarded_proto).split(b",", 1)[0]
        schemes = _PROTO.get(first.decode("latin-1").strip().lower())
        if schemes is not None:
            scheme = schemes[scheme in _WEBSOCKET_SCHEMES]
    if forwarded_for:
        entries = b",".join(forwarded_for).decode("latin-1").split(",")
        client = _client_from(entries, proxies) or client
    return client, scheme


def _client_from(entries: list[str], proxies: TrustedProxies) -> tuple[str, int] | None:
    """The right-most untrusted address, or the left-most when all are trusted."""
    found: str | None = None
    for entry in reversed(entries):
        address = parse_address(entry.strip())
        if address is None:
            return None  # unreadable: keep the direct peer rather than guess
        found = str(address)
        if not proxies.trusts(found):
            break
    return (found, 0) if found is not None else None


def parse_address(text: str) -> IPv4Address | IPv6Address | None:
    """An IP address from "1.2.3.4", "1.2.3.4:80", "::1", "[::1]" or "[::1]:80"; else None."""
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and _is_port(rest[1:]))):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit()

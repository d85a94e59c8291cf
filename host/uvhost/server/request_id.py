"""Request IDs: one id per request, kept from a trusted peer or made here.

Invariants:
- Only listeners with a `request_id` table build a `RequestIds`; the request
  path asks `context.request_ids is not None` and nothing else when it is
  off.
- The app sees exactly one value in the configured header: an incoming
  value that is not trusted (by `trust`) or not 1-200 visible ASCII
  characters is dropped from the scope's headers and replaced by a fresh
  id, so a client can neither choose the id nor smuggle a second one.
- Trust is the direct peer's, judged before any forwarded header is read:
  the same rule and the same `forwarded_allow_ips` as proxy headers (a
  Unix-socket peer is trusted, see proxy.py).
- A fresh id is a per-listener random prefix and a counter: unique across
  workers and hosts with overwhelming odds, and costing no system call per
  request (uuid4 reads the kernel's random pool on every call).
- The id is put into the request's own `scope["state"]` (a fresh shallow copy
  of the app's lifespan state per request, ASGI 2.4), never into the shared
  lifespan state itself.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from uvhost.server.proxy import TrustedProxies

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from collections.abc import Sequence
    from ipaddress import IPv4Network, IPv6Network

    from uvhost.config.model import RequestIdSettings
    from uvhost.server.asgi_types import Scope

STATE_KEY = "request_id"
"""The key of `scope["state"]` that holds the id (Starlette's `request.state.request_id`)."""

_ACCEPTABLE = re.compile(rb"[\x21-\x7e]{1,200}")


class RequestIds:
    """One listener's request-id rule: which header, whose ids are kept, the next fresh id."""

    __slots__ = ("_count", "_prefix", "header", "line_start", "proxies", "response", "trust_all")

    def __init__(
        self,
        settings: RequestIdSettings,
        forwarded_allow_ips: Sequence[IPv4Network | IPv6Network],
    ) -> None:
        self.header = settings.header.lower().encode("latin-1")
        self.line_start = settings.header.encode("latin-1") + b": "
        self.response = settings.response
        self.trust_all = settings.trust == "all"
        self.proxies = TrustedProxies(forwarded_allow_ips) if settings.trust == "proxies" else None
        self._prefix = os.urandom(8).hex()
        self._count = 0

    def stamp(self, scope: Scope, peer: tuple[str, int] | None) -> str:
        """Give the request its id: in the scope's headers and `state`; returns it.

        `peer` is the direct peer (before proxy headers), whose trust decides
        whether an incoming id is kept. Plain loops and %-formatting: this runs
        once per request on a listener with request IDs (counted by callgrind).
        """
        name = self.header
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id: str | None = None
        for key, _ in headers:
            if key == name:
                request_id = self._incoming(headers, peer)
                break
        if request_id is None:
            self._count += 1
            request_id = "%s%08x" % (self._prefix, self._count)  # noqa: UP031 (cheaper)
            headers.append((name, request_id.encode("ascii")))
        scope["state"][STATE_KEY] = request_id
        return request_id

    def _incoming(
        self, headers: list[tuple[bytes, bytes]], peer: tuple[str, int] | None
    ) -> str | None:
        """The incoming id if it is kept; else None, its values taken out of `headers`."""
        name = self.header
        incoming = [value for key, value in headers if key == name]
        trusted = self.trust_all or (
            self.proxies is not None and self.proxies.trusts(peer[0] if peer else None)
        )
        if trusted and len(incoming) == 1 and _ACCEPTABLE.fullmatch(incoming[0]):
            return incoming[0].decode("ascii")
        headers[:] = [(key, value) for key, value in headers if key != name]
        return None

    def response_head(self, preamble: bytes, headers: Any, scope: Scope) -> tuple[bytes, Any]:
        """The response's preamble with the id's header line after the Server/Date lines,
        unless the app set that header itself or took the id out of its state; and the
        app's headers (ASGI: any iterable of pairs), as a list if it had to look at them.

        The line joins the preamble rather than the app's headers: its value changes with
        every response, so it must not go through (and churn) the checked-line cache of
        `wire.header_line`. It needs no check: the name was checked with the config, and
        an id is our hex or a kept one of visible ASCII (`_ACCEPTABLE`).
        """
        request_id = scope["state"].get(STATE_KEY)
        if request_id is None:
            return preamble, headers
        if headers.__class__ is not list and headers.__class__ is not tuple:
            headers = list(headers)
        name = self.header
        for key, _ in headers:
            if key.lower() == name:
                return preamble, headers
        if not _ACCEPTABLE.fullmatch(value := request_id.encode("latin-1", "replace")):
            return preamble, headers  # the app put something unsendable there
        return preamble + self.line_start + value + b"\r\n", headers


def request_id_of(scope: Scope) -> str | None:
    """The id `stamp` gave this request (None on a listener without request IDs)."""
    state = scope.get("state")
    return state.get(STATE_KEY) if state else None

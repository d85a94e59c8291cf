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
- A fresh id is a per-process random prefix and a counter: unique across
  workers and hosts with overwhelming odds, and costing no system call per
  request (uuid4 reads the kernel's random pool on every call).
- The id is put into the request's own `scope["state"]` (a fresh shallow copy
  of the app's lifespan state per request, ASGI 2.4), never into the shared
  lifespan state itself.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import TYPE_CHECKING, Any

from uvhost.server.proxy import TrustedProxies

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from collections.abc import Iterator, Sequence
    from ipaddress import IPv4Network, IPv6Network

    from uvhost.config.model import RequestIdSettings
    from uvhost.server.asgi_types import Scope

STATE_KEY = "request_id"
"""The key of `scope["state"]` that holds the id (Starlette's `request.state.request_id`)."""

_ACCEPTABLE = re.compile(rb"[\x21-\x7e]{1,200}")


class RequestIds:
    """One listener's request-id rule: which header, whose ids are kept, the next fresh id."""

    __slots__ = ("_counter", "_prefix", "header", "proxies", "response", "trust_all")

    def __init__(
        self,
        settings: RequestIdSettings,
        forwarded_allow_ips: Sequence[IPv4Network | IPv6Network],
    ) -> None:
        self.header = settings.header.lower().encode("latin-1")
        self.response = settings.response
        self.trust_all = settings.trust == "all"
        self.proxies = TrustedProxies(forwarded_allow_ips) if settings.trust == "proxies" else None
        self._prefix = os.urandom(8).hex()
        self._counter: Iterator[int] = itertools.count(1)

    def fresh(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"

    def stamp(self, scope: Scope, peer: tuple[str, int] | None) -> str:
        """Give the request its id: in the scope's headers and `state`; returns it.

        `peer` is the direct peer (before proxy headers), whose trust decides
        whether an incoming id is kept.
        """
        name = self.header
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        incoming = [value for key, value in headers if key == name]
        request_id: str | None = None
        if incoming:
            trusted = self.trust_all or (
                self.proxies is not None and self.proxies.trusts(peer[0] if peer else None)
            )
            value = incoming[0]
            if trusted and len(incoming) == 1 and _ACCEPTABLE.fullmatch(value):
                request_id = value.decode("ascii")
            else:
                headers[:] = [(key, value) for key, value in headers if key != name]
        if request_id is None:
            request_id = self.fresh()
            headers.append((name, request_id.encode("ascii")))
        scope["state"][STATE_KEY] = request_id
        return request_id

    def response_headers(self, headers: Any, scope: Scope) -> Any:
        """The app's response headers (ASGI: an iterable of pairs) with the request's id
        added, unless the app set that header itself or took the id out of its state."""
        name = self.header
        listed = list(headers)
        request_id = request_id_of(scope)
        if request_id is None or any(key.lower() == name for key, _ in listed):
            return listed
        listed.append((name, request_id.encode("latin-1")))
        return listed


def request_id_of(scope: Scope) -> str | None:
    """The id `stamp` gave this request (None on a listener without request IDs)."""
    state = scope.get("state")
    return state.get(STATE_KEY) if state else None

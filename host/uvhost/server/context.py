"""What every connection of one listener shares, built once when the worker starts.

Invariants:
- Built from the config once per listener; the request path only reads it.
- `preamble` (Server and Date lines) is rebuilt once a second by the worker,
  never per response.
- `connections` is the worker's registry of live connections on this
  listener, used for draining and for `limit_concurrency`.
- `budget` is the worker's one request counter, shared by all its listeners:
  counting a request costs one integer add and one compare.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from uvhost.observe.stats import RouteStats
from uvhost.server import wire
from uvhost.server.flow import TurnWriter, WriteFlow, delivery_mark
from uvhost.server.proxy import TrustedProxies
from uvhost.server.request_id import RequestIds
from uvhost.server.router import Endpoint, Router, misdirected_endpoint
from uvhost.server.tls import CertificateChooser

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import Listener

AccessLog = Callable[..., None]


class Connection(Protocol):
    """What the worker needs of any live connection, HTTP or WebSocket."""

    def shutdown(self, code: int = ...) -> None: ...

    def abort(self) -> None: ...

    def check_timeouts(self, now: float) -> None: ...


def recycle_threshold(max_requests: int, jitter: int, rng: random.Random | None = None) -> int:
    """After how many requests a worker asks to be recycled: max + random 0..jitter; 0 = never."""
    if max_requests <= 0:
        return 0
    return max_requests + (rng or random).randint(0, max(jitter, 0))


@dataclass(eq=False)
class RequestBudget:
    """Requests a worker has started; `on_spent` runs once, when `count` reaches `limit`.

    `limit` 0 never fires: the count starts at 0 and is compared after each add.
    """

    limit: int = 0
    on_spent: Callable[[], None] | None = None
    count: int = 0

    def spent(self) -> None:
        """Called by the request path (which does the add and compare inline)."""
        if self.on_spent is not None:
            self.on_spent()


@dataclass(eq=False)
class ListenerContext:
    name: str
    settings: Listener
    router: Router
    scheme: str
    states: Mapping[str, dict[str, Any]]
    access_log: AccessLog | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("uvhost.error"))
    connections: set[Connection] = field(default_factory=set)
    draining: bool = False
    preamble: bytes = b""
    defaults: dict[bytes, bytes] = field(default_factory=dict)
    proxies: TrustedProxies | None = None
    drained: asyncio.Event | None = None
    budget: RequestBudget = field(default_factory=RequestBudget)
    next_tick: float = 0.0
    """The loop time of the worker's next tick: an idle-since stamp that costs no clock
    call, never early (so a timeout never fires early), at most one tick late."""
    turn_writer: TurnWriter = field(default_factory=TurnWriter)
    """Responses completed in this loop turn, written together at its end (see flow.py)."""
    unrouted: RouteStats = field(default_factory=RouteStats)
    """Requests no route answered: 404s, and faults the host answered itself (400, 408...)."""
    http1: bool = True
    """Whether HTTP/1.x is spoken (`protocols`); without it, only HTTP/2."""
    alpn_h2: bool = False
    """TLS with h2 allowed: a connection whose ALPN chose h2 becomes HTTP/2."""
    h2c: bool = False
    """Cleartext with h2 allowed: a connection that opens with the HTTP/2 preface is HTTP/2."""
    sni: CertificateChooser | None = None
    """Set when sites on this TLS listener have certificates of their own."""
    misdirected: Endpoint | None = None
    """With `sni`: the host's 421 for a request its connection's certificate is not for."""
    request_ids: RequestIds | None = None
    """Set when the listener has a `request_id` table (request_id.py)."""

    def __post_init__(self) -> None:
        listener = self.settings
        self.defaults = {
            name.lower().encode("latin-1"): value.encode("latin-1")
            for name, value in listener.headers.items()
        }
        if listener.proxy_headers:
            self.proxies = TrustedProxies(listener.forwarded_allow_ips)
        if listener.request_id is not None:
            self.request_ids = RequestIds(listener.request_id, listener.forwarded_allow_ips)
        protocols = listener.protocols
        self.http1 = "http/1.1" in protocols
        self.alpn_h2 = "h2" in protocols and self.scheme == "https"
        self.h2c = "h2" in protocols and self.scheme != "https"
        if self.sni is not None:
            self.misdirected = misdirected_endpoint(self.unrouted)
        self.refresh_preamble()

    def refresh_preamble(self) -> None:
        """Server and Date once a second; a listener default of either name replaces ours
        (a response carries one of each, RFC 9110 6.6)."""
        defaults = self.defaults
        self.preamble = wire.preamble(
            server_header=self.settings.server_header and b"server" not in defaults,
            date_header=self.settings.date_header and b"date" not in defaults,
        )

    def canned(self, status: int, message: str | None = None, *, head: bool = False) -> bytes:
        """A whole response uvhost answers by itself (400, 408, 500...), with this listener's
        Server/Date preamble and default headers; only its head when `head` (HEAD)."""
        answer = wire.canned(status, message, preamble=self.preamble, defaults=self.defaults)
        return answer[: answer.index(b"\r\n\r\n") + 4] if head else answer

    def send_stuck(self, flow: WriteFlow, transport: asyncio.Transport | None, now: float) -> bool:
        """Whether a paused connection's client has taken none of our bytes for this
        listener's `send_timeout`; said once in the log, the caller drops the connection.
        Asked on every tick of every connection: a connection not paused costs a compare."""
        if flow.blocked is None or transport is None:
            return False
        stuck = flow.stuck_for(now, delivery_mark(transport))
        if stuck < self.settings.send_timeout:
            return False
        self.logger.info(
            "dropped a connection from %s on %s: it took none of our bytes for %.0f s"
            " (send_timeout)",
            _peer(transport),
            self.name,
            stuck,
        )
        return True

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if self.drained is not None and not self.connections:
            self.drained.set()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "a unix socket")

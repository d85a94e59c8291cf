"""Connections of a `proxy_protocol` listener: the PROXY header first, then HTTP as usual.

Invariants:
- Only listeners with `proxy_protocol` create these; every other listener's
  connections start as `HttpProtocol` directly, so they pay nothing for it.
- The peer is judged against `allow` at accept, before a byte is read. A
  Unix-socket peer has no address and is allowed (as in proxy.py): the
  socket file's permissions decide who connects.
- The header is all this reads. The bytes after it, from the same reads (a
  request, the HTTP/2 preface, a TLS ClientHello), go unread to whatever
  owns the connection next, in order.
- On a TLS listener the header comes in cleartext before the handshake, so
  the socket is served without TLS and the handshake starts once the header
  is in (`loop.start_tls`); it is bounded by `header_timeout` as a
  handshake on any TLS listener is. ALPN then picks HTTP/2 or HTTP/1.1 as
  usual, in `HttpProtocol.connection_made`.
- A refused connection (an address not allowed; a header missing, malformed,
  oversized, truncated, or not complete within `header_timeout`) is closed
  without a byte of answer, never reaches an app, is counted
  (`stats.PROXY_REJECTED`) and is logged at info level at most once per
  `LOG_INTERVAL` per listener, with how many were refused since. No answer,
  because the peer is a load balancer relaying someone else's stream: an
  HTTP 400 would be relayed to a client that never sent the bytes at fault,
  and before a TLS handshake it would be garbage to that client anyway. A
  closed backend connection is what a balancer understands, reports and
  retries elsewhere. No flood, because when it goes wrong it goes wrong for
  every connection (a balancer not set to send the header, a new address).
- A connection that closes before sending a single byte is not counted:
  that is how TCP health checks of AWS NLB and others look.
- Lives in the listener's `connections` until the header (and handshake) is
  done, so the worker's tick enforces `header_timeout`, a drain waits for it
  and a stop aborts it, as for any connection.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from dataclasses import dataclass
from typing import cast

from uvhost.observe.stats import PROXY_REJECTED
from uvhost.server.context import ListenerContext
from uvhost.server.http import DRAIN_IDLE_GRACE, HttpProtocol
from uvhost.server.proxy import TrustedProxies
from uvhost.server.proxy_protocol import HeaderParser, ProxyHeader, ProxyHeaderError

LOG_INTERVAL = 10.0
"""Seconds between two log lines about refused connections on one listener."""

Addresses = tuple[tuple[str, int] | None, tuple[str, int] | None]


@dataclass(eq=False)
class ProxyIntake:
    """What the connections of one `proxy_protocol` listener share; `protocol` is the
    factory the listener's server is created with."""

    context: ListenerContext
    loop: asyncio.AbstractEventLoop
    tls: ssl.SSLContext | None
    allowed: TrustedProxies
    unlogged: int = 0
    logged_at: float = -math.inf

    def protocol(self) -> ProxyHeaderReader:
        return ProxyHeaderReader(self)

    def refused(self, peer: str, reason: str) -> None:
        """Count one refused connection; log it unless a line was written lately."""
        self.context.unrouted.counts[PROXY_REJECTED] += 1
        self.unlogged += 1
        now = self.loop.time()
        if now - self.logged_at < LOG_INTERVAL:
            return
        others = self.unlogged - 1
        self.context.logger.info(
            'listener "%s" closed a connection from %s: %s (PROXY protocol)%s',
            self.context.name,
            peer,
            reason,
            f"; {others} more refused since the last such line" if others else "",
        )
        self.logged_at = now
        self.unlogged = 0


class ProxyHeaderReader(asyncio.Protocol):
    """One connection until its PROXY header is read (and, with TLS, its handshake done)."""

    def __init__(self, intake: ProxyIntake) -> None:
        self.intake = intake
        self.context = intake.context
        self.parser: HeaderParser | None = HeaderParser()  # None once the header is in
        self.transport: asyncio.Transport | None = None
        self.peer = "-"
        self.since = 0.0
        self.seen = False  # any byte at all
        self.header: ProxyHeader | None = None
        self.held: list[bytes] = []  # after the header, before the next owner takes over

    # What the worker asks of every connection (context.Connection).

    def shutdown(self, code: int = 1001) -> None:
        """Draining: the tick closes it if the header is not in within DRAIN_IDLE_GRACE."""

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        if self.parser is None:  # handshaking: bounded by its own timeout
            return
        waited = now - self.since
        if waited >= self.context.settings.header_timeout:
            self._refuse("no complete header within header_timeout")
        elif self.context.draining and waited >= DRAIN_IDLE_GRACE:
            self._close()  # no request was sent: closing loses nothing, and is no fault

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else None
        if host is not None:
            self.peer = f"{host}:{peer[1]}"
        if not self.intake.allowed.trusts(host):
            self._refuse("not an address in proxy_protocol.allow")
            return
        self.context.connections.add(self)
        self.since = self.intake.loop.time()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            self.held.append(data)
            return
        self.seen = True
        try:
            header = parser.feed(data)
        except ProxyHeaderError as error:
            self._refuse(str(error))
            return
        if header is None:
            return
        self.parser = None
        self.header = header
        transport = self.transport
        if transport is None:
            return
        if self.intake.tls is None:
            self.context.connections.discard(self)
            _hand_over(self.context, self.intake.loop, transport, header.addresses, header.rest)
        else:
            transport.pause_reading()  # nothing more is read until the TLS layer reads it
            loop = self.intake.loop
            loop.create_task(self._handshake(transport, self.intake.tls))
            # Runs right after the task's first step, in the same loop turn (both are
            # queued now, in this order), so before any new read: see _feed_tls.
            loop.call_soon(self._feed_tls, transport)

    def eof_received(self) -> bool | None:
        if self.parser is not None and self.seen:
            self._refuse("the connection ended inside the header")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.context.forget(self)

    # TLS after the header

    def _feed_tls(self, transport: asyncio.Transport) -> None:
        """Give the TLS layer the bytes read with the header (the ClientHello, often).

        `start_tls` has just put its TLS protocol on the transport, paused, and
        queued its `connection_made` and `resume_reading`; bytes fed to it now wait in
        its incoming buffer for the handshake. Reading is still paused, so these are
        the first bytes it sees, in order.
        """
        header = self.header
        early = (header.rest if header is not None else b"") + b"".join(self.held)
        self.held = []
        if not early or transport.is_closing():
            return
        owner = transport.get_protocol()
        if owner is self or not hasattr(owner, "buffer_updated"):  # uvloop's: no subclass
            # start_tls did not run first: never feed bytes out of order, drop the connection
            self.context.logger.error("TLS after a PROXY header could not start; closing")
            transport.abort()
            return
        tls = cast(asyncio.BufferedProtocol, owner)
        view = memoryview(early)
        while view:
            buffer = memoryview(tls.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            tls.buffer_updated(size)
            view = view[size:]

    async def _handshake(self, transport: asyncio.Transport, tls: ssl.SSLContext) -> None:
        loop = self.intake.loop
        try:
            secure = await loop.start_tls(
                transport,
                self,
                tls,
                server_side=True,
                ssl_handshake_timeout=self.context.settings.header_timeout,
            )
        except OSError:  # a failed or slow handshake: as on any TLS listener, no count
            self.context.forget(self)
            transport.abort()
            return
        if secure is None or secure.is_closing():
            self.context.forget(self)
            return
        self.context.connections.discard(self)
        header = self.header
        early, self.held = b"".join(self.held), []  # decrypted before we resumed, if any
        addresses = header.addresses if header is not None else None
        _hand_over(self.context, loop, secure, addresses, early)

    # Refusing

    def _refuse(self, reason: str) -> None:
        self.parser = None
        self.intake.refused(self.peer, reason)
        self._close()

    def _close(self) -> None:
        self.parser = None
        transport = self.transport
        if transport is not None:
            # abort: a reset, not a FIN after unread bytes; nothing was promised to this peer
            transport.abort()


def _hand_over(
    context: ListenerContext,
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    addresses: Addresses | None,
    rest: bytes,
) -> None:
    """The connection becomes an ordinary HTTP one, from `addresses` when the header gave
    them; `rest` is read next by whichever protocol owns it after `connection_made` (an
    HTTP/2 one when ALPN chose h2)."""
    http = HttpProtocol(context, loop)
    if addresses is not None:
        http.given = addresses
    transport.set_protocol(http)
    http.connection_made(transport)
    if rest and not transport.is_closing():
        cast(asyncio.Protocol, transport.get_protocol()).data_received(rest)

"""Closing a connection in stages, so a reset never destroys the last response.

Invariants:
- Used only when the client may still be sending (RFC 9112 9.6): bytes we never
  read are still queued, or more are on the way (a refused request, a body we did
  not wait for, pipelined requests after "Connection: close"). Closing outright
  then makes the kernel answer with a reset, which discards whatever of our last
  response is still in its send queue: the client sees a cut-off answer or none.
- The write side is shut once our bytes are out (FIN after the last one); what
  the client sends meanwhile is read and dropped; the socket closes when the
  client closes, or LINGER_SECONDS after our bytes are out, or when the client
  takes none of them for the listener's `send_timeout`.
- Plain TCP and Unix sockets only: a TLS transport cannot half-close, and is
  closed outright as before.
- Owns the transport from the hand-over on: the HTTP protocol has forgotten it,
  and the listener's connections hold this instead, so draining waits for it
  (closing it at once once our bytes are out) and a stop aborts it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from uvhost.server.flow import delivery_mark

if TYPE_CHECKING:
    from uvhost.server.context import ListenerContext

LINGER_SECONDS = 2.0
"""How long after our last byte left we keep reading (and dropping) what the client sends."""
DRAIN_CHECK_SECONDS = 0.1
"""While the worker drains: how soon to look again whether our bytes are out."""


class Lingering(asyncio.Protocol):
    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        context: ListenerContext,
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.context = context
        self.send_timeout = context.settings.send_timeout
        self.mark = delivery_mark(transport)
        self.stuck = 0.0  # seconds the client has taken none of our remaining bytes
        self.flushed = False  # our bytes are out and the FIN with them
        self.timer = loop.call_later(self._interval(), self._check)

    def _interval(self) -> float:
        """Draining, the worker waits for this connection: look again soon."""
        return DRAIN_CHECK_SECONDS if self.context.draining else LINGER_SECONDS

    def data_received(self, data: bytes) -> None:
        """Dropped: the client's requests after the last one we answered are not served."""

    def eof_received(self) -> bool | None:
        return None  # the client is done too: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.context.forget(self)

    # What the worker asks of every connection (context.Connection).

    def shutdown(self, code: int = 1001) -> None:
        """Draining: nothing more to wait for once our bytes are out."""
        if self.transport.get_write_buffer_size() == 0:
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        """Its own timer does this (it has no reason to be asked twice a second)."""

    def _check(self) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        interval = self._interval()
        if transport.get_write_buffer_size() == 0:
            if self.flushed or self.context.draining:
                transport.close()  # LINGER_SECONDS since our last byte: enough
                return
            self.flushed = True
        else:
            mark = delivery_mark(transport)
            self.stuck = 0.0 if mark != self.mark else self.stuck + interval
            self.mark = mark
            if self.stuck >= self.send_timeout:
                transport.abort()
                return
        self.timer = self.loop.call_later(interval, self._check)


def linger(
    transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, context: ListenerContext
) -> bool:
    """Hand `transport` to a `Lingering` close; False where it cannot half-close (TLS)."""
    if not transport.can_write_eof():
        return False
    transport.write_eof()  # after the buffered bytes
    lingering = Lingering(transport, loop, context)
    transport.set_protocol(lingering)
    context.connections.add(lingering)
    transport.resume_reading()
    return True

"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream as a WebSocket's transport.

Why a transport: `WebSocketProtocol` (websocket.py) already is the ASGI
WebSocket side, with the `websockets` library for framing, extensions,
pings and the close handshake, back-pressure and the app's accept, deny
and denial-response paths. Over HTTP/2 only the carriage differs, so the
stream is given to it as an `asyncio.Transport` look-alike, and every rule
is kept in one place.

Invariants:
- The handshake is the library's own: the CONNECT request is handed to it
  as the HTTP/1.1 upgrade it stands for (with a key of ours, RFC 8441 5),
  and what it answers is translated back: its 101 becomes `:status 200`
  (RFC 8441 5: no Upgrade, Connection or Sec-WebSocket-Accept), a refusal
  or a denial response becomes an HTTP/2 response on the stream.
- Frames travel as DATA both ways, under HTTP/2 flow control: what the
  client sends is acknowledged while the WebSocket reads, not while it has
  paused reading (its app lags), so a peer that floods waits in its window;
  a send waits (`pause_writing`) while the stream's window holds bytes back.
- The stream ends with the WebSocket: our close ends it (END_STREAM), an
  abort resets it (CANCEL), and the client's END_STREAM or reset, or the
  connection's loss, is the WebSocket's `connection_lost`.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from uvhost.server.websocket import WebSocketProtocol, websocket_scope

if TYPE_CHECKING:
    from uvhost.config.model import WebSocketSettings
    from uvhost.server.asgi_types import Scope
    from uvhost.server.http2 import Fields, Http2Protocol, Stream
    from uvhost.server.router import Endpoint

# What an HTTP/1.1 handshake answer says that HTTP/2 must not (RFC 8441 5, RFC 9113 8.2.2).
_DROPPED = frozenset(
    (b"upgrade", b"connection", b"sec-websocket-accept", b"keep-alive", b"transfer-encoding")
)


class StreamTransport:
    """The part of `asyncio.Transport` a `WebSocketProtocol` uses, over one stream."""

    def __init__(self, stream: Stream, protocol: WebSocketProtocol) -> None:
        self.stream = stream
        self.protocol = protocol
        self.connection: Http2Protocol = stream.connection
        self.head = b""  # the library's HTTP/1.1 answer so far, until translated
        self.answered = False
        self.closing = False
        self.lost = False
        self.paused = False  # the WebSocket stopped reading: its DATA is not acknowledged
        self.unacked = 0
        self.writing_paused = False

    # ----------------------------------------------------- asyncio.Transport

    def write(self, data: bytes) -> None:
        if self.closing or self.stream.ended:
            return
        if not self.answered:
            self.head += data
            data = self._answer()
            if not self.answered:
                return
        if data:
            self.stream.stage(data)
            self.connection.hold()
            if self.stream.backlog is not None and not self.writing_paused:
                self.writing_paused = True
                self.protocol.pause_writing()

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return self.closing or self.lost

    def close(self) -> None:
        """Our side is done: END_STREAM once what is written has left."""
        if self.closing:
            return
        self.closing = True
        if not self.answered:  # nothing valid was said: the stream cannot carry a WebSocket
            self.stream.reset(ErrorCodes.CANCEL)
        else:
            self.stream.finish_tunnel()
        self.connection.flush_soon()
        self._lose()

    def abort(self) -> None:
        self.closing = True
        self.stream.reset(ErrorCodes.CANCEL)
        self._lose()

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        if self.unacked:
            unacked, self.unacked = self.unacked, 0
            self.connection.acknowledge(self.stream.id, unacked)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":  # shared by every stream: no per-stream delivery mark there
            return default
        transport = self.connection.transport
        return transport.get_extra_info(name, default) if transport is not None else default

    def get_write_buffer_size(self) -> int:
        backlog = self.stream.backlog
        return len(backlog) if backlog is not None else 0

    def can_write_eof(self) -> bool:
        return False

    # ----------------------------------------------------- from the stream

    def received(self, data: bytes, size: int) -> None:
        """DATA for the WebSocket; its window is handed back unless reading is paused."""
        if self.paused:
            self.unacked += size
        else:
            self.connection.acknowledge(self.stream.id, size)
        if not self.lost:
            self.protocol.data_received(data)

    def drained(self) -> None:
        """The stream's backlog left: a send waiting on the window may go on."""
        if self.writing_paused and self.stream.backlog is None:
            self.writing_paused = False
            self.protocol.resume_writing()

    def ended(self) -> None:
        """The client ended the stream, reset it, or the connection is gone."""
        self.closing = True
        self._lose()

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.connection.loop.call_soon(self.protocol.connection_lost, None)
            if self.unacked:
                self.connection.acknowledge(self.stream.id, self.unacked)
                self.unacked = 0

    # ----------------------------------------------------- the handshake

    def _answer(self) -> bytes:
        """Translate the library's HTTP/1.1 answers (a 100, then the 101 or a refusal) into
        HEADERS on the stream; the bytes after them are frames or a refusal's body."""
        while not self.answered:
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return b""
            head, self.head = self.head[:end], self.head[end + 4 :]
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            fields = [(b":status", b"200" if status == 101 else b"%d" % status)]
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name not in _DROPPED:
                    fields.append((name, value.strip()))
            self._send_head(fields)
            if status >= 200 or status == 101:
                self.answered = True
        rest, self.head = self.head, b""
        return rest

    def _send_head(self, fields: Fields) -> None:
        connection = self.connection.h2
        connection.send_headers(self.stream.id, fields)
        self.connection.flush_soon()


def open_websocket(
    stream: Stream,
    scope: Scope,
    *,
    endpoint: Endpoint,
    settings: WebSocketSettings,
    fields: list[tuple[bytes, bytes]],
    path: bytes,
) -> WebSocketProtocol:
    """Start a WebSocket on an extended CONNECT stream (:protocol websocket)."""
    connection = stream.connection
    websocket = WebSocketProtocol(
        connection.context,
        connection.loop,
        websocket_scope(scope, fields),
        endpoint,
        settings,
    )
    transport = StreamTransport(stream, websocket)
    stream.tunnel = transport
    key = base64.b64encode(os.urandom(16))
    upgrade = [
        *fields,
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", key),
    ]
    websocket.start(transport, path.decode("latin-1"), upgrade, b"")  # type: ignore[arg-type]
    return websocket

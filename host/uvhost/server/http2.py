"""HTTP/2 over the h2 library: one `Http2Protocol` per connection, one `Stream` per request.

Invariants:
- Every request is an `Exchange`, the same class HTTP/1.1 uses: the app's
  messages, the response header checks, the limits and the counters are
  decided there. A `Stream` is the exchange's `Carrier`; what differs here
  is only how bytes leave (HEADERS and DATA frames) and flow control.
- The h2 state machine is the only judge of frames, HPACK and content-length.
  Its header validation is off both ways, because each rule is checked once
  and cheaper elsewhere: a request's fields by `http2_fields.request_head`
  (malformed: 400 on that stream, RFC 9113 8.1.1), an app's by the exchange.
- Flow control both ways. Request body bytes are acknowledged
  (WINDOW_UPDATE) only as the app takes them with `receive`, so a slow app
  slows its client, and a connection buffers at most its receive window.
  An app's `send` waits while the stream's or the connection's send window
  is closed, or the transport is above its high-water mark.
- A client cannot make more app tasks run on one connection than
  `max_concurrent_streams`, resets included (CVE-2023-44487): a stream whose
  client reset it still counts while its app runs, and a new stream beyond
  that is refused (REFUSED_STREAM).
- Bytes leave once per event batch (one `data_received`) and once per loop
  turn for app responses (the listener's `TurnWriter`), never per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack.hpack
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from uvhost.observe.stats import REQUESTS, REQUESTS_H2, clock
from uvhost.server import wire
from uvhost.server.asgi_types import ClientDisconnectedError, Message, Scope
from uvhost.server.context import ListenerContext
from uvhost.server.exchange import (
    EAGER_TASKS,
    UNLIMITED,
    Exchange,
    Phase,
    eager_task,
    request_task,
    run_app,
)
from uvhost.server.flow import FLUSH_THRESHOLD, WriteFlow
from uvhost.server.http2_connection import ServerConnection, StreamRefused
from uvhost.server.http2_fields import BadStreamError, RequestHead, request_head
from uvhost.server.linger import linger
from uvhost.server.router import not_found
from uvhost.server.scope import http_scope
from uvhost.server.ws_h2 import StreamTransport, open_websocket

if TYPE_CHECKING:
    from uvhost.server.router import Endpoint


class _QuietLog:
    """hpack logs every integer and header it codes with `logging.debug`: about twenty
    calls per request that, with DEBUG off, still cost two Python calls each (4% of an
    HTTP/2 request, profiled). `"".format` takes any arguments and does nothing, in C."""

    debug = staticmethod("".format)


if not hpack.hpack.log.isEnabledFor(logging.DEBUG):  # someone debugging hpack keeps its log
    hpack.hpack.log = _QuietLog()  # type: ignore[assignment]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PRI_HEAD = PREFACE[:18]  # what llhttp reads as a request before it stops ("PRI * HTTP/2.0")
RESET_LIMIT = 200
"""Streams a client may reset before their response is complete, per connection and
second: more is the rapid-reset attack (CVE-2023-44487), answered GOAWAY ENHANCE_YOUR_CALM."""
FLOOD_LIMIT = 1000
"""Frames that cost us work and carry no request (PING, SETTINGS, PRIORITY, empty DATA,
unknown types), per connection and second; more is a flood (CVE-2019-9512, 9515, 9516,
9518), answered GOAWAY ENHANCE_YOUR_CALM. Browsers send a handful."""
CONNECTION_WINDOW_FACTOR = 4  # the connection's receive window, in stream windows
LAST_POSSIBLE_STREAM = 2**31 - 1
DRAIN_PING = b"uvhost-d"  # a drain's PING: its ACK means the client has seen the first GOAWAY
DRAIN_PING_WAIT = 1.0
"""Seconds a drain waits for that ACK before the final GOAWAY all the same."""

# Response header names HTTP/2 forbids (RFC 9113 8.2.2); the exchange's checks let
# `connection` through for HTTP/1.1's sake, and HTTP/1.1 framing is never ours here.
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_STATUS = {status: b"%d" % status for status in range(100, 600)}
_VISIBLE = re.compile(rb"[!-~]+")  # a :path holds visible ASCII only (RFC 3986)


def connection_settings(context: ListenerContext) -> h2.settings.Settings:
    """What this listener advertises in its SETTINGS frame."""
    tuning = context.settings.http2
    codes = h2.settings.SettingCodes
    return h2.settings.Settings(
        client=False,
        initial_values={
            codes.MAX_CONCURRENT_STREAMS: tuning.max_concurrent_streams,
            codes.INITIAL_WINDOW_SIZE: tuning.initial_window_size,
            codes.MAX_FRAME_SIZE: tuning.max_frame_size,
            codes.MAX_HEADER_LIST_SIZE: context.settings.max_header_bytes,
            codes.ENABLE_CONNECT_PROTOCOL: 1,  # RFC 8441: WebSockets over HTTP/2
        },
    )


_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    # request_head (http2_fields.py) checks every inbound rule in one pass
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)


Fields = list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]


def response_headers(status: int, head: bytes) -> Fields:
    """An HTTP/1.1 head the exchange built and checked, as an HTTP/2 header list.

    The checks (tokens, no CR/LF/NUL, one content-length, Server and Date once,
    listener defaults) live in `wire.build_head`; reading its result back is
    cheaper than a second copy of them, and h2's HPACK costs far more. Heads
    repeat (an app's few responses, one Date a second): each is read once.
    """
    known = _HEADS.get(head)
    if known is not None:
        return known
    pairs = [(b":status", _STATUS[status])]
    for line in head.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b": ")
        name = name.lower()
        if name not in CONNECTION_SPECIFIC:
            pairs.append((name, value))
    if len(_HEADS) >= _HEADS_LIMIT:
        _HEADS.clear()
    _HEADS[head] = fields = tuple(pairs)
    return fields


_HEADS: dict[bytes, tuple[tuple[bytes, bytes], ...]] = {}
_HEADS_LIMIT = 512


class StreamExchange(Exchange):
    """An exchange carried by an HTTP/2 stream: its head becomes a HEADERS frame, and the
    body bytes the app takes are handed back to the client as window."""

    __slots__ = ()

    protocol: Stream

    def _open_body(self, body: bytes, more: bool) -> bytes:
        super()._open_body(body, more)
        self.protocol.head = response_headers(self.status, self.framing.head)  # type: ignore[union-attr]
        return b""

    def head_pending(self) -> bool:
        return self.protocol.head is not None

    async def send(self, message: Message) -> None:
        """The ASGI messages, plus `http.response.trailers` (the extension HTTP/2 scopes
        announce): a response started with `trailers: True` ends with them."""
        kind = message["type"]
        if kind == "http.response.trailers":
            self.protocol.add_trailers(self, message)
            return
        if kind == "http.response.start" and message.get("trailers"):
            self.protocol.trailers = []
        await super().send(message)

    def _next_body_message(self) -> Message:
        message = super()._next_body_message()
        taken = len(message["body"])
        if taken:
            self.protocol.consumed(taken)
        return message


class Stream:
    """One request's stream: the `Carrier` of its exchange."""

    __slots__ = (
        "backlog",
        "backlog_end",
        "blocked_since",
        "body_since",
        "connection",
        "context",
        "drained",
        "ended",
        "exchange",
        "head",
        "id",
        "loop",
        "trailers",
        "tunnel",
        "unacked",
    )

    def __init__(self, connection: Http2Protocol, stream_id: int) -> None:
        self.connection = connection
        self.context = connection.context
        self.loop = connection.loop
        self.id = stream_id
        self.exchange: StreamExchange | None = None
        self.head: Fields | None = None  # decided, not yet sent
        self.backlog: memoryview | None = None  # body bytes waiting for send window
        self.backlog_end = False
        self.ended = False  # END_STREAM (or RST_STREAM) sent: nothing more goes out
        self.drained: asyncio.Future[None] | None = None
        self.unacked = 0  # body bytes received and not yet handed back as window
        self.body_since: float | None = None
        self.blocked_since: float | None = None  # waiting for send window since
        self.trailers: list[tuple[bytes, bytes]] | None = None  # announced; sent at the end
        self.tunnel: StreamTransport | None = None  # a WebSocket over this stream (RFC 8441)

    # ------------------------------------------------------------ Carrier

    def send_continue(self) -> None:
        if not self.ended:
            self.connection.h2.send_headers(self.id, [(b":status", b"100")])
            self.connection.flush_soon()
            self.body_since = self.context.next_tick

    def update_reading(self) -> None:
        """Reading is paced by flow control (`consumed`), not by pausing the transport."""

    def can_send_file(self) -> bool:
        """A file's bytes go in DATA frames: read and sent under flow control (exchange.py)."""
        return False

    async def send_file(self, head: bytes, fd: int, offset: int, count: int) -> int:
        raise NotImplementedError  # never asked: can_send_file says no

    def stage(self, data: bytes) -> None:
        self._send(data, end=False)

    async def write(self, data: bytes) -> None:
        self._send(data, end=False)
        self.connection.hold(len(data))
        if self.backlog is not None:
            self.drained = self.loop.create_future()
            try:
                await asyncio.shield(self.drained)
            finally:
                self.drained = None
        await self.connection.flow.wait()

    def write_now(self, data: bytes) -> None:
        self._send(data, end=False)
        self.connection.flush()

    def finish_response(self, exchange: Exchange, data: bytes) -> None:
        if self.trailers is not None:  # the response ends with its trailers
            self._send(data, end=False)
            self.connection.hold()
            return
        self._send(data, end=True)
        self.connection.finished(self, exchange, len(data))

    def add_trailers(self, exchange: Exchange, message: Message) -> None:
        """Trailer fields, checked like any response header; the last message ends the
        stream with them (one HEADERS frame with END_STREAM after the last DATA)."""
        if self.trailers is None or exchange.phase is not Phase.DONE:
            raise RuntimeError(
                "ASGI: http.response.trailers needs 'trailers': True in http.response.start"
                " and comes after the last body message"
            )
        if exchange.disconnected or self.ended:
            raise ClientDisconnectedError("the client has disconnected")
        for name, value in message.get("headers") or ():
            _, lowered, kind, _ = wire.header_line(name, value)
            if not kind and lowered not in CONNECTION_SPECIFIC:  # framing is never a trailer
                self.trailers.append((lowered, value))
        if not message.get("more_trailers", False):
            self._send(b"", end=True)
            self.connection.finished(self, exchange)

    def close(self) -> None:
        """Cut the response: the stream is reset, the connection's other streams go on."""
        self.reset(ErrorCodes.INTERNAL_ERROR)

    def send_failure(self, exchange: Exchange) -> None:
        self.head = None
        self.answer(500, None, head=exchange.is_head)

    # ------------------------------------------------------------ sending

    def answer(self, status: int, message: str | None, *, head: bool = False) -> None:
        """A whole response uvhost writes itself (400, 413, 500...), as the listener's
        canned HTTP/1.1 answers read, with their Server, Date and default headers."""
        canned = self.context.canned(status, message)
        split = canned.index(b"\r\n\r\n")
        headers = response_headers(status, canned[: split + 2])
        self._send_head(headers, b"" if head else canned[split + 4 :])

    def _send_head(self, headers: Fields, body: bytes) -> None:
        self.head = headers
        self._send(body, end=True)
        self.connection.flush_soon()

    def _send(self, data: bytes, *, end: bool) -> None:
        if self.ended:
            return
        connection = self.connection.h2
        head = self.head
        if head is not None:
            self.head = None
            if end and not data and self.backlog is None and not self.trailers:
                connection.send_headers(self.id, head, end_stream=True)
                self.ended = True
                self.connection.stream_done(self)
                return
            connection.send_headers(self.id, head)
        if data:
            if self.backlog is None:
                self.backlog = memoryview(data)
            else:
                self.backlog = memoryview(bytes(self.backlog) + data)
        self.backlog_end = end
        self.pump()

    def pump(self) -> None:
        """Send what the send windows allow; the rest waits for WINDOW_UPDATE."""
        connection = self.connection.h2
        backlog, end = self.backlog, self.backlog_end
        while backlog is not None:
            window = min(
                connection.local_flow_control_window(self.id), connection.max_outbound_frame_size
            )
            if window <= 0:
                self.backlog = backlog
                if self.blocked_since is None:
                    self.blocked_since = self.context.next_tick
                return
            self.blocked_since = None
            piece = backlog[:window]
            backlog = backlog[window:] if len(backlog) > window else None
            last = end and backlog is None and not self.trailers
            connection.send_data(self.id, piece, end_stream=last)
            self.ended = last
        self.backlog = None
        if end and not self.ended:
            self.ended = True
            if self.trailers:
                connection.send_headers(self.id, self.trailers, end_stream=True)
            else:
                connection.end_stream(self.id)
        self.release()
        if end:
            self.connection.stream_done(self)

    def reset(self, code: int) -> None:
        if not self.ended:
            self.ended = True
            self.backlog = None
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.connection.h2.reset_stream(self.id, code)
            self.connection.flush_soon()
        self.release()
        self.connection.stream_done(self)

    def release(self) -> None:
        """Wake an app waiting to send: the backlog left, or the stream or connection is gone."""
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self.tunnel is not None:
            self.tunnel.drained()

    def finish_tunnel(self) -> None:
        """A WebSocket's end: END_STREAM after whatever its window still holds back."""
        self._send(b"", end=True)

    # ------------------------------------------------------------ receiving

    def consumed(self, size: int) -> None:
        """The app took `size` body bytes: the client may send that many more."""
        self.unacked -= size
        self.connection.acknowledge(self.id, size)


class Http2Protocol(asyncio.Protocol):
    """One HTTP/2 connection, taken over from the `HttpProtocol` that accepted it."""

    def __init__(
        self,
        context: ListenerContext,
        loop: asyncio.AbstractEventLoop,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
    ) -> None:
        self.context = context
        self.loop = loop
        self.client = client
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.h2 = ServerConnection(_CONFIG)
        self.streams: dict[int, Stream] = {}
        self.running = 0  # app tasks of this connection not finished yet
        self.flow = WriteFlow(loop)
        self.flush_scheduled = False
        self.held = 0  # body bytes queued in h2 since the last flush (hold)
        self.draining = False  # the first GOAWAY (no stream id yet) sent: streams in flight count
        self.drain_started = 0.0
        self.going_away = False  # the final GOAWAY sent: no new streams, close once the last ends
        self.last_stream = 0  # the highest stream id taken for an app
        self.idle_since: float | None = loop.time()
        self.started_at = loop.time()
        self.served = 0
        self.window = context.settings.http2.initial_window_size
        self.window_since = 0.0  # the one-second window `resets` and `frames` count in
        self.resets = 0
        self.frames = 0
        self.calm = False  # ended for abuse: the rest of the read is not looked at
        self.heard = loop.time()  # (about) when the client last sent anything
        self.pending = 0  # bytes of reads in a row that completed no frame
        settings = context.settings
        self.pending_limit = 2 * settings.http2.max_frame_size + settings.max_header_bytes + 64
        self.pinged = False  # a keep-alive PING is out, unanswered
        self.certificate: object = None  # the TLS context SNI chose (listeners with sites)

    # ----------------------------------------------------------- connection

    def take_over(self, transport: asyncio.Transport, data: bytes) -> None:
        """Start speaking HTTP/2 on `transport`; `data` is what was read after the preface
        started (the preface itself included)."""
        self.transport = transport
        transport.set_protocol(self)
        self.context.connections.add(self)
        connection = self.h2
        connection.local_settings = connection_settings(self.context)
        connection.max_inbound_frame_size = connection.local_settings.max_frame_size
        connection.decoder.max_header_list_size = self.context.settings.max_header_bytes
        connection.initiate_connection()
        extra = self.window * CONNECTION_WINDOW_FACTOR - 65535
        if extra > 0:
            connection.increment_flow_control_window(extra)
        if self.context.draining:
            self.shutdown()
        if data:
            self.data_received(data)
        else:
            self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.forget(self)
        self.transport = None
        for stream in list(self.streams.values()):
            if stream.exchange is not None:
                stream.exchange.disconnect()
            if stream.tunnel is not None:
                stream.tunnel.ended()
            stream.release()
        self.streams.clear()
        self.flow.resume()

    def pause_writing(self) -> None:
        """The client is not taking our bytes: stop reading its frames too, since PINGs and
        SETTINGS it sends meanwhile would each queue an answer it does not read."""
        self.flow.pause()
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.flow.resume()
        if self.transport is not None:
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        return None

    def data_received(self, data: bytes) -> None:
        self.heard = self.context.next_tick
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()  # h2 queued a GOAWAY with the error's code
            self._close()
            return
        if not events:
            # Reads that complete no frame: an unfinished frame, or a header block whose
            # CONTINUATION frames h2 gathers (up to 64 of max_frame_size each) before it
            # decodes a byte of it. No honest peer needs more than a whole frame and a
            # whole header list of them in a row.
            self.pending += len(data)
            if self.pending > self.pending_limit:
                self._calm("a header block or frame beyond every limit")
            return
        self.pending = 0
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
            elif type(event) in _NO_REQUEST and getattr(event, "stream_id", 0) not in self.streams:
                self._count(0, 1)  # (a priority given with a request's HEADERS is no flood)
            if self.calm:
                break
        self.flush()

    def _count(self, resets: int, frames: int) -> None:
        """Count early resets and request-less frames in one-second windows; over either
        limit, the connection ends (GOAWAY ENHANCE_YOUR_CALM)."""
        now = self.context.next_tick
        if now - self.window_since >= 1.0:
            self.window_since, self.resets, self.frames = now, 0, 0
        self.resets += resets
        self.frames += frames
        if self.resets > RESET_LIMIT or self.frames > FLOOD_LIMIT:
            self._calm(
                "too many streams reset" if self.resets > RESET_LIMIT else "a flood of frames"
            )

    def _calm(self, why: str) -> None:
        """End an abusive connection: GOAWAY ENHANCE_YOUR_CALM, logged once."""
        self.calm = True
        self.context.logger.warning(
            "HTTP/2 connection from %s ended: %s (GOAWAY ENHANCE_YOUR_CALM)",
            _peer(self.client),
            why,
        )
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        self._close()

    # ------------------------------------------------------------- events

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.going_away or self.running >= self.context.settings.http2.max_concurrent_streams:
            self._refuse(stream_id)
            return
        self.last_stream = max(self.last_stream, stream_id)
        self.idle_since = None
        stream = Stream(self, stream_id)
        self.streams[stream_id] = stream
        try:
            scope, endpoint, head = self._scope(event.headers)
        except BadStreamError as error:
            self._answer_alone(stream, error.status, str(error))
            return
        context = self.context
        if head.protocol:
            self._websocket(stream, scope, endpoint, head)
            return
        max_body = endpoint.max_body_bytes if endpoint is not None else UNLIMITED
        if head.content_length > max_body:
            is_head = scope["method"] == "HEAD"
            self._answer_alone(stream, 413, "request body too large", head=is_head)
            return
        exchange = StreamExchange(
            stream,
            scope,
            endpoint,
            keep_alive=True,
            expect_continue=head.expect_continue,
            max_body=max_body,
            started_at=clock(),
            stats=endpoint.stats if endpoint is not None else context.unrouted,
        )
        stream.exchange = exchange
        stream.body_since = context.next_tick  # until StreamEnded, in this batch or later
        budget = context.budget
        budget.count += 1
        if budget.count == budget.limit:
            budget.spent()
        counts = exchange.stats.counts
        counts[REQUESTS] += 1
        counts[REQUESTS_H2] += 1
        self.running += 1
        self.served += 1
        turn = context.turn_writer
        turn.starting += 1
        app = endpoint.app if endpoint is not None else not_found
        if EAGER_TASKS:  # it runs up to its first wait now (see EAGER_TASKS)
            task = eager_task(run_app(app, exchange, False), loop=self.loop)
            turn.starting -= 1
        else:
            task = request_task(run_app(app, exchange), loop=self.loop)
        task.add_done_callback(self._app_done)

    def _scope(
        self, headers: list[tuple[bytes, bytes]]
    ) -> tuple[Scope, Endpoint | None, RequestHead]:
        """The scope of a request; BadStreamError for a malformed or refused one."""
        head = request_head(headers)
        method, path, protocol, fields = head.method, head.path, head.protocol, head.fields
        if method == b"CONNECT":
            if not protocol:
                raise BadStreamError("CONNECT is not implemented by this server", 501)
            if protocol != b"websocket":  # RFC 8441 4: the only protocol served
                raise BadStreamError("only the websocket protocol is served by CONNECT", 501)
        if _VISIBLE.fullmatch(path) is None:
            raise BadStreamError("the :path is not a visible-ASCII request target")
        if path[:1] == b"/":
            raw_path, _, query = path.partition(b"?")
        elif path == b"*" and method == b"OPTIONS":
            raw_path, query = path, b""
        else:
            raise BadStreamError("the :path is no origin-form (or * for OPTIONS)")
        try:
            scope, endpoint = http_scope(
                self.context,
                "2",
                method.decode("ascii"),
                raw_path,
                query,
                fields,
                head.host,
                self.certificate,
                self.client,
                self.server,
            )
        except (UnicodeDecodeError, ValueError) as error:
            raise BadStreamError("the :path does not decode") from error
        scope["extensions"] = {"http.response.trailers": {}}
        return scope, endpoint, head

    def _websocket(
        self, stream: Stream, scope: Scope, endpoint: Endpoint | None, head: RequestHead
    ) -> None:
        """An extended CONNECT for a WebSocket (RFC 8441): the app's, if it takes them."""
        if endpoint is None:
            self._answer_alone(stream, 404, "Not Found")
        elif endpoint.websocket is None or not endpoint.websocket.enabled:
            self._answer_alone(stream, 501, "WebSockets are not served here")
        else:
            self.idle_since = None
            websocket = open_websocket(
                stream,
                scope,
                endpoint=endpoint,
                settings=endpoint.websocket,
                fields=head.fields,
                path=head.path,
            )
            # Its handshake was counted as a request (on the stats it settled on) by start().
            websocket.stats.counts[REQUESTS_H2] += 1

    def _data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        data = event.data
        if not data and event.stream_ended is None:
            self._count(0, 1)  # an empty DATA frame that does not even end the stream
        if stream is not None and stream.tunnel is not None:
            stream.tunnel.received(data, size)
            return
        if stream is None or stream.exchange is None:
            self.acknowledge(event.stream_id, size)  # no app will read it
            return
        if size > len(data):
            self.acknowledge(event.stream_id, size - len(data))  # padding
        exchange = stream.exchange
        stream.body_since = self.context.next_tick
        before = exchange.buffered
        if not exchange.feed_body(data):
            self.acknowledge(event.stream_id, len(data))
            if exchange.phase is Phase.START:
                exchange.disconnect()
                exchange.phase = Phase.DONE
                stream.answer(413, "request body too large", head=exchange.is_head)
                exchange.record(413)
            else:
                exchange.disconnect()
                stream.reset(ErrorCodes.CANCEL)
            return
        if exchange.buffered - before == len(data):
            stream.unacked += len(data)
        else:  # the response is complete or the client left: nobody reads it
            self.acknowledge(event.stream_id, len(data))

    def _ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.tunnel is not None:
            stream.tunnel.close()  # the client's END_STREAM is its FIN (RFC 8441 4)
            return
        if stream is not None:
            stream.body_since = None
            if stream.exchange is not None:
                stream.exchange.finish_body()
            if stream.ended:
                self._forget(stream)

    def _reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is not None:
            if not stream.ended:
                self._count(1, 0)
            stream.ended = True
            stream.backlog = None
            if stream.exchange is not None:
                stream.exchange.disconnect()
            if stream.tunnel is not None:
                stream.tunnel.ended()
            stream.release()
            if stream.unacked:
                self.acknowledge(stream.id, stream.unacked)
                stream.unacked = 0

    def _refused(self, event: StreamRefused) -> None:
        self._count(1, 0)

    def _ping_answered(self, event: h2.events.PingAckReceived) -> None:
        if self.draining and event.ping_data == DRAIN_PING:
            self._last_goaway()

    def _window(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.backlog is not None:
                stream.pump()
        else:
            self._pump_all()

    def _settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self._count(0, 1)
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._pump_all()

    def _terminated(self, event: h2.events.ConnectionTerminated) -> None:
        self.flush()
        self._close()

    def _pump_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.backlog is not None:
                stream.pump()

    # ------------------------------------------------------------- streams

    def _refuse(self, stream_id: int) -> None:
        """REFUSED_STREAM. Counted as an early reset: a client that keeps opening streams
        while its resets hold every slot must not churn streams for ever."""
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
        self._count(1, 0)

    def _answer_alone(
        self, stream: Stream, status: int, message: str, *, head: bool = False
    ) -> None:
        """A request answered by the host without an app: counted as unrouted."""
        stream.answer(status, message, head=head)
        unrouted = self.context.unrouted
        unrouted.counts[REQUESTS] += 1
        unrouted.counts[REQUESTS_H2] += 1
        unrouted.finish(status, 0, 0, clock())

    def _app_done(self, task: asyncio.Task[None]) -> None:
        self.running -= 1
        if self.going_away and not self.streams and not self.running:
            self._close()

    def stream_done(self, stream: Stream) -> None:
        """The response is complete (or the stream reset): forget it once its request is
        over too; a body still coming is told to stop (RFC 9113 8.1: RST_STREAM NO_ERROR)."""
        exchange = stream.exchange
        if exchange is not None and not exchange.body_complete and not exchange.disconnected:
            exchange.disconnect()
            if self.h2.streams.get(stream.id) is not None:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.h2.reset_stream(stream.id, ErrorCodes.NO_ERROR)
        if stream.unacked:
            self.acknowledge(stream.id, stream.unacked)
            stream.unacked = 0
        self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        if self.streams.pop(stream.id, None) is not None and not self.streams:
            self.idle_since = self.context.next_tick
            if self.going_away and not self.running:
                self._close()

    def finished(self, stream: Stream, exchange: Exchange, size: int = 0) -> None:
        """A response's last bytes are queued: count it, log it, write with the batch."""
        exchange.record(exchange.status)
        context = self.context
        if context.access_log is not None:
            context.access_log(exchange, context.name)
        self.hold(size)

    def acknowledge(self, stream_id: int, size: int) -> None:
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except h2.exceptions.ProtocolError:
            return
        self.flush_soon()

    # ------------------------------------------------------------- writing

    def hold(self, size: int = 0) -> None:
        """Write at the end of this loop turn, or now when no other request of this turn
        is about to run (the same batching as HTTP/1.1, flow.py). `size`: body bytes just
        queued; past FLUSH_THRESHOLD held they are written at once, so that an app
        streaming a body meets the transport's back-pressure."""
        turn = self.context.turn_writer
        self.held += size
        if turn.starting and self.held < FLUSH_THRESHOLD:
            self.flush_soon()
        else:
            self.flush()
            if turn.waiting:
                turn.flush_all()

    def flush_soon(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.context.turn_writer.flush_later(self)

    def flush(self) -> None:
        self.flush_scheduled = False
        self.held = 0
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def _close(self) -> None:
        """Close after the GOAWAY, in stages (linger.py): a client still sending frames
        would otherwise be answered with a reset that can destroy the GOAWAY."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.flush()
            if linger(transport, self.loop, self.context):
                self.connection_lost(None)
                return
            transport.close()

    # ------------------------------------------------- draining and timers

    def shutdown(self, code: int = 1001) -> None:
        """Draining, in two steps (RFC 9113 6.8): a GOAWAY that covers every stream id and a
        PING; once the client answers the PING (or after `DRAIN_PING_WAIT`), the final
        GOAWAY with the last stream taken. A request the client sent before it saw the
        first is served rather than refused; the streams taken finish, then we close.

        GOAWAYs are written beside h2 (which would close its state machine and refuse
        the responses still to come).
        """
        if self.draining:
            return
        self.draining = True
        self.drain_started = self.loop.time()
        self._write_goaway(LAST_POSSIBLE_STREAM)
        self.h2.ping(DRAIN_PING)
        self.flush()

    def _last_goaway(self) -> None:
        if self.going_away:
            return
        self.going_away = True
        self._write_goaway(self.last_stream)
        if not self.streams and not self.running:
            self._close()

    def _write_goaway(self, last_stream_id: int) -> None:
        self.flush()
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=0)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame.serialize())

    def abort(self) -> None:
        for stream in list(self.streams.values()):
            if stream.exchange is not None:
                stream.exchange.record(0)
        if self.transport is not None:
            self.flush()
            self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        """The tick: a client that stopped reading, an idle connection, a stalled body."""
        context = self.context
        settings = context.settings
        if context.send_stuck(self.flow, self.transport, now):
            self.abort()
            return
        if self.draining and now - self.drain_started >= DRAIN_PING_WAIT:
            self._last_goaway()  # no PING answer: a client that keeps none of the rules
        if self.idle_since is not None:
            limit = settings.keep_alive_timeout if self.served else settings.header_timeout
            if now - self.idle_since >= limit:
                self.idle_since = None
                self._goodbye()
            return
        interval = settings.http2.ping_interval
        if interval is not None and self._silent(now, interval):
            return
        for stream in list(self.streams.values()):
            blocked = stream.blocked_since
            if blocked is not None and now - blocked >= settings.send_timeout:
                # CVE-2019-9517: a window that never opens holds the app's send forever
                context.logger.info(
                    "reset a stream from %s on %s: its window stayed closed for %.0f s"
                    " (send_timeout)",
                    _peer(self.client),
                    context.name,
                    now - blocked,
                )
                if stream.exchange is not None:
                    stream.exchange.disconnect()
                stream.reset(ErrorCodes.CANCEL)
                continue
            since = stream.body_since
            exchange = stream.exchange
            if (
                since is not None
                and exchange is not None
                and not exchange.body_complete
                and not exchange.expect_continue
                and exchange.buffered == 0
                and now - since >= settings.body_timeout
            ):
                stream.body_since = None
                exchange.disconnect()
                if exchange.phase is Phase.START:
                    exchange.phase = Phase.DONE
                    stream.answer(408, "request body not received in time")
                    exchange.record(408)
                else:
                    stream.reset(ErrorCodes.CANCEL)

    def _silent(self, now: float, interval: float) -> bool:
        """`ping_interval`: a client silent that long gets a PING; silent for twice that, it
        is gone (a peer that vanished without a FIN), and the connection ends."""
        silence = now - self.heard
        if silence < interval:
            self.pinged = False
            return False
        if not self.pinged:
            self.pinged = True
            self.h2.ping(b"uvhost\0\0")
            self.flush()
            return False
        if silence >= 2 * interval:
            self.context.logger.info(
                "closed an HTTP/2 connection from %s: no answer to a PING in %.0f s",
                _peer(self.client),
                silence,
            )
            self.abort()
            return True
        return False

    def _goodbye(self) -> None:
        """An idle connection ends with a GOAWAY saying nothing was lost."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection()
        self._close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a unix socket"


_NO_REQUEST = frozenset(
    (
        h2.events.PingReceived,
        h2.events.RemoteSettingsChanged,
        h2.events.PriorityUpdated,
        h2.events.UnknownFrameReceived,
    )
)
"""Events for frames that carry no request; RemoteSettingsChanged is also handled."""

_HANDLERS: dict[type, Any] = {
    h2.events.RequestReceived: Http2Protocol._request,
    h2.events.DataReceived: Http2Protocol._data,
    h2.events.StreamEnded: Http2Protocol._ended,
    h2.events.StreamReset: Http2Protocol._reset,
    StreamRefused: Http2Protocol._refused,
    h2.events.PingAckReceived: Http2Protocol._ping_answered,
    h2.events.WindowUpdated: Http2Protocol._window,
    h2.events.RemoteSettingsChanged: Http2Protocol._settings,
    h2.events.ConnectionTerminated: Http2Protocol._terminated,
}

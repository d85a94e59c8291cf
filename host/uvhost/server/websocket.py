"""WebSocket connections: the ASGI WebSocket spec over `websockets`' sans-I/O protocol.

Invariants:
- The library frames, masks, negotiates extensions and answers pings; we
  own the transport, the timers and the ASGI side. Every path that changes
  the library's state ends in `_flush()`, which writes `data_to_send()` and
  closes the TCP connection when the library says the stream is over.
- The handshake is validated before the app is called: a bad one is
  answered by the library (400 for a missing key; 426 with the version we
  speak for a wrong one) and the app never sees it. The 101 is held until
  the app sends `websocket.accept`, so the app can still choose a
  subprotocol, add headers, deny with 403 (close before accept) or answer
  with its own HTTP response (the denial extension). Messages a client sends
  before the 101 wait for the accept.
- Back-pressure both ways: reading pauses while `max_queue` messages wait
  for the app; the app's `websocket.send` waits while the transport's write
  buffer is full, so a client that does not read cannot grow our memory.
  Pongs need no app, so reading also pauses while they back up: a client
  that pings and never reads stalls in its own buffers.
- The echo path (one whole frame in, one frame out) stays cheap: no
  allocation of ours beyond the ASGI message dict and the one future the app
  waits on, one `transport.write` per frame sent, no extra loop callbacks,
  and enum members read from module constants (a class attribute lookup on
  an enum costs ~60 ns on Python 3.11, several per message add up).
- Never imports supervisor/.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeaderValue
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from uvhost.observe.stats import REQUESTS, WEBSOCKETS, WEBSOCKETS_OPEN, clock
from uvhost.server import wire
from uvhost.server.asgi_types import ClientDisconnectedError, Message, Scope
from uvhost.server.context import ListenerContext
from uvhost.server.flow import WriteFlow
from uvhost.server.router import Endpoint
from uvhost.server.slow_log import log_slow_request
from uvhost.server.ws_deflate import skip_small_messages

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import WebSocketSettings

logger = logging.getLogger("uvhost.error")
protocol_logger = logging.getLogger("uvhost.websocket.protocol")
protocol_logger.setLevel(logging.WARNING)  # the library's per-connection chatter is not ours

EARLY_LIMIT = 64 * 1024  # bytes held from a peer that sends before the app accepts
GOING_AWAY, SERVICE_RESTART, INTERNAL_ERROR, INVALID_DATA = 1001, 1012, 1011, 1007
ABNORMAL = 1006


# Hot-path constants: module globals, read far faster than `Opcode.TEXT` on 3.11.
TEXT, BINARY, CONT, PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
WS_OPEN = State.OPEN


class Phase(enum.IntEnum):
    CONNECTING = 0  # handshake validated, waiting for the app to accept or deny
    DENYING = 1  # the app is sending an HTTP response instead of accepting
    OPEN = 2
    CLOSED = 3  # we sent or received a close, or the connection is gone


CONNECTING, DENYING, OPEN, CLOSED = Phase.CONNECTING, Phase.DENYING, Phase.OPEN, Phase.CLOSED


class WebSocketProtocol(asyncio.Protocol):
    def __init__(
        self,
        context: ListenerContext,
        loop: asyncio.AbstractEventLoop,
        scope: Scope,
        endpoint: Endpoint,
        settings: WebSocketSettings,
    ) -> None:
        self.context = context
        self.loop = loop
        self.scope = scope
        self.endpoint = endpoint
        self.settings = settings
        # The library's server defaults (12-bit windows, memLevel 5), as its own servers
        # use: a bare factory (15 bits, memLevel 8) costs ~100 KiB per idle connection.
        deflate = settings.per_message_deflate
        extensions = enable_server_permessage_deflate(None) if deflate else None
        self.ws = ServerProtocol(
            extensions=extensions, max_size=settings.max_message_bytes, logger=protocol_logger
        )
        self.transport: asyncio.Transport | None = None
        self.phase = Phase.CONNECTING
        self.handshake: Response | None = None
        self.denial_status = 0
        self.denial_headers: list[tuple[str, str]] = []
        self.denial_body: list[bytes] = []
        self.connect_sent = False
        self.incoming: deque[Message] = deque()
        self.fragments = bytearray()  # a fragmented message so far: payload only, however split
        self.fragment_opcode: Opcode | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.flow = WriteFlow(loop)
        self.reading_paused = False  # the app lags: max_queue messages wait for it
        self.answers_backed_up = False  # the peer does not read the pongs its pings ask for
        self.before_accept = True  # bytes are held, not parsed, until the app accepts
        self.early = b""  # what came before the accept (EARLY_LIMIT, then reading pauses)
        self.socket_paused = False  # what the transport was last told
        self.ping_timer: asyncio.TimerHandle | None = None
        self.ping_payload: bytes | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.disconnect_code: int | None = None
        self.disconnect_reason = ""
        self.drain_code: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.started_at = clock()
        self.stats = endpoint.stats  # the listener's own when uvhost refuses the handshake
        self.counted = False  # the handshake's answer is counted once, as one request
        self.counted_open = False

    # ----------------------------------------------------------- handshake

    def start(
        self,
        transport: asyncio.Transport,
        raw_target: str,
        headers: list[tuple[bytes, bytes]],
        rest: bytes,
    ) -> None:
        """Take over a connection whose HTTP head asked for an upgrade."""
        self.transport = transport
        self.context.connections.add(self)
        head = Request(
            raw_target,
            Headers([(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]),
        ).serialize()
        # httptools already parsed this head; the library parses it again so its own
        # state machine moves past the handshake, the way its sans-I/O guide intends.
        self.ws.receive_data(head)
        events = self.ws.events_received()
        request = events[0] if events and isinstance(events[0], Request) else None
        if request is None:
            self._refuse_unparsed()
            return
        response = self.ws.accept(request)
        if response.status_code != 101:
            error = self.ws.handshake_exc
            if isinstance(error, InvalidHeaderValue) and error.name == "Sec-WebSocket-Version":
                # RFC 6455 4.4: a version we do not speak gets 426 and the one we do
                # (the library answers 400). RFC 9110 7.8: a 426 names the protocol it
                # requires in Upgrade, and a sender of Upgrade lists "upgrade" in Connection.
                response = self.ws.reject(426, "Unsupported WebSocket version; use 13.\n")
                response.headers["Sec-WebSocket-Version"] = "13"
                response.headers["Upgrade"] = "websocket"
                del response.headers["Connection"]
                response.headers["Connection"] = "Upgrade, close"
            self.stats = self.context.unrouted  # answered by uvhost, as a bad request is
            self.stats.counts[REQUESTS] += 1
            self._respond(response)  # 400/426; the app is not called
            self.phase = Phase.CLOSED
            self._flush()
            self.close()
            return
        self.handshake = response
        self.ws.extensions = skip_small_messages(
            self.ws.extensions, self.settings.deflate_min_bytes
        )
        self.stats.counts[REQUESTS] += 1
        self.task = self.loop.create_task(self._run())
        if rest:
            self.data_received(rest)

    def _refuse_unparsed(self) -> None:
        """The library refused a head httptools accepted (more than its 128 headers, a line
        over its 8 KiB, a body) and has ended its side of the stream: its own answer (431,
        414) goes out, or our 400 when it wrote none. The app is not called."""
        self.stats = self.context.unrouted  # answered by uvhost, as a bad request is
        self.stats.counts[REQUESTS] += 1
        self.phase = Phase.CLOSED
        answer = b"".join(self.ws.data_to_send())
        if answer.startswith(b"HTTP/1.1 ") and answer[9:12].isdigit():
            status = int(answer[9:12])
        else:
            status = 400
            answer = self.context.canned(400, "bad WebSocket handshake")
        self._count(status)
        if self.transport is not None:
            self.transport.write(answer)
        self.close()

    async def _run(self) -> None:
        app = self.endpoint.app
        try:
            await app(self.scope, self.receive, self.send)
        except ClientDisconnectedError:
            return  # our own "the peer is gone", let through by the app: nothing to report
        except Exception as error:  # noqa: BLE001 - any app failure is answered, not raised
            self._log("exception in ASGI app", error)
            self._answer_failure()
            return
        if self.phase is Phase.CONNECTING:
            self._log("ASGI app returned without accepting or closing the WebSocket")
            self._answer_failure()
        elif self.phase is Phase.DENYING:
            self._log("ASGI app returned before completing its denial response")
            self.close()
        elif self.phase is Phase.OPEN:
            self._send_close(1000, "")

    def _answer_failure(self) -> None:
        if self.phase in (Phase.CONNECTING, Phase.DENYING):
            self.phase = Phase.CLOSED
            if self.denial_status:  # part of a denial already decided; nothing valid to add
                self.close()
                return
            self._respond(self.ws.reject(500, "Internal Server Error\n"))
            self._flush()
            self.close()
        elif self.phase is Phase.OPEN:
            self._send_close(INTERNAL_ERROR, "")

    def _log(self, message: str, error: BaseException | None = None) -> None:
        logger.error("%s (WebSocket %s)", message, self.scope["path"], exc_info=error)

    # -------------------------------------------------------------- receive

    async def receive(self) -> Message:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        incoming = self.incoming
        while not incoming:
            if self.disconnect_code is not None:
                return self._disconnect_message()
            waiter = self.waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        message = incoming.popleft()
        if self.reading_paused and len(incoming) < self.settings.max_queue:
            self._resume_reading()
        return message

    def _disconnect_message(self) -> Message:
        code, reason = self.disconnect_code, self.disconnect_reason
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # ----------------------------------------------------------------- send

    async def send(self, message: Message) -> None:
        kind = message["type"]
        phase = self.phase
        if phase is OPEN:
            if kind == "websocket.send":
                self._send_data(message)
                if self.flow.blocked is not None:  # a coroutine call only when it can wait
                    await self.flow.wait()
                return
            if kind == "websocket.close":
                self._send_close(int(message.get("code") or 1000), message.get("reason") or "")
                return
        elif phase is CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
                return
            if kind == "websocket.close":
                self._deny_403()
                return
            if kind == "websocket.http.response.start":
                self._start_denial(message)
                return
        elif phase is Phase.DENYING and kind == "websocket.http.response.body":
            self._continue_denial(message)
            return
        elif phase is Phase.CLOSED and (
            kind in ("websocket.send", "websocket.close") or self.disconnect_code is not None
        ):  # the peer is gone: an OSError, even for an accept that came too late
            raise ClientDisconnectedError("the WebSocket is closed")
        raise RuntimeError(f"ASGI: unexpected {kind!r} in WebSocket phase {phase.name}")

    def _accept(self, message: Message) -> None:
        response = self.handshake
        if response is None:
            raise RuntimeError("websocket.accept before the handshake was read")
        headers = response.headers
        if "Server" in headers:
            del headers["Server"]
        if self.context.settings.server_header:
            headers["Server"] = wire.SERVER_NAME.decode()
        if not self.context.settings.date_header and "Date" in headers:
            del headers["Date"]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers["Sec-WebSocket-Protocol"] = subprotocol
        for name, value in message.get("headers") or ():
            wire.header_line(name, value)  # raises on CR, LF, NUL or a bad name
            headers[name.decode("latin-1")] = value.decode("latin-1")
        if self.transport is not None and _expects_continue(self.scope["headers"]):
            # RFC 9110 7.8: Upgrade with "Expect: 100-continue" gets the 100 before the 101.
            self.transport.write(wire.CONTINUE)
        self._respond(response)
        self.phase = Phase.OPEN
        self._flush()
        self._schedule_ping()
        self.before_accept = False
        self._set_reading()
        early, self.early = self.early, b""
        if early:
            self.data_received(early)
        if self.drain_code is not None:  # the worker began draining while the app decided
            self._send_close(self.drain_code, "server shutting down")

    def _deny_403(self) -> None:
        self.phase = Phase.CLOSED
        self._respond(self.ws.reject(403, "Forbidden\n"))
        self._flush()
        self.close()

    def _start_denial(self, message: Message) -> None:
        self.phase = Phase.DENYING
        self.denial_status = wire.response_status(message["status"])
        for name, value in message.get("headers") or ():
            wire.header_line(name, value)
            self.denial_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def _continue_denial(self, message: Message) -> None:
        self.denial_body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.denial_body)
        headers = Headers([(n, v) for n, v in self.denial_headers if n.lower() != "content-length"])
        settings = self.context.settings
        if settings.date_header and "Date" not in headers:  # RFC 9110 6.6.1: Date on a 4xx
            headers["Date"] = wire.http_date().decode()
        if settings.server_header and "Server" not in headers:  # as on the 101 and HTTP
            headers["Server"] = wire.SERVER_NAME.decode()
        headers["Content-Length"] = str(len(body))
        headers["Connection"] = "close"
        status = self.denial_status
        reason = wire.status_line(status).decode("latin-1").split(" ", 2)[2].strip()
        self.phase = Phase.CLOSED
        self._respond(Response(status, reason, headers, body))
        self._flush()
        self.close()

    def _send_data(self, message: Message) -> None:
        """One data frame out. Not `_flush()`: a data frame sent while OPEN never ends
        the stream nor starts a close, so there is nothing to check but the write."""
        ws = self.ws
        data = message.get("bytes")
        if data is not None:
            if message.get("text") is not None:  # ASGI: exactly one of the two
                raise RuntimeError("ASGI: websocket.send with both 'bytes' and 'text'")
            ws.send_binary(data)
        else:
            text = message.get("text")
            if text is None:
                raise RuntimeError("ASGI: websocket.send needs 'bytes' or 'text'")
            ws.send_text(text.encode())
        chunks = ws.data_to_send()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _send_close(self, code: int, reason: str) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
        self.phase = Phase.CLOSED
        self._flush()

    # ------------------------------------------------------------ transport

    def data_received(self, data: bytes) -> None:
        if self.before_accept:
            # Not parsed before the accept: the library would answer a ping with a pong
            # ahead of the 101. Held instead (reading still sees the peer leave), up to
            # EARLY_LIMIT; then reading pauses until the app decides.
            self.early += data
            if len(self.early) >= EARLY_LIMIT:
                self._set_reading()
            return
        ws = self.ws
        ws.receive_data(data)  # any number of frames, whole or partial
        for frame in ws.events_received():
            if not isinstance(frame, Frame):
                continue  # only frames follow the handshake's request
            opcode = frame.opcode
            if opcode is TEXT or opcode is BINARY:
                if frame.fin:  # a whole message in one frame: the common case
                    self._message(opcode, frame.data)
                else:
                    self.fragment_opcode = opcode
                    self.fragments += frame.data
            elif opcode is CONT:
                self.fragments += frame.data
                if frame.fin:
                    fragments, self.fragments = self.fragments, bytearray()
                    self._message(self.fragment_opcode, fragments)
            elif opcode is PONG and frame.data == self.ping_payload:
                self.ping_payload = None
                self._schedule_ping()
            # pings are answered by the library; a close is handled below
        if self.phase is not CLOSED and ws.state is WS_OPEN:
            chunks = ws.data_to_send()  # a pong at most, on the common path
            if chunks and self.transport is not None:
                self.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                self._stop_reading_if_backed_up()
            return
        self._ended()

    def _ended(self) -> None:
        """After data that closed or failed the stream: write what is left, tell the app why."""
        ws = self.ws
        self._flush()
        if ws.close_rcvd is not None:  # the peer's code; 1005 when its close frame had none
            self._closed(ws.close_rcvd.code, ws.close_rcvd.reason)
        elif ws.parser_exc is not None and ws.close_sent is not None:
            self._closed(ws.close_sent.code)  # the library failed the connection: 1002, 1009...
        elif ws.state is State.CLOSED:
            self._closed(ABNORMAL)

    def _message(self, opcode: Opcode | None, payload: bytes | bytearray | memoryview) -> None:
        """Queue one whole message for the app, wake it, and pause reading at max_queue."""
        phase = self.phase
        if phase is CLOSED or phase is DENYING:
            return  # a message that arrived before the 101 waits for the accept (CONNECTING)
        if type(payload) is not bytes:
            payload = bytes(payload)
        incoming = self.incoming
        if opcode is TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                self.ws.fail(INVALID_DATA, "invalid UTF-8 in a text message")
                self._closed(INVALID_DATA)
                return
            incoming.append({"type": "websocket.receive", "text": text})
        else:
            incoming.append({"type": "websocket.receive", "bytes": payload})
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(incoming) >= self.settings.max_queue and not self.reading_paused:
            self.reading_paused = True
            self._set_reading()

    def _resume_reading(self) -> None:
        self.reading_paused = False
        self._set_reading()
        if self.ping_payload is not None and self.ping_timer is None and self.phase is OPEN:
            # A ping timed out while we were not reading: wait for its pong from now on.
            self.ping_timer = self.loop.call_later(self.settings.ping_timeout, self._ping_timed_out)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        chunks = self.ws.data_to_send()
        end = chunks and chunks[-1] == b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if data and not transport.is_closing():
            transport.write(data)
            self._stop_reading_if_backed_up()
        if end:
            self.close()  # the closing handshake is complete (or the handshake failed)
        elif self.ws.close_expected() and self.close_timer is None:
            # We sent a close frame: give the peer ping_timeout to answer it before
            # the TCP connection is closed anyway.
            self.close_timer = self.loop.call_later(self.settings.ping_timeout, self.close)

    def _respond(self, response: Response) -> None:
        """Send the handshake's answer (101 or a refusal) and count it."""
        self.ws.send_response(response)
        self._count(response.status_code)

    def _count(self, status: int) -> None:
        if self.counted:
            return
        self.counted = True
        stats = self.stats
        if stats.finish(status, 0, 0, self.started_at):
            log_slow_request(self.scope, status, self.started_at, self.context.name, self.endpoint)
        if status == 101:
            stats.counts[WEBSOCKETS] += 1
            stats.counts[WEBSOCKETS_OPEN] += 1
            self.counted_open = True

    def _closed(self, code: int, reason: str = "") -> None:
        """The connection is over for the app: the first code seen is what it is told."""
        if self.disconnect_code is None:
            self.disconnect_code, self.disconnect_reason = code, reason
        self.phase = Phase.CLOSED
        self._cancel_ping()
        self._wake()
        self.flow.resume()

    def _count_end(self) -> None:
        """Over: a handshake never answered ends without a response; an open session closes."""
        self._count(0)
        if self.counted_open:
            self.counted_open = False
            self.stats.counts[WEBSOCKETS_OPEN] -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.forget(self)
        self._count_end()
        self.ws.receive_eof()
        rcvd = self.ws.close_rcvd
        self._closed(*((rcvd.code, rcvd.reason) if rcvd is not None else (ABNORMAL, "")))
        self.transport = None

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()
        if self.answers_backed_up:
            self.answers_backed_up = False
            self._set_reading()

    def _stop_reading_if_backed_up(self) -> None:
        """After writing what reading made the library say (pongs, a close reply): no send
        waits for those, so a peer that pings and never reads would grow our write buffer
        without end. Read nothing more until it takes what is written (resume_writing)."""
        if self.flow.blocked is not None and not self.answers_backed_up:
            self.answers_backed_up = True
            self._set_reading()

    def _set_reading(self) -> None:
        """Read the socket unless the app has not accepted yet, lags behind max_queue, or
        the peer does not read what we write."""
        paused = (
            (self.before_accept and len(self.early) >= EARLY_LIMIT)
            or self.reading_paused
            or self.answers_backed_up
        )
        transport = self.transport
        if paused is self.socket_paused or transport is None or transport.is_closing():
            return
        self.socket_paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    # ---------------------------------------------------------------- pings

    def _schedule_ping(self) -> None:
        self._cancel_ping()
        self.ping_timer = self.loop.call_later(self.settings.ping_interval, self._ping)

    def _ping(self) -> None:
        if self.ws.state is not State.OPEN:
            return
        self.ping_payload = os.urandom(4)
        self.ws.send_ping(self.ping_payload)
        self._flush()
        self.ping_timer = self.loop.call_later(self.settings.ping_timeout, self._ping_timed_out)

    def _ping_timed_out(self) -> None:
        self.ping_timer = None
        if self.reading_paused and self.ws.state is State.OPEN:
            # We stopped reading (the app lags behind max_queue): the pong may be sitting
            # unread behind messages the app has not taken yet. Our lag is not the peer's
            # silence; `_resume_reading` gives the pong a full ping_timeout once we read again.
            return
        if self.ws.state is State.OPEN:
            self.ws.fail(INTERNAL_ERROR, "keepalive ping timeout")
            self._flush()
        self._closed(INTERNAL_ERROR)
        self.abort()

    def _cancel_ping(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None

    # --------------------------------------------- the worker's connection API

    def check_timeouts(self, now: float) -> None:
        """Pings time out on their own timers; the tick only drops a peer that has taken
        none of our bytes for send_timeout (an app's send waits on it meanwhile)."""
        if self.context.send_stuck(self.flow, self.transport, now):
            self.abort()

    def shutdown(self, code: int = GOING_AWAY) -> None:
        """Draining: close open WebSockets with 1001 (or 1012 on a restart)."""
        if self.phase is Phase.OPEN:
            self._send_close(code, "server shutting down")
        elif self.phase is Phase.CONNECTING and self.task is None:
            self.close()
        elif self.phase is Phase.CONNECTING:
            self.drain_code = code  # the app may still accept; it is closed right after

    def close(self) -> None:
        self._cancel_ping()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self) -> None:
        self._count_end()  # counted now: the worker may report before connection_lost runs
        self.close()
        if self.transport is not None:
            self.transport.abort()


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    """The handshake asked for "Expect: 100-continue" (read only when the app accepts)."""
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in headers)


def websocket_scope(http_scope: Scope, headers: list[tuple[bytes, bytes]]) -> Scope:
    """The ASGI WebSocket scope for an upgrade request, from the HTTP scope built for it."""
    scope = cast(dict[str, Any], dict(http_scope))
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if http_scope["scheme"] in ("https", "wss") else "ws"
    protocols = [
        item.strip().decode("latin-1")
        for name, value in headers
        if name == b"sec-websocket-protocol"
        for item in value.split(b",")
        if item.strip()
    ]
    scope["subprotocols"] = protocols
    scope["extensions"] = {"websocket.http.response": {}}
    return scope

"""One HTTP request/response as seen by an ASGI app: `receive` and `send`.

Invariants:
- One explicit `Phase` per exchange. An ASGI message that the phase does
  not allow is one table lookup and one clear RuntimeError for the app.
- Request body chunks are kept as the parser hands them and joined at most
  once per `receive`; nothing is copied on the way in.
- The response head is held back until the first body message, so a head
  and a complete body leave in a single write with a content-length.
- This module decides; the connection (`http.py` for HTTP/1.1, a stream of
  `http2.py`) owns the transport, the timers and the parser. The exchange
  talks to it only through `Carrier`, so every rule here is written once for
  both protocols.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from uvhost.observe.stats import BYTES_IN, RouteStats
from uvhost.server import wire
from uvhost.server.asgi_types import ClientDisconnectedError, Message, Scope
from uvhost.server.slow_log import log_slow

if TYPE_CHECKING:
    from uvhost.server.context import ListenerContext
    from uvhost.server.router import Endpoint

UNLIMITED = 1 << 62  # max_body for a request no route answers (the 404 reads nothing)
READ_HIGH_WATER = 256 * 1024  # pause reading while this much body waits for the app
STAGE_ABOVE = 16 * 1024  # bodies at least this big are written without being copied

DISCONNECT: Message = {"type": "http.disconnect"}
ZEROCOPY_SEND = "http.response.zerocopysend"
READ_CHUNK = 64 * 1024  # a file's bytes per body message where sendfile cannot be used


class Carrier(Protocol):
    """What an exchange needs of the connection (or HTTP/2 stream) that carries it."""

    loop: asyncio.AbstractEventLoop
    context: ListenerContext

    def send_continue(self) -> None: ...

    def update_reading(self) -> None: ...

    def stage(self, data: bytes) -> None: ...

    async def write(self, data: bytes) -> None: ...

    def write_now(self, data: bytes) -> None: ...

    def finish_response(self, exchange: Exchange, data: bytes) -> None: ...

    def close(self) -> None: ...

    def send_failure(self, exchange: Exchange) -> None: ...

    def can_send_file(self) -> bool: ...

    async def send_file(self, head: bytes, fd: int, offset: int, count: int) -> int: ...


class ResponsePhase(enum.IntEnum):
    """Where the response is; an IntEnum so table lookups hash in C on the request path."""

    START = 0  # awaiting http.response.start
    HEAD = 1  # head held back, awaiting the first body message
    BODY = 2  # streaming the body
    DONE = 3  # response complete


class Phase:
    """`ResponsePhase`'s members as attributes of a plain class, which the code reads.

    On 3.11 the enum's metaclass defines `__getattr__`, so every `ResponsePhase.DONE`
    goes through a slow attribute hook (about ten reads per request: 8% of a hello
    request's instructions, counted by callgrind); a plain class attribute is a
    type-cache hit. The values stay enum members, so messages can name them.
    """

    START = ResponsePhase.START
    HEAD = ResponsePhase.HEAD
    BODY = ResponsePhase.BODY
    DONE = ResponsePhase.DONE


EXPECTED_SEND = ("http.response.start", "http.response.body", "http.response.body", "nothing more")


class Exchange:
    __slots__ = (
        "allows_body",
        "body",
        "body_complete",
        "body_size",
        "buffered",
        "content_length",
        "counted",
        "counts_body",
        "disconnected",
        "endpoint",
        "expect_continue",
        "framing",
        "headers_out",
        "http11",
        "is_head",
        "keep_alive",
        "late_warned",
        "max_body",
        "phase",
        "protocol",
        "request_delivered",
        "response_bytes",
        "scope",
        "sent",
        "started_at",
        "stats",
        "status",
        "waiter",
    )

    def __init__(
        self,
        protocol: Carrier,
        scope: Scope,
        endpoint: Endpoint | None,
        *,
        keep_alive: bool,
        expect_continue: bool,
        max_body: int,
        started_at: float,
        stats: RouteStats,
    ) -> None:
        self.protocol = protocol
        self.scope = scope
        self.endpoint = endpoint
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.max_body = max_body
        self.started_at = started_at
        self.stats = stats
        self.counted = False  # how it ended is counted once
        self.late_warned = False  # a message after the response was complete was logged
        self.http11 = scope["http_version"] == "1.1"
        self.is_head = scope["method"] == "HEAD"
        self.phase = Phase.START
        self.body: list[bytes] = []
        self.buffered = 0
        self.body_size = 0
        self.body_complete = False
        self.request_delivered = False
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers_out: Any = ()
        self.framing: wire.Framing | None = None
        self.content_length = -1  # declared by the app; -1 when uvhost frames the body
        self.allows_body = True  # decided with the head: no body for HEAD, 1xx, 204, 304
        self.counts_body = False
        self.sent = 0
        self.response_bytes = 0

    def record(self, status: int) -> None:
        """Count how this exchange ended (status 0: without a complete response), once."""
        if not self.counted:
            self.counted = True
            if self.stats.finish(status, self.body_size, self.response_bytes, self.started_at):
                log_slow(self, status)  # slow_request_threshold: off, never reached

    # ------------------------------------------------ events from the parser

    def feed_body(self, data: bytes) -> bool:
        """Buffer a body chunk; False when the body is over the app's limit."""
        self.body_size += len(data)
        if self.body_size > self.max_body:
            return False
        if self.phase is not Phase.DONE and not self.disconnected:
            self.body.append(data)
            self.buffered += len(data)
            self._wake()
        elif self.counted:  # the rest of a body the response did not wait for
            self.stats.counts[BYTES_IN] += len(data)
        return True

    def finish_body(self) -> None:
        self.body_complete = True
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------- receive

    async def receive(self) -> Message:
        while True:
            if self.disconnected or self.phase is Phase.DONE:
                return DISCONNECT
            if self.body or (self.body_complete and not self.request_delivered):
                return self._next_body_message()
            if self.request_delivered:
                pass  # wait for a disconnect or the end of the response
            elif self.expect_continue:
                self.expect_continue = False
                self.protocol.send_continue()
            self.waiter = self.protocol.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _next_body_message(self) -> Message:
        chunks = self.body
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body = []
        was_high = self.buffered >= READ_HIGH_WATER
        self.buffered = 0
        if was_high:
            self.protocol.update_reading()
        more = not self.body_complete
        self.request_delivered = not more
        return {"type": "http.request", "body": data, "more_body": more}

    # ---------------------------------------------------------------- send

    async def send(self, message: Message) -> None:
        if self.disconnected:  # ASGI 2.4: an OSError, so a streaming app stops
            raise ClientDisconnectedError("the client has disconnected")
        kind = message["type"]
        phase = self.phase
        if phase is Phase.DONE or kind != EXPECTED_SEND[phase]:
            if kind == ZEROCOPY_SEND and phase is not Phase.DONE and phase is not Phase.START:
                await self._send_file(message)  # off the usual path: only on a mismatch
                return
            if phase is Phase.DONE:
                self._ignore_late(kind)
                return
            expected = EXPECTED_SEND[phase]
            raise RuntimeError(f"ASGI: sent {kind!r} in phase {phase.name}; expected {expected}")
        if phase is Phase.START:
            self.status = wire.response_status(message["status"])
            self.headers_out = message.get("headers") or ()
            self.phase = Phase.HEAD
            return
        body: bytes = message.get("body", b"")
        if body.__class__ is not bytes:
            body = _as_bytes(body)  # before the phase moves on: a 500 can still go out
        more: bool = message.get("more_body", False)
        out = self._frame(body, more)
        if not more:
            self._end(out)
        elif out:
            await self.protocol.write(out)

    def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole response at once, from an app's `answer_at_once` (router.Endpoint): what
        `http.response.start` and one last `http.response.body` do, with no task."""
        self.status = status
        self.headers_out = headers
        self.phase = Phase.HEAD
        self._end(self._frame(body, False))

    def _end(self, out: bytes) -> None:
        """The last bytes of the response (`out`, head included if not yet written)."""
        self.phase = Phase.DONE
        if self.counts_body and self.sent < self.content_length:
            app_error(self, f"response ended after {self.sent} of {self.content_length} bytes")
            self.protocol.write_now(out)
            self.protocol.close()
            return
        self.protocol.finish_response(self, out)

    async def _send_file(self, message: Message) -> None:
        """`http.response.zerocopysend` (the ASGI extension; folder apps send it for files
        too large to keep in memory): `count` bytes of an open file from `offset`, as one
        body message would carry them.

        Where the carrier can (HTTP/1.1 on plain TCP or Unix sockets) the kernel
        copies the file to the socket (`os.sendfile`) and no byte of it passes
        through Python; elsewhere (TLS, HTTP/2, a chunked body) the file is read in
        READ_CHUNK pieces sent as body messages, each waiting on the same
        back-pressure as an app's `send`. The hook costs the usual path nothing: it
        is reached only when a message is not the one the phase expects. A file
        that ends before `count` bytes ends the response as an app's short body
        does (logged, connection closed).
        """
        file = message["file"]
        fd: int = file if isinstance(file, int) else file.fileno()
        offset = int(message.get("offset") or 0)
        count = message.get("count")
        if count is None:
            count = max(0, os.fstat(fd).st_size - offset)
        more = bool(message.get("more_body", False))
        prefix = self._open_body(b"", True) if self.phase is Phase.HEAD else b""
        framing: wire.Framing = self.framing  # type: ignore[assignment]  # set by _open_body
        carrier = self.protocol
        if self.allows_body and count and not framing.chunked and carrier.can_send_file():
            if self.counts_body and self.sent + count > self.content_length:
                self._too_long(head_unwritten=bool(prefix))
            written = await carrier.send_file(prefix, fd, offset, count)
            self.response_bytes += written
            if self.counts_body:
                self.sent += written
            if self.disconnected:
                raise ClientDisconnectedError("the client has disconnected")
            if written < count:
                self.phase = Phase.DONE
                app_error(self, f"file ended after {written} of {count} bytes")
                carrier.close()
                return
            if not more:
                await self.send({"type": "http.response.body", "body": b""})
            return
        if prefix:
            carrier.stage(prefix)
        if not self.allows_body:
            count = 0
        while True:
            data = os.pread(fd, min(READ_CHUNK, count), offset) if count else b""
            offset += len(data)
            count -= len(data)
            last = count <= 0 or not data
            await self.send(
                {"type": "http.response.body", "body": data, "more_body": more or not last}
            )
            if last:
                return

    def _ignore_late(self, kind: str) -> None:
        """ASGI: after the last body message, further messages are ignored. Logged once
        per response as a warning, so the app's bug is seen without failing its task."""
        if not self.late_warned:
            self.late_warned = True
            scope = self.scope
            self.protocol.context.logger.warning(
                "ASGI app sent %r after its response was complete; ignored (%s %s)",
                kind,
                scope["method"],
                scope["path"],
            )

    def _frame(self, body: bytes, more: bool) -> bytes:
        """The bytes for one body message, with the head in front of the first."""
        prefix = b""
        if self.phase is Phase.HEAD:
            prefix = self._open_body(body, more)
        framing: wire.Framing = self.framing  # type: ignore[assignment]  # set by _open_body
        if not body or not self.allows_body:
            tail = wire.LAST_CHUNK if framing.chunked and not more else b""
            return prefix + tail if prefix or tail else b""
        if len(body) >= STAGE_ABOVE:
            return self._stage_large(prefix, body, more, framing.chunked)
        if framing.chunked:
            data = wire.chunk(body) + (b"" if more else wire.LAST_CHUNK)
        else:
            data = body
            if self.counts_body:
                self.sent += len(body)
                if self.sent > self.content_length:
                    self._too_long(head_unwritten=bool(prefix) or self.head_pending())
        self.response_bytes += len(body)  # counted once it is sure to be written
        return prefix + data if prefix else data

    def head_pending(self) -> bool:
        """Whether a head decided by `_open_body` is still unwritten beside the exchange
        (HTTP/2 holds it in its stream; HTTP/1.1 returns it as the prefix)."""
        return False

    def _open_body(self, body: bytes, more: bool) -> bytes:
        """Decide the head with the first body message; the head's bytes, to go first."""
        context = self.protocol.context
        preamble = context.preamble
        if context.request_ids is not None and context.request_ids.response:
            preamble, self.headers_out = context.request_ids.response_head(
                preamble, self.headers_out, self.scope
            )
        framing = wire.build_head(
            self.status,
            self.headers_out,
            preamble=preamble,
            defaults=context.defaults,
            # A client told to wait for 100 Continue that never got it may still send
            # the body: say the connection closes (http.py closes it).
            keep_alive=self.keep_alive and not (self.expect_continue and not self.body_complete),
            http11=self.http11,
            first_body=body,
            more_body=more,
            method_is_head=self.is_head,
        )
        self.framing = framing
        self.keep_alive = framing.keep_alive
        declared = framing.content_length
        self.content_length = -1 if declared is None else declared
        self.allows_body = framing.allows_body
        self.counts_body = declared is not None and self.allows_body
        self.phase = Phase.BODY
        return framing.head

    def _too_long(self, *, head_unwritten: bool) -> NoReturn:
        """More bytes than the content-length: the response is over here and now (a 500
        if its head is not written yet, else a close), whatever the app does after
        catching the error; a later body message would otherwise pass the length
        check and leave a promise of bytes that never come on a kept connection."""
        if head_unwritten:
            self.phase = Phase.HEAD  # nothing written yet: a 500 can still go out
        error = ResponseTooLongError(
            f"response body longer than its content-length ({self.content_length} bytes)"
        )
        app_error(self, str(error))
        answer_app_failure(self)
        raise error

    def _stage_large(self, prefix: bytes, body: bytes, more: bool, chunked: bool) -> bytes:
        """Large bodies are never concatenated: the pieces go out in one writev."""
        protocol = self.protocol
        if not chunked and self.counts_body:
            self.sent += len(body)
            if self.sent > self.content_length:  # checked before the head is queued
                self._too_long(head_unwritten=bool(prefix))
        if prefix:
            protocol.stage(prefix)
        self.response_bytes += len(body)
        if chunked:
            protocol.stage(b"%x\r\n" % len(body))
            protocol.stage(body)
            return b"\r\n" if more else b"\r\n" + wire.LAST_CHUNK
        return body


class ResponseTooLongError(RuntimeError):
    """The app sent more bytes than its content-length; answered (500 or a close) and
    logged before it is raised into the app."""


def _as_bytes(body: Any) -> bytes:
    """ASGI bodies are bytes; a bytearray or memoryview is taken as bytes, anything else
    is the app's mistake, raised from its `send` while nothing of the response is written."""
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"ASGI: http.response.body 'body' must be bytes, not {type(body).__name__}")


def app_error(exchange: Exchange, message: str, error: BaseException | None = None) -> None:
    scope = exchange.scope
    exchange.protocol.context.logger.error(
        "%s (%s %s)", message, scope["method"], scope["path"], exc_info=error
    )


def answer_app_failure(exchange: Exchange) -> None:
    """500 if nothing of the response was written yet, otherwise cut it (the connection,
    or the HTTP/2 stream); the exchange is done either way (what the app sends after is
    ignored)."""
    if exchange.disconnected:
        exchange.record(0)
        return
    carrier = exchange.protocol
    if exchange.phase in (Phase.START, Phase.HEAD):
        carrier.send_failure(exchange)
        exchange.record(500)
    exchange.phase = Phase.DONE
    carrier.close()
    exchange.record(0)


EAGER_TASKS: bool = sys.version_info >= (3, 12)
"""Whether a request's task may start eagerly (3.12's `eager_start`): the app runs at once,
inside the parser's callback, up to its first real suspension, so one that answers
without waiting costs no scheduling round trip. `current_task()` and contextvars behave
as in any task.

Either way the response is held to the end of the loop turn (flow.TurnWriter): the
caller raises `turn_writer.starting` before making the task; a lazy task lowers it when
it first runs (`run_app(..., lazy=True)`), an eager one's caller once the call returns.
Pipelined requests started as an earlier response finishes get lazy tasks: started
eagerly, each would run inside the one before it, one level deeper per request.
"""

request_task: Any = functools.partial(asyncio.Task, name="uvhost-request")
"""Makes a lazy request task: `request_task(run_app(app, exchange), loop=loop)`. Not
`loop.create_task`: on 3.11 an unnamed Task formats "Task-N" as it is made (about 1.3%
of a hello request, counted by callgrind) before uvloop would set a name; one fixed
name costs nothing."""

eager_task: Any
if sys.version_info >= (3, 12):
    eager_task = functools.partial(asyncio.Task, eager_start=True, name="uvhost-request")
else:
    eager_task = request_task


async def run_app(app: Any, exchange: Exchange, lazy: bool = True) -> None:
    """The app's task for one request: every way it can end is answered and counted."""
    if lazy:  # see EAGER_TASKS: an eager task's caller lowers the count itself
        exchange.protocol.context.turn_writer.starting -= 1
    try:
        await app(exchange.scope, exchange.receive, exchange.send)
    except ResponseTooLongError:
        return  # answered and logged where it was raised (Exchange._too_long)
    except wire.BadResponseHeaderError as error:
        app_error(exchange, f"invalid response: {error}")
        answer_app_failure(exchange)
        return
    except Exception as error:  # noqa: BLE001 - any app failure is answered, not raised
        if isinstance(error, ClientDisconnectedError) and exchange.disconnected:
            exchange.record(0)  # our own "the client left", let through: no app fault
            return
        app_error(exchange, f"exception in {getattr(app, 'uvhost_interface', 'ASGI')} app", error)
        answer_app_failure(exchange)
        return
    if exchange.phase is Phase.DONE or exchange.disconnected:
        exchange.record(0)  # unless already counted: cut short, or the client left
        return
    if exchange.phase is Phase.START:
        app_error(exchange, "ASGI app returned without starting a response")
    else:
        app_error(exchange, "ASGI app returned before completing its response")
    answer_app_failure(exchange)

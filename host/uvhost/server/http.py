"""HTTP/1.1 over httptools: one `HttpProtocol` per connection.

Invariants:
- Never imports supervisor/: this is the worker's side only.
- Requests on a connection are answered in order: one exchange runs at a
  time, later pipelined requests wait in `pipeline` and reading pauses.
- A client fault (malformed request, head too large or too slow, body too
  large, too many connections) gets a canned 4xx/5xx and a closed
  connection, written only after any earlier response, never a crash. An
  app fault is logged once and answered with 500 or a close.
- Writes are coalesced: the last message of a response leaves with any
  buffered bytes in one `write()`; intermediate chunks are flushed at the
  end of the loop turn (or at 64 KiB), so a lone chunk is never delayed.
- No per-request allocation for logging when the access log is off.
- Draining never drops a request the client has already sent: closing an
  idle keep-alive connection at once loses the request that crosses our FIN
  (or is reset by our close). A busy client's next request, within
  DRAIN_IDLE_GRACE, is answered with "Connection: close"; a quiet
  connection is closed by the tick once idle that long.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import deque
from typing import cast

import httptools

from uvhost.observe.stats import REQUESTS, clock
from uvhost.server import wire
from uvhost.server.asgi_types import ASGIApp, Scope
from uvhost.server.context import ListenerContext
from uvhost.server.exchange import (
    EAGER_TASKS,
    READ_HIGH_WATER,
    UNLIMITED,
    Exchange,
    Phase,
    eager_task,
    request_task,
    run_app,
)
from uvhost.server.flow import FLUSH_THRESHOLD, WriteFlow, peer_hung_up
from uvhost.server.http2 import PRI_HEAD, Http2Protocol
from uvhost.server.linger import linger
from uvhost.server.router import Endpoint, not_found
from uvhost.server.scope import http_scope
from uvhost.server.websocket import WebSocketProtocol, websocket_scope

DRAIN_IDLE_GRACE = 1.0  # seconds an idle connection may still send one request while draining


class HeadTooLargeError(Exception):
    """Raised inside a parser callback; turned into 431 by `data_received`."""


class UnsupportedVersionError(Exception):
    """HTTP/0.9 (which llhttp accepts) or anything but 1.0/1.1; turned into 505."""


class ParsingStoppedError(Exception):
    """Raised from a parser callback once the connection was answered for good: llhttp
    would otherwise go on through the rest of the read and start the next request."""


class BadRequestError(ValueError):
    """A head llhttp accepted but the spec does not (its Host, its framing, its target);
    turned into `status` (400 unless said) with this message by `data_received`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


_METHOD = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+ ")  # a request line's method and SP

# Request header names the protocol reads itself, by kind: one dict lookup per header.
CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING = 1, 2, 3, 4
_request_kind = {
    b"content-length": CONTENT_LENGTH,
    b"expect": EXPECT,
    b"host": HOST,
    b"transfer-encoding": TRANSFER_ENCODING,
}.get


class HttpProtocol(asyncio.Protocol):
    given: tuple[tuple[str, int] | None, tuple[str, int] | None] | None = None
    """(client, server) from a PROXY header (proxy_intake.py) instead of the socket's; set on
    the instance before `connection_made`. A class attribute, so a connection without a
    PROXY header pays no store for it, only one lookup at connection_made."""

    def __init__(self, context: ListenerContext, loop: asyncio.AbstractEventLoop) -> None:
        self.context = context
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        # HTTP/1.2 and the like reach on_headers_complete, which serves 1.x as 1.1 (RFC
        # 9110 6.2) and answers other versions 505; strict llhttp would say 400 first
        self.parser.set_dangerous_leniencies(lenient_version=True)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.exchange: Exchange | None = None  # the one whose response is being written
        self.parsing: Exchange | None = None  # the one whose body the parser is reading
        self.pipeline: deque[Exchange] = deque()
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.head_fed = 0  # bytes of whole reads into the current unfinished head; -1: it
        # began in the read being parsed
        self.framing_fed = 0  # bytes of reads into a body that brought no body bytes
        self.content_length = -1
        self.expect_continue = False
        self.host: bytes | None = None
        self.known_host = b"\0"  # the last Host found valid on this connection (none yet:
        # a value llhttp never passes, so a missing Host, None, differs from it too)
        self.transfer_encoding = False
        self.idle_since: float | None = None  # loop time the connection went idle
        self.head_since: float | None = None  # loop time a request head began arriving
        self.body_since: float | None = None  # (tick) time the body last made progress
        self.in_head = False
        self.reading_paused = False
        self.reading_done = False  # after a fault or an upgrade we do not speak: for good
        self.flow = WriteFlow(loop)
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.flush_scheduled = False
        self.deferred_reject: tuple[int, str, bool] | None = None
        self.upgrade: tuple[Scope, Endpoint] | None = None
        self.close_after_response = False
        self.last_request_read = False  # the client said it sends no more (close, HTTP/1.0)
        self.keeps_alive = True  # what the current request's head said, read once
        self.certificate: object = None  # the TLS context SNI chose (listeners with sites)

    # ----------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.context.connections.add(self)
        if self.given is None:
            peer = self.transport.get_extra_info("peername")
            self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
            sock = self.transport.get_extra_info("sockname")
            if isinstance(sock, tuple):
                self.server = (str(sock[0]), int(sock[1]))
            elif sock:
                self.server = (str(sock), None)
        else:
            self.client, self.server = self.given
        limit = self.context.settings.limit_concurrency
        if limit is not None and len(self.context.connections) > limit:
            self.reject(503, "the server is at its connection limit")
            return
        self.idle_since = self.loop.time()
        if self.context.draining:  # accepted (or handshaken) just as draining began
            self.close_after_response = True
        if self.context.sni is not None:
            ssl_object = self.transport.get_extra_info("ssl_object")
            self.certificate = ssl_object.context if ssl_object is not None else None
        if self.context.alpn_h2 and _alpn(self.transport) == "h2":
            self._switch_to_http2(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.forget(self)
        if self.exchange is not None:
            self.exchange.disconnect()
        for waiting in self.pipeline:
            waiting.disconnect()
        self.pipeline.clear()
        self.flow.resume()

    def data_received(self, data: bytes) -> None:
        in_head, parsing = self.in_head, self.parsing
        body_before = parsing.body_size if parsing is not None and not in_head else -1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self.upgrade is not None:
                self._switch_to_websocket(data[upgrade.args[0] :])
            else:  # an upgrade we do not speak: the app answers it as HTTP, and its
                # exchange (keep_alive off) closes the connection after that response,
                # which may come after earlier pipelined ones
                self._pause_for_good()
        except httptools.HttpParserCallbackError as error:
            self._callback_failed(error.__context__)
        except httptools.HttpParserError as error:
            alone = not in_head and self.exchange is None and not self.pipeline
            self._parse_failed(error, data, alone=alone)
        else:
            if self.in_head:
                if self.head_fed < 0:
                    self.head_fed = 0  # began in this read: only later reads are counted
                elif in_head:
                    self._unfinished_head(len(data))
                if self.head_since is None and self.exchange is None:
                    self.head_since = self.loop.time()
                    self.idle_since = None  # header_timeout applies now, not keep_alive_timeout
            elif body_before >= 0 and parsing is not None:
                self._body_progress(parsing, body_before, len(data))

    def _parse_failed(self, error: httptools.HttpParserError, data: bytes, *, alone: bool) -> None:
        """llhttp refused the bytes: 400, or 501 for a method it does not know, or it
        stopped at the HTTP/2 preface.

        `alone`: the refused request is the first thing in this read `data` (no
        request before it started an exchange), so a method llhttp does not know
        is told from garbage by its shape there ("TOKEN SP").
        """
        if self.last_request_read:  # bytes after "Connection: close": no request, no 400
            self.parsing = None
            self._pause_for_good()
        elif (
            self.context.h2c
            and self.known_host == b"\0"  # nothing served on this connection yet
            and self.exchange is None
            and self.parser.get_method() == b"PRI"  # llhttp stops at "PRI * HTTP/2.0"
            and (rest := _after_pri_head(data)) is not None
        ):  # h2c with prior knowledge (RFC 9113 3.3)
            self._switch_to_http2(PRI_HEAD + rest)
        elif (
            isinstance(error, httptools.HttpParserInvalidMethodError)
            and alone
            and _METHOD.match(data)
        ):
            # RFC 9110 9.1: a method the server does not implement is a 501
            self._reject_after_pending(501, "request method not implemented")
        else:
            self._reject_after_pending(400, "malformed HTTP request")

    def _callback_failed(self, cause: BaseException | None) -> None:
        """One of our parser callbacks raised: the client's fault, answered, or our bug."""
        if isinstance(cause, ParsingStoppedError):
            return  # answered already
        if isinstance(cause, HeadTooLargeError):
            self._reject_after_pending(431, "request head too large")
        elif isinstance(cause, UnsupportedVersionError):
            self._reject_after_pending(505, "only HTTP/1.0 and HTTP/1.1 are served")
        elif isinstance(cause, BadRequestError):
            self._reject_after_pending(cause.status, str(cause))
        elif isinstance(cause, ValueError | httptools.HttpParserError):  # a bad target
            self._reject_after_pending(400, "bad request")
        else:  # our own bug, not the client's: say so, and log it with its traceback
            self.context.logger.error("error while handling a request head", exc_info=cause)
            self._reject_after_pending(500, "internal server error")

    def _unfinished_head(self, size: int) -> None:
        """A whole read went into a head that is still not finished. httptools gathers an
        unfinished header (or URL) by copying it again for each read, and `on_header`
        sees its size only once it ends: an endless header would take memory and the
        loop without bound. So reads into one head are counted as they come."""
        self.head_fed += size
        if self.head_fed > self.context.settings.max_header_bytes:
            self._reject_after_pending(431, "request head too large")

    def _body_progress(self, parsing: Exchange, body_before: int, size: int) -> None:
        """Reads into a body that bring no body bytes are framing: chunk sizes, extensions,
        trailers. A few bytes each, legitimately; an endless trailer or extension is the
        head's problem again (see `_unfinished_head`), bounded by the same limit."""
        if self.parsing is not parsing or parsing.body_size != body_before:
            self.framing_fed = 0
            return
        self.framing_fed += size
        if self.framing_fed > self.context.settings.max_header_bytes:
            self._reject_after_pending(431, "request trailers too large")

    def eof_received(self) -> bool | None:
        # Close our side too; an exchange in flight sees a disconnect. A client that only
        # half-closed (`nc -N`) loses its answers, but a FIN looks the same from a client
        # that left, and apps rely on http.disconnect to stop work nobody will read.
        return None

    # ------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        if self.reading_done:  # rejected (413 from a callback, say): no request after it
            raise ParsingStoppedError
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.head_fed = -1
        self.content_length = -1
        self.expect_continue = False
        self.host = None
        self.transfer_encoding = False
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > self.context.settings.max_header_bytes:  # RFC 9112 3: a target
            raise BadRequestError("request target too long", 414)  # too long to parse

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a trailer (RFC 9110 6.5): dropped, never merged into the app's headers
        name = name.lower()
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.context.settings.max_header_bytes:
            raise HeadTooLargeError
        # RFC 9110 5.5: whitespace around a value is not part of it; llhttp drops only
        # the leading. (Returns the same object, no copy, when there is none.)
        value = value.rstrip(b" \t")
        kind = _request_kind(name)
        if kind is not None:
            if kind == CONTENT_LENGTH:
                self.content_length = int(value)
            elif kind == HOST:
                if self.host is not None:  # RFC 9112 3.2: which one would the app trust?
                    raise BadRequestError("more than one Host header")
                self.host = value
            elif kind == EXPECT:
                self.expect_continue = value.lower() == b"100-continue"
            else:
                if value.lower() != b"chunked":
                    _check_transfer_coding(value)
                self.transfer_encoding = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            if version[:2] != "1." or not version[2:].isdigit():
                raise UnsupportedVersionError(version)
            version = "1.1"  # RFC 9110 6.2: a higher 1.x is served as the highest we know
        wants_upgrade = parser.should_upgrade()
        if self.host != self.known_host or self.transfer_encoding or wants_upgrade:
            self._check_head(version, wants_upgrade)  # the usual request: one compare
        url = self.url
        if url[:1] == b"/":  # origin-form, nearly every request: no URL object needed
            raw_path, _, query = url.partition(b"?")
        elif url == b"*":
            # asterisk-form (RFC 9112 3.2.4), OPTIONS only: about the server as a whole, so
            # it goes to the app that owns the whole port or "/", with path "*".
            if parser.get_method() != b"OPTIONS":
                raise ValueError("the asterisk-form target is for OPTIONS only")  # 400
            raw_path, query = url, b""
        else:  # absolute-form ("http://host/path")
            raw_path, query = self._take_absolute_form(url, self.context)
        context = self.context
        scope, endpoint = http_scope(
            context,
            version,
            parser.get_method().decode("ascii"),
            raw_path,
            query,
            self.headers,
            self.host,
            self.certificate,
            self.client,
            self.server,
        )
        self.keeps_alive = keeps_alive = parser.should_keep_alive()
        if (
            wants_upgrade
            and self.exchange is None
            and _serves_websocket(endpoint, scope["method"], version, self.headers)
        ):
            self.upgrade = (scope, endpoint)  # type: ignore[assignment]  # endpoint checked
            return
        max_body = endpoint.max_body_bytes if endpoint is not None else UNLIMITED
        if self.content_length > max_body:
            is_head = scope["method"] == "HEAD"
            self._reject_after_pending(413, "request body too large", head=is_head)
            return
        exchange = Exchange(
            self,
            scope,
            endpoint,
            keep_alive=keeps_alive and not context.draining and not wants_upgrade,
            expect_continue=self.expect_continue and version == "1.1",
            max_body=max_body,
            started_at=clock(),
            stats=endpoint.stats if endpoint is not None else context.unrouted,
        )
        self.parsing = exchange
        self.body_since = context.next_tick
        self.idle_since = self.head_since = None
        if self.exchange is None and self.flow.blocked is None:
            self._start(exchange)
        else:  # behind another request, or until the client reads our answers (resume_writing)
            self.pipeline.append(exchange)
            self.update_reading()

    def _check_head(self, version: str, wants_upgrade: bool) -> None:
        """What llhttp lets through and the spec does not; a request naming the Host its
        connection's last request named, with no transfer coding and no Upgrade, never
        gets here."""
        if not self.context.http1:  # a listener that speaks HTTP/2 alone
            raise BadRequestError("this listener speaks HTTP/2 only", 505)
        if wants_upgrade and self.parser.get_method() == b"CONNECT":
            # RFC 9110 9.3.6: CONNECT asks for a tunnel, which only a proxy makes; an app
            # answering it with a body would leave the client reading a tunnel
            raise BadRequestError("CONNECT is not implemented by this server", 501)
        host = self.host
        if host is None:
            if version == "1.1":  # RFC 9112 3.2
                raise BadRequestError("an HTTP/1.1 request needs a Host header")
        elif host in wire.VALID_HOSTS or wire.valid_host(host):
            self.known_host = host  # the next request on this connection names it again
        else:
            raise BadRequestError("the Host header is not a valid host[:port]")
        if self.transfer_encoding and version == "1.0":
            # RFC 9112 6.1: HTTP/1.0 has no transfer codings; its framing is faulty
            raise BadRequestError("Transfer-Encoding in an HTTP/1.0 request")

    def _take_absolute_form(self, url: bytes, context: ListenerContext) -> tuple[bytes, bytes]:
        """The path and query of an absolute-form target; its authority replaces the Host
        header the app reads (RFC 9112 3.2.2: the server ignores the received Host).

        The authority is judged by the same rule as a Host line (llhttp's URL
        parser refuses `_` and sub-delims that RFC 3986 allows in a host).
        """
        scheme, authority, raw_path, query = wire.split_absolute_form(url)
        if b"@" in authority:  # RFC 9110 4.2.4: userinfo is treated as an error
            raise BadRequestError("the request target carries userinfo")
        if scheme not in (b"http", b"https"):
            raise BadRequestError("the request target is not an http or https URI")
        if not authority or not wire.valid_host(authority):
            raise BadRequestError("the request target's host is not a valid host[:port]")
        if scheme == b"https" and context.scheme != "https" and context.proxies is None:
            # RFC 9110 7.4: an https resource asked for over a connection not secured for
            # it (and not from a trusted gateway) is not ours to serve
            raise BadRequestError("an https target on a connection without TLS", 421)
        headers = self.headers
        for index, (name, _) in enumerate(headers):
            if name == b"host":
                headers[index] = (b"host", authority)
                break
        else:
            headers.append((b"host", authority))  # HTTP/1.0 may leave it out
        self.host = authority  # the site too is the target's
        return raw_path, query

    def on_body(self, body: bytes) -> None:
        self.body_since = self.context.next_tick
        exchange = self.parsing
        if exchange is not None and not exchange.feed_body(body):
            if exchange in self.pipeline:
                # not started: its answer is the 413, after the responses before it
                self._reject_after_pending(413, "request body too large")
                return
            self.parsing = None
            exchange.disconnect()
            if exchange.phase is Phase.START and exchange is self.exchange:
                self._reject_after_pending(413, "request body too large", force=True)
            else:
                self.close()
            return
        if exchange is not None and exchange.buffered >= READ_HIGH_WATER:
            self.update_reading()

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is not None:
            exchange.finish_body()
        self.parsing = None
        self.body_since = None
        self.framing_fed = 0
        if not self.keeps_alive:
            self.last_request_read = True
        elif self.exchange is None and not self.pipeline:
            # Answered before its body was all in: the connection is idle from now on
            # (finish_response could not say so while the body was still arriving).
            self.idle_since = self.context.next_tick

    def _switch_to_websocket(self, rest: bytes) -> None:
        """Hand the transport to a WebSocket protocol; this object is done with it."""
        upgrade, transport = self.upgrade, self.transport
        if upgrade is None or transport is None:
            return  # the connection went away while the head was parsed
        scope, endpoint = upgrade
        settings = endpoint.websocket
        if settings is None:
            return
        self.flush()  # a response held for the end of this turn goes before the handshake's
        self.transport = None
        websocket = WebSocketProtocol(
            self.context,
            self.loop,
            websocket_scope(scope, self.headers),
            endpoint,
            settings,
        )
        transport.set_protocol(websocket)
        self.context.connections.discard(self)  # before start: it may close at once
        websocket.start(transport, self.url.decode("latin-1"), self.headers, rest)

    def _switch_to_http2(self, data: bytes) -> None:
        """Hand the transport to an HTTP/2 connection (ALPN chose h2, or the client sent
        the HTTP/2 preface); `data` is what it must read first."""
        transport = self.transport
        if transport is None:
            return
        self.transport = None
        self.reading_done = True
        self.context.connections.discard(self)
        http2 = Http2Protocol(self.context, self.loop, self.client, self.server)
        http2.certificate = self.certificate
        http2.take_over(transport, data)

    def _pause_for_good(self) -> None:
        self.reading_done = True  # update_reading never resumes it
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    # -------------------------------------------------------------- running

    def _start(self, exchange: Exchange, *, eager: bool = True) -> None:
        """Run the app for `exchange`; `eager=False` for a pipelined request started as the
        response before it finishes (see exchange.EAGER_TASKS)."""
        self.exchange = exchange
        budget = self.context.budget  # max_requests: one add, one compare
        budget.count += 1
        if budget.count == budget.limit:
            budget.spent()
        exchange.stats.counts[REQUESTS] += 1  # counted once it ends
        endpoint = exchange.endpoint
        app: ASGIApp
        if endpoint is None:
            app = not_found
        else:
            at_once = endpoint.at_once
            if at_once is not None:  # a folder app with the file in memory: no task
                answer = at_once(exchange.scope)
                if answer is not None:
                    # Written with the rest of this loop turn's responses, as a task's
                    # would be (flow.TurnWriter): reads first, then the writes together.
                    turn = self.context.turn_writer
                    turn.starting += 1
                    exchange.answer(*answer)
                    turn.starting -= 1
                    return
            app = endpoint.app
        turn = self.context.turn_writer
        turn.starting += 1
        # Eager (see EAGER_TASKS) unless a response of this connection is already held:
        # requests pipelined in one read then go one at a time, as the client reads, and
        # the write buffer stays within a response of its high-water mark.
        if eager and EAGER_TASKS and not self.pending:
            eager_task(run_app(app, exchange, False), loop=self.loop)
            turn.starting -= 1
        else:
            request_task(run_app(app, exchange), loop=self.loop)

    def send_failure(self, exchange: Exchange) -> None:
        """The 500 for an app that failed before any of its response was written."""
        self.write_now(self.context.canned(500, head=exchange.is_head))

    def finish_response(self, exchange: Exchange, data: bytes) -> None:
        """The last bytes of a response: one write, then keep-alive, the next request or close."""
        turn = self.context.turn_writer
        if turn.starting:  # more requests run right after this one: write after them (flow.py)
            self.hold(data)
        else:  # the last of this turn's batch, or alone: everything held leaves now
            self.write_now(data)
            if turn.waiting:
                turn.flush_all()
        exchange.record(exchange.status)
        if self.context.access_log is not None:
            self.context.access_log(exchange, self.context.name)
        if self.deferred_reject is not None and not self.pipeline:  # after the whole requests
            status, message, head = self.deferred_reject
            self.reject(status, message, head=head)
            return
        keep = exchange.keep_alive and not self.close_after_response
        if self.close_after_response and exchange.framing is not None:
            # Draining began after the head promised keep-alive: the client may be sending
            # its next request already. Stay open (the tick closes the idle connection after
            # the grace) and answer that one with "connection: close" rather than reset it.
            keep = exchange.framing.keep_alive
        if keep and exchange.expect_continue and not exchange.body_complete:
            keep = False  # we never asked for the body; the client may still send it
        if not keep:
            self.close()
            return
        self.exchange = None
        if self.pipeline:
            self.start_next()
            return
        if self.reading_paused:  # otherwise nothing to resume: skip the checks
            self.update_reading()
        if self.in_head:
            self.head_since = self.loop.time()
        elif self.parsing is None:
            self.idle_since = self.context.next_tick  # no clock call per request

    # ------------------------------------------------------------- writing

    def write_now(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.pending:
            pending = self.pending
            pending.append(data)
            if self.pending_size + len(data) >= FLUSH_THRESHOLD:
                transport.writelines(pending)  # one writev, no copy of large bodies
            else:
                transport.write(b"".join(pending))
            self.pending = []
            self.pending_size = 0
        elif data:
            transport.write(data)

    def can_send_file(self) -> bool:
        """Whether `send_file` can use os.sendfile: a socket of our own, not TLS (whose bytes
        are encrypted in user space). Asked only for a file response."""
        transport = self.transport
        return (
            transport is not None
            and not transport.is_closing()
            and transport.get_extra_info("ssl_object") is None
            and transport.get_extra_info("socket") is not None
        )

    async def send_file(self, head: bytes, fd: int, offset: int, count: int) -> int:
        """Write `head` (after anything held), then `count` bytes of file `fd` from `offset`
        with os.sendfile: the kernel moves the file's pages to the socket. Returns the
        bytes sent (fewer: the file ended early, or the connection went).

        uvloop has no `loop.sendfile`, so this is done by hand, in the order the
        bytes must leave: the transport's own buffer is drained first (write limits
        at 0 for the wait, so `resume_writing` means "empty"). The socket is used
        through a dup of its descriptor, so a connection closed meanwhile can never
        lend its descriptor number to another connection that would get our bytes;
        writability is awaited with `add_writer` on that dup (uvloop refuses it on a
        transport's own descriptor) through this connection's WriteFlow, so a lost
        connection wakes it and `send_timeout` cuts a client that stopped reading,
        as for any app's `send`.
        """
        self.write_now(head)
        transport = self.transport
        if transport is None or transport.is_closing():
            return self._file_cut(0)
        if transport.get_write_buffer_size():
            transport.set_write_buffer_limits(high=0)
            try:
                await self.flow.wait()
            finally:
                transport.set_write_buffer_limits()
            if self.transport is not transport or transport.is_closing():
                return self._file_cut(0)
        out = os.dup(transport.get_extra_info("socket").fileno())
        flow, sent = self.flow, 0
        try:
            while sent < count:
                try:
                    done = os.sendfile(out, fd, offset + sent, count - sent)
                except BlockingIOError:
                    done = -1
                except OSError:  # reset, broken pipe: the connection is lost
                    transport.abort()
                    return self._file_cut(sent)
                if done == 0:
                    return sent  # the file is shorter than it was
                if done > 0:
                    sent += done
                    continue
                flow.pause()
                self.loop.add_writer(out, flow.resume)
                try:
                    await flow.wait()
                finally:
                    self.loop.remove_writer(out)
                if self.transport is not transport or transport.is_closing():
                    return self._file_cut(sent)
            return sent
        finally:
            os.close(out)

    def _file_cut(self, sent: int) -> int:
        """The connection went (or is going) while a file was sent: its exchange learns it
        now, as an app's `send` would, rather than take it for a short file."""
        if self.exchange is not None:
            self.exchange.disconnect()
        return sent

    def send_continue(self) -> None:
        """100 Continue: the client sends the body only now, so its wait starts now."""
        self.write_now(wire.CONTINUE)
        self.body_since = self.context.next_tick

    def stage(self, data: bytes) -> None:
        """Queue bytes to leave with the next write, without copying them into it."""
        self.pending.append(data)
        self.pending_size += len(data)

    def hold(self, data: bytes) -> None:
        """Write `data` at the end of this loop turn with whatever else is held (flow.py)."""
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= FLUSH_THRESHOLD:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.context.turn_writer.flush_later(self)

    async def write(self, data: bytes) -> None:
        self.hold(data)
        await self.flow.wait()

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.pending:
            self.write_now(b"")

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()
        self.start_next()

    def start_next(self) -> None:
        """Start the next pipelined request, unless the client is not reading our answers:
        then it waits for `resume_writing`, and reading stays paused (the pipeline is not
        empty), so a client that sends and never reads cannot grow our write buffer."""
        if self.exchange is None and self.pipeline and self.flow.blocked is None:
            self._start(self.pipeline.popleft(), eager=False)
            self.update_reading()

    # ------------------------------------------------------------- reading

    def update_reading(self) -> None:
        """Pause while requests wait in the pipeline or a body waits for the app."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.reading_done:
            return
        parsing = self.parsing
        pause = bool(self.pipeline) or (parsing is not None and parsing.buffered >= READ_HIGH_WATER)
        if pause and not self.reading_paused:
            self.reading_paused = True
            transport.pause_reading()
        elif not pause and self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()

    # -------------------------------------------------- rejecting and closing

    def reject(
        self, status: int, message: str, answering: Exchange | None = None, *, head: bool = False
    ) -> None:
        """A canned answer and a close; counted for `answering`, else as the host's own.
        To a HEAD request (`head`, or `answering` is one) it is the head alone (RFC 9110
        9.3.2): a body there would be read as the start of the next response."""
        head = head or (answering is not None and answering.is_head)
        self.write_now(self.context.canned(status, message, head=head))
        if answering is not None and not answering.counted:
            answering.record(status)
        else:
            unrouted = self.context.unrouted
            unrouted.counts[REQUESTS] += 1
            unrouted.finish(status, 0, 0, clock())
        self.close()

    def _reject_after_pending(
        self, status: int, message: str, *, force: bool = False, head: bool = False
    ) -> None:
        """Answer a client fault after the response in progress (if any), then close.
        `head`: the fault is in a HEAD request no exchange was made for."""
        broken, self.parsing = self.parsing, None  # a body that can never complete
        self._pause_for_good()
        if broken is not None and broken in self.pipeline:
            self.pipeline.remove(broken)  # never started: the canned answer is its answer
            broken.disconnect()
        current = self.exchange
        if current is not None and current is broken and current.phase is not Phase.DONE:
            current.disconnect()  # the app waiting for the rest of the body must not hang
            force = force or current.phase in (Phase.START, Phase.HEAD)  # nothing written yet
            if not force:
                self.close()
                return
        if force or (not self.pipeline and (current is None or current.phase is Phase.DONE)):
            answering = None  # a fault of a later request, or of none: the host's own
            if current is not None and current.phase is not Phase.DONE:
                answering = current  # forced: the canned answer replaces its response
                current.phase = Phase.DONE
            self.reject(status, message, answering, head=head)
        else:
            self.deferred_reject = (status, message, head)

    def close(self) -> None:
        """Close after what is written, in stages (linger.py): the client may still be
        sending (a pipelined request, a body we did not wait for), and the reset its
        unread bytes would cause must not cut our answer. TLS closes outright."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self.pending:
                self.write_now(b"")
            if linger(transport, self.loop, self.context):
                self.transport = None  # the lingering close owns it now
                self.connection_lost(None)
                return
            transport.close()

    def abort(self) -> None:
        """Cut at the graceful timeout, or for send_timeout: the request in progress ends
        now, without the rest of its response.

        (Its app may never return, and the worker reports its last counts right after.)
        """
        if self.exchange is not None:
            self.exchange.record(0)
        if self.transport is not None:
            self.flush()  # a complete response still held goes out before the cut
            self.transport.abort()

    def shutdown(self, code: int = 1001) -> None:  # HTTP has no close code; WebSockets do
        """Draining: close after the response in progress, or the tick closes it once idle.

        A request arriving meanwhile is answered with "connection: close" (the
        context is draining), so the client learns before it sends another.
        """
        self.close_after_response = True
        for exchange in (self.exchange, *self.pipeline):
            if exchange is not None:
                exchange.keep_alive = False  # a head not yet written says "connection: close"

    # ---------------------------------------------------------------- timers

    def check_timeouts(self, now: float) -> None:
        """Called by the worker's tick: close idle keep-alive connections, 408 slow heads
        and stalled bodies, drop clients that stopped reading (send_timeout).

        A tick (twice a second) instead of a timer per request keeps two
        timer operations off every request; timeouts fire up to one tick late.
        A body's clock stops while reading is paused (the app is behind, not the
        client) and until a 100 Continue the client was told to wait for is sent.
        """
        settings = self.context.settings
        if self.context.send_stuck(self.flow, self.transport, now):
            self.abort()  # the app's send returns; pipelined requests are dropped
            return
        if self.reading_paused and self.transport is not None and peer_hung_up(self.transport):
            # Reading paused (pipelined requests wait, or a body waits for the app): the
            # client's FIN was never read. Treated as eof_received treats it: it left.
            self.close()
            return
        parsing, since = self.parsing, self.body_since
        if (
            parsing is not None
            and since is not None
            and not self.reading_paused
            and not parsing.expect_continue
            and now - since >= settings.body_timeout
        ):
            self.body_since = None
            self._reject_after_pending(408, "request body not received in time")
            return
        if self.exchange is not None:
            return
        if self.head_since is not None and now - self.head_since >= settings.header_timeout:
            self.head_since = None
            self.reject(408, "request head not received in time")
        elif self.idle_since is not None and now - self.idle_since >= (
            min(DRAIN_IDLE_GRACE, settings.keep_alive_timeout)
            if self.close_after_response
            else settings.keep_alive_timeout
        ):
            self.idle_since = None
            self.close()


def _alpn(transport: asyncio.BaseTransport) -> str | None:
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object.selected_alpn_protocol() if ssl_object is not None else None


def _after_pri_head(data: bytes) -> bytes | None:
    """What follows the "PRI * HTTP/2.0" head llhttp read and stopped at, from the read
    that ended it (the head may have begun in earlier reads); None when this read does
    not end such a head."""
    for size in range(min(len(data), len(PRI_HEAD)), 0, -1):
        if data[:size] == PRI_HEAD[-size:]:
            return data[size:]
    return None


def _check_transfer_coding(value: bytes) -> None:
    """A Transfer-Encoding other than plain "chunked" (lower-cased `value`): llhttp takes
    "gzip, chunked" as chunked, and an app would read the still-coded bytes as the body.

    RFC 9112 6.3: chunked not last leaves the body's length unknown (400);
    7.1: "chunked" with parameters is an error (400); 6.1: a coding the
    server does not know gets 501.
    """
    codings = [coding.strip(b" \t") for coding in value.lower().split(b",")]
    codings = [coding for coding in codings if coding]  # RFC 9110 5.6.1: empty elements
    if not codings or codings[-1] != b"chunked":
        raise BadRequestError("Transfer-Encoding does not end in chunked")
    if any(coding.startswith(b"chunked") and coding != b"chunked" for coding in codings):
        raise BadRequestError("chunked takes no parameters")
    if any(coding != b"chunked" for coding in codings):
        raise BadRequestError("transfer coding not implemented", 501)


def _serves_websocket(
    endpoint: Endpoint | None, method: str, version: str, headers: list[tuple[bytes, bytes]]
) -> bool:
    """A WebSocket upgrade to an app that accepts WebSockets (others are answered as HTTP).

    RFC 6455 4.1: the handshake is a GET over HTTP/1.1; any other upgrade request is
    an ordinary request that may ignore its Upgrade header (RFC 9110 7.8).
    """
    if endpoint is None or endpoint.websocket is None or not endpoint.websocket.enabled:
        return False
    if method != "GET" or version != "1.1":
        return False
    return any(name == b"upgrade" and b"websocket" in value.lower() for name, value in headers)

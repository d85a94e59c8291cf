"""A WSGI app (PEP 3333) served as an ASGI 3 app: threads run the app, the loop does I/O.

Why an adapter and not a second server: routing, limits, timeouts, stats, the
access log, HTTP/1.1 and HTTP/2 all live in the core and speak ASGI. Turning
the WSGI call into ASGI messages keeps every one of those rules written once;
the adapter only bridges a blocking call to the event loop.

Invariants:
- The event loop never blocks on the app: each request runs whole in one
  thread of this app's pool (`WsgiPool`), and that thread talks to the loop
  only through `asyncio.run_coroutine_threadsafe(...).result()`, one ASGI
  `receive` or `send` at a time. So the thread waits for the loop's flow
  control (a client that reads slowly blocks the thread, not the loop), and
  the request body is pulled from the connection only when the app reads
  (back-pressure: at most one body message is in hand at a time). The last
  message of an iterated response is the exception: the thread leaves it in
  `_Call.last` and the adapter sends it once the thread is done, so a
  one-piece response costs one hand-off each way, not two.
- Bounded: at most `threads` requests run and `max_queued` wait per worker;
  one more is answered 503 with Retry-After at once, never queued.
- `close()` of the app's iterable is called whatever happens: a normal end,
  an exception, or a client that left (`send` raises ClientDisconnectedError).
- An exception before anything of the response is sent leaves the ASGI
  callable, so the core answers 500 and logs it as for any app; after the
  head went out the core cuts the response.
- The head is held until the first non-empty body bytes (PEP 3333), and a
  body that reaches its Content-Length is sent as the last message, so a
  small response leaves in one write with its head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeAlias
from urllib.parse import unquote_to_bytes

from uvhost.server.asgi_types import ClientDisconnectedError, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_QUEUE_FACTOR",
    "FileWrapper",
    "WSGIApp",
    "WsgiAdapter",
    "WsgiPool",
    "build_environ",
]

logger = logging.getLogger("uvhost")

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], None]]
WSGIApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

DEFAULT_QUEUE_FACTOR = 4
"""`max_queued` when left out: 4 times threads, a short burst's worth of waiting, not a backlog."""
RETRY_AFTER = b"1"
BUSY_WARNING_EVERY = 10.0  # seconds between two "pool full" warnings of one app
BUSY_BODY = b"Service Unavailable: every thread of this app is busy\n"
_ZEROCOPY = "http.response.zerocopysend"
_NO_LENGTH = frozenset((204, 304))  # statuses whose head must not get a file's length
_JOINED_WITH = {"HTTP_COOKIE": "; "}  # RFC 6265 5.4: cookies are one field joined by "; "


# ------------------------------------------------------------------ the thread pool


class WsgiPool:
    """Daemon threads started as requests need them, up to `threads`; a FIFO of jobs.

    `admitted` is touched only on the event loop's thread, so admission needs no lock.
    Daemon threads: an app stuck forever must not keep a stopping worker alive (the
    drain waits `graceful_timeout` for them, then the process leaves without them).
    """

    def __init__(self, threads: int, max_queued: int | None) -> None:
        self.size = threads
        self.limit = threads + (
            DEFAULT_QUEUE_FACTOR * threads if max_queued is None else max_queued
        )
        self.admitted = 0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def try_submit(
        self, work: Callable[[], None], loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[None] | None:
        """Run `work` in a thread; a future for its end, or None when the pool is full."""
        if self.admitted >= self.limit or self._closed:
            return None
        self.admitted += 1
        done: asyncio.Future[None] = loop.create_future()
        self._jobs.put((work, done, loop))
        if len(self._threads) < min(self.admitted, self.size):
            thread = threading.Thread(
                target=self._serve, name=f"uvhost-wsgi-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return done

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            work, done, loop = job
            error: Exception | None = None
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - handed to the loop, which answers it
                error = exc
            except BaseException as exc:  # noqa: BLE001 - SystemExit must not stop the loop
                error = RuntimeError(f"WSGI app raised {type(exc).__name__}")
                error.__cause__ = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._finished, done, error)

    def _finished(self, done: asyncio.Future[None], error: Exception | None) -> None:
        self.admitted -= 1
        if done.cancelled():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def close(self) -> None:
        """No new requests; each thread leaves after the jobs queued before it."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)

    def join(self, timeout: float) -> int:
        """Wait (blocking) up to `timeout` s for the threads; how many are still running."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in self._threads)


_Job: TypeAlias = tuple[Callable[[], None], "asyncio.Future[None]", asyncio.AbstractEventLoop]


# ------------------------------------------------------------------ the adapter


class WsgiAdapter:
    """The ASGI 3 callable the core runs for a WSGI app; one per app per worker."""

    __slots__ = ("app", "pool", "warned_at")
    uvhost_interface = "WSGI"
    """How the core names this app in its logs ("exception in WSGI app"): the traceback
    comes from the user's WSGI code, so calling it an ASGI app would mislead."""

    def __init__(self, app: WSGIApp, *, threads: int, max_queued: int | None) -> None:
        self.app = app
        self.pool = WsgiPool(threads, max_queued)
        self.warned_at = -BUSY_WARNING_EVERY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            loop = asyncio.get_running_loop()
            call = _Call(self.app, scope, receive, send, loop)
            done = self.pool.try_submit(call.run, loop)
            if done is None:
                self._warn_busy(loop.time())
                await _answer_busy(send)
                return
            try:
                await done  # the app's exception, if any, is raised here: the core answers it
            except Exception:
                if call.last:  # complete before the app failed (its close() raised): sent
                    await call._deliver(call.last)
                raise
            if call.last:  # the response's end, held by the thread until it was done
                await call._deliver(call.last)
        elif kind == "websocket":  # WSGI has no WebSockets: deny the upgrade (403)
            await receive()
            await send({"type": "websocket.close", "code": 1000})
        # "lifespan": returning at once is how an app without lifespan support answers

    def _warn_busy(self, now: float) -> None:
        """A full pool is the operator's to size: said once per BUSY_WARNING_EVERY seconds,
        not per request (the access log has each 503)."""
        if now >= self.warned_at + BUSY_WARNING_EVERY:
            self.warned_at = now
            logger.warning(
                "WSGI app busy: %d thread(s) and %d queued in use; answering 503 "
                "(raise threads or max_queued, or add workers)",
                self.pool.size,
                self.pool.limit - self.pool.size,
            )

    async def aclose(self, timeout: float) -> None:
        """Stop the pool; wait up to `timeout` s for requests still running in it."""
        pool = self.pool
        pool.close()
        left = await asyncio.get_running_loop().run_in_executor(None, pool.join, timeout)
        if left:
            logger.warning("%d WSGI thread(s) still running at shutdown; left behind", left)


async def _answer_busy(send: Send) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"retry-after", RETRY_AFTER),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": BUSY_BODY})


class _Call:
    """One request in its thread: the environ, start_response, and the response's bytes."""

    def __init__(
        self,
        app: WSGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.app = app
        self.scope = scope
        self.receive = receive
        self.asgi_send = send
        self.loop = loop
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.content_length = -1  # declared by the app; -1 when the core frames the body
        self.head_sent = False
        self.sent = 0
        self.ended = False
        self.last: list[Message] = []  # the response's last messages: sent by the adapter

    # -------------------------------------------------------------- to the loop

    def _on_loop(self, work: Any) -> Any:
        """Run a coroutine on the loop and wait (in this thread) for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    async def _deliver(self, messages: Sequence[Message]) -> None:
        for message in messages:
            await self.asgi_send(message)

    def _pull(self) -> tuple[bytes, bool]:
        """The next piece of the request body and whether more follows."""
        message = self._on_loop(self.receive())
        if message["type"] != "http.request":
            raise ClientDisconnectedError("the client disconnected before sending its body")
        return message.get("body", b""), bool(message.get("more_body", False))

    # -------------------------------------------------------------- the WSGI call

    def _client_gone(self) -> bool:
        """Whether the connection of this request has closed: the core's `Exchange` (the
        owner of `receive`) says so in a plain flag, read here without a trip to the loop."""
        return bool(getattr(getattr(self.receive, "__self__", None), "disconnected", False))

    def run(self) -> None:
        if self._client_gone():  # it waited in the queue and its client left meanwhile:
            logger.debug(  # running the app would spend a thread on an answer nobody reads
                "WSGI request dropped before it ran: the client left (%s %s)",
                self.scope["method"],
                self.scope["path"],
            )
            return
        environ = build_environ(self.scope, WsgiInput(self._pull))
        result = self.app(environ, self.start_response)
        try:
            if isinstance(result, FileWrapper) and self._send_file(result):
                return
            chunks = iter(result)  # one iterator: a list would start again on a second iter()
            for chunk in chunks:
                if chunk:
                    self._body(_as_bytes(chunk), final=False, hold=True)
                    if self.ended:
                        self._refuse_rest(chunks)
                        return
            if self.headers is None:
                raise RuntimeError("WSGI app returned without calling start_response")
            if not self.ended:
                self._body(b"", final=True, hold=True)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        """PEP 3333: store the head until the first body bytes; with `exc_info`, replace a
        head not yet sent, or re-raise the app's error once it has been (it cannot be)."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback (PEP 3333)
        elif self.headers is not None:
            raise RuntimeError("start_response called a second time without exc_info")
        self.status = _status(status)
        self.headers, self.content_length = _headers(headers)
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's write() callable: the bytes are sent before it returns."""
        if self.headers is None:
            raise RuntimeError("write() called before start_response")
        if data:
            self._body(_as_bytes(data), final=False)

    def _body(self, data: bytes, *, final: bool, hold: bool = False) -> None:
        """Send `data`, the head first if it is still held; a body that reaches its declared
        length is the last message, so the core can finish the response with it.

        `hold`: the last message of an iterated body is kept in `last` rather than sent
        from here: the adapter sends it when the thread is done, so a response of one
        piece costs one loop -> thread -> loop hand-off instead of two (the thread need
        not wait for the loop to take its last bytes). Not for write(): the app goes on
        after it returns and PEP 3333 wants the bytes sent by then."""
        if self.ended:
            if data:
                raise RuntimeError("WSGI app sent more than its Content-Length")
            return
        if self.headers is None:
            raise RuntimeError("WSGI app sent body bytes before calling start_response")
        messages: list[Message] = []
        if not self.head_sent:
            self.head_sent = True
            messages.append(
                {"type": "http.response.start", "status": self.status, "headers": self.headers}
            )
        self.sent += len(data)
        if self.content_length >= 0 and self.sent >= self.content_length:
            final = True
        self.ended = final
        messages.append({"type": "http.response.body", "body": data, "more_body": not final})
        if final and hold:
            self.last = messages
            return
        self._on_loop(self._deliver(messages))

    def _refuse_rest(self, chunks: Iterator[bytes]) -> None:
        """The declared length is sent: bytes beyond it would break the framing."""
        for chunk in chunks:
            if chunk:
                logger.error(
                    "WSGI app yielded more than its Content-Length (%d); the rest is dropped "
                    "(%s %s)",
                    self.content_length,
                    self.scope["method"],
                    self.scope["path"],
                )
                return

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """wsgi.file_wrapper over a regular file: the core sends it with
        `http.response.zerocopysend` (sendfile on plain HTTP/1.1); False to iterate it."""
        fd = wrapper.fd()
        if fd is None or self.headers is None or self.head_sent:
            return False
        offset = wrapper.offset(fd)
        size = os.fstat(fd).st_size
        count = max(0, size - offset)
        if self.content_length >= 0:
            count = min(count, self.content_length)
        elif self.status not in _NO_LENGTH:  # the length is known: no chunking, so sendfile
            self.headers.append((b"content-length", b"%d" % count))
        self.head_sent = True
        self.ended = True
        start = {"type": "http.response.start", "status": self.status, "headers": self.headers}
        file_message = {"type": _ZEROCOPY, "file": fd, "offset": offset, "count": count}
        self._on_loop(self._deliver([start, file_message]))
        return True


def _status(status: str) -> int:
    if not isinstance(status, str):
        raise TypeError(f"WSGI status must be a str such as '200 OK', not {type(status).__name__}")
    code = status[:3]
    if not (code.isdigit() and len(code) == 3 and status[3:4] in (" ", "")):
        raise ValueError(f"WSGI status {status!r} does not start with a three-digit code")
    return int(code)


def _headers(headers: list[tuple[str, str]]) -> tuple[list[tuple[bytes, bytes]], int]:
    """The head as ASGI wants it (bytes, Latin-1 as PEP 3333 says), and the Content-Length."""
    out: list[tuple[bytes, bytes]] = []
    length = -1
    for item in headers:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"WSGI headers must be (name, value) tuples, not {item!r}")
        name, value = item
        if not (isinstance(name, str) and isinstance(value, str)):
            raise TypeError(f"WSGI header names and values must be str: {item!r}")
        raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
        if raw_name.lower() == b"content-length" and raw_value.strip().isdigit():
            length = int(raw_value)
        out.append((raw_name, raw_value))
    return out, length


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"WSGI body chunks must be bytes, not {type(chunk).__name__}")


# ------------------------------------------------------------------ environ


def build_environ(scope: Scope, body: WsgiInput) -> dict[str, Any]:
    """The PEP 3333 environ of an ASGI http scope.

    Paths are "bytes as Latin-1" strings: the raw path percent-decoded to bytes, each
    byte one character. SCRIPT_NAME is the mount (`root_path`), PATH_INFO the rest.
    Header names with "_" are dropped: as CGI variables, "X-User" and "X_User" would be
    the same HTTP_X_USER, and a client could forge a header a proxy checked.
    """
    script = scope["root_path"].encode("utf-8")
    path = unquote_to_bytes(scope["raw_path"]) if scope.get("raw_path") else b""
    if path.startswith(script):
        rest = path[len(script) :]
    else:  # a raw path that does not decode to the routed one: use the decoded path
        rest = scope["path"][len(scope["root_path"]) :].encode("utf-8")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script.decode("latin-1"),
        "PATH_INFO": rest.decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/" + scope["http_version"],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope["scheme"],
        "wsgi.input": body,
        "wsgi.input_terminated": True,
        "wsgi.errors": ERRORS,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    host = ""
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper()
        if "_" in name:
            continue
        value = raw_value.decode("latin-1")
        if name in {"CONTENT-TYPE", "CONTENT-LENGTH"}:
            key = name.replace("-", "_")
        else:
            key = "HTTP_" + name.replace("-", "_")
            if key == "HTTP_HOST":
                host = value
        if key in environ:
            environ[key] += _JOINED_WITH.get(key, ", ") + value
        else:
            environ[key] = value
    environ["SERVER_NAME"], environ["SERVER_PORT"] = _server(scope, host)
    return environ


def _server(scope: Scope, host: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT: the socket's address, or the Host on a Unix socket."""
    server = scope.get("server")
    if server and server[1] is not None:
        return str(server[0]), str(server[1])
    default = "443" if scope["scheme"] in ("https", "wss") else "80"
    if not host:
        return "localhost", default
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and not name.endswith(":"):
        return name, port
    return host, default


class WsgiInput:
    """`wsgi.input`: the request body, pulled from the connection as the app reads it.

    `pull` blocks this thread on the loop's `receive`; nothing is read ahead, so a
    large upload is held back by TCP while the app is busy with what it has.
    """

    def __init__(self, pull: Callable[[], tuple[bytes, bool]]) -> None:
        self._pull = pull
        self._buffer = bytearray()
        self._more = True

    def _fill(self) -> bool:
        """One more piece into the buffer; False at the end of the body."""
        while self._more:
            data, self._more = self._pull()
            if data:
                self._buffer += data
                return True
        return False

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, limit: int | None = -1) -> bytes:
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if end >= 0:
                size = end + 1
                break
            searched = len(self._buffer)
            if (limit is not None and 0 <= limit <= searched) or not self._fill():
                size = searched
                break
        if limit is not None and limit >= 0:
            size = min(size, limit)
        return self._take(size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _Errors:
    """`wsgi.errors`: text written by the app, logged line by line on the `uvhost` logger."""

    def __init__(self) -> None:
        self._local = threading.local()

    def write(self, text: str) -> int:
        pending: str = getattr(self._local, "pending", "") + text
        *lines, pending = pending.split("\n")
        self._local.pending = pending
        for line in lines:
            logger.error("wsgi.errors: %s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        if pending:
            self._local.pending = ""
            logger.error("wsgi.errors: %s", pending)


ERRORS = _Errors()


class _FileLike(Protocol):
    def read(self, size: int, /) -> bytes: ...


class FileWrapper:
    """`wsgi.file_wrapper`: a file the server may send with sendfile (PEP 3333).

    Iterating it reads `block_size` pieces (what a server without the shortcut does,
    and what the adapter does for a file-like without a usable `fileno()`).
    """

    def __init__(self, filelike: _FileLike, block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def close(self) -> None:
        """Closes the file: the server calls it when the response is over (PEP 3333)."""
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def offset(self, fd: int) -> int:
        """Where sending starts: the file object's own position when it has one (a buffered
        file may have read ahead of it), else the descriptor's."""
        tell = getattr(self.filelike, "tell", None)
        return int(tell()) if tell is not None else os.lseek(fd, 0, os.SEEK_CUR)

    def fd(self) -> int | None:
        """The descriptor of a regular file behind the wrapper, or None."""
        fileno = getattr(self.filelike, "fileno", None)
        if fileno is None:
            return None
        try:
            fd = int(fileno())
            return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
        except (OSError, ValueError):
            return None

    def seekable(self) -> bool:
        """Lets a range wrapper (Werkzeug's, for 206) seek instead of reading up to a range."""
        seekable = getattr(self.filelike, "seekable", None)
        return bool(seekable()) if seekable is not None else False

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return int(self.filelike.seek(offset, whence))  # type: ignore[attr-defined]

    def tell(self) -> int:
        return int(self.filelike.tell())  # type: ignore[attr-defined]

    def __iter__(self) -> FileWrapper:
        """Its own iterator, not a generator: a wrapper such as Werkzeug's range wrapper
        keeps `iter(it)` and calls its `close()`, which must close the file."""
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.block_size)
        if not data:
            raise StopIteration
        return data

"""Shared by the HTTP fuzz tests and `benchmarks/fuzz_http.py`: one real host, raw
connections to it, and strict readers of both sides of the wire.

Why a module of its own: the CI tests (hypothesis) and the long run (atheris)
must drive the same server the same way and judge it by the same rules, or a
finding of one cannot be replayed by the other. Test modules cannot import a
conftest under `--import-mode=importlib`, so `load()` loads this file (and
the conftest's `start_host`) by path.

- `FuzzHost` reuses one running host across examples and opens a new
  connection per example. `exchange()` sends the pieces as separate reads
  (it waits until the server's socket has taken each piece), then waits until
  the server is quiet: every byte read, nothing left to write, every app call
  for this connection finished or waiting for body bytes that will never come.
  Quiet is asked of the server in its own loop, never guessed with a sleep.
- `read_responses` parses what the server wrote with h11 as a client (one
  client connection per response, told the request's method so HEAD framing
  is right), plus the checks h11 does not make: one Content-Length, never
  beside Transfer-Encoding, one Server, one Date.
- `h11_requests` runs the same bytes through h11 as a server: what it accepts,
  and where it stops or rejects.
- `Draw` is the one interface the generators use for choices, so hypothesis
  (`data.draw`), atheris (`FuzzedDataProvider`) and `random.Random` drive the
  same grammar.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import importlib.util
import logging
import select
import socket
import sys
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

import h11
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
T = TypeVar("T")
QUIET_LIMIT = 5.0
"""Seconds an example may take to become quiet; beyond it the example is a finding."""
PIECE_LIMIT = 0.5
"""Seconds to wait for the server to read one piece before sending the next anyway."""
SIOCOUTQ = 0x5411  # linux/sockios.h: bytes in a socket's send queue not yet acknowledged


def load(name: str) -> ModuleType:
    """This folder's `name`.py as a module (conftest included), once per process."""
    key = f"uvhost_fuzz_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------- choices


class Draw(Protocol):
    """Where the generators get their choices from (hypothesis, atheris or random)."""

    def integer(self, low: int, high: int) -> int: ...

    def raw(self, max_size: int) -> bytes: ...


def pick(draw: Draw, options: Sequence[T]) -> T:
    return options[draw.integer(0, len(options) - 1)]


def chance(draw: Draw, percent: int) -> bool:
    return draw.integer(0, 99) < percent


class RandomDraw:
    """Choices from `random.Random`: seeds a corpus, and replays a finding by seed."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.randint(low, high))

    def raw(self, max_size: int) -> bytes:
        return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(0, max_size)))


# ----------------------------------------------------------------- the logs


class LogWatch(logging.Handler):
    """Every record of the server's loggers (`uvhost.*`, `asyncio`) at warning or above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.records = self.records, []
        return taken

    def __enter__(self) -> LogWatch:
        for name in ("uvhost", "asyncio"):
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("uvhost", "asyncio"):
            logging.getLogger(name).removeHandler(self)


def describe(record: logging.LogRecord) -> str:
    text = f"{record.name} {record.levelname}: {record.getMessage()}"
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        text += f" [{type(error).__name__}: {error}]"
    return text


# ---------------------------------------------------------- the running host


@dataclass
class Outcome:
    """One example on one connection: what went in, what came out, what the apps saw."""

    port: int
    pieces: list[bytes]  # as sent, each a read of its own
    wire: bytes
    closed: bool  # the server closed the connection before or when it went quiet
    calls: list[dict[str, Any]]  # the app's record of each call on this connection
    logs: list[logging.LogRecord]
    quiet: bool = True  # False: the server never went quiet within QUIET_LIMIT
    note: str = ""  # what else the test wants in a report (the app's program)

    @property
    def sent(self) -> bytes:
        return b"".join(self.pieces)


def _queued(fd: int, request: int) -> int:
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, request, buf)
    except OSError:
        return 0
    return int(buf[0])


class FuzzHost:
    """One running host reused by every example; `exchange` is one example."""

    def __init__(self, host: Any, calls: Callable[[], dict[int, list[dict[str, Any]]]]) -> None:
        self.host = host
        self.calls = calls  # the apps module's record of calls, by client port
        self.watch = LogWatch().__enter__()
        self.connection = 0  # the current example's connection (see `_calls`)

    def close(self) -> None:
        self.watch.__exit__()

    def _server_side(self, port: int) -> Any:
        """The server's protocol object for the connection from client `port`, if open."""

        async def find() -> Any:
            for context in self.host.worker.contexts:
                for connection in context.connections:
                    client = getattr(connection, "client", None)
                    if client is not None and client[1] == port:
                        return connection
            return None

        return self.host.call(find)

    def _connect(self, deadline: float) -> tuple[socket.socket, int, int]:
        """A new connection from a port no earlier example's calls are filed under, and
        the server side's socket descriptor (-1 if the server closed it at once)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(QUIET_LIMIT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        while self._server_side(port) is not None and time.monotonic() < deadline:
            time.sleep(0.005)  # an earlier connection from this port is still closing

        async def forget() -> None:
            self.calls().pop(port, None)

        self.host.call(forget)
        sock.connect(("127.0.0.1", self.host.port()))
        server = None
        while server is None and time.monotonic() < deadline:
            server = self._server_side(port)
            if server is None:
                time.sleep(0.0005)
        fd = -1
        self.connection = id(server.client) if server is not None else 0
        if server is not None and server.transport is not None:
            with contextlib.suppress(Exception):
                fd = server.transport.get_extra_info("socket").fileno()
        return sock, port, fd

    def _snapshot(self, port: int) -> list[dict[str, Any]]:
        """This example's calls as they are now, copied in the server's loop."""

        async def copy() -> list[dict[str, Any]]:
            return [
                {key: list(value) if isinstance(value, list) else value for key, value in c.items()}
                for c in self._calls(port)
            ]

        result: list[dict[str, Any]] = self.host.call(copy)
        return result

    def _calls(self, port: int) -> list[dict[str, Any]]:
        """This example's app calls: those of its connection (`conn` is the id of the
        connection's client tuple, shared by its scopes), not a late one of an earlier
        connection from the same port."""
        return [call for call in self.calls().get(port, []) if call["conn"] == self.connection]

    def _state(self, port: int, fd: int) -> tuple[bool, bool]:
        """(open, quiet), asked in the server's loop after two more turns of it."""

        async def state() -> tuple[bool, bool]:
            for _ in range(2):
                await _yield()
            connection = None
            for context in self.host.worker.contexts:
                for candidate in context.connections:
                    client = getattr(candidate, "client", None)
                    if client is not None and client[1] == port:
                        connection = candidate
            if connection is None:
                return False, True
            transport = connection.transport
            if transport is None or transport.is_closing():
                return False, transport is None or transport.get_write_buffer_size() == 0
            busy = any(call["state"] not in ("done", "receive") for call in self._calls(port))
            unread = _queued(fd, termios.FIONREAD) if fd >= 0 else 0
            reading = transport.is_reading()
            pending = bool(getattr(connection, "pending", ()))
            quiet = (
                not busy
                and not pending
                and transport.get_write_buffer_size() == 0
                and (unread == 0 or not reading)
            )
            return True, quiet

        result: tuple[bool, bool] = self.host.call(state)
        return result

    def exchange(self, pieces: Sequence[bytes]) -> Outcome:
        """Send `pieces` as separate reads on a new connection; read until the server is
        quiet (or closed); close. The app's calls and the server's logs come back too."""
        self.watch.take()
        deadline = time.monotonic() + QUIET_LIMIT
        sock, port, fd = self._connect(deadline)
        received = bytearray()
        closed = False
        try:
            for piece in pieces:
                if closed:
                    break
                try:
                    sock.sendall(piece)
                except OSError:  # reset: the server closed while we were sending
                    closed = _read_to_close(sock, received, deadline) or True
                    break
                # one read per piece: wait until the server's socket holds nothing unread
                # (bounded: a server that paused reading for good never takes it)
                taken_by = min(deadline, time.monotonic() + PIECE_LIMIT)
                while fd >= 0 and _queued(fd, termios.FIONREAD) and time.monotonic() < taken_by:
                    closed = _drain(sock, received, 0.0005) or closed
                    if closed:
                        break
            quiet_twice = 0
            while not closed and time.monotonic() < deadline:
                closed = _drain(sock, received, 0.0) or closed
                if closed or _queued(sock.fileno(), SIOCOUTQ):
                    continue
                is_open, quiet = self._state(port, fd)
                if not is_open:
                    closed = _read_to_close(sock, received, deadline)
                    break
                quiet_twice = quiet_twice + 1 if quiet else 0
                if quiet_twice >= 2:
                    _drain(sock, received, 0.0)
                    break
                time.sleep(0.001)
            is_quiet = closed or quiet_twice >= 2
            calls = self._snapshot(port)  # before we leave: the apps see that too
        finally:
            sock.close()
        return Outcome(
            port, list(pieces), bytes(received), closed, calls, self.watch.take(), is_quiet
        )

    def settle(self, timeout: float = QUIET_LIMIT) -> int:
        """Wait until every connection is gone; the number left (0 when all closed)."""
        deadline = time.monotonic() + timeout
        while True:
            left = int(self.host.connections())
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.01)


async def _yield() -> None:
    await asyncio.sleep(0)


def _drain(sock: socket.socket, into: bytearray, wait: float) -> bool:
    """Read what is there (waiting up to `wait`); True once the server has closed."""
    while True:
        ready, _, _ = select.select([sock], [], [], wait)
        if not ready:
            return False
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return True
        if not chunk:
            return True
        into += chunk
        wait = 0.0


def _read_to_close(sock: socket.socket, into: bytearray, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if _drain(sock, into, 0.05):
            return True
    return False


# ------------------------------------------------------------ reading responses


class WireError(AssertionError):
    """What the server wrote is not a well-formed sequence of HTTP/1.1 responses."""


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lower-cased, as h11 gives them
    body: bytes
    informational: list[int] = field(default_factory=list)
    keep_alive: bool = True
    complete: bool = True  # False: the close cut the body short (h11 said so)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def read_responses(
    wire: bytes,
    closed: bool,
    method_of: Callable[[int, bytes], Sequence[bytes]],
    *,
    in_progress: bool = False,
) -> tuple[list[Response], bytes]:
    """Every response in `wire`, in order, and bytes left over that begin no response.

    `method_of(index, head)` names the method of the request the index-th
    response answers (its raw head is given), for HEAD framing: candidates,
    tried in turn, when the test cannot know (the server's own answer to a
    request it could not parse). A response the
    close cut short comes back with `complete=False` and must be the last.
    `in_progress`: the app is still sending, so the last response may be
    unfinished on an open connection (it comes back with `complete=False`).
    Raises WireError for anything h11 (as a strict client) or our own extra
    checks refuse.
    """
    responses: list[Response] = []
    rest = wire
    while rest:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            if in_progress and not closed:
                break
            if closed:
                raise WireError(f"a response head cut short by the close: {rest[:200]!r}")
            raise WireError(f"a response head never completed: {rest[:200]!r}")
        head = rest[: end + 4]
        methods = method_of(len(responses), head)
        read: list[tuple[Response, bytes]] = []
        for method in methods:  # the first framing that reads it whole, else cut short
            try:
                read.append(_read_one(rest, closed, method, in_progress))
            except AwaitingFinalError:
                # a 100 Continue, then nothing yet: the request's body is still to come
                return responses, b""
            except WireError:
                if method == methods[-1] and not read:
                    raise
                continue
            if read[-1][0].complete:
                break
        response, rest = next((one for one in read if one[0].complete), read[0])
        _check_head(head, response)
        responses.append(response)
        if not response.complete or not response.keep_alive:
            break
    return responses, rest


class AwaitingFinalError(Exception):
    """Only interim (1xx) answers on an open connection: the final one waits for the
    client (a 100 Continue whose request body never completed)."""


def _read_one(  # noqa: PLR0912 - one branch per h11 event
    data: bytes, closed: bool, method: bytes, in_progress: bool = False
) -> tuple[Response, bytes]:
    client = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 24)
    client.send(h11.Request(method=method, target="/", headers=[("host", "fuzz")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    informational: list[int] = []
    response: Response | None = None
    body: list[bytes] = []
    eof_fed = False
    try:
        while True:
            event = client.next_event()
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                response = Response(event.status_code, list(event.headers), b"", informational)
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif event is h11.NEED_DATA:
                if response is None and informational and not closed:
                    raise AwaitingFinalError(informational)
                if in_progress and not closed and response is not None:
                    response.body = b"".join(body)
                    response.complete = False
                    return response, b""
                if not closed:
                    raise WireError(f"a response never completed: {data[:300]!r}")
                if eof_fed:
                    raise WireError("h11 wants more after the close")
                client.receive_data(b"")
                eof_fed = True
            else:
                raise WireError(f"unexpected h11 event {event!r}")
    except h11.RemoteProtocolError as error:
        if response is not None and closed and "without sending complete" in str(error):
            response.body = b"".join(body)
            response.complete = False
            return response, b""
        raise WireError(f"h11 refuses the response: {error}; wire: {data[:300]!r}") from None
    assert response is not None
    response.body = b"".join(body)
    response.keep_alive = client.their_state is not h11.MUST_CLOSE
    rest, _ = client.trailing_data
    return response, bytes(rest)


def _check_head(head: bytes, response: Response) -> None:
    """What h11 lets through but a response must never say (RFC 9110 6.6, 8.6;
    RFC 9112 6.1): two framings, two lengths, two Server or Date lines."""
    lines = [line.partition(b":")[0].strip().lower() for line in head.split(b"\r\n")[1:]]
    for name in (b"content-length", b"server", b"date"):
        if lines.count(name) > 1:
            raise WireError(f"{lines.count(name)} {name.decode()} lines: {head!r}")
    if b"content-length" in lines and b"transfer-encoding" in lines:
        raise WireError(f"content-length beside transfer-encoding: {head!r}")
    if response.status in (204, 304) and response.body:
        raise WireError(f"a {response.status} with a body")


# ------------------------------------------------------------- h11 as a server


@dataclass
class Reference:
    """A request h11 accepted (or whose head it accepted: `complete=False`)."""

    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]
    start: int  # its first byte in the stream
    end: int = -1  # one past its last byte, once complete
    body: bytes = b""
    complete: bool = False


@dataclass
class Verdict:
    requests: list[Reference]
    ending: str  # "incomplete", "rejected", "closed" (h11 stops reading), "switched"
    error: str = ""
    at: int = 0  # where h11's unread bytes begin at the ending


def h11_requests(stream: bytes) -> Verdict:  # noqa: PLR0911, PLR0912 - one branch per h11 event
    """`stream` as h11 reads it as a server, answering each request with an empty 200."""
    server = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 24)
    server.receive_data(stream)
    requests: list[Reference] = []
    current: Reference | None = None

    def offset() -> int:
        return len(stream) - len(server.trailing_data[0])

    start = 0
    while True:
        try:
            event = server.next_event()
        except h11.RemoteProtocolError as error:
            if current is not None:
                requests.append(current)
            return Verdict(requests, "rejected", str(error), start)
        if isinstance(event, h11.Request):
            current = Reference(
                bytes(event.method),
                bytes(event.target),
                bytes(event.http_version),
                [(bytes(name), bytes(value)) for name, value in event.headers],
                start,
            )
        elif isinstance(event, h11.Data):
            assert current is not None
            current.body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert current is not None
            current.complete = True
            current.end = start = offset()
            requests.append(current)
            current = None
            try:
                server.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                server.send(h11.EndOfMessage())
            except h11.LocalProtocolError:  # a 200 to CONNECT switched protocols
                return Verdict(requests, "switched", at=start)
            if server.their_state is h11.SWITCHED_PROTOCOL:
                return Verdict(requests, "switched", at=start)
            if h11.MUST_CLOSE in (server.our_state, server.their_state):
                return Verdict(requests, "closed", at=start)
            server.start_next_cycle()
        elif event is h11.NEED_DATA:
            if current is not None:
                requests.append(current)
            return Verdict(requests, "incomplete", at=start)
        elif event is h11.PAUSED:
            return Verdict(requests, "switched", at=start)
        else:
            return Verdict(requests, "closed", at=start)


# ------------------------------------------------------ what both fuzz tests share


@contextlib.contextmanager
def serving(directory: Path, config: str, apps: str) -> Iterator[FuzzHost]:
    """One real host for a whole fuzz test (each example opens its own connection)."""
    harness = load("conftest")
    host = harness.start_host(directory, config, apps)
    module = host.module
    running = FuzzHost(host, lambda: module.calls)
    try:
        yield running
    finally:
        running.close()
        host.stop()
        harness._forget_modules(directory.parent)


class HypothesisDraw:
    """The generators' `Draw` over hypothesis data (the long run draws from atheris)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return int(self.data.draw(st.integers(low, high)))

    def raw(self, max_size: int) -> bytes:
        return bytes(self.data.draw(st.binary(max_size=max_size)))


def ci_settings(examples: int) -> settings:
    """Reproducible in CI: derandomized, no example database, no deadline (a loaded
    2-core machine)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

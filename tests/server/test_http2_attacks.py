"""HTTP/2 attacks that took down other servers, each played against a real host.

One real-socket test per attack, with a hand-made misbehaving client (`Peer`:
frames built with hyperframe, header blocks coded with hpack, so nothing a
well-behaved library refuses to send stands in the way):

- rapid reset, CVE-2023-44487: streams opened and cancelled at once, in a loop;
- CONTINUATION flood (the 2024 class, VU#421644): a header block that never ends;
- HPACK bomb (the class of CVE-2016-6581): one large entry in the dynamic table
  referenced thousands of times; and a plain header list over `max_header_bytes`;
- header fields kept in memory, CVE-2019-9516 (0-length headers leak): empty
  fields, and large valid fields never seen before, request after request;
- PING flood (CVE-2019-9512) and SETTINGS flood (CVE-2019-9515) from a client
  that never reads what they make us answer;
- empty-frame flood, CVE-2019-9518: empty DATA frames without END_STREAM;
- PRIORITY flood, CVE-2019-9513 (resource loop; issue 14 files it under 9516):
  frames that cost work and carry no request;
- zero-window hold, CVE-2019-9517: SETTINGS_INITIAL_WINDOW_SIZE = 0 and no
  WINDOW_UPDATE ever (`send_timeout` applies);
- slow read, CVE-2019-9517 as well: a large response to a client that never reads;
- more streams than advertised (SETTINGS_MAX_CONCURRENT_STREAMS);
- a preface that never finishes, or a connection that never sends a request
  (`header_timeout`);
- a drain seen by a client that answers the drain's PING late or never: the
  requests it sent before it saw the first GOAWAY are served, and the final
  GOAWAY comes within `DRAIN_PING_WAIT` either way (RFC 9113 6.8).

Each test asserts the server's answer (GOAWAY ENHANCE_YOUR_CALM where it fits,
a reset stream, a dropped connection), that no app call escapes the limits,
and that the resident set of this process (the host runs in a thread of it)
grows by less than `RSS_BOUND` during the attack. Every test is bounded in
time (a few seconds) and in the bytes it sends.

The limits come from `uvhost.server.http2`: `RESET_LIMIT` (early client resets
a connection may make per second) and `FLOOD_LIMIT` (frames that carry no
request, per second).
"""

from __future__ import annotations

import asyncio
import gc
import os
import select
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from uvhost.server.http2 import DRAIN_PING_WAIT, FLOOD_LIMIT, LAST_POSSIBLE_STREAM, RESET_LIMIT
from uvhost.server.linger import LINGER_SECONDS

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
RSS_BOUND = 64 * 1024 * 1024
"""How much the process may grow during an attack (the attacks send far more)."""
SEND_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.0
TICK = 0.5  # the worker's timer granularity (worker.TICK): a timeout fires up to 2 ticks late
MAX_HEADER_BYTES = 16 * 1024
CALM = ErrorCodes.ENHANCE_YOUR_CALM
SOCKET_TIMEOUT = 5.0  # any one send or connect
LINGER_WAIT = 2 * LINGER_SECONDS + 1
"""How long a connection ended by the server may take to close: it reads and drops what
the client still sends for LINGER_SECONDS after its GOAWAY is out, noticed by a timer
of that period (linger.py)."""

APPS = """
import asyncio

calls = 0      # app calls started
running = 0    # app calls running now
most = 0       # the most ever running at once
finished = []  # how the big responses ended: "complete" or "disconnected"
paths = []     # the path of each `hold` call, in order


def _enter():
    global calls, running, most
    calls += 1
    running += 1
    most = max(most, running)


def _leave():
    global running
    running -= 1


async def hold(scope, receive, send):
    '''Works a little (10 ms), then waits for the client to leave (http.disconnect).'''
    _enter()
    paths.append(scope["path"])
    try:
        await asyncio.sleep(0.01)
        while (await receive())["type"] != "http.disconnect":
            pass
    finally:
        _leave()


async def sleepy(scope, receive, send):
    '''Ignores the client: sleeps, then answers (to nobody, if it left).'''
    _enter()
    try:
        await asyncio.sleep(2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})
    finally:
        _leave()


async def hello(scope, receive, send):
    _enter()
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})
    finally:
        _leave()


async def big(scope, receive, send):
    '''64 KiB chunks, as many as the query string says; records how it ended.'''
    _enter()
    try:
        chunk = b"b" * 65536
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(int(scope["query_string"])):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        finished.append("complete")
    except OSError:
        finished.append("disconnected")
    finally:
        _leave()
"""


def config(
    app: str,
    *,
    streams: int = 20,
    header_timeout: float = HEADER_TIMEOUT,
    max_header_bytes: int = MAX_HEADER_BYTES,
    http2: str = "",
) -> str:
    return f"""
[listeners.web]
bind = "127.0.0.1:0"
app = "a"
send_timeout = "{SEND_TIMEOUT}s"
header_timeout = "{header_timeout}s"
max_header_bytes = {max_header_bytes}

[listeners.web.http2]
max_concurrent_streams = {streams}
{http2}

[apps.a]
target = "apps:{app}"
lifespan = "off"
"""


# ------------------------------------------------------------------ memory


_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE


class RssWatch:
    """The resident set of this process (the host's too), sampled every 10 ms."""

    def __init__(self) -> None:
        self.base = self.peak = rss()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)
        self.peak = max(self.peak, rss())

    def _run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, rss())

    @property
    def grown(self) -> int:
        return self.peak - self.base

    def check(self, doing: str = "") -> None:
        said = f"the process grew by {self.grown >> 20} MiB"
        assert self.grown < RSS_BOUND, f"{said} ({doing})" if doing else said


# ---------------------------------------------------------------- the peer


class Peer:
    """A client that sends whatever frames it is given and parses what comes back."""

    def __init__(
        self, sock: socket.socket, settings: dict[int, int] | None = None, *, preface: bool = True
    ) -> None:
        self.sock = sock
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 20)
        self.inbound = bytearray()
        self.block = b""  # a header block from the server, until END_HEADERS
        self.frames: list[Frame] = []
        self.heads: dict[int, list[tuple[bytes, bytes]]] = {}
        self.received = 0  # bytes read
        self.parse = preface  # False: what comes back may be HTTP/1.1; only read it
        self.ended: set[int] = set()  # streams the server ended (END_STREAM or RST_STREAM)
        self.closed = False
        if preface:
            self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    # sending

    def send(self, data: bytes) -> bool:
        """False once the server has closed (we get its reset, or a broken pipe)."""
        if self.closed:
            return False
        self.sock.settimeout(SOCKET_TIMEOUT)  # `poll` leaves shorter ones behind
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return False
        return True

    def block_for(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        extra: Iterable[tuple[str, str]] = (),
    ) -> bytes:
        fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "x")]
        return self.encoder.encode([*fields, *extra])

    def request(self, stream_id: int, path: str = "/", *, end_stream: bool = True) -> bytes:
        """A HEADERS frame opening `stream_id`."""
        frame = HeadersFrame(stream_id, self.block_for(path))
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    # receiving

    def poll(self, timeout: float) -> None:
        """Read and parse what the server sends within `timeout` (less if it closes)."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(262144)
            except TimeoutError:
                return
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return
            self.received += len(data)
            if self.parse:
                self.inbound += data
                self._parse()

    def handshake(self) -> None:
        """Read the server's SETTINGS (and acknowledge them), so that no ACK of ours
        lands in the middle of what the test sends next."""
        assert self.wait(lambda: any(isinstance(f, SettingsFrame) for f in self.frames), 3)

    def wait(self, until: Callable[[], bool], timeout: float) -> bool:
        """Read until `until()` holds (True), or the server closes or time is up."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return until()
            self.poll(min(0.05, left))
        return True

    def _parse(self) -> None:
        inbound = self.inbound
        while len(inbound) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(inbound[:9]))
            if len(inbound) < 9 + length:
                return
            frame.parse_body(memoryview(inbound[9 : 9 + length]))
            del inbound[: 9 + length]
            if isinstance(frame, HeadersFrame | ContinuationFrame):
                self.block += frame.data
                if "END_HEADERS" in frame.flags:
                    fields = self.decoder.decode(self.block, raw=True)
                    self.heads[frame.stream_id] = fields
                    self.block = b""
            elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())
            if isinstance(frame, DataFrame):
                frame.data = b""  # counted, not kept
            if "END_STREAM" in frame.flags or isinstance(frame, RstStreamFrame):
                self.ended.add(frame.stream_id)
            self.frames.append(frame)

    def goaway(self) -> GoAwayFrame | None:
        return next((f for f in self.frames if isinstance(f, GoAwayFrame)), None)

    def goaway_code(self) -> int | None:
        frame = self.goaway()
        return None if frame is None else frame.error_code

    def resets(self) -> dict[int, int]:
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def status(self, stream_id: int) -> int | None:
        for name, value in self.heads.get(stream_id, ()):
            if name == b":status":
                return int(value)
        return None

    def closes_within(self, timeout: float) -> bool:
        """Whether the server closes within `timeout` (reading what it sends until then)."""
        self.poll(timeout)
        return self.closed


def connect(host: Any, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connecting: the window scale is decided then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(SOCKET_TIMEOUT)
    try:
        sock.connect(("127.0.0.1", host.port()))
    except OSError:
        sock.close()
        raise
    return sock


def code_name(code: int | None) -> str:
    if code is None:
        return "none"
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


# ------------------------------------------------------------ rapid reset


@pytest.mark.parametrize("app", ["hold", "sleepy"])
def test_rapid_reset_is_bounded_and_ends_with_enhance_your_calm(serve, app):
    """CVE-2023-44487: HEADERS then RST_STREAM(CANCEL) at once, stream after stream.

    The apps of one connection never run more than `max_concurrent_streams` at
    once (a reset stream's app still counts while it runs), and a client that
    resets 3 x RESET_LIMIT streams within a second (so more than RESET_LIMIT in
    any one-second window it may straddle) gets GOAWAY ENHANCE_YOUR_CALM.
    `hold` works 10 ms, then leaves on http.disconnect; `sleepy` ignores the
    client, so its slots stay taken and later streams are refused: opening and
    resetting those is the same attack, it costs the server the same work.
    """
    host = serve(config(app, streams=20), APPS)
    batch, sent, stream_id = 50, 0, 1  # more than the 20 slots in each write
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock)
        started = time.monotonic()
        while sent < 3 * RESET_LIMIT:
            data = []
            for _ in range(batch):
                data.append(peer.request(stream_id))
                data.append(RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL).serialize())
                stream_id += 2
            if not peer.send(b"".join(data)):
                break
            sent += batch
            peer.poll(0.002)
            if peer.goaway() is not None:
                break
        took = time.monotonic() - started
        peer.wait(lambda: peer.goaway() is not None, 2)
    memory.check()
    module = host.module
    assert module.most <= 20, f"{module.most} app calls ran at once on one connection"
    assert took < 1.0, f"the client was too slow to attack: {sent} resets took {took:.2f} s"
    assert peer.goaway_code() == CALM, (
        f"after {sent} streams opened and reset in {took:.2f} s ({module.calls} app calls):"
        f" GOAWAY {code_name(peer.goaway_code())}, closed: {peer.closed}"
    )


# ------------------------------------------------------- CONTINUATION flood


CONTINUATIONS = {
    # name: (the listener's max_frame_size, CONTINUATION payload, frames sent at most)
    "16KiB-frames": (16384, 16384, 1024),  # 16 MiB
    "4MiB-frames": (4 << 20, 4 << 20, 24),  # 96 MiB: a larger max_frame_size is no excuse
    "empty-frames": (16384, 0, 8192),  # 72 KiB of headers: CPU, not memory
}


@pytest.mark.parametrize("case", CONTINUATIONS)
def test_continuation_flood_ends_the_connection(serve, case):
    """The 2024 CONTINUATION class (VU#421644): HEADERS without END_HEADERS, then
    CONTINUATION frames that never end the block: full ones make a server buffer
    them, empty ones burn its CPU. The connection ends with GOAWAY (PROTOCOL_ERROR or
    ENHANCE_YOUR_CALM) and closes, the process stays within RSS_BOUND, no app is
    called."""
    frame_size, payload, limit = CONTINUATIONS[case]
    http2 = f"max_frame_size = {frame_size}"
    host = serve(config("hello", http2=http2), APPS)
    frames_sent = 0
    batch = 32 if payload <= 16384 else 2
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock)
        peer.handshake()  # then nothing but the header block: any other frame would end it
        block = peer.block_for("/", extra=[("x-a", "1")])
        head = HeadersFrame(1, block[:5])
        head.flags.add("END_STREAM")
        peer.send(head.serialize())
        filler = ContinuationFrame(1, b"\x00" * payload).serialize() * batch
        deadline = time.monotonic() + 5
        while frames_sent < limit and time.monotonic() < deadline:
            if not peer.send(filler):
                break
            frames_sent += batch
            peer.poll(0.001)
            if peer.goaway() is not None:
                break
        peer.wait(lambda: peer.goaway() is not None, 2)
        closed = peer.closes_within(LINGER_WAIT)
    code = peer.goaway_code()
    said = f"after {frames_sent} CONTINUATION frames of {payload} bytes: GOAWAY {code_name(code)}"
    memory.check(said)
    assert code in (ErrorCodes.PROTOCOL_ERROR, CALM), said
    assert closed, "the server kept the connection open after its GOAWAY"
    assert host.module.calls == 0


# -------------------------------------------------------------- HPACK bomb


BOMBS = {
    "48MB": 12000,
    # 40 KB decoded from 4 KB: over max_header_bytes, under the 64 KiB that h2's decoder
    # allows by default, so only our own limit on the decoded size refuses it
    "40KB": 10,
}


@pytest.mark.parametrize("case", BOMBS)
def test_hpack_bomb_ends_the_connection_without_an_app_call(serve, case):
    """One 4000-byte field inserted into the dynamic table, then referenced 12,000 times
    (one byte each) in the same header block: 48 MB once decoded, from 14 KB on the
    wire; or 10 times, 40 KB. The decoder stops at `max_header_bytes` (16 KiB): GOAWAY,
    no app call."""
    host = serve(config("hello"), APPS)
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock)
        block = peer.block_for("/")
        block += peer.encoder.encode([("x-bomb", "a" * 4000)])  # dynamic index 62
        block += bytes([0x80 | 62]) * BOMBS[case]
        assert len(block) <= 16384
        frame = HeadersFrame(1, block)
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        peer.send(frame.serialize())
        peer.wait(lambda: peer.goaway() is not None or bool(peer.heads), 3)
        closed = peer.closes_within(LINGER_WAIT)
    memory.check()
    code = peer.goaway_code()
    assert code in (CALM, ErrorCodes.COMPRESSION_ERROR, ErrorCodes.PROTOCOL_ERROR), (
        f"GOAWAY {code_name(code)}; responses: {peer.heads}"
    )
    assert closed
    assert host.module.calls == 0


def test_a_header_list_over_max_header_bytes_is_refused(serve):
    """A plain header list of 24 KB (over the 16 KiB `max_header_bytes`, and under
    the 64 KiB h2 would allow by default), in HEADERS + CONTINUATION: the
    connection or the stream is refused, and no app sees the request."""
    host = serve(config("hello"), APPS)
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock)
        extra = [(f"x-big-{index}", "v" * 6000) for index in range(4)]
        fields = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")]
        block = peer.encoder.encode([*fields, *extra], huffman=False)
        assert len(block) > MAX_HEADER_BYTES
        head = HeadersFrame(1, block[:16384])
        head.flags.add("END_STREAM")
        tail = ContinuationFrame(1, block[16384:])
        tail.flags.add("END_HEADERS")
        peer.send(head.serialize() + tail.serialize())

        def answered() -> bool:
            return peer.goaway() is not None or 1 in peer.resets() or 1 in peer.heads

        peer.wait(answered, 3)
    memory.check()
    code, resets, status = peer.goaway_code(), peer.resets(), peer.status(1)
    refused = (code is not None and code != ErrorCodes.NO_ERROR) or 1 in resets or status == 431
    assert refused, f"GOAWAY {code_name(code)}, resets {resets}, status {status}"
    assert host.module.calls == 0


def _header_block_frames(stream_id: int, block: bytes, size: int = 16384) -> bytes:
    """A header block as HEADERS (with END_STREAM) and as many CONTINUATION as it needs."""
    pieces = [block[at : at + size] for at in range(0, len(block), size)] or [b""]
    frames = []
    for index, piece in enumerate(pieces):
        frame = (
            HeadersFrame(stream_id, piece) if index == 0 else ContinuationFrame(stream_id, piece)
        )
        if index == 0:
            frame.flags.add("END_STREAM")
        if index == len(pieces) - 1:
            frame.flags.add("END_HEADERS")
        frames.append(frame.serialize())
    return b"".join(frames)


def test_zero_length_header_fields_are_refused(serve):
    """CVE-2019-9516 (0-length headers leak): fields with an empty name and value, which
    some servers kept in memory. An empty name is no token: 400 on the stream, the
    connection goes on, no app call."""
    host = serve(config("hello"), APPS)
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock)
        fields = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")]
        block = peer.encoder.encode([*fields, *[("", "")] * 200], huffman=False)
        peer.send(_header_block_frames(1, block))
        peer.wait(lambda: 1 in peer.heads or 1 in peer.resets() or peer.goaway() is not None, 3)
    memory.check()
    assert peer.status(1) == 400 or 1 in peer.resets() or peer.goaway() is not None, (
        f"status {peer.status(1)}, resets {peer.resets()}, GOAWAY {code_name(peer.goaway_code())}"
    )
    assert host.module.calls == 0


def _unique_field_requests(host: Any, count: int, batch: int) -> None:
    """`count` requests, `batch` in flight at most, each with a field never seen before."""
    fields = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")]
    with connect(host) as sock:
        peer = Peer(sock)
        for first in range(0, count, batch):
            ids = [2 * index + 1 for index in range(first, first + batch)]
            for stream_id in ids:
                value = f"{stream_id:010d}" * 25000
                block = peer.encoder.encode([*fields, ("x-unique", value)], huffman=False)
                assert peer.send(_header_block_frames(stream_id, block))
            answered = peer.wait(lambda ids=ids: peer.ended.issuperset(ids), 5)
            assert answered, f"streams {ids}: GOAWAY {code_name(peer.goaway_code())}"


def test_header_fields_are_not_kept_across_requests(serve):
    """The CVE-2019-9516 class with valid fields: 300 requests, each with one field of
    250,000 bytes never seen before (`max_header_bytes` is 256 KiB here), all answered.
    Nothing of a request's fields may outlive it: once they are answered, less than
    KEPT_BOUND of what was allocated meanwhile is still alive (tracemalloc: an RSS
    would not tell, when the heap has room left by earlier tests), while the fields
    add up to 75 MB; and the process stays within RSS_BOUND."""
    host = serve(config("hello", max_header_bytes=256 * 1024), APPS)
    count = 300
    tracemalloc.start()
    try:
        with RssWatch() as memory:
            _unique_field_requests(host, count, batch=10)  # of the 20 streams allowed
        gc.collect()  # a stream and its exchange are a cycle: garbage, not kept
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert host.module.calls == count
    said = f"{count} requests with a new 250,000-byte field each"
    assert kept < KEPT_BOUND, f"{kept >> 20} MiB still allocated after {said}"
    memory.check(said)


KEPT_BOUND = 16 * 1024 * 1024


# ------------------------------------------- floods from a client that never reads


def _flood_without_reading(sock: socket.socket, chunk: bytes) -> tuple[str, int, float]:
    """Send `chunk` over and over, never reading; non-blocking, bounded in time and bytes.

    Returns how it ended, with the bytes sent and the seconds taken:
    "closed" (the server closed while taking our bytes), "dropped" (it stopped
    taking them for STALL seconds, then closed), "stalled" (it stopped taking
    them and never closed), "capped" (it took FLOOD_BYTES: read, or dropped
    unread after a GOAWAY) or "flowing" (it was still taking them at the deadline).
    """
    sock.setblocking(False)
    started = progress = time.monotonic()
    sent, offset = 0, 0
    while True:
        now = time.monotonic()
        if sent >= FLOOD_BYTES:
            return "capped", sent, now - started
        if now - progress >= STALL + DROP_WAIT:
            return "stalled", sent, now - started
        if now - started >= FLOOD_SECONDS and now - progress < STALL:
            return "flowing", sent, now - started
        try:
            count = sock.send(chunk[offset:])
        except BlockingIOError:
            select.select([], [sock], [], 0.05)
            continue
        except (BrokenPipeError, ConnectionResetError):
            return ("dropped" if now - progress >= STALL else "closed"), sent, now - started
        sent += count
        offset = (offset + count) % len(chunk)
        progress = now


STALL = 1.5  # taking nothing that long: the server stopped reading
DROP_WAIT = SEND_TIMEOUT + 2 * TICK + 1  # ... and must drop the client within this
FLOOD_SECONDS = 6.0
FLOOD_BYTES = 32 * 1024 * 1024


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_a_flood_from_a_client_that_never_reads_is_not_read_forever(serve, kind):
    """CVE-2019-9512 (PING) and CVE-2019-9515 (SETTINGS): every frame makes the server
    queue an answer (PING ACK, SETTINGS ACK) for a client that reads none of them.
    The server must neither buffer its answers without bound nor read forever: it
    ends the connection (GOAWAY ENHANCE_YOUR_CALM, then closes), or stops reading
    and then drops the client after `send_timeout`."""
    host = serve(config("hold", header_timeout=30), APPS)
    if kind == "ping":
        frame = PingFrame(0, opaque_data=b"12345678").serialize()
    else:
        frame = SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 16384}).serialize()
    with connect(host, rcvbuf=65536) as sock, RssWatch() as memory:
        peer = Peer(sock)
        peer.handshake()  # our SETTINGS ACK goes now, not into a server that stopped reading
        outcome, sent, took = _flood_without_reading(sock, frame * 1000)
        peer.poll(0.5)  # only now: what the server said (a GOAWAY?) before it closed
        calm = peer.goaway_code() == CALM
        # all it took was dropped unread after its GOAWAY, if it ended the connection then
        ended = outcome in ("closed", "dropped") or (calm and peer.closes_within(LINGER_WAIT))
    memory.check()
    said = f"{outcome} after {sent // len(frame)} {kind} frames in {took:.1f} s"
    said += f", GOAWAY {code_name(peer.goaway_code())}"
    assert outcome not in ("flowing", "stalled"), f"the server was not done with us: {said}"
    assert ended, f"the server took our flood and did not end the connection: {said}"


# ---------------------------------------------------- request-less frame floods


def _flood(peer: Peer, frames: Callable[[int], bytes]) -> str:
    """Send 3 x FLOOD_LIMIT frames, `frames(n)` giving 200 from the n-th on, within a
    second (so more than FLOOD_LIMIT fall in one of the one-second windows it may
    straddle), stopping early at a GOAWAY or a close; then wait for the GOAWAY.
    Says what was sent, how fast, and the server's answer."""
    sent, batch = 0, 200
    started = time.monotonic()
    while sent < 3 * FLOOD_LIMIT:
        if not peer.send(frames(sent)):
            break
        sent += batch
        peer.poll(0.002)
        if peer.goaway() is not None:
            break
    took = time.monotonic() - started
    assert took < 1.0, f"the client was too slow to flood: {sent} frames took {took:.2f} s"
    peer.wait(lambda: peer.goaway() is not None, 2)
    return f"{sent} frames in {took:.2f} s, then GOAWAY {code_name(peer.goaway_code())}"


def test_empty_data_frames_flood_ends_with_enhance_your_calm(serve):
    """CVE-2019-9518: empty DATA frames without END_STREAM on an open stream cost the
    server work and carry nothing; more than FLOOD_LIMIT a second is a flood."""
    host = serve(config("hold"), APPS)
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock)
        peer.send(peer.request(1, end_stream=False))
        assert peer.wait(lambda: host.module.calls == 1, 3)
        empty = DataFrame(1, b"").serialize() * 200
        said = _flood(peer, lambda _: empty)
    memory.check(said)
    assert peer.goaway_code() == CALM, f"empty DATA frames: {said}"


def test_priority_flood_ends_with_enhance_your_calm(serve):
    """CVE-2019-9513 (resource loop): PRIORITY frames for streams never opened, each
    reprioritising the tree, carry no request; more than FLOOD_LIMIT a second is a
    flood."""
    host = serve(config("hold", header_timeout=30), APPS)

    def priorities(first: int) -> bytes:
        frames = []
        for index in range(first, first + 200):
            stream_id = 2 * index + 3
            frames.append(PriorityFrame(stream_id, depends_on=stream_id - 2).serialize())
        return b"".join(frames)

    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock)
        said = _flood(peer, priorities)
    memory.check(said)
    assert peer.goaway_code() == CALM, f"PRIORITY frames: {said}"


# ----------------------------------------------------------- holding windows


def test_a_window_that_never_opens_resets_the_stream_after_send_timeout(serve):
    """CVE-2019-9517: SETTINGS_INITIAL_WINDOW_SIZE = 0 and a large response asked for,
    then no WINDOW_UPDATE ever, while the client reads everything else. Within
    `send_timeout` (+ the tick that notices it) the stream is reset or the
    connection closed, and the app's `send` returns: the app finishes."""
    host = serve(config("big"), APPS)
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock, {SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        started = time.monotonic()
        peer.send(peer.request(1, "/big?64"))  # 4 MiB
        bound = SEND_TIMEOUT + 2 * TICK + 0.5
        peer.wait(lambda: 1 in peer.resets() or peer.goaway() is not None, bound)
        took = time.monotonic() - started
        peer.wait(lambda: bool(host.module.finished), 1)
    memory.check()
    ended = 1 in peer.resets() or peer.goaway() is not None or peer.closed
    assert ended, f"stream 1 neither reset nor the connection closed in {took:.1f} s"
    assert took <= bound
    assert host.module.finished == ["disconnected"]


def test_a_client_that_never_reads_is_dropped_after_send_timeout(serve):
    """CVE-2019-9517, slow read: windows wide open (2^31-1), a 128 MiB response asked
    for, and the socket never read. The app is held by back-pressure (the worker
    does not buffer the response), then the connection is dropped after
    `send_timeout` and the app's `send` raises. The response is twice RSS_BOUND, so
    a worker that buffered it for the client fails the memory check too."""
    host = serve(config("big"), APPS)
    wide = 2**31 - 1
    with connect(host, rcvbuf=65536) as sock, RssWatch() as memory:
        peer = Peer(sock, {SettingsFrame.INITIAL_WINDOW_SIZE: wide})
        peer.send(WindowUpdateFrame(0, window_increment=wide - 65535).serialize())
        started = time.monotonic()
        peer.send(peer.request(1, "/big?2048"))  # 128 MiB
        deadline = started + SEND_TIMEOUT + 2 * TICK + 2
        while not host.module.finished and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - started
        finished = list(host.module.finished)
        peer.poll(2)  # what is left: the connection is gone
        closed = peer.closed
    memory.check()
    assert finished == ["disconnected"], f"after {took:.1f} s the app's response: {finished}"
    assert closed, "the connection is still open"
    assert peer.received < 16 * 1024 * 1024


# ------------------------------------------------- more streams than advertised


def test_more_streams_than_advertised_are_refused_one_by_one(serve):
    """SETTINGS_MAX_CONCURRENT_STREAMS = 5, and the client opens 8 streams at once
    (ignoring the setting): the 6th and later are each refused with RST_STREAM
    REFUSED_STREAM, a stream error (RFC 9113 5.1.2), and the connection goes on.
    Every request carries a path of its own, so each header block adds HPACK
    entries: a server that skipped decoding the refused blocks would read the
    next request with the wrong fields."""
    host = serve(config("hold", streams=5), APPS)
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock)
        peer.send(b"".join(peer.request(s, f"/s{s}") for s in range(1, 17, 2)))
        extra = (11, 13, 15)
        peer.wait(lambda: all(s in peer.resets() for s in extra) or peer.closed, 3)
        peer.poll(0.3)  # any app started late
        most = host.module.most
        # One slot frees (its app has ended); the next request refers to HPACK
        # entries that the refused blocks added.
        peer.send(RstStreamFrame(1, error_code=ErrorCodes.CANCEL).serialize())
        peer.wait(lambda: host.module.running == 4 or peer.closed, 3)
        peer.send(peer.request(17, "/s13"))
        peer.wait(lambda: host.module.calls == 6 or peer.closed, 3)
    memory.check()
    assert most <= 5, f"{most} apps ran at once"
    resets = peer.resets()
    assert {s: resets.get(s) for s in extra} == dict.fromkeys(extra, ErrorCodes.REFUSED_STREAM), (
        f"resets { {s: code_name(c) for s, c in resets.items()} }"
    )
    assert peer.goaway() is None, f"GOAWAY {code_name(peer.goaway_code())}"
    assert host.module.paths == ["/s1", "/s3", "/s5", "/s7", "/s9", "/s13"]


# ------------------------------------------------------------------- a drain


@pytest.mark.parametrize("answers_ping", [True, False], ids=["answers the PING", "silent"])
def test_a_drain_serves_what_the_client_sent_before_it_saw_the_goaway(serve, answers_ping):
    """RFC 9113 6.8's two-step shutdown: a GOAWAY covering every stream and a PING;
    a request sent before the client saw them (here: after, which the server
    cannot tell apart) is still served; the final GOAWAY names it as the last
    stream once the PING is answered, or after DRAIN_PING_WAIT from a client that
    never answers. Both streams get their whole response, then the connection ends."""
    host = serve('[host]\ngraceful_timeout = "6s"\n' + config("sleepy"), APPS)
    with connect(host) as sock:
        peer = Peer(sock)
        peer.handshake()
        peer.send(peer.request(1))
        assert peer.wait(lambda: host.module.calls == 1, 3)
        drain = asyncio.run_coroutine_threadsafe(host.worker.drain(), host.loop)

        def pings() -> list[PingFrame]:
            return [f for f in peer.frames if isinstance(f, PingFrame) and "ACK" not in f.flags]

        def goaways() -> list[int]:
            return [f.last_stream_id for f in peer.frames if isinstance(f, GoAwayFrame)]

        assert peer.wait(lambda: bool(goaways()) and bool(pings()), 3)
        peer.send(peer.request(3))  # in flight as the GOAWAY came
        started = time.monotonic()
        if answers_ping:
            [ping] = pings()
            peer.send(PingFrame(0, opaque_data=ping.opaque_data, flags=["ACK"]).serialize())
        peer.wait(lambda: len(goaways()) == 2, DRAIN_PING_WAIT + 2 * TICK + 1)
        took = time.monotonic() - started
        peer.wait(lambda: peer.closed, 5)  # sleepy answers after 2 s
        drain.result(5)
    assert goaways() == [LAST_POSSIBLE_STREAM, 3]
    assert [peer.status(1), peer.status(3)] == [200, 200]
    assert not peer.resets()
    assert host.module.calls == 2
    if answers_ping:
        assert took < DRAIN_PING_WAIT, f"the final GOAWAY waited {took:.1f} s for nothing"
    else:
        assert took >= DRAIN_PING_WAIT - TICK, f"final GOAWAY after {took:.1f} s, no PING wait"


# ---------------------------------------------------------------- the preface


PREFACES = {
    "request line only": PREFACE[:16],
    "preface cut after SM": PREFACE[:20],
    "preface, nothing more": PREFACE,
    "preface and SETTINGS, no request": PREFACE + SettingsFrame(0).serialize(),
}


@pytest.mark.parametrize("case", PREFACES)
def test_a_preface_or_first_request_that_never_comes_times_out(serve, case):
    """A connection that never finishes its preface, or never sends a request after it,
    is closed by `header_timeout` (+ the tick that notices it), as an HTTP/1.1 head that
    never ends is."""
    host = serve(config("hello"), APPS)
    with connect(host) as sock, RssWatch() as memory:
        peer = Peer(sock, preface=False)
        peer.send(PREFACES[case])
        started = time.monotonic()
        closed = peer.closes_within(HEADER_TIMEOUT + 2 * TICK + 1)
        took = time.monotonic() - started
    memory.check()
    assert closed, f"still open after {took:.1f} s"
    assert took >= HEADER_TIMEOUT - TICK, f"closed after {took:.1f} s, before header_timeout"
    assert host.module.calls == 0

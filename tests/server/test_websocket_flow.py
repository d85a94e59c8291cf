"""WebSocket back-pressure on a real listener, with raw sockets as the misbehaving peers.

Read side: an app that stops reading makes the server stop reading the
socket once `max_queue` messages wait, so the client's sends stall in the
kernel buffers instead of piling up in our memory; when the app resumes,
every message arrives, in order. Write side: a client that does not read
makes the app's `websocket.send` wait, so the transport's write buffer stays
near its high-water mark instead of growing with what the app sends.
Bytes that need no app (pings before the accept or after our close, empty
continuation frames) must not grow the worker either.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from uvhost.server.websocket import EARLY_LIMIT, WebSocketProtocol

TIMEOUT = 5.0
STALL = 1.0  # a socket that stays unwritable (or an app send that waits) this long is stalled
MAX_QUEUE = 4
CHUNK = 64 * 1024
READ = 256 * 1024  # the most one socket read hands the protocol (uvloop's read buffer)

CONFIG = f"""
[listeners.main]
bind = "127.0.0.1:0"
app = "flow"

[listeners.impatient]
bind = "127.0.0.1:0"
app = "flow"
send_timeout = "1s"

[apps.flow]
target = "apps:app"
lifespan = "off"
[apps.flow.websocket]
max_queue = {MAX_QUEUE}
per_message_deflate = false
"""

APPS = r"""
import asyncio
import queue

reports = queue.Queue()
release = {}


async def app(scope, receive, send):
    await receive()
    if scope["path"] == "/accept-later":
        gate = release[scope["path"]] = asyncio.Event()
        reports.put(("connecting", None))
        await gate.wait()
    await send({"type": "websocket.accept"})
    gate = release[scope["path"]] = asyncio.Event()
    if scope["path"] == "/closing":
        await send({"type": "websocket.close", "code": 1000})
        reports.put(("closed", None))
        await receive()  # nothing but the disconnect comes after our close
        return
    if scope["path"] in ("/echo", "/accept-later"):
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    if scope["path"] == "/lagging":
        reports.put(("accepted", None))
        await gate.wait()
        sizes = []
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect" or message.get("text") == "end":
                reports.put(("drained", sizes))
                return
            sizes.append((message["bytes"][:4], len(message["bytes"])))
    if scope["path"] == "/firehose":
        chunk = b"\x5a" * 65536
        done = 0
        while True:
            pending = asyncio.ensure_future(send({"type": "websocket.send", "bytes": chunk}))
            finished, _ = await asyncio.wait({pending}, timeout=1.0)
            if not finished:
                reports.put(("blocked", done))
                await pending
                done += 1
                break
            done += 1
            if done >= 5000:  # never blocked: the test fails on this report
                reports.put(("never blocked", done))
                return
        await gate.wait()
        for _ in range(10):
            await send({"type": "websocket.send", "bytes": chunk})
            done += 1
        await send({"type": "websocket.send", "text": "done"})
        reports.put(("sent", done))
        await receive()
    if scope["path"] == "/cancelled":
        # An app that gives up on one slow send (a timeout) may still send afterwards.
        chunk = b"\x5a" * 65536
        while True:
            try:
                await asyncio.wait_for(send({"type": "websocket.send", "bytes": chunk}), 0.5)
            except asyncio.TimeoutError:
                break
        reports.put(("timed out", None))
        await gate.wait()
        try:
            await send({"type": "websocket.send", "text": "after the timeout"})
        except BaseException as error:
            reports.put(("later send", repr(error)))
            raise
        reports.put(("later send", "ok"))
        await receive()
"""


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def report(host, kind: str, timeout: float = TIMEOUT) -> Any:
    got, value = host.module.reports.get(timeout=timeout)
    assert got == kind, (got, value)
    return value


def release(host, path: str) -> None:
    async def set_gate() -> None:
        host.module.release[path].set()

    host.call(set_gate)


def the_websocket(host) -> WebSocketProtocol:
    """The worker's one WebSocket; call in the loop thread only."""
    (found,) = [
        c
        for ctx in host.worker.contexts
        for c in ctx.connections
        if isinstance(c, WebSocketProtocol)
    ]
    return found


def server_value(host, read: Callable[[WebSocketProtocol], Any]) -> Any:
    """`read(the worker's one WebSocket)`, run in the loop thread."""

    async def look() -> Any:
        return read(the_websocket(host))

    return host.call(look)


def server_side(host) -> dict[str, Any]:
    """What the worker holds for its one WebSocket, read in the loop thread."""

    async def look() -> dict[str, Any]:
        found = the_websocket(host)
        transport = found.transport
        assert transport is not None
        return {
            "queued": len(found.incoming),
            "reading_paused": found.reading_paused,
            "answers_backed_up": found.answers_backed_up,
            "write_buffer": transport.get_write_buffer_size(),
            "write_limits": transport.get_write_buffer_limits(),
        }

    return dict(host.call(look))


def test_app_that_stops_reading_stops_the_server_reading(host):
    with handshake(host, "/lagging", sndbuf=16 * 1024) as sock:
        report(host, "accepted")
        sock.setblocking(False)
        frames = [frame(0x2, i.to_bytes(4, "big") + b"\x00" * (CHUNK - 4)) for i in range(2000)]
        wire = b"".join(frames)
        sent = 0
        deadline = time.monotonic() + 4 * TIMEOUT
        stalled = False
        while sent < len(wire) and time.monotonic() < deadline:
            try:
                sent += sock.send(wire[sent : sent + 256 * 1024])
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], STALL)
                if not writable:
                    state = server_side(host)
                    if state["reading_paused"]:  # not merely a slow loop: the server stopped
                        stalled = True
                        break
        assert stalled, f"the client sent {sent} bytes without stalling"
        assert state["reading_paused"]
        # Reading pauses once MAX_QUEUE messages wait; the frames already read in the
        # same chunk (at most one socket read, 256 KiB in uvloop) are queued too.
        assert MAX_QUEUE <= state["queued"] <= MAX_QUEUE + 256 * 1024 // CHUNK
        complete = sent // len(frames[0])
        assert complete < len(frames) // 2  # the kernel buffers hold a bounded amount
        print(
            f"\nmax_queue={MAX_QUEUE}: the client stalled after {sent / 1024:.0f} KiB "
            f"({complete} messages of {CHUNK // 1024} KiB); the server holds {state['queued']}"
        )

        release(host, "/lagging")
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)
        whole = (complete + 1) * len(frames[0])  # finish the message that was cut off
        sock.sendall(wire[sent:whole] + frame(0x1, b"end"))
        sizes = report(host, "drained")
        assert sizes == [(i.to_bytes(4, "big"), CHUNK) for i in range(complete + 1)]


def test_client_that_does_not_read_makes_the_app_wait(host):
    with handshake(host, "/firehose", rcvbuf=16 * 1024) as sock:
        done = report(host, "blocked", timeout=2 * TIMEOUT)
        state = server_side(host)
        high = state["write_limits"][1]
        print(
            f"\nwrite back-pressure: {done} sends of {CHUNK // 1024} KiB completed before the "
            f"app's send waited; transport buffer {state['write_buffer'] / 1024:.0f} KiB "
            f"(high-water mark {high / 1024:.0f} KiB)"
        )
        assert state["write_buffer"] <= high + 2 * CHUNK  # a message at most past the mark
        assert done < 400  # ~25 MiB: kernel buffers, not the app's whole output (5000 sends)

        release(host, "/firehose")
        sock.settimeout(TIMEOUT)
        peer = RawReader(sock)
        received = 0
        while True:
            opcode, payload = peer.read_frame()
            if opcode == 0x1:
                assert payload == b"done"
                break
            assert (opcode, len(payload)) == (0x2, CHUNK)
            received += 1
        total = report(host, "sent")
        assert received == total  # nothing lost while the app waited


def test_a_client_that_reads_nothing_is_dropped_after_send_timeout(host):
    """The listener's send_timeout (1 s) ends the app's wait: the connection is dropped
    (the pings, every 20 s by default, would take much longer to notice)."""
    with handshake(host, "/firehose", rcvbuf=16 * 1024, listener="impatient") as sock:
        report(host, "blocked", timeout=2 * TIMEOUT)  # its send waited 1 s already
        started = time.monotonic()
        while host.connections():
            assert time.monotonic() - started < TIMEOUT, "never dropped"
            time.sleep(0.05)
        sock.settimeout(TIMEOUT)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(1 << 20):  # what was written before the cut, then the end
                pass


def test_a_send_cancelled_by_a_timeout_does_not_break_later_sends(host):
    with handshake(host, "/cancelled", rcvbuf=16 * 1024) as sock:
        report(host, "timed out", timeout=2 * TIMEOUT)
        peer = RawReader(sock)
        sock.settimeout(TIMEOUT)
        release(host, "/cancelled")
        while True:  # read, so the buffer drains and the later send can complete
            opcode, payload = peer.read_frame()
            if opcode == 0x1:
                assert payload == b"after the timeout"
                break
        assert report(host, "later send") == "ok"


def test_client_that_pings_and_never_reads_stops_being_read(host):
    """Pongs are written without the app, so no `send` waits for them: a peer that floods
    pings and reads nothing must stall in its own kernel buffers, not in our write buffer.
    Once it reads, every ping is answered exactly once and the connection serves on."""
    with handshake(host, "/echo", sndbuf=16 * 1024, rcvbuf=16 * 1024) as sock:
        sent = flood_pings(sock)
        assert sent is not None, "the client flooded pings without stalling"
        state = server_side(host)
        assert state["answers_backed_up"]
        assert not state["reading_paused"]  # the app is not the one behind
        high = state["write_limits"][1]
        assert state["write_buffer"] <= high + len(PINGS)
        print(
            f"\nping flood: the client stalled after {sent / 1024:.0f} KiB of pings; the "
            f"server's write buffer {state['write_buffer'] / 1024:.0f} KiB (mark {high / 1024:.0f})"
        )

        pings, sender = finish_pings(sock, sent, then=frame(0x1, b"after"))
        peer = RawReader(sock)
        pongs = 0
        while True:
            opcode, payload = peer.read_frame()
            if opcode == 0xA:
                assert payload == b"p" * 125
                pongs += 1
                continue
            assert (opcode, payload) == (0x1, b"after")
            break
        sender.join(TIMEOUT)
        assert pongs == pings
        assert not server_side(host)["answers_backed_up"]


def test_ping_before_the_accept_is_answered_after_the_101(host):
    """Nothing may reach the client before the handshake's answer: bytes sent before the app
    accepts are held, not parsed, so a ping's pong follows the 101 instead of preceding it
    (where a client would read the pong as its HTTP response)."""
    with upgrade(host, "/accept-later", then=frame(0x9, b"with the head")) as sock:
        report(host, "connecting")
        sock.sendall(frame(0x9, b"while the app decides"))
        readable, _, _ = select.select([sock], [], [], 0.5)
        assert not readable, f"the server wrote before the accept: {sock.recv(200)!r}"
        release(host, "/accept-later")
        read_101(sock)
        peer = RawReader(sock)
        assert peer.read_frame() == (0xA, b"with the head")
        assert peer.read_frame() == (0xA, b"while the app decides")
        sock.sendall(frame(0x1, b"open"))
        assert peer.read_frame() == (0x1, b"open")


def test_ping_flood_before_the_accept_stalls_in_the_client(host):
    """What a client sends before the app accepts is held for the accept, EARLY_LIMIT at
    most, then the server stops reading: a client that floods pings while the app decides
    (and never reads) stalls in its own buffers instead of growing the worker. Once the app
    accepts, every ping is answered once, after the 101."""
    with upgrade(host, "/accept-later", sndbuf=16 * 1024, rcvbuf=16 * 1024) as sock:
        report(host, "connecting")
        sent = flood_pings(sock)
        assert sent is not None, "the client flooded pings before the accept without stalling"
        held, full = server_value(host, lambda ws: (len(ws.early), ws.socket_paused))
        assert full
        assert EARLY_LIMIT <= held <= EARLY_LIMIT + READ  # one socket read past the limit
        readable, _, _ = select.select([sock], [], [], 0)
        assert not readable  # nothing, not even a pong, before the accept
        print(
            f"\nping flood before accept: the client stalled after {sent / 1024:.0f} KiB; "
            f"the server holds {held / 1024:.0f} KiB (limit {EARLY_LIMIT // 1024} KiB)"
        )

        release(host, "/accept-later")
        pings, sender = finish_pings(sock, sent, then=frame(0x1, b"after"))
        read_101(sock)
        peer = RawReader(sock)
        pongs = 0
        while (got := peer.read_frame()) == PONG:
            pongs += 1
        assert got == (0x1, b"after")
        sender.join(TIMEOUT)
        assert pongs == pings


def test_client_that_pings_after_our_close_and_never_reads_stops_being_read(host):
    """After the app's close frame the library still answers pings until the client's own
    close (or the close timeout, 20 s here): those pongs back up like any others, so reading
    pauses and a client that floods pings and never reads stalls in its own buffers instead
    of growing our write buffer. When it reads and answers the close, it gets our close,
    every pong, and the end of the connection."""
    with handshake(host, "/closing", sndbuf=16 * 1024, rcvbuf=16 * 1024) as sock:
        report(host, "closed")
        sent = flood_pings(sock)
        assert sent is not None, "the client flooded pings after our close without stalling"
        state = server_side(host)
        assert state["answers_backed_up"]
        high = state["write_limits"][1]
        assert state["write_buffer"] <= high + READ  # one socket read's pongs past the mark
        print(
            f"\nping flood after close: the client stalled after {sent / 1024:.0f} KiB; the "
            f"server's write buffer {state['write_buffer'] / 1024:.0f} KiB (mark {high / 1024:.0f})"
        )

        answer = frame(0x8, (1000).to_bytes(2, "big"))
        pings, sender = finish_pings(sock, sent, then=answer)
        peer = RawReader(sock)
        assert peer.read_frame() == (0x8, (1000).to_bytes(2, "big"))
        pongs = 0
        with contextlib.suppress(EOFError):
            while True:
                assert peer.read_frame() == PONG
                pongs += 1
        sender.join(TIMEOUT)
        assert peer.buffer == b""
        assert pongs == pings


def test_empty_continuation_frames_do_not_grow_the_server(host):
    """A fragmented message is held as its payload only: 50,000 empty continuation frames
    (6 bytes each on the wire) leave one byte held, where a list of fragments grew by an
    entry per frame for as long as the message never ended. The message still arrives
    whole when it ends."""
    empty = frame(0x0, b"", fin=False)
    with handshake(host, "/echo") as sock:
        peer = RawReader(sock)
        sock.sendall(frame(0x1, b"x", fin=False) + empty * 50_000 + frame(0x9, b"read"))
        assert peer.read_frame() == (0xA, b"read")  # every frame before the ping was read
        assert server_value(host, lambda ws: len(ws.fragments)) == 1
        sock.sendall(empty * 1000 + frame(0x0, b"yz"))
        assert peer.read_frame() == (0x1, b"xyz")
        assert server_value(host, lambda ws: len(ws.fragments)) == 0


# ----------------------------------------------------------------- raw helpers


class RawReader:
    def __init__(self, sock: socket.socket, buffer: bytes = b"") -> None:
        self.sock = sock
        self.buffer = buffer

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("closed by the server")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._take(2), "big")
        elif length == 127:
            length = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(length)


def flood_pings(sock: socket.socket, limit: int = 32 * 2**20) -> int | None:
    """Send PINGS over and over without reading, on a non-blocking socket: the bytes sent
    once it stays unwritable for STALL, or None when `limit` went out (or 2 * TIMEOUT
    passed) without a stall."""
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 2 * TIMEOUT
    while time.monotonic() < deadline and sent < limit:
        try:
            sent += sock.send(PINGS[sent % len(PING) :])  # stays aligned: whole pings
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], STALL)
            if not writable:
                return sent
    return None


def finish_pings(sock: socket.socket, sent: int, *, then: bytes) -> tuple[int, threading.Thread]:
    """After `flood_pings` stalled: blocking again, complete the ping the stall cut off and
    send `then`, in a thread (the server reads only as we read its answers); how many whole
    pings went out, and the thread to join."""
    sock.setblocking(True)
    sock.settimeout(TIMEOUT)
    cut = sent % len(PING)
    rest = PING[cut:] if cut else b""
    sender = threading.Thread(target=sock.sendall, args=(rest + then,))
    sender.start()
    return (sent + len(rest)) // len(PING), sender


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame (final unless told), masked with a zero key (valid, and cheap to build)."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes([first, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + size.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


PING = frame(0x9, b"p" * 125)
PONG = (0xA, b"p" * 125)  # what RawReader.read_frame gives for the answer to PING
PINGS = PING * 1000  # what flood_pings sends, again and again


def upgrade(
    host,
    path: str,
    *,
    sndbuf: int = 0,
    rcvbuf: int = 0,
    then: bytes = b"",
    listener: str | None = None,
) -> socket.socket:
    """A raw socket with small kernel buffers (set before connecting) that sent an upgrade
    head, and `then` in the same write; nothing is read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", host.port(listener)))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n%s" % (path.encode(), key, then)
    )
    return sock


def read_101(sock: socket.socket) -> None:
    """Read the handshake's answer, which must be a 101, and not a byte past it."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: nothing past the head is consumed
        assert chunk, f"closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head


def handshake(
    host, path: str, *, sndbuf: int = 0, rcvbuf: int = 0, listener: str | None = None
) -> socket.socket:
    """A raw socket with small kernel buffers (set before connecting), past the 101."""
    sock = upgrade(host, path, sndbuf=sndbuf, rcvbuf=rcvbuf, listener=listener)
    read_101(sock)
    return sock

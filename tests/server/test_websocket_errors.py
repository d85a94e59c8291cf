"""WebSocket faults on a real listener: the app's, the client's, and draining.

An app exception before accept is a 500, after accept a close 1011; a
malformed frame is a close 1002, invalid UTF-8 in text a close 1007 (RFC 6455
7.4.1, 8.1); a bad handshake is answered by the library (400, or 426 with the
version we speak; 431 or our 400 for a head only its own parser refuses) and
the app is never called; a draining worker closes open WebSockets with 1001
after what the app already sent.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

TIMEOUT = 5.0

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
app = "faulty"

[apps.faulty]
target = "apps:app"
lifespan = "off"
"""

LIMITED = """
[listeners.main]
bind = "127.0.0.1:0"
app = "faulty"
limit_concurrency = 2

[apps.faulty]
target = "apps:app"
lifespan = "off"
"""

APPS = r"""
import asyncio
import queue

reports = queue.Queue()
calls = []
gates = {}


async def app(scope, receive, send):
    calls.append(scope["path"])
    if scope["type"] == "http":
        if scope["path"] == "/busy":  # still running when the request behind it is read
            await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"http"})
        return
    await receive()
    if scope["path"] in ("/late-accept", "/accept-while-draining"):
        gate = gates[scope["path"]] = asyncio.Event()
        reports.put(("connecting", None))
        await gate.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as error:
            reports.put(("accept failed", type(error).__name__))
            return
        reports.put(("accepted", None))
    if scope["path"] == "/return-after-accept":
        await send({"type": "websocket.accept"})
        return
    if scope["path"] == "/raise-before-accept":
        raise RuntimeError("boom before accept")
    if scope["path"] == "/return-before-accept":
        return
    if scope["path"] not in ("/late-accept", "/accept-while-draining"):
        await send({"type": "websocket.accept"})
    if scope["path"] == "/raise-after-accept":
        await send({"type": "websocket.send", "text": "about to fail"})
        raise RuntimeError("boom after accept")
    if scope["path"] == "/drain":
        for index in range(3):
            await send({"type": "websocket.send", "text": f"message {index}"})
        await send({"type": "websocket.send", "bytes": b"\x07" * 1_000_000})
        reports.put(("sent", None))
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            reports.put(("disconnect", message))
            return
        message["type"] = "websocket.send"
        await send(message)
"""


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def report(host, kind: str) -> Any:
    got, value = host.module.reports.get(timeout=TIMEOUT)
    assert got == kind, (got, value)
    return value


def ws(host, path: str, **options: Any) -> ClientConnection:
    options.setdefault("open_timeout", TIMEOUT)
    options.setdefault("close_timeout", TIMEOUT)
    options.setdefault("max_size", None)
    return connect(f"ws://127.0.0.1:{host.port()}{path}", **options)


# --------------------------------------------------------------------- the app


def test_exception_before_accept_is_500(host, caplog):
    with pytest.raises(InvalidStatus) as failed:
        ws(host, "/raise-before-accept")
    assert failed.value.response.status_code == 500
    assert b"boom" not in failed.value.response.body  # no details leak to the client
    assert "exception in ASGI app" in caplog.text
    assert "boom before accept" in caplog.text


def test_return_before_accept_is_500(host):
    with pytest.raises(InvalidStatus) as failed:
        ws(host, "/return-before-accept")
    assert failed.value.response.status_code == 500


def test_exception_after_accept_closes_1011(host, caplog):
    with ws(host, "/raise-after-accept") as client:
        assert client.recv(timeout=TIMEOUT) == "about to fail"
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
    assert "boom after accept" in caplog.text


def test_app_that_returns_after_accept_closes_1000(host):
    with ws(host, "/return-after-accept") as client, pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000


def test_accept_after_the_client_left_raises_oserror_in_the_app(host):
    """ASGI: send() on a closed connection raises an OSError subclass, accept included."""
    with host.raw() as raw:
        raw.send(upgrade_request(b"/late-accept"))
        report(host, "connecting")
    host.call(lambda: wait_for_no_connections(host))
    release(host, "/late-accept")
    assert report(host, "accept failed") == "ClientDisconnectedError"


# ------------------------------------------------------------ malformed frames


@pytest.mark.parametrize(
    ("name", "wire", "code"),
    [
        ("unmasked frame", bytes([0x81, 0x02]) + b"hi", 1002),
        ("reserved opcode 0x3", bytes([0x83, 0x80]) + b"\x00" * 4, 1002),
        ("reserved opcode 0xB (control)", bytes([0x8B, 0x80]) + b"\x00" * 4, 1002),
        ("RSV2 set", bytes([0xA1, 0x82]) + b"\x00" * 4 + b"hi", 1002),
        ("fragmented ping", bytes([0x09, 0x80]) + b"\x00" * 4, 1002),
        ("control frame over 125 bytes", bytes([0x89, 0xFE, 0x00, 0x7E]) + b"\x00" * 130, 1002),
        ("continuation with nothing to continue", bytes([0x80, 0x80]) + b"\x00" * 4, 1002),
        ("invalid UTF-8 in a text frame", bytes([0x81, 0x82]) + b"\x00" * 4 + b"\xc3\x28", 1007),
        ("close frame with a 1-byte payload", bytes([0x88, 0x81]) + b"\x00" * 4 + b"\x03", 1002),
        (
            "close reason that is not UTF-8",
            bytes([0x88, 0x84]) + b"\x00" * 4 + b"\x03\xe8\xff\xfe",
            1007,
        ),
    ],
)
def test_malformed_frame_is_closed_as_rfc_6455_says(host, name, wire, code):
    with open_raw(host, "/echo") as peer:
        peer.sendall(wire)
        assert peer.read_close() == code, name
        assert peer.closed_by_server()
    assert report(host, "disconnect")["code"] == code


def test_invalid_utf8_split_across_fragments_closes_1007(host):
    with open_raw(host, "/echo") as peer:
        peer.sendall(frame(0x1, b"ok \xf0\x9f", fin=False) + frame(0x0, b"\x98", fin=True))
        assert peer.read_close() == 1007


def test_valid_utf8_split_across_fragments_passes(host):
    with open_raw(host, "/echo") as peer:
        smile = "😀".encode()
        peer.sendall(frame(0x1, b"a" + smile[:1], fin=False) + frame(0x0, smile[1:] + b"b"))
        assert peer.read_frame() == (0x1, b"a" + smile + b"b")


def test_client_ping_gets_a_pong(host):
    with open_raw(host, "/echo") as peer:
        peer.sendall(frame(0x9, b"are you there"))
        assert peer.read_frame() == (0xA, b"are you there")


# ------------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("name", "drop", "add", "status"),
    [
        ("missing key", b"Sec-WebSocket-Key", b"", 400),
        ("key that is not 16 bytes", b"Sec-WebSocket-Key", b"Sec-WebSocket-Key: c2hvcnQ=", 400),
        ("missing version", b"Sec-WebSocket-Version", b"", 400),
        ("wrong version", b"Sec-WebSocket-Version", b"Sec-WebSocket-Version: 8", 426),
    ],
)
def test_bad_handshake_is_answered_and_the_app_not_called(host, name, drop, add, status):
    request = b"\r\n".join(
        line for line in upgrade_request(b"/echo").split(b"\r\n") if not line.startswith(drop)
    )
    if add:
        request = request.replace(b"\r\n\r\n", b"\r\n" + add + b"\r\n\r\n")
    with host.raw() as raw:
        raw.send(request)
        response = raw.read_response()
        assert response.status == status, name
        if status == 426:
            assert response.header("sec-websocket-version") == b"13"
            assert response.header("upgrade") == b"websocket"  # RFC 9110 7.8
        options = (response.header("connection") or b"").lower().split(b",")
        assert b"close" in [option.strip() for option in options]
        assert raw.closed_by_server()
    assert host.module.calls == []


@pytest.mark.parametrize(
    ("extra", "body", "status"),
    [
        (b"".join(b"X-Header-%d: v\r\n" % i for i in range(129)), b"", 431),
        (b"Cookie: " + b"a" * 9000 + b"\r\n", b"", 431),
        (b"Content-Length: 5\r\n", b"hello", 400),
    ],
    ids=["129 headers", "a 9000-byte header line", "a Content-Length body"],
)
def test_head_only_the_library_refuses_is_answered_and_frees_its_slot(
    serve, caplog, extra, body, status
):
    """httptools accepts these heads but the websockets library's own parse refuses them
    (over its 128 headers, a line over its 8 KiB, a body on the upgrade). The client gets a
    real answer and a close, the app is not called, nothing fails in the transport, and the
    connection is forgotten: three of them on a listener with limit_concurrency = 2 leave
    no ghost holding a slot, so the next request is served, not refused with 503."""
    host = serve(LIMITED, APPS)
    request = upgrade_request(b"/echo").replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n") + body
    for attempt in range(3):
        with host.raw() as raw:
            raw.send(request)
            response = raw.read_response()
            assert response.status == status, (attempt, response.raw[:200])
            assert response.header("connection") == b"close"
            assert raw.closed_by_server()
    assert host.module.calls == []
    assert host.request("GET", "/after").status_code == 200
    host.call(lambda: wait_for_no_connections(host))
    assert host.module.calls == ["/after"]
    assert "Fatal error" not in caplog.text
    assert "AssertionError" not in caplog.text


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [("POST", b"GET ", b"POST "), ("HTTP/1.0", b" HTTP/1.1\r\n", b" HTTP/1.0\r\n")],
)
def test_upgrade_that_is_not_a_websocket_handshake_is_plain_http(host, name, old, new):
    """RFC 6455 4.1 asks for a GET over HTTP/1.1; anything else is an ordinary request."""
    with host.raw() as raw:
        raw.send(upgrade_request(b"/echo").replace(old, new, 1))
        response = raw.read_response()
        assert (response.status, response.body) == (200, b"http"), name
        assert raw.closed_by_server()


def test_upgrade_pipelined_behind_a_running_request_is_answered_too(host):
    """An upgrade read while the request before it still runs cannot switch protocols
    under that response: both get a response (the upgrade one as HTTP), then the
    connection closes."""
    with host.raw() as raw:
        raw.send(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n" + upgrade_request(b"/echo"))
        assert raw.read_response().body == b"http"
        assert raw.read_response().body == b"http"
        assert raw.closed_by_server()
    assert host.module.calls == ["/busy", "/echo"]


def test_upgrade_after_a_finished_request_on_the_connection_switches(host):
    """Once the response before it is complete, an upgrade on the same connection is
    served: the 200, then the 101 and the socket. (Pipelined in one read behind a request
    that answers without waiting, the upgrade is served as HTTP on 3.11 and switches on
    3.12+, where that app has finished before the upgrade is read: both are correct.)"""
    with host.raw() as raw:
        raw.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().body == b"http"
        raw.send(upgrade_request(b"/echo"))
        assert raw.read_response().status == 101
        peer = RawWebSocket(raw.sock, raw.buffer)
        peer.sendall(frame(0x1, b"after"))
        assert peer.read_frame() == (0x1, b"after")


def test_frame_sent_with_the_handshake_is_delivered_after_accept(host):
    """RFC 6455 asks clients to wait for the 101; one that does not loses nothing."""
    with host.raw() as raw:
        raw.send(upgrade_request(b"/echo") + frame(0x1, b"early"))
        assert raw.read_response().status == 101
        peer = RawWebSocket(raw.sock, raw.buffer)
        assert peer.read_frame() == (0x1, b"early")
        peer.sendall(frame(0x1, b"later"))
        assert peer.read_frame() == (0x1, b"later")


# -------------------------------------------------------------------- draining


def test_drain_closes_1001_after_messages_already_sent(host):
    with ws(host, "/drain") as client:
        report(host, "sent")
        stopper = threading.Thread(target=host.stop)
        stopper.start()
        try:
            received = [client.recv(timeout=TIMEOUT) for _ in range(4)]
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=TIMEOUT)
        finally:
            stopper.join(3 * TIMEOUT)
    assert received == ["message 0", "message 1", "message 2", b"\x07" * 1_000_000]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert report(host, "disconnect")["code"] == 1001  # the client echoed our close
    assert not stopper.is_alive()


def test_drain_while_the_app_decides_closes_1001_right_after_accept(host):
    with host.raw() as raw:
        raw.send(upgrade_request(b"/accept-while-draining"))
        report(host, "connecting")

        async def drain_then_accept() -> None:
            draining = asyncio.ensure_future(host.worker.drain())
            await asyncio.sleep(0)  # drain() runs up to its wait: every connection told
            host.module.gates["/accept-while-draining"].set()
            await draining

        stopper = threading.Thread(target=host.call, args=(drain_then_accept, 3 * TIMEOUT))
        stopper.start()
        try:
            assert raw.read_response().status == 101
            peer = RawWebSocket(raw.sock, raw.buffer)
            assert peer.read_close() == 1001
            peer.sendall(frame(0x8, (1001).to_bytes(2, "big")))
            assert peer.closed_by_server()
        finally:
            stopper.join(3 * TIMEOUT)
    assert not stopper.is_alive()
    report(host, "accepted")


def test_drain_with_a_client_that_never_answers_the_close(host):
    """The close frame goes out; the TCP connection is cut by the close timeout or drain."""
    with open_raw(host, "/echo") as peer:
        stopper = threading.Thread(target=host.stop)
        stopper.start()
        try:
            assert peer.read_close() == 1001
            assert peer.closed_by_server(timeout=3 * TIMEOUT)
        finally:
            stopper.join(3 * TIMEOUT)
    assert not stopper.is_alive()


# ----------------------------------------------------------------- raw helpers


def release(host, path: str) -> None:
    async def set_gate() -> None:
        host.module.gates[path].set()

    host.call(set_gate)


async def wait_for_no_connections(host) -> None:
    """Until the worker saw the client go (bounded by the caller's `host.call`)."""
    while any(context.connections for context in host.worker.contexts):
        await asyncio.sleep(0.01)


class RawWebSocket:
    def __init__(self, sock: socket.socket, buffer: bytes = b"") -> None:
        self.sock = sock
        self.buffer = buffer

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed by the server; buffered {self.buffer[:100]!r}")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        self.sock.settimeout(TIMEOUT)
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._take(2), "big")
        elif length == 127:
            length = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(length)

    def read_close(self) -> int:
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")

    def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame, masked with a zero key."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\x00" * 4 + payload


def upgrade_request(path: bytes) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)
    )


def open_raw(host, path: str) -> RawWebSocket:
    sock = host.connect()
    sock.sendall(upgrade_request(path.encode()))
    peer = RawWebSocket(sock)
    head = peer._take(12)
    assert head == b"HTTP/1.1 101", head
    while b"\r\n\r\n" not in peer.buffer:
        peer.buffer += sock.recv(65536)
    peer.buffer = peer.buffer.partition(b"\r\n\r\n")[2]
    return peer

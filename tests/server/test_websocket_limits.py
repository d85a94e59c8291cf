"""Per-app WebSocket settings on a real listener: message size, compression, keepalive.

`max_message_bytes` closes with 1009 (whole, fragmented and compressed
messages; a message at the limit passes), `per_message_deflate` on and off
is seen in the handshake the client gets, and `ping_interval` /
`ping_timeout` close a peer that never answers pings while a live one stays.
Back-pressure (max_queue and write buffering) is in test_websocket_flow.py.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode
from websockets.sync.client import ClientConnection, connect

TIMEOUT = 5.0

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
[listeners.main.routes]
"/" = "small"
"/plain" = "plain"
"/keepalive" = "keepalive"
"/all" = "all"
"/laggard" = "laggard"

[apps.small]
target = "apps:echo"
lifespan = "off"
[apps.small.websocket]
max_message_bytes = 1024

[apps.plain]
target = "apps:echo"
lifespan = "off"
[apps.plain.websocket]
per_message_deflate = false

[apps.all]
target = "apps:echo"
lifespan = "off"
[apps.all.websocket]
deflate_min_bytes = 1

[apps.laggard]
target = "apps:slow_start"
lifespan = "off"
[apps.laggard.websocket]
max_queue = 1
ping_interval = "0.5s"
ping_timeout = "0.5s"

[apps.keepalive]
target = "apps:echo"
lifespan = "off"
[apps.keepalive.websocket]
ping_interval = "1s"
ping_timeout = "1s"
"""

APPS = r"""
import asyncio
import queue

reports = queue.Queue()


async def echo(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            reports.put(("disconnect", message))
            return
        message["type"] = "websocket.send"
        await send(message)


async def slow_start(scope, receive, send):
    # Accepts, then takes nothing for 3 s: the queue fills and reading pauses.
    await receive()
    await send({"type": "websocket.accept"})
    await asyncio.sleep(3)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        message["type"] = "websocket.send"
        await send(message)
"""


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def ws(host, path: str, **options: Any) -> ClientConnection:
    options.setdefault("open_timeout", TIMEOUT)
    options.setdefault("close_timeout", TIMEOUT)
    options.setdefault("max_size", None)
    return connect(f"ws://127.0.0.1:{host.port()}{path}", **options)


def disconnect_code(host) -> int:
    kind, message = host.module.reports.get(timeout=TIMEOUT)
    assert kind == "disconnect"
    return int(message["code"])


def closed_with(client: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None, "the server closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


# ------------------------------------------------------------ max_message_bytes


@pytest.mark.parametrize("compression", ["deflate", None])
def test_message_at_the_limit_passes(host, compression):
    with ws(host, "/", compression=compression) as client:
        client.send(b"\x01" * 1024)
        assert client.recv(timeout=TIMEOUT) == b"\x01" * 1024
        client.send("é" * 512)  # 1024 bytes of UTF-8
        assert client.recv(timeout=TIMEOUT) == "é" * 512


def test_fragmented_message_at_the_limit_passes(host):
    # Uncompressed only: the client ends a fragmented message with an empty final
    # frame, which permessage-deflate turns into 1 byte on the wire, and the library
    # checks wire sizes against what is left of the limit (0 here), so a compressed
    # fragmented message exactly at the limit is refused with 1009.
    with ws(host, "/", compression=None) as client:
        client.send([b"a" * 512, b"b" * 512])
        assert client.recv(timeout=TIMEOUT) == b"a" * 512 + b"b" * 512
        client.send(["é" * 100, "€" * 100, "x" * 424])  # 200 + 300 + 424 bytes
        assert client.recv(timeout=TIMEOUT) == "é" * 100 + "€" * 100 + "x" * 424


@pytest.mark.parametrize("compression", ["deflate", None])
def test_message_over_the_limit_closes_1009(host, compression):
    with ws(host, "/", compression=compression) as client:
        client.send(os.urandom(1025))
        assert closed_with(client)[0] == 1009
    assert disconnect_code(host) == 1009


def test_fragmented_message_growing_over_the_limit_closes_1009(host):
    with ws(host, "/", compression=None) as client:
        client.send([b"x" * 400, b"y" * 400, b"z" * 400])  # each fragment fits, the sum does not
        assert closed_with(client)[0] == 1009
    assert disconnect_code(host) == 1009


def test_compressed_message_is_limited_by_its_inflated_size(host):
    with ws(host, "/") as client:
        assert client.protocol.extensions, "permessage-deflate was not negotiated"
        client.send(b"\x00" * 100_000)  # a few hundred bytes on the wire
        assert closed_with(client)[0] == 1009


def test_over_the_limit_on_a_raw_socket(host):
    """Fragments sent frame by frame: the close comes once the sum passes the limit."""
    with open_raw(host, "/") as peer:
        peer.send_frame(0x2, b"a" * 600, fin=False)
        peer.send_frame(0x0, b"b" * 400, fin=False)
        peer.send_frame(0x0, b"c" * 100, fin=True)
        assert peer.read_close()[0] == 1009
        assert peer.closed_by_server()


# ----------------------------------------------------------- per_message_deflate


def test_compression_negotiated_when_on(host):
    with ws(host, "/", compression="deflate") as client:
        assert "permessage-deflate" in client.response.headers["Sec-WebSocket-Extensions"]
        assert [type(e).__name__ for e in client.protocol.extensions] == ["PerMessageDeflate"]
        text = "compress me " * 50
        client.send(text)
        assert client.recv(timeout=TIMEOUT) == text


def compressed_flags(client: ClientConnection) -> list[bool]:
    """RSV1 of every data frame the client reads from here on: set = compressed on the wire."""
    deflate = client.protocol.extensions[0]
    flags: list[bool] = []
    decode = deflate.decode

    def watching(frame: Any, **options: Any) -> Any:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            flags.append(frame.rsv1)
        return decode(frame, **options)

    deflate.decode = watching  # type: ignore[method-assign]
    return flags


def test_small_messages_go_out_uncompressed(host):
    """Under deflate_min_bytes (default 128) a message leaves plain, at it or above compressed;
    interleaving both keeps the compression contexts in step (context takeover is on)."""
    with ws(host, "/", compression="deflate") as client:
        flags = compressed_flags(client)
        sent = []
        for round_ in range(20):
            for text in (f"tiny {round_}", "y" * 127, "z" * 128, f"big {round_} " * 40):
                client.send(text)
                sent.append(text)
                assert client.recv(timeout=TIMEOUT) == text
            client.send(b"\x00" * 10)
            assert client.recv(timeout=TIMEOUT) == b"\x00" * 10
        assert flags == [False, False, True, True, False] * 20


def test_min_bytes_one_compresses_every_message(host):
    with ws(host, "/all", compression="deflate") as client:
        flags = compressed_flags(client)
        for text in ("a", "bb" * 30, "c" * 500):
            client.send(text)
            assert client.recv(timeout=TIMEOUT) == text
        assert flags == [True, True, True]


def test_compression_not_negotiated_when_off(host):
    with ws(host, "/plain", compression="deflate") as client:
        assert "Sec-WebSocket-Extensions" not in client.response.headers
        assert client.protocol.extensions == []
        client.send("not compressed " * 50)
        assert client.recv(timeout=TIMEOUT) == "not compressed " * 50


def test_compressed_frame_when_off_is_a_protocol_error(host):
    """RSV1 set without a negotiated extension: close 1002."""
    with open_raw(host, "/plain") as peer:
        peer.send_frame(0x1, b"hello", rsv1=True)
        assert peer.read_close()[0] == 1002


def test_client_without_compression_gets_none(host):
    with ws(host, "/", compression=None) as client:
        assert client.protocol.extensions == []


# ------------------------------------------------------------------ keepalive


def test_silent_peer_is_closed_by_ping_timeout_and_a_live_one_stays(host):
    """ping_interval = ping_timeout = 1s: a peer that never answers is gone within ~2s,
    while a client whose library answers every ping is still served after 3 rounds."""
    started = time.monotonic()
    with ws(host, "/keepalive", ping_interval=None) as live, open_raw(host, "/keepalive") as silent:
        opcode, _ = silent.read_frame(timeout=TIMEOUT)
        assert opcode == 0x9  # the server's ping, which we never answer
        assert 0.5 <= time.monotonic() - started <= 1 + TIMEOUT
        assert silent.closed_by_server(timeout=1 + TIMEOUT)
        assert 1.5 <= time.monotonic() - started <= 2 + TIMEOUT
        assert disconnect_code(host) == 1011  # what we failed the silent one with
        time.sleep(max(0.0, started + 3.3 - time.monotonic()))  # pings at ~1, ~2, ~3 s
        live.send("still here")
        assert live.recv(timeout=TIMEOUT) == "still here"
        assert live.protocol.state.name == "OPEN"


def test_pong_unread_while_the_app_lags_is_not_a_silent_peer(host):
    """max_queue = 1 and an app that takes nothing for 3 s: reading pauses, so the client's
    pongs (answered at once by its library) sit unread behind its messages for six ping
    timeouts. The connection survives, every message is echoed, pings go on afterwards."""
    with ws(host, "/laggard", ping_interval=None) as client:
        sent = [f"message {index}" for index in range(5)]
        for text in sent:
            client.send(text)
        assert [client.recv(timeout=TIMEOUT) for _ in sent] == sent
        time.sleep(1.6)  # pings answered while reading again: at least one full round
        client.send("later")
        assert client.recv(timeout=TIMEOUT) == "later"
        assert client.protocol.state.name == "OPEN"


# ----------------------------------------------------------------- raw helpers


class RawWebSocket:
    """A WebSocket client on a plain socket: any frame can be sent, malformed included."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False
    ) -> None:
        self.sock.sendall(frame(opcode, payload, fin=fin, rsv1=rsv1))

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"closed; buffered {self.buffer[:100]!r}")
        self.buffer += chunk

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        self.sock.settimeout(timeout)
        first, second = self._take(2)
        assert not second & 0x80, "the server masked a frame"
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._take(2), "big")
        elif length == 127:
            length = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(length)

    def read_close(self) -> tuple[int, str]:
        """Frames until a close; its code and reason."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big"), payload[2:].decode()

    def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """True when the server ends the connection (EOF or reset) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client frame (masked, as clients must)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def open_raw(host, path: str) -> RawWebSocket:
    sock = host.connect()
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), key)
    )
    peer = RawWebSocket(sock)
    while b"\r\n\r\n" not in peer.buffer:
        peer._fill()
    head, _, peer.buffer = peer.buffer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return peer

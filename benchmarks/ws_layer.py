"""What a server's WebSocket layer costs per echoed message, with no kernel in the way.

Why: `ws.sh` measures server CPU per message over loopback, where ~60% is the
kernel and uvloop and the rest is shared with the `websockets` library, so
it cannot say how much of a difference the ASGI layer itself makes. Here a
server protocol gets pre-built masked frames through `data_received` on a
fake transport inside one uvloop loop; the app (`ws_echo` from the shared
bench apps) echoes each one, and the clock runs until the last echo is
written. Three layers, same library, same app:

- `uvhost`: `uvhost.server.websocket.WebSocketProtocol`
- `uvicorn`: Uvicorn's websockets-sansio protocol (run it with the peers'
  interpreter: `/opt/peers/bin/python benchmarks/ws_layer.py uvicorn`)
- `floor`: the least an ASGI layer over the library can do (a deque, one
  future, `send_text` and one write; no limits, no checks): what a perfect
  layer would cost

    python benchmarks/ws_layer.py uvhost|uvicorn|floor [--messages 50000] [--rounds 5]

Prints one line: the median µs per echo over the rounds and the min-max.
No sockets are opened.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import uvloop
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

BENCH = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
sys.path.insert(0, str(BENCH))
from apps import ws_echo  # noqa: E402 - the shared bench apps live outside the project

PEER = ("127.0.0.1", 50000)
LOCAL = ("127.0.0.1", 8000)


class FakeTransport(asyncio.Transport):
    """Keeps what is written and wakes the benchmark when the echo arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.echoed: asyncio.Future[None] | None = None
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))
        if self.echoed is not None and not self.echoed.done():
            self.echoed.set_result(None)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": PEER, "sockname": LOCAL}.get(name, default)


class FloorProtocol:
    """The least an ASGI layer can do over the library; correct only for this echo."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: FakeTransport) -> None:
        self.loop, self.transport = loop, transport
        self.ws = ServerProtocol()
        self.incoming: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.connected = False
        self.request: Any = None

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                self.incoming.append({"type": "websocket.receive", "text": event.data.decode()})
            else:
                self.request = event
        if self.waiter is not None:
            self.waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while not self.incoming:
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.incoming.popleft()

    async def send(self, message: dict[str, Any]) -> None:
        ws = self.ws
        if message["type"] == "websocket.accept":
            ws.send_response(ws.accept(self.request))
        else:
            ws.send_text(message["text"].encode())
        self.transport.write(b"".join(ws.data_to_send()))


def handshake() -> tuple[ClientProtocol, bytes]:
    client = ClientProtocol(parse_uri("ws://127.0.0.1/ws"))
    client.send_request(client.connect())
    return client, b"".join(client.data_to_send())


def start_uvhost(loop: asyncio.AbstractEventLoop, transport: FakeTransport, head: bytes) -> Any:
    # Imported here: each layer runs in its own interpreter (Uvicorn lives in the peers' venv).
    from uvhost.observe.stats import RouteStats  # noqa: PLC0415
    from uvhost.server.context import ListenerContext  # noqa: PLC0415
    from uvhost.server.websocket import WebSocketProtocol  # noqa: PLC0415

    settings = SimpleNamespace(
        per_message_deflate=False,
        deflate_min_bytes=128,
        max_message_bytes=1 << 20,
        max_queue=32,
        ping_interval=20.0,
        ping_timeout=20.0,
    )
    listener = SimpleNamespace(
        headers={}, proxy_headers=False, server_header=True, date_header=True
    )
    context = ListenerContext("bench", listener, None, "http", {})  # type: ignore[arg-type]
    endpoint = SimpleNamespace(app=ws_echo, stats=RouteStats(), websocket=settings)
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": PEER,
        "server": LOCAL,
        "subprotocols": [],
        "state": {},
        "extensions": {},
    }
    protocol = WebSocketProtocol(context, loop, scope, endpoint, settings)  # type: ignore[arg-type]
    lines = head.split(b"\r\n")
    headers = [tuple(line.split(b": ", 1)) for line in lines[1:] if line]
    protocol.start(transport, "/ws", [(name.lower(), value) for name, value in headers], b"")
    return protocol


def start_uvicorn(loop: asyncio.AbstractEventLoop, transport: FakeTransport, head: bytes) -> Any:
    from uvicorn.config import Config  # noqa: PLC0415
    from uvicorn.protocols.websockets.websockets_sansio_impl import (  # noqa: PLC0415
        WebSocketsSansIOProtocol,
    )
    from uvicorn.server import ServerState  # noqa: PLC0415

    config = Config(app=ws_echo, ws="websockets-sansio", lifespan="off", log_level="warning")
    config.load()
    logging.getLogger("uvicorn.error").disabled = True  # the app task is cancelled at the end
    protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, _loop=loop)
    protocol.connection_made(transport)
    protocol.data_received(head)
    return protocol


def start_floor(loop: asyncio.AbstractEventLoop, transport: FakeTransport, head: bytes) -> Any:
    protocol = FloorProtocol(loop, transport)
    protocol.data_received(head)
    scope = {"type": "websocket", "path": "/ws"}
    loop.create_task(ws_echo(scope, protocol.receive, protocol.send))
    return protocol


STARTERS = {"uvhost": start_uvhost, "uvicorn": start_uvicorn, "floor": start_floor}


async def one_round(kind: str, messages: int) -> float:
    loop = asyncio.get_running_loop()
    client, head = handshake()
    transport = FakeTransport()
    protocol = STARTERS[kind](loop, transport, head)
    for _ in range(100):  # the app accepts in a task of its own
        if transport.written:
            break
        await asyncio.sleep(0)
    if not transport.written or not transport.written[0].startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"{kind}: no 101 ({transport.written[:1]!r})")
    for data in transport.written:
        client.receive_data(data)
    client.events_received()
    transport.written.clear()
    frames = []
    for index in range(messages):
        client.send_text(f"0:{index}:".ljust(32, "x").encode())
        frames.append(b"".join(client.data_to_send()))
    started = time.perf_counter()
    for frame in frames:
        transport.echoed = loop.create_future()
        protocol.data_received(frame)
        await transport.echoed
    elapsed = time.perf_counter() - started
    if len(transport.written) != messages:
        raise SystemExit(f"{kind}: {len(transport.written)} echoes for {messages} messages")
    return elapsed / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("kind", choices=sorted(STARTERS))
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = [uvloop.run(one_round(args.kind, args.messages)) for _ in range(args.rounds)]
    print(
        f"{args.kind}: {statistics.median(results):.2f} µs per echo "
        f"(min {min(results):.2f}, max {max(results):.2f}, {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()

"""The ceiling for a server on the `h2` library: uvloop and `h2`, no ASGI layer.

Answers every request, whatever its method and path, with a 200 once the
request has ended: the same body bytes and content-type as the benchmark app
of the scenario (`hello` or `json` in the shared harness's apps.py), plus
`server` and `date` like uvhost's defaults. The body is made per request the
way the harness app makes it (json: `json.dumps(JSON_DATA).encode()`, ~16 µs
here; hello: a constant), because that work is the app's, not the server's,
and every ASGI server pays it: a ceiling without it measures a different
scenario. `--fixed-body` sends bytes made once instead (the ceiling of a
server with no app at all). Over TLS (ALPN
"h2" only) with --certfile/--keyfile, else h2c with prior knowledge. One
process, one thread. h2bench.py runs it beside uvhost, Hypercorn and Granian:
a server built on `h2` spends at least what this one spends per request.

What it still does right, so that the ceiling is a real server's: inbound
frames and headers go through `h2`'s checks (its defaults), settings and
pings are acknowledged (by `h2`), request bodies are read and their flow
control credit returned, a body waits for (and is split by) the peer's
stream and connection windows, a reset stream is forgotten, a protocol error
or the peer's GOAWAY ends the connection, and SIGTERM/SIGINT stop accepting
and send every connection a GOAWAY before closing it.

What it skips, because nothing is lost: `h2`'s outbound header validation and
normalisation (the response headers are constants, lowercase and valid), and
header decoding to str (`header_encoding=None`). Bytes leave once per batch
of received data, one write per `data_received`.

    python benchmarks/h2_bare.py --bind 127.0.0.1:8443 --scenario json \\
        --certfile cert.pem --keyfile key.pem
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import signal
import ssl
import sys
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import uvloop
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import FlowControlError, ProtocolError, StreamClosedError

# Where run.sh and h2bench.py find the shared harness by default.
DEFAULT_APPS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
MIN_MAX_FRAME_SIZE = 16384  # RFC 9113 6.5.2: no peer may allow less


def scenario_response(scenario: str, *, fixed: bool) -> tuple[bytes, Callable[[], bytes]]:
    """(content-type, body maker) of the harness app `scenario`, byte for byte.

    Imports the harness's apps.py (on sys.path, else beside this repository)
    so that the body cannot drift from what the ASGI servers send. The maker
    does what the harness app does per request, unless `fixed`.
    """
    try:
        apps = importlib.import_module("apps")
    except ImportError:
        sys.path.insert(0, str(DEFAULT_APPS_DIR))
        apps = importlib.import_module("apps")
    if scenario == "hello":
        hello: bytes = apps.HELLO_BODY
        return b"text/plain", lambda: hello
    data = apps.JSON_DATA
    if fixed:
        made = json.dumps(data).encode()
        return b"application/json", lambda: made
    return b"application/json", lambda: json.dumps(data).encode()


class Response:
    """The response: the body from the scenario's maker, the `date` value renewed once a
    second, the rest constant."""

    def __init__(self, content_type: bytes, make_body: Callable[[], bytes]) -> None:
        if len(make_body()) > MIN_MAX_FRAME_SIZE:  # one DATA frame always fits
            raise ValueError("h2_bare answers with bodies up to 16 KiB")
        self.make_body = make_body
        self._fixed = [(b":status", b"200"), (b"content-type", content_type)]
        self.date = b""
        self.tick()

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        return [
            *self._fixed,
            (b"content-length", b"%d" % len(body)),
            (b"server", b"h2-bare"),
            (b"date", self.date),
        ]

    def tick(self) -> None:
        """Recompute the date header now, and again at the start of the next second."""
        now = time.time()
        self.date = formatdate(now, usegmt=True).encode()
        asyncio.get_running_loop().call_later(1.0 - now % 1.0, self.tick)


class BareH2(asyncio.Protocol):
    """One HTTP/2 connection: `h2` events in, the fixed response out."""

    config = H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )

    transport: asyncio.Transport  # set by connection_made, before any other callback

    def __init__(self, response: Response, live: set[BareH2]) -> None:
        self.response = response
        self.live = live
        self.conn = H2Connection(config=self.config)
        self.pending: dict[int, memoryview] = {}  # stream id -> body bytes the windows held back

    # ------------------------------------------------------------ transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        tls = transport.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() != "h2":
            transport.abort()  # TLS without ALPN h2 is not HTTP/2 (RFC 9113 3.2)
            return
        self.live.add(self)
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self.pending.clear()

    def pause_writing(self) -> None:
        self.transport.pause_reading()  # a client that does not read stops being read

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        try:
            events = conn.receive_data(data)
        except ProtocolError:  # h2 has queued a GOAWAY with the error code
            self._close()
            return
        for event in events:
            kind = type(event)
            if kind is StreamEnded:
                self._respond(event.stream_id)
            elif kind is DataReceived:
                if event.flow_controlled_length:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif kind is WindowUpdated or kind is RemoteSettingsChanged:
                if self.pending:
                    self._flush_pending()
            elif kind is StreamReset:
                self.pending.pop(event.stream_id, None)
            elif kind is ConnectionTerminated:
                self._close()
                return
        out = conn.data_to_send()
        if out:
            self.transport.write(out)

    # ------------------------------------------------------------ responses
    def _respond(self, stream_id: int) -> None:
        conn, response = self.conn, self.response
        body = response.make_body()
        try:
            conn.send_headers(stream_id, response.headers(body))
            conn.send_data(stream_id, body, end_stream=True)
        except FlowControlError:  # a window smaller than the body: send what fits as it opens
            self.pending[stream_id] = memoryview(body)
            self._flush_pending()
        except StreamClosedError:  # reset by the peer in this very batch
            pass

    def _flush_pending(self) -> None:
        conn = self.conn
        for stream_id, rest in list(self.pending.items()):
            try:
                size = min(conn.local_flow_control_window(stream_id), len(rest))
                if size == len(rest):
                    conn.send_data(stream_id, rest.tobytes(), end_stream=True)
                    del self.pending[stream_id]
                elif size > 0:
                    conn.send_data(stream_id, rest[:size].tobytes())
                    self.pending[stream_id] = rest[size:]
            except StreamClosedError:
                del self.pending[stream_id]

    # ------------------------------------------------------------ closing
    def _close(self) -> None:
        """Flush what h2 queued (a GOAWAY among it) and close."""
        out = self.conn.data_to_send()
        if out:
            self.transport.write(out)
        self.transport.close()

    def goaway(self) -> None:
        """Shutdown: GOAWAY (NO_ERROR, the last stream we saw), then close once written."""
        with contextlib.suppress(ProtocolError):
            self.conn.close_connection()
        self._close()


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9113 9.2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["h2"])
    return context


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.bind.rpartition(":")
    response = Response(*scenario_response(args.scenario, fixed=args.fixed_body))
    context = tls_context(args.certfile, args.keyfile) if args.certfile else None
    live: set[BareH2] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: BareH2(response, live), host.strip("[]"), int(port), ssl=context, backlog=2048
    )
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    scheme = "https" if context else "http (h2c prior knowledge)"
    print(f"h2_bare: {args.scenario} on {scheme}://{args.bind}", file=sys.stderr, flush=True)
    await stopping.wait()
    server.close()
    for protocol in list(live):
        protocol.goaway()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8443", help="HOST:PORT (default %(default)s)")
    parser.add_argument("--scenario", choices=("hello", "json"), default="hello")
    parser.add_argument(
        "--fixed-body", action="store_true", help="a body made once, not per request"
    )
    parser.add_argument("--certfile", help="certificate chain (PEM): TLS with ALPN h2")
    parser.add_argument("--keyfile", help="its private key (PEM)")
    args = parser.parse_args()
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()

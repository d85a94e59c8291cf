"""A blocking HTTP/2 client on a plain socket, for the frames httpx never sends.

h2's own checks on what a client sends are off, so a test can write header
lists exactly as given (no :authority, a Host beside it, upper-case names),
hold streams open, or run an extended CONNECT. Shared by the server and
supervisor tests; one place for the frame pump and the answers read from it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events

Headers = list[tuple[bytes, bytes]]


class RawH2:
    """One client connection: send header lists, pump frames, read answers by stream."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.conn.initiate_connection()
        self.flush()
        self.events: list[h2.events.Event] = []
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, headers: Headers, *, end_stream: bool = True) -> int:
        """A new stream with exactly these headers; its id."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.flush()
        return stream_id

    def request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        extra: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        authority: str = "localhost",
    ) -> int:
        """A well-formed request (plus `extra` headers, an optional body); its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "http")]
        if authority:
            headers.append((":authority", authority))
        headers += extra or []
        self.conn.send_headers(stream_id, headers, end_stream=body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.flush()
        return stream_id

    def pump(self, until: Callable[[], object], timeout: float = 10.0) -> None:
        """Read frames, acknowledging data, until `until()` holds or the server closes
        (then `closed` is set); AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"timed out; events so far: {self.events}") from None
            if not data:
                self.closed = True
                return
            for event in self.conn.receive_data(data):
                self.events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            self.flush()

    def received(self, stream_id: int, kind: type[h2.events.Event]) -> list[h2.events.Event]:
        return [e for e in self.events if isinstance(e, kind) and e.stream_id == stream_id]

    def ended(self, stream_ids: list[int]) -> bool:
        done = {
            event.stream_id
            for event in self.events
            if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset)
        }
        return set(stream_ids) <= done

    def answers(self) -> dict[int, tuple[int, bytes]]:
        """Status (negative: reset with that code) and body so far, by stream."""
        out: dict[int, tuple[int, bytes]] = {}
        for stream_id in {getattr(event, "stream_id", 0) for event in self.events} - {0}:
            status, _, body = self.answer(stream_id)
            if status:
                out[stream_id] = (status, body)
        return out

    def responses(self, stream_ids: list[int]) -> dict[int, tuple[int, bytes]]:
        """The answers once every one of `stream_ids` has ended; the connection stays up."""
        self.pump(lambda: self.ended(stream_ids))
        assert not self.closed, f"the server closed the connection; events: {self.events}"
        return self.answers()

    def response(self, stream_id: int) -> tuple[int, dict[bytes, bytes], bytes]:
        """One stream's status, headers and body, once it ended (or the connection did)."""
        self.pump(lambda: self.ended([stream_id]) or self.closed)
        return self.answer(stream_id)

    def answer(self, stream_id: int) -> tuple[int, dict[bytes, bytes], bytes]:
        """What has arrived on a stream: status (negative: reset), headers, body."""
        status, headers, body = 0, {}, b""
        for event in self.events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
                status = int(headers[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.StreamReset):
                status = -int(event.error_code)
        return status, headers, body


class H2WebSocket:
    """A WebSocket on one stream of a `RawH2` connection (RFC 8441's extended CONNECT),
    its frames made and read by the `websockets` library's client protocol, which starts
    OPEN: over HTTP/2 there is no HTTP/1.1 handshake to run."""

    def __init__(self, client: RawH2, path: str, *, authority: str = "x", scheme: str = "http",
                 extra: Headers | None = None) -> None:  # fmt: skip
        from websockets.protocol import Protocol, Side, State  # noqa: PLC0415

        self.client = client
        client.pump(lambda: client.conn.remote_settings.enable_connect_protocol == 1)
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", scheme.encode()),
            (b":path", path.encode()),
            (b":authority", authority.encode()),
            (b"sec-websocket-version", b"13"),
            *(extra or []),
        ]
        self.stream_id = client.send(headers, end_stream=False)
        client.pump(lambda: client.received(self.stream_id, h2.events.ResponseReceived))
        (response,) = client.received(self.stream_id, h2.events.ResponseReceived)
        self.response = dict(response.headers)
        self.frames = Protocol(Side.CLIENT, state=State.OPEN)
        self.texts: list[str] = []

    def send_text(self, text: str) -> None:
        self.frames.send_text(text.encode())
        self._send_pending()

    def _send_pending(self) -> None:
        data = b"".join(self.frames.data_to_send())
        if data:
            self.client.conn.send_data(self.stream_id, data)
            self.client.flush()

    def _take(self) -> list[str]:
        """Feed this stream's DATA to the protocol (answering a close), collect texts."""
        client, mine = self.client, self.stream_id
        for event in client.events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id == mine:
                self.frames.receive_data(event.data)
        client.events = [
            e
            for e in client.events
            if not (isinstance(e, h2.events.DataReceived) and e.stream_id == mine)
        ]
        self._send_pending()  # the client's side of a close handshake
        self.texts.extend(
            frame.data.decode()
            for frame in self.frames.events_received()
            if frame.opcode.name == "TEXT"
        )
        return self.texts

    def receive_texts(self, count: int) -> list[str]:
        """Every text message so far, once there are at least `count`."""
        self.client.pump(lambda: len(self._take()) >= count)
        return self.texts

    def wait_ended(self) -> None:
        """Until the server ends the stream (after its close frame)."""
        self.client.pump(lambda: self._take() is not None and self.client.ended([self.stream_id]))

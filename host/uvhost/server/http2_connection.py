"""h2's server connection, with a stream beyond the advertised limit refused, not fatal.

RFC 9113 5.1.2: a HEADERS frame that opens a stream beyond our
SETTINGS_MAX_CONCURRENT_STREAMS MUST be a stream error (PROTOCOL_ERROR or
REFUSED_STREAM). h2 raises `TooManyStreamsError` from inside `receive_data`
instead, which ends the whole connection and every request on it: one
eager client (or a race with a SETTINGS change in flight) would cost the
other streams their answers. Here the stream is refused alone, and the
connection goes on.

A refused header block is still decoded: HPACK is one compression context
per connection, and a block skipped would leave our dynamic table behind the
client's, so that every later request decodes to the wrong fields.
"""

from __future__ import annotations

from typing import Any

import h2.connection
import h2.events
from h2.connection import ConnectionInputs
from h2.errors import ErrorCodes
from h2.stream import StreamClosedBy
from hyperframe.frame import HeadersFrame, RstStreamFrame


class StreamRefused(h2.events.Event):
    """We refused a new stream (REFUSED_STREAM) because too many were open: counted by
    the protocol like a reset, since a client that keeps doing it is flooding."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return f"<StreamRefused stream_id:{self.stream_id}>"


class ServerConnection(h2.connection.H2Connection):
    """An `H2Connection` (server side) that refuses streams over the limit one by one."""

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Any], list[Any]]:
        stream_id = frame.stream_id
        if (
            stream_id in self.streams
            or stream_id % 2 == 0  # a server never takes even ids: h2 says so
            or stream_id <= self.highest_inbound_stream_id  # reused or closed: h2 judges it
            or self.open_inbound_streams < self.local_settings.max_concurrent_streams
        ):
            return super()._receive_headers_frame(frame)
        # Same order as h2: decode (keeps HPACK in step; a bad block is still a
        # connection error), then the connection state (no HEADERS after GOAWAY).
        h2.connection._decode_headers(self.decoder, frame.data)
        events = self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        self.highest_inbound_stream_id = stream_id
        # Frames still in flight on it (its body) get h2's answer to a stream we reset.
        self._closed_streams[stream_id] = StreamClosedBy.SEND_RST_STREAM
        refusal = RstStreamFrame(stream_id)
        refusal.error_code = ErrorCodes.REFUSED_STREAM
        return [refusal], [*events, StreamRefused(stream_id)]

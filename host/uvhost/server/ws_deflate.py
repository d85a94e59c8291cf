"""permessage-deflate that sends small messages uncompressed.

Why: compressing a short message costs more than it can save. On a 32-byte
text message the library's deflate (a `compress` plus a sync `flush`) takes
~2.3 µs, two thirds of everything else the library does to echo it, and
the result is a few bytes shorter at best. RFC 7692 lets the sender decide
per message: a message whose first frame has RSV1 clear is not compressed,
and neither side's compression context sees it, so the sliding windows stay
in step when small and large messages interleave. Receiving is unchanged:
whatever the peer compressed is decompressed by the library as before.

Only whole messages (one final frame) are left plain: the first frame of a
fragmented message does not know the message's size, and every frame of a
compressed message must follow its first one.
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

TEXT, BINARY = Opcode.TEXT, Opcode.BINARY


class SmallMessagesPlain(Extension):
    """The negotiated deflate extension, bypassed on send for messages under `min_bytes`."""

    def __init__(self, deflate: PerMessageDeflate, min_bytes: int) -> None:
        self.name = deflate.name
        self.deflate = deflate
        self.min_bytes = min_bytes

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        return self.deflate.decode(frame, max_size=max_size)

    def encode(self, frame: Frame) -> Frame:
        opcode = frame.opcode
        if frame.fin and (opcode is TEXT or opcode is BINARY) and len(frame.data) < self.min_bytes:
            return frame  # RSV1 stays clear: the peer reads it as an uncompressed message
        return self.deflate.encode(frame)

    def __repr__(self) -> str:
        return f"SmallMessagesPlain({self.deflate!r}, min_bytes={self.min_bytes})"


def skip_small_messages(extensions: Sequence[Extension], min_bytes: int) -> list[Extension]:
    """The negotiated extensions with deflate wrapped; unchanged when `min_bytes` is 1 or less."""
    if min_bytes <= 1:
        return list(extensions)
    return [
        SmallMessagesPlain(extension, min_bytes)
        if isinstance(extension, PerMessageDeflate)
        else extension
        for extension in extensions
    ]

"""Write back-pressure shared by the HTTP and WebSocket protocols.

Invariant: while the transport's buffer is above its high-water mark, an
app's `send` waits on one future; it is released when the buffer drains or
the connection is lost, so a slow or vanished client never leaves an app
blocked forever, nor lets it buffer without bound.
"""

from __future__ import annotations

import asyncio


class WriteFlow:
    __slots__ = ("blocked", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.blocked: asyncio.Future[None] | None = None

    def pause(self) -> None:
        if self.blocked is None:
            self.blocked = self.loop.create_future()

    async def wait(self) -> None:
        """Wait while the transport is paused. Shielded: an app that cancels its own
        `send` (a timeout) must not cancel the future every later send waits on."""
        if self.blocked is not None:
            await asyncio.shield(self.blocked)

    def resume(self) -> None:
        blocked, self.blocked = self.blocked, None
        if blocked is not None and not blocked.done():
            blocked.set_result(None)

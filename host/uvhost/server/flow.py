"""When bytes leave: write back-pressure, and writes held to the end of a loop turn.

Invariants:
- While the transport's buffer is above its high-water mark, an app's `send`
  waits on one future; it is released when the buffer drains or the
  connection is lost, so a slow or vanished client never leaves an app
  blocked forever, nor lets it buffer without bound.
- A finished response is held only while more request tasks of the same
  loop turn are about to run, and never past the start of the next turn;
  a lone request is written at once. Writing to a loopback or LAN socket
  runs the kernel's network stack inline, which evicts the app's data from
  the CPU caches; holding the writes lets the apps that are ready in one
  turn run back to back, warm, and the writes follow together. (Measured:
  an app spending 13 µs in `json.dumps` cost 22 µs per request when each
  response was written as it completed; json-64 went from ~26.7k to ~35k
  requests/s, hello-64 stayed where it was.)
"""

from __future__ import annotations

import asyncio
from typing import Protocol


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


class Flushable(Protocol):
    def flush(self) -> None: ...


class TurnWriter:
    """Connections with bytes held for the end of this loop turn; one callback flushes all.

    One per listener. `starting` counts the listener's request tasks created
    but not yet run: while it is above zero, more apps are about to run in
    this turn, so a finished response is held; the last one to finish writes
    them all, in the same turn. The callback `flush_later` schedules is the
    safety net for a batch whose last app awaits something else: nothing is
    held past the start of the next turn.
    """

    __slots__ = ("starting", "waiting")

    def __init__(self) -> None:
        self.waiting: list[Flushable] = []
        self.starting = 0

    def flush_later(self, connection: Flushable) -> None:
        """Flush `connection` once the loop has run what is ready now (once per hold)."""
        if not self.waiting:
            asyncio.get_running_loop().call_soon(self.flush_all)
        self.waiting.append(connection)

    def flush_all(self) -> None:
        waiting, self.waiting = self.waiting, []
        for connection in waiting:
            connection.flush()

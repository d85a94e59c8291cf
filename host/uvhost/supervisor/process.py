"""One spawned worker process and its pipe, seen from the supervisor.

Invariants:
- Workers are spawned (`python -m uvhost.child`), never forked: a fresh
  interpreter imports the apps, so nothing of the supervisor's state leaks in.
- The listening sockets are passed by fd (`pass_fds`); the supervisor keeps
  its own copies, so sockets outlive every worker generation.
- Never imports server/: the child entry point is named, not imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from uvhost import ipc
from uvhost.observe.stats import StatsBook
from uvhost.supervisor.tasks import background

logger = logging.getLogger("uvhost.supervisor")
CHILD = [sys.executable, "-m", "uvhost.child"]


class WorkerStartError(Exception):
    """The worker reported Failed, exited, or was not ready in time; one line."""


@dataclass(eq=False)
class HostServices:
    """What the supervisor offers every worker: a book for its counters, the host's metrics."""

    book: StatsBook = field(default_factory=StatsBook)
    metrics: Callable[[], str] | None = None  # the host's Prometheus text, when it can tell
    output: Callable[[str], None] | None = None
    """Where workers' stdout and stderr lines go; None: the supervisor's own (a terminal)."""
    alive: set[WorkerProcess] = field(default_factory=set)
    """Every worker spawned and not yet reaped, starting ones included: the groups know only
    those that serve or drain, and an exit that skips the drain must not orphan the rest."""

    def answer_metrics(self, request: ipc.MetricsRequest) -> ipc.MetricsReply:
        if self.metrics is None:
            return ipc.MetricsReply(request.id, None, "the host is not serving metrics yet")
        try:
            return ipc.MetricsReply(request.id, self.metrics())
        except Exception:  # a bug in the exposition: the scrape gets a 503, we keep the trace
            logger.exception("building the metrics failed")
            return ipc.MetricsReply(request.id, None, "building them failed (see the host's log)")


@dataclass(eq=False)
class WorkerProcess:
    spec: ipc.WorkerSpec
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ready: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    draining: bool = False
    recycle: asyncio.Event = field(default_factory=asyncio.Event)  # to be replaced by a roll
    recycle_reason: str = "max_requests"  # what `recycle` was set for, for the log
    services: HostServices = field(default_factory=HostServices)
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def spawn(
        cls,
        spec: ipc.WorkerSpec,
        sockets: Mapping[str, socket.socket],
        services: HostServices | None = None,
    ) -> WorkerProcess:
        services = services or HostServices()
        ours, theirs = socket.socketpair()
        fds = {name: sockets[name].fileno() for name in spec.plan.group(spec.group).listeners}
        piped = services.output is not None
        try:
            process = await asyncio.create_subprocess_exec(
                *CHILD,
                str(theirs.fileno()),
                pass_fds=[theirs.fileno(), *fds.values()],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if piped else None,
                stderr=asyncio.subprocess.STDOUT if piped else None,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        worker = cls(spec, process, reader, writer, services=services)
        services.alive.add(worker)
        background(worker._forget_when_reaped())
        writer.write(ipc.frame(ipc.Hello(replace(spec, plan=spec.plan.detached()), fds)))
        background(worker._listen())
        if process.stdout is not None and services.output is not None:
            background(_forward_lines(process.stdout, services.output))
        return worker

    async def _forget_when_reaped(self) -> None:
        await self.process.wait()
        self.services.alive.discard(self)

    async def _listen(self) -> None:
        while True:
            try:
                message = await ipc.read_message(self.reader)
            except EOFError:
                self._settle(WorkerStartError(f"worker {self.pid} exited before it was ready"))
                self.services.book.retire(self.pid)
                return
            if isinstance(message, ipc.Stats):
                self.services.book.update(self.pid, message.routes, message.connections)
            elif isinstance(message, ipc.MetricsRequest):
                self.send(self.services.answer_metrics(message))
            elif isinstance(message, ipc.Ready):
                self._settle(None)
            elif isinstance(message, ipc.Failed):
                self._settle(WorkerStartError(message.reason))
            elif isinstance(message, ipc.Stopping):
                self.draining = True
            elif isinstance(message, ipc.Recycle):
                self.recycle.set()

    def _settle(self, error: Exception | None) -> None:
        if self.ready.done():
            return
        if error is None:
            self.ready.set_result(None)
        else:
            self.ready.set_exception(error)

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except TimeoutError:
            raise WorkerStartError(
                f"worker {self.pid} was not ready within {timeout:g}s (host.startup_timeout)"
            ) from None

    def send(self, message: ipc.ToWorker) -> None:
        if not self.writer.is_closing():
            self.writer.write(ipc.frame(message))

    @property
    def state(self) -> str:
        if self.draining:
            return "draining"
        return "ready" if self.ready.done() and self.ready.exception() is None else "starting"

    def drain(self, code: int = ipc.GOING_AWAY) -> None:
        self.draining = True
        self.send(ipc.Drain(code))

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self, code: int, timeout: float) -> int:
        """Drain, then SIGKILL if it outlives `timeout` (plus a grace second)."""
        self.drain(code)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout + 1.0)
        except TimeoutError:
            logger.warning("worker %d did not drain in time; killing it", self.pid)
            self.kill()
            return await self.process.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        self.writer.close()


async def _forward_lines(stream: asyncio.StreamReader, output: Callable[[str], None]) -> None:
    """A worker's output, line by line, until it exits.

    A line longer than the stream's limit (64 KiB) is partly dropped rather than
    holding the pipe, so a runaway writer cannot stall the worker.
    """
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line over the stream's limit: take what is buffered
            line = await stream.read(65536)
        if not line:
            return
        output(line.decode("utf-8", "replace").rstrip("\n"))

"""A spawned worker process: `python -m uvhost.child FD`.

FD is this process's end of a socketpair to the supervisor. The first
message on it is a `Hello` (the worker's spec and the fds of its inherited
listening sockets); then the worker reports Ready or Failed, and serves
until the supervisor sends Drain, the pipe closes, or SIGTERM arrives.

Invariants:
- SIGINT is ignored: a terminal's Ctrl-C reaches every process in the group,
  and only the supervisor decides how to stop (drain, in order).
- A supervisor that vanishes (the pipe closes) makes the worker drain and
  exit, never linger as an orphan holding sockets.
- Lives outside `server` and `supervisor` because it joins them: it runs the
  server's Worker and speaks the supervisor's ipc messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

import uvloop

from uvhost import ipc
from uvhost.observe.builtins import Health, HealthState, Metrics, MetricsUnavailableError
from uvhost.observe.logs import configure, reopen
from uvhost.server.asgi_types import ASGIApp
from uvhost.server.context import RequestBudget, recycle_threshold
from uvhost.server.worker import Worker, WorkerStartupError

logger = logging.getLogger("uvhost.worker")
EXIT_CANNOT_START = 3
STATS_INTERVAL = 1.0  # seconds between counter snapshots sent to the supervisor


async def serve(channel_fd: int) -> int:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=channel_fd))
    hello = await ipc.read_message(reader)
    if not isinstance(hello, ipc.Hello):
        return EXIT_CANNOT_START
    spec = hello.spec
    configure(spec.plan.config.logging)
    sockets = {name: socket.socket(fileno=fd) for name, fd in hello.fds.items()}
    pid = os.getpid()
    link = SupervisorLink(writer)
    builtins: dict[str, ASGIApp] = {
        "@health": Health(link.health),
        "@metrics": Metrics(link.fetch_metrics),
    }
    host = spec.plan.config.host
    budget = RequestBudget(recycle_threshold(host.max_requests, host.max_requests_jitter))
    budget.on_spent = lambda: _ask_recycle(writer, pid, budget.limit)
    worker = Worker(
        spec.plan, [spec.plan.group(spec.group)], sockets, builtins=builtins, budget=budget
    )
    try:
        await worker.start()
    except WorkerStartupError as error:
        writer.write(ipc.frame(ipc.Failed(pid, str(error))))
        await writer.drain()
        return EXIT_CANNOT_START
    writer.write(ipc.frame(ipc.Ready(pid)))
    reporter = asyncio.ensure_future(_report_stats(writer, worker, pid))

    stop: asyncio.Future[int] = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, _settle, stop, ipc.GOING_AWAY)
    loop.add_signal_handler(signal.SIGUSR1, reopen)  # as the supervisor would ask
    listener = asyncio.ensure_future(_listen(reader, stop, worker, link))
    code = await stop
    link.draining = True
    listener.cancel()
    link.give_up("the worker is stopping")
    writer.write(ipc.frame(ipc.Stopping(pid)))
    await worker.drain(code)
    reporter.cancel()
    _send_stats(writer, worker, pid)  # the last counts: the supervisor keeps them
    writer.close()
    with contextlib.suppress(ConnectionError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return 0


class SupervisorLink:
    """The worker's side of the pipe for built-ins: readiness, and metrics on request."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.host_ready = False
        self.draining = False
        self.waiting: dict[int, asyncio.Future[str]] = {}
        self.next_id = 0

    def health(self) -> HealthState:
        if self.draining:
            return "draining"
        return "ready" if self.host_ready else "starting"

    async def fetch_metrics(self) -> str:
        if self.writer.is_closing():
            raise MetricsUnavailableError("the worker lost its supervisor")
        self.next_id += 1
        request_id = self.next_id
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = answer
        self.writer.write(ipc.frame(ipc.MetricsRequest(request_id)))
        try:
            return await answer
        finally:
            self.waiting.pop(request_id, None)

    def answered(self, reply: ipc.MetricsReply) -> None:
        answer = self.waiting.get(reply.id)
        if answer is None or answer.done():
            return  # the scrape timed out meanwhile
        if reply.text is None:
            answer.set_exception(MetricsUnavailableError(reply.error))
        else:
            answer.set_result(reply.text)

    def give_up(self, reason: str) -> None:
        for answer in self.waiting.values():
            if not answer.done():
                answer.set_exception(MetricsUnavailableError(reason))


async def _listen(
    reader: asyncio.StreamReader, stop: asyncio.Future[int], worker: Worker, link: SupervisorLink
) -> None:
    while True:
        try:
            message = await ipc.read_message(reader)
        except EOFError:
            link.give_up("the supervisor is gone")
            _settle(stop, ipc.GOING_AWAY)  # the supervisor is gone: leave cleanly
            return
        if isinstance(message, ipc.Drain):
            _settle(stop, message.code)
            return
        if isinstance(message, ipc.ApplyLogging):
            configure(message.settings)
            worker.switch_access_log(message.settings)
        elif isinstance(message, ipc.ReloadCertificates):
            worker.reload_certificates(message.listeners)
        elif isinstance(message, ipc.MetricsReply):
            link.answered(message)
        elif isinstance(message, ipc.HostReady):
            link.host_ready = True
        elif isinstance(message, ipc.Unready):
            link.draining = True
        elif isinstance(message, ipc.ReopenLogs):
            reopen()


async def _report_stats(writer: asyncio.StreamWriter, worker: Worker, pid: int) -> None:
    while True:
        await asyncio.sleep(STATS_INTERVAL)
        _send_stats(writer, worker, pid)


def _send_stats(writer: asyncio.StreamWriter, worker: Worker, pid: int) -> None:
    if not writer.is_closing():
        routes, connections = worker.stats_sample()
        writer.write(ipc.frame(ipc.Stats(pid, routes, connections)))


def _ask_recycle(writer: asyncio.StreamWriter, pid: int, served: int) -> None:
    """max_requests reached: the supervisor replaces us through a roll; we keep serving."""
    logger.info("worker %d reached max_requests (%d): asking to be recycled", pid, served)
    if not writer.is_closing():
        writer.write(ipc.frame(ipc.Recycle(pid)))


def _settle(stop: asyncio.Future[int], code: int) -> None:
    if not stop.done():
        stop.set_result(code)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    sys.exit(main())

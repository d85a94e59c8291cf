"""`uvhost run`: bind the sockets, serve every group in this process, drain on a signal.

This is the single-process form; worker processes and hot-apply build on the
same `Worker` without changing it. Exit codes: 0 after a clean drain, 1 for
an invalid config, 3 when the host cannot start (an address in use, an app
that fails to import or to start).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TextIO

import uvloop

from uvhost.commands.report import print_diagnostics
from uvhost.config.load import load_config
from uvhost.config.plan import Plan
from uvhost.observe.builtins import Health, MetricsUnavailable
from uvhost.observe.logs import configure
from uvhost.server.asgi_types import ASGIApp
from uvhost.server.worker import Worker, WorkerStartupError
from uvhost.supervisor.sockets import BindError, SocketSet, bind_all

EXIT_OK, EXIT_INVALID, EXIT_CANNOT_START = 0, 1, 3
logger = logging.getLogger("uvhost")


def run(path: Path, *, err: TextIO) -> int:
    result = load_config(path)
    if result.config is None:
        print_diagnostics(result, str(path), err)
        return EXIT_INVALID
    plan = result.plan()
    configure(plan.config.logging)
    try:
        sockets = bind_all(plan.config.listeners.items())
    except BindError as error:
        logger.error("cannot start: %s", error)
        return EXIT_CANNOT_START
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(plan, sockets))
    finally:
        sockets.close()


async def serve(plan: Plan, sockets: SocketSet) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0
    draining = False

    def on_signal(number: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            logger.warning("second %s: exiting now", signal.Signals(number).name)
            sys.stderr.flush()
            loop.stop()
            return
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, number)
    builtins: dict[str, ASGIApp] = {
        "@health": Health(lambda: not draining),
        "@metrics": MetricsUnavailable(),
    }
    worker = Worker(plan, plan.groups, sockets.by_name(), builtins=builtins)
    try:
        await worker.start()
    except WorkerStartupError as error:
        logger.error("cannot start: %s", error)
        return EXIT_CANNOT_START
    for bound in sockets:
        scheme = "https" if plan.config.listeners[bound.name].tls else "http"
        where = bound.describe()
        shown = where if where.startswith("unix:") else f"{scheme}://{where}"
        logger.info("listening on %s (%s)", shown, bound.name)
    config = plan.config
    logger.info("ready: %d listener(s), %d app(s)", len(config.listeners), len(config.apps))
    await stop.wait()
    draining = True
    logger.info("draining (up to %gs)", plan.config.host.graceful_timeout)
    await worker.drain()
    logger.info("stopped")
    return EXIT_OK

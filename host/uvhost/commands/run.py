"""`uvhost run`: validate, bind every socket, and hand over to the supervisor.

Exit codes: 0 after a clean drain, 1 for an invalid config, 3 when the host
cannot start (an address in use, an app that fails to import or to start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TextIO

from uvhost.commands.report import print_diagnostics
from uvhost.config.load import LoadResult, load_config
from uvhost.observe.logpanel import LogPanel
from uvhost.observe.logs import configure
from uvhost.supervisor import pidfile, systemd
from uvhost.supervisor.parent import Supervisor
from uvhost.supervisor.sockets import BindError, bind_all

EXIT_INVALID, EXIT_CANNOT_START = 1, 3
logger = logging.getLogger("uvhost")


def run(
    path: Path,
    *,
    err: TextIO,
    reload_code: bool = False,
    dashboard: TextIO | None = None,
) -> int:
    """Serve until stopped; `dashboard` is the terminal to draw the live dashboard on."""
    result = load_config(path)
    if result.config is None:
        print_diagnostics(result, str(path), err)
        return EXIT_INVALID
    if dashboard is None:
        return _serve(result, path, reload_code, None)
    from uvhost.commands.dashboard_run import logs_to_panel, print_tail  # noqa: PLC0415 - rich only on a TTY

    panel = LogPanel()
    try:
        with logs_to_panel(panel):
            return _serve(result, path, reload_code, (panel, dashboard))
    finally:
        print_tail(panel, err)


def _serve(
    result: LoadResult,
    path: Path,
    reload_code: bool,
    dashboard: tuple[LogPanel, TextIO] | None,
) -> int:
    plan = result.plan()
    configure(plan.config.logging)
    systemd.take_environment()  # before any worker could inherit LISTEN_* or NOTIFY_SOCKET
    try:
        sockets = bind_all(plan.config.listeners.items())
    except BindError as error:
        logger.error("cannot start: %s", error)
        return EXIT_CANNOT_START
    pid_path = plan.config.host.pid_file
    if pid_path is not None:
        try:
            pidfile.write(pid_path)
        except OSError as error:
            reason = error.strerror or error
            logger.error("cannot start: cannot write the pid file %s: %s", pid_path, reason)
            sockets.close()
            return EXIT_CANNOT_START
    supervisor = Supervisor(
        path, plan, sockets, watched=result.watched_files, reload_code=reload_code
    )
    if dashboard is not None:
        supervisor.services.output = dashboard[0].add
    try:
        # The supervisor's loop is plain asyncio: it moves a few messages a second, and
        # uvloop would add ~11 MiB to the resident size of a process that never serves.
        with asyncio.Runner() as runner:
            return runner.run(_supervise(supervisor, dashboard))
    finally:
        supervisor.sockets.close()  # the current set: reloads may have replaced some
        pidfile.remove(supervisor.plan.config.host.pid_file)  # a reload may have moved it


async def _supervise(supervisor: Supervisor, dashboard: tuple[LogPanel, TextIO] | None) -> int:
    if dashboard is None:
        return await supervisor.run()
    from uvhost.commands.dashboard_run import show  # noqa: PLC0415 - rich only on a TTY

    panel, terminal = dashboard
    drawing = asyncio.ensure_future(show(supervisor.status, panel, terminal))
    try:
        return await supervisor.run()
    finally:
        drawing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drawing

"""`uvhost run`: validate, bind every socket, and hand over to the supervisor.

Exit codes: 0 after a clean drain, 1 for an invalid config, 3 when the host
cannot start (an address in use, an app that fails to import or to start).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TextIO

import uvloop

from uvhost.commands.report import print_diagnostics
from uvhost.config.load import load_config
from uvhost.observe.logs import configure
from uvhost.supervisor.parent import Supervisor
from uvhost.supervisor.sockets import BindError, bind_all

EXIT_INVALID, EXIT_CANNOT_START = 1, 3
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
    supervisor = Supervisor(path, plan, sockets, watched=result.watched_files)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(supervisor.run())
    finally:
        supervisor.sockets.close()  # the current set: reloads may have replaced some

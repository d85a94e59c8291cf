"""Background tasks of the supervisor that nobody awaits: kept alive, and never silent.

asyncio keeps only weak references to tasks, so a fire-and-forget task can be
collected mid-flight; and an exception in one would otherwise surface only as
"exception was never retrieved" at exit. `background` fixes both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger("uvhost.supervisor")
_RUNNING: set[asyncio.Task[Any]] = set()


def background(work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(work)
    _RUNNING.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _RUNNING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("supervisor task failed", exc_info=task.exception())

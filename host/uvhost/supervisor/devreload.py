"""`uvhost run --reload` (development): roll a group when Python files of its apps change.

Invariants:
- Watches each app's import folder (`Plan.app_dir`) recursively, `*.py`
  only; virtualenvs, `__pycache__` and `site-packages` are never looked at
  for changes.
- Only enqueues: the supervisor's loop takes the pending changes (`take`)
  and rolls the affected groups with the current plan, one event at a time
  like every other trigger.
- The watched folders follow the running plan: a reload that moves an
  app's folder is picked up at the next recheck.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import watchfiles

from uvhost.config.plan import Plan
from uvhost.supervisor.tasks import background

logger = logging.getLogger("uvhost.supervisor")

DEBOUNCE_MS = 300
RECHECK_MS = 500  # development only: how soon the watch is known to be live, or re-aimed
IGNORED_DIRS = (
    *watchfiles.DefaultFilter.ignore_dirs,
    "site-packages",
    "dist-packages",
    "venv",
    ".nox",
    "build",
)


class CodeFilter(watchfiles.PythonFilter):
    """`*.py` files outside virtualenvs, caches and installed packages."""

    ignore_dirs = IGNORED_DIRS

    def __init__(self) -> None:
        super().__init__()
        self.extensions = (".py",)


def group_folders(plan: Plan) -> dict[str, tuple[Path, ...]]:
    """Each group's app import folders, resolved (folder apps import nothing)."""
    apps = plan.config.apps
    return {
        group.name: tuple(
            dict.fromkeys(
                plan.app_dir(app).resolve() for app in group.apps if apps[app].folder is None
            )
        )
        for group in plan.groups
    }


def watched_folders(plan: Plan) -> tuple[Path, ...]:
    """Every app folder, minus those inside another (a recursive watch covers them)."""
    folders = sorted({folder for found in group_folders(plan).values() for folder in found})
    return tuple(f for f in folders if not any(f != o and f.is_relative_to(o) for o in folders))


def affected_groups(plan: Plan, paths: set[Path]) -> dict[str, int]:
    """Group name → how many of the changed files live under its apps' folders."""
    counts: dict[str, int] = {}
    for name, folders in group_folders(plan).items():
        count = sum(1 for path in paths if any(path.is_relative_to(f) for f in folders))
        if count:
            counts[name] = count
    return counts


async def watch_code(folders: Callable[[], tuple[Path, ...]]) -> AsyncIterator[set[Path]]:
    """Batches of changed `*.py` paths under `folders()`, which may change over time.

    An empty batch comes every RECHECK_MS without changes: the first one says
    the watch is in place (edits from then on are seen).
    """
    while True:
        watched = folders()
        existing = [str(folder) for folder in watched if folder.is_dir()]
        if not existing:
            await asyncio.sleep(RECHECK_MS / 1000)
            continue
        async for changes in watchfiles.awatch(
            *existing,
            watch_filter=CodeFilter(),
            debounce=DEBOUNCE_MS,
            recursive=True,
            rust_timeout=RECHECK_MS,
            yield_on_timeout=True,  # an empty batch: recheck which folders to watch
        ):
            yield {Path(path) for _change, path in changes}
            if folders() != watched:
                break


class CodeWatch:
    """Collects changed files between the supervisor's turns."""

    def __init__(self) -> None:
        self.pending: set[Path] = set()

    def start(self, plan: Callable[[], Plan], notify: Callable[[], None]) -> asyncio.Task[None]:
        async def loop() -> None:
            announced: tuple[Path, ...] = ()
            async for paths in watch_code(lambda: watched_folders(plan())):
                if (folders := watched_folders(plan())) != announced:
                    announced = folders
                    shown = ", ".join(str(folder) for folder in folders)
                    logger.info("--reload: watching Python files under %s", shown)
                if paths:
                    self.pending |= paths
                    notify()

        return background(loop())

    def take(self, plan: Plan) -> dict[str, int]:
        """The groups to roll for the changes so far (which are then forgotten)."""
        paths, self.pending = self.pending, set()
        return affected_groups(plan, paths) if paths else {}

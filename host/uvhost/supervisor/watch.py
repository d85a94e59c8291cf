"""Watching the config, env and TLS files: folders, not files, and content, not events.

Invariants (STYLE.md item 12):
- Editors save by writing a new file and renaming it over the old, and
  Kubernetes swaps ConfigMap symlinks: a watch on the file itself would go
  deaf after the first save. So the parent folders are watched and events
  are filtered to the paths we care about.
- A reload is triggered only when the content of a watched file actually
  changed (SHA-256), so touching a file or a burst of events from one save
  causes at most one reload; watchfiles debounces the burst first.
- Contents are compared against what the supervisor loaded, not against
  what the watch first saw: an edit saved while the host was starting, or
  to a file the config has just started to name, is found when the watch
  (re)starts; a recheck every RECHECK_MS without events is the net for
  whatever events miss (a ConfigMap's `..data` symlink swap is an event on
  another name).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import watchfiles

from uvhost.config.load import file_digest

DEBOUNCE_MS = 200
RECHECK_MS = 2000
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch at INFO


def fingerprint(paths: tuple[Path, ...]) -> dict[Path, str | None]:
    """Content hashes; a missing file hashes to None, so its later creation is a change."""
    return {path: file_digest(path) for path in paths}


def _only(names: set[str]) -> Callable[[watchfiles.Change, str], bool]:
    """A watchfiles filter passing only events on these paths (not the folder's others)."""
    return lambda _change, path: path in names


async def watch_files(loaded: Callable[[], Mapping[Path, str | None]]) -> AsyncIterator[None]:
    """Yield whenever a watched file's content differs from what was last loaded.

    `loaded()` maps every file the running config depends on to its digest as
    the supervisor last read it; it changes with each load, and so does the
    set of watched folders. A difference is reported once, not again on the
    next event while the supervisor has yet to reload.
    """
    reported: Mapping[Path, str | None] | None = None

    def changed() -> bool:
        nonlocal reported
        expected = loaded()
        current = fingerprint(tuple(expected))
        if current in (expected, reported):
            return False
        reported = current
        return True

    while True:
        watched = tuple(loaded())
        if changed():  # saved before this watch existed (while starting, or a new file)
            yield
        folders = sorted({str(p.parent) for p in watched if p.parent.is_dir()})
        async for _events in watchfiles.awatch(
            *folders,
            watch_filter=_only({str(p) for p in watched}),
            debounce=DEBOUNCE_MS,
            recursive=False,
            rust_timeout=RECHECK_MS,
            yield_on_timeout=True,  # an empty batch: recheck the contents anyway
        ):
            if tuple(loaded()) != watched:
                break  # the config names other files now: watch their folders
            if changed():
                yield

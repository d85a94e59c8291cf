"""Watching the config, env and TLS files: folders, not files, and content, not events.

Invariants (STYLE.md item 12):
- Editors save by writing a new file and renaming it over the old, and
  Kubernetes swaps ConfigMap symlinks: a watch on the file itself would go
  deaf after the first save. So the parent folders are watched and events
  are filtered to the paths we care about.
- A reload is triggered only when the content of a watched file actually
  changed (SHA-256), so touching a file or a burst of events from one save
  causes at most one reload; watchfiles debounces the burst first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import watchfiles

from uvhost.config.load import file_digest

DEBOUNCE_MS = 200
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch at INFO


def fingerprint(paths: tuple[Path, ...]) -> dict[Path, str | None]:
    """Content hashes; a missing file hashes to None, so its later creation is a change."""
    return {path: file_digest(path) for path in paths}


def _only(names: set[str]) -> Callable[[watchfiles.Change, str], bool]:
    """A watchfiles filter passing only events on these paths (not the folder's others)."""
    return lambda _change, path: path in names


async def watch_files(paths: Callable[[], tuple[Path, ...]]) -> AsyncIterator[None]:
    """Yield once per effective change of any file `paths()` names (re-read each time)."""
    watched = paths()
    known = fingerprint(watched)
    while True:
        folders = sorted({str(p.parent) for p in watched if p.parent.is_dir()})
        names = {str(p) for p in watched}

        async for _events in watchfiles.awatch(
            *folders, watch_filter=_only(names), debounce=DEBOUNCE_MS, recursive=False
        ):
            current = fingerprint(watched)
            if current != known:
                known = current
                yield
            if paths() != watched:
                break  # the set of files changed with the config: watch the new folders
        watched = paths()
        known = {**fingerprint(watched), **{p: h for p, h in known.items() if p in watched}}

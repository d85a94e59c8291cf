"""Watching the config, env and TLS files: folders, not files, and content, not events.

Invariants (STYLE.md item 12):
- Editors save by writing a new file and renaming it over the old, and
  Kubernetes swaps ConfigMap symlinks: a watch on the file itself would go
  deaf after the first save. So the parent folders are watched and events
  are filtered to the paths we care about.
- A watched path is kept as the config names it, never resolved: a mounted
  ConfigMap's `uvhost.toml` is a link through `..data` into a timestamped
  folder that the kubelet deletes after each swap, so the resolved path
  would point at a folder about to vanish. Each symlink hop inside the
  file's own folder (`..data`, the timestamped folder) passes the event
  filter, so the swap itself (a rename onto `..data`) triggers the check at
  once; a link to a file in another folder adds that folder to the watch.
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
import os
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


MAX_HOPS = 8
"""How many symlinks of one path are followed for the filter (a loop ends the walk)."""


def _link_hops(path: Path) -> set[str]:
    """The names in `path`'s folder that a relative symlink chain from `path` goes through.

    For a ConfigMap mount, `uvhost.toml -> ..data/uvhost.toml` and
    `..data -> ..2026_12_05_16_00_00.123`: the kubelet updates by renaming a
    new link onto `..data`, an event on that name, not on `uvhost.toml`.
    """
    hops: set[str] = set()
    current = path
    for _ in range(MAX_HOPS):
        try:
            target = current.readlink()
        except OSError:  # not a link (or gone): the chain ends here
            break
        if target.is_absolute() or not target.parts:
            break
        current = current.parent / target.parts[0]
        if current.parent != path.parent or str(current) in hops:
            break
        hops.add(str(current))
    return hops


def watch_targets(paths: tuple[Path, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
    """The folders to watch and the paths whose events matter, for these files.

    Each file's folder, with the file and its symlink hops there; and when
    the file resolves into a folder the hops do not already cover (a link to
    a file elsewhere), that folder and the real file too, so an editor's
    save of the real file is seen at once.
    """
    names: set[str] = set()
    for named in paths:
        # "config/../tls/tls.crt" (a path relative to the config's folder) is watched
        # as "tls/tls.crt": its hops and its real file then compare equal as text.
        path = Path(os.path.normpath(named))
        hops = _link_hops(path)
        names |= {str(path), *hops}
        real = path.resolve()
        if real != path and str(real.parent) not in hops:
            names.add(str(real))
    folders = sorted({str(Path(name).parent) for name in names if Path(name).parent.is_dir()})
    return tuple(folders), frozenset(names)


def _only(names: frozenset[str]) -> Callable[[watchfiles.Change, str], bool]:
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
        targets = watch_targets(watched)
        folders, names = targets
        async for _events in watchfiles.awatch(
            *folders,
            watch_filter=_only(names),  # paths come back under `folders` as given
            debounce=DEBOUNCE_MS,
            recursive=False,
            rust_timeout=RECHECK_MS,
            yield_on_timeout=True,  # an empty batch: recheck the contents anyway
        ):
            if tuple(loaded()) != watched:
                break  # the config names other files now: watch their folders
            if changed():
                yield
            if watch_targets(watched) != targets:
                break  # a link leads elsewhere now (a ConfigMap swap): follow it

"""The pid file (`host.pid_file`): the supervisor's PID, for init scripts and monitors.

Invariants:
- Written atomically (a temporary file in the same folder, renamed over), so a
  reader never sees a half-written number.
- Removed on exit only while it still holds our PID: a newer supervisor that
  has since written its own is left alone.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write(path: Path) -> None:
    """Write our PID to `path`; OSError if the folder is missing or not writable."""
    fresh = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fresh.write_text(f"{os.getpid()}\n", encoding="ascii")
        fresh.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            fresh.unlink()
        raise


def remove(path: Path | None) -> None:
    """Remove `path` if it holds our PID; never raises."""
    if path is None:
        return
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text(encoding="ascii").strip()) == os.getpid():
            path.unlink()


def move(old: Path | None, new: Path | None) -> None:
    """After a reload changed `host.pid_file`: write the new one, then drop the old one."""
    if old == new:
        return
    if new is not None:
        write(new)
    remove(old)

"""A folder laid out and updated the way the kubelet mounts a ConfigMap or a Secret.

The kubelet's atomic writer keeps each version of the volume in a hidden,
timestamped folder and points `..data` at the current one; every visible
file is a symlink through it (`uvhost.toml -> ..data/uvhost.toml`). An
update writes a new timestamped folder, makes a `..data_tmp` link to it,
renames that link onto `..data` (one atomic rename(2): readers see the old
version or the new one, never a mix), then deletes the old folder. A file
added by the update gets its visible link after the swap.

Shared by the watcher's tests and the Kubernetes tests, so the layout is
written once, here.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"


class Volume:
    """A mounted ConfigMap or Secret at `folder`, holding `files` (name to content)."""

    def __init__(self, folder: Path, files: Mapping[str, bytes | str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.current: Path | None = None
        self.update(files)

    def update(self, files: Mapping[str, bytes | str]) -> None:
        """Publish a new version of the whole volume, as the kubelet does on an edit."""
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns():d}"
        fresh = self.folder / stamp
        fresh.mkdir(mode=0o755)
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            (fresh / name).write_bytes(data)
        staged = self.folder / "..data_tmp"
        staged.symlink_to(stamp)
        staged.replace(self.folder / DATA)  # the swap: one rename
        for name in files:
            visible = self.folder / name
            if not visible.is_symlink():
                visible.symlink_to(f"{DATA}/{name}")
        for entry in self.folder.iterdir():  # files the new version no longer has
            if entry.is_symlink() and entry.name not in (DATA, *files):
                entry.unlink()
        if self.current is not None:
            shutil.rmtree(self.current)
        self.current = fresh

"""The file watcher against a kubelet-mounted volume (tests/kubelet.py).

What it shows: the swap of `..data` (the kubelet's update of a ConfigMap or
a Secret) wakes the watcher by its own event, not only by the periodic
recheck; the recheck is pushed out of reach here, so only the event can
report the change in time. The watched path stays the one the config names,
through the links, for every later swap.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.kubelet import Volume

from uvhost.config.load import file_digest
from uvhost.supervisor import watch

SEEN_WITHIN = 5.0
"""Seconds an event-driven change may take to be reported (debounce is 0.2 s)."""


def test_the_targets_of_a_mounted_file_are_its_folder_and_the_links_it_goes_through(
    tmp_path: Path,
) -> None:
    volume = Volume(tmp_path / "config", {"uvhost.toml": "a = 1\n"})
    path = volume.folder / "uvhost.toml"
    folders, names = watch.watch_targets((path,))
    assert folders == (str(volume.folder),)
    assert str(path) in names
    assert str(volume.folder / "..data") in names
    assert volume.current is not None
    assert str(volume.current) in names  # the timestamped folder, one more hop


def test_a_relative_path_into_a_sibling_mount_watches_the_mount_only(tmp_path: Path) -> None:
    volume = Volume(tmp_path / "tls", {"tls.crt": "cert\n"})
    named = tmp_path / "config" / ".." / "tls" / "tls.crt"  # "../tls/tls.crt" in the config
    folders, names = watch.watch_targets((named,))
    assert folders == (str(volume.folder),)  # never the timestamped folder, which will vanish
    assert {str(volume.folder / "tls.crt"), str(volume.folder / "..data")} <= names


def test_a_link_to_a_file_elsewhere_watches_that_folder_too(tmp_path: Path) -> None:
    real = tmp_path / "real" / "uvhost.toml"
    real.parent.mkdir()
    real.write_text("a = 1\n")
    link = tmp_path / "etc" / "uvhost.toml"
    link.parent.mkdir()
    link.symlink_to(real)
    folders, names = watch.watch_targets((link,))
    assert set(folders) == {str(real.parent), str(link.parent)}
    assert {str(link), str(real)} <= names


@pytest.mark.parametrize("name", ["uvhost.toml", "tls.crt"])
def test_each_kubelet_swap_is_reported_by_its_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(watch, "RECHECK_MS", 600_000)  # no safety net: the event or nothing
    volume = Volume(tmp_path / "mount", {name: "version 1\n"})
    path = volume.folder / name
    loaded = {path: file_digest(path)}

    async def follow() -> list[str]:
        changes = watch.watch_files(lambda: loaded)
        seen: list[str] = []
        for version in (2, 3):  # the second swap: the watch follows the new links
            waiting = asyncio.ensure_future(anext(changes))
            await asyncio.sleep(0.5)  # the watch is up before the swap
            assert not waiting.done()
            volume.update({name: f"version {version}\n"})
            await asyncio.wait_for(waiting, SEEN_WITHIN)
            seen.append(path.read_text())
            loaded[path] = file_digest(path)  # as the supervisor's reload does
        await changes.aclose()
        return seen

    assert asyncio.run(follow()) == ["version 2\n", "version 3\n"]

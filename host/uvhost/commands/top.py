"""`uvhost top`: a running host's dashboard, redrawn from its control socket until Ctrl-C.

Invariants:
- Read-only: it sends only "status", so watching a host changes nothing in it
  (the supervisor answers status at once, outside its serialising queue).
- The socket call happens between frames, never inside one: `Live` does not
  auto-refresh, so rich draws exactly once per new snapshot and no draw waits
  on the host. The call is a short local round trip, bounded by `TIMEOUT`.
- Polls keep to a fixed cadence (deadline-based), so a slow answer does not
  stretch every later interval.
- On a terminal the frame is redrawn in place (the alternate screen); into a
  pipe or a file each snapshot is printed after the last, like `top -b`.
- Exit 0 on Ctrl-C; 1 when there is no host to watch, or when it goes away or
  stops answering (the reason is printed after the terminal is restored).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.text import Text

from uvhost.commands.control import as_status, host_settings
from uvhost.observe.dashboard import full_screen, render
from uvhost.observe.status import Status
from uvhost.supervisor.control import ControlError, request, socket_path

TIMEOUT = 5.0
"""How long one status request may take before the host counts as gone."""


def top(path: Path, *, interval: float, out: TextIO, err: TextIO) -> int:
    where = socket_path(host_settings(path), path)
    if where is None:
        err.write(f'{path}: host.control_socket is "off"; there is nothing to attach to\n')
        return 1
    stream = snapshots(where, interval)
    try:
        first = next(stream)
    except ControlError as error:
        err.write(f"uvhost top: {error}\n")
        return 1
    console = Console(file=out, highlight=False)
    try:
        if console.is_terminal:
            _live(console, first, stream, interval)
        else:  # a pipe or a file: one frame after another, like `top -b`
            for status in itertools.chain([first], stream):
                console.print(frame(status, interval))
                console.print()
                out.flush()
    except KeyboardInterrupt:
        return 0
    except ControlError as error:
        err.write(f"uvhost top: the host went away: {error}\n")
        return 1
    raise AssertionError("snapshots() never ends")  # pragma: no cover


def _live(console: Console, first: Status, stream: Iterator[Status], interval: float) -> None:
    with full_screen(console, frame(first, interval)) as live:
        for status in stream:
            live.update(frame(status, interval), refresh=True)


def snapshots(where: Path, interval: float) -> Iterator[Status]:
    """One snapshot now, then one per `interval` on a fixed cadence, for ever."""
    next_at = time.monotonic()
    while True:
        yield fetch(where)
        next_at = max(next_at + interval, time.monotonic())  # late: go on, never burst
        time.sleep(max(0.0, next_at - time.monotonic()))


def fetch(where: Path) -> Status:
    answer = request(where, "status", TIMEOUT)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("message", "the host refused the status request")))
    return as_status(answer)


def frame(status: Status, interval: float) -> RenderableType:
    """The dashboard plus one line saying how it refreshes and how to leave."""
    footer = Text(f"refreshing every {interval:g}s · Ctrl-C to quit", style="dim")
    return Group(render(status), Text(""), footer)

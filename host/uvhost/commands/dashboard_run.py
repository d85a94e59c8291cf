"""`uvhost run` on a terminal: the live dashboard above the host's own log lines.

Invariants:
- Only when stdout is a terminal and `--no-dashboard` is not given; anything
  else (a pipe, a file, systemd's journal) gets plain log lines as before.
- While the dashboard is up, `sys.stderr` is the log panel, so every log
  handler the supervisor installs (now or on a live logging change) writes
  there, and workers' output is piped into it line by line.
- The dashboard reads the supervisor's own status (no control socket round
  trip) once a second; it never blocks the supervisor's loop for longer
  than one render.
- When the host stops, the terminal is restored and the last log lines are
  printed, so the reason it stopped stays on screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from rich.console import Console, RenderableType

from uvhost.observe.dashboard import full_screen, render
from uvhost.observe.logpanel import LogPanel
from uvhost.observe.status import Status

REFRESH = 1.0  # seconds between frames
LOG_LINES_SHOWN = 12
LOG_LINES_KEPT_AFTER = 40  # printed when the dashboard closes


@contextlib.contextmanager
def logs_to_panel(panel: LogPanel) -> Iterator[None]:
    """Point `sys.stderr` at the panel for as long as the dashboard owns the terminal."""
    previous = sys.stderr
    sys.stderr = panel  # file-like enough for logging and for print()
    try:
        yield
    finally:
        sys.stderr = previous


async def show(status: Callable[[], Status], panel: LogPanel, terminal: TextIO) -> None:
    """Redraw the dashboard every REFRESH seconds until cancelled."""
    console = Console(file=terminal, highlight=False)

    def frame() -> RenderableType:
        return render(status(), logs=panel.tail(LOG_LINES_SHOWN))

    with full_screen(console, frame()) as live:
        while True:
            await asyncio.sleep(REFRESH)
            live.update(frame(), refresh=True)


def print_tail(panel: LogPanel, out: TextIO) -> None:
    for line in panel.tail(LOG_LINES_KEPT_AFTER):
        out.write(line + "\n")
    out.flush()

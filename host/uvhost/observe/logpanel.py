"""The last lines of the host's log, kept for the dashboard of `uvhost run` on a terminal.

While the dashboard owns the terminal, the supervisor's log handlers write
here (it stands in for `sys.stderr`) and so do the workers, whose output is
piped to the supervisor line by line. The dashboard shows the tail; when
the dashboard closes, the tail is printed so the last words stay visible.

Invariants:
- Bounded: only the last `capacity` lines are kept, whatever the log volume.
- A line is stored whole: partial writes are held until their newline.
- Terminal control characters in a line are made visible (`\\x1b` and so on)
  before they can reach the screen: worker output is not trusted to draw.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def visible(line: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", line)


class LogPanel:
    """A file-like sink (`write`, `flush`, `isatty`) holding the last lines written to it."""

    def __init__(self, capacity: int = 500) -> None:
        self.lines: deque[str] = deque(maxlen=capacity)
        self._partial = ""

    def write(self, text: str) -> int:
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        for piece in pieces:
            self.add(piece)
        return len(text)

    def add(self, line: str) -> None:
        self.lines.append(visible(line.rstrip("\r")))

    def flush(self) -> None:
        """Nothing is buffered but a line without its newline yet."""

    def isatty(self) -> bool:
        return False  # so logging picks a plain format, not rich's terminal handler

    def tail(self, count: int) -> Sequence[str]:
        if count <= 0:
            return ()
        return list(self.lines)[-count:]

"""From a request path to a file inside a folder, or a refusal: the only way in.

Why one module: every way out of a served folder (`..`, an encoded slash,
a backslash, NUL, overlong UTF-8, an absolute path, a drive letter, a
symlink leaving the folder, a device or a FIFO, a file swapped for a
symlink after it was checked) is closed here, once, and the corpus in
tests/server/test_static.py tries each against it.

Invariants:
- The path below the mount is taken from `raw_path` as the client sent it
  and percent-decoded exactly once, strictly: a bad escape, NUL or a
  control character is 400; bytes that are not UTF-8 (overlong forms,
  surrogates) are 400. Nothing is decoded twice, so `%252e` is the name
  "%2e", never "."
- Segments are judged, never normalised: `.` and `..` are refused (404),
  not resolved, as are an encoded slash (`%2F`) or a backslash in any
  form, and a segment that starts like a drive letter (`C:`). Empty
  segments (`//`) are skipped: the joined path always starts at the root.
- Names starting with a dot are refused unless `dotfiles` is on, in the
  request and in what a symlink resolves to; `.well-known` (RFC 8615) is
  always allowed, as ACME challenges and security.txt need it.
- After joining, `os.path.realpath` resolves every symlink and the result
  must be the folder or inside it (unless `follow_symlinks_outside`).
  `open_file` then opens that real path with O_NOFOLLOW (a final component
  swapped for a symlink since is ELOOP, refused) and O_NONBLOCK (a FIFO
  cannot block the worker), and judges the opened descriptor with fstat:
  only a regular file is served, and what is served is what was opened.
- Refusals carry a status only, never a filesystem path.

Paths are `str` here, not `Path`: they are joined, compared and opened on the
request path, where building Path objects would cost for nothing.
"""

# ruff: noqa: PTH116, PTH118, PTH206

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from urllib.parse import quote

BAD_REQUEST, NOT_FOUND = 400, 404
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
WELL_KNOWN = ".well-known"

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_DRIVE = re.compile(r"[A-Za-z]:")
_PATH_SAFE = "/!$&'()*+,;=:@~"


@dataclass(frozen=True, slots=True)
class RequestPath:
    """A request path judged safe to look up: its segments below the mount."""

    segments: tuple[str, ...]
    directory: bool
    """It ended with "/" (or named the mount itself with one)."""

    @property
    def relative(self) -> str:
        return "/".join(self.segments)

    def has_extension(self) -> bool:
        last = self.segments[-1] if self.segments else ""
        return "." in last.lstrip(".")


def raw_rest(raw_path: bytes, root_path: str) -> bytes | None:
    """The raw path below the mount (`root_path`, decoded), or None when the raw path's
    first segments do not decode to it (an encoded slash inside the prefix)."""
    if not root_path:
        return raw_path
    cut = 0
    for _ in range(root_path.count("/")):
        cut = raw_path.find(b"/", cut + 1)
        if cut < 0:
            cut = len(raw_path)
            break
    head = raw_path[:cut]
    decoded = _ESCAPE.sub(lambda m: bytes((int(m[1], 16),)), head) if b"%" in head else head
    try:
        if decoded.decode("utf-8") != root_path:
            return None
    except UnicodeDecodeError:
        return None
    return raw_path[cut:]


def parse_request_path(rest: bytes, *, dotfiles: bool) -> RequestPath | int:  # noqa: PLR0911
    """The segments of the raw path below the mount, or BAD_REQUEST / NOT_FOUND."""
    if _BAD_ESCAPE.search(rest):
        return BAD_REQUEST
    segments: list[str] = []
    raw_segments = rest.split(b"/")
    for sent in raw_segments:
        if not sent:
            continue
        raw = sent
        if b"%" in sent:
            lowered = sent.lower()
            if b"%2f" in lowered or b"%5c" in lowered:
                return NOT_FOUND  # an encoded slash or backslash: never a separator here
            raw = _ESCAPE.sub(lambda m: bytes((int(m[1], 16),)), sent)
        if any(byte < 0x20 or byte == 0x7F for byte in raw):
            return BAD_REQUEST  # NUL and other control characters
        try:
            segment = raw.decode("utf-8")  # strict: overlong forms and surrogates fail
        except UnicodeDecodeError:
            return BAD_REQUEST
        if segment in (".", "..") or "\\" in segment or _DRIVE.match(segment):
            return NOT_FOUND
        if segment.startswith(".") and not dotfiles and segment != WELL_KNOWN:
            return NOT_FOUND
        segments.append(segment)
    directory = rest.endswith(b"/")  # the mount itself without "/" is redirected to it
    return RequestPath(tuple(segments), directory)


def inside(root: str, path: str) -> bool:
    """Whether a real path is the real folder `root` or below it."""
    return path == root or path.startswith(root + os.sep)


def resolve(root: str, parts: tuple[str, ...], *, dotfiles: bool, outside: bool) -> str | None:
    """The real path of `parts` joined under the real folder `root`, or None when it leaves
    the folder (and `outside` is off) or reaches a dotfile through a symlink."""
    return real_inside(root, os.path.join(root, *parts), dotfiles=dotfiles, outside=outside)


def real_inside(root: str, path: str, *, dotfiles: bool, outside: bool) -> str | None:
    """`path` with every symlink resolved, if that is inside `root` (or `outside` allows it)
    and names no dotfile below `root` (unless `dotfiles`); else None."""
    real = os.path.realpath(path)
    if not inside(root, real):
        return real if outside else None
    if not dotfiles and real != root:
        below = real[len(root) + 1 :].split(os.sep)
        if any(name.startswith(".") and name != WELL_KNOWN for name in below):
            return None
    return real


def open_file(path: str) -> tuple[int, os.stat_result] | None:
    """Open a real path (no symlink in it) for reading: (fd, fstat) of a regular file, or
    None. The caller closes the fd."""
    try:
        before = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(before.st_mode):
        return None  # devices, FIFOs, sockets are never opened
    try:
        fd = os.open(path, OPEN_FLAGS)
    except (OSError, ValueError):
        return None  # ELOOP: swapped for a symlink since realpath
    try:
        opened = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        return None
    return fd, opened


def is_directory(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def directory_location(root_path: str, request: RequestPath, query: bytes) -> bytes:
    """Where a folder asked for without its trailing slash is redirected: rebuilt from the
    decoded segments (never the raw path, so `//evil.example` cannot become a
    protocol-relative Location)."""
    relative = request.relative
    path = f"{root_path}/{relative}/" if relative else f"{root_path}/"
    location = quote(path, safe=_PATH_SAFE).encode("ascii")
    return location + b"?" + query if query else location

"""A folder served as an app: the `folder` kind of `[apps.NAME]`.

Why in the host: Python apps serve their assets through Starlette's
`StaticFiles` or WhiteNoise, reading the file in Python for every request,
or put nginx in front. Here a folder is an ASGI callable built once per
worker (like answers.py's redirects), so the router hands it out like any
endpoint and the stats and access log count it like any app; it needs no
import and no lifespan.

Invariants:
- Paths: `static_paths.py` alone turns a request path into a real path
  inside the folder; this module never joins a path itself.
- HTTP: GET and HEAD (405 with Allow otherwise); validators, preconditions,
  ranges and encodings from `http_conditional.py`, in RFC 9110 13.2.2's
  order. Every file response says `Accept-Ranges: bytes`, a strong ETag
  (`"inode-size-mtime_ns"` of the opened file, hex), Last-Modified,
  Cache-Control, `X-Content-Type-Options: nosniff`, and `Vary:
  Accept-Encoding` when the file has precompressed siblings.
- Served is what was opened: headers and bytes come from one open file
  (its fstat), so a file replaced while being served (the usual atomic
  deploy, by rename) is served whole, old or new, never a mix.
- Per worker and app, a cache maps (root_path, raw_path) to what the path
  resolved to, with files up to SMALL_FILE bytes held in memory and their
  200 heads precomputed: a hot small file costs a dict lookup, one
  monotonic clock read and one write. Each path is resolved and stat'ed
  again at most once a second (REVALIDATE), so an edit on disk is served
  within a second; the cache holds at most CACHE_BYTES of file bytes (it
  is emptied when full: simpler than LRU, and a refill costs one read per
  hot file).
- Larger files stay open in the cache (OpenFile, at most MAX_OPEN_FILES per
  app and worker; past that they are opened per request), so a hot large
  file costs no open or stat either, and are sent from that descriptor with
  `http.response.zerocopysend` (the ASGI extension): `os.sendfile` on plain
  TCP HTTP/1.1, reads with back-pressure on TLS and HTTP/2 (exchange.py
  decides which). A file replaced on disk gets a new entry at the next
  check; the old descriptor is closed when the last response sending from
  it lets go of it.
- Nothing this module answers names a filesystem path.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uvhost.server import static_paths
from uvhost.server.asgi_types import Answer
from uvhost.server.http_conditional import (
    ENCODINGS,
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    PROCEED,
    UNSATISFIABLE,
    accepted_encodings,
    http_date,
    if_range_holds,
    parse_range,
    preconditions,
)
from uvhost.server.media_types import media_type_of, media_type_table
from uvhost.server.static_paths import BAD_REQUEST, NOT_FOUND, RequestPath

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import AppSettings

SMALL_FILE = 64 * 1024
"""Files up to this size are kept in memory and written with their head in one write."""
REVALIDATE = 1.0
"""Seconds a resolved path is trusted before it is resolved and stat'ed again."""
CACHE_BYTES = 32 * 1024 * 1024
"""File bytes one folder app keeps in memory per worker."""
MAX_OPEN_FILES = 128
"""Large files one folder app keeps open per worker (well inside a default 1024 fd limit)."""
IMMUTABLE = b"public, max-age=31536000, immutable"
SUFFIXES = {b"br": ".br", b"zstd": ".zst", b"gzip": ".gz"}
"""Precompressed siblings: `app.js.br` beside `app.js`."""
_ACCEPT_CACHE_SIZE = 256

Headers = list[tuple[bytes, bytes]]

# Request headers read here, by slot: one dict lookup per request header.
ACCEPT_ENCODING, RANGE, IF_RANGE, IF_MATCH, IF_NONE_MATCH, IF_MODIFIED, IF_UNMODIFIED = range(7)
_SLOT: Callable[[bytes], int | None] = {
    b"accept-encoding": ACCEPT_ENCODING,
    b"range": RANGE,
    b"if-range": IF_RANGE,
    b"if-match": IF_MATCH,
    b"if-none-match": IF_NONE_MATCH,
    b"if-modified-since": IF_MODIFIED,
    b"if-unmodified-since": IF_UNMODIFIED,
}.get

_PLAIN = b"text/plain; charset=utf-8"
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_REASONS = {
    400: b"Bad Request\n",
    404: b"Not Found\n",
    405: b"Method Not Allowed\n",
    412: b"Precondition Failed\n",
    416: b"Range Not Satisfiable\n",
}


@dataclass(slots=True)
class Variant:
    """One file as opened: the identity file or a precompressed sibling."""

    path: str
    key: tuple[int, int, int, int]
    """(st_dev, st_ino, st_size, st_mtime_ns): what "the same file" means here."""
    size: int
    modified: int
    etag: bytes
    last_modified: bytes
    body: bytes | None
    """The whole file, when small; None: opened per request."""
    headers: Headers
    """The head of a 200, Content-Length included."""
    not_modified: Headers
    """The head of a 304 (RFC 9110 15.4.5: the fields a 200 would carry for caches)."""
    common: Headers
    """What every response about this file carries, for 206 heads built per request."""
    opened: OpenFile | None = None
    """A large file's descriptor, kept; None: small (in `body`) or opened per request."""


class OpenFiles:
    """How many descriptors one folder app holds in its cache: the bound is per app."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class OpenFile:
    """A cached large file's descriptor, closed when nothing refers to it any more.

    Why reference counting rather than closing on eviction: a response may still be
    sending from the descriptor when its entry is replaced (the file was renamed
    over) or the cache is emptied. The response holds the Variant, the Variant
    holds this, and CPython frees it, closing the descriptor, the moment the last
    of them lets go; nothing refers back, so no cycle delays it.
    """

    __slots__ = ("fd", "owner")

    def __init__(self, fd: int, owner: OpenFiles) -> None:
        self.fd = fd
        self.owner = owner
        owner.count += 1

    def __del__(self) -> None:
        self.owner.count -= 1
        os.close(self.fd)


@dataclass(slots=True)
class Entry:
    """What a request path resolved to: a file and its precompressed siblings."""

    identity: Variant
    encoded: dict[bytes, Variant]
    fingerprint: tuple[tuple[int, int, int, int] | None, ...]
    checked: float
    cost: int = 0


@dataclass(slots=True)
class Redirect:
    location: bytes


class StaticFiles:
    """The ASGI app serving one folder app's files; one per app per worker."""

    def __init__(self, settings: AppSettings) -> None:
        folder = settings.folder
        if folder is None:
            raise ValueError("a folder app needs a folder")
        static = settings.static
        self.root = os.path.realpath(folder)
        self.index: str = static.index
        self.dotfiles: bool = static.dotfiles
        self.outside: bool = static.follow_symlinks_outside
        self.types = media_type_table(static.media_types)
        self.immutable = re.compile(static.immutable) if static.immutable else None
        self.cache_control = static.cache_control.encode("latin-1")
        self.extra: Headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in static.headers.items()
        ]
        self.fallback: str | None = static.fallback
        self.fallback_with_extension: bool = static.fallback_with_extension
        self.entries: dict[tuple[str, bytes], Entry] = {}
        self.cached_bytes = 0
        self.open_files = OpenFiles()
        self._fallback: Entry | None = None
        self._accepted: dict[bytes, tuple[bytes, ...]] = {}

    # ----------------------------------------------------------------- serving

    def answer_at_once(self, scope: Any) -> Answer | None:
        """The whole response, when it needs no await: a GET or HEAD for a path checked
        within the last REVALIDATE seconds whose file is held in memory (and any 304,
        412, 206 or 416 about it). The HTTP/1.1 carrier tries this before it starts a
        task (router.Endpoint.at_once); None sends the request through `__call__`."""
        method = scope["method"]
        if method not in {"GET", "HEAD"}:
            return None
        entry = self.entries.get((scope["root_path"], scope["raw_path"]))
        if entry is None or time.monotonic() - entry.checked >= REVALIDATE:
            return None
        wanted = _wanted(scope["headers"])
        variant = self._chosen(entry, wanted)
        if variant.body is None:
            return None
        return _from_memory(variant, variant.body, wanted, method == "GET")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        method = scope["method"]
        if method not in {"GET", "HEAD"}:
            await _send(send, _plain(405, [(b"allow", b"GET, HEAD")]))
            return
        key = (scope["root_path"], scope["raw_path"])
        entry = self.entries.get(key)
        now = time.monotonic()
        if entry is None or now - entry.checked >= REVALIDATE:
            found = self._find(scope, key, entry, now)
            if found.__class__ is not Entry:
                if found.__class__ is Redirect:
                    location = found.location
                    await _send(send, _plain(308, [(b"location", location)], b""))
                else:
                    await _send(send, _plain(found))  # type: ignore[arg-type]
                return
            entry = found
        wanted = _wanted(scope["headers"])
        variant = self._chosen(entry, wanted)
        if variant.body is None:
            await self._serve_opened(send, entry, variant, wanted, method == "GET")
            return
        await _send(send, _from_memory(variant, variant.body, wanted, method == "GET"))

    def _chosen(self, entry: Entry, wanted: list[bytes | None]) -> Variant:
        """The file itself, or the precompressed sibling the client prefers."""
        accept = wanted[ACCEPT_ENCODING]
        if entry.encoded and accept is not None:
            for coding in self._accepts(accept):
                chosen = entry.encoded.get(coding)
                if chosen is not None:
                    return chosen
        return entry.identity

    async def _serve_opened(
        self,
        send: Any,
        entry: Entry,
        variant: Variant,
        wanted: list[bytes | None],
        is_get: bool,
    ) -> None:
        """A file too large to keep in memory: sent from its cached descriptor, or, past
        MAX_OPEN_FILES, opened for this request and judged by its own fstat; never
        re-read by name."""
        kept = variant.opened
        if kept is not None:
            await _send_open_file(send, kept.fd, variant, wanted, is_get)
            return
        opened = self._open(variant.path)
        if opened is None:
            entry.checked = -REVALIDATE  # gone or swapped: the next request resolves again
            await _send(send, _plain(NOT_FOUND))
            return
        fd, status = opened
        try:
            if _key(status) != variant.key:  # changed since it was cached: serve what is open
                entry.checked = -REVALIDATE
                variant = self._reopened(variant.path, fd, status, entry, variant)
            await _send_open_file(send, fd, variant, wanted, is_get)
        finally:
            os.close(fd)

    def _accepts(self, value: bytes) -> tuple[bytes, ...]:
        known = self._accepted.get(value)
        if known is None:
            if len(self._accepted) >= _ACCEPT_CACHE_SIZE:
                self._accepted.clear()
            known = self._accepted[value] = accepted_encodings(value)
        return known

    # ---------------------------------------------------------------- resolving

    def _find(
        self, scope: Any, key: tuple[str, bytes], old: Entry | None, now: float
    ) -> Entry | Redirect | int:
        """Resolve a request path (again): an entry (cached), a redirect, or 400/404."""
        rest = static_paths.raw_rest(scope["raw_path"], scope["root_path"])
        if rest is None:
            return NOT_FOUND
        request = static_paths.parse_request_path(rest, dotfiles=self.dotfiles)
        if isinstance(request, int):
            return request
        found = self._resolve(request, scope["root_path"], scope["query_string"])
        if found.__class__ is not str:
            if old is not None:
                self._forget(key, old)
            if found == NOT_FOUND:
                return self._missing(request, now)
            return found  # type: ignore[return-value]
        real: str = found
        relative = request.relative
        if request.directory:  # _resolve found the folder's index file
            relative = f"{relative}/{self.index}" if relative else self.index
        entry = self._entry(real, relative, old, now)
        if entry is None:
            if old is not None:
                self._forget(key, old)
            return self._missing(request, now)
        if entry is not old:
            self._remember(key, entry, old)
        return entry

    def _resolve(self, request: RequestPath, root_path: str, query: bytes) -> str | Redirect | int:
        """The real path of a file for `request`; a Redirect for a folder named without its
        trailing slash; 404 otherwise."""
        segments = request.segments
        real = static_paths.resolve(
            self.root, segments, dotfiles=self.dotfiles, outside=self.outside
        )
        if real is None:
            return NOT_FOUND
        if static_paths.is_directory(real):
            if not self.index:
                return NOT_FOUND
            if not request.directory:
                return Redirect(static_paths.directory_location(root_path, request, query))
            real = static_paths.resolve(
                self.root, (*segments, self.index), dotfiles=self.dotfiles, outside=self.outside
            )
            if real is None:
                return NOT_FOUND
        elif request.directory and segments:
            return NOT_FOUND  # "/file.txt/": a file is not a folder
        return real

    def _missing(self, request: RequestPath, now: float) -> Entry | int:
        """No file for a well-formed path: the fallback, if any and the name allows, else 404."""
        if self.fallback is None or (request.has_extension() and not self.fallback_with_extension):
            return NOT_FOUND
        return self._fallback_entry(now) or NOT_FOUND

    def _fallback_entry(self, now: float) -> Entry | None:
        fallback = self.fallback
        if fallback is None:
            return None
        old = self._fallback
        if old is not None and now - old.checked < REVALIDATE:
            return old
        parts = tuple(part for part in fallback.replace("\\", "/").split("/") if part)
        real = static_paths.resolve(self.root, parts, dotfiles=True, outside=self.outside)
        entry = None if real is None else self._entry(real, "/".join(parts), old, now)
        self._fallback = entry
        return entry

    def _forget(self, key: tuple[str, bytes], old: Entry) -> None:
        if self.entries.pop(key, None) is old:
            self.cached_bytes -= old.cost

    def _remember(self, key: tuple[str, bytes], entry: Entry, old: Entry | None) -> None:
        if old is not None and self.entries.get(key) is old:
            self.cached_bytes -= old.cost
        if self.cached_bytes + entry.cost > CACHE_BYTES:
            self.entries.clear()
            self.cached_bytes = 0
        self.entries[key] = entry
        self.cached_bytes += entry.cost

    def _entry(self, real: str, relative: str, old: Entry | None, now: float) -> Entry | None:
        """The entry for a real file path: `old` again (re-checked now) if nothing changed
        on disk, else a new one read from freshly opened files; None: no regular file."""
        paths = [real, *(real + suffix for suffix in SUFFIXES.values())]
        fingerprint = tuple(_stat_key(path) for path in paths)
        if old is not None and old.fingerprint == fingerprint and old.identity.path == real:
            old.checked = now
            return old
        if fingerprint[0] is None:
            return None
        name = relative.rsplit("/", 1)[-1]
        context = _Context(
            media_type_of(name, self.types),
            IMMUTABLE if self.immutable and self.immutable.search(relative) else self.cache_control,
            vary=any(key is not None for key in fingerprint[1:]),
        )
        identity = self._load(real, context, None)
        if identity is None:
            return None
        encoded: dict[bytes, Variant] = {}
        for (coding, suffix), key in zip(SUFFIXES.items(), fingerprint[1:], strict=True):
            if key is None:
                continue
            sibling = static_paths.real_inside(
                self.root, real + suffix, dotfiles=self.dotfiles, outside=self.outside
            )
            variant = None if sibling is None else self._load(sibling, context, coding)
            if variant is not None:
                encoded[coding] = variant
        cost = sum(len(v.body or b"") for v in (identity, *encoded.values()))
        return Entry(identity, encoded, fingerprint, now, cost)

    def _load(self, path: str, context: _Context, coding: bytes | None) -> Variant | None:
        opened = self._open(path)
        if opened is None:
            return None
        fd, status = opened
        try:
            variant = _variant(path, fd, status, context, coding, self.extra)
        except BaseException:
            os.close(fd)
            raise
        if variant.body is None and self.open_files.count < MAX_OPEN_FILES:
            variant.opened = OpenFile(fd, self.open_files)  # it closes fd from now on
        else:
            os.close(fd)
        return variant

    def _reopened(
        self, path: str, fd: int, status: os.stat_result, entry: Entry, variant: Variant
    ) -> Variant:
        """A variant rebuilt from a descriptor opened for one request: the file changed
        since it was cached, and what is served is what is open."""
        coding = next((c for c, v in entry.encoded.items() if v is variant), None)
        context = _Context(
            _header(variant.common, b"content-type"),
            _header(variant.common, b"cache-control"),
            vary=bool(entry.encoded),
        )
        return _variant(path, fd, status, context, coding, self.extra, keep=False)

    def _open(self, path: str) -> tuple[int, os.stat_result] | None:
        """Open a resolved file; unless links may leave the folder, check on Linux that what
        was opened is still inside it (a folder on the way swapped for a symlink since)."""
        opened = static_paths.open_file(path)
        if opened is None or self.outside:
            return opened
        try:
            where = os.readlink(f"/proc/self/fd/{opened[0]}")  # noqa: PTH115
        except OSError:
            return opened  # no /proc: realpath and O_NOFOLLOW stand alone
        if not static_paths.inside(self.root, where):
            os.close(opened[0])
            return None
        return opened


@dataclass(frozen=True, slots=True)
class _Context:
    """What a file's variants share: its type, its caching, whether it has siblings."""

    media_type: bytes
    cache_control: bytes
    vary: bool


def _header(headers: Headers, name: bytes) -> bytes:
    return next((value for key, value in headers if key == name), b"")


def _key(status: os.stat_result) -> tuple[int, int, int, int]:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        return _key(os.stat(path))  # noqa: PTH116  (str paths throughout: no Path objects per request)
    except (OSError, ValueError):
        return None


def _variant(  # noqa: PLR0917
    path: str,
    fd: int,
    status: os.stat_result,
    context: _Context,
    coding: bytes | None,
    extra: Headers,
    *,
    keep: bool = True,
) -> Variant:
    """A variant from an open descriptor and its fstat. Small files are read whole (`keep`);
    a read that does not give exactly the size fstat said (the file is being written in
    place) is not kept, so the request that follows opens the file itself."""
    size = status.st_size
    body: bytes | None = None
    if keep and size <= SMALL_FILE:
        data = os.pread(fd, size + 1, 0)
        if len(data) == size and _key(os.fstat(fd)) == _key(status):
            body = data
    modified = status.st_mtime_ns // 1_000_000_000
    etag = b'"%x-%x-%x"' % (status.st_ino, size, status.st_mtime_ns)
    last_modified = http_date(modified)
    common: Headers = [(b"content-type", context.media_type)]
    if coding is not None:
        common.append((b"content-encoding", coding))
    validators: Headers = [(b"etag", etag)]
    if context.cache_control:
        validators.append((b"cache-control", context.cache_control))
    if context.vary:
        validators.append((b"vary", b"Accept-Encoding"))
    validators += extra
    common += validators
    common += [(b"last-modified", last_modified), (b"accept-ranges", b"bytes"), _NOSNIFF]
    headers = [*common, (b"content-length", b"%d" % size)]
    return Variant(
        path, _key(status), size, modified, etag, last_modified, body, headers, validators, common
    )


def _verdict(variant: Variant, wanted: list[bytes | None]) -> int:
    return preconditions(
        variant.etag,
        variant.modified,
        if_match=wanted[IF_MATCH],
        if_unmodified_since=wanted[IF_UNMODIFIED],
        if_none_match=wanted[IF_NONE_MATCH],
        if_modified_since=wanted[IF_MODIFIED],
        safe=True,  # only GET and HEAD get this far
    )


def _range(variant: Variant, span: bytes, if_range: bytes | None) -> Any:
    if if_range is not None and not if_range_holds(if_range, variant.etag, variant.last_modified):
        return None  # the file changed since the client's part: the whole of it
    return parse_range(span, variant.size)


async def _send_open_file(
    send: Any, fd: int, variant: Variant, wanted: list[bytes | None], is_get: bool
) -> None:
    """The response for an open large file whose head `variant` describes."""
    if any(wanted[slot] for slot in (IF_MATCH, IF_UNMODIFIED, IF_NONE_MATCH, IF_MODIFIED)):
        verdict = _verdict(variant, wanted)
        if verdict != PROCEED:
            await _send(send, _refusal(verdict, variant))
            return
    offset, count, status_code, headers = 0, variant.size, 200, variant.headers
    span = wanted[RANGE]
    if span is not None and is_get:
        part = _range(variant, span, wanted[IF_RANGE])
        if part is UNSATISFIABLE:
            await _send(send, _unsatisfiable(variant.size))
            return
        if part is not None:
            offset, count, status_code = part.start, part.length, 206
            headers = [
                *variant.common,
                (b"content-range", part.content_range(variant.size)),
                (b"content-length", b"%d" % part.length),
            ]
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    if not is_get:
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.zerocopysend",
            "file": fd,
            "offset": offset,
            "count": count,
            "more_body": False,
        }
    )


def _refusal(verdict: int, variant: Variant) -> Answer:
    if verdict == NOT_MODIFIED:
        return 304, variant.not_modified, b""
    return _plain(PRECONDITION_FAILED, [(b"etag", variant.etag)])


def _unsatisfiable(size: int) -> Answer:
    return _plain(416, [(b"content-range", b"bytes */%d" % size)])


def _plain(status: int, headers: Headers | None = None, body: bytes | None = None) -> Answer:
    """A short text answer that names no path: 400, 404, 405, 412, 416, or a redirect."""
    if body is None:
        body = _REASONS.get(status, b"")
    head = [
        (b"content-type", _PLAIN),
        (b"content-length", b"%d" % len(body)),
        _NOSNIFF,
        *(headers or ()),
    ]
    return status, head, body


async def _send(send: Any, answer: Answer) -> None:
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _wanted(headers: Headers) -> list[bytes | None]:
    """The request headers this module reads, by slot (repeats joined with ", ")."""
    wanted: list[bytes | None] = [None] * 7
    for name, value in headers:
        slot = _SLOT(name)
        if slot is not None:
            before = wanted[slot]
            wanted[slot] = value if before is None else before + b", " + value
    return wanted


def _from_memory(variant: Variant, body: bytes, wanted: list[bytes | None], is_get: bool) -> Answer:
    """The answer about a file held in memory: 304 or 412 (RFC 9110 13.2.2's order),
    206 or 416 for one range of a GET, else the whole file."""
    if wanted[IF_MATCH] or wanted[IF_UNMODIFIED] or wanted[IF_NONE_MATCH] or wanted[IF_MODIFIED]:
        verdict = _verdict(variant, wanted)
        if verdict != PROCEED:
            return _refusal(verdict, variant)
    span = wanted[RANGE]
    if span is not None and is_get:
        part = _range(variant, span, wanted[IF_RANGE])
        if part is UNSATISFIABLE:
            return _unsatisfiable(variant.size)
        if part is not None:
            headers = [
                *variant.common,
                (b"content-range", part.content_range(variant.size)),
                (b"content-length", b"%d" % part.length),
            ]
            return 206, headers, body[part.start : part.end + 1]
    return 200, variant.headers, body


__all__ = ["BAD_REQUEST", "ENCODINGS", "StaticFiles"]

"""HTTP/1.1 bytes with no I/O: status lines, response heads, chunk framing, canned errors.

Invariants:
- Pure functions and precomputed tables; nothing here touches a transport,
  a timer or the event loop, so every rule is testable on bytes alone.
- A response head leaves here only after its header names were checked to
  be tokens and its values to hold no control character but HTAB (RFC 9110
  5.5): an app cannot split a response or inject headers, whatever it sends.
- A head never reads two ways (RFC 9110 8.6, RFC 9112 6): one
  content-length at most, never beside a transfer-encoding, none on a 1xx
  or 204, and no 1xx as a final response. What the app sends that would
  break this is its fault (500); Server and Date appear once, the app's if
  it set them.
- Framing headers (content-length, transfer-encoding, connection) are
  decided here from what the app sent and what the request allows; the
  protocol only says whether it wants keep-alive.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

SERVER_NAME = b"uvhost"

STATUS_LINES: dict[int, bytes] = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in HTTPStatus
}

_TOKEN_INVALID = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_VALUE_INVALID = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs but HTAB (RFC 9110 5.5)

Headers = Iterable[tuple[bytes, bytes]]


def response_status(value: Any) -> int:
    """The app's status as an int in 200-599; anything else is the app's fault (500).

    A 1xx is interim (RFC 9110 15.2): a client reads it, then waits for the
    real answer, and would take the next request's response for this one's.
    """
    if isinstance(value, float):
        raise BadResponseHeaderError(f"status {value!r} is not an int")
    status = int(value)  # ASGI says int; a str of digits passes, as it did before
    if not 200 <= status <= 599:
        raise BadResponseHeaderError(
            f"status {status} is not a final HTTP status (200-599)"
            if 100 <= status <= 199
            else f"status {status} is not an HTTP status (200-599)"
        )
    return status


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d \r\n" % status
    return line


_HOST = re.compile(
    rb"(?:\[(?P<literal>[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+)\]"
    rb"|(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?"
)
VALID_HOSTS: set[bytes] = set()
"""Host values already found valid: a request pays one set lookup for its Host."""
_VALID_HOSTS_LIMIT = 1024


def valid_host(value: bytes) -> bool:
    """Whether a Host value is `uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2).

    No spaces, no userinfo, no path: a value an app would split, log or route
    on differently from the server. Valid values are remembered (a host sees
    few names); invalid ones never are, so garbage cannot fill the set.
    """
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    literal = match["literal"]
    if literal is not None and not literal.startswith(b"v"):
        try:
            ipaddress.IPv6Address(literal.decode("ascii"))
        except ValueError:
            return False
    if len(VALID_HOSTS) >= _VALID_HOSTS_LIMIT:
        VALID_HOSTS.clear()
    VALID_HOSTS.add(value)
    return True


_ABSOLUTE_FORM = re.compile(rb"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?")


def split_absolute_form(target: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(scheme lower-cased, authority, path, query) of an absolute-form request target
    (RFC 9112 3.2.2); the path is "/" when the URI has none. ValueError (400) when the
    target is no `scheme://authority...` URI or carries a fragment."""
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        raise ValueError("not an absolute-form request target")
    scheme, authority, path, query = match.groups()
    return scheme.lower(), authority, path or b"/", query or b""


class BadResponseHeaderError(ValueError):
    """The app sent a header that cannot be written safely; it is the app's fault (500)."""


@dataclass(slots=True)
class Framing:
    """What the head says about the body, decided once per response."""

    head: bytes
    chunked: bool
    content_length: int | None  # declared by the app, None when we frame it
    keep_alive: bool
    allows_body: bool  # False for HEAD, 1xx, 204, 205, 304: what the app sends is dropped


NO_CONTENT_STATUSES = frozenset((*range(100, 200), 204, 205, 304))
"""RFC 9110 15.3.5, 15.3.6, 15.4.5: responses that carry no content (1xx are never final)."""
_LENGTHLESS_STATUSES = frozenset((*range(100, 200), 204, 205))
"""Statuses whose content-length the app does not get to set (RFC 9110 8.6; a 205 says 0)."""


def build_head(
    status: int,
    headers: Headers,
    *,
    preamble: bytes,
    defaults: dict[bytes, bytes],
    keep_alive: bool,
    http11: bool,
    first_body: bytes | None,
    more_body: bool,
    method_is_head: bool,
) -> Framing:
    """The response head and its framing.

    `first_body`/`more_body` describe the first body message when it is
    already known (the common case: headers and a complete body written at
    once), so a content-length can be set instead of chunked framing.
    `preamble` holds the shared Server/Date lines, left out where the app
    set its own; `defaults` are the listener's extra headers, added unless
    the app set a header of that name.
    """
    if not 100 <= status <= 999:
        raise BadResponseHeaderError(f"status {status!r} is not a three-digit HTTP status")
    lines = [status_line(status), preamble]
    content_length, close, seen = _copy_headers(headers, lines, defaults)
    if seen or status in _LENGTHLESS_STATUSES:  # a rare head: one test on the usual path
        content_length = _unusual_head(status, lines, content_length, seen)
    keep_alive = keep_alive and not close

    chunked = False
    # RFC 9110 9.3.2, 15.3.5, 15.3.6, 15.4.5: never to HEAD, nor for 1xx, 204, 205, 304
    allows_body = not (method_is_head or status in NO_CONTENT_STATUSES)
    if content_length is None and allows_body:
        if first_body is not None and not more_body:
            lines.append(b"content-length: %d\r\n" % len(first_body))
        elif http11:
            chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            keep_alive = False  # HTTP/1.0 without a length: the close ends the body
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    elif not http11:
        lines.append(b"connection: keep-alive\r\n")
    lines.append(b"\r\n")
    return Framing(b"".join(lines), chunked, content_length, keep_alive, allows_body)


def _unusual_head(
    status: int, lines: list[bytes], content_length: int | None, seen: int
) -> int | None:
    """What a head with a transfer-encoding, Server or Date from the app, or a status that
    takes no content-length needs; returns the content-length the framing goes by."""
    if seen & TRANSFER_ENCODING and content_length is not None:
        raise BadResponseHeaderError("content-length together with transfer-encoding")
    if seen & PREAMBLE_KINDS and lines[1]:
        lines[1] = preamble_without(lines[1], seen)
    if status in _LENGTHLESS_STATUSES:
        # RFC 9110 8.6: never a content-length on 1xx and 204, whatever the app says; a 205
        # has no content and says so (RFC 9112 6.3 gives it no implied length, so a client
        # would read to the close)
        if content_length is not None:
            lines[2:] = [line for line in lines[2:] if line[:15].lower() != b"content-length:"]
        if status == 205:
            lines.append(b"content-length: 0\r\n")
        return None
    return content_length


# What a response header name means to the framing, as bits: 0 for nearly every header.
CONTENT_LENGTH, CONNECTION, TRANSFER_ENCODING, SERVER, DATE = 1, 2, 4, 8, 16
PREAMBLE_KINDS = SERVER | DATE
_KINDS = {
    b"content-length": CONTENT_LENGTH,
    b"connection": CONNECTION,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"server": SERVER,
    b"date": DATE,
}

_LINE_CACHE: dict[tuple[bytes, bytes], tuple[bytes, bytes, int, int | None]] = {}
_LINE_CACHE_LIMIT = 1024


def header_line(name: bytes, value: bytes) -> tuple[bytes, bytes, int, int | None]:
    """`name: value` as a checked wire line, its lower-cased name, its kind and any
    content-length.

    Apps send the same few headers over and over, so checked lines are
    cached by their exact (name, value): a repeat costs one dict lookup,
    and only a pair that passed the checks is ever cached.
    """
    key = (name, value)
    known = _LINE_CACHE.get(key)
    if known is not None:
        return known
    if not name or _TOKEN_INVALID.search(name) or _VALUE_INVALID.search(value):
        raise BadResponseHeaderError(
            "a header name is empty or not a token, or a value holds a control character"
            " (CR, LF, NUL and the like)"
        )
    lowered = name.lower()
    kind = _KINDS.get(lowered, 0)
    length = _parse_length(value) if kind == CONTENT_LENGTH else None
    entry = (b"%s: %s\r\n" % (name, value), lowered, kind, length)
    if len(_LINE_CACHE) >= _LINE_CACHE_LIMIT:
        _LINE_CACHE.clear()
    _LINE_CACHE[key] = entry
    return entry


def _copy_headers(
    headers: Headers, lines: list[bytes], defaults: dict[bytes, bytes]
) -> tuple[int | None, bool, int]:
    """Append the app's headers (checked) and the listener defaults it did not override.

    Returns the app's content-length (None if it set none), whether it asked
    to close the connection, and the unusual kinds of header it set (bits:
    transfer-encoding, server, date). An ordinary header costs one cached
    lookup and one test of its kind.
    """
    content_length: int | None = None
    close = False
    seen = 0
    overridden: set[bytes] | None = set() if defaults else None
    for name, value in headers:
        line, lowered, kind, length = header_line(name, value)
        if kind:
            if length is not None:
                if content_length is not None:
                    if length != content_length:
                        raise BadResponseHeaderError(
                            f"two different content-length values ({content_length}, {length})"
                        )
                    continue  # the same length twice is written once
                content_length = length
            elif kind == CONNECTION:
                close = close or b"close" in value.lower()
                continue  # the connection header is ours to write
            elif kind == TRANSFER_ENCODING:
                seen |= kind
                continue  # framing is ours to decide
            elif seen & kind:  # a second Server or Date (RFC 9110 6.6: one of each)
                if _repeats_line(lines, lowered, line):
                    continue  # the same value again is written once
                raise BadResponseHeaderError(f"two different {lowered.decode()} values")
            else:
                seen |= kind
        if overridden is not None and lowered in defaults:
            overridden.add(lowered)
        lines.append(line)
    if overridden is not None:
        lines.extend(default_lines(defaults, overridden))
    return content_length, close, seen


def _repeats_line(lines: list[bytes], lowered: bytes, line: bytes) -> bool:
    """Whether `line` says what an earlier header line of the same name said."""
    value = line.partition(b":")[2].strip()
    return any(
        earlier.partition(b":")[0].lower() == lowered
        and earlier.partition(b":")[2].strip() == value
        for earlier in lines[2:]
    )


def preamble_without(preamble: bytes, seen: int) -> bytes:
    """The shared Server/Date lines less those the app set itself (RFC 9110 6.6: one of
    each). Only responses that set them pay for this."""
    drop = tuple(prefix for kind, prefix in ((SERVER, b"server:"), (DATE, b"date:")) if seen & kind)
    return b"".join(
        line for line in preamble.splitlines(keepends=True) if not line.startswith(drop)
    )


def default_lines(defaults: Mapping[bytes, bytes], skip: Container[bytes]) -> Iterator[bytes]:
    """The listener's default header lines, but those named in `skip` (set otherwise)."""
    return (b"%s: %s\r\n" % (name, value) for name, value in defaults.items() if name not in skip)


def _parse_length(value: bytes) -> int:
    if not value.strip().isdigit():
        raise BadResponseHeaderError(f"content-length {value!r} is not a number")
    return int(value)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(now: float | None = None) -> bytes:
    """An IMF-fixdate (RFC 9110), spelt in English whatever the process locale."""
    t = time.gmtime(time.time() if now is None else now)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday].encode(),
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode(),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def preamble(*, server_header: bool, date_header: bool, now: float | None = None) -> bytes:
    """The Server and Date lines shared by every response of a listener for one second."""
    parts = []
    if server_header:
        parts.append(b"server: %s\r\n" % SERVER_NAME)
    if date_header:
        parts.append(b"date: %s\r\n" % http_date(now))
    return b"".join(parts)


CANNED_OWN = frozenset((b"content-type", b"content-length", b"connection"))


def canned(
    status: int,
    message: str | None = None,
    *,
    close: bool = True,
    preamble: bytes = b"server: %s\r\n" % SERVER_NAME,
    defaults: Mapping[bytes, bytes] | None = None,
) -> bytes:
    """A complete plain-text response uvhost writes itself (400, 408, 413, 431, 500, 503...).

    With the listener's `preamble` (Server, Date) and its default headers, as
    any app response gets them: a security header set for the listener must
    not vanish from the host's own answers.
    """
    phrase = HTTPStatus(status).phrase if status in STATUS_LINES else "Error"
    body = (message or phrase).encode("utf-8") + b"\n"
    head = [
        status_line(status),
        preamble,
        *default_lines(defaults or {}, CANNED_OWN),
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body),
    ]
    if close:
        head.append(b"connection: close\r\n")
    return b"".join(head) + b"\r\n" + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

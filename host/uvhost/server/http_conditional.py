"""Validators, preconditions, ranges and content negotiation for files, from RFC 9110.

Pure functions over header bytes: nothing here touches a file or a socket,
so each rule is testable alone. `static_files.py` calls them in the order
RFC 9110 13.2.2 gives:

1. If-Match (strong comparison) false → 412; else, without If-Match,
   If-Unmodified-Since false → 412.
2. If-None-Match (weak comparison) true for the file → 304 to GET/HEAD,
   412 to anything else; else, without If-None-Match, If-Modified-Since
   (GET/HEAD only) not modified → 304.
3. Range (GET only): honoured when If-Range is absent or true.

An unparsable date is ignored, as the RFC says (13.1.3, 13.1.4); an
unparsable Range is ignored too (the whole file, 200: 14.2 lets a server
ignore Range).
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

PROCEED, NOT_MODIFIED, PRECONDITION_FAILED = 200, 304, 412

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_IMF = re.compile(rb"[A-Za-z]{3}, (\d\d) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT")
_RFC850 = re.compile(rb"[A-Za-z]+, (\d\d)-([A-Za-z]{3})-(\d\d) (\d\d):(\d\d):(\d\d) GMT")
_ASCTIME = re.compile(rb"[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})")
_TAG = re.compile(rb'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def http_date(seconds: int) -> bytes:
    """IMF-fixdate (RFC 9110 5.6.7), the only form a sender may generate."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(seconds)).encode("ascii")


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch of an IMF-fixdate, RFC 850 or asctime date (a recipient
    must accept all three, RFC 9110 5.6.7), or None when it is none of them."""
    value = value.strip()
    if match := _IMF.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
    elif match := _RFC850.fullmatch(value):
        day, month, short, hour, minute, second = match.groups()
        year = b"%d" % ((2000 if int(short) < 70 else 1900) + int(short))
    elif match := _ASCTIME.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
    else:
        return None
    number = _MONTHS.get(month.decode("ascii").lower())
    if number is None:
        return None
    try:
        moment = (int(year), number, int(day), int(hour), int(minute), int(second))
        if not (1 <= moment[2] <= 31 and moment[3] < 24 and moment[4] < 60 and moment[5] < 61):
            return None
        return calendar.timegm((*moment, 0, 0, 0))
    except (ValueError, OverflowError):
        return None


def entity_tags(value: bytes) -> list[tuple[bool, bytes]] | None:
    """(weak, opaque-tag with its quotes) of each entity-tag in a list (RFC 9110 8.8.3), or
    None when the value is not such a list (then the header is treated as false)."""
    tags: list[tuple[bool, bytes]] = []
    position, end = 0, len(value)
    while position < end:
        match = _TAG.match(value, position)
        if match is None:
            if not value[position:].strip(b" \t,"):
                break
            return None
        tags.append((match[1] is not None, match[2]))
        position = match.end()
    return tags


def _any_match(value: bytes, etag: bytes, *, strong: bool) -> bool:
    if value.strip() == b"*":
        return True
    tags = entity_tags(value)
    return tags is not None and any(tag == etag and not (strong and weak) for weak, tag in tags)


def preconditions(
    etag: bytes,
    modified: int,
    *,
    if_match: bytes | None,
    if_unmodified_since: bytes | None,
    if_none_match: bytes | None,
    if_modified_since: bytes | None,
    safe: bool,
) -> int:
    """PROCEED, NOT_MODIFIED or PRECONDITION_FAILED for a file with strong `etag` and
    last modification `modified` (whole seconds), by RFC 9110 13.2.2. `safe`: GET or HEAD."""
    if if_match is not None:
        if not _any_match(if_match, etag, strong=True):
            return PRECONDITION_FAILED
    elif if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and modified > since:
            return PRECONDITION_FAILED
    if if_none_match is not None:
        if _any_match(if_none_match, etag, strong=False):
            return NOT_MODIFIED if safe else PRECONDITION_FAILED
    elif if_modified_since is not None and safe:
        since = parse_http_date(if_modified_since)
        if since is not None and modified <= since:
            return NOT_MODIFIED
    return PROCEED


def if_range_holds(value: bytes, etag: bytes, last_modified: bytes) -> bool:
    """If-Range (RFC 9110 13.1.5): a strong entity-tag equal to ours, or a date exactly
    our Last-Modified. A weak tag never holds."""
    value = value.strip()
    if value.startswith(b'"'):
        return value == etag
    if value.startswith(b"W/"):
        return False
    return value == last_modified


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> bytes:
        return b"bytes %d-%d/%d" % (self.start, self.end, size)


UNSATISFIABLE = ByteRange(-1, -2)
"""The 416 answer: a Range of valid syntax that selects no byte of the file."""


def parse_range(value: bytes, size: int) -> ByteRange | None:  # noqa: PLR0911
    """The one byte range a Range header asks of a file of `size` bytes, UNSATISFIABLE, or
    None to serve the whole file (200).

    None for anything but a single range of valid syntax in bytes: an
    unknown unit or bad syntax is ignored (RFC 9110 14.2), and so are
    several ranges. Answering several ranges with the whole file is the
    simplest correct choice 14.2 allows ("a server MAY ignore the Range
    header field"): it costs the client at most the bytes it did not ask
    for, never a wrong byte, and spares a multipart/byteranges encoder
    that browsers do not need (they ask for one range at a time). An empty
    file has no byte to select: its Range is ignored too.
    """
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec or size == 0:
        return None
    first, dash, last = spec.strip().partition(b"-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored (RFC 9110 14.1.1)
    if start >= size:
        return UNSATISFIABLE
    end = int(last) if last else size - 1
    return ByteRange(start, min(end, size - 1))


ENCODINGS = (b"br", b"zstd", b"gzip")
"""Precompressed siblings, in the server's order of preference for equal q-values."""
_CODING = re.compile(rb"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:;\s*q\s*=\s*([0-9.]+)\s*)?")


def accepted_encodings(value: bytes) -> tuple[bytes, ...]:
    """The codings of ENCODINGS an Accept-Encoding value allows, best first by q-value
    then by our preference (RFC 9110 12.5.3). `*` stands for codings not named; q=0
    refuses; an element that does not parse is skipped."""
    weights: dict[bytes, float] = {}
    star: float | None = None
    for element in value.split(b","):
        match = _CODING.fullmatch(element)
        if match is None:
            continue
        coding = match[1].lower()
        try:
            q = float(match[2]) if match[2] is not None else 1.0
        except ValueError:
            continue
        if not 0.0 <= q <= 1.0:
            continue
        if coding == b"x-gzip":
            coding = b"gzip"
        if coding == b"*":
            star = q
        else:
            weights[coding] = q
    ranked = []
    for preference, coding in enumerate(ENCODINGS):
        q = weights.get(coding, star if star is not None else 0.0)
        if q > 0:
            ranked.append((-q, preference, coding))
    return tuple(coding for _, _, coding in sorted(ranked))

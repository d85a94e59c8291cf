"""Fuzzing the request path: raw bytes through a real `HttpProtocol` on a real socket.

Byte streams come from a grammar of near-valid requests (methods, targets,
versions, Host, Content-Length, Transfer-Encoding and chunked bodies,
pipelining) plus mutations (byte flips; CR, LF, SP, HTAB, NUL insertions;
duplicated lines; huge values), sent in pieces split at random points, each
piece a read of its own. One host serves every example; each example is a
new connection. Per example:

- no error is logged by the server (the recording app never faults, so any
  error is ours) and the server goes quiet within a bound;
- what the server wrote parses with h11 as a client, as responses and
  nothing else: one Content-Length at most, never beside Transfer-Encoding;
- app responses come in request order, one per request the app completed;
- the server's own answer (a 4xx/5xx) is the last thing written, says
  `connection: close`, and the connection is closed;
- differential: the same bytes through h11 as a server. Where h11 accepts a
  request, the app got the same method, target, version, headers and body;
  where h11 rejects it, the app never got it. Where uvhost is deliberately
  stricter than h11, `STRICTER` names the class and says why.

A finding no `STRICTER` entry covers fails the test: fix the server, never add a
filter. The long, coverage-guided run is `benchmarks/fuzz_http.py`.
"""

from __future__ import annotations

import ipaddress
import re
import resource
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # removed again below
try:
    import fuzzkit
finally:
    sys.path.pop(0)

from fuzzkit import Draw, Outcome, Reference, Verdict, chance, pick

MAX_HEADER_BYTES = 8192
MAX_BODY_BYTES = 16384

APPS = r'''
calls = {}  # client port -> [call, ...] in the order the app was called


async def record(scope, receive, send):
    """Reads the whole body, keeps what it saw, answers with its call number."""
    log = calls.setdefault(scope["client"][1], [])
    call = {
        "index": len(log),
        "method": scope["method"].encode("ascii"),
        "raw_path": scope["raw_path"],
        "query_string": scope["query_string"],
        "http_version": scope["http_version"].encode("ascii"),
        "headers": list(scope["headers"]),
        "body": b"",
        "complete": False,
        "disconnected": False,
        "state": "run",
    }
    log.append(call)
    call["conn"] = id(scope["client"])  # one tuple per connection: tells connections apart
    chunks = []
    while True:
        call["state"] = "receive"
        message = await receive()
        call["state"] = "run"
        if message["type"] == "http.disconnect":
            call["disconnected"] = True
            call["state"] = "done"
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    call["body"] = b"".join(chunks)
    call["complete"] = True
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"x-call", b"%d" % call["index"]), (b"x-method", call["method"])],
    })
    await send({"type": "http.response.body", "body": b"%d" % call["index"]})
    call["state"] = "done"
'''

CONFIG = f"""
[listeners.main]
bind = "127.0.0.1:0"
app = "record"
max_header_bytes = {MAX_HEADER_BYTES}

[apps.record]
target = "apps:record"
lifespan = "off"
max_body_bytes = {MAX_BODY_BYTES}
"""

# --------------------------------------------------------------- the grammar

METHODS = [b"GET"] * 4 + [b"POST"] * 3 + [
    b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"get", b"FOO", b"M-SEARCH",
    b"PROPFIND", b"CONNECT", b"TRACE", b"G\xc3\x89T", b"",
]  # fmt: skip
TARGETS = [
    b"/", b"/a/b?x=1&y=2", b"/%41%2F%zz", b"*", b"http://example.com/p?q=1",
    b"http://example.com", b"//double//slash", b"/a#frag", b"/?", b"/caf\xc3\xa9",
    b"example.com:443", b"/a b", b"/\x7f", b"/a?b?c", b"/..%2f..", b"",
]  # fmt: skip
VERSIONS = [b"HTTP/1.1"] * 6 + [b"HTTP/1.0"] * 2 + [
    b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2", b"http/1.1", b"HTTP/1.10", b"HTTP/1", b"",
]  # fmt: skip
HOSTS = [
    b"example.com", b"a:80", b"[::1]:8000", b"", b"bad host", b"a/b", b"127.0.0.1", b"x:y:z",
]  # fmt: skip
LENGTHS = [b"0", b"05", b"+5", b"-1", b"5,5", b" 5 ", b"99999999999999999999", b"0x5", b""]
ENCODINGS = [
    b"chunked", b"Chunked", b"gzip, chunked", b"chunked, gzip", b"identity", b" chunked",
    b"chunked ", b"chunked,", b"\tchunked",
]  # fmt: skip
NAMES = [
    b"X-Fuzz", b"Accept", b"Cookie", b"Connection", b"Expect", b"Upgrade", b"X-Forwarded-For",
    b"X Space", b"X-Tab\t", b"", b"X:Colon", b"Content-Type", b"\xff", b"Trailer", b"TE",
]  # fmt: skip
VALUES = [
    b"1", b"keep-alive", b"close", b"100-continue", b"websocket", b"a, b", b"", b" lead",
    b"trail ", b"trail\t", b"mid  dle", b"\xc3\xa9t\xc3\xa9", b"\x01ctl", b"a\x7fb",
    b"tab\tin", b"\x00nul", b'"quoted, string"',
]  # fmt: skip
INSERTS = [b"\r", b"\n", b" ", b"\t", b"\x00", b":", b"\r\n", b"\x7f", b"\xff", b"0", b";"]


def header_value(draw: Draw, pool: list[bytes]) -> bytes:
    if chance(draw, 10):
        return b"A" * draw.integer(100, 3 * MAX_HEADER_BYTES)  # a huge value
    if chance(draw, 10):
        return draw.raw(12)
    return pick(draw, pool)


def one_request(draw: Draw) -> bytes:
    """One request, near-valid by construction; its body matches its framing mostly."""
    method = pick(draw, METHODS)
    target = pick(draw, TARGETS)
    if chance(draw, 15):
        target += b"/" + b"x" * draw.integer(1, 2 * MAX_HEADER_BYTES)
    version = pick(draw, VERSIONS)
    line_end = b"\r\n" if not chance(draw, 5) else pick(draw, [b"\n", b"\r", b"\n\r"])
    parts = [method, b" ", target]
    if version:
        parts += [b" ", version]
    lines = [b"".join(parts)]
    hosts = draw.integer(0, 2) if chance(draw, 25) else 1
    lines += [b"Host: " + header_value(draw, HOSTS) for _ in range(hosts)]
    framing = pick(draw, ["none", "none", "length", "length", "chunked", "chunked", "both"])
    body_size = draw.integer(0, 64) if not chance(draw, 10) else draw.integer(0, 2 * MAX_BODY_BYTES)
    body = bytes(draw.integer(97, 122) for _ in range(min(body_size, 8))) * (
        max(body_size, 1) // 8 + 1
    )
    body = body[:body_size]
    if framing in ("length", "both"):
        length = b"%d" % len(body)
        if chance(draw, 15):
            length = pick(draw, LENGTHS)
        elif chance(draw, 10):
            length = b"%d" % (len(body) + draw.integer(-3, 3))
        lines += [b"Content-Length: " + length] * (2 if chance(draw, 10) else 1)
    if framing in ("chunked", "both"):
        encoding = b"chunked" if not chance(draw, 25) else pick(draw, ENCODINGS)
        lines += [b"Transfer-Encoding: " + encoding] * (2 if chance(draw, 5) else 1)
    for _ in range(draw.integer(0, 4)):
        name = pick(draw, NAMES)
        lines += [name + b": " + header_value(draw, VALUES)] * (2 if chance(draw, 10) else 1)
    if chance(draw, 5):  # obs-fold: a line that continues the one before
        lines.append(b" folded")
    if chance(draw, 5):  # a line that is no header at all
        lines.append(pick(draw, [b"NoColon", b": no name", b"X-A : space before colon"]))
    head = line_end.join(lines) + line_end + line_end
    if framing in ("chunked", "both"):
        return head + chunked_body(draw, body)
    return head + (body if framing != "none" or chance(draw, 5) else b"")


def chunked_body(draw: Draw, body: bytes) -> bytes:
    """The body in chunks, with extensions, trailers and broken sizes now and then."""
    out = []
    rest = body
    while rest:
        size = draw.integer(1, max(1, len(rest)))
        piece, rest = rest[:size], rest[size:]
        size_text = b"%x" % len(piece)
        if chance(draw, 5):
            size_text = pick(draw, [b"-1", b"0x1", b"g", b"", b" 1", b"1 ", b"FFFFFFFFFFFFFFFFF"])
        if chance(draw, 10):
            size_text += pick(draw, [b";ext", b";a=b", b';a="q"', b"; a", b";" + b"e" * 9000])
        out.append(size_text + b"\r\n" + piece + pick(draw, [b"\r\n"] * 9 + [b"\n", b"XX"]))
    out.append(b"0\r\n")
    if chance(draw, 15):
        out.append(pick(draw, [b"Trailer-A: 1\r\n", b"Host: evil\r\n", b"Bad Trailer\r\n"]))
    out.append(b"\r\n" if not chance(draw, 5) else b"")
    return b"".join(out)


def mutate(draw: Draw, stream: bytes) -> bytes:
    """Byte-level damage at random points: flips, insertions, deletions, repeats."""
    data = bytearray(stream)
    for _ in range(draw.integer(0, 3) if chance(draw, 40) else 0):
        at = draw.integer(0, len(data))
        operation = draw.integer(0, 4)
        if operation == 0 and at < len(data):
            data[at] ^= 1 << draw.integer(0, 7)
        elif operation == 1:
            data[at:at] = pick(draw, INSERTS)
        elif operation == 2:
            del data[at : at + draw.integer(1, 4)]
        elif operation == 3:  # repeat the line around `at` (a duplicated header)
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            if end >= 0:
                data[start:start] = data[start : end + 1]
        else:
            data[at:at] = draw.raw(8)
    return bytes(data)


def request_stream(draw: Draw) -> list[bytes]:
    """Pipelined requests, mutated, cut into the pieces the server will read one by one."""
    requests = [one_request(draw) for _ in range(draw.integer(1, 4))]
    if chance(draw, 5):
        requests.insert(0, b"\r\n")  # an empty line before a request (RFC 9112 2.2)
    stream = mutate(draw, b"".join(requests))
    cuts = sorted({draw.integer(1, max(1, len(stream) - 1)) for _ in range(draw.integer(0, 4))})
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(stream[last:cut])
        last = cut
    pieces.append(stream[last:])
    return [piece for piece in pieces if piece]


# ---------------------------------------------------------------- the checks


@dataclass
class Finding:
    invariant: str
    detail: str
    covered_by: str = ""  # the STRICTER entry that covers it, if any


@dataclass
class Discrepancy:
    """Where uvhost and h11 part ways, for the allow-lists to judge."""

    kind: str  # "rejects" (uvhost refused what h11 accepts), "serves", "differs"
    stream: bytes
    verdict: Verdict
    ref: Reference | None
    call: dict[str, Any] | None
    status: int  # uvhost's own answer on this connection (0: none)
    field: str = ""

    @property
    def head(self) -> bytes:
        """The raw bytes of the request at issue (h11's view of where it begins)."""
        start = self.ref.start if self.ref is not None else self.verdict.at
        end = self.stream.find(b"\r\n\r\n", start)
        return self.stream[start : end + 4 if end >= 0 else len(self.stream)]

    @property
    def body(self) -> bytes:
        """The bytes after that head, up to where h11 saw the request end (or the stream's)."""
        start = self.ref.start if self.ref is not None else self.verdict.at
        end = self.stream.find(b"\r\n\r\n", start)
        if end < 0:
            return b""
        stop = self.ref.end if self.ref is not None and self.ref.end >= 0 else len(self.stream)
        return self.stream[end + 2 : stop]


LLHTTP_METHODS = set(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH"
    b" SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY"
    b" SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
HOST_SHAPE = re.compile(
    rb"(\[(?P<ip>[^\]]*)\]|(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(:[0-9]*)?"
)


def is_host_value(value: bytes) -> bool:
    """RFC 3986 3.2.2 `host [":" port]`, written apart from wire.valid_host so the
    test's idea of a valid Host is not the server's own (an IPv6 literal is asked
    of `ipaddress`, an IPvFuture is taken on its shape)."""
    match = HOST_SHAPE.fullmatch(value)
    if match is None:
        return False
    literal = match["ip"]
    if literal is None:
        return True
    if re.fullmatch(rb"v[0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+", literal):
        return True
    try:
        ipaddress.IPv6Address(literal.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
CHUNK_EXTENSIONS = re.compile(
    rb"(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
REQUEST_LINE_SPACES = re.compile(rb"[A-Z]+ +[^ \r\n]+ +HTTP/[0-9.]+\r\n")
"""A request-line whose only fault is more than one SP between its words."""
CTL_IN_VALUE = re.compile(rb"\n[^\r\n:]*:[^\r\n]*[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _lines_named(head: bytes, name: bytes) -> list[bytes]:
    return [
        line.partition(b":")[2]
        for line in re.split(rb"\r?\n", head)
        if line.partition(b":")[0].strip().lower() == name
    ]


# Where uvhost is stricter than h11 by design, or h11 refuses what it does not
# implement: (name, why, applies). Nothing else may differ. Each class is as
# narrow as its reason.
STRICTER: list[tuple[str, str, Callable[[Discrepancy], bool]]] = [
    (
        "obs-fold",
        "uvhost (llhttp) rejects obs-fold line folding with 400; h11 unfolds it."
        " docs/discussion/http.md, 'Rejected, and how'",
        lambda d: d.kind == "rejects" and re.search(rb"\r?\n[ \t]", d.head) is not None,
    ),
    (
        "duplicate-content-length",
        "two Content-Length lines or a list are a smuggling shape: 400 (documented);"
        " h11 merges equal values",
        lambda d: (
            d.kind == "rejects"
            and (
                len(_lines_named(d.head, b"content-length")) > 1
                or any(b"," in value for value in _lines_named(d.head, b"content-length"))
            )
        ),
    ),
    (
        "content-length-with-transfer-encoding",
        "Content-Length beside Transfer-Encoding is a smuggling shape: 400 (documented);"
        " h11 ignores the length",
        lambda d: (
            d.kind == "rejects"
            and bool(_lines_named(d.head, b"content-length"))
            and bool(_lines_named(d.head, b"transfer-encoding"))
        ),
    ),
    (
        "unknown-method",
        "llhttp knows only the registered methods and answers others with 400; h11 takes any token",
        lambda d: d.kind == "rejects" and d.ref is not None and d.ref.method not in LLHTTP_METHODS,
    ),
    (
        "asterisk-not-options",
        "the asterisk-form target is for OPTIONS only (RFC 9112 3.2.4): 400, documented",
        lambda d: (
            d.kind == "rejects"
            and d.ref is not None
            and d.ref.target == b"*"
            and d.ref.method != b"OPTIONS"
        ),
    ),
    (
        "limits",
        "max_header_bytes (431, 414 for the target) and max_body_bytes (413) are uvhost's"
        " limits; h11 has none here",
        lambda d: d.kind == "rejects" and d.status in (413, 414, 431),
    ),
    (
        "target-form",
        "RFC 9112 3.2: a target that is no origin-form, http(s) absolute-form or OPTIONS"
        " asterisk is refused with 400 (the authority-form is CONNECT's, answered 501);"
        " h11 takes any visible characters",
        lambda d: (
            d.kind == "rejects"
            and d.ref is not None
            and not d.ref.target.startswith(b"/")
            and d.ref.target != b"*"
            and not d.ref.target.lower().startswith((b"http://", b"https://"))
        ),
    ),
    (
        "absolute-form-authority",
        "an absolute-form target whose authority is no host[:port] (RFC 3986 3.2) gets 400;"
        " h11 takes any visible characters",
        lambda d: (
            d.kind == "rejects"
            and d.ref is not None
            and d.ref.target.lower().startswith((b"http://", b"https://"))
            and not is_host_value(re.split(rb"[/?#]", d.ref.target.split(b"://", 1)[1])[0])
        ),
    ),
    (
        "host-value",
        "RFC 9112 3.2: a Host whose value is no uri-host[:port] gets 400; h11 does not look"
        " at the value",
        lambda d: (
            d.kind == "rejects"
            and d.status == 400
            and d.ref is not None
            and any(name == b"host" and not is_host_value(value) for name, value in d.ref.headers)
        ),
    ),
    (
        "host-on-higher-minor",
        "RFC 9110 6.2 and 9112 3.2: uvhost serves HTTP/1.2 and up as 1.1, so such a request"
        " needs a Host like any 1.1 request (400); h11 asks Host of 1.1 alone",
        lambda d: (
            d.kind == "rejects"
            and d.status == 400
            and d.ref is not None
            and d.ref.http_version[:2] == b"1."
            and d.ref.http_version > b"1.1"
            and not any(name == b"host" for name, _ in d.ref.headers)
        ),
    ),
    (
        "connect",
        "uvhost is no proxy: CONNECT gets 501 (RFC 9110 9.3.6); h11 reads it as a request",
        lambda d: d.kind == "rejects" and d.ref is not None and d.ref.method == b"CONNECT",
    ),
    (
        "control-character-in-value",
        "RFC 9110 5.5: a field value holds no CTL but HTAB; llhttp refuses them (400),"
        " h11 lets \\x01-\\x1f through on purpose (its issue 57)",
        lambda d: d.kind == "rejects" and CTL_IN_VALUE.search(d.head) is not None,
    ),
    (
        "http-version",
        "only HTTP/1.0 and 1.1 are served: another major version gets 505, HTTP/0.9 and"
        " malformed versions 400 (documented); h11 reads any HTTP/d.d",
        lambda d: (
            d.kind == "rejects"
            and d.ref is not None
            and d.ref.http_version not in (b"1.0", b"1.1", b"1.2", b"1.3", b"1.4", b"1.5")
            and d.ref.http_version[:2] != b"1."
        ),
    ),
    (
        "absolute-form-host",
        "RFC 9112 3.2.2: with an absolute-form target the server uses the target's host and"
        " ignores the Host line; uvhost gives the app that host, h11 the line as sent",
        lambda d: (
            d.kind == "differs"
            and d.field == "headers"
            and d.call is not None
            and d.ref is not None
            and not d.ref.target.startswith((b"/", b"*"))
            and _without_host(normal_headers(d.call["headers"])) == _without_host(d.ref.headers)
        ),
    ),
    (
        "http10-transfer-encoding",
        "RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing;"
        " llhttp answers 400, h11 decodes the chunks",
        lambda d: (
            d.kind == "rejects"
            and d.ref is not None
            and d.ref.http_version == b"1.0"
            and bool(_lines_named(d.head, b"transfer-encoding"))
        ),
    ),
    (
        "content-length-overflow",
        "a Content-Length beyond 2**64-1 cannot be a length (llhttp: 400); h11 takes 20 digits",
        lambda d: (
            d.kind == "rejects"
            and any(
                value.strip().isdigit() and int(value.strip()) >= 1 << 64
                for value in _lines_named(d.head, b"content-length")
            )
        ),
    ),
    (
        "minor-version-as-1.1",
        "RFC 9110 6.2: a request of a higher 1.x minor version is processed as the highest the"
        " server implements, so the app sees http_version 1.1; h11 reports the version sent",
        lambda d: (
            d.kind == "differs"
            and d.field == "http_version"
            and d.call is not None
            and d.ref is not None
            and d.call["http_version"] == b"1.1"
            and d.ref.http_version[:2] == b"1."
            and d.ref.http_version > b"1.1"
        ),
    ),
    (
        "bare-lf",
        "a bare LF as a line end is malformed (RFC 9112 2.2 allows, does not require, reading"
        " it): 400, documented; h11 accepts it",
        lambda d: d.kind == "rejects" and re.search(rb"(?<!\r)\n", d.head) is not None,
    ),
    (
        "chunk-size-whitespace",
        "RFC 9112 7.1: whitespace after a chunk size is only allowed before a ';' extension;"
        " llhttp refuses '1 \\r\\n' (400), h11 reads it",
        lambda d: (
            d.kind == "rejects" and re.search(rb"\n[0-9a-fA-F]+[ \t]+\r?\n", d.stream) is not None
        ),
    ),
    (
        "chunk-extension-whitespace",
        "RFC 9112 7.1.1 allows BWS around a chunk extension's ';' ('1; a'); llhttp refuses it"
        " (400, documented): loose chunk-extension parsing has been a smuggling vector",
        lambda d: (
            d.kind == "rejects"
            and re.search(rb"\r\n[0-9a-fA-F]+[ \t]*;[ \t]|\r\n[0-9a-fA-F]+[ \t]+;", d.stream)
            is not None
        ),
    ),
    (
        "chunk-extension-syntax",
        "RFC 9112 7.1.1: a chunk extension is ';' token ['=' (token / quoted-string)];"
        " llhttp refuses any other (';', ';a=b c', a CTL or obs-text outside quotes: 400),"
        " h11 skips everything up to the line end",
        lambda d: (
            d.kind == "rejects"
            and any(
                CHUNK_EXTENSIONS.fullmatch(line[1]) is None
                for line in re.findall(rb"\n([0-9a-fA-F]+)(;[^\r\n]*)\r?\n", d.body)
            )
        ),
    ),
    (
        "fragment-in-target",
        "RFC 9112 3.2: a request-target carries no fragment (absolute-URI and origin-form"
        " have none); llhttp refuses '#' with 400, h11 takes any visible character",
        lambda d: d.kind == "rejects" and d.ref is not None and b"#" in d.ref.target,
    ),
    (
        "chunk-size-overflow",
        "a chunk size of more than 16 hex digits cannot be a length (llhttp: 400, as for a"
        " Content-Length beyond 2**64-1); h11 waits for that many bytes",
        lambda d: (
            d.kind == "rejects"
            and re.search(rb"\n0*[0-9a-fA-F]{17,}[;\r\n]", d.body or d.stream) is not None
        ),
    ),
    (
        "leading-empty-line",
        "RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request-line;"
        " llhttp does, h11 refuses it (not stricter: uvhost follows the RFC here)",
        lambda d: (
            d.kind == "serves"
            and d.verdict.error.startswith(("no request line received", "illegal request line"))
            # a lone CR too: llhttp skips CR and LF before a request line, h11 refuses both
            and d.stream.startswith((b"\r", b"\n"), d.verdict.at)
        ),
    ),
    (
        "request-line-spaces",
        "RFC 9112 3 and 2.2: recipients MAY parse a request-line on whitespace boundaries;"
        " llhttp reads several SPs between method, target and version as one, h11 refuses."
        " The words are the same (no space ever enters the target), nor is the framing"
        " touched (not stricter: the lenient reading the RFC permits; see the audit table)",
        lambda d: (
            d.kind == "serves"
            and d.verdict.error.startswith("illegal request line")
            and REQUEST_LINE_SPACES.match(d.stream, d.verdict.at) is not None
        ),
    ),
]


def _without_host(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name != b"host"]


def normal_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The app's headers as h11 would give them: Content-Length stripped and
    Transfer-Encoding lower-cased (h11 normalises these two; names are already lower)."""
    out = []
    for name, value in headers:
        if name == b"content-length":
            out.append((name, value.strip()))
        elif name == b"transfer-encoding":
            out.append((name, value.lower()))
        else:
            out.append((name, value))
    return out


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """(raw_path, query_string) as ASGI gives them for a request target."""
    if target[:1] == b"/" or target == b"*":
        path, _, query = target.partition(b"?")
        return path, query
    parts = urllib.parse.urlsplit(target)
    return parts.path or b"/", parts.query


def _compare(call: dict[str, Any], ref: Reference) -> str:
    """The first field where the app's view of a request differs from h11's ('' if none)."""
    if call["method"] != ref.method:
        return "method"
    if (call["raw_path"], call["query_string"]) != split_target(ref.target):
        return "target"
    if call["http_version"] != ref.http_version:
        return "http_version"
    if normal_headers(call["headers"]) != ref.headers:
        return "headers"
    if call["complete"] and ref.complete and call["body"] != ref.body:
        return "body"
    return ""


def differential(outcome: Outcome, verdict: Verdict, status: int) -> Discrepancy | None:
    """The first place uvhost's app calls and h11's requests part ways, if any."""
    calls, refs = outcome.calls, verdict.requests

    def found(
        kind: str, ref: Reference | None, call: dict[str, Any] | None, what: str = ""
    ) -> Discrepancy:
        return Discrepancy(kind, outcome.sent, verdict, ref, call, status, what)

    for call, ref in zip(calls, refs, strict=False):
        different = _compare(call, ref)
        if different:
            return found("differs", ref, call, different)
        if call["complete"] and not ref.complete:
            return found("serves", ref, call, "body")  # uvhost finished what h11 did not
        if ref.complete and not call["complete"] and not ref.end > len(outcome.sent):
            return found("rejects", ref, call, "body")
    if len(calls) > len(refs) and verdict.ending in ("rejected", "incomplete"):
        return found("serves", None, calls[len(refs)])
    if len(calls) < len(refs):
        ref = refs[len(calls)]  # h11 accepted it whole, or its head and wants more bytes
        if ref.complete or (status and verdict.ending == "incomplete"):
            return found("rejects", ref, None)
    return None


def _cover(discrepancy: Discrepancy) -> str:
    for name, _, applies in STRICTER:
        if applies(discrepancy):
            return f"STRICTER:{name}"
    return ""


def _method_of(index: int, head: bytes) -> tuple[bytes, ...]:
    """The app says the method of what it answers (x-method). The server's own answer
    may be to a HEAD it parsed far enough to know (no body) or to anything (a body)."""
    found = re.search(rb"\r\nx-method: ([^\r\n]*)\r\n", head)
    return (found.group(1),) if found else (b"GET", b"HEAD")


def check(outcome: Outcome) -> list[Finding]:
    """Every invariant for one example: the findings, covered or not."""
    findings = [Finding("log", fuzzkit.describe(record)) for record in outcome.logs]
    if not outcome.quiet:
        findings.append(Finding("quiet", f"the server was not quiet after {fuzzkit.QUIET_LIMIT}s"))
    try:
        responses, rest = fuzzkit.read_responses(outcome.wire, outcome.closed, _method_of)
    except fuzzkit.WireError as error:
        return [*findings, Finding("wire", str(error))]
    if rest:
        findings.append(Finding("wire", f"bytes after the last response: {rest[:200]!r}"))
    own = [r for r in responses if r.header(b"x-call") is None]
    findings += _check_answers(outcome, responses, own)
    status = own[-1].status if own else 0
    discrepancy = differential(outcome, fuzzkit.h11_requests(outcome.sent), status)
    if discrepancy is not None:
        ref, call = discrepancy.ref, discrepancy.call
        detail = (
            f"{discrepancy.kind} {discrepancy.field} (uvhost status {status});"
            f" h11: {discrepancy.verdict.ending} {discrepancy.verdict.error!r};"
            f" h11 request: {ref and (ref.method, ref.target, ref.headers, ref.body[:50])};"
            f" app call: {call and (call['method'], call['raw_path'], call['headers'])}"
        )
        findings.append(Finding("differential", detail, _cover(discrepancy)))
    return findings


def _check_answers(
    outcome: Outcome, responses: list[fuzzkit.Response], own: list[fuzzkit.Response]
) -> list[Finding]:
    """Order, one answer per completed call, and how a rejection ends the connection."""
    findings = []
    answered = [int(r.header(b"x-call") or -1) for r in responses if r.header(b"x-call")]
    if answered != list(range(len(answered))):
        findings.append(Finding("order", f"app responses in the order {answered}"))
    if own:
        last = responses[-1]
        if len(own) > 1 or last is not own[0]:
            findings.append(Finding("reject", "the server's own answer is not the last one"))
        if last.status < 400 or last.keep_alive or not outcome.closed:
            detail = f"own answer {last.status}, keep-alive {last.keep_alive}"
            findings.append(Finding("reject", f"{detail}, closed {outcome.closed}"))
    for call in outcome.calls:
        if call["complete"] and not call["disconnected"] and call["index"] not in answered:
            findings.append(Finding("answered", f"call {call['index']} completed, no response"))
        if not call["complete"] and call["state"] not in ("receive", "done"):
            findings.append(Finding("answered", f"call {call['index']} in state {call['state']}"))
    if outcome.closed and responses and responses[-1].keep_alive and not own:
        findings.append(Finding("reject", "closed after a keep-alive response, with no answer"))
    if outcome.closed and not responses and not outcome.calls and outcome.sent.strip():
        findings.append(Finding("reject", "closed without any answer"))
    return findings


def uncovered(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if not finding.covered_by]


def report(outcome: Outcome, findings: list[Finding]) -> str:
    lines = [f"pieces: {outcome.pieces!r}", f"wire: {outcome.wire!r}", f"closed: {outcome.closed}"]
    lines += [f"{f.invariant}: {f.detail} {f.covered_by}" for f in findings]
    return "\n".join(lines)


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def fuzz_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzzkit.FuzzHost]:
    with fuzzkit.serving(tmp_path_factory.mktemp("fuzz") / "host", CONFIG, APPS) as running:
        yield running


FUZZ = fuzzkit.ci_settings(1000)


def test_request_streams(fuzz_host: fuzzkit.FuzzHost) -> None:
    """Grammar-built, mutated, split request streams: every invariant, every example."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seen: set[str] = set()

    @FUZZ
    @given(st.data())
    def one(data: st.DataObject) -> None:
        outcome = fuzz_host.exchange(request_stream(fuzzkit.HypothesisDraw(data)))
        findings = check(outcome)
        seen.update(finding.covered_by for finding in findings if finding.covered_by)
        assert not uncovered(findings), report(outcome, findings)

    one()
    assert fuzz_host.settle() == 0, "connections left open after every client closed"
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    assert grown < 200, f"the process grew by {grown} MiB"


def test_known_streams(fuzz_host: fuzzkit.FuzzHost) -> None:
    """A few fixed streams, so every check is seen to bite (and the harness to work)."""
    good = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\n"
    good += b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    outcome = fuzz_host.exchange([good[:20], good[20:]])
    assert not check(outcome), report(outcome, check(outcome))
    assert [call["body"] for call in outcome.calls] == [b"", b"abc"]
    bad = fuzz_host.exchange([b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /\x00 HTTP/1.1\r\n\r\n"])
    assert not check(bad), report(bad, check(bad))
    assert bad.closed
    assert b"HTTP/1.1 400 " in bad.wire
    folded = fuzz_host.exchange([b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n"])
    assert [f.covered_by for f in check(folded)] == ["STRICTER:obs-fold"]
    waiting = b"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    waiting += b"Expect: 100-continue\r\n\r\n3\r\nabc\r\n0\r\nTrailer-A: 1\r\n"
    continued = fuzz_host.exchange([waiting])  # the trailers never end: 100, then a wait
    assert b"100 Continue" in continued.wire, report(continued, check(continued))
    assert not uncovered(check(continued)), report(continued, check(continued))
    fragment = fuzz_host.exchange([b"GET http://example.#om HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert [f.covered_by for f in check(fragment)] == ["STRICTER:fragment-in-target"]
    overflow = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    huge = fuzz_host.exchange([overflow + b"FFFFFFFFFFFFFFFFF\r\nab\r\n0\r\n\r\n"])
    assert b" 400 " in huge.wire
    assert not uncovered(check(huge)), report(huge, check(huge))
    extension = b"DELETE / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    extension += b"1;a=b c\r\nz\r\n0\r\n\r\n"
    odd = fuzz_host.exchange([extension])
    assert [f.covered_by for f in check(odd)] == ["STRICTER:chunk-extension-syntax"]
    spaced = fuzz_host.exchange([b"POST /a  HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"])
    assert [f.covered_by for f in check(spaced)] == ["STRICTER:request-line-spaces"]
    assert [(c["method"], c["raw_path"]) for c in spaced.calls] == [(b"POST", b"/a")]

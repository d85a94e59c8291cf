"""wire.py on bytes alone: status lines, response heads and their framing, chunks, canned errors."""

from typing import Any

import pytest

from uvhost.server import wire
from uvhost.server.wire import BadResponseHeaderError, build_head


def head(
    status: int = 200,
    headers: Any = (),
    *,
    preamble: bytes = b"",
    defaults: dict[bytes, bytes] | None = None,
    keep_alive: bool = True,
    http11: bool = True,
    first_body: bytes | None = b"hello",
    more_body: bool = False,
    method_is_head: bool = False,
) -> wire.Framing:
    return build_head(
        status,
        headers,
        preamble=preamble,
        defaults=defaults or {},
        keep_alive=keep_alive,
        http11=http11,
        first_body=first_body,
        more_body=more_body,
        method_is_head=method_is_head,
    )


def lines(framing: wire.Framing) -> list[bytes]:
    assert framing.head.endswith(b"\r\n\r\n")
    return framing.head[:-4].split(b"\r\n")


# ---------------------------------------------------------------- status lines


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (200, b"HTTP/1.1 200 OK\r\n"),
        (204, b"HTTP/1.1 204 No Content\r\n"),
        (404, b"HTTP/1.1 404 Not Found\r\n"),
        (418, b"HTTP/1.1 418 I'm a Teapot\r\n"),
        (503, b"HTTP/1.1 503 Service Unavailable\r\n"),
        (599, b"HTTP/1.1 599 \r\n"),  # unknown: no phrase, still a valid status line
    ],
)
def test_status_line(status, line):
    assert wire.status_line(status) == line


def test_status_lines_are_precomputed_for_every_known_status():
    assert wire.status_line(200) is wire.STATUS_LINES[200]
    assert all(line.startswith(b"HTTP/1.1 ") for line in wire.STATUS_LINES.values())


@pytest.mark.parametrize("status", [0, 99, 1000, -200])
def test_status_out_of_range_is_the_apps_fault(status):
    with pytest.raises(BadResponseHeaderError, match="three-digit"):
        head(status)


# ---------------------------------------------------------------- framing


def test_app_content_length_is_kept_and_not_doubled():
    framing = head(200, [(b"content-length", b"5")], first_body=b"hello")
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"content-length: 5"]
    assert (framing.chunked, framing.content_length, framing.keep_alive) == (False, 5, True)


def test_app_content_length_with_more_body_is_not_chunked():
    framing = head(200, [(b"Content-Length", b"10")], first_body=b"hello", more_body=True)
    assert not framing.chunked
    assert framing.content_length == 10
    assert b"transfer-encoding" not in framing.head


def test_complete_first_body_gets_a_coalesced_content_length():
    framing = head(200, [(b"content-type", b"text/plain")], first_body=b"abc")
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"content-type: text/plain", b"content-length: 3"]
    assert framing.content_length is None  # we framed it; the app declared nothing
    assert not framing.chunked


def test_empty_complete_body_gets_content_length_zero():
    assert b"content-length: 0\r\n" in head(200, first_body=b"").head


@pytest.mark.parametrize("first_body", [b"part", b"", None])
def test_streamed_body_without_length_is_chunked_on_http11(first_body):
    framing = head(200, first_body=first_body, more_body=True)
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"transfer-encoding: chunked"]
    assert framing.chunked
    assert framing.keep_alive


def test_unknown_length_on_http10_closes_instead_of_chunking():
    framing = head(200, http11=False, more_body=True)
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"connection: close"]
    assert not framing.chunked
    assert not framing.keep_alive


def test_http10_keep_alive_is_announced():
    framing = head(200, http11=False, first_body=b"hi")
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"content-length: 2", b"connection: keep-alive"]
    assert framing.keep_alive


def test_http10_without_keep_alive_closes():
    framing = head(200, http11=False, keep_alive=False, first_body=b"hi")
    assert lines(framing)[-1] == b"connection: close"
    assert not framing.keep_alive


def test_protocol_asking_for_close_writes_connection_close():
    framing = head(200, keep_alive=False)
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"content-length: 5", b"connection: close"]
    assert not framing.keep_alive


def test_app_connection_close_wins_and_is_written_once_by_us():
    framing = head(200, [(b"Connection", b"Close")])
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"content-length: 5", b"connection: close"]
    assert not framing.keep_alive


def test_app_connection_keep_alive_is_dropped_not_duplicated():
    framing = head(200, [(b"connection", b"keep-alive")])
    assert b"keep-alive" not in framing.head
    assert framing.keep_alive


def test_app_transfer_encoding_is_ignored_framing_is_ours():
    framing = head(200, [(b"transfer-encoding", b"gzip, chunked")], first_body=b"abc")
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"content-length: 3"]
    assert not framing.chunked


def test_head_response_has_no_framing_of_its_own():
    framing = head(200, [(b"content-type", b"text/plain")], method_is_head=True, first_body=b"")
    assert lines(framing) == [b"HTTP/1.1 200 OK", b"content-type: text/plain"]
    assert not framing.chunked
    assert framing.keep_alive


def test_head_response_keeps_the_apps_content_length():
    framing = head(200, [(b"content-length", b"1234")], method_is_head=True, first_body=b"")
    assert b"content-length: 1234\r\n" in framing.head
    assert framing.content_length == 1234


def test_head_response_streamed_is_not_chunked():
    framing = head(200, method_is_head=True, first_body=None, more_body=True)
    assert not framing.chunked
    assert b"transfer-encoding" not in framing.head


@pytest.mark.parametrize("status", [101, 103, 204, 304])
@pytest.mark.parametrize("more_body", [False, True])
def test_no_body_statuses_get_neither_length_nor_chunks(status, more_body):
    framing = head(status, first_body=b"", more_body=more_body)
    assert b"content-length" not in framing.head
    assert b"transfer-encoding" not in framing.head
    assert not framing.chunked


@pytest.mark.parametrize(
    ("status", "is_head", "allowed"),
    [
        (200, False, True),
        (200, True, False),
        (100, False, False),
        (204, False, False),
        (304, False, False),
        (205, False, False),  # RFC 9110 15.3.6: no content in a 205
        (404, False, True),
        (500, True, False),
    ],
)
def test_body_allowed(status, is_head, allowed):
    assert head(status=status, method_is_head=is_head).allows_body is allowed


# ----------------------------------------------------------- headers and defaults


def test_preamble_comes_right_after_the_status_line():
    framing = head(200, [(b"x-a", b"1")], preamble=b"server: uvhost\r\ndate: D\r\n")
    assert lines(framing)[:4] == [b"HTTP/1.1 200 OK", b"server: uvhost", b"date: D", b"x-a: 1"]


def test_app_headers_keep_their_order_case_and_duplicates():
    framing = head(200, [(b"Set-Cookie", b"a=1"), (b"X-B", b"2"), (b"Set-Cookie", b"b=2")])
    assert lines(framing)[1:4] == [b"Set-Cookie: a=1", b"X-B: 2", b"Set-Cookie: b=2"]


def test_default_headers_are_added():
    framing = head(200, [(b"x-app", b"1")], defaults={b"x-frame-options": b"DENY"})
    assert lines(framing) == [
        b"HTTP/1.1 200 OK",
        b"x-app: 1",
        b"x-frame-options: DENY",
        b"content-length: 5",
    ]


def test_app_header_overrides_a_default_of_the_same_name_in_any_case():
    framing = head(
        200,
        [(b"X-Frame-Options", b"SAMEORIGIN")],
        defaults={b"x-frame-options": b"DENY", b"x-other": b"yes"},
    )
    assert b"DENY" not in framing.head
    assert b"X-Frame-Options: SAMEORIGIN\r\n" in framing.head
    assert b"x-other: yes\r\n" in framing.head


@pytest.mark.parametrize(
    "header",
    [
        (b"x-evil", b"a\r\nset-cookie: injected=1"),
        (b"x-evil", b"a\nb"),
        (b"x-evil", b"a\rb"),
        (b"x-evil", b"a\x00b"),
        (b"x-evil\r\nset-cookie", b"1"),
        (b"bad name", b"1"),
        (b"bad:name", b"1"),
        (b"bad\x00name", b"1"),
        (b"", b"empty name"),
    ],
)
def test_unsafe_header_raises(header):
    with pytest.raises(BadResponseHeaderError):
        head(200, [(b"x-ok", b"fine"), header])


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1.5", b"", b"0x10"])
def test_bad_app_content_length_raises(value):
    with pytest.raises(BadResponseHeaderError, match="content-length"):
        head(200, [(b"content-length", value)])


# ---------------------------------------------------------------- chunks


def test_chunk_framing():
    assert wire.chunk(b"hello") == b"5\r\nhello\r\n"
    assert wire.chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert wire.LAST_CHUNK == b"0\r\n\r\n"


# ---------------------------------------------------------- Server and Date


def test_http_date_is_imf_fixdate():
    assert wire.http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert wire.http_date(784111777) == b"Sun, 06 Nov 1994 08:49:37 GMT"


def test_preamble_variants():
    both = wire.preamble(server_header=True, date_header=True, now=0)
    assert both == b"server: uvhost\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
    assert wire.preamble(server_header=False, date_header=True, now=0).startswith(b"date: ")
    assert wire.preamble(server_header=True, date_header=False) == b"server: uvhost\r\n"
    assert wire.preamble(server_header=False, date_header=False) == b""


# ---------------------------------------------------------------- canned


@pytest.mark.parametrize("status", [400, 408, 413, 431, 500, 503, 505])
def test_canned_error_is_complete_and_closes(status):
    data = wire.canned(status)
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    head_lines = head_bytes.split(b"\r\n")
    assert head_lines[0] == wire.status_line(status).rstrip(b"\r\n")
    assert b"connection: close" in head_lines
    assert f"content-length: {len(body)}".encode() in head_lines
    assert body.endswith(b"\n")


def test_canned_with_message_and_keep_alive():
    data = wire.canned(404, "no such thing", close=False)
    assert data.endswith(b"\r\n\r\nno such thing\n")
    assert b"connection" not in data
    assert b"content-length: 14\r\n" in data


def test_continue_line():
    assert wire.CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"

"""Spec requirements the HTTP/1.1 core enforces beyond what llhttp checks, on real sockets.

Four classes (issue 13), each test failing on the core before they were enforced:
- the request's Host (RFC 9112 3.2, 3.2.2): missing on HTTP/1.1, repeated, or not
  `uri-host [":" port]` gets 400 and never reaches an app; an absolute-form target's
  authority replaces the Host header the app reads;
- field values (RFC 9110 5.5): whitespace around a value is not part of it;
- what the app sends (RFC 9110 5.3, 6.6, 8.6, 15.2; RFC 9112 6): a response that a
  client or proxy could read two ways is never written (500 instead, logged once);
  the app's Server and Date replace ours instead of doubling them;
- ASGI 2.4: `send` after the client disconnected raises an OSError subclass.
"""

from __future__ import annotations

import socket
import threading

import pytest

APPS = r'''
import threading

calls = []


async def echo(scope, receive, send):
    """Answers with what it was given: the method, the path and every header."""
    while (await receive()).get("more_body"):
        pass
    calls.append(scope)
    lines = b"".join(b"%s=[%s]\n" % pair for pair in scope["headers"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": lines})


RESPONSES = {
    "server": (200, [(b"server", b"app/1.0")]),
    "date": (200, [(b"date", b"Thu, 01 Jan 1970 00:00:00 GMT")]),
    "both": (200, [(b"Server", b"app/1.0"), (b"Date", b"Thu, 01 Jan 1970 00:00:00 GMT")]),
    "two-lengths": (200, [(b"content-length", b"2"), (b"content-length", b"3")]),
    "same-length-twice": (200, [(b"content-length", b"2"), (b"Content-Length", b"2")]),
    "length-and-chunked": (
        200, [(b"content-length", b"2"), (b"transfer-encoding", b"chunked")]
    ),
    "no-content-with-length": (204, [(b"content-length", b"2")]),
    "informational": (100, []),
    "switching": (101, [(b"upgrade", b"websocket"), (b"connection", b"upgrade")]),
    "control-char": (200, [(b"x-note", b"a\x01b")]),
    "delete-char": (200, [(b"x-note", b"a\x7f")]),
    "escape-char": (200, [(b"x-note", b"\x1b[31mred")]),
    "tab-is-fine": (200, [(b"x-note", b"a\tb")]),
    "two-servers": (200, [(b"server", b"a/1"), (b"server", b"b/2")]),
    "same-date-twice": (
        200, [(b"date", b"Thu, 01 Jan 1970 00:00:00 GMT")] * 2
    ),
    "float-status": (200.5, []),
}


async def respond(scope, receive, send):
    """/respond/KIND: a response head from RESPONSES and a two-byte body."""
    status, headers = RESPONSES[scope["path"].rsplit("/", 1)[-1]]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def catcher(scope, receive, send):
    """/catcher/KIND: sends more than its content-length, catches the error, goes on."""
    first = scope["path"].endswith("/after-head")
    await send({"type": "http.response.start", "status": 418,
                "headers": [(b"content-length", b"17")]})
    if first:
        await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
    try:
        await send({"type": "http.response.body", "body": b"HTTP/1.1 200 OK\r\n\r\n",
                    "more_body": True})
    except Exception as error:
        caught.append(type(error).__name__)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


BIG = b"b" * (2 * 1024 * 1024)
big_sent = threading.Event()


async def big(scope, receive, send):
    """A 2 MiB answer, far more than the socket buffers hold while the client waits."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": BIG})
    big_sent.set()


caught = []
streaming = threading.Event()
outcome = []  # what each send after the client left did
finished = threading.Event()


async def stream(scope, receive, send):
    """Streams until a send fails; records what it raised and what receive said."""
    assert (await receive())["type"] == "http.request"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    streaming.set()
    try:
        assert (await receive())["type"] == "http.disconnect"
        outcome.append(("receive", "http.disconnect"))
        try:
            await send({"type": "http.response.body", "body": b"more", "more_body": True})
        except Exception as error:
            outcome.append(("send", type(error), isinstance(error, OSError)))
            raise
        outcome.append(("send", None, False))
    finally:
        finished.set()
'''

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
[listeners.main.routes]
"/" = "echo"
"/respond" = "respond"
"/stream" = "stream"
"/catcher" = "catcher"
"/big" = "big"

[apps.echo]
target = "apps:echo"
lifespan = "off"

[apps.respond]
target = "apps:respond"
lifespan = "off"

[apps.stream]
target = "apps:stream"
lifespan = "off"

[apps.catcher]
target = "apps:catcher"
lifespan = "off"

[apps.big]
target = "apps:big"
lifespan = "off"
"""

TIMEOUT = 5.0


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def served(host, request: bytes) -> dict[bytes, list[bytes]]:
    """Send one request, expect 200 from the echo app; the headers the app saw."""
    with host.raw() as raw:
        raw.send(request)
        response = raw.read_response()
    assert response.status == 200, response.raw
    seen: dict[bytes, list[bytes]] = {}
    for line in response.body.splitlines():
        name, _, value = line.partition(b"=")
        seen.setdefault(name, []).append(value[1:-1])
    return seen


def refused(host, request: bytes, reason: bytes) -> None:
    """400 with `reason` in its body, the connection closed, the app never called; the
    listener still serves."""
    before = len(host.module.calls)
    with host.raw() as raw:
        raw.send(request)
        response = raw.read_response()
        assert response.status == 400, response.raw
        assert reason in response.body, response.body
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()
    assert len(host.module.calls) == before, host.module.calls[before:]
    assert served(host, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[b"host"] == [b"x"]


# ------------------------------------------------------------------ the Host


def test_an_http11_request_without_host_is_refused(host):
    refused(host, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", b"needs a Host header")


def test_an_http10_request_may_leave_host_out(host):
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.0\r\n\r\n")
        assert raw.read_response().status == 200


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
@pytest.mark.parametrize("second", [b"a.example", b"b.example"], ids=["same", "different"])
def test_more_than_one_host_is_refused(host, version, second):
    request = b"GET / HTTP/%s\r\nHost: a.example\r\nHost: %s\r\n\r\n" % (version, second)
    refused(host, request, b"more than one Host")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"a b.example", id="space"),
        pytest.param(b"user@a.example", id="userinfo"),
        pytest.param(b"user:pw@a.example:80", id="userinfo-and-port"),
        pytest.param(b"a.example/path", id="path"),
        pytest.param(b"a.example?q", id="query"),
        pytest.param(b"a.example#f", id="fragment"),
        pytest.param(b"a.example:http", id="port-not-digits"),
        pytest.param(b"a.example:80:80", id="two-ports"),
        pytest.param(b"[::1", id="unclosed-literal"),
        pytest.param(b"[not:an:ip]", id="bad-ipv6"),
        pytest.param(b"::1", id="ipv6-without-brackets"),
        pytest.param(b"a%zz.example", id="bad-percent"),
        pytest.param(b'a"b', id="quote"),
        pytest.param(b"caf\xc3\xa9.example", id="raw-utf8"),
    ],
)
def test_an_invalid_host_value_is_refused(host, value):
    refused(host, b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % value, b"not a valid host")


@pytest.mark.parametrize(
    "value",
    [
        b"a.example",
        b"A.Example:8080",
        b"127.0.0.1:80",
        b"[::1]:8000",
        b"[v1.fe80::a+en1]",
        b"xn--caf-dma.example",
        b"under_score.example",
        b"a%2Eexample",
        b"a.example:",  # port = *DIGIT: empty is allowed
        b"",  # RFC 9110 7.2: empty when the target has no authority
    ],
)
def test_a_valid_host_reaches_the_app_unchanged(host, value):
    seen = served(host, b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % value)
    assert seen[b"host"] == [value]


def test_every_request_on_a_connection_has_its_host_checked(host):
    """A connection remembers the last Host it found valid (a compare per request instead
    of a lookup); a different, invalid one later on the same connection is still a 400."""
    before = len(host.module.calls)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        assert raw.read_response().status == 200
        raw.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        assert raw.read_response().status == 200
        raw.send(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
        assert raw.read_response().status == 400
        assert raw.closed_by_server()
    assert len(host.module.calls) == before + 2
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        assert raw.read_response().status == 200
        assert raw.read_response().status == 400  # no Host after a valid one: still refused


def test_an_absolute_form_target_replaces_the_host_the_app_reads(host):
    """RFC 9112 3.2.2: the target's authority wins over the Host header."""
    seen = served(host, b"GET http://real.example:8443/x?y HTTP/1.1\r\nHost: other.example\r\n\r\n")
    assert seen[b"host"] == [b"real.example:8443"]
    seen = served(host, b"GET http://[::1]/x HTTP/1.1\r\nHost: other.example\r\n\r\n")
    assert seen[b"host"] == [b"[::1]"]
    seen = served(host, b"GET http://real.example/ HTTP/1.0\r\n\r\n")
    assert seen[b"host"] == [b"real.example"]


def test_an_absolute_form_target_still_needs_a_valid_host_header(host):
    refused(host, b"GET http://real.example/ HTTP/1.1\r\n\r\n", b"needs a Host header")
    refused(
        host,
        b"GET http://real.example/ HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"not a valid host",
    )


@pytest.mark.parametrize("authority", [b"a_b.example", b"a;b", b"a!b:8080", b"xn--caf-dma.example"])
def test_an_absolute_form_host_is_judged_as_a_host_line_is(host, authority):
    """llhttp's URL parser refused `_` and sub-delims that RFC 3986 allows in a host and a
    Host line may hold (found by the request fuzzer, against h11)."""
    seen = served(host, b"GET http://%s/x HTTP/1.1\r\nHost: y\r\n\r\n" % authority)
    assert seen[b"host"] == [authority]
    refused(host, b"GET http://a b/ HTTP/1.1\r\nHost: y\r\n\r\n", b"malformed")
    refused(host, b"GET http:///x HTTP/1.1\r\nHost: y\r\n\r\n", b"not a valid host")


def test_userinfo_in_an_absolute_form_target_is_refused(host):
    """RFC 9110 4.2.4: userinfo in an http(s) URI is to be treated as an error."""
    refused(
        host,
        b"GET http://user:pw@real.example/ HTTP/1.1\r\nHost: real.example\r\n\r\n",
        b"userinfo",
    )


def test_transfer_encoding_in_an_http10_request_is_refused(host):
    """RFC 9112 6.1: HTTP/1.0 has no transfer codings; the framing is faulty."""
    refused(
        host,
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"Transfer-Encoding in an HTTP/1.0 request",
    )


def test_an_https_target_is_served_over_plain_tcp_only_from_a_trusted_gateway(serve):
    """RFC 9110 7.4: 421 on a plain connection (tests/server/test_http_spec_audit.py), but
    a proxy in forwarded_allow_ips that terminated TLS may ask for an https URI."""
    config = CONFIG.replace(
        'bind = "127.0.0.1:0"',
        'bind = "127.0.0.1:0"\nproxy_headers = true\nforwarded_allow_ips = ["127.0.0.1"]',
    )
    host = serve(config, APPS)
    seen = served(host, b"GET https://real.example/ HTTP/1.1\r\nHost: real.example\r\n\r\n")
    assert seen[b"host"] == [b"real.example"]


def test_a_target_in_another_scheme_is_refused(host):
    refused(host, b"GET ftp://real.example/x HTTP/1.1\r\nHost: x\r\n\r\n", b"not an http")


def test_a_bad_request_behind_pipelined_good_ones_is_answered_after_all_of_them(host):
    """Requests parsed before the fault are whole and valid: each is served, in order,
    and the 400 comes last (it was dropping the waiting ones, and the client paired
    the 400 with the second request). Found by the request fuzzer."""
    with host.raw() as raw:
        raw.send(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\nGET /\x00 HTTP/1.1\r\n\r\n"
        )
        statuses = [raw.read_response().status for _ in range(4)]
        assert raw.closed_by_server()
    assert statuses == [200, 200, 200, 400]
    assert [scope["path"] for scope in host.module.calls[-3:]] == ["/1", "/2", "/3"]


def test_no_request_after_a_413_reaches_an_app(serve):
    """The 413 is answered from a parser callback; llhttp went on through the same read,
    skipped the refused body and started the DELETE behind it, which ran although the
    client, told 413 and close, takes it as never done (found by the request fuzzer)."""
    config = CONFIG.replace(
        'target = "apps:echo"\n', 'target = "apps:echo"\nmax_body_bytes = "1KiB"\n'
    )
    host = serve(config, APPS)
    with host.raw() as raw:
        raw.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
            + b"a" * 2000
            + b"DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert raw.read_response().status == 413
        assert raw.closed_by_server()
    assert host.module.calls == []


def test_an_unknown_method_after_a_served_request_is_a_400(host):
    """501 needs a request line to judge; behind a pipelined request llhttp's refusal is
    read as malformed input (400), still answered after the first response."""
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nFROBNICATE / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().status == 200
        assert raw.read_response().status == 400
        assert raw.closed_by_server()


@pytest.mark.parametrize("version", [b"1.2", b"1.9"])
def test_a_higher_minor_version_is_served_as_1_1(host, version):
    """RFC 9110 6.2: a higher minor version of HTTP/1 is processed as 1.1 (strict llhttp
    refused it with 400 before any of our code ran)."""
    with host.raw() as raw:
        raw.send(b"GET / HTTP/%s\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: y\r\n\r\n" % version)
        first = raw.read_response()
        assert first.status == 200, first.raw
        assert b"host=[x]" in first.body
        assert raw.read_response().status == 200  # kept alive, as 1.1 is
    assert host.module.calls[-2]["http_version"] == "1.1"


@pytest.mark.parametrize("version", [b"2.0", b"3.1", b"0.8", b"9.9"])
def test_another_major_version_gets_505(host, version):
    with host.raw() as raw:
        raw.send(b"GET / HTTP/%s\r\nHost: x\r\n\r\n" % version)
        response = raw.read_response()
        assert response.status == 505
        assert b"HTTP/1.0 and HTTP/1.1" in response.body
        assert raw.closed_by_server()


def test_a_too_large_body_declared_on_a_head_request_gets_a_bare_413(serve):
    config = CONFIG.replace(
        'target = "apps:stream"\n', 'target = "apps:stream"\nmax_body_bytes = "10B"\n'
    )
    host = serve(config, APPS)
    with host.raw() as raw:
        raw.send(b"HEAD /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        response = raw.read_response(head=True)
        assert response.status == 413
        assert raw.closed_by_server()
        assert response.raw.endswith(b"\r\n\r\n")  # the head alone: nothing after it


# ------------------------------------------------------------- field values


def test_whitespace_around_a_field_value_never_reaches_the_app(host):
    seen = served(
        host,
        b"GET / HTTP/1.1\r\nHost: x \t\r\nX-Tab: value\t\r\nX-Spaces: \t a  b \t \r\n"
        b"X-Empty: \t \r\n\r\n",
    )
    assert seen[b"host"] == [b"x"]
    assert seen[b"x-tab"] == [b"value"]
    assert seen[b"x-spaces"] == [b"a  b"]  # whitespace inside a value is the value's
    assert seen[b"x-empty"] == [b""]


def test_a_host_with_trailing_whitespace_is_judged_without_it(host):
    """`Host: x\\t` is the valid host `x`, not an invalid one."""
    assert served(host, b"GET / HTTP/1.1\r\nHost: a.example:80\t \r\n\r\n")[b"host"] == [
        b"a.example:80"
    ]


# ---------------------------------------------------------- what apps send


def respond(host, kind: str, *, method: bytes = b"GET"):
    with host.raw() as raw:
        raw.send(b"%s /respond/%s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, kind.encode()))
        return raw.read_response(head=method == b"HEAD")


@pytest.mark.parametrize("kind", ["server", "both"])
def test_the_apps_server_header_replaces_ours(host, kind):
    response = respond(host, kind)
    assert response.header_list("server") == [b"app/1.0"]
    assert len(response.header_list("date")) == 1


@pytest.mark.parametrize("kind", ["date", "both"])
def test_the_apps_date_header_replaces_ours(host, kind):
    response = respond(host, kind)
    assert response.header_list("date") == [b"Thu, 01 Jan 1970 00:00:00 GMT"]
    assert len(response.header_list("server")) == 1


def test_without_the_apps_own_server_and_date_ours_appear_once(host):
    response = respond(host, "tab-is-fine")
    assert response.header_list("server") == [b"uvhost"]
    assert len(response.header_list("date")) == 1
    assert response.header("x-note") == b"a\tb"


def test_a_listener_default_server_header_replaces_ours(serve):
    config = CONFIG.replace(
        'bind = "127.0.0.1:0"',
        'bind = "127.0.0.1:0"\n'
        'headers = { Server = "edge", Date = "Thu, 01 Jan 1970 00:00:00 GMT" }',
    )
    host = serve(config, APPS)
    response = respond(host, "tab-is-fine")
    assert response.header_list("server") == [b"edge"]
    assert response.header_list("date") == [b"Thu, 01 Jan 1970 00:00:00 GMT"]
    response = respond(host, "server")  # the app's own still wins over the listener's
    assert response.header_list("server") == [b"app/1.0"]
    with host.raw() as raw:  # and the host's own answers carry one of each too
        raw.send(b"GET / HTTP/1.1\r\n\r\n")
        canned = raw.read_response()
    assert canned.status == 400
    assert canned.header_list("server") == [b"edge"]
    assert len(canned.header_list("date")) == 1


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("two-lengths", "two different content-length values"),
        ("length-and-chunked", "content-length together with transfer-encoding"),
        ("informational", "not a final HTTP status"),
        ("switching", "not a final HTTP status"),
        ("control-char", "control character"),
        ("delete-char", "control character"),
        ("escape-char", "control character"),
        ("two-servers", "two different server values"),
        ("float-status", "is not an int"),
    ],
)
def test_a_response_that_reads_two_ways_becomes_a_logged_500(host, errors, kind, message):
    response = respond(host, kind)
    assert response.status == 500
    assert response.header_list("content-length") == [b"%d" % len(response.body)]
    assert response.header("transfer-encoding") is None
    logged = [r for r in errors() if "/respond/" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert message in logged[0].getMessage()


@pytest.mark.parametrize("where", ["before-head", "after-head"])
def test_a_body_longer_than_its_length_ends_the_response_even_if_the_app_goes_on(
    host, errors, where
):
    """The app catches the error and sends its last body message: the response was over
    when the error was raised (500 if its head was not written, else a close), never a
    head promising bytes that do not come on a kept connection (found by the response
    fuzzer: the next response was read as this one's body)."""
    with host.raw() as raw:
        raw.send(
            b"GET /catcher/%s HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
            % where.encode()
        )
        data = raw.read_to_close()
    assert host.module.caught == ["ResponseTooLongError"]
    if where == "before-head":
        assert data.startswith(b"HTTP/1.1 500 "), data
        assert data.count(b"HTTP/1.1 ") == 1, data
    else:
        assert data.startswith(b"HTTP/1.1 418 "), data
        assert data.endswith(b"\r\n\r\n0123456789"), data  # cut short, then closed
    assert host.module.calls == []  # the pipelined request is not served after it
    logged = [r for r in errors() if "/catcher/" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]


def test_the_same_date_twice_is_written_once(host):
    response = respond(host, "same-date-twice")
    assert response.header_list("date") == [b"Thu, 01 Jan 1970 00:00:00 GMT"]


def test_the_same_content_length_twice_is_written_once(host):
    response = respond(host, "same-length-twice")
    assert response.status == 200
    assert response.header_list("content-length") == [b"2"]
    assert response.body == b"ok"


def test_a_204_never_carries_a_content_length_and_the_next_request_is_read_right(host):
    """RFC 9110 8.6: no content-length on a 204, even when the app sends one; the body
    the app sent is dropped, so the pipelined request after it is answered intact."""
    with host.raw() as raw:
        raw.send(
            b"GET /respond/no-content-with-length HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: next\r\n\r\n"
        )
        first = raw.read_response(head=True)
        second = raw.read_response()
    assert first.status == 204
    assert first.header("content-length") is None
    assert first.header("transfer-encoding") is None
    assert first.raw.endswith(b"\r\n\r\n")
    assert second.status == 200
    assert b"host=[next]" in second.body


# ---------------------------------------------------------------- ASGI 2.4


def test_send_after_the_client_left_raises_an_oserror(host, errors):
    """ASGI 2.4: receive says http.disconnect, then send raises an OSError subclass;
    the server logs nothing for it (the app did nothing wrong)."""
    module = host.module
    with host.raw() as raw:
        raw.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert module.streaming.wait(TIMEOUT)
        raw.read_until(b"first")
    assert module.finished.wait(TIMEOUT)
    assert module.outcome[0] == ("receive", "http.disconnect")
    kind, error_type, is_oserror = module.outcome[1]
    assert kind == "send"
    assert error_type is not None, "send returned quietly after the client left"
    assert is_oserror, error_type
    assert error_type.__name__ == "ClientDisconnectedError"
    assert not [r for r in errors() if "/stream" in r.getMessage()]


def test_a_client_that_hangs_up_behind_a_pipelined_request_is_noticed(host):
    """Reading is paused while the second request waits, so the client's FIN was never
    read: an app waiting for http.disconnect (long poll, server-sent events) waited
    forever. The tick notices the hang-up (found by the request fuzzer)."""
    module = host.module
    with host.raw() as raw:
        raw.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert module.streaming.wait(TIMEOUT)
        raw.read_until(b"first")
    assert module.finished.wait(TIMEOUT), "the app never learned the client left"
    assert module.outcome[0] == ("receive", "http.disconnect")
    assert module.outcome[1][2], "send after the hang-up did not raise an OSError"
    assert module.calls == []  # the pipelined request was never started


def test_bytes_we_never_read_do_not_cut_the_last_response(host):
    """RFC 9112 9.6: after an HTTP/1.0 request the server closes; the request pipelined
    behind it stays unread, and closing outright with unread bytes makes the kernel
    send a reset that throws away the part of the answer still queued (found by the
    response fuzzer: 1.9 KB of a 70 KB body arrived). The close comes in stages."""
    sock = host.connect()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.sendall(b"GET /big HTTP/1.0\r\n\r\n")
        assert host.module.big_sent.wait(TIMEOUT)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # never read by the server
        threading.Event().wait(0.3)  # the client is slow to read: the server closes first
        received = bytearray()
        while chunk := sock.recv(1 << 16):
            received += chunk
    finally:
        sock.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert len(body) == len(host.module.BIG)


def test_the_same_error_class_serves_http_and_websocket():
    from uvhost.server import exchange, websocket  # noqa: PLC0415 - the two users of one class

    assert exchange.ClientDisconnectedError is websocket.ClientDisconnectedError
    assert issubclass(exchange.ClientDisconnectedError, OSError)


def test_a_pipelined_request_after_a_refused_host_is_never_served(host):
    """The 400 closes the connection: a request smuggled behind a bad Host is dropped."""
    before = len(host.module.calls)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().status == 400
        assert raw.closed_by_server()
    assert len(host.module.calls) == before

"""The conformance audit (issue 13): RFC 9110 §5-8, §15, RFC 9112 §2-9 and ASGI HTTP 2.4.

Each test proves one row of the "Conformance audit" table in
docs/discussion/http.md that no other test already proved, on a real
listener with raw sockets: the bytes on the wire are what the RFCs speak
about. A requirement uvhost does not meet yet is a strict xfail whose
reason names the gap (most gaps the audit found were fixed in the same issue).
"""

import logging
import re
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

APPS = r'''
import asyncio
import threading

calls = []
outcomes = {}
head_gate = threading.Event()


async def read_body(receive):
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def app(scope, receive, send):
    """/status/NNN?body: that status with that body; /raise: fails; else an echo."""
    path = scope["path"]
    if path == "/raise":
        raise RuntimeError("the app failed")
    body = await read_body(receive)
    calls.append({"method": scope["method"], "path": path, "body": body,
                  "headers": list(scope["headers"]), "version": scope["http_version"]})
    headers = [(b"content-type", b"text/plain")]
    if path.startswith("/status/"):
        status = int(path.split("/")[2])
        out = scope["query_string"]
    elif path == "/close":
        status, out = 200, b"bye"
        headers.append((b"connection", b"close"))
    else:
        status = 200
        out = b"%s %s %d:%s" % (scope["method"].encode(), scope["raw_path"], len(body), body)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": out})


async def after(scope, receive, send):
    """Completes its response, then receives and sends again: what happens is recorded."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})
    outcomes["receive"] = await asyncio.wait_for(receive(), 5)
    for key in ("send", "send_again"):
        try:
            await send({"type": "http.response.body", "body": b"late"})
        except Exception as error:
            outcomes[key] = type(error).__name__
        else:
            outcomes[key] = None


async def trailers(scope, receive, send):
    """Asks for trailers (no server offers the extension here): the body still completes."""
    outcomes["extensions"] = scope.get("extensions")
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"body"})
    try:
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})
    except Exception as error:
        outcomes["trailers"] = type(error).__name__
    else:
        outcomes["trailers"] = None


async def invalid(scope, receive, send):
    """/invalid/KIND: an event the ASGI spec says send() must raise on."""
    kind = scope["path"].rsplit("/", 1)[-1]
    start = {"type": "http.response.start", "status": 200, "headers": []}
    body = {"type": "http.response.body", "body": b"x"}
    if kind == "no-status":
        del start["status"]
    elif kind == "str-header":
        start["headers"] = [("x-name", "value")]
    elif kind == "str-body":
        body["body"] = "text"
    elif kind == "unknown-type":
        start["type"] = "http.response.begin"
    try:
        await send(start)
        await send(body)
    except Exception as error:
        outcomes[kind] = type(error).__name__
        raise
    outcomes[kind] = None
'''

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
routes = { "/" = "app", "/after" = "after", "/trailers" = "trailers", "/invalid" = "invalid" }

[apps.app]
target = "apps:app"
lifespan = "off"
max_body_bytes = "1KiB"

[apps.after]
target = "apps:after"
lifespan = "off"

[apps.trailers]
target = "apps:trailers"
lifespan = "off"

[apps.invalid]
target = "apps:invalid"
lifespan = "off"
"""

IMF_FIXDATE = re.compile(
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" \d{4} \d\d:\d\d:\d\d GMT"
)


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def exchange(host, request: bytes, *, head: bool = False) -> Any:
    """One request on a fresh connection, one response back."""
    with host.raw() as raw:
        raw.send(request)
        return raw.read_response(head=head)


def refused_and_closed(host, request: bytes, statuses: tuple[int, ...]) -> Any:
    """The request is answered with one of `statuses`, the connection closes, no app ran."""
    before = len(host.module.calls)
    with host.raw() as raw:
        raw.send(request)
        response = raw.read_response()
        assert response.status in statuses, response.raw
        assert raw.closed_by_server()
    assert len(host.module.calls) == before, host.module.calls[before:]
    return response


# ------------------------------------------------------- RFC 9112 §2: message


def test_an_empty_line_before_the_request_line_is_ignored(host):
    """RFC 9112 §2.2: a server SHOULD skip at least one CRLF before a request-line."""
    response = exchange(host, b"\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response.status == 200
    assert response.body == b"GET /x 0:"


def test_a_bare_cr_in_a_header_is_rejected(host):
    """RFC 9112 §2.2: a bare CR is invalid or replaced by SP; never taken as a line end."""
    refused_and_closed(host, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n", (400,))


def test_whitespace_before_the_first_header_is_rejected(host):
    """RFC 9112 §2.2: a line starting with whitespace after the request-line: reject (or skip)."""
    refused_and_closed(host, b"GET / HTTP/1.1\r\n Host: a\r\nHost: a\r\n\r\n", (400,))


@pytest.mark.parametrize("separator", [b" :", b"\t:"])
def test_whitespace_between_a_field_name_and_its_colon_gets_400(host, separator):
    """RFC 9112 §5.1: a server MUST reject whitespace between a field name and the colon with
    400 (two parsers reading it two ways is a smuggling vector)."""
    request = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length%s 5\r\n\r\nhello" % separator
    refused_and_closed(host, request, (400,))


def test_the_response_version_is_1_1_also_to_a_1_0_request(host):
    """RFC 9110 §6.2: the highest version the server conforms to, major no higher than asked."""
    response = exchange(host, b"GET / HTTP/1.0\r\n\r\n")
    assert response.raw.startswith(b"HTTP/1.1 200 OK\r\n")


# -------------------------------------------------- RFC 9112 §3: request line


@pytest.mark.parametrize(
    "request_line",
    [
        pytest.param(b"GET /a b HTTP/1.1", id="space-in-target"),
        pytest.param(b"GET /\tHTTP/1.1", id="tab-separator"),
        pytest.param(b"get / HTTP/1.1", id="lower-case-method"),
    ],
)
def test_an_invalid_request_line_gets_400_and_is_not_autocorrected(host, request_line):
    """RFC 9112 §3: an invalid request-line SHOULD get 400 (or 301), never a guess. Methods
    are case-sensitive, so "get" is no GET: refused (400, or 501 as an unknown method)."""
    refused_and_closed(host, request_line + b"\r\nHost: a\r\n\r\n", (400, 501))


def test_an_unknown_method_gets_501(host):
    """RFC 9112 §3 / RFC 9110 §15.6.2: a method the server does not implement SHOULD get 501."""
    refused_and_closed(host, b"FROBNICATE / HTTP/1.1\r\nHost: a\r\n\r\n", (501,))


def test_a_request_line_of_8000_octets_is_served(host):
    """RFC 9112 §3: request-lines of at least 8000 octets are RECOMMENDED to be supported."""
    target = b"/" + b"a" * (8000 - len(b"GET / HTTP/1.1"))
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == 8000
    response = exchange(host, line + b"\r\nHost: a\r\n\r\n")
    assert response.status == 200


def test_a_target_longer_than_the_server_parses_gets_414(host):
    """RFC 9112 §3: a request-target longer than any URI the server wishes to parse MUST get
    414 (URI Too Long); 431 is for header fields."""
    refused_and_closed(host, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", (414,))


def test_an_https_target_on_a_plain_connection_is_rejected(host):
    """RFC 9110 §7.4: a request for an "https" resource MUST be rejected unless it came over
    a connection secured for that origin (421 Misdirected Request says so)."""
    refused_and_closed(host, b"GET https://a/x HTTP/1.1\r\nHost: a\r\n\r\n", (421, 400))


# ----------------------------------------------------- RFC 9112 §4: status line


def test_the_status_line_has_version_code_and_reason(host):
    """RFC 9112 §4: HTTP-version SP 3DIGIT SP [reason-phrase] CRLF, also for a code with no
    registered phrase (the SP stays, the phrase is empty)."""
    assert exchange(host, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").raw.startswith(
        b"HTTP/1.1 200 OK\r\n"
    )
    assert exchange(host, b"GET /status/299 HTTP/1.1\r\nHost: a\r\n\r\n").raw.startswith(
        b"HTTP/1.1 299 \r\n"
    )


# -------------------------------------------------------- RFC 9112 §6: body


def test_a_get_with_a_content_length_has_a_body(host):
    """RFC 9112 §6: framing is independent of the method: a GET's declared body is its body,
    never the next request."""
    with host.raw() as raw:
        raw.send(b"GET /g HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\n")
        raw.send(b"Host: a\r\n\r\n")
        assert raw.read_response().body == b"GET /g 5:hello"
        assert raw.read_response().body == b"GET /n 0:"


def test_a_request_without_length_or_chunked_has_no_body(host):
    """RFC 9112 §6.3 (7): a request with neither Content-Length nor Transfer-Encoding has a
    zero-length body; what follows is the next request."""
    with host.raw() as raw:
        raw.send(b"POST /p HTTP/1.1\r\nHost: a\r\n\r\nGET /n HTTP/1.1\r\nHost: a\r\n\r\n")
        assert raw.read_response().body == b"POST /p 0:"
        assert raw.read_response().body == b"GET /n 0:"


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"CHUNKED"])
def test_transfer_coding_names_are_case_insensitive(host, value):
    """RFC 9112 §7: transfer-coding names are case-insensitive."""
    response = exchange(
        host,
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        % value,
    )
    assert response.body == b"POST /c 5:hello"


def test_a_transfer_coding_the_server_does_not_know_gets_501(host):
    """RFC 9112 §6.1: a request with a transfer coding the server does not understand SHOULD
    get 501; uvhost decodes only chunked."""
    refused_and_closed(
        host,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        (501,),
    )


def test_chunked_with_parameters_is_an_error(host):
    """RFC 9112 §7.1: chunked defines no parameters; their presence SHOULD be an error."""
    refused_and_closed(
        host,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n",
        (400, 501),
    )


def test_chunk_extensions_are_ignored(host):
    """RFC 9112 §7.1.1: a recipient MUST ignore chunk extensions it does not recognise."""
    response = exchange(
        host,
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'3;name=value;flag\r\nhel\r\n2;q="a b"\r\nlo\r\n0;last\r\n\r\n',
    )
    assert response.body == b"POST /c 5:hello"


def test_a_1_0_request_with_transfer_encoding_closes_the_connection(host):
    """RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as faulty
    framing and the connection closed after it is processed (uvhost refuses it: 400)."""
    refused_and_closed(
        host,
        b"POST /c HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        (400,),
    )


def test_a_connect_request_never_gets_a_2xx(host):
    """RFC 9110 §8.6, RFC 9112 §6.1: no Content-Length or Transfer-Encoding in a 2xx to
    CONNECT; uvhost opens no tunnels, so CONNECT is refused and never gets a 2xx at all."""
    refused_and_closed(host, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", (400, 501))


def test_the_same_content_length_repeated_in_a_list_is_one_length_or_refused(host):
    """RFC 9112 §6.3 (5): "5, 5" MUST be rejected or read as one length of 5."""
    request = b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"
    with host.raw() as raw:
        raw.send(request)
        response = raw.read_response()
        if response.status == 400:
            assert raw.closed_by_server()
        else:
            assert response.body == b"POST /c 5:hello"


@pytest.mark.parametrize("value", [b"abc", b"+5", b"0x5", b"5 5", b"5.0", b""])
def test_an_invalid_content_length_gets_400_and_a_close(host, value):
    """RFC 9112 §6.3 (5): an invalid Content-Length is an unrecoverable framing error: 400,
    then the connection closes."""
    refused_and_closed(
        host, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\nhello" % value, (400,)
    )


# --------------------------------------------- RFC 9110 §8.6, §15: what we send


def test_a_head_response_gets_no_length_the_app_did_not_declare(host):
    """RFC 9110 §8.6: a Content-Length on a HEAD response only if it is the GET's length: uvhost
    never makes one up (the app's HEAD body is not the GET's)."""
    response = exchange(host, b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n", head=True)
    assert response.status == 200
    assert response.header("content-length") is None
    assert response.header("transfer-encoding") is None


def test_a_304_gets_no_length_the_app_did_not_declare(host):
    """RFC 9110 §8.6, §15.4.5: a 304 has no content, and a Content-Length only if it is the
    200's length, so uvhost never adds one."""
    with host.raw() as raw:
        raw.send(b"GET /status/304?ignored HTTP/1.1\r\nHost: a\r\n\r\n")
        response = raw.read_response()
        assert response.status == 304
        assert response.header("content-length") is None
        assert response.header("transfer-encoding") is None
        raw.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")  # nothing was left on the wire
        assert raw.read_response().body == b"GET /next 0:"


def test_a_205_response_has_no_content(host):
    """RFC 9110 §15.3.6: a server MUST NOT generate content in a 205 response."""
    response = exchange(host, b"GET /status/205?content HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response.status == 205
    assert response.body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="400"),
        pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413, id="413"),
        pytest.param(b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431, id="431"),
    ],
)
def test_the_hosts_own_4xx_carry_a_date_and_an_explanation(host, request_bytes, status):
    """RFC 9110 §6.6.1: Date in every 4xx (IMF-fixdate, §5.6.7); §15.5: the content explains
    the error; §8.3: it says its Content-Type."""
    with host.raw() as raw:
        raw.send(request_bytes)
        response = raw.read_response()
    assert response.status == status
    assert IMF_FIXDATE.fullmatch(response.header("date") or b""), response.raw
    assert response.header("content-type") == b"text/plain; charset=utf-8"
    assert len(response.body.strip()) > 3


def test_an_app_response_carries_an_imf_fixdate(host):
    """RFC 9110 §6.6.1, §5.6.7: Date on 2xx/3xx/4xx, generated in IMF-fixdate."""
    for path in (b"/", b"/status/302", b"/status/404"):
        response = exchange(host, b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
        assert IMF_FIXDATE.fullmatch(response.header("date") or b""), response.raw


def test_a_500_to_a_head_request_has_no_content(host):
    """RFC 9112 §6.3 (1), RFC 9110 §15.6: a response to HEAD ends with its header section; the
    host's own 500 must not write content after it."""
    with host.raw() as raw:
        raw.send(b"HEAD /raise HTTP/1.1\r\nHost: a\r\n\r\n")
        response = raw.read_response(head=True)
        assert response.status == 500
        assert raw.read_to_close() == b""


def test_505_explains_which_versions_are_served(host):
    """RFC 9110 §15.6.6: a 505 SHOULD say why and which versions the server speaks."""
    response = refused_and_closed(host, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", (505,))
    assert b"HTTP/1.0" in response.body
    assert b"HTTP/1.1" in response.body


# ----------------------------------------------------- RFC 9110 §5: fields


def test_the_request_is_not_applied_before_the_header_section_ends(host):
    """RFC 9110 §5.3: the app runs only once the whole header section has arrived."""
    before = len(host.module.calls)
    with host.raw() as raw:
        raw.send(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n")
        raw.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            raw.read_until(b"\r\n\r\n")
        assert len(host.module.calls) == before
        raw.sock.settimeout(5)
        raw.send(b"X-Late: 1\r\n\r\n")
        assert raw.read_response().status == 200
    assert (b"x-late", b"1") in host.module.calls[-1]["headers"]


def test_obs_text_in_a_field_value_reaches_the_app_as_opaque_bytes(host):
    """RFC 9110 §5.5: obs-text octets SHOULD be treated as opaque data: passed on as sent."""
    value = "caf\u00e9 \u00ff".encode("latin-1")
    exchange(host, b"GET / HTTP/1.1\r\nHost: a\r\nX-Text: %s\r\n\r\n" % value)
    assert (b"x-text", value) in host.module.calls[-1]["headers"]


@pytest.mark.parametrize("value", [b"CLOSE", b"Close", b", close", b"close, ", b"foo, close"])
def test_connection_close_is_read_case_insensitively_and_as_a_list(host, value):
    """RFC 9110 §7.6.1: connection options are case-insensitive; §5.6.1.2: empty list
    elements are ignored. Either way the connection ends after the response."""
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: %s\r\n\r\n" % value)
        response = raw.read_response()
        assert response.status == 200
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()


# ------------------------------------------------ RFC 9112 §9: connections


def test_after_sending_close_no_further_request_is_processed(host):
    """RFC 9112 §9.6: a server that sends "close" MUST close after that response and MUST NOT
    process any further request on the connection (here the app asked for the close)."""
    before = len(host.module.calls)
    with host.raw() as raw:
        raw.send(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        response = raw.read_response()
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()
    assert [call["path"] for call in host.module.calls[before:]] == ["/close"]


def test_the_last_response_survives_data_the_client_sent_after_it(host):
    """RFC 9112 §9.6: closing at once while the client's bytes sit unread resets the
    connection and can destroy the response; the response must still arrive whole."""
    with host.raw() as raw:
        raw.send(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n" + b"X" * 200_000)
        response = raw.read_response()
        assert response.body == b"bye"


# ----------------------------------------------------------- TLS (§9.8)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def test_tls_closure_sends_close_notify(serve, ca, tmp_path):
    """RFC 9112 §9.8: a TLS implementation MUST initiate the closure-alert exchange before it
    closes: the client sees a clean TLS EOF, not a truncation."""
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server.private_key_and_cert_chain_pem.write_to_path(cert)
    server.private_key_pem.write_to_path(key)
    config = CONFIG.replace(
        "[apps.app]",
        f'[listeners.main.tls]\ncertificate = "{cert}"\nprivate_key = "{key}"\n\n[apps.app]',
    )
    host = serve(config, APPS)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", host.port()), timeout=5) as plain:
        conn = context.wrap_socket(plain, server_hostname="localhost", suppress_ragged_eofs=False)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):  # SSLEOFError here: closed without close_notify
            data += chunk
        conn.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")


# ------------------------------------------------------------ ASGI HTTP 2.4


def test_receive_after_the_response_is_a_disconnect(host):
    """ASGI HTTP: receive() after the response was sent gives http.disconnect, even while the
    connection stays open for the next request."""
    with host.raw() as raw:
        raw.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        assert raw.read_response().body == b"done"
        deadline = time.monotonic() + 5
        while "send" not in host.module.outcomes and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        raw.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # the connection is still usable
        assert raw.read_response().status == 200
    assert host.module.outcomes["receive"] == {"type": "http.disconnect"}


def test_send_after_the_response_completed_is_ignored_and_logged_once(host, caplog):
    """ASGI HTTP: after `more_body: False` further messages are ignored. uvhost ignores them
    (the app's task goes on) and logs one warning naming the mistake, so the bug is seen;
    the response already sent is untouched and the connection serves on."""
    caplog.set_level(logging.WARNING, logger="uvhost.error")
    with host.raw() as raw:
        raw.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        response = raw.read_response()
        deadline = time.monotonic() + 5
        while "send" not in host.module.outcomes and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        raw.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert raw.read_response().status == 200
    assert response.body == b"done"
    assert host.module.outcomes["send"] is None
    assert host.module.outcomes["send_again"] is None
    late = [r for r in caplog.records if "after its response was complete" in r.getMessage()]
    assert len(late) == 1, [r.getMessage() for r in late]
    assert late[0].levelno == logging.WARNING


def test_trailers_are_not_offered_and_the_response_completes_without_them(host):
    """ASGI HTTP (`trailers` key, the trailers extension): uvhost offers no extension in the
    http scope, so `trailers: True` is not waited for: the body completes the response and a
    trailers message after it is ignored like any message after the last body."""
    with host.raw() as raw:
        raw.send(b"GET /trailers HTTP/1.1\r\nHost: a\r\n\r\n")
        response = raw.read_response()
        assert response.body == b"body"
        raw.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert raw.read_response().status == 200
    assert host.module.outcomes["extensions"] is None
    assert host.module.outcomes["trailers"] is None  # after the last body: ignored (ASGI)


@pytest.mark.parametrize("kind", ["no-status", "str-header", "str-body", "unknown-type"])
def test_an_invalid_event_raises_out_of_send_and_ends_the_connection(host, kind):
    """ASGI (main spec, error handling): an invalid event makes send() raise in the app; the
    app's exception then ends its connection (a 500: nothing was written yet)."""
    with host.raw() as raw:
        raw.send(b"GET /invalid/%s HTTP/1.1\r\nHost: a\r\n\r\n" % kind.encode())
        data = raw.read_to_close()
    assert data.startswith(b"HTTP/1.1 500 "), data
    assert b"\r\n\r\nx" not in data
    assert host.module.outcomes[kind] is not None


# -------------------------------------------------------------- the table


def test_every_test_the_conformance_table_names_exists():
    """docs/discussion/http.md's audit table names its proofs; a renamed or deleted test
    must not leave a row pointing at nothing."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "discussion" / "http.md").read_text(encoding="utf-8")
    section = text.partition("## Conformance audit")[2]
    links = re.findall(r"\[([\w.]+)::(\w+)(?:\[[^\]]*\])?\]\(\.\./\.\./(tests/[\w/.]+)\)", section)
    assert len(links) > 100, "the table lost its links"
    missing = [
        f"{file}::{name}"
        for file, name, path in links
        if not path.endswith(file)
        or not re.search(rf"^def {name}\(", (root / path).read_text(encoding="utf-8"), re.M)
    ]
    assert not missing, missing

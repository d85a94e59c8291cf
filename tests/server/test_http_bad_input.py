"""Bad input on raw sockets: malformed and smuggling-shaped requests, unsafe response headers.

Every bad request gets a 4xx/5xx and a closed connection, the app is not
called for it, and the server goes on serving the next connection.
"""

import asyncio
import logging

import pytest

APPS = r'''
calls = []


async def echo(scope, receive, send):
    """Answers with the method, the path and the whole body it read."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message["body"]
        if not message["more_body"]:
            break
    calls.append((scope["method"], scope["path"], body))
    out = b"%s %s %d:%s" % (scope["method"].encode(), scope["raw_path"], len(body), body)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": out})


got = []


async def early(scope, receive, send):
    """Starts streaming the response, then reads the body until it ends or breaks."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"started", "more_body": True})
    while True:
        message = await receive()
        got.append(message)
        if message["type"] == "http.disconnect" or not message["more_body"]:
            break
    await send({"type": "http.response.body", "body": b"done"})


async def bad_header(scope, receive, send):
    """/bad-header/KIND: a response header the server must refuse to write."""
    kind = scope["path"].rsplit("/", 1)[-1]
    name, value = {
        "crlf": (b"x-evil", b"a\r\nset-cookie: injected=1"),
        "lf": (b"x-evil", b"a\ninjected: 1"),
        "cr": (b"x-evil", b"a\rinjected: 1"),
        "nul": (b"x-evil", b"a\x00injected"),
        "name": (b"x-evil\r\ninjected", b"1"),
        "space": (b"x evil", b"injected"),
    }[kind]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-fine", b"yes"), (name, value)]})
    await send({"type": "http.response.body", "body": b"should not be sent"})
'''

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
routes = { "/" = "echo", "/bad-header" = "bad_header", "/early" = "early" }

[apps.echo]
target = "apps:echo"
lifespan = "off"

[apps.early]
target = "apps:early"
lifespan = "off"

[apps.bad_header]
target = "apps:bad_header"
lifespan = "off"
"""


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def assert_still_serving(host) -> None:
    with host.raw() as raw:
        raw.send(b"GET /alive HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
    assert response.status == 200
    assert response.body == b"GET /alive 0:"


def refused(host, request: bytes, statuses=(400,)) -> None:
    """The request gets one of `statuses`, the connection closes, the app is not called."""
    before = len(host.module.calls)
    with host.raw() as raw:
        raw.send(request)
        response = raw.read_response()
        assert response.status in statuses, response.raw
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()
    assert len(host.module.calls) == before, host.module.calls[before:]
    assert_still_serving(host)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="no-spaces"),
        pytest.param(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", id="extra-token"),
        pytest.param(b"GET / HTTQ/1.1\r\nHost: x\r\n\r\n", id="bad-protocol"),
        pytest.param(b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", id="bad-method"),
        pytest.param(b"GET / HTTP/1.1\r\nHost x\r\n\r\n", id="header-without-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", id="space-in-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", id="nul-in-header"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-to-plain-port"),
    ],
)
def test_malformed_request_gets_400(host, request_bytes):
    refused(host, request_bytes)


def test_http09_request_is_refused(host):
    refused(host, b"GET /\r\n\r\n", statuses=(400, 505))


def test_unknown_http_version_is_refused(host):
    refused(host, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", statuses=(400, 505))


def test_unparsable_absolute_form_target_is_a_client_error(host):
    refused(host, b"GET http://[bad/x HTTP/1.1\r\nHost: x\r\n\r\n")


def test_a_server_bug_while_reading_a_head_is_a_logged_500(host, monkeypatch, caplog):
    """Not the client's fault: 500, logged with the traceback, and the next request works."""
    router = next(iter(host.worker.contexts)).router

    def broken(self, path, host):
        raise KeyError("a bug in the router")

    monkeypatch.setattr(type(router), "resolve", broken)  # slotted: patch the class
    with caplog.at_level(logging.ERROR, logger="uvhost.error"), host.raw() as raw:
        raw.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
        assert response.status == 500
        assert raw.closed_by_server()
    assert any(r.exc_info and "a bug in the router" in str(r.exc_info[1]) for r in caplog.records)
    monkeypatch.undo()
    assert_still_serving(host)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="cl-and-te",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 5\r\n\r\n0\r\n\r\n",
            id="te-and-cl",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            id="differing-content-lengths",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
            id="content-length-list",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", id="negative-length"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            id="overflowing-length",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nhello\r\n0\r\n\r\n",
            id="invalid-chunk-size",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            id="overflowing-chunk-size",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhelloXX0\r\n\r\n",
            id="chunk-longer-than-its-size",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            id="te-not-ending-in-chunked",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", id="obs-fold"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\n Transfer-Encoding: chunked\r\n\r\n",
            id="obs-fold-hiding-te",
        ),
    ],
)
def test_smuggling_shapes_are_refused(host, request_bytes):
    before = len(host.module.calls)
    with host.raw() as raw:
        raw.send(request_bytes)
        data = raw.read_to_close()
    responses = data.count(b"HTTP/1.1 ")
    assert b"HTTP/1.1 400 " in data, data
    assert data.endswith(b"\n"), data  # the 400 is the last thing written
    # At most one well-formed request before the bad one was served; never a hidden one.
    assert responses - 1 == len(host.module.calls) - before
    assert len(host.module.calls) - before <= 1
    assert_still_serving(host)


def test_request_hidden_in_a_content_length_body_is_only_body(host):
    hidden = b"GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
    with host.raw() as raw:
        raw.send(b"POST /outer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(hidden))
        raw.send(hidden)
        response = raw.read_response()
        assert response.body == b"POST /outer %d:%s" % (len(hidden), hidden)
        raw.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().body == b"GET /next 0:"
    assert [call[1] for call in host.module.calls] == ["/outer", "/next"]


def test_request_hidden_in_a_chunked_body_is_only_body(host):
    hidden = b"GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
    with host.raw() as raw:
        raw.send(
            b"POST /outer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(hidden), hidden)
        )
        assert raw.read_response().body == b"POST /outer %d:%s" % (len(hidden), hidden)
        raw.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            raw.read_until(b"HTTP/1.1")  # no second response
    assert [call[1] for call in host.module.calls] == ["/outer"]


async def _a_few_turns() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_broken_body_after_the_response_started_closes(host):
    with host.raw() as raw:
        raw.send(b"POST /early HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert raw.read_until(b"7\r\nstarted\r\n").startswith(b"HTTP/1.1 200 OK")
        raw.send(b"3\r\nabc\r\nzz\r\n")
        rest = raw.read_to_close()
    assert b"0\r\n\r\n" not in rest  # cut, never completed
    assert b"400" not in rest  # a status cannot follow a started response
    host.call(_a_few_turns)  # the FIN leaves before the app's task has its turn
    assert host.module.got[-1] == {"type": "http.disconnect"}
    assert_still_serving(host)


def test_bad_request_after_a_good_one_is_answered_after_it(host):
    with host.raw() as raw:
        raw.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
        first = raw.read_response()
        second = raw.read_response()
        assert raw.closed_by_server()
    assert first.body == b"GET /first 0:"
    assert second.status == 400


@pytest.mark.parametrize("kind", ["crlf", "lf", "cr", "nul", "name", "space"])
def test_unsafe_response_header_is_never_written(host, caplog, kind):
    caplog.set_level(logging.ERROR, logger="uvhost.error")
    with host.raw() as raw:
        raw.send(f"GET /bad-header/{kind} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = raw.read_to_close()
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"injected" not in data
    assert b"x-fine" not in data
    assert b"should not be sent" not in data
    errors = [r for r in caplog.records if r.name == "uvhost.error"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "/bad-header/" in errors[0].getMessage()
    assert_still_serving(host)

"""The conformance audit (issue 13): the WebSocket rows of RFC 9110 §7.8/§15 and ASGI 2.4.

Each test proves one row of the "Conformance audit" table in
docs/discussion/http.md that no other test already proved: the upgrade
handshake as HTTP sees it (101, 426, Expect, HTTP/1.0, methods, case) and
the ASGI WebSocket events (invalid sends, close defaults, send after the
peer left, state). Raw sockets where the bytes matter.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

TIMEOUT = 5.0

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
app = "ws"

[apps.ws]
target = "apps:app"
lifespan = "on"
"""

APPS = r"""
import queue

reports = queue.Queue()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["shared"] = []
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        reports.put(("http", scope["http_version"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    path = scope["path"]
    await receive()
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})
        return
    await send({"type": "websocket.accept"})
    if path == "/state":
        state = scope["state"]
        reports.put(("state", ("mine" in state, state["shared"])))
        state["mine"] = True  # never seen by the next connection
    elif path.startswith("/invalid/"):
        kind = path.rsplit("/", 1)[-1]
        message = {
            "both": {"type": "websocket.send", "bytes": b"b", "text": "t"},
            "str-bytes": {"type": "websocket.send", "bytes": "not bytes"},
            "bytes-text": {"type": "websocket.send", "text": b"not text"},
        }[kind]
        try:
            await send(message)
        except Exception as error:
            reports.put(("raised", type(error).__name__))
            raise
        reports.put(("raised", None))
        return
    elif path == "/close-default":
        await send({"type": "websocket.close"})
        return
    elif path == "/send-after-leave":
        message = await receive()
        reports.put(("disconnect", message["type"]))
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except OSError as error:
            reports.put(("send", type(error).__name__))
            raise  # uvhost must swallow its own error without logging it
        reports.put(("send", None))
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or "?"})
"""

IMF_FIXDATE = re.compile(
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" \d{4} \d\d:\d\d:\d\d GMT"
)


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def report(host, kind: str) -> Any:
    got, value = host.module.reports.get(timeout=TIMEOUT)
    assert got == kind, (got, value)
    return value


def ws(host, path: str) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{host.port()}{path}", open_timeout=TIMEOUT, close_timeout=TIMEOUT
    )


def handshake(
    path: bytes = b"/", *, version: bytes = b"HTTP/1.1", method: bytes = b"GET", extra: bytes = b""
) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"%s %s %s\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
        % (method, path, version, key, extra)
    )


# --------------------------------------------------- RFC 9110 §7.8: Upgrade


def test_the_101_names_the_protocol_and_carries_no_body_framing(host):
    """RFC 9110 §7.8, §15.2.2: a 101 MUST carry Upgrade (and Connection: upgrade); RFC 9110
    §8.6 / RFC 9112 §6.1: no Content-Length or Transfer-Encoding on a 1xx."""
    with host.raw() as raw:
        raw.send(handshake())
        head = raw.read_until(b"\r\n\r\n").lower()
    assert head.startswith(b"http/1.1 101 ")
    assert b"\r\nupgrade: websocket\r\n" in head
    assert b"\r\nconnection: upgrade\r\n" in head
    assert b"content-length" not in head
    assert b"transfer-encoding" not in head


def test_a_426_names_the_protocol_it_requires(host):
    """RFC 9110 §7.8, §15.5.22: a 426 MUST carry Upgrade; a sender of Upgrade MUST also list
    "upgrade" in Connection. (The wrong-version 426 of RFC 6455 §4.4.)"""
    with host.raw() as raw:
        raw.send(handshake().replace(b"Version: 13", b"Version: 8"))
        response = raw.read_response()
        assert raw.closed_by_server()
    assert response.status == 426
    assert response.header("upgrade") == b"websocket"
    options = [item.strip().lower() for item in (response.header("connection") or b"").split(b",")]
    assert b"upgrade" in options
    assert b"close" in options
    assert response.header("sec-websocket-version") == b"13"


def test_expect_100_continue_gets_100_before_the_101(host):
    """RFC 9110 §7.8: with Upgrade and Expect: 100-continue, the 100 MUST come before the 101."""
    with host.raw() as raw:
        raw.send(handshake(extra=b"Expect: 100-continue\r\n"))
        first = raw.read_until(b"\r\n\r\n")
        second = raw.read_until(b"\r\n\r\n")
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert second.startswith(b"HTTP/1.1 101 ")


def test_an_upgrade_in_an_http_1_0_request_is_ignored(host):
    """RFC 9110 §7.8: a server MUST ignore Upgrade in an HTTP/1.0 request: plain HTTP."""
    with host.raw() as raw:
        raw.send(handshake(version=b"HTTP/1.0"))
        response = raw.read_response()
    assert response.status == 200
    assert response.body == b"plain http"
    assert report(host, "http") == "1.0"


def test_an_upgrade_on_a_post_is_not_switched(host):
    """RFC 9110 §7.8: no switch unless the new protocol honours the request's semantics (a
    WebSocket handshake is a GET, RFC 6455 §4.1): a POST is answered as HTTP."""
    with host.raw() as raw:
        raw.send(handshake(method=b"POST", extra=b"Content-Length: 0\r\n"))
        response = raw.read_response()
    assert response.status == 200
    assert response.body == b"plain http"


def test_upgrade_and_connection_tokens_are_case_insensitive(host):
    """RFC 9110 §7.8: protocol names compare case-insensitively; §7.6.1: so do options."""
    request = handshake().replace(b"Upgrade: websocket", b"Upgrade: WebSocket")
    request = request.replace(b"Connection: Upgrade", b"Connection: keep-alive, UPGRADE")
    with host.raw() as raw:
        raw.send(request)
        assert raw.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")


def test_a_denial_response_carries_a_date(host):
    """RFC 9110 §6.6.1: an origin server MUST send Date in every 4xx, the app's denial
    (websocket.http.response) included, in IMF-fixdate (§5.6.7)."""
    with host.raw() as raw:
        raw.send(handshake(b"/deny"))
        response = raw.read_response()
    assert response.status == 401
    assert IMF_FIXDATE.fullmatch(response.header("date") or b""), response.raw
    assert response.body == b"no"


# ------------------------------------------------------------ ASGI WebSocket


@pytest.mark.parametrize("kind", ["both", "str-bytes", "bytes-text"])
def test_an_invalid_send_raises_in_the_app(host, kind):
    """ASGI: websocket.send needs exactly one of bytes/text of the right type; an invalid
    event SHOULD make send() raise (main spec, error handling) and the app's exception
    closes the socket with 1011."""
    with ws(host, f"/invalid/{kind}") as client, pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=TIMEOUT)
    assert report(host, "raised") is not None
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011


def test_close_without_a_code_closes_with_1000(host):
    """ASGI websocket.close: the code defaults to 1000."""
    with ws(host, "/close-default") as client, pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000


def test_send_after_the_peer_left_raises_an_oserror_that_is_not_logged(host, caplog):
    """ASGI 2.4: send() on a closed connection raises a server-specific OSError subclass;
    the server catches it when the app lets it through and does not log it as an error."""
    caplog.set_level(logging.INFO)
    with ws(host, "/send-after-leave"):
        pass  # closed on leaving the block
    assert report(host, "disconnect") == "websocket.disconnect"
    assert report(host, "send") == "ClientDisconnectedError"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_state_is_a_shallow_copy_per_connection(host):
    """ASGI lifespan state: each connection's scope gets a shallow copy of the lifespan
    namespace: its own keys stay its own, the objects inside are shared."""
    with ws(host, "/state"):
        first = report(host, "state")
    with ws(host, "/state"):
        second = report(host, "state")
    assert first[0] is False
    assert second[0] is False  # the first connection's key stayed in its own copy
    assert first[1] is second[1]  # the same list: a shallow copy, not a deep one

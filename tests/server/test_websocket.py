"""The ASGI WebSocket spec on a real listener, driven by the `websockets` sync client.

Covers the scope (from the same route table as HTTP, a mount prefix included),
connect → accept with a subprotocol and extra headers, text and bytes both
ways, close codes and reasons both ways, a close before accept (403), the
`websocket.http.response` denial extension, and `enabled = false` (the
upgrade is answered as plain HTTP). Apps report to the test through a
`queue.Queue` in their module; every wait is bounded.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest
import trustme
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

TIMEOUT = 5.0

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
routes = { "/" = "plain", "/chat" = "echo", "/deny" = "deny", "/reject" = "reject" }

[apps.echo]
target = "apps:echo"
lifespan = "on"

[apps.deny]
target = "apps:deny"
lifespan = "off"

[apps.reject]
target = "apps:reject"
lifespan = "off"

[apps.plain]
target = "apps:echo"
lifespan = "on"
[apps.plain.websocket]
enabled = false
"""

APPS = r"""
import queue

reports = queue.Queue()


async def echo(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        reports.put(("http", scope))
        body = b"plain HTTP for " + scope["path"].encode()
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        })
        await send({"type": "http.response.body", "body": body})
        return
    reports.put(("scope", scope))
    reports.put(("connect", await receive()))
    chosen = "chat.v2" if "chat.v2" in scope["subprotocols"] else None
    await send({
        "type": "websocket.accept",
        "subprotocol": chosen,
        "headers": [(b"x-extra", b"yes"), (b"set-cookie", b"a=1")],
    })
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            reports.put(("disconnect", message))
            return
        if message.get("text") == "close please":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})
            reports.put(("after close", await receive()))
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"] + "!"})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


async def deny(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({
        "type": "websocket.http.response.start",
        "status": 401,
        "headers": [(b"www-authenticate", b"Bearer"), (b"content-type", b"text/plain")],
    })
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})
    reports.put(("denied", None))


async def reject(scope, receive, send):
    await receive()
    await send({"type": "websocket.close", "code": 1008})
    reports.put(("rejected", None))
"""


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def report(host, kind: str) -> Any:
    """The next report from the apps, which must be of `kind`."""
    got, value = host.module.reports.get(timeout=TIMEOUT)
    assert got == kind, (got, value)
    return value


def ws(host, path: str, **options: Any) -> ClientConnection:
    options.setdefault("open_timeout", TIMEOUT)
    options.setdefault("close_timeout", TIMEOUT)
    return connect(f"ws://127.0.0.1:{host.port()}{path}", **options)


def test_scope(host):
    with ws(
        host,
        "/chat/room%201?x=1&y=%20",
        subprotocols=["chat.v1", "chat.v2"],
        additional_headers={"X-Token": "t1"},
    ) as client:
        scope = report(host, "scope")
        assert report(host, "connect") == {"type": "websocket.connect"}
        client.send("hi")
        assert client.recv(timeout=TIMEOUT) == "hi!"
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert "method" not in scope
    assert scope["asgi"]["version"] == "3.0"
    assert scope["asgi"]["spec_version"] in ("2.3", "2.4")
    assert scope["http_version"] == "1.1"
    assert scope["root_path"] == "/chat"
    assert scope["path"] == "/chat/room 1"
    assert scope["raw_path"] == b"/chat/room%201"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
    headers = dict(scope["headers"])
    assert headers[b"x-token"] == b"t1"
    assert headers[b"upgrade"].lower() == b"websocket"
    assert b"sec-websocket-key" in headers
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["state"] == {"greeting": "hello"}
    assert "websocket.http.response" in scope["extensions"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", host.port())


def test_accept_with_subprotocol_and_headers(host):
    with ws(host, "/chat", subprotocols=["chat.v1", "chat.v2"]) as client:
        assert client.subprotocol == "chat.v2"
        assert client.response.status_code == 101
        assert client.response.headers["x-extra"] == "yes"
        assert client.response.headers["set-cookie"] == "a=1"
        assert client.response.headers["server"] == "uvhost"


def test_accept_without_subprotocol(host):
    with ws(host, "/chat", subprotocols=["other"]) as client:
        assert client.subprotocol is None
        assert "sec-websocket-protocol" not in client.response.headers


def test_text_and_bytes_both_ways(host):
    with ws(host, "/chat") as client:
        client.send("héllo ✓")
        assert client.recv(timeout=TIMEOUT) == "héllo ✓!"
        client.send(b"\x00\x01\x02\xff")
        assert client.recv(timeout=TIMEOUT) == b"\xff\x02\x01\x00"
        client.send("")
        assert client.recv(timeout=TIMEOUT) == "!"
        client.send(b"")
        assert client.recv(timeout=TIMEOUT) == b""
        big = bytes(range(256)) * 1024
        client.send(big)
        assert client.recv(timeout=TIMEOUT) == big[::-1]


def test_fragmented_messages_are_reassembled(host):
    with ws(host, "/chat") as client:
        client.send(["frag", "men", "ted"])
        assert client.recv(timeout=TIMEOUT) == "fragmented!"
        client.send([b"ab", b"cd", b"ef"])
        assert client.recv(timeout=TIMEOUT) == b"fedcba"


def test_app_closes_with_code_and_reason(host):
    with ws(host, "/chat") as client:
        report(host, "scope")
        report(host, "connect")
        client.send("close please")
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye now")
    after = report(host, "after close")
    assert after["type"] == "websocket.disconnect"
    assert after["code"] == 4001  # the client echoed our close


def test_client_closes_with_code_and_reason(host):
    with ws(host, "/chat") as client:
        report(host, "scope")
        report(host, "connect")
        client.send("one")
        assert client.recv(timeout=TIMEOUT) == "one!"
        client.close(4002, "client leaving")
        assert client.protocol.close_sent is not None
        assert client.protocol.close_rcvd is not None
        assert client.protocol.close_rcvd.code == 4002  # the server echoed it
    disconnect = report(host, "disconnect")
    assert disconnect == {"type": "websocket.disconnect", "code": 4002, "reason": "client leaving"}


def test_client_closes_without_code(host):
    with ws(host, "/chat") as client:
        report(host, "scope")
        report(host, "connect")
        client.protocol.send_close()
        client.socket.sendall(b"".join(client.protocol.data_to_send()))
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=TIMEOUT)
    disconnect = report(host, "disconnect")
    assert disconnect["code"] == 1005  # "no status received", as RFC 6455 7.1.5 says


def test_client_vanishes(host):
    with ws(host, "/chat") as client:
        report(host, "scope")
        report(host, "connect")
        client.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the app still learns it
        disconnect = report(host, "disconnect")
    assert disconnect["code"] == 1006


def test_close_before_accept_is_403(host):
    with pytest.raises(InvalidStatus) as denied:
        ws(host, "/reject")
    assert denied.value.response.status_code == 403
    report(host, "rejected")


def test_denial_response(host):
    with pytest.raises(InvalidStatus) as denied:
        ws(host, "/deny")
    response = denied.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "text/plain"
    assert response.body == b"no entry"
    report(host, "denied")


def test_denial_on_a_raw_socket_is_a_complete_http_response(host):
    with host.raw() as raw:
        raw.send(upgrade_request(b"/deny"))
        response = raw.read_response()
        assert response.status == 401
        assert response.body == b"no entry"
        assert response.header("content-length") == b"8"
        assert raw.closed_by_server()


def test_disabled_websocket_gets_plain_http(host):
    with host.raw() as raw:
        raw.send(upgrade_request(b"/elsewhere"))
        response = raw.read_response()
        assert response.status == 200
        assert response.body == b"plain HTTP for /elsewhere"
        assert raw.closed_by_server()
    scope = report(host, "http")
    assert scope["type"] == "http"
    assert scope["method"] == "GET"


def test_disabled_websocket_with_the_client(host):
    with pytest.raises(InvalidStatus) as answered:
        ws(host, "/elsewhere")
    assert answered.value.response.status_code == 200
    assert answered.value.response.body == b"plain HTTP for /elsewhere"


def test_plain_http_to_a_websocket_app_still_works(host):
    response = host.request("GET", "/chat/page")
    assert response.status_code == 200
    assert response.text == "plain HTTP for /chat/page"


def upgrade_request(path: bytes, *extra: bytes) -> bytes:
    lines = [
        b"GET " + path + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"Sec-WebSocket-Version: 13",
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_wss_scope_with_proxy_root_paths(serve, tmp_path):
    """TLS listener: scheme "wss"; the listener's and the app's root_path lead the mount."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    host = serve(
        f"""
[listeners.secure]
bind = "127.0.0.1:0"
root_path = "/proxy"
routes = {{ "/live" = "echo" }}
tls = {{ certificate = "{cert}", private_key = "{key}" }}

[apps.echo]
target = "apps:echo"
lifespan = "on"
root_path = "/v1"
""",
        APPS,
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    uri = f"wss://127.0.0.1:{host.port()}/live/feed"
    with connect(uri, ssl=context, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as client:
        scope = report(host, "scope")
        client.send("over tls")
        assert client.recv(timeout=TIMEOUT) == "over tls!"
    assert scope["scheme"] == "wss"
    assert scope["root_path"] == "/proxy/v1/live"
    assert scope["path"] == "/proxy/v1/live/feed"
    assert scope["raw_path"] == b"/proxy/v1/live/feed"

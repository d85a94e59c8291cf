"""HTTP/2 against a real host: httpx (h2 over TLS by ALPN, and h2c with prior knowledge)
and a raw `h2` client on a socket for what httpx never sends.

The same apps and listener rules as HTTP/1.1: scope, bodies both ways, limits,
header checks of what the app sends, Server/Date and default headers.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest
import trustme
from tests.h2raw import H2WebSocket, RawH2

APPS = """
import asyncio, json

async def echo(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {key: scope[key] for key in ("http_version", "method", "path", "raw_path",
            "query_string", "root_path", "scheme", "type")}
    seen["raw_path"] = seen["raw_path"].decode("latin-1")
    seen["query_string"] = seen["query_string"].decode("latin-1")
    seen["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    seen["body"] = body.decode("latin-1")
    data = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})

async def stream(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    size = int(scope["query_string"] or b"3")
    for index in range(size):
        await send({"type": "http.response.body", "body": b"%d\\n" % index, "more_body": True})
    await send({"type": "http.response.body", "body": b""})

async def big(scope, receive, send):
    size = int(scope["query_string"])
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % size)]})
    await send({"type": "http.response.body", "body": b"x" * size})

async def bad(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"x"})

async def boom(scope, receive, send):
    raise RuntimeError("boom")

async def own_headers(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"Server", b"mine"), (b"Connection", b"close"),
                            (b"X-Upper", b"kept")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""

ROUTES = """
[apps.echo]
target = "apps:echo"
lifespan = "off"
max_body_bytes = "64KiB"
[apps.stream]
target = "apps:stream"
lifespan = "off"
[apps.big]
target = "apps:big"
lifespan = "off"
[apps.bad]
target = "apps:bad"
lifespan = "off"
[apps.boom]
target = "apps:boom"
lifespan = "off"
[apps.own]
target = "apps:own_headers"
lifespan = "off"
"""


def listener(extra: str = "") -> str:
    return (
        f"""
[listeners.web]
bind = "127.0.0.1:0"
headers = {{ "X-Default" = "d" }}
{extra}
[listeners.web.routes]
"/" = "echo"
"/stream" = "stream"
"/big" = "big"
"/bad" = "bad"
"/boom" = "boom"
"/own" = "own"
"""
        + ROUTES
    )


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_host(serve, ca, tmp_path):
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server.private_key_and_cert_chain_pem.write_to_path(cert)
    server.private_key_pem.write_to_path(key)
    table = f'[listeners.web.tls]\ncertificate = "{cert}"\nprivate_key = "{key}"\n'
    return serve(listener() + table, APPS)


@pytest.fixture
def h2c_host(serve):
    return serve(listener(), APPS)


def tls_client(ca: trustme.CA, host: Any) -> httpx.Client:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return httpx.Client(
        base_url=f"https://localhost:{host.port()}",
        http2=True,
        verify=context,
        timeout=5,
    )


def h2c_client(host: Any) -> httpx.Client:
    return httpx.Client(base_url=host.url(""), http1=False, http2=True, timeout=5)


# ------------------------------------------------------------------ httpx


def test_tls_alpn_serves_http2(ca, tls_host):
    with tls_client(ca, tls_host) as client:
        response = client.post("/a%20b/c?x=1", content=b"hello", headers={"X-Test": "1"})
    assert response.http_version == "HTTP/2"
    seen = response.json()
    assert seen["http_version"] == "2"
    assert seen["scheme"] == "https"
    assert seen["method"] == "POST"
    assert seen["path"] == "/a b/c"
    assert seen["raw_path"] == "/a%20b/c"
    assert seen["query_string"] == "x=1"
    assert seen["body"] == "hello"
    names = [name for name, _ in seen["headers"]]
    assert ["host", f"localhost:{tls_host.port()}"] in seen["headers"]
    assert ["x-test", "1"] in seen["headers"]
    assert not [name for name in names if name.startswith(":")], "pseudo-headers reach the app"


def test_h2c_prior_knowledge(h2c_host):
    with h2c_client(h2c_host) as client:
        responses = [client.get(f"/n{index}") for index in range(5)]
    assert {response.http_version for response in responses} == {"HTTP/2"}
    assert [response.json()["path"] for response in responses] == [f"/n{i}" for i in range(5)]
    assert responses[0].json()["scheme"] == "http"


def test_http11_still_served_beside_h2c(h2c_host):
    response = h2c_host.request("GET", "/plain")
    assert response.http_version == "HTTP/1.1"
    assert response.json()["http_version"] == "1.1"


def test_response_headers_server_date_defaults_and_connection_specific(h2c_host):
    with h2c_client(h2c_host) as client:
        plain = client.get("/")
        own = client.get("/own")
    assert plain.headers["server"] == "uvhost"
    assert "date" in plain.headers
    assert plain.headers["x-default"] == "d"
    assert plain.headers["content-length"] == str(len(plain.content))
    assert own.headers.get_list("server") == ["mine"]
    assert "connection" not in own.headers  # RFC 9113 8.2.2: never on HTTP/2
    assert own.headers["x-upper"] == "kept"
    assert own.text == "ok"


def test_streamed_response_and_large_body(h2c_host):
    with h2c_client(h2c_host) as client:
        streamed = client.get("/stream", params=None, headers={}, extensions={})
        assert streamed.text == "0\n1\n2\n"
        size = 3 * 1024 * 1024  # far beyond the 64 KiB initial window: flow control
        large = client.get(f"/big?{size}")
    assert len(large.content) == size
    assert large.headers["content-length"] == str(size)


def test_large_request_body_is_acknowledged_as_the_app_reads_it(h2c_host):
    body = b"y" * 60000
    with h2c_client(h2c_host) as client:
        for _ in range(3):
            assert client.post("/", content=body).json()["body"] == body.decode()


def test_body_over_the_apps_limit_gets_413(h2c_host):
    with h2c_client(h2c_host) as client:
        response = client.post("/", content=b"z" * 70000)
        assert response.status_code == 413
        assert client.get("/after").status_code == 200  # the connection goes on


def test_app_faults_are_500_and_the_connection_goes_on(h2c_host, errors):
    with h2c_client(h2c_host) as client:
        assert client.get("/bad").status_code == 500
        assert client.get("/boom").status_code == 500
        assert client.get("/fine").status_code == 200
    messages = [record.getMessage() for record in errors()]
    assert any("two different content-length" in message for message in messages)
    assert any("exception in ASGI app" in message for message in messages)


def test_concurrent_streams_on_one_connection(h2c_host):
    import concurrent.futures  # noqa: PLC0415

    with h2c_client(h2c_host) as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        paths = [f"/c{index}" for index in range(40)]
        results = list(pool.map(lambda path: client.get(path).json()["path"], paths))
    assert results == paths


# ------------------------------------------------------- a raw h2 client


@contextmanager
def raw_h2(host: Any) -> Iterator[RawH2]:
    with host.connect() as sock:
        yield RawH2(sock)


GOOD = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")]

MALFORMED = {
    "no authority nor host": GOOD[:3],
    "upper-case name": [*GOOD, (b"X-Upper", b"1")],
    "connection field": [*GOOD, (b"connection", b"keep-alive")],
    "transfer-encoding": [*GOOD, (b"transfer-encoding", b"chunked")],
    "upgrade": [*GOOD, (b"upgrade", b"websocket")],
    "te other than trailers": [*GOOD, (b"te", b"gzip")],
    "pseudo after a regular field": [*GOOD[:3], (b"x-a", b"1"), GOOD[3]],
    "unknown pseudo": [*GOOD, (b":status", b"200")],
    "repeated pseudo": [*GOOD, (b":path", b"/again")],
    "no scheme": [GOOD[0], GOOD[2], GOOD[3]],
    "empty path": [*GOOD[:2], (b":path", b""), GOOD[3]],
    ":protocol without CONNECT": [*GOOD, (b":protocol", b"websocket")],
    "host differing from :authority": [*GOOD, (b"host", b"other")],
    "two hosts": [*GOOD[:3], (b"host", b"x"), (b"host", b"x")],
    "leading space in a value": [*GOOD, (b"x-a", b" 1")],
    "trailing tab in a value": [*GOOD, (b"x-a", b"1\t")],
    "control character in a value": [*GOOD, (b"x-a", b"a\x01b")],
    "two content-lengths": [*GOOD, (b"content-length", b"0"), (b"content-length", b"0")],
    "invalid authority": [*GOOD[:3], (b":authority", b"a b")],
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_request_is_a_400_on_its_stream_alone(h2c_host, case):
    """RFC 9113 8.1.1: a malformed request is an error of its stream; the connection
    and its other streams go on, and no app sees the request."""
    with raw_h2(h2c_host) as client:
        status, _, _ = client.response(client.send(MALFORMED[case]))
        assert status == 400, case
        status, _, body = client.response(client.send([*GOOD[:2], (b":path", b"/ok"), GOOD[3]]))
        assert status == 200
        assert json.loads(body)["path"] == "/ok"


def test_cookie_fields_are_joined_for_the_app(h2c_host):
    with raw_h2(h2c_host) as client:
        headers = [*GOOD, (b"cookie", b"a=1"), (b"x-b", b"2"), (b"cookie", b"c=3")]
        status, _, body = client.response(client.send(headers))
    assert status == 200
    seen = json.loads(body)["headers"]
    assert [value for name, value in seen if name == "cookie"] == ["a=1; c=3"]
    assert [name for name, _ in seen] == ["cookie", "x-b", "host"]


def test_a_host_field_stands_in_for_a_missing_authority(h2c_host):
    with raw_h2(h2c_host) as client:
        stream_id = client.request("/", authority="", extra=[("host", "example.com")])
        status, _, body = client.response(stream_id)
    assert status == 200
    assert ["host", "example.com"] in json.loads(body)["headers"]


def test_an_invalid_authority_gets_400(h2c_host):
    with raw_h2(h2c_host) as client:
        status, _, _ = client.response(client.request("/", authority="a b"))
    assert status == 400


def test_a_path_that_is_no_origin_form_gets_400(h2c_host):
    with raw_h2(h2c_host) as client:
        status, _, _ = client.response(client.request("http://x/"))
        assert status == 400
        status, _, _ = client.response(client.request("*"))  # asterisk: OPTIONS only
        assert status == 400


def test_connect_gets_501(h2c_host):
    with raw_h2(h2c_host) as client:
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            stream_id, [(":method", "CONNECT"), (":authority", "example.com:443")]
        )
        client.flush()
        status, _, _ = client.response(stream_id)
    assert status == 501


def test_head_gets_no_body(h2c_host):
    with raw_h2(h2c_host) as client:
        status, headers, body = client.response(client.request("/", method="HEAD"))
    assert status == 200
    assert body == b""
    assert headers[b"content-type"] == b"application/json"


def test_a_declared_length_over_the_limit_gets_413_before_the_body(h2c_host):
    with raw_h2(h2c_host) as client:
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":path", "/"),
                (":scheme", "http"),
                (":authority", "x"),
                ("content-length", "100000"),
            ],
        )
        client.flush()
        status, _, _ = client.response(stream_id)
    assert status == 413


def test_a_preface_split_across_reads_still_opens_http2(h2c_host):
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(
        stream_id,
        [(":method", "GET"), (":path", "/split"), (":scheme", "http"), (":authority", "x")],
        end_stream=True,
    )
    data = conn.data_to_send()
    with h2c_host.connect() as sock:
        for piece in (data[:5], data[5:17], data[17:30], data[30:]):
            sock.sendall(piece)
            time.sleep(0.05)  # separate reads on the server
        client = RawH2.__new__(RawH2)
        client.sock, client.conn, client.events, client.closed = sock, conn, [], False
        status, _, body = client.response(stream_id)
    assert status == 200
    assert json.loads(body)["path"] == "/split"


def test_an_h2_only_cleartext_listener_refuses_http11_with_505(serve):
    host = serve(listener('protocols = ["h2"]'), APPS)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().status == 505
    with h2c_client(host) as client:
        assert client.get("/").json()["http_version"] == "2"


def test_an_http11_only_listener_does_not_take_the_preface(serve):
    host = serve(listener('protocols = ["http/1.1"]'), APPS)
    with host.raw() as raw:
        raw.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        response = raw.read_response()
    assert response.status in (400, 505)


TRAILERS_APP = """
async def app(scope, receive, send):
    assert "http.response.trailers" in scope["extensions"]
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"application/grpc")]})
    await send({"type": "http.response.body", "body": b"x" * 100000, "more_body": True})
    await send({"type": "http.response.body", "body": b"end"})
    await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")],
                "more_trailers": True})
    await send({"type": "http.response.trailers", "headers": [(b"Grpc-Message", b"ok"),
                (b"content-length", b"5")]})
"""


def test_response_trailers_follow_the_body(serve):
    host = serve(
        '[listeners.web]\nbind = "127.0.0.1:0"\napp = "t"\n'
        '[apps.t]\ntarget = "apps:app"\nlifespan = "off"\n',
        TRAILERS_APP,
    )
    with raw_h2(host) as client:
        stream_id = client.request("/")
        status, _, body = client.response(stream_id)
        trailers = [e for e in client.events if isinstance(e, h2.events.TrailersReceived)]
    assert status == 200
    assert body == b"x" * 100000 + b"end"
    assert [dict(e.headers) for e in trailers] == [
        {b"grpc-status": b"0", b"grpc-message": b"ok"}  # framing fields never trail
    ]


PING_APP = """
ended = []

async def app(scope, receive, send):
    message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
    ended.append(scope["path"])
"""


def test_ping_interval_finds_a_client_that_vanished(serve):
    host = serve(
        '[listeners.web]\nbind = "127.0.0.1:0"\napp = "p"\n'
        '[listeners.web.http2]\nping_interval = "1s"\n'
        '[apps.p]\ntarget = "apps:app"\nlifespan = "off"\n',
        PING_APP,
    )
    with raw_h2(host) as answering, raw_h2(host) as silent:
        answering.request("/answering")
        silent.request("/silent")
        deadline = time.monotonic() + 6
        while "/silent" not in host.module.ended and time.monotonic() < deadline:
            answering.pump(lambda: True, timeout=0.2)  # reads, answers PINGs
            with contextlib.suppress(AssertionError):  # nothing more to read for now
                answering.pump(lambda: False, timeout=0.3)
        pings = [e for e in answering.events if isinstance(e, h2.events.PingReceived)]
        assert host.module.ended == ["/silent"]  # its app saw http.disconnect
        assert pings, "the answering client was never pinged"
        assert not answering.closed


WS_APP = """
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept", "subprotocol": "chat"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        await send({"type": "websocket.send", "text": "echo:" + text})
        if text == "bye":
            await send({"type": "websocket.close", "code": 1000})
            return
"""


def test_websocket_over_http2(serve):
    host = serve(
        '[listeners.web]\nbind = "127.0.0.1:0"\napp = "w"\n'
        '[apps.w]\ntarget = "apps:app"\nlifespan = "off"\n',
        WS_APP,
    )
    with raw_h2(host) as client:
        ws = H2WebSocket(client, "/chat", extra=[(b"sec-websocket-protocol", b"chat, other")])
        fields = ws.response
        assert fields[b":status"] == b"200"
        assert fields[b"sec-websocket-protocol"] == b"chat"
        assert b"sec-websocket-accept" not in fields
        assert b"upgrade" not in fields
        ws.send_text("hello")
        assert ws.receive_texts(1) == ["echo:hello"]
        ws.send_text("bye")
        assert ws.receive_texts(2) == ["echo:hello", "echo:bye"]
        ws.wait_ended()
        # the connection still serves plain requests
        status, _, body = client.response(client.request("/plain"))
        assert (status, body) == (200, b"plain")


def test_a_websocket_denied_over_http2_gets_403(serve):
    host = serve(
        '[listeners.web]\nbind = "127.0.0.1:0"\napp = "w"\n'
        '[apps.w]\ntarget = "apps:app"\nlifespan = "off"\n',
        WS_APP,
    )
    with raw_h2(host) as client:
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            stream_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"http"),
                (b":path", b"/deny"),
                (b":authority", b"x"),
                (b"sec-websocket-version", b"13"),
            ],
        )
        client.flush()
        status, _, _ = client.response(stream_id)
    assert status == 403

"""One request through a real listener: the scope, the request body, the response framing.

Raw sockets where the bytes matter, httpx elsewhere. Apps live in the
`apps` module the harness writes; they report to the test through module
globals and `threading.Event`s that the test waits on with a timeout.
"""

import json
import socket
import threading

import pytest

from uvhost.server.exchange import READ_HIGH_WATER

APPS = r'''
import asyncio
import json
import threading

scopes = []
messages = []
first_chunk = threading.Event()
waiting_for_disconnect = threading.Event()
disconnected = threading.Event()
gate = threading.Event()
reading = threading.Event()
received_total = 0
sent_chunks = 0


async def scope_app(scope, receive, send):
    assert scope["type"] == "http"
    scopes.append(scope)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def record_body(scope, receive, send):
    """Answers with every http.request message it received: [[length, more_body], ...]."""
    assert scope["type"] == "http"
    got, body = [], b""
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        got.append([len(message["body"]), message["more_body"]])
        body += message["body"]
        if message["more_body"]:
            first_chunk.set()
        else:
            break
    payload = json.dumps({"messages": got, "body": body.decode("latin-1")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


async def wait_disconnect(scope, receive, send):
    """Reads what arrives, then keeps receiving until the client goes away."""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] == "http.disconnect":
            disconnected.set()
            return
        if not message.get("more_body"):
            waiting_for_disconnect.set()


async def stream(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    await asyncio.to_thread(gate.wait, 5)
    await send({"type": "http.response.body", "body": b"second", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def chunks(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello", "more_body": True})
    await send({"type": "http.response.body", "body": b" world", "more_body": True})
    await send({"type": "http.response.body", "body": b"!", "more_body": False})


async def status(scope, receive, send):
    """GET/HEAD /NNN answers status NNN and tries to send a body anyway."""
    code = int(scope["path"].rsplit("/", 1)[-1])
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"text/plain"), (b"x-status", str(code).encode())]})
    await send({"type": "http.response.body", "body": b"body!"})


async def stream_head(scope, receive, send):
    """A streamed response (no content-length) answered to HEAD as well."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"abc", "more_body": True})
    await send({"type": "http.response.body", "body": b"def"})


async def continue_reader(scope, receive, send):
    """Waits for the gate, then reads the body (which triggers 100 Continue) and echoes it."""
    scopes.append(scope)
    reading.set()
    await asyncio.to_thread(gate.wait, 5)
    body = b""
    while True:
        message = await receive()
        body += message["body"]
        if not message["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def no_reader(scope, receive, send):
    """Answers at once without reading the body."""
    await send({"type": "http.response.start", "status": 403, "headers": []})
    await send({"type": "http.response.body", "body": b"no thanks"})


async def slow_consumer(scope, receive, send):
    """Reads nothing until the gate opens, then counts the body."""
    global received_total
    reading.set()
    await asyncio.to_thread(gate.wait, 10)
    while True:
        message = await receive()
        received_total += len(message["body"])
        if not message["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(received_total).encode()})


async def linger(scope, receive, send):
    """Completes its response, then keeps running (no await of the connection's) for 5 s."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})
    await asyncio.sleep(5)


async def dawdle(scope, receive, send):
    """Waits 5 s before it answers."""
    await asyncio.sleep(5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


async def firehose(scope, receive, send):
    """Streams 64 KiB chunks as fast as `send` lets it, up to 256 MiB."""
    global sent_chunks
    block = b"x" * 65536
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(4096):
        await send({"type": "http.response.body", "body": block, "more_body": True})
        sent_chunks += 1
        if disconnected.is_set():
            break
    await send({"type": "http.response.body", "body": b""})
'''

ROUTES = {
    "scope": "/scope",
    "record_body": "/body",
    "wait_disconnect": "/disconnect",
    "stream": "/stream",
    "chunks": "/chunks",
    "status": "/status",
    "stream_head": "/stream-head",
    "continue_reader": "/continue",
    "no_reader": "/no-reader",
    "slow_consumer": "/slow-consumer",
    "firehose": "/firehose",
    "linger": "/linger",
    "dawdle": "/dawdle",
}


def config(**listener: str) -> str:
    routes = ", ".join(f'"{path}" = "{app}"' for app, path in ROUTES.items())
    extra = "".join(f"{key} = {value}\n" for key, value in listener.items())
    apps = "".join(
        f'[apps.{app}]\ntarget = "apps:{"scope_app" if app == "scope" else app}"\n'
        'max_body_bytes = "256MiB"\nlifespan = "off"\n'
        for app in ROUTES
    )
    return (
        f'[listeners.main]\nbind = "127.0.0.1:0"\nroutes = {{ {routes} }}\n'
        f"server_header = false\ndate_header = false\n{extra}\n{apps}"
    )


@pytest.fixture
def host(serve):
    return serve(config(), APPS)


# ------------------------------------------------------------------- scope


def test_scope_has_every_key(host):
    with host.raw() as raw:
        raw.send(
            b"GET /scope/caf%C3%A9/x%20y%2Fz?a=1&b=%20&c HTTP/1.1\r\n"
            b"Host: example.test\r\n"
            b"X-Dup: one\r\n"
            b"Content-Type: Text/Plain\r\n"
            b"x-dup: two\r\n"
            b"\r\n"
        )
        assert raw.read_response().status == 200
        client_port = raw.sock.getsockname()[1]
    scope = host.module.scopes[-1]
    assert set(scope) == {
        "type", "asgi", "http_version", "method", "scheme", "path", "raw_path",
        "query_string", "root_path", "headers", "client", "server", "state",
    }  # fmt: skip
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["asgi"]["spec_version"].startswith("2.")
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/café/x y/z"
    assert scope["raw_path"] == b"/scope/caf%C3%A9/x%20y%2Fz"
    assert scope["query_string"] == b"a=1&b=%20&c"
    assert scope["root_path"] == "/scope"
    assert scope["headers"] == [
        (b"host", b"example.test"),
        (b"x-dup", b"one"),
        (b"content-type", b"Text/Plain"),
        (b"x-dup", b"two"),
    ]
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in scope["headers"])
    assert tuple(scope["client"]) == ("127.0.0.1", client_port)
    assert tuple(scope["server"]) == ("127.0.0.1", host.port())
    assert scope["state"] == {}


def test_scope_without_query_and_other_methods(host):
    response = host.request("DELETE", "/scope")
    assert response.status_code == 200
    scope = host.module.scopes[-1]
    assert scope["method"] == "DELETE"
    assert scope["query_string"] == b""
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == b"/scope"


def test_scope_http10(host):
    with host.raw() as raw:
        raw.send(b"GET /scope HTTP/1.0\r\n\r\n")
        response = raw.read_response()
        assert response.status == 200
    assert host.module.scopes[-1]["http_version"] == "1.0"


def test_scope_is_fresh_per_request(host):
    with host.client() as client:
        client.get("/scope/a")
        client.get("/scope/b")
    first, second = host.module.scopes[-2:]
    assert first is not second
    assert first["path"] == "/scope/a"
    assert second["path"] == "/scope/b"


def test_scope_from_an_absolute_form_target(host):
    with host.raw() as raw:
        raw.send(b"GET http://example.test/scope/abs?q=1 HTTP/1.1\r\nHost: example.test\r\n\r\n")
        assert raw.read_response().status == 200
    scope = host.module.scopes[-1]
    assert scope["path"] == "/scope/abs"
    assert scope["raw_path"] == b"/scope/abs"
    assert scope["query_string"] == b"q=1"


def test_options_asterisk_reaches_the_app_owning_the_port(serve):
    whole_port = (
        '[listeners.main]\nbind = "127.0.0.1:0"\napp = "scope"\n\n'
        '[apps.scope]\ntarget = "apps:scope_app"\nlifespan = "off"\n'
    )
    host = serve(whole_port, APPS)
    with host.raw() as raw:
        raw.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().status == 200
        raw.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection stays usable
        assert raw.read_response().status == 200
    asterisk = host.module.scopes[-2]
    assert asterisk["method"] == "OPTIONS"
    assert asterisk["path"] == "*"
    assert asterisk["raw_path"] == b"*"
    assert asterisk["query_string"] == b""


@pytest.mark.parametrize(
    ("method", "status"),
    [
        (b"OPTIONS", 404),  # no app owns the port or "/" on this listener
        (b"GET", 400),  # the asterisk-form is for OPTIONS only: bad input, closed
    ],
)
def test_asterisk_target_without_a_root_app(host, method, status):
    with host.raw() as raw:
        raw.send(method + b" * HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().status == status
        if status == 400:
            assert raw.closed_by_server()


def test_scope_with_invalid_utf8_percent_escape(host):
    with host.raw() as raw:
        raw.send(b"GET /scope/%FF%00x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().status == 200
    scope = host.module.scopes[-1]
    assert scope["raw_path"] == b"/scope/%FF%00x"
    assert scope["path"] == "/scope/\ufffd\x00x"


def test_raw_non_ascii_target_is_refused_not_crashed(host):
    with host.raw() as raw:
        raw.send(b"GET /scope/caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
    if response.status == 200:
        assert host.module.scopes[-1]["raw_path"] == b"/scope/caf\xc3\xa9"
    else:
        assert response.status == 400
    assert host.request("GET", "/scope").status_code == 200


# ------------------------------------------------------------- request body


def test_body_with_content_length_is_one_message(host):
    response = host.request("POST", "/body", content=b"hello world")
    assert response.json() == {"messages": [[11, False]], "body": "hello world"}


def test_no_body_is_one_empty_message(host):
    response = host.request("GET", "/body")
    assert response.json() == {"messages": [[0, False]], "body": ""}


def test_chunked_upload_arrives_in_pieces(host):
    with host.raw() as raw:
        raw.send(
            b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        assert host.module.first_chunk.wait(5), "the app never saw the first chunk"
        raw.send(b"6\r\n world\r\n0\r\n\r\n")
        response = raw.read_response()
    result = json.loads(response.body)
    assert result["body"] == "hello world"
    messages = result["messages"]
    assert messages[0] == [5, True]
    assert messages[-1][1] is False
    assert sum(length for length, _ in messages) == 11


def test_large_bodies_round_trip(host):
    payload = bytes(range(256)) * 4096  # 1 MiB
    response = host.request("POST", "/body", content=payload)
    assert response.json()["body"].encode("latin-1") == payload
    with host.client() as client:
        chunked = client.post("/body", content=iter([payload[:1000], payload[1000:]]))
    assert chunked.json()["body"].encode("latin-1") == payload


def test_unread_body_is_skipped_and_the_connection_reused(host):
    with host.raw() as raw:
        raw.send(b"POST /no-reader HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        assert raw.read_response().status == 403
        raw.send(b"hello" + b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().body == b"ok"


def test_disconnect_after_the_body(host):
    raw = host.raw()
    raw.send(b"POST /disconnect HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert host.module.waiting_for_disconnect.wait(5)
    raw.close()
    assert host.module.disconnected.wait(5), "the app never got http.disconnect"
    assert host.module.messages[0] == {"type": "http.request", "body": b"abc", "more_body": False}
    assert host.module.messages[-1] == {"type": "http.disconnect"}


def test_disconnect_in_the_middle_of_the_body(host):
    raw = host.raw()
    raw.send(b"POST /disconnect HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    raw.close()
    assert host.module.disconnected.wait(5), "the app never got http.disconnect"
    assert host.module.messages[-1] == {"type": "http.disconnect"}
    body = b"".join(m.get("body", b"") for m in host.module.messages)
    assert body in (b"", b"abc")
    assert all(m.get("more_body", False) for m in host.module.messages[:-1])


# ------------------------------------------------------------------ response


def test_streaming_sends_each_chunk_without_waiting_for_the_next(host):
    with host.raw() as raw:
        raw.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head = raw.read_until(b"\r\n\r\n")
        assert head == (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        assert raw.read_until(b"5\r\nfirst\r\n") == b"5\r\nfirst\r\n"
        host.module.gate.set()
        assert raw.read_until(b"0\r\n\r\n") == b"6\r\nsecond\r\n0\r\n\r\n"


def test_chunked_bytes_on_the_wire(host):
    with host.raw() as raw:
        raw.send(b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
    assert response.raw == (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n1\r\n!\r\n0\r\n\r\n"
    )
    assert response.body == b"hello world!"


def test_chunked_to_http10_is_closed_instead(host):
    with host.raw() as raw:
        raw.send(b"GET /chunks HTTP/1.0\r\n\r\n")
        data = raw.read_to_close()
    assert data == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello world!"


def test_complete_body_gets_content_length(host):
    with host.raw() as raw:
        raw.send(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().raw == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@pytest.mark.parametrize("path", ["/status/200", "/stream-head"])
def test_head_has_headers_and_no_body_and_keeps_the_connection(host, path):
    with host.raw() as raw:
        raw.send(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = raw.read_response(head=True)
        assert response.status == 200
        assert response.header("transfer-encoding") is None
        if path == "/status/200":
            assert response.header("x-status") == b"200"
        raw.send(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        follow = raw.read_response()  # any leaked body bytes would break this parse
        assert follow.raw == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(host, code):
    with host.raw() as raw:
        raw.send(f"GET /status/{code} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = raw.read_response()
        assert response.status == code
        assert response.header("content-length") is None
        assert response.header("transfer-encoding") is None
        assert response.raw.endswith(b"x-status: %d\r\n\r\n" % code)
        raw.send(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().raw == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_a_complete_response_leaves_while_its_app_keeps_running(host):
    """Responses are held to the end of the loop turn, never until the app returns."""
    with host.raw(timeout=3) as raw:
        for _ in range(2):  # and the connection serves the next request meanwhile
            raw.send(b"GET /linger HTTP/1.1\r\nHost: x\r\n\r\n")
            response = raw.read_response()
            assert response.status == 200
            assert response.body == b"done"


def test_responses_ready_together_never_wait_for_the_apps_beside_them(host):
    """Many requests in flight at once, so apps share loop turns; every other app waits
    5 s before answering, or keeps running after its answer: the quick answers still
    arrive at once (nothing is held past the turn that completed it)."""
    raws = [host.raw(timeout=3) for _ in range(40)]
    try:
        for index, raw in enumerate(raws):
            path = (b"/scope/quick", b"/dawdle", b"/linger", b"/dawdle")[index % 4]
            raw.send(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        quick = [raw.read_response() for index, raw in enumerate(raws) if index % 2 == 0]
    finally:
        for raw in raws:
            raw.close()
    assert [response.status for response in quick] == [200] * 20


def test_httpx_sees_streamed_and_plain_responses(host):
    host.module.gate.set()
    with host.client() as client:
        assert client.get("/stream").text == "firstsecond"
        assert client.get("/chunks").text == "hello world!"
        assert client.head("/status/200").content == b""
        assert client.get("/status/204").status_code == 204


# ---------------------------------------------------------- Expect: 100-continue


def test_100_continue_is_sent_only_when_the_app_reads(host):
    with host.raw() as raw:
        raw.send(
            b"POST /continue HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert host.module.reading.wait(5)
        raw.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            raw.read_until(b"\r\n\r\n")  # the app has not asked for the body yet
        raw.sock.settimeout(5)
        host.module.gate.set()
        interim = raw.read_response()
        assert interim.status == 100
        assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
        raw.send(b"hello")
        final = raw.read_response()
        assert (final.status, final.body) == (200, b"hello")
        raw.send(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().body == b"ok"  # still keep-alive


def test_no_100_continue_when_the_app_answers_without_reading(host):
    with host.raw() as raw:
        raw.send(
            b"POST /no-reader HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        response = raw.read_response()
        assert response.status == 403
        assert response.body == b"no thanks"
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()


def test_100_continue_ignored_on_http10(host):
    with host.raw() as raw:
        raw.send(b"POST /body HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
        response = raw.read_response()
        assert response.status == 200
        assert json.loads(response.body)["body"] == "hello"


# -------------------------------------------------------------- back-pressure


def _connections(host):
    async def snapshot():
        contexts = host.worker.contexts
        return [connection for context in contexts for connection in context.connections]

    return host.call(snapshot)


def test_read_back_pressure_stops_reading_a_body_the_app_does_not_consume(host):
    total = 64 * 1024 * 1024
    block = b"b" * (256 * 1024)
    sock = host.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    with sock:
        sock.sendall(
            b"POST /slow-consumer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total
        )
        assert host.module.reading.wait(5)
        sent = 0
        sock.settimeout(1.0)
        try:
            while sent < total:
                sent += sock.send(block[: total - sent])
        except TimeoutError:
            pass
        assert sent < total // 2, f"the server kept reading ({sent} bytes accepted)"
        [connection] = _connections(host)
        assert connection.reading_paused
        assert connection.parsing.buffered < READ_HIGH_WATER + 1024 * 1024

        host.module.gate.set()  # the app consumes: reading resumes, the rest goes through
        sock.settimeout(5)
        while sent < total:
            sent += sock.send(block[: total - sent])
        response = b""
        while not response.endswith(str(total).encode()):
            chunk = sock.recv(65536)
            assert chunk, response
            response += chunk
    assert host.module.received_total == total


def test_write_back_pressure_blocks_send_while_the_client_does_not_read(host):
    sock = host.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with sock:
        sock.sendall(b"GET /firehose HTTP/1.1\r\nHost: x\r\n\r\n")
        # Wait until the app is stuck in `send`: its count stops moving.
        previous, stable = -1, 0
        for _ in range(50):
            done = threading.Event()
            done.wait(0.1)
            count = host.module.sent_chunks
            stable = stable + 1 if count == previous else 0
            previous = count
            if stable >= 5:
                break
        assert stable >= 5, f"send never blocked: {previous} chunks of 64 KiB sent"
        assert previous < 512, f"{previous} chunks of 64 KiB accepted without a reader"
        [connection] = _connections(host)
        assert connection.transport.get_write_buffer_size() < 8 * 1024 * 1024
        assert connection.flow.blocked is not None  # the app awaits the transport's resume
        # Reading lets the app go on. What the kernel already holds (the
        # server's send buffer can autotune to several MiB on loopback) drains
        # first, so read until the app moves, up to the app's whole output.
        sock.settimeout(5)
        received = 0
        while host.module.sent_chunks <= previous and received < 64 * 1024 * 1024:
            chunk = sock.recv(1 << 20)
            assert chunk
            received += len(chunk)
        assert host.module.sent_chunks > previous, f"still stuck after {received} bytes read"
        host.module.disconnected.set()

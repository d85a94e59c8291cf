"""Connections: keep-alive and its timeout, pipelining, Connection: close, HTTP/1.0, limits."""

import asyncio
import contextlib
import select
import socket
import threading
import time

import pytest

APPS = r'''
import asyncio
import threading

calls = []
gate = threading.Event()
first_started = threading.Event()
body_calls = 0


async def peer(scope, receive, send):
    """Answers with the client's port: equal ports mean one connection."""
    body = str(scope["client"][1]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def ordered(scope, receive, send):
    """/ordered/N answers N; request 1 waits for the gate first."""
    number = scope["path"].rsplit("/", 1)[-1]
    calls.append(number)
    if number == "1":
        first_started.set()
        await asyncio.to_thread(gate.wait, 5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": number.encode()})


async def body_reader(scope, receive, send):
    global body_calls
    body_calls += 1
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message["body"])
        if not message["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def late_reader(scope, receive, send):
    """Reads the body only after a pause longer than the listener's body_timeout."""
    await asyncio.sleep(1.6)
    await body_reader(scope, receive, send)


async def noread(scope, receive, send):
    """Answers at once, body unread."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"early"})


async def headers_after_body(scope, receive, send):
    """Reads the whole body first, then answers with the headers its scope holds."""
    while (await receive()).get("more_body"):
        pass
    body = b"\n".join(name + b": " + value for name, value in scope["headers"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def early_stream(scope, receive, send):
    """Starts streaming the response, then reads the body."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"started", "more_body": True})
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message["more_body"]:
            break
    await send({"type": "http.response.body", "body": b"done"})
'''

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
keep_alive_timeout = "1s"
header_timeout = "1s"
body_timeout = "1s"
max_header_bytes = "1KiB"

[listeners.main.routes]
"/peer" = "peer"
"/ordered" = "ordered"
"/body" = "body_reader"
"/early" = "early"
"/late" = "late"
"/noread" = "noread"
"/headers" = "headers_after_body"

[listeners.slowhead]
bind = "127.0.0.1:0"
app = "peer4"
keep_alive_timeout = "1s"
header_timeout = "3s"

[listeners.limited]
bind = "127.0.0.1:0"
app = "peer2"
limit_concurrency = 1

[listeners.patient]
bind = "127.0.0.1:0"
app = "peer3"
keep_alive_timeout = "30s"
header_timeout = "1s"

[apps.peer]
target = "apps:peer"
lifespan = "off"

[apps.peer2]
target = "apps:peer"
lifespan = "off"

[apps.peer3]
target = "apps:peer"
lifespan = "off"

[apps.peer4]
target = "apps:peer"
lifespan = "off"

[apps.noread]
target = "apps:noread"
lifespan = "off"

[apps.headers_after_body]
target = "apps:headers_after_body"
lifespan = "off"

[apps.ordered]
target = "apps:ordered"
lifespan = "off"

[apps.body_reader]
target = "apps:body_reader"
lifespan = "off"
max_body_bytes = "1KiB"

[apps.late]
target = "apps:late_reader"
lifespan = "off"

[apps.early]
target = "apps:early_stream"
lifespan = "off"
max_body_bytes = "1KiB"
"""

GET = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


# ---------------------------------------------------------------- keep-alive


def test_keep_alive_serves_several_requests_on_one_connection(host):
    with host.client() as client:
        ports = {client.get("/peer").text for _ in range(5)}
    assert len(ports) == 1


def test_keep_alive_on_a_raw_socket(host):
    with host.raw() as raw:
        for _ in range(3):
            raw.send(GET % b"/peer")
            response = raw.read_response()
            assert response.status == 200
            assert response.header("connection") is None
        assert response.body == str(raw.sock.getsockname()[1]).encode()


def test_idle_keep_alive_connection_is_closed_after_the_timeout(host):
    with host.raw() as raw:
        raw.send(GET % b"/peer")
        raw.read_response()
        idle_from = time.monotonic()
        assert raw.closed_by_server(timeout=5)
        waited = time.monotonic() - idle_from
    assert 0.9 <= waited < 4, waited


def test_connection_that_never_sends_is_closed_after_the_keep_alive_timeout(host):
    with host.raw() as raw:
        started = time.monotonic()
        assert raw.closed_by_server(timeout=5)
        assert time.monotonic() - started >= 0.9


# ---------------------------------------------------------------- pipelining


def test_pipelined_requests_are_answered_in_order(host):
    with host.raw() as raw:
        raw.send(GET % b"/ordered/1" + GET % b"/ordered/2" + GET % b"/ordered/3")
        assert host.module.first_started.wait(5)
        assert host.module.calls == ["1"]  # the others wait for the first to finish
        host.module.gate.set()
        bodies = [raw.read_response().body for _ in range(3)]
    assert bodies == [b"1", b"2", b"3"]
    assert host.module.calls == ["1", "2", "3"]


def test_pipelined_bodies_stay_with_their_requests(host):
    post = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
    with host.raw() as raw:
        raw.send(post % (3, b"abc") + post % (0, b"") + post % (5, b"hello") + GET % b"/peer")
        answers = [raw.read_response().body for _ in range(4)]
    assert answers[:3] == [b"3", b"0", b"5"]


def test_a_client_that_pipelines_and_never_reads_stalls_in_its_own_buffers(host):
    """A finished answer is written whole, with no app `send` left to wait: a client that
    sends requests and reads nothing would grow our write buffer without end. The next
    request waits for the client to read (reading pauses meanwhile); once it reads, every
    request is answered, in order, on the same connection."""
    request = GET % b"/peer"
    wire = request * 2000
    raw = host.raw()
    sock = raw.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    # Small, but above loopback's 64 KiB segment: a receive buffer below one segment made
    # the kernel wait out its 200 ms persist timer again and again while the answers were
    # read back (58 s instead of 5 in a loaded run).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    port = str(sock.getsockname()[1]).encode()

    async def look() -> dict[str, int]:
        (connection,) = [c for ctx in host.worker.contexts for c in ctx.connections]
        transport = connection.transport
        return {
            "buffer": transport.get_write_buffer_size(),
            "high": transport.get_write_buffer_limits()[1],
            "waiting": len(connection.pipeline),
        }

    # Stalled means the server says a request waits for the client to read: not being able
    # to send for a while may only mean the server (a thread of this process, sharing its
    # GIL) has not had its turn yet. Its write buffer stays bounded all along.
    sock.setblocking(False)
    sent = 0
    state = {"waiting": 0}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sent < 64 * 1024 * 1024:
        try:
            sent += sock.send(wire[sent % len(request) :])  # aligned: wire is whole requests
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], 0.5)
            if not writable:
                state = host.call(look)
                assert state["buffer"] <= state["high"] + len(request) * 4
                if state["waiting"] >= 1:  # the next request waits for the client to read
                    break
    assert state["waiting"] >= 1, f"the client sent {sent / 2**20:.0f} MiB without stalling"
    print(
        f"\npipelining, never reading: the client stalled after {sent // len(request)} requests;"
        f" the server's write buffer {state['buffer'] / 1024:.0f} KiB (mark"
        f" {state['high'] / 1024:.0f})"
    )

    sock.setblocking(True)
    sock.settimeout(30)  # ~100,000 answers to read back, on a machine that may be busy
    rest = request[sent % len(request) :] if sent % len(request) else b""
    last = b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    sender = threading.Thread(target=sock.sendall, args=(rest + last,))
    sender.start()
    with raw:
        bodies = []
        while not bodies or bodies[-1][1] != b"close":
            response = raw.read_response()
            bodies.append((response.body, response.header("connection")))
        sender.join(30)
    expected = (sent + len(rest)) // len(request) + 1
    assert len(bodies) == expected
    assert {body for body, _ in bodies} == {port}


# ------------------------------------------------- endless heads and trailers


async def _two_turns() -> None:
    """Two rounds of the loop: it has polled its sockets at least once in between."""
    for _ in range(2):
        await asyncio.sleep(0)


def send_until_answered(host, raw, first: bytes, filler: bytes, most: int) -> tuple[int, bytes]:
    """Send `first`, then `filler` again and again (up to `most` bytes) until the server
    answers or closes; how much was sent, and the answer. After each send the server's
    loop takes a turn: it shares this process (and its GIL) with the client, and a loaded
    machine once let the client fill the kernel's buffers with 4 MiB before the server
    read any of it, so `sent` measured the scheduler instead of the server."""
    raw.send(first)
    sent = len(first)
    raw.sock.setblocking(False)
    answer = b""
    while sent < most:
        try:
            sent += raw.sock.send(filler)
            host.call(_two_turns)
        except BlockingIOError:
            select.select([raw.sock], [raw.sock], [], 0.5)
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = raw.sock.recv(65536)
        except BlockingIOError:
            continue
        except ConnectionResetError:
            break
        answer += chunk
        if not chunk or b"\r\n\r\n" in answer:
            break
    raw.sock.setblocking(True)
    with contextlib.suppress(OSError):
        answer += raw.read_to_close()
    return sent, answer


@pytest.mark.parametrize(
    ("where", "first", "status"),
    [
        ("a header value", b"GET /peer HTTP/1.1\r\nHost: x\r\nX-Endless: ", b"431"),
        ("a header name", b"GET /peer HTTP/1.1\r\nHost: x\r\nX-Endless", b"431"),
        ("the target", b"GET /peer?", b"414"),
    ],
)
def test_an_endless_head_is_cut_at_max_header_bytes(host, where, first, status):
    """httptools gathers an unfinished header by copying it again on every read and our
    size check saw it only once it ended: an endless one took memory and the loop
    without bound (+175 MiB and seconds-long stalls in a hunt). Now the reads into one
    head are counted: 431 (414 for the target) long before the client has sent 1 MiB."""
    with host.raw() as raw:
        sent, answer = send_until_answered(host, raw, first, b"a" * 16384, 8 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 %s " % status), (where, sent, answer[:80])
    assert sent < 1024 * 1024, where


def test_an_endless_trailer_is_cut(host):
    """The same for a trailer after the last chunk: 431, not a worker growing until the
    body timeout (a hunt saw +305 MiB in 25 s)."""
    head = b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with host.raw() as raw:
        first = head + b"3\r\nabc\r\n0\r\nX-Trailer: "
        sent, answer = send_until_answered(host, raw, first, b"t" * 16384, 8 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 431 "), (sent, answer[:80])
    assert sent < 1024 * 1024


def test_trailers_never_reach_the_apps_headers(host):
    """RFC 9110 6.5: trailer fields are not header fields. They were appended to the list
    the running request's scope holds, so an app reading headers after the body saw a
    second Host and a forged Authorization."""
    request = (
        b"POST /headers HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nHost: evil.example\r\nAuthorization: Bearer forged\r\n\r\n"
    )
    with host.raw() as raw:
        raw.send(request)
        response = raw.read_response()
    assert response.status == 200
    assert b"good.example" in response.body
    assert b"evil" not in response.body
    assert b"authorization" not in response.body
    with host.raw() as raw:  # and a legitimate trailer section is simply accepted
        raw.send(request.replace(b"/headers", b"/body"))
        assert raw.read_response().body == b"3"


def test_a_body_finished_after_the_answer_leaves_the_connection_idle(host):
    """The app answered before the body was all in; the rest came later. The connection
    is idle from then on and the keep-alive timeout (1 s) closes it; it used to stay
    open with no timer at all."""
    with host.raw(timeout=10) as raw:
        raw.send(b"POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        assert raw.read_response().body == b"early"
        time.sleep(0.3)
        raw.send(b"67890")
        started = time.monotonic()
        assert raw.closed_by_server()
        assert time.monotonic() - started < 4


def test_a_slow_head_gets_header_timeout_not_keep_alive_timeout(host):
    """keep_alive_timeout 1 s, header_timeout 3 s: once a head has begun, the idle timer
    must not cut it; it was closed at 1 s, without a 408."""
    with host.raw("slowhead", timeout=10) as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(2)
        raw.send(b"\r\n")
        assert raw.read_response().status == 200
        raw.send(b"GET / HTTP/1.1\r\n")  # after a keep-alive request too, then 408 at 3 s
        started = time.monotonic()
        response = raw.read_response()
        assert response.status == 408
        assert 2 < time.monotonic() - started < 5


# -------------------------------------------------------------- closing rules


def test_connection_close_is_honoured(host):
    with host.raw() as raw:
        raw.send(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = raw.read_response()
        assert response.status == 200
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()


def test_pipelined_request_after_connection_close_is_not_run(host):
    host.module.gate.set()
    with host.raw() as raw:
        raw.send(
            b"GET /ordered/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET % b"/ordered/3"
        )
        response = raw.read_response()
        assert response.body == b"2"
        assert raw.closed_by_server()
    assert host.module.calls == ["2"]


def test_http10_closes_by_default(host):
    with host.raw() as raw:
        raw.send(b"GET /peer HTTP/1.0\r\n\r\n")
        response = raw.read_response()
        assert response.status == 200
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()


def test_http10_keep_alive_when_asked(host):
    with host.raw() as raw:
        request = b"GET /peer HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        raw.send(request)
        first = raw.read_response()
        assert first.header("connection") == b"keep-alive"
        raw.send(request)
        second = raw.read_response()
        assert second.status == 200
        assert first.body == second.body


# ------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("listener", "sent"),
    [
        ("patient", b"GET / HTTP/1.1\r\nHost: x\r\n"),  # the blank line never comes
        ("main", b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n123"),
    ],
    ids=["slow head", "stalled body"],
)
def test_a_slow_head_or_a_stalled_body_gets_408_and_a_close(host, listener, sent):
    with host.raw(listener=listener) as raw:
        raw.send(sent)
        started = time.monotonic()
        response = raw.read_response()
        waited = time.monotonic() - started
        assert response.status == 408
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()
    assert 0.9 <= waited < 4, waited


def test_slow_head_after_a_keep_alive_request_gets_408(host):
    with host.raw(listener="patient") as raw:
        raw.send(GET % b"/")
        assert raw.read_response().status == 200
        raw.send(b"GET / HTTP/1.1\r\n")
        assert raw.read_response().status == 408


def test_a_body_stalling_after_the_response_began_is_closed(host):
    with host.raw() as raw:
        raw.send(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n123")
        started = time.monotonic()
        data = raw.read_to_close()  # the 200 head went out; the stall closes the connection
    assert 0.9 <= time.monotonic() - started < 4
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.endswith(b"7\r\nstarted\r\n")  # cut: no "done", no last chunk


def test_a_slow_but_steady_body_is_not_cut(host):
    with host.raw() as raw:
        raw.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
        for byte in b"abcdef":  # 3 s in all, never 1 s without a byte
            time.sleep(0.5)
            raw.send(bytes([byte]))
        response = raw.read_response()
        assert response.status == 200
        assert response.body == b"6"


def test_waiting_for_100_continue_is_not_a_stall(host):
    """The app reads the body only after 1.6 s: the client waits for 100 Continue meanwhile."""
    with host.raw() as raw:
        raw.send(
            b"POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert raw.read_response().status == 100
        raw.send(b"abcd")
        response = raw.read_response()
        assert response.status == 200
        assert response.body == b"4"


def test_request_head_too_large_gets_431(host):
    with host.raw() as raw:
        raw.send(b"GET /peer HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
        response = raw.read_response()
        assert response.status == 431
        assert raw.closed_by_server()


def test_request_url_too_large_gets_414(host):
    """RFC 9112 3: a target longer than the server parses is 414 URI Too Long."""
    with host.raw() as raw:
        raw.send(b"GET /peer?" + b"q" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().status == 414
        assert raw.closed_by_server()


def test_many_small_headers_add_up_to_431(host):
    headers = b"".join(b"X-H%d: v\r\n" % n for n in range(200))
    with host.raw() as raw:
        raw.send(b"GET /peer HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert raw.read_response().status == 431


def test_head_just_under_the_limit_is_served(host):
    with host.raw() as raw:
        raw.send(b"GET /peer HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 800 + b"\r\n\r\n")
        assert raw.read_response().status == 200


def test_declared_body_too_large_gets_413_without_running_the_app(host):
    with host.raw() as raw:
        raw.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        response = raw.read_response()
        assert response.status == 413
        assert response.header("connection") == b"close"
        assert raw.closed_by_server()
    assert host.module.body_calls == 0


def test_body_at_the_limit_is_accepted(host):
    assert host.request("POST", "/body", content=b"x" * 1024).text == "1024"


def test_chunked_body_too_large_gets_413_before_the_response(host):
    with host.raw() as raw:
        raw.send(b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        raw.send(b"400\r\n" + b"a" * 1024 + b"\r\n")
        raw.send(b"10\r\n" + b"b" * 16 + b"\r\n0\r\n\r\n")
        response = raw.read_response()
        assert response.status == 413
        assert raw.closed_by_server()


def test_chunked_body_too_large_after_the_response_started_closes(host):
    with host.raw() as raw:
        raw.send(b"POST /early HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert raw.read_until(b"7\r\nstarted\r\n").startswith(b"HTTP/1.1 200 OK")
        raw.send(b"800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\n")
        rest = raw.read_to_close()
        assert b"0\r\n\r\n" not in rest  # the response was cut, not completed
        assert b"413" not in rest


def test_limit_concurrency_answers_503_beyond_the_limit(host):
    with host.raw(listener="limited") as first:
        first.send(GET % b"/")
        assert first.read_response().status == 200  # the connection stays open, idle
        with host.raw(listener="limited") as second:
            second.send(GET % b"/")
            response = second.read_response()
            assert response.status == 503
            assert second.closed_by_server()
        first.send(GET % b"/")
        assert first.read_response().status == 200
    _wait_for(lambda: host.connections() == 0)
    assert host.request("GET", "/", listener="limited").status_code == 200


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.02)


def test_a_pipelined_body_over_the_limit_gets_413_after_the_earlier_answers(serve):
    """Found by the long fuzz run: a pipelined request whose body is over max_body_bytes
    closed the connection at once, cutting off the requests before it unanswered."""
    host = serve(
        '[listeners.main]\nbind = "127.0.0.1:0"\napp = "a"\n'
        '[apps.a]\ntarget = "apps:app"\nlifespan = "off"\nmax_body_bytes = 1000\n',
        "async def app(scope, receive, send):\n"
        "    while (await receive()).get('more_body'):\n"
        "        pass\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': scope['path'].encode()})\n",
    )
    big = b"5dc\r\n" + b"x" * 1500 + b"\r\n0\r\n\r\n"
    with host.raw() as raw:
        raw.send(
            b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + big
        )
        first, second, third = raw.read_response(), raw.read_response(), raw.read_response()
        assert (first.status, first.body) == (200, b"/one")
        assert (second.status, second.body) == (200, b"/two")
        assert third.status == 413
        assert raw.closed_by_server()

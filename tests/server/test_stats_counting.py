"""Request counters on a real listener: a known mix of requests, counted exactly.

One listener, apps "alpha" at /a and "beta" at /b, `@health` at /health.
Every kind of ending is sent over real sockets and `Worker.stats_sample()`
is compared with what was sent, number for number:

- 2xx from both apps, with known request bodies (bytes_in) and known
  response bodies (bytes_out: body bytes only, no head, no chunk framing;
  nothing for HEAD);
- 404 for an unrouted path, 400 for a malformed request and 413 for a
  declared body over `max_body_bytes`: the host answers those itself, on
  route "" (the app is never called);
- 413 for a chunked body that grows past the limit: the app was called, so it
  is counted on the app's route (bytes_in = the bytes read up to the limit);
- 500 for an app exception; no response (slot 0) for a client that left
  while the app worked, counted only once the app returns;
- pipelined requests, HEAD, a WebSocket accepted and closed (1xx, one
  session, the open gauge back to 0), a WebSocket denied by a close before
  accept (403);
- a slow app (35 ms) lands in the 25-50 ms bucket, or at worst the next one
  on a loaded machine.

Every key obeys the invariant: requests started == the sum of the status
slots == the sum of the latency buckets, once nothing is in flight.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from uvhost.observe import stats

TIMEOUT = 5.0

CONFIG = """
[listeners.web]
bind = "127.0.0.1:0"
routes = { "/a" = "alpha", "/b" = "beta", "/health" = "@health" }

[apps.alpha]
target = "apps:alpha"
lifespan = "off"
max_body_bytes = 1024

[apps.beta]
target = "apps:beta"
lifespan = "off"
"""

APPS = r"""
import asyncio
import threading
import time

left_entered = threading.Event()  # /a/left: the app has the request
left_saw_disconnect = threading.Event()
left_release = threading.Event()  # the test lets it return
left_returned = threading.Event()
SLOW = 0.035
ALPHA_BODY = b"a" * 20
BETA_BODY = b"b" * 1000


async def _read_body(receive):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send, body, status=200):
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def alpha(scope, receive, send):
    path = scope["path"]
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"] * 2})
    await _read_body(receive)
    if path == "/a/boom":
        raise RuntimeError("boom (on purpose)")
    if path == "/a/slow":
        await asyncio.sleep(SLOW)
    if path == "/a/left":
        left_entered.set()
        assert (await receive())["type"] == "http.disconnect"
        left_saw_disconnect.set()
        deadline = time.monotonic() + 5
        while not left_release.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        try:
            await _answer(send, ALPHA_BODY)  # ASGI 2.4: an OSError, the client is gone
        finally:
            left_returned.set()
        return
    await _answer(send, ALPHA_BODY)


async def beta(scope, receive, send):
    path = scope["path"]
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.close"})  # before accept: 403
        return
    body = await _read_body(receive)
    if path == "/b/stream":
        start = {"type": "http.response.start", "status": 200, "headers": []}
        await send(start)
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"s" * 100, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await _answer(send, body * 2 if scope["method"] == "POST" else BETA_BODY)
"""

ALPHA, BETA, HEALTH, NONE = ("web", "alpha"), ("web", "beta"), ("web", "@health"), ("web", "")


def snapshot(host):
    """`Worker.stats_sample()`, read in the worker's own loop thread: (routes, connections)."""

    async def read():
        return host.worker.stats_sample()

    routes, connections = host.call(read)
    # connections come by kind (stats.CONNECTION_KINDS), then HTTP/2 streams: the total here
    return routes, {name: sum(kinds[: stats.OPEN_STREAMS]) for name, kinds in connections.items()}


def counters(host):
    return snapshot(host)[0]


def fields(sample):
    """A sample's counters by name (FIELDS order), plus how many ended in the buckets."""
    named = dict(zip(stats.FIELDS, sample[: stats.LATENCY_BASE], strict=True))
    named["timed"] = sum(stats.latency_buckets(sample))
    return named


def expect(
    *,
    requests=0,
    none=0,
    s1=0,
    s2=0,
    s3=0,
    s4=0,
    s5=0,
    bytes_in=0,
    bytes_out=0,
    ws_open=0,
    ws=0,
    h2=0,
    proxy_rejected=0,
    slow=0,
):
    """The counters a key should have; `timed` is every request ended."""
    return {
        "requests": requests,
        "no_response": none,
        "status_1xx": s1,
        "status_2xx": s2,
        "status_3xx": s3,
        "status_4xx": s4,
        "status_5xx": s5,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "websockets_open": ws_open,
        "websockets": ws,
        "requests_h2": h2,
        "proxy_rejected": proxy_rejected,
        "slow_requests": slow,
        "timed": none + s1 + s2 + s3 + s4 + s5,
    }


def assert_ended(routes):
    """The invariant, for every key: each started request ended in exactly one slot."""
    for key, sample in routes.items():
        started = sample[stats.REQUESTS]
        slots = sample[stats.STATUS_BASE : stats.STATUS_BASE + 6]
        assert sum(slots) == started, (key, fields(sample))
        assert sum(stats.latency_buckets(sample)) == started, (key, fields(sample))


def settle(host, check, what):
    """Poll the counters (bounded) until `check(routes)` holds; return them."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        routes = counters(host)
        if check(routes):
            return routes
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {TIMEOUT}s: {routes}")
        time.sleep(0.01)


def idle(routes):
    return all(
        sample[stats.REQUESTS] == sum(sample[stats.STATUS_BASE : stats.STATUS_BASE + 6])
        and sample[stats.WEBSOCKETS_OPEN] == 0
        for sample in routes.values()
    )


def wait(event: threading.Event, what: str) -> None:
    assert event.wait(TIMEOUT), f"{what}: not within {TIMEOUT}s"


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def test_nothing_counted_before_traffic(host):
    routes = counters(host)
    assert routes == dict.fromkeys((NONE, ALPHA, BETA, HEALTH), stats.ZERO)
    assert snapshot(host)[1] == {"web": 0}


def send_ordinary_requests(host):
    """2xx from both apps and @health, HEAD, a chunked response, 404s, 500s."""
    with host.client() as client:
        for _ in range(5):
            assert client.get("/a/ok").content == b"a" * 20
        for _ in range(4):
            assert client.post("/b/echo", content=b"p" * 300).content == b"p" * 600
        assert client.get("/b/get").content == b"b" * 1000
        head = client.head("/a/ok")
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "20")
        assert client.get("/b/stream").content == b"s" * 300
        for _ in range(3):
            assert client.get("/nowhere").status_code == 404
        for _ in range(2):
            assert client.get("/a/boom").status_code == 500
        for _ in range(2):
            assert client.get("/health").content == b"ok\n"
        assert client.get("/health/live").content == b"alive\n"


def send_faults_and_pipelined(host):
    """413 declared (host), 413 chunked (alpha), 400 (host), three pipelined requests."""
    # A body declared over alpha's 1024 bytes: 413 from the host, the app never called.
    with host.raw() as raw:
        raw.send(b"POST /a/big HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n")
        assert raw.read_response().status == 413
        assert raw.closed_by_server()

    # A chunked body growing past it: the app was called, so the 413 is alpha's.
    with host.raw() as raw:
        raw.send(
            b"POST /a/big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"401\r\n" + b"c" * 0x401 + b"\r\n"
        )
        assert raw.read_response().status == 413
        assert raw.closed_by_server()

    # Not HTTP at all: 400 from the host.
    with host.raw() as raw:
        raw.send(b"GARBAGE\r\n\r\n")
        assert raw.read_response().status == 400
        assert raw.closed_by_server()

    # Three pipelined requests in one write: answered in order, each counted.
    with host.raw() as raw:
        raw.send(
            b"GET /a/ok HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /b/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\nseven!!"
            b"HEAD /b/get HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert raw.read_response().body == b"a" * 20
        assert raw.read_response().body == b"seven!!" * 2
        last = raw.read_response(head=True)
        assert (last.status, last.header("content-length")) == (200, b"1000")


def open_and_deny_websockets(host):
    """One accepted, used and closed on alpha; one denied before accept (403) on beta."""
    with connect(f"ws://127.0.0.1:{host.port()}/a/ws", open_timeout=TIMEOUT) as ws:
        ws.send("hi")
        assert ws.recv(TIMEOUT) == "hihi"
        opened = counters(host)[ALPHA]
        assert (opened[stats.WEBSOCKETS_OPEN], opened[stats.WEBSOCKETS]) == (1, 1)
    with pytest.raises(InvalidStatus) as denied:
        connect(f"ws://127.0.0.1:{host.port()}/b/ws", open_timeout=TIMEOUT)
    assert denied.value.response.status_code == 403


def send_slow_requests(host):
    """Three requests the app holds 35 ms: all in (25 ms, 50 ms], or (50, 100] when loaded."""
    with host.client() as client:
        before = counters(host)[ALPHA]
        for _ in range(3):
            assert client.get("/a/slow").status_code == 200
        after = counters(host)[ALPHA]
    slow = stats.subtract(stats.latency_buckets(after), stats.latency_buckets(before))
    assert sum(slow) == 3
    above_25ms = stats.LATENCY_BOUNDS.index(0.025) + 1  # the (25 ms, 50 ms] bucket
    assert slow[:above_25ms] == (0,) * above_25ms, slow  # never under 25 ms
    assert sum(slow[above_25ms : above_25ms + 2]) == 3, slow


def leave_while_the_app_works(host):
    """The client goes; the request is counted as no response only once the app returns."""
    module = host.module
    with host.raw() as raw:
        raw.send(b"GET /a/left HTTP/1.1\r\nHost: t\r\n\r\n")
        wait(module.left_entered, "the app got /a/left")
    wait(module.left_saw_disconnect, "the app saw the client leave")
    in_flight = counters(host)[ALPHA]
    ended = sum(in_flight[stats.STATUS_BASE : stats.STATUS_BASE + 6])
    assert in_flight[stats.REQUESTS] == ended + 1, fields(in_flight)
    module.left_release.set()
    wait(module.left_returned, "the app returned from /a/left")


def test_a_known_mix_is_counted_exactly(host):
    send_ordinary_requests(host)
    send_faults_and_pipelined(host)
    open_and_deny_websockets(host)
    send_slow_requests(host)
    leave_while_the_app_works(host)

    routes = settle(host, idle, "every request ended, every WebSocket closed")
    assert_ended(routes)
    assert {key: fields(sample) for key, sample in routes.items()} == {
        ALPHA: expect(
            # 5 ok + HEAD + 2 boom + chunked 413 + pipelined + WebSocket + 3 slow + left
            requests=15,
            none=1,  # left
            s1=1,  # the WebSocket's 101
            s2=5 + 1 + 1 + 3,  # ok, HEAD, pipelined, slow
            s4=1,  # chunked 413
            s5=2,  # boom
            bytes_in=0x401,  # the chunked body, read up to the byte past the limit
            bytes_out=20 * (5 + 1 + 3),  # HEAD sends no body; left's body was dropped
            ws=1,
        ),
        BETA: expect(
            # 4 echo + get + stream + pipelined echo + pipelined HEAD + WebSocket denied
            requests=9,
            s2=8,
            s4=1,  # 403
            bytes_in=4 * 300 + 7,
            bytes_out=4 * 600 + 1000 + 300 + 14,
        ),
        HEALTH: expect(requests=3, s2=3, bytes_out=3 + 3 + 6),
        NONE: expect(
            requests=3 + 1 + 1,  # 404s, declared 413, 400
            s4=5,
            bytes_out=3 * len(b"Not Found\n"),
        ),
    }


def test_http_connections_open_are_counted_per_listener(host):
    with host.raw() as raw:
        raw.send(b"GET /a/ok HTTP/1.1\r\nHost: t\r\n\r\n")
        assert raw.read_response().status == 200
        assert snapshot(host)[1] == {"web": 1}
    deadline = time.monotonic() + TIMEOUT
    while snapshot(host)[1] != {"web": 0}:
        assert time.monotonic() < deadline, "the closed connection is still counted"
        time.sleep(0.01)


def test_counts_go_up_by_exactly_one_request(host):
    """Nothing is counted twice: one request, one start, one ending, one latency."""
    before = counters(host)
    assert httpx.get(host.url("/b/get"), timeout=TIMEOUT).status_code == 200
    after = counters(host)
    moved = {key: stats.subtract(after[key], before[key]) for key in after}
    assert moved[ALPHA] == moved[HEALTH] == moved[NONE] == stats.ZERO
    assert fields(moved[BETA]) == expect(requests=1, s2=1, bytes_out=1000)


# ------------------------------------------------- endings at the edges

EDGES = """
[host]
graceful_timeout = "0.3s"
startup_timeout = "10s"

[listeners.web]
bind = "127.0.0.1:0"
routes = { "/a" = "alpha" }
header_timeout = "0.3s"
limit_concurrency = 3

[apps.alpha]
target = "apps:alpha"
lifespan = "off"
"""

EDGE_APPS = r"""
import asyncio
import threading
import time

stuck_entered = threading.Event()
stuck_release = threading.Event()


async def _read_body(receive):
    while (await receive()).get("more_body"):
        pass


async def alpha(scope, receive, send):
    path = scope["path"]
    if scope["type"] == "websocket":
        await receive()
        if path == "/a/ws-wait":  # never decides
            stuck_entered.set()
            while not stuck_release.is_set():
                await asyncio.sleep(0.005)
            return
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    if path == "/a/early":  # answers without reading the body
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"nope"})
        return
    await _read_body(receive)
    if path == "/a/stuck":
        stuck_entered.set()
        deadline = time.monotonic() + 10
        while not stuck_release.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return
    if path == "/a/long":  # declares 5 bytes, sends 10
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"0123456789"})
        return
    if path == "/a/short":  # declares 10 bytes, sends 4
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"0123"})
        return
    if path == "/a/silent":  # returns without a response
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""

EDGE_ALPHA = ("web", "alpha")


@pytest.fixture
def edges(serve):
    return serve(EDGES, EDGE_APPS)


def test_a_body_longer_than_declared_is_not_counted_as_sent(edges):
    """The app's extra bytes never leave: a canned 500 (not the app's body) goes out."""
    assert httpx.get(edges.url("/a/long"), timeout=TIMEOUT).status_code == 500
    routes = settle(edges, idle, "the request ended")
    assert fields(routes[EDGE_ALPHA]) == expect(requests=1, s5=1)


def test_a_body_shorter_than_declared_is_no_response_with_the_bytes_sent(edges):
    with edges.raw() as raw:
        raw.send(b"GET /a/short HTTP/1.1\r\nHost: t\r\n\r\n")
        data = raw.read_to_close()
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.endswith(b"\r\n\r\n0123"), data
    routes = settle(edges, idle, "the request ended")
    assert fields(routes[EDGE_ALPHA]) == expect(requests=1, none=1, bytes_out=4)


def test_an_app_returning_without_a_response_is_a_500(edges):
    assert httpx.get(edges.url("/a/silent"), timeout=TIMEOUT).status_code == 500
    routes = settle(edges, idle, "the request ended")
    assert fields(routes[EDGE_ALPHA]) == expect(requests=1, s5=1)


def test_the_rest_of_a_body_read_after_the_response_counts_as_bytes_in(edges):
    """An app answering before the body arrives: every body byte received is counted."""
    with edges.raw() as raw:
        raw.send(b"POST /a/early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 400)
        assert raw.read_response().status == 401
        raw.send(b"y" * 600 + b"GET /a/ok HTTP/1.1\r\nHost: t\r\n\r\n")  # then one more
        assert raw.read_response().body == b"ok"
    routes = settle(edges, idle, "the requests ended")
    assert fields(routes[EDGE_ALPHA]) == expect(requests=2, s2=1, s4=1, bytes_in=1000, bytes_out=6)


def test_host_answered_faults_count_on_route_none(edges):
    """408 (head too slow), 503 (connection limit), bad WebSocket handshakes (400, 426)."""
    with edges.raw() as slow:
        slow.send(b"GET /a/ok HTTP/1.1\r\nHost: t\r\n")  # never finished
        assert slow.read_response().status == 408
    with edges.raw() as one, edges.raw() as two, edges.raw() as three:
        for each in (one, two, three):
            each.send(b"GET /a/ok HTTP/1.1\r\nHost: t\r\n\r\n")
            assert each.read_response().status == 200  # three connections: at the limit
        with edges.raw() as four:
            assert four.read_response().status == 503
    deadline = time.monotonic() + TIMEOUT
    while edges.connections():
        assert time.monotonic() < deadline, "the closed connections are still counted"
        time.sleep(0.01)
    upgrade = b"GET /a/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    with edges.raw() as keyless:
        keyless.send(upgrade + b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert keyless.read_response().status == 400
    with edges.raw() as old:
        old.send(
            upgrade + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 8\r\n\r\n"
        )
        assert old.read_response().status == 426
    routes = settle(edges, idle, "the requests ended")
    assert_ended(routes)
    assert fields(routes[("web", "")]) == expect(requests=4, s4=3, s5=1)
    assert fields(routes[EDGE_ALPHA]) == expect(requests=3, s2=3, bytes_out=6)


def test_a_request_cut_at_the_graceful_timeout_ends_without_a_response(edges):
    """Drained while an app is stuck: what the worker reports right after the drain (as a
    worker process sends its last counts) has every request ended, no WebSocket open."""
    module = edges.module
    http = edges.raw()
    http.send(b"GET /a/stuck HTTP/1.1\r\nHost: t\r\n\r\n")
    wait(module.stuck_entered, "the app got /a/stuck")
    module.stuck_entered.clear()
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    upgrade = (
        b"GET /a/%s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    deciding = edges.raw()
    deciding.send(upgrade % b"ws-wait")
    wait(module.stuck_entered, "the app got /a/ws-wait")
    opened = edges.raw()
    opened.send(upgrade % b"ws")
    assert opened.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
    # The client never answers the close frame the drain sends: cut at 0.3 s.
    try:

        async def drain_then_sample():
            await edges.worker.drain(1001)
            return edges.worker.stats_sample()  # what child.py sends last

        routes, connections = edges.call(drain_then_sample)
    finally:
        module.stuck_release.set()
        for sock in (http, deciding, opened):
            sock.close()
    assert set(connections) == {"web"}
    assert_ended(routes)
    assert fields(routes[EDGE_ALPHA]) == expect(requests=3, none=2, s1=1, ws=1)

"""WSGI apps (PEP 3333) served through the ASGI core: environ, body, response rules, pool.

Every test talks to a real host over a socket. The apps live in the `apps` module the
harness writes; they report to the test through module-level objects (`seen`, events).
"""

from __future__ import annotations

import hashlib
import select
import time

import httpx
import pytest

from uvhost.observe import stats
from uvhost.server.http import HttpProtocol

from .conftest import TIMEOUT

APPS = r"""
import hashlib, json, sys, threading

seen = {}
closed = threading.Event()
stream_closed = threading.Event()
streaming = threading.Event()
entered = threading.Event()
gate = threading.Event()
errors_seen = []
calls = []


def conform(environ, start_response):
    seen.clear()
    seen.update(environ)
    body = environ["wsgi.input"].read()
    seen["body"] = body
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def lines(environ, start_response):
    stream = environ["wsgi.input"]
    out = {
        "first": stream.readline().decode(),
        "limited": stream.readline(3).decode(),
        "two": stream.read(2).decode(),
        "rest": [line.decode() for line in stream],
        "after": stream.read().decode(),
    }
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def readlines(environ, start_response):
    got = environ["wsgi.input"].readlines()
    data = json.dumps([line.decode() for line in got]).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


def digest(environ, start_response):
    stream, sizes, hasher = environ["wsgi.input"], [], hashlib.sha256()
    while piece := stream.read(100_000):
        sizes.append(len(piece))
        hasher.update(piece)
    data = json.dumps({"size": sum(sizes), "pieces": len(sizes),
                       "sha256": hasher.hexdigest()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


def writer(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"hello ")
    write(b"")
    return [b"wor", b"", b"ld"]


class Closing:
    def __init__(self, chunks, event):
        self.chunks, self.event = chunks, event

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.event.set()


def closing(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing([b"a", b"b"], closed)


class Endless:
    def __iter__(self):
        streaming.set()
        while True:
            yield b"x" * 65536

    def close(self):
        stream_closed.set()


def endless(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Endless()


def replaced(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise KeyError("late")
    except KeyError:
        start_response("503 Down", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced"]


def too_late(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    try:
        raise LookupError("after the head")
    except LookupError:
        start_response("500 Oops", [], sys.exc_info())
    return [b"never"]


def twice(environ, start_response):
    start_response("200 OK", [])
    start_response("201 Created", [])
    return [b"no"]


def fails(environ, start_response):
    raise ValueError("before start_response")


def no_start(environ, start_response):
    return [b"body without a head"]


def text_chunk(environ, start_response):
    start_response("200 OK", [])
    return ["not bytes"]


def overlong(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    yield b"hello"
    yield b"more"


def sized(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"hello", b"world"]


def errors(environ, start_response):
    environ["wsgi.errors"].write("first line\nsecond ")
    environ["wsgi.errors"].writelines(["line\n"])
    environ["wsgi.errors"].flush()
    start_response("204 No Content", [])
    return []


def blocking(environ, start_response):
    calls.append(environ["PATH_INFO"])
    entered.set()
    gate.wait(10)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


def wrapped_file(environ, start_response):
    path = environ["QUERY_STRING"]
    handle = open(path, "rb")
    handle.seek(int(environ.get("HTTP_X_SKIP", "0")))
    seen["handle"] = handle
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](handle, 4096)


reading = threading.Event()
reading_gate = threading.Event()


def slow_reader(environ, start_response):
    stream = environ["wsgi.input"]
    size = len(stream.read(1))
    reading.set()
    reading_gate.wait(10)
    while piece := stream.read(1 << 20):
        size += len(piece)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(size).encode()]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"asgi " + scope["path"].encode()})
"""

NAMES = [
    "conform",
    "lines",
    "readlines",
    "digest",
    "writer",
    "closing",
    "endless",
    "replaced",
    "too_late",
    "twice",
    "fails",
    "no_start",
    "text_chunk",
    "sized",
    "overlong",
    "errors",
    "wrapped_file",
]

ROUTES = ", ".join(f'"/{name}" = "{name}"' for name in NAMES)
CONFIG = f"""
[listeners.web]
bind = "127.0.0.1:0"
routes = {{ "/" = "asgi", {ROUTES} }}

[listeners.proxied]
bind = "127.0.0.1:0"
root_path = "/proxy"
routes = {{ "/wsgi" = "conform" }}

[apps.asgi]
target = "apps:asgi"
""" + "".join(f'\n[apps.{name}]\ntarget = "apps:{name}"\ninterface = "wsgi"\n' for name in NAMES)


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def raw_request(host, data: bytes, listener: str = "web"):
    with host.raw(listener) as raw:
        raw.send(data)
        return raw.read_response(), raw.sock.getsockname()


def test_environ_has_every_pep_3333_key(host):
    body = b"name=value"
    response, client = raw_request(
        host,
        b"POST /conform/caf%C3%A9/a%2Fb?q=1&r=%20 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Cookie: a=1\r\n"
        b"Cookie: b=2\r\n"
        b"X-Dup: 1\r\n"
        b"X-Dup: 2\r\n"
        b"X_Sneaky: forged\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body,
    )
    assert response.status == 200, response.raw
    env = host.module.seen
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == "/conform"
    # Percent-decoded to bytes, each byte one Latin-1 character (PEP 3333 "bytes as str").
    assert env["PATH_INFO"] == "/caf\xc3\xa9/a/b"
    assert env["QUERY_STRING"] == "q=1&r=%20"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(host.port("web"))
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_DUP"] == "1, 2"
    assert "HTTP_X_SNEAKY" not in env  # "_" in a name: dropped, it could forge X-Sneaky
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["REMOTE_ADDR"] == client[0]
    assert env["REMOTE_PORT"] == str(client[1])
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert callable(env["wsgi.file_wrapper"])
    for method in ("write", "writelines", "flush"):
        assert callable(getattr(env["wsgi.errors"], method))
    assert env["body"] == body
    for key, value in env.items():  # PEP 3333: CGI keys are native str
        if key.isupper():
            assert type(value) is str, key


def test_empty_get_has_an_empty_query_and_no_content_keys(host):
    response = host.request("GET", "/conform")
    assert response.status_code == 200
    env = host.module.seen
    assert env["SCRIPT_NAME"] == "/conform"
    assert env["PATH_INFO"] == ""
    assert env["QUERY_STRING"] == ""
    assert "CONTENT_LENGTH" not in env
    assert env["body"] == b""


def test_script_name_includes_the_listener_root_path(host):
    response = host.request("GET", "/wsgi/x/y", listener="proxied")
    assert response.status_code == 200
    env = host.module.seen
    assert env["SCRIPT_NAME"] == "/proxy/wsgi"
    assert env["PATH_INFO"] == "/x/y"


def test_readline_limits_and_iteration(host):
    body = b"line1\nline2\nline3\nend-without-newline"
    with host.client() as client:
        # A generator body goes out chunked, in pieces that split lines.
        def pieces():
            for index in range(0, len(body), 4):
                yield body[index : index + 4]

        response = client.post("/lines", content=pieces())
    assert response.status_code == 200
    assert response.json() == {
        "first": "line1\n",
        "limited": "lin",
        "two": "e2",
        "rest": ["\n", "line3\n", "end-without-newline"],
        "after": "",
    }


def test_readlines(host):
    response = host.request("POST", "/readlines", content=b"a\nb\n\nc")
    assert response.json() == ["a\n", "b\n", "\n", "c"]


def test_a_large_chunked_upload_is_read_in_pieces(host):
    size = 3 * 1024 * 1024 + 17
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)

    def pieces():
        for index in range(0, len(data), 50_000):
            yield data[index : index + 50_000]

    with host.client() as client:
        response = client.post("/digest", content=pieces())
    result = response.json()
    assert result["size"] == size
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["pieces"] == -(-size // 100_000)  # read(n) blocks for n bytes until the end


def test_write_callable_and_iterable_are_one_body(host):
    with host.raw() as raw:
        raw.send(b"GET /writer HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
    assert response.status == 200
    assert response.header("transfer-encoding") == b"chunked"  # no length: the core chunks
    assert response.body == b"hello world"


def test_content_length_from_the_app_is_passed_through(host, caplog):
    caplog.set_level("WARNING", logger="uvhost")
    with host.raw() as raw:
        raw.send(b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
        raw.send(b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection is still good
        again = raw.read_response()
    assert response.header("content-length") == b"10"
    assert response.header("transfer-encoding") is None
    assert response.body == again.body == b"helloworld"
    assert [r.getMessage() for r in caplog.records if r.name == "uvhost"] == []


def test_bytes_beyond_the_content_length_are_dropped_and_logged(host, caplog):
    caplog.set_level("WARNING", logger="uvhost")
    with host.raw() as raw:
        raw.send(b"GET /overlong HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
        raw.send(b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
        after = raw.read_response()
    assert response.body == b"hello"
    assert after.body == b"helloworld"  # the connection's framing held

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "uvhost"]

    # The app's thread logs the extra bytes after the response it ended went out, so the
    # client may have both answers first: wait for the line rather than race it.
    _wait_for(logged, "the dropped bytes to be logged")
    [line] = logged()
    assert "more than its Content-Length (5)" in line


def test_head_sends_the_length_and_no_body(host):
    with host.raw() as raw:
        raw.send(b"HEAD /sized HTTP/1.1\r\nHost: x\r\n\r\n")
        head = raw.read_response(head=True)
        raw.send(b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
        after = raw.read_response()
    assert head.status == 200
    assert head.header("content-length") == b"10"
    assert after.body == b"helloworld"  # nothing of a body was left on the connection


def test_close_is_called_at_the_end(host):
    assert host.request("GET", "/closing").text == "ab"
    assert host.module.closed.wait(TIMEOUT)


def test_close_is_called_when_the_client_leaves_mid_stream(host, errors):
    with host.raw() as raw:
        raw.send(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.read_until(b"\r\n\r\n")
        assert host.module.streaming.wait(TIMEOUT)
    assert host.module.stream_closed.wait(TIMEOUT)
    assert errors() == []  # a client that leaves is no app fault


def test_exc_info_replaces_a_head_not_yet_sent(host):
    response = host.request("GET", "/replaced")
    assert response.status_code == 503
    assert response.text == "replaced"


def test_exc_info_after_the_head_reraises_and_cuts_the_response(host, errors):
    with host.raw() as raw:
        raw.send(b"GET /too_late HTTP/1.1\r\nHost: x\r\n\r\n")
        head = raw.read_until(b"\r\n\r\n")
        rest = raw.read_to_close()
    assert head.startswith(b"HTTP/1.1 200")
    assert b"partial" in rest
    assert not rest.endswith(b"0\r\n\r\n")  # the chunked body never ends: it was cut
    [record] = errors()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], LookupError)


def test_start_response_twice_without_exc_info_is_a_500(host, errors):
    assert host.request("GET", "/twice").status_code == 500
    [record] = errors()
    assert "second time" in str(record.exc_info[1])


def test_exception_before_start_response_is_a_500(host, errors):
    response = host.request("GET", "/fails")
    assert response.status_code == 500
    [record] = errors()
    assert isinstance(record.exc_info[1], ValueError)
    assert record.getMessage() == "exception in WSGI app (GET /fails)"


@pytest.mark.parametrize(
    ("path", "words"), [("/no_start", "start_response"), ("/text_chunk", "bytes")]
)
def test_broken_responses_are_a_500(host, errors, path, words):
    assert host.request("GET", path).status_code == 500
    [record] = errors()
    assert words in str(record.exc_info[1])


def test_wsgi_errors_go_to_the_uvhost_logger(host, caplog):
    caplog.set_level("ERROR", logger="uvhost")
    assert host.request("GET", "/errors").status_code == 204
    logged = [r.getMessage() for r in caplog.records if r.name == "uvhost"]
    assert logged == ["wsgi.errors: first line", "wsgi.errors: second line"]


def test_file_wrapper_sends_the_file_from_its_position(host, tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 1000
    path.write_bytes(data)
    sent_by_kernel = []
    original = HttpProtocol.send_file

    async def spy(self, head, fd, offset, count):
        sent_by_kernel.append((offset, count))
        return await original(self, head, fd, offset, count)

    monkeypatch.setattr(HttpProtocol, "send_file", spy)
    with host.client() as client:
        whole = client.get(f"/wrapped_file?{path}")
        handle = host.module.seen["handle"]
        tail = client.get(f"/wrapped_file?{path}", headers={"X-Skip": "1000"})
    assert whole.content == data
    assert tail.content == data[1000:]
    assert handle.closed  # close() of the wrapper closes the file
    assert sent_by_kernel == [(0, len(data)), (1000, len(data) - 1000)]  # sendfile, no reads


def test_file_wrapper_over_http2(host, tmp_path):
    path = tmp_path / "data.bin"
    data = b"0123456789" * 20000
    path.write_bytes(data)
    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
        response = client.get(host.url(f"/wrapped_file?{path}"))
    assert response.http_version == "HTTP/2"
    assert response.content == data


def test_wsgi_beside_asgi_on_one_listener_and_over_http2(host):
    with host.client() as client:
        assert client.get("/elsewhere").text == "asgi /elsewhere"
        assert client.post("/conform/x", content=b"hi").text == "ok"
    assert host.module.seen["body"] == b"hi"
    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
        response = client.post(host.url("/conform/h2"), content=b"over h2")
    assert response.text == "ok"
    env = host.module.seen
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["PATH_INFO"] == "/h2"
    assert env["body"] == b"over h2"


def test_a_websocket_upgrade_to_a_wsgi_app_is_refused(host):
    with host.raw() as raw:
        raw.send(
            b"GET /conform HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        response = raw.read_response()
    assert response.status == 403


BUSY_CONFIG = """
[listeners.web]
bind = "127.0.0.1:0"
app = "blocking"

[apps.blocking]
target = "apps:blocking"
interface = "wsgi"
threads = 1
max_queued = 1
"""


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_503_when_every_thread_and_the_queue_are_busy(serve):
    host = serve(BUSY_CONFIG, APPS)
    module = host.module
    pool = host.worker.wsgi_apps[0].pool

    async def admitted() -> int:
        return pool.admitted

    waiting = [host.raw() for _ in range(2)]
    try:
        for raw in waiting:
            raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert module.entered.wait(TIMEOUT)
        _wait_for(lambda: host.call(admitted) == 2, "the second request to queue")
        busy = host.request("GET", "/")
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        module.gate.set()
        for raw in waiting:
            response = raw.read_response()
            assert response.status == 200
            assert response.body == b"done"
    finally:
        module.gate.set()
        for raw in waiting:
            raw.close()
    assert host.request("GET", "/").status_code == 200  # the pool is free again

    async def routes():
        return host.worker.stats_sample()[0]

    sample = host.call(routes)[("web", "blocking")]
    assert sample[stats.REQUESTS] == 4
    assert sample[stats.STATUS_BASE + 2] == 3
    assert sample[stats.STATUS_BASE + 5] == 1  # the 503 is counted on the app's route, too


def test_a_queued_request_whose_client_left_never_runs(serve):
    """Its thread would compute an answer nobody reads while live clients wait behind it."""
    host = serve(BUSY_CONFIG, APPS)
    module = host.module
    pool = host.worker.wsgi_apps[0].pool

    async def admitted() -> int:
        return pool.admitted

    async def connections() -> int:
        return sum(len(context.connections) for context in host.worker.contexts)

    running = host.raw()
    try:
        running.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert module.entered.wait(TIMEOUT)
        with host.raw() as leaving:
            leaving.send(b"GET /left HTTP/1.1\r\nHost: x\r\n\r\n")
            _wait_for(lambda: host.call(admitted) == 2, "the second request to queue")
        _wait_for(lambda: host.call(connections) == 1, "the worker to see the client leave")
        module.gate.set()
        response = running.read_response()
        assert response.status == 200
        _wait_for(lambda: host.call(admitted) == 0, "the queue to empty")
    finally:
        module.gate.set()
        running.close()
    assert module.calls == ["/first"]
    assert host.request("GET", "/after").text == "done"
    assert module.calls == ["/first", "/after"]


def test_the_drain_stops_the_threads(serve):
    host = serve(BUSY_CONFIG, APPS)
    host.module.gate.set()
    assert host.request("GET", "/").text == "done"
    threads = list(host.worker.wsgi_apps[0].pool._threads)
    assert threads
    host.stop()
    assert not any(thread.is_alive() for thread in threads)


def test_a_disconnected_upload_ends_the_app(serve):
    host = serve(BUSY_CONFIG.replace("blocking", "digest"), APPS)
    with host.raw() as raw:
        raw.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 1000)
    pool = host.worker.wsgi_apps[0].pool

    async def admitted() -> int:
        return pool.admitted

    _wait_for(lambda: host.call(admitted) == 0, "the app to give up on the body")


READER_CONFIG = """
[listeners.web]
bind = "127.0.0.1:0"
app = "reader"

[apps.reader]
target = "apps:slow_reader"
interface = "wsgi"
max_body_bytes = "256MiB"
"""


def test_the_body_is_read_from_the_client_only_as_the_app_reads_it(serve):
    """Back-pressure: while the app does not read, the connection is not read either, so
    the client's writes stall once the socket buffers are full (a few MiB on loopback),
    far short of the 64 MiB it has to send."""
    host = serve(READER_CONFIG, APPS)
    module = host.module
    size = 64 * 1024 * 1024
    piece = b"a" * 65536
    with host.raw() as raw:
        raw.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        sock = raw.sock
        sock.setblocking(False)
        sent = 0
        try:
            while sent < size:
                try:
                    sent += sock.send(piece[: size - sent])
                except BlockingIOError:
                    if not select.select([], [sock], [], 1.0)[1]:
                        break  # a second without room: the server stopped reading
            assert module.reading.wait(TIMEOUT)
            assert sent < size // 2, f"the server read {sent} bytes the app did not ask for"
        finally:
            module.reading_gate.set()
        sock.settimeout(TIMEOUT * 4)
        sock.sendall(b"a" * (size - sent))
        response = raw.read_response()
    assert response.status == 200
    assert response.body == str(size).encode()

"""App faults: 500 while nothing was written, a closed connection after; each logged once."""

import pytest

APPS = r"""
async def app(scope, receive, send):
    kind = scope["path"].strip("/")
    if kind == "raise-before-start":
        raise ValueError("boom before start")
    if kind == "return-without-response":
        return
    if kind == "body-before-start":
        await send({"type": "http.response.body", "body": b"oops"})
        return
    if kind == "short":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345"})
        return
    if kind == "long":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"1234567890"})
        return
    if kind in ("status-1000", "status-42"):
        await send({"type": "http.response.start", "status": int(kind[7:]), "headers": []})
        await send({"type": "http.response.body", "body": b"never written"})
        return
    if kind == "long-large":  # large bodies take the no-copy path: the check comes first
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"x" * 40000})
        return
    if kind == "long-streamed":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"123", "more_body": True})
        await send({"type": "http.response.body", "body": b"456", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if kind == "raise-after-start":
        raise ValueError("boom after start")
    if kind == "return-after-start":
        return
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    if kind == "raise-while-streaming":
        raise ValueError("boom while streaming")
    if kind == "return-while-streaming":
        return
    if kind == "start-twice":
        await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"fine"})
"""

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
app = "app"

[apps.app]
target = "apps:app"
lifespan = "off"
"""


@pytest.fixture
def host(serve):
    return serve(CONFIG, APPS)


def fetch(host, path: str) -> bytes:
    with host.raw() as raw:
        raw.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return raw.read_to_close()


def assert_still_serving(host) -> None:
    with host.raw() as raw:
        raw.send(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().body == b"partialfine"


@pytest.mark.parametrize(
    ("path", "traceback"),
    [
        ("/raise-before-start", True),
        ("/raise-after-start", True),  # the head was held back: nothing was written yet
        ("/return-without-response", False),
        ("/return-after-start", False),
        ("/body-before-start", True),  # an illegal ASGI sequence raises in the app
    ],
)
def test_fault_before_anything_was_written_gives_500(host, errors, path, traceback):
    data = fetch(host, path)
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"connection: close\r\n" in data
    assert b"boom" not in data  # no app internals leak to the client
    [record] = errors()
    assert path in record.getMessage()
    assert (record.exc_info is not None) is traceback
    assert_still_serving(host)


@pytest.mark.parametrize(
    ("path", "traceback"),
    [
        ("/raise-while-streaming", True),
        ("/return-while-streaming", False),
        ("/start-twice", True),
    ],
)
def test_fault_after_the_response_started_closes_the_connection(host, errors, path, traceback):
    data = fetch(host, path)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding: chunked" in head
    assert body == b"7\r\npartial\r\n"  # cut: no last chunk, so the client knows
    [record] = errors()
    assert path in record.getMessage()
    assert (record.exc_info is not None) is traceback
    assert_still_serving(host)


def test_response_shorter_than_its_content_length_closes(host, errors):
    data = fetch(host, "/short")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 10" in head
    assert body == b"12345"
    [record] = errors()
    assert "5 of 10" in record.getMessage()
    assert_still_serving(host)


def test_response_longer_than_its_content_length_in_one_message_gives_500(host, errors):
    data = fetch(host, "/long")
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")  # nothing was written
    assert b"1234567890" not in data
    [record] = errors()
    assert "content-length" in record.getMessage()
    assert_still_serving(host)


@pytest.mark.parametrize("path", ["/status-1000", "/status-42"])
def test_a_status_outside_100_599_gives_500(host, errors, path):
    data = fetch(host, path)
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"never written" not in data
    [record] = errors()
    assert "not an HTTP status" in record.getMessage()
    assert_still_serving(host)


def test_large_response_longer_than_its_content_length_gives_500(host, errors):
    data = fetch(host, "/long-large")
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")  # no 200 head first
    assert b"xxxx" not in data
    [record] = errors()
    assert "content-length" in record.getMessage()
    assert_still_serving(host)


def test_response_longer_than_its_content_length_when_streamed_closes(host, errors):
    data = fetch(host, "/long-streamed")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: 5" in head
    assert body == b"123"  # never more than declared
    [record] = errors()
    assert "content-length" in record.getMessage()
    assert_still_serving(host)


def test_httpx_sees_a_500(host, errors):
    response = host.request("GET", "/raise-before-start")
    assert response.status_code == 500
    assert len(errors()) == 1

"""send_timeout: a client that takes none of our bytes is dropped; a slow one is not.

Without it, a client that stops reading holds its connection, its app's pending
`send` and a limit_concurrency slot for as long as it stays connected.
"""

import queue
import select
import socket
import ssl
import time

import pytest
import trustme

APPS = r'''
import asyncio
import queue

reports = queue.Queue()


async def stream(scope, receive, send):
    """64 KiB chunks for as long as the client is there (up to 256 MiB); says how it ended."""
    gone = asyncio.Event()

    async def watch():
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    chunk = b"s" * 65536
    sent = 0
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while not gone.is_set() and sent < 4096:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += 1
    reports.put(("gone" if gone.is_set() else "done", sent))
    watcher.cancel()


async def peer(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"x" * 200})
'''

SEND_TIMEOUT = 2.0

CONFIG = """
[listeners.main]
bind = "127.0.0.1:0"
send_timeout = "{timeout}s"
routes = {{ "/stream" = "stream", "/peer" = "peer" }}

[listeners.secure]
bind = "127.0.0.1:0"
send_timeout = "{timeout}s"
app = "stream"
tls = {{ certificate = "{cert}", private_key = "{key}" }}

[apps.stream]
target = "apps:stream"
lifespan = "off"

[apps.peer]
target = "apps:peer"
lifespan = "off"
"""


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def host(serve, authority, tmp_path):
    issued = authority.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.private_key_pem.write_to_path(key)
    issued.cert_chain_pems[0].write_to_path(cert)
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(cert, append=True)
    return serve(CONFIG.format(timeout=SEND_TIMEOUT, cert=cert, key=key), APPS)


def small_client(host, listener: str = "main", authority: trustme.CA | None = None):
    """A client whose receive buffer (set before connecting) fills after ~64 KiB; over
    TLS when given the authority to trust."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", host.port(listener)))
    if authority is None:
        return sock
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context.wrap_socket(sock, server_hostname="localhost")


def client(host, authority: trustme.CA, scheme: str):
    return small_client(host, "secure", authority) if scheme == "https" else small_client(host)


def wait_for_no_connections(host, within: float) -> float:
    """Seconds until the host holds no connection (fails after `within`)."""
    started = time.monotonic()
    while host.connections():
        assert time.monotonic() - started < within, "the connection was never dropped"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_client_that_stops_reading_is_dropped_and_the_app_learns_it(host, authority, scheme):
    started = time.monotonic()
    with client(host, authority, scheme) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
        how, chunks = host.module.reports.get(timeout=SEND_TIMEOUT + 10)
        elapsed = time.monotonic() - started
        assert how == "gone", chunks
        assert chunks < 512, f"{chunks} chunks of 64 KiB went to a client that reads nothing"
        assert elapsed >= SEND_TIMEOUT, f"dropped after {elapsed:.2f} s"
        wait_for_no_connections(host, within=5)
        # What was written before the cut can still be read, then the stream just ends.
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except (ConnectionResetError, ssl.SSLError):
            pass
        assert 0 < received <= chunks * 65536 + 1024  # the head, and what the app sent
    print(f"\n{scheme}, send_timeout {SEND_TIMEOUT} s: dropped at {elapsed:.2f} s, {chunks} sends")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_slow_reader_is_never_dropped(host, authority, scheme):
    """Reading 64 KiB four times a second keeps the kernel's queue moving (the transport's
    own buffer may not move for minutes): three send_timeouts later it is still served."""
    with client(host, authority, scheme) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        until = time.monotonic() + 3 * SEND_TIMEOUT
        while time.monotonic() < until:
            wanted = received + 65536  # over TLS one recv returns one 16 KiB record at most
            while received < wanted:
                chunk = sock.recv(wanted - received)
                assert chunk, f"closed after {received} bytes"
                received += len(chunk)
            time.sleep(0.25)
        assert host.connections() == 1
        with pytest.raises(queue.Empty):
            host.module.reports.get_nowait()
    assert host.module.reports.get(timeout=SEND_TIMEOUT + 10)[0] == "gone"  # once it left
    assert received > 1024 * 1024


def test_a_client_that_pipelines_and_never_reads_is_dropped(host):
    """The answers are written whole with no app send waiting, and the next request waits
    for the client to read (see test_http_connections): nothing else would ever end it."""
    request = b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n"
    wire = request * 1000
    with small_client(host) as sock:
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                sent += sock.send(wire[sent % len(request) :])
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], 0.5)
                if not writable:
                    break
        assert host.connections() == 1
        took = wait_for_no_connections(host, within=SEND_TIMEOUT + 10)
    print(f"\npipelined {sent // len(request)} requests, read none: dropped {took:.2f} s later")

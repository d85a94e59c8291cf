"""1,000 idle WebSocket connections held by one worker process, and what they cost.

`uvhost run` runs as a real subprocess with one worker (so the RSS measured
is the worker's own, not the test's or the supervisor's), on a listening
socket made here and inherited as `fd:N`. Clients are raw
sockets that complete the handshake and then stay silent; each 101 is sent
only after the app accepted, so once all are read every connection has its
app task parked in `receive()`. The memory per connection is printed and
recorded as the `ws_bytes_per_connection` property; only a generous sanity
bound is asserted, never a speed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TIMEOUT = 15.0
WARM = 50  # connections opened before the baseline, so one-time costs are not counted
COUNT = 1000
BATCH = 100
DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

APPS = """
async def app(scope, receive, send):
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass
"""


@pytest.fixture
def enough_files() -> Iterator[None]:
    """Room for the client sockets here and the server's in the child (which inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * (WARM + COUNT) + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def worker_pid(supervisor: int) -> int:
    """The one worker `uvhost run` spawned, or `uvhost run` itself if it serves alone."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == supervisor:
                    children.append(int(entry.name))
    assert len(children) <= 1, f"expected one worker under {supervisor}, found {children}"
    return children[0] if children else supervisor


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_batch(port: int, count: int, extra: bytes = b"") -> list[socket.socket]:
    """`count` handshakes sent at once, then every 101 read: all accepted by the app."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            b"Sec-WebSocket-Version: 13\r\n%s\r\n" % (key, extra)
        )
        socks.append(sock)
    for sock in socks:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            chunk = sock.recv(4096)
            assert chunk, f"closed during the handshake: {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head
    return socks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
@pytest.mark.parametrize("offer", ["plain", "deflate"])
def test_thousand_idle_websockets_in_one_process(tmp_path, enough_files, record_property, offer):
    """`deflate`: the client offers permessage-deflate, as browsers do, so each connection
    also holds a zlib compressor and decompressor."""
    extra = DEFLATE if offer == "deflate" else b""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    port = listener.getsockname()[1]
    (tmp_path / "apps.py").write_text(APPS, encoding="utf-8")
    config = tmp_path / "uvhost.toml"
    config.write_text(
        f"""
[host]
workers = 1
graceful_timeout = "2s"

[logging]
access_log = false

[listeners.main]
bind = "fd:{listener.fileno()}"
app = "idle"

[apps.idle]
target = "apps:app"
lifespan = "off"
""",
        encoding="utf-8",
    )
    output = tmp_path / "output.log"
    socks: list[socket.socket] = []
    with listener, output.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvhost", "run", str(config)],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )
        try:
            # The kernel queues these until the host is ready.
            socks += open_batch(port, WARM, extra)
            worker = worker_pid(process.pid)
            before = rss_bytes(worker)
            started = time.monotonic()
            while len(socks) < WARM + COUNT:
                socks += open_batch(port, BATCH, extra)
            opened_in = time.monotonic() - started
            after = rss_bytes(worker)
            assert process.poll() is None, output.read_text()

            # Every connection is still served: a ping on each of a sample gets its pong.
            for sock in socks[::97]:
                sock.sendall(b"\x89\x80\x00\x00\x00\x00")  # masked, empty ping
                assert sock.recv(16) == b"\x8a\x00"

            per_connection = (after - before) / COUNT
            record_property(f"ws_bytes_per_connection_{offer}", round(per_connection))
            record_property(f"ws_rss_before_bytes_{offer}", before)
            record_property(f"ws_rss_after_bytes_{offer}", after)
            print(
                f"\n{COUNT} idle WebSockets ({offer}): RSS {before / 2**20:.1f} MiB -> "
                f"{after / 2**20:.1f} MiB, {per_connection / 1024:.1f} KiB per connection "
                f"(opened in {opened_in:.1f}s)"
            )
            assert per_connection < 200 * 1024
        finally:
            for sock in socks:
                sock.close()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
    assert code == 0, output.read_text()
    with contextlib.suppress(OSError):
        listener.close()

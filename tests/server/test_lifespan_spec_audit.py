"""The conformance audit (issue 13): the ASGI lifespan spec (2.0) on a real worker.

Each test proves one row of the "Conformance audit" table in
docs/discussion/http.md that the unit tests of `Lifespan` (test_lifespan.py)
cannot: the order of lifespan events against the serving of connections, and
that lifespans and requests share one event loop. The app checks the server
from inside its own lifespan with a client of its own on the listener's Unix
socket, whose path is known before the host starts.
"""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CONFIG = """
[listeners.main]
bind = "unix:{socket}"
app = "site"

[apps.site]
target = "apps:app"
lifespan = "{mode}"
"""

APPS = r'''
import asyncio

SOCKET = {socket!r}
REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
seen = {{}}
scopes = []
client = {{}}


async def answered(reader, wait):
    """The first bytes the server sends within `wait` seconds, or None."""
    try:
        return await asyncio.wait_for(reader.read(65536), wait)
    except asyncio.TimeoutError:
        return None


async def app(scope, receive, send):
    scopes.append(scope["type"])
    if scope["type"] == "http":
        seen["request loop"] = asyncio.get_running_loop()
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        await send({{"type": "http.response.body", "body": b"served"}})
        return
    if scope["type"] != "lifespan" or {raise_on_lifespan}:
        raise ValueError("unsupported scope type " + scope["type"])
    seen["scope"] = dict(scope)
    message = await receive()
    seen["startup loop"] = asyncio.get_running_loop()
    # A request sent now must wait: the server does not serve before startup completes.
    reader, writer = await asyncio.open_unix_connection(SOCKET)
    writer.write(REQUEST)
    seen["answer during startup"] = await answered(reader, 0.5)
    client["reader"], client["writer"] = reader, writer
    await send({{"type": "lifespan.startup.complete"}})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    # By now the server has closed every connection and accepts no new one.
    try:
        seen["old connection at shutdown"] = await answered(reader, 2.0)
        try:
            fresh_reader, fresh_writer = await asyncio.open_unix_connection(SOCKET)
        except OSError:  # the socket file is gone with the server: refused
            seen["answer during shutdown"] = "refused"
        else:
            fresh_writer.write(REQUEST)
            seen["answer during shutdown"] = await answered(fresh_reader, 0.5)
            fresh_writer.close()
    finally:
        writer.close()
    await send({{"type": "lifespan.shutdown.complete"}})
'''


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths must be short (108 bytes); pytest's tmp_path can be long."""
    with tempfile.TemporaryDirectory(prefix="uvh") as directory:
        yield Path(directory)


def start(serve, directory: Path, *, mode: str = "on", raise_on_lifespan: bool = False):
    socket = str(directory / "main.sock")
    config = CONFIG.format(socket=socket, mode=mode)
    return serve(config, APPS.format(socket=socket, raise_on_lifespan=raise_on_lifespan))


async def read_startup_answer(module) -> bytes:
    return await module.client["reader"].readuntil(b"served")


def test_connections_are_served_only_after_startup_completes(serve, short_dir):
    """Lifespan spec: the server MUST wait for lifespan.startup.complete before it starts
    processing connections; the request sent during startup is answered right after."""
    host = start(serve, short_dir)
    module = host.module
    assert module.seen["answer during startup"] is None
    answer = host.call(lambda: read_startup_answer(module))
    assert answer.startswith(b"HTTP/1.1 200 OK")


def test_lifespan_and_requests_run_in_one_event_loop(serve, short_dir):
    """Lifespan spec: lifespans run once per event loop that processes requests, in that
    loop (a pool made at startup is used by requests on the same loop)."""
    host = start(serve, short_dir)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert raw.read_response().body == b"served"
    seen = host.module.seen
    assert seen["startup loop"] is seen["request loop"]


def test_the_lifespan_scope(serve, short_dir):
    """Lifespan spec: type "lifespan", asgi version and spec_version, an empty `state`."""
    host = start(serve, short_dir)
    scope = host.module.seen["scope"]
    assert scope["type"] == "lifespan"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}
    assert scope["state"] == {}


def test_shutdown_comes_after_connections_closed_and_accepting_stopped(serve, short_dir):
    """Lifespan spec: lifespan.shutdown is sent once the server has stopped accepting
    connections and closed the active ones; the server waits for shutdown.complete."""
    host = start(serve, short_dir)
    module = host.module
    host.call(lambda: read_startup_answer(module))  # an idle keep-alive connection now
    host.stop()
    assert module.seen["old connection at shutdown"] == b""  # closed by the server: EOF
    assert module.seen["answer during shutdown"] in (None, "refused")  # nobody accepts now
    assert module.scopes.count("lifespan") == 1


def test_an_app_raising_on_the_lifespan_scope_is_served_without_lifespan_events(serve, short_dir):
    """Lifespan spec: if the app raises on the lifespan scope, the server MUST continue but
    send no lifespan events: it serves, and is never called for lifespan again."""
    host = start(serve, short_dir, mode="auto", raise_on_lifespan=True)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert raw.read_response().body == b"served"
    host.stop()
    assert host.module.scopes == ["lifespan", "http"]

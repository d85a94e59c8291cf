"""The worker through a real host: apps loaded as configured, lifespan state, startup, drain."""

import socket
import threading
import time

import pytest

from uvhost.server.worker import WorkerStartupError

APPS = r'''
import asyncio
import json
import threading

events = []
gate = threading.Event()
slow_started = threading.Event()


async def with_state(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "connected"
                scope["state"]["shared"] = []
                events.append("startup")
                await send({"type": "lifespan.startup.complete"})
            else:
                events.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    state = scope["state"]
    seen = {"db": state.get("db"), "leaked": state.get("leaked"), "shared": list(state["shared"])}
    state["leaked"] = "set by a request"  # a request's own key: not seen by the next one
    state["shared"].append(1)  # the copy is shallow: the same list
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


async def slow(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    slow_started.set()
    await asyncio.to_thread(gate.wait, 5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"finished"})


def make_app():
    async def built(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"from a factory"})
    return built


class Legacy:
    """ASGI 2: the class is called with the scope, the instance with receive and send."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        body = ("asgi2 " + self.scope["path"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
'''

ENV_MODULE = r"""
import os

MODE_AT_IMPORT = os.environ.get("UVHOST_TEST_MODE", "unset")


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": MODE_AT_IMPORT.encode()})
"""

CONFIG = """
[host]
graceful_timeout = "3s"

[listeners.main]
bind = "127.0.0.1:0"
routes = { "/state" = "state", "/slow" = "slow", "/factory" = "factory", "/legacy" = "legacy", \
"/env" = "env" }

[apps.state]
target = "apps:with_state"
lifespan = "on"

[apps.slow]
target = "apps:slow"

[apps.factory]
target = "apps:make_app"
factory = true
lifespan = "off"

[apps.legacy]
target = "apps:Legacy"
lifespan = "off"

[apps.env]
target = "envapp:app"
lifespan = "off"
env = { UVHOST_TEST_MODE = "production" }
"""


@pytest.fixture
def host(serve, monkeypatch):
    monkeypatch.delenv("UVHOST_TEST_MODE", raising=False)
    return serve(CONFIG, APPS, files={"envapp.py": ENV_MODULE})


def test_lifespan_state_reaches_every_request_as_a_copy(host):
    with host.client() as client:
        first = client.get("/state/").json()
        second = client.get("/state/").json()
    assert first == {"db": "connected", "leaked": None, "shared": []}
    assert second == {"db": "connected", "leaked": None, "shared": [1]}
    assert host.module.events == ["startup"]


def test_factory_app(host):
    assert host.request("GET", "/factory").text == "from a factory"


def test_asgi2_app_is_adapted(host):
    assert host.request("GET", "/legacy/x").text == "asgi2 /legacy/x"


def test_app_env_is_set_before_import(host):
    assert host.request("GET", "/env").text == "production"


# ------------------------------------------------------------------- drain


def test_drain_finishes_in_flight_requests_and_closes_idle_ones(host):
    idle = host.raw()
    idle.send(b"GET /factory HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.read_response().status == 200
    busy = host.raw()
    busy.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert host.module.slow_started.wait(5)

    stopper = threading.Thread(target=host.stop)
    stopper.start()
    try:
        assert idle.closed_by_server(), "an idle keep-alive connection survived the drain"
        _refused(host.port())  # no longer accepting
        assert stopper.is_alive()  # still waiting for the slow request
        host.module.gate.set()
        response = busy.read_response()
        assert (response.status, response.body) == (200, b"finished")
        assert response.header("connection") == b"close"
        assert busy.closed_by_server()
    finally:
        host.module.gate.set()
        stopper.join(10)
        idle.close()
        busy.close()
    assert not stopper.is_alive()
    assert host.module.events == ["startup", "shutdown"]


def test_drain_cuts_requests_at_the_graceful_timeout(serve):
    host = serve(CONFIG.replace('"3s"', '"500ms"'), APPS, files={"envapp.py": ENV_MODULE})
    with host.raw() as busy:
        busy.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert host.module.slow_started.wait(5)
        started = time.monotonic()
        host.stop()
        took = time.monotonic() - started
        assert busy.read_to_close() == b""
    host.module.gate.set()
    assert 0.4 <= took < 4, took
    assert host.module.events == ["startup", "shutdown"]


def _refused(port: int) -> None:
    deadline = time.monotonic() + 5
    pause = threading.Event()
    while time.monotonic() < deadline:
        try:
            probe = socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            return
        probe.close()
        pause.wait(0.02)
    pytest.fail("the listener still accepts connections while draining")


# ----------------------------------------------------------------- startup


LIFESPAN_FAILS = r"""
async def app(scope, receive, send):
    message = await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
"""


def test_lifespan_startup_failure_stops_the_worker_with_the_apps_message(serve):
    config = (
        '[listeners.main]\nbind = "127.0.0.1:0"\napp = "app"\n[apps.app]\ntarget = "apps:app"\n'
    )
    with pytest.raises(WorkerStartupError, match="database unreachable") as caught:
        serve(config, LIFESPAN_FAILS)
    assert str(caught.value).count('app "app"') == 1


def test_import_failure_stops_the_worker(serve):
    config = (
        '[listeners.main]\nbind = "127.0.0.1:0"\napp = "app"\n[apps.app]\ntarget = "apps:missing"\n'
    )
    with pytest.raises(WorkerStartupError, match='has no attribute "missing"'):
        serve(config, "async def present(scope, receive, send): ...\n")

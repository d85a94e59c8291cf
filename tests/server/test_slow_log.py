"""The slow-request log over real sockets: a request at or past the threshold is logged once
(route, app, timing, id) and counted; a quick one is neither; the threshold moves live."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from uvhost.observe import stats
from uvhost.observe.logs import JsonFormatter

APPS = r"""
import asyncio

async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await asyncio.sleep(0.3)
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})
        return
    if scope["path"].endswith("/slow"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):  # several body messages: still one line
            await asyncio.sleep(0.1)
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b"."})
        return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""

CONFIG = """
[logging]
access_log = false
slow_request_threshold = "{threshold}"

[listeners.front]
bind = "127.0.0.1:0"
routes = {{ "/api" = "api" }}

[listeners.front.request_id]
trust = "all"

[apps.api]
target = "apps:app"
lifespan = "off"
"""


@pytest.fixture
def slow_records(caplog):
    """`slow_records(n)`: the slow lines once there are n (the line follows the response's
    write, so a client can read its answer first); bounded wait."""
    caplog.set_level(logging.WARNING, logger="uvhost.slow")

    def records(count: int) -> list[logging.LogRecord]:
        deadline = time.monotonic() + 5
        while True:
            found = [r for r in caplog.records if r.name == "uvhost.slow"]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    return records


def slow_counted(host) -> int:
    async def sample():
        return host.worker.stats_sample()

    routes, _ = asyncio.run_coroutine_threadsafe(sample(), host.loop).result(5)
    return routes[("front", "api")][stats.SLOW_REQUESTS]


def test_a_slow_request_is_logged_once_and_counted(serve, slow_records):
    host = serve(CONFIG.format(threshold="200ms"), APPS)
    assert host.request("GET", "/api/fast").status_code == 204
    response = host.request("GET", "/api/slow?x=1", headers={"X-Request-ID": "slow-1"})
    assert response.text == "xxx."
    records = slow_records(1)
    assert len(records) == 1
    message = records[0].getMessage()
    assert message.startswith("slow request: GET /api/slow?x=1 took ")
    assert "(status 200; route /api, app api, listener front, request id slow-1)" in message
    assert float(message.split(" took ")[1].split(" ms")[0]) >= 200
    entry = json.loads(JsonFormatter().format(records[0]))
    assert entry["route"] == "/api"
    assert entry["duration_ms"] >= 200
    assert entry["request_id"] == "slow-1"
    assert slow_counted(host) == 1


def test_http2_and_websocket_handshakes_are_judged_too(serve, slow_records):
    from websockets.sync.client import connect  # noqa: PLC0415

    host = serve(CONFIG.format(threshold="200ms"), APPS)
    with host.client(http1=False, http2=True) as client:
        assert client.get(host.url("/api/slow")).http_version == "HTTP/2"
    with connect(f"ws://127.0.0.1:{host.port()}/api/ws"):
        pass
    messages = [r.getMessage() for r in slow_records(2)]
    assert len(messages) == 2
    assert messages[0].startswith("slow request: GET /api/slow took ")
    assert messages[1].startswith("slow request: GET /api/ws took ")
    assert "(status 101; route /api" in messages[1]
    assert slow_counted(host) == 2


def test_without_a_threshold_nothing_is_slow_and_it_moves_live(serve, slow_records):
    host = serve(CONFIG.format(threshold="1h"), APPS)
    host.request("GET", "/api/slow")
    assert slow_counted(host) == 0  # read in the worker's loop: after the request's end
    assert slow_records(0) == []
    host.loop.call_soon_threadsafe(host.worker.set_slow_threshold, 0.05)
    host.request("GET", "/api/slow")
    assert len(slow_records(1)) == 1
    host.loop.call_soon_threadsafe(host.worker.set_slow_threshold, None)
    host.request("GET", "/api/slow")
    assert slow_counted(host) == 1
    assert len(slow_records(1)) == 1

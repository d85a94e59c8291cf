"""Built-in endpoints mountable like apps: `@health`, and `@metrics` once stats exist.

`@health` answers 200 "ok" while the worker serves and 503 "draining" once
it drains, so a load balancer stops sending traffic before the worker goes.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

Probe = Callable[[], bool]


class Health:
    """Liveness and readiness in one: 200 while `ready()` holds, else 503."""

    def __init__(self, ready: Probe) -> None:
        self.ready = ready

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        ok = self.ready()
        body = b"ok\n" if ok else b"draining\n"
        await send(
            {
                "type": "http.response.start",
                "status": 200 if ok else 503,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class MetricsUnavailable:
    """`@metrics` until the counters of the observe issue land: an honest 503."""

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": b"metrics are not collected yet\n"})

"""The slow-request log: one warning per request that took `slow_request_threshold` or longer.

Invariants:
- Reached only when `RouteStats.finish` found the request slow (and counted
  it); a host without a threshold compares with infinity and never calls in.
- Once per request: `finish` runs once per exchange (its `counted` flag), so a
  slow request is one line however many body messages it sent.
- On the "uvhost.slow" logger at warning level, apart from the access log:
  it is written whether the access log is on or off, and can be routed or
  silenced by itself (`[logging.loggers]`, or a dictConfig).
- Request data is escaped as in the access log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from uvhost.observe.stats import clock
from uvhost.server.access_log import escape
from uvhost.server.request_id import STATE_KEY

if TYPE_CHECKING:
    from uvhost.server.asgi_types import Scope
    from uvhost.server.exchange import Exchange
    from uvhost.server.router import Endpoint

logger = logging.getLogger("uvhost.slow")


def log_slow(exchange: Exchange, status: int) -> None:
    """A slow HTTP request (either protocol), as it ends."""
    context = exchange.protocol.context
    log_slow_request(exchange.scope, status, exchange.started_at, context.name, exchange.endpoint)


def log_slow_request(
    scope: Scope, status: int, started_at: float, listener: str, endpoint: Endpoint | None
) -> None:
    """The line itself; a WebSocket handshake comes here directly (its time is the handshake)."""
    milliseconds = (clock() - started_at) * 1000
    query = scope["query_string"]
    target = escape(scope["path"] + ("?" + query.decode("latin-1") if query else ""))
    request_id = scope["state"].get(STATE_KEY) if scope.get("state") else None
    if request_id is not None:
        request_id = escape(request_id)
    method = scope.get("method", "GET")  # a WebSocket scope has none: its handshake is a GET
    logger.warning(
        "slow request: %s %s took %.1f ms (%s; route %s, app %s, listener %s%s)",
        method,
        target,
        milliseconds,
        f"status {status}" if status else "no response",
        (endpoint.prefix or "/") if endpoint is not None else "-",
        endpoint.name if endpoint is not None else "-",
        listener,
        f", request id {request_id}" if request_id is not None else "",
        extra={
            "method": method,
            "path": target,
            "status": status,
            "duration_ms": round(milliseconds, 3),
            "route": (endpoint.prefix or "/") if endpoint is not None else None,
            "app": endpoint.name if endpoint is not None else None,
            "listener": listener,
            "request_id": request_id,
            "access_fields": (
                "method",
                "path",
                "status",
                "duration_ms",
                "route",
                "app",
                "listener",
                "request_id",
            ),
        },
    )

"""One access-log line per response, on the "uvhost.access" logger.

Invariants:
- Called only when `logging.access_log` is on; with it off, the request path
  makes no logging call and builds no string.
- Request data is escaped before it is logged (control characters, quotes
  and backslashes as \\xNN escapes), so a path holding CR LF or an ANSI escape
  cannot forge a log line or repaint a terminal.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uvhost.server.exchange import Exchange

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def escape(text: str) -> str:
    return _UNSAFE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class AccessLogger:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("uvhost.access")

    def __call__(self, exchange: Exchange, listener: str) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        scope = exchange.scope
        client = scope["client"]
        query = scope["query_string"]
        target = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        endpoint = exchange.endpoint
        duration_ms = (time.perf_counter() - exchange.started_at) * 1000
        self.logger.info(
            '%s - "%s %s HTTP/%s" %d %d %.1fms %s %s',
            f"{client[0]}:{client[1]}" if client else "-",
            scope["method"],
            escape(target),
            scope["http_version"],
            exchange.status,
            exchange.response_bytes,
            duration_ms,
            endpoint.name if endpoint is not None else "-",
            listener,
            extra={
                "client": client[0] if client else None,
                "method": scope["method"],
                "path": escape(target),
                "status": exchange.status,
                "bytes": exchange.response_bytes,
                "duration_ms": round(duration_ms, 3),
                "app": endpoint.name if endpoint is not None else None,
                "listener": listener,
            },
        )

"""One access-log line per response, on the "uvhost.access" logger.

Invariants:
- Called only when `logging.access_log` is on; with it off, the request path
  makes no logging call and builds no string.
- Request data is escaped before it is logged (C0 and C1 control
  characters, quotes and backslashes as \\xNN escapes; the Unicode line
  separators and bidirectional overrides as \\uNNNN), so a path holding CR LF
  or an ANSI escape cannot forge a log line, repaint a terminal or reorder
  what a reader sees. The JSON `path` field holds the same escaped text as
  the plain line, so both formats show a request the same way.
- The protocol is the request's own ("HTTP/1.0", "HTTP/1.1", "HTTP/2", from
  the scope's `http_version`), the same text in the plain line and in the
  JSON `protocol` field.
- The worker's pid is not passed here: every record carries its process id,
  and the JSON formatter writes it as `pid`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from uvhost.server.request_id import STATE_KEY

if TYPE_CHECKING:
    from uvhost.server.exchange import Exchange

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\\u2028\u2029\u202a-\u202e\u2066-\u2069]')


def escape(text: str) -> str:
    """`text` safe for one log line. Printable ASCII without quotes or backslashes (nearly
    every path and id) is returned as it is, without running the regex (~3k instructions
    per field on 3.11): nothing in it could match."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class AccessLogger:
    """uvhost's own line (no `access_format`): the cheapest, and the one tests pin."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("uvhost.access")

    def __call__(self, exchange: Exchange, listener: str) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        scope = exchange.scope
        client = scope["client"]
        query = scope["query_string"]
        target = escape(scope["path"] + ("?" + query.decode("latin-1") if query else ""))
        endpoint = exchange.endpoint
        duration_ms = (time.perf_counter() - exchange.started_at) * 1000
        protocol = "HTTP/" + scope["http_version"]
        app = endpoint.name if endpoint is not None else None
        fields = {
            "client": client[0] if client else None,
            "method": scope["method"],
            "path": target,
            "protocol": protocol,
            "status": exchange.status,
            "bytes": exchange.response_bytes,
            "duration_ms": round(duration_ms, 3),
            "app": app,
            "listener": listener,
        }
        request_id = scope["state"].get(STATE_KEY)
        if request_id is None:  # two literal calls: a built argument list costs ~4k instructions
            self.logger.info(
                LINE,
                f"{client[0]}:{client[1]}" if client else "-",
                scope["method"],
                target,
                protocol,
                exchange.status,
                exchange.response_bytes,
                duration_ms,
                app or "-",
                listener,
                extra=fields,
            )
            return
        fields["request_id"] = request_id = escape(request_id)  # the id ends the line
        self.logger.info(
            LINE + " %s",
            f"{client[0]}:{client[1]}" if client else "-",
            scope["method"],
            target,
            protocol,
            exchange.status,
            exchange.response_bytes,
            duration_ms,
            app or "-",
            listener,
            request_id,
            extra=fields,
        )


LINE = '%s - "%s %s %s" %d %d %.1fms %s %s'
"""uvhost's own access line: client, request line, status, bytes, duration, app, listener."""

"""Access lines laid out by the file: `[logging] access_format` and `access_fields`.

Invariants:
- Built once per settings (at start and on each live logging change), never
  per request: the template is parsed here and each request computes only
  the fields the template and the JSON list name.
- Without `access_format` and `access_fields`, `access_logger` returns the
  fixed `AccessLogger`, so the default costs what it always cost.
- Text fields are escaped as `access_log.escape` does, in the line and in
  the JSON alike; a missing value is "-" in the line and null in JSON.
- The names here are exactly `config.names.ACCESS_LOG_FIELDS` (tested), which
  the config validated the file's template and list against.
"""

from __future__ import annotations

import logging
import string
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uvhost.config.names import DEFAULT_ACCESS_FIELDS
from uvhost.server.access_log import AccessLogger, escape
from uvhost.server.request_id import STATE_KEY

if TYPE_CHECKING:
    from uvhost.config.model import LoggingSettings
    from uvhost.server.asgi_types import Scope
    from uvhost.server.context import AccessLog
    from uvhost.server.exchange import Exchange

Field = Callable[["Exchange", "Scope", str, float], Any]
"""A field's value from the exchange, its scope, the listener's name and the duration."""


def _header(name: bytes) -> Field:
    def read(exchange: Exchange, scope: Scope, listener: str, duration: float) -> Any:
        for key, value in scope["headers"]:
            if key == name:
                return escape(value.decode("latin-1"))
        return None

    return read


def _client(exchange: Exchange, scope: Scope, listener: str, duration: float) -> Any:
    client = scope["client"]
    return client[0] if client else None


def _client_addr(exchange: Exchange, scope: Scope, listener: str, duration: float) -> Any:
    client = scope["client"]
    return f"{client[0]}:{client[1]}" if client else None


def _path(exchange: Exchange, scope: Scope, listener: str, duration: float) -> Any:
    query = scope["query_string"]
    return escape(scope["path"] + ("?" + query.decode("latin-1") if query else ""))


def _request_id(exchange: Exchange, scope: Scope, listener: str, duration: float) -> Any:
    request_id = scope["state"].get(STATE_KEY)
    return escape(request_id) if request_id is not None else None


def _route(exchange: Exchange, scope: Scope, listener: str, duration: float) -> Any:
    endpoint = exchange.endpoint
    return (endpoint.prefix or "/") if endpoint is not None else None


def _app(exchange: Exchange, scope: Scope, listener: str, duration: float) -> Any:
    endpoint = exchange.endpoint
    return endpoint.name if endpoint is not None else None


FIELDS: dict[str, Field] = {
    "client": _client,
    "client_addr": _client_addr,
    "method": lambda exchange, scope, listener, duration: scope["method"],
    "path": _path,
    "protocol": lambda exchange, scope, listener, duration: "HTTP/" + scope["http_version"],
    "scheme": lambda exchange, scope, listener, duration: scope["scheme"],
    "host": _header(b"host"),
    "status": lambda exchange, scope, listener, duration: exchange.status,
    "bytes": lambda exchange, scope, listener, duration: exchange.response_bytes,
    "bytes_in": lambda exchange, scope, listener, duration: exchange.body_size,
    "duration_ms": lambda exchange, scope, listener, duration: round(duration, 3),
    "request_id": _request_id,
    "app": _app,
    "route": _route,
    "listener": lambda exchange, scope, listener, duration: listener,
    "user_agent": _header(b"user-agent"),
    "referer": _header(b"referer"),
}


DEFAULT_TEMPLATE = (
    '{client_addr} - "{method} {path} {protocol}" {status} {bytes} {duration_ms:.1f}ms'
    " {app} {listener}"
)
"""uvhost's own line as a template: what `AccessLogger` writes (tested alike); the
request id follows it on a listener with request IDs."""


class FormattedAccessLogger:
    """Access lines from a template and a JSON field list, chosen in the file."""

    def __init__(
        self,
        template: str | None,
        json_fields: tuple[str, ...] | None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.logger = logger or logging.getLogger("uvhost.access")
        self.template = template or DEFAULT_TEMPLATE
        self.id_last = template is None  # uvhost's own line ends with the id, when there is one
        self.json_fields = json_fields or DEFAULT_ACCESS_FIELDS
        self.json_nulls = json_fields is not None  # the listed fields, always; else as before
        named = [name for _, name, _, _ in string.Formatter().parse(self.template) if name]
        wanted = [*named, *self.json_fields, *(["request_id"] if self.id_last else [])]
        self.fields = tuple((name, FIELDS[name]) for name in dict.fromkeys(wanted))

    def __call__(self, exchange: Exchange, listener: str) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        scope = exchange.scope
        duration = (time.perf_counter() - exchange.started_at) * 1000
        values = {name: field(exchange, scope, listener, duration) for name, field in self.fields}
        line = self.template.format_map(
            {name: "-" if value is None else value for name, value in values.items()}
        )
        if self.id_last and values["request_id"] is not None:
            line = f"{line} {values['request_id']}"
        extra: dict[str, Any] = {
            name: values[name]
            for name in self.json_fields
            if self.json_nulls or values[name] is not None
        }
        extra["access_fields"] = self.json_fields
        self.logger.info("%s", line, extra=extra)


def access_logger(settings: LoggingSettings) -> AccessLog | None:
    """The access logger `settings` ask for; None when the access log is off."""
    if not settings.access_log:
        return None
    if settings.access_format is None and settings.access_fields is None:
        return AccessLogger()
    return FormattedAccessLogger(settings.access_format, settings.access_fields)

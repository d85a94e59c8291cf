"""Logging set up from the [logging] table: level, format, per-logger levels, file.

Invariants:
- One place configures logging; it can be called again with a new
  `LoggingSettings` (live reload) and replaces what it installed before,
  never adding a second handler.
- "json" writes one object per line with time, level, logger and message,
  plus the structured fields an access line carries; "auto" uses rich on a
  terminal and plain text otherwise.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from uvhost.config.model import LoggingSettings

_INSTALLED: list[logging.Handler] = []
ACCESS_FIELDS = ("client", "method", "path", "status", "bytes", "duration_ms", "app", "listener")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ACCESS_FIELDS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


PLAIN = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def configure(settings: LoggingSettings, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    root = logging.getLogger()
    for old in _INSTALLED:
        root.removeHandler(old)
        old.close()
    _INSTALLED.clear()

    handler: logging.Handler
    if settings.format == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif settings.format == "auto" and stream.isatty():
        from rich.logging import RichHandler  # noqa: PLC0415 - rich only for a terminal

        handler = RichHandler(show_path=False, markup=False, rich_tracebacks=False)
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(PLAIN)
    handlers: list[logging.Handler] = [handler]
    if settings.file is not None:
        file_handler = logging.FileHandler(settings.file, encoding="utf-8")
        file_handler.setFormatter(JsonFormatter() if settings.format == "json" else PLAIN)
        handlers.append(file_handler)
    for installed in handlers:
        root.addHandler(installed)
        _INSTALLED.append(installed)

    root.setLevel(settings.level.upper())
    access = logging.getLogger("uvhost.access")
    access.setLevel(logging.INFO if settings.access_log else logging.WARNING)
    for name, level in settings.loggers.items():
        logging.getLogger(name).setLevel(level.upper())

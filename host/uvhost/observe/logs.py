"""Logging set up from the [logging] table: level, format, per-logger levels, file.

Invariants:
- One place configures logging; it can be called again with a new
  `LoggingSettings` (live reload) and replaces what it installed before,
  never adding a second handler.
- "json" writes one object per line with time, level, logger, message and
  the pid of the process that logged it (a worker's, for access lines), plus
  the structured fields an access line carries; "auto" uses rich on a
  terminal and plain text otherwise.
- The log file is reopened on request (`reopen`, on SIGUSR1), in place: the
  same handler objects point at a fresh file at the configured path, so a
  logrotate rename loses no line and duplicates none. Each process holds its
  own file handle, so every process that logs must reopen (the supervisor
  and each worker).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from uvhost.config.names import DEFAULT_ACCESS_FIELDS
from uvhost.observe import dict_logging

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import LoggingSettings


_INSTALLED: list[logging.Handler] = []
ACCESS_FIELDS = DEFAULT_ACCESS_FIELDS


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process if record.process is not None else os.getpid(),
        }
        fields = record.__dict__
        for key in fields.get("access_fields", ACCESS_FIELDS):
            if key in fields:
                entry[key] = fields[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ReopeningFileHandler(logging.FileHandler):
    """A FileHandler that can switch to a new file at its path, for log rotation.

    The new file is opened before the old one is let go: if it cannot be
    opened (a missing folder, a permission), logging carries on into the old,
    renamed file rather than into nothing.
    """

    def reopen(self) -> None:
        fresh = self._open()
        self.acquire()
        try:
            old, self.stream = self.stream, fresh
            if old is not None:
                old.flush()
                old.close()
        finally:
            self.release()


def reopen() -> int:
    """Reopen the configured log file (logrotate moved it away); returns the files reopened.

    A file that cannot be reopened is reported on the "uvhost" logger and
    keeps receiving lines at its old place.
    """
    reopened = 0
    for handler in _INSTALLED:
        if not isinstance(handler, ReopeningFileHandler):
            continue
        try:
            handler.reopen()
        except OSError as error:
            logging.getLogger("uvhost").error(
                "cannot reopen the log file %s: %s", handler.baseFilename, error.strerror or error
            )
        else:
            reopened += 1
    return reopened


PLAIN = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def configure(settings: LoggingSettings, stream: TextIO | None = None) -> None:
    """The dictConfig first (see dict_logging.py), then uvhost's handlers unless it owns the
    root, then the levels of `level` (unless it set the root's), `access_log`, `loggers`."""
    stream = stream or sys.stderr
    root = logging.getLogger()
    for old in _INSTALLED:
        root.removeHandler(old)
        old.close()
    _INSTALLED.clear()
    owns_root, sets_level = dict_logging.apply(settings.dict_config)
    if not owns_root:
        _install(settings, stream, root)
    if not sets_level:
        root.setLevel(settings.level.upper())
    access = logging.getLogger("uvhost.access")
    access.setLevel(logging.INFO if settings.access_log else logging.WARNING)
    for name, level in settings.loggers.items():
        logging.getLogger(name).setLevel(level.upper())


def _install(settings: LoggingSettings, stream: TextIO, root: logging.Logger) -> None:
    """uvhost's own handlers on the root logger, from `format` and `file`."""

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
        file_handler = ReopeningFileHandler(settings.file, encoding="utf-8")
        file_handler.setFormatter(JsonFormatter() if settings.format == "json" else PLAIN)
        handlers.append(file_handler)
    for installed in handlers:
        root.addHandler(installed)
        _INSTALLED.append(installed)

"""Access lines from real requests, through both formatters: one line, escaped, all the fields.

A path holding CR LF and an ANSI escape must not forge a second log line or
repaint a terminal, in the plain format or in JSON.
"""

from __future__ import annotations

import json
import logging
import os
import threading

import pytest

from uvhost.observe.logs import PLAIN, JsonFormatter
from uvhost.server.access_log import escape

APPS = r"""
async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})
"""

CONFIG = """
[logging]
access_log = true

[listeners.front]
bind = "127.0.0.1:0"
routes = { "/" = "hello" }

[apps.hello]
target = "apps:hello"
lifespan = "off"
"""

EVIL_TARGET = b"/a%0D%0Ab%1B%5B31mc?q=1"  # CR LF and ESC[31m once decoded
ESCAPED_TARGET = "/a\\x0d\\x0ab\\x1b[31mc?q=1"


class Capture(logging.Handler):
    """Keeps access records; `wait` blocks (bounded) until one arrives."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    def wait(self) -> logging.LogRecord:
        assert self.arrived.wait(5.0), "no access line was logged"
        return self.records[-1]


@pytest.fixture
def access_record(serve):
    """The record of one real request for EVIL_TARGET, as AccessLogger made it."""
    logger = logging.getLogger("uvhost.access")
    capture, level = Capture(), logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        host = serve(CONFIG, APPS)
        with host.raw() as raw:
            raw.send(b"GET " + EVIL_TARGET + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.read_response().status == 201
        yield capture.wait()
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)


def test_plain_access_line_is_one_escaped_line(access_record):
    line = PLAIN.format(access_record)
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert f'"GET {ESCAPED_TARGET} HTTP/1.1" 201 5 ' in line
    assert line.endswith(" hello front")


def test_json_access_line_parses_with_every_field(access_record):
    line = JsonFormatter().format(access_record)
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    entry = json.loads(line)
    assert entry["path"] == ESCAPED_TARGET  # the same text as the plain line shows
    assert entry["client"] == "127.0.0.1"
    assert entry["method"] == "GET"
    assert entry["status"] == 201
    assert entry["bytes"] == 5
    assert isinstance(entry["duration_ms"], float)
    assert entry["duration_ms"] >= 0
    assert entry["app"] == "hello"
    assert entry["listener"] == "front"
    assert entry["pid"] == os.getpid()  # the worker's pid: here the worker runs in this process
    assert entry["logger"] == "uvhost.access"
    assert entry["level"] == "info"
    assert ESCAPED_TARGET in entry["message"]
    assert entry["time"].endswith("Z")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\r\nb", "a\\x0d\\x0ab"),
        ("\x1b[2J", "\\x1b[2J"),
        ('say "hi" \\ ok', "say \\x22hi\\x22 \\x5c ok"),
        ("nul\x00del\x7fc1\x85", "nul\\x00del\\x7fc1\\x85"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("bidi\u202eevil\u2066", "bidi\\u202eevil\\u2066"),
        ("café/ünïcode", "café/ünïcode"),  # printable text stays readable
    ],
)
def test_escape(raw, shown):
    assert escape(raw) == shown


def test_the_fast_path_of_escape_is_the_regex_for_every_character():
    """escape returns printable ASCII untouched without the regex: the same answer."""
    from uvhost.server.access_log import _UNSAFE, _escaped  # noqa: PLC0415

    for code in range(0x3000):
        text = f"/a{chr(code)}b"
        assert escape(text) == _UNSAFE.sub(_escaped, text), hex(code)

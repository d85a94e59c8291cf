"""Access lines laid out by the file, from real requests: the template's fields, the JSON
field list and order, escaping, the request id, and a layout switched on a running worker.
"""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest

from uvhost.config.load import load_config
from uvhost.config.names import ACCESS_LOG_FIELDS
from uvhost.observe.logs import PLAIN, JsonFormatter
from uvhost.server.access_format import DEFAULT_TEMPLATE, FIELDS, FormattedAccessLogger
from uvhost.server.access_log import AccessLogger

APPS = r"""
async def hello(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})
"""


def config(logging_keys: str, request_id: bool = True) -> str:
    table = '[listeners.front.request_id]\ntrust = "all"\n' if request_id else ""
    return f"""
[logging]
access_log = true
{logging_keys}

[listeners.front]
bind = "127.0.0.1:0"
routes = {{ "/api" = "hello" }}

{table}
[apps.hello]
target = "apps:hello"
lifespan = "off"
"""


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.arrived:
            self.records.append(record)
            self.arrived.notify_all()

    def wait(self, count: int) -> list[logging.LogRecord]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.records) >= count, 5.0)
        return self.records


@pytest.fixture
def capture():
    logger = logging.getLogger("uvhost.access")
    handler, level = Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_every_configurable_field_has_a_reader():
    assert set(FIELDS) == set(ACCESS_LOG_FIELDS)


def test_a_template_with_every_field(serve, capture):
    template = " ".join(f"{name}={{{name}}}" for name in ACCESS_LOG_FIELDS)
    template = template.replace("{duration_ms}", "{duration_ms:.2f}")
    host = serve(config(f"access_format = '{template}'"), APPS)
    host.request(
        "POST",
        "/api/x?q=1",
        content=b"12345678",
        headers={"X-Request-ID": "rid-7", "User-Agent": 'a"b', "Referer": "r"},
    )
    line = PLAIN.format(capture.wait(1)[0])
    fields = dict(part.split("=", 1) for part in line.split(": ", 1)[1].split(" "))
    assert fields["client"] == "127.0.0.1"
    assert fields["client_addr"].startswith("127.0.0.1:")
    assert fields["method"] == "POST"
    assert fields["path"] == "/api/x?q=1"
    assert fields["protocol"] == "HTTP/1.1"
    assert fields["scheme"] == "http"
    assert fields["host"] == f"127.0.0.1:{host.port()}"
    assert fields["status"] == "201"
    assert fields["bytes"] == "5"
    assert fields["bytes_in"] == "8"
    assert float(fields["duration_ms"]) >= 0
    assert len(fields["duration_ms"].split(".")[1]) == 2
    assert fields["request_id"] == "rid-7"
    assert fields["app"] == "hello"
    assert fields["route"] == "/api"
    assert fields["listener"] == "front"
    assert fields["user_agent"] == "a\\x22b"  # escaped as the path is
    assert fields["referer"] == "r"


def test_a_missing_value_is_a_dash_in_the_line_and_null_in_json(serve, capture):
    host = serve(
        config(
            'format = "json"\naccess_format = "{route} {referer} {status}"\n'
            'access_fields = ["status", "referer", "route", "request_id"]',
            request_id=False,
        ),
        APPS,
    )
    host.request("GET", "/elsewhere")  # no route: a 404 from uvhost
    entry = json.loads(JsonFormatter().format(capture.wait(1)[0]))
    assert entry["message"] == "- - 404"
    fields = [key for key in entry if key not in ("time", "level", "logger", "message", "pid")]
    assert fields == ["status", "referer", "route", "request_id"]  # the listed order
    assert entry["referer"] is None
    assert entry["request_id"] is None


def test_the_default_line_carries_the_request_id(serve, capture):
    host = serve(config(""), APPS)
    host.request("GET", "/api", headers={"X-Request-ID": "rid-1"})
    record = capture.wait(1)[0]
    assert PLAIN.format(record).endswith(" hello front rid-1")
    assert json.loads(JsonFormatter().format(record))["request_id"] == "rid-1"


def test_the_default_template_writes_the_fixed_line(serve, capture):
    """A JSON list without a template keeps uvhost's own line as the message."""
    host = serve(config(""), APPS)
    with host.client() as client:  # one connection: the same client port in both lines
        client.get(host.url("/api"), headers={"X-Request-ID": "rid-2"})
        for context in host.worker.contexts:
            context.access_log = FormattedAccessLogger(None, ("status",))
        client.get(host.url("/api"), headers={"X-Request-ID": "rid-2"})
    fixed, templated = (record.getMessage() for record in capture.wait(2))
    assert DEFAULT_TEMPLATE.startswith("{client_addr} - ")
    assert re.sub(r" [0-9.]+ms ", " ", fixed) == re.sub(r" [0-9.]+ms ", " ", templated)
    assert templated.endswith(" hello front rid-2")


def test_a_new_layout_applies_to_a_running_worker(serve, capture):
    host = serve(config(""), APPS)
    host.request("GET", "/api")
    capture.wait(1)
    loaded = load_config(host.directory / "uvhost.toml")
    assert loaded.config is not None
    changed = loaded.config.logging.model_copy(update={"access_format": "{status} {route}"})
    host.worker.switch_access_log(changed)
    host.request("GET", "/api")
    assert capture.wait(2)[1].getMessage() == "201 /api"
    off = changed.model_copy(update={"access_log": False})
    host.worker.switch_access_log(off)
    host.request("GET", "/api")
    host.worker.switch_access_log(loaded.config.logging)
    assert isinstance(host.worker.contexts[0].access_log, AccessLogger)
    assert len(capture.records) == 2  # nothing while off

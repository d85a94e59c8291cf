"""WSGI apps for the WSGI scenarios (wsgi-peers.json): the same bytes from every server.

`hello` and `json` are plain PEP 3333 callables answering any path, the WSGI
twins of ../../shared/bench/apps.py's `hello` and `json` (12 bytes of text; a
~1 KB JSON document dumped again on every request), so the WSGI rows can be
read beside the ASGI ones. `flask_hello` is the hello answer from a Flask
view: what a real framework adds per request (routing, a request context, a
Response object) on top of the server's own cost.

Why one module with no server code in it: Gunicorn, Granian and uvhost all
import `wsgi_apps:NAME` from this folder, so what differs between the rows is
the server alone. Flask is imported only when `flask_hello` is asked for, so
the plain scenarios do not pay its import or its memory.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]

HELLO_BODY = b"Hello, world"  # 12 bytes, as apps.py's hello
HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO_BODY)))]

JSON_DATA: dict[str, Any] = {
    "service": "peerbench",
    "version": 1,
    "healthy": True,
    "tags": ["asgi", "http", "benchmark", "uvloop", "httptools"],
    "items": [
        {"id": i, "name": f"item-{i}", "price": 9.99 + i, "qty": i * 3, "ok": i % 2 == 0}
        for i in range(12)
    ],
}
"""apps.py's document (~1 KB); dumped per request, as a view serialising its answer does."""


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """12 bytes with a Content-Length: the server's per-request cost and nearly nothing else."""
    start_response("200 OK", HELLO_HEADERS)
    return [HELLO_BODY]


def json(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """~1 KB of JSON serialised per request: a little app work under the GIL."""
    body = _json.dumps(JSON_DATA).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _make_flask_hello() -> Callable[..., Iterable[bytes]]:
    """A Flask app whose one view answers hello at /hello (the scenario's path)."""
    from flask import Flask  # noqa: PLC0415 - only the Flask scenario needs it

    app = Flask("wsgi_apps")

    @app.get("/hello")
    def index() -> tuple[bytes, dict[str, str]]:
        return HELLO_BODY, {"Content-Type": "text/plain"}

    return app


def __getattr__(name: str) -> Any:
    """`wsgi_apps:flask_hello`, built on first import by name (PEP 562)."""
    if name == "flask_hello":
        app = _make_flask_hello()
        globals()[name] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

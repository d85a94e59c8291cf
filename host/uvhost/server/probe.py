"""Import one app in a throwaway process: ``python -m uvhost.server.probe``.

``uvhost check --import`` runs this so that importing an app (which runs
arbitrary user code, may change ``sys.modules``, or even exit) never happens
in the checking process. Protocol:

- stdin: one JSON object ``{"target": str, "app_dir": str | null,
  "factory": bool, "interface": "auto" | "asgi3" | "asgi2" | "wsgi", "env": {str: str}}``;
  only ``target`` is required.
- stdout: one JSON line, ``{"ok": true, "interface": "asgi3" | "asgi2" | "wsgi"}`` or
  ``{"ok": false, "kind": ..., "message": ..., "hint": ...}``; exit status 0.
- exit status 2, with a line on stderr, when stdin is not such an object.

Invariants: ``env`` is applied before the import, as the worker does; the
app's own output during import (Python or file-descriptor level) goes to
stderr, so stdout carries only the result line; imports nothing from
``uvhost.supervisor`` or ``uvhost.cli``.
"""

import json
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from uvhost.server.apps import AppLoadError, ASGI2Adapter, WsgiAdapter, load_app

_INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")


def parse_request(text: str) -> dict[str, Any]:
    """Validate the request object; ValueError says what is wrong with it."""
    request = json.loads(text)
    if not isinstance(request, dict):
        raise ValueError("expected a JSON object")
    request = {"app_dir": None, "factory": False, "interface": "auto", "env": {}, **request}
    env = request["env"]
    if not isinstance(request.get("target"), str):
        raise ValueError('"target" must be a string')
    if not isinstance(request["app_dir"], str | None):
        raise ValueError('"app_dir" must be a string or null')
    if not isinstance(request["factory"], bool):
        raise ValueError('"factory" must be true or false')
    if request["interface"] not in _INTERFACES:
        raise ValueError(f'"interface" must be one of {", ".join(_INTERFACES)}')
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError('"env" must be an object of strings')
    return request


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """Apply the env, load the app and describe the outcome as a JSON-ready dict."""
    os.environ.update(request["env"])
    app_dir = Path(request["app_dir"]) if request["app_dir"] is not None else None
    try:
        app = load_app(
            request["target"],
            app_dir=app_dir,
            factory=request["factory"],
            interface=request["interface"],
        )
    except AppLoadError as exc:
        return {"ok": False, "kind": exc.kind, "message": exc.message, "hint": exc.hint}
    kind = (
        "asgi2"
        if isinstance(app, ASGI2Adapter)
        else "wsgi"
        if isinstance(app, WsgiAdapter)
        else "asgi3"
    )
    return {"ok": True, "interface": kind}


def main() -> int:
    """Run one probe; see the module docstring for the protocol."""
    try:
        request = parse_request(sys.stdin.read())
    except (ValueError, UnicodeDecodeError) as exc:
        print(f"uvhost.server.probe: unreadable request: {exc}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)  # C extensions and subprocesses write to fd 1 directly
    with redirect_stdout(sys.stderr):
        result = probe(request)
    sys.stderr.flush()
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

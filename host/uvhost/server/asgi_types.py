"""The ASGI callable shapes, as type aliases (https://asgi.readthedocs.io/).

Scopes and messages are plain mutable dictionaries keyed by strings; their
values are whatever the spec says for each key, so they stay ``Any``-typed.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""ASGI 3: one call per connection, ``await app(scope, receive, send)``."""

ASGI2Instance: TypeAlias = Callable[[Receive, Send], Awaitable[None]]
ASGI2App: TypeAlias = Callable[[Scope], ASGI2Instance]
"""ASGI 2 ("double callable"): ``await app(scope)(receive, send)``."""

Answer: TypeAlias = tuple[int, list[tuple[bytes, bytes]], bytes]
"""A whole response: status, headers, body."""
AnswerAtOnce: TypeAlias = Callable[[Scope], Answer | None]
"""A host-built app's synchronous shortcut (folder apps: a file held in memory): the
whole response for a request it can answer without awaiting anything, else None and
the request runs through the app as usual. Saves the task and the ASGI messages."""


class ClientDisconnectedError(OSError):
    """`send` after the client went away: ASGI 2.4 asks servers for an OSError subclass,
    so an app streaming to nobody stops at its next `send` instead of running on.

    Raised by the HTTP exchange and the WebSocket connection alike; a server
    that sees it escape from an app logs nothing (the app did nothing wrong).
    """

"""Names the config language reserves, shared by the validator and the worker side.

Lives apart from `model.py` so worker processes can read it without importing
pydantic (see detach.py).
"""

BUILTIN_TARGETS = ("@health", "@metrics")
"""Route targets served by uvhost itself rather than an app."""

REDIRECT_FIELDS = ("scheme", "host", "authority", "path", "rest", "query", "uri")
"""The placeholders a redirect's `to` may use, each filled from the request."""

ACCESS_LOG_FIELDS = {
    "client": "the client's address (after trusted proxy headers), or -",
    "client_addr": "the client as address:port, or -",
    "method": "the request method",
    "path": "the path and query as sent, escaped",
    "protocol": 'the request\'s protocol: "HTTP/1.0", "HTTP/1.1" or "HTTP/2"',
    "scheme": '"http" or "https"',
    "host": "the Host header (or HTTP/2 authority), escaped",
    "status": "the response status (an integer)",
    "bytes": "response body bytes written (an integer)",
    "bytes_in": "request body bytes received (an integer)",
    "duration_ms": "milliseconds from the request head to the last byte handed to the socket",
    "request_id": "the request's id (see `request_id` on listeners), or -",
    "app": "the app (or built-in) that answered, or -",
    "route": 'the mount prefix that matched ("/" for the root), or -',
    "listener": "the listener's name",
    "user_agent": "the User-Agent header, escaped, or -",
    "referer": "the Referer header, escaped, or -",
}
"""The placeholders of `[logging] access_format` and the names `access_fields` may list."""
ACCESS_LOG_NUMBERS = {"status": 200, "bytes": 5, "bytes_in": 0, "duration_ms": 1.25}
"""The numeric fields and a sample of each (format specs such as `{duration_ms:.1f}` are
tried on it when the file is checked); every other field is text."""
DEFAULT_ACCESS_FIELDS = (
    "client",
    "method",
    "path",
    "protocol",
    "status",
    "bytes",
    "duration_ms",
    "app",
    "listener",
    "request_id",
)
"""The fields of a JSON access object when `access_fields` is left out (`request_id` only
on listeners with request IDs)."""

"""Names the config language reserves, shared by the validator and the worker side.

Lives apart from `model.py` so worker processes can read it without importing
pydantic (see detach.py).
"""

BUILTIN_TARGETS = ("@health", "@metrics")
"""Route targets served by uvhost itself rather than an app."""

REDIRECT_FIELDS = ("scheme", "host", "authority", "path", "rest", "query", "uri")
"""The placeholders a redirect's `to` may use, each filled from the request."""

"""Built-in endpoints mountable like apps: `@health` and `@metrics`.

`@health` answers two questions an orchestrator asks separately:
- readiness, on the mount path itself (or `<mount>/ready`): 200 "ok" while
  the host is ready and this worker is not draining, 503 "starting" or
  "draining" otherwise, so a load balancer sends traffic only to a worker
  that will serve it and stops before the worker goes. On a host stop with
  `host.drain_delay`, "draining" starts while the worker still accepts, so
  the 503 is seen before the sockets close;
- liveness, on `<mount>/live`: 200 for as long as the process answers at
  all. A draining worker is alive: restarting it would cut the requests it
  is finishing.

`@metrics` answers a scrape with the supervisor's merged Prometheus text;
a worker only knows its own counters, so it fetches the host's on every
scrape and answers 503 when the supervisor cannot tell (rather than a
partial, per-worker view that would look like counters going backwards).

Invariants:
- Neither reads the request body or holds state between requests; both
  answer GET and HEAD (405 otherwise), with `cache-control: no-store`.
- Sub-paths are the request path minus `root_path` (the router gives the
  whole path and the mount prefix as `root_path`, as Starlette's Mount does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from uvhost.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

logger = logging.getLogger("uvhost.error")

HealthState = Literal["starting", "ready", "draining"]
StateSource = Callable[[], HealthState | bool]
"""Returns this worker's state; a bool is the older "ready?" probe (False reads as draining)."""
Probe = Callable[[], bool]  # the older constructor argument, kept while child.py passes one

TEXT = b"text/plain; charset=utf-8"
_READY_PATHS = ("", "/ready")
_LIVE_PATH = "/live"
_NOT_SERVING: dict[HealthState, bytes] = {"starting": b"starting\n", "draining": b"draining\n"}


class Health:
    """`@health`: readiness on the mount path, liveness on `/live` below it."""

    def __init__(self, state: StateSource) -> None:
        self.state = state

    def current(self) -> HealthState:
        state = self.state()
        if state is True:
            return "ready"
        if state is False:
            return "draining"
        return state

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not await _method_allowed(scope, send):
            return
        below = subpath(scope)
        if below == _LIVE_PATH:
            status, body = 200, b"alive\n"
        elif below in _READY_PATHS:
            state = self.current()
            status, body = (200, b"ok\n") if state == "ready" else (503, _NOT_SERVING[state])
        else:
            status, body = 404, b"not found: try the mount path (ready) or /live\n"
        await respond(send, scope, status, body)


class MetricsUnavailableError(Exception):
    """The supervisor cannot give the host's metrics now (not connected, stopping, ...)."""


class Metrics:
    """`@metrics`: the supervisor's Prometheus text, fetched on each scrape.

    `fetch` returns the whole exposition; it should raise
    `MetricsUnavailableError` with a short reason when it cannot. A fetch
    slower than `timeout` seconds is abandoned, so a stuck supervisor
    costs a scraper one 503, not a hung connection.
    """

    def __init__(self, fetch: Callable[[], Awaitable[str]], *, timeout: float = 5.0) -> None:
        self.fetch = fetch
        self.timeout = timeout

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not await _method_allowed(scope, send):
            return
        if subpath(scope):
            await respond(send, scope, 404, b"not found: metrics are on the mount path\n")
            return
        try:
            text = await asyncio.wait_for(self.fetch(), self.timeout)
        except MetricsUnavailableError as error:
            reason = str(error) or "the supervisor cannot tell now"
        except TimeoutError:
            reason = f"the supervisor did not answer within {self.timeout:g}s"
        except Exception:  # a bug in fetch: say so to the scraper, keep the trace in the log
            logger.exception("@metrics: fetching the host's metrics failed")
            reason = "fetching them failed (see the host's log)"
        else:
            body = text.encode("utf-8")
            await respond(send, scope, 200, body, METRICS_CONTENT_TYPE.encode("ascii"))
            return
        await respond(send, scope, 503, f"metrics unavailable: {reason}\n".encode())


class MetricsUnavailable:
    """The `@metrics` placeholder from before the counters were wired: always 503.

    Kept importable until the worker mounts `Metrics` with a fetch.
    """

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await respond(send, scope, 503, b"metrics are not collected yet\n")


# ------------------------------------------------------------------ helpers


def subpath(scope: MutableMapping[str, Any]) -> str:
    """The path below the mount, `path` minus `root_path`, without a trailing slash.

    "" at the mount itself, so "/healthz" and "/healthz/" are the same question.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    below = path[len(root) :] if root and path.startswith(root) else path
    return below.rstrip("/")


async def _method_allowed(scope: MutableMapping[str, Any], send: Any) -> bool:
    if scope["method"] in ("GET", "HEAD"):
        return True
    await respond(
        send, scope, 405, b"method not allowed: use GET or HEAD\n", extra=[(b"allow", b"GET, HEAD")]
    )
    return False


async def respond(
    send: Any,
    scope: MutableMapping[str, Any],
    status: int,
    body: bytes,
    content_type: bytes = TEXT,
    *,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """One whole response; a HEAD gets the same headers (length included) and no body."""
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

"""One compiled route table per listener: from a decoded request path to an endpoint.

Invariants:
- Compiled once per listener per worker generation; `resolve` allocates
  nothing and does no string building. Every string it compares against is
  precomputed here, and everything the server puts into a scope for the
  endpoint (`root_path`, the prefix prepended to `path` and `raw_path`) is
  computed here too, so a request only concatenates.
- A whole-port app (a single mount at "") resolves without a loop or a string
  operation: `compile` returns a router whose `resolve` hands back its one
  endpoint.
- Otherwise `resolve` takes the path's first segment ("/api" of
  "/api/items"), looks up the mounts that share it (one dict hit), and scans
  only those, longest prefix first (plan.py sorts them), testing
  `path == prefix` and `path.startswith(prefix + "/")` with `prefix + "/"`
  prebuilt; a root mount ("") is never scanned, it is the fallback. So a
  request costs the same with 2 mounts or 50, and matches fall on `/`
  segment boundaries: "/api" serves "/api" and "/api/x", never "/apiary".
- Paths are compared percent-decoded, as plan.py normalises prefixes, so
  "/caf%C3%A9" and "/café" are the same mount.
- Hosts come first when a listener has sites (`SiteRouter`): the request's
  Host bytes, exactly as sent, are one dict hit in a per-worker cache
  (`hostnames.HostTable`); a miss brings the host to hostnames.py's form and
  looks it up exact, then as the wildcard one label up, then falls back to
  the listener's own mounts. A listener without sites never looks at the host.

The root_path rule (Starlette's `Mount`, which FastAPI expects; ASGI says
`path` includes `root_path`):

    proxy_prefix      = listener.root_path + app.root_path
    scope["root_path"] = proxy_prefix + mount prefix
    scope["path"]      = proxy_prefix + request path        (the whole path)
    scope["raw_path"]  = quote(proxy_prefix) + raw request path

`proxy_prefix` is what a reverse proxy in front of us strips before
forwarding; putting it back makes `path` the URL the client asked for and
keeps `path.startswith(root_path)` true, so an app mounted at "/api" behind a
proxy at "/myapp" sees root_path "/myapp/api" and path "/myapp/api/items",
and routes on the remainder "/items". Built-ins take only the listener's
`root_path`: they have no app settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from uvhost.config.hostnames import HostTable
from uvhost.config.plan import Mount, RouteTable
from uvhost.observe.stats import RouteStats
from uvhost.server.asgi_types import AnswerAtOnce, ASGIApp, Scope

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import AppSettings, Listener, WebSocketSettings

__all__ = ["BUILTIN_MAX_BODY_BYTES", "Endpoint", "Router", "SiteRouter"]

BUILTIN_MAX_BODY_BYTES = 64 * 1024
"""Body limit of @health and @metrics: they read no body, so a small one suffices."""
HOST_CACHE_SIZE = HostTable.CACHE_SIZE
"""Distinct Host values a site router remembers; a client inventing hosts empties it."""

# Characters left as they are when a configured prefix is encoded for raw_path:
# the RFC 3986 sub-delims and the ":@" allowed in a path segment.
_PATH_SAFE = "/!$&'()*+,;=:@~"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a request goes and what its scope says about the mount."""

    name: str
    """The app's name, or "@health" / "@metrics"."""
    app: ASGIApp
    prefix: str
    """The normalised mount prefix ("" for the root)."""
    root_path: str
    """`scope["root_path"]`: proxy_prefix + prefix."""
    proxy_prefix: str
    """Prepended to `scope["path"]`: listener.root_path + app.root_path."""
    max_body_bytes: int
    websocket: WebSocketSettings | None
    """None for built-ins, which refuse WebSocket upgrades."""
    raw_proxy_prefix: bytes = field(default=b"")
    """`proxy_prefix` percent-encoded, prepended to `scope["raw_path"]`."""
    stats: RouteStats = field(default_factory=RouteStats, compare=False)
    """This mount's counters in this worker (one per endpoint, so counting needs no lookup)."""
    at_once: AnswerAtOnce | None = field(default=None, compare=False)
    """The app's `answer_at_once`, if it has one (folder apps): tried before a task."""


class Router:
    """A listener's mounts; build it with `Router.compile`."""

    __slots__ = ("_by_segment", "_fallback", "endpoints")

    endpoints: tuple[Endpoint, ...]
    """Every endpoint, in table order (longest prefix first)."""

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self.endpoints = endpoints
        # Mounts by their first segment ("/admin/tools" under "/admin"), each bucket longest
        # first: a request looks at the few sharing its first segment, not at every mount.
        by_segment: dict[str, list[tuple[str, str, Endpoint]]] = {}
        for e in endpoints:
            if e.prefix:
                by_segment.setdefault(_first_segment(e.prefix), []).append(
                    (e.prefix, e.prefix + "/", e)
                )
        self._by_segment = {first: tuple(bucket) for first, bucket in by_segment.items()}
        roots = [e for e in endpoints if not e.prefix]
        self._fallback = roots[0] if roots else None

    @classmethod
    def compile(
        cls,
        table: RouteTable,
        listener: Listener,
        apps: Mapping[str, ASGIApp],
        settings: Mapping[str, AppSettings],
        builtins: Mapping[str, ASGIApp],
    ) -> Router:
        """Resolve every mount of `table` to its app; a missing app is a KeyError."""

        def paths(mounts: tuple[Mount, ...]) -> Router:
            endpoints = tuple(
                _endpoint(
                    mount.prefix,
                    mount.target,
                    listener=listener,
                    apps=apps,
                    settings=settings,
                    builtins=builtins,
                )
                for mount in mounts
            )
            if len(endpoints) == 1 and not endpoints[0].prefix:
                return _WholePort(endpoints)
            return Router(endpoints)

        own = paths(table.mounts)
        if not table.sites:
            return own
        by_host = {}
        for site in table.sites:
            router = paths(site.mounts)
            by_host.update(dict.fromkeys(site.hosts, router))
        return SiteRouter(own, by_host)

    def resolve(self, path: str, host: bytes | None) -> Endpoint | None:
        """The endpoint for a percent-decoded request path, or None (answer 404). `host` is
        the request's Host (or `:authority`) as sent, None when it has none."""
        end = path.find("/", 1)
        for prefix, below, endpoint in self._by_segment.get(path if end < 0 else path[:end], ()):
            if path.startswith(below) or path == prefix:
                return endpoint
        return self._fallback


class _WholePort(Router):
    """One app at "": every path is its own."""

    __slots__ = ("_only",)

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        super().__init__(endpoints)
        self._only = endpoints[0]

    def resolve(self, path: str, host: bytes | None) -> Endpoint | None:
        return self._only


class SiteRouter(Router):
    """Host first, then path: a `Router` per site, the listener's own for other hosts."""

    __slots__ = ("_cache", "_router_for")

    def __init__(self, default: Router, by_host: dict[str, Router]) -> None:
        table = HostTable(default, by_host)
        super().__init__(tuple(e for router in table.values() for e in router.endpoints))
        self._cache = table.cache  # the hit, without a call
        self._router_for = table.for_request

    def resolve(self, path: str, host: bytes | None) -> Endpoint | None:
        router = self._cache.get(host)
        if router is None:
            router = self._router_for(host)
        return router.resolve(path, host)


def _first_segment(path: str) -> str:
    """ "/api/v1" -> "/api"; "/api" and "*" are their own."""
    end = path.find("/", 1)
    return path if end < 0 else path[:end]


def _endpoint(
    prefix: str,
    target: str,
    *,
    listener: Listener,
    apps: Mapping[str, ASGIApp],
    settings: Mapping[str, AppSettings],
    builtins: Mapping[str, ASGIApp],
) -> Endpoint:
    if target in builtins:
        proxy_prefix = listener.root_path
        app, max_body, websocket = builtins[target], BUILTIN_MAX_BODY_BYTES, None
    else:
        if target not in apps or target not in settings:
            raise KeyError(f'route "{prefix or "/"}" names app "{target}", which is not loaded')
        own = settings[target]
        proxy_prefix = listener.root_path + own.root_path
        app, max_body, websocket = apps[target], own.max_body_bytes, own.websocket
        if own.folder is not None:  # files read no body and refuse WebSocket upgrades
            max_body, websocket = BUILTIN_MAX_BODY_BYTES, None
    return Endpoint(
        name=target,
        app=app,
        prefix=prefix,
        root_path=proxy_prefix + prefix,
        proxy_prefix=proxy_prefix,
        max_body_bytes=max_body,
        websocket=websocket,
        raw_proxy_prefix=quote(proxy_prefix, safe=_PATH_SAFE).encode("ascii"),
        at_once=getattr(app, "answer_at_once", None),
    )


async def not_found(scope: Scope, receive: Any, send: Any) -> None:
    """What a listener answers when no route matches: the host's own 404."""
    await _answer(send, 404, b"Not Found\n")


async def misdirected(scope: Scope, receive: Any, send: Any) -> None:
    """A request for a host whose certificate is not the one its connection was made with."""
    await _answer(send, 421, b"Misdirected Request: open a connection for this host\n")


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def misdirected_endpoint(stats: RouteStats) -> Endpoint:
    """The 421 as an endpoint, counted with the listener's unrouted requests (`stats`)."""
    return Endpoint(
        name="@misdirected",
        app=misdirected,
        prefix="",
        root_path="",
        proxy_prefix="",
        max_body_bytes=BUILTIN_MAX_BODY_BYTES,
        websocket=None,
        stats=stats,
    )

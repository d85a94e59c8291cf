"""The ASGI `http` scope of one request, the same for HTTP/1.1 and HTTP/2.

Why one function: the route, the proxy headers, the mount's prefixes and the
lifespan state are decided the same way whatever protocol carried the
request; a rule fixed here is fixed for both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from uvhost.server.asgi_types import Scope
from uvhost.server.proxy import forwarded_client

if TYPE_CHECKING:
    from uvhost.server.context import ListenerContext
    from uvhost.server.router import Endpoint

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


def http_scope(  # noqa: PLR0917 (one call per request: positional is cheaper than keywords)
    context: ListenerContext,
    version: str,
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    host: bytes | None,
    certificate: object,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    /,
) -> tuple[Scope, Endpoint | None]:
    """The scope and the endpoint its path resolves to (None: no route, a 404).

    `raw_path` is the target's path as sent (origin-form, or "*"); a path
    that does not decode raises ValueError (the caller answers 400). `host`
    is the request's host as sent (Host, or the authority that stands for
    it), checked valid by the protocol; the router picks the site by it.
    `certificate` is the TLS context the connection's handshake chose: on a
    listener whose sites have certificates of their own, a host served with
    another one is misdirected (RFC 9110 15.5.20: 421, the client retries on
    a connection of its own).
    """
    # find, not `in`: bytes.__contains__ first tries the operand as an int and raises and
    # clears a TypeError for bytes (about 1.7% of a hello request on 3.11, counted)
    path = raw_path.decode("ascii") if raw_path.find(b"%") < 0 else unquote(raw_path.decode())
    endpoint = context.router.resolve(path, host)
    sni = context.sni
    if sni is not None and sni.certificate_for(host) is not certificate:
        endpoint = context.misdirected
    scheme = context.scheme
    peer = client  # the direct peer: request IDs trust it, not a forwarded address
    if context.proxies is not None:
        client, scheme = forwarded_client(headers, client, scheme, context.proxies)
    if endpoint is None:
        root_path, state = "", None
    else:
        root_path, state = endpoint.root_path, context.states.get(endpoint.name)
        prefix = endpoint.proxy_prefix
        if prefix:
            path = prefix + path
            raw_path = endpoint.raw_proxy_prefix + raw_path
    scope: Scope = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": method,
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers,
        "state": state.copy() if state else {},
    }
    if context.request_ids is not None:  # off: this compare is all a request pays
        context.request_ids.stamp(scope, peer)
    return scope, endpoint

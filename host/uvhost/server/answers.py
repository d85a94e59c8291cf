"""Redirects and fixed answers: built-ins the host serves itself, mounted like apps.

Why in the host: sending plain HTTP to HTTPS, `www.` to the bare domain, an
old prefix to a new one, a `robots.txt` or a maintenance 503 should not need
an app, a framework, or nginx in front. Each is an ASGI callable built once
per worker from its table, so the router hands it out like any endpoint.

Invariants:
- A redirect's `Location` is built only from parts the protocol already
  checked: the host (a valid `host[:port]`, RFC 9112 3.2 / RFC 9113 8.3.1),
  the path and the query as sent (visible ASCII, or the parser refused
  them). So nothing a client sends can put a CR, LF or space into the
  header, and the path keeps its encoding: "/a%2Fb" stays one segment.
- Neither reads the request body; a HEAD gets the head alone (the exchange
  drops the body).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from uvhost.config.hostnames import request_host
from uvhost.server.asgi_types import ASGIApp

if TYPE_CHECKING:  # workers never import pydantic (see config/detach.py)
    from uvhost.config.model import AnswerSettings, RedirectSettings

_PATH_SAFE = "/!$&'()*+,;=:@~"  # RFC 3986 pchar and "/", left as they are

_TEXT = b"text/plain; charset=utf-8"


def redirect_parts(scope: Mapping[str, Any]) -> dict[str, str]:
    """The values of every placeholder (config/names.py's `REDIRECT_FIELDS`) for one
    request."""
    authority = ""
    for name, value in scope["headers"]:
        if name == b"host":
            authority = value.decode("latin-1")
            break
    raw_path = scope["raw_path"].decode("latin-1")
    path = raw_path
    rest = _raw_rest(raw_path, scope["root_path"])
    if rest is None:
        rest = quote(scope["path"][len(scope["root_path"]) :], safe=_PATH_SAFE)
    query_string = scope["query_string"].decode("latin-1")
    query = "?" + query_string if query_string else ""
    return {
        "scheme": scope["scheme"],
        "host": request_host(authority.encode("latin-1")) if authority else "",
        "authority": authority,
        "path": path,
        "rest": rest,
        "query": query,
        "uri": path + query,
    }


def _raw_rest(raw_path: str, root_path: str) -> str | None:
    """The path below the mount as the client encoded it ("%2F" stays one segment), or None
    when an encoded slash inside the mount prefix makes the raw and decoded segments
    disagree (then the decoded rest is re-encoded)."""
    cut = 0
    for _ in range(root_path.count("/")):
        cut = raw_path.find("/", cut + 1)
        if cut < 0:
            cut = len(raw_path)
            break
    return raw_path[cut:] if unquote(raw_path[:cut]) == root_path else None


def redirect_app(settings: RedirectSettings) -> ASGIApp:
    template, status = settings.to, settings.status

    async def redirect(scope: Any, receive: Any, send: Any) -> None:
        location = template.format_map(redirect_parts(scope)).encode("latin-1")
        body = b"Redirecting to " + location + b"\n"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"location", location),
                    (b"content-type", _TEXT),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return redirect


def answer_app(settings: AnswerSettings) -> ASGIApp:
    body = settings.body.encode("utf-8")
    headers = [
        (b"content-type", settings.content_type.encode("latin-1")),
        (b"content-length", b"%d" % len(body)),
        *(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in settings.headers.items()
        ),
    ]
    start = {"type": "http.response.start", "status": settings.status, "headers": headers}
    finish = {"type": "http.response.body", "body": body}

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send(finish)

    return answer


def built_in_answers(
    redirects: Mapping[str, RedirectSettings], answers: Mapping[str, AnswerSettings]
) -> dict[str, ASGIApp]:
    """Every redirect and fixed answer of the config, by name, as route targets."""
    built = {name: redirect_app(settings) for name, settings in redirects.items()}
    built.update((name, answer_app(settings)) for name, settings in answers.items())
    return built

"""Redirects and fixed answers, mounted like apps, against a real host.

- Plain HTTP to HTTPS on a whole port, `www.` to the bare domain through a
  site, an old prefix to a new one keeping the path below it and the query.
- Every placeholder filled from the request, percent-encoding kept, the port
  cut from `{host}` and kept in `{authority}`; HTTP/1.1 and h2c alike.
- Fixed answers: a robots.txt, a maintenance 503 with Retry-After; HEAD gets
  the head alone; a body sent to either is not needed and the connection
  goes on.
- A Location never carries what a client could inject: a CR/LF or a space
  in the request is refused before any redirect is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from uvhost.config.names import REDIRECT_FIELDS
from uvhost.server.answers import redirect_parts

APPS = """
async def other(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"other"})
"""

CONFIG = """
[listeners.plain]
bind = "127.0.0.1:0"
app = "to_https"

[listeners.web]
bind = "127.0.0.1:0"
[listeners.web.routes]
"/" = "other"
"/old" = "moved"
"/robots.txt" = "robots"
"/down" = "maintenance"
"/every" = "every"

[sites.www]
hosts = ["www.example.com"]
listeners = ["web"]
app = "bare"

[redirects.to_https]
to = "https://{host}{uri}"
status = 301

[redirects.bare]
to = "https://example.com{uri}"

[redirects.moved]
to = "/new{rest}{query}"
status = 302

[redirects.every]
to = "{scheme}|{host}|{authority}|{path}|{rest}|{query}|{uri}"
status = 307

[answers.robots]
body = "User-agent: *\\nDisallow: /admin\\n"

[answers.maintenance]
status = 503
body = "down for maintenance\\n"
headers = { "Retry-After" = "120", "Cache-Control" = "no-store" }

[apps.other]
target = "apps:other"
lifespan = "off"
"""


@pytest.fixture
def host(serve: Callable[..., Any]) -> Any:
    return serve(CONFIG, APPS)


def fetch(host: Any, listener: str, target: str, hostname: str, **options: Any) -> httpx.Response:
    with httpx.Client(base_url=host.url("", listener), timeout=5, **options) as client:
        return client.get(target, headers={"host": hostname})


def test_plain_http_goes_to_https_on_the_same_host_path_and_query(host):
    response = fetch(host, "plain", "/a/b%20c?x=1&y", "Example.com:8080")
    assert response.status_code == 301
    assert response.headers["location"] == "https://example.com/a/b%20c?x=1&y"
    assert response.text.startswith("Redirecting to https://example.com/")


def test_www_goes_to_the_bare_domain_through_its_site(host):
    response = fetch(host, "web", "/shop?page=2", "www.example.com")
    assert response.status_code == 308
    assert response.headers["location"] == "https://example.com/shop?page=2"
    assert fetch(host, "web", "/shop", "example.com").text == "other"


@pytest.mark.parametrize(
    ("target", "location"),
    [("/old", "/new"), ("/old/a/b?q=1", "/new/a/b?q=1"), ("/old/caf%C3%A9", "/new/caf%C3%A9")],
)
def test_an_old_prefix_goes_to_the_new_one(host, target, location):
    response = fetch(host, "web", target, "x")
    assert response.status_code == 302
    assert response.headers["location"] == location


def test_every_placeholder_filled(host):
    response = fetch(host, "web", "/every/sub/p%2Fq?a=b", "Example.COM:81")
    assert response.status_code == 307
    assert response.headers["location"] == (
        "http|example.com|Example.COM:81|/every/sub/p%2Fq|/sub/p%2Fq|?a=b|/every/sub/p%2Fq?a=b"
    )


def test_redirects_over_h2c(host):
    response = fetch(host, "plain", "/x?y=1", "example.com", http1=False, http2=True)
    assert response.http_version == "HTTP/2"
    assert response.status_code == 301
    assert response.headers["location"] == "https://example.com/x?y=1"


def test_fixed_answers(host):
    robots = fetch(host, "web", "/robots.txt", "x")
    assert robots.status_code == 200
    assert robots.headers["content-type"] == "text/plain; charset=utf-8"
    assert robots.text == "User-agent: *\nDisallow: /admin\n"
    down = fetch(host, "web", "/down", "x")
    assert down.status_code == 503
    assert down.headers["retry-after"] == "120"
    assert down.headers["cache-control"] == "no-store"
    assert down.text == "down for maintenance\n"


def test_head_gets_the_head_and_a_posted_body_does_not_stall_the_connection(host):
    with host.raw("web") as raw:
        raw.send(
            b"HEAD /down HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /robots.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /old/z HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        data = raw.read_until(b"location: /new/z\r\n")
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 503")
    assert b"content-length: 21" in first
    assert rest.startswith(b"HTTP/1.1 200"), rest[:200]  # no 503 body before the next answer
    assert b"Disallow: /admin" in rest


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /x HTTP/1.1\r\nHost: a.com\r\nX: y\rLocation: evil\r\n\r\n",
        b"GET /x y HTTP/1.1\r\nHost: a.com\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a.com\r\nevil.com\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a.com/evil\r\n\r\n",
    ],
)
def test_nothing_a_client_sends_reaches_a_location_unchecked(host, request_bytes):
    with host.raw("plain") as raw:
        raw.send(request_bytes)
        data = raw.read_to_close()
    assert data.startswith(b"HTTP/1.1 400"), data[:100]
    assert b"location" not in data.lower()


def test_redirect_parts_fill_every_placeholder_the_config_allows():
    scope = {
        "scheme": "https",
        "path": "/a b",
        "raw_path": b"/a%20b",
        "root_path": "/a",
        "query_string": b"",
        "headers": [(b"host", b"h:1")],
    }
    assert tuple(redirect_parts(scope)) == REDIRECT_FIELDS


@pytest.mark.parametrize(
    ("raw_path", "path", "root_path", "rest"),
    [
        (b"/old", "/old", "/old", ""),
        (b"/old/a%2Fb", "/old/a/b", "/old", "/a%2Fb"),
        (b"/ol%64/x", "/old/x", "/old", "/x"),
        (b"/a%2Fb/x", "/a/b/x", "/a/b", "/x"),  # a slash encoded inside the mount: re-encoded
        (b"/x", "/x", "", "/x"),
    ],
)
def test_the_rest_keeps_the_clients_encoding(raw_path, path, root_path, rest):
    scope = {
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "root_path": root_path,
        "query_string": b"",
        "headers": [],
    }
    assert redirect_parts(scope)["rest"] == rest

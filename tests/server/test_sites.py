"""Sites on a real listener: the request's host picks the site, then the path picks the app.

Proved against a running host with real clients (httpx over HTTP/1.1 and h2c,
raw sockets with chosen Host lines, the `h2` library, the `websockets`
client, curl with `--resolve`):

- exact names match whatever the case, port and trailing dot; a wildcard
  `*.tenant.test` takes exactly one label (`a.tenant.test`, never
  `tenant.test` nor `a.b.tenant.test`); an exact name beats the wildcard;
- a Unicode name in the file matches its punycode on the wire;
- hosts no site names go to the listener's own routes, or get the host's
  404 when the listener has none; so does an HTTP/1.0 request without Host;
- inside a site, paths route exactly as on a listener (longest prefix on
  `/` boundaries, `root_path` and `path` in the scope);
- an absolute-form target's authority decides, not the Host line;
- an IPv6 literal host, with and without its port, in any spelling;
- on one keep-alive connection (pipelined too) and on one HTTP/2 connection,
  each request is routed by its own host; on HTTP/2 by `:authority`, or by
  `host` when there is no `:authority`;
- a WebSocket upgrade goes to the site its Host names;
- more distinct hosts than the per-worker cache holds (HOST_CACHE_SIZE)
  keep routing right, hosts seen before the cache emptied included.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import idna
import pytest
from tests.h2raw import RawH2
from tests.server.conftest import RawResponse, RunningHost, Serve, run_curl
from websockets.sync.client import connect as ws_connect

from uvhost.config.hostnames import parent_wildcard
from uvhost.server.router import HOST_CACHE_SIZE

TIMEOUT = 5.0

APPS = r"""
import json


def make(name):
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": json.dumps(
                {"app": name, "path": scope["path"], "root_path": scope["root_path"]})})
            await send({"type": "websocket.close", "code": 1000})
            return
        while (await receive()).get("more_body"):
            pass
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        body = json.dumps({
            "app": name,
            "root_path": scope["root_path"],
            "path": scope["path"],
            "host": host,
            "http_version": scope["http_version"],
        }).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]})
        await send({"type": "http.response.body", "body": body})
    return app


shop = make("shop")
api = make("api")
tenants = make("tenants")
vip = make("vip")
other = make("other")
local6 = make("local6")
"""

APP_TABLES = "".join(
    f'\n[apps.{name}]\ntarget = "apps:{name}"\nlifespan = "off"\n'
    for name in ("shop", "tenants", "vip", "other", "local6")
)

CONFIG = (
    """
[listeners.web]
bind = "127.0.0.1:0"
routes = { "/" = "other", "/healthz" = "@health" }

[listeners.bare]
bind = "127.0.0.1:0"

[sites.shop]
hosts = ["example.com", "WWW.Example.com.", "bücher.example"]
listeners = ["web", "bare"]
routes = { "/" = "shop", "/api" = "api" }

[sites.tenants]
hosts = ["*.tenant.test"]
listeners = ["web", "bare"]
app = "tenants"

[sites.vip]
hosts = ["vip.tenant.test"]
listeners = ["web", "bare"]
app = "vip"

[sites.local6]
hosts = ["::1", "127.0.0.2"]
listeners = ["web", "bare"]
app = "local6"

[apps.api]
target = "apps:api"
lifespan = "off"
root_path = "/edge"
"""
    + APP_TABLES
)


@pytest.fixture
def host(serve: Serve) -> RunningHost:
    return serve(CONFIG, APPS)


def get(host: RunningHost, host_header: str, path: str = "/", listener: str = "web") -> Any:
    """One HTTP/1.1 request with the given Host line; the app's report (or status, text)."""
    with host.raw(listener) as raw:
        raw.send(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode("latin-1"))
        return report(raw.read_response())


def report(response: RawResponse) -> Any:
    if response.status != 200:
        return response.status, response.body.decode("latin-1")
    return json.loads(response.body)


def app_of(host: RunningHost, host_header: str, listener: str = "web") -> str | tuple[int, str]:
    seen = get(host, host_header, "/", listener)
    return seen if isinstance(seen, tuple) else seen["app"]


NOT_FOUND = (404, "Not Found\n")


# ------------------------------------------------------------- exact names


@pytest.mark.parametrize(
    "name",
    [
        "example.com",
        "EXAMPLE.COM",
        "Example.Com",
        "example.com.",
        "example.com:8080",
        "example.com.:80",
        "ExAmPlE.cOm.:65535",
        "www.example.com",  # written "WWW.Example.com." in the file
        "WWW.EXAMPLE.COM:1",
    ],
)
def test_exact_name_whatever_the_case_port_and_trailing_dot(host: RunningHost, name: str) -> None:
    assert app_of(host, name) == "shop"
    assert app_of(host, name, "bare") == "shop"


def test_the_app_sees_the_host_as_sent(host: RunningHost) -> None:
    seen = get(host, "Example.COM.:81")
    assert (seen["app"], seen["host"]) == ("shop", "Example.COM.:81")


@pytest.mark.parametrize(
    "name", ["example.co", "xexample.com", "example.com.x", "example.comm", "example..com"]
)
def test_near_misses_are_not_the_site(host: RunningHost, name: str) -> None:
    assert app_of(host, name) == "other"
    assert app_of(host, name, "bare") == NOT_FOUND


# --------------------------------------------------------------- wildcards


@pytest.mark.parametrize(
    ("name", "app"),
    [
        ("a.tenant.test", "tenants"),
        ("A.Tenant.Test.:8000", "tenants"),
        ("xn--bcher-kva.tenant.test", "tenants"),
        ("vip.tenant.test", "vip"),  # an exact name wins over the wildcard
        ("VIP.tenant.test.:443", "vip"),
        ("vipx.tenant.test", "tenants"),
        ("tenant.test", "other"),  # the wildcard is one label more, never none
        ("a.b.tenant.test", "other"),  # nor two
        ("a.vip.tenant.test", "other"),
        ("a.tenant.testx", "other"),
    ],
)
def test_wildcard_takes_exactly_one_label(host: RunningHost, name: str, app: str) -> None:
    assert app_of(host, name) == app
    assert app_of(host, name, "bare") == (app if app != "other" else NOT_FOUND)


# -------------------------------------------------------------------- IDNA


def test_a_unicode_name_matches_its_punycode(host: RunningHost) -> None:
    assert app_of(host, "xn--bcher-kva.example") == "shop"
    assert app_of(host, "XN--BCHER-KVA.EXAMPLE.:8443") == "shop"
    assert app_of(host, "xn--bcher-kva.example", "bare") == "shop"
    assert app_of(host, "bucher.example") == "other"  # not a transliteration


SHARP_S = """
[listeners.web]
bind = "127.0.0.1:0"
routes = { "/" = "other" }

[sites.street]
hosts = ["straße.example"]
listeners = ["web"]
app = "shop"

[apps.shop]
target = "apps:shop"
lifespan = "off"

[apps.other]
target = "apps:other"
lifespan = "off"
"""


def test_a_unicode_name_matches_what_browsers_send_for_it(serve: Serve) -> None:
    host = serve(SHARP_S, APPS)
    wire = idna.encode("straße.example", uts46=True, transitional=False).decode("ascii")
    assert wire == "xn--strae-oqa.example"  # what Chrome, Firefox, Safari and curl send
    assert app_of(host, wire) == "shop"


def test_curl_reaches_a_unicode_site_with_sharp_s(serve: Serve) -> None:
    host = serve(SHARP_S, APPS)
    if "IDN" not in curl("--version"):
        pytest.skip("this curl has no IDN support")
    port = host.port()
    out = curl("--connect-to", f"::127.0.0.1:{port}", f"http://straße.example:{port}/x")
    assert json.loads(out) == {
        "app": "shop",
        "root_path": "",
        "path": "/x",
        "host": f"xn--strae-oqa.example:{port}",
        "http_version": "1.1",
    }


WILDCARD_OF_DIGITS = """
[listeners.web]
bind = "127.0.0.1:0"
routes = { "/" = "other" }

[sites.numbers]
hosts = ["*.0.0.1"]
listeners = ["web"]
app = "tenants"

[apps.tenants]
target = "apps:tenants"
lifespan = "off"

[apps.other]
target = "apps:other"
lifespan = "off"
"""


def test_a_wildcard_never_matches_an_ip_address(serve: Serve) -> None:
    """A wildcard of digits would stand for IP addresses: the config refuses it, and no
    IPv4 host has a wildcard one label up to be matched by."""
    with pytest.raises(AssertionError, match="wildcard of an IP address"):
        serve(WILDCARD_OF_DIGITS, APPS)  # the harness asserts the config loaded
    assert parent_wildcard("127.0.0.1") == ""
    assert parent_wildcard("a.0.0.1") == "*.0.0.1"  # a name, however odd


# ------------------------------------------------------- default and 404


@pytest.mark.parametrize("name", ["unknown.test", "localhost", "127.0.0.1", "[::2]", "a"])
def test_unknown_hosts_get_the_listeners_own_routes(host: RunningHost, name: str) -> None:
    seen = get(host, name, "/some/page")
    assert (seen["app"], seen["root_path"], seen["path"]) == ("other", "", "/some/page")
    health = host.request("GET", "/healthz", listener="web", headers={"Host": name})
    assert (health.status_code, health.text) == (200, "ok\n")


def test_unknown_hosts_get_404_on_a_listener_without_routes(host: RunningHost) -> None:
    response = host.request("GET", "/anything", listener="bare", headers={"Host": "nobody.test"})
    assert response.status_code == 404
    assert response.text == "Not Found\n"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    # the same port serves its sites all the same
    shop = host.request("GET", "/anything", listener="bare", headers={"Host": "example.com"})
    assert shop.json()["app"] == "shop"


def test_a_site_path_no_route_serves_is_404_not_the_default(serve: Serve) -> None:
    host = serve(
        """
[listeners.web]
bind = "127.0.0.1:0"
app = "other"

[sites.shop]
hosts = ["example.com"]
listeners = ["web"]
routes = { "/api" = "api" }

[apps.api]
target = "apps:api"
lifespan = "off"

[apps.other]
target = "apps:other"
lifespan = "off"
""",
        APPS,
    )
    assert get(host, "example.com", "/api/x")["app"] == "api"
    assert get(host, "example.com", "/elsewhere") == NOT_FOUND  # never someone else's app
    assert get(host, "other.test", "/elsewhere")["app"] == "other"


def test_http10_without_host_goes_to_the_default(host: RunningHost) -> None:
    with host.raw("web") as raw:
        raw.send(b"GET /page HTTP/1.0\r\n\r\n")
        seen = report(raw.read_response())
    assert (seen["app"], seen["path"], seen["http_version"]) == ("other", "/page", "1.0")
    with host.raw("bare") as raw:
        raw.send(b"GET /page HTTP/1.0\r\n\r\n")
        assert report(raw.read_response()) == NOT_FOUND
    with host.raw("bare") as raw:  # with a Host, HTTP/1.0 is routed by it
        raw.send(b"GET /page HTTP/1.0\r\nHost: a.tenant.test\r\n\r\n")
        assert report(raw.read_response())["app"] == "tenants"


# ------------------------------------------------------- paths inside a site


@pytest.mark.parametrize(
    ("path", "app", "root_path", "scope_path"),
    [
        ("/", "shop", "", "/"),
        ("/cart/3", "shop", "", "/cart/3"),
        ("/apiary", "shop", "", "/apiary"),
        ("/api", "api", "/edge/api", "/edge/api"),
        ("/api/", "api", "/edge/api", "/edge/api/"),
        ("/api/items/3", "api", "/edge/api", "/edge/api/items/3"),
        ("/a%70i/x", "api", "/edge/api", "/edge/api/x"),
    ],
)
def test_paths_route_inside_a_site_as_on_a_listener(
    host: RunningHost, path: str, app: str, root_path: str, scope_path: str
) -> None:
    for listener in ("web", "bare"):
        seen = get(host, "example.com", path, listener)
        assert (seen["app"], seen["root_path"], seen["path"]) == (app, root_path, scope_path)


def test_a_path_of_another_site_is_not_served_here(host: RunningHost) -> None:
    # /api is a route of the shop site only; other hosts' /api goes to their own root
    assert get(host, "a.tenant.test", "/api/x")["app"] == "tenants"
    assert get(host, "unknown.test", "/api/x")["app"] == "other"
    assert get(host, "unknown.test", "/api/x", "bare") == NOT_FOUND


def test_asterisk_form_options_goes_to_the_sites_root(host: RunningHost) -> None:
    with host.raw("web") as raw:
        raw.send(b"OPTIONS * HTTP/1.1\r\nHost: a.tenant.test\r\n\r\n")
        seen = report(raw.read_response())
    assert (seen["app"], seen["path"]) == ("tenants", "*")


# --------------------------------------------------------- absolute form


def test_absolute_form_routes_by_the_targets_authority(host: RunningHost) -> None:
    with host.raw("web") as raw:
        raw.send(b"GET http://example.com/api/x HTTP/1.1\r\nHost: a.tenant.test\r\n\r\n")
        seen = report(raw.read_response())
        assert (seen["app"], seen["path"], seen["host"]) == ("api", "/edge/api/x", "example.com")
        raw.send(b"GET http://A.Tenant.Test:99/x HTTP/1.1\r\nHost: example.com\r\n\r\n")
        seen = report(raw.read_response())
        assert (seen["app"], seen["host"]) == ("tenants", "A.Tenant.Test:99")
        raw.send(b"GET http://nobody.test/x HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert report(raw.read_response())["app"] == "other"
    with host.raw("bare") as raw:  # HTTP/1.0 with no Host line at all
        raw.send(b"GET http://vip.tenant.test/x HTTP/1.0\r\n\r\n")
        assert report(raw.read_response())["app"] == "vip"


# ---------------------------------------------------------------- IP hosts


@pytest.mark.parametrize(
    "name",
    ["[::1]", "[::1]:8080", "[0:0:0:0:0:0:0:1]", "[0::1]:1", "127.0.0.2", "127.0.0.2:80"],
)
def test_ip_literal_sites(host: RunningHost, name: str) -> None:
    assert app_of(host, name) == "local6"
    assert app_of(host, name, "bare") == "local6"


def test_other_ip_literals_are_not_the_site(host: RunningHost) -> None:
    assert app_of(host, "[::2]:80") == "other"
    assert app_of(host, "127.0.0.1") == "other"


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_a_client_on_ipv6_names_the_site_by_its_address(serve: Serve) -> None:
    config = CONFIG.replace(
        '[listeners.bare]\nbind = "127.0.0.1:0"', '[listeners.bare]\nbind = "[::1]:0"'
    )
    host = serve(config, APPS)
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(f"http://[::1]:{host.port('bare')}/x")
    seen = response.json()
    assert (seen["app"], seen["host"]) == ("local6", f"[::1]:{host.port('bare')}")


# ------------------------------------------------ one connection, many hosts


def test_keep_alive_connection_switching_hosts(host: RunningHost) -> None:
    names = ["example.com", "a.tenant.test", "example.com", "nobody.test", "vip.tenant.test"]
    names += ["example.com", "example.com", "[::1]:5", "b.tenant.test", "EXAMPLE.COM"]
    wanted = ["shop", "tenants", "shop", "other", "vip", "shop", "shop", "local6", "tenants"]
    wanted += ["shop"]
    with host.raw("web") as raw:
        seen = []
        for name in names:  # one at a time
            raw.send(f"GET /x HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
            seen.append(report(raw.read_response())["app"])
        assert seen == wanted
        # the same again, pipelined in one write
        raw.send(b"".join(f"GET /x HTTP/1.1\r\nHost: {n}\r\n\r\n".encode() for n in names))
        assert [report(raw.read_response())["app"] for _ in names] == wanted


def test_httpx_keep_alive_with_per_request_hosts(host: RunningHost) -> None:
    with host.client("bare") as client:
        apps = [
            client.get("/x", headers={"Host": name}).json()["app"]
            for name in ("a.tenant.test", "example.com", "vip.tenant.test", "example.com")
        ]
        missing = client.get("/x", headers={"Host": "nobody.test"})
    assert apps == ["tenants", "shop", "vip", "shop"]
    assert missing.status_code == 404


def test_more_hosts_than_the_cache_holds_keep_routing_right(host: RunningHost) -> None:
    count = HOST_CACHE_SIZE + 300
    cases: list[tuple[str, str]] = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            cases.append((f"t{index}.tenant.test", "tenants"))
        elif kind == 1:
            cases.append((f"u{index}.example.org", "other"))
        elif kind == 2:
            cases.append((f"x{index}.y.tenant.test", "other"))
        else:  # the same few sites, spelt anew each time (port), so each is a cache miss
            site, app = (("example.com", "shop"), ("vip.tenant.test", "vip"), ("[::1]", "local6"))[
                index % 3
            ]
            cases.append((f"{site}:{index}", app))
    names = [name for name, _ in cases]
    wanted = [app for _, app in cases]
    # and the first hosts again, long after the cache was emptied
    names += names[:40]
    wanted += wanted[:40]
    batch = 256
    seen: list[str] = []
    with host.raw("web") as raw:
        for start in range(0, len(names), batch):
            chunk = names[start : start + batch]
            raw.send(b"".join(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % n.encode() for n in chunk))
            seen += [report(raw.read_response())["app"] for _ in chunk]
    assert len(seen) == len(wanted)
    wrong = [(n, s, w) for n, s, w in zip(names, seen, wanted, strict=True) if s != w]
    assert wrong == []


# -------------------------------------------------------------------- HTTP/2


def h2c_client(host: RunningHost, listener: str) -> httpx.Client:
    return httpx.Client(base_url=host.url("", listener), http1=False, http2=True, timeout=TIMEOUT)


def test_http2_routes_by_authority(host: RunningHost) -> None:
    with h2c_client(host, "web") as client:
        responses = {
            name: client.get("/api/x", headers={"Host": name})
            for name in ("example.com:1", "a.tenant.test", "vip.tenant.test.", "nobody.test")
        }
    assert {r.http_version for r in responses.values()} == {"HTTP/2"}
    seen = {name: r.json() for name, r in responses.items()}
    assert seen["example.com:1"]["app"] == "api"
    assert seen["example.com:1"]["root_path"] == "/edge/api"
    assert seen["example.com:1"]["host"] == "example.com:1"
    assert seen["a.tenant.test"]["app"] == "tenants"
    assert seen["vip.tenant.test."]["app"] == "vip"
    assert seen["nobody.test"]["app"] == "other"
    with h2c_client(host, "bare") as client:
        missing = client.get("/x", headers={"Host": "nobody.test"})
        found = client.get("/x", headers={"Host": "XN--BCHER-KVA.example"})
    assert (missing.http_version, missing.status_code) == ("HTTP/2", 404)
    assert found.json()["app"] == "shop"


@contextmanager
def raw_h2(host: RunningHost, listener: str) -> Iterator[RawH2]:
    with host.connect(listener) as sock:
        yield RawH2(sock)


def h2_head(path: bytes, authority: bytes | None, host: bytes | None = None) -> list[Any]:
    head = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path)]
    if authority is not None:
        head.append((b":authority", authority))
    if host is not None:
        head.append((b"host", host))
    return head


def test_http2_concurrent_streams_each_routed_by_its_own_authority(host: RunningHost) -> None:
    cases = [
        (h2_head(b"/api/1", b"example.com"), "api"),
        (h2_head(b"/1", b"a.tenant.test:80"), "tenants"),
        (h2_head(b"/1", b"Vip.Tenant.Test"), "vip"),
        (h2_head(b"/1", b"[::1]:9"), "local6"),
        (h2_head(b"/1", b"xn--bcher-kva.example."), "shop"),
        (h2_head(b"/1", None, b"a.tenant.test"), "tenants"),  # no :authority: the host field
        (h2_head(b"/1", b"nobody.test"), 404),
    ]
    with raw_h2(host, "bare") as client:
        ids = [client.send(head) for head, _ in cases]  # all in flight at once
        answers = client.responses(ids)
    for stream_id, (head, wanted) in zip(ids, cases, strict=True):
        status, body = answers[stream_id]
        got = json.loads(body)["app"] if status == 200 else status
        assert got == wanted, head


def first_websocket_text(data: bytes) -> str:
    """The payload of the server's first frame (unmasked, text, under 126 bytes)."""
    assert data[0] == 0x81, data[:2]  # FIN + text
    size = data[1]
    assert size < 126, size
    return data[2 : 2 + size].decode()


@pytest.mark.parametrize(
    ("authority", "app"),
    [(b"a.tenant.test", "tenants"), (b"example.com:8", "shop"), (b"nobody.test", "other")],
)
def test_websocket_over_http2_is_routed_by_authority(
    host: RunningHost, authority: bytes, app: str
) -> None:
    with raw_h2(host, "web") as client:
        client.pump(lambda: client.conn.remote_settings.enable_connect_protocol == 1)
        head = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", b"/chat"),
            (b":authority", authority),
            (b"sec-websocket-version", b"13"),
        ]
        stream_id = client.send(head, end_stream=False)

        def first_frame() -> bool:
            status, body = client.answers().get(stream_id, (0, b""))
            return status not in (0, 200) or len(body) >= 2 + (body[1] if len(body) > 1 else 0)

        client.pump(first_frame)
        status, body = client.answers()[stream_id]
    assert status == 200
    assert json.loads(first_websocket_text(body)) == {"app": app, "path": "/chat", "root_path": ""}


# ----------------------------------------------------------------- WebSocket


@pytest.mark.parametrize(
    ("name", "listener", "wanted"),
    [
        ("example.com", "web", {"app": "shop", "path": "/chat", "root_path": ""}),
        ("a.tenant.test", "bare", {"app": "tenants", "path": "/chat", "root_path": ""}),
        ("vip.tenant.test", "web", {"app": "vip", "path": "/chat", "root_path": ""}),
        ("nobody.test", "web", {"app": "other", "path": "/chat", "root_path": ""}),
    ],
)
def test_websocket_upgrade_is_routed_by_host(
    host: RunningHost, name: str, listener: str, wanted: dict[str, str]
) -> None:
    sock = host.connect(listener)
    uri = f"ws://{name}:{host.port(listener)}/chat"  # the Host line comes from the URI
    with ws_connect(uri, sock=sock, proxy=None, open_timeout=TIMEOUT) as websocket:
        assert json.loads(websocket.recv(timeout=TIMEOUT)) == wanted


def test_websocket_upgrade_for_an_unknown_host_on_a_bare_listener_is_404(
    host: RunningHost,
) -> None:
    with host.raw("bare") as raw:
        raw.send(
            b"GET /chat HTTP/1.1\r\nHost: nobody.test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert raw.read_response().status == 404
    with host.raw("bare") as raw:  # the same upgrade to a site's host is accepted
        raw.send(
            b"GET /api/chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = raw.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head


# ---------------------------------------------------------------------- curl


def curl(*args: str) -> str:
    return run_curl(*args).stdout.decode()


def test_curl_with_resolve(host: RunningHost) -> None:
    port = host.port("bare")
    for name, path, app in [
        ("example.com", "/api/x", "api"),
        ("www.example.com", "/x", "shop"),
        ("a.tenant.test", "/x", "tenants"),
        ("vip.tenant.test", "/x", "vip"),
    ]:
        out = curl("--resolve", f"{name}:{port}:127.0.0.1", f"http://{name}:{port}{path}")
        seen = json.loads(out)
        assert (seen["app"], seen["host"]) == (app, f"{name}:{port}")
    status = curl(
        "--resolve",
        f"nobody.test:{port}:127.0.0.1",
        "--output",
        os.devnull,
        "--write-out",
        "%{http_code}",
        f"http://nobody.test:{port}/x",
    )
    assert status == "404"


def test_curl_http2_prior_knowledge_with_resolve(host: RunningHost) -> None:
    if "HTTP2" not in curl("--version"):
        pytest.skip("this curl has no HTTP/2")
    port = host.port("web")
    out = curl(
        "--http2-prior-knowledge",
        "--resolve",
        f"a.tenant.test:{port}:127.0.0.1",
        f"http://a.tenant.test:{port}/x",
    )
    seen = json.loads(out)
    assert (seen["app"], seen["http_version"]) == ("tenants", "2")


def test_curl_sends_a_unicode_name_as_punycode_that_reaches_the_site(host: RunningHost) -> None:
    if "IDN" not in curl("--version"):
        pytest.skip("this curl has no IDN support")
    port = host.port("bare")
    out = curl("--connect-to", f"::127.0.0.1:{port}", f"http://bücher.example:{port}/x")
    seen = json.loads(out)
    assert (seen["app"], seen["host"]) == ("shop", f"xn--bcher-kva.example:{port}")

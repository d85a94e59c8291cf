"""Request IDs over real sockets: kept from a trusted peer, made otherwise, seen by the app
(header and state), returned on the response, one value per request whatever a client sends.
"""

from __future__ import annotations

import json

APPS = r"""
import json

async def lifespan_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["shared"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    seen = [v.decode() for k, v in scope["headers"] if k == b"x-request-id"]
    state = dict(scope["state"])
    body = json.dumps({"headers": seen, "state": state}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})

async def own_header(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"X-Request-ID", b"the-app-says")]})
    await send({"type": "http.response.body", "body": b""})

async def generated_headers(scope, receive, send):
    headers = ((b"x-kind", v) for v in [b"generated"])  # any iterable of pairs, once
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})

def wsgi_app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [environ.get("HTTP_X_REQUEST_ID", "none").encode()]
"""


def config(trust: str, extra: str = "", *, table: bool = True) -> str:
    request_id = f'[listeners.front.request_id]\ntrust = "{trust}"\n{extra}' if table else ""
    return f"""
[listeners.front]
bind = "127.0.0.1:0"
routes = {{ "/" = "main", "/own" = "own", "/wsgi" = "legacy", "/gen" = "gen" }}
forwarded_allow_ips = ["127.0.0.1"]

{request_id}

[apps.main]
target = "apps:lifespan_app"
lifespan = "on"

[apps.own]
target = "apps:own_header"
lifespan = "off"

[apps.gen]
target = "apps:generated_headers"
lifespan = "off"

[apps.legacy]
target = "apps:wsgi_app"
interface = "wsgi"
"""


def test_a_fresh_id_reaches_the_app_and_the_response(serve):
    host = serve(config("none"), APPS)
    with host.client() as client:
        first = client.get(host.url("/"))
        second = client.get(host.url("/"))
    ids = [response.headers["x-request-id"] for response in (first, second)]
    assert ids[0] != ids[1]
    for response, request_id in zip((first, second), ids, strict=True):
        seen = response.json()
        assert seen["headers"] == [request_id]
        assert seen["state"] == {"shared": "yes", "request_id": request_id}


def test_the_lifespan_state_is_not_written_into(serve):
    host = serve(config("none"), APPS)
    with host.client() as client:
        client.get(host.url("/"))
    lifespan_state = host.worker.lifespans["main"].state
    assert "request_id" not in lifespan_state


def test_a_trusted_peer_keeps_its_id(serve):
    host = serve(config("proxies"), APPS)  # 127.0.0.1 is in forwarded_allow_ips
    response = host.request("GET", "/", headers={"X-Request-ID": "lb-1234"})
    assert response.headers["x-request-id"] == "lb-1234"
    assert response.json()["headers"] == ["lb-1234"]


def test_an_untrusted_peer_gets_a_fresh_id_and_one_value_only(serve):
    host = serve(config("proxies").replace('["127.0.0.1"]', '["10.0.0.0/8"]'), APPS)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: chosen\r\nX-Request-ID: two\r\n\r\n")
        response = raw.read_response()
    returned = response.header("x-request-id")
    assert returned not in (None, b"chosen", b"two")
    assert json.loads(response.body)["headers"] == [returned.decode()]


def test_trust_none_replaces_even_a_proxys_id(serve):
    host = serve(config("none"), APPS)
    response = host.request("GET", "/", headers={"X-Request-ID": "lb-1234"})
    assert response.headers["x-request-id"] != "lb-1234"


def test_an_unreadable_id_is_replaced(serve):
    host = serve(config("all"), APPS)
    response = host.request("GET", "/", headers={"X-Request-ID": "a" * 201})
    assert response.headers["x-request-id"] != "a" * 201
    assert len(response.headers["x-request-id"]) < 201


def test_the_apps_own_header_wins_and_the_name_is_configurable(serve):
    host = serve(config("none"), APPS)
    own = host.request("GET", "/own")
    assert own.headers.get_list("x-request-id") == ["the-app-says"]
    host = serve(config("all", 'header = "X-Correlation-ID"\nresponse = false'), APPS)
    response = host.request("GET", "/", headers={"X-Correlation-ID": "c-1"})
    assert "x-correlation-id" not in response.headers
    assert response.json()["state"]["request_id"] == "c-1"


def test_wsgi_apps_read_it_from_the_environ(serve):
    host = serve(config("all"), APPS)
    response = host.request("GET", "/wsgi", headers={"X-Request-ID": "w-9"})
    assert response.text == "w-9"
    assert response.headers["x-request-id"] == "w-9"


def test_http2_requests_get_ids_too(serve):
    host = serve(config("none"), APPS)
    with host.client(http1=False, http2=True) as client:
        response = client.get(host.url("/"))
    assert response.http_version == "HTTP/2"
    assert response.json()["headers"] == [response.headers["x-request-id"]]


def test_without_the_table_nothing_is_added(serve):
    host = serve(config("none", table=False), APPS)
    response = host.request("GET", "/", headers={"X-Request-ID": "kept-as-is"})
    assert "x-request-id" not in response.headers
    assert response.json() == {"headers": ["kept-as-is"], "state": {"shared": "yes"}}


def test_headers_from_an_iterable_are_all_sent_beside_the_id(serve):
    host = serve(config("all"), APPS)
    response = host.request("GET", "/gen", headers={"X-Request-ID": "g-1"})
    assert response.headers["x-kind"] == "generated"
    assert response.headers["x-request-id"] == "g-1"
    assert response.text == "ok"

"""Mounting real framework apps: the example FastAPI app at /api, the Starlette site at /."""

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CONFIG = f"""
[listeners.site]
bind = "127.0.0.1:0"
routes = {{ "/" = "pages", "/api" = "api" }}

[listeners.apionly]
bind = "127.0.0.1:0"
routes = {{ "/api" = "api", "/healthz" = "@health" }}

[apps.pages]
target = "pages:app"
app_dir = "{EXAMPLES}"
lifespan = "on"

[apps.api]
target = "api:create_app"
factory = true
app_dir = "{EXAMPLES}"
"""


@pytest.fixture(scope="module")
def examples_exist():
    assert (EXAMPLES / "api.py").is_file()
    assert (EXAMPLES / "pages.py").is_file()


@pytest.fixture
def host(serve, examples_exist):
    return serve(CONFIG)


def test_fastapi_routes_under_the_prefix(host):
    with host.client("site") as client:
        item = client.get("/api/items/3")
        echoed = client.post("/api/echo", json={"a": [1, 2]})
    assert item.json() == {"item_id": 3, "name": "Item 3"}
    assert echoed.json() == {"a": [1, 2]}


def test_fastapi_url_for_includes_the_prefix(host):
    index = host.request("GET", "/api/", listener="site").json()
    assert index["item"] == f"http://127.0.0.1:{host.port('site')}/api/items/1"


def test_fastapi_docs_point_at_the_mounted_openapi_url(host):
    with host.client("site") as client:
        docs = client.get("/api/docs")
        assert docs.status_code == 200
        assert "text/html" in docs.headers["content-type"]
        assert "'/api/openapi.json'" in docs.text or '"/api/openapi.json"' in docs.text
        schema = client.get("/api/openapi.json")
    assert schema.status_code == 200
    assert schema.headers["content-type"] == "application/json"
    document = schema.json()
    assert document["info"]["title"] == "uvhost example API"
    assert "/items/{item_id}" in document["paths"]


def test_prefix_matches_on_segment_boundaries_only(host):
    response = host.request("GET", "/apix", listener="site")
    assert response.status_code == 404
    assert "application/json" not in response.headers["content-type"]  # not FastAPI's 404
    assert response.text == "Not Found"  # Starlette's, from the site at "/"


def test_starlette_site_at_the_root_with_its_lifespan(host):
    with host.client("site") as client:
        index = client.get("/")
        about = client.get("/about")
    assert "uvhost examples" in index.text
    assert about.text.startswith("Served by uvhost")  # app.state set by its lifespan


def test_no_route_gets_the_hosts_own_404(host):
    response = host.request("GET", "/elsewhere", listener="apionly")
    assert response.status_code == 404
    assert response.text == "Not Found\n"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert host.request("GET", "/apiary", listener="apionly").text == "Not Found\n"


def test_same_app_on_a_second_listener_and_a_builtin(host):
    assert host.request("GET", "/api/items/7", listener="apionly").json()["item_id"] == 7
    health = host.request("GET", "/healthz", listener="apionly")
    assert (health.status_code, health.text) == (200, "ok\n")

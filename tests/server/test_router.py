"""Routing a decoded path to an endpoint, with Starlette's Mount semantics."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uvhost.config.model import AppSettings, Listener
from uvhost.config.plan import Mount, RouteTable, route_table
from uvhost.server.router import BUILTIN_MAX_BODY_BYTES, Endpoint, Router


def make_app(name: str):
    async def app(scope, receive, send) -> None: ...

    app.__name__ = name
    return app


APPS = {name: make_app(name) for name in ("site", "api", "admin", "docs")}
BUILTINS = {"@health": make_app("health"), "@metrics": make_app("metrics")}


def settings(**per_app: dict[str, Any]) -> dict[str, AppSettings]:
    return {
        name: AppSettings.model_validate({"target": f"m:{name}", **per_app.get(name, {})})
        for name in APPS
    }


def compile_router(listener: dict[str, Any], **per_app: dict[str, Any]) -> Router:
    model = Listener.model_validate({"bind": "127.0.0.1:0", **listener})
    return Router.compile(route_table("pub", model), model, APPS, settings(**per_app), BUILTINS)


ROUTES = {
    "/": "site",
    "/api": "api",
    "/api/admin": "admin",
    "/docs/": "docs",
    "/healthz": "@health",
    "/metrics": "@metrics",
}


@pytest.mark.parametrize(
    ("path", "name", "prefix"),
    [
        ("/", "site", ""),
        ("/index.html", "site", ""),
        ("/api", "api", "/api"),
        ("/api/", "api", "/api"),
        ("/api/items/3", "api", "/api"),
        ("/apiary", "site", ""),
        ("/api/admin", "admin", "/api/admin"),
        ("/api/admin/users", "admin", "/api/admin"),
        ("/api/administrator", "api", "/api"),
        ("/docs", "docs", "/docs"),
        ("/docs/guide", "docs", "/docs"),
        ("/healthz", "@health", "/healthz"),
        ("/healthz/", "@health", "/healthz"),
        ("/metricsx", "site", ""),
        ("*", "site", ""),
    ],
)
def test_resolve_picks_the_longest_prefix_on_segment_boundaries(path, name, prefix):
    endpoint = compile_router({"routes": ROUTES}).resolve(path, None)
    assert endpoint is not None
    assert (endpoint.name, endpoint.prefix) == (name, prefix)
    assert endpoint.app is {**APPS, **BUILTINS}[name]


@pytest.mark.parametrize("path", ["/", "/ap", "/apiary", "/other/api", "*", ""])
def test_no_match_without_a_root_mount(path):
    router = compile_router({"routes": {"/api": "api", "/healthz": "@health"}})
    assert router.resolve(path, None) is None


@pytest.mark.parametrize(
    ("listener_root", "app_root", "path", "root_path", "proxy_prefix"),
    [
        ("", "", "/api/items", "/api", ""),
        ("/px", "", "/api/items", "/px/api", "/px"),
        ("", "/v1", "/api/items", "/v1/api", "/v1"),
        ("/px", "/v1", "/api/items", "/px/v1/api", "/px/v1"),
        ("/px", "/v1", "/", "/px/v1", "/px/v1"),
    ],
)
def test_root_path_composition(listener_root, app_root, path, root_path, proxy_prefix):
    router = compile_router(
        {"routes": ROUTES, "root_path": listener_root},
        api={"root_path": app_root},
        site={"root_path": app_root},
    )
    endpoint = router.resolve(path, None)
    assert endpoint is not None
    assert endpoint.root_path == root_path
    assert endpoint.proxy_prefix == proxy_prefix
    assert endpoint.raw_proxy_prefix == proxy_prefix.encode()
    # what the server builds: the full path, which starts with root_path
    assert (endpoint.proxy_prefix + path).startswith(endpoint.root_path)


def test_builtins_take_only_the_listener_root_path():
    router = compile_router({"routes": ROUTES, "root_path": "/px"}, site={"root_path": "/v1"})
    endpoint = router.resolve("/healthz", None)
    assert endpoint == Endpoint(
        name="@health",
        app=BUILTINS["@health"],
        prefix="/healthz",
        root_path="/px/healthz",
        proxy_prefix="/px",
        max_body_bytes=BUILTIN_MAX_BODY_BYTES,
        websocket=None,
        raw_proxy_prefix=b"/px",
    )


def test_app_settings_reach_the_endpoint():
    router = compile_router(
        {"routes": ROUTES},
        api={"max_body_bytes": "1KiB", "websocket": {"max_message_bytes": 10}},
    )
    endpoint = router.resolve("/api/x", None)
    assert endpoint is not None
    assert endpoint.max_body_bytes == 1024
    assert endpoint.websocket is not None
    assert endpoint.websocket.max_message_bytes == 10


def test_non_ascii_proxy_prefix_is_percent_encoded_for_raw_path():
    router = compile_router({"app": "site", "root_path": "/café"})
    endpoint = router.resolve("/", None)
    assert endpoint is not None
    assert endpoint.proxy_prefix == "/café"
    assert endpoint.raw_proxy_prefix == b"/caf%C3%A9"


def test_percent_encoded_prefixes_match_decoded_paths():
    router = compile_router({"routes": {"/caf%C3%A9": "site", "/api": "api"}})
    endpoint = router.resolve("/café/menu", None)
    assert endpoint is not None
    assert endpoint.name == "site"


@pytest.mark.parametrize(
    "listener", [{"app": "site"}, {"routes": {"/": "site"}}], ids=["app", "root-route"]
)
def test_whole_port_is_a_fast_path(listener):
    router = compile_router(listener)
    only = router.resolve("/", None)
    assert only is not None
    assert only.name == "site"
    assert only.root_path == ""
    for path in ("/", "/anything/at/all", "*", ""):
        assert router.resolve(path, None) is only
    assert type(router).resolve is not Router.resolve  # no scan at all


def test_whole_port_builtin():
    router = compile_router({"routes": {"/": "@metrics"}})
    assert type(router).resolve is not Router.resolve  # the fast path, as for apps
    found = router.resolve("/metrics/anything", None)
    assert found is not None
    assert found.name == "@metrics"


def test_same_app_on_two_prefixes_gets_two_endpoints():
    router = compile_router({"routes": {"/a": "api", "/b": "api"}})
    a, b = router.resolve("/a/x", None), router.resolve("/b/x", None)
    assert a is not None
    assert b is not None
    assert (a.root_path, b.root_path) == ("/a", "/b")
    assert a.app is b.app


def test_missing_app_is_a_clear_key_error():
    model = Listener.model_validate({"bind": "127.0.0.1:0", "routes": {"/x": "ghost"}})
    with pytest.raises(KeyError, match='"ghost"'):
        Router.compile(route_table("pub", model), model, APPS, settings(), BUILTINS)


# ---------------------------------------------------------------- property test

SEGMENTS = st.sampled_from(["a", "ab", "b", "a.b", "é", "x"])
PATHS = st.lists(SEGMENTS, max_size=4).map(lambda parts: "/" + "/".join(parts))
PATH_INPUTS = st.one_of(
    PATHS,
    st.tuples(PATHS, st.sampled_from(["", "/", "b", "x/"])).map("".join),
    st.just("*"),
)


def naive(mounts: list[Mount], path: str) -> str | None:
    """The definition: the longest prefix that is the path or a whole-segment ancestor."""
    fits = [m for m in mounts if m.prefix in ("", path) or path.startswith(m.prefix + "/")]
    return max(fits, key=lambda m: len(m.prefix)).target if fits else None


@given(
    prefixes=st.lists(PATHS, unique=True, max_size=6),
    paths=st.lists(PATH_INPUTS, min_size=1, max_size=10),
)
def test_resolve_agrees_with_the_naive_definition(prefixes, paths):
    names = list(APPS)
    routes = {prefix: names[i % len(names)] for i, prefix in enumerate(prefixes)}
    model = Listener.model_validate({"bind": "127.0.0.1:0", "routes": routes})
    table = route_table("pub", model)
    router = Router.compile(table, model, APPS, settings(), BUILTINS)
    mounts = list(table.mounts)
    for path in paths:
        endpoint = router.resolve(path, None)
        expected = naive(mounts, path)
        assert (endpoint.name if endpoint else None) == expected
        match = table.match(path)  # the plan's own matcher agrees too
        assert (match.prefix if match else None) == (endpoint.prefix if endpoint else None)


def test_compile_keeps_table_order():
    table = RouteTable("pub", (Mount("/a/b", "api"), Mount("/a", "site"), Mount("", "docs")))
    model = Listener.model_validate({"bind": "127.0.0.1:0", "routes": {"/x": "api"}})
    router = Router.compile(table, model, APPS, settings(), BUILTINS)
    assert [e.prefix for e in router.endpoints] == ["/a/b", "/a", ""]

"""Tests for `uvhost.config.plan`: worker groups as connected components, worker counts,
route tables ordered longest first, and matching on `/` segment boundaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uvhost.config.model import HostConfig, Listener, validate_config
from uvhost.config.plan import (
    Mount,
    Plan,
    RouteTable,
    WorkerGroup,
    build_plan,
    components,
    normalise_prefix,
    route_table,
)

BASE = Path("/srv/site")


def plan_of(data: dict[str, Any], cpu_count: int = 4) -> Plan:
    return build_plan(validate_config(data, BASE), base_dir=BASE, cpu_count=cpu_count)


def apps(*names: str, **settings: Any) -> dict[str, Any]:
    return {name: {"target": f"{name}:app", **settings.get(name, {})} for name in names}


def listener(bind_port: int, **serves: Any) -> dict[str, Any]:
    return {"bind": f"127.0.0.1:{bind_port}", **serves}


# ------------------------------------------------------------------- groups


def test_two_listeners_sharing_an_app_are_one_group() -> None:
    plan = plan_of(
        {
            "listeners": {
                "public": listener(1, routes={"/": "site", "/api": "api"}),
                "internal": listener(2, app="api"),
                "other": listener(3, app="hello"),
            },
            "apps": apps("site", "api", "hello"),
        }
    )
    assert plan.groups == (
        WorkerGroup("api+site", ("internal", "public"), ("api", "site"), 1),
        WorkerGroup("hello", ("other",), ("hello",), 1),
    )


def test_a_chain_of_listeners_and_apps_is_one_group() -> None:
    plan = plan_of(
        {
            "listeners": {
                "a": listener(1, routes={"/": "x", "/y": "y"}),
                "b": listener(2, routes={"/": "y", "/z": "z"}),
                "c": listener(3, app="z"),
            },
            "apps": apps("x", "y", "z"),
        }
    )
    [group] = plan.groups
    assert group.name == "x+y+z"
    assert group.listeners == ("a", "b", "c")


def test_a_builtin_only_listener_is_its_own_group_with_one_worker() -> None:
    plan = plan_of(
        {
            "host": {"workers": 8},
            "listeners": {
                "admin": listener(9, routes={"/healthz": "@health", "/metrics": "@metrics"}),
                "public": listener(1, routes={"/": "site", "/healthz": "@health"}),
            },
            "apps": apps("site"),
        }
    )
    assert plan.groups == (
        WorkerGroup("@admin", ("admin",), (), 1),
        WorkerGroup("site", ("public",), ("site",), 8),
    )
    assert plan.group("@admin").workers == 1


def test_an_unrouted_app_is_in_no_group() -> None:
    plan = plan_of(
        {"listeners": {"public": listener(1, app="site")}, "apps": apps("site", "spare")}
    )
    assert [group.apps for group in plan.groups] == [("site",)]
    assert all("spare" not in group.apps for group in plan.groups)


def test_components_ignore_routes_to_missing_apps() -> None:
    config = validate_config(
        {"listeners": {"a": listener(1, app="ghost")}, "apps": apps("site")}, BASE
    )
    assert components(config) == [(("a",), ())]


def test_group_lookup() -> None:
    plan = plan_of({"listeners": {"public": listener(1, app="site")}, "apps": apps("site")})
    assert plan.group("site").listeners == ("public",)
    with pytest.raises(KeyError):
        plan.group("nope")


# ------------------------------------------------------------------ workers


def test_auto_workers_follow_the_cpu_count() -> None:
    data = {
        "host": {"workers": "auto"},
        "listeners": {"a": listener(1, app="x"), "b": listener(2, app="y")},
        "apps": apps("x", "y", y={"workers": 3}),
    }
    assert [g.workers for g in plan_of(data, cpu_count=6).groups] == [6, 3]
    assert [g.workers for g in plan_of(data, cpu_count=1).groups] == [1, 3]
    assert [g.workers for g in plan_of(data, cpu_count=0).groups] == [1, 3]


def test_an_apps_own_auto_overrides_the_host() -> None:
    data = {
        "host": {"workers": 2},
        "listeners": {"a": listener(1, app="x")},
        "apps": apps("x", x={"workers": "auto"}),
    }
    assert plan_of(data, cpu_count=12).group("x").workers == 12


def test_host_workers_are_the_default() -> None:
    data = {"host": {"workers": 5}, "listeners": {"a": listener(1, app="x")}, "apps": apps("x")}
    assert plan_of(data).group("x").workers == 5


# ------------------------------------------------------------------ app_dir


def test_app_dir_defaults_to_the_config_folder() -> None:
    plan = plan_of(
        {
            "listeners": {"a": listener(1, routes={"/": "x", "/y": "y"})},
            "apps": apps("x", "y", y={"app_dir": "src"}),
        }
    )
    assert plan.app_dir("x") == BASE
    assert plan.app_dir("y") == BASE / "src"


# ------------------------------------------------------------- route tables


def test_route_tables_are_longest_prefix_first() -> None:
    plan = plan_of(
        {
            "listeners": {
                "public": listener(
                    1, routes={"/": "site", "/api/v2/": "v2", "/api": "api", "/a": "a"}
                )
            },
            "apps": apps("site", "v2", "api", "a"),
        }
    )
    table = plan.route_tables["public"]
    assert table.listener == "public"
    assert [m.prefix for m in table.mounts] == ["/api/v2", "/api", "/a", ""]
    assert [m.target for m in table.mounts] == ["v2", "api", "a", "site"]


def test_a_whole_port_app_is_one_mount_at_the_root() -> None:
    plan = plan_of({"listeners": {"a": listener(1, app="x")}, "apps": apps("x")})
    assert plan.route_tables["a"] == RouteTable("a", (Mount("", "x"),))


def test_builtins_are_marked() -> None:
    assert Mount("/healthz", "@health").is_builtin
    assert Mount("/metrics", "@metrics").is_builtin
    assert not Mount("/", "site").is_builtin


@pytest.mark.parametrize(
    ("prefix", "normal"),
    [
        ("/", ""),
        ("/api", "/api"),
        ("/api/", "/api"),
        ("/api//", "/api"),
        ("/caf%C3%A9", "/café"),
        ("/a%2Fb", "/a/b"),
    ],
)
def test_normalise_prefix(prefix: str, normal: str) -> None:
    assert normalise_prefix(prefix) == normal


def table(*prefixes: str) -> RouteTable:
    routes = {prefix: f"app{index}" for index, prefix in enumerate(prefixes)}
    return route_table("l", Listener.model_validate({"bind": "127.0.0.1:0", "routes": routes}))


def matched(routes: RouteTable, path: str) -> str | None:
    mount = routes.match(path)
    return None if mount is None else mount.prefix


@pytest.mark.parametrize(
    ("path", "prefix"),
    [
        ("/api", "/api"),
        ("/api/", "/api"),
        ("/api/x", "/api"),
        ("/api/x/y", "/api"),
        ("/apix", None),
        ("/ap", None),
        ("/", None),
        ("", None),
        ("/api/v2", "/api/v2"),
        ("/api/v2/items", "/api/v2"),
        ("/api/v20", "/api"),
    ],
)
def test_match_on_segment_boundaries(path: str, prefix: str | None) -> None:
    assert matched(table("/api", "/api/v2/"), path) == prefix


@pytest.mark.parametrize("path", ["/", "/anything", "/apix", "/api/x", ""])
def test_root_catches_everything_else(path: str) -> None:
    routes = table("/", "/api")
    expected = "/api" if path.startswith("/api/") else ""
    assert matched(routes, path) == expected


def test_percent_encoded_prefixes_match_decoded_paths() -> None:
    routes = table("/caf%C3%A9")
    assert matched(routes, "/café") == "/café"
    assert matched(routes, "/café/menu") == "/café"
    assert matched(routes, "/caf%C3%A9") is None  # the server decodes paths before routing


def test_empty_table_matches_nothing() -> None:
    assert RouteTable("l", ()).match("/") is None


segments = st.sampled_from(["a", "b", "ab", "api", "v2", "é"])
prefixes = st.lists(segments, max_size=3).map(lambda parts: "/" + "/".join(parts))
paths = st.builds(
    lambda parts, slash: "/" + "/".join(parts) + ("/" if slash and parts else ""),
    st.lists(segments, max_size=4),
    st.booleans(),
)


@given(st.lists(prefixes, min_size=1, max_size=6, unique_by=normalise_prefix), paths)
def test_match_is_the_longest_prefix_on_a_boundary(written: list[str], path: str) -> None:
    routes = table(*written)
    candidates = [
        normalise_prefix(p)
        for p in written
        if normalise_prefix(p) == ""
        or path == normalise_prefix(p)
        or path.startswith(normalise_prefix(p) + "/")
    ]
    expected = max(candidates, key=len, default=None)
    assert matched(routes, path) == expected


# ---------------------------------------------------------------- the plan


def test_plan_carries_its_inputs() -> None:
    config: HostConfig = validate_config(
        {"listeners": {"a": listener(1, app="x")}, "apps": apps("x")}, BASE
    )
    plan = build_plan(config, base_dir=BASE, cpu_count=2, app_environments={"x": {"A": "1"}})
    assert plan.config is config
    assert plan.base_dir == BASE
    assert plan.app_environments == {"x": {"A": "1"}}
    assert set(plan.route_tables) == {"a"}

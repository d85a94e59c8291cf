"""Tests for `uvhost.config.diff`: each kind of edit classified by how it is applied — live,
socket changes, groups rolled, started, retired or left untouched."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import trustme

from uvhost.config.diff import Change, ChangeKind, PlanDiff, changed_keys, diff
from uvhost.config.load import load_config
from uvhost.config.model import validate_config
from uvhost.config.plan import Plan, build_plan

BASE = Path("/srv/site")

ORIGINAL: dict[str, Any] = {
    "host": {"workers": 2, "graceful_timeout": "30s"},
    "logging": {"level": "info"},
    "listeners": {
        "public": {"bind": "127.0.0.1:8000", "routes": {"/": "site", "/api": "api"}},
        "hello": {"bind": "127.0.0.1:8001", "app": "hello"},
    },
    "apps": {
        "site": {"target": "site:app"},
        "api": {"target": "api:app", "env": {"MODE": "prod"}},
        "hello": {"target": "hello:app"},
    },
}


def plan(data: dict[str, Any], environments: dict[str, dict[str, str]] | None = None) -> Plan:
    config = validate_config(data, BASE)
    return build_plan(config, base_dir=BASE, cpu_count=4, app_environments=environments)


def edited(**changes: Any) -> dict[str, Any]:
    """ORIGINAL with dotted keys set: edited(**{"logging.level": "debug"})."""
    data = copy.deepcopy(ORIGINAL)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        table = data
        for part in parents:
            table = table.setdefault(part, {})
        if value is None:
            del table[last]
        else:
            table[last] = value
    return data


def kinds(result: PlanDiff) -> dict[str, ChangeKind]:
    return {change.subject: change.kind for change in result.changes}


def test_identical_plans_leave_everything_untouched() -> None:
    result = diff(plan(ORIGINAL), plan(copy.deepcopy(ORIGINAL)))
    assert {change.kind for change in result.changes} == {ChangeKind.UNTOUCHED}
    assert kinds(result) == {"api+site": ChangeKind.UNTOUCHED, "hello": ChangeKind.UNTOUCHED}
    assert result.is_empty
    assert result.summary() == "no changes"


def test_a_log_level_change_is_live_only() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"logging.level": "debug"})))
    assert result.of(ChangeKind.LIVE) == (Change(ChangeKind.LIVE, "logging", ("logging.level",)),)
    assert result.subjects(ChangeKind.GROUP_ROLLED) == ()
    assert set(result.subjects(ChangeKind.UNTOUCHED)) == {"api+site", "hello"}
    assert not result.is_empty


def test_access_log_change_is_live() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"logging.access_log": False})))
    assert result.of(ChangeKind.LIVE) == (
        Change(ChangeKind.LIVE, "logging", ("logging.access_log",)),
    )
    assert result.subjects(ChangeKind.GROUP_ROLLED) == ()


@pytest.mark.parametrize("key", ["graceful_timeout", "drain_delay"])
def test_stop_timing_is_a_live_host_setting(key: str) -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{f"host.{key}": "10s"})))
    assert result.of(ChangeKind.LIVE) == (Change(ChangeKind.LIVE, "host", (f"host.{key}",)),)
    assert result.subjects(ChangeKind.GROUP_ROLLED) == ()


def test_an_app_env_change_rolls_only_its_group() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"apps.api.env": {"MODE": "staging"}})))
    assert kinds(result) == {"api+site": ChangeKind.GROUP_ROLLED, "hello": ChangeKind.UNTOUCHED}
    [rolled] = result.of(ChangeKind.GROUP_ROLLED)
    assert rolled.keys == ("apps.api.env.MODE",)
    assert result.of(ChangeKind.LIVE) == ()


def test_a_changed_env_file_rolls_its_group(tmp_path: Path) -> None:
    (tmp_path / "api.env").write_text("TOKEN=one\n")
    config = tmp_path / "uvhost.toml"
    config.write_text(
        """
[listeners.public]
bind = "127.0.0.1:0"
app = "api"

[listeners.hello]
bind = "127.0.0.1:0"
app = "hello"

[apps.api]
target = "api:app"
env_files = ["api.env"]

[apps.hello]
target = "hello:app"
"""
    )
    before = load_config(config, environ={}).plan(cpu_count=1)
    (tmp_path / "api.env").write_text("TOKEN=two\n")
    after = load_config(config, environ={}).plan(cpu_count=1)
    assert before.config == after.config  # the file is the same; only the env file changed
    result = diff(before, after)
    assert kinds(result) == {"api": ChangeKind.GROUP_ROLLED, "hello": ChangeKind.UNTOUCHED}
    assert result.of(ChangeKind.GROUP_ROLLED)[0].keys == ("environment.api.TOKEN",)


def test_app_environments_alone_roll_a_group() -> None:
    result = diff(plan(ORIGINAL, {"hello": {"A": "1"}}), plan(ORIGINAL, {"hello": {"A": "2"}}))
    assert kinds(result) == {"api+site": ChangeKind.UNTOUCHED, "hello": ChangeKind.GROUP_ROLLED}


def test_a_worker_count_change_rolls() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"apps.hello.workers": 3})))
    assert kinds(result)["hello"] == ChangeKind.GROUP_ROLLED
    assert kinds(result)["api+site"] == ChangeKind.UNTOUCHED
    assert set(result.of(ChangeKind.GROUP_ROLLED)[0].keys) == {"workers", "apps.hello.workers"}


def test_host_workers_roll_every_group_that_uses_it() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"host.workers": 3})))
    assert set(result.subjects(ChangeKind.GROUP_ROLLED)) == {"api+site", "hello"}
    assert result.of(ChangeKind.LIVE) == ()


def test_a_listener_added() -> None:
    new = edited(**{"listeners.admin": {"bind": "127.0.0.1:9000", "routes": {"/h": "@health"}}})
    result = diff(plan(ORIGINAL), plan(new))
    assert result.subjects(ChangeKind.LISTENER_ADDED) == ("admin",)
    assert result.subjects(ChangeKind.GROUP_STARTED) == ("@admin",)
    assert set(result.subjects(ChangeKind.UNTOUCHED)) == {"api+site", "hello"}


def test_a_listener_removed() -> None:
    new = edited(**{"listeners.hello": None, "apps.hello": None})
    result = diff(plan(ORIGINAL), plan(new))
    assert result.subjects(ChangeKind.LISTENER_REMOVED) == ("hello",)
    assert result.subjects(ChangeKind.GROUP_RETIRED) == ("hello",)
    assert result.subjects(ChangeKind.UNTOUCHED) == ("api+site",)


def test_a_bind_change_changes_the_listener_and_rolls_its_group() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"listeners.hello.bind": "127.0.0.1:8002"})))
    assert result.of(ChangeKind.LISTENER_CHANGED) == (
        Change(ChangeKind.LISTENER_CHANGED, "hello", ("listeners.hello.bind",)),
    )
    assert kinds(result)["hello"] == ChangeKind.GROUP_ROLLED
    assert kinds(result)["api+site"] == ChangeKind.UNTOUCHED


def test_backlog_is_a_socket_setting() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"listeners.public.backlog": 10})))
    assert result.subjects(ChangeKind.LISTENER_CHANGED) == ("public",)


def test_keep_alive_timeout_rolls_without_changing_the_socket() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"listeners.public.keep_alive_timeout": "9s"})))
    assert result.of(ChangeKind.LISTENER_CHANGED) == ()
    assert kinds(result) == {"api+site": ChangeKind.GROUP_ROLLED, "hello": ChangeKind.UNTOUCHED}
    assert result.of(ChangeKind.GROUP_ROLLED)[0].keys == ("listeners.public.keep_alive_timeout",)


def test_protocols_roll_the_group_without_touching_the_socket() -> None:
    result = diff(plan(ORIGINAL), plan(edited(**{"listeners.public.protocols": ["http/1.1"]})))
    assert result.of(ChangeKind.GROUP_ROLLED) == (
        Change(ChangeKind.GROUP_ROLLED, "api+site", ("listeners.public.protocols",)),
    )
    assert result.of(ChangeKind.LISTENER_CHANGED) == ()
    assert kinds(result)["hello"] == ChangeKind.UNTOUCHED


def test_http2_settings_roll_the_group_without_touching_the_socket() -> None:
    http2 = {"max_concurrent_streams": 250, "ping_interval": "30s"}
    result = diff(plan(ORIGINAL), plan(edited(**{"listeners.hello.http2": http2})))
    assert result.of(ChangeKind.GROUP_ROLLED) == (
        Change(
            ChangeKind.GROUP_ROLLED,
            "hello",
            ("listeners.hello.http2.max_concurrent_streams", "listeners.hello.http2.ping_interval"),
        ),
    )
    assert result.of(ChangeKind.LISTENER_CHANGED) == ()
    assert kinds(result)["api+site"] == ChangeKind.UNTOUCHED
    tuned = edited(**{"listeners.hello.http2": http2})
    again = copy.deepcopy(tuned)
    again["listeners"]["hello"]["http2"]["initial_window_size"] = "1MiB"
    assert diff(plan(tuned), plan(again)).of(ChangeKind.GROUP_ROLLED) == (
        Change(ChangeKind.GROUP_ROLLED, "hello", ("listeners.hello.http2.initial_window_size",)),
    )


def test_writing_out_the_http2_defaults_changes_nothing() -> None:
    defaults = {"max_concurrent_streams": 100, "initial_window_size": "256KiB"}
    written = edited(
        **{"listeners.hello.http2": defaults, "listeners.hello.protocols": ["h2", "http/1.1"]}
    )
    result = diff(plan(ORIGINAL), plan(written))
    assert kinds(result)["hello"] == ChangeKind.GROUP_ROLLED  # the order is kept, so it shows
    written["listeners"]["hello"]["protocols"] = ["http/1.1", "h2"]
    assert diff(plan(ORIGINAL), plan(written)).is_empty


def test_adding_an_app_to_a_listener_retires_the_old_group_and_starts_a_new_one() -> None:
    routes = {"/": "site", "/api": "api", "/hello": "hello"}
    result = diff(plan(ORIGINAL), plan(edited(**{"listeners.public.routes": routes})))
    assert set(result.subjects(ChangeKind.GROUP_RETIRED)) == {"api+site", "hello"}
    assert result.subjects(ChangeKind.GROUP_STARTED) == ("api+hello+site",)
    assert result.of(ChangeKind.LISTENER_CHANGED) == ()


def test_a_tls_password_change_rolls(tmp_path: Path) -> None:
    tls = {"certificate": "site.pem", "password": "one"}
    before = plan(edited(**{"listeners.hello.tls": tls}))
    after = plan(edited(**{"listeners.hello.tls": {**tls, "password": "two"}}))
    result = diff(before, after)
    assert kinds(result) == {"api+site": ChangeKind.UNTOUCHED, "hello": ChangeKind.GROUP_ROLLED}
    [rolled] = result.of(ChangeKind.GROUP_ROLLED)
    assert rolled.keys == ("listeners.hello.tls.password",)
    assert "one" not in result.summary()
    assert "two" not in result.summary()


def test_a_certificate_replaced_on_disk_is_reloaded_in_place(tmp_path: Path) -> None:
    authority = trustme.CA()
    pem, key = tmp_path / "site.pem", tmp_path / "site.key"
    config = tmp_path / "uvhost.toml"

    def issue() -> None:
        server = authority.issue_cert("localhost")
        server.cert_chain_pems[0].write_to_path(pem)
        server.private_key_pem.write_to_path(key)

    issue()
    config.write_text(
        '[listeners.secure]\nbind = "127.0.0.1:0"\napp = "site"\n'
        '[listeners.secure.tls]\ncertificate = "site.pem"\nprivate_key = "site.key"\n'
        '[listeners.plain]\nbind = "127.0.0.1:0"\napp = "hello"\n'
        '[apps.site]\ntarget = "site:app"\n[apps.hello]\ntarget = "hello:app"\n'
    )
    before = load_config(config).plan()
    assert diff(before, load_config(config).plan()).is_empty  # same files, same content
    issue()  # same paths, new certificate and key
    result = diff(before, load_config(config).plan())
    assert result.subjects(ChangeKind.GROUP_ROLLED) == ()  # no restart for a new certificate
    assert set(result.subjects(ChangeKind.UNTOUCHED)) == {"site", "hello"}
    assert result.of(ChangeKind.CERTIFICATE_RELOADED) == (
        Change(ChangeKind.CERTIFICATE_RELOADED, "secure", (str(pem), str(key))),
    )
    assert not result.is_empty


def test_summary_is_one_line() -> None:
    new = edited(
        **{
            "logging.level": "debug",
            "listeners.hello.bind": "127.0.0.1:8002",
            "apps.api.env": {"MODE": "dev"},
        }
    )
    summary = diff(plan(ORIGINAL), plan(new)).summary()
    assert "\n" not in summary
    assert summary == (
        "live logging (logging.level); "
        "listener changed hello (listeners.hello.bind); "
        "group rolled hello (listeners.hello.bind); "
        "group rolled api+site (apps.api.env.MODE)"
    )


def test_change_describe() -> None:
    assert Change(ChangeKind.GROUP_STARTED, "x").describe() == "group started x"
    assert Change(ChangeKind.LIVE, "host", ("a", "b")).describe() == "live host (a, b)"


def test_changed_keys_walks_nested_tables() -> None:
    old = {"a": 1, "b": {"c": 2, "d": [1]}, "gone": 1}
    new = {"a": 1, "b": {"c": 3, "d": [1, 2]}, "new": 1}
    assert changed_keys(old, new, "p") == ("p.b.c", "p.b.d", "p.gone", "p.new")
    assert changed_keys(old, old, "") == ()


def test_a_site_edit_rolls_only_the_group_serving_it() -> None:
    """A host alias added to a site on "public" rolls api+site (its workers route by the
    new table); "hello" serves no site and is left alone."""
    site = {"hosts": ["example.com"], "listeners": ["public"], "app": "site"}
    before = edited(**{"sites.shop": site})
    after = edited(**{"sites.shop": {**site, "hosts": ["example.com", "www.example.com"]}})
    result = diff(plan(before), plan(after))
    assert kinds(result) == {"api+site": ChangeKind.GROUP_ROLLED, "hello": ChangeKind.UNTOUCHED}
    [rolled] = result.of(ChangeKind.GROUP_ROLLED)
    assert rolled.keys == ("sites.shop.hosts",)


def test_proxy_protocol_rolls_the_group_without_touching_the_socket() -> None:
    table = {"allow": ["10.0.0.0/8"]}
    turned_on = edited(**{"listeners.hello.proxy_protocol": table})
    result = diff(plan(ORIGINAL), plan(turned_on))
    assert result.of(ChangeKind.GROUP_ROLLED) == (
        Change(ChangeKind.GROUP_ROLLED, "hello", ("listeners.hello.proxy_protocol",)),
    )
    assert result.of(ChangeKind.LISTENER_CHANGED) == ()
    assert kinds(result)["api+site"] == ChangeKind.UNTOUCHED
    widened = edited(**{"listeners.hello.proxy_protocol": {"allow": ["10.0.0.0/8", "::1"]}})
    rolled = diff(plan(turned_on), plan(widened)).of(ChangeKind.GROUP_ROLLED)
    assert [change.subject for change in rolled] == ["hello"]


def test_a_redirect_edited_in_place_rolls_the_group_mounting_it() -> None:
    """Workers build redirects and answers at start: a new `to` alone must roll the group
    whose listener mounts it, and only that one."""
    routes = {"/": "site", "/api": "api", "/old": "moved"}
    before = edited(**{"listeners.public.routes": routes, "redirects.moved": {"to": "/new"}})
    after = edited(**{"listeners.public.routes": routes, "redirects.moved": {"to": "/newer"}})
    result = diff(plan(before), plan(after))
    assert kinds(result) == {"api+site": ChangeKind.GROUP_ROLLED, "hello": ChangeKind.UNTOUCHED}
    [rolled] = result.of(ChangeKind.GROUP_ROLLED)
    assert rolled.keys == ("built_ins.moved.to",)

"""`[sites.NAME]` in the file: what `uvhost check` says about them, and where it points.

Proved on real files loaded with `load_config` (and `uvhost check --json` in a
subprocess):

- hosts are brought to one form (lower case, no trailing dot, punycode,
  compressed IPv6 in brackets), and every host that could never match a
  request is an error at its own entry, with a hint;
- one host claimed by two sites on one listener is an error at the second
  claim; an exact name beside another site's wildcard is a warning;
- a site naming an unknown listener gets a did-you-mean; a listener may
  serve nothing of its own only when a site names it; a site's app and routes
  are checked as a listener's are;
- an app reached only through a site is served (no "unrouted" warning), and
  worker groups join a site's apps with the site's listeners;
- `uvhost check --json` and the summary tree show the sites.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from uvhost.commands.summary import render_summary
from uvhost.config.hostnames import HostNameError, site_host
from uvhost.config.load import LoadResult, load_config
from uvhost.config.model import validate_config
from uvhost.config.plan import build_plan

Found = tuple[str, str, int | None, int | None]  # severity, message, line, column


def load(folder: Path, text: str) -> LoadResult:
    """Write `text` with every line's indentation taken off (snippets nest) and load it."""
    path = folder / "uvhost.toml"
    lines = [line.lstrip() for line in text.lstrip("\n").splitlines()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path, environ={})


def found(result: LoadResult) -> list[Found]:
    return [
        (
            d.severity,
            d.message,
            d.span.line if d.span else None,
            d.span.column if d.span else None,
        )
        for d in result.diagnostics
    ]


def errors(result: LoadResult) -> list[Found]:
    return [problem for problem in found(result) if problem[0] == "error"]


def hints(result: LoadResult) -> list[str]:
    return [d.hint for d in result.diagnostics]


APPS = """
    [apps.shop]
    target = "shop:app"

    [apps.api]
    target = "api:app"

    [apps.other]
    target = "other:app"
"""

WEB = """
    [listeners.web]
    bind = "127.0.0.1:0"
    app = "other"
"""


# ------------------------------------------------------------- host forms


@pytest.mark.parametrize(
    ("written", "common"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        (" example.com ", "example.com"),
        ("WWW.Example.Com.", "www.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.Example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("*.example.com", "*.example.com"),
        ("*.Bücher.Example", "*.xn--bcher-kva.example"),
        ("*.com", "*.com"),
        ("_acme.example.com", "_acme.example.com"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "[::1]"),
        ("[::1]", "[::1]"),
        ("[0:0:0:0:0:0:0:1]", "[::1]"),
        ("[2001:DB8::0:1]", "[2001:db8::1]"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_site_host_common_form(written: str, common: str) -> None:
    assert site_host(written) == common


def test_hosts_in_the_file_are_kept_in_their_common_form(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WEB
        + """
        [sites.shop]
        hosts = ["Example.COM.", "bücher.example", "*.Shop.Example", "::1"]
        listeners = ["web"]
        app = "shop"
        """
        + APPS.replace('[apps.api]\n    target = "api:app"\n', ""),
    )
    assert found(result) == []
    assert result.config is not None
    assert result.config.sites["shop"].hosts == (
        "example.com",
        "xn--bcher-kva.example",
        "*.shop.example",
        "[::1]",
    )
    table = result.plan(cpu_count=1).route_tables["web"]
    assert [(site.name, site.hosts) for site in table.sites] == [
        ("shop", ("example.com", "xn--bcher-kva.example", "*.shop.example", "[::1]"))
    ]


def one_bad_host(toml_value: str) -> str:
    """A file whose only problem is the second host of site "shop" (line 6, column 24)."""
    return (
        WEB
        + f"""
        [sites.shop]
        hosts = ["ok.example", {toml_value}]
        listeners = ["web"]
        app = "shop"

        [apps.shop]
        target = "shop:app"

        [apps.other]
        target = "other:app"
        """
    )


LONG = "a." * 126 + "com"  # 255 characters
A64 = "a" * 64

BAD_HOSTS = [
    ("example.com:8080", '"example.com:8080" has a port', "write the name alone"),
    ("localhost:80", '"localhost:80" has a port', "every port of its listeners"),
    ("https://example.com", '"https://example.com" is not a host name', "no scheme, path"),
    ("example.com/shop", '"example.com/shop" is not a host name', "no scheme, path"),
    ("user@example.com", '"user@example.com" is not a host name', "no scheme, path"),
    ("exa mple.com", '"exa mple.com" is not a host name', "no scheme, path"),
    ("-example.com", '"-example.com" has the label "-example", which no host name has', "1-63"),
    ("example-.com", '"example-.com" has the label "example-", which no host name has', "1-63"),
    ("a..example", '"a..example" has the label "", which no host name has', "1-63"),
    ("exa!mple.com", '"exa!mple.com" has the label "exa!mple", which no host name has', "1-63"),
    (
        "a" * 64 + ".com",
        f'"{"a" * 64}.com" has the label "{"a" * 64}", which no host name has',
        "1-63",
    ),
    (LONG, f'"{LONG}" is longer than 253 characters', ""),
    ("a.*.example", '"a.*.example" has a * that is not the whole first label', '"*." and a'),
    ("*example.com", '"*example.com" has a * that is not the whole first label', '"*." and a'),
    ("*", '"*" has a * that is not the whole first label', '"*." and a name'),
    ("*.*.example", '"*.*.example" has a * that is not the whole first label', '"*." and a'),
    ("[::1", '"[::1" is not a host name or IP address', '"[::1]"'),
    ("[::1]:8080", '"[::1]:8080" is not a host name or IP address', "without a port"),
    ("1::2::3", '"1::2::3" is not a host name or IP address', "IPv6"),
    ("[example.com]", '"[example.com]" is not a host name or IP address', "IPv6"),
    ("", "an empty host", '"example.com"'),
    ("  ", "an empty host", '"example.com"'),
    (".", "an empty host", '"example.com"'),
    ("aא.example", '"aא.example" is not a valid internationalised name', "punycode (xn--)"),
]


@pytest.mark.parametrize(("host", "message", "hint"), BAD_HOSTS, ids=[c[0] for c in BAD_HOSTS])
def test_each_bad_host_is_an_error_at_its_entry(
    tmp_path: Path, host: str, message: str, hint: str
) -> None:
    result = load(tmp_path, one_bad_host(json.dumps(host, ensure_ascii=False)))
    assert found(result) == [("error", message, 6, 24)]
    assert hint in hints(result)[0]
    assert not result.ok
    with pytest.raises(HostNameError):  # the same rule, called directly
        site_host(host)


def test_a_host_that_is_not_a_string(tmp_path: Path) -> None:
    result = load(tmp_path, one_bad_host("5"))
    assert found(result) == [("error", "expected a host name, got 5", 6, 24)]
    assert hints(result) == ['write a name such as "example.com"']


@pytest.mark.parametrize("second", ['"example.com"', '"Example.COM."', '"EXAMPLE.com"'])
def test_a_host_listed_twice_in_one_site(tmp_path: Path, second: str) -> None:
    result = load(
        tmp_path,
        WEB
        + f"""
        [sites.shop]
        hosts = ["example.com", "www.example.com", {second}]
        listeners = ["web"]
        app = "shop"
        """
        + APPS,
    )
    errors = [entry for entry in found(result) if entry[0] == "error"]
    assert errors == [("error", '"example.com" is listed twice', 6, 44)]  # api: a warning
    assert hints(result)[0] == "list each host once"


def test_a_site_needs_a_host_and_a_listener(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WEB
        + """
        [sites.shop]
        hosts = []
        listeners = []
        app = "shop"
        """
        + APPS,
    )
    assert [entry for entry in found(result) if entry[0] == "error"] == [
        ("error", "a site needs at least one host", 6, 9),
        ("error", "this needs at least one entry", 7, 13),
    ]
    assert not result.ok


# ------------------------------------------------------------ host claims


def two_sites(first: str, second: str, *, listeners: tuple[str, str] = ("web", "web")) -> str:
    return (
        """
        [listeners.web]
        bind = "127.0.0.1:0"
        app = "other"

        [listeners.alt]
        bind = "127.0.0.1:0"
        app = "other"
        """
        + f"""
        [sites.shop]
        hosts = [{first}]
        listeners = ["{listeners[0]}"]
        app = "shop"

        [sites.api]
        hosts = ["api.internal", {second}]
        listeners = ["{listeners[1]}"]
        app = "api"
        """
        + APPS
    )


@pytest.mark.parametrize(
    ("first", "second", "host"),
    [
        ('"example.com"', '"example.com"', "example.com"),
        ('"Example.com."', '"EXAMPLE.COM"', "example.com"),
        ('"bücher.example"', '"xn--bcher-kva.example"', "xn--bcher-kva.example"),
        ('"*.example.com"', '"*.Example.com"', "*.example.com"),
        ('"::1"', '"[0::1]"', "[::1]"),
    ],
)
def test_one_host_claimed_by_two_sites_on_a_listener(
    tmp_path: Path, first: str, second: str, host: str
) -> None:
    result = load(tmp_path, two_sites(first, second))
    message = f'host "{host}" is claimed by sites "shop" and "api" on listener "web"'
    assert found(result) == [("error", message, 15, 26)]  # the second claim
    assert "one site per listener" in hints(result)[0]
    assert not result.ok


def test_one_host_on_two_listeners_is_two_sites_business(tmp_path: Path) -> None:
    result = load(tmp_path, two_sites('"example.com"', '"example.com"', listeners=("web", "alt")))
    assert found(result) == []
    assert result.ok


def test_an_exact_name_beside_another_sites_wildcard_is_a_warning(tmp_path: Path) -> None:
    result = load(tmp_path, two_sites('"*.example.com"', '"shop.example.com"'))
    assert found(result) == [
        (
            "warning",
            '"shop.example.com" goes to site "api", not to the wildcard "*.example.com" of site '
            '"shop", on listener "web": exact names win',
            15,
            26,
        )
    ]
    assert result.ok  # a warning only: exact names win, and that may well be meant


@pytest.mark.parametrize(
    ("first", "second", "listeners"),
    [
        ('"*.example.com"', '"a.b.example.com"', ("web", "web")),  # two labels: no match
        ('"*.example.com"', '"example.com"', ("web", "web")),  # no label: no match
        ('"*.example.com"', '"shop.example.com"', ("web", "alt")),  # another listener
        ('"*.example.com", "shop.example.com"', '"x.test"', ("web", "web")),  # one site
    ],
)
def test_no_wildcard_warning_when_it_would_not_match(
    tmp_path: Path, first: str, second: str, listeners: tuple[str, str]
) -> None:
    result = load(tmp_path, two_sites(first, second, listeners=listeners))
    assert found(result) == []


# ---------------------------------------------------------------- listeners


def test_unknown_listener_with_did_you_mean(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WEB
        + """
        [sites.shop]
        hosts = ["example.com"]
        listeners = ["web", "wbe"]
        app = "shop"
        """
        + APPS,
    )
    assert errors(result) == [("error", 'listener "wbe" is not defined', 7, 21)]
    assert hints(result)[found(result).index(errors(result)[0])] == 'did you mean "web"?'


def test_unknown_listener_without_a_close_name(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WEB
        + """
        [sites.shop]
        hosts = ["example.com"]
        listeners = ["public"]
        app = "shop"
        """
        + APPS,
    )
    assert errors(result) == [("error", 'listener "public" is not defined', 7, 14)]
    assert hints(result)[found(result).index(errors(result)[0])] == "expected one of: web"


BARE = """
    [listeners.web]
    bind = "127.0.0.1:0"
"""


def test_a_listener_may_serve_nothing_of_its_own_when_a_site_names_it(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        BARE
        + """
        [sites.shop]
        hosts = ["example.com"]
        listeners = ["web"]
        routes = { "/" = "shop", "/api" = "api", "/other" = "other" }
        """
        + APPS,
    )
    assert found(result) == []
    plan = result.plan(cpu_count=1)
    assert plan.route_tables["web"].mounts == ()


def test_a_listener_serving_nothing_is_an_error_when_no_site_names_it(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        BARE
        + """
        [listeners.alt]
        bind = "127.0.0.1:0"

        [sites.shop]
        hosts = ["example.com"]
        listeners = ["alt"]
        routes = { "/" = "shop", "/api" = "api", "/other" = "other" }
        """
        + APPS,
    )
    assert found(result) == [("error", 'listener "web" serves nothing', 1, 12)]
    assert "or remove routes" not in hints(result)[0]


def test_an_empty_routes_table_is_an_error_even_with_sites(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        BARE
        + """
        routes = {}

        [sites.shop]
        hosts = ["example.com"]
        listeners = ["web"]
        app = "shop"
        """
        + APPS.replace('[apps.api]\n    target = "api:app"\n', "").replace(
            '[apps.other]\n    target = "other:app"\n', ""
        ),
    )
    assert found(result) == [
        ("error", 'listener "web" serves nothing: its routes table is empty', 4, 1)
    ]
    assert "(or remove routes: hosts no site names then get 404)" in hints(result)[0]


# ------------------------------------------------------- a site's app/routes


def test_a_site_with_both_app_and_routes(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WEB
        + """
        [sites.shop]
        hosts = ["example.com"]
        listeners = ["web"]
        app = "shop"
        routes = { "/api" = "api" }
        """
        + APPS,
    )
    assert found(result) == [("error", 'site "shop" has both app and routes', 9, 1)]
    assert "not both" in hints(result)[0]


def test_a_site_serving_nothing(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WEB
        + """
        [sites.shop]
        hosts = ["example.com"]
        listeners = ["web"]
        """
        + APPS,
    )
    assert errors(result) == [("error", 'site "shop" serves nothing', 5, 8)]
    assert hints(result)[0] == 'add app = "NAME" for every path, or routes = { "/" = "NAME" }'


def test_a_site_route_to_a_missing_app_and_a_bad_prefix(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WEB
        + """
        [sites.shop]
        hosts = ["example.com"]
        listeners = ["web"]
        routes = { "/" = "shp", "/api/../x" = "api" }
        """
        + APPS,
    )
    assert found(result) == [
        ("error", 'app "shp" is not defined', 8, 18),
        ("error", 'route prefix "/api/../x" contains a . or .. segment', 8, 25),
    ]
    assert hints(result)[0] == 'did you mean "shop"?'


# ------------------------------------------------------ unrouted, groups


def test_an_app_reached_only_through_a_site_is_served(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        WEB
        + """
        [sites.shop]
        hosts = ["example.com"]
        listeners = ["web"]
        routes = { "/" = "shop" }
        """
        + APPS,
    )
    assert found(result) == [
        ("warning", 'app "api" is not served by any listener', 13, 7),
    ]
    assert "a listener's or a site's app or routes" in hints(result)[0]


def plan_of(data: dict[str, object]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    config = validate_config(data, Path("/srv"))
    plan = build_plan(config, base_dir=Path("/srv"), cpu_count=2)
    return sorted((group.listeners, group.apps) for group in plan.groups)


APP_TABLE = {name: {"target": f"{name}:app"} for name in ("shop", "api", "other", "spare")}


def test_worker_groups_join_a_sites_apps_with_its_listeners() -> None:
    groups = plan_of(
        {
            "listeners": {
                "web": {"bind": "127.0.0.1:8001", "app": "other"},
                "bare": {"bind": "127.0.0.1:8002"},
                "alone": {"bind": "127.0.0.1:8003", "app": "api"},
            },
            "sites": {
                "shop": {"hosts": ["example.com"], "listeners": ["bare"], "app": "shop"},
            },
            "apps": APP_TABLE,
        }
    )
    assert groups == [(("alone",), ("api",)), (("bare",), ("shop",)), (("web",), ("other",))]


def test_a_site_on_two_listeners_makes_them_one_group() -> None:
    groups = plan_of(
        {
            "listeners": {
                "web": {"bind": "127.0.0.1:8001", "app": "other"},
                "bare": {"bind": "127.0.0.1:8002"},
                "alone": {"bind": "127.0.0.1:8003", "app": "api"},
            },
            "sites": {
                "shop": {
                    "hosts": ["example.com"],
                    "listeners": ["web", "bare"],
                    "routes": {"/": "shop", "/spare": "spare"},
                },
            },
            "apps": APP_TABLE,
        }
    )
    assert [(sorted(listeners), apps) for listeners, apps in groups] == [
        (["alone"], ("api",)),
        (["bare", "web"], ("other", "shop", "spare")),
    ]


# ------------------------------------------------------------ check output


CLI_CONFIG = (
    """
    [listeners.web]
    bind = "127.0.0.1:8080"

    [listeners.admin]
    bind = "127.0.0.1:8081"
    routes = { "/healthz" = "@health" }

    [sites.shop]
    hosts = ["Example.com", "bücher.example"]
    listeners = ["web"]
    routes = { "/" = "shop", "/api" = "api" }

    [sites.tenants]
    hosts = ["*.example.com"]
    listeners = ["web", "admin"]
    app = "other"
"""
    + APPS
)


def test_check_json_shows_the_sites(tmp_path: Path) -> None:
    load(tmp_path, CLI_CONFIG)  # writes the file
    done = subprocess.run(
        [sys.executable, "-m", "uvhost", "check", "--json", "uvhost.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is True
    assert report["diagnostics"] == []
    assert report["listeners"]["web"] == {
        "bind": "127.0.0.1:8080",
        "routes": {},
        "sites": {
            "shop": {
                "hosts": ["example.com", "xn--bcher-kva.example"],
                "routes": {"/api": "api", "/": "shop"},
            },
            "tenants": {"hosts": ["*.example.com"], "routes": {"/": "other"}},
        },
    }
    assert report["listeners"]["admin"]["routes"] == {"/healthz": "@health"}
    assert report["listeners"]["admin"]["sites"] == {
        "tenants": {"hosts": ["*.example.com"], "routes": {"/": "other"}}
    }
    groups = {tuple(group["listeners"]): group["apps"] for group in report["groups"]}
    assert sorted(groups.values()) == [["api", "other", "shop"]]


def test_check_summary_tree_shows_sites_and_other_hosts(tmp_path: Path) -> None:
    result = load(tmp_path, CLI_CONFIG)
    assert result.ok
    console = Console(record=True, width=100, color_system=None)
    console.print(render_summary(result.plan(cpu_count=1)))
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines())
    web = text[text.index("web  127.0.0.1:8080") : text.index("admin  127.0.0.1:8081")]
    assert re.search(r"site shop\s+example\.com xn--bcher-kva\.example", web), web
    assert re.search(r"/api\s+→ api", web), web
    assert re.search(r"site tenants\s+\*\.example\.com", web), web
    assert "other hosts → 404" in web
    admin = text[text.index("admin  127.0.0.1:8081") : text.index("Worker groups")]
    assert "other hosts" in admin, admin
    assert "→ 404" not in admin, admin
    assert re.search(r"/healthz\s+→ @health", admin), admin


# -------------------------------------------------------------------- bugs


def test_a_bad_site_does_not_hide_the_rest_of_the_files_problems(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.web]
        bind = "127.0.0.1:0"
        routes = { "/" = "shp" }

        [sites.shop]
        hosts = ["example.com:80"]
        listeners = ["web"]
        app = "shop"
        """
        + APPS,
    )
    problems = found(result)
    assert ("error", '"example.com:80" has a port', 6, 10) in problems
    assert ("error", 'app "shp" is not defined', 3, 18) in problems  # a listener's own route

"""The dashboard rendered on a capture console (fixed width, no colour), from real snapshots.

Every `Status` here comes from `status.build()` over a `StatsBook` filled the
way the supervisor fills it (`update` per worker, `tick` once a second), so
the tests follow the contract's shape; the expected figures are worked out by
hand from the samples (the window is 5 s: 212 requests in it is 42.4 req/s).
"""

from __future__ import annotations

import copy
import io
import time

import pytest
from rich.console import Console

from uvhost.observe import dashboard, stats, status
from uvhost.observe.dashboard import render
from uvhost.observe.stats import StatsBook

STARTED = 1_700_000_000.0  # unix time the host started
MONO = 10_000.0  # a monotonic "now" for the book


def sample(
    requests: int = 0,
    *,
    statuses: dict[int, int] | None = None,
    latency: dict[int, int] | None = None,
    bytes_out: int = 0,
    websockets_open: int = 0,
) -> stats.Sample:
    """A worker's counters: `statuses` by class (2 → 2xx), `latency` by bucket index."""
    values = [0] * stats.SAMPLE_SIZE
    values[stats.REQUESTS] = requests
    for klass, number in (statuses or {}).items():
        values[stats.STATUS_BASE + klass] = number
    for bucket, number in (latency or {}).items():
        values[stats.LATENCY_BASE + bucket] = number
    values[stats.BYTES_OUT] = bytes_out
    values[stats.WEBSOCKETS_OPEN] = websockets_open
    return tuple(values)


def worker(pid: int, group: str, age: float, generation: int = 1) -> status.WorkerFacts:
    """`build()` measures a worker's uptime on the monotonic clock, against now."""
    return status.WorkerFacts(pid, group, generation, "ready", started=time.monotonic() - age)


def shop(*, last_reload: status.ReloadStatus | None = None) -> status.Status:
    """Two listeners, three apps in two groups, three workers; 5 s of traffic in the window."""
    book = StatsBook()
    # Bucket 6 is 10-25 ms, bucket 2 is 0.5-1 ms: percentiles interpolate inside them.
    book.update(4101, {("public", "storefront"): sample(1000, statuses={2: 1000})}, {}, MONO - 5)
    book.update(4102, {("public", "checkout-api"): sample(400, statuses={2: 400})}, {}, MONO - 5)
    book.tick(MONO - 5)
    book.update(
        4101,
        {
            ("public", "storefront"): sample(
                1212, statuses={2: 1212}, latency={6: 212}, bytes_out=3 * 2**20
            )
        },
        {"public": stats.opened(http1=1, http2=1, streams=5)},
        MONO,
    )
    book.update(
        4102,
        {
            ("public", "checkout-api"): sample(
                500, statuses={2: 480, 5: 20}, latency={2: 100}, bytes_out=2048
            )
        },
        {"public": stats.opened(http1=1)},
        MONO,
    )
    book.update(
        4103,
        {("admin", "live-updates"): sample(7, websockets_open=3)},
        {"admin": stats.opened(websocket=3)},
        MONO,
    )
    book.tick(MONO)
    facts = status.HostFacts(
        pid=4100,
        version="0.1.0",
        config="/srv/shop/uvhost.toml",
        started=STARTED,
        state="running",
        last_reload=last_reload,
        listeners=(
            status.ListenerFacts("public", "0.0.0.0:8000", tls=False),
            status.ListenerFacts("admin", "127.0.0.1:9443", tls=True),
        ),
        groups=(
            status.GroupFacts("shop", 2, (4101, 4102), None, ("storefront", "checkout-api")),
            status.GroupFacts("live-updates", 1, (4103,), None, ("live-updates",)),
        ),
        workers=(
            worker(4101, "shop", age=190.5, generation=2),
            worker(4102, "shop", age=189.5, generation=2),
            worker(4103, "live-updates", age=2 * 3600 + 5 * 60 + 0.5),
        ),
    )
    snapshot = status.build(facts, book, now=STARTED + 3 * 3600 + 192)
    # Memory comes from /proc for these pids; pin it so the figures are the test's own.
    for row, memory in zip(snapshot["workers"], (40 * 2**20, 41.5 * 2**20, None), strict=True):
        row["memory_bytes"] = None if memory is None else int(memory)
    return snapshot


def screen(snapshot: status.Status, *, width: int = 100, logs: tuple[str, ...] = ()) -> str:
    captured = io.StringIO()
    console = Console(file=captured, width=width, color_system=None, force_terminal=False)
    console.print(render(snapshot, logs=logs))
    return captured.getvalue()


def row(text: str, first: str) -> list[str]:
    """The cells (split on spaces) of the first line that starts with `first`."""
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] == first:
            return cells
    pytest.fail(f"no row starting with {first!r} in:\n{text}")


REJECTED: status.ReloadStatus = {
    "at": STARTED + 3 * 3600 + 192 - 125,
    "ok": False,
    "message": "reload rejected (1 error(s)); still serving the previous config",
    "errors": [
        '/srv/shop/uvhost.toml:8:7: error: app "mian" is not defined\n'
        '   8 | app = "mian"\n'
        '     |       ^^^^^^ did you mean "main"?'
    ],
}


# ------------------------------------------------------------------ the screen


def test_apps_show_rates_percentiles_errors_and_totals() -> None:
    text = screen(shop())
    # 212 requests in 5 s; all between 10 and 25 ms: p50 17.5 → 18, p90 23.5 → 24, p99 24.85 → 25.
    assert row(text, "storefront") == [
        "storefront", "shop", "2", "42.4", "18", "24", "25", "0.0%", "0", "1,212",
    ]  # fmt: skip
    # 100 requests, 20 answered 5xx; all 0.5-1 ms: p50 0.75, p90 0.95, p99 0.995 → 0.99/1.00.
    cells = row(text, "checkout-api")
    assert cells[:7] == ["checkout-api", "shop", "2", "20.0", "0.75", "0.95", "0.99"]
    assert cells[7:] == ["20.0%", "0", "500"]
    # No request ended in the window (the WebSockets were already open): "-" for percentiles.
    assert row(text, "live-updates") == [
        "live-updates", "live-updates", "1", "1.4", "-", "-", "-", "0.0%", "3", "7",
    ]  # fmt: skip
    assert "Apps (rates and latencies over the last 5s)" in text
    assert "totals 1,719 requests" in text
    assert "63.8 req/s" in text


def test_listeners_show_bind_tls_connections_by_protocol_streams_and_traffic() -> None:
    text = screen(shop())
    assert "connections  h1  h2  ws  streams  req/s" in text
    # public: 2 HTTP/1.1 connections and 1 HTTP/2 with 5 streams open; admin: 3 WebSockets.
    assert row(text, "public") == [
        "public", "0.0.0.0:8000", "no", "3", "2", "1", "0", "5", "62.4", "1,712", "0", "B", "3.0",
        "MiB",
    ]  # fmt: skip
    assert row(text, "admin")[:9] == [
        "admin", "127.0.0.1:9443", "yes", "3", "0", "0", "3", "0", "1.4",
    ]  # fmt: skip


def test_a_host_without_the_protocol_split_shows_dashes_there() -> None:
    """An older uvhost's answer has no protocol split: "-", not a KeyError mid-draw."""
    snapshot = shop()
    for listener in snapshot["listeners"]:
        del listener["connections_by_protocol"]  # type: ignore[misc]
        del listener["http2_streams"]  # type: ignore[misc]
    text = screen(snapshot)
    assert row(text, "public")[:9] == [
        "public", "0.0.0.0:8000", "no", "3", "-", "-", "-", "-", "62.4",
    ]  # fmt: skip


def test_workers_show_pid_group_generation_state_memory_and_uptime() -> None:
    text = screen(shop())
    assert row(text, "4101") == ["4101", "shop", "2", "ready", "40.0", "1,212", "2", "3m10s"]
    assert row(text, "4102") == ["4102", "shop", "2", "ready", "41.5", "500", "1", "3m09s"]
    assert row(text, "4103") == ["4103", "live-updates", "1", "ready", "-", "7", "3", "2h05m"]


def test_host_panel_shows_pid_state_uptime_config_and_version() -> None:
    text = screen(shop())
    assert "uvhost 0.1.0" in text
    assert "pid 4100" in text
    assert "running" in text
    assert "up 3h03m" in text
    assert "config /srv/shop/uvhost.toml" in text
    assert "last reload none since the host started" in text


def test_a_rejected_reload_shows_when_its_message_and_every_error_line() -> None:
    text = screen(shop(last_reload=REJECTED))
    assert "(2m05s ago): rejected" in text
    assert "reload rejected (1 error(s)); still serving the previous config" in text
    assert 'uvhost.toml:8:7: error: app "mian" is not defined' in text
    assert '8 | app = "mian"' in text
    assert '^^^^^^ did you mean "main"?' in text


def test_a_long_error_line_wraps_under_its_own_indent() -> None:
    hint = "   = hint: " + " ".join(f"word{n}" for n in range(30))
    wrapped: status.ReloadStatus = {**REJECTED, "errors": [hint]}
    text = screen(shop(last_reload=wrapped), width=80)
    lines = [line for line in text.splitlines() if "word" in line]
    assert len(lines) >= 3
    assert all(line.startswith("│   ") for line in lines), lines
    assert "word29" in lines[-1]


def test_an_applied_reload_says_ok_and_what_changed() -> None:
    applied: status.ReloadStatus = {
        "at": STARTED + 60,
        "ok": True,
        "message": "applied in 0.42s: rolled group shop",
        "errors": [],
    }
    text = screen(shop(last_reload=applied))
    assert "(3h02m ago): ok" in text
    assert "applied in 0.42s: rolled group shop" in text
    assert "rejected" not in text


def test_many_error_lines_are_cut_with_a_count_of_the_rest() -> None:
    many: status.ReloadStatus = {**REJECTED, "errors": [f"line {n}" for n in range(1, 21)]}
    text = screen(shop(last_reload=many))
    assert "line 12" in text
    assert "line 13" not in text
    assert "8 more line(s)" in text


def test_a_fresh_host_shows_dashes_and_no_rates() -> None:
    """Before two ticks there is no window: zero rates, "-" percentiles, no crash."""
    facts = status.HostFacts(
        pid=1,
        version="0.1.0",
        config="uvhost.toml",
        started=STARTED,
        state="starting",
        last_reload=None,
        groups=(status.GroupFacts("main", 1, (), None, ("main",)),),
    )
    text = screen(status.build(facts, StatsBook(), now=STARTED + 2))
    assert row(text, "main") == ["main", "main", "0", "0.0", "-", "-", "-", "0.0%", "0", "0"]
    assert "p50 - " in text
    assert "- ms" not in text  # no unit after a missing figure
    assert "Apps" in [line.strip() for line in text.splitlines()]  # no "(... last 5s)"
    assert "Workers" not in text  # no rows, no table


def test_a_failed_group_is_named_under_the_workers() -> None:
    snapshot = shop()
    snapshot["groups"][1]["failed"] = "lifespan startup failed: no database"
    text = screen(snapshot)
    assert "group live-updates failed: lifespan startup failed: no database" in text


# ------------------------------------------------------------------- the logs


def test_the_logs_panel_shows_the_last_lines_only_when_there_are_logs() -> None:
    assert "logs" not in screen(shop())
    lines = tuple(f"12:00:{n:02d} GET /item/{n} 200" for n in range(25))
    text = screen(shop(), logs=lines)
    assert "╭─ logs" in text
    assert "GET /item/24 200" in text
    assert f"GET /item/{25 - dashboard.MAX_LOG_LINES} 200" in text
    assert f"GET /item/{24 - dashboard.MAX_LOG_LINES} 200" not in text


def test_log_lines_are_shown_as_text_not_markup() -> None:
    text = screen(shop(), logs=("GET /[bold]x[/bold] 404",))
    assert "GET /[bold]x[/bold] 404" in text


# ------------------------------------------------------------------- the width


def test_80_columns_keep_every_name_and_figure_whole() -> None:
    text = screen(shop(last_reload=REJECTED), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert row(text, "storefront") == [
        "storefront", "shop", "2", "42.4", "18", "25", "0.0%", "0", "1,212",
    ]  # fmt: skip
    assert row(text, "checkout-api")[:6] == ["checkout-api", "shop", "2", "20.0", "0.75", "0.99"]
    assert row(text, "live-updates")[:2] == ["live-updates", "live-updates"]
    assert row(text, "4103") == ["4103", "live-updates", "1", "ready", "-", "7", "3", "2h05m"]
    assert row(text, "public") == ["public", "0.0.0.0:8000", "no", "3", "2", "1", "0", "5", "62.4"]
    assert 'uvhost.toml:8:7: error: app "mian" is not defined' in text
    assert "Apps (latency in ms, the last 5s)" in text


def test_80_columns_fold_a_long_group_name_before_cutting_app_names() -> None:
    snapshot = shop()
    for app in snapshot["apps"]:
        app["group"] = "shop-frontends-and-apis-eu"  # 26 characters
    text = screen(snapshot, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert row(text, "checkout-api") == [
        "checkout-api", "shop-frontends-and-api", "2", "20.0", "0.75", "0.99", "20.0%", "0", "500",
    ]  # fmt: skip
    assert row(text, "storefront")[0] == "storefront"
    assert row(text, "live-updates")[0] == "live-updates"
    assert "s-eu" in [line.strip() for line in text.splitlines()]  # the group's fold


def test_wider_consoles_get_more_columns() -> None:
    narrow, wide = screen(shop(), width=80), screen(shop(), width=120)
    assert "p90" not in narrow
    assert "p90 ms" in wide
    assert "memory MiB" in wide
    assert len(row(wide, "storefront")) > len(row(narrow, "storefront"))


# ------------------------------------------------------------------- purity


def test_render_is_pure() -> None:
    snapshot = shop(last_reload=REJECTED)
    before = copy.deepcopy(snapshot)
    assert screen(snapshot) == screen(snapshot)
    assert snapshot == before


# ------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (192, "3m12s"),
        (3600, "1h00m"),
        (2 * 3600 + 5 * 60 + 59, "2h05m"),
        (3 * 86400 + 4 * 3600, "3d04h"),
        (-5, "0s"),
    ],
)
def test_duration(seconds: float, shown: str) -> None:
    assert dashboard.duration(seconds) == shown


@pytest.mark.parametrize(
    ("count_bytes", "shown"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (40 * 2**20, "40.0 MiB"),
        (3 * 2**30, "3.0 GiB"),
        (5 * 2**50, "5120.0 TiB"),
    ],
)
def test_size(count_bytes: int | None, shown: str) -> None:
    assert dashboard.size(count_bytes) == shown


@pytest.mark.parametrize(
    ("per_second", "shown"),
    [(0, "0.0"), (0.2, "0.2"), (42.44, "42.4"), (99.94, "99.9"), (1234.4, "1,234")],
)
def test_rate(per_second: float, shown: str) -> None:
    assert dashboard.rate(per_second) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "-"), (0.25, "0.25"), (4.23, "4.2"), (37.4, "37"), (1250.0, "1,250")],
)
def test_millis(value: float | None, shown: str) -> None:
    assert dashboard.millis(value) == shown


def test_percent_and_count() -> None:
    assert dashboard.percent(0.0) == "0.0%"
    assert dashboard.percent(0.0833) == "8.3%"
    assert dashboard.count(1234567) == "1,234,567"

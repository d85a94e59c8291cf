"""Edits that must change nothing, and edits that must change only what they touch.

- An invalid edit is logged with its file, line and column, and the running
  host is left exactly as it was (same workers, same answers); the next
  valid edit is applied as usual.
- A new generation whose app fails at lifespan startup is stopped; the old
  one keeps serving without a dropped request, and nothing else of that
  edit (not even its log level, nor another group's roll) is applied.
- Editing one group rolls only that group: the other's workers and its open
  connections (keep-alive and WebSocket) are untouched.
"""

import os
import re
import signal
import socket

import pytest
from websockets.sync.client import connect

TWO_GROUPS = """
[host]
graceful_timeout = "5s"

[logging]
format = "plain"
level = "{level}"
access_log = {access_log}

[logging.loggers]
uvhost = "info"

[listeners.web]
bind = "fd:{web}"
app = "main"

[listeners.api]
bind = "fd:{api}"
app = "other"

[apps.main]
target = "apps:main"
workers = {workers}
env = {{ GREETING = "{greeting}"{extra} }}

[apps.other]
target = "apps:other"
env = {{ GREETING = "api"{other_extra} }}
"""


@pytest.fixture
def two_groups(tmp_path, launch, listener, kit):
    """A host serving group "main" on `web` (2 workers) and group "other" on `api` (1)."""
    web, api = listener(), listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"

    def render(
        *, greeting="one", level="info", workers="2", extra="", other_extra="", access_log="false"
    ):
        return TWO_GROUPS.format(
            access_log=access_log,
            web=web.fileno(),
            api=api.fileno(),
            greeting=greeting,
            level=level,
            workers=workers,
            extra=extra,
            other_extra=other_extra,
        )

    config.write_text(render(), encoding="utf-8")
    host = launch(config, pass_fds=(web.fileno(), api.fileno()))
    host.wait_for("ready: 2 group(s), 3 worker(s)")
    host.web = ("127.0.0.1", kit.port_of(web))
    host.api = ("127.0.0.1", kit.port_of(api))
    host.render = render
    return host


def test_an_invalid_edit_changes_nothing_and_names_its_line_and_column(two_groups, kit):
    host = two_groups
    before = host.workers()
    assert kit.who(host.web)["greeting"] == "one"

    text = host.render(greeting="two", workers='"lots"')
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("workers"))
    column = text.splitlines()[line - 1].index('"lots"') + 1
    mark = host.mark()
    kit.save(host.config, text)
    rejected = host.wait_for("reload rejected", since=mark)
    assert "still serving the previous config" in rejected
    error = host.wait_for(": error:", since=mark)
    found = re.search(r"uvhost\.toml:(\d+):(\d+): error: (.*)", error)
    assert found, error
    assert (int(found[1]), int(found[2])) == (line, column), error
    assert "workers" in host.output(mark)

    assert host.workers() == before
    for _ in range(5):
        served = kit.who(host.web)
        assert served["greeting"] == "one"
        assert served["pid"] in before

    mark = host.mark()  # fixing the file applies it, as any valid edit
    kit.save(host.config, host.render(greeting="two"))
    host.wait_applied(mark)
    kit.wait_until(lambda: kit.who(host.web)["greeting"] == "two", "the fixed edit")


def test_a_generation_failing_at_startup_leaves_the_old_one_serving(two_groups, kit):
    host = two_groups
    before = host.wait_workers(3)
    old = kit.who(host.web)
    assert (old["greeting"], old["level"]) == ("one", 20)

    with kit.Load(limit=4000) as load:

        def old_generation_answers():
            served = kit.who(host.web)
            assert (served["greeting"], served["pid"] in before) == ("one", True), served

        load.add("new connection", old_generation_answers, pause=0.005)
        mark = host.mark()
        kit.save(
            host.config,
            host.render(greeting="two", level="warning", extra=', FAIL_STARTUP = "db is down"'),
        )
        failed = host.wait_for("reload failed", since=mark)
        assert "db is down" in failed
        assert "the previous generation keeps serving" in failed
        assert host.wait_workers(3) == before  # the new generation was stopped
        served = load.total()
        kit.wait_until(lambda: load.total() > served + 20 or load.failures, "more requests")
    assert not load.failures, load.failures[:5]
    assert "applied in" not in host.output(mark)

    now = kit.who(host.web)
    assert now["pid"] in before
    assert (now["greeting"], now["level"]) == ("one", 20)  # not even the log level changed


def test_an_edit_rolling_two_groups_commits_neither_when_one_fails(two_groups, kit):
    host = two_groups
    before = host.wait_workers(3)
    mark = host.mark()
    kit.save(host.config, host.render(greeting="two", other_extra=', FAIL_STARTUP = "no"'))
    assert 'group "other"' in host.wait_for("reload failed", since=mark)
    assert host.wait_workers(3) == before  # main's new generation was ready, and discarded
    served = kit.who(host.web)
    assert served["greeting"] == "one"
    assert served["pid"] in before


def test_editing_one_group_rolls_only_that_group(two_groups, kit):
    host = two_groups
    api_pid = kit.who(host.api)["pid"]
    main_before = host.wait_workers(3) - {api_pid}

    with (
        socket.create_connection(host.api, timeout=10) as kept,
        connect(f"ws://{host.api[0]}:{host.api[1]}/ws", open_timeout=10) as websocket,
    ):
        request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        kept.sendall(request)
        first = kit.read_response(kept)
        assert first["pid"] == api_pid
        websocket.send("before")
        assert websocket.recv(timeout=10) == "before"

        mark = host.mark()
        kit.save(host.config, host.render(greeting="two"))
        applied = host.wait_applied(mark)
        assert "group rolled main" in applied
        assert "other" not in applied
        main_after = host.wait_workers(3, excluding=main_before) - {api_pid}
        kit.wait_until(lambda: kit.who(host.web)["pid"] in main_after, "the new main workers")

        kept.sendall(request)  # the same keep-alive connection, still open
        assert kit.read_response(kept)["pid"] == api_pid
        websocket.send("after")
        assert websocket.recv(timeout=10) == "after"
    assert kit.who(host.api)["pid"] == api_pid
    assert api_pid in host.workers()
    assert len(main_after) == 2


def test_the_access_log_is_switched_on_and_off_live(two_groups, kit):
    host = two_groups
    before = host.wait_workers(3)

    def switch(value: str) -> int:
        mark = host.mark()
        kit.save(host.config, host.render(access_log=value))
        assert "live logging (logging.access_log)" in host.wait_applied(mark)
        return mark

    on = switch("true")
    kit.who(host.web, "/while-on")
    kit.who(host.api, "/while-on")
    host.wait_for('"GET /while-on HTTP/1.1" 200', since=on)
    off = switch("false")
    kit.who(host.web, "/while-off")
    kit.who(host.api, "/while-off")
    switch("true")  # its apply line comes after any line the workers wrote while off
    assert host.output(on).count('"GET /while-on HTTP/1.1" 200') == 2  # both groups
    assert "/while-off" not in host.output(off)
    assert host.workers() == before  # live: no roll


def test_a_worker_replaced_after_a_live_change_starts_with_it(two_groups, kit):
    """A live logging change reaches workers started later (crash replacements) too."""
    host = two_groups
    before = host.wait_workers(3)
    mark = host.mark()
    kit.save(host.config, host.render(level="warning"))
    host.wait_applied(mark)
    assert host.workers() == before  # live: no roll
    assert kit.wait_until(lambda: kit.who(host.api)["level"] == 30, "the live level")
    victim = kit.who(host.api)["pid"]
    os.kill(victim, signal.SIGKILL)
    fresh = host.wait_workers(3, excluding={victim})
    served = kit.wait_until(
        lambda: (answer := kit.who(host.api))["pid"] != victim and answer, "the replacement"
    )
    assert served["pid"] in fresh
    assert served["level"] == 30  # warning, as the file says now; not the info it began with


def test_the_access_line_layout_changes_live(two_groups, kit):
    host = two_groups
    before = host.wait_workers(3)
    mark = host.mark()
    layout = 'true\naccess_format = "layout-2 {status} {route} {app} {method}"'
    kit.save(host.config, host.render(access_log=layout))
    assert "logging.access_format" in host.wait_applied(mark)
    kit.who(host.web, "/after")
    kit.who(host.api, "/after")
    host.wait_for("layout-2 200 / main GET", since=mark)
    host.wait_for("layout-2 200 / other GET", since=mark)
    assert host.workers() == before  # live: no roll

"""`uvhost status` and `uvhost top` against a real running host.

(Here rather than in tests/commands/ because they need this folder's host
harness, and a conftest cannot be imported across folders under
`--import-mode=importlib`.)

- `status --json` reports exactly the requests a client made, per app, and the
  worker pids the supervisor really has; `status` prints the same as a
  dashboard (no colour into a pipe);
- `top` in a real pseudo-terminal (fixed 100x40 window) shows the app's
  request rate at 0.0, then above zero once a bounded load starts, with the
  request count climbing frame after frame; SIGINT ends it with status 0;
- `top` into a pipe prints one frame after another; when the host stops,
  `top` says so and exits 1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from uvhost import __version__
from uvhost.supervisor.control import request

CONFIG = """
[host]
watch = false
control_socket = "{socket}"

[listeners.web]
bind = "fd:{web}"
app = "storefront"

[apps.storefront]
target = "apps:main"
workers = 2
"""


def uvhost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uvhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def running(tmp_path, launch, listener, kit, sockets_dir):
    """A host serving app "storefront" (2 workers) on 127.0.0.1; (host, url, control socket)."""
    web = listener()
    kit.write_apps(tmp_path)
    control = sockets_dir / "control.sock"
    config = tmp_path / "uvhost.toml"
    config.write_text(CONFIG.format(socket=control, web=web.fileno()), encoding="utf-8")
    host = launch(config, pass_fds=(web.fileno(),))
    host.wait_for("ready:")
    return host, f"http://127.0.0.1:{kit.port_of(web)}", control


def cells(text: str, first: str) -> list[str] | None:
    """The space-separated cells of the last line of `text` starting with `first`."""
    found = None
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == first:
            found = words
    return found


# ------------------------------------------------------------------- status


def test_status_json_and_dashboard_report_what_happened(running, kit):
    host, url, control = running
    with httpx.Client(base_url=url) as client:
        for _ in range(7):
            client.get("/").raise_for_status()

    def counted():
        apps = request(control, "status", 5)["apps"]
        return apps[0]["requests"] == 7 and apps

    kit.wait_until(counted, "7 requests counted for storefront")

    answer = uvhost("status", "--json", "uvhost.toml", cwd=host.config.parent)
    assert answer.returncode == 0, answer.stderr
    snapshot = json.loads(answer.stdout)
    assert {"ok", "host", "apps", "workers", "totals", "listeners"} <= snapshot.keys()
    assert snapshot["host"]["pid"] == host.pid
    assert snapshot["host"]["state"] == "running"
    (app,) = snapshot["apps"]
    assert (app["name"], app["group"], app["workers"]) == ("storefront", "storefront", 2)
    assert (app["requests"], app["responses"]["2xx"]) == (7, 7)
    assert {w["pid"] for w in snapshot["workers"]} == host.workers()
    assert sum(w["requests"] for w in snapshot["workers"]) == 7

    shown = uvhost("status", "uvhost.toml", cwd=host.config.parent)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "\x1b" not in text  # a pipe: no colour
    assert f"uvhost {__version__}" in text
    assert f"pid {host.pid}" in text
    folded = re.sub(r"[│\s]", "", text)  # a long path folds inside the host panel
    assert f"config{host.config.resolve()}" in folded
    assert "totals 7 requests" in text
    row = cells(text, "storefront")
    assert row is not None, text
    assert (row[:3], row[-1]) == (["storefront", "storefront", "2"], "7")
    assert (cells(text, "web") or [])[:1] == ["web"]
    for pid in host.workers():
        assert (cells(text, str(pid)) or [])[1:4] == ["storefront", "1", "ready"], text
    assert max(len(line) for line in text.splitlines()) <= 80  # rich's width for a pipe


# ---------------------------------------------------------------------- top


def rates(term: Any) -> list[tuple[float, int]]:
    """(req/s, requests) of app storefront in every whole screen so far, in order."""
    seen = []
    for screen in term.whole():
        row = cells(screen, "storefront")
        if row is not None and len(row) == 10:  # the wide layout: app .. requests
            seen.append((float(row[3].replace(",", "")), int(row[9].replace(",", ""))))
    return seen


def test_top_shows_the_live_rate_moving_and_quits_on_ctrl_c(running, kit, terminal):
    host, url, _ = running
    top = terminal(
        [sys.executable, "-m", "uvhost", "top", "--interval", "0.5", "uvhost.toml"],
        host.config.parent,
    )
    idle = kit.wait_until(lambda: len(rates(top)) >= 2 and rates(top), "top draws frames", 20, 0.05)
    assert idle[0] == (0.0, 0), top.tail()
    screen = top.whole()[-1]
    assert f"pid {host.pid}" in screen
    assert "Ctrl-C to quit" in screen
    assert max(len(line) for line in screen.splitlines()) <= kit.COLUMNS

    clients = [httpx.Client(base_url=url) for _ in range(2)]
    try:
        with kit.Load(limit=4000) as load:
            for number, client in enumerate(clients):
                load.add(f"get{number}", lambda c=client: c.get("/").raise_for_status(), 0.002)
            kit.wait_until(
                lambda: [rate for rate, _ in rates(top) if rate > 0],
                "a non-zero req/s on screen",
                20,
                0.05,
            )
            start = len(rates(top))
            kit.wait_until(
                lambda: len({total for _, total in rates(top)[start:]}) >= 3,
                "the request count climbing frame after frame",
                20,
                0.05,
            )
        assert not load.failures, load.failures[:3]
    finally:
        for client in clients:
            client.close()
    moving = [total for _, total in rates(top)]
    assert moving == sorted(moving)  # totals never go backwards
    assert moving[-1] > 0

    os.kill(top.process.pid, signal.SIGINT)
    assert top.process.wait(20) == 0, top.tail()


def test_top_into_a_pipe_prints_frames_and_reports_the_host_leaving(running, kit):
    host, _, _ = running
    top = subprocess.Popen(
        [sys.executable, "-m", "uvhost", "top", "--interval", "0.2", "uvhost.toml"],
        cwd=host.config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert top.stdout is not None
        frames = 0
        for line in top.stdout:
            frames += "Ctrl-C to quit" in line
            if frames == 2:
                break
        assert frames == 2
        stopped = uvhost("stop", "uvhost.toml", cwd=host.config.parent)
        assert stopped.returncode == 0, stopped.stderr
        _, err = top.communicate(timeout=20)
    finally:
        if top.poll() is None:
            top.kill()
            top.wait(10)
    assert top.returncode == 1
    assert "uvhost top: the host went away: no host is running" in err
    assert host.wait_exit() == 0

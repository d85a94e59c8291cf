"""`uvhost run` on a terminal: the live dashboard, logs in their own panel, plain lines otherwise.

- in a real pseudo-terminal, `run` draws the dashboard (the app's row, the
  workers, the logs panel with the supervisor's and the workers' lines), and
  the app's request count climbs under a bounded load;
- SIGINT drains and exits 0, restoring the terminal and printing the last
  log lines after it;
- `--no-dashboard` on the same terminal writes plain log lines, no tables.
"""

import re
import signal
import sys

import httpx

CONFIG = """
[host]
watch = false
control_socket = "off"

[logging]
access_log = true

[listeners.web]
bind = "fd:{web}"
app = "storefront"

[apps.storefront]
target = "apps:main"
"""


def start(tmp_path, listener, kit, terminal, *extra):
    web = listener()
    kit.write_apps(tmp_path)
    (tmp_path / "uvhost.toml").write_text(CONFIG.format(web=web.fileno()), encoding="utf-8")
    term = terminal(
        [sys.executable, "-m", "uvhost", "run", *extra, "uvhost.toml"],
        tmp_path,
        pass_fds=(web.fileno(),),
    )
    return term, f"http://127.0.0.1:{kit.port_of(web)}"


def requests_shown(screen):
    """The storefront row's request total (its last cell), or None if not drawn."""
    for line in screen.splitlines():
        cells = line.split()
        if cells[:1] == ["storefront"] and cells[-1].replace(",", "").isdigit():
            return int(cells[-1].replace(",", ""))
    return None


def test_run_draws_the_dashboard_and_restores_the_terminal(tmp_path, listener, kit, terminal):
    term, url = start(tmp_path, listener, kit, terminal)
    first = kit.wait_until(
        lambda: [s for s in term.whole() if "ready:" in s and requests_shown(s) is not None],
        "the dashboard with the host ready",
        timeout=20,
        interval=0.05,
    )[-1]
    assert "Workers" in first
    assert "logs" in first
    assert "listening on" in first  # the supervisor's lines, in the panel
    with httpx.Client(base_url=url, timeout=10) as client:
        for number in range(30):
            assert client.get(f"/item/{number}").status_code == 200
    shown = kit.wait_until(
        lambda: max((requests_shown(s) or 0) for s in term.whole()) == 30 and term.whole()[-1],
        "30 requests on the dashboard",
        timeout=10,
        interval=0.05,
    )
    assert re.search(r'"GET /item/\d+ HTTP/1.1" 200', shown)  # a worker's access line
    term.process.send_signal(signal.SIGINT)
    assert term.process.wait(20) == 0
    after = kit.wait_until(lambda: "stopped" in term.tail() and term.tail(), "the last lines")
    assert "draining" in after


def test_no_dashboard_keeps_plain_lines_on_a_terminal(tmp_path, listener, kit, terminal):
    term, url = start(tmp_path, listener, kit, terminal, "--no-dashboard")
    kit.wait_until(lambda: "ready:" in term.tail(), "the ready line", timeout=20)
    assert httpx.get(url + "/plain", timeout=10).status_code == 200
    text = kit.wait_until(lambda: "/plain" in term.tail() and term.tail(), "the access line")
    assert "Workers" not in text
    assert not term.whole()  # no screen was ever drawn
    term.process.send_signal(signal.SIGINT)
    assert term.process.wait(20) == 0

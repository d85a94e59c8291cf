"""@metrics, @health and the control socket's permissions, against a real supervised host.

- a scrape of `@metrics` (served by whichever worker accepts it) carries the
  host's merged counts, parses as Prometheus text and matches the requests sent;
- `@health` readiness answers 503 "starting" while another group is still
  starting, 200 once the host is up, and 503 "draining" on a connection that
  is still open while its worker drains; `/live` stays 200;
- a process of another user cannot connect to the control socket (0600), and
  the same process can once the mode is widened (so the check can fail).
"""

import os
import re
import signal
import socket
import stat
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

CONFIG = """
[host]
watch = false
graceful_timeout = "5s"
control_socket = "{control}"

[listeners.web]
bind = "fd:{web}"
app = "main"

[listeners.admin]
bind = "fd:{admin}"
routes = {{ "/metrics" = "@metrics", "/healthz" = "@health" }}

[apps.main]
target = "apps:main"
workers = 2
env = {{ STARTUP_DELAY = "{delay}" }}
"""


def start(tmp_path, launch, listener, kit, *, delay=0.0, control="off"):
    web, admin = listener(), listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    config.write_text(
        CONFIG.format(web=web.fileno(), admin=admin.fileno(), delay=delay, control=control),
        encoding="utf-8",
    )
    host = launch(config, pass_fds=(web.fileno(), admin.fileno()))
    return host, ("127.0.0.1", kit.port_of(web)), ("127.0.0.1", kit.port_of(admin))


def scrape(admin):
    response = httpx.get(f"http://{admin[0]}:{admin[1]}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def read_plain(sock):
    """One response with a content-length from a keep-alive connection: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    size = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
    while len(body) < size:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole response: {data!r}"
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def value(families, family, name, **labels):
    for sample in families[family].samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None  # no such sample (yet)


def test_metrics_scrape_has_the_host_totals(tmp_path, launch, listener, kit):
    host, web, admin = start(tmp_path, launch, listener, kit)
    host.wait_for("ready:")
    served = 0
    for index in range(40):
        kit.who(web, f"/item/{index}")
        served += 1
    posted = httpx.request("DELETE", f"http://{web[0]}:{web[1]}/x", content=b"12345", timeout=10)
    assert posted.status_code == 200

    def settled():
        families = scrape(admin)
        done = value(families, "uvhost_requests", "uvhost_requests_total", app="main")
        return families if done == served + 1 else None

    families = kit.wait_until(settled, "the scrape counting every request", timeout=10)
    labels = {"listener": "web", "app": "main"}
    responses = "uvhost_responses"
    assert value(families, responses, responses + "_total", **labels, **{"class": "2xx"}) == 41
    assert value(families, responses, responses + "_total", **labels, **{"class": "5xx"}) == 0
    assert value(families, "uvhost_request_bytes", "uvhost_request_bytes_total", **labels) == 5
    latency = "uvhost_request_duration_seconds"
    assert value(families, latency, latency + "_count", **labels) == 41
    assert value(families, latency, latency + "_bucket", **labels, le="+Inf") == 41
    assert value(families, "uvhost_workers", "uvhost_workers", group="main") == 2
    opened = "uvhost_connections_open"
    assert value(families, opened, opened, listener="web") == 0


def test_health_starting_ready_draining(tmp_path, launch, listener, kit):
    host, web, admin = start(tmp_path, launch, listener, kit, delay=3.0)
    # The admin group (built-ins only) is up long before the app's lifespan finishes.
    status = kit.wait_until(
        lambda: kit.raw_request(admin, "/healthz")[0] == 503 and "starting",
        "readiness 503 while the app group starts",
        timeout=10,
    )
    assert status == "starting"
    code, body, _ = kit.raw_request(admin, "/healthz")
    assert (code, body) == (503, b"starting\n")
    assert kit.raw_request(admin, "/healthz/live")[:2] == (200, b"alive\n")
    host.wait_for("ready:")
    assert kit.wait_until(lambda: kit.raw_request(admin, "/healthz")[0] == 200, "ready")

    # Connections opened just before the stop stay open while the admin worker drains
    # (idle ones are closed a second into the drain). The supervisor logs "draining"
    # before its worker has read the Drain message, so ask on one connection after
    # another until the worker answers as a draining one: one request each, since a
    # draining worker closes the connection after answering.
    spares = [socket.create_connection(admin, timeout=10) for _ in range(8)]
    slow = socket.create_connection(web, timeout=10)
    slow.sendall(b"GET /slow?s=2 HTTP/1.1\r\nhost: t\r\n\r\n")
    kit.read_until(slow, b"begin")
    host.signal(signal.SIGTERM)
    host.wait_for("draining")
    answers = []
    for spare in spares:
        spare.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        answers.append(read_plain(spare))
        if answers[-1][0] == 503:
            break
        time.sleep(0.05)
    assert answers[-1] == (503, b"draining\n"), answers
    assert all(answer == (200, b"ok\n") for answer in answers[:-1]), answers
    for spare in spares:
        spare.close()
    slow.close()
    assert host.wait_exit() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_control_socket_refuses_another_user(launch, listener, kit):
    folder = Path(tempfile.mkdtemp(prefix="uvh-ctl"))
    try:
        folder.chmod(0o755)  # the folder lets anyone in: only the socket's own mode guards it
        control = folder / "control.sock"
        host, _, _ = start(folder, launch, listener, kit, control=control)
        host.wait_for("ready:")
        assert stat.S_IMODE(control.stat().st_mode) == 0o600
        assert connect_as_nobody(control) == "refused"
        control.chmod(0o666)  # proves the probe can succeed: the mode is what refused it
        assert connect_as_nobody(control) == "connected"
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def connect_as_nobody(path):
    """Fork, drop to uid/gid 65534, try to connect; the child's exit code tells."""
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        code = 3
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
            code = 0
        except PermissionError:
            code = 1
        except BaseException:  # noqa: BLE001 - anything else is a distinct answer
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return {0: "connected", 1: "refused"}.get(os.waitstatus_to_exitcode(status), "error")


LOGGED = """
[host]
watch = false
control_socket = "off"

[logging]
access_log = true
file = "{log}"

[listeners.web]
bind = "fd:{web}"
app = "main"

[apps.main]
target = "apps:main"
"""


def test_sigusr1_reopens_the_log_file_in_every_process(tmp_path, launch, listener, kit):
    web = listener()
    kit.write_apps(tmp_path)
    log = tmp_path / "uvhost.log"
    config = tmp_path / "uvhost.toml"
    config.write_text(LOGGED.format(web=web.fileno(), log=log), encoding="utf-8")
    host = launch(config, pass_fds=(web.fileno(),))
    host.wait_for("ready:")
    address = ("127.0.0.1", kit.port_of(web))
    kit.who(address, "/before-rotation")
    kit.wait_until(lambda: "/before-rotation" in log.read_text(), "the first access line")

    rotated = tmp_path / "uvhost.log.1"
    log.rename(rotated)  # what logrotate does before its postrotate script
    host.signal(signal.SIGUSR1)
    kit.wait_until(log.exists, "a fresh log file at the configured path")
    kit.wait_until(lambda: "log file reopened" in log.read_text(), "the supervisor's line")
    kit.who(address, "/after-rotation")
    kit.wait_until(lambda: "/after-rotation" in log.read_text(), "the worker's access line")
    assert "/after-rotation" not in rotated.read_text()
    assert "/before-rotation" not in log.read_text()
    host.signal(signal.SIGTERM)
    assert host.wait_exit() == 0

"""Crashes and stops: a worker killed with SIGKILL is replaced while the others serve;
SIGTERM lets requests in flight finish, closes WebSockets with 1001, then exits 0;
a second signal exits at once."""

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

CONFIG = """
[host]
graceful_timeout = "10s"

[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "fd:{fd}"
app = "main"

[apps.main]
target = "apps:main"
workers = {workers}
"""


@pytest.fixture
def serving(tmp_path, launch, listener, kit):
    """`serving(workers)`: a host on one fd listener; `host.address` is where it answers."""

    def start(workers: int):
        sock = listener()
        kit.write_apps(tmp_path)
        config = tmp_path / "uvhost.toml"
        config.write_text(CONFIG.format(fd=sock.fileno(), workers=workers), encoding="utf-8")
        host = launch(config, pass_fds=(sock.fileno(),))
        host.wait_for(f"ready: 1 group(s), {workers} worker(s)")
        host.address = ("127.0.0.1", kit.port_of(sock))
        return host

    return start


def alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may be slow to reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_worker_is_replaced_while_the_others_serve(serving, kit, capsys):
    host = serving(workers=3)
    workers = host.workers()
    victim = min(workers)
    times: list[tuple[float, int]] = []

    def request():
        served = kit.who(host.address)
        times.append((time.monotonic(), served["pid"]))

    with kit.Load(limit=4000) as load:
        for index in range(3):
            load.add(f"new connection {index}", request, pause=0.005)
        kit.wait_until(lambda: load.total() > 30, "requests before the kill")
        mark = host.mark()
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced = host.wait_for(f"replaces {victim}", since=mark)
        replaced_at = time.monotonic()
        new_pid = int(replaced.split("worker ")[1].split()[0])
        kit.wait_until(lambda: new_pid in {pid for _, pid in times[-200:]}, "the replacement")
    assert "exited unexpectedly" in host.output(mark)
    assert host.workers() == (workers - {victim}) | {new_pid}
    between = {pid for at, pid in times if killed_at + 0.05 < at < replaced_at}
    assert between & (workers - {victim}), "the other workers served nothing meanwhile"
    assert victim not in between
    with capsys.disabled():
        print(
            f"\nkill -9 under load: {load.total()} served, {len(load.failures)} failed; "
            f"replaced in {replaced_at - killed_at:.2f}s"
        )
    # At most the requests in flight on the killed worker at that instant were lost.
    assert len(load.failures) <= 3, load.failures


def test_sigterm_finishes_requests_in_flight_closes_websockets_1001_and_exits_0(serving, kit):
    host = serving(workers=2)
    slow = []
    try:
        for _ in range(3):
            sock = socket.create_connection(host.address, timeout=10)
            slow.append(sock)
            sock.sendall(b"GET /slow?s=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        heads = [kit.read_until(sock, b"begin\r\n") for sock in slow]  # all three in flight
        with (
            connect(f"ws://{host.address[0]}:{host.address[1]}/ws", open_timeout=10) as one,
            connect(f"ws://{host.address[0]}:{host.address[1]}/ws", open_timeout=10) as two,
        ):
            for websocket in (one, two):
                websocket.send("hello")
                assert websocket.recv(timeout=10) == "hello"
            host.signal(signal.SIGTERM)
            for websocket in (one, two):
                with pytest.raises(ConnectionClosedOK) as closed:
                    websocket.recv(timeout=10)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1001
        for sock, head in zip(slow, heads, strict=True):
            whole = kit.read_until(sock, b"0\r\n\r\n", head)
            assert whole.startswith(b"HTTP/1.1 200")
            assert whole.endswith(b"5\r\nbegin\r\n3\r\nend\r\n0\r\n\r\n")
    finally:
        for sock in slow:
            sock.close()
    assert host.wait_exit() == 0, host.output()
    output = host.output()
    assert "draining" in output
    assert "stopped" in output
    assert "Traceback" not in output


def test_a_second_signal_exits_at_once(serving, kit):
    host = serving(workers=2)
    workers = host.workers()
    with socket.create_connection(host.address, timeout=10) as sock:
        sock.sendall(b"GET /slow?s=30 HTTP/1.1\r\nHost: t\r\n\r\n")
        kit.read_until(sock, b"begin\r\n")
        mark = host.mark()
        host.signal(signal.SIGTERM)
        host.wait_for("draining", since=mark)
        started = time.monotonic()
        host.signal(signal.SIGINT)
        assert host.wait_exit(timeout=10) == 1
        assert time.monotonic() - started < 5  # not the 30 s request, nor the 10 s grace
    assert "second stop signal" in host.output(mark)
    kit.wait_until(lambda: not any(alive(pid) for pid in workers), "the workers gone")


ROLLING = """
[host]
graceful_timeout = "10s"
startup_timeout = "60s"
watch = false
control_socket = "{control}"
pid_file = "{pid}"

[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "unix:{web}"
app = "main"

[apps.main]
target = "apps:main"
env = {{ STARTUP_DELAY = "{delay}" }}
"""


def test_a_second_signal_mid_reload_leaves_no_socket_or_pid_file(
    tmp_path, launch, sockets_dir, kit
):
    """The second signal exits with os._exit, which skips every `finally`; it must still
    remove what a normal stop removes. Mid-reload is when the control socket is still up."""
    control, web = sockets_dir / "control.sock", sockets_dir / "web.sock"
    pid = tmp_path / "uvhost.pid"
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"

    def render(delay: int) -> str:
        return ROLLING.format(control=control, web=web, pid=pid, delay=delay)

    config.write_text(render(0), encoding="utf-8")
    host = launch(config)
    host.wait_for("ready: 1 group(s), 1 worker(s)")
    (old,) = host.workers()
    kit.save(config, render(60))  # the new generation sleeps in its startup: the roll waits
    host.signal(signal.SIGHUP)
    (new,) = host.wait_workers(2) - {old}
    mark = host.mark()
    host.signal(signal.SIGTERM)  # queued behind the roll, so the control socket stays up
    assert control.exists()
    host.signal(signal.SIGINT)
    assert host.wait_exit() == 1, host.output()
    assert "second stop signal" in host.output(mark)
    assert not control.exists()
    assert not web.exists()
    assert not pid.exists()
    kit.wait_until(lambda: not alive(old) and not alive(new), "both generations' workers gone")

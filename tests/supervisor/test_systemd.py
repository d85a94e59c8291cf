"""Deployment basics with real `uvhost run` processes: sd_notify, socket activation, pid file.

- With NOTIFY_SOCKET pointing at a datagram socket the test holds, the
  supervisor sends READY=1 (with MAINPID) once every group serves,
  RELOADING=1 + MONOTONIC_USEC and then READY=1 around every reload (applied
  or rejected), and STOPPING=1 when SIGTERM starts the drain.
- Socket activation as systemd does it: the listening socket sits at fd 3,
  LISTEN_PID is the pid of the process that runs `uvhost run` (a `python -c`
  wrapper puts the socket at fd 3, sets LISTEN_PID to its own pid, then execs
  uvhost, keeping its pid), LISTEN_FDNAMES names it; `bind = "systemd:web"`
  serves it. Workers see none of these variables.
- The pid file holds the supervisor's pid while it runs and is gone after.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from uvhost.supervisor import pidfile, systemd

CONFIG = """
[host]
graceful_timeout = "5s"
{host}

[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "{bind}"
app = "main"

[apps.main]
target = "apps:main"
workers = 1

[apps.main.env]
GREETING = "{greeting}"
"""


def write_config(folder: Path, bind: str, *, greeting: str = "hello", host: str = "") -> Path:
    config = folder / "uvhost.toml"
    config.write_text(CONFIG.format(bind=bind, greeting=greeting, host=host), encoding="utf-8")
    return config


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in raw if b"=" in entry)


@pytest.fixture
def activated(tmp_path, launch, listener, kit, monkeypatch):
    """`activated(names, host=...)`: `uvhost run` serving `systemd:web`, started as systemd
    starts a socket-activated service whose sockets are called `names`; (host, socket)."""

    def start(names: str, host: str = ""):
        sock = listener()
        kit.write_apps(tmp_path)
        config = write_config(tmp_path, "systemd:web", host=host)
        monkeypatch.setenv("LISTEN_FDS", "1")
        monkeypatch.setenv("LISTEN_FDNAMES", names)
        monkeypatch.setenv("ACTIVATE_FD", str(sock.fileno()))
        return launch(config, pass_fds=(sock.fileno(),), activate=True), sock

    return start


# ------------------------------------------------------------------ sd_notify


def test_notify_ready_reloading_and_stopping(tmp_path, launch, listener, notifications, kit):
    web = listener()
    kit.write_apps(tmp_path)
    bind = f"fd:{web.fileno()}"
    config = write_config(tmp_path, bind)
    host = launch(config, pass_fds=(web.fileno(),))

    ready = notifications.next()
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(host.pid)
    address = ("127.0.0.1", kit.port_of(web))
    assert kit.who(address)["greeting"] == "hello"  # READY=1 came once it serves
    (worker,) = host.workers()
    assert "NOTIFY_SOCKET" not in environ_of(worker)

    mark = host.mark()
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    kit.save(config, CONFIG.format(bind=bind, greeting="edited", host=""))
    reloading = notifications.next()
    assert reloading["RELOADING"] == "1"
    assert int(reloading["MONOTONIC_USEC"]) >= before
    host.wait_applied(mark)
    assert notifications.next()["READY"] == "1"
    kit.wait_until(lambda: kit.who(address)["greeting"] == "edited", "the edit served")

    mark = host.mark()
    kit.save(config, "[listeners.web]\nbind = 12\n")
    assert notifications.until("RELOADING")["RELOADING"] == "1"
    host.wait_for("reload rejected", since=mark)
    assert notifications.until("READY")["READY"] == "1"  # a rejected reload ends too

    host.signal(signal.SIGTERM)
    assert notifications.until("STOPPING")["STOPPING"] == "1"
    assert host.wait_exit() == 0
    kinds = [next(iter(message)) for message in notifications.seen]
    assert kinds[0] == "READY"
    assert kinds[-1] == "STOPPING"
    assert all(  # every RELOADING=1 is followed by READY=1
        after == "READY" for before, after in itertools.pairwise(kinds) if before == "RELOADING"
    )


def test_a_notify_socket_nobody_reads_is_no_problem(tmp_path, launch, listener, kit, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    web = listener()
    kit.write_apps(tmp_path)
    host = launch(write_config(tmp_path, f"fd:{web.fileno()}"), pass_fds=(web.fileno(),))
    host.wait_for("ready:")
    assert kit.who(("127.0.0.1", kit.port_of(web)))["app"] == "main"
    host.signal(signal.SIGTERM)
    assert host.wait_exit() == 0


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"uvhost-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        monkeypatch.setattr(systemd, "_taken", systemd._Taken())
        env = {"NOTIFY_SOCKET": "@" + name}
        systemd.take_environment(env)
        assert env == {}
        systemd.stopping()
        assert receiver.recv(4096).decode().splitlines()[0] == "STOPPING=1"


# ---------------------------------------------------------- socket activation


def test_a_socket_activated_listener_is_served_by_name(tmp_path, activated, kit):
    pid_path = tmp_path / "run" / "uvhost.pid"
    pid_path.parent.mkdir()
    host, sock = activated("web", host=f'pid_file = "{pid_path}"')

    host.wait_for("ready:")
    assert f"listening on http://127.0.0.1:{kit.port_of(sock)} (web)" in host.output()
    served = kit.who(("127.0.0.1", kit.port_of(sock)))
    assert served["app"] == "main"
    worker_env = environ_of(served["pid"])
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(worker_env)

    assert pid_path.read_text() == f"{host.pid}\n"
    assert [p.name for p in pid_path.parent.iterdir()] == ["uvhost.pid"]  # no temp file left

    host.signal(signal.SIGTERM)
    assert host.wait_exit() == 0
    assert not pid_path.exists()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("api", "systemd passed no socket named 'web' (it passed \"api\")"),
        ("", "systemd passed no socket named 'web' (it passed \"unknown\")"),
    ],
)
def test_an_unknown_systemd_name_cannot_start(activated, names, message):
    host, _ = activated(names)
    assert host.wait_exit() == 3
    assert f'cannot start: listener "web" cannot listen on systemd:web: {message}' in host.output()


@pytest.mark.parametrize(
    "case",
    [
        ({}, "LISTEN_FDS is not set"),
        ({"LISTEN_FDS": "1", "LISTEN_PID": "1"}, "but for process 1, not this one"),
    ],
)
def test_systemd_binds_without_activation_cannot_start(tmp_path, launch, kit, monkeypatch, case):
    env, reason = case
    for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    kit.write_apps(tmp_path)
    host = launch(write_config(tmp_path, "systemd:web"))
    assert host.wait_exit() == 3
    assert reason in host.wait_for("cannot start:")


def test_an_unwritable_pid_file_cannot_start(tmp_path, launch, listener, kit):
    web = listener()
    kit.write_apps(tmp_path)
    taken = tmp_path / "a-folder"  # a rename cannot replace a folder with a file
    taken.mkdir()
    config = write_config(tmp_path, f"fd:{web.fileno()}", host=f'pid_file = "{taken}"')
    host = launch(config, pass_fds=(web.fileno(),))
    assert host.wait_exit() == 3
    assert f"cannot start: cannot write the pid file {taken}" in host.output()
    assert list(tmp_path.glob(".a-folder*")) == []  # the temporary file is cleaned up


def test_a_reload_that_changes_pid_file_moves_it(tmp_path, launch, listener, kit):
    web = listener()
    kit.write_apps(tmp_path)
    first, second = tmp_path / "first.pid", tmp_path / "second.pid"
    bind = f"fd:{web.fileno()}"
    config = write_config(tmp_path, bind, host=f'pid_file = "{first}"')
    host = launch(config, pass_fds=(web.fileno(),))
    host.wait_for("ready:")
    assert first.read_text() == f"{host.pid}\n"

    mark = host.mark()
    kit.save(config, CONFIG.format(bind=bind, greeting="hello", host=f'pid_file = "{second}"'))
    host.wait_applied(mark)
    assert second.read_text() == f"{host.pid}\n"
    assert not first.exists()

    host.signal(signal.SIGTERM)
    assert host.wait_exit() == 0
    assert not second.exists()


# --------------------------------------------------------------- in process


def test_activation_names_fds_from_3_in_order():
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "3", "LISTEN_FDNAMES": "web:api:"}
    found = systemd.parse_activation(env, os.getpid())
    assert found.fds == {"web": (3,), "api": (4,), "unknown": (5,)}
    assert found.lookup("api") == 4


def test_a_name_given_to_two_sockets_is_ambiguous():
    env = {"LISTEN_PID": "7", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:web"}
    found = systemd.parse_activation(env, 7)
    with pytest.raises(LookupError, match="2 sockets named 'web'"):
        found.lookup("web")


def test_take_environment_removes_the_variables(monkeypatch):
    monkeypatch.setattr(systemd, "_taken", systemd._Taken())
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web", "PATH": "/bin"}
    activation = systemd.take_environment(env)
    assert env == {"PATH": "/bin"}
    assert systemd.activation() is activation
    with pytest.raises(LookupError, match="not this one"):
        activation.lookup("web")


def test_the_pid_file_is_removed_only_while_it_holds_our_pid(tmp_path):
    path = tmp_path / "uvhost.pid"
    pidfile.write(path)
    assert path.read_text() == f"{os.getpid()}\n"
    path.write_text("1\n")  # another supervisor took over
    pidfile.remove(path)
    assert path.read_text() == "1\n"
    pidfile.write(path)
    moved = tmp_path / "moved.pid"
    pidfile.move(path, moved)
    assert not path.exists()
    assert moved.read_text() == f"{os.getpid()}\n"
    pidfile.remove(moved)
    assert not moved.exists()
    with contextlib.suppress(FileNotFoundError):
        pidfile.remove(tmp_path / "never.pid")

"""Binding: Unix socket files are removed on close only when they are still the ones we made."""

import signal
import socket
import stat

from uvhost.config.model import Listener
from uvhost.supervisor.sockets import bind


def unix_listener(path):
    return Listener.model_validate({"bind": f"unix:{path}", "app": "site"})


def test_closing_removes_the_socket_file_it_created(sockets_dir):
    path = sockets_dir / "a.sock"
    bound = bind("a", unix_listener(path))
    assert path.exists()
    bound.close()
    assert not path.exists()


def test_closing_leaves_a_newer_socket_at_the_same_path(sockets_dir):
    path = sockets_dir / "shared.sock"
    old = bind("old", unix_listener(path))
    path.unlink()  # the path is taken over (a renamed listener, another host) ...
    new = bind("new", unix_listener(path))  # ... and bound again
    old.close()
    assert path.exists(), "the old listener's cleanup removed the new socket file"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(str(path))  # still the new listener's
    new.close()
    assert not path.exists()


UNIX = """
[host]
control_socket = "off"

[listeners.web]
bind = "unix:{path}"
unix_mode = {mode}
app = "main"

[apps.main]
target = "apps:main"
"""


def test_a_changed_unix_mode_applies_to_the_kept_socket(tmp_path, sockets_dir, launch, kit):
    path = sockets_dir / "web.sock"
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    config.write_text(UNIX.format(path=path, mode="0o660"), encoding="utf-8")
    host = launch(config)
    host.wait_for("ready:")
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    inode = path.stat().st_ino
    since = host.mark()
    kit.save(config, UNIX.format(path=path, mode="0o600"))
    host.wait_applied(since)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino == inode  # the same socket, kept: no connection refused
    assert kit.who(str(path))["app"] == "main"


RENAMED = """
[host]
control_socket = "off"

[listeners.{unix_name}]
bind = "unix:{path}"
app = "main"

[listeners.{fd_name}]
bind = "fd:{fd}"
app = "main"

[apps.main]
target = "apps:main"
"""


def test_a_renamed_listener_keeps_its_socket_and_serves_throughout(
    tmp_path, sockets_dir, launch, listener, kit
):
    path = sockets_dir / "renamed.sock"
    inherited = listener()
    address = ("127.0.0.1", kit.port_of(inherited))
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"

    def render(unix_name: str, fd_name: str) -> str:
        return RENAMED.format(
            unix_name=unix_name, fd_name=fd_name, path=path, fd=inherited.fileno()
        )

    config.write_text(render("web", "api"), encoding="utf-8")
    host = launch(config, pass_fds=(inherited.fileno(),))
    host.wait_for("ready:")
    (old_worker,) = host.wait_workers(1)
    inode = path.stat().st_ino

    with kit.Load() as load:
        load.add("unix", lambda: kit.who(str(path)), pause=0.005)
        load.add("tcp", lambda: kit.who(address), pause=0.005)
        since = host.mark()
        kit.save(config, render("site", "backend"))
        host.wait_applied(since)
        kit.wait_until(lambda: kit.who(str(path))["pid"] != old_worker, "the new generation")
        kit.wait_until(lambda: old_worker not in host.workers(), "the old generation gone")
    assert load.failures == []
    assert load.served["unix"] > 0
    assert load.served["tcp"] > 0
    assert path.stat().st_ino == inode  # the same socket file: never unbound
    assert kit.who(address)["app"] == "main"

    host.signal(signal.SIGTERM)
    assert host.wait_exit() == 0
    assert not path.exists()  # removed once, by the listener that holds it now

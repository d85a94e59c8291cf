"""Binding: Unix socket files are removed on close only when they are still the ones we made."""

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

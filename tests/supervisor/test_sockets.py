"""Binding: Unix socket files are removed on close only when they are still the ones we made."""

import socket

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

"""Binding listening sockets: the only code that knows the kinds of bind address.

Invariants:
- The supervisor binds every socket before any worker starts, so sockets
  outlive worker generations and a bad address fails the start with a clear
  message instead of a worker crash loop.
- A stale Unix socket file (nobody accepting on it) is replaced; a live one
  is never stolen. Unix socket files this process created are removed on
  close, and only those: a file at the same path bound later (a renamed
  listener, another host) is recognised by its inode and left alone.
- An inherited fd must already be a listening stream socket; we check
  rather than discover it on the first accept.
- A systemd socket (`systemd:NAME`) is found by name among the fds systemd
  passed (see systemd.py) and used through a duplicate, so closing it when a
  listener goes away leaves the inherited fd for a later listener to reuse.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from uvhost.config.model import Listener
from uvhost.config.types import BindAddress, SystemdBind, TcpBind, UnixBind
from uvhost.supervisor import systemd


class BindError(Exception):
    """A listener's address cannot be used; the message names it and says why."""


@dataclass
class BoundSocket:
    name: str
    address: BindAddress
    sock: socket.socket
    created_path: Path | None = None  # a Unix socket file we made
    created_file: tuple[int, int] | None = None  # its (device, inode), to remove only it

    def describe(self) -> str:
        """Where clients connect, e.g. "http://127.0.0.1:8000" or "unix:/run/app.sock"."""
        if isinstance(self.address, UnixBind):
            return f"unix:{self.address.path}"
        if self.sock.family == socket.AF_UNIX:  # an inherited Unix socket
            return f"unix:{self.sock.getsockname()}"
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"{shown}:{port}"

    def close(self) -> None:
        self.sock.close()
        path = self.created_path
        if path is None:
            return
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if (info.st_dev, info.st_ino) == self.created_file:
                path.unlink()  # never a newer socket bound at the same path since


@dataclass
class SocketSet:
    sockets: dict[str, BoundSocket] = field(default_factory=dict)

    def by_name(self) -> Mapping[str, socket.socket]:
        return {name: bound.sock for name, bound in self.sockets.items()}

    def __iter__(self) -> Iterator[BoundSocket]:
        return iter(self.sockets.values())

    def close(self) -> None:
        for bound in self.sockets.values():
            bound.close()


def bind_all(listeners: Iterable[tuple[str, Listener]]) -> SocketSet:
    """Bind every listener or none: on the first failure the others are closed."""
    bound = SocketSet()
    try:
        for name, listener in listeners:
            bound.sockets[name] = bind(name, listener)
    except BindError:
        bound.close()
        raise
    return bound


def bind(name: str, listener: Listener) -> BoundSocket:
    address = listener.bind
    try:
        if isinstance(address, TcpBind):
            return BoundSocket(name, address, _bind_tcp(address, listener.backlog))
        if isinstance(address, UnixBind):
            sock = _bind_unix(address.path, listener.backlog, listener.unix_mode)
            info = address.path.lstat()
            return BoundSocket(
                name, address, sock, address.path, created_file=(info.st_dev, info.st_ino)
            )
        if isinstance(address, SystemdBind):
            return BoundSocket(name, address, _adopt_systemd(name, address))
        return BoundSocket(name, address, _adopt_fd(address.fd))
    except OSError as error:
        reason = error.strerror or str(error)
        raise BindError(f'listener "{name}" cannot listen on {address}: {reason}') from error


def close_unless_kept(candidates: Iterable[BoundSocket], kept: SocketSet) -> None:
    """Close each candidate whose socket `kept` does not hold (under any listener name)."""
    keep = {id(bound.sock) for bound in kept}
    for bound in candidates:
        if id(bound.sock) not in keep:
            bound.close()


def adjust(bound: BoundSocket, listener: Listener) -> None:
    """A kept socket takes the settings that change in place: backlog, a Unix file's mode."""
    bound.sock.listen(listener.backlog)
    if bound.created_path is not None and listener.unix_mode is not None:
        bound.created_path.chmod(listener.unix_mode)


def _bind_tcp(address: TcpBind, backlog: int) -> socket.socket:
    infos = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)

    def setup() -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)

    return _listening(sock, backlog, setup)


def _listening(sock: socket.socket, backlog: int, setup: Callable[[], None]) -> socket.socket:
    """Run `setup` (bind and friends), then listen; the socket is closed if any step fails."""
    try:
        setup()
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_unix(path: Path, backlog: int, mode: int | None) -> socket.socket:
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def setup() -> None:
        sock.bind(str(path))
        if mode is not None:
            path.chmod(mode)

    return _listening(sock, backlog, setup)


def _remove_stale(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(errno.EEXIST, "the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()  # left behind by a process that is gone
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another process is accepting on this socket")


def _adopt_systemd(name: str, address: SystemdBind) -> socket.socket:
    try:
        fd = systemd.activation().lookup(address.name)
    except LookupError as error:
        raise BindError(f'listener "{name}" cannot listen on {address}: {error}') from None
    os.fstat(fd)
    return _adopt_fd(os.dup(fd), owned=True)


def _adopt_fd(fd: int, *, owned: bool = False) -> socket.socket:
    """A socket object for listening fd `fd`; `owned`: close `fd` if it does not qualify."""
    os.fstat(fd)  # EBADF with a clear message when nothing is open there
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        if owned:
            sock.close()
        else:
            sock.detach()
        raise OSError(errno.ENOTSOCK, "the inherited fd is not a listening stream socket")
    sock.setblocking(False)
    return sock

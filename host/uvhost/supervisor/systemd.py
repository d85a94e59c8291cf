"""systemd integration: socket activation (LISTEN_FDS) and readiness notification (sd_notify).

Invariants:
- The environment is read once, by `take_environment()` at the start of
  `uvhost run`, and LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES and NOTIFY_SOCKET
  are then removed from it, so workers (and the apps in them) never see
  variables meant for the supervisor.
- Inherited sockets are honoured only when LISTEN_PID is our pid, as
  sd_listen_fds(3) requires: a variable left over from a parent is ignored.
- A notification is one datagram; failing to send it is logged at debug and
  never affects serving (systemd may not be listening, e.g. Type=simple).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field

logger = logging.getLogger("uvhost")

LISTEN_FDS_START = 3
_LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class Activation:
    """The sockets systemd passed us: name → fds, or why there are none."""

    fds: dict[str, tuple[int, ...]] = field(default_factory=dict)
    absent: str = "LISTEN_FDS is not set (uvhost was not started by a systemd socket unit)"

    def lookup(self, name: str) -> int:
        """The one fd systemd named `name`; LookupError with the reason otherwise."""
        if not self.fds:
            raise LookupError(self.absent)
        found = self.fds.get(name)
        if not found:
            known = ", ".join(f'"{known}"' for known in self.fds)
            raise LookupError(f"systemd passed no socket named {name!r} (it passed {known})")
        if len(found) > 1:
            raise LookupError(
                f"systemd passed {len(found)} sockets named {name!r}; a listener serves one, "
                "so give each ListenStream= its own socket unit and FileDescriptorName="
            )
        return found[0]


@dataclass
class _Taken:
    """What `take_environment` read, for the rest of the process's life."""

    activation: Activation | None = None
    notify_socket: str | None = None


_taken = _Taken()


def take_environment(environ: MutableMapping[str, str] | None = None) -> Activation:
    """Read the systemd variables once and remove them, so that workers do not inherit them."""
    env = os.environ if environ is None else environ
    _taken.activation = parse_activation(env, os.getpid())
    _taken.notify_socket = env.pop("NOTIFY_SOCKET", None) or None
    for name in _LISTEN_VARIABLES:
        env.pop(name, None)
    return _taken.activation


def activation() -> Activation:
    """The sockets from the environment as `take_environment` read it (reading it if not yet)."""
    return _taken.activation or take_environment()


def parse_activation(env: MutableMapping[str, str], pid: int) -> Activation:
    count_text, pid_text = env.get("LISTEN_FDS"), env.get("LISTEN_PID")
    if count_text is None:
        return Activation()
    if pid_text is None or not pid_text.strip().isdigit() or int(pid_text) != pid:
        return Activation(
            absent=f"LISTEN_FDS is set, but for process {pid_text or '(LISTEN_PID unset)'}, "
            f"not this one ({pid}); it was meant for another process"
        )
    if not count_text.strip().isdigit() or int(count_text) == 0:
        return Activation(absent=f"LISTEN_FDS={count_text!r} passes no sockets")
    count = int(count_text)
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    fds: dict[str, tuple[int, ...]] = {}
    for index in range(count):
        fd = LISTEN_FDS_START + index
        name = names[index] if index < len(names) and names[index] else "unknown"
        fds[name] = (*fds.get(name, ()), fd)
        with contextlib.suppress(OSError):
            os.set_inheritable(fd, False)  # workers get sockets only through pass_fds
    return Activation(fds)


# ------------------------------------------------------------------ sd_notify


def notify(*fields: str) -> None:
    """Send `fields` ("READY=1", ...) to NOTIFY_SOCKET, if systemd gave one; never raises."""
    if not _taken.notify_socket:
        return
    address = _taken.notify_socket
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as error:
        logger.debug("sd_notify to %s failed: %s", _taken.notify_socket, error)


def ready(status: str = "") -> None:
    notify("READY=1", f"MAINPID={os.getpid()}", *([f"STATUS={status}"] if status else []))


def reloading() -> None:
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")


def stopping() -> None:
    notify("STOPPING=1", "STATUS=draining")

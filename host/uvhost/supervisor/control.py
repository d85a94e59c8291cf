"""The control socket: `uvhost reload`, `uvhost stop` and `uvhost status` talk to a running host.

Protocol: JSON lines over a Unix stream socket. A request is one object,
`{"command": "reload" | "stop" | "status"}`; the answer is one object with
`"ok"` and, by command, `"message"`, `"errors"` (a rejected reload's
diagnostics, rendered as `uvhost check` shows them) or the status fields.

Invariants:
- Only the owner can connect: the socket is created 0600 (bound under a
  umask, so there is no window where it is wider) and the default location
  is a 0700 folder of our own; a folder owned by someone else, or open to
  others, is refused rather than used.
- A command is handled by the supervisor's serialising loop (reload is queued
  like SIGHUP), so control requests never race signals or file edits.
- A stopped host leaves no socket behind, and removes only the file it bound:
  `ControlServer.close()` unlinks the path while it is still that file, so a
  newer host that took the path over keeps its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import stat
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvhost.config.model import HostSettings

Handler = Callable[[str], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """The control socket cannot be created or reached; one line."""


def socket_path(host: HostSettings, config_path: Path) -> Path | None:
    """Where the control socket of this config lives; None when it is "off"."""
    setting = host.control_socket
    if setting == "off":
        return None
    if isinstance(setting, Path):
        return setting
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = (
        Path(runtime) / "uvhost"
        if runtime
        else Path(tempfile.gettempdir()) / f"uvhost-{os.getuid()}"
    )
    digest = hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:16]
    return base / f"{digest}.sock"


def _private_folder(folder: Path) -> None:
    """Create the default folder 0700, or accept it only if it is ours and closed to others."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ControlError(f"{folder} is not a folder owned by this user")
    if info.st_mode & 0o077:
        raise ControlError(f"{folder} is open to other users (mode {info.st_mode & 0o777:o})")


@dataclass
class ControlServer:
    """The accepting control socket and the identity of the file it bound."""

    server: asyncio.AbstractServer
    path: Path
    created: tuple[int, int]  # (st_dev, st_ino) of the socket file when it was bound

    def close(self) -> None:
        """Stop accepting and remove the socket file; safe to call again, and from any exit path.

        Synchronous on purpose: the second-signal exit calls it right before `os._exit`.
        """
        self.server.close()
        with contextlib.suppress(FileNotFoundError):
            info = self.path.lstat()
            if (info.st_dev, info.st_ino) == self.created:
                self.path.unlink()  # never a newer host's socket bound at the same path since


async def serve(path: Path, handle: Handler, *, default_location: bool) -> ControlServer:
    if default_location:
        _private_folder(path.parent)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()  # left by a host that is gone (bind_all refuses live ones on listeners)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as error:
        sock.close()
        raise ControlError(f"cannot create the control socket {path}: {error.strerror}") from error
    finally:
        os.umask(previous)
    path.chmod(0o600)
    info = path.lstat()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if len(line) > MAX_REQUEST:
                answer: dict[str, Any] = {"ok": False, "message": "request too long"}
            else:
                answer = await _dispatch(line, handle)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    try:
        server = await asyncio.start_unix_server(client, sock=sock)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return ControlServer(server, path, (info.st_dev, info.st_ino))


async def _dispatch(line: bytes, handle: Handler) -> dict[str, Any]:
    try:
        request = json.loads(line)
        command = request["command"]
    except (ValueError, TypeError, KeyError):
        return {"ok": False, "message": 'send one JSON object: {"command": "reload"}'}
    if command not in ("reload", "stop", "status"):
        return {"ok": False, "message": f"unknown command {command!r}"}
    return await handle(str(command))


def request(path: Path, command: str, timeout: float) -> dict[str, Any]:
    """The client side: one command, one answer (blocking)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"no host is running for this config (no socket at {path})") from None
    except ConnectionRefusedError:
        raise ControlError(f"no host is accepting on {path}") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: it belongs to another user") from None
    except TimeoutError:
        raise ControlError(f"the host did not answer within {timeout:g}s") from None
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        raise ControlError("the host closed the connection without an answer") from None
    return answer

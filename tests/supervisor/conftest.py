"""Real `uvhost run` processes for supervisor tests, driven by signals and file edits.

`host = launch(config, pass_fds=...)` starts `python -m uvhost run CONFIG` in a
new session (so a signal reaches the supervisor only, as a test chooses) with
its stderr read line by line in a thread. Tests wait on what it logs
(`host.wait_for("applied in", since=mark)`) or on what clients see, always
with a bounded timeout; nothing sleeps for readiness.

Listening TCP sockets are made by the test (`listener()`, port 0) and handed
down as `fd:N`, so there is no free-port race. Unix socket paths live in a
short temporary folder (`sockets_dir`), because `tmp_path` can exceed the
108-byte limit of `sun_path`.

The apps (`APPS`, written as `apps.py` next to the config) answer every HTTP
request with JSON that reveals who served it: the app, the worker's pid, its
GREETING, the root logger's level and the root_path. `/slow` streams "begin",
sleeps (`?s=`, default 0.3 s) and ends with "end"; `/ws` echoes WebSocket
messages. `FAIL_STARTUP` in an app's env fails its lifespan startup with that
message.

Edits are saved like editors do: write a sibling file, then rename it over
(`save`). Teardown stops a host still running the way a user does, with
SIGTERM, and waits for it: a SIGKILLed supervisor cannot remove its control
socket, unix sockets or pid file, and those used to pile up in the default
control folder. Only a host that does not exit within TIMEOUT is SIGKILLed
(and the test fails): its session's process group while the supervisor (its
leader, started here) is alive and unreaped, so the group id cannot belong to
anyone else; then any worker seen earlier that is still in that group (an
orphan) by its pid.

Every `uvhost run` imports the uvhost under test (its source folder leads
PYTHONPATH), so a git worktree's tests never run an installed checkout.

systemd's side of socket activation is played by `launch(..., activate=True)`
(the listening socket moved to fd 3, LISTEN_PID set to the pid that runs
uvhost) and by `notifications`, a datagram socket standing in for
NOTIFY_SOCKET.

Test modules reach the helpers here (`save`, `who`, `raw_request`,
`read_until`, `wait_until`, `Load`...) through the `kit` fixture.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import uvhost

TIMEOUT = 20.0
"""Upper bound of every wait: generous, for a loaded 2-core machine."""

APPS = r"""
import asyncio
import json
import logging
import os
from urllib.parse import parse_qs


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await asyncio.sleep(float(os.environ.get("STARTUP_DELAY", "0")))
            reason = os.environ.get("FAIL_STARTUP")
            flag = os.environ.get("FAIL_STARTUP_WHILE")  # a path: fail while it exists
            if flag and os.path.exists(flag):
                reason = f"{flag} exists"
            if reason:
                await send({"type": "lifespan.startup.failed", "message": reason})
                return
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _echo(receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


_HOARD = []


def make(name):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        if scope["type"] == "websocket":
            return await _echo(receive, send)
        while (await receive()).get("more_body"):
            pass
        if scope["path"].endswith("/grow"):  # hold N MiB, written so they are resident
            query = parse_qs(scope["query_string"].decode())
            _HOARD.append(b"x" * (int(query.get("mb", ["64"])[0]) << 20))
        if scope["path"].endswith("/slow"):
            query = parse_qs(scope["query_string"].decode())
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"begin", "more_body": True})
            await asyncio.sleep(float(query.get("s", ["0.3"])[0]))
            await send({"type": "http.response.body", "body": b"end"})
            return
        body = json.dumps(
            {
                "app": name,
                "pid": os.getpid(),
                "greeting": os.environ.get("GREETING", ""),
                "level": logging.getLogger().getEffectiveLevel(),
                "root_path": scope.get("root_path", ""),
            }
        ).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


main = make("main")
other = make("other")
secure = make("secure")
"""


UVHOST_ROOT = str(Path(uvhost.__file__).resolve().parents[1])
"""The folder holding the uvhost under test; put first on every subprocess's PYTHONPATH."""

ACTIVATE = (
    "import os, sys\n"
    "fd = int(os.environ.pop('ACTIVATE_FD'))\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"
    "    os.close(fd)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'uvhost', *sys.argv[1:]])\n"
)
"""Starts uvhost as systemd starts a socket-activated service: the socket (ACTIVATE_FD) at
fd 3 and LISTEN_PID naming the process, which then execs uvhost and keeps its pid."""


def subprocess_environment() -> dict[str, str]:
    """This environment, with the uvhost under test first on PYTHONPATH."""
    paths = [UVHOST_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


class Host:
    """One `uvhost run` subprocess and the lines of its stderr so far.

    `activate=True` starts it through `ACTIVATE` (the caller sets LISTEN_FDS,
    LISTEN_FDNAMES and ACTIVATE_FD in the environment).
    """

    def __init__(
        self,
        config: Path,
        pass_fds: tuple[int, ...] = (),
        args: tuple[str, ...] = (),
        *,
        activate: bool = False,
    ) -> None:
        self.config = config
        entry = ["-c", ACTIVATE] if activate else ["-m", "uvhost"]
        self.process = subprocess.Popen(
            [sys.executable, *entry, "run", *args, str(config)],
            cwd=config.parent,
            env=subprocess_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.lines: list[str] = []
        self.ended = False
        self.changed = threading.Condition()
        self.seen_workers: set[int] = set()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    # ------------------------------------------------------------- the log

    def mark(self) -> int:
        """A position in the log: `wait_for(..., since=mark)` looks only at later lines."""
        with self.changed:
            return len(self.lines)

    def output(self, since: int = 0) -> str:
        with self.changed:
            return "".join(self.lines[since:])

    def wait_for(self, text: str, *, since: int = 0, timeout: float = TIMEOUT) -> str:
        """The first line from `since` on containing `text`; fails on timeout or exit."""

        def found() -> str | None:
            return next((line for line in self.lines[since:] if text in line), None)

        with self.changed:
            self.changed.wait_for(lambda: found() is not None or self.ended, timeout)
            line = found()
        assert line is not None, f"never logged {text!r}:\n{self.output()}"
        return line

    def wait_applied(self, since: int) -> str:
        """The apply line of a reload whose edit was saved at `since`; fails if it failed."""
        with self.changed:
            self.changed.wait_for(
                lambda: any(_outcome(line) for line in self.lines[since:]) or self.ended, TIMEOUT
            )
            outcome = next((line for line in self.lines[since:] if _outcome(line)), "")
        assert "applied in" in outcome, f"the edit was not applied:\n{self.output(since)}"
        return outcome

    # ------------------------------------------------------------ processes

    def workers(self) -> set[int]:
        """The supervisor's child processes right now (current and retiring workers)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            found = {int(pid) for pid in path.read_text().split()}
        except (FileNotFoundError, ProcessLookupError):
            return set()
        self.seen_workers |= found
        return found

    def wait_workers(self, count: int, *, excluding: Iterable[int] = ()) -> set[int]:
        """Until exactly `count` workers run and none of `excluding` is among them."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            now = self.workers()
            if len(now) == count and not now.intersection(excluding):
                return now
            time.sleep(0.02)
        pytest.fail(f"expected {count} workers (not {excluding}), have {self.workers()}")

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"uvhost run did not exit in time:\n{self.output()}")
        self.reader.join(TIMEOUT)
        return code

    def stop(self) -> bool:
        """Teardown: SIGTERM and wait, so the host cleans up; False if it had to be SIGKILLed."""
        stopped = True
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                stopped = False
        self.kill()  # when stopped: only the orphans' sweep and closing the log are left
        return stopped

    def kill(self) -> None:
        """SIGKILL the whole session, while its leader is alive (so the group is ours)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(TIMEOUT)
        for pid in self.seen_workers:  # orphans of a supervisor that is already gone
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == self.pid:
                    os.kill(pid, signal.SIGKILL)
        self.reader.join(TIMEOUT)
        if self.process.stderr is not None:
            self.process.stderr.close()


def _outcome(line: str) -> bool:
    words = ("applied in", "reload rejected", "reload failed", "reload: no changes")
    return any(word in line for word in words)


@pytest.fixture
def launch() -> Iterator[Callable[..., Host]]:
    started: list[Host] = []

    def start(
        config: Path,
        pass_fds: tuple[int, ...] = (),
        args: tuple[str, ...] = (),
        *,
        activate: bool = False,
    ) -> Host:
        host = Host(config, pass_fds, args, activate=activate)
        started.append(host)
        return host

    yield start
    hung = [host for host in started if not host.stop()]
    if hung:
        logs = "\n".join(host.output() for host in hung)
        pytest.fail(f"uvhost run did not stop on SIGTERM within {TIMEOUT:g}s:\n{logs}")


@pytest.fixture
def listener() -> Iterator[Callable[[], socket.socket]]:
    """`listener()`: a TCP socket listening on 127.0.0.1, port 0, to pass down as fd:N."""
    made: list[socket.socket] = []

    def make() -> socket.socket:
        sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()


@pytest.fixture
def sockets_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="uvh"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class Notifications:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET.

    Like systemd, it asks the kernel for each sender's credentials, so a test
    can check who sent a message (`NotifyAccess=main` accepts the main pid's only).
    """

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(TIMEOUT)
        self.seen: list[dict[str, str]] = []
        self.senders: list[int] = []

    def next(self) -> dict[str, str]:
        """The next message, as its fields; fails after the timeout."""
        credentials = struct.calcsize("iII")  # struct ucred: pid, uid, gid
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(credentials))
        for level, kind, payload in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                self.senders.append(struct.unpack("iII", payload[:credentials])[0])
        message = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        self.seen.append(message)
        return message

    def until(self, key: str) -> dict[str, str]:
        """The next message carrying `key`, skipping others (a save may be seen twice)."""
        while key not in (message := self.next()):
            pass
        return message


@pytest.fixture
def notifications(sockets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Notifications]:
    """NOTIFY_SOCKET for the hosts this test starts, and what they send to it."""
    path = sockets_dir / "notify.sock"
    receiver = Notifications(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield receiver
    receiver.sock.close()


def write_apps(folder: Path) -> None:
    (folder / "apps.py").write_text(APPS, encoding="utf-8")


def save(path: Path, text: str) -> None:
    """Save like an editor: a sibling file renamed over the old one."""
    fresh = path.with_name(f".{path.name}.saving")
    fresh.write_text(text, encoding="utf-8")
    fresh.replace(path)


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


# ------------------------------------------------------------------ clients


def raw_request(
    address: tuple[str, int] | str,
    path: str = "/",
    *,
    tls: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes, bytes | None]:
    """One request on a new connection (`Connection: close`): status, body, peer cert (DER)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
        sock.settimeout(timeout)
        sock.connect(address)
        if tls is not None:
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname="127.0.0.1"))
        peer = sock.getpeercert(binary_form=True) if tls is not None else None
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        raise ConnectionError("the server closed the connection without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return status, body, peer


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    """Bytes from `sock` (after `data`) until `marker` arrives; fails if it closes first."""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}; got {data!r}")
        data += chunk
    return data


def read_response(sock: socket.socket) -> dict[str, Any]:
    """The apps' JSON answer (sized by Content-Length) read from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response; got {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    sized = re.search(rb"(?i)content-length: *(\d+)", head)
    assert sized is not None, head
    while len(body) < int(sized[1]):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response; got {data!r}")
        body += chunk
    return dict(json.loads(body))


def _unchunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


def who(address: tuple[str, int] | str, path: str = "/") -> dict[str, Any]:
    """Who serves `path` on a new connection (the apps' JSON); asserts a 200."""
    status, body, _ = raw_request(address, path)
    assert status == 200, body
    return dict(json.loads(body))


def wait_until(
    check: Callable[[], Any], what: str, timeout: float = TIMEOUT, interval: float = 0.01
) -> Any:
    """Poll `check` until it returns something truthy; OSError counts as not yet."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError as error:
            last = error
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    pytest.fail(f"{what}: not seen within {timeout:g}s (last: {last!r})")


class Load:
    """Client threads, each repeating one kind of request until `stop()`, bounded in count.

    `add(name, request)` starts a thread calling `request()` (which raises on a
    bad answer) up to `limit` times; `served` and `failures` tally the outcomes.
    """

    def __init__(self, limit: int = 5000) -> None:
        self.limit = limit
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.served: dict[str, int] = {}
        self.failures: list[str] = []
        self.threads: list[threading.Thread] = []

    def add(self, name: str, request: Callable[[], object], pause: float = 0.0) -> None:
        def loop() -> None:
            for _ in range(self.limit):
                if self.stopping.is_set():
                    return
                try:
                    request()
                except Exception as error:  # noqa: BLE001 - every failure is the finding
                    with self.lock:
                        self.failures.append(f"{name}: {error!r}")
                else:
                    with self.lock:
                        self.served[name] = self.served.get(name, 0) + 1
                if pause:
                    self.stopping.wait(pause)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def total(self) -> int:
        with self.lock:
            return sum(self.served.values())

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(TIMEOUT)
        assert not any(thread.is_alive() for thread in self.threads), "a client hung"

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@pytest.fixture
def kit() -> ModuleType:
    """This module, for its helpers (`save`, `who`, `raw_request`, `wait_until`, `APPS`...).

    Test modules cannot import a conftest under `--import-mode=importlib`.
    """
    return sys.modules[__name__]


# ------------------------------------------------------------ a terminal

ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")
HOME = "\x1b[H"  # rich's Live, on the alternate screen, starts every frame here
COLUMNS, ROWS = 100, 40


class Terminal:
    """A process on the slave side of a pseudo-terminal of a fixed size; its screens, read.

    Output is cut into screens at each `HOME` as it arrives (so a check costs
    little however long the test runs); `screens` holds the whole ones, as
    plain text, and the one still arriving stays in `pending`.
    """

    def __init__(self, args: list[str], cwd: Path, pass_fds: tuple[int, ...] = ()) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        environ["TERM"] = "xterm-256color"
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environ,
            pass_fds=pass_fds,
        )
        os.close(slave)
        self.master = master
        self.screens: list[str] = []
        self.pending = ""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the slave side is closed
                return
            if not chunk:
                return
            *whole, rest = (self.pending + decode(chunk)).split(HOME)
            with self.lock:
                self.screens.extend(plain(screen) for screen in whole)
                self.pending = rest

    def whole(self) -> list[str]:
        with self.lock:
            return list(self.screens)

    def tail(self) -> str:
        """What was written last, as plain text (for failure messages)."""
        with self.lock:
            return (self.screens[-1] if self.screens else "") + plain(self.pending)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.reader.join(10)
        os.close(self.master)


def plain(screen: str) -> str:
    return ANSI.sub("", screen).replace("\r", "")


@pytest.fixture
def terminal() -> Iterator[type[Terminal]]:
    opened: list[Terminal] = []

    def open_(args: list[str], cwd: Path, pass_fds: tuple[int, ...] = ()) -> Terminal:
        term = Terminal(args, cwd, pass_fds)
        opened.append(term)
        return term

    yield open_  # type: ignore[misc]
    for term in opened:
        term.close()

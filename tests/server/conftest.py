"""A real uvhost on 127.0.0.1:0 for feature tests: `serve(config_toml, apps_source)`.

The harness writes the config and an `apps.py` module into a fresh folder
under `tmp_path` (the config's folder is the default `app_dir`, so targets
read `"apps:NAME"`), loads and plans the config, binds the sockets with
`bind_all` and runs a `Worker` on a uvloop loop in a background thread, as
`uvhost run` does in its main thread. Listeners bind port 0; the real port
is read back from the bound socket.

Tests talk to it with real clients: `host.request(...)` / `host.client()`
(httpx) for ordinary traffic, `host.raw()` for byte scripts on a socket
whose every operation times out. Apps report to the test through objects in
their module (`host.module`), typically `threading.Event`s the test waits on
with a bounded timeout.

Teardown drains the worker in its loop thread (bounded), closes the sockets
and restores `sys.path`, `sys.modules["apps"]` and `os.environ`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvloop

from uvhost.config.load import load_config
from uvhost.observe.builtins import Health, MetricsUnavailable
from uvhost.server.worker import Worker
from uvhost.supervisor.sockets import SocketSet, bind_all

APPS_MODULE = "apps"
TIMEOUT = 5.0
"""Every socket operation and every wait of the harness is bounded by this."""

HARNESS_HOST = '[host]\ngraceful_timeout = "2s"\nstartup_timeout = "10s"\n\n'
"""Prepended to configs that have no [host] table, so teardown never waits 30 s."""


class RawClosedError(EOFError):
    """The server closed the connection before the expected bytes arrived."""


@dataclass
class RawResponse:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes  # the exact bytes of the response on the wire, head and framing included

    def header(self, name: str) -> bytes | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_list(self, name: str) -> list[bytes]:
        wanted = name.lower().encode()
        return [value for key, value in self.headers if key.lower() == wanted]


class Raw:
    """A client socket for byte scripts: send bytes, read responses or the close."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RawClosedError(f"connection closed; buffered: {self.buffer[:200]!r}")
        self.buffer += chunk

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        data, _, self.buffer = self.buffer.partition(marker)
        return data + marker

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_close(self) -> bytes:
        """Everything until the server closes (a reset counts as a close)."""
        with contextlib.suppress(RawClosedError, ConnectionResetError):
            while True:
                self._fill()
        data, self.buffer = self.buffer, b""
        return data

    def read_response(self, *, head: bool = False) -> RawResponse:
        """One response, framed as the client must frame it (HEAD, 1xx, 204, 304 have no body)."""
        raw_head = self.read_until(b"\r\n\r\n")
        lines = raw_head[:-4].split(b"\r\n")
        version, status, reason = [*lines[0].split(b" ", 2), b""][:3]
        assert version in (b"HTTP/1.1", b"HTTP/1.0"), lines[0]
        headers = [
            (name.strip(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines[1:])
        ]
        response = RawResponse(int(status), reason, headers, b"", raw_head)
        code = response.status
        if head or code < 200 or code in (204, 304):
            return response
        if (response.header("transfer-encoding") or b"").lower() == b"chunked":
            body = []
            while True:
                size_line = self.read_until(b"\r\n")
                response.raw += size_line
                size = int(size_line.strip(), 16)
                data = self.read_exact(size + 2)
                response.raw += data
                assert data.endswith(b"\r\n"), data[-10:]
                if size == 0:
                    break
                body.append(data[:-2])
            response.body = b"".join(body)
        elif (length := response.header("content-length")) is not None:
            response.body = self.read_exact(int(length))
            response.raw += response.body
        else:
            response.body = self.read_to_close()
            response.raw += response.body
        return response

    def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """True when the server closes within `timeout` with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            rest = self.read_to_close()
        except TimeoutError:
            return False
        assert rest == b"", f"unexpected bytes before the close: {rest[:200]!r}"
        return True


@dataclass
class RunningHost:
    directory: Path
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    worker: Worker
    sockets: SocketSet
    module: ModuleType | None
    ports: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    stopped: bool = False

    @property
    def first(self) -> str:
        return next(iter(self.sockets.sockets))

    def port(self, listener: str | None = None) -> int:
        return self.ports[listener or self.first]

    def url(self, path: str = "/", listener: str | None = None) -> str:
        return f"http://127.0.0.1:{self.port(listener)}{path}"

    def client(self, listener: str | None = None, **options: Any) -> httpx.Client:
        options.setdefault("timeout", TIMEOUT)
        return httpx.Client(base_url=self.url("", listener), **options)

    def request(
        self, method: str, path: str, *, listener: str | None = None, **options: Any
    ) -> httpx.Response:
        with self.client(listener) as client:
            return client.request(method, path, **options)

    def connect(self, listener: str | None = None, timeout: float = TIMEOUT) -> socket.socket:
        name = listener or self.first
        if name in self.paths:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.paths[name])
            return sock
        family = self.sockets.sockets[name].sock.family
        address = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        return socket.create_connection((address, self.port(name)), timeout=timeout)

    def raw(self, listener: str | None = None, timeout: float = TIMEOUT) -> Raw:
        return Raw(self.connect(listener, timeout))

    def call(
        self, function: Callable[[], Coroutine[Any, Any, Any]], timeout: float = TIMEOUT
    ) -> Any:
        """Run a coroutine in the host's loop thread and return its result."""
        return asyncio.run_coroutine_threadsafe(function(), self.loop).result(timeout)

    def connections(self) -> int:
        async def count() -> int:
            return sum(len(context.connections) for context in self.worker.contexts)

        return int(self.call(count))

    def stop(self) -> None:
        """Drain (bounded), stop the loop thread, close the sockets; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        limit = self.worker.plan.config.host.graceful_timeout + TIMEOUT
        try:
            if self.worker.servers or self.worker.lifespans:
                self.call(self.worker.drain, timeout=limit)
            self.call(_cancel_leftovers)
        finally:
            _stop_loop(self.loop, self.thread)
            self.sockets.close()


async def _cancel_leftovers() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=TIMEOUT)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the host's loop thread did not stop"
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


_serial = itertools.count()


def start_host(
    directory: Path, config_toml: str, apps_source: str, files: dict[str, str] | None = None
) -> RunningHost:
    """Write, load, bind and start; raises the worker's startup error, if any."""
    directory.mkdir(parents=True)
    if "[host]" not in config_toml:
        config_toml = HARNESS_HOST + config_toml
    config_path = directory / "uvhost.toml"
    config_path.write_text(config_toml, encoding="utf-8")
    (directory / f"{APPS_MODULE}.py").write_text(apps_source, encoding="utf-8")
    for name, text in (files or {}).items():
        (directory / name).write_text(text, encoding="utf-8")
    _forget_modules(directory.parent)
    result = load_config(config_path)
    assert result.config is not None, "\n".join(str(d) for d in result.diagnostics)
    plan = result.plan(cpu_count=1)
    sockets = bind_all(plan.config.listeners.items())
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=_run_forever, args=(loop,), daemon=True)
    thread.start()
    builtins = {"@health": Health(lambda: True), "@metrics": MetricsUnavailable()}
    worker = Worker(plan, plan.groups, sockets.by_name(), builtins=builtins)
    host = RunningHost(directory, loop, thread, worker, sockets, None)
    for bound in sockets:
        address = bound.sock.getsockname()
        if isinstance(address, tuple):
            host.ports[bound.name] = int(address[1])
        else:
            host.paths[bound.name] = str(address)
    try:
        asyncio.run_coroutine_threadsafe(worker.start(), loop).result(TIMEOUT * 3)
    except BaseException:
        host.stop()
        raise
    host.module = sys.modules.get(APPS_MODULE)
    return host


def _forget_modules(root: Path) -> None:
    """Drop `apps` and any module imported from under `root`, so the next host re-imports."""
    sys.modules.pop(APPS_MODULE, None)
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(str(root)):
            del sys.modules[name]


Serve = Callable[..., RunningHost]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """`serve(config_toml, apps_source, files={})` → a running host, stopped at teardown.

    `files` are more modules (name → source) written next to `apps.py`.
    """
    hosts: list[RunningHost] = []
    saved_path, saved_environ = list(sys.path), dict(os.environ)
    directory = tmp_path / "hosts"

    def start(
        config_toml: str, apps_source: str = "", files: dict[str, str] | None = None
    ) -> RunningHost:
        host = start_host(directory / f"host{next(_serial)}", config_toml, apps_source, files)
        hosts.append(host)
        return host

    try:
        yield start
    finally:
        try:
            for host in hosts:
                host.stop()
        finally:
            _forget_modules(directory)
            sys.path[:] = saved_path
            os.environ.clear()
            os.environ.update(saved_environ)


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """What the host logged at error level (uvhost.error): app faults, our own bugs."""
    caplog.set_level(logging.ERROR, logger="uvhost.error")

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "uvhost.error"]

    return records


def run_curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """curl, bounded and checked; skips when curl is missing (fails under
    UVHOST_REQUIRE_TOOLS=1, as CI runs, so a missing tool is never a silent pass)."""
    path = shutil.which("curl")
    if path is None:
        reason = "curl is not installed (Debian: apt-get install curl)"
        if os.environ.get("UVHOST_REQUIRE_TOOLS") == "1":
            pytest.fail(f"UVHOST_REQUIRE_TOOLS=1 but {reason}")
        pytest.skip(reason)
    done = subprocess.run(
        [path, "--silent", "--show-error", "--max-time", str(TIMEOUT), *args],
        capture_output=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done

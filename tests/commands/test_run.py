"""`uvhost run` as a real subprocess: serve, drain on SIGINT/SIGTERM, exit codes 0 / 1 / 3.

Listening sockets are made here and handed to the child as inherited fds
(`fd:N` with `pass_fds`), so there is no free-port race: clients may connect
before the child is ready, the kernel queues them.
"""

import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 15

APPS = r"""
import asyncio
import sys


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                print("app: lifespan shutdown ran", file=sys.stderr, flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"begin", "more_body": True})
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"end"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello from uvhost run"})


async def failing(scope, receive, send):
    message = await receive()
    await send({"type": "lifespan.startup.failed", "message": "cannot reach the database"})
"""


def write_config(folder: Path, bind: str, *, access_log: bool = True, app: str = "app") -> Path:
    (folder / "apps.py").write_text(APPS, encoding="utf-8")
    config = folder / "uvhost.toml"
    config.write_text(
        f"""
[host]
graceful_timeout = "5s"

[logging]
format = "plain"
access_log = {"true" if access_log else "false"}

[listeners.main]
bind = "{bind}"
app = "app"

[apps.app]
target = "apps:{app}"
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    with sock:
        yield sock


class Running:
    """A `uvhost run` child whose output (stdout and stderr, merged) is read as it comes."""

    def __init__(self, config: Path, pass_fds: tuple[int, ...] = ()) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvhost", "run", str(config)],
            cwd=config.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=pass_fds,
        )
        self.lines: list[str] = []
        self.ended = False
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    @property
    def output(self) -> str:
        with self.changed:
            return "".join(self.lines)

    def wait_for(self, text: str) -> None:
        """Until `text` is printed; fails after TIMEOUT or when the child exits first."""
        with self.changed:
            self.changed.wait_for(lambda: text in "".join(self.lines) or self.ended, TIMEOUT)
        assert text in self.output, f"never printed {text!r}:\n{self.output}"

    def finish(self) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"uvhost run did not exit in time; output:\n{self.output}")
        self.reader.join(TIMEOUT)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code, self.output

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()


def run_to_exit(config: Path, pass_fds: tuple[int, ...] = ()) -> tuple[int, str]:
    return Running(config, pass_fds).finish()


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}; got {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize(("signum", "access_log"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_serves_and_drains_in_flight_request_on_signal(tmp_path, listening, signum, access_log):
    port = listening.getsockname()[1]
    config = write_config(tmp_path, f"fd:{listening.fileno()}", access_log=access_log)
    running = Running(config, pass_fds=(listening.fileno(),))
    try:
        with httpx.Client(timeout=TIMEOUT) as client:
            assert client.get(f"http://127.0.0.1:{port}/").text == "hello from uvhost run"
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as slow:
            slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            data = read_until(slow, b"5\r\nbegin\r\n")  # in flight: the app is sleeping
            running.process.send_signal(signum)
            data = read_until(slow, b"0\r\n\r\n", data)
            assert data.endswith(b"5\r\nbegin\r\n3\r\nend\r\n0\r\n\r\n")
    except BaseException:
        running.kill()
        raise
    finally:
        listening.close()
    code, output = running.finish()
    assert code == 0, output
    assert f"listening on http://127.0.0.1:{port} (main)" in output
    assert "draining" in output
    assert "app: lifespan shutdown ran" in output
    assert ('"GET /slow HTTP/1.1" 200' in output) is access_log
    assert "Traceback" not in output


def test_unix_socket_is_served_and_removed_on_exit():
    with tempfile.TemporaryDirectory(prefix="uvh") as directory:
        folder = Path(directory)
        path = folder / "run.sock"
        running = Running(write_config(folder, f"unix:{path}"))
        try:
            running.wait_for("ready:")
            transport = httpx.HTTPTransport(uds=str(path))
            with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
                assert client.get("http://localhost/").text == "hello from uvhost run"
            running.process.send_signal(signal.SIGTERM)
        except BaseException:
            running.kill()
            raise
        code, output = running.finish()
        assert code == 0, output
        assert f"listening on unix:{path}" in output
        assert not path.exists()


def test_address_in_use_exits_3(tmp_path, listening):
    port = listening.getsockname()[1]
    config = write_config(tmp_path, f"127.0.0.1:{port}")
    code, output = run_to_exit(config)
    assert code == 3, output
    assert "cannot start" in output
    assert f'listener "main" cannot listen on 127.0.0.1:{port}' in output
    assert "in use" in output.lower()
    assert "Traceback" not in output


def test_lifespan_startup_failure_exits_3_with_the_apps_message(tmp_path, listening):
    config = write_config(tmp_path, f"fd:{listening.fileno()}", app="failing")
    code, output = run_to_exit(config, pass_fds=(listening.fileno(),))
    assert code == 3, output
    assert "cannot start" in output
    assert "cannot reach the database" in output
    assert "Traceback" not in output


def test_import_failure_exits_3(tmp_path, listening):
    config = write_config(tmp_path, f"fd:{listening.fileno()}", app="nonexistent")
    code, output = run_to_exit(config, pass_fds=(listening.fileno(),))
    assert code == 3, output
    assert 'has no attribute "nonexistent"' in output


def test_invalid_config_exits_1_with_diagnostics(tmp_path):
    config = tmp_path / "uvhost.toml"
    config.write_text(
        '[listeners.main]\nbnd = "127.0.0.1:0"\napp = "app"\n\n[apps.app]\ntarget = "apps:app"\n',
        encoding="utf-8",
    )
    code, output = run_to_exit(config)
    assert code == 1, output
    assert "uvhost.toml:2" in output  # file and line of the offending key
    assert "bnd" in output
    assert "bind" in output  # did you mean
    assert "Traceback" not in output


def test_missing_config_exits_1(tmp_path):
    code, output = run_to_exit(tmp_path / "nowhere.toml")
    assert code == 1, output
    assert "no such file" in output

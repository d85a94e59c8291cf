"""HTTP/2 against a real `uvhost run`: real clients, draining, and the reload storm over h2.

- Real clients over TLS (h2 by ALPN) and h2c (prior knowledge): httpx with
  `http2=True`, Debian's curl (`--http2`, `--http2-prior-knowledge`) and
  h2load (Debian's nghttp2-client), which must report no failed and no
  errored request; a real FastAPI app mounted at /api, JSON both ways.
- Draining: a request in flight on an h2 connection when the host reloads
  (SIGHUP) or stops (SIGTERM) gets a GOAWAY whose last stream id covers it,
  then its whole 200 response; after a reload, a new connection is served
  by the new generation.
- The reload storm of test_storm.py, over h2: ten edits (eight of them
  roll the group) while requests are multiplexed on a few connections, TLS
  and h2c, by our own client (every stream judged by RFC 9113: none may be
  lost) and by httpx (whose losses to its own GOAWAY handling are counted
  and printed, see below; any other error fails).

curl and h2load are looked up on PATH: a missing one skips its test, unless
UVHOST_REQUIRE_TOOLS=1 (as .ci/run sets, after installing them), which makes
it a failure.

Why a client of our own (`H2Client`) beside httpx: python-hyper's `h2`,
which httpx builds on, closes its state machine when it receives a GOAWAY,
and any frame after it raises ProtocolError (python-hyper/h2#1181). So
httpx fails every request still in flight on a connection that a server
drains gracefully, although the server does send the responses (httpcore
retries only streams above the GOAWAY's last stream id). `H2Client` keeps
h2 for everything else but takes GOAWAY frames out of the byte stream
before h2 sees them, so it can read the rest as RFC 9113 6.8 intends: a
stream at or below the last stream id must complete, one above it (or
refused with REFUSED_STREAM, 8.7) was not processed and is sent again on a
new connection. httpx runs on asyncio in the storm: its threaded HTTP/2
connection is not safe to share between threads (see `HttpxLoad`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import httpcore
import httpx
import pytest
import trustme
from httpcore._async import http2 as async_http2
from hyperframe.frame import Frame, GoAwayFrame
from tests.h2raw import H2WebSocket, RawH2

CONFIG = """
[host]
graceful_timeout = "{graceful}"
watch = {watch}

[logging]
format = "plain"
level = "{level}"
access_log = false

[logging.loggers]
uvhost = "info"

[listeners.web]
bind = "fd:{web}"
routes = {routes}

[listeners.secure]
bind = "fd:{secure}"
routes = {routes}

[listeners.secure.tls]
certificate = "{certificate}"

[apps.main]
target = "apps:site"
workers = {workers}
env = {{ GREETING = "{greeting}" }}

[apps.api]
target = "api:app"
workers = {workers}
{other}{http2}"""

OTHER = """
[apps.other]
target = "apps:other"
workers = {workers}
"""

SITE = r"""

async def _gate(scope, receive, send):
    # "begin", then wait (bounded) until the file named by ?f= exists, then "end"
    while (await receive()).get("more_body"):
        pass
    flag = parse_qs(scope["query_string"].decode())["f"][0]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"begin", "more_body": True})
    for _ in range(2000):
        if os.path.exists(flag):
            break
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b"end"})


async def site(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/gate":
        return await _gate(receive=receive, send=send, scope=scope)
    return await main(scope, receive, send)
"""

API = """
from fastapi import FastAPI, Request
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/items/{item_id}")
async def read_item(item_id: int, request: Request, q: str | None = None):
    return {
        "item_id": item_id,
        "q": q,
        "http_version": request.scope["http_version"],
        "root_path": request.scope["root_path"],
        "url": str(request.url),
    }


@app.post("/items", status_code=201)
async def create_item(item: Item, request: Request):
    return {"item": item.model_dump(), "http_version": request.scope["http_version"]}
"""

TIMEOUT = 20.0  # every wait of this module, as the supervisor conftest's
HTTP2 = "HTTP/2"


# ------------------------------------------------------------------ tools


def tool(name: str) -> str:
    """The path of a command-line client; skip (or fail, under UVHOST_REQUIRE_TOOLS=1)."""
    path = shutil.which(name)
    reason = None
    if path is None:
        package = "nghttp2-client" if name == "h2load" else name
        reason = f"{name} is not installed (Debian: apt-get install {package})"
    elif name == "curl":
        features = subprocess.run(
            [path, "-V"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        if "HTTP2" not in features:
            reason = f"{path} has no HTTP/2 (curl -V lists no HTTP2 feature)"
    if reason is not None:
        if os.environ.get("UVHOST_REQUIRE_TOOLS") == "1":
            pytest.fail(f"UVHOST_REQUIRE_TOOLS=1 but {reason}")
        pytest.skip(reason)
    assert path is not None
    return path


# ------------------------------------------------------------------ the host


@dataclasses.dataclass
class Deployment:
    """One `uvhost run`: `web` (h2c or HTTP/1.1) and `secure` (TLS, ALPN), both
    routing "/" to apps:site and "/api" to a FastAPI app, in one group."""

    kit: ModuleType
    folder: Path
    web_fd: int
    secure_fd: int
    web: tuple[str, int]
    secure: tuple[str, int]
    ca: trustme.CA
    leaves: dict[str, trustme.LeafCert]
    host: Any = None  # the conftest's Host
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.folder / "uvhost.toml"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def render(self) -> str:
        values = {
            "graceful": "10s",
            "watch": "true",
            "level": "info",
            "workers": 1,
            "greeting": "one",
            "certificate": "certs/a.pem",
            "other": False,
            "http2": "",
            **self.settings,
        }
        routes = '{ "/" = "main", "/api" = "api"%s }' % (
            ', "/other" = "other"' if values["other"] else ""
        )
        other = OTHER.format(workers=values["workers"]) if values["other"] else ""
        http2 = "".join(
            f"\n[listeners.{name}.http2]\n{values['http2']}\n"
            for name in ("web", "secure")
            if values["http2"]
        )
        return CONFIG.format(
            **{**values, "other": other, "http2": http2},
            routes=routes,
            web=self.web_fd,
            secure=self.secure_fd,
        )

    def edit(self, *, signal_: bool = False, **changes: Any) -> None:
        """Save the config with `changes` (and SIGHUP it) and wait until it is applied."""
        self.settings.update(changes)
        mark = self.host.mark()
        self.kit.save(self.config, self.render())
        if signal_:
            self.host.signal(signal.SIGHUP)
        self.host.wait_applied(mark)

    def tls(self, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        context.set_alpn_protocols(list(alpn))
        return context

    def url(self, tls: bool, path: str = "/") -> str:
        if tls:
            return f"https://127.0.0.1:{self.secure[1]}{path}"
        return f"http://127.0.0.1:{self.web[1]}{path}"

    def client(self, tls: bool, **options: Any) -> httpx.Client:
        """An httpx client that speaks HTTP/2 only: by ALPN over TLS, prior knowledge else."""
        options.setdefault("timeout", 10)
        if tls:
            return httpx.Client(http2=True, verify=self.tls(), **options)
        return httpx.Client(http1=False, http2=True, **options)


@pytest.fixture
def start(tmp_path, launch, listener, kit):
    """`start(**settings)`: a Deployment running, ready, with those CONFIG values."""

    def run(**settings: Any) -> Deployment:
        web, secure = listener(), listener()
        kit.write_apps(tmp_path)
        with (tmp_path / "apps.py").open("a", encoding="utf-8") as apps:
            apps.write(SITE)
        (tmp_path / "api.py").write_text(API, encoding="utf-8")
        (tmp_path / "certs").mkdir()
        ca = trustme.CA()
        leaves = {name: ca.issue_cert("127.0.0.1", "localhost") for name in "abc"}
        for name in "ab":
            leaves[name].private_key_and_cert_chain_pem.write_to_path(
                tmp_path / "certs" / f"{name}.pem"
            )
        d = Deployment(
            kit,
            tmp_path,
            web.fileno(),
            secure.fileno(),
            ("127.0.0.1", kit.port_of(web)),
            ("127.0.0.1", kit.port_of(secure)),
            ca,
            leaves,
            settings=dict(settings),
        )
        ca.cert_pem.write_to_path(d.ca_file)
        d.config.write_text(d.render(), encoding="utf-8")
        d.host = launch(d.config, pass_fds=(web.fileno(), secure.fileno()))
        d.host.wait_for(f"ready: 1 group(s), {settings.get('workers', 1)} worker(s)")
        return d

    return run


# ------------------------------------------------------------ a raw h2 client


class H2Client:
    """One HTTP/2 connection driven with `h2`, GOAWAY frames taken out before h2 sees them.

    `goaway` is the GOAWAY frame received with the lowest last stream id
    (parsed by hyperframe, as h2 does); the connection goes on being read
    after it, so the streams it covers can finish. `responses` holds, per
    stream: status, body, ended, and the RST_STREAM error code (None when not
    reset).
    """

    def __init__(
        self, address: tuple[str, int], tls: ssl.SSLContext | None, timeout: float = 10.0
    ) -> None:
        sock = socket.create_connection(address, timeout=timeout)
        try:
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname="localhost")
                assert sock.selected_alpn_protocol() == "h2"
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.scheme = "https" if tls is not None else "http"
        self.authority = f"localhost:{address[1]}"
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        self.pending = b""
        self.goaway: GoAwayFrame | None = None
        self.goaways = 0
        self.closed = False
        self.responses: dict[int, Response] = {}
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            with contextlib.suppress(OSError):  # closed: what it sent is still to be read
                self.sock.sendall(data)

    def can_send(self, size: int) -> bool:
        """Whether a new stream could send a body of `size` bytes now (flow control)."""
        window = min(
            self.conn.outbound_flow_control_window,
            self.conn.remote_settings.initial_window_size,
            self.conn.max_outbound_frame_size,
        )
        return bool(window >= size)

    def request(self, path: str, *, method: str = "GET", body: bytes | None = None) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", self.scheme.encode()),
            (b":authority", self.authority.encode()),
            (b":path", path.encode()),
        ]
        if body is not None:
            headers.append((b"content-length", b"%d" % len(body)))
        self.conn.send_headers(stream_id, headers, end_stream=body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.responses[stream_id] = Response(path)
        self.flush()
        return stream_id

    def read(self, timeout: float = 10.0) -> None:
        """One read from the socket, its frames handled; raises TimeoutError when idle."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return
        self.pending += data
        while len(self.pending) >= 9:
            length = int.from_bytes(self.pending[:3], "big")
            if len(self.pending) < 9 + length:
                break
            raw, self.pending = self.pending[: 9 + length], self.pending[9 + length :]
            if raw[3] == 0x7:  # GOAWAY: ours to judge, h2 would close its state machine
                frame, _ = Frame.parse_frame_header(memoryview(raw[:9]))
                frame.parse_body(memoryview(raw[9:]))
                assert isinstance(frame, GoAwayFrame)
                self.goaways += 1
                if self.goaway is None or frame.last_stream_id < self.goaway.last_stream_id:
                    self.goaway = frame
                continue
            for event in self.conn.receive_data(raw):
                self._handle(event)
        self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        response = self.responses.get(stream_id) if stream_id else None
        if response is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            response.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            response.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            response.ended = True
        elif isinstance(event, h2.events.StreamReset):
            response.reset = int(event.error_code)

    def wait(self, check: Any, what: str, timeout: float = TIMEOUT) -> None:
        """Read until `check()` holds; fails on timeout or when the server closes first."""
        deadline = time.monotonic() + timeout
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{what}: not seen within {timeout:g}s")
            if self.closed:
                pytest.fail(f"{what}: the server closed the connection first")
            with contextlib.suppress(TimeoutError):
                self.read(timeout=min(left, 1.0))

    def close(self) -> None:
        self.closed = True
        self.sock.close()


@dataclasses.dataclass
class Response:
    path: str
    status: int = 0
    body: bytes = b""
    ended: bool = False
    reset: int | None = None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


@contextlib.contextmanager
def h2_client(address: tuple[str, int], tls: ssl.SSLContext | None) -> Iterator[H2Client]:
    client = H2Client(address, tls)
    try:
        yield client
    finally:
        client.close()


# ------------------------------------------------------------ real clients


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_httpx_http2(start, tls):
    d = start()
    with d.client(tls) as client:
        responses = [client.get(d.url(tls, f"/n{index}")) for index in range(5)]
        posted = client.post(d.url(tls, "/echo"), content=b"x" * 100_000)
    for response in [*responses, posted]:
        assert response.status_code == 200, response.text
        assert response.http_version == HTTP2
        assert response.json()["app"] == "main"
        assert response.json()["greeting"] == "one"
    assert posted.status_code == 200


def curl(d: Deployment, tls: bool, path: str, *extra: str) -> tuple[str, int, str]:
    """(body, status, HTTP version) of one curl request over h2 (by ALPN, or prior knowledge)."""
    command = [tool("curl"), "--silent", "--show-error", "--max-time", "10"]
    command += ["--http2", "--cacert", str(d.ca_file)] if tls else ["--http2-prior-knowledge"]
    command += ["--write-out", "\n%{http_code} %{http_version}", *extra, d.url(tls, path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    body, _, tail = done.stdout.rpartition("\n")
    status, version = tail.split()
    return body, int(status), version


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_curl_http2(start, tls):
    tool("curl")
    d = start()
    body, status, version = curl(d, tls, "/hello")
    assert (status, version) == (200, "2")
    assert json.loads(body)["app"] == "main"
    body, status, version = curl(
        d,
        tls,
        "/api/items",
        "--header",
        "content-type: application/json",
        "--data",
        '{"name": "pen", "price": 1.5}',
    )
    assert (status, version) == (201, "2")
    assert json.loads(body) == {
        "item": {"name": "pen", "price": 1.5, "tags": []},
        "http_version": "2",
    }


def h2load(d: Deployment, tls: bool, *options: str) -> str:
    """h2load's report of a run (which must exit 0), protocol h2 checked."""
    command = [tool("h2load"), *options, d.url(tls, "/")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Application protocol: {'h2' if tls else 'h2c'}" in done.stdout, done.stdout
    return done.stdout


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2load_no_errors(start, tls, capsys):
    tool("h2load")
    d = start()
    report = h2load(d, tls, "-n", "2000", "-c", "4", "-m", "10")
    assert "2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored" in report
    assert "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx" in report, report
    with capsys.disabled():
        line = next(line for line in report.splitlines() if line.startswith("finished in"))
        print(f"\nh2load {'TLS' if tls else 'h2c'} -n 2000 -c 4 -m 10: {line}")
    assert "Traceback" not in d.host.output()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_fastapi_at_api_over_h2(start, tls):
    d = start()
    with d.client(tls) as client:
        got = client.get(d.url(tls, "/api/items/42"), params={"q": "blue"})
        posted = client.post(
            d.url(tls, "/api/items"), json={"name": "pen", "price": 1.5, "tags": ["a"]}
        )
        invalid = client.post(d.url(tls, "/api/items"), json={"name": "pen"})
        missing = client.get(d.url(tls, "/api/nothing"))
    assert got.http_version == posted.http_version == HTTP2
    assert got.status_code == 200, got.text
    assert got.json() == {
        "item_id": 42,
        "q": "blue",
        "http_version": "2",
        "root_path": "/api",
        "url": d.url(tls, "/api/items/42?q=blue"),
    }
    assert posted.status_code == 201, posted.text
    assert posted.json() == {
        "item": {"name": "pen", "price": 1.5, "tags": ["a"]},
        "http_version": "2",
    }
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "price"]
    assert missing.status_code == 404


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_websocket_over_h2_from_a_raw_h2_client(start, tls):
    """RFC 8441 against `uvhost run`: an extended CONNECT on a raw h2 connection (TLS by
    ALPN, or h2c), text frames echoed by the app's WebSocket side, then a plain request
    on the same connection."""
    d = start()
    sock = socket.create_connection(d.secure if tls else d.web, timeout=TIMEOUT)
    with contextlib.closing(sock):
        if tls:
            sock = d.tls(("h2",)).wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        client = RawH2(sock)
        ws = H2WebSocket(client, "/ws", authority="localhost", scheme="https" if tls else "http")
        assert ws.response[b":status"] == b"200"
        for index in range(3):
            ws.send_text(f"over h2 {index}")
        assert ws.receive_texts(3) == [f"over h2 {index}" for index in range(3)]
        status, _, _ = client.response(client.request("/api/items/1", authority="localhost"))
        assert status == 200
        sock.close()


# ------------------------------------------------------------ draining


def gated(d: Deployment, name: str) -> tuple[str, Path]:
    """A path whose response ends once `flag` exists, and the flag."""
    flag = d.folder / f"release-{name}"
    return f"/gate?f={flag}", flag


def in_flight(client: H2Client, path: str) -> int:
    """A request whose response has begun (so an app is running it): its stream id."""
    client.request("/warm-up")  # the stream ids in play are not all 1
    stream_id = client.request(path)
    response = client.responses[stream_id]
    client.wait(lambda: response.body == b"begin", "the gated response's first bytes")
    return stream_id


def test_reload_sighup_drains_h2_streams_in_flight(start, kit):
    d = start(watch="false")
    (old,) = d.host.workers()
    paths = {tls: gated(d, "tls" if tls else "h2c") for tls in (True, False)}
    with (
        h2_client(d.secure, d.tls(("h2",))) as secure,
        h2_client(d.web, None) as web,
    ):
        clients = {True: secure, False: web}
        streams = {tls: in_flight(clients[tls], paths[tls][0]) for tls in (True, False)}
        d.edit(signal_=True, greeting="two")  # watch is off: the SIGHUP reloads
        for tls, client in clients.items():
            client.wait(lambda client=client: client.goaway is not None, "a GOAWAY")
            assert client.goaway is not None
            assert client.goaway.error_code == 0
            assert client.goaway.last_stream_id >= streams[tls]
            assert not client.responses[streams[tls]].done
        # The old generation is draining, its streams still open: new connections
        # (over h2, both listeners) go to the new one.
        for tls in (True, False):
            with d.client(tls) as fresh:
                served = fresh.get(d.url(tls, "/who"))
            assert served.http_version == HTTP2
            assert served.json()["greeting"] == "two"
            assert served.json()["pid"] != old
        assert old in d.host.workers()  # still draining
        for tls, client in clients.items():
            paths[tls][1].touch()
            response = client.responses[streams[tls]]
            client.wait(lambda response=response: response.done, "the in-flight response")
            assert (response.status, response.body, response.reset) == (200, b"beginend", None)
            client.wait(lambda client=client: client.closed, "the drained connection closed")
    d.host.wait_workers(1, excluding={old})
    assert "Traceback" not in d.host.output()


def test_stop_sigterm_drains_h2_streams_in_flight(start):
    d = start()
    paths = {tls: gated(d, "tls" if tls else "h2c") for tls in (True, False)}
    with (
        h2_client(d.secure, d.tls(("h2",))) as secure,
        h2_client(d.web, None) as web,
    ):
        clients = {True: secure, False: web}
        streams = {tls: in_flight(clients[tls], paths[tls][0]) for tls in (True, False)}
        mark = d.host.mark()
        d.host.signal(signal.SIGTERM)
        d.host.wait_for("draining", since=mark)
        for tls, client in clients.items():
            client.wait(lambda client=client: client.goaway is not None, "a GOAWAY")
            assert client.goaway is not None
            assert client.goaway.error_code == 0
            assert client.goaway.last_stream_id >= streams[tls]
            assert not client.responses[streams[tls]].done
        assert d.host.process.poll() is None  # waiting for the streams in flight
        for tls, client in clients.items():
            paths[tls][1].touch()
            response = client.responses[streams[tls]]
            client.wait(lambda response=response: response.done, "the in-flight response")
            assert (response.status, response.body, response.reset) == (200, b"beginend", None)
            client.wait(lambda client=client: client.closed, "the drained connection closed")
    assert d.host.wait_exit() == 0, d.host.output()
    output = d.host.output()
    assert "stopped" in output
    assert "graceful timeout" not in output
    assert "Traceback" not in output


# ------------------------------------------------------------ the reload storm over h2

REFUSED = int(h2.errors.ErrorCodes.REFUSED_STREAM)
POST_BODY = b"p" * 8192


class Lane(threading.Thread):
    """One request kind sent over one h2 connection at a time, `depth` streams in flight,
    new connections as the server drains the old ones; every outcome judged by RFC 9113.

    A stream the server did not process (above the GOAWAY's last stream id, or
    refused with REFUSED_STREAM) is sent again and counted (`above`, `refused`); any
    other stream must get its whole 200 answer, or it is a failure, and so is
    a connection that closes with streams it covered still open.
    """

    LIMIT = 20000  # requests per lane, at most

    def __init__(
        self, d: Deployment, tls: bool, path: str, depth: int, *, post: bool = False
    ) -> None:
        super().__init__(name=f"h2 lane {'TLS' if tls else 'h2c'} {path}", daemon=True)
        self.address = d.secure if tls else d.web
        self.context = d.tls(("h2",)) if tls else None
        self.path = path
        self.depth = depth
        self.post = post
        self.stopping = threading.Event()
        self.served = self.connections = self.goaways = 0
        self.refused = 0  # streams reset with REFUSED_STREAM, sent again
        self.above = 0  # streams above a GOAWAY's last stream id, sent again
        self.failures: list[str] = []
        self.again = 0  # unprocessed requests to send again
        self.started = 0
        self.client: H2Client | None = None
        self.outstanding: dict[int, Response] = {}

    def run(self) -> None:
        try:
            while self._turn():
                pass
        except Exception as error:  # noqa: BLE001 - every failure is the finding
            self.failures.append(f"{self.name}: {error!r}")
        finally:
            if self.client is not None:
                self.client.close()

    def _turn(self) -> bool:
        """(Re)connect, send, read once, judge; False once stopped with nothing left."""
        client = self.client
        if client is not None and not self.outstanding and (client.closed or client.goaway):
            self.goaways += client.goaway is not None
            client.close()
            client = self.client = None
        stopping = self.stopping.is_set() or self.started >= self.LIMIT
        if stopping and not self.again and not self.outstanding:
            return False
        if client is None:
            client = self.client = H2Client(self.address, self.context)
            self.connections += 1
        self._send(client, stopping)
        try:
            client.read(timeout=10)
        except TimeoutError:
            if self.outstanding:
                self._fail(client, self.outstanding, "no answer within 10 s")
                self.outstanding.clear()
                client.close()
            return True
        self._judge(client)
        return True

    def _send(self, client: H2Client, stopping: bool) -> None:
        body = POST_BODY if self.post else None
        while (
            client.goaway is None
            and not client.closed
            and len(self.outstanding) < self.depth
            and (self.again or not stopping)
            and (body is None or client.can_send(len(body)))
        ):
            if self.again:
                self.again -= 1
            else:
                self.started += 1
            method = "GET" if body is None else "POST"
            stream_id = client.request(self.path, method=method, body=body)
            self.outstanding[stream_id] = client.responses[stream_id]

    def _judge(self, client: H2Client) -> None:
        outstanding = self.outstanding
        for stream_id, response in list(outstanding.items()):
            if not response.done:
                continue
            del outstanding[stream_id]
            if response.reset == REFUSED:  # not processed (RFC 9113 8.7): send it again
                self.again += 1
                self.refused += 1
            elif response.reset is None and self._good(response):
                self.served += 1
            else:
                self._fail(client, {stream_id: response}, "a bad answer")
        if client.goaway is not None:  # above its last stream id: not processed
            for stream_id in [s for s in outstanding if s > client.goaway.last_stream_id]:
                del outstanding[stream_id]
                self.again += 1
                self.above += 1
        if client.closed and outstanding:
            self._fail(client, outstanding, "the connection closed first")
            outstanding.clear()

    def _good(self, response: Response) -> bool:
        if response.status != 200:
            return False
        if self.path.startswith("/slow"):
            return response.body == b"beginend"
        return bool(json.loads(response.body)["app"] == "main")

    def _fail(self, client: H2Client, streams: dict[int, Response], what: str) -> None:
        goaway = client.goaway
        said = f"GOAWAY last_stream_id={goaway.last_stream_id}" if goaway else "no GOAWAY"
        for stream_id, response in streams.items():
            self.failures.append(
                f"{self.name}: stream {stream_id}: {what} ({said}; status {response.status}, "
                f"reset {response.reset}, body {response.body[:60]!r})"
            )


LOST = "lost to httpx's GOAWAY handling"


@pytest.fixture
def goaway_marks(monkeypatch):
    """httpx's errors on a connection whose h2 received a graceful GOAWAY, marked as such.

    A GOAWAY closes h2's state machine, so h2 refuses any frame after it, the
    responses to streams at or below its last stream id included; httpcore
    then fails those requests in ways that do not say so: the
    ConnectionTerminated it raises, h2's ProtocolError "in state CLOSED" for
    the read that held the GOAWAY (which also loses httpcore the
    ConnectionTerminated event), and "Server disconnected" for the requests
    that read on after it. Which connection's h2 saw a GOAWAY is known here
    (h2's own GOAWAY handler is wrapped), so exactly those errors get LOST at
    the front of their message; an error on any other connection is left as
    it is, and counts as a failure. (httpcore's asyncio HTTP/2 connection,
    the one `HttpxLoad` uses.)
    """
    goaways: weakref.WeakKeyDictionary[h2.connection.H2Connection, int] = (
        weakref.WeakKeyDictionary()
    )
    receive_goaway = h2.connection.H2Connection._receive_goaway_frame
    handle_request = async_http2.AsyncHTTP2Connection.handle_async_request
    body = async_http2.HTTP2ConnectionByteStream.__aiter__
    kinds = (httpcore.RemoteProtocolError, httpcore.LocalProtocolError, h2.exceptions.ProtocolError)

    def receive_goaway_frame(self: h2.connection.H2Connection, frame: GoAwayFrame) -> Any:
        if frame.error_code == 0:
            goaways[self] = frame.last_stream_id
        return receive_goaway(self, frame)

    def marked(connection: Any, error: Exception) -> Exception:
        last = goaways.get(connection._h2_state)
        if last is None or not isinstance(error, kinds):
            return error
        return httpcore.RemoteProtocolError(f"{LOST} (last_stream_id {last}): {error!r}")

    async def handle(self: Any, request: Any) -> Any:
        try:
            return await handle_request(self, request)
        except Exception as error:
            lost = marked(self, error)
            if lost is error:
                raise
            raise lost from error

    async def iterate(self: Any) -> AsyncIterator[bytes]:
        try:
            async for chunk in body(self):
                yield chunk
        except Exception as error:
            lost = marked(self._connection, error)
            if lost is error:
                raise
            raise lost from error

    # h2 binds its frame handlers when a connection is made: patched before any is
    monkeypatch.setattr(h2.connection.H2Connection, "_receive_goaway_frame", receive_goaway_frame)
    monkeypatch.setattr(async_http2.AsyncHTTP2Connection, "handle_async_request", handle)
    monkeypatch.setattr(async_http2.HTTP2ConnectionByteStream, "__aiter__", iterate)


class HttpxLoad(threading.Thread):
    """httpx's AsyncClient with http2=True, one per listener (TLS and h2c), each used by
    `concurrency` tasks at once: streams multiplexed on one connection at a time.

    Why asyncio: httpcore's threaded HTTP/2 connection is not safe to share
    between threads. Seen here: two threads' HEADERS leave in the wrong order
    (stream 115 before 113, which the server must answer with GOAWAY
    PROTOCOL_ERROR, RFC 9113 5.1.1), and over TLS a read in one thread
    returns a false EOF ("Server disconnected") while another writes on the
    same SSL object, the server still holding the connection open.

    REFUSED_STREAM is retried (RFC 9113 8.7: the request was not processed;
    httpx does not retry it itself). A request lost to httpx's GOAWAY handling
    (`goaway_marks`) is counted in `lost`, not as a failure: our own client,
    beside it in the same storm, shows that the server does answer such
    streams. Any other error is a failure.
    """

    PATHS = ("/", "/", "/slow?s=0.2")

    def __init__(self, d: Deployment) -> None:
        super().__init__(name="httpx load", daemon=True)
        self.d = d
        self.stopping = threading.Event()
        self.served: collections.Counter[str] = collections.Counter()
        self.lost: collections.Counter[str] = collections.Counter()
        self.refused = 0
        self.failures: list[str] = []

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as error:  # noqa: BLE001 - every failure is the finding
            self.failures.append(f"httpx load: {error!r}")

    async def _main(self) -> None:
        d = self.d
        async with (
            httpx.AsyncClient(http2=True, verify=d.tls(), timeout=10) as secure,
            httpx.AsyncClient(http1=False, http2=True, timeout=10) as web,
        ):
            await asyncio.gather(
                *(
                    self._repeat(client, f"httpx {'TLS' if tls else 'h2c'} {index} {path}", url)
                    for tls, client in ((True, secure), (False, web))
                    for index, path in enumerate(self.PATHS)
                    for url in [d.url(tls, path)]
                )
            )

    async def _repeat(self, client: httpx.AsyncClient, name: str, url: str) -> None:
        for _ in range(20000):
            if self.stopping.is_set():
                return
            try:
                await self._get(client, name, url)
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                self.failures.append(f"{name}: {error!r}")
            await asyncio.sleep(0.002)

    async def _get(self, client: httpx.AsyncClient, name: str, url: str) -> None:
        for _ in range(5):
            try:
                response = await client.get(url)
            except httpx.RemoteProtocolError as error:
                text = str(error)
                if text.startswith(LOST):
                    self.lost[_lost_kind(text)] += 1
                    return
                if "REFUSED_STREAM" in text:
                    self.refused += 1
                    continue
                raise
            assert response.status_code == 200, response.text
            assert response.http_version == HTTP2
            assert not url.endswith("/slow?s=0.2") or response.content == b"beginend"
            self.served[name] += 1
            return
        raise AssertionError(f"{url}: refused 5 times")

    def total(self) -> int:
        return sum(self.served.values())


def _lost_kind(text: str) -> str:
    """ "RemoteProtocolError(ConnectionTerminated)" and such, from a LOST message."""
    kind = text.partition(": ")[2].partition("(")[0]
    causes = {
        "ConnectionTerminated": "ConnectionTerminated",
        "Server disconnected": "Server disconnected",
        "ConnectionState.CLOSED": "state CLOSED",
    }
    for cause, label in causes.items():
        if cause in text:
            return f"{kind}({label})"
    return kind


def ten_h2_edits(d: Deployment, kit: ModuleType) -> None:
    """Each edit, then a bounded wait until an h2 client sees its effect."""

    def who(tls: bool = False, path: str = "/") -> dict[str, Any]:
        with d.client(tls, timeout=5) as client:
            response = client.get(d.url(tls, path))
        assert response.status_code == 200
        assert response.http_version == HTTP2
        return dict(response.json())

    def peer(name: str) -> bool:
        with h2_client(d.secure, d.tls(("h2",))) as client:
            return bool(client.sock.getpeercert(binary_form=True) == der[name])

    def advertised() -> int:
        """The SETTINGS a new connection gets, once it is served (a draining worker
        may take it and send GOAWAY instead: 0, to try again)."""
        with h2_client(d.web, None) as client:
            response = client.responses[client.request("/")]
            while not response.done and not client.closed:
                client.read(timeout=5)
            if response.status != 200:
                return 0
            return int(client.conn.remote_settings.max_concurrent_streams)

    der = {
        name: ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
        for name, leaf in d.leaves.items()
    }
    # 1. an app's env: the group rolls
    d.edit(greeting="two")
    kit.wait_until(lambda: who()["greeting"] == "two", "the new GREETING")
    # 2-3. a route added, then removed (the group changes its apps)
    d.edit(other=True)
    kit.wait_until(lambda: who(True, "/other/x")["app"] == "other", "the added route")
    d.edit(other=False)
    kit.wait_until(lambda: who(True, "/other/x")["app"] == "main", "the removed route")
    # 4-5. the worker count, up and down
    for count in (2, 1):
        before = d.host.wait_workers(d.settings.get("workers", 1))
        d.edit(workers=count)
        now = d.host.wait_workers(count, excluding=before)
        kit.wait_until(lambda now=now: who()["pid"] in now, "a worker of the new count")
    # 6. the log level: live, no roll
    before = d.host.workers()
    d.edit(level="warning")
    kit.wait_until(lambda: who()["level"] == 30, "the new log level")
    assert d.host.workers() == before
    # 7. a TLS certificate swapped in the config, 8. the file itself replaced
    d.edit(certificate="certs/b.pem")
    kit.wait_until(lambda: peer("b"), "the new certificate")
    mark = d.host.mark()
    renewed = d.leaves["c"].private_key_and_cert_chain_pem.bytes().decode()
    kit.save(d.folder / "certs" / "b.pem", renewed)
    d.host.wait_applied(mark)
    kit.wait_until(lambda: peer("c"), "the renewed certificate")
    # 9-10. the listeners' http2 table, added then changed (each rolls the group)
    for streams in (64, 32):
        d.edit(http2=f"max_concurrent_streams = {streams}")
        kit.wait_until(lambda streams=streams: advertised() == streams, "the new SETTINGS")


def test_ten_edits_under_h2_load_drop_nothing(start, kit, capsys, goaway_marks):
    d = start(graceful="5s")
    lanes = [
        Lane(d, False, "/", 8),
        Lane(d, True, "/", 8),
        Lane(d, False, "/slow?s=0.2", 4),
        Lane(d, True, "/slow?s=0.2", 4),
        Lane(d, True, "/post", 4, post=True),
    ]
    httpx_load = HttpxLoad(d)
    threads: list[Lane | HttpxLoad] = [*lanes, httpx_load]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        ten_h2_edits(d, kit)
    finally:
        for thread in threads:
            thread.stopping.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(TIMEOUT)
    assert not [thread.name for thread in threads if thread.is_alive()], "a client hung"
    failures = httpx_load.failures + [failure for lane in lanes for failure in lane.failures]
    with capsys.disabled():
        print(
            f"\nh2 reload storm ({time.monotonic() - started:.1f}s): own client "
            f"{sum(lane.served for lane in lanes)} served, "
            f"sent again: {sum(lane.above for lane in lanes)} above a GOAWAY's last stream id"
            f" and {sum(lane.refused for lane in lanes)} refused (REFUSED_STREAM), "
            f"{sum(lane.connections for lane in lanes)} connections, "
            f"{sum(lane.goaways for lane in lanes)} GOAWAYs; "
            f"httpx {httpx_load.total()} served, {httpx_load.refused} refused and retried, "
            f"{LOST}: {sum(httpx_load.lost.values())} {dict(httpx_load.lost)}; "
            f"{len(failures)} failed"
        )
    assert not failures, "\n".join(failures[:20])
    assert all(lane.served > 0 for lane in lanes)
    assert sum(lane.goaways for lane in lanes) >= 5  # the lanes did live through the rolls
    assert len(httpx_load.served) == 6  # every httpx task was served
    assert "Traceback" not in d.host.output(), d.host.output()

"""Zero dropped requests through a reload storm: 10 edits under a mixed client load.

The load: keep-alive and new-connection clients, slow (0.3 s) requests of
both kinds, new TLS connections and two WebSockets echoing all along. The
edits, saved one after another by renaming a new file over the old: an
app's env, a route added and removed, the worker count up and down, a Unix
listener added and removed, the log level, a TLS certificate swapped in the
config, then swapped in place (the certificate file itself replaced). After
each edit the test waits, bounded, for its effect to be visible to clients;
then no request may have failed and no connection may have been reset.

A WebSocket open on a generation that retires is closed by the server with
1012 (service restart), as RFC 6455 intends; the client reconnects. That is
counted, not failed; any other close or error is a failure.
"""

import contextlib
import dataclasses
import json
import ssl
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import trustme
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

TEMPLATE = """
[host]
graceful_timeout = "5s"

[logging]
format = "plain"
level = "{level}"
access_log = false

[logging.loggers]
uvhost = "info"

[listeners.web]
bind = "fd:{web}"
routes = {routes}
{side}
[listeners.secure]
bind = "fd:{secure}"
app = "secure"

[listeners.secure.tls]
certificate = "{certificate}"

[apps.main]
target = "apps:main"
workers = {workers}
env = {{ GREETING = "{greeting}" }}

[apps.other]
target = "apps:other"
workers = {workers}

[apps.secure]
target = "apps:secure"
workers = 1
"""


@dataclasses.dataclass(frozen=True)
class State:
    greeting: str = "one"
    route: bool = False
    workers: int = 2
    side: bool = False
    level: str = "info"
    certificate: str = "certs/a.pem"


class Echo:
    """One WebSocket kept open; each call is one echo round trip (reconnecting after 1012)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.stack = contextlib.ExitStack()
        self.connection: ClientConnection | None = None
        self.count = 0
        self.restarts = 0

    def __call__(self) -> None:
        if self.connection is None:
            self.connection = self.stack.enter_context(
                connect(self.uri, open_timeout=10, close_timeout=5)
            )
        self.count += 1
        text = f"echo {self.count}"
        try:
            self.connection.send(text)
            answer = self.connection.recv(timeout=10)
        except ConnectionClosed as closed:
            self.close()
            if closed.rcvd is None or closed.rcvd.code != 1012:
                raise
            self.restarts += 1  # a generation retired: reconnect on the next call
            return
        assert answer == text

    def close(self) -> None:
        self.connection = None
        self.stack.close()


@dataclasses.dataclass
class Deployment:
    """The host under test: `web` (group main), `secure` (TLS, group secure), `side` (Unix)."""

    kit: ModuleType
    folder: Path
    web_fd: int
    secure_fd: int
    side_path: Path
    state: State = State()
    host: Any = None  # the conftest's Host
    web: tuple[str, int] = ("127.0.0.1", 0)
    secure: tuple[str, int] = ("127.0.0.1", 0)
    der: dict[str, bytes] = dataclasses.field(default_factory=dict)
    leaves: dict[str, trustme.LeafCert] = dataclasses.field(default_factory=dict)
    client_tls: ssl.SSLContext = dataclasses.field(default_factory=ssl.create_default_context)

    @property
    def config(self) -> Path:
        return self.folder / "uvhost.toml"

    def render(self) -> str:
        state = self.state
        routes = '{ "/" = "main", "/other" = "other" }' if state.route else '{ "/" = "main" }'
        side = f'[listeners.side]\nbind = "unix:{self.side_path}"\napp = "main"\n'
        return TEMPLATE.format(
            web=self.web_fd,
            secure=self.secure_fd,
            level=state.level,
            workers=state.workers,
            greeting=state.greeting,
            certificate=state.certificate,
            routes=routes,
            side=side if state.side else "",
        )

    def edit(self, **changes: Any) -> None:
        """Save the config with `changes` and wait until the supervisor applied it."""
        self.state = dataclasses.replace(self.state, **changes)
        mark = self.host.mark()
        self.kit.save(self.config, self.render())
        self.host.wait_applied(mark)

    def peer_cert(self) -> bytes:
        """The certificate a new TLS connection to `secure` is shown (DER)."""
        status, _, peer = self.kit.raw_request(self.secure, tls=self.client_tls)
        assert status == 200
        return peer

    def main_workers(self) -> set[int]:
        """Group main's workers once exactly `state.workers` of them run (no retiring ones)."""
        secure_pid = json.loads(self.kit.raw_request(self.secure, tls=self.client_tls)[1])["pid"]
        return self.host.wait_workers(self.state.workers + 1) - {secure_pid}


@pytest.fixture
def deployment(tmp_path, launch, listener, sockets_dir, kit):
    web, secure = listener(), listener()
    kit.write_apps(tmp_path)
    (tmp_path / "certs").mkdir()
    ca = trustme.CA()
    d = Deployment(kit, tmp_path, web.fileno(), secure.fileno(), sockets_dir / "side.sock")
    d.leaves = {name: ca.issue_cert("127.0.0.1") for name in "abc"}
    for name in "ab":
        pem = d.leaves[name].private_key_and_cert_chain_pem.bytes()
        (tmp_path / "certs" / f"{name}.pem").write_bytes(pem)
    d.der = {
        name: ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
        for name, leaf in d.leaves.items()
    }
    ca.configure_trust(d.client_tls)
    d.config.write_text(d.render(), encoding="utf-8")
    d.host = launch(d.config, pass_fds=(web.fileno(), secure.fileno()))
    d.web = ("127.0.0.1", kit.port_of(web))
    d.secure = ("127.0.0.1", kit.port_of(secure))
    d.host.wait_for("ready: 2 group(s), 3 worker(s)")
    return d


def ten_edits(d: Deployment, kit: ModuleType) -> None:
    """Each edit, then a bounded wait until clients see its effect."""
    # 1. an app's env: the group rolls, new connections meet the new greeting
    d.edit(greeting="two")
    kit.wait_until(lambda: kit.who(d.web)["greeting"] == "two", "the new GREETING")
    # 2-3. a route added, then removed (the group becomes "main+other", then "main")
    d.edit(route=True)
    kit.wait_until(lambda: kit.who(d.web, "/other/x")["app"] == "other", "the added route")
    d.edit(route=False)
    kit.wait_until(lambda: kit.who(d.web, "/other/x")["app"] == "main", "the removed route")
    # 4-5. the worker count, up and down: a roll to exactly that many processes
    for count in (3, 2):
        before = d.main_workers()
        d.edit(workers=count)
        now = d.main_workers()
        assert not now & before
        assert len(now) == count
        kit.wait_until(lambda now=now: kit.who(d.web)["pid"] in now, "a worker of the new count")
    # 6-7. a Unix listener added, then removed (its socket file goes with it)
    d.edit(side=True)
    served = kit.wait_until(lambda: kit.who(str(d.side_path)), "the added listener")
    assert (served["app"], served["greeting"]) == ("main", "two")
    d.edit(side=False)
    kit.wait_until(lambda: not d.side_path.exists(), "the removed listener's socket file gone")
    # 8. the log level: live, no roll
    before = d.main_workers()
    d.edit(level="warning")
    kit.wait_until(lambda: kit.who(d.web)["level"] == 30, "the new log level")
    assert d.main_workers() == before
    # 9. a TLS certificate swapped in the config: new connections get it
    d.edit(certificate="certs/b.pem")
    kit.wait_until(lambda: d.peer_cert() == d.der["b"], "the new certificate")
    # 10. the certificate file itself replaced (a renewal): new connections get it
    mark = d.host.mark()
    renewed = d.leaves["c"].private_key_and_cert_chain_pem.bytes().decode()
    kit.save(d.folder / "certs" / "b.pem", renewed)
    d.host.wait_applied(mark)
    kit.wait_until(lambda: d.peer_cert() == d.der["c"], "the renewed certificate")


def test_ten_edits_under_load_drop_nothing(deployment, kit, capsys):
    d = deployment
    base = f"http://{d.web[0]}:{d.web[1]}"
    keep_alive = [httpx.Client(base_url=base, timeout=10) for _ in range(3)]
    echoes = [Echo(f"ws://{d.web[0]}:{d.web[1]}/ws") for _ in range(2)]

    def keep_alive_get(client: httpx.Client, path: str) -> None:
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert path != "/slow" or response.content == b"beginend"

    def fresh_get(path: str) -> None:
        status, body, _ = kit.raw_request(d.web, path)
        assert status == 200, body
        assert path != "/slow" or body == b"beginend"

    def tls_get() -> None:
        assert d.peer_cert() in d.der.values()

    try:
        with kit.Load(limit=20000) as load:
            load.add("keep-alive 1", lambda: keep_alive_get(keep_alive[0], "/"), 0.002)
            load.add("keep-alive 2", lambda: keep_alive_get(keep_alive[1], "/"), 0.002)
            load.add("keep-alive slow", lambda: keep_alive_get(keep_alive[2], "/slow"))
            load.add("new connection 1", lambda: fresh_get("/"), 0.002)
            load.add("new connection 2", lambda: fresh_get("/"), 0.002)
            load.add("new connection slow", lambda: fresh_get("/slow"))
            load.add("new TLS connection", tls_get, 0.01)
            for index, echo in enumerate(echoes):
                load.add(f"websocket {index}", echo, 0.02)
            ten_edits(d, kit)
    finally:
        for client in keep_alive:
            client.close()
        for echo in echoes:
            echo.close()

    restarts = sum(echo.restarts for echo in echoes)
    with capsys.disabled():
        print(
            f"\nreload storm: {load.total()} requests served, {len(load.failures)} failed, "
            f"{restarts} WebSocket close(s) with 1012 and reconnects; by client: "
            + json.dumps(load.served)
        )
    assert not load.failures, "\n".join(load.failures[:20])
    assert all(count > 0 for count in load.served.values())
    assert len(load.served) == 9
    assert "Traceback" not in d.host.output(), d.host.output()

"""Sites, certificates, redirects and answers edited live under load: nothing dropped.

Issue 15, part 5: adding a site, a host alias, a certificate or a redirect to
a running host rolls only what changed and drops no request. A real `uvhost
run` serves three groups:

- A: `https` (TLS, fd) with its own routes (`main`) and the sites `shop`
  (shop.test) and `blog` (blog.test); every edit below is about this group.
- B: `api` (plain, app `other`, 2 workers), never touched by an edit.
- C: `http` (plain) sending everything to https (`to_https`, a redirect only:
  a built-ins group), never touched either.

The load asks only for hosts that exist all along, each with an answer that
no edit changes (a keep-alive connection per host, its SNI being its Host, so
no edit makes it misdirected); hosts being added or removed are probed from
the test's thread with a bounded wait. The edits, one after another: a site
added (with a new app), a host alias, a certificate for `blog` (SNI), that
certificate renewed on disk (in place: group A keeps its worker), a redirect
in `shop`, a fixed answer on the listener, a bad edit (two sites claiming one
host: rejected, the old config keeps serving), the added site removed. After
each, B's and C's workers are the ones from the start and A's is new exactly
when A had to roll.

Apart: a mounted redirect's `to` or an answer's body edited in place, nothing
else changed, rolls the group mounting it and reaches clients.
"""

import contextlib
import dataclasses
import json
import re
import socket
import ssl
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import trustme

BASE = """
[host]
graceful_timeout = "5s"

[logging]
format = "plain"
level = "info"
access_log = false

[logging.loggers]
uvhost = "info"

[listeners.https]
bind = "fd:{https}"
routes = {https_routes}

[listeners.https.tls]
certificate = "certs/listener.pem"

[listeners.api]
bind = "fd:{api}"
app = "other"

[listeners.http]
bind = "fd:{http}"
app = "to_https"

[redirects.to_https]
to = "https://{{host}}{{uri}}"
status = 301

[sites.shop]
hosts = {shop_hosts}
listeners = ["https"]
{shop_serves}

[sites.blog]
hosts = ["blog.test"]
listeners = ["https"]
app = "blog"
{blog_tls}

[apps.main]
target = "apps:main"
workers = 1

[apps.shop]
target = "apps:shop"
workers = 1

[apps.blog]
target = "apps:blog"
workers = 1

[apps.other]
target = "apps:other"
workers = 2
"""

FRESH = """
[sites.fresh]
hosts = ["new.test"]
listeners = ["https"]
app = "fresh"

[apps.fresh]
target = "apps:fresh"
workers = 1
"""

MOVED = """
[redirects.moved]
to = "/new{rest}{query}"
"""

ROBOTS_BODY = "User-agent: *\nDisallow: /admin\n"
ROBOTS = f"""
[answers.robots]
body = {json.dumps(ROBOTS_BODY)}
"""

CLASH = """
[sites.clash]
hosts = ["shop.test"]
listeners = ["https"]
app = "main"
"""

MORE_APPS = 'shop = make("shop")\nblog = make("blog")\nfresh = make("fresh")\n'

WORKERS = 4  # A: 1, B: 2, C: 1
UNTOUCHABLE = re.compile(r"group \w+ (other|@http)\b")
"""An apply line that starts, rolls or retires group B or C."""
ROLLS = re.compile(r"group (started|rolled|retired)")


@dataclasses.dataclass(frozen=True)
class State:
    fresh: bool = False  # 1. site `fresh` (new.test, app fresh)
    alias: bool = False  # 2. www.shop.test for `shop`
    blog_tls: bool = False  # 3. `blog` on its own certificate
    redirect: bool = False  # 5. /old in `shop` redirected to /new
    robots: bool = False  # 6. /robots.txt answered on the listener
    clash: bool = False  # 7. a second site claiming shop.test (refused)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    der: bytes | None = dataclasses.field(repr=False)

    def app(self) -> str:
        """Which of the apps answered (or the status, when it was not a 200)."""
        if self.status != 200:
            return f"status {self.status}"
        return str(json.loads(self.body)["app"])


def request(
    address: tuple[str, int],
    host: str,
    path: str = "/",
    *,
    tls: ssl.SSLContext | None = None,
    sni: str | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One GET on a new connection (`Connection: close`) with this Host header and, on TLS,
    this server name (SNI; the Host's by default; an IP address sends none)."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(address, timeout=timeout))
        der = None
        if tls is not None:
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=sni or host))
            der = sock.getpeercert(binary_form=True)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        raise ConnectionError("the server closed the connection without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = unchunk(body)
    return Reply(int(status_line.split(" ", 2)[1]), headers, body, der)


def unchunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


@dataclasses.dataclass
class Deployment:
    kit: ModuleType
    folder: Path
    fds: dict[str, int]
    state: State = State()
    host: Any = None  # the conftest's Host
    https: tuple[str, int] = ("127.0.0.1", 0)
    api: tuple[str, int] = ("127.0.0.1", 0)
    http: tuple[str, int] = ("127.0.0.1", 0)
    der: dict[str, bytes] = dataclasses.field(default_factory=dict)
    leaves: dict[str, trustme.LeafCert] = dataclasses.field(default_factory=dict)
    client_tls: ssl.SSLContext = dataclasses.field(default_factory=ssl.create_default_context)
    untouched: frozenset[int] = frozenset()
    """The workers of groups B and C, from the start: every one must live to the end."""

    @property
    def config(self) -> Path:
        return self.folder / "uvhost.toml"

    def render(self) -> str:
        state = self.state
        routes = {"/": "main", **({"/robots.txt": "robots"} if state.robots else {})}
        shop_routes = {"/": "shop", "/old": "moved"}
        text = BASE.format(
            https=self.fds["https"],
            api=self.fds["api"],
            http=self.fds["http"],
            https_routes=inline(routes),
            shop_hosts=json.dumps(["shop.test", *(["www.shop.test"] if state.alias else [])]),
            shop_serves=f"routes = {inline(shop_routes)}" if state.redirect else 'app = "shop"',
            blog_tls='tls = { certificate = "certs/blog.pem" }' if state.blog_tls else "",
        )
        extras = (
            (state.fresh, FRESH),
            (state.redirect, MOVED),
            (state.robots, ROBOTS),
            (state.clash, CLASH),
        )
        return text + "".join(table for wanted, table in extras if wanted)

    def save(self, **changes: Any) -> int:
        """Save the config with `changes`; the log's mark from before the save."""
        self.state = dataclasses.replace(self.state, **changes)
        mark = self.host.mark()
        self.kit.save(self.config, self.render())
        return mark

    def edit(self, **changes: Any) -> str:
        """Save `changes` and wait for their apply line, which leaves groups B and C alone."""
        line: str = self.host.wait_applied(self.save(**changes))
        assert not UNTOUCHABLE.search(line), line
        return line

    def tls(self, host: str, path: str = "/", *, sni: str | None = None) -> Reply:
        return request(self.https, host, path, tls=self.client_tls, sni=sni)

    def group_a(self) -> int:
        """Group A's worker once a roll is over: B's and C's are still the first ones."""
        now = self.host.wait_workers(WORKERS)
        assert self.untouched <= now, f"group B or C rolled: {self.untouched} -> {now}"
        (pid,) = now - self.untouched
        assert json.loads(self.tls("127.0.0.1").body)["pid"] == pid
        return pid


def inline(table: dict[str, str]) -> str:
    return "{ " + ", ".join(f'"{key}" = "{value}"' for key, value in table.items()) + " }"


@pytest.fixture
def deployment(tmp_path, launch, listener, kit):
    sockets = {name: listener() for name in ("https", "api", "http")}
    kit.write_apps(tmp_path)
    with (tmp_path / "apps.py").open("a", encoding="utf-8") as apps:
        apps.write(MORE_APPS)
    (tmp_path / "certs").mkdir()
    ca = trustme.CA()
    d = Deployment(kit, tmp_path, {name: sock.fileno() for name, sock in sockets.items()})
    names = ("127.0.0.1", "shop.test", "www.shop.test", "blog.test", "new.test")
    d.leaves = {
        "listener": ca.issue_cert(*names),
        "blog": ca.issue_cert("blog.test"),
        "blog renewed": ca.issue_cert("blog.test"),
    }
    for name, file in (("listener", "listener.pem"), ("blog", "blog.pem")):
        pem = d.leaves[name].private_key_and_cert_chain_pem.bytes()
        (tmp_path / "certs" / file).write_bytes(pem)
    d.der = {
        name: ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
        for name, leaf in d.leaves.items()
    }
    ca.configure_trust(d.client_tls)
    d.config.write_text(d.render(), encoding="utf-8")
    d.host = launch(d.config, pass_fds=tuple(d.fds.values()))
    d.https, d.api, d.http = (("127.0.0.1", kit.port_of(sockets[n])) for n in sockets)
    d.host.wait_for(f"ready: 3 group(s), {WORKERS} worker(s)")
    everyone = d.host.wait_workers(WORKERS)
    d.untouched = frozenset(everyone - {json.loads(d.tls("127.0.0.1").body)["pid"]})
    assert len(d.untouched) == 3
    return d


def rolled(d: Deployment, before: int) -> int:
    """Group A's new worker, after an edit that had to roll it."""
    now = d.group_a()
    assert now != before, "group A did not roll"
    return now


def sites_and_certificates(d: Deployment, kit: ModuleType, a: int) -> int:
    """Edits 1-4; group A's worker after them."""
    # 1. a site added, served by a new app: new.test leaves the listener's own routes
    assert d.tls("new.test").app() == "main"
    d.edit(fresh=True)
    kit.wait_until(lambda: d.tls("new.test").app() == "fresh", "the added site")
    a = rolled(d, a)

    # 2. a host alias for an existing site
    assert d.tls("www.shop.test").app() == "main"
    d.edit(alias=True)
    kit.wait_until(lambda: d.tls("www.shop.test").app() == "shop", "the added alias")
    a = rolled(d, a)

    # 3. blog on its own certificate: picked by SNI, and the other name's gets 421
    assert d.tls("blog.test").der == d.der["listener"]
    d.edit(blog_tls=True)
    kit.wait_until(lambda: d.tls("blog.test").der == d.der["blog"], "the site certificate")
    a = rolled(d, a)
    assert d.tls("shop.test").der == d.der["listener"]
    assert d.tls("blog.test", sni="shop.test").status == 421
    assert d.tls("shop.test", sni="blog.test").status == 421

    # 4. that certificate renewed on disk: reloaded in place, group A keeps its worker
    mark = d.host.mark()
    renewed = d.leaves["blog renewed"].private_key_and_cert_chain_pem.bytes().decode()
    kit.save(d.folder / "certs" / "blog.pem", renewed)
    line = d.host.wait_applied(mark)
    assert "certificate reloaded https" in line, line
    assert not ROLLS.search(line), line
    kit.wait_until(lambda: d.tls("blog.test").der == d.der["blog renewed"], "the renewal")
    assert d.group_a() == a
    assert d.tls("blog.test").app() == "blog"
    return a


def routes_and_refusals(d: Deployment, kit: ModuleType, a: int) -> None:
    """Edits 5-8."""
    # 5. a redirect mounted in a site: an old prefix to a new one
    assert d.tls("shop.test", "/old/a?b=1").app() == "shop"
    d.edit(redirect=True)
    moved = kit.wait_until(
        lambda: (reply := d.tls("shop.test", "/old/a?b=1")).status == 308 and reply,
        "the redirect",
    )
    assert moved.headers["location"] == "/new/a?b=1"
    a = rolled(d, a)
    assert d.tls("shop.test", "/older").app() == "shop"

    # 6. a fixed answer on the listener's own routes (hosts no site names)
    assert d.tls("127.0.0.1", "/robots.txt").app() == "main"
    d.edit(robots=True)
    robots = kit.wait_until(
        lambda: (reply := d.tls("127.0.0.1", "/robots.txt")).body == ROBOTS_BODY.encode() and reply,
        "the fixed answer",
    )
    assert robots.status == 200
    assert robots.headers["content-type"] == "text/plain; charset=utf-8"
    a = rolled(d, a)
    assert d.tls("shop.test", "/robots.txt").app() == "shop"  # a site's hosts: not there

    # 7. a bad edit, two sites claiming one host: refused, the running config serves on
    mark = d.save(clash=True)
    d.host.wait_for("reload rejected", since=mark)
    said = d.host.output(mark)
    assert 'host "shop.test" is claimed by sites "shop" and "clash"' in said, said
    assert "applied in" not in said, said
    assert d.tls("shop.test").app() == "shop"
    assert d.tls("new.test").app() == "fresh"
    assert d.group_a() == a

    # 8. the added site removed (the clash with it): new.test is the listener's again
    d.edit(fresh=False, clash=False)
    kit.wait_until(lambda: d.tls("new.test").app() == "main", "the removed site")
    rolled(d, a)


class Clients:
    """The load's requests; each raises on anything but the one answer it expects."""

    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.names = {der: name for name, der in d.der.items()}
        https = f"https://{d.https[0]}:{d.https[1]}"
        self.keep_alive = {
            name: httpx.Client(base_url=https, verify=d.client_tls, timeout=10)
            for name in ("shop", "blog", "shop slow")
        }
        self.keep_alive["api"] = httpx.Client(base_url=f"http://{d.api[0]}:{d.api[1]}", timeout=10)
        self.listener = {d.der["listener"]}
        self.blog = {d.der["listener"], d.der["blog"], d.der["blog renewed"]}

    def add_to(self, load: Any) -> None:
        listener, blog = self.listener, self.blog
        load.add("keep-alive shop", lambda: self.keep_alive_tls("shop", "shop.test", "/"), 0.002)
        load.add("keep-alive blog", lambda: self.keep_alive_tls("blog", "blog.test", "/"), 0.002)
        load.add("keep-alive shop slow", lambda: self.keep_alive_tls("shop", "shop.test", "/slow"))
        load.add("keep-alive api", self.keep_alive_api, 0.005)
        load.add("new TLS shop", lambda: self.fresh_tls("shop.test", "shop", listener), 0.005)
        load.add("new TLS blog", lambda: self.fresh_tls("blog.test", "blog", blog), 0.005)
        load.add("new TLS no SNI", lambda: self.fresh_tls("127.0.0.1", "main", listener), 0.005)
        load.add("new TLS shop slow", lambda: self.fresh_tls("shop.test", "", listener, "/slow"))
        load.add("new connection api", self.fresh_api, 0.005)
        load.add("http to https", self.to_https, 0.005)

    def keep_alive_tls(self, app: str, host: str, path: str) -> None:
        """`host` on a connection made for it (SNI): its app, or the slow stream whole."""
        client = self.keep_alive[app if path == "/" else f"{app} slow"]
        response = client.get(path, headers={"Host": host}, extensions={"sni_hostname": host})
        assert response.status_code == 200, response.text
        if path == "/slow":
            assert response.content == b"beginend"
        else:
            assert response.json()["app"] == app, response.text

    def keep_alive_api(self) -> None:
        response = self.keep_alive["api"].get("/")
        assert response.status_code == 200, response.text
        assert response.json()["app"] == "other", response.text
        assert response.json()["pid"] in self.d.untouched, response.text

    def fresh_tls(self, host: str, app: str, certificates: set[bytes], path: str = "/") -> None:
        reply = self.d.tls(host, path)
        assert reply.status == 200, reply
        assert reply.der in certificates, f"{host}: {self.names.get(reply.der, 'unknown')!r}"
        assert reply.body == b"beginend" if path == "/slow" else reply.app() == app, reply

    def fresh_api(self) -> None:
        reply = request(self.d.api, "api.test")
        assert reply.app() == "other", reply
        assert json.loads(reply.body)["pid"] in self.d.untouched, reply

    def to_https(self) -> None:
        reply = request(self.d.http, "shop.test", "/a/b?c=1")
        assert reply.status == 301, reply
        assert reply.headers["location"] == "https://shop.test/a/b?c=1", reply

    def close(self) -> None:
        for client in self.keep_alive.values():
            client.close()


def test_site_edits_under_load_drop_nothing_and_roll_only_their_group(deployment, kit, capsys):
    d = deployment
    clients = Clients(d)
    try:
        with kit.Load(limit=20000) as load:
            clients.add_to(load)
            a = sites_and_certificates(d, kit, d.group_a())
            routes_and_refusals(d, kit, a)
    finally:
        clients.close()

    with capsys.disabled():
        print(
            f"\nsites storm: {load.total()} requests served, {len(load.failures)} failed; "
            "by client: " + json.dumps(load.served)
        )
    assert not load.failures, "\n".join(load.failures[:20])
    assert all(count > 0 for count in load.served.values())
    assert len(load.served) == 10
    assert d.untouched <= d.host.workers()
    assert "Traceback" not in d.host.output(), d.host.output()


IN_PLACE = """
[logging]
format = "plain"
access_log = false

[listeners.web]
bind = "fd:FD"
routes = { "/" = "main", "/old" = "moved", "/robots.txt" = "robots" }

[redirects.moved]
to = "TO"

[answers.robots]
body = "BODY"

[apps.main]
target = "apps:main"
workers = 1
"""


@pytest.mark.parametrize(
    "edit",
    [
        ("/old/x", "TO", "/new{rest}", "/newer{rest}"),
        ("/robots.txt", "BODY", "Disallow: /a", "Disallow: /b"),
    ],
    ids=["redirect target", "answer body"],
)
def test_a_mounted_built_in_edited_in_place_is_served(tmp_path, launch, listener, kit, edit):
    """Editing a redirect's `to` or an answer's body, its mount unchanged, reaches clients."""
    path, key, before, after = edit
    web = listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"

    def render(value: str) -> str:
        text = IN_PLACE.replace("FD", str(web.fileno()))
        for name, default in {"TO": "/new{rest}", "BODY": "Disallow: /a", key: value}.items():
            text = text.replace(name, default)
        return text

    def seen() -> str:
        reply = request(("127.0.0.1", kit.port_of(web)), "t", path)
        return reply.headers["location"] if "location" in reply.headers else reply.body.decode()

    config.write_text(render(before), encoding="utf-8")
    host = launch(config, pass_fds=(web.fileno(),))
    host.wait_for("ready: 1 group(s), 1 worker(s)")
    assert seen() == before.replace("{rest}", "/x")
    mark = host.mark()
    kit.save(config, render(after))
    host.wait_applied(mark)
    expected = after.replace("{rest}", "/x")
    kit.wait_until(lambda: seen() == expected, f"the edited built-in ({expected})")

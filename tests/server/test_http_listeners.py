"""Listener kinds and per-listener settings on real sockets.

TCP over IPv4 and IPv6, Unix sockets, inherited fds, TLS (trustme certificates,
ALPN, client certificates), trusted proxy headers, Server/Date and default headers.
"""

import json
import socket
import ssl
import stat
import tempfile
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
import trustme

APPS = r'''
import json


async def scope_app(scope, receive, send):
    """Answers with what the scope says about the connection."""
    seen = {
        "client": scope["client"],
        "server": scope["server"],
        "scheme": scope["scheme"],
        "http_version": scope["http_version"],
    }
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-team", b"app")]})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})
'''


def listener_config(name: str, bind: str, extra: str = "") -> str:
    return f'[listeners.{name}]\nbind = "{bind}"\napp = "scope"\n{extra}\n'


APP_CONFIG = '[apps.scope]\ntarget = "apps:scope_app"\nlifespan = "off"\n'


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------- TCP


def test_tcp_ipv4(serve):
    host = serve(listener_config("v4", "127.0.0.1:0") + APP_CONFIG, APPS)
    with host.client() as client:
        response = client.get("/")
        seen = response.json()
    assert seen["server"] == ["127.0.0.1", host.port()]
    assert seen["client"][0] == "127.0.0.1"
    assert seen["scheme"] == "http"


@pytest.mark.skipif(not ipv6_available(), reason="IPv6 loopback is not available")
def test_tcp_ipv6(serve):
    host = serve(listener_config("v6", "[::1]:0") + APP_CONFIG, APPS)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n")
        seen = json.loads(raw.read_response().body)
    assert seen["server"] == ["::1", host.port()]
    assert seen["client"][0] == "::1"
    with httpx.Client(timeout=5) as client:
        assert client.get(f"http://[::1]:{host.port()}/").status_code == 200


# -------------------------------------------------------------------- Unix


@pytest.fixture
def short_dir():
    """Unix socket paths must be short (108 bytes); pytest's tmp_path can be long."""
    with tempfile.TemporaryDirectory(prefix="uvh") as directory:
        yield Path(directory)


def test_unix_socket_with_mode_is_removed_on_close(serve, short_dir):
    path = short_dir / "app.sock"
    host = serve(listener_config("local", f"unix:{path}", 'unix_mode = "600"') + APP_CONFIG, APPS)
    info = path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, timeout=5) as client:
        seen = client.get("http://localhost/").json()
    assert seen["client"] is None
    assert seen["server"][0] == str(path)
    with host.raw() as raw:  # keep-alive works the same over a Unix socket
        for _ in range(2):
            raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.read_response().status == 200
    host.stop()
    assert not path.exists()


def test_unix_socket_replaces_a_stale_file(serve, short_dir):
    path = short_dir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody accepts on it
    host = serve(listener_config("local", f"unix:{path}") + APP_CONFIG, APPS)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.read_response().status == 200


# ---------------------------------------------------------------- inherited


def test_inherited_fd(serve):
    listening = socket.create_server(("127.0.0.1", 0))
    listening.set_inheritable(True)
    port = listening.getsockname()[1]
    fd = listening.detach()  # the host owns it from here on
    host = serve(listener_config("inherited", f"fd:{fd}") + APP_CONFIG, APPS)
    assert host.port() == port
    seen = host.request("GET", "/").json()
    assert seen["server"] == ["127.0.0.1", port]


# --------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def tls_files(ca, tmp_path):
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, client_ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    server.private_key_and_cert_chain_pem.write_to_path(cert)
    server.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(client_ca)
    return {"cert": cert, "key": key, "ca": client_ca}


def tls_config(files, client_auth: str = "none") -> str:
    table = (
        f'[listeners.secure.tls]\ncertificate = "{files["cert"]}"\nprivate_key = "{files["key"]}"\n'
    )
    if client_auth != "none":
        table += f'client_ca = "{files["ca"]}"\nclient_auth = "{client_auth}"\n'
    return listener_config("secure", "127.0.0.1:0") + table + APP_CONFIG


def client_context(
    ca, *, cert: bool = False, alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(list(alpn))
    if cert:
        ca.issue_cert("client@example.com").configure_cert(context)
    return context


def test_tls_scheme_and_alpn(serve, ca, tls_files):
    host = serve(tls_config(tls_files), APPS)
    with (
        socket.create_connection(("127.0.0.1", host.port()), timeout=5) as plain,
        client_context(ca, alpn=("http/1.1", "h2")).wrap_socket(
            plain, server_hostname="localhost"
        ) as conn,
    ):
        assert conn.selected_alpn_protocol() == "h2"  # preferred; HTTP/2 has its own tests
    context = client_context(ca)
    with (
        socket.create_connection(("127.0.0.1", host.port()), timeout=5) as plain,
        context.wrap_socket(plain, server_hostname="localhost") as conn,
    ):
        assert conn.selected_alpn_protocol() == "http/1.1"
        conn.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    seen = json.loads(body)
    assert seen["scheme"] == "https"
    with httpx.Client(verify=client_context(ca), timeout=5) as client:
        response = client.get(f"https://localhost:{host.port()}/")
    assert response.json()["scheme"] == "https"


REFUSED_BY_TLS = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
"""How a refused handshake surfaces: during it (TLS 1.2) or at the first read/write (1.3)."""


def test_tls_required_client_certificate(serve, ca, tls_files):
    host = serve(tls_config(tls_files, client_auth="required"), APPS)
    url = f"https://localhost:{host.port()}/"
    with httpx.Client(verify=client_context(ca, cert=True), timeout=5) as client:
        assert client.get(url).json()["scheme"] == "https"
    with (
        httpx.Client(verify=client_context(ca), timeout=5) as client,
        pytest.raises(REFUSED_BY_TLS),
    ):
        client.get(url)


def test_plain_http_to_a_tls_listener_gets_nothing_useful(serve, ca, tls_files):
    host = serve(tls_config(tls_files), APPS)
    with host.raw() as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = raw.read_to_close()
    assert not data.startswith(b"HTTP/1.1 200")
    with httpx.Client(verify=client_context(ca), timeout=5) as client:
        assert client.get(f"https://localhost:{host.port()}/").status_code == 200


def test_a_tls_handshake_that_never_comes_is_cut_at_the_header_timeout(serve, ca, tls_files):
    """The handshake is part of reading the head: a client that connects and says nothing
    (or trickles its hello) is closed at header_timeout, not after uvloop's own 60 s."""
    config = (
        listener_config("secure", "127.0.0.1:0", 'header_timeout = "1s"')
        + f'[listeners.secure.tls]\ncertificate = "{tls_files["cert"]}"\n'
        + f'private_key = "{tls_files["key"]}"\n'
        + APP_CONFIG
    )
    host = serve(config, APPS)
    started = time.monotonic()
    with host.raw(timeout=10) as raw:
        raw.send(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
        data = raw.read_to_close()
    assert data == b""
    assert time.monotonic() - started < 5  # 1 s and up to a tick late, far below 60
    with httpx.Client(verify=client_context(ca), timeout=5) as client:
        assert client.get(f"https://localhost:{host.port()}/").status_code == 200


# ------------------------------------------------------------- proxy headers


PROXY_CONFIG = (
    listener_config(
        "trusting", "127.0.0.1:0", 'proxy_headers = true\nforwarded_allow_ips = ["127.0.0.1"]'
    )
    + listener_config(
        "elsewhere", "127.0.0.1:0", 'proxy_headers = true\nforwarded_allow_ips = ["10.0.0.0/8"]'
    )
    + listener_config("off", "127.0.0.1:0")
    + APP_CONFIG
)

FORWARDED = {"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https"}


def test_proxy_headers_from_a_trusted_peer(serve):
    host = serve(PROXY_CONFIG, APPS)
    seen = host.request("GET", "/", listener="trusting", headers=FORWARDED).json()
    assert seen["client"] == ["203.0.113.7", 0]
    assert seen["scheme"] == "https"
    plain = host.request("GET", "/", listener="trusting").json()
    assert plain["client"][0] == "127.0.0.1"
    assert plain["scheme"] == "http"


@pytest.mark.parametrize("listener", ["elsewhere", "off"])
def test_proxy_headers_ignored_from_an_untrusted_peer_or_when_off(serve, listener):
    host = serve(PROXY_CONFIG, APPS)
    seen = host.request("GET", "/", listener=listener, headers=FORWARDED).json()
    assert seen["client"][0] == "127.0.0.1"
    assert seen["client"][1] != 0
    assert seen["scheme"] == "http"


# ------------------------------------------------------ Server, Date, defaults


HEADERS_CONFIG = (
    listener_config(
        "defaults", "127.0.0.1:0", 'headers = { "X-Frame-Options" = "DENY", "X-Team" = "host" }'
    )
    + listener_config("bare", "127.0.0.1:0", "server_header = false\ndate_header = false")
    + APP_CONFIG
)


def test_server_and_date_headers_by_default(serve):
    host = serve(HEADERS_CONFIG, APPS)
    response = host.request("GET", "/", listener="defaults")
    assert response.headers["server"] == "uvhost"
    date = parsedate_to_datetime(response.headers["date"])
    assert abs(date.timestamp() - time.time()) < 5


def test_server_and_date_headers_can_be_turned_off(serve):
    host = serve(HEADERS_CONFIG, APPS)
    response = host.request("GET", "/", listener="bare")
    assert "server" not in response.headers
    assert "date" not in response.headers


def test_date_header_moves_on(serve):
    host = serve(HEADERS_CONFIG, APPS)
    with host.client("defaults") as client:
        first = client.get("/").headers["date"]
        deadline = time.monotonic() + 4
        pause = threading.Event()
        later = first
        while later == first and time.monotonic() < deadline:
            pause.wait(0.2)
            later = client.get("/").headers["date"]
    assert later != first, "the Date header did not change within 4 s"
    assert parsedate_to_datetime(later) > parsedate_to_datetime(first)


def test_default_headers_unless_the_app_sets_them(serve):
    host = serve(HEADERS_CONFIG, APPS)
    with host.raw("defaults") as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
    assert response.header_list("x-frame-options") == [b"DENY"]
    assert response.header_list("x-team") == [b"app"]  # the app's own value wins


def test_the_hosts_own_answers_carry_the_listener_headers(serve):
    """A 400 written by uvhost itself gets the defaults, Server and Date, as app responses do."""
    host = serve(HEADERS_CONFIG, APPS)
    with host.raw("defaults") as raw:
        raw.send(b"GARBAGE\r\n\r\n")
        response = raw.read_response()
    assert response.status == 400
    assert response.header_list("x-frame-options") == [b"DENY"]
    assert response.header_list("x-team") == [b"host"]
    assert response.header_list("server") == [b"uvhost"]
    assert len(response.header_list("date")) == 1
    with host.raw("bare") as raw:
        raw.send(b"GARBAGE\r\n\r\n")
        response = raw.read_response()
    assert response.status == 400
    assert response.header_list("server") == []  # server_header = false holds here too
    assert response.header_list("date") == []

"""A certificate per site, picked by SNI, against a real host on 127.0.0.1.

- The handshake's server name picks the certificate: exact names, then the
  wildcard one label up, then the listener's own; the client verifies it
  against trustme's CA for the name it asked for.
- A request whose host needs another certificate than the one its connection
  was made with gets 421 (RFC 9110 15.5.20), on HTTP/1.1 and HTTP/2 alike,
  and the connection goes on; a request for a host of the same certificate
  is served on it.
- A site's replaced certificate is served to new handshakes after the
  worker's reload, the listener's own left as it was.
- curl with --resolve, when it is installed, sees the site certificate and
  the site's app over h2.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trustme

APPS = """
def make(name):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": name.encode()})
    return app

shop, tenants, other = make("shop"), make("tenants"), make("other")
"""

NAMES = {
    "default": ("localhost",),
    "shop": ("example.com", "www.example.com"),
    "tenants": ("*.example.com",),
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_pair(ca: trustme.CA, folder: Path, name: str, hosts: tuple[str, ...]) -> Path:
    path = folder / f"{name}.pem"
    ca.issue_cert(*hosts).private_key_and_cert_chain_pem.write_to_path(path)
    return path


@pytest.fixture
def host(serve: Callable[..., Any], ca: trustme.CA, tmp_path: Path) -> Any:
    pairs = {name: write_pair(ca, tmp_path, name, hosts) for name, hosts in NAMES.items()}
    config = f"""
[listeners.web]
bind = "127.0.0.1:0"
routes = {{ "/" = "other" }}
tls = {{ certificate = "{pairs["default"]}" }}

[sites.shop]
hosts = ["example.com", "shop.example.com"]
listeners = ["web"]
app = "shop"
tls = {{ certificate = "{pairs["shop"]}" }}

[sites.www]
hosts = ["www.example.com"]
listeners = ["web"]
app = "other"
tls = {{ certificate = "{pairs["shop"]}" }}

[sites.tenants]
hosts = ["*.example.com"]
listeners = ["web"]
app = "tenants"
tls = {{ certificate = "{pairs["tenants"]}" }}

[apps.shop]
target = "apps:shop"
lifespan = "off"
[apps.tenants]
target = "apps:tenants"
lifespan = "off"
[apps.other]
target = "apps:other"
lifespan = "off"
"""
    return serve(config, APPS)


def client(ca: trustme.CA, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(alpn or ["http/1.1"])
    return context


def connect(host: Any, ca: trustme.CA, sni: str, alpn: list[str] | None = None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", host.port()), timeout=5)
    return client(ca, alpn).wrap_socket(raw, server_hostname=sni)


def names(conn: ssl.SSLSocket) -> list[str]:
    return [value for kind, value in conn.getpeercert()["subjectAltName"] if kind == "DNS"]


def get(conn: ssl.SSLSocket, host: str) -> tuple[int, bytes]:
    """One keep-alive request; (status, body)."""
    conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(v for k, v in _fields(head) if k == b"content-length"))
    while len(body) < length:
        body += conn.recv(4096)
    return int(head.split(b" ")[1]), body


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    lines = head.split(b"\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(b":") for line in lines)]


@pytest.mark.parametrize(
    ("sni", "certificate", "app"),
    [
        ("example.com", ["example.com", "www.example.com"], b"shop"),
        ("a.example.com", ["*.example.com"], b"tenants"),
        ("localhost", ["localhost"], b"other"),
    ],
)
def test_the_server_name_picks_the_certificate(host, ca, sni, certificate, app):
    with connect(host, ca, sni) as conn:  # verified for `sni` by the client
        assert names(conn) == certificate
        assert get(conn, sni) == (200, app)


def test_an_exact_site_name_wins_over_the_wildcard_certificate(host, ca):
    """shop.example.com is the shop's: its certificate (example.com and www) does not cover
    it, so a verifying client refuses the handshake rather than being shown another site's."""
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(host, ca, "shop.example.com").close()


def test_a_request_for_another_certificates_host_is_421_and_the_connection_goes_on(host, ca):
    with connect(host, ca, "a.example.com") as conn:
        assert get(conn, "b.example.com") == (200, b"tenants")  # same certificate
        status, body = get(conn, "example.com")  # the shop's certificate
        assert status == 421
        assert b"Misdirected" in body
        assert get(conn, "localhost") == (421, body)  # the listener's own
        assert get(conn, "a.example.com") == (200, b"tenants")


def test_sites_sharing_a_certificate_share_connections(host, ca):
    """www and the shop name the same pair: a connection made for one carries the other's
    requests (the client was shown a certificate for both), no 421."""
    with connect(host, ca, "example.com") as conn:
        assert get(conn, "www.example.com") == (200, b"other")
        assert get(conn, "example.com") == (200, b"shop")


def test_a_client_without_sni_gets_the_listeners_certificate_and_its_hosts(host, ca):
    context = client(ca)
    context.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", host.port()), timeout=5)
    with context.wrap_socket(raw) as conn:  # no server_hostname: no SNI
        assert names(conn) == ["localhost"]
        assert get(conn, "other.test") == (200, b"other")
        assert get(conn, "example.com")[0] == 421


def test_http2_streams_are_routed_and_misdirected_alike(host, ca):
    with connect(host, ca, "example.com", alpn=["h2"]) as conn:
        assert conn.selected_alpn_protocol() == "h2"
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
        h2conn.initiate_connection()
        for stream, authority in ((1, "example.com"), (3, "a.example.com")):
            h2conn.send_headers(
                stream,
                [
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", authority),
                    (":path", "/"),
                ],
                end_stream=True,
            )
        conn.sendall(h2conn.data_to_send())
        statuses: dict[int, int] = {}
        bodies: dict[int, bytes] = {1: b"", 3: b""}
        ended: set[int] = set()
        while ended != {1, 3}:
            data = conn.recv(65536)
            assert data, "the server closed the connection"
            for event in h2conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    statuses[event.stream_id] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data
                    h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
            conn.sendall(h2conn.data_to_send())
    assert statuses == {1: 200, 3: 421}
    assert bodies[1] == b"shop"


def test_a_replaced_site_certificate_is_served_after_the_reload(host, ca, tmp_path):
    """The file changes on disk (as a renewal does), the worker reloads: new handshakes
    for the site get the new certificate, the listener's own is the same as before."""
    with connect(host, ca, "example.com") as conn:
        before = conn.getpeercert()["serialNumber"]
    with connect(host, ca, "localhost") as conn:
        default_before = conn.getpeercert()["serialNumber"]
    write_pair(ca, tmp_path, "shop", NAMES["shop"])

    async def reload() -> None:
        host.worker.reload_certificates(["web"])

    host.call(reload)
    with connect(host, ca, "example.com") as conn:
        assert conn.getpeercert()["serialNumber"] != before
        assert get(conn, "example.com") == (200, b"shop")
    with connect(host, ca, "localhost") as conn:
        assert conn.getpeercert()["serialNumber"] == default_before


def test_curl_sees_the_site_certificate_over_h2(host, ca, tmp_path):
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("UVHOST_REQUIRE_TOOLS") == "1":
            pytest.fail("curl is not installed (UVHOST_REQUIRE_TOOLS=1)")
        pytest.skip("curl is not installed")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    port = host.port()
    result = subprocess.run(
        [
            curl,
            *("-sS", "--http2", "--cacert", str(ca_file), "--max-time", "5"),
            *("--resolve", f"t.example.com:{port}:127.0.0.1"),
            *("-w", " %{http_version}"),
            f"https://t.example.com:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tenants 2"

"""examples/sites/uvhost.toml, checked by `uvhost check` and served for real.

The example as shipped, with only what a test must change: its binds become
ephemeral ports on 127.0.0.1, its certificates are made here by trustme under
the names it expects, and its apps' folder is this checkout's examples/. Then:
plain HTTP is redirected to https on the same host and path; behind a PROXY
v2 header, the TLS handshake's name picks each site's certificate and the
request's host picks its app (two sites, one wildcard, one redirect site);
a host no site names gets the listener's own 404; `@health` answers.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sites" / "uvhost.toml"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
CLIENT = ("198.51.100.20", 40000)
CERTIFICATES = {
    "default.pem": ("localhost",),
    "example.com.pem": ("example.com", "www.example.com"),
    "tenants.pem": ("*.tenants.example.com",),
}


def proxy_v2() -> bytes:
    block = (
        ipaddress.ip_address(CLIENT[0]).packed
        + ipaddress.ip_address("10.0.0.1").packed
        + struct.pack("!HH", CLIENT[1], 443)
    )
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(block)) + block


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def folder(tmp_path: Path, ca: trustme.CA) -> Path:
    """The example beside its certificates, made runnable here."""
    (tmp_path / "certs").mkdir()
    for name, hosts in CERTIFICATES.items():
        ca.issue_cert(*hosts).private_key_and_cert_chain_pem.write_to_path(
            tmp_path / "certs" / name
        )
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace('"0.0.0.0:8080"', '"127.0.0.1:0"').replace(
        '"0.0.0.0:8443"', '"127.0.0.1:0"'
    )
    text = text.replace('app_dir = ".."', f'app_dir = "{ROOT / "examples"}"')
    text = text.replace('"certs/', f'"{tmp_path / "certs"}/')
    (tmp_path / "uvhost.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_the_example_passes_uvhost_check(folder: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uvhost", "check", "--json", str(folder / "uvhost.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, report["diagnostics"]
    assert report["diagnostics"] == []
    sites = report["listeners"]["https"]["sites"]
    assert {name: site["hosts"] for name, site in sites.items()} == {
        "shop": ["example.com"],
        "www": ["www.example.com"],
        "tenants": ["*.tenants.example.com"],
    }


@pytest.fixture
def host(serve: Callable[..., Any], folder: Path) -> Any:
    return serve((folder / "uvhost.toml").read_text(encoding="utf-8"))


def over_tls(host: Any, ca: trustme.CA, name: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """PROXY v2, then TLS with SNI `name`, then GET `path` with Host `name`."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    sock = socket.create_connection(("127.0.0.1", host.port("https")), timeout=5)
    sock.sendall(proxy_v2())
    with context.wrap_socket(sock, server_hostname=name) as secure:
        secure.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := secure.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), fields, body


def test_plain_http_goes_to_https(host: Any) -> None:
    with host.raw("http") as raw:
        raw.send(b"GET /shop?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n")
        data = raw.read_to_close()
    assert data.startswith(b"HTTP/1.1 301")
    assert b"\r\nlocation: https://example.com/shop?x=1\r\n" in data


def test_each_site_behind_the_proxy_header(host: Any, ca: trustme.CA) -> None:
    status, _, body = over_tls(host, ca, "example.com", "/")
    assert status == 200
    assert b"<" in body  # the Starlette pages app's HTML
    status, _, body = over_tls(host, ca, "example.com", "/api/items/7")
    assert (status, json.loads(body)) == (200, {"item_id": 7, "name": "Item 7"})
    status, _, body = over_tls(host, ca, "a.tenants.example.com", "/")
    assert (status, body) == (200, b"Hello, world!\n")
    status, fields, _ = over_tls(host, ca, "www.example.com", "/about?x=1")
    assert (status, fields["location"]) == (301, "https://example.com/about?x=1")
    status, _, body = over_tls(host, ca, "localhost", "/anything")
    assert (status, body) == (404, b"No site here.\n")
    status, _, body = over_tls(host, ca, "localhost", "/healthz")
    assert (status, body) == (200, b"ok\n")


def test_curl_is_sent_to_https(host: Any) -> None:
    """Debian's curl over plain HTTP sees the 301 and where it points."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    port = host.port("http")
    result = subprocess.run(
        [curl, "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
         "-H", "Host: a.tenants.example.com", f"http://127.0.0.1:{port}/x"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert result.stdout == "301 https://a.tenants.example.com/x"

"""The PROXY protocol on a real listener: headers written by the test, real sockets.

The app reports the scope's addresses; `calls` in its module shows whether a
refused connection ever reached it. Refused connections must close with no
byte of answer and be counted (stats.PROXY_REJECTED on the listener).
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trustme
from websockets.sync.client import connect as ws_connect

from uvhost.commands.check import check
from uvhost.observe import stats
from uvhost.server.proxy_protocol import V2_SIGNATURE

ROOT = Path(__file__).resolve().parents[2]

APPS = """
import json

calls = []

async def echo(scope, receive, send):
    calls.append(scope["type"])
    facts = {
        "client": scope["client"],
        "server": scope["server"],
        "scheme": scope["scheme"],
        "http_version": scope.get("http_version"),
        "path": scope["path"],
    }
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(facts)})
        await send({"type": "websocket.close", "code": 1000})
        return
    body = json.dumps(facts).encode()
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
"""

CLIENT = ("203.0.113.7", 51000)
SERVER = ("10.0.0.1", 443)
V1_TCP4 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n"
GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"
GET_CLOSE = b"GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
TIMEOUT = 5.0


def v2(
    command: int = 0x21, family: int = 0x11, block: bytes | None = None, length: int = -1
) -> bytes:
    if block is None:
        block = (
            ipaddress.ip_address(CLIENT[0]).packed
            + ipaddress.ip_address(SERVER[0]).packed
            + struct.pack("!HH", CLIENT[1], SERVER[1])
        )
    size = len(block) if length < 0 else length
    return V2_SIGNATURE + bytes((command, family)) + struct.pack("!H", size) + block


V2_TCP6 = v2(
    family=0x21,
    block=ipaddress.ip_address("2001:db8::7").packed
    + ipaddress.ip_address("2001:db8::1").packed
    + struct.pack("!HH", 51000, 443),
)


def config(allow: str = '"127.0.0.1"', extra: str = "", table: str = "") -> str:
    return f"""
[listeners.web]
bind = "127.0.0.1:0"
header_timeout = "1s"
app = "echo"
{extra}
[listeners.web.proxy_protocol]
allow = [{allow}]
{table}
[apps.echo]
target = "apps:echo"
lifespan = "off"
"""


def refused_count(host: Any) -> int:
    async def count() -> int:
        return sum(c.unrouted.counts[stats.PROXY_REJECTED] for c in host.worker.contexts)

    return int(host.call(count))


def calls(host: Any) -> list[str]:
    return list(host.module.calls)


def answer_to_close(sock: Any) -> dict[str, Any]:
    """Send nothing more; read one `Connection: close` response whole, return its JSON."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return dict(json.loads(body))


def get_json(raw: Any) -> dict[str, Any]:
    response = raw.read_response()
    assert response.status == 200, response.raw
    return dict(json.loads(response.body))


def pair(address: tuple[str, int]) -> list[Any]:
    return [address[0], address[1]]


@pytest.fixture
def host(serve):
    return serve(config(), APPS)


# ------------------------------------------------------------ addresses


@pytest.mark.parametrize(
    ("header", "client", "server"),
    [
        (V1_TCP4, CLIENT, SERVER),
        (V1_TCP6, ("2001:db8::7", 51000), ("2001:db8::1", 443)),
        (v2(), CLIENT, SERVER),
        (V2_TCP6, ("2001:db8::7", 51000), ("2001:db8::1", 443)),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6"],
)
def test_the_app_sees_the_header_addresses(host, header, client, server):
    with host.raw() as raw:
        raw.send(header + GET)
        seen = get_json(raw)
    assert seen["client"] == pair(client)
    assert seen["server"] == pair(server)
    assert refused_count(host) == 0


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
        v2(command=0x20),
        v2(family=0, block=b""),
    ],
    ids=["v1-unknown", "v1-unknown-with-fields", "v2-local", "v2-unspec"],
)
def test_no_client_in_the_header_leaves_the_socket_addresses(host, header):
    with host.raw() as raw:
        raw.send(header + GET)
        seen = get_json(raw)
        local = raw.sock.getsockname()
    assert seen["client"] == [local[0], local[1]]
    assert seen["server"] == ["127.0.0.1", host.port()]


@pytest.mark.parametrize("header", [V1_TCP4, v2()], ids=["v1", "v2"])
def test_header_split_across_writes(host, header):
    with host.raw() as raw:
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = header + GET
        for cut in (1, 7, 13, 15, len(header) - 1, len(header) + 3):
            raw.send(data[:cut])
            data = data[cut:]
            time.sleep(0.02)
        raw.send(data)
        assert get_json(raw)["client"] == pair(CLIENT)


def test_pipelined_requests_in_the_header_packet_are_served(host):
    with host.raw() as raw:
        raw.send(v2() + GET + GET.replace(b"/x", b"/y"))
        first, second = get_json(raw), get_json(raw)
    assert (first["path"], second["path"]) == ("/x", "/y")
    assert first["client"] == second["client"] == pair(CLIENT)


class Lines(logging.Handler):
    """Access lines as they are logged: the line comes right after the response's write,
    in the host's thread, so the test waits for it rather than racing it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.arrived.set()


def test_access_log_names_the_header_client(host):
    logger = logging.getLogger("uvhost.access")
    lines, level = Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        with host.raw() as raw:
            raw.send(V1_TCP4 + GET)
            get_json(raw)
        assert lines.arrived.wait(TIMEOUT), "no access line was logged"
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    assert lines.lines[0].startswith("203.0.113.7:51000 "), lines.lines


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [('"203.0.113.0/24"', "198.51.100.9"), ('"127.0.0.1"', CLIENT[0])],
    ids=["peer-trusted", "peer-not-trusted"],
)
def test_forwarded_headers_judge_the_header_client_as_the_peer(serve, trusted, expected):
    extra = f"proxy_headers = true\nforwarded_allow_ips = [{trusted}]"
    host = serve(config(extra=extra), APPS)
    with host.raw() as raw:
        raw.send(V1_TCP4 + GET[:-2] + b"X-Forwarded-For: 198.51.100.9\r\n\r\n")
        assert get_json(raw)["client"][0] == expected


# ------------------------------------------------------------- refusing


def assert_refused(host: Any, raw: Any, *, counted: int = 1) -> None:
    assert raw.closed_by_server(), "the connection stayed open"
    assert calls(host) == []
    deadline = time.monotonic() + TIMEOUT
    while refused_count(host) < counted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert refused_count(host) == counted


@pytest.mark.parametrize(
    "data",
    [
        GET,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello, no header
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\n" + GET,  # LF without CR
        b"PROXY TCP4 203.0.113.7 10.0.0.1 051000 443\r\n" + GET,
        b"PROXY TCP4 " + b"1" * 200,  # oversized v1
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # oversized v2
        v2(command=0x11) + GET,  # version 1 in a v2 header
        b"\x00" * 32,
    ],
    ids=["plain-http", "tls", "h2-preface", "lf", "port", "v1-long", "v2-long", "v2-v1", "zeros"],
)
def test_malformed_or_missing_header_closes_without_an_answer(host, data):
    with host.raw() as raw:
        raw.send(data)
        assert_refused(host, raw)


def test_truncated_header_then_eof_is_refused(host):
    with host.raw() as raw:
        raw.send(V1_TCP4[:20])
        raw.sock.shutdown(socket.SHUT_WR)
        assert_refused(host, raw)


def test_a_connection_closed_before_any_byte_is_not_counted(host):
    """A TCP health check (AWS NLB) connects and closes: not a refusal."""
    with host.raw() as raw:
        raw.sock.shutdown(socket.SHUT_WR)
        assert raw.closed_by_server()
    time.sleep(0.1)
    assert refused_count(host) == 0


@pytest.mark.parametrize(
    "data", [b"", V1_TCP4[:10], v2(length=100)], ids=["silent", "slow-v1", "lying-v2-length"]
)
def test_a_late_header_is_closed_by_header_timeout(host, data):
    with host.raw() as raw:
        started = time.monotonic()
        raw.send(data)
        assert_refused(host, raw)
        waited = time.monotonic() - started
    assert 0.9 <= waited <= 2.5, waited  # header_timeout 1 s, the tick up to 0.5 s late


def test_an_address_not_allowed_is_refused_and_an_allowed_one_served(serve):
    host = serve(config(allow='"127.0.0.2"'), APPS)
    with host.raw() as raw:  # from 127.0.0.1
        raw.send(V1_TCP4 + GET)
        assert_refused(host, raw)
    sock = socket.create_connection(
        ("127.0.0.1", host.port()), timeout=TIMEOUT, source_address=("127.0.0.2", 0)
    )
    with sock:
        sock.sendall(V1_TCP4 + GET_CLOSE)
        assert answer_to_close(sock)["client"] == pair(CLIENT)


def test_refusals_are_logged_without_a_flood(host, caplog):
    caplog.set_level(logging.INFO, logger="uvhost.error")
    for _ in range(5):
        with host.raw() as raw:
            raw.send(GET)
            assert raw.closed_by_server()
    assert_refused_lines = [r for r in caplog.records if "PROXY protocol" in r.getMessage()]
    assert len(assert_refused_lines) == 1, [r.getMessage() for r in assert_refused_lines]
    assert "not a PROXY protocol header" in assert_refused_lines[0].getMessage()
    assert refused_count(host) == 5


# ------------------------------------------------------ h2c and WebSocket


def h2_get(sock: Any, prefix: bytes = b"", scheme: str = "http") -> tuple[int, bytes]:
    """One GET over HTTP/2 on `sock`; `prefix` goes out in the same write as the preface."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "GET"), (":path", "/h2"), (":scheme", scheme), (":authority", "x")]
    conn.send_headers(1, headers, end_stream=True)
    sock.sendall(prefix + conn.data_to_send())
    status, body = 0, b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.StreamEnded):
                return status, body
        sock.sendall(conn.data_to_send())
    raise AssertionError(f"no complete HTTP/2 response: {status} {body!r}")


def test_h2c_prior_knowledge_behind_the_header(host):
    with host.raw() as raw:
        status, body = h2_get(raw.sock, prefix=v2())
    seen = json.loads(body)
    assert status == 200
    assert seen["http_version"] == "2"
    assert seen["client"] == pair(CLIENT)


def test_websocket_behind_the_header(host):
    sock = socket.create_connection(("127.0.0.1", host.port()), timeout=TIMEOUT)
    sock.sendall(V1_TCP4)
    uri = f"ws://127.0.0.1:{host.port()}/ws"
    with ws_connect(uri, sock=sock, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        seen = json.loads(ws.recv(timeout=TIMEOUT))
    assert seen["client"] == pair(CLIENT)
    assert seen["server"] == pair(SERVER)


# -------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_host(serve, ca, tmp_path):
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    table = f'[listeners.web.tls]\ncertificate = "{cert}"\nprivate_key = "{key}"\n'
    return serve(config(table=table), APPS)


def client_context(ca: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(alpn)
    return context


@pytest.mark.parametrize("header", [V1_TCP4, v2()], ids=["v1", "v2"])
def test_tls_http1_behind_the_header(tls_host, ca, header):
    sock = socket.create_connection(("127.0.0.1", tls_host.port()), timeout=TIMEOUT)
    sock.sendall(header)
    context = client_context(ca, ["http/1.1"])
    with context.wrap_socket(sock, server_hostname="localhost") as secure:
        assert secure.selected_alpn_protocol() == "http/1.1"
        secure.sendall(GET_CLOSE)
        seen = answer_to_close(secure)
    assert seen["scheme"] == "https"
    assert seen["client"] == pair(CLIENT)


def test_tls_h2_by_alpn_behind_the_header(tls_host, ca):
    sock = socket.create_connection(("127.0.0.1", tls_host.port()), timeout=TIMEOUT)
    sock.sendall(v2())
    context = client_context(ca, ["h2", "http/1.1"])
    with context.wrap_socket(sock, server_hostname="localhost") as secure:
        assert secure.selected_alpn_protocol() == "h2"
        status, body = h2_get(secure, scheme="https")
    seen = json.loads(body)
    assert status == 200
    assert (seen["http_version"], seen["scheme"]) == ("2", "https")
    assert seen["client"] == pair(CLIENT)


def test_tls_client_hello_in_the_header_packet(tls_host, ca):
    """Balancers often send the header and the client's first bytes in one segment: the
    ClientHello read with the header must reach the TLS layer first, in order."""
    context = client_context(ca, ["http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    sock = socket.create_connection(("127.0.0.1", tls_host.port()), timeout=TIMEOUT)
    with sock:
        sock.sendall(V1_TCP4 + outgoing.read())
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if data := outgoing.read():
                    sock.sendall(data)
                chunk = sock.recv(65536)
                assert chunk, "closed during the handshake"
                incoming.write(chunk)
        tls.write(GET)
        sock.sendall(outgoing.read())
        answer = b""
        while b"}" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            incoming.write(chunk)
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                continue
    assert b"200 OK" in answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["client"] == pair(CLIENT)


def test_tls_without_a_header_is_refused(tls_host, ca):
    sock = socket.create_connection(("127.0.0.1", tls_host.port()), timeout=TIMEOUT)
    context = client_context(ca, ["http/1.1"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        context.wrap_socket(sock, server_hostname="localhost").close()
    sock.close()
    assert calls(tls_host) == []
    deadline = time.monotonic() + TIMEOUT
    while refused_count(tls_host) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert refused_count(tls_host) == 1


# --------------------------------------------------------------- example


def test_the_example_config_checks(monkeypatch):
    monkeypatch.chdir(ROOT / "examples" / "proxy-protocol")
    out = io.StringIO()
    status = check(Path("uvhost.toml"), import_apps=True, as_json=False, out=out)
    assert status == 0, out.getvalue()
    assert "warning" not in out.getvalue()

"""TLS contexts from trustme certificates, checked with real handshakes on 127.0.0.1."""

import asyncio
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from uvhost.config.model import TlsSettings
from uvhost.server.tls import TlsSetupError, build_context, reload_certificate

KEY_PASSWORD = "s3cret"  # noqa: S105 - encrypts a throwaway test key
WRONG_PASSWORD = "nope"  # noqa: S105 - deliberately not the key's password


@dataclass
class Files:
    ca: trustme.CA
    dir: Path
    cert: Path  # server certificate chain
    key: Path
    client_ca: Path


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca, tmp_path) -> Files:
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, client_ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    server.cert_chain_pems[0].write_to_path(cert)
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(cert, append=True)
    server.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(client_ca)
    return Files(ca, tmp_path, cert, key, client_ca)


def tls(files: Files, **options: Any) -> TlsSettings:
    return TlsSettings.model_validate(
        {"certificate": str(files.cert), "private_key": str(files.key), **options}
    )


def client_context(files: Files, **options: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.client_ca))
    if options.get("max_version"):
        context.maximum_version = options["max_version"]
    if options.get("alpn"):
        context.set_alpn_protocols(options["alpn"])
    if options.get("cert"):
        files.ca.issue_cert("client@example.com").configure_cert(context)
    return context


@dataclass
class Seen:
    received: bytes = b""
    error: Exception | None = None
    version: str | None = None
    alpn: str | None = None
    server_peer: Any = None
    served: bool = False  # the server completed its side of the handshake


def talk(port: int, context: ssl.SSLContext, seen: Seen) -> None:
    """A blocking stdlib client: handshake, then read until the server closes."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            seen.version, seen.alpn = conn.version(), conn.selected_alpn_protocol()
            while chunk := conn.recv(1024):
                seen.received += chunk
    except (ssl.SSLError, ConnectionError) as exc:
        seen.error = exc


def handshake(server_context: ssl.SSLContext, client: ssl.SSLContext) -> Seen:
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.served = True
        seen.server_peer = writer.get_extra_info("peercert")
        writer.write(b"hello")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.wait_for(asyncio.to_thread(talk, port, client, seen), 5)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())
    return seen


def test_h2_is_preferred_when_both_are_allowed(files):
    """OpenSSL takes the first of the server's list the client offers: h2, whatever
    order the client or the config names them in."""
    context = build_context(tls(files), ("http/1.1", "h2"))
    seen = handshake(context, client_context(files, alpn=["http/1.1", "h2"]))
    assert seen.error is None
    assert seen.received == b"hello"
    assert seen.alpn == "h2"
    assert seen.version == "TLSv1.3"


def test_a_listener_without_h2_negotiates_http11(files):
    context = build_context(tls(files), ("http/1.1",))
    seen = handshake(context, client_context(files, alpn=["h2", "http/1.1"]))
    assert seen.alpn == "http/1.1"


def test_client_offering_only_h2_gets_no_alpn_from_an_http11_listener(files):
    seen = handshake(build_context(tls(files), ("http/1.1",)), client_context(files, alpn=["h2"]))
    assert seen.received == b"hello"
    assert seen.alpn is None


def test_tls12_client_accepted_by_default(files):
    client = client_context(files, max_version=ssl.TLSVersion.TLSv1_2)
    seen = handshake(build_context(tls(files), ("http/1.1",)), client)
    assert seen.version == "TLSv1.2"
    assert seen.received == b"hello"


def test_min_version_13_refuses_a_tls12_client(files):
    server = build_context(tls(files, min_version="1.3"), ("http/1.1",))
    seen = handshake(server, client_context(files, max_version=ssl.TLSVersion.TLSv1_2))
    assert isinstance(seen.error, ssl.SSLError)
    assert not seen.served
    assert handshake(server, client_context(files)).version == "TLSv1.3"


def test_client_auth_required(files):
    server = build_context(
        tls(files, client_auth="required", client_ca=str(files.client_ca)), ("http/1.1",)
    )
    assert server.verify_mode == ssl.CERT_REQUIRED
    refused = handshake(server, client_context(files))
    # In TLS 1.3 the client finishes first; the server then refuses (an alert or a close).
    assert not refused.served
    assert refused.received == b""
    accepted = handshake(server, client_context(files, cert=True))
    assert accepted.error is None
    assert accepted.received == b"hello"
    assert ("email", "client@example.com") in accepted.server_peer["subjectAltName"]


def test_client_auth_required_over_tls12(files):
    server = build_context(
        tls(files, client_auth="required", client_ca=str(files.client_ca)), ("http/1.1",)
    )
    seen = handshake(server, client_context(files, max_version=ssl.TLSVersion.TLSv1_2))
    assert isinstance(seen.error, ssl.SSLError)
    assert not seen.served


def test_client_auth_optional_accepts_both(files):
    server = build_context(
        tls(files, client_auth="optional", client_ca=str(files.client_ca)), ("http/1.1",)
    )
    assert server.verify_mode == ssl.CERT_OPTIONAL
    anonymous = handshake(server, client_context(files))
    assert anonymous.received == b"hello"
    assert not anonymous.server_peer
    identified = handshake(server, client_context(files, cert=True))
    assert identified.received == b"hello"
    assert identified.server_peer


def test_client_auth_optional_still_refuses_a_cert_from_another_ca(files):
    server = build_context(
        tls(files, client_auth="optional", client_ca=str(files.client_ca)), ("http/1.1",)
    )
    client = client_context(files)
    trustme.CA().issue_cert("intruder@example.com").configure_cert(client)
    seen = handshake(server, client)
    assert not seen.served
    assert seen.received == b""


def test_context_options(files):
    context = build_context(tls(files, ciphers="ECDHE+AESGCM"), ("http/1.1",))
    assert context.verify_mode == ssl.CERT_NONE
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    for option in (
        ssl.OP_NO_COMPRESSION,
        ssl.OP_NO_RENEGOTIATION,
        ssl.OP_CIPHER_SERVER_PREFERENCE,
    ):
        assert context.options & option
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12
    assert all("ECDHE" in name and "GCM" in name for name in tls12)


def test_certificate_file_holding_the_key_too(files):
    combined = files.dir / "combined.pem"
    combined.write_bytes(files.key.read_bytes() + files.cert.read_bytes())
    settings = TlsSettings.model_validate({"certificate": str(combined)})
    assert (
        handshake(build_context(settings, ("http/1.1",)), client_context(files)).received
        == b"hello"
    )


# ------------------------------------------------------------------- errors


def encrypted_key(files: Files, password: bytes) -> Path:
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    path = files.dir / "encrypted.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )
    return path


def setup_error(settings: TlsSettings) -> str:
    with pytest.raises(TlsSetupError) as caught:
        build_context(settings, ("http/1.1",))
    assert "\n" not in caught.value.message
    return caught.value.message


def test_encrypted_key_with_password(files):
    path = encrypted_key(files, KEY_PASSWORD.encode())
    settings = tls(files, private_key=str(path), password=KEY_PASSWORD)
    assert (
        handshake(build_context(settings, ("http/1.1",)), client_context(files)).received
        == b"hello"
    )


def test_encrypted_key_without_password_never_prompts(files):
    path = encrypted_key(files, KEY_PASSWORD.encode())
    message = setup_error(tls(files, private_key=str(path)))
    assert message == f"private key {path} is encrypted and no password is set"


def test_encrypted_key_with_wrong_password(files):
    path = encrypted_key(files, KEY_PASSWORD.encode())
    message = setup_error(tls(files, private_key=str(path), password=WRONG_PASSWORD))
    assert message == f"private key {path} cannot be decrypted with the configured password"


def test_key_that_does_not_match(files, ca):
    other = files.dir / "other.key"
    ca.issue_cert("elsewhere.example").private_key_pem.write_to_path(other)
    message = setup_error(tls(files, private_key=str(other)))
    assert message == f"private key {other} does not match certificate {files.cert}"


def test_not_pem(files):
    junk = files.dir / "junk.pem"
    junk.write_text("not a certificate\n")
    message = setup_error(tls(files, certificate=str(junk)))
    assert message.startswith(f"cannot load certificate {junk} and key {files.key}: ")


def test_missing_file(files):
    missing = files.dir / "missing.pem"
    message = setup_error(tls(files, certificate=str(missing)))
    assert message.startswith("cannot read TLS file")
    assert "No such file" in message


def test_unmatched_ciphers(files):
    assert setup_error(tls(files, ciphers="NO-SUCH-CIPHER")) == 'no cipher matches "NO-SUCH-CIPHER"'


def test_bad_client_ca(files):
    junk = files.dir / "junk-ca.pem"
    junk.write_text("nothing here\n")
    message = setup_error(tls(files, client_auth="required", client_ca=str(junk)))
    assert message.startswith(f"cannot load client CA file {junk}: ")


def test_client_auth_without_client_ca(files):
    assert setup_error(tls(files, client_auth="optional")) == (
        'client_auth = "optional" needs client_ca'
    )


def test_reloaded_certificate_is_served_to_new_handshakes(files, tmp_path):
    """The live context takes a pair from another CA: clients trusting only it now connect."""
    settings = tls(files)
    live = build_context(settings, ("http/1.1",))
    old_ca_client = client_context(files)
    assert handshake(live, old_ca_client).error is None

    other = trustme.CA()
    renewed = other.issue_cert("localhost", "127.0.0.1")
    renewed.cert_chain_pems[0].write_to_path(files.cert)
    renewed.private_key_pem.write_to_path(files.key)
    reload_certificate(live, settings)

    new_ca_client = ssl.create_default_context()
    other.configure_trust(new_ca_client)
    assert handshake(live, new_ca_client).error is None
    assert isinstance(handshake(live, client_context(files)).error, ssl.SSLError)


def test_a_bad_replacement_leaves_the_live_certificate(files):
    settings = tls(files)
    live = build_context(settings, ("http/1.1",))
    files.key.write_text("not a key\n")
    with pytest.raises(TlsSetupError):
        reload_certificate(live, settings)
    assert handshake(live, client_context(files)).error is None

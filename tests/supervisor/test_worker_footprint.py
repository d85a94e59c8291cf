"""A worker process serves from a detached config: no pydantic in its memory.

The supervisor validates; workers only read. This checks the saving holds in
a real host (a worker's memory map, not a module list in this process), with
the settings that travel as nested models and secrets: TLS with an encrypted
key and its password, WebSocket limits, a live log-level change.
"""

import asyncio
import ssl
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect

PASSWORD = "correct horse"  # noqa: S105 - encrypts a throwaway test key


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def encrypted_key(leaf: trustme.LeafCert, path: Path) -> Path:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    return path


def test_workers_serve_tls_websockets_and_live_logging_without_pydantic(
    tmp_path, launch, listener, kit
):
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    encrypted_key(leaf, tmp_path / "key.pem")
    web, secure = listener(), listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"

    def render(level: str) -> str:
        return f"""
[logging]
level = "{level}"

[listeners.web]
bind = "fd:{web.fileno()}"
app = "main"

[listeners.secure]
bind = "fd:{secure.fileno()}"
app = "main"
tls = {{ certificate = "cert.pem", private_key = "key.pem", password = "{PASSWORD}" }}

[apps.main]
target = "apps:main"
websocket = {{ max_message_bytes = 1024 }}
"""

    config.write_text(render("info"))
    host = launch(config, pass_fds=(web.fileno(), secure.fileno()))
    host.wait_for("ready")
    (worker,) = host.wait_workers(1)
    address = ("127.0.0.1", kit.port_of(web))

    client = ssl.create_default_context()
    ca.configure_trust(client)
    status, body, _ = kit.raw_request(("127.0.0.1", kit.port_of(secure)), tls=client)
    assert status == 200
    assert b'"app": "main"' in body

    async def echo_then_overflow() -> tuple[str, int | None]:
        async with connect(f"ws://127.0.0.1:{address[1]}/ws") as ws:
            await ws.send("hello")
            echoed = await ws.recv()
            await ws.send("x" * 2048)  # over max_message_bytes
            await ws.wait_closed()
            return str(echoed), ws.close_code

    assert asyncio.run(echo_then_overflow()) == ("hello", 1009)

    mark = host.mark()
    kit.save(config, render("debug"))
    host.wait_applied(mark)
    assert kit.who(address)["level"] == 10  # logging.DEBUG, pushed live to the same worker
    assert kit.who(address)["pid"] == worker

    maps = mapped_files(worker)
    assert "uvloop" in maps  # the map is the worker's, serving
    assert "pydantic" not in maps
    assert "pydantic" in mapped_files(host.pid)  # the supervisor validates

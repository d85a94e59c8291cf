"""uvhost.toml.example served for real: the README's first command, on free ports.

The example as shipped (only its `${PORT}`-style ports point elsewhere, through
the environment it documents): the Starlette pages, the FastAPI app under
/api, the chat's page, the Flask guestbook (WSGI) under /guestbook, the raw
hello app on its own port, the admin
built-ins, and the folder of files under /assets with its precompressed
sibling. Then SIGTERM ends it cleanly.
"""

from __future__ import annotations

import gzip
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import TIMEOUT, Host

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "uvhost.toml.example"
ASSETS = ROOT / "examples" / "assets"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_example_serves_its_apps_and_its_folder(
    launch: Callable[..., Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = {name: free_port() for name in ("PORT", "HELLO_PORT", "ADMIN_PORT")}
    for name, port in ports.items():
        monkeypatch.setenv(name, str(port))
    host = launch(EXAMPLE)
    host.wait_for("ready:")
    site = f"http://127.0.0.1:{ports['PORT']}"
    with httpx.Client(timeout=TIMEOUT) as client:
        page = client.get(f"{site}/")
        assert page.status_code == 200
        assert '<link rel="stylesheet" href="/assets/style.css">' in page.text
        assert client.get(f"{site}/api/docs").status_code == 200
        assert client.get(f"{site}/chat/").status_code == 200

        css = (ASSETS / "style.css").read_bytes()
        plain = client.get(f"{site}/assets/style.css", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert plain.content == css
        assert plain.headers["content-type"] == "text/css; charset=utf-8"
        assert plain.headers["cache-control"] == "no-cache"
        assert plain.headers["access-control-allow-origin"] == "*"
        assert plain.headers["vary"] == "Accept-Encoding"
        zipped = client.get(f"{site}/assets/style.css", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == css  # httpx decodes it: the sibling is the same file
        assert int(zipped.headers["content-length"]) == (ASSETS / "style.css.gz").stat().st_size
        assert gzip.decompress((ASSETS / "style.css.gz").read_bytes()) == css
        again = client.get(
            f"{site}/assets/style.css",
            headers={"Accept-Encoding": "identity", "If-None-Match": plain.headers["etag"]},
        )
        assert again.status_code == 304

        book = client.get(f"{site}/guestbook/")  # Flask, as WSGI: url_for knows the prefix
        assert book.status_code == 200
        assert 'action="/guestbook/sign"' in book.text
        signed = client.post(f"{site}/guestbook/sign", data={"text": "hi from a test"})
        assert signed.status_code == 303
        assert signed.headers["location"].endswith("/guestbook/")
        entries = client.get(f"{site}/guestbook/entries.json").json()
        assert entries == {"entries": ["hi from a test"]}

        hello = client.get(f"http://127.0.0.1:{ports['HELLO_PORT']}/")
        assert hello.status_code == 200
        assert client.get(f"http://127.0.0.1:{ports['ADMIN_PORT']}/healthz").status_code == 200
    host.signal(signal.SIGTERM)
    assert host.wait_exit() == 0

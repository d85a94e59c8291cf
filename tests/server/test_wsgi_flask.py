"""A real Flask app mounted at a prefix beside an ASGI app: what users moving from
Gunicorn rely on (url_for under the mount, uploads, send_file, redirects, HEAD)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from .conftest import TIMEOUT

FLASK_APP = r"""
import hashlib
import os
from flask import Flask, redirect, request, send_file, url_for

app = Flask(__name__)
FILE = os.path.join(os.path.dirname(__file__), "report.bin")


@app.get("/")
def index():
    return {
        "item": url_for("item", number=3),
        "external": url_for("item", number=3, _external=True),
        "script_root": request.script_root,
        "path": request.path,
    }


@app.get("/items/<int:number>")
def item(number):
    return {"number": number, "remote": request.remote_addr}


@app.get("/old")
def old():
    return redirect(url_for("item", number=1))


@app.post("/upload")
def upload():
    received = request.files["file"]
    hasher, size = hashlib.sha256(), 0
    while piece := received.stream.read(65536):
        hasher.update(piece)
        size += len(piece)
    return {"name": received.filename, "size": size, "sha256": hasher.hexdigest(),
            "field": request.form["note"]}


@app.get("/report")
def report():
    return send_file(FILE, mimetype="application/octet-stream")


@app.get("/boom")
def boom():
    raise RuntimeError("handled by Flask")
"""

ASGI_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi"})
"""

CONFIG = """
[listeners.web]
bind = "127.0.0.1:0"
routes = { "/" = "front", "/legacy" = "legacy" }

[apps.front]
target = "apps:app"

[apps.legacy]
target = "legacy:app"
threads = 4
"""

REPORT = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def host(serve):
    running = serve(CONFIG, ASGI_APP, files={"legacy.py": FLASK_APP})
    (running.directory / "report.bin").write_bytes(REPORT)
    return running


def test_the_flask_app_is_detected_and_served_at_its_prefix(host):
    with host.client() as client:
        index = client.get("/legacy/").json()
        front = client.get("/anything")
    port = host.port()
    assert index == {
        "item": "/legacy/items/3",
        "external": f"http://127.0.0.1:{port}/legacy/items/3",
        "script_root": "/legacy",
        "path": "/",
    }
    assert front.text == "asgi"
    assert host.worker.wsgi_apps  # `interface = "auto"` chose WSGI for the Flask object


def test_routes_redirects_and_the_client_address(host):
    with host.client() as client:
        item = client.get("/legacy/items/7")
        moved = client.get("/legacy/old")
    assert item.json() == {"number": 7, "remote": "127.0.0.1"}
    assert moved.status_code == 302
    assert moved.headers["location"] == "/legacy/items/1"


def test_a_file_upload_streams_through(host):
    data = bytes(range(251)) * 12000  # about 3 MiB, not a multiple of any read size
    with host.client() as client:
        response = client.post(
            "/legacy/upload",
            files={"file": ("data.bin", data, "application/octet-stream")},
            data={"note": "café"},
        )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "data.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "field": "café",
    }


def test_send_file_whole_ranged_conditional_and_head(host):
    with host.client() as client:
        whole = client.get("/legacy/report")
        ranged = client.get("/legacy/report", headers={"Range": "bytes=100-199"})
        cached = client.get("/legacy/report", headers={"If-None-Match": whole.headers["etag"]})
        head = client.head("/legacy/report")
    assert whole.status_code == 200
    assert whole.content == REPORT
    assert whole.headers["content-length"] == str(len(REPORT))
    assert ranged.status_code == 206
    assert ranged.content == REPORT[100:200]
    assert cached.status_code == 304
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(REPORT))
    assert head.content == b""


def test_send_file_over_http2(host):
    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
        response = client.get(host.url("/legacy/report"))
    assert response.http_version == "HTTP/2"
    assert response.content == REPORT


def test_an_error_flask_handles_is_its_own_500(host, errors):
    response = host.request("GET", "/legacy/boom")
    assert response.status_code == 500
    assert "Internal Server Error" in response.text  # Flask's page, not uvhost's
    assert errors() == []  # Flask logged it on its own logger; the app did answer

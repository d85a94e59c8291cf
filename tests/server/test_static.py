"""Folder apps against a real host: files, HTTP semantics, safety, the fast paths.

- A folder mounted beside an ASGI app: index files, folders redirected to
  their slash, 405 with Allow, HEAD, media types with charset, nosniff,
  per-app Cache-Control and immutable fingerprinted names, extra headers.
- RFC 9110 validators and ranges: ETag/Last-Modified, 304 and 412 in
  13.2.2's order, single ranges (206, 416), If-Range, several ranges as
  the whole file.
- Precompressed siblings by Accept-Encoding q-values, with Vary.
- SPA fallback, never for names with an extension.
- A traversal corpus against a root holding a symlink farm, one request
  each: nothing leaves the folder, every answer is 400 or 404, and no
  answer names a filesystem path.
- Files larger than the memory cache go through os.sendfile on plain
  HTTP/1.1 (counted here by wrapping it) and through reads on h2c and TLS,
  whole and by range, with back-pressure on a slow reader; an edit on disk
  is served within a second; the stats count the bytes.
- curl (ranges, conditionals, --compressed), when installed.
"""

from __future__ import annotations

import gzip
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from uvhost.observe import stats
from uvhost.observe.logs import PLAIN
from uvhost.server import static_files, static_paths

from .conftest import TIMEOUT, Raw, RawResponse, RunningHost, run_curl

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
BIG = bytes(range(256)) * 4096 * 2  # 2 MiB, far above SMALL_FILE
INDEX = b"<!doctype html><title>home</title>\n"
APP_JS = b"console.log('plain');\n" * 10
APP_BR = b"BROTLI-BYTES-FOR-TEST"
APP_ZST = b"ZSTD-BYTES-FOR-TEST"

APPS = """
async def api(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"api"})
"""


def build_site(base: Path) -> Path:
    """The served folder, with a symlink farm, and a secret beside it."""
    secret = base / "secret"
    secret.mkdir()
    (secret / "secret.txt").write_bytes(SECRET)
    root = base / "site"
    (root / "docs").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".well-known").mkdir()
    (root / "index.html").write_bytes(INDEX)
    (root / "docs" / "index.html").write_bytes(b"<h1>docs</h1>")
    (root / "docs" / "guide.txt").write_bytes(b"read me")
    (root / "app.js").write_bytes(APP_JS)
    (root / "app.js.br").write_bytes(APP_BR)
    (root / "app.js.zst").write_bytes(APP_ZST)
    (root / "app.js.gz").write_bytes(gzip.compress(APP_JS))
    (root / "style.css").write_bytes(b"body{}")
    (root / "style.css.gz").write_bytes(gzip.compress(b"body{}"))
    (root / "assets" / "app-0123abcd.js").write_bytes(b"hashed")
    (root / "site.webmanifest").write_bytes(b"{}")
    (root / "data.json").write_bytes(b'{"a": 1}')
    (root / "big.bin").write_bytes(BIG)
    (root / ".env").write_bytes(SECRET)
    (root / ".git" / "config").write_bytes(SECRET)
    (root / ".well-known" / "security.txt").write_bytes(b"Contact: mailto:x@example.com")
    (root / "sub" / "deeper" / "file.txt").write_bytes(b"deep")
    os.mkfifo(root / "pipe")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(root / "sock"))
    unix.close()
    links = {
        "link-out": secret / "secret.txt",
        "link-rel-out": Path("../secret/secret.txt"),
        "link-etc": Path("/etc"),
        "link-passwd": Path("/etc/passwd"),
        "dirlink-out": secret,
        "devnull": Path("/dev/null"),
        "loop1": Path("loop2"),
        "loop2": Path("loop1"),
        "dangling": Path("nowhere/at/all"),
        "link-dot": Path(".env"),
        "link-in": Path("index.html"),
        "dirlink-in": Path("docs"),
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    (root / "sub" / "link-up").symlink_to(Path("../../secret"))
    return root


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return build_site(tmp_path)


def config(root: Path, extra: str = "") -> str:
    return f"""
[listeners.web]
bind = "127.0.0.1:0"
[listeners.web.routes]
"/" = "api"
"/static" = "files"
"/spa" = "spa"

[apps.api]
target = "apps:api"
lifespan = "off"

[apps.files]
folder = "{root}"
[apps.files.static]
immutable = '^assets/.+-[0-9a-f]{{8}}\\.js$'
media_types = {{ ".webmanifest" = "application/manifest+json" }}
headers = {{ "X-Frame-Options" = "DENY" }}

[apps.spa]
folder = "{root}"
static = {{ fallback = "index.html", cache_control = "" }}
{extra}
"""


@pytest.fixture
def host(serve: Callable[..., RunningHost], site: Path) -> RunningHost:
    return serve(config(site), APPS)


def get(host: RunningHost, target: str, headers: dict[str, str] | None = None) -> RawResponse:
    """One request on a raw socket: the target exactly as written, nothing normalised."""
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: test",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    with host.raw() as raw:
        raw.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return raw.read_response()


def request(
    host: RunningHost,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: test",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    with host.raw() as raw:
        raw.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return raw.read_response(head=method == "HEAD")


# ------------------------------------------------------------------- serving


def test_a_file_with_every_header(host: RunningHost, site: Path) -> None:
    response = get(host, "/static/index.html")
    assert response.status == 200
    assert response.body == INDEX
    assert response.header("content-type") == b"text/html; charset=utf-8"
    assert response.header("content-length") == b"%d" % len(INDEX)
    assert response.header("accept-ranges") == b"bytes"
    assert response.header("x-content-type-options") == b"nosniff"
    assert response.header("cache-control") == b"no-cache"
    assert response.header("x-frame-options") == b"DENY"
    info = (site / "index.html").stat()
    assert response.header("etag") == b'"%x-%x-%x"' % (info.st_ino, info.st_size, info.st_mtime_ns)
    assert (
        response.header("last-modified")
        == time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(int(info.st_mtime))).encode()
    )
    assert response.header("vary") is None  # no precompressed sibling


def test_the_api_beside_it_is_untouched(host: RunningHost) -> None:
    assert host.request("GET", "/anything").text == "api"


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("/static/", INDEX),
        ("/static/docs/", b"<h1>docs</h1>"),
        ("/static/link-in", INDEX),
        ("/static/dirlink-in/guide.txt", b"read me"),
        ("/static/sub/deeper/file.txt", b"deep"),
        ("/static/.well-known/security.txt", b"Contact: mailto:x@example.com"),
    ],
)
def test_index_files_and_links_inside(host: RunningHost, target: str, body: bytes) -> None:
    response = get(host, target)
    assert (response.status, response.body) == (200, body)


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/static", b"/static/"),
        ("/static/docs", b"/static/docs/"),
        ("/static/docs?x=1", b"/static/docs/?x=1"),
        ("/static//docs", b"/static/docs/"),
    ],
)
def test_a_folder_without_its_slash_is_redirected(
    host: RunningHost, target: str, location: bytes
) -> None:
    response = get(host, target)
    assert response.status == 308
    assert response.header("location") == location


def test_a_folder_without_an_index_is_not_listed(host: RunningHost) -> None:
    response = get(host, "/static/sub/")
    assert response.status == 404
    assert b"deeper" not in response.body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405_with_allow(host: RunningHost, method: str) -> None:
    response = request(host, method, "/static/index.html", {"Content-Length": "0"})
    assert response.status == 405
    assert response.header("allow") == b"GET, HEAD"


def test_head_is_the_head_alone(host: RunningHost) -> None:
    small = request(host, "HEAD", "/static/index.html")
    assert small.status == 200
    assert small.header("content-length") == b"%d" % len(INDEX)
    big = request(host, "HEAD", "/static/big.bin")
    assert big.header("content-length") == b"%d" % len(BIG)
    with host.raw() as raw:  # nothing follows the head: the next response comes next
        raw.send(
            b"HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /static/app.js HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert raw.read_response(head=True).status == 200
        assert raw.read_response().body == APP_JS


@pytest.mark.parametrize(
    ("target", "media_type"),
    [
        ("/static/app.js", b"text/javascript; charset=utf-8"),
        ("/static/style.css", b"text/css; charset=utf-8"),
        ("/static/data.json", b"application/json"),
        ("/static/big.bin", b"application/octet-stream"),
        ("/static/site.webmanifest", b"application/manifest+json"),
        ("/static/docs/guide.txt", b"text/plain; charset=utf-8"),
    ],
)
def test_media_types(host: RunningHost, target: str, media_type: bytes) -> None:
    assert request(host, "HEAD", target).header("content-type") == media_type


def test_fingerprinted_names_are_immutable(host: RunningHost) -> None:
    response = get(host, "/static/assets/app-0123abcd.js")
    assert response.header("cache-control") == b"public, max-age=31536000, immutable"
    assert get(host, "/static/app.js").header("cache-control") == b"no-cache"
    assert get(host, "/spa/app.js").header("cache-control") is None  # cache_control = ""


def test_a_folder_needs_no_import_nor_lifespan(
    serve: Callable[..., RunningHost], site: Path
) -> None:
    host = serve(
        f'[listeners.web]\nbind = "127.0.0.1:0"\napp = "files"\n\n[apps.files]\nfolder = "{site}"\n'
    )
    assert host.worker.lifespans == {}
    assert get(host, "/index.html").body == INDEX
    assert get(host, "/").body == INDEX  # a whole port: "/" is the folder


def test_a_websocket_upgrade_is_answered_as_http(host: RunningHost) -> None:
    with host.raw() as raw:
        raw.send(
            b"GET /static/index.html HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        response = raw.read_response()
    assert (response.status, response.body) == (200, INDEX)


# ------------------------------------------------------------ conditionals


def validators(host: RunningHost, target: str = "/static/index.html") -> tuple[str, str]:
    response = get(host, target)
    return (response.header("etag") or b"").decode(), (
        response.header("last-modified") or b""
    ).decode()


@pytest.mark.parametrize("target", ["/static/index.html", "/static/big.bin"])
def test_if_none_match_and_if_modified_since_give_304(host: RunningHost, target: str) -> None:
    etag, modified = validators(host, target)
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"nope", W/{etag}'},  # weak comparison
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
        {"If-Modified-Since": "Sun, 06 Nov 2094 08:49:37 GMT"},
    ):
        response = get(host, target, headers)
        assert response.status == 304, headers
        assert response.body == b""
        assert response.header("etag") == etag.encode()
        assert response.header("content-length") is None
    for headers in (
        {"If-None-Match": '"other"'},
        {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"},
        {"If-Modified-Since": "not a date"},
        {"If-None-Match": '"other"', "If-Modified-Since": modified},  # INM wins
    ):
        assert get(host, target, headers).status == 200, headers


def test_obsolete_date_forms_are_understood(host: RunningHost) -> None:
    for value in ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        assert get(host, "/static/index.html", {"If-Unmodified-Since": value}).status == 412


@pytest.mark.parametrize("target", ["/static/index.html", "/static/big.bin"])
def test_if_match_and_if_unmodified_since_give_412(host: RunningHost, target: str) -> None:
    etag, modified = validators(host, target)
    assert get(host, target, {"If-Match": '"other"'}).status == 412
    assert get(host, target, {"If-Match": f"W/{etag}"}).status == 412  # strong comparison
    assert get(host, target, {"If-Match": etag}).status == 200
    assert get(host, target, {"If-Match": "*"}).status == 200
    assert get(host, target, {"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}).status == 412
    assert get(host, target, {"If-Unmodified-Since": modified}).status == 200
    # If-Match present: If-Unmodified-Since is not evaluated (RFC 9110 13.2.2)
    both = {"If-Match": etag, "If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}
    assert get(host, target, both).status == 200


# ------------------------------------------------------------------ ranges


@pytest.mark.parametrize("target", ["/static/app.js", "/static/big.bin"])
def test_single_ranges(host: RunningHost, target: str, site: Path) -> None:
    whole = (site / target.removeprefix("/static/")).read_bytes()
    size = len(whole)
    for spec, start, end in (
        ("bytes=0-4", 0, 4),
        ("bytes=5-", 5, size - 1),
        ("bytes=-3", size - 3, size - 1),
        ("bytes=10-10", 10, 10),
        ("bytes=0-999999999", 0, size - 1),
        ("bytes=-999999999", 0, size - 1),
    ):
        response = get(host, target, {"Range": spec})
        assert response.status == 206, spec
        assert response.header("content-range") == b"bytes %d-%d/%d" % (start, end, size)
        assert response.body == whole[start : end + 1]


@pytest.mark.parametrize("target", ["/static/app.js", "/static/big.bin"])
def test_unsatisfiable_ranges_get_416(host: RunningHost, target: str, site: Path) -> None:
    size = (site / target.removeprefix("/static/")).stat().st_size
    for spec in (f"bytes={size}-", "bytes=99999999-", "bytes=-0"):
        response = get(host, target, {"Range": spec})
        assert response.status == 416, spec
        assert response.header("content-range") == b"bytes */%d" % size


@pytest.mark.parametrize(
    "spec", ["bytes=0-1,5-6", "bytes=0-1, 3-4", "lines=1-2", "bytes=5-1", "bytes=x-y", "bytes"]
)
def test_several_or_invalid_ranges_get_the_whole_file(host: RunningHost, spec: str) -> None:
    response = get(host, "/static/app.js", {"Range": spec})
    assert (response.status, response.body) == (200, APP_JS)


def test_if_range(host: RunningHost) -> None:
    etag, modified = validators(host, "/static/app.js")
    assert get(host, "/static/app.js", {"Range": "bytes=0-1", "If-Range": etag}).status == 206
    assert get(host, "/static/app.js", {"Range": "bytes=0-1", "If-Range": modified}).status == 206
    for stale in ('"other"', f"W/{etag}", "Sun, 06 Nov 1994 08:49:37 GMT"):
        response = get(host, "/static/app.js", {"Range": "bytes=0-1", "If-Range": stale})
        assert (response.status, response.body) == (200, APP_JS), stale


def test_range_is_ignored_on_head(host: RunningHost) -> None:
    response = request(host, "HEAD", "/static/app.js", {"Range": "bytes=0-1"})
    assert response.status == 200


# ------------------------------------------------------------ precompressed


@pytest.mark.parametrize(
    ("accept", "body", "coding"),
    [
        ("br", APP_BR, b"br"),
        ("gzip, deflate, br, zstd", APP_BR, b"br"),
        ("gzip;q=1, br;q=0.5", gzip.compress(APP_JS), b"gzip"),
        ("zstd, gzip;q=0.9", APP_ZST, b"zstd"),
        ("br;q=0, zstd;q=0, gzip;q=0", APP_JS, None),
        ("*;q=0.1, br;q=0", APP_ZST, b"zstd"),
        ("identity", APP_JS, None),
        ("x-gzip", gzip.compress(APP_JS), b"gzip"),
        ("compress", APP_JS, None),
    ],
)
def test_precompressed_siblings_by_q_value(
    host: RunningHost, accept: str, body: bytes, coding: bytes | None
) -> None:
    response = get(host, "/static/app.js", {"Accept-Encoding": accept})
    assert response.status == 200
    assert response.header("content-encoding") == coding
    assert response.header("vary") == b"Accept-Encoding"
    assert response.header("content-type") == b"text/javascript; charset=utf-8"
    if coding == b"gzip":
        assert gzip.decompress(response.body) == APP_JS
    else:
        assert response.body == body


def test_each_encoding_has_its_own_etag(host: RunningHost) -> None:
    plain = get(host, "/static/app.js").header("etag")
    br = get(host, "/static/app.js", {"Accept-Encoding": "br"})
    assert plain != br.header("etag")
    assert (
        get(
            host,
            "/static/app.js",
            {"Accept-Encoding": "br", "If-None-Match": br.header("etag").decode()},
        ).status
        == 304
    )
    assert get(host, "/static/app.js", {"If-None-Match": br.header("etag").decode()}).status == 200
    assert get(host, "/static/app.js").header("vary") == b"Accept-Encoding"  # even identity


# ---------------------------------------------------------------- SPA fallback


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        ("/spa/", 200, INDEX),
        ("/spa/users/42", 200, INDEX),
        ("/spa/settings/profile/", 200, INDEX),
        ("/spa/docs/guide.txt", 200, b"read me"),
        ("/spa/missing.js", 404, None),
        ("/spa/assets/missing-0123abcd.css", 404, None),
        ("/static/users/42", 404, None),  # no fallback on this app
        ("/spa/%00", 400, None),  # malformed stays malformed
    ],
)
def test_spa_fallback(host: RunningHost, target: str, status: int, body: bytes | None) -> None:
    response = get(host, target)
    assert response.status == status
    if body == INDEX:
        assert response.header("content-type") == b"text/html; charset=utf-8"
    if body is not None:
        assert response.body == body


def test_fallback_with_extension(serve: Callable[..., RunningHost], site: Path) -> None:
    extra = (
        f'[apps.spa2]\nfolder = "{site}"\n'
        'static = { fallback = "index.html", fallback_with_extension = true }\n'
    )
    text = config(site, extra).replace('"/spa" = "spa"', '"/spa" = "spa"\n"/spa2" = "spa2"')
    host = serve(text, APPS)
    assert get(host, "/spa2/missing.js").body == INDEX


# ------------------------------------------------------------------- safety


CORPUS = [
    "/static/../secret/secret.txt",
    "/static/..%2fsecret%2fsecret.txt",
    "/static/..%2Fsecret%2Fsecret.txt",
    "/static/%2e%2e/secret/secret.txt",
    "/static/%2E%2E/secret/secret.txt",
    "/static/.%2e/secret/secret.txt",
    "/static/%2e./secret/secret.txt",
    "/static/..%5csecret%5csecret.txt",
    "/static/..%5Csecret%5Csecret.txt",
    "/static/%5c..%5csecret",
    "/static/%252e%252e/secret/secret.txt",
    "/static/%252e%252e%252fsecret",
    "/static/%c0%ae%c0%ae/secret/secret.txt",
    "/static/%e0%80%ae%e0%80%ae/secret/secret.txt",
    "/static/%c0%af",
    "/static/..%c0%afsecret",
    "/static/%00",
    "/static/index.html%00.txt",
    "/static/..%00/secret",
    "/static/%ff",
    "/static/%ed%a0%80",
    "/static/%2",
    "/static/%%32%65",
    "/static/%u002e%u002e/secret",
    "/static//etc/passwd",
    "/static///etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/C:/Windows/win.ini",
    "/static/c:%5cwindows%5cwin.ini",
    "/static/link-out",
    "/static/link-rel-out",
    "/static/link-passwd",
    "/static/link-etc/passwd",
    "/static/link-etc/",
    "/static/link-etc/./passwd",
    "/static/link-etc%2fpasswd",
    "/static/dirlink-out/secret.txt",
    "/static/dirlink-out/",
    "/static/sub/link-up/secret.txt",
    "/static/devnull",
    "/static/loop1",
    "/static/loop1/x",
    "/static/dangling",
    "/static/link-dot",
    "/static/.env",
    "/static/%2eenv",
    "/static/.git/config",
    "/static/.git/",
    "/static/pipe",
    "/static/sock",
    "/static/sub/",
    "/static/sub/../../secret/secret.txt",
    "/static/sub/..%2f..%2fsecret%2fsecret.txt",
    "/static/./index.html",
    "/static/%2e",
    "/static/..",
    "/static/...",
    "/static/..;/secret/secret.txt",
    "/static/index.html/",
    "/static/index.html/../secret",
    "/static/index.html%2f",
    "/static%2f..%2fsecret%2fsecret.txt",
    "/static/LINK-OUT",
    "/static/..\\..\\secret\\secret.txt",
]


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 50
    assert len(set(CORPUS)) == len(CORPUS)


@pytest.mark.parametrize("target", CORPUS)
def test_traversal_corpus_never_escapes(host: RunningHost, site: Path, target: str) -> None:
    with host.raw() as raw:
        raw.send(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode("latin-1"))
        response = raw.read_response()
    assert response.status in (400, 404), (target, response.status, response.body[:100])
    assert SECRET not in response.raw
    assert b"root:" not in response.raw
    assert str(site).encode() not in response.raw
    assert str(site.parent).encode() not in response.raw


@pytest.mark.parametrize("target", [*CORPUS[1:10], "/static/link-out", "/static/.env"])
def test_the_corpus_over_h2c_too(host: RunningHost, target: str) -> None:
    """(httpx removes plain `..` segments itself; the encoded forms reach the server.)"""
    with httpx.Client(base_url=host.url(""), http1=False, http2=True, timeout=TIMEOUT) as client:
        response = client.send(httpx.Request("GET", host.url("") + target))
    assert response.status_code in (400, 404)
    assert SECRET not in response.content


def test_a_fifo_does_not_block_the_worker(host: RunningHost) -> None:
    started = time.monotonic()
    assert get(host, "/static/pipe").status == 404
    assert time.monotonic() - started < 2


def test_symlinks_outside_when_allowed(serve: Callable[..., RunningHost], site: Path) -> None:
    text = config(site).replace(
        'static = { fallback = "index.html", cache_control = "" }',
        "static = { follow_symlinks_outside = true, dotfiles = true }",
    )
    host = serve(text, APPS)
    assert get(host, "/spa/link-out").body == SECRET
    assert get(host, "/spa/.env").body == SECRET
    assert get(host, "/spa/../secret/secret.txt").status == 404  # `..` never
    assert get(host, "/static/link-out").status == 404  # the other app keeps its rule


def test_a_file_swapped_for_a_symlink_is_refused(host: RunningHost, site: Path) -> None:
    target = site / "docs" / "guide.txt"
    assert get(host, "/static/docs/guide.txt").status == 200
    target.unlink()
    target.symlink_to(site.parent / "secret" / "secret.txt")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        response = get(host, "/static/docs/guide.txt")
        assert SECRET not in response.body
        if response.status == 404:
            break
        time.sleep(0.1)
    assert response.status == 404


def test_paths_are_opened_nofollow_after_realpath(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final component swapped between realpath and open: O_NOFOLLOW refuses it."""
    real = static_paths.resolve(str(site.resolve()), ("index.html",), dotfiles=False, outside=False)
    assert real is not None
    Path(real).unlink()
    Path(real).symlink_to(site.parent / "secret" / "secret.txt")
    monkeypatch.setattr(os, "stat", lambda path, **kw: os.lstat(site / "app.js"))
    assert static_paths.open_file(real) is None


# -------------------------------------------------------------- fast paths


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.sendfile

    def counting(out: int, fd: int, offset: int | None, count: int) -> int:
        sent = real(out, fd, offset, count)
        calls.append(sent)
        return sent

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


def count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path `os.open` is called with from now on (the host runs in this process)."""
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(
        os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k)
    )
    return opened


def test_a_large_file_goes_through_sendfile(host: RunningHost, sendfile_calls: list[int]) -> None:
    response = get(host, "/static/big.bin")
    assert response.status == 200
    assert response.body == BIG
    assert sum(sendfile_calls) == len(BIG)
    sendfile_calls.clear()
    part = get(host, "/static/big.bin", {"Range": "bytes=1000-1999999"})
    assert part.body == BIG[1000:2000000]
    assert sum(sendfile_calls) == 2000000 - 1000


def test_a_hot_small_file_is_answered_without_a_task(
    host: RunningHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a small file is cached, HTTP/1.1 requests for it (200, 304, 206, HEAD,
    pipelined) are answered by `answer_at_once` in the parser's callback: the ASGI
    callable is not called; HTTP/2 still goes through it."""
    first = get(host, "/static/app.js", {"Accept-Encoding": "identity"})
    assert first.body == APP_JS
    calls: list[str] = []
    through_asgi = static_files.StaticFiles.__call__

    async def counted(self: Any, scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await through_asgi(self, scope, receive, send)

    monkeypatch.setattr(static_files.StaticFiles, "__call__", counted)
    plain = {"Accept-Encoding": "identity"}
    assert get(host, "/static/app.js", plain).body == APP_JS
    etag = first.header("etag").decode()
    assert get(host, "/static/app.js", {**plain, "If-None-Match": etag}).status == 304
    part = get(host, "/static/app.js", {**plain, "Range": "bytes=0-6"})
    assert (part.status, part.body) == (206, APP_JS[:7])
    with host.raw() as raw:
        request = b"GET /static/app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: identity\r\n\r\n"
        head = request.replace(b"GET", b"HEAD", 1)
        raw.send(request + head + request)
        assert raw.read_response().body == APP_JS
        headed = raw.read_response(head=True)
        assert headed.header("content-length") == b"%d" % len(APP_JS)
        assert headed.body == b""
        assert raw.read_response().body == APP_JS
    assert calls == []
    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
        response = client.get(host.url("/static/app.js"), headers=plain)
        assert (response.http_version, response.content) == ("HTTP/2", APP_JS)
    assert calls == ["/static/app.js"]


def test_a_small_file_is_not_read_again(
    host: RunningHost, site: Path, monkeypatch: pytest.MonkeyPatch, sendfile_calls: list[int]
) -> None:
    assert get(host, "/static/app.js").body == APP_JS
    opened = count_opens(monkeypatch)
    for _ in range(5):
        assert get(host, "/static/app.js").body == APP_JS
    assert opened == []  # served from the cache (revalidation opens nothing unless changed)
    assert sendfile_calls == []


def test_sendfile_waits_for_a_slow_reader(
    host: RunningHost, site: Path, sendfile_calls: list[int]
) -> None:
    huge = BIG * 16  # 32 MiB: more than the socket buffers take at once
    (site / "huge.bin").write_bytes(huge)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", host.port()))
    with Raw(sock) as raw:
        raw.send(
            b"GET /static/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /static/app.js HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        time.sleep(0.5)  # the server fills the socket and waits for it to drain
        assert len(sendfile_calls) >= 1
        assert sum(sendfile_calls) < len(huge)
        head = raw.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        pieces, size = [raw.buffer], len(raw.buffer)
        while size < len(huge):  # read fast: Raw's own buffer would copy 32 MiB per read
            piece = sock.recv(1 << 20)
            assert piece
            pieces.append(piece)
            size += len(piece)
        rest = b"".join(pieces)
        assert rest[: len(huge)] == huge
        raw.buffer = rest[len(huge) :]
        assert raw.read_response().body == APP_JS  # the connection goes on
    assert sum(sendfile_calls) == len(huge)
    assert len(sendfile_calls) >= 2  # sent in parts, resumed after each wait


def test_a_client_leaving_mid_file_is_counted_and_the_host_goes_on(
    host: RunningHost, sendfile_calls: list[int]
) -> None:
    sock = host.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.recv(1000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # a reset
    deadline = time.monotonic() + TIMEOUT
    while host.connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.connections() == 0
    assert get(host, "/static/big.bin").body == BIG


@pytest.mark.parametrize("target", ["/static/big.bin", "/static/app.js"])
def test_files_over_h2c(
    host: RunningHost, target: str, sendfile_calls: list[int], site: Path
) -> None:
    whole = (site / target.removeprefix("/static/")).read_bytes()
    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
        plain = {"Accept-Encoding": "identity"}  # app.js has precompressed siblings
        response = client.get(host.url(target), headers=plain)
        assert response.http_version == "HTTP/2"
        assert response.content == whole
        part = client.get(host.url(target), headers={"Range": "bytes=100-", **plain})
        assert part.status_code == 206
        assert part.content == whole[100:]
        head = client.head(host.url(target), headers=plain)
        assert head.headers["content-length"] == str(len(whole))
    assert sendfile_calls == []  # HTTP/2 reads the file into DATA frames


def test_files_over_tls(
    serve: Callable[..., RunningHost], site: Path, tmp_path: Path, sendfile_calls: list[int]
) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    pem = tmp_path / "cert.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(pem)
    text = config(site).replace(
        'bind = "127.0.0.1:0"',
        f'bind = "127.0.0.1:0"\nprotocols = ["http/1.1"]\ntls = {{ certificate = "{pem}" }}',
        1,
    )
    host = serve(text, APPS)
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with httpx.Client(verify=context, timeout=TIMEOUT) as client:
        url = f"https://127.0.0.1:{host.port()}/static/big.bin"
        assert client.get(url).content == BIG
        assert client.get(url, headers={"Range": "bytes=-10"}).content == BIG[-10:]
    assert sendfile_calls == []  # TLS encrypts in user space


def test_an_edit_on_disk_is_served_within_a_second(host: RunningHost, site: Path) -> None:
    page = site / "docs" / "guide.txt"
    assert get(host, "/static/docs/guide.txt").body == b"read me"
    page.write_bytes(b"edited, and longer")
    started = time.monotonic()
    while get(host, "/static/docs/guide.txt").body != b"edited, and longer":
        assert time.monotonic() - started < static_files.REVALIDATE + 1.0
        time.sleep(0.05)
    replaced = site / "docs" / "guide.new"
    replaced.write_bytes(b"replaced by rename")
    replaced.rename(page)
    started = time.monotonic()
    while get(host, "/static/docs/guide.txt").body != b"replaced by rename":
        assert time.monotonic() - started < static_files.REVALIDATE + 1.0
        time.sleep(0.05)


def descriptors_on(path: Path) -> int:
    """This process's descriptors open on `path` (the in-process host is this process),
    including one whose file was renamed over since ("... (deleted)")."""
    names = (str(path), f"{path} (deleted)")
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += str(fd.readlink()) in names
        except OSError:  # closed since listed (the listing's own descriptor)
            continue
    return count


def test_a_hot_large_file_is_neither_opened_nor_read_again(
    host: RunningHost, site: Path, monkeypatch: pytest.MonkeyPatch, sendfile_calls: list[int]
) -> None:
    assert get(host, "/static/big.bin").body == BIG
    opened = count_opens(monkeypatch)
    for _ in range(5):
        assert get(host, "/static/big.bin").body == BIG
    assert opened == []  # sent from the cached descriptor
    assert sum(sendfile_calls) == 6 * len(BIG)
    assert descriptors_on(site / "big.bin") == 1


def test_a_large_file_renamed_over_is_served_whole_and_the_old_one_closed(
    host: RunningHost, site: Path
) -> None:
    def etag_of(path: Path) -> bytes:
        info = path.stat()
        return b'"%x-%x-%x"' % (info.st_ino, info.st_size, info.st_mtime_ns)

    old_etag = etag_of(site / "big.bin")
    assert get(host, "/static/big.bin").body == BIG
    new = bytes(reversed(BIG))
    (site / "big.new").write_bytes(new)
    (site / "big.new").rename(site / "big.bin")
    new_etag = etag_of(site / "big.bin")
    started = time.monotonic()
    while True:  # the old file, whole and with its own ETag, until the next check
        response = get(host, "/static/big.bin")
        if response.body == new:
            break
        assert (response.body, response.header("etag")) == (BIG, old_etag)
        assert time.monotonic() - started < static_files.REVALIDATE + 1.0
        time.sleep(0.05)
    assert response.header("etag") == new_etag
    assert descriptors_on(site / "big.bin") == 1  # the old one closed, the new one kept


def test_a_response_in_flight_keeps_the_file_it_started(
    host: RunningHost, site: Path, sendfile_calls: list[int]
) -> None:
    """The cache lets go of a replaced file while a slow download still sends from it:
    the download ends with the old bytes, whole, and the descriptor closes after it."""
    huge = BIG * 16  # 32 MiB: the socket buffers take a part, the rest waits for the reader
    (site / "huge.bin").write_bytes(huge)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", host.port()))
    with Raw(sock) as raw:
        raw.send(b"GET /static/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        head = raw.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        replacement = site / "huge.new"
        replacement.write_bytes(b"new" * 1000)
        replacement.rename(site / "huge.bin")
        time.sleep(static_files.REVALIDATE + 0.1)
        assert get(host, "/static/huge.bin").body == b"new" * 1000  # the cache moved on
        assert sum(sendfile_calls) < len(huge)  # while the download is still under way
        assert descriptors_on(site / "huge.bin") == 1  # the old file, held by the download
        pieces, size = [raw.buffer], len(raw.buffer)
        while size < len(huge):
            piece = sock.recv(1 << 20)
            assert piece
            pieces.append(piece)
            size += len(piece)
        assert b"".join(pieces)[: len(huge)] == huge
    deadline = time.monotonic() + TIMEOUT
    while descriptors_on(site / "huge.bin") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descriptors_on(site / "huge.bin") == 0  # closed after it; the new file is in memory


def test_open_large_files_are_bounded(
    host: RunningHost, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(static_files, "MAX_OPEN_FILES", 2)
    names = [f"large-{n}.bin" for n in range(4)]
    for n, name in enumerate(names):
        (site / name).write_bytes(BIG[n:] + BIG[:n])
    for _ in range(2):  # the first two stay open, the others are opened per request
        for n, name in enumerate(names):
            assert get(host, f"/static/{name}").body == BIG[n:] + BIG[:n]
    held = [descriptors_on(site / name) for name in names]
    assert held == [1, 1, 0, 0]


def test_stats_count_files_like_any_app(host: RunningHost) -> None:
    get(host, "/static/big.bin")
    get(host, "/static/index.html")
    get(host, "/static/nothing-here")

    async def sample() -> Any:
        return host.worker.stats_sample()[0]

    routes = host.call(sample)
    counts = routes[("web", "files")]
    assert counts[stats.REQUESTS] == 3
    assert counts[stats.BYTES_OUT] >= len(BIG) + len(INDEX)


def test_the_access_log_counts_a_sent_file(
    serve: Callable[..., RunningHost], site: Path, sendfile_calls: list[int]
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvhost.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        host = serve(config(site, "[logging]\naccess_log = true"), APPS)
        assert get(host, "/static/big.bin").body == BIG
        assert get(host, "/static/big.bin", {"Range": "bytes=0-99"}).status == 206
        deadline = time.monotonic() + TIMEOUT
        while len(records) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert sum(sendfile_calls) == len(BIG) + 100  # both went through sendfile
    line = [PLAIN.format(record) for record in records]
    assert f'"GET /static/big.bin HTTP/1.1" 200 {len(BIG)} ' in line[0], line
    assert '"GET /static/big.bin HTTP/1.1" 206 100 ' in line[1], line
    assert all(text.endswith(" files web") for text in line), line


# --------------------------------------------------------------------- curl


curl = run_curl


def test_curl_ranges_conditionals_and_compressed(
    host: RunningHost, site: Path, tmp_path: Path
) -> None:
    url = host.url("/static/big.bin")
    assert curl("--range", "100-199", url).stdout == BIG[100:200]
    out = tmp_path / "partial.bin"
    out.write_bytes(BIG[:12345])  # a download cut short, resumed
    curl("--continue-at", "-", "--output", str(out), url)
    assert out.read_bytes() == BIG
    head = curl("--head", url).stdout.decode()
    etag = next(
        line.split(": ", 1)[1].strip()
        for line in head.splitlines()
        if line.lower().startswith("etag")
    )
    code = curl(
        "--output",
        os.devnull,
        "--write-out",
        "%{http_code}",
        "--header",
        f"If-None-Match: {etag}",
        url,
    )
    assert code.stdout == b"304"
    stamp = tmp_path / "stamp"
    stamp.write_bytes(b"")
    os.utime(stamp, (time.time() + 3600, time.time() + 3600))
    code = curl(
        "--output", os.devnull, "--write-out", "%{http_code}", "--time-cond", str(stamp), url
    )
    assert code.stdout == b"304"
    compressed = curl("--compressed", "--dump-header", "-", host.url("/static/style.css")).stdout
    assert b"content-encoding: gzip" in compressed.lower()
    assert compressed.endswith(b"body{}")

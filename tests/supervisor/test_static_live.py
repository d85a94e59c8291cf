"""Folder apps edited in a running host: applied live, under load, nothing lost.

A real `uvhost run` serves an ASGI app on one listener and a folder on
another. Under keep-alive and new-connection load on both, the folder's
options are edited and a second folder is mounted: the edits are applied,
only the folder's group rolls (the app's worker keeps running), and no
request fails. A folder that does not exist is refused with its position,
and the old folder keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx

from .conftest import TIMEOUT, Host

CONFIG = """
[listeners.web]
bind = "fd:{web}"
app = "main"

[listeners.files]
bind = "fd:{files}"
routes = {{ "/static" = "site" }}

[apps.main]
target = "apps:main"

[apps.site]
folder = "site"
static = {{ cache_control = "no-cache" }}
"""


def test_folder_edits_are_applied_live_under_load(
    tmp_path: Path, launch: Callable[..., Host], listener: Callable[..., object], kit: ModuleType
) -> None:
    kit.write_apps(tmp_path)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.txt").write_bytes(b"alpha")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "b.txt").write_bytes(b"beta")
    web, files = listener(), listener()
    config = tmp_path / "uvhost.toml"
    text = CONFIG.format(web=web.fileno(), files=files.fileno())  # type: ignore[attr-defined]
    config.write_text(text, encoding="utf-8")
    host = launch(config, pass_fds=(web.fileno(), files.fileno()))  # type: ignore[attr-defined]
    host.wait_for("ready:")
    app_address = ("127.0.0.1", kit.port_of(web))
    files_url = f"http://127.0.0.1:{kit.port_of(files)}"
    first = httpx.get(f"{files_url}/static/a.txt", timeout=TIMEOUT)
    assert (first.status_code, first.content) == (200, b"alpha")
    assert first.headers["cache-control"] == "no-cache"
    app_worker = kit.who(app_address)["pid"]

    def file_on_a_new_connection() -> None:
        status, body, _ = kit.raw_request(("127.0.0.1", kit.port_of(files)), "/static/a.txt")
        assert (status, body) == (200, b"alpha"), (status, body)

    with httpx.Client(base_url=files_url, timeout=TIMEOUT) as kept:

        def file_kept_alive() -> None:
            response = kept.get("/static/a.txt")
            assert (response.status_code, response.content) == (200, b"alpha")

        with kit.Load(limit=3000) as load:
            load.add("file, keep-alive", file_kept_alive, pause=0.002)
            load.add("file, new connection", file_on_a_new_connection, pause=0.002)
            load.add("app", lambda: kit.who(app_address), pause=0.002)
            kit.wait_until(lambda: load.total() > 100, "load under way")

            mark = host.mark()
            edited = text.replace('"no-cache"', '"public, max-age=60"').replace(
                '{ "/static" = "site" }', '{ "/static" = "site", "/more" = "more" }'
            )
            kit.save(config, edited + '\n[apps.more]\nfolder = "more"\n')
            applied = host.wait_applied(mark)
            assert "site" in applied, applied

            def new_options_served() -> bool:
                response = httpx.get(f"{files_url}/static/a.txt", timeout=TIMEOUT)
                return response.headers.get("cache-control") == "public, max-age=60"

            kit.wait_until(new_options_served, "the edited Cache-Control")
            more = httpx.get(f"{files_url}/more/b.txt", timeout=TIMEOUT)
            assert (more.status_code, more.content) == (200, b"beta")

            mark = host.mark()
            kit.save(config, edited + '\n[apps.more]\nfolder = "nowhere"\n')
            refused = host.wait_for("reload rejected", since=mark)
            assert "nowhere" in host.output(mark), host.output(mark)
            assert "uvhost.toml:" in host.output(mark), refused
            served_before = load.total()
            kit.wait_until(lambda: load.total() > served_before + 50, "serving after the refusal")
            assert httpx.get(f"{files_url}/more/b.txt", timeout=TIMEOUT).content == b"beta"
        assert load.failures == [], load.failures[:5]
        print(f"folder live edits: {load.served} served, 0 failed")
    assert kit.who(app_address)["pid"] == app_worker  # the app's group never rolled

"""The control socket: `uvhost status`, `uvhost reload` and `uvhost stop` against a real host.

- reload applies a valid edit and reports it; a rejected edit is reported
  with its positioned errors and exit status 1, and the host keeps serving;
- status lists listeners, groups and worker pids; stop drains and exits 0;
- the socket is the owner's alone (0600), and a host with
  `control_socket = "off"` has none, which the commands say plainly.
"""

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from uvhost.config.model import HostSettings
from uvhost.supervisor import control

CONFIG = """
[host]
watch = false
control_socket = "{socket}"

[listeners.web]
bind = "fd:{web}"
app = "main"

[apps.main]
target = "apps:main"
env = {{ GREETING = "{greeting}" }}
"""


def uvhost(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "uvhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start(tmp_path, launch, listener, kit, *, socket):
    web = listener()
    kit.write_apps(tmp_path)
    config = tmp_path / "uvhost.toml"
    render = lambda greeting: CONFIG.format(socket=socket, web=web.fileno(), greeting=greeting)  # noqa: E731
    config.write_text(render("one"), encoding="utf-8")
    host = launch(config, pass_fds=(web.fileno(),))
    host.wait_for("ready:")
    return host, ("127.0.0.1", kit.port_of(web)), render


def test_reload_status_and_stop(tmp_path, launch, listener, kit):
    socket = tmp_path / "control.sock"
    host, web, render = start(tmp_path, launch, listener, kit, socket=socket)
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600

    status = uvhost("status", "--json", "uvhost.toml", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    assert snapshot["host"]["pid"] == host.pid
    assert snapshot["host"]["state"] == "running"
    assert snapshot["host"]["last_reload"] is None
    assert [group["name"] for group in snapshot["groups"]] == ["main"]
    assert snapshot["groups"][0]["workers"]

    kit.save(host.config, render("two"))
    reloaded = uvhost("reload", "uvhost.toml", cwd=tmp_path)
    assert reloaded.returncode == 0, reloaded.stderr
    assert "applied in" in reloaded.stdout
    assert kit.who(web)["greeting"] == "two"  # applied before the command returned

    kit.save(host.config, render("three").replace('app = "main"', 'app = "mian"'))
    rejected = uvhost("reload", "uvhost.toml", cwd=tmp_path)
    assert rejected.returncode == 1
    assert 'uvhost.toml:8:7: error: app "mian" is not defined' in rejected.stdout
    assert "still serving the previous config" in rejected.stdout
    assert kit.who(web)["greeting"] == "two"
    last = json.loads(uvhost("status", "--json", "uvhost.toml", cwd=tmp_path).stdout)
    last_reload = last["host"]["last_reload"]
    assert last_reload["ok"] is False
    assert any('app "mian" is not defined' in error for error in last_reload["errors"])

    stopped = uvhost("stop", "uvhost.toml", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert host.wait_exit() == 0
    assert not socket.exists()
    gone = uvhost("status", "uvhost.toml", cwd=tmp_path)
    assert gone.returncode == 1
    assert "no host is running" in gone.stderr


def test_control_socket_off(tmp_path, launch, listener, kit):
    _host, web, _ = start(tmp_path, launch, listener, kit, socket="off")
    answer = uvhost("reload", "uvhost.toml", cwd=tmp_path)
    assert answer.returncode == 1
    assert '"off"' in answer.stderr
    assert kit.who(web)["greeting"] == "one"


def test_the_default_location_follows_xdg_runtime_dir(tmp_path, monkeypatch):
    config = tmp_path / "uvhost.toml"
    digest = hashlib.sha256(str(config.resolve()).encode()).hexdigest()[:16]
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert control.socket_path(HostSettings(), config) == Path(
        f"/run/user/1000/uvhost/{digest}.sock"
    )
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(tempfile, "tempdir", "/var/tmp")
    assert control.socket_path(HostSettings(), config) == Path(
        f"/var/tmp/uvhost-{os.getuid()}/{digest}.sock"
    )


def test_closing_removes_the_socket_only_while_it_is_the_one_bound(sockets_dir):
    """A newer host that took the path over (it removes a stale socket) keeps its own."""

    async def handle(_command):
        return {"ok": True}

    async def scenario():
        path = sockets_dir / "control.sock"
        first = await control.serve(path, handle, default_location=False)
        first.close()
        assert not path.exists()
        second = await control.serve(path, handle, default_location=False)
        third = await control.serve(path, handle, default_location=False)  # replaces it
        second.close()
        assert path.exists()
        assert await asyncio.to_thread(control.request, path, "status", 5) == {"ok": True}
        third.close()
        third.close()  # again, as every exit path may
        assert not path.exists()
        for server in (first, second, third):
            await server.server.wait_closed()

    asyncio.run(scenario())

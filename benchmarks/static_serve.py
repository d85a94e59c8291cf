"""Start one file server on a folder of bench files, for peerbench's static scenarios.

    PYTHON static_serve.py SERVER PORT

SERVER is `uvhost`, `starlette` (Starlette's StaticFiles on Uvicorn), `granian`
(Granian's own static mount) or `nginx` / `nginx-sendfile` (one worker: the C
ceiling, without and with sendfile). Run it with the interpreter whose
packages the server needs: `.venv/bin/python` for uvhost, `/opt/peers/bin/python`
for the peers (see static-peers.json).

Why a launcher rather than a command line per server: every server must serve
the same bytes under the same URLs (`/static/small.bin`, 1 KiB, and
`/static/large.bin`, 1 MiB), and the folder and the servers' configs are
written here, once per run, into /tmp/uvhost-static-bench-PORT/ (removed by the
next run on that port, never shared between servers). The launcher execs the
server, so the PID peerbench started is the server's and SIGTERM stops it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SMALL = 1024
LARGE = 1024 * 1024
MOUNT = "/static"

NGINX = """\
{user}worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile {sendfile};
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path body;
    etag on;
    types {{ application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        location {mount}/ {{ alias {files}/; }}
        location = /hello {{ default_type text/plain; return 200 "Hello, world"; }}
    }}
}}
"""

UVHOST = """\
[host]
workers = 1

[logging]
level = "warning"
access_log = false

[listeners.bench]
bind = "127.0.0.1:{port}"
routes = {{ "{mount}" = "files" }}

[apps.files]
folder = "{files}"
"""

STARLETTE = '''\
"""Starlette's StaticFiles on the bench folder, mounted where the other servers serve it."""

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

app = Starlette(routes=[Mount("{mount}", StaticFiles(directory="{files}"))])
'''


def write_files(folder: Path) -> Path:
    """The bench files: bytes that do not compress to nothing, the same on every run."""
    files = folder / "files"
    files.mkdir(parents=True)
    pattern = bytes(range(256))
    (files / "small.bin").write_bytes((pattern * (SMALL // 256 + 1))[:SMALL])
    (files / "large.bin").write_bytes((pattern * (LARGE // 256 + 1))[:LARGE])
    return files


def main() -> None:
    server, port = sys.argv[1], int(sys.argv[2])
    folder = Path(f"/tmp/uvhost-static-bench-{port}")
    shutil.rmtree(folder, ignore_errors=True)
    files = write_files(folder)
    os.chmod(folder, 0o755)  # nginx's workers read as another user unless we are root
    values = {"port": port, "files": files, "mount": MOUNT}
    if server == "uvhost":
        (folder / "uvhost.toml").write_text(UVHOST.format(**values))
        argv = [sys.executable, "-m", "uvhost", "run", str(folder / "uvhost.toml")]
    elif server == "starlette":
        (folder / "starlette_static.py").write_text(STARLETTE.format(**values))
        os.chdir(folder)
        argv = [sys.executable, "-m", "uvicorn", "starlette_static:app", "--host", "127.0.0.1",
                "--port", str(port), "--http", "httptools", "--loop", "uvloop",
                "--log-level", "warning", "--no-access-log"]  # fmt: skip
    elif server == "granian":
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--runtime-threads", "1",
                "--blocking-threads", "1", "--loop", "uvloop", "--no-access-log",
                "--log-level", "warning", "--static-path-route", MOUNT,
                "--static-path-mount", str(files), "apps:hello"]  # fmt: skip
    elif server in {"nginx", "nginx-sendfile"}:
        (folder / "body").mkdir()
        user = "user root;\n" if os.geteuid() == 0 else ""
        sendfile = "on" if server == "nginx-sendfile" else "off"
        conf = NGINX.format(user=user, sendfile=sendfile, **values)
        (folder / "nginx.conf").write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-p", str(folder), "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"]
    else:
        sys.exit(f"static_serve.py: unknown server {server!r}")
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()

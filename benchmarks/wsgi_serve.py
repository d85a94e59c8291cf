"""Start one WSGI server on an app of wsgi_apps.py, for peerbench's WSGI scenarios.

    PYTHON wsgi_serve.py SERVER PORT APP

SERVER is `uvhost`, `gunicorn-gthread` (1 worker, 8 threads), `gunicorn-sync`
(1 worker, one request at a time) or `granian` (`--interface wsgi`, 1 worker,
8 blocking threads: the Python threads that run the app, as uvhost's
`threads`); APP is `hello`, `json` or `flask_hello`. Run it with the
interpreter whose packages the server needs: `.venv/bin/python` for uvhost,
`/opt/peers/bin/python` for the peers (see wsgi-peers.json).

Why a launcher rather than a command line per server: the settings that make
the rows comparable (one worker, 8 app threads, no access log, loopback only)
are written once, here, side by side, and a run can be repeated by hand with
the same line peerbench ran. The launcher execs the server, so the PID
peerbench started is the server's and SIGTERM stops it; the servers are
started in this folder, so every one imports the same `wsgi_apps`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREADS = 8
APPS = ("hello", "json", "flask_hello")


def command(server: str, port: int, app: str) -> list[str]:
    """The argv that starts `server` on 127.0.0.1:`port` serving `wsgi_apps:app`."""
    target = f"wsgi_apps:{app}"
    if server == "uvhost":
        os.environ.update(PEERBENCH_PORT=str(port), PEERBENCH_APP=app)
        return [sys.executable, "-m", "uvhost", "run", str(HERE / "uvhost-wsgi-bench.toml")]
    if server in {"gunicorn-gthread", "gunicorn-sync"}:
        worker = ["-k", "gthread", "--threads", str(THREADS)]
        if server == "gunicorn-sync":
            worker = ["-k", "sync"]
        return [sys.executable, "-m", "gunicorn", *worker, "-w", "1",
                "-b", f"127.0.0.1:{port}", "--log-level", "warning", target]  # fmt: skip
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--runtime-threads", "1",
                "--blocking-threads", str(THREADS), "--no-access-log",
                "--log-level", "warning", target]  # fmt: skip
    sys.exit(f"wsgi_serve.py: unknown server {server!r}")


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[3] not in APPS:
        sys.exit(f"usage: wsgi_serve.py SERVER PORT {{{','.join(APPS)}}}")
    server, port, app = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.chdir(HERE)
    argv = command(server, port, app)
    os.execv(argv[0], argv)  # noqa: S606 - exec: the PID peerbench started is the server


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Sets up what the side-by-side benchmarks need, outside uvhost's own
# environment: Uvicorn (the baseline) and Gunicorn (to run Uvicorn under a
# supervisor process, as uvhost always runs), Hypercorn and Granian (the
# HTTP/2 peers of h2bench.py) in their own virtual environment, and wrk and
# h2load (Debian's nghttp2-client) and nginx (one worker: the C ceiling of the
# static-file scenarios, static-peers.json) from the system packages; Flask for
# the WSGI scenarios (wsgi-peers.json: Gunicorn and Granian serve the same
# Flask app as uvhost). None of them is
# ever a dependency of uvhost. Safe to run again: it installs only what is
# missing and leaves what is there.
#   PEERS=/opt/peers benchmarks/setup-peers.sh
set -euo pipefail
PEERS=${PEERS:-/opt/peers}
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if ((${#missing[@]})); then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
[ -x "$PEERS/bin/python" ] || python3 -m venv "$PEERS"
# Hypercorn speaks h2 through the h2 library it depends on; uvloop is its
# --worker-class. Granian 2.x: its own Rust HTTP/2, uvloop for --loop.
"$PEERS/bin/pip" install -q "uvicorn[standard]" uvloop httptools websockets starlette gunicorn \
    "hypercorn[uvloop]" "granian[uvloop]>=2,<3" flask
echo "peers ready in $PEERS: $("$PEERS/bin/uvicorn" --version)," \
    "hypercorn $("$PEERS/bin/python" -c 'import importlib.metadata as m; print(m.version("hypercorn"))')," \
    "$("$PEERS/bin/granian" --version 2>&1 | tail -n1)," \
    "$(h2load --version 2>&1 | head -n1)," \
    "$(PATH=$PATH:/usr/sbin nginx -v 2>&1)"

#!/usr/bin/env bash
# Sets up what the side-by-side benchmark needs, outside uvhost's own
# environment: Uvicorn (the baseline) in its own virtual environment, and wrk
# from the system packages. Uvicorn is never a dependency of uvhost.
#   PEERS=/opt/peers benchmarks/setup-peers.sh
set -euo pipefail
PEERS=${PEERS:-/opt/peers}
if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk
fi
python3 -m venv "$PEERS"
"$PEERS/bin/pip" install -q "uvicorn[standard]" uvloop httptools websockets starlette
echo "peers ready in $PEERS: $("$PEERS/bin/uvicorn" --version)"

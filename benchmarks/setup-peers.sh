#!/usr/bin/env bash
# Sets up what the side-by-side benchmark needs, outside uvhost's own
# environment: Uvicorn (the baseline) and Gunicorn (to run Uvicorn under a
# supervisor process, as uvhost always runs) in their own virtual environment,
# and wrk from the system packages. Neither is ever a dependency of uvhost.
#   PEERS=/opt/peers benchmarks/setup-peers.sh
set -euo pipefail
PEERS=${PEERS:-/opt/peers}
if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk
fi
python3 -m venv "$PEERS"
"$PEERS/bin/pip" install -q "uvicorn[standard]" uvloop httptools websockets starlette gunicorn
echo "peers ready in $PEERS: $("$PEERS/bin/uvicorn" --version)"

#!/usr/bin/env bash
# Side-by-side run of uvhost and Uvicorn with the shared peerbench harness.
#   benchmarks/setup-peers.sh            # once: Uvicorn and Gunicorn in /opt/peers, wrk
#   benchmarks/run.sh                    # the issue's five scenarios, 3 rounds
#   benchmarks/run.sh --only-scenarios hello-64 --rounds 5 --markdown /tmp/t.md
# Extra arguments go to peerbench.py. Traffic stays on 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bench=${BENCH:-$root/../shared/bench}
peers=${PEERS:-/opt/peers}
uvhost=${UVHOST:-$root/.venv/bin/uvhost}

exec python3 "$bench/peerbench.py" --cwd "$bench" --baseline uvicorn \
  --server uvicorn="$peers/bin/uvicorn apps:{app} --host 127.0.0.1 --port {port} --http httptools --loop uvloop --log-level warning --no-access-log" \
  --server gunicorn-uvicorn="$peers/bin/gunicorn --worker-class uvicorn.workers.UvicornWorker --workers 1 --bind 127.0.0.1:{port} --log-level warning apps:{app}" \
  --server uvhost="$uvhost run $here/uvhost-bench.toml" \
  --scenario name=hello-64,app=hello,path=/hello,connections=64 \
  --scenario name=json-64,app=json,path=/json,connections=64 \
  --scenario name=stream-64,app=stream,path=/stream,connections=64 \
  --scenario name=echo-64KiB-16,app=echo,path=/echo,connections=16,script=post_64k.lua \
  --scenario name=big-1MiB-16,app=big,path=/big,connections=16 \
  "$@"

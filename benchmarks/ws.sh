#!/usr/bin/env bash
# WebSocket echo side by side: uvhost vs Uvicorn (websockets-sansio), with the
# shared wsbench.py client (16 connections, small text messages). Compare the
# server µs per echoed message: the Python client saturates its own core near
# Uvicorn's rate, so messages/s alone cannot show the difference.
#   benchmarks/ws.sh [--rounds 5 ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bench=${BENCH:-$root/../shared/bench}
peers=${PEERS:-/opt/peers}
uvhost=${UVHOST:-$root/.venv/bin/uvhost}

exec python3 "$bench/peerbench.py" --cwd "$bench" --baseline uvicorn-sansio --warmup 1 \
  --server uvicorn-sansio="$peers/bin/uvicorn apps:{app} --host 127.0.0.1 --port {port} --http httptools --loop uvloop --ws websockets-sansio --log-level warning --no-access-log" \
  --server uvhost="$uvhost run $here/uvhost-bench.toml" \
  --scenario "name=ws-echo-16x20k,app=ws_echo,path=/ws,connections=16,cmd=$peers/bin/python {here}/wsbench.py --port {port} --path {path} --connections {connections} --messages 20000,warmup_cmd=$peers/bin/python {here}/wsbench.py --port {port} --path {path} --connections {connections} --messages 2000" \
  "$@"

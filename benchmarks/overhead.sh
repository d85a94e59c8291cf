#!/usr/bin/env bash
# What the request counters cost: uvhost as built beside uvhost with its counters
# stubbed out (benchmarks/counters-off/sitecustomize.py), same config, same harness.
#   benchmarks/overhead.sh                         # hello-64 and json-64, 5 rounds
#   benchmarks/overhead.sh --markdown /tmp/o.md    # extra arguments go to peerbench.py
# Traffic stays on 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bench=${BENCH:-$root/../shared/bench}
uvhost=${UVHOST:-$root/.venv/bin/uvhost}

exec python3 "$bench/peerbench.py" --cwd "$bench" --baseline counters-off --rounds 5 \
  --server counters-off="env PYTHONPATH=$bench:$here/counters-off $uvhost run $here/uvhost-bench.toml" \
  --server counters-on="$uvhost run $here/uvhost-bench.toml" \
  --scenario name=hello-64,app=hello,path=/hello,connections=64 \
  --scenario name=json-64,app=json,path=/json,connections=64 \
  "$@"

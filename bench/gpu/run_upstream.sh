#!/usr/bin/env bash
# bench/upstream.py on the lent GPU machine, after run_device.sh built (or unpacked) the CUDA
# llama-server into /tmp/ll-peers on this same warm machine:
#
#   bash bench/gpu/run_upstream.sh [MODEL] [REPS]
#
# llama-server computes on the GPU; LocalLoom's front server (no local model) proxies to it.
# The results land in $OUT/upstream-cuda.json (copy to bench/results/ and redraw the section).
set -uo pipefail
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
SITE=/tmp/ll-site
PEERS=/tmp/ll-peers
[ -x "$PEERS/llama-server" ] || { echo "no $PEERS/llama-server: run run_device.sh first"; exit 1; }
export PYTHONPATH=$PWD/src:$PWD:$SITE
export LD_LIBRARY_PATH=$PEERS:$SITE/llama_cpp/lib:${LD_LIBRARY_PATH:-}
export LOCALLOOM_LLAMA_SERVER=$PEERS/llama-server
python3 -m bench.upstream --model "${1:-tinyllama}" --gpu-layers 99 --threads 8 \
  --reps "${2:-5}" --doc "$OUT/PERFORMANCE-upstream.md"
cp bench/results/upstream-cuda.json "$OUT/" 2>/dev/null

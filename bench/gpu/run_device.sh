#!/usr/bin/env bash
# The GPU benchmark on the lent GPU machine (H100 or H200; docs/GPU.md). Run there from the repository root:
#
#   bash bench/gpu/run_device.sh MODELS [DEADLINE_S]
#
# MODELS: comma-separated (tinyllama,llama2-7b). DEADLINE_S: seconds after start by which
# everything must be done (default 570, inside the tool's 600 s limit).
#
# Carried from here (python bench/gpu/prepare.py makes them): .whl/ (wheels the image lacks)
# and bench/.work/gpu/ (the stripped sdist, PIN, and after a first run: artifacts/ and
# results-cuda.json). Steps:
#   1. install the wheels into /tmp/ll-site;
#   2. llama-cpp-python with CUDA and the peers (llama-bench, llama-batched-bench) — reused
#      when this machine is still warm, unpacked from carried artifacts/, or built: the wheel
#      exactly as docs/GPU.md says (CMAKE_ARGS="-DGGML_CUDA=on ...") in a kept build tree,
#      then the peers from that same tree (one CUDA compile for both; llama-server too,
#      where it builds); a fresh build also leaves $OUT/artifacts.part-* to carry next time
#      (packed after the benchmark, so the packing does not load the CPU while it measures);
#   3. python -m bench --cuda --models MODELS --out $OUT, stopped before the deadline.
set -uo pipefail
export PYTHONUNBUFFERED=1
T0=$SECONDS
DEADLINE=${2:-570}
MODELS=${1:-tinyllama,llama2-7b}
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
GPU=bench/.work/gpu
PIN=$(cat "$GPU/PIN")
SRC=bench/.work/llama_cpp_python-$PIN
BUILD=$PWD/$SRC/build-cuda-wheel
SITE=/tmp/ll-site
PEERS=/tmp/ll-peers
JOBS=$(nproc)
log() { echo "[run_device $((SECONDS - T0)) s] $*"; }
left() { echo $((DEADLINE - (SECONDS - T0))); }

log "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
log "python: $(python3 -V), $(nproc) cores"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .whl/*.whl || { log "wheel install failed"; exit 1; }
export PYTHONPATH=$PWD/src:$PWD:$SITE
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
log "nvcc: $(nvcc --version | tail -n 2 | head -n 1)"

build() {
  mkdir -p bench/.work
  [ -d "$SRC" ] || tar -xzf "$GPU/llama_cpp_python-$PIN-stripped.tar.gz" -C bench/.work
  export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90"
  export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS
  log "pip wheel llama-cpp-python==$PIN with $CMAKE_ARGS (build tree kept in $BUILD)"
  if ! python3 -m pip wheel -q --no-deps --no-build-isolation --no-cache-dir -w /tmp/ll-wheel \
      -C build-dir="$BUILD" "$SRC" >/tmp/ll-wheel.log 2>&1; then
    tail -n 60 /tmp/ll-wheel.log; gzip -c /tmp/ll-wheel.log >"$OUT/wheel-build.log.gz"
    log "wheel build FAILED"; return 1
  fi
  python3 -m pip install -q --no-index --no-deps --upgrade --target "$SITE" /tmp/ll-wheel/*.whl
  log "wheel built: $(ls -s --block-size=M /tmp/ll-wheel)"
  # The same tree, tools switched on: only the peers' own sources compile now. mtmd moves
  # from llama-cpp-python's CMakeLists to llama.cpp's tools/ (two adds of it would clash).
  if cmake -S "$SRC" -B "$BUILD" -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=ON \
      -DLLAMA_BUILD_SERVER=OFF >/tmp/ll-peers.log 2>&1 &&
     cmake --build "$BUILD" -j "$JOBS" --target llama-bench llama-batched-bench \
      >>/tmp/ll-peers.log 2>&1; then
    BIN=$BUILD/bin
  else
    tail -n 40 /tmp/ll-peers.log
    log "reusing the wheel's tree failed; building the peers standalone (a second CUDA compile)"
    cmake -S "$SRC/vendor/llama.cpp" -B "$SRC/vendor/llama.cpp/build-cuda" -G Ninja \
      -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      >>/tmp/ll-peers.log 2>&1 &&
    cmake --build "$SRC/vendor/llama.cpp/build-cuda" -j "$JOBS" \
      --target llama-bench llama-batched-bench >>/tmp/ll-peers.log 2>&1 ||
      { tail -n 60 /tmp/ll-peers.log; log "peer build FAILED"; return 1; }
    BIN=$SRC/vendor/llama.cpp/build-cuda/bin
  fi
  # llama-server (the HTTP peer) from the same tree; its failure costs only the HTTP section.
  if cmake -S "$SRC" -B "$BUILD" -DLLAMA_BUILD_SERVER=ON >>/tmp/ll-peers.log 2>&1 &&
     cmake --build "$BUILD" -j "$JOBS" --target llama-server >>/tmp/ll-peers.log 2>&1; then
    log "llama-server built"
  else
    tail -n 30 /tmp/ll-peers.log; log "llama-server did not build: no HTTP comparison"
  fi
  mkdir -p "$PEERS"
  cp "$BIN/llama-bench" "$BIN/llama-batched-bench" "$PEERS/"
  [ -x "$BIN/llama-server" ] && cp "$BIN/llama-server" "$PEERS/"
  # Libraries the wheel does not ship (llama-common when shared); the rest come from the wheel.
  for lib in "$BIN"/lib*.so*; do
    [ -e "$SITE/llama_cpp/lib/$(basename "$lib")" ] || cp -P "$lib" "$PEERS/"
  done
  log "peers built: $(ls "$PEERS" | tr '\n' ' ')"
  FRESH=1
}

save_artifacts() {
  # The CUDA llama_cpp package and the peers, split into parts the tool brings back; carried
  # as bench/.work/gpu/artifacts/ they spare the next call the build.
  python3 bench/gpu/artifacts.py pack "$SITE" "$PEERS" "$OUT" | while read -r l; do log "$l"; done
}

unpack_artifacts() {
  python3 bench/gpu/artifacts.py unpack "$GPU/artifacts" "$SITE" "$PEERS"
}

FRESH=0
if [ -f "$SITE/llama_cpp/__init__.py" ] && [ -x "$PEERS/llama-bench" ] &&
   ls "$SITE"/llama_cpp/lib/libggml-cuda* >/dev/null 2>&1; then
  log "reusing the CUDA build already on this warm machine"
elif ls "$GPU"/artifacts/artifacts.part-* >/dev/null 2>&1; then
  log "unpacking carried artifacts"; unpack_artifacts || { log "unpack FAILED"; exit 1; }
else
  build || exit 1
fi
mkdir -p "$SRC/vendor/llama.cpp" && cp "$GPU/LLAMA_CPP_COMMIT" "$SRC/vendor/llama.cpp/" 2>/dev/null

export LD_LIBRARY_PATH=$PEERS:$SITE/llama_cpp/lib:${LD_LIBRARY_PATH:-}
export LOCALLOOM_BENCH_PEERS=$PEERS
python3 -c "import llama_cpp as l; print('llama_cpp', l.__version__, 'gpu offload:',
  bool(l.llama_supports_gpu_offload()))" || exit 1
"$PEERS/llama-bench" --help >/dev/null 2>&1 || { log "llama-bench does not start"; exit 1; }

# A fresh build is packed after the benchmark: keep time for that.
PACK_S=0
[ "$FRESH" = 1 ] && PACK_S=${PACK_S_OVERRIDE:-80}
REMAIN=$(( $(left) - PACK_S ))
if [ "$REMAIN" -lt 90 ]; then log "only $REMAIN s left: no benchmark in this call"; exit 0; fi
log "python -m bench --cuda --models $MODELS ($REMAIN s left)"
PREV=()
[ -f "$GPU/results-cuda.json" ] && PREV=(--merge-results "$GPU/results-cuda.json")
# Sections stop starting a minute before the end; timeout is the hard stop (results are
# saved after every section).
timeout -k 15 --signal=INT $((REMAIN - 20)) python3 -m bench --cuda --models "$MODELS" --out "$OUT" \
  --budget-from-start --budget-minutes "$(python3 -c "print(max(0.5, ($REMAIN - 70) / 60))")" "${PREV[@]}"
log "bench done (exit $?)"
[ "$FRESH" = 1 ] && save_artifacts
log "done; files in \$OUT: $(ls "$OUT" | tr '\n' ' ')"

#!/usr/bin/env bash
# Wisp beside llama.cpp on the very same GGUF and adapter (issue 18): prompt processing
# (pp) and text generation (tg) in tokens/s, and generation's share of the adapter's
# bandwidth, in one table. The model is a synthetic one of a named shape (random
# weights, so no download) that `wisp bench --save-gguf` writes once into the cache;
# llama.cpp's own `llama-bench` then reads that file, and `wisp bench` reads it too.
#
#   scripts/bench-vs-llamacpp.sh [options]
#
#   --synthetic NAME:QUANT  the model's shape and weight type (default llama-7b:q4_0;
#                           see `wisp bench --help` for the names)
#   -m MODEL                a GGUF file or a known model's name instead of a synthetic one
#   -p N                    prompt tokens of the pp test (default 512)
#   -n N                    generated tokens of the tg test (default 128)
#   -r N                    repetitions of each test (default 3)
#   --backends LIST         llama.cpp backends, comma-separated: vulkan, cpu (default vulkan)
#   --out DIR               results folder (default target/bench-vs-llamacpp/DATE)
#   --build-only            only build (or find) llama-bench and wisp, then stop
#   --no-build              use target/release/wisp and the cached llama-bench as they are
#
# llama-bench is built for each backend from the llama.cpp sources of the
# llama-cpp-python sdist and cached, as scripts/lib/llama_cpp.sh describes (static, so
# the binary in <cache>/llama.cpp-<version>/bin/ can be copied to another machine of
# the same architecture). Both runtimes take the adapter they choose by default: the
# discrete GPU where there is one, else lavapipe (llama.cpp's Vulkan backend takes its
# first device). The bandwidth column is Wisp's streaming-read probe on its adapter;
# the CPU backend's row is measured against it too, which only means something where
# that adapter is the CPU.
#
# Output: DIR/wisp.json (`wisp bench -o json`), DIR/llama-BACKEND.json (`llama-bench
# -o json`), their stderr in DIR/*.log, and DIR/summary.md (also printed).
#
# Environment: WISP_CACHE_DIR (cache folder, as for wisp), CARGO_TARGET_DIR,
# LLAMA_CPP_PYTHON_VERSION (default 0.3.36), BENCH_THREADS (llama-bench CPU threads,
# default: the number of cores).
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit

SYNTHETIC=llama-7b:q4_0
MODEL=""
PROMPT=512
GEN=128
REPS=3
BACKENDS=vulkan
OUT=""
BUILD_ONLY=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --synthetic) SYNTHETIC=$2; shift ;;
        -m) MODEL=$2; shift ;;
        -p) PROMPT=$2; shift ;;
        -n) GEN=$2; shift ;;
        -r) REPS=$2; shift ;;
        --backends) BACKENDS=$2; shift ;;
        --out) OUT=$2; shift ;;
        --build-only) BUILD_ONLY=1 ;;
        --no-build) BUILD=0 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-vs-llamacpp.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log()  { echo "bench-vs-llamacpp: $*" >&2; }
die()  { echo "bench-vs-llamacpp: error: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# shellcheck source=lib/llama_cpp.sh
. "$ROOT/scripts/lib/llama_cpp.sh"
WISP="${CARGO_TARGET_DIR:-$ROOT/target}/release/wisp"
THREADS=${BENCH_THREADS:-$(nproc)}
for n in "$PROMPT" "$GEN" "$REPS"; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "-p, -n and -r take a number of tokens or repetitions, not '$n'"
done
IFS=, read -r -a BACKEND_LIST <<<"$BACKENDS"
for b in "${BACKEND_LIST[@]}"; do
    case "$b" in
        vulkan|cpu) ;;
        *) die "unknown llama.cpp backend '$b' (vulkan, cpu)" ;;
    esac
done

# ------------------------------------------------------------------ builds
for b in "${BACKEND_LIST[@]}"; do
    if [ "$BUILD" -eq 1 ]; then build_llama llama-bench "$b"; fi
    [ -x "$LLAMA_BIN/llama-bench-$b" ] || die "no $LLAMA_BIN/llama-bench-$b: run without --no-build"
done
if [ "$BUILD" -eq 1 ]; then
    # shellcheck disable=SC1091
    if ! have cargo && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
    step_is "building wisp" "cargo build --release -p wisp"
    log "cargo build --release -p wisp"
    cargo build --release -p wisp >&2
fi
[ -x "$WISP" ] || die "no $WISP: build it with cargo build --release -p wisp"
if [ "$BUILD_ONLY" -eq 1 ]; then exit 0; fi

# ------------------------------------------------------------------ the model
OUT=${OUT:-$ROOT/target/bench-vs-llamacpp/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
if [ -n "$MODEL" ]; then
    step_is "finding the model file" "$WISP fetch $MODEL"
    if [ -f "$MODEL" ]; then GGUF=$MODEL; else GGUF=$("$WISP" fetch "$MODEL" 2>/dev/null | tail -n 1); fi
    [ -f "$GGUF" ] || die "no GGUF file for '$MODEL' (wisp fetch printed '$GGUF')"
else
    # One file per shape, written once: later runs (and llama-bench) read the same weights.
    GGUF=$CACHE_DIR/synthetic/${SYNTHETIC//[:\/]/-}.gguf
    if [ ! -f "$GGUF" ]; then
        mkdir -p "$(dirname "$GGUF")"
        step_is "writing the synthetic model" "$WISP bench --synthetic $SYNTHETIC --save-gguf $GGUF"
        log "writing $SYNTHETIC to $GGUF"
        "$WISP" bench --synthetic "$SYNTHETIC" --save-gguf "$GGUF.tmp" >&2
        mv "$GGUF.tmp" "$GGUF"
    fi
fi
log "model: $GGUF"

# ------------------------------------------------------------------ runs
step_is "wisp bench" "$WISP bench -m $GGUF -p $PROMPT -n $GEN -r $REPS -o json"
log "wisp bench -p $PROMPT -n $GEN -r $REPS"
"$WISP" bench -m "$GGUF" -p "$PROMPT" -n "$GEN" -r "$REPS" -o json \
    >"$OUT/wisp.json" 2>"$OUT/wisp.log" || { tail -n 20 "$OUT/wisp.log" >&2; false; }
for b in "${BACKEND_LIST[@]}"; do
    args=(-m "$GGUF" -p "$PROMPT" -n "$GEN" -r "$REPS" -o json -t "$THREADS")
    env=()
    # Every layer on the GPU for Vulkan, whose backend skips CPU-type devices
    # (lavapipe) unless they are named; the CPU backend with none.
    if [ "$b" = vulkan ]; then args+=(-ngl 99); env=(GGML_VK_VISIBLE_DEVICES=0); else args+=(-ngl 0); fi
    step_is "llama-bench ($b)" "${env[*]:+${env[*]} }$LLAMA_BIN/llama-bench-$b ${args[*]}"
    log "llama-bench ($b) -p $PROMPT -n $GEN -r $REPS"
    env "${env[@]}" "$LLAMA_BIN/llama-bench-$b" "${args[@]}" >"$OUT/llama-$b.json" 2>"$OUT/llama-$b.log" \
        || { tail -n 20 "$OUT/llama-$b.log" >&2; false; }
    # Without a Vulkan device -ngl is ignored and it runs on its CPU backend under the
    # Vulkan name: refuse that.
    if [ "$b" = vulkan ] && grep -q "ggml_vulkan: No devices found" "$OUT/llama-$b.log"; then
        die "llama-bench (vulkan) found no Vulkan device (see $OUT/llama-$b.log)"
    fi
done

step_is "the summary" "python3 scripts/bench_vs_llamacpp.py $OUT"
python3 "$ROOT/scripts/bench_vs_llamacpp.py" "$OUT" | tee "$OUT/summary.md"
log "results in $OUT"

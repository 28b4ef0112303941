#!/usr/bin/env bash
# Serving benchmark (issue 16): total output tok/s, time to first token and
# inter-token latency (p50/p99) at 1, 4, 16 and 64 concurrent streaming clients, for
# `wisp serve` and, on the same machine in the same run, llama.cpp's llama-server on
# Vulkan (the same adapter as Wisp when there is no GPU: lavapipe) and on its own CPU
# backend. Each server is started here on loopback, loaded by scripts/bench_serve.py
# (C clients, each sending its requests back to back, a fixed number of requests per
# level so that every level ends by itself) and stopped again.
#
#   scripts/bench-serve.sh [options] [-- extra `wisp serve` flags]
#
#   --servers LIST       comma-separated, run in this order (default wisp,llama-cpu,llama-vulkan)
#   --levels LIST        concurrent clients per level (default 1,4,16,64)
#   --max-tokens N       tokens asked for per request (default 32)
#   --requests-per-client N, --min-requests N
#                        requests per level: max(N*C, MIN) (defaults 2 and 8)
#   --level-timeout S    give up a level after S seconds (default 1800; what was
#                        done by then is reported, marked as cut short)
#   --parallel N         slots per server (default 64: the highest level)
#   --ctx N              context per slot (default 512: the longest prompt + max-tokens, with room)
#   -m MODEL             a wisp model name or GGUF path (default smollm2); llama-server
#                        gets the very GGUF file wisp uses
#   --out DIR            results folder (default target/bench-serve/DATE)
#   --build-only         only build (or find) llama-server, then stop
#   --no-build           do not run cargo build (use target/release/wisp as it is)
#
# llama-server is built for each backend (CPU, Vulkan) from the llama.cpp sources of
# the llama-cpp-python sdist and cached, as scripts/lib/llama_cpp.sh describes.
#
# Output: DIR/SERVER.json and DIR/SERVER.md per server, DIR/SERVER.log (its stderr),
# and DIR/summary.md with all servers side by side (also printed).
#
# Environment: WISP_CACHE_DIR (cache folder, as for wisp), CARGO_TARGET_DIR,
# LLAMA_CPP_PYTHON_VERSION (default 0.3.36), BENCH_THREADS (llama-server CPU
# threads, default: the number of cores).
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit

SERVERS=wisp,llama-cpu,llama-vulkan
LEVELS=1,4,16,64
MAX_TOKENS=32
PER_CLIENT=2
MIN_REQUESTS=8
LEVEL_TIMEOUT=1800
PARALLEL=64
CTX=512
MODEL=smollm2
OUT=""
BUILD_ONLY=0
CARGO_BUILD=1
WISP_EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift ;;
        --levels) LEVELS=$2; shift ;;
        --max-tokens) MAX_TOKENS=$2; shift ;;
        --requests-per-client) PER_CLIENT=$2; shift ;;
        --min-requests) MIN_REQUESTS=$2; shift ;;
        --level-timeout) LEVEL_TIMEOUT=$2; shift ;;
        --parallel) PARALLEL=$2; shift ;;
        --ctx) CTX=$2; shift ;;
        -m) MODEL=$2; shift ;;
        --out) OUT=$2; shift ;;
        --build-only) BUILD_ONLY=1 ;;
        --no-build) CARGO_BUILD=0 ;;
        --) shift; WISP_EXTRA=("$@"); break ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-serve.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log()  { echo "bench-serve: $*" >&2; }
die()  { echo "bench-serve: error: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# shellcheck source=lib/llama_cpp.sh
. "$ROOT/scripts/lib/llama_cpp.sh"
VENV_PY=$CACHE_DIR/test-venv/bin/python
WISP="${CARGO_TARGET_DIR:-$ROOT/target}/release/wisp"
THREADS=${BENCH_THREADS:-$(nproc)}

IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
for s in "${SERVER_LIST[@]}"; do
    case "$s" in
        wisp|llama-vulkan|llama-cpu) ;;
        *) die "unknown server '$s' (wisp, llama-vulkan, llama-cpu)" ;;
    esac
done
wants() { [[ ",$SERVERS," == *",$1,"* ]]; }
WANT_LLAMA=0
if wants llama-vulkan || wants llama-cpu; then WANT_LLAMA=1; fi

if [ "$WANT_LLAMA" -eq 1 ]; then
    if wants llama-cpu; then build_llama llama-server cpu; fi
    if wants llama-vulkan; then build_llama llama-server vulkan; fi
fi
if [ "$BUILD_ONLY" -eq 1 ]; then exit 0; fi

# ------------------------------------------------------------ wisp, model, client
if wants wisp && [ "$CARGO_BUILD" -eq 1 ]; then
    # shellcheck disable=SC1091
    if ! have cargo && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
    step_is "building wisp" "cargo build --release -p wisp"
    log "cargo build --release -p wisp"
    cargo build --release -p wisp >&2
fi
[ -x "$WISP" ] || die "no $WISP: build it with cargo build --release -p wisp"

if ! "$VENV_PY" -c 'import openai' >/dev/null 2>&1; then
    step_is "the Python test environment" "scripts/setup.sh --test"
    log "no openai client in $CACHE_DIR/test-venv: scripts/setup.sh --test"
    "$ROOT/scripts/setup.sh" --test >&2
fi

# Both servers load the very same GGUF file: wisp fetch resolves a known model's name
# to its file in the cache (downloading it once) and prints the path.
step_is "finding the model file" "$WISP fetch $MODEL"
if [ -f "$MODEL" ]; then GGUF=$MODEL; else GGUF=$("$WISP" fetch "$MODEL" 2>/dev/null | tail -n 1); fi
[ -f "$GGUF" ] || die "'$MODEL' is not a GGUF file here ($GGUF)"

if [ -z "$OUT" ]; then OUT=$ROOT/target/bench-serve/$(date -u +%Y%m%dT%H%M%SZ); fi
mkdir -p "$OUT"

# ------------------------------------------------------------ running servers
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    local pid=$SERVER_PID i
    SERVER_PID=""
    kill -TERM "$pid" 2>/dev/null || return 0
    # wisp drains (--drain-s below), llama-server stops at once; either way, bounded.
    for i in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
        if [ "$i" -eq 60 ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    wait "$pid" 2>/dev/null || true
}
# Whatever ends the script (an error, Ctrl-C), no server it started stays behind.
trap stop_server EXIT
trap 'exit 130' INT TERM

# http_status PORT PATH: the status code of GET PATH on loopback, or 000 (bash's
# /dev/tcp: no curl needed, and cheap enough to poll twice a second).
http_status() {
    local code=000
    # The braces carry the redirection of a failed connect's message (exec alone would
    # print it before reading 2>/dev/null); fd 3 stays open in this shell.
    if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 || true
        if IFS=' ' read -r -t 5 _ code _ <&3; then :; else code=000; fi
        exec 3<&- 3>&-
    fi
    echo "${code:-000}"
}

# wait_ready NAME LOG [PORT]: until GET /health answers 200 (both servers answer 503
# while loading). Without PORT, it is read from wisp's `listening on http://HOST:PORT`.
wait_ready() {
    local name=$1 file=$2 port=${3:-} t=$SECONDS
    step_is "starting $name" "see $file"
    while :; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            tail -n 20 "$file" >&2
            die "$name exited while starting (log: $file)"
        fi
        if [ -z "$port" ]; then
            port=$(sed -n 's|.*listening on http://[^ ]*:\([0-9][0-9]*\).*|\1|p' "$file" | head -n 1)
        fi
        if [ -n "$port" ] && [ "$(http_status "$port" /health)" = 200 ]; then break; fi
        if [ $((SECONDS - t)) -gt 900 ]; then die "$name not ready after 900 s (log: $file)"; fi
        sleep 0.5
    done
    log "$name ready on port $port after $((SECONDS - t)) s"
    PORT=$port
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

LOAD_ARGS=(--levels "$LEVELS" --max-tokens "$MAX_TOKENS" --requests-per-client "$PER_CLIENT"
           --min-requests "$MIN_REQUESTS" --level-timeout "$LEVEL_TIMEOUT")
N_CTX_ALL=$((PARALLEL * CTX))

bench_one() {   # $1: wisp|llama-vulkan|llama-cpu
    local name=$1 file=$OUT/$1.log extra=()
    local t=$SECONDS
    log "== $name"
    case "$name" in
        wisp)
            # One context of --ctx per slot, all in one paged pool, as llama-server's -c
            # below: the same KV room for both.
            "$WISP" serve -m "$GGUF" --host 127.0.0.1 --port 0 --parallel "$PARALLEL" \
                --ctx "$CTX" --kv-pool "$N_CTX_ALL" --max-queue "$((PARALLEL * 2))" --drain-s 5 \
                "${WISP_EXTRA[@]}" >"$file" 2>&1 &
            SERVER_PID=$!
            wait_ready "$name" "$file"
            ADAPTERS+=("wisp: $(sed -n 's/^adapter: //p' "$file" | head -n 1 | sed 's/ — .*//; s/;.*//')")
            ;;
        llama-vulkan|llama-cpu)
            local port bin=$LLAMA_BIN/llama-server-${name#llama-} env=()
            port=$(free_port)
            # -c is the context of all slots together: -np slots of CTX each.
            local cmd=("$bin" -m "$GGUF" --host 127.0.0.1 --port "$port" -np "$PARALLEL"
                       -c "$N_CTX_ALL" --cont-batching -t "$THREADS" --metrics)
            if [ "$name" = llama-vulkan ]; then
                # llama.cpp skips CPU-type Vulkan devices (lavapipe) unless named here.
                env=(GGML_VK_VISIBLE_DEVICES=0)
                cmd+=(-ngl 999)
                # Without a Vulkan device -ngl is ignored and it would run on its CPU
                # backend under the wrong name: refuse that.
                step_is "finding llama.cpp's Vulkan device" "GGML_VK_VISIBLE_DEVICES=0 $bin --list-devices"
                local dev
                dev=$(env "${env[@]}" "$bin" --list-devices 2>/dev/null | sed -n 's/^ *Vulkan0: //p')
                [ -n "$dev" ] || die "llama-server (vulkan) sees no Vulkan device: GGML_VK_VISIBLE_DEVICES=0 $bin --list-devices"
                ADAPTERS+=("llama-vulkan: $dev")
            else
                cmd+=(-ngl 0)
            fi
            env "${env[@]}" "${cmd[@]}" >"$file" 2>&1 &
            SERVER_PID=$!
            wait_ready "$name" "$file" "$port"
            extra=(--ignore-eos)
            ;;
    esac
    step_is "loading $name" "$VENV_PY scripts/bench_serve.py run --base-url http://127.0.0.1:$PORT/v1 --name $name ${LOAD_ARGS[*]} ${extra[*]}"
    "$VENV_PY" "$ROOT/scripts/bench_serve.py" run --base-url "http://127.0.0.1:$PORT/v1" --name "$name" \
        "${LOAD_ARGS[@]}" "${extra[@]}" --json "$OUT/$name.json" --md "$OUT/$name.md" >&2
    stop_server
    log "$name done in $((SECONDS - t)) s"
}

log "results in $OUT; model $GGUF; servers ${SERVER_LIST[*]}; levels $LEVELS"
RAN=()
ADAPTERS=()     # what each server ran on, for the summary
for s in "${SERVER_LIST[@]}"; do
    bench_one "$s"
    RAN+=("$OUT/$s.json")
done
step_is "summary" "$VENV_PY scripts/bench_serve.py summary ${RAN[*]}"
{
    echo "Machine: $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)), load average at the end $(cut -d' ' -f1-3 /proc/loadavg);"
    echo "model $(basename "$GGUF"); llama.cpp from llama-cpp-python $LLAMA_VERSION (llama-cpu: $THREADS threads); $(date -u '+%Y-%m-%d %H:%M UTC')."
    for a in "${ADAPTERS[@]}"; do echo "- adapter of $a"; done
    echo
    "$VENV_PY" "$ROOT/scripts/bench_serve.py" summary "${RAN[@]}"
    for s in "${SERVER_LIST[@]}"; do echo; cat "$OUT/$s.md"; done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
log "written: $OUT/summary.md"

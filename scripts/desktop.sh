#!/usr/bin/env bash
# The desktop chat app: setup (--desktop), build, then `wisp-desktop ARGS...`.
# It loads the last model used, else the default one (fetched into the cache the
# first time, with the window showing it); conversations are kept in
# ~/.local/share/wisp/desktop (--data-dir DIR elsewhere).
#   scripts/desktop.sh [wisp-desktop options...]   (--help lists them)
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit

step_is "setup" "scripts/setup.sh --desktop (it says which of its steps failed)"
"$ROOT/scripts/setup.sh" --desktop
# shellcheck disable=SC1091
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

echo "desktop: cargo build --release -p wisp-desktop" >&2
step_is "build" "cargo build --release -p wisp-desktop"
cargo build --release -p wisp-desktop
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/wisp-desktop" "$@"

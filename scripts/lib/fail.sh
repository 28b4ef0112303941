# Sourced by every script in scripts/: strict mode, and an ERR trap so that no
# failure is silent. A script sets STEP (what it is doing) and, where a person could
# do that step by hand, HINT (how); the trap prints both with the command that
# failed and its exit code:
#
#   setup.sh: error: step 'wasm-bindgen-cli 0.2.104' failed: `cargo install ...` exited with 101
#   setup.sh: to do it by hand: cargo install wasm-bindgen-cli --version 0.2.104
#
# errtrace (-E) makes functions and subshells inherit the trap; `set -e` alone would
# end the script with nothing but an exit code.
# shellcheck shell=bash
set -Eeuo pipefail

STEP=${STEP:-start}
HINT=${HINT:-}
FAIL_REPORTED=0

on_error() {     # $1: the exit code, $2: the line, $3: the failed command
    # A function that fails reports once, not again in each caller up the stack; a
    # subshell ($(...), a pipeline's side) leaves the report to the shell that ran it,
    # whose command line shows the subshell's.
    [ "$FAIL_REPORTED" -eq 0 ] && [ "$BASH_SUBSHELL" -eq 0 ] || return 0
    FAIL_REPORTED=1
    local me
    me=$(basename "$0")
    echo "$me: error: step '$STEP' failed at line $2: \`$3\` exited with $1" >&2
    if [ -n "$HINT" ]; then echo "$me: to do it by hand: $HINT" >&2; fi
}
trap 'on_error "$?" "$LINENO" "$BASH_COMMAND"' ERR

# step_is NAME [HINT]: names what the script does next (for the trap's message).
step_is() {
    STEP=$1
    HINT=${2:-}
}

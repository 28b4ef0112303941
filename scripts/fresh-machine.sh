#!/usr/bin/env bash
# Proves the README's set-up on a machine that has nothing but Rust: builds a bare
# Debian 12 root with debootstrap (from this machine's own apt sources), copies in
# the Rust toolchain and the checkout, and nothing else but the network settings
# (resolver, local CA certificates), then runs inside it, in a chroot within
# private mount and PID namespaces:
#
#   scripts/fresh-machine.sh             the check: scripts/setup.sh --test --browser
#                                        --desktop, the release build of wisp, then one
#                                        short test: the README's chat command, asked
#                                        "What is the capital of France?" with no
#                                        sampling flag but a seed, must answer "Paris"
#   scripts/fresh-machine.sh -c 'CMD'    CMD instead, as a newcomer types it in the
#                                        repository root, e.g. -c scripts/test.sh
#   --checkout DIR    the checkout to copy in (default: this one); its tracked and
#                     untracked-but-not-ignored files, as `git ls-files` lists them
#   --keep            leave the root in place afterwards (for a look inside)
#   --due             print whether the check is due and exit 0 (due) or 1 (not due):
#                     due when the set-up inputs (scripts/, .ci/, Cargo manifests and
#                     lock, web/package*.json) changed since the last run that passed,
#                     or when that run was not today
#   --record-pass     note the current set-up inputs as passed today (used by .ci/run)
#
# It fails when any step fails, naming the step. Each step's time is printed and
# a summary ends the run. Needs root, debootstrap (installed from apt when missing),
# and about 12 GB of disk under $WISP_FRESH_DIR (default /var/tmp/wisp-fresh).
# The bare root is cached as a tarball under <wisp cache>/fresh-machine/ and made
# anew after a week; nothing else is cached, so every step runs cold.
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"
# shellcheck source=lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHECKOUT=$ROOT
COMMAND=""
KEEP=0
MODE=run
while [ $# -gt 0 ]; do
    case "$1" in
        -c|--command) COMMAND=${2:?--command takes a command line}; shift ;;
        --checkout) CHECKOUT=$(cd "${2:?--checkout takes a folder}" && pwd); shift ;;
        --keep) KEEP=1 ;;
        --due) MODE=due ;;
        --record-pass) MODE=record ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "fresh-machine.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SUITE=bookworm
WORK=${WISP_FRESH_DIR:-/var/tmp/wisp-fresh}
CACHE=${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}/fresh-machine
BASE_TAR=$CACHE/$SUITE-minbase.tar
BASE_MAX_AGE_DAYS=7
PASSED=$CACHE/passed        # "DATE HASH" of the last run that passed
T0=$SECONDS

log() { echo "fresh-machine: $*"; }

# ------------------------------------------------------------- is it due?
# A hash of everything that decides what a fresh machine must install.
setup_inputs_hash() {
    (cd "$CHECKOUT" && git ls-files -co --exclude-standard -- \
            scripts .ci Cargo.toml Cargo.lock '*/Cargo.toml' 'web/package*.json' |
        LC_ALL=C sort | xargs -d '\n' sha256sum) | sha256sum | cut -d' ' -f1
}

if [ "$MODE" = due ]; then
    now="$(date -u +%F) $(setup_inputs_hash)"
    last=$(cat "$PASSED" 2>/dev/null || true)
    if [ "$now" = "$last" ]; then
        log "not due: the set-up inputs passed here today ($last)"
        exit 1
    fi
    log "due: last pass ${last:-never} (now: $now)"
    exit 0
fi
if [ "$MODE" = record ]; then
    mkdir -p "$CACHE"
    echo "$(date -u +%F) $(setup_inputs_hash)" >"$PASSED"
    log "recorded a pass: $(cat "$PASSED")"
    exit 0
fi

# ------------------------------------------------------------------ host
[ "$(id -u)" -eq 0 ] || { echo "fresh-machine.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
TIMES=()
timed() {       # timed NAME COMMAND...: runs it and keeps its time for the summary
    local name=$1; shift
    local t=$SECONDS
    log "[$name] ..."
    step_is "$name"
    "$@"
    TIMES+=("$(printf '%-28s %5ss' "$name" "$((SECONDS - t))")")
    log "[$name] ok ($((SECONDS - t))s)"
}

host_tools() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    step_is "installing debootstrap on this machine" "apt-get install debootstrap"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
}

# The bare root: Debian 12's required packages and apt (debootstrap's minbase), made
# from this machine's mirror, with this machine's apt sources. Cached as a tarball.
make_base() {
    if [ -f "$BASE_TAR" ] && [ -n "$(find "$BASE_TAR" -mtime -"$BASE_MAX_AGE_DAYS")" ]; then
        log "bare root from $BASE_TAR"
        return 0
    fi
    local line uri keyring tmp
    line=$(debian_mirror) || { echo "fresh-machine.sh: cannot find this machine's Debian mirror in /etc/apt" >&2; return 1; }
    uri=${line%% *}; keyring=${line#* }
    [ "$keyring" != "-" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    tmp=$WORK/base
    rm -rf "$tmp"; mkdir -p "$tmp" "$CACHE"
    step_is "bare Debian 12 root" "debootstrap --variant=minbase $SUITE DIR <your Debian mirror>"
    if ! debootstrap --variant=minbase --keyring="$keyring" "$SUITE" "$tmp" "$uri" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" >&2
        return 1
    fi
    # The root uses the apt sources this machine uses, as a machine of this kind would.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$tmp/etc/apt/sources.list.d/"
        rm -f "$tmp/etc/apt/sources.list"
    fi
    rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*_Packages
    tar -C "$tmp" -cf "$BASE_TAR.partial" .
    mv "$BASE_TAR.partial" "$BASE_TAR"
    rm -rf "$tmp"
}

unpack_root() {
    rm -rf "$WORK/root"
    mkdir -p "$WORK/root"
    tar -C "$WORK/root" -xf "$BASE_TAR"
    # The network as this machine has it: its resolver, and the local CA certificates
    # its HTTPS egress may need (installed into the trust store when the set-up
    # installs ca-certificates, as on any machine here).
    cp /etc/resolv.conf "$WORK/root/etc/resolv.conf"
    if [ -d /usr/local/share/ca-certificates ]; then
        mkdir -p "$WORK/root/usr/local/share/ca-certificates"
        cp -a /usr/local/share/ca-certificates/. "$WORK/root/usr/local/share/ca-certificates/"
    fi
}

# The Rust toolchain, the one thing a machine of this kind ships: rustup's settings
# and its default toolchain (a copy, so the root may add targets without touching
# this machine's), rustup with its proxies, and cargo's env file. No
# registry, no installed crates, no other target than the host's (see
# host_target_only): those the set-up must bring.
RUSTUP_SRC=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_SRC=${CARGO_HOME:-$HOME/.cargo}
copy_toolchain() {
    local toolchain
    toolchain=$(RUSTUP_HOME=$RUSTUP_SRC rustup default | awk '{print $1}')
    [ -d "$RUSTUP_SRC/toolchains/$toolchain" ] ||
        { echo "fresh-machine.sh: no default rustup toolchain in $RUSTUP_SRC (rustup default: '$toolchain')" >&2; return 1; }
    mkdir -p "$WORK/root/root/.rustup/toolchains" "$WORK/root/root/.cargo"
    cp "$RUSTUP_SRC/settings.toml" "$WORK/root/root/.rustup/"
    cp -a "$RUSTUP_SRC/toolchains/$toolchain" "$WORK/root/root/.rustup/toolchains/"
    # rustup and its proxies (cargo, rustc, ...: links to rustup); never the tools that
    # `cargo install` put beside them here, such as wasm-bindgen.
    mkdir -p "$WORK/root/root/.cargo/bin"
    local tool
    for tool in "$CARGO_SRC"/bin/*; do
        if [ "$tool" -ef "$CARGO_SRC/bin/rustup" ]; then cp -a "$tool" "$WORK/root/root/.cargo/bin/"; fi
    done
    if [ -f "$CARGO_SRC/env" ]; then cp "$CARGO_SRC/env" "$WORK/root/root/.cargo/"; fi
}

# The checkout's files as git lists them: no target/, no node_modules/, and no
# ../shared beside it.
copy_checkout() {
    mkdir -p "$WORK/root/work/wisp"
    (cd "$CHECKOUT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) |
        tar -C "$WORK/root/work/wisp" -xf -
}

# in_root 'COMMAND LINE': runs it in the root's copy of the checkout (lib/in-root.sh).
in_root() {
    unshare --mount --pid --fork --propagation private -- "$ROOT/scripts/lib/in-root.sh" "$WORK/root" "$1"
}

# A machine of this kind has the host target only: drop the others from the
# overlay, so the set-up must add wasm32 itself.
host_target_only() {
    # shellcheck disable=SC2016 # expanded inside the root
    in_root 'rustup target list --installed | grep -vx "$(rustc -vV | sed -n "s/^host: //p")" | xargs -r rustup target remove'
}

# The README's chat command as a newcomer first runs it, with a seed so that CI is
# repeatable (tests/tests/first_answer.rs asks ten seeds). The answer is shown and must
# name Paris.
# shellcheck disable=SC2016 # expanded inside the root
FIRST_CHAT='answer=$(printf "What is the capital of France?\n" | scripts/chat.sh --seed 1)
printf "%s\n" "$answer"
case "$answer" in
    *Paris*) ;;
    *) echo "fresh-machine: the first chat did not answer Paris" >&2; exit 1 ;;
esac'

cleanup() {
    if [ "$KEEP" -eq 0 ]; then rm -rf "$WORK/root"; fi
}

# ------------------------------------------------------------------ main
log "checkout $CHECKOUT ($(cd "$CHECKOUT" && git rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')), work folder $WORK"
mkdir -p "$WORK"
trap cleanup EXIT
timed "host tools" host_tools
timed "bare Debian 12 root" make_base
timed "unpack root" unpack_root
timed "copy toolchain" copy_toolchain
timed "copy checkout" copy_checkout
timed "toolchain: host target only" host_target_only
if [ -n "$COMMAND" ]; then
    timed "$COMMAND" in_root "$COMMAND"
else
    timed "setup" in_root 'scripts/setup.sh --test --browser --desktop'
    timed "build" in_root 'cargo build --release -p wisp'
    timed "short test: first chat" in_root "$FIRST_CHAT"
fi
echo
log "passed in $((SECONDS - T0))s:"
printf '  %s\n' "${TIMES[@]}"

#!/usr/bin/env bash
# Prepares a machine to build and run Wisp. Idempotent: on a machine where
# everything is present it installs nothing and finishes in seconds.
#
#   scripts/setup.sh            what `wisp` needs: compiler, pip, a Vulkan loader,
#                               and lavapipe (Mesa's software Vulkan) only when no
#                               Vulkan device exists
#   scripts/setup.sh --test     also what scripts/test.sh needs: lavapipe from
#                               Mesa >= 25 (the adapter CI tests on), shellcheck,
#                               the wasm32-unknown-unknown Rust target, and a Python
#                               virtual environment in the cache folder with the
#                               `openai` client (tests/python/requirements.txt)
#   scripts/setup.sh --browser  also what the web demo and its test need: Chromium,
#                               Node.js and npm, wasm-bindgen-cli, playwright-core
#   scripts/setup.sh --desktop  also what the desktop app needs to open a window (the
#                               X11 client libraries winit loads); with --test, Xvfb
#                               for its test
#
# Run it as your normal user: it uses sudo for apt when it is not root, and only
# when something must be installed. System packages are handled on Debian/Ubuntu
# (apt); elsewhere it prints what to install and goes on with the Rust part.
#
# Every failure is reported: the step, the command, its exit code, and how to do
# the step by hand (scripts/lib/fail.sh). Probes of tools that may be missing never
# fail the script.
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"

WANT_TEST=0
WANT_BROWSER=0
WANT_DESKTOP=0
for arg in "$@"; do
    case "$arg" in
        --test) WANT_TEST=1 ;;
        --browser) WANT_BROWSER=1 ;;
        --desktop) WANT_DESKTOP=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

MIN_RUST=1.90       # workspace rust-version
MIN_MESA=25~        # Debian 12's own Mesa 22.3 lavapipe is about 10x slower

log()  { echo "setup: $*"; }
warn() { echo "setup: warning: $*" >&2; }
die()  { echo "setup: error: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

INSTALLED=()        # what this run installed, for the summary

# ---------------------------------------------------------------- privileges
SUDO=()
need_root() {
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif have sudo; then
        SUDO=(sudo)
    else
        die "need root to install system packages ($*); run as root or install sudo"
    fi
}

# ---------------------------------------------------------------- apt helpers
HAVE_APT=0
if have apt-get && have dpkg-query; then HAVE_APT=1; fi
OS_ID=""; OS_CODENAME=""
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    OS_ID=$(. /etc/os-release && echo "${ID:-}")
    # shellcheck disable=SC1091
    OS_CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
pkg_version() {
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true
}

APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        need_root "apt-get update"
        step_is "apt-get update" "${SUDO[*]:+${SUDO[*]} }apt-get update"
        log "apt-get update"
        "${SUDO[@]}" apt-get update -q
        APT_UPDATED=1
    fi
}

# apt_install [-t SUITE] PKG...
apt_install() {
    local target=()
    if [ "$1" = "-t" ]; then target=(-t "$2"); shift 2; fi
    need_root "$*"
    apt_update
    step_is "installing $*" "${SUDO[*]:+${SUDO[*]} }apt-get install --no-install-recommends ${target[*]:+${target[*]} }$*"
    log "installing: $* ${target[*]:+(from ${target[1]})}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${target[@]}" "$@"
    INSTALLED+=("$@")
}

# Installs each named package that is not installed yet.
ensure_pkgs() {
    local missing=() p
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# ---------------------------------------------------------- bookworm-backports
# Debian 12 needs Mesa from bookworm-backports. The suite is built from the
# mirror this machine already uses (never a host name written here).
BACKPORTS_FILE=/etc/apt/sources.list.d/bookworm-backports.sources
# shellcheck source=lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"

backports_configured() {
    grep -rqs --include='*.list' --include='*.sources' -E '(^|[[:space:]])bookworm-backports([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/
}

ensure_backports() {
    if backports_configured; then return 0; fi
    local line uri signed
    line=$(debian_mirror) || die "cannot find this machine's Debian mirror in /etc/apt to add bookworm-backports"
    uri=${line%% *}; signed=${line#* }
    if [ "$signed" = "-" ]; then signed=/usr/share/keyrings/debian-archive-keyring.gpg; fi
    need_root "adding bookworm-backports"
    step_is "adding bookworm-backports" \
        "write $BACKPORTS_FILE with 'Types: deb', 'URIs: $uri', 'Suites: bookworm-backports', 'Components: main', 'Signed-By: $signed'"
    log "adding apt suite bookworm-backports ($uri) in $BACKPORTS_FILE"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
        "$uri" "$signed" | "${SUDO[@]}" tee "$BACKPORTS_FILE" >/dev/null
    APT_UPDATED=0   # the new suite needs an update before installing from it
    INSTALLED+=("apt:bookworm-backports")
}

# ------------------------------------------------------------------- Vulkan
# Prints the Vulkan devices the loader sees ("TYPE NAME" per line), if any.
vulkan_devices() {
    have vulkaninfo || return 0
    vulkaninfo --summary 2>/dev/null | awk -F'= ' '
        /deviceType/ { t = $2 }
        /deviceName/ { print t, $2 }' || true
}

mesa_is_recent() {
    local v; v=$(pkg_version mesa-vulkan-drivers)
    [ -n "$v" ] && dpkg --compare-versions "$v" ge "$MIN_MESA"
}

ensure_lavapipe() {     # $1: why
    if mesa_is_recent; then return 0; fi
    if [ "$OS_ID" = debian ] && [ "$OS_CODENAME" = bookworm ]; then
        ensure_backports
        log "lavapipe from Mesa >= 25 ($1)"
        apt_install -t bookworm-backports mesa-vulkan-drivers libvulkan1
    else
        ensure_pkgs mesa-vulkan-drivers
        mesa_is_recent || warn "mesa-vulkan-drivers $(pkg_version mesa-vulkan-drivers) is older than 25; lavapipe will be slow"
    fi
}

setup_vulkan() {
    ensure_pkgs libvulkan1 vulkan-tools
    local devices
    devices=$(vulkan_devices)
    if [ "$WANT_TEST" -eq 1 ]; then
        ensure_lavapipe "the test suite runs on it"
    elif [ -z "$devices" ]; then
        ensure_lavapipe "no Vulkan device found"
    elif ! grep -qv 'PHYSICAL_DEVICE_TYPE_CPU' <<<"$devices" && pkg_installed mesa-vulkan-drivers; then
        # The only device is a software one from an old Mesa: upgrading is cheap and much faster.
        ensure_lavapipe "the only Vulkan device is an old software rasterizer"
    fi
    devices=$(vulkan_devices)
    if [ -z "$devices" ]; then
        warn "vulkaninfo sees no Vulkan device; wisp will fail to find an adapter"
    else
        while IFS= read -r d; do log "vulkan device: ${d#PHYSICAL_DEVICE_TYPE_}"; done <<<"$devices"
    fi
}

# --------------------------------------------------------------- packages
setup_system() {
    if [ "$HAVE_APT" -eq 0 ]; then
        warn "no apt-get: install yourself a C toolchain, pkg-config, python3 with pip (and venv for --test), and a Vulkan driver"
        return 0
    fi
    local pkgs=()
    # cargo reaches crates.io over HTTPS and needs the system's CA certificates.
    pkg_installed ca-certificates || pkgs+=(ca-certificates)
    have cc  || pkgs+=(build-essential)
    have pkg-config || pkg_installed pkg-config || pkgs+=(pkg-config)
    if ! python3 -m pip --version >/dev/null 2>&1 && ! have pip3 && ! have pip; then
        pkgs+=(python3-pip)
    fi
    if ! have rustup && ! rust_ok; then
        have curl || pkgs+=(curl)
    fi
    # The test suite lints the shell scripts, and runs the server's Python tests in a
    # virtual environment (Debian keeps venv's ensurepip in python3-venv; the probe also
    # fails when python3 itself is missing, which python3-venv brings).
    if [ "$WANT_TEST" -eq 1 ]; then
        have shellcheck || pkgs+=(shellcheck)
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || pkgs+=(python3-venv)
    fi
    if [ "${#pkgs[@]}" -gt 0 ]; then apt_install "${pkgs[@]}"; fi
    setup_vulkan
}

# --------------------------------------------------------------------- Rust
rust_ok() {     # rustc on PATH and >= MIN_RUST
    have cargo && have rustc || return 1
    local v; v=$(rustc --version | awk '{print $2}')
    [ "$(printf '%s\n%s\n' "$MIN_RUST" "${v%%-*}" | sort -V | head -n1)" = "$MIN_RUST" ]
}

setup_rust() {
    local need_wasm=0
    if [ "$WANT_TEST" -eq 1 ] || [ "$WANT_BROWSER" -eq 1 ]; then need_wasm=1; fi
    if ! have rustup; then
        if rust_ok; then
            log "rust: $(rustc --version) (not managed by rustup)"
            if [ "$need_wasm" -eq 1 ] && [ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown" ]; then
                die "this Rust has no wasm32-unknown-unknown target; install Rust with rustup (https://rustup.rs)"
            fi
            return 0
        fi
        step_is "installing Rust" "install Rust >= $MIN_RUST with rustup, as https://rustup.rs says"
        log "installing Rust (stable) with rustup into $HOME/.cargo"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
        INSTALLED+=("rustup")
    elif ! rust_ok; then
        step_is "updating Rust" "rustup update stable"
        log "rust $(rustc --version 2>/dev/null | awk '{print $2}' || true) is older than $MIN_RUST: rustup update stable"
        rustup update stable
        INSTALLED+=("rust-stable")
    fi
    if [ "$need_wasm" -eq 1 ]; then
        if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
            step_is "adding the wasm32 target" "rustup target add wasm32-unknown-unknown"
            log "rustup target add wasm32-unknown-unknown"
            rustup target add wasm32-unknown-unknown
            INSTALLED+=("rust-target:wasm32-unknown-unknown")
        fi
    fi
    # The test suite checks the layout of the code and its lints (rustup's minimal
    # profile has neither rustfmt nor clippy).
    if [ "$WANT_TEST" -eq 1 ] && ! cargo fmt --version >/dev/null 2>&1; then
        step_is "adding rustfmt" "rustup component add rustfmt"
        log "rustup component add rustfmt"
        rustup component add rustfmt
        INSTALLED+=("rust-component:rustfmt")
    fi
    if [ "$WANT_TEST" -eq 1 ] && ! cargo clippy --version >/dev/null 2>&1; then
        step_is "adding clippy" "rustup component add clippy"
        log "rustup component add clippy"
        rustup component add clippy
        INSTALLED+=("rust-component:clippy")
    fi
    log "rust: $(rustc --version)"
}

# ------------------------------------------------------------------ browser
# The web demo and its test: Chromium (WebGPU, driven headless by the test),
# Node.js >= 18 with npm (the dev server and playwright-core), wasm-bindgen-cli at
# the version Cargo.lock pins (its output must match the wasm-bindgen crate), and
# web/'s npm packages from web/package-lock.json.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

node_ok() {     # node on PATH and >= 18
    have node || return 1
    local major; major=$(node --version | sed -E 's/^v([0-9]+).*/\1/')
    [ "$major" -ge 18 ] 2>/dev/null
}

locked_wasm_bindgen() {
    awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock"
}

setup_browser() {
    if [ "$HAVE_APT" -eq 1 ]; then
        local pkgs=(chromium)
        node_ok || pkgs+=(nodejs)
        have npm || pkgs+=(npm)
        ensure_pkgs "${pkgs[@]}"
    else
        have chromium || warn "--browser: install Chromium yourself"
        if ! node_ok || ! have npm; then warn "--browser: install Node.js >= 18 and npm yourself"; fi
    fi
    node_ok || die "Node.js >= 18 is needed for the web demo (found: $(node --version 2>/dev/null || echo none))"

    local want have_version=""
    want=$(locked_wasm_bindgen)
    [ -n "$want" ] || die "cannot read wasm-bindgen's version from Cargo.lock"
    # A missing wasm-bindgen is the usual case on a new machine: probe it only when it
    # is there (under pipefail, a failed probe in an assignment ends the script).
    if have wasm-bindgen; then
        have_version=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}') || have_version=""
    fi
    if [ "$have_version" != "$want" ]; then
        step_is "wasm-bindgen-cli $want" "cargo install wasm-bindgen-cli --version $want"
        log "cargo install wasm-bindgen-cli --version $want (found: ${have_version:-none}; a few minutes)"
        cargo install wasm-bindgen-cli --version "$want"
        INSTALLED+=("wasm-bindgen-cli@$want")
    fi

    local lock_version installed_version
    lock_version=$(node -e 'console.log(require(process.argv[1]).packages["node_modules/playwright-core"].version)' "$ROOT/web/package-lock.json")
    installed_version=$(node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' \
        "$ROOT/web/node_modules/playwright-core/package.json")
    if [ "$installed_version" != "$lock_version" ]; then
        step_is "web/'s npm packages" "cd web && npm ci"
        log "npm ci in web/ (playwright-core $lock_version)"
        (cd "$ROOT/web" && npm ci --no-audit --no-fund --loglevel=error)
        INSTALLED+=("npm:playwright-core@$lock_version")
    fi
}

# ------------------------------------------------------------------ desktop
# The desktop app (demos/desktop): winit opens X11 (or Wayland) libraries at run
# time rather than linking them, so building needs nothing more; running needs the
# client libraries, and its test an X server without a screen (Xvfb, with xauth for
# xvfb-run). The GPU side is the Vulkan driver setup_vulkan already handled.
setup_desktop() {
    if [ "$HAVE_APT" -eq 0 ]; then
        warn "--desktop: install the X11 client libraries (libX11, libXcursor, libXrandr, libXi, libxkbcommon-x11) yourself"
        [ "$WANT_TEST" -eq 0 ] || warn "--desktop --test: install Xvfb and xauth (xvfb-run) yourself"
        return 0
    fi
    local pkgs=(libx11-6 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon0 libxkbcommon-x11-0)
    if [ "$WANT_TEST" -eq 1 ]; then pkgs+=(xvfb xauth); fi
    ensure_pkgs "${pkgs[@]}"
}

# ------------------------------------------------------------ Python tests
# `wisp serve`'s tests (tests/python/, run by tests/tests/serve_openai.rs) use the
# official `openai` client, from a virtual environment in the cache folder (the same
# folder rule as wisp's: README "Models and the cache folder"), installed with the exact
# versions and sha256 sums of tests/python/requirements.txt. The environment is complete
# when its stamp holds that file's sha256, written last: an interrupted install, or
# changed requirements, make a new environment on the next run instead of patching one.
CACHE_DIR=${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}
TEST_VENV=$CACHE_DIR/test-venv

setup_python_tests() {
    local req=$ROOT/tests/python/requirements.txt
    local stamp=$TEST_VENV/requirements.sha256 want
    want=$(sha256sum "$req" | awk '{print $1}')
    if [ -x "$TEST_VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if [ -e "$TEST_VENV" ]; then
        step_is "removing the old test environment" "rm -rf $TEST_VENV"
        log "test environment $TEST_VENV is incomplete or out of date: making it anew"
        rm -rf "$TEST_VENV"
    fi
    step_is "Python test environment" "python3 -m venv $TEST_VENV"
    log "python3 -m venv $TEST_VENV"
    python3 -m venv "$TEST_VENV"
    step_is "Python test packages" \
        "$TEST_VENV/bin/python -m pip install --require-hashes -r tests/python/requirements.txt"
    log "pip install --require-hashes -r tests/python/requirements.txt (openai and its dependencies)"
    "$TEST_VENV/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
        --require-hashes -r "$req"
    echo "$want" >"$stamp"
    INSTALLED+=("python:$(grep -o '^openai==[^ ]*' "$req")")
}

# --------------------------------------------------------------------- main
start=$SECONDS
# A rustup install from an earlier run may not be on this shell's PATH yet.
# shellcheck disable=SC1091
if ! have cargo && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
step_is "system packages"; setup_system
step_is "Rust"; setup_rust
if [ "$WANT_BROWSER" -eq 1 ]; then step_is "browser tools"; setup_browser; fi
if [ "$WANT_DESKTOP" -eq 1 ]; then step_is "desktop libraries"; setup_desktop; fi
if [ "$WANT_TEST" -eq 1 ]; then step_is "Python test environment"; setup_python_tests; fi
if python3 -m pip --version >/dev/null 2>&1 || have pip3 || have pip; then :; else
    warn "pip not found; \`wisp fetch\` needs it (apt-get install python3-pip)"
fi
if [ "${#INSTALLED[@]}" -eq 0 ]; then
    log "ok, nothing to install ($((SECONDS - start))s)"
else
    log "ok, installed: ${INSTALLED[*]} ($((SECONDS - start))s)"
fi

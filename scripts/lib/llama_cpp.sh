# Sourced by the scripts that benchmark against llama.cpp (bench-serve.sh,
# bench-vs-llamacpp.sh): its programs built from the llama.cpp sources that the
# llama-cpp-python sdist carries (the version ../shared/reference/PERF.md measured),
# with cmake, once per program and backend, under `nice -n 19` with -j2, and cached in
# <cache>/llama.cpp-<version>/bin/PROGRAM-BACKEND (delete it to rebuild).
#
# The Vulkan backend asks for the debug-only instance setting VK_EXT_layer_settings,
# which Debian 12's Vulkan headers (1.3.239) do not have; the build removes it from
# instance creation (a sed on ggml-vulkan.cpp), as PERF.md did. The CPU backend (in
# both builds) is compiled for this machine without Intel AMX, whose kernels crashed
# llama-server here (see patch_no_amx).
#
# The caller sources lib/fail.sh and defines log, die and have first; it may set
# LLAMA_CPP_PYTHON_VERSION (default 0.3.36) and WISP_CACHE_DIR.
# shellcheck shell=bash

CACHE_DIR=${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}
LLAMA_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
LLAMA_DIR=$CACHE_DIR/llama.cpp-$LLAMA_VERSION
LLAMA_BIN=$LLAMA_DIR/bin

# ------------------------------------------------------------- build tools
# The same apt rule as setup.sh: install only what is missing, with sudo when not root.
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
ensure_build_tools() {    # $1: cpu|vulkan
    local want=(cmake g++ make)
    # The Vulkan backend also needs SPIR-V's headers (find_package(SPIRV-Headers)).
    if [ "$1" = vulkan ]; then want+=(libvulkan-dev glslc spirv-headers); fi
    if ! have dpkg-query || ! have apt-get; then
        log "no apt-get: make sure these are installed: ${want[*]}"
        return 0
    fi
    local missing=() p
    for p in "${want[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    [ "${#missing[@]}" -gt 0 ] || return 0
    step_is "installing ${missing[*]}" "${SUDO[*]:+${SUDO[*]} }apt-get install --no-install-recommends ${missing[*]}"
    log "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get update -q >&2
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# ------------------------------------------------------------ sources
llama_src() {   # prints the vendored llama.cpp folder, downloading and unpacking the sdist once
    local sdist=$LLAMA_DIR/llama_cpp_python-$LLAMA_VERSION.tar.gz
    local src=$LLAMA_DIR/llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp
    mkdir -p "$LLAMA_DIR"
    if [ ! -f "$sdist" ]; then
        step_is "downloading the llama-cpp-python $LLAMA_VERSION sdist" \
            "python3 -m pip download --no-deps --no-binary :all: llama-cpp-python==$LLAMA_VERSION -d $LLAMA_DIR"
        log "pip download llama-cpp-python==$LLAMA_VERSION (sdist, with llama.cpp's sources)"
        # Into a temporary folder first: an interrupted download leaves no half file.
        local tmp
        tmp=$(mktemp -d "$LLAMA_DIR/download.XXXXXX")
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$tmp" >&2
        mv "$tmp/llama_cpp_python-$LLAMA_VERSION.tar.gz" "$sdist"
        rm -rf "$tmp"
    fi
    if [ ! -f "$src/CMakeLists.txt" ]; then
        step_is "unpacking the sdist" "tar -xzf $sdist -C $LLAMA_DIR"
        tar -xzf "$sdist" -C "$LLAMA_DIR"
    fi
    echo "$src"
}

# Drops VK_EXT_layer_settings (a validation-layer option, only ever enabled in
# GGML_VULKAN_VALIDATE builds) from instance creation: its types are not in Debian 12's
# Vulkan 1.3.239 headers. Idempotent: once removed, the patterns match nothing.
patch_vulkan_headers() {    # $1: source folder
    local f=$1/ggml/src/ggml-vulkan/ggml-vulkan.cpp
    step_is "patching out VK_EXT_layer_settings" "edit $f: drop the LayerSettingEXT lines before vk::InstanceCreateInfo"
    sed -i \
        -e '/VkBool32 enable_best_practice = layer_settings;/,/vk::LayerSettingsCreateInfoEXT layer_setting_info(settings);/d' \
        -e 's/layers, extensions, &layer_setting_info);/layers, extensions);/' \
        "$f"
    if grep -q 'LayerSettingsCreateInfoEXT' "$f"; then
        die "ggml-vulkan.cpp changed: VK_EXT_layer_settings is still used in $f"
    fi
}

# logged LOG COMMAND...: runs COMMAND with its output in LOG; on failure shows the end
# of LOG and returns the command's exit code (for the ERR trap's report).
logged() {
    local file=$1 rc=0
    shift
    "$@" >"$file" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$file" >&2
        log "full log: $file"
    fi
    return "$rc"
}

# Builds the CPU backend for this machine (-march=native) but without Intel AMX: on the
# AMX Xeons these machines can be, llama-server crashed (SIGSEGV in
# ggml_backend_amx_mul_mat on the Q4_1 weights, in its warm-up run). Without AMX its
# x86 path (AVX2/AVX-512) and weight repacking remain. Idempotent, like the patch above.
patch_no_amx() {    # $1: source folder
    local f=$1/ggml/src/ggml-cpu/CMakeLists.txt
    step_is "building the CPU backend without AMX" "edit $f: add -mno-amx-tile -mno-amx-int8 -mno-amx-bf16 after -march=native"
    sed -i 's/^\( *list(APPEND ARCH_FLAGS -march=native\))$/\1 -mno-amx-tile -mno-amx-int8 -mno-amx-bf16)/' "$f"
    grep -q -- '-march=native -mno-amx-tile' "$f" || die "ggml-cpu's CMakeLists.txt changed: cannot turn AMX off in $f"
}

# build_llama PROGRAM KIND: llama.cpp's PROGRAM (llama-server, llama-bench) with the
# KIND (cpu|vulkan) backend, statically linked, into $LLAMA_BIN/PROGRAM-KIND.
build_llama() {
    local target=$1 kind=$2 bin=$LLAMA_BIN/$1-$2 lock
    if [ -x "$bin" ]; then log "$target ($kind): $bin (cached)"; return 0; fi
    # Two runs at once (two engineers, one cache) must not build in the same folder:
    # the second waits for the first, then finds its binary.
    mkdir -p "$LLAMA_DIR"
    exec {lock}>"$LLAMA_DIR/build-$kind.lock"
    if ! flock -n "$lock"; then
        log "another run is building llama.cpp ($kind): waiting for it"
        flock "$lock"
    fi
    if [ -x "$bin" ]; then
        log "$target ($kind): $bin (built by the other run)"
        exec {lock}>&-
        return 0
    fi
    ensure_build_tools "$kind"
    local src
    src=$(llama_src)
    local build=$LLAMA_DIR/build-$kind vk=OFF
    patch_no_amx "$src"
    if [ "$kind" = vulkan ]; then vk=ON; patch_vulkan_headers "$src"; fi
    # Static, so the binary in bin/ runs alone; no web UI (it would be fetched from a
    # model hub) and no HTTPS (the server only listens on loopback here). One build
    # folder per backend serves every program.
    step_is "configuring llama.cpp ($kind)" \
        "cmake -S $src -B $build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_VULKAN=$vk -DLLAMA_BUILD_TESTS=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF"
    log "cmake configure llama.cpp ($kind) in $build"
    logged "$build.configure.log" nice -n 19 cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DGGML_VULKAN="$vk" -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF
    step_is "building $target ($kind)" "nice -n 19 cmake --build $build --target $target -j2 (log: $build.build.log)"
    log "building $target ($kind) with -j2 under nice -n 19 (tens of minutes on 2 cores the first time; log: $build.build.log)"
    local t=$SECONDS
    logged "$build.build.log" nice -n 19 cmake --build "$build" --target "$target" -j2
    mkdir -p "$LLAMA_BIN"
    # Copied last, under a temporary name: a cut-short build never looks cached.
    cp "$build/bin/$target" "$bin.tmp"
    mv "$bin.tmp" "$bin"
    log "$target ($kind) built in $((SECONDS - t))s: $bin"
    exec {lock}>&-
}

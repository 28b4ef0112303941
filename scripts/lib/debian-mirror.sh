# Sourced by setup.sh and fresh-machine.sh: this machine's Debian mirror, read from
# its apt sources, so that no script ever names a mirror's host.
# shellcheck shell=bash

# Prints "URI SIGNED_BY" of the main bookworm repository of this machine.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822: blank-line separated stanzas; take the one whose Suites has "bookworm".
        awk '
            function flush() {
                if (uri != "" && suites ~ /(^|[ \t])bookworm([ \t]|$)/ && !done) {
                    print uri, (signed == "" ? "-" : signed); done = 1
                }
                uri = ""; suites = ""; signed = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            tolower($1) == "uris:"      { uri = $2 }
            tolower($1) == "suites:"    { $1 = ""; suites = $0 }
            tolower($1) == "signed-by:" { signed = $2 }
            END { flush() }
        ' "$f" | head -n1 | grep . && return 0
    done
    # One-line format: "deb [opts] URI bookworm main".
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" {
                i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i+1) == "bookworm") { print $i, "-"; exit }
             }' "$f" | head -n1 | grep . && return 0
    done
    return 1
}

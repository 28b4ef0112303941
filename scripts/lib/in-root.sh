#!/usr/bin/env bash
# in-root.sh ROOT 'COMMAND LINE': runs the command line in ROOT's /work/wisp, as root,
# with a clean environment (HOME=/root, rustup's PATH, CI passed on). Meant to run as
# the first process of private mount and PID namespaces (fresh-machine.sh starts it
# with unshare), so that its mounts and every process it leaves behind end with it.
set -Eeuo pipefail
root=$1
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
exec chroot "$root" /usr/bin/env -i HOME=/root USER=root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -Eeuo pipefail -c "cd /work/wisp && $2"

#!/bin/sh
# private-mounts: a lab node's (or roaming client's) own /run, /sys and overlays over host dirs.
# Usage: nsenter --net=NS -- unshare --mount=FILE --propagation private -- \
#          sh -c "<this script>" private-mounts TOP... [-- SHIM=TARGET...]
# Runs inside the new mount namespace: each TOP (etc, var, ...) becomes an overlay, the host's
# directory read-only below, a tmpfs under /run above; each SHIM file is bound over TARGET.
# Environment:
#   LAB_MOUNT_NS_DIR  the lab's mount-namespace dir, unmounted here (a copy in here would loop)
#   RUN_SIZE          size of the namespace's own /run tmpfs (e.g. 64m)
#   WRITTEN_FILES     optional: the files cloud-init wrote, copied into the overlays' upper layer
#   MOUNT_SYSFS       optional: 1 mounts this network namespace's own /sys
set -eu

UPPER=/run/wgmesh-lab/upper
WORK=/run/wgmesh-lab/work

# Mount points under /run, one a line.
under_run() {
    awk '$5 ~ "^/run/" {print $5}' /proc/self/mountinfo
}

# Drop the copies of mounts under /run, deepest first: a copy of a netns file would keep that
# network namespace alive after `ip netns del`. One may vanish between listing and unmounting
# (another tool deleting its netns): only what is still there afterwards is an error.
drop_run_mounts() {
    under_run | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || :; done
    if under_run | grep .; then
        echo "mounts under /run remain" >&2
        return 1
    fi
}

own_run() {
    mount -t tmpfs -o "mode=0755,size=$RUN_SIZE" wgm-run /run
    mkdir -p "$UPPER" "$WORK"
}

# The written files go to the overlays' upper layer; those under /run straight to the new /run.
copy_written_files() {
    [ -n "${WRITTEN_FILES:-}" ] || return 0
    cp -a "$WRITTEN_FILES/." "$UPPER/"
    if [ -d "$UPPER/run" ]; then cp -a "$UPPER/run/." /run/; fi
}

overlay() {
    mkdir -p "$UPPER/$1" "$WORK/$1"
    mount -t overlay "wgm-$1" -o "lowerdir=/$1,upperdir=$UPPER/$1,workdir=$WORK/$1" "/$1"
}

bind_shim() {
    mount --bind "${1%%=*}" "${1#*=}"
}

main() {
    umount -l "$LAB_MOUNT_NS_DIR"
    drop_run_mounts
    own_run
    copy_written_files
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        overlay "$1"
        shift
    done
    if [ $# -gt 0 ]; then shift; fi
    if [ "${MOUNT_SYSFS:-0}" = 1 ]; then mount -t sysfs wgm-sys /sys; fi
    for pair in "$@"; do bind_shim "$pair"; done
    mkdir -p /etc/wireguard
}

main "$@"

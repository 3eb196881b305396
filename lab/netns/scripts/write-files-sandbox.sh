#!/bin/sh
# write-files-sandbox: let cloud-init itself apply a node's write_files, without writing to the host.
# Usage: unshare --mount --net --uts --ipc --propagation private -- \
#          sh -c "<this script>" write-files-sandbox MODULE... -- PATH...
# An overlay with the real / read-only below and a tmpfs above, chroot into it, run
# `cloud-init --file user-data single --name MODULE --frequency always` for each MODULE, then copy
# each PATH cloud-init wrote (modes and owners as it set them) out of the upper layer.
# Environment:
#   SANDBOX    an empty directory to mount the sandbox on (it vanishes with the namespace)
#   USER_DATA  the node's user-data file
#   OUT        where the written files go, under their absolute paths
set -eu

ROOT=$SANDBOX/root

sandbox_root() {
    mount -t tmpfs -o mode=0700,size=64m wgm-sandbox "$SANDBOX"
    mkdir "$SANDBOX/upper" "$SANDBOX/work" "$ROOT"
    mount -t overlay wgm-sandbox -o "lowerdir=/,upperdir=$SANDBOX/upper,workdir=$SANDBOX/work" "$ROOT"
    mount -t proc proc "$ROOT/proc"
    mount -t tmpfs -o mode=0755 wgm-run "$ROOT/run"
}

# cloud-init needs a /dev with these nodes, nothing of the host's.
minimal_dev() {
    mount -t tmpfs -o mode=0755 wgm-dev "$ROOT/dev"
    mknod -m 666 "$ROOT/dev/null" c 1 3
    mknod -m 666 "$ROOT/dev/zero" c 1 5
    mknod -m 666 "$ROOT/dev/random" c 1 8
    mknod -m 666 "$ROOT/dev/urandom" c 1 9
}

run_module() {
    chroot "$ROOT" cloud-init --file /run/user-data single --name "$1" --frequency always
}

# Copy one written file out, keeping its path below OUT; a file cloud-init did not write fails.
copy_out() {
    rel=${1#/}
    if [ ! -f "$rel" ]; then
        echo "cloud-init did not write $1" >&2
        exit 3
    fi
    cp -a --parents "$rel" "$OUT/"
}

main() {
    sandbox_root
    minimal_dev
    umask 077
    cp "$USER_DATA" "$ROOT/run/user-data"
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        run_module "$1"
        shift
    done
    if [ $# -gt 0 ]; then shift; fi
    cd "$SANDBOX/upper"
    for path in "$@"; do copy_out "$path"; done
}

main "$@"

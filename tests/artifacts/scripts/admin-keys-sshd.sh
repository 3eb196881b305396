#!/bin/sh
# The admin-key scenario of tests/artifacts/test_admin_keys_sshd.py, run by it inside a throwaway
# mount + network namespace (`unshare --mount --net`): never on a host of its own.
# Usage: admin-keys-sshd.sh WORK_DIR SSHD   (WORK_DIR: keys, bundles 1-3, fakes in bin/;
# APPLY in the environment: the apply command). Prints one `<step> <key>: <user or refused>` a probe.
set -eu
W=$1; SSHD=$2
for top in etc var home run; do
  mkdir -p "$W/ov/$top/u" "$W/ov/$top/w"
  if [ "$top" = run ] || [ "$top" = home ]; then mount -t tmpfs "wgm-$top" "/$top"; continue; fi
  mount -t overlay "wgm-$top" -o "lowerdir=/$top,upperdir=$W/ov/$top/u,workdir=$W/ov/$top/w" "/$top"
done
ip link set lo up
id -u sshd >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin sshd
mkdir -p /etc/ssh /run/sshd
ssh-keygen -A >/dev/null  # host keys in the overlay: the apply's `sshd -t` check needs them
ln -s "$SSHD" "$W/bin/sshd"  # the apply finds sshd on PATH and checks the drop-in with it
cat >"$W/sshd_config" <<EOF
Include /etc/ssh/sshd_config.d/*.conf
UsePAM no
ListenAddress 127.0.0.1:2222
PidFile $W/sshd.pid
EOF
probe() {
  for k in a b; do
    who=$(ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o ConnectTimeout=5 -i "$W/key_$k" -p 2222 ops@127.0.0.1 id -un 2>/dev/null) || who=refused
    echo "$1 $k: $who"
  done
}
PATH="$W/bin:$PATH" sh -c "$APPLY" <"$W/bundle1" >"$W/apply1.out"
"$SSHD" -f "$W/sshd_config" -E "$W/sshd.log"
trap 'kill "$(cat "$W/sshd.pid")"' EXIT
sleep 0.3
probe first
PATH="$W/bin:$PATH" sh -c "$APPLY" <"$W/bundle2" >"$W/apply2.out"
probe rotated
stat -c '%U %a' /etc/wgmesh/ssh/ops
PATH="$W/bin:$PATH" sh -c "$APPLY" <"$W/bundle3" >"$W/apply3.out" 2>&1 && echo "bad drop-in: applied"
grep -q NoSuchOption /etc/ssh/sshd_config.d/10-wgmesh.conf && echo "bad drop-in: installed"
probe refused

#!/bin/sh
# wgmesh-install: bring a self-managed Debian, Ubuntu or Raspberry Pi OS host (`cloud: external`)
# into the mesh without cloud-init. Run it as root with no arguments: `sudo sh install.sh` (or
# bash). It installs wireguard-tools and nftables where missing (apt-get), enables wg-quick@wg0,
# then runs the node's apply script (wgmesh-apply.bash) on its bundle: the same files with the
# same modes its #cloud-config writes, reloaded as every live update does. Run it again with a
# newer installer to re-apply (day-2): only what changed is touched. It prints one line, never
# a key; on failure the reason and the tools' redacted output go to stderr.
# cloudinit/installer.py fills in the node name, the apply script and the bundle (a secret).
set -eu
NODE=@NODE@
ROOT=${WGMESH_ROOT:-} # tests: the apply's host paths and the systemd check below this directory
umask 077

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  printf 'wgmesh-install: %s: error: run it as root (sudo sh %s)\n' "$NODE" "$0" >&2
  exit 1
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wgmesh-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' HUP INT TERM
LOG="$WORK/log"
: >"$LOG"

fail() {
  printf 'wgmesh-install: %s: error: %s\n' "$NODE" "$1" >&2
  # The apply already redacts keys; apt has none. Filter anyway: nothing here may print a key.
  sed 's#[A-Za-z0-9+/]\{42\}[AEIMQUYcgkosw048]=#<key>#g' "$LOG" >&2
  exit 1
}

command -v bash >/dev/null 2>&1 || fail "bash is missing (the apply script is a bash script)"

# ----------------------------------------------------------------------------- the tools
missing=""
if ! command -v wg >/dev/null 2>&1 || ! command -v wg-quick >/dev/null 2>&1; then
  missing="wireguard-tools"
fi
command -v nft >/dev/null 2>&1 || missing="${missing:+$missing }nftables"
installed=-
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null 2>&1 || fail "no apt-get to install $missing: install it by hand, then run this again"
  # $missing is one or two package names: split on purpose.
  # shellcheck disable=SC2086
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; } \
    >>"$LOG" 2>&1 </dev/null || fail "apt-get could not install $missing"
  installed=$(printf '%s' "$missing" | tr ' ' ',')
fi

# ----------------------------------------------------------------------------- wg0 at boot
# Enabled before the apply, so its first start of wg0 goes through systemd (wg-quick@wg0).
enabled=-
if [ -d "$ROOT/run/systemd/system" ]; then
  if ! systemctl is-enabled --quiet wg-quick@wg0 >/dev/null 2>&1; then
    systemctl enable wg-quick@wg0 >>"$LOG" 2>&1 || fail "systemctl could not enable wg-quick@wg0"
    enabled=wg-quick@wg0
  fi
fi

# ----------------------------------------------------------------------------- the apply
cat >"$WORK/apply.bash" <<'WGMESH_APPLY_SCRIPT'
@APPLY@
WGMESH_APPLY_SCRIPT
cat >"$WORK/bundle" <<'WGMESH_BUNDLE'
@BUNDLE@
WGMESH_BUNDLE
bash "$WORK/apply.bash" "$WORK/bundle" >"$WORK/out" 2>>"$LOG" </dev/null \
  || fail "the apply failed (it puts back every file it replaced)"
summary=$(grep '^wgmesh-apply: ' "$WORK/out" | tail -n 1)
[ -n "$summary" ] || fail "the apply printed no summary"
printf 'wgmesh-install: %s installed=%s enabled=%s %s\n' "$NODE" "$installed" "$enabled" "${summary#wgmesh-apply: }"

#!/bin/bash
# wgmesh-apply: install a node's host configuration (a bundle, cloudinit/bundle.py, or a bare
# wg0.conf) read on stdin or from the file named by the last argument, and apply only what
# changed. cloudinit/sync.py documents the modes and the summary line, and fills in the two
# placeholders below. Nothing here may print a key: wg's messages go through `redact`.
set -euo pipefail
umask 077
IF=@IF@
# The IPv6 RA guard, cloudinit/scripts/wgmesh-ra-guard.sh (an sh script; $0 = the sysctl file it writes).
RA_GUARD=$(
  cat <<'WGMESH_RA_GUARD'
@RA_GUARD@
WGMESH_RA_GUARD
)
ROOT=${WGMESH_ROOT:-}  # tests: every host path below this directory; sudo drops the variable
DIR=${WGMESH_WG_DIR:-$ROOT/etc/wireguard}  # tests point this elsewhere
CONF="$DIR/$IF.conf"
ACCEPT_RA_PATH="$ROOT/etc/sysctl.d/89-wgmesh-accept-ra.conf"
KEYS_DIR=/etc/wgmesh/ssh  # wholly wgmesh's: a key file the bundle no longer holds is removed
START=${EPOCHREALTIME:-0}
MODE=full
if [ "${1:-}" = --peers-only ]; then MODE=peers; shift; fi

redact() { sed -E 's#[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=#<key>#g'; }
# Run a command, its output (stderr and stdout) redacted onto stderr; keeps its exit status.
# It never inherits the lock (fd 9): a daemon it starts (wireguard-go) would hold it for good.
quietly() { "$@" 9>&- 2>&1 | redact >&2; }
elapsed() { awk -v a="$START" -v b="${EPOCHREALTIME:-0}" 'BEGIN { printf "%.2f", b - a }'; }
# systemd runs this host (never under WGMESH_ROOT: a test must not reach the real systemd).
systemd_host() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

ROLLBACK=0  # set once a host file is replaced: `die` then puts every replaced file back
RELOADING=0  # set once the new files start being loaded: a rollback then reloads the old ones
die() {
  printf 'wgmesh-apply: error: %s\n' "$*" >&2
  if [ "$ROLLBACK" = 1 ]; then
    ROLLBACK=0
    rollback_host || printf 'wgmesh-apply: error: the rollback of the host files failed too\n' >&2
  fi
  exit 1
}

mkdir -p "$DIR"
chmod 700 "$DIR"
exec 9>"$DIR/.$IF.apply.lock"
flock -w 120 9 || die "another apply on $IF holds the lock"  # one apply at a time per interface
# Same directory as wg0.conf (so mv is atomic); the conf's name ends in .conf for wg-quick strip.
WORK=$(mktemp -d "$DIR/.$IF-apply-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
TMP="$WORK/$IF.conf"

# ----------------------------------------------------------------------------- the payload
# parts[i], paths[i], modes[i]: the bundle's files; $WORK/file.i their content.
parts=() paths=() modes=() users=()
ra_guard=0
bundle=0
cat "${1:-/dev/stdin}" >"$WORK/payload"
if [ "$(head -n 1 "$WORK/payload")" = "wgmesh-bundle 1" ]; then
  bundle=1
  ended=""
  while read -r word a b c d extra; do
    case $word in
      wgmesh-bundle) ;;
      ra-guard)
        [[ $a =~ ^[01]$ ]] || die "bundle: bad ra-guard line"
        ra_guard=$a
        ;;
      user)
        [[ $a =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "bundle: bad user name"
        users+=("$a")
        ;;
      file)
        [ -z "$extra" ] || die "bundle: a file line has extra fields"
        [[ $b =~ ^/etc/[A-Za-z0-9._@/-]+$ && $b != *..* ]] || die "bundle: bad path for part $a"
        case $a:$b in  # each part only where that kind of file belongs
          wg:* | nft:/etc/wireguard/*.nft | sysctl:/etc/sysctl.d/*.conf | guard:/etc/wgmesh/*.nft) ;;
          guard-unit:/etc/systemd/system/*.service | sshd:/etc/ssh/sshd_config.d/*.conf) ;;
          sudoers:/etc/sudoers.d/* | keys:"$KEYS_DIR"/*) ;;
          *) die "bundle: unknown part $a, or bad path for it" ;;
        esac
        if [ "$a" != keys ] && [[ " ${parts[*]} " == *" $a "* ]]; then die "bundle: two files for part $a"; fi
        [[ $c =~ ^0[0-7]{3}$ ]] || die "bundle: bad mode for $b"
        i=${#parts[@]}
        base64 -d <<<"$d" >"$WORK/file.$i" 2>/dev/null || die "bundle: $b is not base64"
        parts+=("$a") paths+=("$b") modes+=("$c")
        ;;
      end) ended=$a ;;
      *) die "bundle: unknown line" ;;
    esac
  done <"$WORK/payload"
  [ "$ended" = "${#parts[@]}" ] || die "bundle: truncated (no end line for its ${#parts[@]} files)"
  wg_index=""
  for i in "${!parts[@]}"; do
    if [ "${parts[$i]}" = wg ]; then
      [ -z "$wg_index" ] || die "bundle: more than one wg0.conf"
      wg_index=$i
    fi
  done
  [ -n "$wg_index" ] || die "bundle: no wg0.conf"
  cp "$WORK/file.$wg_index" "$TMP"
else
  cp "$WORK/payload" "$TMP"  # a bare wg0.conf (the manual path in docs/changes.md): a bundle of it alone
fi
rm -f "$WORK/payload"
chown root:root "$TMP"
chmod 600 "$TMP"

# ----------------------------------------------------------------------------- wg0.conf checks
# Value(s) of an [Interface] key in the new file, comma-separated values split one per line.
iface_values() {
  awk -v key="$1" '
    /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section); next }
    section == "[Interface]" {
      line = $0; sub(/#.*/, "", line)
      split(line, kv, "=")
      k = kv[1]; gsub(/[[:space:]]/, "", k)
      if (k != key) next
      v = substr(line, index(line, "=") + 1); gsub(/[[:space:]]/, "", v)
      n = split(v, parts, ",")
      for (i = 1; i <= n; i++) if (parts[i] != "") print parts[i]
    }' "$TMP"
}

grep -q '^\[Interface\]' "$TMP" || die "the new config has no [Interface] section"
[ "$(iface_values PrivateKey | wc -l)" -eq 1 ] || die "the new config needs exactly one PrivateKey"
KEY_LINE='^[[:space:]]*(PrivateKey|PublicKey|PresharedKey)[[:space:]]*='
KEY_OK='[[:space:]]*[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=[[:space:]]*$'
if grep -E "$KEY_LINE" "$TMP" | grep -Evq "$KEY_LINE$KEY_OK"; then
  die "the new config has a malformed key (line not shown)"
fi
{ wg-quick strip "$TMP" 2>&1 >/dev/null | redact >&2; } || die "wg-quick cannot read the new config"

# ----------------------------------------------------------------------------- host files
# Check every part first, then replace the changed files, then reload what each changed file
# feeds. Peers-only mode installs only the access parts (sshd drop-in, key files, sudoers, the
# login user): it runs first, as the image's own user, so the full apply that follows can log
# in as a newly set sshUser, with a newly added admin key. The rest waits for the full apply.
# sshd is in /usr/sbin, often not on a login PATH; under WGMESH_ROOT only PATH's (a test's) counts.
sshd_bin() { command -v sshd || { [ -z "$ROOT" ] && [ -x /usr/sbin/sshd ] && echo /usr/sbin/sshd; }; }
target_of() { printf '%s%s' "$ROOT" "${paths[$1]}"; }

check_host_parts() {
  local i f sshd
  for i in "${!parts[@]}"; do
    f="$WORK/file.$i"
    case ${parts[$i]} in
      nft | guard)
        quietly nft -c -f "$f" || die "nft refuses the new ${parts[$i]} ruleset ${paths[$i]} (nothing changed)"
        ;;
      sysctl)
        if grep -Ev '^[[:space:]]*([#;].*)?$' "$f" | grep -Evq '^-?[a-z0-9_./-]+[[:space:]]*=[[:space:]]*[^[:space:]]'; then
          die "the new sysctl file ${paths[$i]} has a malformed line (nothing changed)"
        fi
        ;;
      sudoers)
        if command -v visudo >/dev/null; then
          quietly visudo -cqf "$f" || die "visudo refuses the new ${paths[$i]} (nothing changed)"
        fi
        ;;
      sshd)
        # The new drop-in first (sshd keeps the first value of a keyword), then the host's own config.
        if sshd=$(sshd_bin); then
          printf 'Include %s\nInclude %s\n' "$f" "$ROOT/etc/ssh/sshd_config" >"$WORK/sshd_config"
          [ -d "$ROOT/run/sshd" ] || install -d -m 0755 "$ROOT/run/sshd"  # sshd -t wants its privsep dir
          quietly "$sshd" -t -f "$WORK/sshd_config" || die "sshd -t refuses the new ${paths[$i]} (nothing changed)"
        fi
        ;;
    esac
  done
}

# Parts a peers-only apply installs (see above); a full apply installs every part.
in_mode() { [ "$MODE" = full ] || case $1 in sshd | keys | sudoers) true ;; *) false ;; esac; }

changed=()  # index of each host file to replace
stale=()    # key files of users the bundle no longer names
find_changes() {
  local i t want
  for i in "${!parts[@]}"; do
    [ "${parts[$i]}" != wg ] || continue
    in_mode "${parts[$i]}" || continue
    t=$(target_of "$i")
    want=${modes[$i]#0}
    if [ -f "$t" ] && cmp -s "$WORK/file.$i" "$t" && [ "$(stat -c %a "$t")" = "$want" ]; then continue; fi
    changed+=("$i")
  done
  local d="$ROOT$KEYS_DIR" name keep p
  [ -d "$d" ] || return 0
  for p in "$d"/*; do
    [ -f "$p" ] || continue
    keep=0
    for i in "${!parts[@]}"; do
      if [ "${parts[$i]}" = keys ] && [ "$(target_of "$i")" = "$p" ]; then keep=1; fi
    done
    name=${p##*/}
    [ "$keep" = 1 ] || stale+=("$name")
  done
}

# Replaced files: backup.<i> holds the old one (none: the file did not exist).
installed=() removed=()
# Called in a condition (set -e is off inside): every step says `|| return 1` itself.
put_file() {
  local i=$1 t staged
  t=$(target_of "$i")
  if [ -f "$t" ]; then cp -p "$t" "$WORK/backup.$i" || return 1; fi
  installed+=("$i")
  # A missing directory is made 0755 (sshd reads key files as the login user); an existing one
  # keeps its mode (/etc/wireguard stays 0700).
  [ -d "${t%/*}" ] || (umask 022 && mkdir -p "${t%/*}") || return 1
  staged=$(mktemp "${t%/*}/.wgmesh-XXXXXX") || return 1  # no .conf suffix: no include glob reads it
  { cat "$WORK/file.$i" >"$staged" && chown root:root "$staged" && chmod "${modes[$i]}" "$staged" \
    && mv -f "$staged" "$t"; } || { rm -f "$staged"; return 1; }
}

has_changed() {  # has_changed <part>: a file of that part was replaced or removed
  local i
  for i in "${installed[@]}"; do [ "${parts[$i]}" != "$1" ] || return 0; done
  [ "$1" != keys ] || [ "${#removed[@]}" -eq 0 ] || return 0
  return 1
}

path_of_part() {  # the target of the bundle's (first) file of a part
  local i
  for i in "${!parts[@]}"; do
    if [ "${parts[$i]}" = "$1" ]; then target_of "$i"; return 0; fi
  done
  return 1
}

reload_sshd() {
  systemd_host || return 0  # no sshd to tell (the netns lab): the next start reads the file
  local unit
  for unit in ssh.service sshd.service; do  # Debian/Ubuntu: ssh.service; others: sshd.service
    if systemctl is-active --quiet "$unit"; then quietly systemctl reload "$unit"; return; fi
  done
}

# The running values of the keys a new sysctl file sets (`sysctl KEY` prints `KEY = VALUE`, a
# sysctl.d line): the old file alone cannot undo a key only the new one sets (cidr6's IPv6
# forwarding), so a rollback loads these first.
save_sysctl() {
  local key
  : >"$WORK/sysctl.saved"
  while read -r key; do
    sysctl "$key" >>"$WORK/sysctl.saved" 2>/dev/null || true
  done < <(sed -nE 's/^[[:space:]]*-?([a-z0-9_./-]+)[[:space:]]*=.*/\1/p' "$1")
}

# Load what the changed files feed, in an order that never leaves a gap: the metadata guard
# first, the RA guard before forwarding, sshd last. Each reload reads the installed file.
reload_parts() {
  local f
  if has_changed guard-unit && systemd_host; then
    quietly systemctl daemon-reload || return 1
    quietly systemctl enable wgmesh-metadata-guard.service || return 1
  fi
  if has_changed guard && f=$(path_of_part guard); then quietly nft -f "$f" || return 1; fi
  # wg0 down: its next `wg-quick up` loads the table (PostUp).
  if has_changed nft && f=$(path_of_part nft) && ip link show dev "$IF" >/dev/null 2>&1; then
    quietly nft -f "$f" || return 1
  fi
  if has_changed sysctl && f=$(path_of_part sysctl); then
    save_sysctl "$f"
    if [ "$ra_guard" = 1 ]; then quietly sh -c "$RA_GUARD" "$ACCEPT_RA_PATH" || return 1; fi
    quietly sysctl -q -p "$f" || return 1
  fi
  if has_changed sshd; then reload_sshd || return 1; fi
}

user_exists() {
  if [ -n "$ROOT" ]; then grep -q "^$1:" "$ROOT/etc/passwd" 2>/dev/null; else id -u "$1" >/dev/null 2>&1; fi
}

# sshUser: created like cloud-init's users module would (its own group, a home, bash, no
# password); sudo comes from the sudoers file of the bundle. Never removed by wgmesh. Its
# password field is `*` (no password), not useradd's `!` (locked): with UsePAM off, sshd
# refuses a locked account even for a key (OpenSSH auth.c allowed_user; measured).
ensure_users() {
  local u prefix=()
  [ -z "$ROOT" ] || prefix=(--prefix "$ROOT")
  for u in "${users[@]}"; do
    user_exists "$u" && continue
    quietly useradd "${prefix[@]}" --create-home --user-group --shell /bin/bash --password '*' "$u" || return 1
    created_users+=("$u")
  done
}

rollback_host() {
  local i t name part status=0
  for i in "${installed[@]}"; do
    t=$(target_of "$i")
    if [ -f "$WORK/backup.$i" ]; then mv -f "$WORK/backup.$i" "$t" || status=1; else rm -f "$t" || status=1; fi
  done
  for name in "${removed[@]}"; do mv -f "$WORK/stale.$name" "$ROOT$KEYS_DIR/$name" || status=1; done
  [ "${#installed[@]}" -eq 0 ] || printf 'wgmesh-apply: the previous host files are back\n' >&2
  [ "$RELOADING" = 1 ] || return "$status"  # nothing was loaded from the new files yet
  # Reload the changed parts from the files now back in place.
  if has_changed guard-unit && systemd_host; then quietly systemctl daemon-reload || status=1; fi
  for part in guard nft; do
    has_changed "$part" || continue
    t=$(path_of_part "$part") || continue
    if [ -f "$t" ]; then
      if [ "$part" = guard ] || ip link show dev "$IF" >/dev/null 2>&1; then quietly nft -f "$t" || status=1; fi
    elif [ "$part" = nft ]; then
      quietly nft 'add table inet wgmesh; delete table inet wgmesh' || status=1
    fi
  done
  if has_changed sysctl; then
    if [ -s "$WORK/sysctl.saved" ]; then quietly sysctl -q -p "$WORK/sysctl.saved" || status=1; fi
    if t=$(path_of_part sysctl) && [ -f "$t" ]; then quietly sysctl -q -p "$t" || status=1; fi
  fi
  if has_changed sshd; then reload_sshd || status=1; fi
  return "$status"
}

created_users=()
host_changed=-
if [ "$bundle" = 1 ]; then
  check_host_parts
  find_changes
  ROLLBACK=1
  for i in "${changed[@]}"; do put_file "$i" || die "could not install ${paths[$i]}"; done
  for name in "${stale[@]}"; do
    mv -f "$ROOT$KEYS_DIR/$name" "$WORK/stale.$name" || die "could not remove the key file of $name"
    removed+=("$name")
  done
  RELOADING=1
  if ! reload_parts; then die "the new host configuration did not load"; fi
  ensure_users || die "could not create the login user"
  names=()
  for part in guard-unit guard nft sysctl sudoers keys sshd; do
    if has_changed "$part"; then names+=("$part"); fi
  done
  [ "${#created_users[@]}" -eq 0 ] || names+=(user)
  [ "${#names[@]}" -eq 0 ] || host_changed=$(IFS=,; printf '%s' "${names[*]}")
fi

# ----------------------------------------------------------------------------- wg0
DEFAULT_ROUTE='(^|[[:space:],=])(0\.0\.0\.0|::)/0([[:space:],]|$)'
reasons=()
if ! ip link show dev "$IF" >/dev/null 2>&1; then
  reasons+=(down)
else
  want_addr=$(iface_values Address | sort)
  have_addr=$(ip -o addr show dev "$IF" scope global | awk '{ print $4 }' | sort)
  [ "$want_addr" = "$have_addr" ] || reasons+=(address)
  want_mtu=$(iface_values MTU)
  have_mtu=$(ip -o link show dev "$IF" | awk '{ for (i = 1; i < NF; i++) if ($i == "mtu") print $(i + 1) }')
  if [ -n "$want_mtu" ] && [ "$want_mtu" != "$have_mtu" ]; then reasons+=(mtu); fi
  want_port=$(iface_values ListenPort)
  if [ -n "$want_port" ] && [ "$want_port" != "$(wg show "$IF" listen-port)" ]; then reasons+=(port); fi
  # Compared in memory only: neither key is ever printed.
  if [ "$(iface_values PrivateKey)" != "$(wg show "$IF" private-key)" ]; then reasons+=(private-key); fi
  if grep -Eq "^[[:space:]]*AllowedIPs.*$DEFAULT_ROUTE" "$TMP" \
    || wg show "$IF" allowed-ips | grep -Eq "$DEFAULT_ROUTE"; then
    reasons+=(default-route)
  fi
fi

PREV="$DIR/.$IF.conf.prev"
install_conf() {
  if [ -f "$CONF" ]; then cp -p "$CONF" "$PREV"; else rm -f "$PREV"; fi
  mv -f "$TMP" "$CONF"
}

restart() {
  if systemd_host && systemctl is-active --quiet "wg-quick@$IF"; then
    quietly systemctl restart "wg-quick@$IF"
  elif systemd_host && [ "${reasons[0]}" = down ] && systemctl is-enabled --quiet "wg-quick@$IF"; then
    quietly systemctl start "wg-quick@$IF"
  else
    if ip link show dev "$IF" >/dev/null 2>&1; then quietly wg-quick down "$IF"; fi
    quietly wg-quick up "$IF"
  fi
}

held=()
if [ "$MODE" = peers ]; then
  # Peers first: the node's own interface keeps running as it is (its old key stays valid for
  # the peers that have not learned the new one yet); the full apply switches it later.
  for why in "${reasons[@]}"; do
    case $why in
      down | default-route)
        printf 'wgmesh-apply: %s action=skip mode=peers reason=%s seconds=%s\n' "$IF" "$why" "$(elapsed)"
        exit 0
        ;;
      *) held+=("$why") ;;
    esac
  done
  reasons=()
fi

if [ "${#reasons[@]}" -gt 0 ]; then
  install_conf
  if ! restart; then
    [ -f "$PREV" ] || die "wg-quick could not bring $IF up with the new config"
    mv -f "$PREV" "$CONF"
    restart || die "$IF is down: neither the new nor the previous config came up"
    die "wg-quick could not bring $IF up with the new config: the previous config is back up"
  fi
  rm -f "$PREV"
  peers=$(wg show "$IF" peers | wc -l)
  why=$(IFS=,; printf '%s' "${reasons[*]}")
  printf 'wgmesh-apply: %s action=restart reason=%s peers=%s host=%s seconds=%s\n' \
    "$IF" "$why" "$peers" "$host_changed" "$(elapsed)"
  exit 0
fi

# Live peers and the new file's peers, one line each: key, endpoint, sorted AllowedIPs, keepalive,
# PSK (a secret: only compared in memory, never printed), "-" for an empty field.
peer_table() {
  local mode=$1 src=$2
  if [ "$mode" = live ]; then wg show "$IF" dump; else wg-quick strip "$src"; fi \
    | awk -F '\t' -v mode="$mode" '
    function empty(v) { return v == "" || v == "(none)" || v == "off" || v == "0" }
    function field(v) { return empty(v) ? "-" : v }
    function ips(s,   n, a, b, m, i, j, t, out) {
      gsub(/[[:space:]]/, "", s); n = split(s, a, ","); m = 0
      for (i = 1; i <= n; i++) if (!empty(a[i])) {
        t = a[i]; if (t !~ /\//) t = t (t ~ /:/ ? "/128" : "/32")
        for (j = m; j > 0 && b[j] > t; j--) b[j + 1] = b[j]
        b[j + 1] = t; m++
      }
      out = ""; for (i = 1; i <= m; i++) out = out (i > 1 ? "," : "") b[i]
      return out == "" ? "-" : out
    }
    function flush() {
      if (pub != "") print pub "\t" field(ep) "\t" ips(allowed) "\t" field(ka) "\t" field(psk)
      pub = ep = allowed = ka = psk = ""
    }
    mode == "live" {  # wg show dump: line 1 is the interface (its private key: skipped)
      if (NR > 1) { pub = $1; psk = $2; ep = $3; allowed = $4; ka = $8; flush() }
      next
    }
    /^[[:space:]]*\[/ { flush(); in_peer = ($0 ~ /^[[:space:]]*\[Peer\]/); next }
    in_peer {
      line = $0; sub(/#.*/, "", line); i = index(line, "="); if (!i) next
      k = tolower(substr(line, 1, i - 1)); gsub(/[[:space:]]/, "", k)
      v = substr(line, i + 1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", v)
      if (k == "publickey") pub = v
      else if (k == "endpoint") ep = v
      else if (k == "allowedips") allowed = allowed "," v
      else if (k == "persistentkeepalive") ka = v
      else if (k == "presharedkey") psk = v
    }
    END { flush() }'
}

# The [Peer] section of public key $2 in the (stripped) config file $1.
peer_section() {
  wg-quick strip "$1" | awk -v key="$2" '
    /^[[:space:]]*\[/ { show = 0; buf = $0 "\n"; in_peer = ($0 ~ /^[[:space:]]*\[Peer\]/); next }
    in_peer && !show {
      buf = buf $0 "\n"; line = $0; gsub(/[[:space:]]/, "", line)
      if (line == "PublicKey=" key) { show = 1; printf "%s", buf }
      next
    }
    show { print }'
}

# Bring wg0's peers to those of config file $1 without touching an unchanged peer: `wg syncconf`
# re-sends every peer (replacing its AllowedIPs) and the listen port (wireguard-go then rebinds
# its UDP socket), which drops packets between peers that did not change at all. New peers
# first (a rotated key takes over its AllowedIPs before the old key goes), then changed fields
# of existing peers, then removals. Returns non-zero on the first `wg` failure.
sync_peers() {
  local src=$1 pub row ep allowed ka psk old_ep old_allowed old_ka old_psk
  local -A live=() want=()
  peers_added=0 peers_changed=0 peers_removed=0
  while IFS=$'\t' read -r pub row; do [ -n "$pub" ] && live[$pub]=$row; done < <(peer_table live "")
  while IFS=$'\t' read -r pub row; do [ -n "$pub" ] && want[$pub]=$row; done < <(peer_table file "$src")
  for pub in "${!want[@]}"; do
    [ -z "${live[$pub]+set}" ] || continue
    quietly wg addconf "$IF" <(peer_section "$src" "$pub") || return 1
    peers_added=$((peers_added + 1))
  done
  for pub in "${!want[@]}"; do
    [ -n "${live[$pub]+set}" ] || continue
    [ "${live[$pub]}" != "${want[$pub]}" ] || continue
    IFS=$'\t' read -r ep allowed ka psk <<<"${want[$pub]}"
    IFS=$'\t' read -r old_ep old_allowed old_ka old_psk <<<"${live[$pub]}"
    if [ "$ep" != "$old_ep" ] && [ "$ep" != - ]; then
      quietly wg set "$IF" peer "$pub" endpoint "$ep" || return 1
    fi
    if [ "$ka" != "$old_ka" ]; then
      [ "$ka" != - ] || ka=off
      quietly wg set "$IF" peer "$pub" persistent-keepalive "$ka" || return 1
    fi
    if [ "$psk" != "$old_psk" ]; then  # the key goes through a pipe, never on a command line
      [ "$psk" != - ] || psk=""
      quietly wg set "$IF" peer "$pub" preshared-key <(printf '%s\n' "$psk") || return 1
    fi
    if [ "$allowed" != "$old_allowed" ]; then  # wg replaces the list: only this peer's IPs blink
      [ "$allowed" != - ] || allowed=""
      quietly wg set "$IF" peer "$pub" allowed-ips "$allowed" || return 1
    fi
    peers_changed=$((peers_changed + 1))
  done
  for pub in "${!live[@]}"; do
    [ -z "${want[$pub]+set}" ] || continue
    quietly wg set "$IF" peer "$pub" remove || return 1
    peers_removed=$((peers_removed + 1))
  done
}

# The route diff wg-quick would have made: what wg-quick up routes is every AllowedIP (most
# specific first) not already routed on wg0; the routes it added (proto boot) whose AllowedIP is gone go.
sync_routes() {
  local wanted net family host dst
  # What wg-quick up routes: every AllowedIP (most specific first) not already routed on wg0.
  wanted=$(wg show "$IF" allowed-ips \
    | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /\/[0-9]+$/) print $i }' | sort -u | sort -t/ -k2,2nr)
  routes_added=0
  while read -r net; do
    [ -n "$net" ] || continue
    family=-4; [[ $net == *:* ]] && family=-6
    if [ -z "$(ip "$family" route show dev "$IF" match "$net" 2>/dev/null)" ]; then
      quietly ip "$family" route add "$net" dev "$IF" || die "could not add the route to $net on $IF"
      routes_added=$((routes_added + 1))
    fi
  done <<<"$wanted"
  # Routes wg-quick added (proto boot, on wg0 only) whose AllowedIP no peer has any more.
  routes_removed=0
  for family in -4 -6; do
    host=32; [ "$family" = -6 ] && host=128
    while read -r dst _; do
      case $dst in "" | default) continue ;; esac
      [[ $dst == */* ]] || dst="$dst/$host"
      if ! grep -qxF -- "$dst" <<<"$wanted"; then
        quietly ip "$family" route del "$dst" dev "$IF" || die "could not remove the route to $dst on $IF"
        routes_removed=$((routes_removed + 1))
      fi
    done < <(ip "$family" route show dev "$IF" proto boot)
  done
}

want_fwmark=$(iface_values FwMark)
if [ "$MODE" = full ] && [ -n "$want_fwmark" ] && [ "$want_fwmark" != "$(wg show "$IF" fwmark)" ]; then
  quietly wg set "$IF" fwmark "$want_fwmark" || die "wg rejected the new FwMark (nothing changed)"
fi
if ! sync_peers "$TMP"; then
  if [ -f "$CONF" ] && sync_peers "$CONF"; then
    die "wg rejected a peer of the new config: the previous config's peers are back"
  fi
  die "wg rejected a peer of the new config: $IF's peers may be partly updated"
fi
if [ "$MODE" = full ]; then
  install_conf
  rm -f "$PREV"
fi
sync_routes

peers=$(wg show "$IF" peers | grep -c . || true)
action=sync
if [ "$MODE" = peers ]; then
  action=peers
  if [ "${#held[@]}" -gt 0 ]; then action="peers held=$(IFS=,; printf '%s' "${held[*]}")"; fi
fi
printf 'wgmesh-apply: %s action=%s peers=%s peers_added=%s peers_changed=%s peers_removed=%s' \
  "$IF" "$action" "$peers" "$peers_added" "$peers_changed" "$peers_removed"
printf ' routes_added=%s routes_removed=%s' "$routes_added" "$routes_removed"
printf ' host=%s seconds=%s\n' "$host_changed" "$(elapsed)"

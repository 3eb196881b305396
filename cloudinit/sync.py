"""The live-update script: install a node's new wg0.conf and apply it without dropping the mesh.

`apply_command()` is the one shell command line a live update runs on a node (over SSH from
`components/sync.py`, inside a namespace in the lab). It holds no secret: the new wg0.conf
arrives on its standard input (or as a file named by its last argument). It has two modes,
run in this order on every node whose conf changed (key rotation: every peer learns a new
public key before its owner switches to it):

- `peers_only=True` (`--peers-only`): only step 3's peer and route diff, whatever else
  changed. The node keeps running its own private key, address, MTU, port and FwMark, and the
  file is not installed (the full apply does that). Nothing to do when wg0 is down, or when a
  default route is involved (wg-quick's policy routing: the full apply restarts wg0).
- the full apply:

1. checks the new file (an [Interface] with a PrivateKey, parseable by `wg-quick strip`);
2. compares it with the running wg0: a full restart (`systemctl restart wg-quick@wg0`, or
   `wg-quick down/up` without systemd) only when wg0 is down or its own Address, MTU,
   ListenPort or PrivateKey changed (or a default route is involved: wg-quick's policy rules);
3. otherwise the peer diff in place (not `wg syncconf`: it re-sends every peer and the
   listen port, and wireguard-go rebinds its socket, dropping packets between peers that did
   not change): new peers added, changed fields of changed peers set, removed peers removed,
   unchanged peers never touched (on a `wg` error the previous config's peers are put back);
   then the route diff wg-quick would have made: a route for each AllowedIP not yet routed on
   wg0, and the routes wg-quick added (proto boot on wg0, nothing else) whose AllowedIP is gone;
4. installs the file atomically (umask 077, temp file in /etc/wireguard, root-owned, mv);
5. prints one summary line, `wgmesh-apply: wg0 action=... key=value ...` (never a key):
   action=restart|sync, or in peers-only mode action=peers (`held=` names the node's own
   changes left for the full apply) or action=skip.

Anything `wg` prints on stderr passes through a filter that replaces base64 keys, because
`wg` quotes a malformed config line verbatim.
"""

from __future__ import annotations

import shlex

from cloudinit.wireguard import WG_INTERFACE

SUMMARY_PREFIX = "wgmesh-apply:"
SCRIPT_NAME = "wgmesh-apply"
PEERS_ONLY_FLAG = "--peers-only"

_SCRIPT = r"""set -euo pipefail
umask 077
IF=@IF@
DIR=${WGMESH_WG_DIR:-/etc/wireguard}  # tests point this elsewhere; sudo drops the variable
CONF="$DIR/$IF.conf"
START=${EPOCHREALTIME:-0}
MODE=full
if [ "${1:-}" = --peers-only ]; then MODE=peers; shift; fi

redact() { sed -E 's#[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=#<key>#g'; }
die() { printf 'wgmesh-apply: error: %s\n' "$*" >&2; exit 1; }
# Run a command, its output (stderr and stdout) redacted onto stderr; keeps its exit status.
# It never inherits the lock (fd 9): a daemon it starts (wireguard-go) would hold it for good.
quietly() { "$@" 9>&- 2>&1 | redact >&2; }
elapsed() { awk -v a="$START" -v b="${EPOCHREALTIME:-0}" 'BEGIN { printf "%.2f", b - a }'; }

mkdir -p "$DIR"
chmod 700 "$DIR"
exec 9>"$DIR/.$IF.apply.lock"
flock -w 120 9 || die "another apply on $IF holds the lock"  # one apply at a time per interface
# Same directory as the target (so mv is atomic); the name ends in .conf for wg-quick strip.
TMP=$(mktemp --suffix=.conf "$DIR/.$IF-XXXXXX")
trap 'rm -f "$TMP"' EXIT
cat "${1:-/dev/stdin}" >"$TMP"
chown root:root "$TMP"
chmod 600 "$TMP"

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
  trap - EXIT
}

restart() {
  if [ -d /run/systemd/system ] && systemctl is-active --quiet "wg-quick@$IF"; then
    quietly systemctl restart "wg-quick@$IF"
  elif [ -d /run/systemd/system ] && [ "${reasons[0]}" = down ] \
    && systemctl is-enabled --quiet "wg-quick@$IF"; then
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
  printf 'wgmesh-apply: %s action=restart reason=%s peers=%s seconds=%s\n' "$IF" "$why" "$peers" "$(elapsed)"
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

peers=$(wg show "$IF" peers | grep -c . || true)
action=sync
if [ "$MODE" = peers ]; then
  action=peers
  if [ "${#held[@]}" -gt 0 ]; then action="peers held=$(IFS=,; printf '%s' "${held[*]}")"; fi
fi
printf 'wgmesh-apply: %s action=%s peers=%s peers_added=%s peers_changed=%s peers_removed=%s' \
  "$IF" "$action" "$peers" "$peers_added" "$peers_changed" "$peers_removed"
printf ' routes_added=%s routes_removed=%s seconds=%s\n' "$routes_added" "$routes_removed" "$(elapsed)"
"""


def apply_script(interface: str = WG_INTERFACE) -> str:
    """The bash script text (no secret in it): reads the new conf on stdin or from `$1`."""
    return _SCRIPT.replace("@IF@", shlex.quote(interface))


def apply_command(*, sudo: bool = True, peers_only: bool = False, interface: str = WG_INTERFACE) -> str:
    """One command line running the script with bash (as root through `sudo -n` by default).

    The new wg0.conf goes on the command's standard input, never on its command line.
    `peers_only`: the first phase of an update (peers learn new keys; see the module doc).
    """
    argv = ["bash", "-c", apply_script(interface), SCRIPT_NAME, *([PEERS_ONLY_FLAG] if peers_only else [])]
    if sudo:
        argv = ["sudo", "-n", "--", *argv]
    return shlex.join(argv)


def parse_summary(output: str) -> dict[str, str]:
    """The key=value fields of the script's summary line (the last `wgmesh-apply:` line)."""
    lines = [ln for ln in output.splitlines() if ln.startswith(SUMMARY_PREFIX)]
    if not lines:
        raise ValueError("no wgmesh-apply summary line in the output")
    words = lines[-1].removeprefix(SUMMARY_PREFIX).split()
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    fields["interface"] = words[0]
    return fields


if (
    __name__ == "__main__"
):  # `python -m cloudinit.sync [--script | --peers-only]`: the command line (or the script) to run by hand
    import sys

    if sys.argv[1:] == ["--script"]:
        print(apply_script())
    else:
        print(apply_command(peers_only=sys.argv[1:] == [PEERS_ONLY_FLAG]))

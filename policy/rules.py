"""The pack's rules as plain functions over plain dicts, testable without Pulumi.

Each rule takes a resource type and its inputs (camelCase keys, as the engine sends them)
and returns violation messages (empty: compliant). Secret values are in the engine's wire
form, `{SIG_KEY: SECRET_SIG, "value": ...}`; values not known yet during a preview are the
engine's unknown sentinels and are never judged (the rule runs again with known values).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 (a type tag, not a password)
UNKNOWN_SENTINELS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
        "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
        "e48ece36-62e2-4504-bad9-02848725956a",  # archive
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    }
)
DEFAULT_WG_PORT = 51820
SSH_PORT = 22
# Kept in sync with components/firewall.py: the program marks the shared firewall objects that
# open WireGuard to roaming clients (AWS group tag, GCP description, Hetzner label); the layout
# applies them only to the nodes those clients dial.
ROAMING_MARKER = "wgmesh-roaming"

AWS_SG = "aws:ec2/securityGroup:SecurityGroup"
AWS_SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
AWS_SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
AWS_INSTANCE = "aws:ec2/instance:Instance"
AWS_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GCP_FIREWALL = "gcp:compute/firewall:Firewall"
GCP_INSTANCE = "gcp:compute/instance:Instance"
HCLOUD_FIREWALL = "hcloud:index/firewall:Firewall"
HCLOUD_SERVER = "hcloud:index/server:Server"
REMOTE_COMMAND = "command:remote:Command"  # live updates (components/sync.py, components/health.py)

Rule = Callable[[str, Mapping[str, Any]], list[str]]


# ----------------------------------------------------------------------------- value helpers


def is_secret(value: object) -> bool:
    return isinstance(value, Mapping) and value.get(SIG_KEY) == SECRET_SIG


def plain(value: Any) -> Any:
    """The value with secret wrappers removed (rules about content do not care about secrecy)."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def is_unknown(value: object) -> bool:
    return isinstance(value, str) and value in UNKNOWN_SENTINELS


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _is_world(cidr: object) -> bool:
    """0.0.0.0/0 or ::/0 (any spelling of a /0)."""
    if not isinstance(cidr, str) or is_unknown(cidr):
        return False
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _world_sources(sources: Iterable[object]) -> list[str]:
    return [str(s) for s in sources if _is_world(s)]


def _covers(port: int, from_port: object, to_port: object) -> bool:
    if not isinstance(from_port, int | float) or not isinstance(to_port, int | float):
        return False
    lo, hi = int(from_port), int(to_port)
    if lo == 0 and hi in (0, 65535):
        return True  # 0-0 with protocol -1 means every port
    return lo <= port <= hi


def _proto_matches(protocol: object, wanted: str) -> bool:
    numbers = {"tcp": "6", "udp": "17"}
    p = str(protocol).lower()
    return p in (wanted, numbers[wanted], "-1", "all")


def _port_spec_covers(port: int, spec: object) -> bool:
    """GCP `ports` item or Hetzner `port`: "22", "1000-2000", "any"."""
    text = str(spec).strip().lower()
    if text == "any":
        return True
    lo, _, hi = text.partition("-")
    try:
        return int(lo) <= port <= int(hi or lo)
    except ValueError:
        return False


# ----------------------------------------------------------------------------- ingress model


def _world_cidrs(*groups: Any) -> list[str]:
    return _world_sources(item for g in groups for item in (_list(g) if isinstance(g, list | tuple) else [g]))


def _aws_block(block: Mapping[str, Any], protocol: str, port: int, proto_key: str = "protocol") -> list[str]:
    """World sources of one AWS ingress block (inline SG ingress or SecurityGroupRule)."""
    if not _proto_matches(block.get(proto_key), protocol):
        return []
    if not _covers(port, block.get("fromPort"), block.get("toPort")) and str(block.get(proto_key)) != "-1":
        return []
    return _world_cidrs(
        block.get("cidrBlocks"), block.get("ipv6CidrBlocks"), block.get("cidrIpv4"), block.get("cidrIpv6")
    )


def _aws_open(resource_type: str, props: Mapping[str, Any], protocol: str, port: int) -> list[list[str]]:
    if resource_type == AWS_SG:
        return [_aws_block(r, protocol, port) for r in _list(props.get("ingress")) if isinstance(r, Mapping)]
    if resource_type == AWS_SG_RULE and props.get("type") == "ingress":
        return [_aws_block(props, protocol, port)]
    if resource_type == AWS_SG_INGRESS:
        return [_aws_block(props, protocol, port, proto_key="ipProtocol")]
    return []


def _gcp_open(props: Mapping[str, Any], protocol: str, port: int) -> list[list[str]]:
    if str(props.get("direction") or "INGRESS").upper() != "INGRESS" or props.get("disabled") is True:
        return []
    sources = _list(props.get("sourceRanges"))
    # An ingress rule without source ranges, tags or service accounts applies to 0.0.0.0/0.
    implicit = not sources and not props.get("sourceTags") and not props.get("sourceServiceAccounts")
    world = ["0.0.0.0/0 (no sourceRanges)"] if implicit else _world_sources(sources)
    out = []
    for allow in _list(props.get("allows")):
        if isinstance(allow, Mapping) and _proto_matches(allow.get("protocol"), protocol):
            ports = _list(allow.get("ports"))
            if not ports or any(_port_spec_covers(port, p) for p in ports):
                out.append(world)
    return out


def _hcloud_open(props: Mapping[str, Any], protocol: str, port: int) -> list[list[str]]:
    out = []
    for r in _list(props.get("rules")):
        if not isinstance(r, Mapping) or r.get("direction") != "in":
            continue
        if str(r.get("protocol")).lower() == protocol and _port_spec_covers(port, r.get("port")):
            out.append(_world_sources(_list(r.get("sourceIps"))))
    return out


def _ingress_open_to_world(
    resource_type: str, props: Mapping[str, Any], protocol: str, port: int
) -> list[str]:
    """Descriptions of the ingress rules that let `protocol`/`port` in from a /0."""
    if resource_type == GCP_FIREWALL:
        found = _gcp_open(props, protocol, port)
    elif resource_type == HCLOUD_FIREWALL:
        found = _hcloud_open(props, protocol, port)
    else:
        found = _aws_open(resource_type, props, protocol, port)
    return [f"{protocol}/{port} from {', '.join(world)}" for world in found if world]


def _marked_roaming(resource_type: str, props: Mapping[str, Any]) -> bool:
    """Whether the resource says it deliberately serves roaming clients (see components/firewall.py)."""
    if resource_type in (AWS_SG, AWS_SG_RULE, AWS_SG_INGRESS):
        tags = props.get("tags")
        return isinstance(tags, Mapping) and tags.get(ROAMING_MARKER) == "true"
    if resource_type == HCLOUD_FIREWALL:
        labels = props.get("labels")
        return isinstance(labels, Mapping) and labels.get(ROAMING_MARKER) == "true"
    if resource_type == GCP_FIREWALL:
        return f"[{ROAMING_MARKER}]" in str(props.get("description") or "")
    return False


# ----------------------------------------------------------------------------- the rules


def no_ssh_from_world(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """SSH must never be open to 0.0.0.0/0 or ::/0: only adminCidrs may reach port 22."""
    return [
        f"SSH open to the world: {what}"
        for what in _ingress_open_to_world(resource_type, plain(props), "tcp", SSH_PORT)
    ]


def wireguard_world_only_for_roaming(
    resource_type: str, props: Mapping[str, Any], port: int = DEFAULT_WG_PORT
) -> list[str]:
    """The WireGuard port may be open to the world only on roaming-marked firewall objects (the
    program applies those only to the nodes roaming clients connect to)."""
    props = plain(props)
    opened = _ingress_open_to_world(resource_type, props, "udp", port)
    if not opened or _marked_roaming(resource_type, props):
        return []
    return [
        f"WireGuard port open to the world on a node no roaming client uses ({what}); "
        f"limit it to the peers' static IPs"
        for what in opened
    ]


def imdsv2_required(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """EC2 instances must require IMDSv2 session tokens (metadataOptions.httpTokens: required)."""
    if resource_type not in (AWS_INSTANCE, AWS_LAUNCH_TEMPLATE):
        return []
    options = plain(props).get("metadataOptions")
    tokens = options.get("httpTokens") if isinstance(options, Mapping) else None
    if tokens == "required" or is_unknown(tokens):
        return []
    return [f"IMDSv2 not required: metadataOptions.httpTokens is {tokens!r}, must be 'required'"]


def root_volume_encrypted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """EC2 root volumes must be encrypted."""
    if resource_type != AWS_INSTANCE:
        return []
    device = plain(props).get("rootBlockDevice")
    encrypted = device.get("encrypted") if isinstance(device, Mapping) else None
    if encrypted is True or is_unknown(encrypted):
        return []
    return ["root volume not encrypted: set rootBlockDevice.encrypted: true"]


def user_data_secret(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A VM's user data holds WireGuard private keys: it must be a Pulumi secret."""
    fields: list[tuple[str, Any]] = []
    if resource_type == AWS_INSTANCE:
        fields = [(k, props.get(k)) for k in ("userData", "userDataBase64")]
    elif resource_type == HCLOUD_SERVER:
        fields = [("userData", props.get("userData"))]
    elif resource_type == GCP_INSTANCE:
        metadata = props.get("metadata")
        if not is_secret(metadata) and isinstance(metadata, Mapping):
            fields = [(f'metadata["{k}"]', metadata.get(k)) for k in ("user-data", "startup-script")]
        fields.append(("metadataStartupScript", props.get("metadataStartupScript")))
    return [
        f"{name} is not a secret: it carries private keys (wrap it in pulumi.Output.secret)"
        for name, value in fields
        if value not in (None, "") and not is_secret(value) and not is_unknown(value)
    ]


def remote_command_secrets(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A live-update command's SSH private key and its stdin (a wg0.conf) must be secrets."""
    if resource_type != REMOTE_COMMAND:
        return []
    out = []
    connection = props.get("connection")
    if isinstance(connection, Mapping) and not is_secret(connection):
        key = connection.get("privateKey")
        if key not in (None, "") and not is_secret(key) and not is_unknown(key):
            out.append("connection.privateKey is not a secret (read it with Config.get_secret)")
    stdin = props.get("stdin")
    if stdin not in (None, "") and not is_secret(stdin) and not is_unknown(stdin):
        out.append("stdin is not a secret: it carries a wg0.conf with a private key")
    return out


def live_updates_keep_ssh_closed(resources: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Stack rule: with live updates (any remote Command), no firewall opens SSH to the world.

    Live updates make SSH a deploy path, so a world-open port 22 is a standing risk on every
    node; the rule names each offending resource type once per opening.
    """
    if not any(t == REMOTE_COMMAND for t, _ in resources):
        return []
    return [
        f"live updates run over SSH, and {t} opens it to the world: {what}"
        for t, props in resources
        for what in _ingress_open_to_world(t, plain(props), "tcp", SSH_PORT)
    ]


MANDATORY_RULES: dict[str, Rule] = {
    "wgmesh-no-ssh-from-world": no_ssh_from_world,
    "wgmesh-wireguard-world-only-for-roaming": wireguard_world_only_for_roaming,
    "wgmesh-imdsv2-required": imdsv2_required,
    "wgmesh-root-volume-encrypted": root_volume_encrypted,
    "wgmesh-user-data-secret": user_data_secret,
    "wgmesh-remote-command-secrets": remote_command_secrets,
}
# Rules over the whole stack (name -> rule over (type, inputs) pairs).
STACK_RULES: dict[str, Callable[[Sequence[tuple[str, Mapping[str, Any]]]], list[str]]] = {
    "wgmesh-live-updates-keep-ssh-closed": live_updates_keep_ssh_closed,
}


def violations(resource_type: str, props: Mapping[str, Any], rules: Sequence[str] | None = None) -> list[str]:
    """Every rule's violations for one resource, prefixed with the rule name."""
    names = list(MANDATORY_RULES) if rules is None else list(rules)
    return [f"{n}: {msg}" for n in names for msg in MANDATORY_RULES[n](resource_type, props)]

"""The deployment patterns' example stacks under mocks: what each pattern asks of the clouds.

test_program.py checks every stack for the generic wiring; here each pattern's own promises are
checked against the resource inputs: hub (firewalls open to the hubs only, no spoke-to-spoke
Endpoint), roaming (WireGuard open to the world only where clients connect, client configs),
gateway and jumpbox (NAT rules, cloud routes back through the router), IPv6 (a static public
IPv6 on every cloud made before the VM, ICMPv6, nodes dialing each other's IPv6 with
`endpoints: ipv6` and IPv4 without it, nothing IPv6 for stacks without either), and the
forwarding flags.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json

import pytest
import yaml
from artifacts.wgconf import Section, parse_wg_conf
from program_expectations import (
    MESH,
    VM_TYPE,
    applied_firewalls,
    decode_aws_user_data,
    endpoints,
    endpoints6,
    firewall_rules,
    handed_user_data,
    key_material,
    plan_of,
    public_ip6,
)
from wgmesh_mocks import REPO, Captured, ProgramRun, Resolved, reveal, run_program, stack_config

from cloudinit.cloudconfig import WG_CONF_PATH
from cloudinit.host import NFT_PATH
from components.firewall import ROAMING_MARKER
from mesh.plan_types import MeshPlan
from mesh.spec import MeshSpec

PATTERN_STACKS = ("hub", "roaming", "jumpbox", "ipv6")
# The ipv6 stack without its `endpoints: ipv6` line: the default, nodes dial IPv4.
IPV6_DEFAULT_ENDPOINTS = "ipv6-default-endpoints"
WORLD = frozenset({"0.0.0.0/0", "::/0"})
Run = tuple[ProgramRun, MeshPlan]


def without_endpoints_key(config: dict[str, str]) -> dict[str, str]:
    mesh = json.loads(config["wgmesh:mesh"])
    assert mesh.pop("endpoints") == "ipv6"
    return {**config, "wgmesh:mesh": json.dumps(mesh)}


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    out = {}
    configs = {s: stack_config(REPO / "stacks" / f"Pulumi.{s}.yaml") for s in PATTERN_STACKS}
    configs[IPV6_DEFAULT_ENDPOINTS] = without_endpoints_key(configs["ipv6"])
    for name, config in configs.items():
        run = run_program(name, config)
        assert run.error is None, f"{name}: {run.error!r}"
        out[name] = (run, plan_of(config))
    return out


def secret_text(run: ProgramRun, output: str, name: str) -> str:
    leaf = run.outputs[output][name]
    assert isinstance(leaf, Resolved) and leaf.secret, f"{output}.{name} is not secret"
    assert isinstance(leaf.value, str)
    return leaf.value


def peers(conf: str) -> list[Section]:
    return [s for s in parse_wg_conf(conf) if s.kind == "Peer"]


def endpoint_hosts(conf: str) -> list[str]:
    """The host part of every Endpoint in a wg-quick file ([v6]:port or v4:port)."""
    hosts = []
    for peer in peers(conf):
        endpoint = peer.get("Endpoint")
        if endpoint is not None:
            hosts.append(endpoint.rpartition(":")[0].strip("[]"))
    return hosts


def wireguard_sources(run: ProgramRun, plan: MeshPlan, name: str, cloud: str) -> frozenset[str]:
    """WireGuard sources over every firewall applied to the node, less its own static IP (a
    shared class rule admits its own members too, which is harmless)."""
    (rule,) = [r for r in firewall_rules(run, name, cloud) if r[:2] == ("udp", plan.spec.mesh.port)]
    own = {
        f"{endpoints(run, plan)[name]}/32",
        *(f"{ip}/128" for n, ip in endpoints6(run, plan).items() if n == name),
    }
    return rule[2] - own


def routes_traffic(spec: MeshSpec, name: str) -> bool:
    """From the stack file alone: hubs, gateways and subnet routers forward others' packets."""
    node = spec.node(name)
    return node.hub or node.gateway or bool(node.subnets)


# ----------------------------------------------------------------------------- hub and spoke


def test_hub_stack_is_two_hubs_and_spokes_on_three_clouds(runs: dict[str, Run]) -> None:
    _, plan = runs["hub"]
    spec = plan.spec
    assert spec.mesh.topology == "hub"
    hubs = [n for n in spec.nodes if n.hub]
    spokes = [n for n in spec.nodes if not n.hub]
    assert len(hubs) == 2 and len({h.cloud for h in hubs}) == 2
    assert {s.cloud for s in spokes} == {"aws", "gcp", "hcloud"}


def test_spokes_open_wireguard_to_the_hubs_only_and_hubs_to_every_node(runs: dict[str, Run]) -> None:
    run, plan = runs["hub"]
    spec = plan.spec
    eps = endpoints(run, plan)
    hubs = {n.name for n in spec.nodes if n.hub}
    for node in spec.nodes:
        sources = wireguard_sources(run, plan, node.name, node.cloud)
        others = {n.name for n in spec.nodes if n.name != node.name}
        expected = others if node.hub else hubs
        assert sources == {f"{eps[p]}/32" for p in expected}, node.name


def test_no_spoke_has_an_endpoint_for_another_spoke(runs: dict[str, Run]) -> None:
    run, plan = runs["hub"]
    eps = endpoints(run, plan)
    hub_ips = sorted(eps[n.name] for n in plan.spec.nodes if n.hub)
    for node in plan.spec.nodes:
        hosts = endpoint_hosts(secret_text(run, "wgConfigs", node.name))
        if node.hub:
            assert sorted(hosts) == sorted(ip for n, ip in eps.items() if n != node.name), node.name
        else:
            assert sorted(hosts) == hub_ips, node.name


def test_a_spoke_routes_the_other_spokes_through_its_first_hub(runs: dict[str, Run]) -> None:
    run, plan = runs["hub"]
    spec = plan.spec
    addrs = {n.name: str(n.iface.address.ip) for n in plan.nodes}
    first_hub = next(n.name for n in spec.nodes if n.hub)
    eps = endpoints(run, plan)
    for node in spec.nodes:
        if node.hub:
            continue
        by_endpoint = {
            p.one("Endpoint").rpartition(":")[0]: p for p in peers(secret_text(run, "wgConfigs", node.name))
        }
        allowed = by_endpoint[eps[first_hub]].one("AllowedIPs").replace(" ", "").split(",")
        for other in spec.nodes:
            if not other.hub and other.name != node.name:
                assert f"{addrs[other.name]}/32" in allowed, (node.name, other.name)


# ----------------------------------------------------------------------------- forwarding flags


@pytest.mark.parametrize("stack", PATTERN_STACKS)
def test_forwarding_flags_are_set_exactly_on_routing_nodes(runs: dict[str, Run], stack: str) -> None:
    run, plan = runs[stack]
    for node in plan.spec.nodes:
        routing = routes_traffic(plan.spec, node.name)
        if node.cloud == "aws":
            assert run.one(VM_TYPE["aws"], node.name).inputs["sourceDestCheck"] is (not routing), node.name
        elif node.cloud == "gcp":
            assert run.one(VM_TYPE["gcp"], node.name).inputs["canIpForward"] is routing, node.name


def test_the_pattern_stacks_hold_routing_and_plain_nodes_on_aws_and_gcp(runs: dict[str, Run]) -> None:
    """The flag test above sees both answers on both clouds (so it can fail either way)."""
    seen = set()
    for _run, plan in runs.values():
        for node in plan.spec.nodes:
            if node.cloud in ("aws", "gcp"):
                seen.add((node.cloud, routes_traffic(plan.spec, node.name)))
    assert seen == {("aws", True), ("aws", False), ("gcp", True), ("gcp", False)}


# ----------------------------------------------------------------------------- roaming clients


def client_nodes(spec: MeshSpec) -> set[str]:
    """From the stack file alone: split-tunnel clients attach to the hubs, full-tunnel ones to the gateway."""
    return {n.name for n in spec.nodes if n.hub or n.gateway}


def test_wireguard_is_open_to_the_world_only_where_clients_connect(runs: dict[str, Run]) -> None:
    run, plan = runs["roaming"]
    spec = plan.spec
    eps = endpoints(run, plan)
    attached = client_nodes(spec)
    assert attached == {"hub-aws", "exit-hetzner"}
    for node in spec.nodes:
        sources = wireguard_sources(run, plan, node.name, node.cloud)
        peer_ips = sources - WORLD
        assert peer_ips and all(s.removesuffix("/32") in eps.values() for s in peer_ips), node.name
        assert (sources >= WORLD) is (node.name in attached), node.name
        assert not (sources & WORLD) or sources >= WORLD, f"{node.name}: world open on one family only"


def marked(fw: Captured) -> bool:
    """Whether a firewall resource carries the roaming marker (tag, label or description)."""
    inputs = reveal(fw.inputs)
    if fw.type == "gcp:compute/firewall:Firewall":
        return f"[{ROAMING_MARKER}]" in inputs.get("description", "")
    return (inputs.get("tags") or inputs.get("labels") or {}).get(ROAMING_MARKER) == "true"


def marked_nodes(run: ProgramRun, plan: MeshPlan) -> set[str]:
    """Nodes with a roaming-marked firewall among those applied to them."""
    return {
        n.name
        for n in plan.nodes
        if n.cloud != "lab" and any(marked(fw) for fw in applied_firewalls(run, n.name, n.cloud))
    }


@pytest.mark.parametrize("stack", PATTERN_STACKS)
def test_the_roaming_marker_is_exactly_on_the_nodes_clients_connect_to(
    runs: dict[str, Run], stack: str
) -> None:
    run, plan = runs[stack]
    expected = {n.name for n in plan.nodes if n.wg_open_to_world}
    if stack == "roaming":
        assert expected == client_nodes(plan.spec)
    assert marked_nodes(run, plan) == expected


def test_client_configs_are_secret_and_tunnel_as_configured(runs: dict[str, Run]) -> None:
    run, plan = runs["roaming"]
    eps = endpoints(run, plan)
    port = plan.spec.mesh.port
    phone = parse_wg_conf(secret_text(run, "clients", "phone"))
    (iface,) = [s for s in phone if s.kind == "Interface"]
    assert iface.one("DNS") == "9.9.9.9"
    (gateway,) = [s for s in phone if s.kind == "Peer"]
    assert gateway.one("Endpoint") == f"{eps['exit-hetzner']}:{port}"
    assert gateway.one("AllowedIPs").replace(" ", "").split(",") == ["0.0.0.0/0", "::/0"]
    assert gateway.one("PersistentKeepalive") == str(plan.spec.mesh.keepalive)
    laptop = parse_wg_conf(secret_text(run, "clients", "laptop"))
    assert "DNS" not in next(s for s in laptop if s.kind == "Interface").values
    (hub,) = [s for s in laptop if s.kind == "Peer"]
    assert hub.one("Endpoint") == f"{eps['hub-aws']}:{port}"
    allowed = hub.one("AllowedIPs").replace(" ", "").split(",")
    assert str(plan.spec.mesh.cidr) in allowed and "0.0.0.0/0" not in allowed


def test_nodes_list_clients_without_an_endpoint(runs: dict[str, Run]) -> None:
    run, plan = runs["roaming"]
    public = key_material(run, plan).public
    client_keys = {public[c.name] for c in plan.clients}
    seen = 0
    for node in plan.nodes:
        for peer in peers(secret_text(run, "wgConfigs", node.name)):
            if peer.one("PublicKey") in client_keys:
                seen += 1
                assert peer.get("Endpoint") is None, node.name
            else:
                assert peer.get("Endpoint") is not None, node.name
    assert seen == len(plan.clients)  # laptop on the hub, phone on the exit node


# ----------------------------------------------------------------------------- gateway and jumpbox


def nft_ruleset(run: ProgramRun, name: str, cloud: str) -> str:
    """The node's nft table as its user data writes it."""
    text = reveal(handed_user_data(run, name, cloud))
    if cloud == "aws":
        text = decode_aws_user_data(text)
    doc = yaml.safe_load(text)
    (entry,) = [f for f in doc["write_files"] if f["path"] == NFT_PATH]
    content: str = entry["content"]
    encoding = entry.get("encoding", "")
    if "b64" in encoding or "base64" in encoding:
        raw = base64.b64decode(content)
        content = (gzip.decompress(raw) if "gz" in encoding else raw).decode()
    return content


def test_jumpbox_masquerades_into_its_subnet_and_the_router_does_not(runs: dict[str, Run]) -> None:
    run, _ = runs["jumpbox"]
    jump = nft_ruleset(run, "jump-aws", "aws")
    assert "iifname $WG ip daddr { 10.20.0.0/24 } masquerade" in jump
    assert "oifname != $WG masquerade" not in jump  # not a gateway: NAT into the subnet only
    assert "masquerade" not in nft_ruleset(run, "router-gcp", "gcp")


def test_gateway_masquerades_everything_leaving_the_mesh(runs: dict[str, Run]) -> None:
    run, _ = runs["roaming"]
    assert "iifname $WG oifname != $WG masquerade" in nft_ruleset(run, "exit-hetzner", "hcloud")
    assert "masquerade" not in nft_ruleset(run, "hub-aws", "aws")


def test_cloud_networks_are_the_routed_subnets_and_route_the_mesh_back(runs: dict[str, Run]) -> None:
    run, plan = runs["jumpbox"]
    mesh_cidr = str(plan.spec.mesh.cidr)
    # AWS: the VPC is jump-aws's subnet, and its table sends the mesh and router-gcp's subnet to it.
    assert run.one("aws:ec2/vpc:Vpc", "aws-eu-central-1-vpc").inputs["cidrBlock"] == "10.20.0.0/24"
    table = run.one("aws:ec2/routeTable:RouteTable", "aws-eu-central-1-rt").id
    eni = run.one(VM_TYPE["aws"], "jump-aws").outputs["primaryNetworkInterfaceId"]
    aws_routes = {
        r.inputs["destinationCidrBlock"]
        for r in run.of_type("aws:ec2/route:Route")
        if r.inputs["routeTableId"] == table and r.inputs.get("networkInterfaceId") == eni
    }
    assert aws_routes == {mesh_cidr, "10.30.0.0/24"}
    # GCP: the subnetwork is router-gcp's subnet, and network routes send the rest to it.
    subnetwork = run.one("gcp:compute/subnetwork:Subnetwork", f"{MESH}-gcp-europe-west3")
    assert subnetwork.inputs["ipCidrRange"] == "10.30.0.0/24"
    network = run.one("gcp:compute/network:Network", f"{MESH}-gcp-net").id
    vm = run.one(VM_TYPE["gcp"], "router-gcp")
    gcp_routes = {r.inputs["destRange"]: r.inputs for r in run.of_type("gcp:compute/route:Route")}
    assert set(gcp_routes) == {mesh_cidr, "10.20.0.0/24"}
    for route in gcp_routes.values():
        assert route["nextHopInstance"] == vm.outputs["selfLink"]
        assert route["network"] == network


# ----------------------------------------------------------------------------- IPv6


def test_hetzner_nodes_hold_a_static_ipv6_primary_ip(runs: dict[str, Run]) -> None:
    run, plan = runs["ipv6"]
    for node in plan.spec.nodes:
        if node.cloud != "hcloud":
            continue
        ip6 = run.one("hcloud:index/primaryIp:PrimaryIp", f"{node.name}-ip6")
        assert (ip6.inputs["type"], ip6.inputs["assigneeType"], ip6.inputs["location"]) == (
            "ipv6",
            "server",
            node.region,
        )
        assert ip6.inputs["autoDelete"] is False
        (net,) = run.one(VM_TYPE["hcloud"], node.name).inputs["publicNets"]
        assert (net["ipv6Enabled"], net["ipv6"]) == (True, int(ip6.id))


def depends_on(run: ProgramRun, resource: Captured, typ: str, name: str) -> bool:
    return run.one(typ, name).urn in resource.dependencies


@pytest.mark.parametrize("case", ["ipv6", IPV6_DEFAULT_ENDPOINTS])
def test_gcp_vms_take_a_reserved_external_ipv6_made_before_them(runs: dict[str, Run], case: str) -> None:
    run, plan = runs[case]
    for region in {n.region for n in plan.spec.nodes if n.cloud == "gcp"}:
        sub = run.one("gcp:compute/subnetwork:Subnetwork", f"{MESH}-gcp-{region}").inputs
        assert (sub["stackType"], sub["ipv6AccessType"]) == ("IPV4_IPV6", "EXTERNAL")
    for node in plan.spec.nodes:
        if node.cloud != "gcp":
            continue
        address = run.one("gcp:compute/address:Address", f"{node.name}-ip6")
        subnetwork = run.one("gcp:compute/subnetwork:Subnetwork", f"{MESH}-gcp-{node.region}")
        assert {k: address.inputs[k] for k in ("addressType", "ipVersion", "ipv6EndpointType")} == {
            "addressType": "EXTERNAL",
            "ipVersion": "IPV6",
            "ipv6EndpointType": "VM",
        }
        assert (address.inputs["region"], address.inputs["subnetwork"]) == (node.region, subnetwork.id)
        vm = run.one(VM_TYPE["gcp"], node.name)
        (nic,) = vm.inputs["networkInterfaces"]
        assert nic["stackType"] == "IPV4_IPV6"
        assert nic["ipv6AccessConfigs"] == [
            {
                "networkTier": "PREMIUM",
                "externalIpv6": address.outputs["address"],
                "externalIpv6PrefixLength": "96",
            }
        ]
        assert depends_on(run, vm, "gcp:compute/address:Address", f"{node.name}-ip6"), node.name


@pytest.mark.parametrize("case", ["ipv6", IPV6_DEFAULT_ENDPOINTS])
def test_aws_vpc_subnet_route_and_a_fixed_instance_ipv6(runs: dict[str, Run], case: str) -> None:
    run, plan = runs[case]
    for region in {n.region for n in plan.spec.nodes if n.cloud == "aws"}:
        vpc = run.one("aws:ec2/vpc:Vpc", f"aws-{region}-vpc")
        assert vpc.inputs["assignGeneratedIpv6CidrBlock"] is True
        block = ipaddress.IPv6Network(vpc.outputs["ipv6CidrBlock"])
        subnet = ipaddress.IPv6Network(
            run.one("aws:ec2/subnet:Subnet", f"aws-{region}-subnet").inputs["ipv6CidrBlock"]
        )
        assert (
            subnet.prefixlen == 64
            and subnet.subnet_of(block)
            and subnet.network_address == block.network_address
        )
        table = run.one("aws:ec2/routeTable:RouteTable", f"aws-{region}-rt").id
        igw = run.one("aws:ec2/internetGateway:InternetGateway", f"aws-{region}-igw").id
        v6_routes = [
            r.inputs for r in run.of_type("aws:ec2/route:Route") if "destinationIpv6CidrBlock" in r.inputs
        ]
        assert v6_routes == [{"destinationIpv6CidrBlock": "::/0", "gatewayId": igw, "routeTableId": table}]
    for node in plan.spec.nodes:
        if node.cloud != "aws":
            continue
        vm = run.one(VM_TYPE["aws"], node.name)
        subnet_res = run.one("aws:ec2/subnet:Subnet", f"aws-{node.region}-subnet")
        subnet = ipaddress.IPv6Network(subnet_res.inputs["ipv6CidrBlock"])
        (address,) = vm.inputs["ipv6Addresses"]
        offset = int(ipaddress.IPv6Address(address)) - int(subnet.network_address)
        # Inside the subnet's /64, clear of the first four and the last address AWS keeps.
        assert 4 <= offset < subnet.num_addresses - 1, address
        assert "ipv6AddressCount" not in vm.inputs  # a count would pick a new address per VM
        assert depends_on(run, vm, "aws:ec2/subnet:Subnet", f"aws-{node.region}-subnet")


def test_static_ipv6_does_not_depend_on_the_endpoints_key(runs: dict[str, Run]) -> None:
    """Switching `endpoints` changes who dials what, never which address a node holds."""
    with_key, without_key = runs["ipv6"], runs[IPV6_DEFAULT_ENDPOINTS]
    for node in with_key[1].spec.nodes:
        assert public_ip6(with_key[0], node.name, node.cloud) == public_ip6(
            without_key[0], node.name, node.cloud
        )


def test_every_cloud_node_exports_its_public_ipv6_as_a_public_fact(runs: dict[str, Run]) -> None:
    run, plan = runs["ipv6"]
    assert {n.cloud for n in plan.spec.nodes} == {"aws", "gcp", "hcloud"}
    for node in plan.spec.nodes:
        leaf = run.outputs["nodes"][node.name]["publicIp6"]
        assert isinstance(leaf, Resolved) and not leaf.secret
        assert leaf.value == public_ip6(run, node.name, node.cloud)
        assert ipaddress.IPv6Address(leaf.value).version == 6
    hetzner = next(n for n in plan.spec.nodes if n.cloud == "hcloud")
    network = run.one("hcloud:index/primaryIp:PrimaryIp", f"{hetzner.name}-ip6").outputs["ipNetwork"]
    assert run.outputs["nodes"][hetzner.name]["publicIp6"].value == str(ipaddress.IPv6Network(network)[1])


def test_icmpv6_packet_too_big_is_let_in_on_every_cloud(runs: dict[str, Run]) -> None:
    run, plan = runs["ipv6"]
    for node in plan.spec.nodes:
        applied = [reveal(fw.inputs) for fw in applied_firewalls(run, node.name, node.cloud)]
        if node.cloud == "aws":
            (icmp6,) = [b for g in applied for b in g["ingress"] if b["protocol"] == "icmpv6"]
            assert (icmp6["fromPort"], icmp6["toPort"], icmp6["ipv6CidrBlocks"]) == (2, 0, ["::/0"])
        elif node.cloud == "gcp":
            (fw,) = [f for f in applied if f["allows"] == [{"protocol": "58"}]]
            assert fw["sourceRanges"] == ["::/0"]
        else:
            (icmp,) = [r for f in applied for r in f["rules"] if r["protocol"] == "icmp"]
            assert "::/0" in icmp["sourceIps"]


def test_node_to_node_endpoints_stay_on_the_static_ipv4_by_default(runs: dict[str, Run]) -> None:
    run, plan = runs[IPV6_DEFAULT_ENDPOINTS]
    assert plan.spec.mesh.endpoints == "ipv4" and plan.spec.mesh.cidr6 is not None
    eps = endpoints(run, plan)
    members = [("wgConfigs", n.name) for n in plan.nodes] + [("clients", c.name) for c in plan.clients]
    for output, name in members:
        hosts = endpoint_hosts(secret_text(run, output, name))
        assert hosts and all(ipaddress.ip_address(h).version == 4 and h in eps.values() for h in hosts)


def user_data_conf(run: ProgramRun, name: str, cloud: str) -> str:
    """The wg0.conf inside the node's user data, as the VM receives it."""
    text = reveal(handed_user_data(run, name, cloud))
    if cloud == "aws":
        text = decode_aws_user_data(text)
    (entry,) = [f for f in yaml.safe_load(text)["write_files"] if f["path"] == WG_CONF_PATH]
    content: str = entry["content"]
    if "b64" in entry.get("encoding", ""):
        raw = base64.b64decode(content)
        content = (gzip.decompress(raw) if "gz" in entry["encoding"] else raw).decode()
    return content


def test_endpoints_ipv6_puts_every_peers_static_ipv6_in_every_nodes_user_data(runs: dict[str, Run]) -> None:
    run, plan = runs["ipv6"]
    assert plan.spec.mesh.endpoints == "ipv6"
    eps6 = endpoints6(run, plan)
    port = plan.spec.mesh.port
    assert set(eps6) == {n.name for n in plan.spec.nodes}
    for node in plan.nodes:
        conf = user_data_conf(run, node.name, node.cloud)
        assert conf == secret_text(run, "wgConfigs", node.name)
        dialed = [p.one("Endpoint") for p in peers(conf) if p.get("Endpoint") is not None]
        assert sorted(dialed) == sorted(f"[{eps6[p]}]:{port}" for p in node.peer_nodes), node.name


def test_endpoints_ipv6_leaves_the_clients_dialing_ipv4(runs: dict[str, Run]) -> None:
    run, plan = runs["ipv6"]
    eps = endpoints(run, plan)
    for client in plan.clients:
        hosts = endpoint_hosts(secret_text(run, "clients", client.name))
        assert hosts and all(ipaddress.ip_address(h).version == 4 and h in eps.values() for h in hosts)


def test_endpoints_ipv6_opens_wireguard_to_the_peers_ipv6_only(runs: dict[str, Run]) -> None:
    run, plan = runs["ipv6"]
    eps6 = endpoints6(run, plan)
    for node in plan.nodes:
        sources = wireguard_sources(run, plan, node.name, node.cloud)
        peers6 = {f"{eps6[p]}/128" for p in node.peer_nodes}
        assert sources - WORLD == peers6, node.name
    default_run, default_plan = runs[IPV6_DEFAULT_ENDPOINTS]
    eps = endpoints(default_run, default_plan)
    for node in default_plan.nodes:
        sources = wireguard_sources(default_run, default_plan, node.name, node.cloud)
        assert sources - WORLD == {f"{eps[p]}/32" for p in node.peer_nodes}, node.name


def test_switching_endpoints_keeps_every_key_and_psk(runs: dict[str, Run]) -> None:
    """The key resources and the secrets in the configs are the same with either family."""
    (a, plan_a), (b, plan_b) = runs["ipv6"], runs[IPV6_DEFAULT_ENDPOINTS]
    keys = "random:index/randomBytes:RandomBytes"
    assert {r.name: reveal(r.outputs) for r in a.of_type(keys)} == {
        r.name: reveal(r.outputs) for r in b.of_type(keys)
    }
    secrets = key_material(a, plan_a).secrets(plan_a)
    assert secrets == key_material(b, plan_b).secrets(plan_b)
    for node in plan_a.nodes:
        conf_a, conf_b = (secret_text(r, "wgConfigs", node.name) for r in (a, b))
        assert conf_a != conf_b  # the Endpoint lines differ ...
        assert {s for s in secrets if s in conf_a} == {s for s in secrets if s in conf_b}  # ... nothing else


def ipv6_traces(run: ProgramRun) -> list[str]:
    """Every place a stack could have taken cloud IPv6: none may appear without cidr6."""
    found = []
    for r in run.resources:
        inputs = reveal(r.inputs)
        for key in (
            "assignGeneratedIpv6CidrBlock",
            "ipv6CidrBlock",
            "ipv6AddressCount",
            "ipv6Addresses",
            "ipVersion",
            "stackType",
            "ipv6AccessType",
        ):
            if inputs.get(key) is not None:
                found.append(f"{r.name}.{key}")
        if r.type == "hcloud:index/primaryIp:PrimaryIp" and inputs["type"] != "ipv4":
            found.append(r.name)
        if r.type == "aws:ec2/route:Route" and "destinationIpv6CidrBlock" in inputs:
            found.append(r.name)
        for nic in inputs.get("networkInterfaces", []):
            if nic.get("ipv6AccessConfigs"):
                found.append(f"{r.name}.ipv6AccessConfigs")
        for block in inputs.get("ingress", []):
            if block["protocol"] == "icmpv6":
                found.append(f"{r.name}.icmpv6")
        if any(a["protocol"] == "58" for a in inputs.get("allows", [])):
            found.append(r.name)
    return found


def test_stacks_without_cidr6_take_no_cloud_ipv6(runs: dict[str, Run]) -> None:
    for stack in ("hub", "roaming", "jumpbox"):
        run, plan = runs[stack]
        assert plan.spec.mesh.cidr6 is None
        assert ipv6_traces(run) == [], stack
        assert all("publicIp6" not in node for node in run.outputs["nodes"].values()), stack
    run, _ = runs["ipv6"]
    assert ipv6_traces(run), "the trace finder must see the dual-stack stack's IPv6"

"""The mesh topology as text diagrams: Mermaid (a stack output, renders on GitHub) and Graphviz DOT.

Pure functions of the plan: one box per node (grouped by cloud), one per roaming client, one
per routed subnet, and one edge per WireGuard peering (solid between nodes, dotted to
clients), so the picture is exactly the peers every wg0.conf lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.plan_types import MeshPlan

CLOUD_TITLES = {
    "aws": "AWS",
    "gcp": "GCP",
    "hcloud": "Hetzner Cloud",
    "lab": "Local lab",
    "external": "Self-managed",  # ext: `cloud: external` hosts
}


@dataclass(frozen=True)
class Box:
    id: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    """What both formats draw: boxes per cloud, clients, subnets and the edges between them."""

    clouds: dict[str, list[Box]]
    clients: list[Box]
    subnets: list[tuple[str, Box]]  # (owning node id, subnet box)
    links: list[tuple[str, str, bool]]  # (a, b, to_client)


def _id(kind: str, name: str) -> str:
    return f"{kind}_{name.replace('-', '_').replace('.', '_').replace('/', '_').replace(':', '_')}"


def topology(plan: MeshPlan) -> Topology:
    spec = plan.spec
    clouds: dict[str, list[Box]] = {}
    subnets: list[tuple[str, Box]] = []
    for node in plan.nodes:
        s = spec.node(node.name)
        where = s.region or (str(s.public_ip) if s.public_ip else "")
        roles = [r for r, on in (("hub", s.hub), ("gateway", s.gateway)) if on]
        lines = [node.name, f"{s.cloud} {where}".strip(), str(node.iface.address.ip)]
        if roles:
            lines.append(", ".join(roles))
        clouds.setdefault(s.cloud, []).append(Box(_id("n", node.name), tuple(lines)))
        for net in s.subnets:
            subnets.append((_id("n", node.name), Box(_id("s", str(net)), (str(net),))))
    clients = []
    for client in plan.clients:
        lines = [client.name, str(client.iface.address.ip)] + (["full tunnel"] if client.full_tunnel else [])
        clients.append(Box(_id("c", client.name), tuple(lines)))
    client_names = {c.name for c in plan.clients}
    seen: set[frozenset[str]] = set()
    links: list[tuple[str, str, bool]] = []
    for iface in [*(n.iface for n in plan.nodes), *(c.iface for c in plan.clients)]:
        for peer in iface.peers:
            pair = frozenset((iface.name, peer.name))
            if pair in seen:
                continue
            seen.add(pair)
            a, b = sorted(pair, key=lambda m: (m in client_names, m))
            links.append((_id("n", a), _id("c" if b in client_names else "n", b), b in client_names))
    return Topology(clouds, clients, subnets, links)


def mermaid(plan: MeshPlan) -> str:
    """A Mermaid flowchart of the mesh."""
    t = topology(plan)
    out = ["flowchart LR"]
    for cloud, boxes in t.clouds.items():
        out.append(f'  subgraph {cloud}["{CLOUD_TITLES.get(cloud, cloud)}"]')
        out.extend(f'    {b.id}["{"<br/>".join(b.lines)}"]' for b in boxes)
        out.append("  end")
    out.extend(f'  {b.id}(["{"<br/>".join(b.lines)}"])' for b in t.clients)
    out.extend(f'  {b.id}[/"{b.lines[0]}"/]' for _, b in t.subnets)
    out.extend(f"  {a} {'-.-' if to_client else '---'} {b}" for a, b, to_client in t.links)
    out.extend(f"  {owner} -.->|routes| {b.id}" for owner, b in t.subnets)
    return "\n".join(out) + "\n"


def dot(plan: MeshPlan) -> str:
    """The same picture as a Graphviz graph (`dot -Tsvg`)."""
    t = topology(plan)

    def label(box: Box) -> str:
        return "\\n".join(box.lines)

    out = [
        "graph wgmesh {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica"];',
    ]
    for cloud, boxes in t.clouds.items():
        out.append(f'  subgraph cluster_{cloud} {{ label="{CLOUD_TITLES.get(cloud, cloud)}"; style=dashed;')
        out.extend(f'    {b.id} [label="{label(b)}"];' for b in boxes)
        out.append("  }")
    out.extend(f'  {b.id} [label="{label(b)}", shape=ellipse];' for b in t.clients)
    out.extend(f'  {b.id} [label="{label(b)}", shape=folder, fillcolor=lightyellow];' for _, b in t.subnets)
    out.extend(f"  {a} -- {b}{' [style=dotted]' if to_client else ''};" for a, b, to_client in t.links)
    out.extend(f'  {owner} -- {b.id} [style=dashed, label="routes"];' for owner, b in t.subnets)
    out.append("}")
    return "\n".join(out) + "\n"

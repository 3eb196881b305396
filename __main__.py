"""wgmesh: a WireGuard mesh across AWS, GCP and Hetzner. Load config, build the mesh, export."""

import pulumi

from components.catalog import place_nodes
from components.config import gcp_project, load_plan, load_pushed, load_quotas, ssh_private_key
from components.mesh import WireGuardMesh, WireGuardMeshArgs
from components.process_settings import relax_gc
from components.providers import Providers
from mesh.diagram import mermaid

relax_gc()  # a big mesh allocates 10^5 short-lived objects: collect less often in this process
plan = load_plan()
quotas = load_quotas()  # a bad wgmesh:quotas is refused before anything, providers included
ssh_key = ssh_private_key(plan.spec)
pushed = load_pushed()  # what `make push` sent to which VM (read when liveUpdates is off)
providers = Providers("wgmesh", gcp_project())
# Sizes and zones asked of the clouds before any resource but the providers (refused at preview).
plan, placements = place_nodes(plan, providers)
mesh = WireGuardMesh(
    "wgmesh",
    WireGuardMeshArgs(
        plan=plan,
        providers=providers,
        placements=placements,
        ssh_private_key=ssh_key,
        quotas=quotas,
        pushed=pushed,
    ),
)

pulumi.export("nodes", mesh.node_outputs)
pulumi.export("clients", {name: pulumi.Output.secret(conf) for name, conf in mesh.client_configs.items()})
# Each node's wg0.conf as deployed (secret): what to push to a running node after a change.
pulumi.export("wgConfigs", {name: pulumi.Output.secret(conf) for name, conf in mesh.node_configs.items()})
# What live updates and `make push` send each cloud node (secret), and where `make push` sends it:
# host, image user, VM id and payload digest (not secret).
pulumi.export("nodePayloads", {name: pulumi.Output.secret(p) for name, p in mesh.payloads.items()})
pulumi.export("pushTargets", mesh.push_targets)
# ext: each `cloud: external` host's config (secret): `cloudConfig` for hosts with cloud-init,
# `installer` (`sudo sh install.sh`) for the others; `make host NAME=<node>` prints it.
if mesh.external_hosts:  # only stacks that have one: the others' outputs stay as they were
    pulumi.export("externalHosts", mesh.external_hosts)
# What the lab boots: the user data Pulumi rendered for `cloud: lab` nodes (secret).
pulumi.export(
    "labUserData",
    {name: node.user_data for name, node in mesh.nodes.items() if node.cloud == "lab"},
)
# The topology as a Mermaid flowchart (`make diagram` renders SVG/PNG from the stack file).
pulumi.export("diagram", mermaid(plan))
if mesh.live is not None:
    # Each live node's health table after this update (liveUpdates): handshake age, full-MTU ping.
    # Not secret (names, overlay addresses, ages, verdicts): components/health.py unsecrets them.
    pulumi.export("meshHealth", mesh.live.health.tables)

"""wgmesh: a WireGuard mesh across AWS, GCP and Hetzner. Load config, build the mesh, export."""

import pulumi

from components.config import gcp_project, load_plan
from components.mesh import WireGuardMesh, WireGuardMeshArgs

mesh = WireGuardMesh("wgmesh", WireGuardMeshArgs(plan=load_plan(), gcp_project=gcp_project()))

pulumi.export("nodes", mesh.node_outputs)
pulumi.export("clients", {name: pulumi.Output.secret(conf) for name, conf in mesh.client_configs.items()})

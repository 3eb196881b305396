"""The explicit cloud providers of one program run, built once and shared.

The catalog (components/catalog.py) asks the clouds through them before any other resource
exists, and the components then create their resources with the same ones. A provider is not
a cloud object: a stack refused at preview may have registered providers, nothing else.

One `Providers` per program run, never a module-level cache: the program tests run many
programs in one process, and a provider belongs to the run (root stack) that made it.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp

from mesh.contracts import label_value


def mesh_labels(mesh: str) -> dict[str, str]:
    """Labels (GCP, Hetzner) and default tags (AWS) on everything the mesh creates.

    A stack name a label value cannot hold is encoded (mesh.contracts.label_value).
    """
    return {"wgmesh-mesh": label_value(mesh), "wgmesh-stack": label_value(pulumi.get_stack())}


class Providers:
    """`aws(region)`: that region's AWS provider; `gcp()`: the stack's GCP provider."""

    def __init__(self, mesh: str, gcp_project: str | None) -> None:
        self.mesh = mesh
        self.gcp_project = gcp_project  # `gcp:project`; None: GOOGLE_PROJECT or gcloud's default
        self._aws: dict[str, aws.Provider] = {}
        self._gcp: gcp.Provider | None = None

    def aws(self, region: str) -> aws.Provider:
        if region not in self._aws:
            self._aws[region] = aws.Provider(
                f"aws-{region}",
                region=region,
                profile=pulumi.Config("aws").get("profile"),
                default_tags={"tags": mesh_labels(self.mesh)},
            )
        return self._aws[region]

    def gcp(self) -> gcp.Provider:
        if self._gcp is None:
            self._gcp = gcp.Provider(f"{self.mesh}-gcp", project=self.gcp_project)
        return self._gcp

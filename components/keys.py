"""WireGuard keys as Pulumi resources: random bytes kept (secret) in state, public halves derived.

`RandomBytes` keeps its value across `pulumi up` runs until a keeper changes, so keys are
stable and rotate only when `keyEpoch` (of the mesh or of one member) is bumped. Private
keys and the PSK root leave this module only as secret Outputs.
"""

from __future__ import annotations

import base64

import pulumi
import pulumi_random as random

from mesh.keys import KEY_BYTES, private_key_from_b64, public_key

KEY_TYPE = "wgmesh:keys:WireGuardKey"


class WireGuardKey(pulumi.ComponentResource):
    """One member's key pair. `private_key` is secret; `public_key` is deliberately not."""

    private_key: pulumi.Output[str]
    public_key: pulumi.Output[str]

    def __init__(
        self, name: str, mesh_epoch: int, key_epoch: int, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(KEY_TYPE, name, None, opts)
        seed = random.RandomBytes(
            f"{name}-key",
            length=KEY_BYTES,
            keepers=key_keepers(mesh_epoch, key_epoch),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Secret by construction, not by relying on the provider's secret outputs (which mocks ignore).
        self.private_key = pulumi.Output.secret(seed.base64.apply(private_key_from_b64))
        # Derived from a secret, so Pulumi would mark it secret too; a public key is public.
        self.public_key = pulumi.Output.unsecret(self.private_key.apply(public_key))
        self.register_outputs({"publicKey": self.public_key})


def key_keepers(mesh_epoch: int, key_epoch: int) -> dict[str, str]:
    """Keepers of a member key: bumping the mesh's or the member's keyEpoch makes new bytes."""
    return {"meshKeyEpoch": str(mesh_epoch), "keyEpoch": str(key_epoch)}


def mesh_secret(name: str, mesh_epoch: int, parent: pulumi.Resource) -> pulumi.Output[bytes]:
    """The PSK root: one RandomBytes per mesh; every pair's PSK is HKDF-derived from it."""
    seed = random.RandomBytes(
        f"{name}-psk-root",
        length=KEY_BYTES,
        keepers={"meshKeyEpoch": str(mesh_epoch)},
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return pulumi.Output.secret(seed.base64.apply(base64.b64decode))

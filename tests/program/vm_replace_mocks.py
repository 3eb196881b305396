"""Mocks that give a VM what the engine would on a second `up`: a new id when it is replaced,
and its stored boot digest (an ignored input) whatever the program now sends.

The shared mocks derive ids from resource names, so a VM moved to another zone keeps its id
and its tags echo the new inputs. Here, for the three VM types only:

- the id is derived from the name *and* the inputs whose change replaces the VM (zone,
  location, IPv6 addresses; the provider docs' ForceNew fields the program can change), as a
  cloud hands a new VM a new id;
- with `stored` (the previous run), the `wgmesh-boot` tag/label in the outputs is the previous
  run's value: it is in `ignore_changes`, and the engine keeps the stored value of an ignored
  input on updates and on replacements (processIgnoreChanges; Pulumi docs, "ignoreChanges").

The engine simulator (the issue-13 change table) models replacement in general; these two
facts are all the stale-node and re-run tests need.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import wgmesh_mocks
from pulumi.runtime.mocks import MockResourceArgs
from wgmesh_mocks import ProgramRun, digest, reveal, run_program

from components.stale import BOOT_TAG

VM_PLACEMENT: dict[str, tuple[str, ...]] = {
    "aws:ec2/instance:Instance": ("availabilityZone", "subnetId", "ipv6Addresses"),
    "gcp:compute/instance:Instance": ("zone",),
    "hcloud:index/server:Server": ("location", "datacenter"),
}
BOOT_PROP = {
    "aws:ec2/instance:Instance": "tags",
    "gcp:compute/instance:Instance": "labels",
    "hcloud:index/server:Server": "labels",
}


def stored_boot_tags(previous: ProgramRun) -> dict[tuple[str, str], str]:
    """(type, name) -> the `wgmesh-boot` value each VM of `previous` holds in state."""
    found = {}
    for typ, prop in BOOT_PROP.items():
        for vm in previous.of_type(typ):
            value = (reveal(vm.outputs.get(prop)) or {}).get(BOOT_TAG)
            if value is not None:
                found[(typ, vm.name)] = value
    return found


def vm_id(typ: str, name: str, inputs: Mapping[str, Any]) -> str:
    placed = json.dumps({k: reveal(inputs.get(k)) for k in VM_PLACEMENT[typ]}, sort_keys=True)
    h = digest("vm", typ, name, placed).hex()
    if typ.startswith("aws:"):
        return f"i-{h[:17]}"
    return str(int(h[:12], 16) % 10**8)  # Hetzner server ids and GCP instance ids are numbers


def engine_run(
    config: Mapping[str, str],
    previous: ProgramRun | None = None,
    secret_keys: tuple[str, ...] = (),
) -> ProgramRun:
    """`run_program` for the dev stack with replacement ids and stored boot digests."""
    stored = stored_boot_tags(previous) if previous is not None else {}

    class ReplacingMocks(wgmesh_mocks.WgmeshMocks):
        def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            rid, outputs = super().new_resource(args)
            if args.typ not in VM_PLACEMENT:
                return rid, outputs
            new_id = vm_id(args.typ, args.name, args.inputs)
            if args.typ.startswith("gcp:"):
                outputs["instanceId"] = new_id  # the resource id is a path; this number is new
            else:
                rid = new_id
            prop = BOOT_PROP[args.typ]
            if (args.typ, args.name) in stored:
                outputs[prop] = {**(reveal(outputs.get(prop)) or {}), BOOT_TAG: stored[(args.typ, args.name)]}
            with self.lock:
                key = (args.typ, args.name)
                _, inputs, _, provider, custom = self.resources[key]
                self.resources[key] = (str(rid), inputs, outputs, provider, custom)
            return rid, outputs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wgmesh_mocks, "WgmeshMocks", ReplacingMocks)
        result = run_program("dev", config, secret_keys=secret_keys)
    return result

"""The engine simulator's own rules, against the Pulumi engine code they follow (engine_sim.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from change_rows import outcome
from engine_sim import Change, changed_paths, parse_path, process_ignore_changes
from wgmesh_mocks import SECRET_SIG, SIG_KEY, Captured, reveal


def _secret(value: object) -> dict[str, object]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def test_property_paths_parse_as_pulumi_writes_them() -> None:
    assert parse_path('metadata["user-data"]') == ["metadata", "user-data"]
    assert parse_path("bootDisk.initializeParams.image") == ["bootDisk", "initializeParams", "image"]
    assert parse_path("a[0].b[*].c") == ["a", 0, "b", "*", "c"]


def test_ignored_paths_take_the_stored_value_or_vanish() -> None:
    """PropertyPath.Reset: the old value when there is one, else the path is deleted from the new."""
    old = {"userData": "first", "metadata": {"user-data": _secret("boot-1"), "k": "v"}, "ami": "ami-1"}
    new = {"userData": "second", "metadata": {"user-data": _secret("boot-2"), "k": "w"}, "sshKeys": ["1"]}
    sent = process_ignore_changes(new, old, ("userData", 'metadata["user-data"]', "sshKeys", "ami"))
    assert sent["userData"] == "first"
    assert reveal(sent["metadata"]) == {"user-data": "boot-1", "k": "w"}  # only the ignored key
    assert "sshKeys" not in sent  # no stored value: the engine drops it
    assert sent["ami"] == "ami-1"  # a stored leaf comes back even when the program leaves it out
    assert new["userData"] == "second"  # the program's inputs are left alone


def _change(
    typ: str,
    old: dict[str, object],
    new: dict[str, object],
    ignore: tuple[str, ...] = (),
    roc: tuple[str, ...] = (),
) -> Change:
    """A Change as the diff builds it, for one resource of `typ` with these options."""

    def captured(inputs: dict[str, object]) -> Captured:
        return Captured("urn", "id", typ, "r", "", True, "", inputs, inputs, ignore, False, (), roc)

    return Change(captured(old), captured(new), tuple(changed_paths(old, new)))


def test_replacement_follows_forcenew_ignore_and_replace_on_changes() -> None:
    vm = "aws:ec2/instance:Instance"
    assert _change(vm, {"instanceType": "t3.micro"}, {"instanceType": "t3.small"}).replacing == ()
    assert _change(vm, {"ipv6Addresses": None}, {"ipv6Addresses": ["2001:db8::10"]}).replacing == (
        "ipv6Addresses",
    )
    assert _change(vm, {"ami": "a"}, {"ami": "b"}, ignore=("ami",)).replacing == ()
    cmd = "command:remote:Command"
    assert _change(cmd, {"stdin": "a"}, {"stdin": "b"}, roc=("triggers[*]",)).replacing == ()
    assert _change(cmd, {"triggers": ["a"]}, {"triggers": ["b"]}, roc=("triggers[*]",)).replacing != ()
    assert _change(cmd, {"stdin": "a"}, {"stdin": "b"}, roc=("*",)).replacing == ("stdin",)  # "*": any


def test_a_gcp_subnetwork_grows_in_place_and_is_replaced_otherwise() -> None:
    sub = "gcp:compute/subnetwork:Subnetwork"
    assert _change(sub, {"ipCidrRange": "10.0.0.0/24"}, {"ipCidrRange": "10.0.0.0/23"}).replacing == ()
    assert _change(sub, {"ipCidrRange": "10.0.0.0/24"}, {"ipCidrRange": "10.0.9.0/24"}).replacing == (
        "ipCidrRange",
    )


def test_nested_forcenew_fields_replace_only_when_their_value_changes() -> None:
    vm = "gcp:compute/instance:Instance"
    nic = {"subnetwork": "s1", "accessConfigs": [{"natIp": "1.2.3.4"}]}
    moved = {"subnetwork": "s2", "accessConfigs": [{"natIp": "1.2.3.4"}]}
    assert _change(vm, {"networkInterfaces": [nic]}, {"networkInterfaces": [moved]}).replacing == ()
    v6 = {**nic, "ipv6AccessConfigs": [{"externalIpv6": "2001:db8::", "networkTier": "PREMIUM"}]}
    assert "networkInterfaces[*].ipv6AccessConfigs[*].externalIpv6" in (
        _change(vm, {"networkInterfaces": [nic]}, {"networkInterfaces": [v6]}).replacing
    )


def test_a_replaced_vm_is_created_from_its_stored_user_data() -> None:
    """cidr6 on AWS: the program's new user data differs, the new instance gets the stored one."""
    o = outcome("cidr6")
    before, after = (
        o.before.one("aws:ec2/instance:Instance", "aws-fra"),
        o.after.one("aws:ec2/instance:Instance", "aws-fra"),
    )
    assert reveal(after.inputs["userDataBase64"]) != reveal(
        before.inputs["userDataBase64"]
    )  # what the program asks
    assert reveal(after.outputs["userDataBase64"]) == reveal(before.inputs["userDataBase64"])  # what it boots
    assert after.id != before.id  # a new instance (the engine's second run gave it a new id)
    assert o.rounds == 3  # instance, then its EIP association (instanceId), then nothing more


def test_replacements_cascade_until_nothing_more_changes() -> None:
    """A VPC moved on request: its subnet, route table, groups and the VM follow, run after run."""
    o = outcome("replace-network")
    assert o.rounds >= 3
    why = {c.after.name: c.replacing for c in o.diff.changed if c.replacing}
    assert why["aws-eu-central-1-vpc"] == ("cidrBlock",)
    assert why["aws-eu-central-1-rt"] == ("vpcId",)  # only through the VPC's new id
    assert why["aws-fra"] == ("subnetId",)
    assert why["aws-fra-eip-assoc"] == ("instanceId",)

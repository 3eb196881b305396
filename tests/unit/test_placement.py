"""mesh.placement without Pulumi: defaults from what is offered, refusals naming what is."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from mesh.errors import ConfigError
from mesh.placement import (
    LocationOffer,
    ServerType,
    aws_zone,
    gcp_boot_disk_type,
    hcloud_default,
    resolve,
)
from mesh.spec import MeshSpec, parse

TODAY = datetime.date(2026, 12, 3)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ a@b"


def server_type(name: str, memory: float, category: str = "cost_optimized", **kw: object) -> ServerType:
    locations = kw.pop("locations", (LocationOffer("nbg1"),))
    fields: dict[str, object] = {"cores": 2, "disk": 40, "architecture": "x86", "cpu_type": "shared", **kw}
    return ServerType(name, memory=memory, category=category, locations=locations, **fields)  # type: ignore[arg-type]


@dataclass
class FakeCatalog:
    types: list[ServerType] = field(default_factory=list)
    zones: dict[str, list[str]] = field(default_factory=dict)
    offers: set[tuple[str, str]] = field(default_factory=set)
    azs: dict[str, list[str]] = field(default_factory=dict)
    offerings: dict[str, set[str]] = field(default_factory=dict)
    subnet_zones: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def hcloud_server_types(self) -> Sequence[ServerType]:
        self.asked.append("hcloud")
        return self.types

    def gcp_zones(self, region: str) -> Sequence[str]:
        return self.zones.get(region, [])

    def gcp_offers(self, zone: str, machine_type: str) -> bool:
        return (zone, machine_type) in self.offers

    def aws_zones(self, region: str) -> Sequence[str]:
        return self.azs.get(region, [])

    def aws_offerings(self, region: str, instance_types: Sequence[str]) -> dict[str, set[str]]:
        return {t: self.offerings.get(t, set()) for t in instance_types}

    def aws_subnet_zone(self, region: str) -> str | None:
        return self.subnet_zones.get(region)


def spec(*nodes: Mapping[str, object]) -> MeshSpec:
    return parse({"mesh": {"cidr": "10.9.0.0/24", "sshPublicKeys": [KEY]}, "nodes": list(nodes)})


def test_the_hetzner_default_is_the_cheapest_current_shared_x86_type_in_stock() -> None:
    gone = LocationOffer("nbg1", deprecated=True, unavailable_after="2025-12-31T23:59:59Z")
    types = [
        server_type("cx22", 4, locations=(gone,)),  # retired
        server_type("cpx12", 2, "regular_purpose"),  # smaller, but not the cost-optimized line
        server_type("cax11", 4, architecture="arm"),
        server_type("ccx13", 8, cpu_type="dedicated"),
        server_type("cx33", 8),
        server_type("cx23", 4, locations=(LocationOffer("nbg1", available=False),)),  # out of stock
    ]
    assert (pick := hcloud_default(types, "nbg1", TODAY)) is not None and pick.name == "cx33"
    assert hcloud_default(types, "ash", TODAY) is None


def test_a_deprecated_type_still_orderable_is_kept_with_a_warning() -> None:
    soon = LocationOffer("nbg1", deprecated=True, unavailable_after="2027-01-31T00:00:00Z")
    catalog = FakeCatalog(types=[server_type("cx22", 4, locations=(soon,)), server_type("cx23", 4)])
    placed = resolve(spec({"name": "h", "cloud": "hcloud", "region": "nbg1", "size": "cx22"}), catalog, TODAY)
    assert placed.nodes["h"].size == "cx22" and placed.nodes["h"].chosen == ()
    assert placed.warnings == (
        "wgmesh:nodes[0].size: cx22 is deprecated in nbg1, orderable until 2027-01-31",
    )
    # A default never picks a deprecated type, even one still orderable.
    placed = resolve(spec({"name": "h", "cloud": "hcloud", "region": "nbg1"}), catalog, TODAY)
    assert placed.nodes["h"].size == "cx23" and placed.nodes["h"].chosen == ("size",)


def test_hetzner_types_are_asked_once_for_all_nodes() -> None:
    catalog = FakeCatalog(types=[server_type("cx23", 4)])
    nodes = [{"name": f"h{i}", "cloud": "hcloud", "region": "nbg1"} for i in range(3)]
    resolve(spec(*nodes), catalog, TODAY)
    assert catalog.asked == ["hcloud"]


def test_out_of_stock_is_refused_for_a_configured_size() -> None:
    catalog = FakeCatalog(types=[server_type("cx23", 4, locations=(LocationOffer("nbg1", available=False),))])
    with pytest.raises(ConfigError) as e:
        resolve(spec({"name": "h", "cloud": "hcloud", "region": "nbg1", "size": "cx23"}), catalog, TODAY)
    assert str(e.value) == "wgmesh:nodes[0].size: cx23 is out of stock in nbg1 for now (available: none)"


def test_gcp_default_zone_is_the_first_up_zone_offering_the_type() -> None:
    catalog = FakeCatalog(
        zones={"us-east1": ["us-east1-d", "us-east1-c", "us-east1-b"]},
        offers={("us-east1-c", "c4-standard-2"), ("us-east1-d", "c4-standard-2")},
    )
    node = {"name": "g", "cloud": "gcp", "region": "us-east1", "size": "c4-standard-2"}
    placed = resolve(spec(node), catalog, TODAY)
    assert (placed.nodes["g"].zone, placed.nodes["g"].chosen) == ("us-east1-c", ("zone",))
    assert placed.apply(spec(node)).nodes[0].zone == "us-east1-c"


def test_a_gcp_region_without_up_zones_is_refused() -> None:
    with pytest.raises(ConfigError) as e:
        resolve(spec({"name": "g", "cloud": "gcp", "region": "mars-north1"}), FakeCatalog(), TODAY)
    assert str(e.value) == "wgmesh:nodes[0].region: mars-north1 has no GCP zone that is UP"


def test_aws_zone_is_the_first_offering_every_type() -> None:
    offered = {"t3.micro": {"us-east-1b", "us-east-1c"}, "m7g.large": {"us-east-1c", "us-east-1d"}}
    zones = ["us-east-1e", "us-east-1d", "us-east-1c", "us-east-1b"]
    assert aws_zone(zones, offered, ["t3.micro"]) == "us-east-1b"
    assert aws_zone(zones, offered, ["t3.micro", "m7g.large"]) == "us-east-1c"
    assert aws_zone(zones, offered, ["t3.micro", "x9.huge"]) is None


def test_aws_zones_that_are_not_available_do_not_count() -> None:
    catalog = FakeCatalog(azs={"us-east-1": ["us-east-1a"]}, offerings={"t3.micro": {"us-east-1b"}})
    with pytest.raises(ConfigError) as e:
        resolve(spec({"name": "a", "cloud": "aws", "region": "us-east-1"}), catalog, TODAY)
    assert str(e.value) == "wgmesh:nodes[0].size: t3.micro is not offered in any available zone of us-east-1"


@pytest.mark.parametrize(
    ("machine_type", "disk"),
    [
        ("c4a-standard-1", "hyperdisk-balanced"),
        ("c4d-standard-2", "hyperdisk-balanced"),
        ("n4-standard-2", "hyperdisk-balanced"),
        ("n4a-standard-1", "hyperdisk-balanced"),
        ("c4-highcpu-4", "hyperdisk-balanced"),
        ("m4-megamem-28", "hyperdisk-balanced"),
        ("h4d-highmem-192", "hyperdisk-balanced"),
        ("n1-standard-1", "pd-balanced"),
        ("c3-standard-4", "pd-balanced"),  # C3 takes both; pd-balanced stays the default
        ("e2-small", "pd-balanced"),
        ("n2d-standard-2", "pd-balanced"),
        ("t2a-standard-1", "pd-balanced"),
    ],
)
def test_gcp_boot_disk_type_by_series(machine_type: str, disk: str) -> None:
    assert gcp_boot_disk_type(machine_type) == disk


def test_lab_nodes_need_no_catalog() -> None:
    lab = {"name": "l", "cloud": "lab", "publicIp": "198.51.100.1"}
    placed = resolve(spec(lab), FakeCatalog(), TODAY)
    assert placed.nodes == {} and placed.aws_zones == {}


def test_an_existing_subnet_keeps_its_zone_and_every_type_must_fit_it() -> None:
    catalog = FakeCatalog(
        azs={"us-east-1": ["us-east-1a", "us-east-1b"]},
        offerings={"t3.micro": {"us-east-1a", "us-east-1b"}, "m7g.large": {"us-east-1a"}},
        subnet_zones={"us-east-1": "us-east-1b"},
    )
    one = {"name": "a", "cloud": "aws", "region": "us-east-1"}
    placed = resolve(spec(one), catalog, TODAY)
    assert placed.aws_zones == {"us-east-1": "us-east-1b"}  # not 1a, the first choice today
    two = {"name": "b", "cloud": "aws", "region": "us-east-1", "size": "m7g.large"}
    with pytest.raises(ConfigError) as e:
        resolve(spec(one, two), catalog, TODAY)
    assert str(e.value) == (
        "wgmesh:nodes[1].size: m7g.large is not offered in us-east-1b, where the us-east-1 subnet is "
        "(offered in: us-east-1a)"
    )

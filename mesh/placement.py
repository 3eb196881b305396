"""Where each cloud node runs: its size and zone, checked against what the cloud offers there.

Pure: the offers come from a `Catalog` (components/catalog.py asks the clouds through the
providers' invokes at preview; the program tests answer from a recorded fixture). Defaults
are picked from what is offered, deterministically, and reported as `chosen` so the
components can pin them (`ignore_changes`) and a later catalog change never moves a node.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mesh.errors import ConfigError, Problem
from mesh.spec import MeshSpec, NodeSpec

# Hetzner's cheapest line: "Cost-Optimized" (CX). The API's server types carry no price (the
# provider's getServerTypes exposes none), so "cheapest" ranks that category first, then the
# smallest memory, cores and disk (Hetzner prices grow with them inside a line).
# Source: docs.hetzner.com/cloud/servers/overview (Cost-Optimized, Regular Performance, ...).
HCLOUD_CHEAPEST_CATEGORY = "cost_optimized"
# GCP boot disk by machine series. Fourth-generation series and newer (C4, C4A, C4D, N4, N4A,
# N4D, M4, X4, H4D, A4, ...) take only Hyperdisk: no Persistent Disk, so no pd-balanced boot disk.
# Sources: Compute API reference, AttachedDiskInitializeParams.diskType ("for ... all fourth-
# generation types like C4, N4, M4, and newer machine series, the default is Hyperdisk Balanced";
# "the disk type you specify must be compatible with the instance's machine series"), and
# cloud.google.com/compute/docs/disks "Machine series support for Persistent Disk" (C4, C4A, C4D,
# N4, N4A, N4D support only hyperdisk-balanced among the balanced types; C3/C3D take both).
HYPERDISK_ONLY_FROM_GENERATION = 4
GCP_BOOT_DISK = "pd-balanced"
GCP_HYPERDISK_BOOT_DISK = "hyperdisk-balanced"
_GCP_SERIES = re.compile(r"^([a-z]+)(\d+)([a-z]*)-")  # family letters, generation, variant
LIST_LIMIT = 12  # names shown in an "available: ..." list before "..."


@dataclass(frozen=True)
class LocationOffer:
    """A Hetzner server type in one location (the API's server_type.locations[])."""

    name: str
    available: bool = True  # False: temporarily out of stock there
    deprecated: bool = False
    unavailable_after: str = ""  # ISO date-time once deprecated: no longer orderable after it


@dataclass(frozen=True)
class ServerType:
    """A Hetzner server type as getServerTypes returns it."""

    name: str
    cores: int
    memory: float
    disk: int
    architecture: str  # "x86" | "arm"
    cpu_type: str  # "shared" | "dedicated"
    category: str
    locations: tuple[LocationOffer, ...]

    def offer(self, location: str) -> LocationOffer | None:
        return next((o for o in self.locations if o.name == location), None)


class Catalog(Protocol):
    """What the clouds offer, asked once per cloud / region / zone."""

    def hcloud_server_types(self) -> Sequence[ServerType]: ...

    def gcp_zones(self, region: str) -> Sequence[str]:
        """The region's zones whose status is UP."""
        ...

    def gcp_offers(self, zone: str, machine_type: str) -> bool: ...

    def aws_zones(self, region: str) -> Sequence[str]:
        """The region's availability zones in state `available`."""
        ...

    def aws_offerings(self, region: str, instance_types: Sequence[str]) -> dict[str, set[str]]:
        """For each instance type, the availability zones of the region that offer it."""
        ...

    def aws_subnet_zone(self, region: str) -> str | None:
        """The AZ of the stack's subnet in the region when it already exists (a later `up`)."""
        ...


@dataclass(frozen=True)
class Placement:
    size: str
    zone: str = ""  # GCP zone
    chosen: tuple[str, ...] = ()  # "size" / "zone": picked here, to be pinned with ignore_changes


@dataclass(frozen=True)
class Placements:
    nodes: dict[str, Placement]
    aws_zones: dict[str, str]  # region -> the availability zone of its subnet (always chosen here)
    notes: tuple[str, ...] = ()  # what was chosen and why, for `pulumi preview`
    warnings: tuple[str, ...] = ()

    def apply(self, spec: MeshSpec) -> MeshSpec:
        """The spec with every cloud node's size and zone filled in."""
        nodes = tuple(
            dataclasses.replace(n, size=p.size, zone=p.zone) if (p := self.nodes.get(n.name)) else n
            for n in spec.nodes
        )
        return dataclasses.replace(spec, nodes=nodes)


def gcp_generation(machine_type: str) -> int | None:
    """The series generation of a machine type (c4a-standard-1 -> 4, e2-small -> 2), if it has one."""
    m = _GCP_SERIES.match(machine_type)
    return int(m.group(2)) if m else None


def gcp_boot_disk_type(machine_type: str) -> str:
    """hyperdisk-balanced for series that take only Hyperdisk (4th generation on), else pd-balanced."""
    generation = gcp_generation(machine_type)
    if generation is not None and generation >= HYPERDISK_ONLY_FROM_GENERATION:
        return GCP_HYPERDISK_BOOT_DISK
    return GCP_BOOT_DISK


def resolve(spec: MeshSpec, catalog: Catalog, today: datetime.date) -> Placements:
    """Every cloud node's placement, or ConfigError naming each size/zone the cloud does not offer."""
    r = _Resolver(catalog, today)
    for n in spec.nodes:
        if n.cloud == "hcloud":
            r.hcloud(n)
        elif n.cloud == "gcp":
            r.gcp(n)
    by_region: dict[str, list[NodeSpec]] = {}
    for n in spec.nodes:
        if n.cloud == "aws":
            by_region.setdefault(n.region, []).append(n)
    for region, nodes in by_region.items():
        r.aws(region, nodes)
    if r.problems:
        raise ConfigError(r.problems)
    return Placements(r.nodes, r.aws_zones, tuple(r.notes), tuple(r.warnings))


def hcloud_rank(t: ServerType) -> tuple[bool, float, int, int, str]:
    """Cheapest first: Hetzner's cost-optimized line, then the smallest type."""
    return (t.category != HCLOUD_CHEAPEST_CATEGORY, t.memory, t.cores, t.disk, t.name)


def hcloud_orderable(t: ServerType, location: str, today: datetime.date) -> bool:
    offer = t.offer(location)
    return offer is not None and offer.available and not _removed(offer, today)


def hcloud_default(types: Iterable[ServerType], location: str, today: datetime.date) -> ServerType | None:
    """The cheapest current (not deprecated) shared x86 type orderable in `location`."""
    fits = [
        t
        for t in types
        if t.architecture == "x86"
        and t.cpu_type == "shared"
        and hcloud_orderable(t, location, today)
        and not _deprecated(t, location)
    ]
    return min(fits, key=hcloud_rank, default=None)


def aws_zone(zones: Sequence[str], offered: dict[str, set[str]], types: Iterable[str]) -> str | None:
    """The first available zone (sorted) that offers every type, or None."""
    return next((z for z in sorted(zones) if all(z in offered.get(t, set()) for t in types)), None)


def _deprecated(t: ServerType, location: str) -> bool:
    offer = t.offer(location)
    return offer is not None and offer.deprecated


def _removed(offer: LocationOffer, today: datetime.date) -> bool:
    if not offer.deprecated or not offer.unavailable_after:
        return False
    return datetime.date.fromisoformat(offer.unavailable_after[:10]) < today


def _names(names: Iterable[str]) -> str:
    listed = list(names)
    shown = ", ".join(listed[:LIST_LIMIT])
    return shown + (", ..." if len(listed) > LIST_LIMIT else "") if listed else "none"


class _Resolver:
    def __init__(self, catalog: Catalog, today: datetime.date) -> None:
        self.catalog = catalog
        self.today = today
        self.nodes: dict[str, Placement] = {}
        self.aws_zones: dict[str, str] = {}
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self._hcloud: Sequence[ServerType] | None = None

    def hcloud(self, n: NodeSpec) -> None:
        if self._hcloud is None:
            self._hcloud = self.catalog.hcloud_server_types()
        types = self._hcloud
        orderable = sorted((t for t in types if hcloud_orderable(t, n.region, self.today)), key=hcloud_rank)
        available = f"available: {_names(t.name for t in orderable)}"
        if not n.size:
            pick = hcloud_default(types, n.region, self.today)
            if pick is None:
                self.problems.append(
                    Problem(f"{n.key}.size", f"no current shared x86 server type in {n.region} ({available})")
                )
                return
            self.nodes[n.name] = Placement(pick.name, chosen=("size",))
            self.notes.append(
                f"{n.key}.size: {pick.name} (cheapest current shared x86 type in {n.region}; pinned)"
            )
            return
        found = next((t for t in types if t.name == n.size), None)
        offer = found.offer(n.region) if found else None
        if found is None:
            self.problems.append(
                Problem(f"{n.key}.size", f"{n.size} is not a Hetzner server type ({available})")
            )
        elif offer is None:
            self.problems.append(
                Problem(f"{n.key}.size", f"{n.size} is not offered in {n.region} ({available})")
            )
        elif _removed(offer, self.today):
            when = offer.unavailable_after[:10]
            self.problems.append(
                Problem(
                    f"{n.key}.size", f"{n.size} is deprecated in {n.region}, gone since {when} ({available})"
                )
            )
        elif not offer.available:
            self.problems.append(
                Problem(f"{n.key}.size", f"{n.size} is out of stock in {n.region} for now ({available})")
            )
        else:
            if offer.deprecated:
                self.warnings.append(
                    f"{n.key}.size: {n.size} is deprecated in {n.region}, orderable until "
                    f"{offer.unavailable_after[:10]}"
                )
            self.nodes[n.name] = Placement(n.size)

    def gcp(self, n: NodeSpec) -> None:
        size = n.size  # spec default e2-small: checked like any configured size
        zones = sorted(self.catalog.gcp_zones(n.region))
        if not zones:
            self.problems.append(Problem(f"{n.key}.region", f"{n.region} has no GCP zone that is UP"))
            return
        if n.zone:
            if n.zone not in zones:
                self.problems.append(
                    Problem(
                        f"{n.key}.zone",
                        f"{n.zone} is not an UP zone of {n.region} (available: {_names(zones)})",
                    )
                )
            elif not self.catalog.gcp_offers(n.zone, size):
                offering = [z for z in zones if self.catalog.gcp_offers(z, size)]
                self.problems.append(
                    Problem(
                        f"{n.key}.size", f"{size} is not offered in {n.zone} (offered in: {_names(offering)})"
                    )
                )
            else:
                self.nodes[n.name] = Placement(size, n.zone)
            return
        zone = next((z for z in zones if self.catalog.gcp_offers(z, size)), None)
        if zone is None:
            self.problems.append(
                Problem(
                    f"{n.key}.size", f"{size} is not offered in any UP zone of {n.region} ({_names(zones)})"
                )
            )
            return
        self.nodes[n.name] = Placement(size, zone, chosen=("zone",))
        self.notes.append(f"{n.key}.zone: {zone} (first UP zone of {n.region} offering {size}; pinned)")

    def aws(self, region: str, nodes: Sequence[NodeSpec]) -> None:
        sizes = {n.name: n.size for n in nodes}  # spec default t3.micro: checked like any other
        types = sorted(set(sizes.values()))
        zones = sorted(self.catalog.aws_zones(region))
        offered = self.catalog.aws_offerings(region, types)
        before = len(self.problems)
        for n in nodes:
            where = sorted(offered.get(sizes[n.name], set()) & set(zones))
            if not where:
                self.problems.append(
                    Problem(
                        f"{n.key}.size", f"{sizes[n.name]} is not offered in any available zone of {region}"
                    )
                )
        if len(self.problems) > before:
            return
        existing = self.catalog.aws_subnet_zone(region)
        if existing is not None:
            self._aws_existing(region, existing, nodes, sizes, offered)
            return
        zone = aws_zone(zones, offered, types)
        if zone is None:
            spread = "; ".join(f"{t}: {_names(sorted(offered[t] & set(zones)))}" for t in types)
            self.problems.append(
                Problem(
                    f"{nodes[0].key}.size",
                    f"the {region} nodes' types share no availability zone for its subnet ({spread})",
                )
            )
            return
        self.aws_zones[region] = zone
        self.nodes.update({n.name: Placement(sizes[n.name]) for n in nodes})
        self.notes.append(
            f"aws {region}: subnet in {zone} (first available zone offering {', '.join(types)}; pinned)"
        )

    def _aws_existing(
        self,
        region: str,
        zone: str,
        nodes: Sequence[NodeSpec],
        sizes: dict[str, str],
        offered: dict[str, set[str]],
    ) -> None:
        """The region's subnet exists and stays where it is (its AZ is pinned): every type must fit it."""
        misfits = [n for n in nodes if zone not in offered.get(sizes[n.name], set())]
        for n in misfits:
            where = _names(sorted(offered.get(sizes[n.name], set())))
            self.problems.append(
                Problem(
                    f"{n.key}.size",
                    f"{sizes[n.name]} is not offered in {zone}, where the {region} subnet is "
                    f"(offered in: {where})",
                )
            )
        if misfits:
            return
        self.aws_zones[region] = zone
        self.nodes.update({n.name: Placement(sizes[n.name]) for n in nodes})
        self.notes.append(f"aws {region}: subnet stays in {zone} (it exists; pinned)")

"""mesh/site_networks.py: an existing site keeps its network and router; a move is refused unless asked."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import ConfigError
from mesh.network_rules import routed_networks
from mesh.networks import SITE_POOLS
from mesh.site_networks import REPLACE_KEY, SiteDecision, decide_site_networks, site_groups
from mesh.spec import MeshSettings, NodeSpec, parse

MESH = MeshSettings(cidr=ipaddress.IPv4Network("10.50.0.0/24"))
Net = ipaddress.IPv4Network


def node(i: int, name: str, region: str = "eu-central-1", cloud: str = "aws", *subnets: str) -> NodeSpec:
    nets = tuple(ipaddress.ip_network(s) for s in subnets)
    return NodeSpec(name=name, cloud=cloud, region=region, subnets=nets, index=i)  # type: ignore[arg-type]


def decide(
    nodes: Sequence[NodeSpec],
    existing: dict[str, Net] | None = None,
    replace: Sequence[str] = (),
    mesh: MeshSettings = MESH,
) -> SiteDecision:
    return decide_site_networks(site_groups(nodes), routed_networks(mesh, nodes), existing or {}, replace)


def first_up(nodes: Sequence[NodeSpec]) -> dict[str, Net]:
    d = decide(nodes)
    assert d.problems == []
    return {k: c.cidr for k, c in d.sites.items()}


ROUTER = node(0, "aws-fra", "eu-central-1", "aws", "10.1.0.0/24")
PLAIN = node(1, "aws-fra2")
SECOND = node(1, "aws-fra2", "eu-central-1", "aws", "10.3.0.0/24")


def test_a_new_site_takes_its_only_routers_subnet_and_two_routers_get_a_hashed_slash_24() -> None:
    one = decide([ROUTER, PLAIN]).sites["aws-eu-central-1"]
    assert (one.cidr, one.router) == (Net("10.1.0.0/24"), "aws-fra")
    two = decide([ROUTER, SECOND]).sites["aws-eu-central-1"]
    assert two.router is None and two.cidr.subnet_of(SITE_POOLS[0])


def test_a_second_router_keeps_the_network_and_the_router() -> None:
    existing = first_up([ROUTER, PLAIN])
    d = decide([ROUTER, SECOND], existing)
    assert d.problems == []
    assert (d.sites["aws-eu-central-1"].cidr, d.sites["aws-eu-central-1"].router) == (
        Net("10.1.0.0/24"),
        "aws-fra",
    )
    assert d.notes == [
        f"site aws-eu-central-1 keeps its network 10.1.0.0/24 routed behind aws-fra "
        f"(a new site would get {decide([ROUTER, SECOND]).sites['aws-eu-central-1'].cidr})"
    ]


def test_node_order_does_not_pick_the_router() -> None:
    existing = first_up([ROUTER, PLAIN])
    d = decide(
        [
            node(0, "aws-fra2", "eu-central-1", "aws", "10.3.0.0/24"),
            node(1, "aws-fra", "eu-central-1", "aws", "10.1.0.0/24"),
        ],
        existing,
    )
    assert d.sites["aws-eu-central-1"].router == "aws-fra"


def test_a_hashed_network_stays_when_one_router_is_left() -> None:
    existing = first_up([ROUTER, SECOND])
    d = decide([ROUTER, PLAIN], existing)
    assert d.problems == []
    assert d.sites["aws-eu-central-1"] == type(d.sites["aws-eu-central-1"])(
        existing["aws-eu-central-1"], None
    )


@pytest.mark.parametrize(
    "after",
    [[PLAIN], [node(0, "aws-fra"), PLAIN], [node(0, "aws-fra", "eu-central-1", "aws", "10.9.0.0/24"), PLAIN]],
    ids=["router left", "subnet dropped", "subnet changed"],
)
def test_a_network_no_node_routes_any_more_is_refused(after: list[NodeSpec]) -> None:
    d = decide(after, first_up([ROUTER, PLAIN]))
    assert [p.key for p in d.problems] == ["wgmesh:nodes"]
    message = d.problems[0].message
    assert message.startswith("site aws-eu-central-1 runs on 10.1.0.0/24 and no node of the site routes it")
    assert message.endswith(f"To accept that, list aws-eu-central-1 in {REPLACE_KEY}")
    assert (
        "replaces the VPC, subnet, route table, security groups and every VM in aws-eu-central-1" in message
    )


def test_the_subnet_moved_to_another_node_of_the_site_takes_the_router_along() -> None:
    d = decide(
        [node(0, "aws-fra"), node(1, "aws-fra2", "eu-central-1", "aws", "10.1.0.0/24")],
        first_up([ROUTER, PLAIN]),
    )
    assert d.problems == [] and d.sites["aws-eu-central-1"].router == "aws-fra2"


def test_an_overlay_over_the_site_network_is_refused_at_its_key() -> None:
    existing = first_up([ROUTER, SECOND])
    wide = MeshSettings(cidr=Net("10.200.0.0/16"))
    d = decide([ROUTER, SECOND], existing, mesh=wide)
    assert [p.key for p in d.problems] == ["wgmesh:mesh.cidr"]
    assert "10.200.0.0/16 overlaps it" in d.problems[0].message


def test_gcp_grows_in_place_and_aws_does_not() -> None:
    gcp = [node(0, "gcp-fra", "europe-west3", "gcp", "10.2.0.0/24")]
    grown = [node(0, "gcp-fra", "europe-west3", "gcp", "10.2.0.0/23")]
    d = decide(grown, first_up(gcp))
    assert d.problems == [] and d.sites["gcp-europe-west3"].cidr == Net("10.2.0.0/23")
    aws = decide([node(0, "aws-fra", "eu-central-1", "aws", "10.1.0.0/23"), PLAIN], first_up([ROUTER, PLAIN]))
    assert [p.key for p in aws.problems] == ["wgmesh:nodes[0].subnets[0]"]


def test_replace_networks_chooses_afresh_and_warns_when_there_is_nothing_to_replace() -> None:
    existing = first_up([ROUTER, PLAIN])
    d = decide([PLAIN], existing, replace=["aws-eu-central-1"])
    assert d.problems == [] and d.warnings == []
    assert d.sites["aws-eu-central-1"].cidr.subnet_of(SITE_POOLS[0])
    kept = decide([ROUTER, PLAIN], existing, replace=["aws-eu-central-1"])
    assert kept.warnings == [
        f"{REPLACE_KEY}[0]: aws-eu-central-1 keeps 10.1.0.0/24: nothing to replace; remove it, so a later "
        "change cannot replace that network without asking"
    ]


def test_a_new_gcp_site_steers_clear_of_kept_networks() -> None:
    """GCP regions share one VPC network: a new subnetwork may not overlap a kept one."""
    fra = node(0, "gcp-fra", "europe-west3", "gcp")
    taken = decide([fra]).sites["gcp-europe-west3"].cidr
    # A new region whose hashed pick would be `taken` if the kept network were not counted.
    for region in (f"us-east{i}" for i in range(1, 400)):
        alone = decide([node(0, "gcp-x", region, "gcp")]).sites[f"gcp-{region}"].cidr
        if alone == taken:
            break
    else:
        pytest.skip("no region hashes onto the same /24 in range")  # pragma: no cover
    d = decide([fra, node(1, "gcp-x", region, "gcp")], {"gcp-europe-west3": taken})
    assert d.sites[f"gcp-{region}"].cidr != taken


def test_replace_networks_must_name_a_site_of_the_stack_once() -> None:
    cfg: dict[str, Any] = {
        "mesh": {
            "cidr": "10.50.0.0/24",
            "replaceNetworks": ["aws-eu-central-1", "aws-us-east-1", "aws-eu-central-1"],
        },
        "nodes": [{"name": "aws-fra", "cloud": "aws", "region": "eu-central-1"}],
    }
    with pytest.raises(ConfigError) as e:
        parse(cfg)
    assert [(p.key, p.message) for p in e.value.problems] == [
        (f"{REPLACE_KEY}[1]", "'aws-us-east-1' is not a site of this stack (sites: aws-eu-central-1)"),
        (f"{REPLACE_KEY}[2]", "'aws-eu-central-1' is listed twice"),
    ]
    cfg["mesh"]["replaceNetworks"] = ["aws-eu-central-1"]
    assert parse(cfg).mesh.replace_networks == ("aws-eu-central-1",)


# ----------------------------------------------------------------------------- properties

HOSTABLE = [f"10.{i}.0.0/24" for i in range(1, 21)]
OTHER = [f"172.16.{i}.0/30" for i in range(8)] + [f"fd00:{i}::/64" for i in range(8)]  # 36 >= 8*(2+2)+3 drawn
SITES = [("aws", "eu-central-1"), ("aws", "us-east-1"), ("gcp", "europe-west3"), ("gcp", "us-east1")]


@st.composite
def stacks(draw: st.DrawFn) -> tuple[list[NodeSpec], list[NodeSpec]]:
    """A stack, and a later one that only adds routed subnets and nodes, and reorders nodes."""
    pool = draw(st.permutations(HOSTABLE + OTHER))
    count = draw(st.integers(1, 8))
    homes = [draw(st.sampled_from(SITES)) for _ in range(count)]
    owned = [draw(st.integers(0, 2)) for _ in range(count)]
    extra = [draw(st.integers(0, 2)) for _ in range(count)]
    added = draw(st.integers(0, 3))
    nets = iter(pool)
    before, after = [], []
    for i in range(count):
        cloud, region = homes[i]
        mine = [next(nets) for _ in range(owned[i])]
        more = [next(nets) for _ in range(extra[i])]
        before.append(node(i, f"n{i}", region, cloud, *mine))
        after.append(node(i, f"n{i}", region, cloud, *mine, *more))
    for j in range(added):
        cloud, region = draw(st.sampled_from(SITES))
        after.append(
            node(count + j, f"m{j}", region, cloud, *(next(nets) for _ in range(draw(st.integers(0, 1)))))
        )
    order = draw(st.permutations(range(len(after))))
    return before, [after[k] for k in order]


@given(stacks())
def test_adding_routers_subnets_and_nodes_or_reordering_never_moves_a_network(
    pair: tuple[list[NodeSpec], list[NodeSpec]],
) -> None:
    before, after = pair
    existing = first_up(before)
    first = decide(before)
    d = decide(after, existing)
    assert d.problems == []
    for key, net in existing.items():
        assert d.sites[key].cidr == net
        assert d.sites[key].router == first.sites[key].router  # the router stays the router


@given(stacks(), st.data())
def test_no_existing_network_moves_without_a_refusal_or_an_opt_in(
    pair: tuple[list[NodeSpec], list[NodeSpec]], data: st.DataObject
) -> None:
    """Whatever the later stack (here: the earlier one with nodes dropped and subnets shuffled)."""
    before, after = pair
    existing = first_up(before)
    later = [n for n in after if data.draw(st.booleans())] or after[:1]
    shuffled = data.draw(st.permutations([s for n in later for s in n.subnets]))
    it = iter(shuffled)
    later = [
        node(i, n.name, n.region, n.cloud, *(str(next(it)) for _ in n.subnets)) for i, n in enumerate(later)
    ]
    replace = data.draw(st.lists(st.sampled_from(sorted(site_groups(later))), unique=True))
    d = decide(later, existing, replace)
    refused = {p.message.split(" ")[1] for p in d.problems}
    for key, choice in d.sites.items():
        old = existing.get(key)
        if old is None or key in replace or key in refused:
            continue
        assert choice.cidr == old or (key.startswith("gcp-") and old.subnet_of(choice.cidr))


def test_the_quota_budget_counts_return_routes_through_the_kept_router() -> None:
    from components.netplan import plan_site_networks
    from components.quota_plan import quota_needs
    from mesh.plan import build_plan

    cfg: dict[str, Any] = {
        "mesh": {"cidr": "10.50.0.0/24"},
        "nodes": [
            {"name": "aws-fra", "cloud": "aws", "region": "eu-central-1", "subnets": ["10.1.0.0/24"]},
            {"name": "aws-fra2", "cloud": "aws", "region": "eu-central-1", "subnets": ["10.3.0.0/24"]},
        ],
    }
    plan = build_plan(parse(cfg))
    kept = plan_site_networks(plan, site_groups(plan.spec.nodes), {"aws-eu-central-1": Net("10.1.0.0/24")})

    def routes(sites: Any) -> int:
        return next(n.count for n in quota_needs(plan, sites=sites) if n.quota.key == "routesPerRouteTable")

    assert routes(None) == 1  # a first `up`: two routers, a hashed /24, the default route only
    # Kept behind aws-fra: the default route, the overlay and aws-fra2's subnet back through it.
    assert kept.sites["aws-eu-central-1"].router == "aws-fra"
    assert routes(kept.sites) == 1 + len(kept.sites["aws-eu-central-1"].return_routes) == 3
